"""Neural (Vocos-style) vocoder: STFT/iSTFT parity with librosa, masking, streaming vs
one-shot, losses, training, and the checkpoint behind `Vocoder`."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import librosa
import numpy as np
import pytest

from configs import vocoder as vocoder_config
from tests.test_vocoder import random_vocoder, tiny_config
from vocalnet_jax.speech import mel_inversion as mi
from vocalnet_jax.speech import neural_vocoder as nv
from vocalnet_jax.speech import neural_vocoder_training as nvt
from vocalnet_jax.speech import vocoder as voc

CFG = mi.MelConfig()  # the vocoder's analysis: n_fft 1024, win 640, hop 160


def neural_config():
  """A small generator (receptive field 6 frames each side) and a short training run."""
  c = vocoder_config.get_config("tiny")
  c.inversion.kind = "vocos"
  c.neural.model.update(dim=32, intermediate_dim=64, num_blocks=2, kernel_size=5)
  c.neural.pad_frames = 32
  c.neural.train.update(steps=30, batch_size=4, segment_frames=16, learning_rate=3e-3,
                        warmup_steps=5, log_every=10)
  return c


def speech_like_wave(seconds: float, seed: int) -> np.ndarray:
  """Harmonics of a gliding pitch under a syllable-rate envelope, plus a little noise."""
  rng = np.random.default_rng(seed)
  t = np.arange(int(seconds * CFG.sample_rate)) / CFG.sample_rate
  f0 = 120 + 30 * np.sin(2 * np.pi * 0.7 * t + seed)
  phase = 2 * np.pi * np.cumsum(f0) / CFG.sample_rate
  wave = sum(np.sin(k * phase) / k for k in range(1, 8)) * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t))
  return (0.1 * wave + 0.003 * rng.normal(size=t.shape)).astype(np.float32)


def random_inverter(config, seed: int = 0) -> nv.NeuralInverter:
  params = nv.init_params(nv.generator_from_config(config), jax.random.key(seed), CFG.n_mels)
  return nv.NeuralInverter(config, params, np.full(CFG.n_mels, -5.0, np.float32),
                           np.full(CFG.n_mels, 2.0, np.float32))


def test_istft_matches_librosa():
  rng = np.random.default_rng(0)
  spec = (rng.normal(size=(37, 513)) + 1j * rng.normal(size=(37, 513))).astype(np.complex64)
  ref = librosa.istft(spec.T, hop_length=160, win_length=640, n_fft=1024, length=37 * 160)
  out = np.asarray(nv.istft(jnp.asarray(spec), 1024, 160, 640))
  assert out.shape == (37 * 160,)
  np.testing.assert_allclose(out, ref, atol=1e-5)
  # On a known STFT the inverse gives the signal back.
  wave = speech_like_wave(0.5, 1)
  stft = librosa.stft(wave, n_fft=1024, hop_length=160, win_length=640)  # [513, 51]
  np.testing.assert_allclose(np.asarray(nv.istft(jnp.asarray(stft.T), 1024, 160, 640))[:8000],
                             wave, atol=1e-5)


def test_istft_ignores_invalid_frames():
  rng = np.random.default_rng(1)
  spec = jnp.asarray(rng.normal(size=(20, 513)) + 1j * rng.normal(size=(20, 513)), jnp.complex64)
  valid = jnp.arange(20) < 12
  masked = np.asarray(nv.istft(spec, 1024, 160, 640, valid))
  prefix = np.asarray(nv.istft(spec[:12], 1024, 160, 640))
  np.testing.assert_allclose(masked[:12 * 160], prefix, atol=1e-6)
  assert np.all(masked[12 * 160 + 1024:] == 0.0)


def test_stft_and_log_mel_match_librosa():
  wave = speech_like_wave(0.4, 2)
  ref = librosa.stft(wave, n_fft=1024, hop_length=160, win_length=640).T
  np.testing.assert_allclose(np.asarray(nv.stft(jnp.asarray(wave), 1024, 160, 640)), ref,
                             atol=1e-4)
  np.testing.assert_allclose(np.asarray(nv.log_mel(jnp.asarray(wave), CFG)),
                             mi.log_mel(wave, CFG), atol=1e-3)


def test_padding_is_exact_and_shapes():
  config = neural_config()
  inverter = random_inverter(config)
  mel = mi.log_mel(speech_like_wave(0.5, 3), CFG)[:45]  # [45, 80]
  wave = inverter(mel)  # padded to 64 frames
  assert wave.shape == (45 * CFG.hop_length,) and np.all(np.isfinite(wave))
  config.neural.pad_frames = 128
  np.testing.assert_allclose(nv.NeuralInverter(config, inverter.params, inverter.mel_mean,
                                               inverter.mel_std)(mel), wave, atol=1e-5)
  with pytest.raises(ValueError, match=r"mel must be \[frames, 80\]"):
    inverter(np.zeros((10, 40)))


def streamed_rel_l2(inverter, mel: np.ndarray, frames: tuple[int, int, int]) -> float:
  pieces = [mel[i:i + 30] for i in range(0, len(mel), 30)]
  streamed = np.concatenate(list(voc.stream_waveform(inverter, pieces, CFG.hop_length,
                                                     *frames)))
  one_shot = inverter(mel)
  assert streamed.shape == one_shot.shape
  return float(np.linalg.norm(streamed - one_shot) / np.linalg.norm(one_shot))


def test_streaming_equals_one_shot_within_tolerance():
  """Streamed by 30-frame pieces (`vocoder.stream_waveform` with `stream_frames`: a sample
  depends on 6 + 2 frames each side, so 20 frames of context, 4 cross-faded, 8 dropped and
  remade) the waveform equals the one-shot one: relative L2 < 1e-4 (float rounding).
  The same check fails with the Griffin-Lim rule (context 20, half held back, no
  lookahead: the held samples lack right context) and with no context at all."""
  config = neural_config()
  inverter = random_inverter(config)
  mel = mi.log_mel(speech_like_wave(1.2, 4), CFG)[:120]  # [120, 80]: 4 pieces
  frames = nv.stream_frames(config)
  assert frames == (20, 4, 8)
  assert streamed_rel_l2(inverter, mel, frames) < 1e-4
  assert streamed_rel_l2(inverter, mel, (20, 10, 0)) > 1e-2
  assert streamed_rel_l2(inverter, mel, (0, 0, 0)) > 1e-1
  with pytest.raises(ValueError, match="context_frames=4 must be >= hold_frames"):
    list(voc.stream_waveform(inverter, [mel], CFG.hop_length, 4, 2, 8))


def test_losses_are_zero_on_identity_and_grow_with_error():
  wave = jnp.asarray(speech_like_wave(0.3, 5))[None]  # [1, samples]
  noisy = wave + 0.05 * jax.random.normal(jax.random.key(0), wave.shape)
  res = ((256, 64, 256), (512, 128, 512))
  assert float(nvt.multi_resolution_stft_loss(wave, wave, res)) == pytest.approx(0.0, abs=1e-6)
  assert float(nvt.mel_l1_loss(wave, wave, CFG)) == pytest.approx(0.0, abs=1e-6)
  assert float(nvt.multi_resolution_stft_loss(noisy, wave, res)) > 0.1
  assert float(nvt.mel_l1_loss(noisy, wave, CFG)) > 0.1


def test_training_reduces_reconstruction_loss():
  config = neural_config()
  logs = []
  inverter = nvt.train(config, [speech_like_wave(1.0, s) for s in range(4)],
                       lambda step, m: logs.append(m))
  assert len(logs) == 3
  first, last = logs[0]["mel"] + logs[0]["stft"], logs[-1]["mel"] + logs[-1]["stft"]
  assert np.isfinite(last) and last < 0.8 * first, logs
  assert isinstance(inverter, nv.NeuralInverter)


def test_adversarial_step_runs_with_all_terms():
  config = neural_config()
  config.neural.update(stft_resolutions=((128, 32, 128),))
  config.neural.loss.update(adversarial=True, disc_channels=4)
  config.neural.train.update(steps=2, log_every=2, segment_frames=8)
  logs = []
  nvt.train(config, [speech_like_wave(0.5, 0)], lambda step, m: logs.append(m))
  assert set(logs[0]) == {"mel", "stft", "adv", "fm", "disc"}
  assert all(np.isfinite(v) for v in logs[0].values())


def test_vocoder_saves_and_restores_the_neural_inverter(tmp_path):
  config = tiny_config()
  config.inversion.kind = "vocos"
  config.neural = neural_config().neural
  flow = random_vocoder(tiny_config())
  vocoder = voc.Vocoder(config, flow.params, flow.mel_mean, flow.mel_std,
                        random_inverter(config, seed=3))
  vocoder.save(str(tmp_path / "vocoder"))
  restored = voc.Vocoder.load(str(tmp_path / "vocoder"))
  assert isinstance(restored.inverter, nv.NeuralInverter)
  mel = mi.log_mel(speech_like_wave(0.3, 6), CFG)
  np.testing.assert_array_equal(restored.inverter(mel), vocoder.inverter(mel))
  units = np.arange(10) % 12
  np.testing.assert_allclose(restored.synthesize(units), vocoder.synthesize(units), atol=1e-6)
  with pytest.raises(ValueError, match="needs a trained `inverter`"):
    voc.Vocoder(config, flow.params, flow.mel_mean, flow.mel_std)
  config.inversion.kind = "hifigan"
  with pytest.raises(ValueError, match="not one of"):
    voc.Vocoder(config, flow.params, flow.mel_mean, flow.mel_std)
