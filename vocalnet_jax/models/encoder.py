"""Whisper-style audio encoder and the frame-stacking adaptor into the Thinker.

`AudioEncoder` follows Whisper's encoder exactly (so HF Whisper weights import
one-to-one, see `hf_import.py`): conv1d(k=3) -> GELU -> conv1d(k=3, stride 2) ->
GELU -> + sinusoidal positions -> pre-LN transformer layers (biased projections,
no bias on `k_proj`) -> final LayerNorm. Unlike Whisper it takes a frame validity
mask: padded frames are zeroed before each conv and hidden from attention, so the
valid outputs of a padded batch equal those of the unpadded utterance. `scan_layers` and
`remat_policy` work as the decoder's (`decoder.scan_params` converts the params): the
30 s window makes each layer's attention the largest activation of the speech model.

`Adaptor` stacks k consecutive encoder frames (VocalNet: k=5, 50 Hz -> 10 Hz) and
maps them with a 2-layer MLP to the Thinker width.
"""
from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vocalnet_jax.models import layers
from vocalnet_jax.models.decoder import remat_layer

Array = jax.Array

# Whisper's "gelu" is the exact (erf) GELU, not flax's tanh approximation.
exact_gelu: Callable[[Array], Array] = lambda x: nn.gelu(x, approximate=False)  # noqa: E731


_kernel = layers._kernel  # fan-in truncated normal with logical axis names


def _zeros(names: tuple) -> nn.initializers.Initializer:
  return nn.with_logical_partitioning(nn.initializers.zeros, names)


def _layer_norm(eps: float, dtype: jnp.dtype, name: str) -> nn.LayerNorm:
  return nn.LayerNorm(epsilon=eps, dtype=dtype, name=name,
                      scale_init=nn.with_logical_partitioning(nn.initializers.ones, ("embed",)),
                      bias_init=_zeros(("embed",)))


def sinusoidal_positions(length: int, channels: int, max_timescale: float = 10000.0) -> Array:
  """Whisper's fixed position table: [length, channels] = [sin(t*w) ; cos(t*w)]."""
  increment = np.log(max_timescale) / (channels // 2 - 1)
  inv_timescales = jnp.exp(-increment * jnp.arange(channels // 2, dtype=jnp.float32))
  scaled_time = jnp.arange(length, dtype=jnp.float32)[:, None] * inv_timescales[None, :]
  return jnp.concatenate([jnp.sin(scaled_time), jnp.cos(scaled_time)], axis=1)


class EncoderAttention(nn.Module):
  """Whisper self-attention: biased q/v/out projections, unbiased k, no RoPE."""
  num_heads: int
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array, mask: Array) -> Array:
    """x: [batch, frames, embed]; mask: [batch, frames, frames] boolean."""
    head_dim = x.shape[-1] // self.num_heads

    def proj(name: str, use_bias: bool) -> Array:
      return nn.DenseGeneral((self.num_heads, head_dim), use_bias=use_bias, dtype=self.dtype,
                             kernel_init=_kernel(("embed", "heads", "kv")),
                             bias_init=_zeros(("heads", "kv")), name=name)(x)

    q = proj("q_proj", True)  # [batch, frames, heads, head_dim]
    k = proj("k_proj", False)
    v = proj("v_proj", True)
    q = nn.with_logical_constraint(q, ("batch", "length", "heads", "kv"))
    out = layers.dot_product_attention(q, k, v, mask)  # [batch, frames, heads, head_dim]
    return nn.DenseGeneral(x.shape[-1], axis=(-2, -1), dtype=self.dtype,
                           kernel_init=_kernel(("heads", "kv", "embed")),
                           bias_init=_zeros(("embed",)), name="out_proj")(out)


class EncoderLayer(nn.Module):
  """Pre-LN block: x + attn(ln(x)); x + fc2(gelu(fc1(ln(x))))."""
  num_heads: int
  mlp_dim: int
  norm_eps: float = 1e-5
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array, mask: Array) -> Array:
    """x: [batch, frames, embed]; mask: [batch, frames, frames]."""
    x = x + EncoderAttention(self.num_heads, self.dtype, name="self_attn")(
        _layer_norm(self.norm_eps, self.dtype, "self_attn_layer_norm")(x), mask)
    h = _layer_norm(self.norm_eps, self.dtype, "final_layer_norm")(x)
    h = nn.Dense(self.mlp_dim, dtype=self.dtype, kernel_init=_kernel(("embed", "mlp")),
                 bias_init=_zeros(("mlp",)), name="fc1")(h)  # [batch, frames, mlp]
    h = nn.with_logical_constraint(exact_gelu(h), ("batch", "length", "mlp"))
    x = x + nn.Dense(x.shape[-1], dtype=self.dtype, kernel_init=_kernel(("mlp", "embed")),
                     bias_init=_zeros(("embed",)), name="fc2")(h)
    return nn.with_logical_constraint(x, ("batch", "length", "embed"))


class ScannedEncoderLayer(EncoderLayer):
  """EncoderLayer in `nn.scan`'s (carry, output) form."""

  def __call__(self, x: Array, mask: Array) -> tuple[Array, None]:
    return super().__call__(x, mask), None


class AudioEncoder(nn.Module):
  """Whisper encoder on log-mel frames with a validity mask."""
  embed_dim: int
  num_layers: int
  num_heads: int
  mlp_dim: int
  norm_eps: float = 1e-5
  remat_policy: str = "none"  # decoder.REMAT_POLICIES: none | full | save_dots
  scan_layers: bool = False  # one nn.scan over the layers (params [layers, ...])
  dtype: jnp.dtype = jnp.float32
  stride: int = 2  # of the second conv; Whisper's 2 gives 50 frames/s from 100 mel frames/s

  @nn.compact
  def __call__(self, mel: Array, mel_mask: Array) -> tuple[Array, Array]:
    """mel: [batch, frames, n_mels]; mel_mask: [batch, frames] (True = real frame).

    Returns (hidden [batch, ceil(frames/stride), embed], mask [batch, ceil(frames/stride)]).
    Output frame j is centred on input frame stride*j, so it is valid iff that frame is.
    """
    def conv(x: Array, stride: int, name: str) -> Array:
      # kernel 2*stride-1 centred on frame stride*j covers every input frame (Whisper: 3)
      half = max(stride, 2) - 1
      return nn.Conv(self.embed_dim, kernel_size=(2 * half + 1,), strides=(stride,),
                     padding=((half, half),),
                     dtype=self.dtype, kernel_init=_kernel((None, None, "embed")),
                     bias_init=_zeros(("embed",)), name=name)(x)

    x = mel.astype(self.dtype) * mel_mask[..., None]  # [batch, frames, n_mels]
    x = exact_gelu(conv(x, 1, "conv1")) * mel_mask[..., None]  # [batch, frames, embed]
    x = exact_gelu(conv(x, self.stride, "conv2"))  # [batch, frames/stride, embed]
    mask = mel_mask[:, ::self.stride]  # [batch, frames/stride]
    x = x + sinusoidal_positions(x.shape[1], self.embed_dim).astype(self.dtype)
    x = nn.with_logical_constraint(x, ("batch", "length", "embed"))
    attn_mask = jnp.broadcast_to(mask[:, None, :], (x.shape[0], x.shape[1], x.shape[1]))
    args = (self.num_heads, self.mlp_dim, self.norm_eps, self.dtype)
    if self.scan_layers:
      x, _ = nn.scan(remat_layer(ScannedEncoderLayer, self.remat_policy, True),
                     variable_axes={"params": 0}, split_rngs={"params": True},
                     in_axes=(nn.broadcast,), length=self.num_layers,
                     metadata_params={nn.PARTITION_NAME: "layers"})(*args, name="layers")(
                         x, attn_mask)
    else:
      layer_cls = remat_layer(EncoderLayer, self.remat_policy, False)
      for i in range(self.num_layers):
        x = layer_cls(*args, name=f"layers_{i}")(x, attn_mask)
    return _layer_norm(self.norm_eps, self.dtype, "layer_norm")(x), mask


def stack_frames(x: Array, mask: Array, k: int) -> tuple[Array, Array]:
  """Concatenates k consecutive frames, right-padding the time axis to a multiple of k.

  x: [batch, frames, dim]; mask: [batch, frames]. Invalid frames are zeroed first so
  padding never leaks into a partly valid group. Returns ([batch, ceil(frames/k), k*dim],
  [batch, ceil(frames/k)]); a group is valid if any of its frames is.
  """
  b, t, d = x.shape
  pad = -t % k
  x = jnp.pad(x * mask[..., None], ((0, 0), (0, pad), (0, 0)))
  mask = jnp.pad(mask, ((0, 0), (0, pad)))
  return x.reshape(b, (t + pad) // k, k * d), mask.reshape(b, (t + pad) // k, k).any(axis=-1)


class Adaptor(nn.Module):
  """Frame stacking (k frames) -> Dense -> act -> Dense to the Thinker width."""
  out_dim: int
  hidden_dim: int
  stack: int = 5
  activation: Callable[[Array], Array] = nn.relu
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array, mask: Array) -> tuple[Array, Array]:
    """x: [batch, frames, enc_dim]; mask: [batch, frames].

    Returns (embeddings [batch, ceil(frames/stack), out_dim], mask [batch, ceil(frames/stack)]).
    """
    x, mask = stack_frames(x, mask, self.stack)  # [batch, groups, stack*enc_dim]
    # The stacked input is sharded over fsdp like any embed-sized input.
    h = nn.Dense(self.hidden_dim, dtype=self.dtype, kernel_init=_kernel(("embed", "mlp")),
                 bias_init=_zeros(("mlp",)), name="fc1")(x)  # [batch, groups, hidden]
    h = nn.with_logical_constraint(self.activation(h), ("batch", "length", "mlp"))
    out = nn.Dense(self.out_dim, dtype=self.dtype, kernel_init=_kernel(("mlp", "embed")),
                   bias_init=_zeros(("embed",)), name="fc2")(h)  # [batch, groups, out_dim]
    return nn.with_logical_constraint(out, ("batch", "length", "embed")), mask
