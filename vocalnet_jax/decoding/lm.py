"""The network as a decoding loop sees it, plus the pieces AR and block diffusion share.

A decoding loop needs three things from a network: a cached forward over a few
positions, the vocabulary projection of hidden states, and an empty KV cache.
`CachedLM` bundles them as closures so one loop serves the Thinker (`decoder_lm`)
and, with their own closures, the Talker or the speech Thinker. It is a hashable
NamedTuple, passed to `jax.jit` as a static argument: the same model gives the
same object (`decoder_lm` is cached), so nothing recompiles per request.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from vocalnet_jax.diffusion import attention_masks
from vocalnet_jax.modeling import restore
from vocalnet_jax.models.decoder import Decoder, init_decoder_cache
from vocalnet_jax.models.layers import KVCache

Array = jax.Array
Cache = Sequence[KVCache]


class CachedLM(NamedTuple):
  """Closures a decoding loop calls (params are passed in, never captured)."""
  # (params, tokens [b, L], positions [b, L], mask [b, L, C], cache, cache_index) -> (hidden, cache)
  forward: Callable[[Any, Array, Array, Array, Cache, Array], tuple[Array, Cache]]
  logits: Callable[[Any, Array], Array]  # (params, hidden [b, L, embed]) -> [b, L, vocab] float32
  init_cache: Callable[[int, int], Cache]  # (batch, max_len) -> zero cache


class DecodeOutput(NamedTuple):
  tokens: Array  # [batch, max_new] int32, eos after the answer
  lengths: Array  # [batch] int32 answer tokens before the first eos (max_new if none)
  nfe: Array  # [] int32 network forwards after the prefill (the prefill is one more)


@functools.lru_cache(maxsize=None)
def decoder_lm(model: Decoder) -> CachedLM:
  """`CachedLM` of a text `Decoder` (flax modules hash by value, so this is cached)."""
  def forward(params, tokens, positions, mask, cache, cache_index):
    return model.apply({"params": params}, tokens, positions, mask, cache=cache,
                       cache_index=cache_index, method=Decoder.hidden_states)

  def logits(params, hidden):
    return model.apply({"params": params}, hidden, method=Decoder.logits)

  def init_cache(batch, max_len):
    return shard_cache(init_decoder_cache(model, batch, max_len))

  return CachedLM(forward, logits, init_cache)


def cast_params(params: Any, dtype: Any) -> Any:
  """Floating params in `dtype` for serving: a bf16 model then reads half the bytes per
  decode step (at batch 1 a step is bound by reading the weights). Layers already compute
  in their `dtype`, so matmuls see the same operands; only norm scales are rounded."""
  return restore.cast_params(params, dtype)


def shard_cache(cache: Cache) -> list[KVCache]:
  """Lays the cache out by logical axes (batch, length, kv_heads, kv) under the caller's
  mesh (`jax.set_mesh`) + `nn.logical_axis_rules` (a no-op without them), so a decode inside the
  training mesh keeps K/V sharded like the attention heads."""
  names = ("batch", "length", "kv_heads", "kv")
  return [KVCache(nn.with_logical_constraint(c.k, names), nn.with_logical_constraint(c.v, names))
          for c in cache]


def prefill(lm: CachedLM, params: Any, prefix: Array, prefix_valid: Array,
            cache: Cache) -> tuple[Array, Cache]:
  """Writes the (left-padded) prefix into cache[0:P]; returns the last position's logits.

  prefix: [batch, P] ids; prefix_valid: [batch, P]. Returns ([batch, vocab], cache).
  """
  positions = attention_masks.prefix_positions(prefix_valid, 0)  # [batch, P]
  mask = prefill_mask(prefix_valid, cache[0].k.shape[1])  # [batch, P, C]
  hidden, cache = lm.forward(params, prefix, positions, mask, cache, jnp.int32(0))
  return lm.logits(params, hidden[:, -1:])[:, 0], cache


def prefill_mask(prefix_valid: Array, cache_len: int) -> Array:
  """[batch, P, C]: the left-padded prefix in cache[0:P] sees its valid slots causally (as
  the prefix rows of training's `attention_masks.with_prefix`)."""
  prefix_len = prefix_valid.shape[1]
  mask = attention_masks.causal_mask(prefix_len)[None] & prefix_valid[:, None, :]  # [b, P, P]
  return jnp.pad(mask, ((0, 0), (0, 0), (0, cache_len - prefix_len)))


def block_mask(visible: Array, write_index: Array, own_valid: Array,
               causal: bool = False) -> Array:
  """[batch, B, C]: a block written at cache[write_index : write_index + B] sees the
  `visible` slots [batch, C] and its own valid slots (own_valid [batch, B]): all of them,
  or with `causal` those up to itself (a clean block under `diffusion.clean_attention`
  causal, as training's clean stream)."""
  batch, block = own_valid.shape
  own = jax.lax.dynamic_update_slice_in_dim(jnp.zeros((batch, visible.shape[1]), bool),
                                            own_valid, write_index, axis=1)  # [batch, C]
  own = jnp.broadcast_to(own[:, None, :], (batch, block, visible.shape[1]))
  if causal:
    slot = jnp.arange(visible.shape[1]) - write_index  # [C]: offset inside the block
    own = own & (slot[None, :] <= jnp.arange(block)[:, None])[None]  # [batch, B, C]
  return visible[:, None, :] | own


def context_keys(prefix_valid: Array, cache_len: int, end: Array) -> Array:
  """Cache slots a new query may see: valid prefix slots and generated slots [P, end).

  prefix_valid: [batch, P]; end: [] int. Returns [batch, cache_len] bool.
  """
  prefix_len = prefix_valid.shape[1]
  idx = jnp.arange(cache_len)
  prefix_keys = jnp.pad(prefix_valid, ((0, 0), (0, cache_len - prefix_len)))  # [batch, C]
  return prefix_keys | ((idx >= prefix_len) & (idx < end))[None, :]


def upto_first_eos(tokens: Array, eos_id: int) -> Array:
  """[batch, N] bool: positions up to and including the first eos (all without one); what
  training lets a later model see of an answer (its validity: answer + eos)."""
  is_eos = tokens == eos_id
  return jnp.cumsum(is_eos, axis=1) - is_eos == 0


def finalize(tokens: Array, eos_id: int) -> tuple[Array, Array]:
  """Answer length = index of the first eos; everything after it becomes eos.

  tokens: [batch, N] -> (tokens [batch, N], lengths [batch]).
  """
  is_eos = tokens == eos_id
  lengths = jnp.where(jnp.any(is_eos, axis=1), jnp.argmax(is_eos, axis=1), tokens.shape[1])
  after = jnp.arange(tokens.shape[1])[None, :] > lengths[:, None]
  return jnp.where(after, eos_id, tokens), lengths.astype(jnp.int32)
