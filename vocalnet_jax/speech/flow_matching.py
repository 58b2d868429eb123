"""Conditional flow matching from speech tokens to log-mel (CosyVoice-style, small).

Three pure pieces, apart from each other:
  * `FlowDecoder`: a token encoder (embedding -> local-attention transformer at the token
    rate -> repeat to the mel rate -> conv -> `mu`, a coarse mel) and a velocity estimator
    v(x_t, t | mu, prompt mel) built from the project's transformer block plus a
    depthwise conv per layer. Attention is windowed (`attn_window` frames each side) and
    RoPE is relative, so a frame's output depends on a bounded neighbourhood only: this
    is what lets chunked (streaming) synthesis match one-shot synthesis.
  * `cfm_loss`: optimal-transport conditional flow matching (Lipman et al. 2023,
    sigma_min path) with classifier-free-guidance dropout and a random prompt-mel prefix.
  * `sample`: the probability-flow ODE from noise (t=0) to mel (t=1), Euler or midpoint,
    as one `lax.scan`; optional classifier-free guidance.

Noise is drawn per absolute frame index (`frame_noise`), so a frame gets the same noise
whether it is synthesised in one shot or inside a chunk.
"""
from __future__ import annotations

import math
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from vocalnet_jax.models import layers

Array = jax.Array


def local_attention_mask(valid: Array, window: int) -> Array:
  """valid: [batch, length] bool -> [batch, length, length]; key must be valid and,
  when window > 0, at most `window` positions from the query."""
  mask = jnp.broadcast_to(valid[:, None, :], valid.shape + valid.shape[-1:])
  if window > 0:
    idx = jnp.arange(valid.shape[-1])
    mask = mask & (jnp.abs(idx[:, None] - idx[None, :]) <= window)[None]
  return mask


def timestep_embedding(t: Array, dim: int, max_period: float = 10000.0) -> Array:
  """t: [batch] in [0, 1] -> sinusoidal features [batch, dim]."""
  half = dim // 2
  freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
  angles = 1000.0 * t[:, None].astype(jnp.float32) * freqs[None]  # [batch, half]
  return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)


def depthwise_conv(x: Array, kernel: Array) -> Array:
  """'SAME' zero-padded depthwise conv over time as a sum of shifts (XLA:CPU's grouped conv
  is slow). x: [batch, frames, channels]; kernel: [width, channels] (odd width)."""
  width = kernel.shape[0]
  padded = jnp.pad(x, ((0, 0), (width // 2, width // 2), (0, 0)))
  return sum(padded[:, j:j + x.shape[1]] * kernel[j] for j in range(width))


class ConvBlock(nn.Module):
  """Pre-norm residual depthwise conv over time (local smoothing the attention lacks)."""
  kernel_size: int

  @nn.compact
  def __call__(self, x: Array, valid: Array) -> Array:
    h = layers.RMSNorm(name="norm")(x) * valid[..., None]  # [batch, frames, embed]
    h = depthwise_conv(h, self.param("depthwise", nn.initializers.lecun_normal(),
                                     (self.kernel_size, x.shape[-1])))
    return x + nn.Dense(x.shape[-1], name="pointwise")(nn.gelu(h))


class Stack(nn.Module):
  """`num_layers` x (ConvBlock, transformer block) with windowed bidirectional attention.

  `film` [batch, embed] (optional) is added before every layer (time conditioning).
  """
  num_layers: int
  num_heads: int
  head_dim: int
  mlp_dim: int
  window: int
  kernel_size: int

  @nn.compact
  def __call__(self, x: Array, valid: Array, film: Optional[Array] = None) -> Array:
    positions = jnp.broadcast_to(jnp.arange(x.shape[1]), x.shape[:2])  # [batch, length]
    mask = local_attention_mask(valid, self.window)  # [batch, length, length]
    for i in range(self.num_layers):
      if film is not None:
        x = x + nn.Dense(x.shape[-1], name=f"film_{i}")(film)[:, None, :]
      x = ConvBlock(self.kernel_size, name=f"conv_{i}")(x, valid)
      x, _ = layers.DecoderLayer(self.num_heads, self.num_heads, self.head_dim, self.mlp_dim,
                                 name=f"block_{i}")(x, positions, mask)
    return layers.RMSNorm(name="final_norm")(x)


class FlowDecoder(nn.Module):
  """Speech tokens -> `mu` (coarse mel), and the flow velocity field over mels."""
  vocab_size: int
  upsample: int
  n_mels: int
  embed_dim: int
  encoder_layers: int
  estimator_layers: int
  num_heads: int
  mlp_dim: int
  token_window: int
  frame_window: int
  kernel_size: int = 5

  def setup(self):
    head_dim = self.embed_dim // self.num_heads
    self.embed = nn.Embed(self.vocab_size, self.embed_dim, name="embed")
    self.token_stack = Stack(self.encoder_layers, self.num_heads, head_dim, self.mlp_dim,
                             self.token_window, 3, name="token_encoder")
    self.frame_stack = Stack(1, self.num_heads, head_dim, self.mlp_dim, self.frame_window,
                             self.kernel_size, name="frame_encoder")
    self.mu_proj = nn.Dense(self.n_mels, name="mu_proj")
    self.in_proj = nn.Dense(self.embed_dim, name="in_proj")
    self.time_mlp = nn.Sequential([nn.Dense(self.embed_dim), nn.silu,
                                   nn.Dense(self.embed_dim)], name="time_mlp")
    self.estimator = Stack(self.estimator_layers, self.num_heads, head_dim, self.mlp_dim,
                           self.frame_window, self.kernel_size, name="estimator")
    self.out_proj = nn.Dense(self.n_mels, kernel_init=nn.initializers.zeros, name="out_proj")

  def encode(self, tokens: Array, token_valid: Array) -> Array:
    """tokens, token_valid: [batch, tokens] -> mu [batch, tokens * upsample, n_mels]."""
    h = self.token_stack(self.embed(tokens), token_valid)  # [batch, tokens, embed]
    h = jnp.repeat(h, self.upsample, axis=1)  # [batch, frames, embed]
    frame_valid = jnp.repeat(token_valid, self.upsample, axis=1)  # [batch, frames]
    h = self.frame_stack(h, frame_valid)
    return self.mu_proj(h) * frame_valid[..., None]  # [batch, frames, n_mels]

  def velocity(self, x_t: Array, t: Array, mu: Array, cond: Array, frame_valid: Array) -> Array:
    """x_t, mu, cond: [batch, frames, n_mels]; t: [batch] -> v [batch, frames, n_mels]."""
    h = self.in_proj(jnp.concatenate([x_t, mu, cond], axis=-1))  # [batch, frames, embed]
    h = self.estimator(h, frame_valid, self.time_mlp(timestep_embedding(t, self.embed_dim)))
    return self.out_proj(h) * frame_valid[..., None]

  def __call__(self, tokens: Array, token_valid: Array, x_t: Array, t: Array,
               cond: Array) -> Array:
    """Both halves in one call (used for `init`)."""
    mu = self.encode(tokens, token_valid)
    return self.velocity(x_t, t, mu, cond, jnp.repeat(token_valid, self.upsample, axis=1))


def decoder_from_config(model: ml_collections.ConfigDict, vocab_size: int,
                        upsample: int, n_mels: int) -> FlowDecoder:
  """Builds the FlowDecoder of a `config.model` block for a given token set and mel rate."""
  return FlowDecoder(vocab_size=vocab_size, upsample=upsample, n_mels=n_mels,
                     embed_dim=model.embed_dim, encoder_layers=model.encoder_layers,
                     estimator_layers=model.estimator_layers, num_heads=model.num_heads,
                     mlp_dim=model.mlp_dim, token_window=model.token_window,
                     frame_window=model.frame_window, kernel_size=model.kernel_size)


def frame_noise(key: Array, start: Array | int, num_frames: int, n_mels: int) -> Array:
  """Standard normal noise [num_frames, n_mels] for absolute frames start..start+num_frames-1.

  Each frame's noise depends only on (key, its index), so chunking cannot change it.
  """
  idx = jnp.arange(num_frames) + start
  return jax.vmap(lambda i: jax.random.normal(jax.random.fold_in(key, i), (n_mels,)))(idx)


def time_grid(num_steps: int, schedule: str) -> Array:
  """ODE times [num_steps + 1] from 0 to 1: `linear`, or `cosine` (denser near t=1, data)."""
  u = jnp.linspace(0.0, 1.0, num_steps + 1)
  if schedule == "linear":
    return u
  if schedule == "cosine":
    return 1.0 - jnp.cos(0.5 * jnp.pi * u)
  raise ValueError(f"time schedule must be 'linear' or 'cosine', got {schedule!r}")


def cfm_loss(model: FlowDecoder, params, tokens: Array, token_valid: Array, mel: Array,
             key: Array, *, sigma_min: float, cfg_dropout: float, prompt_prob: float,
             max_prompt_frac: float, t_schedule: str) -> Array:
  """OT conditional flow-matching loss, mean squared velocity error on scored frames.

  tokens, token_valid: [batch, tokens]; mel: [batch, frames, n_mels] normalised target.
  x_t = (1 - (1 - sigma_min) t) x0 + t x1 with x0 ~ N(0, I); target u = x1 - (1 - sigma_min) x0.
  With prob `prompt_prob` a random prefix (< max_prompt_frac) of the target is given as
  `cond` and not scored (in-context prompt, used to continue a stream). With prob
  `cfg_dropout` both mu and cond are zeroed (unconditional branch for guidance).
  """
  batch, frames, n_mels = mel.shape
  k_t, k_noise, k_prompt, k_plen, k_drop = jax.random.split(key, 5)
  frame_valid = jnp.repeat(token_valid, model.upsample, axis=1)  # [batch, frames]
  t = jax.random.uniform(k_t, (batch,))
  if t_schedule == "cosine":
    t = 1.0 - jnp.cos(0.5 * jnp.pi * t)
  x0 = jax.random.normal(k_noise, mel.shape)  # [batch, frames, n_mels]
  x_t = (1.0 - (1.0 - sigma_min) * t[:, None, None]) * x0 + t[:, None, None] * mel
  target = mel - (1.0 - sigma_min) * x0

  lengths = frame_valid.sum(-1)  # [batch]
  prompt_len = jnp.floor(jax.random.uniform(k_plen, (batch,)) * max_prompt_frac * lengths)
  prompt_len = jnp.where(jax.random.bernoulli(k_prompt, prompt_prob, (batch,)), prompt_len, 0)
  in_prompt = jnp.arange(frames)[None, :] < prompt_len[:, None]  # [batch, frames]
  cond = jnp.where(in_prompt[..., None], mel, 0.0)
  keep = ~jax.random.bernoulli(k_drop, cfg_dropout, (batch,))[:, None, None]  # [batch, 1, 1]

  mu = model.apply(params, tokens, token_valid, method=FlowDecoder.encode) * keep
  v = model.apply(params, x_t, t, mu, cond * keep, frame_valid, method=FlowDecoder.velocity)
  scored = (frame_valid & ~in_prompt).astype(jnp.float32)[..., None]  # [batch, frames, 1]
  return jnp.sum(scored * (v - target) ** 2) / (jnp.sum(scored) * n_mels)


def sample(model: FlowDecoder, params, mu: Array, cond: Array, frame_valid: Array,
           noise: Array, *, num_steps: int, method: str = "euler", t_schedule: str = "cosine",
           cfg_scale: float = 0.0) -> Array:
  """Integrates dx/dt = v(x, t) from x(0) = noise to t = 1 with a `lax.scan`.

  mu, cond, noise: [batch, frames, n_mels]; frame_valid: [batch, frames].
  `method`: `euler` (1 network call per step) or `midpoint` (2). With cfg_scale w > 0,
  v = (1 + w) v(x | mu, cond) - w v(x | 0, 0), both branches batched into one call.
  Returns the mel at t = 1 [batch, frames, n_mels] (padding frames zero). Deterministic:
  the only randomness is `noise`.
  """
  if method not in ("euler", "midpoint"):
    raise ValueError(f"ODE method must be 'euler' or 'midpoint', got {method!r}")
  batch = mu.shape[0]

  def v_fn(x, t):
    t_b = jnp.full((batch,), t)
    if cfg_scale == 0.0:
      return model.apply(params, x, t_b, mu, cond, frame_valid, method=FlowDecoder.velocity)
    both = model.apply(params, jnp.concatenate([x, x]), jnp.concatenate([t_b, t_b]),
                       jnp.concatenate([mu, jnp.zeros_like(mu)]),
                       jnp.concatenate([cond, jnp.zeros_like(cond)]),
                       jnp.concatenate([frame_valid, frame_valid]),
                       method=FlowDecoder.velocity)  # [2 * batch, frames, n_mels]
    return (1.0 + cfg_scale) * both[:batch] - cfg_scale * both[batch:]

  def step(x, t_pair):
    t0, t1 = t_pair[0], t_pair[1]
    dt = t1 - t0
    if method == "euler":
      return x + dt * v_fn(x, t0), None
    x_mid = x + 0.5 * dt * v_fn(x, t0)
    return x + dt * v_fn(x_mid, t0 + 0.5 * dt), None

  ts = time_grid(num_steps, t_schedule)
  x, _ = jax.lax.scan(step, noise * frame_valid[..., None], jnp.stack([ts[:-1], ts[1:]], -1))
  return x * frame_valid[..., None]
