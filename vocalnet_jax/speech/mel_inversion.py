"""Waveform <-> log-mel analysis for the vocoder, and the mel -> waveform stage.

The flow-matching decoder predicts log-mel frames; turning them back into audio is a
separate, swappable stage behind `MelInverter` (a callable `log_mel -> wave`).
`GriffinLimInverter` (mel filterbank pseudo-inverse + librosa Griffin-Lim phase recovery) is the
dependency-free default; a neural vocoder (e.g. a HiFi-GAN imported from local files)
only needs to implement the same call to replace it.

The analysis here is the vocoder's own (fixed, invertible parameters kept in
`MelConfig`) so generated and reference mels are always comparable and inversion
uses exactly the filterbank the targets were made with.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Protocol

import librosa
import numpy as np

LOG_FLOOR = 1e-5  # amplitude floor before log, about -100 dB


@dataclasses.dataclass(frozen=True)
class MelConfig:
  """STFT / mel parameters. hop_length=160 at 16 kHz gives 100 frames per second."""
  sample_rate: int = 16000
  n_fft: int = 1024
  win_length: int = 640
  hop_length: int = 160
  n_mels: int = 80
  fmin: float = 0.0
  fmax: float = 8000.0

  @property
  def frame_rate_hz(self) -> float:
    return self.sample_rate / self.hop_length

  def num_frames(self, num_samples: int) -> int:
    """Frames librosa (center=True) produces for `num_samples` samples."""
    return 1 + num_samples // self.hop_length


def log_mel(wave: np.ndarray, cfg: MelConfig) -> np.ndarray:
  """wave: [samples] float -> natural-log amplitude mel [frames, n_mels] float32."""
  wave = np.asarray(wave, np.float32)
  if wave.ndim != 1:
    raise ValueError(f"wave must be 1-D mono samples, got shape {wave.shape}")
  mel = librosa.feature.melspectrogram(
      y=wave, sr=cfg.sample_rate, n_fft=cfg.n_fft, win_length=cfg.win_length,
      hop_length=cfg.hop_length, n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.fmax,
      power=1.0)  # [n_mels, frames]
  return np.log(np.maximum(mel, LOG_FLOOR)).T.astype(np.float32)  # [frames, n_mels]


def log_spectral_distance(mel_a: np.ndarray, mel_b: np.ndarray) -> float:
  """RMS difference in dB between two natural-log amplitude mels, averaged over frames.

  Both [frames, n_mels]; the longer is cropped to the shorter.
  """
  n = min(len(mel_a), len(mel_b))
  diff_db = (20.0 / np.log(10.0)) * (mel_a[:n] - mel_b[:n])  # [frames, n_mels]
  return float(np.mean(np.sqrt(np.mean(diff_db ** 2, axis=-1))))


class MelInverter(Protocol):
  """Turns a log-mel [frames, n_mels] into a waveform [frames * hop_length] float32.

  Frame f is centred on sample f * hop_length, as in `log_mel`.
  """

  def __call__(self, mel: np.ndarray) -> np.ndarray:
    ...


@dataclasses.dataclass(frozen=True)
class GriffinLimInverter:
  """Mel pseudo-inverse then Griffin-Lim; deterministic (fixed phase init seed)."""
  cfg: MelConfig = MelConfig()
  n_iter: int = 32
  seed: int = 0

  @functools.cached_property
  def _mel_pinv(self) -> np.ndarray:
    """Pseudo-inverse of the mel filterbank [n_fft // 2 + 1, n_mels] (NNLS is ~50x slower)."""
    c = self.cfg
    basis = librosa.filters.mel(sr=c.sample_rate, n_fft=c.n_fft, n_mels=c.n_mels, fmin=c.fmin,
                                fmax=c.fmax)  # [n_mels, n_fft // 2 + 1]
    return np.linalg.pinv(basis).astype(np.float32)

  def __call__(self, mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, np.float32)
    if mel.ndim != 2 or mel.shape[1] != self.cfg.n_mels:
      raise ValueError(f"mel must be [frames, {self.cfg.n_mels}], got shape {mel.shape}")
    c = self.cfg
    # One repeated frame at the end so F frames give exactly F * hop samples.
    mel = np.concatenate([mel, mel[-1:]])  # [frames + 1, n_mels]
    stft_mag = np.maximum(self._mel_pinv @ np.exp(mel.T), 0.0)  # [n_fft // 2 + 1, frames + 1]
    wave = librosa.griffinlim(
        stft_mag, n_iter=self.n_iter, hop_length=c.hop_length, win_length=c.win_length,
        n_fft=c.n_fft, length=(len(mel) - 1) * c.hop_length, random_state=self.seed)
    return wave.astype(np.float32)  # [samples]
