"""Decoder building blocks: RMSNorm, RoPE, grouped-query attention with a KV cache, SwiGLU.

Every parameter carries logical axis names (`embed`, `mlp`, `heads`, `kv_heads`, `kv`,
`vocab`) and activations are constrained to (`batch`, `length`, ...), so the
rules table in the config decides how they are laid out on the mesh.

Attention always takes an explicit boolean mask, so the same module serves causal
AR training, block-causal MDM training and cached decoding; the KV cache is plain
arrays passed in and returned (no mutable collections), which keeps decoding loops
pure functions that `lax.scan` / `lax.while_loop` can carry.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array
DType = jnp.dtype

_NEG_INF = -1e30


def _kernel(names: tuple, scale: float = 1.0) -> nn.initializers.Initializer:
  return nn.with_logical_partitioning(
      nn.initializers.variance_scaling(scale, "fan_in", "truncated_normal"), names)


class KVCache(NamedTuple):
  """Preallocated keys/values of one attention layer."""
  k: Array  # [batch, max_len, kv_heads, head_dim]
  v: Array  # [batch, max_len, kv_heads, head_dim]


def init_kv_cache(batch: int, max_len: int, num_layers: int, num_kv_heads: int,
                  head_dim: int, dtype: DType = jnp.float32) -> list[KVCache]:
  """Zero KV cache for every layer of a decoder."""
  shape = (batch, max_len, num_kv_heads, head_dim)
  return [KVCache(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype)) for _ in range(num_layers)]


class RMSNorm(nn.Module):
  """Root-mean-square layer norm (Llama / Qwen2)."""
  eps: float = 1e-6
  dtype: DType = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    scale = self.param("scale", nn.with_logical_partitioning(nn.initializers.ones, ("embed",)),
                       (x.shape[-1],), jnp.float32)
    x32 = x.astype(jnp.float32)
    y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
    return (y * scale).astype(self.dtype)


# Llama-3 RoPE frequency scaling as a hashable module field:
# (factor, low_freq_factor, high_freq_factor, original_max_position_embeddings).
RopeScaling = Optional[tuple[float, float, float, float]]


def rope_inv_freq(head_dim: int, theta: float, scaling: RopeScaling = None) -> Array:
  """Inverse frequencies [head_dim/2]; with `scaling`, HF's `llama3` rule: long
  wavelengths are divided by `factor`, short ones kept, the band between interpolated."""
  inv_freq = 1.0 / (theta ** (jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim))
  if scaling is None:
    return inv_freq
  factor, low_freq_factor, high_freq_factor, old_context = scaling
  wavelen = 2 * jnp.pi / inv_freq
  smooth = (old_context / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
  smoothed = (1 - smooth) * inv_freq / factor + smooth * inv_freq
  return jnp.where(wavelen < old_context / high_freq_factor, inv_freq,
                   jnp.where(wavelen > old_context / low_freq_factor, inv_freq / factor, smoothed))


def apply_rope(x: Array, positions: Array, theta: float, scaling: RopeScaling = None) -> Array:
  """Rotary embedding in the HF `rotate_half` convention.

  x: [batch, length, heads, head_dim]; positions: [batch, length] (int).
  """
  inv_freq = rope_inv_freq(x.shape[-1], theta, scaling)  # [head_dim/2]
  angles = positions[..., None].astype(jnp.float32) * inv_freq  # [batch, length, head_dim/2]
  angles = jnp.concatenate([angles, angles], axis=-1)[:, :, None, :]  # [batch, length, 1, head_dim]
  x32 = x.astype(jnp.float32)
  x1, x2 = jnp.split(x32, 2, axis=-1)
  rotated = jnp.concatenate([-x2, x1], axis=-1)
  return (x32 * jnp.cos(angles) + rotated * jnp.sin(angles)).astype(x.dtype)


# "einsum": the hand-written path below; "xla" / "cudnn": jax.nn.dot_product_attention with
# that `implementation=` (so a GPU/TPU run can pick a fused kernel; "xla" also runs on CPU).
ATTENTION_IMPLS = ("einsum", "xla", "cudnn")


def dot_product_attention(q: Array, k: Array, v: Array, mask: Array,
                          implementation: str = "einsum") -> Array:
  """Grouped-query attention with a boolean mask.

  q: [batch, q_len, heads, head_dim]; k, v: [batch, k_len, kv_heads, head_dim];
  mask: [batch, q_len, k_len] (True = may attend). Returns [batch, q_len, heads, head_dim].
  Rows with no visible key (padding queries) return zeros instead of NaNs.
  `implementation` is one of ATTENTION_IMPLS; the jax.nn paths match "einsum" within
  float tolerance (not bit for bit).
  """
  if implementation != "einsum":
    if implementation not in ATTENTION_IMPLS:
      raise ValueError(f"attention implementation={implementation!r}; choose from "
                       f"{ATTENTION_IMPLS}")
    # jax.nn takes K/V with fewer heads natively (GQA) and a mask broadcastable to
    # [batch, heads, q_len, k_len]; it softmaxes a fully masked row uniformly, so such
    # rows are zeroed after, as the einsum path does.
    out = jax.nn.dot_product_attention(q, k, v, mask=mask[:, None, :, :],
                                       implementation=implementation)
    visible = jnp.any(mask, axis=-1)[:, :, None, None]  # [batch, q_len, 1, 1]
    return jnp.where(visible, out, jnp.zeros((), out.dtype))
  b, q_len, heads, head_dim = q.shape
  kv_heads = k.shape[2]
  groups = heads // kv_heads
  q = q.reshape(b, q_len, kv_heads, groups, head_dim)
  logits = jnp.einsum("bqhgd,bkhd->bhgqk", q, k).astype(jnp.float32) / jnp.sqrt(head_dim)
  logits = jnp.where(mask[:, None, None, :, :], logits, _NEG_INF)
  weights = jax.nn.softmax(logits, axis=-1)
  weights = jnp.where(mask[:, None, None, :, :], weights, 0.0).astype(v.dtype)
  out = jnp.einsum("bhgqk,bkhd->bqhgd", weights, v)
  return out.reshape(b, q_len, heads, head_dim)


class Attention(nn.Module):
  """Multi-head attention with grouped KV heads, RoPE and an optional KV cache."""
  num_heads: int
  num_kv_heads: int
  head_dim: int
  rope_theta: float = 10000.0
  qkv_bias: bool = False
  dtype: DType = jnp.float32
  rope_scaling: RopeScaling = None
  attention_impl: str = "einsum"  # one of ATTENTION_IMPLS

  @nn.compact
  def __call__(self, x: Array, positions: Array, mask: Array,
               cache: Optional[KVCache] = None,
               cache_index: Optional[Array] = None) -> tuple[Array, Optional[KVCache]]:
    """x: [batch, length, embed]; mask: [batch, length, k_len] where k_len is
    `length` without a cache and the cache length with one. With a cache, the new
    K/V are written at `cache_index` and attention runs over the whole cache."""
    def proj(name, heads, axes):
      return nn.DenseGeneral((heads, self.head_dim), use_bias=self.qkv_bias, dtype=self.dtype,
                             kernel_init=_kernel(("embed",) + axes),
                             bias_init=nn.with_logical_partitioning(nn.initializers.zeros, axes),
                             name=name)(x)

    q = proj("q_proj", self.num_heads, ("heads", "kv"))  # [batch, length, heads, head_dim]
    k = proj("k_proj", self.num_kv_heads, ("kv_heads", "kv"))  # [batch, length, kv_heads, head_dim]
    v = proj("v_proj", self.num_kv_heads, ("kv_heads", "kv"))
    q = apply_rope(q, positions, self.rope_theta, self.rope_scaling)
    k = apply_rope(k, positions, self.rope_theta, self.rope_scaling)
    q = nn.with_logical_constraint(q, ("batch", "length", "heads", "kv"))
    new_cache = None
    if cache is not None:
      start = (0, cache_index, 0, 0)
      k = jax.lax.dynamic_update_slice(cache.k, k.astype(cache.k.dtype), start)
      v = jax.lax.dynamic_update_slice(cache.v, v.astype(cache.v.dtype), start)
      new_cache = KVCache(k, v)
    out = dot_product_attention(q, k.astype(self.dtype), v.astype(self.dtype), mask,
                                self.attention_impl)
    out = nn.DenseGeneral(x.shape[-1], axis=(-2, -1), use_bias=False, dtype=self.dtype,
                          kernel_init=_kernel(("heads", "kv", "embed")), name="o_proj")(out)
    return out, new_cache


class SwiGLU(nn.Module):
  """Gated MLP: down(silu(gate(x)) * up(x))."""
  mlp_dim: int
  dtype: DType = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    dense = lambda features, names, name: nn.Dense(  # noqa: E731
        features, use_bias=False, dtype=self.dtype, kernel_init=_kernel(names), name=name)
    h = nn.silu(dense(self.mlp_dim, ("embed", "mlp"), "gate_proj")(x)) * dense(
        self.mlp_dim, ("embed", "mlp"), "up_proj")(x)  # [batch, length, mlp]
    h = nn.with_logical_constraint(h, ("batch", "length", "mlp"))
    return dense(x.shape[-1], ("mlp", "embed"), "down_proj")(h)


class DecoderLayer(nn.Module):
  """Pre-norm transformer block: x + attn(norm(x)); x + mlp(norm(x))."""
  num_heads: int
  num_kv_heads: int
  head_dim: int
  mlp_dim: int
  rope_theta: float = 10000.0
  qkv_bias: bool = False
  norm_eps: float = 1e-6
  dtype: DType = jnp.float32
  rope_scaling: RopeScaling = None
  attention_impl: str = "einsum"  # one of ATTENTION_IMPLS

  @nn.compact
  def __call__(self, x: Array, positions: Array, mask: Array, cache: Optional[KVCache] = None,
               cache_index: Optional[Array] = None) -> tuple[Array, Optional[KVCache]]:
    h, new_cache = Attention(self.num_heads, self.num_kv_heads, self.head_dim, self.rope_theta,
                             self.qkv_bias, self.dtype, self.rope_scaling, self.attention_impl,
                             name="self_attn")(
                                 RMSNorm(self.norm_eps, self.dtype, name="input_norm")(x),
                                 positions, mask, cache, cache_index)
    x = x + h
    x = x + SwiGLU(self.mlp_dim, self.dtype, name="mlp")(
        RMSNorm(self.norm_eps, self.dtype, name="post_attention_norm")(x))
    x = nn.with_logical_constraint(x, ("batch", "length", "embed"))
    return x, new_cache
