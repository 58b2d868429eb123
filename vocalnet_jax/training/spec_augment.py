"""SpecAugment (Park et al., 2019) on padded log-mel batches, inside the jitted step.

Why: a small corpus of synthetic voices lets the encoder memorise its training
utterances (train CTC near zero, unseen questions misheard). Masking random frequency
bands and time spans of each question forces it to hear from context. Training only:
decoding never augments. Masked cells take the utterance's mean over its valid frames,
so a mask adds no new level to the features.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections

Array = jax.Array


class SpecAugmentConfig(NamedTuple):
  freq_masks: int = 0  # bands per utterance
  freq_width: int = 0  # each band's width is uniform in [0, freq_width] mel bins
  time_masks: int = 0  # spans per utterance
  time_width: int = 0  # each span's width is uniform in [0, time_width] frames ...
  time_fraction: float = 1.0  # ... and at most this fraction of the utterance's valid frames

  @classmethod
  def from_config(cls, c: ml_collections.ConfigDict | None) -> "SpecAugmentConfig":
    return cls(**c.to_dict()) if c is not None else cls()

  @property
  def enabled(self) -> bool:
    return (self.freq_masks > 0 and self.freq_width > 0) or (
        self.time_masks > 0 and self.time_width > 0)


def _spans(rng: Array, count: int, max_width: Array, extent: Array, size: int) -> Array:
  """Union of `count` spans per row over positions [0, size): each span's width is
  uniform in [0, max_width], its start uniform over [0, extent - width]. [b, size] bool."""
  b = extent.shape[0]
  rng_width, rng_start = jax.random.split(rng)
  width = jnp.floor(jax.random.uniform(rng_width, (b, count)) * (max_width[:, None] + 1))
  start = jnp.floor(jax.random.uniform(rng_start, (b, count))
                    * jnp.maximum(extent[:, None] - width + 1, 1))
  pos = jnp.arange(size)[None, None, :]  # [1, 1, size]
  inside = (pos >= start[..., None]) & (pos < (start + width)[..., None])  # [b, count, size]
  return jnp.any(inside, axis=1)


def spec_augment(mel: Array, mel_valid: Array, rng: Array, cfg: SpecAugmentConfig) -> Array:
  """mel [b, T, F] with frequency bands and time spans of the valid frames replaced by
  each utterance's mean; padding frames are left as they are."""
  if not cfg.enabled:
    return mel
  b, t, f = mel.shape
  valid = mel_valid.astype(mel.dtype)[..., None]  # [b, T, 1]
  lengths = jnp.sum(mel_valid, axis=1).astype(jnp.float32)  # [b]
  mean = jnp.sum(mel * valid, axis=(1, 2)) / jnp.maximum(lengths * f, 1)  # [b]
  rng_freq, rng_time = jax.random.split(rng)
  masked = jnp.zeros((b, t, f), bool)
  if cfg.freq_masks and cfg.freq_width:
    bands = _spans(rng_freq, cfg.freq_masks, jnp.full((b,), float(cfg.freq_width)),
                   jnp.full((b,), float(f)), f)  # [b, F]
    masked |= bands[:, None, :]
  if cfg.time_masks and cfg.time_width:
    widest = jnp.minimum(float(cfg.time_width), jnp.floor(cfg.time_fraction * lengths))
    masked |= _spans(rng_time, cfg.time_masks, widest, lengths, t)[:, :, None]
  masked &= mel_valid[..., None]
  return jnp.where(masked, mean[:, None, None], mel)
