"""Log-mel features against librosa computed directly (Whisper recipe)."""

import librosa
import numpy as np
import pytest

from data_pipelines import features


@pytest.mark.parametrize("n_mels", [80, 128])
def test_log_mel_matches_librosa(n_mels):
  rng = np.random.default_rng(0)
  t = np.arange(16000 * 1.3) / 16000
  wav = (0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
  cfg = features.MelConfig(n_mels=n_mels)
  got = features.log_mel(wav, cfg)

  mel = librosa.feature.melspectrogram(y=wav, sr=16000, n_fft=400, hop_length=160,
                                       win_length=400, n_mels=n_mels, power=2.0,
                                       pad_mode="reflect")  # Whisper pads by reflection
  ref = np.log10(np.maximum(mel, 1e-10))
  ref = (np.maximum(ref, ref.max() - 8.0) + 4.0) / 4.0
  assert got.shape == (features.num_frames(wav.size, cfg), n_mels) == ref.T.shape
  np.testing.assert_allclose(got, ref.T, atol=2e-5)


def test_config_from_mapping_and_frame_rate():
  cfg = features.MelConfig.from_config({"n_mels": 128, "hop_length": 160, "unrelated": 1})
  assert cfg.n_mels == 128 and cfg.frames_per_second == 100.0


def test_empty_waveform_is_rejected():
  with pytest.raises(ValueError, match="non-empty"):
    features.log_mel(np.zeros((0,), np.float32))


def test_padded_log_mels_cut_pad_and_mark_each_row():
  rng = np.random.default_rng(0)
  waves = [rng.standard_normal(1600).astype(np.float32) * 0.1,
           rng.standard_normal(8000).astype(np.float32) * 0.1]
  alone = [features.log_mel(w) for w in waves]  # 11 and 51 frames
  mel, valid = features.padded_log_mels(waves, frames=20, rows=3)
  assert mel.shape == (3, 20, features.MelConfig().n_mels)
  assert valid.sum(axis=1).tolist() == [11, 20, 0]
  np.testing.assert_array_equal(mel[0, :11], alone[0])
  np.testing.assert_array_equal(mel[1], alone[1][:20])
  assert not mel[0, 11:].any() and not mel[2].any()
