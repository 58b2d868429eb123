"""A user's question audio: read, check and adapt one file before any model sees it.

Why: a spoken question comes from outside (a phone, a browser, another tool), so
every way it can be wrong must end in one line that names the file, not a
traceback. What can be fixed is fixed and said (other sample rates are
resampled, channels mixed down); silence is answered with a warning; what cannot
(missing, unreadable, empty, longer than the model's window) raises
`QuestionAudioError`, whose message is that one line.
"""
from __future__ import annotations

import os

import numpy as np
import soundfile as sf
import soxr

SILENCE_RMS = 1e-3  # a clip whose RMS is below this is silent


class QuestionAudioError(Exception):
  """Question audio that cannot be answered; `str(err)` is one line naming the file."""


def load_question_audio(path: str, sample_rate: int,
                        max_seconds: float) -> tuple[np.ndarray, list[str]]:
  """(float32 mono waveform [samples] at `sample_rate`, notes on what was changed or odd).

  Raises QuestionAudioError for a missing, unreadable or empty file, or one longer
  than `max_seconds`.
  """
  if not os.path.isfile(path):
    raise QuestionAudioError(f"question audio {path}: no such file")
  if os.path.getsize(path) == 0:
    raise QuestionAudioError(f"question audio {path}: the file is empty (0 bytes)")
  try:
    wav, rate = sf.read(path, dtype="float32", always_2d=True)  # [samples, channels]
  except (sf.SoundFileError, RuntimeError) as e:  # LibsndfileError for corrupt files
    reason = getattr(e, "error_string", None) or str(e).splitlines()[-1]
    raise QuestionAudioError(f"question audio {path}: cannot be decoded as audio "
                             f"(WAV, FLAC, OGG or MP3): {reason}") from None
  if wav.shape[0] == 0:
    raise QuestionAudioError(f"question audio {path}: the file has no samples")
  if not np.all(np.isfinite(wav)):
    raise QuestionAudioError(f"question audio {path}: the file has NaN or infinite samples")
  notes = []
  if wav.shape[1] > 1:
    notes.append(f"mixed {wav.shape[1]} channels down to mono")
  wav = wav.mean(axis=1)  # [samples]
  if rate != sample_rate:
    notes.append(f"resampled from {rate} Hz to {sample_rate} Hz")
    wav = soxr.resample(wav, rate, sample_rate, quality="HQ").astype(np.float32)
  if wav.size > max_seconds * sample_rate:
    raise QuestionAudioError(f"question audio {path}: {wav.size / sample_rate:.1f} s is longer "
                             f"than the model's {max_seconds:.2f} s window; trim it")
  rms = float(np.sqrt(np.mean(np.square(wav))))
  if rms < SILENCE_RMS:
    notes.append(f"warning: the audio is silent (RMS {rms:.1e} < {SILENCE_RMS}); "
                 "the answer will not be about anything said")
  return wav, [f"question audio {path}: {note}" for note in notes]
