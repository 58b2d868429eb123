"""Speech-unit tokenizer: mini-batch k-means (JAX) over stacked log-mel frames at 25 or 50 Hz.

Why: the Talker generates discrete speech tokens. The paper uses CosyVoice2's
25 Hz / 6561-code tokenizer, whose weights cannot be downloaded here, so we
learn our own codebook from the corpus audio. Any vocabulary size works
(default 512; 6561 = CosyVoice2's size).

Features: Whisper-style log-mel at 100 frames/s (`data_pipelines.features`),
then `pool = 100 / frame_rate_hz` consecutive frames are stacked into one
vector (25 Hz -> 4 frames, 50 Hz -> 2), standardised per dimension with the
fit data's mean/std. A waveform of S samples gives (1 + S // 160) // pool units.

Fitting is mini-batch k-means (Sculley 2010) jitted in JAX: each step assigns a
random batch of frames to the nearest centroid and moves each centroid to the
running mean of every frame it has been assigned; centroids that stay rare are
re-seeded from the batch (`reassign_ratio`), which keeps codebook usage high.
Encoding uses the same nearest-centroid rule in numpy, so the input pipeline
does no device work and no per-length recompilation.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Iterable

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath

from data_pipelines import features


@dataclasses.dataclass(frozen=True)
class UnitConfig:
  """Codebook size, unit rate and k-means schedule."""

  num_units: int = 512
  frame_rate_hz: int = 50  # 25 or 50 (must divide the 100 Hz mel rate)
  n_mels: int = 80
  num_steps: int = 300
  batch_frames: int = 4096
  reassign_ratio: float = 0.01  # re-seed centroids with count < ratio * mean count
  reassign_every: int = 20
  seed: int = 0

  @classmethod
  def from_config(cls, cfg) -> "UnitConfig":
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in dict(cfg).items() if k in names})


def _sq_distances(x: jax.Array, codebook: jax.Array) -> jax.Array:
  """||x - c||^2 for all pairs: [n, dim] x [k, dim] -> [n, k]."""
  return (jnp.sum(x * x, -1)[:, None] - 2.0 * x @ codebook.T
          + jnp.sum(codebook * codebook, -1)[None, :])


@jax.jit
def _kmeans_step(codebook: jax.Array, counts: jax.Array, batch: jax.Array):
  """One mini-batch update. codebook [k, dim], counts [k], batch [b, dim]."""
  assign = jnp.argmin(_sq_distances(batch, codebook), axis=-1)  # [b]
  k = codebook.shape[0]
  sums = jax.ops.segment_sum(batch, assign, num_segments=k)  # [k, dim]
  hits = jax.ops.segment_sum(jnp.ones_like(assign, jnp.float32), assign, num_segments=k)  # [k]
  new_counts = counts + hits
  # Running mean over all frames ever assigned: c <- (c * n_old + sum_batch) / n_new.
  updated = (codebook * counts[:, None] + sums) / jnp.maximum(new_counts, 1.0)[:, None]
  codebook = jnp.where(hits[:, None] > 0, updated, codebook)
  return codebook, new_counts


@jax.jit
def _reassign_rare(codebook: jax.Array, counts: jax.Array, batch: jax.Array, ratio: float,
                   key: jax.Array):
  """Moves centroids with count < ratio * mean(count) onto random batch frames."""
  rare = counts < ratio * jnp.mean(counts)  # [k]
  picks = jax.random.randint(key, (codebook.shape[0],), 0, batch.shape[0])  # [k]
  codebook = jnp.where(rare[:, None], batch[picks], codebook)
  counts = jnp.where(rare, jnp.min(jnp.where(rare, jnp.inf, counts)), counts)
  return codebook, counts


class UnitTokenizer:
  """Waveform (16 kHz) -> int32 unit ids in [0, num_units) at `frame_rate_hz`."""

  def __init__(self, codebook: np.ndarray, mean: np.ndarray, std: np.ndarray, config: UnitConfig):
    self.codebook = np.asarray(codebook, np.float32)  # [num_units, pool * n_mels]
    self.mean, self.std = np.asarray(mean, np.float32), np.asarray(std, np.float32)  # [dim]
    self.config = config
    self.mel_config = features.MelConfig(n_mels=config.n_mels)
    self._codebook_sq = np.sum(self.codebook ** 2, -1)  # [num_units]

  num_units = property(lambda self: self.config.num_units)
  frame_rate_hz = property(lambda self: self.config.frame_rate_hz)

  @staticmethod
  def pool(config: UnitConfig) -> int:
    """Mel frames per unit."""
    mel_rate = features.MelConfig(n_mels=config.n_mels).frames_per_second
    pool = mel_rate / config.frame_rate_hz
    if pool != int(pool) or pool < 1:
      raise ValueError(f"units.frame_rate_hz={config.frame_rate_hz} must divide {mel_rate:g} Hz")
    return int(pool)

  @staticmethod
  def stacked_frames(wav: np.ndarray, config: UnitConfig) -> np.ndarray:
    """Unstandardised features: [units, pool * n_mels] float32."""
    mel = features.log_mel(wav, features.MelConfig(n_mels=config.n_mels))  # [frames, n_mels]
    return UnitTokenizer.stack(mel, config)

  @staticmethod
  def stack(mel: np.ndarray, config: UnitConfig) -> np.ndarray:
    """Log-mel [frames, n_mels] -> [units, pool * n_mels] (a trailing partial unit dropped)."""
    pool = UnitTokenizer.pool(config)
    n = mel.shape[0] // pool
    return mel[:n * pool].reshape(n, pool * config.n_mels)

  def encode(self, wav: np.ndarray) -> np.ndarray:
    """16 kHz float waveform [samples] -> int32 [units]. Empty audio -> [0] units."""
    if np.asarray(wav).size == 0:
      return np.zeros((0,), np.int32)
    return self.encode_mel(features.log_mel(wav, self.mel_config))

  def encode_mel(self, mel: np.ndarray) -> np.ndarray:
    """Log-mel of `mel_config` [frames, n_mels] -> int32 [units]: what `encode` gives the
    audio the mel was computed from (e.g. a corpus's cached `answer_mel`)."""
    x = (self.stack(np.asarray(mel, np.float32), self.config) - self.mean) / self.std
    dist = self._codebook_sq[None, :] - 2.0 * x @ self.codebook.T  # [units, num_units]
    return np.argmin(dist, axis=-1).astype(np.int32)

  def decode_mel(self, units: np.ndarray) -> np.ndarray:
    """Units -> centroid log-mel [units * pool, n_mels] (a coarse reconstruction)."""
    x = self.codebook[np.asarray(units)] * self.std + self.mean  # [units, dim]
    return x.reshape(-1, self.config.n_mels)

  @classmethod
  def fit(cls, waveforms: Iterable[np.ndarray], config: UnitConfig = UnitConfig(),
          max_frames: int = 500_000) -> "UnitTokenizer":
    """Fits the codebook on the stacked frames of `waveforms` (at most `max_frames`)."""
    chunks, total = [], 0
    for wav in waveforms:
      if np.asarray(wav).size == 0:
        continue
      chunks.append(cls.stacked_frames(wav, config))
      total += chunks[-1].shape[0]
      if total >= max_frames:
        break
    frames = np.concatenate(chunks)[:max_frames] if chunks else np.zeros((0, 1), np.float32)
    if frames.shape[0] < config.num_units:
      raise ValueError(f"unit fitting needs at least num_units={config.num_units} frames at "
                       f"{config.frame_rate_hz} Hz, got {frames.shape[0]}: add audio or "
                       f"lower units.num_units")
    mean, std = frames.mean(0), frames.std(0) + 1e-5
    data = jnp.asarray((frames - mean) / std)  # [n, dim]
    rng = np.random.default_rng(config.seed)
    key = jax.random.PRNGKey(config.seed)
    codebook = data[rng.choice(data.shape[0], config.num_units, replace=False)]  # [k, dim]
    counts = jnp.zeros((config.num_units,), jnp.float32)
    batch_size = min(config.batch_frames, data.shape[0])
    for step in range(config.num_steps):
      batch = data[rng.choice(data.shape[0], batch_size, replace=False)]  # [b, dim]
      codebook, counts = _kmeans_step(codebook, counts, batch)
      if (step + 1) % config.reassign_every == 0 and step + 1 < config.num_steps:
        key, sub = jax.random.split(key)
        codebook, counts = _reassign_rare(codebook, counts, batch, config.reassign_ratio, sub)
    return cls(np.asarray(codebook), mean, std, config)

  def save(self, path: str) -> None:
    """Writes an .npz with the codebook, standardisation and config."""
    with open(path, "wb") as f:
      np.savez(f, codebook=self.codebook, mean=self.mean, std=self.std,
               config=json.dumps(dataclasses.asdict(self.config)))

  @classmethod
  def load(cls, path: str) -> "UnitTokenizer":
    """From a local or `gs://` (etils.epath) .npz."""
    with epath.Path(path).open("rb") as f, np.load(f) as z:
      config = UnitConfig(**json.loads(str(z["config"])))
      if z["codebook"].shape[0] != config.num_units:
        raise ValueError(f"{path}: codebook has {z['codebook'].shape[0]} rows, config says "
                         f"{config.num_units}")
      return cls(z["codebook"], z["mean"], z["std"], config)


def codebook_usage(unit_sequences: Iterable[np.ndarray], num_units: int) -> dict[str, float]:
  """Fraction of codes used and the perplexity of the unit histogram."""
  counts = np.zeros((num_units,), np.int64)
  for units in unit_sequences:
    counts += np.bincount(np.asarray(units, np.int64), minlength=num_units)
  p = counts / max(counts.sum(), 1)
  entropy = -np.sum(p[p > 0] * np.log(p[p > 0]))
  return {"used_fraction": float(np.mean(counts > 0)), "perplexity": float(np.exp(entropy)),
          "num_tokens": int(counts.sum())}


def units_per_second(tokenizer: UnitTokenizer, wav: np.ndarray, sample_rate: int = 16000) -> float:
  """Measured unit rate of `tokenizer` on `wav` (should be ~frame_rate_hz)."""
  return tokenizer.encode(wav).size / (np.asarray(wav).size / sample_rate)
