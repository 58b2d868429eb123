"""AR and MDM objectives for a decoder that answers a prefix (prompt / audio / states).

Both take the prefix as embeddings, so the same code trains the text-only Thinker,
the speech Thinker (audio frames spliced into the prompt) and the Talker (fused
Thinker states as the prefix). The decoder only ever sees `mask_id` as one more token.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

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
  prefix_emb: Array  # [batch, P, embed]
  prefix_valid: Array  # [batch, P] bool
  response: Array  # [batch, R] int32 target ids (answer + eos, padded)
  response_valid: Array  # [batch, R] bool


def ar_objective(fns: DecoderFns, batch: ResponseBatch) -> tuple[Array, dict]:
  """Causal next-token loss over the response; the last prefix position predicts r_0."""
  prefix_len, resp_len = batch.prefix_valid.shape[1], batch.response.shape[1]
  emb = jnp.concatenate([batch.prefix_emb, fns.embed(batch.response)], axis=1)
  mask = attention_masks.with_prefix(attention_masks.causal_mask(resp_len), batch.prefix_valid,
                                     batch.response_valid)
  positions = attention_masks.prefix_positions(batch.prefix_valid, resp_len)
  hidden = fns.hidden(emb, positions, mask)  # [batch, P+R, embed]
  logits = fns.logits(hidden[:, prefix_len - 1:prefix_len + resp_len - 1])  # [batch, R, vocab]
  loss = losses.ar_loss(logits, batch.response, batch.response_valid)
  return loss, _accuracy_metrics(logits, batch.response, batch.response_valid, loss)


def mdm_objective(fns: DecoderFns, batch: ResponseBatch, rng: Array,
                  diffusion_cfg: ml_collections.ConfigDict, mask_id: int,
                  eos_id: int) -> tuple[Array, dict]:
  """Block-diffusion ELBO over the response (prefix always visible, never scored)."""
  prefix_len, resp_len = batch.prefix_valid.shape[1], batch.response.shape[1]
  block = diffusion_cfg.block_size
  valid = masking.block_valid(batch.response_valid, block)  # [batch, R]
  target = masking.fill_block_tail(batch.response, batch.response_valid, valid, eos_id)
  corruption = masking.sample_corruption(
      rng, valid, block_size=block, schedule=get_schedule(diffusion_cfg.schedule),
      strategy=diffusion_cfg.masking, hierarchical_prob=diffusion_cfg.hierarchical_prob,
      num_steps=diffusion_cfg.sampler_steps)
  noisy = jnp.where(corruption.corrupted, mask_id, target)  # [batch, R]
  if diffusion_cfg.layout == "two_stream":  # [prefix ; x_t ; x_0]
    body = attention_masks.bd3_mask(resp_len, block)
    streams, key_valid, repeats = [noisy, target], jnp.concatenate([valid, valid], 1), 2
  else:  # single_stream: [prefix ; x_t] block-causal, as the decoder sees it
    body = attention_masks.block_causal_mask(resp_len, block)
    streams, key_valid, repeats = [noisy], valid, 1
  emb = jnp.concatenate([batch.prefix_emb] + [fns.embed(s) for s in streams], axis=1)
  mask = attention_masks.with_prefix(body, batch.prefix_valid, key_valid)
  positions = attention_masks.prefix_positions(batch.prefix_valid, resp_len, repeats)
  hidden = fns.hidden(emb, positions, mask)
  logits = fns.logits(hidden[:, prefix_len:prefix_len + resp_len])  # [batch, R, vocab]
  loss = losses.mdm_loss(logits, target, corruption.corrupted, valid, corruption.weight)
  scored = corruption.corrupted & valid
  metrics = _accuracy_metrics(logits, target, scored, loss)
  metrics["mask_ratio"] = jnp.sum(scored) / jnp.maximum(jnp.sum(valid), 1)
  return loss, metrics


def _accuracy_metrics(logits: Array, targets: Array, scored: Array, loss: Array) -> dict:
  correct = (jnp.argmax(logits, -1) == targets) & scored
  return {"loss": loss, "accuracy": jnp.sum(correct) / jnp.maximum(jnp.sum(scored), 1),
          "target_tokens": jnp.sum(scored)}
