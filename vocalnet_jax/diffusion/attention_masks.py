"""Attention masks as pure functions of (query index, key index, lengths, block size).

Training layout for block diffusion (BD3-LM): [prefix ; x_t ; x_0] where x_t is the
noisy response and x_0 its clean copy, both of length L and both using positions
P..P+L-1 for RoPE. Noisy block i sees the prefix, itself (bidirectionally) and the
clean blocks < i; the clean half is block-causal (or causal: `clean_causal`, whose states
are then an AR model's); the prefix is causal.
All masks are boolean, True = may attend, shaped [batch, queries, keys].
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array


CLEAN_ATTENTIONS = ("block", "causal")  # diffusion.clean_attention: the clean stream's rule


def clean_is_causal(diffusion_cfg, shift: bool) -> bool:
  """Whether the clean stream (training) and a finished block's K/V (decoding) attend
  causally: `diffusion.clean_attention` causal on a decoder with shifted logits (a Thinker
  adapted from AR, whose clean states then stay the AR model's); block-causal otherwise
  (the Talker, and runs saved before the knob)."""
  rule = diffusion_cfg.get("clean_attention", "block")
  if rule not in CLEAN_ATTENTIONS:
    raise ValueError(f"diffusion.clean_attention={rule!r}; choose from {CLEAN_ATTENTIONS}")
  return shift and rule == "causal"


def bd3_mask(length: int, block_size: int, clean_causal: bool = False) -> Array:
  """[2L, 2L] mask over [x_t ; x_0]; clean_causal: the clean copy attends causally inside
  its blocks too (block-causal otherwise)."""
  idx = jnp.arange(2 * length)
  is_clean = idx >= length
  block = (idx % length) // block_size
  q_clean, k_clean = is_clean[:, None], is_clean[None, :]
  q_block, k_block = block[:, None], block[None, :]
  noisy_self = ~q_clean & ~k_clean & (q_block == k_block)  # bidirectional inside a block
  noisy_to_clean = ~q_clean & k_clean & (k_block < q_block)  # clean context of earlier blocks
  clean_rule = (idx[None, :] <= idx[:, None]) if clean_causal else (k_block <= q_block)
  clean_to_clean = q_clean & k_clean & clean_rule  # (block-)causal clean stream
  return noisy_self | noisy_to_clean | clean_to_clean


def block_causal_mask(length: int, block_size: int) -> Array:
  """[L, L]: causal across blocks, bidirectional inside (single-stream / decoding)."""
  block = jnp.arange(length) // block_size
  return block[None, :] <= block[:, None]


def causal_mask(length: int) -> Array:
  """[L, L] lower-triangular."""
  return jnp.tril(jnp.ones((length, length), bool))


def with_prefix(body: Array, prefix_valid: Array, body_key_valid: Array,
                prefix_visibility: Array | None = None) -> Array:
  """Puts a causal prefix in front of a body mask and applies key validity.

  body: [N, N] mask among body tokens; prefix_valid: [batch, P];
  body_key_valid: [batch, N]; prefix_visibility: optional [N, P] rule saying which
  prefix positions each body token may see (default: all; the Talker's streaming
  rule limits it). The prefix sees itself causally and never the body.
  Returns [batch, P+N, P+N].
  """
  prefix_len, n = prefix_valid.shape[1], body.shape[0]
  if prefix_visibility is None:
    prefix_visibility = jnp.ones((n, prefix_len), bool)
  top = jnp.concatenate([causal_mask(prefix_len), jnp.zeros((prefix_len, n), bool)], axis=1)
  bottom = jnp.concatenate([prefix_visibility, body], axis=1)
  structure = jnp.concatenate([top, bottom], axis=0)  # [P+N, P+N]
  key_valid = jnp.concatenate([prefix_valid, body_key_valid], axis=1)  # [batch, P+N]
  return structure[None] & key_valid[:, None, :]


def prefix_positions(prefix_valid: Array, body_len: int, repeats: int = 1) -> Array:
  """RoPE positions: 0.. over valid (left-padded) prefix tokens, then the body continues;
  with repeats=2 the body positions are reused for the clean copy ([x_t ; x_0]).

  prefix_valid: [batch, P] -> [batch, P + repeats * body_len] int32.
  """
  prefix_pos = jnp.maximum(jnp.cumsum(prefix_valid, axis=1) - 1, 0)  # [batch, P]
  start = jnp.sum(prefix_valid, axis=1, keepdims=True)  # [batch, 1]
  body = start + jnp.arange(body_len)[None, :]  # [batch, body_len]
  return jnp.concatenate([prefix_pos] + [body] * repeats, axis=1).astype(jnp.int32)
