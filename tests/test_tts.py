"""espeak-ng synthesis: shape, rate, determinism, speaker identity."""

import numpy as np
import pytest

from data_pipelines import tts


def test_synthesize_returns_16k_float_waveform():
  wav = tts.synthesize("What is three plus four?")
  raw = tts.synthesize_int16("What is three plus four?", tts.DEFAULT_SPEAKER)
  assert wav.dtype == np.float32 and wav.ndim == 1
  # Resampled from 22050 Hz to 16 kHz: same duration, within a few samples.
  assert abs(len(wav) - len(raw) * 16000 / tts.ESPEAK_SAMPLE_RATE) < 16
  assert 0.5 < len(wav) / 16000 < 4.0
  assert np.abs(wav).max() <= 1.0 and np.abs(wav).max() > 0.05


def test_synthesize_is_deterministic():
  # espeak-ng keeps static state across calls; output must not depend on call history.
  speaker = tts.Speaker(voice="en", variant="f2", rate=150, pitch=60)
  first = tts.synthesize("seven", speaker)
  tts.synthesize("something else entirely", tts.Speaker(variant="klatt"))
  np.testing.assert_array_equal(first, tts.synthesize("seven", speaker))


def test_speakers_differ_and_rate_changes_duration():
  slow = tts.synthesize("one two three four five", tts.Speaker(rate=120))
  fast = tts.synthesize("one two three four five", tts.Speaker(rate=240))
  assert len(slow) > 1.4 * len(fast)
  other = tts.synthesize("one two three four five", tts.Speaker(rate=120, variant="m3"))
  assert len(other) != len(slow) or not np.array_equal(other, slow)


def test_speaker_pool_is_deterministic_and_distinct():
  pool = tts.speaker_pool(12, seed=3)
  assert pool == tts.speaker_pool(12, seed=3)
  assert len({s.name for s in pool}) == 12
  assert pool != tts.speaker_pool(12, seed=4)


def test_empty_text_raises():
  with pytest.raises(ValueError, match="empty"):
    tts.synthesize("   ")


def test_speaker_names_round_trip_and_pools_exclude_a_voice():
  for speaker in tts.speaker_pool(12, seed=3) + [tts.DEFAULT_SPEAKER]:
    assert tts.Speaker.from_name(speaker.name) == speaker
  pool = tts.speaker_pool(12, seed=3)
  without = tts.speaker_pool(12, seed=3, exclude=(pool[0].name,))
  assert pool[0] not in without and len(without) == 12
  for bad in ("en-us", "en-us_r175_p50", "en-us_r20_p50_g50", "en-us_r175_p50_g500"):
    with pytest.raises(tts.VoiceError, match=bad) as err:
      tts.Speaker.from_name(bad)
    assert "{" not in str(err.value)
  with pytest.raises(tts.VoiceError, match="e.g. 'en-us_r175_p50_g50'"):
    tts.Speaker.from_name("en-us")
