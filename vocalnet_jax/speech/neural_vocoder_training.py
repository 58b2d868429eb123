"""Training of the neural (Vocos-style) mel -> waveform vocoder, and its comparison with
Griffin-Lim on reference mels.

Losses (Vocos / HiFi-GAN reconstruction terms): multi-resolution STFT loss (spectral
convergence + log-magnitude L1, averaged over `neural.stft_resolutions`) plus L1 between
the log-mels of generated and reference segments; optionally (`neural.loss.adversarial`)
a multi-resolution spectrogram discriminator with hinge losses and feature matching.
Training reads random `segment_frames`-long (log-mel, waveform) crops of whole answers;
the mel is computed on the whole answer, as at inference.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Callable, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from vocalnet_jax.speech import mel_inversion as mi
from vocalnet_jax.speech import neural_vocoder as nv
from vocalnet_jax.speech import vocoder as voc
from vocalnet_jax.speech import vocoder_training as vt

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class Clip:
  """A whole utterance: its log-mel and its waveform trimmed/padded to frames * hop."""
  mel: np.ndarray  # [frames, n_mels] natural-log
  wave: np.ndarray  # [frames * hop] float32


def make_clip(wave: np.ndarray, cfg: mi.MelConfig) -> Clip:
  mel = mi.log_mel(wave, cfg)  # [frames, n_mels]
  samples = len(mel) * cfg.hop_length
  wave = np.pad(np.asarray(wave, np.float32), (0, max(samples - len(wave), 0)))[:samples]
  return Clip(mel, wave)


def sample_segments(rng: np.random.Generator, clips: Sequence[Clip], batch_size: int,
                    segment_frames: int, hop: int, mean: np.ndarray, std: np.ndarray
                    ) -> dict[str, np.ndarray]:
  """Random aligned crops: normalised mel [b, T, n_mels], valid [b, T], wave [b, T * hop]
  (clips shorter than T are zero-padded; padded frames are invalid)."""
  mel = np.zeros((batch_size, segment_frames, len(mean)), np.float32)
  valid = np.zeros((batch_size, segment_frames), bool)
  wave = np.zeros((batch_size, segment_frames * hop), np.float32)
  for b, i in enumerate(rng.integers(len(clips), size=batch_size)):
    c = clips[i]
    start = int(rng.integers(max(len(c.mel) - segment_frames, 0) + 1))
    seg = c.mel[start:start + segment_frames]
    mel[b, :len(seg)] = (seg - mean) / std
    valid[b, :len(seg)] = True
    wave[b, :len(seg) * hop] = c.wave[start * hop:(start + len(seg)) * hop]
  return {"mel": mel, "valid": valid, "wave": wave}


def multi_resolution_stft_loss(pred: Array, target: Array,
                               resolutions: Sequence[tuple[int, int, int]]) -> Array:
  """pred, target: [batch, samples] -> scalar: mean over resolutions of spectral
  convergence (||S - S'||_F / ||S||_F) + mean |log S - log S'| (S: STFT magnitudes)."""
  total = 0.0
  for n_fft, hop, win in resolutions:
    mag_p = jnp.abs(nv.stft(pred, n_fft, hop, win))  # [batch, frames, bins]
    mag_t = jnp.abs(nv.stft(target, n_fft, hop, win))
    sc = jnp.sqrt(jnp.sum((mag_t - mag_p) ** 2, (1, 2)) / (jnp.sum(mag_t ** 2, (1, 2)) + 1e-7))
    log_l1 = jnp.mean(jnp.abs(jnp.log(jnp.maximum(mag_t, mi.LOG_FLOOR))
                              - jnp.log(jnp.maximum(mag_p, mi.LOG_FLOOR))))
    total = total + jnp.mean(sc) + log_l1
  return total / len(resolutions)


def mel_l1_loss(pred: Array, target: Array, cfg: mi.MelConfig) -> Array:
  """Mean |log-mel(pred) - log-mel(target)| with the vocoder's mel analysis."""
  return jnp.mean(jnp.abs(nv.log_mel(pred, cfg) - nv.log_mel(target, cfg)))


class SpectrogramDiscriminator(nn.Module):
  """2-D convs over one resolution's log-magnitude spectrogram (Vocos' MRD, small)."""
  n_fft: int
  hop: int
  win: int
  channels: int

  @nn.compact
  def __call__(self, wave: Array) -> tuple[Array, list[Array]]:
    # wave: [batch, samples] -> logits [batch, frames', bins', 1], features
    mag = jnp.abs(nv.stft(wave, self.n_fft, self.hop, self.win))  # [batch, frames, bins]
    x = jnp.log(jnp.maximum(mag, mi.LOG_FLOOR))[..., None]
    features = []
    for stride in (1, 2, 2, 2):
      x = nn.leaky_relu(nn.Conv(self.channels, (3, 9), (1, stride), padding="SAME")(x), 0.1)
      features.append(x)
    return nn.Conv(1, (3, 3), padding="SAME")(x), features


class MultiResolutionDiscriminator(nn.Module):
  resolutions: tuple[tuple[int, int, int], ...]
  channels: int

  @nn.compact
  def __call__(self, wave: Array) -> tuple[list[Array], list[Array]]:
    outs = [SpectrogramDiscriminator(*r, self.channels)(wave) for r in self.resolutions]
    return [o[0] for o in outs], [f for o in outs for f in o[1]]


def hinge_discriminator_loss(real: Sequence[Array], fake: Sequence[Array]) -> Array:
  return sum(jnp.mean(nn.relu(1.0 - r)) + jnp.mean(nn.relu(1.0 + f))
             for r, f in zip(real, fake)) / len(real)


def hinge_generator_loss(fake: Sequence[Array]) -> Array:
  return sum(jnp.mean(nn.relu(1.0 - f)) for f in fake) / len(fake)


def feature_matching_loss(real: Sequence[Array], fake: Sequence[Array]) -> Array:
  return sum(jnp.mean(jnp.abs(jax.lax.stop_gradient(r) - f))
             for r, f in zip(real, fake)) / len(real)


def _resolutions(neural: ml_collections.ConfigDict) -> tuple[tuple[int, int, int], ...]:
  return tuple(tuple(int(v) for v in r) for r in neural.stft_resolutions)


def make_train_step(generator: nv.VocosGenerator, tx: optax.GradientTransformation,
                    config: ml_collections.ConfigDict,
                    disc: Optional[MultiResolutionDiscriminator] = None,
                    tx_disc: Optional[optax.GradientTransformation] = None) -> Callable:
  """Jitted (state, batch) -> (state, metrics); state = dict(g, g_opt[, d, d_opt])."""
  cfg, w = voc.mel_config(config), config.neural.loss
  resolutions = _resolutions(config.neural)

  def generator_loss(g_params, d_params, batch):
    pred = nv.waveform(generator, g_params, batch["mel"], batch["valid"], cfg)  # [b, samples]
    stft_loss = multi_resolution_stft_loss(pred, batch["wave"], resolutions)
    mel_loss = mel_l1_loss(pred, batch["wave"], cfg)
    metrics = {"stft": stft_loss, "mel": mel_loss}
    loss = w.stft_weight * stft_loss + w.mel_weight * mel_loss
    if disc is not None:
      fake_logits, fake_feats = disc.apply(d_params, pred)
      _, real_feats = disc.apply(d_params, batch["wave"])
      metrics["adv"] = hinge_generator_loss(fake_logits)
      metrics["fm"] = feature_matching_loss(real_feats, fake_feats)
      loss = loss + w.adv_weight * metrics["adv"] + w.feature_weight * metrics["fm"]
    return loss, (metrics, pred)

  @jax.jit
  def step(state, batch):
    grads, (metrics, pred) = jax.grad(generator_loss, has_aux=True)(
        state["g"], state.get("d"), batch)
    updates, g_opt = tx.update(grads, state["g_opt"], state["g"])
    new = dict(state, g=optax.apply_updates(state["g"], updates), g_opt=g_opt)
    if disc is not None:
      fake = jax.lax.stop_gradient(pred)
      def d_loss(d_params):
        return hinge_discriminator_loss(disc.apply(d_params, batch["wave"])[0],
                                        disc.apply(d_params, fake)[0])
      metrics["disc"], d_grads = jax.value_and_grad(d_loss)(state["d"])
      d_updates, d_opt = tx_disc.update(d_grads, state["d_opt"], state["d"])
      new.update(d=optax.apply_updates(state["d"], d_updates), d_opt=d_opt)
    return new, metrics

  return step


def train(config: ml_collections.ConfigDict, waves: Sequence[np.ndarray],
          log: Callable[[int, dict[str, float]], None] = lambda step, metrics: None
          ) -> nv.NeuralInverter:
  """Trains the neural inverter from scratch on `waves` (16 kHz answers);
  `log(step, mean metrics)` every neural.train.log_every steps."""
  if not waves:
    raise ValueError("waves is empty: nothing to train the neural vocoder on")
  cfg, neural = voc.mel_config(config), config.neural
  t = neural.train
  clips = [make_clip(w, cfg) for w in waves]
  mean, std = vt.mel_stats(clips)
  generator = nv.generator_from_config(config)
  g_key, d_key = jax.random.split(jax.random.key(config.seed))
  tx = vt.make_optimizer(t)
  state = {"g": nv.init_params(generator, g_key, cfg.n_mels)}
  state["g_opt"] = tx.init(state["g"])
  disc = tx_disc = None
  if neural.loss.adversarial:
    disc = MultiResolutionDiscriminator(_resolutions(neural), neural.loss.disc_channels)
    tx_disc = optax.adamw(neural.loss.disc_learning_rate, b1=0.8, b2=0.99)
    state["d"] = disc.init(d_key, jnp.zeros((1, t.segment_frames * cfg.hop_length)))
    state["d_opt"] = tx_disc.init(state["d"])
  step_fn = make_train_step(generator, tx, config, disc, tx_disc)
  rng = np.random.default_rng(config.seed)
  history = []
  for step in range(1, t.steps + 1):
    batch = sample_segments(rng, clips, t.batch_size, t.segment_frames, cfg.hop_length,
                            mean, std)
    state, metrics = step_fn(state, batch)
    history.append(metrics)
    if step % t.log_every == 0 or step == t.steps:
      history = jax.device_get(history)
      log(step, {k: float(np.mean([m[k] for m in history])) for k in history[0]})
      history = []
  return nv.NeuralInverter(config, state["g"], mean, std)


def _pieces(mel: np.ndarray, frames: int) -> list[np.ndarray]:
  return [mel[i:i + frames] for i in range(0, len(mel), frames)]


def compare_inverters(inverters: dict[str, mi.MelInverter], waves: Sequence[np.ndarray],
                      config: ml_collections.ConfigDict) -> dict:
  """Each inverter on the reference mel of each wave: one-shot and streamed (pieces of
  stream.chunk_tokens tokens of mel, `vocoder.stream_waveform` with the inverter's frames).

  Returns {name: metrics} (JSON-able: mel L1 / log-spectral distance of the resynthesis vs
  the reference mel, streamed vs one-shot LSD, real-time factors) and, under "outputs",
  {name: {"oneshot": [waves], "stream": [waves]}} for ASR and WAVs.
  """
  cfg = voc.mel_config(config)
  chunk = config.stream.chunk_tokens * voc.upsample_factor(config)  # mel frames per piece
  clips = [make_clip(w, cfg) for w in waves]
  result, outputs = {}, {}
  for name, inverter in inverters.items():
    frames = voc.inversion_stream_frames(_with_inversion_kind(config, name))
    for c in clips:  # compile every padded length before timing
      inverter(c.mel)
      list(voc.stream_waveform(inverter, _pieces(c.mel, chunk), cfg.hop_length, *frames))
    rows, oneshot_rtf, chunk_rtf = [], [], []
    outs = {"oneshot": [], "stream": []}
    for c in clips:
      seconds = len(c.wave) / cfg.sample_rate
      t0 = time.perf_counter()
      one = inverter(c.mel)  # [frames * hop]
      oneshot_rtf.append((time.perf_counter() - t0) / seconds)
      pieces, t_prev = [], time.perf_counter()
      for piece in voc.stream_waveform(inverter, _pieces(c.mel, chunk), cfg.hop_length,
                                       *frames):
        now = time.perf_counter()
        if len(piece) >= chunk * cfg.hop_length // 2:  # full chunks only
          chunk_rtf.append((now - t_prev) / (len(piece) / cfg.sample_rate))
        pieces.append(piece)
        t_prev = now
      stream = np.concatenate(pieces)
      n = len(c.mel)  # F frames -> F * hop samples -> F + 1 analysis frames
      mel_one, mel_stream = mi.log_mel(one, cfg)[:n], mi.log_mel(stream, cfg)[:n]
      rows.append({"mel_l1": float(np.mean(np.abs(mel_one - c.mel))),
                   "lsd_db": mi.log_spectral_distance(mel_one, c.mel),
                   "stream_lsd_db": mi.log_spectral_distance(mel_stream, c.mel),
                   "stream_vs_oneshot_lsd_db": mi.log_spectral_distance(mel_stream, mel_one),
                   "stream_vs_oneshot_rel_l2": float(np.linalg.norm(stream - one)
                                                     / max(np.linalg.norm(one), 1e-9))})
      outs["oneshot"].append(one)
      outs["stream"].append(stream)
    result[name] = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    result[name]["rtf"] = {"oneshot_mean": float(np.mean(oneshot_rtf)),
                           "per_chunk_mean": float(np.mean(chunk_rtf)),
                           "per_chunk_max": float(np.max(chunk_rtf)),
                           "chunk_seconds": chunk / cfg.frame_rate_hz,
                           "context_hold_lookahead_frames": list(frames)}
    outputs[name] = outs
  result["outputs"] = outputs
  return result


def _with_inversion_kind(config: ml_collections.ConfigDict, kind: str
                         ) -> ml_collections.ConfigDict:
  """A copy of `config` with inversion.kind = kind."""
  out = ml_collections.ConfigDict(config.to_dict())
  out.inversion.kind = kind
  return out
