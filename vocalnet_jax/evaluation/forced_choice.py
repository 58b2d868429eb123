"""A stricter judge of spoken answers than the ASR's WER: forced choice among candidate texts.

Each candidate answer text is spoken once by the assistant voice (the voice the Talker
learns); a spoken answer is identified as the candidate whose rendering is nearest by
DTW over mean-normalised MFCCs. The judge never trains and needs no language model, so
its floor on the corpus audio is what the candidates allow: the corpus's answer audio is
the assistant voice reading the reference, distance 0 to its own rendering. Texts are
compared after `asr.normalize_text` ("198 is even." and "one hundred ninety eight is
even" are one candidate).
"""
from __future__ import annotations

from typing import Callable, Iterable, Optional

import librosa
import numpy as np

from vocalnet_jax.evaluation import asr, speech_eval

N_MFCC = 13  # c0 (loudness) is dropped: a vocoder's level must not decide the choice
WINDOW, HOP = 400, 160  # 25 ms / 10 ms at 16 kHz


def mfcc(wave: np.ndarray, sample_rate: int = asr.SAMPLE_RATE) -> np.ndarray:
  """[samples] float -> [frames, N_MFCC - 1] MFCCs c1.., mean-normalised per utterance
  (cepstral mean normalisation removes a constant channel colouring, e.g. a vocoder's)."""
  coeffs = librosa.feature.mfcc(y=np.asarray(wave, np.float32), sr=sample_rate, n_mfcc=N_MFCC,
                                n_fft=WINDOW, hop_length=HOP, n_mels=40).T[:, 1:]
  return coeffs - coeffs.mean(axis=0, keepdims=True)  # [frames, N_MFCC - 1]


class ForcedChoice:
  """Candidate texts rendered once each by `speak`; `choose` picks the nearest.

  speak: text -> [samples] waveform at 16 kHz (the assistant voice).
  """

  def __init__(self, speak: Callable[[str], np.ndarray], candidates: Iterable[str] = ()):
    self._speak = speak
    self._features: dict[str, np.ndarray] = {}  # normalised text -> [frames, dims], cached
    self._fixed: dict[str, None] = {}  # the candidate set (ordered): what every answer meets
    for text in candidates:
      self.add(text)

  @property
  def candidates(self) -> list[str]:
    """The normalised candidate texts, in the order they were added."""
    return list(self._fixed)

  def add(self, text: str) -> str:
    """Adds a candidate (a no-op for a text already present, or one without words);
    returns its normalised form."""
    key = self._render(text)
    if key:
      self._fixed[key] = None
    return key

  def _render(self, text: str) -> str:
    """Speaks `text` once (cached) without making it a candidate; its normalised form."""
    key = asr.normalize_text(text)
    if key and key not in self._features:
      self._features[key] = mfcc(self._speak(text))
    return key

  def distances(self, wave: np.ndarray, candidates: Iterable[str]) -> dict[str, float]:
    """DTW-MFCC distance (`speech_eval.dtw_mel_l1` over MFCC frames) from `wave` to each
    of `candidates` (texts; one not yet rendered is spoken once, and does not join the
    candidate set)."""
    feats = mfcc(wave)
    keys = [k for k in dict.fromkeys(self._render(c) for c in candidates) if k]
    return {k: speech_eval.dtw_mel_l1(feats, self._features[k]) for k in keys}

  def choose(self, wave: Optional[np.ndarray], extra: Iterable[str] = ()) -> str:
    """The normalised candidate (the fixed set plus `extra`) nearest to `wave`; "" for no
    audio."""
    if wave is None or not np.size(wave):
      return ""
    dist = self.distances(wave, self.candidates + list(extra))
    return min(dist, key=dist.get) if dist else ""

  def identifies(self, wave: Optional[np.ndarray], text: str) -> tuple[str, bool]:
    """(chosen candidate, whether it is `text`) among the fixed set plus `text` itself:
    every answer meets the same distractors, and its own text is always a choice."""
    chosen = self.choose(wave, [text])
    return chosen, bool(chosen) and chosen == asr.normalize_text(text)
