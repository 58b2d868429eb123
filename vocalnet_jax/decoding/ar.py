"""Autoregressive decoding with a preallocated KV cache (the baseline of every number).

Prefill the prefix in one forward (its last position predicts token 0), then a
`lax.while_loop` that feeds one token per step until every row has emitted eos or
`max_new_tokens` are out. The whole request is one jitted call; NFE is counted.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp

from vocalnet_jax.decoding import sampling
from vocalnet_jax.decoding.lm import CachedLM, DecodeOutput, context_keys, finalize, prefill

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class ARConfig:
  """Sampling knobs (hashable: a static jit argument). temperature 0 = greedy."""
  eos_id: int
  temperature: float = 0.0
  top_k: int = 0
  top_p: float = 1.0
  suppress: tuple[int, ...] = ()  # ids never generated (the Thinker's [MASK])


@functools.partial(jax.jit, static_argnames=("lm", "cfg", "max_new_tokens", "stop_at_eos"))
def generate(lm: CachedLM, params: Any, prefix: Array, prefix_valid: Array, rng: Array, *,
             cfg: ARConfig, max_new_tokens: int, stop_at_eos: bool = True) -> DecodeOutput:
  """Answers a left-padded prefix [batch, P] (validity [batch, P]) token by token.

  stop_at_eos=False always generates `max_new_tokens` (fixed-length benchmarking).
  """
  batch, prefix_len = prefix.shape
  cache_len = prefix_len + max_new_tokens
  start = jnp.sum(prefix_valid, axis=1).astype(jnp.int32)  # [batch] first answer position
  def draw(logits: Array, key: Array) -> Array:
    logits = logits.at[..., list(cfg.suppress)].set(-jnp.inf) if cfg.suppress else logits
    return sampling.sample(logits, key, cfg.temperature, cfg.top_k, cfg.top_p)

  rng, first_rng = jax.random.split(rng)
  logits, cache = prefill(lm, params, prefix, prefix_valid, lm.init_cache(batch, cache_len))
  first = draw(logits, first_rng)  # [batch]
  out = jnp.full((batch, max_new_tokens), cfg.eos_id, jnp.int32).at[:, 0].set(first)

  def cond(carry):
    i, _, _, done, _, _ = carry
    return (i < max_new_tokens) & ~(stop_at_eos & jnp.all(done))

  def body(carry):
    i, out, cache, done, nfe, rng = carry
    rng, key = jax.random.split(rng)
    slot = prefix_len + i - 1  # cache slot of the token fed now
    mask = context_keys(prefix_valid, cache_len, slot + 1)[:, None, :]  # [batch, 1, C]
    fed = jax.lax.dynamic_slice_in_dim(out, i - 1, 1, axis=1)  # [batch, 1]
    hidden, cache = lm.forward(params, fed, (start + i - 1)[:, None], mask, cache, slot)
    token = draw(lm.logits(params, hidden)[:, 0], key)  # [batch]
    token = jnp.where(done, cfg.eos_id, token)
    out = jax.lax.dynamic_update_slice_in_dim(out, token[:, None], i, axis=1)
    return i + 1, out, cache, done | (token == cfg.eos_id), nfe + 1, rng

  init = (jnp.int32(1), out, cache, first == cfg.eos_id, jnp.int32(0), rng)
  _, out, _, _, nfe, _ = jax.lax.while_loop(cond, body, init)
  tokens, lengths = finalize(out, cfg.eos_id)
  return DecodeOutput(tokens, lengths, nfe)
