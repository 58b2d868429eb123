"""Speech-unit tokenizer: fit/encode/decode shapes, unit rate, save/load, codebook sizes."""

import os

import numpy as np
import pytest

from data_pipelines import spoken_qa, tts
from vocalnet_jax.speech import units


@pytest.fixture(scope="module")
def waveforms():
  speakers = tts.speaker_pool(4, 0)
  return [tts.synthesize(spoken_qa.make_example(0, "train", i, 4).answer, speakers[i % 4])
          for i in range(100)]  # about 3 minutes of speech


@pytest.mark.parametrize("rate", [25, 50])
def test_fit_encode_decode_shapes_and_rate(waveforms, rate, tmp_path):
  config = units.UnitConfig(num_units=64, frame_rate_hz=rate, num_steps=30, batch_frames=1024)
  tok = units.UnitTokenizer.fit(waveforms[:30], config)
  assert tok.num_units == 64 and tok.frame_rate_hz == rate
  wav = waveforms[40]
  ids = tok.encode(wav)
  assert ids.dtype == np.int32 and ids.ndim == 1
  assert ids.min() >= 0 and ids.max() < 64
  assert ids.size == (1 + wav.size // 160) // (100 // rate)
  assert abs(units.units_per_second(tok, wav) - rate) < 0.05 * rate + 1
  mel = tok.decode_mel(ids)
  assert mel.shape == (ids.size * (100 // rate), 80)
  path = os.path.join(tmp_path, "units.npz")
  tok.save(path)
  loaded = units.UnitTokenizer.load(path)
  np.testing.assert_array_equal(loaded.encode(wav), ids)
  assert loaded.config == config


def test_fit_is_deterministic_and_uses_the_codebook(waveforms):
  config = units.UnitConfig(num_units=32, num_steps=20, batch_frames=512)
  a = units.UnitTokenizer.fit(waveforms[:20], config)
  b = units.UnitTokenizer.fit(waveforms[:20], config)
  np.testing.assert_array_equal(a.codebook, b.codebook)
  usage = units.codebook_usage([a.encode(w) for w in waveforms[20:]], 32)
  assert usage["used_fraction"] > 0.8 and usage["perplexity"] > 16


def test_cosyvoice_sized_codebook_fits(waveforms):
  config = units.UnitConfig(num_units=6561, frame_rate_hz=50, num_steps=2, batch_frames=1024)
  tok = units.UnitTokenizer.fit(waveforms, config)  # ~3 min at 50 Hz > 6561 frames
  ids = tok.encode(waveforms[0])
  assert tok.codebook.shape[0] == 6561 and ids.max() < 6561


def test_too_little_audio_is_a_clear_error(waveforms):
  with pytest.raises(ValueError, match="at least num_units=6561 frames"):
    units.UnitTokenizer.fit(waveforms[:2], units.UnitConfig(num_units=6561))
  with pytest.raises(ValueError, match="frame_rate_hz=30"):
    units.UnitTokenizer.fit(waveforms[:2], units.UnitConfig(frame_rate_hz=30))


def test_codebook_usage_counts():
  usage = units.codebook_usage([np.array([0, 1, 1]), np.array([3])], 8)
  assert usage["used_fraction"] == 3 / 8 and usage["num_tokens"] == 4
  assert 1.0 < usage["perplexity"] < 3.0
