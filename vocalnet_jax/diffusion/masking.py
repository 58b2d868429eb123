"""Corruption of the response for MDM training: which target tokens become [MASK].

Three masks are kept apart everywhere:
  valid     [batch, L]  real response tokens (block-padded with eos), not padding;
  corrupted [batch, L]  positions replaced by mask_id (the model's input);
  scored    [batch, L]  positions whose cross-entropy enters the loss, with `weight`.

The samplers share one normalisation, not one objective: with every cross-entropy fixed
at 1 each weighted loss averages exactly 1 per valid token (tested). `uniform` is an
unbiased estimate of the block-diffusion ELBO; `hierarchical` visits only the masked
counts of an S-step sampler (`topk_remaining(n, S)`), so unless S = B it is a reweighted
subset of the ELBO's terms (the states decoding meets), not an estimate of the same ELBO.
No target is ever forced: a block whose draw masked nothing contributes nothing.

  * uniform: one t per block (antithetic over batch x blocks), each valid token masked
    with probability 1 - alpha(t), weight -alpha'(t) / (1 - alpha(t)) (MD4, BD3-LM).
  * hierarchical block-wise: the states a block decoder meets. A block of n valid
    tokens at sampler step k ~ U{0..S-1} holds exactly `topk_remaining(n, S)[k]` masked
    tokens m (the top-k sampler's own counts), weight n / m (LLaDA's count form).
    two_stream ([x_t ; x_0]): a noisy block already sees the clean copies of earlier
    blocks, so every block is its own decoding state and every valid block is scored.
    single_stream: one current block c ~ U{valid blocks}: blocks < c clean (the decoder's
    context), block c at a sampler state and scored with weight n_blocks * n / m (one
    block stands for all), blocks > c fully masked and not scored (c never sees them).
    The masked positions are uniformly chosen (the top-k sampler commits by confidence),
    or the block's last ones for a sampler committing left to right (`commit_order`).
    scored_tokens='committed' (left to right only) scores just the m' tokens the sampler
    commits from that state (the leftmost masked ones), weight n / m': the predictions
    of the other masked tokens are never used by that sampler.
`sample_corruption` mixes the two per example with probability `hierarchical_prob`.
complementary (Fast-dLLM v2): each example twice, with the draw's mask m and its complement
valid & ~m, so every valid token is a masked target exactly once per pair, and a block's
later tokens are met both with the earlier ones masked and with them clean
(`complementary_pair`; two_stream only).
uniform masking needs the two_stream layout: single_stream would score every block on
noisy earlier blocks, a context the decoder never gives it (`masking_fits_layout`).
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp

from vocalnet_jax.diffusion.schedule import Schedule, antithetic_times

Array = jax.Array
STRATEGIES = ("uniform", "hierarchical", "mixed")
LAYOUTS = ("two_stream", "single_stream")
# Which masked tokens the block sampler commits first: the most confident (top-k rules), or
# the leftmost (`step_rules.left_to_right`, LLaDA's semi-autoregressive sub-blocks).
COMMIT_ORDERS = ("confidence", "left_to_right")
# Which masked tokens of a hierarchical state are scored: all of them, or only those the
# sampler commits from that state (known before the forward pass for left_to_right only).
SCORED_TOKENS = ("masked", "committed")


class Corruption(NamedTuple):
  corrupted: Array  # [batch, L] bool: replaced by mask_id
  scored: Array  # [batch, L] bool: in the loss (corrupted, valid, in a scored block)
  weight: Array  # [batch, L] float: weight of each scored position's cross-entropy


def block_valid(response_valid: Array, block_size: int) -> Array:
  """Extends validity to the end of the block holding the last valid token.

  response_valid: [batch, L] (prefix-true) -> [batch, L]. Positions in the extension
  are targets too (filled with eos), so the model learns to end inside a block.
  """
  length = response_valid.shape[1]
  n_valid = jnp.sum(response_valid, axis=1, keepdims=True)  # [batch, 1]
  end = -(-n_valid // block_size) * block_size
  return jnp.arange(length)[None, :] < end


def fill_block_tail(response: Array, response_valid: Array, valid: Array, eos_id: int) -> Array:
  """eos in positions that `block_valid` added after the end of the response."""
  return jnp.where(valid & ~response_valid, eos_id, response)


def _to_blocks(x: Array, block_size: int) -> Array:
  """[batch, L] -> [batch, num_blocks, block_size]."""
  return x.reshape(x.shape[0], -1, block_size)


def _mask_exact_count(rng: Array, valid_blocks: Array, counts: Array,
                      order: Optional[Array] = None) -> Array:
  """Masks `counts[b, j]` valid positions of each block: uniformly chosen, or the lowest
  `order` first (order: [batch, nb, B] in [0, 1]).

  valid_blocks: [batch, nb, B] bool; counts: [batch, nb] int -> [batch, nb, B] bool.
  """
  if order is None:
    order = jax.random.uniform(rng, valid_blocks.shape)
  scores = jnp.where(valid_blocks, order, 2.0)
  ranks = jnp.argsort(jnp.argsort(scores, axis=-1), axis=-1)  # rank 0 = first to mask
  return (ranks < counts[..., None]) & valid_blocks


def left_to_right_priority(block_size: int) -> Array:
  """The left_to_right sampler's priority of each block position, [B] in (0, 1]: the
  leftmost first. Training states mask the lowest priority first (the block's last
  positions), so they are exactly the states that sampler meets."""
  return (block_size - jnp.arange(block_size)) / block_size


def _state_order(commit_order: str, shape: tuple[int, ...]) -> Optional[Array]:
  """`_mask_exact_count`'s order for a sampler committing in `commit_order`; shape
  [batch, nb, B]. None (uniformly chosen positions) for confidence: which tokens the model
  is sure of is not known without a forward pass."""
  if commit_order == "confidence":
    return None
  if commit_order != "left_to_right":
    raise ValueError(f"diffusion.commit_order={commit_order!r}; choose from {COMMIT_ORDERS}")
  return jnp.broadcast_to(left_to_right_priority(shape[-1]), shape)


def topk_commit_count(left: Array, steps_left: Array) -> Array:
  """Tokens the top-k sampler commits at a step: an even share of the `left` masked
  tokens over the `steps_left` steps, ceil(left / steps_left) (all of them at the last)."""
  return -(-left // jnp.maximum(steps_left, 1))


def topk_remaining(n: Array, num_steps: int) -> Array:
  """Masked tokens left before each step of the top-k sampler (`step_rules.confidence_topk`)
  on n masked tokens: [...] -> [..., num_steps]. The one definition of the sampler's
  states, used by the sampler, the training states and distillation alike."""
  left, out = n, []
  for i in range(num_steps):  # static, S <= block size
    out.append(left)
    left = left - topk_commit_count(left, num_steps - i)
  return jnp.stack(out, axis=-1)


def _sampler_counts(rng: Array, n_valid: Array, num_steps: int) -> tuple[Array, Array]:
  """A sampler step k ~ U{0..S-1} per block (stratified over batch x blocks, which lowers
  the loss variance as antithetic times do) and the masked count before it.

  n_valid: [batch, nb] -> (step [batch, nb], count [batch, nb])."""
  u = antithetic_times(rng, n_valid.size, eps=0.0).reshape(n_valid.shape)  # stratified
  step = jnp.minimum((u * num_steps).astype(jnp.int32), num_steps - 1)
  left = topk_remaining(n_valid, num_steps)  # [batch, nb, S]
  return step, jnp.take_along_axis(left, step[..., None], axis=-1)[..., 0]


def _finish(masked: Array, scored_blocks: Array, weight: Array,
            scored_in_block: Optional[Array] = None) -> Corruption:
  """masked [batch, nb, B], scored_blocks [batch, nb], weight [batch, nb] -> Corruption;
  scored_in_block [batch, nb, B]: the positions of a scored block in the loss (default:
  its masked ones)."""
  batch = masked.shape[0]
  scored = (masked if scored_in_block is None else scored_in_block) & scored_blocks[..., None]
  weight = jnp.where(scored, weight[..., None], 0.0)
  return Corruption(masked.reshape(batch, -1), scored.reshape(batch, -1),
                    weight.reshape(batch, -1))


def uniform_block_corruption(rng: Array, valid: Array, block_size: int,
                             schedule: Schedule) -> Corruption:
  """One t per block, Bernoulli(1 - alpha(t)) masking of valid tokens, ELBO weight."""
  rng_t, rng_m = jax.random.split(rng)
  vb = _to_blocks(valid, block_size)  # [batch, nb, B]
  batch, nb, _ = vb.shape
  t = antithetic_times(rng_t, batch * nb).reshape(batch, nb)  # [batch, nb]
  masked = (jax.random.uniform(rng_m, vb.shape) < schedule.mask_prob(t)[..., None]) & vb
  return _finish(masked, jnp.ones((batch, nb), bool), schedule.loss_weight(t))


def hierarchical_block_corruption(rng: Array, valid: Array, block_size: int, num_steps: int,
                                  layout: str = "two_stream",
                                  commit_order: str = "confidence",
                                  scored_tokens: str = "masked") -> Corruption:
  """Decoding states with the sampler's own masked counts (see the module docstring), at
  uniformly chosen positions or, for a left_to_right sampler, at the block's last ones;
  every masked token scored, or (`scored_tokens='committed'`) those the step commits."""
  rng_k, rng_m, rng_c = jax.random.split(rng, 3)
  vb = _to_blocks(valid, block_size)  # [batch, nb, B]
  order = _state_order(commit_order, vb.shape)
  n_valid = jnp.sum(vb, axis=-1)  # [batch, nb]
  has_tokens = n_valid > 0
  step, counts = _sampler_counts(rng_k, n_valid, num_steps)  # [batch, nb]
  masked = _mask_exact_count(rng_m, vb, counts, order)  # [batch, nb, B]
  if scored_tokens == "masked":
    scored_in_block = masked
  elif scored_tokens == "committed" and order is not None:
    commits = topk_commit_count(counts, num_steps - step)  # [batch, nb]
    # still masked after the step: the lowest-priority counts - commits of those masked now
    scored_in_block = masked & ~_mask_exact_count(rng_m, vb, counts - commits, order)
  else:
    raise ValueError(f"diffusion.scored_tokens={scored_tokens!r} with commit_order="
                     f"{commit_order!r}; choose from {SCORED_TOKENS} ('committed' needs "
                     "left_to_right: a confidence sampler's commits need the forward pass)")
  weight = n_valid / jnp.maximum(jnp.sum(scored_in_block, axis=-1), 1)  # [batch, nb]
  if layout == "two_stream":
    return _finish(masked, has_tokens, weight, scored_in_block)
  if layout != "single_stream":
    raise ValueError(f"diffusion.layout={layout!r}; choose from {LAYOUTS}")
  n_blocks = jnp.maximum(jnp.sum(has_tokens, axis=1, keepdims=True), 1)  # [batch, 1]
  current = jax.random.randint(rng_c, n_blocks.shape, 0, n_blocks)  # [batch, 1]
  block_idx = jnp.arange(vb.shape[1])[None, :]
  counts = jnp.where(block_idx < current, 0, jnp.where(block_idx == current, counts, n_valid))
  is_current = (block_idx == current) & has_tokens
  return _finish(_mask_exact_count(rng_m, vb, counts, order), is_current, n_blocks * weight,
                 scored_in_block)


def score_context_predicted(c: Corruption, valid: Array, block_size: int,
                            weight: float = 1.0) -> Corruption:
  """Scores the first token of every valid block on every draw, with weight `weight`.

  With shifted logits in the two_stream layout a block's first token is predicted from
  the clean context before the block (never from the noisy block), so its prediction
  does not depend on the draw. Its ELBO term, scored when masked with a weight whose
  expectation given the draw's masking rate is 1, can then be replaced by that
  expectation: the same expected loss with less variance (a Rao-Blackwellisation), and the
  token the first chunk waits for is trained as often as AR trains it. `weight` > 1
  trains it more than the ELBO does (no longer an ELBO: a reweighting towards the token a
  short answer is decided by).
  c: a two_stream corruption; valid: [batch, L]. Returns the corruption with
  `scored`/`weight` updated (`corrupted`, the model's input, unchanged).
  """
  first = (jnp.arange(valid.shape[1]) % block_size == 0)[None, :] & valid  # [batch, L]
  return c._replace(scored=c.scored | first, weight=jnp.where(first, weight, c.weight))


class SamplerState(NamedTuple):
  corrupted: Array  # [batch, L] bool: still [MASK] at that step
  step: Array  # [batch, num_blocks] int: the sampler step each block is about to take


def sampler_state_corruption(rng: Array, valid: Array, block_size: int, num_steps: int,
                             confidence: Optional[Array] = None) -> SamplerState:
  """Every block at a state an S-step top-k sampler meets (the two_stream hierarchical
  states): masked tokens uniformly chosen, or, given the model's `confidence` [batch, L]
  in [0, 1], the least confident ones (the sampler commits the most confident first)."""
  rng_k, rng_m = jax.random.split(rng)
  vb = _to_blocks(valid, block_size)  # [batch, nb, B]
  step, counts = _sampler_counts(rng_k, jnp.sum(vb, axis=-1), num_steps)
  order = None if confidence is None else _to_blocks(confidence, block_size)
  masked = _mask_exact_count(rng_m, vb, counts, order)
  return SamplerState(masked.reshape(valid.shape), step)


def complementary_pair(c: Corruption, valid: Array) -> Corruption:
  """The draw's rows, then the same rows with the complementary mask: [2 batch, L].

  Every valid position is corrupted in exactly one of the two rows and scored there with
  weight 2, so with the pair's valid tokens (twice the example's) as the denominator a
  unit cross-entropy gives exactly 1.0, whatever the draw. Needs the two_stream layout,
  where a block's earlier blocks are always clean (single_stream's complement would mask
  them). c: a two_stream corruption of [batch, L]; valid: [batch, L].
  """
  corrupted = jnp.concatenate([c.corrupted & valid, valid & ~c.corrupted], axis=0)
  return Corruption(corrupted, corrupted, jnp.where(corrupted, 2.0, 0.0))


def masking_fits_layout(strategy: str, layout: str) -> bool:
  """Whether training states of `strategy` are ones the decoder meets in `layout`:
  single_stream has no clean copy, so only hierarchical states keep earlier blocks clean."""
  return layout != "single_stream" or strategy == "hierarchical"


def sample_corruption(rng: Array, valid: Array, *, block_size: int, schedule: Schedule,
                      strategy: str, hierarchical_prob: float, num_steps: int,
                      layout: str = "two_stream", complementary: bool = False,
                      commit_order: str = "confidence",
                      scored_tokens: str = "masked") -> Corruption:
  """`uniform`, `hierarchical`, or a per-example mix of both (`mixed`); complementary:
  each draw with its complement (`complementary_pair`, rows [2 batch, L]); commit_order:
  the decoder's (`COMMIT_ORDERS`), which places the hierarchical states' masks;
  scored_tokens: which of their masked tokens are scored (`SCORED_TOKENS`)."""
  if complementary:
    if layout != "two_stream":
      raise ValueError("diffusion.complementary_masks needs layout='two_stream' (the "
                       "complement would mask single_stream's clean earlier blocks)")
    return complementary_pair(sample_corruption(
        rng, valid, block_size=block_size, schedule=schedule, strategy=strategy,
        hierarchical_prob=hierarchical_prob, num_steps=num_steps, layout=layout,
        commit_order=commit_order), valid)
  if strategy in STRATEGIES and not masking_fits_layout(strategy, layout):
    raise ValueError(f"diffusion.masking={strategy!r} needs layout='two_stream' (single_stream "
                     "would score blocks on noisy earlier blocks)")
  if strategy == "uniform":
    return uniform_block_corruption(rng, valid, block_size, schedule)
  if strategy == "hierarchical":
    return hierarchical_block_corruption(rng, valid, block_size, num_steps, layout, commit_order,
                                         scored_tokens)
  if strategy != "mixed":
    raise ValueError(f"diffusion.masking={strategy!r}; choose from {STRATEGIES}")
  rng_u, rng_h, rng_pick = jax.random.split(rng, 3)
  uni = uniform_block_corruption(rng_u, valid, block_size, schedule)
  hier = hierarchical_block_corruption(rng_h, valid, block_size, num_steps, layout, commit_order,
                                       scored_tokens)
  use_h = jax.random.uniform(rng_pick, (valid.shape[0], 1)) < hierarchical_prob  # [batch, 1]
  return Corruption(*(jnp.where(use_h, h, u) for h, u in zip(hier, uni)))
