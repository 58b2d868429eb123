"""Neural mel -> waveform vocoder (Vocos-style): ConvNeXt over log-mel frames + iSTFT head.

`VocosGenerator` maps a normalised log-mel [frames, n_mels] to a log-magnitude and a
phase angle per STFT bin and frame; the waveform is their inverse STFT (`istft`, jnp:
irfft + window + overlap-add), with the STFT of the vocoder's own mel analysis
(`mel_inversion.MelConfig`: n_fft, win_length, hop_length), so frame f is centred on
sample f * hop_length exactly as in `mel_inversion.log_mel`.

Every time-mixing op (the embedding conv, each block's depthwise conv, the overlap-add)
sees only valid frames (invalid ones are zeroed, like 'SAME' padding at an utterance
edge), so a frame's samples depend on a bounded neighbourhood of valid frames
(`receptive_field_frames` each side, plus the iSTFT window). Padding an input to a fixed
length therefore changes nothing, and chunked synthesis with that much mel context on
each side (`stream_frames`) equals one-shot synthesis.

`NeuralInverter` wraps trained parameters + mel statistics as a `mel_inversion.MelInverter`
(log-mel -> waveform), the same call `GriffinLimInverter` implements.
"""
from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import librosa
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from vocalnet_jax.speech import flow_matching as fm
from vocalnet_jax.speech import mel_inversion as mi

Array = jax.Array
Params = Any
MAX_LOG_MAGNITUDE = float(np.log(100.0))  # clip before exp: bounded output at init


def stft_window(n_fft: int, win_length: int) -> np.ndarray:
  """Periodic Hann of `win_length` zero-padded to [n_fft], centred (librosa's window)."""
  return librosa.util.pad_center(librosa.filters.get_window("hann", win_length, fftbins=True),
                                 size=n_fft).astype(np.float32)


def _overlap_add(frames: Array, hop: int) -> Array:
  """frames: [..., F, n] -> [..., (F - 1) * hop + n] summed at offsets f * hop (dense shifts,
  no scatter: each frame is cut into ceil(n / hop) hop-long blocks)."""
  n_frames, n = frames.shape[-2:]
  blocks = -(-n // hop)
  frames = jnp.pad(frames, [(0, 0)] * (frames.ndim - 1) + [(0, blocks * hop - n)])
  frames = frames.reshape(frames.shape[:-1] + (blocks, hop))  # [..., F, blocks, hop]
  pad = [(0, 0)] * (frames.ndim - 3)
  out = sum(jnp.pad(frames[..., k, :], pad + [(k, blocks - 1 - k), (0, 0)])
            for k in range(blocks))  # [..., F + blocks - 1, hop]
  out = out.reshape(out.shape[:-2] + (-1,))
  return out[..., :(n_frames - 1) * hop + n]


def istft(spec: Array, n_fft: int, hop: int, win_length: int, frame_valid: Array | None = None
          ) -> Array:
  """Inverse STFT (librosa.istft with center=True, length=F * hop).

  spec: [..., F, n_fft // 2 + 1] complex; frame_valid: [..., F] bool (invalid frames add
  nothing, to the signal or to the window normalisation) -> [..., F * hop] float32.
  """
  window = jnp.asarray(stft_window(n_fft, win_length))  # [n_fft]
  valid = (jnp.ones(spec.shape[:-1], jnp.float32) if frame_valid is None
           else frame_valid.astype(jnp.float32))  # [..., F]
  frames = jnp.fft.irfft(spec, n=n_fft, axis=-1) * window * valid[..., None]  # [..., F, n_fft]
  signal = _overlap_add(frames, hop)
  norm = _overlap_add(valid[..., None] * window ** 2, hop)  # window sum-square
  signal = jnp.where(norm > 1e-8, signal / jnp.maximum(norm, 1e-8), 0.0)
  start = n_fft // 2
  return signal[..., start:start + spec.shape[-2] * hop].astype(jnp.float32)


def stft(wave: Array, n_fft: int, hop: int, win_length: int) -> Array:
  """librosa.stft(center=True, zero padding: librosa's default) in jnp: [..., samples] ->
  [..., 1 + samples // hop, n_fft // 2 + 1] complex."""
  pad = [(0, 0)] * (wave.ndim - 1) + [(n_fft // 2, n_fft // 2)]
  padded = jnp.pad(wave, pad)
  n_frames = 1 + wave.shape[-1] // hop
  idx = np.arange(n_frames)[:, None] * hop + np.arange(n_fft)[None]  # [F, n_fft]
  frames = padded[..., idx] * jnp.asarray(stft_window(n_fft, win_length))
  return jnp.fft.rfft(frames, axis=-1)


def log_mel(wave: Array, cfg: mi.MelConfig) -> Array:
  """`mel_inversion.log_mel` in jnp (differentiable): [..., samples] -> [..., F, n_mels]."""
  basis = librosa.filters.mel(sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels,
                              fmin=cfg.fmin, fmax=cfg.fmax).T  # [bins, n_mels]
  mag = jnp.abs(stft(wave, cfg.n_fft, cfg.hop_length, cfg.win_length))  # [..., F, bins]
  return jnp.log(jnp.maximum(mag @ jnp.asarray(basis), mi.LOG_FLOOR))


class ConvNeXtBlock(nn.Module):
  """Depthwise conv over time -> LayerNorm -> MLP, layer-scaled residual (Vocos block)."""
  dim: int
  intermediate_dim: int
  kernel_size: int
  layer_scale: float

  @nn.compact
  def __call__(self, x: Array, valid: Array) -> Array:
    # x: [batch, frames, dim]; valid: [batch, frames, 1] float
    kernel = self.param("dw_kernel", nn.initializers.lecun_normal(),
                        (self.kernel_size, self.dim))  # [width, dim]
    h = fm.depthwise_conv(x * valid, kernel) + self.param("dw_bias", nn.initializers.zeros,
                                                          (self.dim,))
    h = nn.LayerNorm(epsilon=1e-6)(h)
    h = nn.gelu(nn.Dense(self.intermediate_dim)(h))  # [batch, frames, intermediate]
    h = nn.Dense(self.dim)(h)
    gamma = self.param("layer_scale", nn.initializers.constant(self.layer_scale), (self.dim,))
    return x + gamma * h


class VocosGenerator(nn.Module):
  """Normalised log-mel -> (log-magnitude, phase) per STFT bin and frame."""
  n_fft: int
  dim: int
  intermediate_dim: int
  num_blocks: int
  kernel_size: int

  @property
  def receptive_field_frames(self) -> int:
    """Mel frames each side a frame's (log-magnitude, phase) depends on."""
    return (self.num_blocks + 1) * (self.kernel_size // 2)

  @nn.compact
  def __call__(self, mel: Array, valid: Array) -> tuple[Array, Array]:
    # mel: [batch, frames, n_mels]; valid: [batch, frames] bool
    v = valid[..., None].astype(mel.dtype)  # [batch, frames, 1]
    x = nn.Conv(self.dim, (self.kernel_size,), padding="SAME")(mel * v)  # [b, F, dim]
    x = nn.LayerNorm(epsilon=1e-6)(x)
    for _ in range(self.num_blocks):
      x = ConvNeXtBlock(self.dim, self.intermediate_dim, self.kernel_size,
                        1.0 / self.num_blocks)(x, v)
    x = nn.LayerNorm(epsilon=1e-6)(x)
    bins = self.n_fft // 2 + 1
    out = nn.Dense(2 * bins)(x)  # [batch, frames, 2 * bins]
    return out[..., :bins], out[..., bins:]  # log-magnitude, phase angle


def generator_from_config(config: ml_collections.ConfigDict) -> VocosGenerator:
  """config: the vocoder config (its `mel` and `neural.model` sections)."""
  m = config.neural.model
  return VocosGenerator(config.mel.n_fft, m.dim, m.intermediate_dim, m.num_blocks,
                        m.kernel_size)


def stream_frames(config: ml_collections.ConfigDict) -> tuple[int, int, int]:
  """(context, hold, lookahead) mel frames for `vocoder.stream_waveform`: a sample depends
  on `reach` frames each side (generator receptive field + iSTFT window), so dropping the
  last `reach` frames of each inversion and giving it reach + hold + reach frames of
  context makes every streamed sample equal its one-shot value; the `stream.crossfade_frames`
  joint is cross-faded as in the Griffin-Lim path."""
  istft_frames = -(-config.mel.win_length // 2 // config.mel.hop_length)
  reach = generator_from_config(config).receptive_field_frames + istft_frames
  hold = config.stream.crossfade_frames
  return 2 * reach + hold, hold, reach


def waveform(generator: VocosGenerator, params: Params, mel: Array, valid: Array,
             cfg: mi.MelConfig) -> Array:
  """mel: [batch, F, n_mels] normalised; valid: [batch, F] -> wave [batch, F * hop]."""
  log_mag, phase = generator.apply(params, mel, valid)  # [batch, F, bins] each
  spec = jnp.exp(jnp.minimum(log_mag, MAX_LOG_MAGNITUDE)) * jax.lax.complex(
      jnp.cos(phase), jnp.sin(phase))
  return istft(spec, cfg.n_fft, cfg.hop_length, cfg.win_length, valid)


def init_params(generator: VocosGenerator, key: jax.Array, n_mels: int) -> Params:
  mel = jnp.zeros((1, 8, n_mels))  # [1, frames, n_mels]
  return generator.init(key, mel, jnp.ones((1, 8), bool))


@functools.partial(jax.jit, static_argnames=("generator", "cfg"))
def _synthesize(generator: VocosGenerator, params: Params, mel: Array, valid: Array,
                cfg: mi.MelConfig) -> Array:
  return waveform(generator, params, mel[None], valid[None], cfg)[0]


@dataclasses.dataclass
class NeuralInverter:
  """Trained generator + the mel statistics it normalises with: log-mel -> waveform."""
  config: ml_collections.ConfigDict  # the vocoder config (mel + neural sections)
  params: Params
  mel_mean: np.ndarray  # [n_mels]
  mel_std: np.ndarray  # [n_mels]

  def __post_init__(self):
    self.generator = generator_from_config(self.config)
    self.mel_cfg = mi.MelConfig(**self.config.mel.to_dict())

  def __call__(self, mel: np.ndarray) -> np.ndarray:
    """mel: [frames, n_mels] natural-log -> wave [frames * hop_length] float32. Inputs are
    padded to a multiple of `neural.pad_frames` (masked: exact) to bound recompiles."""
    mel = np.asarray(mel, np.float32)
    if mel.ndim != 2 or mel.shape[1] != self.mel_cfg.n_mels:
      raise ValueError(f"mel must be [frames, {self.mel_cfg.n_mels}], got shape {mel.shape}")
    n, pad = len(mel), self.config.neural.pad_frames
    padded = np.zeros((max(-(-n // pad), 1) * pad, mel.shape[1]), np.float32)
    padded[:n] = (mel - self.mel_mean) / self.mel_std
    wave = _synthesize(self.generator, self.params, jnp.asarray(padded),
                       jnp.arange(len(padded)) < n, self.mel_cfg)
    return np.asarray(wave[:n * self.mel_cfg.hop_length])

  def save(self, directory: str) -> None:
    """Arrays only (orbax); the config travels in the enclosing vocoder's config.json."""
    state = {"params": self.params, "mel_mean": self.mel_mean, "mel_std": self.mel_std}
    with ocp.StandardCheckpointer() as ckpt:
      ckpt.save(os.path.abspath(directory), state, force=True)

  @classmethod
  def load(cls, directory: str, config: ml_collections.ConfigDict) -> "NeuralInverter":
    with ocp.StandardCheckpointer() as ckpt:
      state = ckpt.restore(os.path.abspath(directory))
    return cls(config, state["params"], np.asarray(state["mel_mean"]),
               np.asarray(state["mel_std"]))
