"""Flow-matching vocoder: loss, ODE sampler, streaming vs one-shot, inputs, checkpoints."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import vocoder as vocoder_config
from vocalnet_jax.speech import flow_matching as fm
from vocalnet_jax.speech import mel_inversion as mi
from vocalnet_jax.speech import vocoder as voc
from vocalnet_jax.speech import vocoder_training as vt

VOCAB = 12


def tiny_config(frame_rate_hz: float = 25.0):
  """A vocoder small enough that the whole receptive field fits in the stream window."""
  c = vocoder_config.get_config("tiny")
  c.units.vocab_size, c.units.frame_rate_hz = VOCAB, frame_rate_hz
  c.model.update(embed_dim=32, encoder_layers=1, estimator_layers=1, num_heads=2, mlp_dim=64,
                 token_window=1, frame_window=4, kernel_size=3)
  c.sample.update(num_steps=2, cfg_scale=0.0, pad_tokens=16)
  # Receptive field of a frame: < 8 tokens each side, so these windows make chunked
  # synthesis exactly equal to one-shot synthesis (prompting off).
  c.stream.update(chunk_tokens=5, left_context_tokens=8, lookahead_tokens=8,
                  crossfade_frames=4, gl_context_frames=8, prompt_left_context=False)
  c.inversion.update(kind="griffin_lim", n_iter=4)
  c.train.update(steps=60, batch_size=4, segment_tokens=8, learning_rate=1e-2, warmup_steps=5,
                 log_every=10)
  return c


def random_vocoder(config) -> voc.Vocoder:
  """Randomly initialised vocoder with a non-zero output layer (so outputs depend on input)."""
  params = voc.init_params(voc.build_model(config), jax.random.key(0))
  out = params["params"]["out_proj"]
  out["kernel"] = 0.3 * jax.random.normal(jax.random.key(1), out["kernel"].shape)
  n_mels = config.mel.n_mels
  return voc.Vocoder(config, params, np.full(n_mels, -4.0, np.float32),
                     np.full(n_mels, 2.0, np.float32))


def synthetic_utterances(config, n: int, rng: np.random.Generator) -> list[vt.Utterance]:
  """Units with a fixed per-unit mel pattern: a learnable token -> mel mapping."""
  up = voc.upsample_factor(config)
  table = rng.normal(-4.0, 2.0, (VOCAB, config.mel.n_mels)).astype(np.float32)
  utts = []
  for _ in range(n):
    units = rng.integers(0, VOCAB, int(rng.integers(10, 20))).astype(np.int32)
    utts.append(vt.Utterance(units, np.repeat(table[units], up, axis=0)))
  return utts


def test_cfm_loss_decreases_on_tiny_case():
  config = tiny_config()
  utts = synthetic_utterances(config, 16, np.random.default_rng(0))
  losses = []
  vt.train(config, utts, lambda step, loss: losses.append(loss))
  assert len(losses) == 6 and np.all(np.isfinite(losses))
  assert losses[-1] < 0.75 * losses[0], losses


def test_flow_training_under_vocos_config_hands_back_griffin_lim():
  """The flow stage trains before any neural inverter exists: with inversion.kind='vocos'
  it must still return a usable Vocoder (Griffin-Lim waveform until Vocos is trained)."""
  config = tiny_config()
  config.train.steps = 2
  config.inversion.kind = "vocos"
  utts = synthetic_utterances(config, 4, np.random.default_rng(0))
  vocoder = vt.train(config, utts)
  assert isinstance(vocoder.inverter, mi.GriffinLimInverter)


def test_sampler_shape_and_determinism():
  config = tiny_config()
  vocoder = random_vocoder(config)
  model, params = vocoder.model, vocoder.params
  tokens = jnp.asarray(np.random.default_rng(0).integers(0, VOCAB, (2, 6)), jnp.int32)
  valid = jnp.arange(6)[None, :] < jnp.array([[6], [4]])  # second row padded
  mu = model.apply(params, tokens, valid, method=fm.FlowDecoder.encode)  # [2, 24, 80]
  frame_valid = jnp.repeat(valid, model.upsample, axis=1)
  noise = jax.random.normal(jax.random.key(3), mu.shape)
  for method, cfg_scale in (("euler", 0.0), ("midpoint", 0.7)):
    run = jax.jit(functools.partial(
        fm.sample, model, params, mu, jnp.zeros_like(mu), frame_valid, num_steps=3,
        method=method, cfg_scale=cfg_scale))
    a, b = run(noise), run(noise)
    assert a.shape == (2, 24, 80)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert np.all(np.asarray(a)[1, 16:] == 0.0)  # padding frames
    assert not np.allclose(a, run(noise + 1.0))
  with pytest.raises(ValueError, match="ODE method"):
    fm.sample(model, params, mu, mu, frame_valid, noise, num_steps=2, method="rk4")


def test_frame_noise_is_chunk_invariant():
  key = jax.random.key(0)
  whole = fm.frame_noise(key, 0, 20, 8)
  np.testing.assert_array_equal(whole[7:15], fm.frame_noise(key, 7, 8, 8))


def test_padding_does_not_change_output():
  config = tiny_config()
  vocoder = random_vocoder(config)
  units = np.random.default_rng(1).integers(0, VOCAB, 13)
  a = vocoder.synthesize_mel(units)  # padded to 16 tokens (the shape the other tests use)
  config.sample.pad_tokens = 32
  b = voc.Vocoder(config, vocoder.params, vocoder.mel_mean, vocoder.mel_std).synthesize_mel(units)
  assert a.shape == (13 * 4, 80)
  np.testing.assert_allclose(a, b, atol=1e-4)


@pytest.mark.parametrize("frame_rate_hz,chunk_sizes,context", [(25.0, [5, 5, 5, 1], 8),
                                                                (50.0, [1, 7, 2, 6], 12)])
def test_chunked_mel_equals_one_shot_with_full_context(frame_rate_hz, chunk_sizes, context):
  config = tiny_config(frame_rate_hz)
  config.stream.update(left_context_tokens=context, lookahead_tokens=context)
  vocoder = random_vocoder(config)
  units = np.random.default_rng(2).integers(0, VOCAB, sum(chunk_sizes))
  chunks = np.split(units, np.cumsum(chunk_sizes)[:-1])
  one_shot = vocoder.synthesize_mel(units)
  streamed = np.concatenate(list(vocoder.stream_mel(chunks[:2] + [[]] + chunks[2:])))
  assert streamed.shape == one_shot.shape == (len(units) * vocoder.upsample, 80)
  np.testing.assert_allclose(streamed, one_shot, atol=1e-4)


def test_streamed_waveform_consistent_with_one_shot():
  config = tiny_config()
  config.stream.prompt_left_context = True  # same window shape as above: no recompile
  vocoder = random_vocoder(config)
  units = np.random.default_rng(3).integers(0, VOCAB, 16)
  chunks = [units[i:i + 5] for i in range(0, len(units), 5)]
  pieces = list(vocoder.stream(chunks))
  assert len(pieces) >= len(chunks)
  wave = np.concatenate(pieces)
  one_shot = vocoder.synthesize(units)
  assert wave.shape == one_shot.shape == (len(units) * 4 * 160,)
  assert np.all(np.isfinite(wave))
  # Griffin-Lim per piece and the prompt: not identical, but the spectra must stay close.
  lsd = mi.log_spectral_distance(mi.log_mel(wave, vocoder.mel_cfg),
                                 mi.log_mel(one_shot, vocoder.mel_cfg))
  assert lsd < 6.0, lsd


@pytest.mark.parametrize("units,error,match", [
    (np.array([1, 2, VOCAB]), ValueError, r"units\[2\] = 12 is out of range \[0, 12\)"),
    (np.array([-1, 2]), ValueError, r"units\[0\] = -1 is out of range"),
    (np.array([1.0, 2.0]), TypeError, "units must be integer token ids, got dtype float64"),
    (np.array([True, False]), TypeError, "dtype bool"),
    (np.zeros((2, 3), np.int32), ValueError, r"units must be 1-D \[num_tokens\], got shape"),
    (np.zeros(0, np.int32), ValueError, "units is empty"),
])
def test_bad_units_give_clear_errors(units, error, match):
  vocoder = random_vocoder(tiny_config())
  with pytest.raises(error, match=match):
    vocoder.synthesize_mel(units)


def test_bad_stream_input_and_config_errors():
  config = tiny_config()
  vocoder = random_vocoder(config)
  with pytest.raises(ValueError, match=r"unit chunk\[1\] = 99"):
    list(vocoder.stream_mel([np.array([1, 2]), np.array([3, 99])]))
  with pytest.raises(ValueError, match="unit_chunks gave no tokens"):
    list(vocoder.stream_mel([]))
  config.units.frame_rate_hz = 30.0
  with pytest.raises(ValueError, match="frame_rate_hz=30.0 must divide"):
    voc.upsample_factor(config)


def test_save_load_round_trip(tmp_path):
  vocoder = random_vocoder(tiny_config())
  vocoder.save(str(tmp_path / "vocoder"))
  restored = voc.Vocoder.load(str(tmp_path / "vocoder"))
  units = np.arange(10) % VOCAB
  np.testing.assert_array_equal(restored.synthesize_mel(units), vocoder.synthesize_mel(units))


def test_griffin_lim_inverts_log_mel():
  cfg = mi.MelConfig()
  t = np.arange(8000) / cfg.sample_rate
  wave = (0.3 * np.sin(2 * np.pi * 300 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)
  mel = mi.log_mel(wave, cfg)[:50]  # [50, 80]
  out = mi.GriffinLimInverter(cfg, n_iter=16)(mel)
  assert out.shape == (50 * cfg.hop_length,)
  assert mi.log_spectral_distance(mi.log_mel(out, cfg)[2:-2], mel[2:-2]) < 4.0
  with pytest.raises(ValueError, match=r"mel must be \[frames, 80\]"):
    mi.GriffinLimInverter(cfg)(np.zeros((10, 40)))


def test_crossfade_blends_overlap():
  out = voc.crossfade(np.zeros(4), np.ones(6))
  np.testing.assert_allclose(out, [0.125, 0.375, 0.625, 0.875, 1.0, 1.0])
