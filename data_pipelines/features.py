"""Log-mel features with Whisper-style normalisation (librosa), parameters from config.

Why: the audio encoder consumes 10 ms log-mel frames; the speech-unit tokenizer
clusters the same frames. One function computes them so both agree.

`log_mel(wav, cfg)` -> float32 [frames, n_mels] with frames = 1 + len(wav) // hop
(librosa centred STFT, reflect padding), power spectrum, Slaney mel filters, then
Whisper's normalisation: log10(max(mel, 1e-10)), floor at (utterance max - 8),
then (x + 4) / 4, which puts speech roughly in [-1, 1].
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Sequence

import librosa
import numpy as np


@dataclasses.dataclass(frozen=True)
class MelConfig:
  """Log-mel parameters; defaults are Whisper's (16 kHz, 25 ms window, 10 ms hop, 80 bins)."""

  sample_rate: int = 16000
  n_fft: int = 400  # 25 ms
  hop_length: int = 160  # 10 ms
  n_mels: int = 80  # 80 or 128
  fmin: float = 0.0
  fmax: float | None = None  # None = sample_rate / 2
  dynamic_range_db: float = 80.0  # Whisper floors log10 mel at max - 8 (= 80 dB)

  @classmethod
  def from_config(cls, cfg) -> "MelConfig":
    """Builds from any mapping/ConfigDict with a subset of the field names."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in dict(cfg).items() if k in names})

  @property
  def frames_per_second(self) -> float:
    return self.sample_rate / self.hop_length


@functools.lru_cache(maxsize=8)
def mel_filters(cfg: MelConfig) -> np.ndarray:
  """Slaney mel filterbank, float32 [n_mels, n_fft // 2 + 1]."""
  return librosa.filters.mel(sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels,
                             fmin=cfg.fmin, fmax=cfg.fmax).astype(np.float32)


def num_frames(num_samples: int, cfg: MelConfig) -> int:
  """Frames `log_mel` returns for a waveform of `num_samples` samples."""
  return 1 + num_samples // cfg.hop_length


def log_mel(wav: np.ndarray, cfg: MelConfig = MelConfig()) -> np.ndarray:
  """float32 waveform [samples] at cfg.sample_rate -> normalised log-mel [frames, n_mels]."""
  wav = np.asarray(wav, np.float32)
  if wav.ndim != 1 or wav.size == 0:
    raise ValueError(f"log_mel expects a non-empty 1-D waveform, got shape {wav.shape}")
  stft = librosa.stft(wav, n_fft=cfg.n_fft, hop_length=cfg.hop_length, window="hann",
                      center=True, pad_mode="reflect")  # [n_fft // 2 + 1, frames]
  power = np.abs(stft) ** 2
  mel = mel_filters(cfg) @ power  # [n_mels, frames]
  log = np.log10(np.maximum(mel, 1e-10))
  log = np.maximum(log, log.max() - cfg.dynamic_range_db / 10.0)
  return ((log + 4.0) / 4.0).T.astype(np.float32)  # [frames, n_mels]


def padded_log_mels(waves: Sequence[np.ndarray], frames: int, rows: int = 0,
                    cfg: MelConfig = MelConfig()) -> tuple[np.ndarray, np.ndarray]:
  """Waveforms -> one fixed-shape log-mel batch, so a model compiles once: mel
  [rows, frames, n_mels] (each cut to `frames`, zero after it) and validity [rows, frames];
  rows past the waves (rows > len(waves); 0: len(waves)) are all padding."""
  mel = np.zeros((rows or len(waves), frames, cfg.n_mels), np.float32)
  valid = np.zeros(mel.shape[:2], bool)
  for row, wav in enumerate(waves):
    m = log_mel(wav, cfg)[:frames]  # [frames, n_mels]
    mel[row, :len(m)], valid[row, :len(m)] = m, True
  return mel, valid
