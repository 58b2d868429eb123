"""AR and MDM objectives for a decoder that answers a prefix (prompt / audio / states).

Both take the prefix as embeddings, so the same code trains the text-only Thinker,
the speech Thinker (audio frames spliced into the prompt) and the Talker (fused
Thinker states as the prefix). The decoder only ever sees `mask_id` as one more token.
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import ml_collections

from vocalnet_jax.diffusion import attention_masks, losses, masking
from vocalnet_jax.diffusion.schedule import get_schedule

Array = jax.Array


class DecoderFns(NamedTuple):
  """Closures over one decoder's params: embed ids, run hidden states, project to logits."""
  embed: Callable[[Array], Array]  # [batch, L] -> [batch, L, embed]
  hidden: Callable[[Array, Array, Array], Array]  # (embeddings, positions, mask) -> hidden
  logits: Callable[[Array], Array]  # [batch, L, embed] -> [batch, L, vocab]


class ResponseBatch(NamedTuple):
  """A prefix (as embeddings) and the response to generate after it."""
  prefix_emb: Array  # [batch, P, embed]
  prefix_valid: Array  # [batch, P] bool
  response: Array  # [batch, R] int32 target ids (answer + eos, padded)
  response_valid: Array  # [batch, R] bool
  # Optional [R, P] rule: which prefix positions each response token sees (default all).
  prefix_visibility: Optional[Array] = None
  # Optional RoPE positions (prefix [batch, P], response [batch, R]); default: the
  # response continues after the valid prefix (`prefix_positions`).
  positions: Optional[tuple[Array, Array]] = None


class LMProblem(NamedTuple):
  """One decoder answering one batch: what an objective (or a distillation) needs."""
  fns: DecoderFns
  batch: ResponseBatch
  mask_id: int
  eos_id: int
  block_size: int  # MDM block (the Talker: one speech chunk)
  start_id: Optional[int] = None  # AR input start token (the Talker), see `ar_objective`
  # >0: the loss projects this many positions to the vocabulary at a time
  # (`losses.chunked_cross_entropy`; the same loss without all of the logits at once)
  loss_chunk: int = 0


def lm_loss(problem: LMProblem, rng: Array, objective: str,
            diffusion_cfg: ml_collections.ConfigDict) -> tuple[Array, dict]:
  """The configured objective (`ar` | `mdm`) on `problem`."""
  if objective == "ar":
    return ar_objective(problem.fns, problem.batch, start_id=problem.start_id,
                        loss_chunk=problem.loss_chunk)
  return mdm_objective(problem.fns, problem.batch, rng, diffusion_cfg, problem.mask_id,
                       problem.eos_id, block_size=problem.block_size,
                       shift=diffusion_cfg.shift_logits and shifts(problem),
                       loss_chunk=problem.loss_chunk)


def shifts(problem: LMProblem) -> bool:
  """Whether `diffusion.shift_logits` applies: only to a decoder whose prefix's last state
  predicts the response's first token (a Thinker). The Talker (`start_id`) never shifts:
  its first chunk may not see the end of its text prefix."""
  return problem.start_id is None


def _positions(batch: ResponseBatch, repeats: int) -> Array:
  """[batch, P + repeats * R] RoPE positions ([x_t ; x_0] reuses the response's)."""
  if batch.positions is None:
    return attention_masks.prefix_positions(batch.prefix_valid, batch.response.shape[1], repeats)
  prefix_pos, response_pos = batch.positions
  return jnp.concatenate([prefix_pos] + [response_pos] * repeats, axis=1)


def _run(fns: DecoderFns, batch: ResponseBatch, streams: list[Array], body: Array,
         key_valid: Array) -> Array:
  """Hidden states of the whole sequence [prefix ; streams...]: [batch, P + n R, embed]."""
  visibility = batch.prefix_visibility
  if visibility is not None:
    visibility = jnp.tile(visibility, (len(streams), 1))
  emb = jnp.concatenate([batch.prefix_emb] + [fns.embed(s) for s in streams], axis=1)
  mask = attention_masks.with_prefix(body, batch.prefix_valid, key_valid, visibility)
  return fns.hidden(emb, _positions(batch, len(streams)), mask)


def ar_objective(fns: DecoderFns, batch: ResponseBatch, start_id: Optional[int] = None,
                 loss_chunk: int = 0) -> tuple[Array, dict]:
  """Causal next-token loss over the response.

  Without `start_id` the last prefix position predicts response[0] (the Thinker: its
  prompt ends with the assistant marker). With it, the response input is
  [start_id, response[:-1]] and position i predicts response[i] (the Talker, whose
  streaming rule hides the end of the prefix from the first chunk). loss_chunk: see
  `LMProblem`.
  """
  prefix_len, resp_len = batch.prefix_valid.shape[1], batch.response.shape[1]
  causal = attention_masks.causal_mask(resp_len)
  if start_id is None:
    emb = jnp.concatenate([batch.prefix_emb, fns.embed(batch.response)], axis=1)
    mask = attention_masks.with_prefix(causal, batch.prefix_valid, batch.response_valid,
                                       batch.prefix_visibility)
    hidden = fns.hidden(emb, _positions(batch, 1), mask)
    hidden = hidden[:, prefix_len - 1:prefix_len + resp_len - 1]
  else:
    start = jnp.full_like(batch.response[:, :1], start_id)
    inputs = jnp.concatenate([start, batch.response[:, :-1]], axis=1)  # [batch, R]
    input_valid = jnp.concatenate([jnp.ones_like(batch.response_valid[:, :1]),
                                   batch.response_valid[:, :-1]], axis=1)
    hidden = _run(fns, batch, [inputs], causal, input_valid)[:, prefix_len:]
  ce, predicted = losses.chunked_cross_entropy(hidden, batch.response, fns.logits,
                                               loss_chunk)  # [batch, R] each
  loss = losses.ar_loss_from_ce(ce, batch.response_valid)
  return loss, _accuracy_metrics(predicted, batch.response, batch.response_valid, loss)


def mdm_objective(fns: DecoderFns, batch: ResponseBatch, rng: Array,
                  diffusion_cfg: ml_collections.ConfigDict, mask_id: int, eos_id: int,
                  block_size: Optional[int] = None, shift: bool = False,
                  loss_chunk: int = 0) -> tuple[Array, dict]:
  """Block-diffusion ELBO over the response (prefix always visible, never scored); with
  shift and two_stream, plus `diffusion_cfg.ar_weight` times the AR loss of the causal clean
  stream (`clean_ar_loss`).

  `diffusion_cfg.complementary_masks`: every example twice, with a draw's mask and its
  complement (`masking.complementary_pair`), twice the denoiser rows per step.
  block_size overrides `diffusion_cfg.block_size` (the Talker uses its chunk size);
  shift: shifted logits (see `denoiser_logits`); loss_chunk: see `LMProblem`.
  """
  block = block_size or diffusion_cfg.block_size
  complementary = diffusion_cfg.get("complementary_masks", False)
  valid = masking.block_valid(batch.response_valid, block)  # [batch, R]
  corruption = masking.sample_corruption(
      rng, valid, block_size=block, schedule=get_schedule(diffusion_cfg.schedule),
      strategy=diffusion_cfg.masking, hierarchical_prob=diffusion_cfg.hierarchical_prob,
      num_steps=diffusion_cfg.sampler_steps, layout=diffusion_cfg.layout,
      complementary=complementary, commit_order=diffusion_cfg.get("commit_order", "confidence"),
      scored_tokens=diffusion_cfg.get("scored_tokens", "masked"))
  if complementary:  # the pair's rows: the batch, then the same batch (its complement)
    batch, valid = repeat_batch(batch, 2), jnp.tile(valid, (2, 1))  # [2 batch, ...]
  target = masking.fill_block_tail(batch.response, batch.response_valid, valid, eos_id)
  if shift and diffusion_cfg.layout == "two_stream" and diffusion_cfg.score_first_token:
    corruption = masking.score_context_predicted(
        corruption, valid, block, diffusion_cfg.get("first_token_weight", 1.0))
  noisy = jnp.where(corruption.corrupted, mask_id, target)  # [batch, R]
  causal = attention_masks.clean_is_causal(diffusion_cfg, shift)
  states = denoiser_states(fns, batch, noisy, target, valid, block, diffusion_cfg.layout, causal)
  ce, predicted = losses.chunked_cross_entropy(states.hidden(shift), target, fns.logits,
                                               loss_chunk)  # [batch, R]
  loss = losses.mdm_loss_from_ce(ce, corruption.scored, corruption.weight, valid)
  metrics = _accuracy_metrics(predicted, target, corruption.scored, loss)
  metrics["mask_ratio"] = jnp.sum(corruption.corrupted & valid) / jnp.maximum(jnp.sum(valid), 1)
  ar_weight = diffusion_cfg.get("ar_weight", 0.0)
  if ar_weight and shift and diffusion_cfg.layout == "two_stream":
    if not causal:
      raise ValueError("diffusion.ar_weight needs clean_attention causal (the clean stream "
                       "is then an AR model)")
    metrics["ar_loss"] = clean_ar_loss(fns, states, batch)
    metrics["mdm_loss"] = loss
    loss = loss + ar_weight * metrics["ar_loss"]
    metrics["loss"] = loss
  return loss, metrics


def repeat_batch(batch: ResponseBatch, times: int) -> ResponseBatch:
  """The batch `times` over along its batch axis ([batch, ...] -> [times batch, ...]); the
  [R, P] `prefix_visibility` rule is shared by every row."""
  tile = lambda x: jnp.tile(x, (times,) + (1,) * (x.ndim - 1))  # noqa: E731
  positions = None if batch.positions is None else tuple(map(tile, batch.positions))
  return batch._replace(prefix_emb=tile(batch.prefix_emb), prefix_valid=tile(batch.prefix_valid),
                        response=tile(batch.response), response_valid=tile(batch.response_valid),
                        positions=positions)


class DenoiserStates(NamedTuple):
  """Hidden states of one denoiser pass, [batch, ., embed]."""
  before: Array  # [batch, 1, embed]: the prefix's last state
  noisy: Array  # [batch, R, embed]: x_t
  context: Array  # [batch, R, embed]: the clean copy (two_stream) or x_t (single_stream)
  block_size: int

  def hidden(self, shift: bool) -> Array:
    """[batch, R, embed]: the states whose logits score x_t's tokens. shift (Dream):
    position i predicts token i + 1, as in the AR model an MDM is adapted from; a block's
    first token is then predicted from the clean context before it (the prefix's last
    position, or the previous block's last clean position), the others from the noisy
    block."""
    if not shift:
      return self.noisy
    block_first = (jnp.arange(self.noisy.shape[1]) % self.block_size == 0)[None, :, None]
    from_block = jnp.concatenate([self.before, self.noisy[:, :-1]], axis=1)
    return jnp.where(block_first, self.shifted_context(), from_block)

  def logits(self, fns: DecoderFns, shift: bool) -> Array:
    """[batch, R, vocab] logits of x_t's tokens (`hidden`)."""
    return fns.logits(self.hidden(shift))

  def shifted_context(self) -> Array:
    """[batch, R, embed]: the clean state before each position (the prefix's last one for
    position 0), the state the shifted logits predict that position's token from."""
    return jnp.concatenate([self.before, self.context[:, :-1]], axis=1)


def denoiser_states(fns: DecoderFns, batch: ResponseBatch, noisy: Array, clean: Array,
                    valid: Array, block_size: int, layout: str = "two_stream",
                    causal_clean: bool = False) -> DenoiserStates:
  """Hidden states of the noisy response x_t given the prefix (and its clean copy).

  two_stream [prefix ; x_t ; x_0] (BD3-LM): block j of x_t sees clean blocks < j of x_0,
  so every block can be mid-denoising at once; causal_clean: x_0 attends causally (its
  states are the AR model's), else block-causally. single_stream [prefix ; x_t]
  block-causal, as the decoder sees it when only the last block is noisy.
  noisy, clean: [batch, R] ids; valid: [batch, R].
  """
  prefix_len, resp_len = batch.prefix_valid.shape[1], noisy.shape[1]
  if layout == "two_stream":
    hidden = _run(fns, batch, [noisy, clean],
                  attention_masks.bd3_mask(resp_len, block_size, causal_clean),
                  jnp.concatenate([valid, valid], 1))
    context = hidden[:, prefix_len + resp_len:]  # clean copy: [batch, R, embed]
  else:
    hidden = _run(fns, batch, [noisy], attention_masks.block_causal_mask(resp_len, block_size),
                  valid)
    context = hidden[:, prefix_len:]  # earlier blocks are clean in single-stream states
  return DenoiserStates(hidden[:, prefix_len - 1:prefix_len],
                        hidden[:, prefix_len:prefix_len + resp_len], context, block_size)


def denoiser_logits(fns: DecoderFns, batch: ResponseBatch, noisy: Array, clean: Array,
                    valid: Array, block_size: int, layout: str = "two_stream",
                    shift: bool = False, causal_clean: bool = False) -> Array:
  """Logits [batch, R, vocab] of the noisy response x_t given the prefix
  (`denoiser_states`, `DenoiserStates.logits`)."""
  return denoiser_states(fns, batch, noisy, clean, valid, block_size, layout,
                         causal_clean).logits(fns, shift)


def clean_ar_loss(fns: DecoderFns, states: DenoiserStates, batch: ResponseBatch) -> Array:
  """Next-token cross-entropy of the response from the causal clean stream's shifted states
  (`ar_objective`'s loss, computed on the states the MDM pass already has): every
  position's AR prediction, of which the decoder uses each block's first."""
  logits = fns.logits(states.shifted_context())  # [batch, R, vocab]
  return losses.ar_loss(logits, batch.response, batch.response_valid)


def _accuracy_metrics(predicted: Array, targets: Array, scored: Array, loss: Array) -> dict:
  """predicted, targets, scored: [batch, L]."""
  correct = (predicted == targets) & scored
  return {"loss": loss, "accuracy": jnp.sum(correct) / jnp.maximum(jnp.sum(scored), 1),
          "target_tokens": jnp.sum(scored)}
