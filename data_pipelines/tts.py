"""Offline speech synthesis with espeak-ng (via ctypes) at 16 kHz.

Why: the embedded spoken-QA corpus and the vocoder tests need speech without
any download. The `espeakng-loader` pip package ships `libespeak-ng.so` and
its voice data; we drive it through ctypes in synchronous mode, collect the
int16 samples it hands to our callback (22050 Hz), and resample to 16 kHz.

Public API
----------
``synthesize(text: str, speaker: Speaker = DEFAULT_SPEAKER, sample_rate: int = 16000)
-> np.ndarray``
    float32 mono waveform in [-1, 1], shape [num_samples], at ``sample_rate``.
    Deterministic: the same (text, speaker) always gives the same samples.

``Speaker(voice="en-us", variant=None, rate=175, pitch=50, pitch_range=50)``
    A "speaker" is an espeak voice + optional variant (e.g. "f3", "m2", "klatt")
    + speaking rate (words/minute, 80..450) + pitch and pitch range (0..100).

``Speaker.from_name(name: str) -> Speaker``
    The inverse of ``Speaker.name`` (e.g. ``"en-us+f3_r160_p50_g50"``); how configs name a voice.

``speaker_pool(num_speakers: int, seed: int, exclude: Collection[str] = ()) -> list[Speaker]``
    ``num_speakers`` distinct speakers drawn deterministically from ``seed``, none named in
    ``exclude``.

espeak-ng is not thread-safe, so calls are serialised with a lock inside one
process; use several processes for parallel synthesis.
"""

from __future__ import annotations

import ctypes
import _ctypes
import dataclasses
import functools
import re
import threading
from typing import Collection

import numpy as np
import soxr

ESPEAK_SAMPLE_RATE = 22050
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_PARAM_RATE, _PARAM_PITCH, _PARAM_RANGE = 1, 3, 4
_EE_OK = 0

# int callback(short *wav, int numsamples, espeak_EVENT *events)
_SYNTH_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)

# English accents and voice variants that ship with espeakng-loader.
ENGLISH_VOICES = ("en-us", "en", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us-nyc")
VARIANTS = (None, "f1", "f2", "f3", "f4", "m1", "m2", "m3", "m4", "m5", "klatt", "klatt2")


class VoiceError(ValueError):
  """A voice name that `Speaker.from_name` cannot parse."""


@dataclasses.dataclass(frozen=True)
class Speaker:
  """espeak voice parameters that together act as one speaker identity."""

  voice: str = "en-us"
  variant: str | None = None
  rate: int = 175  # words per minute, espeak accepts 80..450
  pitch: int = 50  # 0..100
  pitch_range: int = 50  # 0..100

  @property
  def voice_name(self) -> str:
    """espeak voice name with variant, e.g. 'en-us+f3'."""
    return self.voice + (f"+{self.variant}" if self.variant else "")

  @property
  def name(self) -> str:
    """Stable, human-readable id, e.g. 'en-us+f3_r175_p50_g50'."""
    return f"{self.voice_name}_r{self.rate}_p{self.pitch}_g{self.pitch_range}"

  @classmethod
  def from_name(cls, name: str) -> "Speaker":
    """Parses `Speaker.name` ('VOICE[+VARIANT]_rRATE_pPITCH_gRANGE'); VoiceError if malformed."""
    match = _NAME.fullmatch(name)
    if match is None:
      raise VoiceError(f"voice {name!r} is not VOICE[+VARIANT]_rRATE_pPITCH_gRANGE, "
                       f"e.g. {DEFAULT_SPEAKER.name!r}")
    voice, variant, rate, pitch, pitch_range = match.groups()
    speaker = cls(voice, variant, int(rate), int(pitch), int(pitch_range))
    if not (80 <= speaker.rate <= 450 and 0 <= speaker.pitch <= 100
            and 0 <= speaker.pitch_range <= 100):
      raise VoiceError(f"voice {name!r}: rate must be 80..450, pitch and range 0..100")
    return speaker


_NAME = re.compile(r"([^+_]+)(?:\+([^_]+))?_r(\d+)_p(\d+)_g(\d+)")


DEFAULT_SPEAKER = Speaker()


def _load_library(path: str) -> ctypes.CDLL:
  """Opens a fresh copy of libespeak-ng with argument types declared."""
  lib = ctypes.CDLL(path)
  lib.espeak_Initialize.restype = ctypes.c_int
  lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
  lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
  lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
  lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
  lib.espeak_Synth.argtypes = [
      ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
      ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
  ]
  return lib


def _check(err: int, what: str) -> None:
  if err != _EE_OK:
    raise RuntimeError(f"espeak-ng {what} failed with error {err}")


_LOCK = threading.Lock()


def synthesize_int16(text: str, speaker: Speaker) -> np.ndarray:
  """Raw espeak output: int16 samples at 22050 Hz, shape [samples].

  espeak-ng keeps static state (pitch flutter phase, glottal wave phase) that
  survives espeak_Terminate, so consecutive calls in one process differ. We
  load a fresh copy of the library for every call and unload it afterwards
  (about 5 ms), which makes the output a pure function of (text, speaker).
  """
  import espeakng_loader  # pylint: disable=g-import-not-at-top

  voice = speaker.voice_name
  data = text.encode("utf-8") + b"\0"
  chunks: list[np.ndarray] = []

  def on_samples(wav, num_samples: int, _events) -> int:
    if num_samples > 0:
      chunks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
    return 0  # 0 = continue synthesis

  callback = _SYNTH_CALLBACK(on_samples)
  with _LOCK:
    lib = _load_library(espeakng_loader.get_library_path())
    try:
      rate = lib.espeak_Initialize(
          _AUDIO_OUTPUT_SYNCHRONOUS, 0, espeakng_loader.get_data_path().encode(), 0)
      if rate != ESPEAK_SAMPLE_RATE:
        raise RuntimeError(f"espeak_Initialize returned {rate}, expected {ESPEAK_SAMPLE_RATE}")
      lib.espeak_SetSynthCallback(callback)
      lib.espeak_ng_SetRandSeed(0)  # breath/roughness noise of some variants
      _check(lib.espeak_SetVoiceByName(voice.encode()), f"voice {voice!r}")
      _check(lib.espeak_SetParameter(_PARAM_RATE, speaker.rate, 0), "rate")
      _check(lib.espeak_SetParameter(_PARAM_PITCH, speaker.pitch, 0), "pitch")
      _check(lib.espeak_SetParameter(_PARAM_RANGE, speaker.pitch_range, 0), "range")
      _check(lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None),
             "synth")
      lib.espeak_Synchronize()
      lib.espeak_Terminate()
    finally:
      _ctypes.dlclose(lib._handle)  # pylint: disable=protected-access
  return np.concatenate(chunks) if chunks else np.zeros((0,), np.int16)


def synthesize(
    text: str, speaker: Speaker = DEFAULT_SPEAKER, sample_rate: int = 16000
) -> np.ndarray:
  """Speaks `text` with `speaker`; returns float32 [samples] in [-1, 1] at `sample_rate`."""
  if not text.strip():
    raise ValueError("synthesize: text is empty")
  pcm = synthesize_int16(text, speaker)  # [samples_22k] int16
  wav = pcm.astype(np.float32) / 32768.0
  if sample_rate != ESPEAK_SAMPLE_RATE:
    wav = soxr.resample(wav, ESPEAK_SAMPLE_RATE, sample_rate, quality="HQ")
  return np.clip(wav, -1.0, 1.0).astype(np.float32)


def speaker_pool(num_speakers: int, seed: int, exclude: Collection[str] = ()) -> list[Speaker]:
  """`num_speakers` distinct speakers (voice, variant, rate, pitch) drawn from `seed`.

  Speakers whose `name` is in `exclude` (e.g. the assistant voice) are never drawn.
  Cached: the corpus asks for its pool once per example (a 256-voice draw takes ~2 ms).
  """
  return list(_speaker_pool(num_speakers, seed, tuple(sorted(exclude))))


@functools.lru_cache(maxsize=16)
def _speaker_pool(num_speakers: int, seed: int, exclude: tuple[str, ...]) -> tuple[Speaker, ...]:
  rng = np.random.default_rng(seed)
  speakers: dict[str, Speaker] = {}
  while len(speakers) < num_speakers:
    speaker = Speaker(
        voice=ENGLISH_VOICES[rng.integers(len(ENGLISH_VOICES))],
        variant=VARIANTS[rng.integers(len(VARIANTS))],
        rate=int(rng.integers(14, 23)) * 10,  # 140..220 wpm
        pitch=int(rng.integers(6, 15)) * 5,  # 30..70
        pitch_range=int(rng.integers(6, 15)) * 5,
    )
    if speaker.name not in exclude:
      speakers.setdefault(speaker.name, speaker)
  return tuple(speakers.values())
