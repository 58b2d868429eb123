"""Corruption of the response for MDM training: which target tokens become [MASK].

Three masks are kept apart everywhere:
  valid     [batch, L]  real response tokens (block-padded with eos), not padding;
  corrupted [batch, L]  positions replaced by mask_id (what the model must predict);
  loss      = valid & corrupted, weighted per block by the schedule's ELBO weight.

Two samplers, one noise level per block:
  * uniform: each block draws t (antithetic over batch x blocks) and masks each valid
    token with probability 1 - alpha(t);
  * hierarchical block-wise: a state a block-diffusion decoder actually meets. One
    "current" block c per example: blocks < c clean, block c with exactly
    ceil(k/S * n) masked tokens (k ~ U{1..S}, the ratios an S-step sampler visits),
    blocks > c fully masked.
`sample_corruption` mixes them per example with probability `hierarchical_prob`.
Every block with a non-zero noise level holds at least one target.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp

from vocalnet_jax.diffusion.schedule import Schedule, antithetic_times

Array = jax.Array


class Corruption(NamedTuple):
  corrupted: Array  # [batch, L] bool: replaced by mask_id
  weight: Array  # [batch, L] float: ELBO weight of each position's cross-entropy
  block_ratio: Array  # [batch, num_blocks] float: masked fraction of valid tokens per block


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
  return ranks < counts[..., None]


def uniform_block_corruption(rng: Array, valid: Array, block_size: int,
                             schedule: Schedule) -> Corruption:
  """One t per block, Bernoulli(1 - alpha(t)) masking, at least one target per block."""
  rng_t, rng_m, rng_pick = jax.random.split(rng, 3)
  vb = _to_blocks(valid, block_size)  # [batch, nb, B]
  batch, nb, _ = vb.shape
  t = antithetic_times(rng_t, batch * nb).reshape(batch, nb)  # [batch, nb]
  masked = jax.random.uniform(rng_m, vb.shape) < schedule.mask_prob(t)[..., None]
  masked &= vb
  # A valid block with no target contributes nothing: mask one random valid token.
  empty = ~jnp.any(masked, axis=-1) & jnp.any(vb, axis=-1)  # [batch, nb]
  masked |= _mask_exact_count(rng_pick, vb, empty.astype(jnp.int32))
  weight = jnp.broadcast_to(schedule.loss_weight(t)[..., None], vb.shape)
  return _finish(masked, weight, vb)


def hierarchical_block_corruption(rng: Array, valid: Array, block_size: int, num_steps: int,
                                  schedule: Schedule) -> Corruption:
  """Decoding-like states: clean | current block at ratio k/S | fully masked."""
  rng_c, rng_k, rng_m = jax.random.split(rng, 3)
  vb = _to_blocks(valid, block_size)  # [batch, nb, B]
  batch, nb, _ = vb.shape
  n_blocks = jnp.maximum(jnp.sum(jnp.any(vb, axis=-1), axis=1), 1)  # [batch]
  current = jax.random.randint(rng_c, (batch,), 0, n_blocks)  # [batch]
  ratio_c = jax.random.randint(rng_k, (batch,), 1, num_steps + 1) / num_steps  # [batch]
  block_idx = jnp.arange(nb)[None, :]
  ratio = jnp.where(block_idx < current[:, None], 0.0,
                    jnp.where(block_idx == current[:, None], ratio_c[:, None], 1.0))  # [batch, nb]
  n_valid = jnp.sum(vb, axis=-1)  # [batch, nb]
  counts = jnp.where(ratio > 0, jnp.maximum(jnp.ceil(ratio * n_valid), 1), 0).astype(jnp.int32)
  masked = _mask_exact_count(rng_m, vb, counts) & vb
  t = schedule.t_from_mask_ratio(jnp.maximum(ratio, 1e-3))
  weight = jnp.where(ratio[..., None] > 0, schedule.loss_weight(t)[..., None], 0.0)
  return _finish(masked, jnp.broadcast_to(weight, vb.shape), vb)


def _finish(masked: Array, weight: Array, vb: Array) -> Corruption:
  batch = masked.shape[0]
  ratio = jnp.sum(masked, -1) / jnp.maximum(jnp.sum(vb, -1), 1)  # [batch, nb]
  return Corruption(masked.reshape(batch, -1), weight.reshape(batch, -1), ratio)


class SamplerState(NamedTuple):
  corrupted: Array  # [batch, L] bool: still [MASK] at that step
  step: Array  # [batch, num_blocks] int: the sampler step each block is about to take


def topk_commit_count(left: Array, steps_left: Array) -> Array:
  """Tokens the top-k sampler commits at a step: an even share of the `left` masked
  tokens over the `steps_left` steps, ceil(left / steps_left) (all of them at the last)."""
  return -(-left // jnp.maximum(steps_left, 1))


def topk_remaining(n: Array, num_steps: int) -> Array:
  """Masked tokens left before each step of the top-k sampler (`step_rules.confidence_topk`)
  on n masked tokens: [...] -> [..., num_steps]."""
  left, out = n, []
  for i in range(num_steps):  # static, S <= block size
    out.append(left)
    left = left - topk_commit_count(left, num_steps - i)
  return jnp.stack(out, axis=-1)


def sampler_state_corruption(rng: Array, valid: Array, block_size: int, num_steps: int,
                             confidence: Optional[Array] = None) -> SamplerState:
  """Every block at a state an S-step top-k sampler meets: step k ~ U{0..S-1} per block,
  exactly `topk_remaining(n, S)[k]` of its n valid tokens masked: uniformly chosen, or,
  given the model's `confidence` [batch, L] in [0, 1], the least confident ones (the
  sampler commits the most confident first). With the [x_t ; x_0] layout each block
  sees clean earlier blocks, so all blocks are decoding-like at once."""
  rng_k, rng_m = jax.random.split(rng)
  vb = _to_blocks(valid, block_size)  # [batch, nb, B]
  step = jax.random.randint(rng_k, vb.shape[:2], 0, num_steps)  # [batch, nb]
  left = topk_remaining(jnp.sum(vb, axis=-1), num_steps)  # [batch, nb, S]
  counts = jnp.take_along_axis(left, step[..., None], axis=-1)[..., 0]  # [batch, nb]
  order = None if confidence is None else _to_blocks(confidence, block_size)
  masked = _mask_exact_count(rng_m, vb, counts, order) & vb
  return SamplerState(masked.reshape(valid.shape), step)


def sample_corruption(rng: Array, valid: Array, *, block_size: int, schedule: Schedule,
                      strategy: str, hierarchical_prob: float, num_steps: int) -> Corruption:
  """`uniform`, `hierarchical`, or a per-example mix of both (`mixed`)."""
  if strategy == "uniform":
    return uniform_block_corruption(rng, valid, block_size, schedule)
  if strategy == "hierarchical":
    return hierarchical_block_corruption(rng, valid, block_size, num_steps, schedule)
  if strategy != "mixed":
    raise ValueError(f"diffusion.masking={strategy!r}; use 'uniform', 'hierarchical' or 'mixed'")
  rng_u, rng_h, rng_pick = jax.random.split(rng, 3)
  uni = uniform_block_corruption(rng_u, valid, block_size, schedule)
  hier = hierarchical_block_corruption(rng_h, valid, block_size, num_steps, schedule)
  use_h = jax.random.uniform(rng_pick, (valid.shape[0], 1)) < hierarchical_prob  # [batch, 1]
  return Corruption(*(jnp.where(use_h, h, u) for h, u in zip(hier, uni)))
