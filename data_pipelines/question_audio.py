"""A user's question audio: read, check and adapt one file before any model sees it.

Why: a spoken question comes from outside (a phone, a browser, another tool), so
every way it can be wrong must end in one line that names the file, not a
traceback. What can be fixed is fixed and said (other sample rates are
resampled, channels mixed down); silence is answered with a warning; what cannot
(missing, unreadable, empty, longer than the model's window) raises
`QuestionAudioError`, whose message is that one line and whose `reason` says which.
A file on disk (`load_question_audio`) and bytes received over a network
(`decode_question_audio`) pass the same checks.
"""
from __future__ import annotations

import io
import os

import numpy as np
import soundfile as sf
import soxr

SILENCE_RMS = 1e-3  # a clip whose RMS is below this is silent
REASONS = ("missing", "empty", "not_audio", "too_long")  # QuestionAudioError.reason


class QuestionAudioError(Exception):
  """Question audio that cannot be answered; `str(err)` is one line naming the file and
  `reason` is one of REASONS."""

  def __init__(self, message: str, reason: str):
    super().__init__(message)
    self.reason = reason


def load_question_audio(path: str, sample_rate: int,
                        max_seconds: float) -> tuple[np.ndarray, list[str]]:
  """(float32 mono waveform [samples] at `sample_rate`, notes on what was changed or odd).

  Raises QuestionAudioError for a missing, unreadable or empty file, or one longer
  than `max_seconds`.
  """
  if not os.path.isfile(path):
    raise QuestionAudioError(f"question audio {path}: no such file", "missing")
  with open(path, "rb") as f:
    return decode_question_audio(f.read(), path, sample_rate, max_seconds)


def decode_question_audio(data: bytes, name: str, sample_rate: int,
                          max_seconds: float) -> tuple[np.ndarray, list[str]]:
  """`load_question_audio` of a file's bytes (WAV, FLAC, OGG or MP3); `name` names it in
  messages. A file that says it is longer than the window is refused before decoding."""
  if not data:
    raise QuestionAudioError(f"question audio {name}: the file is empty (0 bytes)", "empty")
  try:
    with sf.SoundFile(io.BytesIO(data)) as f:
      if f.frames > (max_seconds + 1.0) * f.samplerate:  # + 1 s: resampling rounds
        raise _too_long(name, f.frames / f.samplerate, max_seconds)
      wav, rate = f.read(dtype="float32", always_2d=True), f.samplerate  # [samples, channels]
  except (sf.SoundFileError, RuntimeError) as e:  # LibsndfileError for corrupt files
    reason = getattr(e, "error_string", None) or str(e).splitlines()[-1]
    raise QuestionAudioError(f"question audio {name}: cannot be decoded as audio "
                             f"(WAV, FLAC, OGG or MP3): {reason}", "not_audio") from None
  if wav.shape[0] == 0:
    raise QuestionAudioError(f"question audio {name}: the file has no samples", "empty")
  if not np.all(np.isfinite(wav)):
    raise QuestionAudioError(f"question audio {name}: the file has NaN or infinite samples",
                             "not_audio")
  notes = []
  if wav.shape[1] > 1:
    notes.append(f"mixed {wav.shape[1]} channels down to mono")
  wav = wav.mean(axis=1)  # [samples]
  if rate != sample_rate:
    notes.append(f"resampled from {rate} Hz to {sample_rate} Hz")
    wav = soxr.resample(wav, rate, sample_rate, quality="HQ").astype(np.float32)
  if wav.size > max_seconds * sample_rate:
    raise _too_long(name, wav.size / sample_rate, max_seconds)
  rms = float(np.sqrt(np.mean(np.square(wav))))
  if rms < SILENCE_RMS:
    notes.append(f"warning: the audio is silent (RMS {rms:.1e} < {SILENCE_RMS}); "
                 "the answer will not be about anything said")
  return wav, [f"question audio {name}: {note}" for note in notes]


def _too_long(name: str, seconds: float, max_seconds: float) -> QuestionAudioError:
  return QuestionAudioError(f"question audio {name}: {seconds:.1f} s is longer than the "
                            f"model's {max_seconds:.2f} s window; trim it", "too_long")
