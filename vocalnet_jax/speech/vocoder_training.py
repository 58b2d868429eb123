"""Training and evaluation of the flow-matching vocoder on (speech units, audio) pairs.

A compact single-device loop (jit step, optax AdamW): the vocoder is small and trains
on random fixed-length segments, so it needs none of the sharded LM trainer.
Evaluation measures what the vocoder is for: closeness of generated mels to the
reference for ground-truth tokens, speed (real-time factor per streamed chunk) and
streaming-vs-one-shot agreement; intelligibility (independent ASR WER of its outputs)
is `evaluation.asr.wer_of_waves`.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Callable, Optional, Sequence

import jax
import ml_collections
import numpy as np
import optax

from data_pipelines import speech_loader
from vocalnet_jax.speech import flow_matching as fm
from vocalnet_jax.speech import mel_inversion as mi
from vocalnet_jax.speech import vocoder as voc


@dataclasses.dataclass(frozen=True)
class Utterance:
  """One training/eval pair: units and the log-mel they should decode to."""
  units: np.ndarray  # [tokens] int32
  mel: np.ndarray  # [tokens * upsample, n_mels] natural-log mel, aligned to the units
  text: str = ""
  wave: Optional[np.ndarray] = None  # [samples] original audio, for eval


def make_utterance(config: ml_collections.ConfigDict, units: np.ndarray, wave: np.ndarray,
                   text: str = "") -> Utterance:
  """Computes the vocoder's log-mel of `wave` and crops/edge-pads it to len(units) * upsample."""
  units = voc.validate_units(units, config.units.vocab_size)
  mel = mi.log_mel(wave, voc.mel_config(config))  # [frames, n_mels]
  frames = len(units) * voc.upsample_factor(config)
  if len(mel) < frames:
    mel = np.concatenate([mel, np.repeat(mel[-1:], frames - len(mel), 0)])
  return Utterance(units, mel[:frames], text, np.asarray(wave, np.float32))


def corpus_answers(dataset_dir: str, split: str, limit: int) -> list[tuple[str, np.ndarray]]:
  """(answer text, answer audio) of up to `limit` examples (limit <= 0: all) with audio."""
  source = speech_loader.open_source(dataset_dir, split)
  out = []
  for i in range(len(source)):
    record = source[i]
    audio = np.asarray(record["answer_audio"], np.float32)
    if audio.size:
      out.append((speech_loader.record_text(record["answer_text"]), audio))
    if 0 < limit <= len(out):
      break
  return out


def mel_stats(utts: Sequence[Utterance]) -> tuple[np.ndarray, np.ndarray]:
  """Per-bin mean and std [n_mels] over all frames (the flow works on normalised mels)."""
  frames = np.concatenate([u.mel for u in utts])
  return frames.mean(0).astype(np.float32), np.maximum(frames.std(0), 1e-3).astype(np.float32)


def sample_batch(rng: np.random.Generator, utts: Sequence[Utterance], batch_size: int,
                 segment_tokens: int, upsample: int, mean: np.ndarray,
                 std: np.ndarray) -> dict[str, np.ndarray]:
  """Random `segment_tokens` crops (zero-padded, with validity) of random utterances."""
  n_mels = mean.shape[0]
  tokens = np.zeros((batch_size, segment_tokens), np.int32)
  valid = np.zeros((batch_size, segment_tokens), bool)
  mel = np.zeros((batch_size, segment_tokens * upsample, n_mels), np.float32)
  for b, i in enumerate(rng.integers(len(utts), size=batch_size)):
    u = utts[i]
    start = int(rng.integers(max(len(u.units) - segment_tokens, 0) + 1))
    seg = u.units[start:start + segment_tokens]
    tokens[b, :len(seg)] = seg
    valid[b, :len(seg)] = True
    mel[b, :len(seg) * upsample] = (u.mel[start * upsample:(start + len(seg)) * upsample]
                                    - mean) / std
  return {"tokens": tokens, "token_valid": valid, "mel": mel}


def make_train_step(model: fm.FlowDecoder, tx: optax.GradientTransformation,
                    flow: ml_collections.ConfigDict) -> Callable:
  """Jitted (params, opt_state, batch, key) -> (params, opt_state, loss)."""
  loss_kwargs = dict(sigma_min=flow.sigma_min, cfg_dropout=flow.cfg_dropout,
                     prompt_prob=flow.prompt_prob, max_prompt_frac=flow.max_prompt_frac,
                     t_schedule=flow.t_schedule)

  @jax.jit
  def step(params, opt_state, batch, key):
    loss, grads = jax.value_and_grad(
        lambda p: fm.cfm_loss(model, p, batch["tokens"], batch["token_valid"], batch["mel"],
                              key, **loss_kwargs))(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  return step


def make_optimizer(train: ml_collections.ConfigDict) -> optax.GradientTransformation:
  schedule = optax.warmup_cosine_decay_schedule(
      0.0, train.learning_rate, train.warmup_steps, max(train.steps, train.warmup_steps + 1),
      end_value=0.1 * train.learning_rate)
  return optax.chain(optax.clip_by_global_norm(train.grad_clip),
                     optax.adamw(schedule, weight_decay=train.weight_decay))


def train(config: ml_collections.ConfigDict, utts: Sequence[Utterance],
          log: Callable[[int, float], None] = lambda step, loss: None) -> voc.Vocoder:
  """Trains the units -> mel flow model from scratch on `utts`; `log(step, mean_loss)` every
  log_every steps. Its waveform stage is Griffin-Lim until a neural inverter is trained
  (`neural_vocoder_training`, `inversion.kind='vocos'`) and handed to the final Vocoder."""
  if not utts:
    raise ValueError("utts is empty: nothing to train the vocoder on")
  model = voc.build_model(config)
  mean, std = mel_stats(utts)
  t = config.train
  rng = np.random.default_rng(config.seed)
  init_key, key = jax.random.split(jax.random.key(config.seed))
  params = voc.init_params(model, init_key)
  tx = make_optimizer(t)
  opt_state = tx.init(params)
  step_fn = make_train_step(model, tx, config.flow)
  losses = []
  for step in range(1, t.steps + 1):
    batch = sample_batch(rng, utts, t.batch_size, t.segment_tokens, model.upsample, mean, std)
    params, opt_state, loss = step_fn(params, opt_state, batch, jax.random.fold_in(key, step))
    losses.append(loss)
    if step % t.log_every == 0 or step == t.steps:
      log(step, float(np.mean(jax.device_get(losses))))
      losses = []
  inverter = mi.GriffinLimInverter(voc.mel_config(config), config.inversion.n_iter)
  return voc.Vocoder(config, params, mean, std, inverter)


def _mel_distances(generated: np.ndarray, reference: np.ndarray) -> dict[str, float]:
  n = min(len(generated), len(reference))
  return {"mel_l1": float(np.mean(np.abs(generated[:n] - reference[:n]))),
          "lsd_db": mi.log_spectral_distance(generated, reference)}


def _mean_dicts(rows: Sequence[dict[str, float]]) -> dict[str, float]:
  return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


def evaluate(vocoder: voc.Vocoder, utts: Sequence[Utterance]) -> dict:
  """Metrics over held-out utterances with ground-truth units (see module docstring).

  Returns a JSON-able dict; `outputs` (not JSON) holds per-utterance arrays for WAV/PNG
  (what `evaluation.asr.wer_of_waves` transcribes).
  """
  mel_cfg, st = vocoder.mel_cfg, vocoder.config.stream
  chunk = st.chunk_tokens
  list(vocoder.stream([utts[0].units[:chunk]]))  # compile the streaming window before timing
  oneshot_rows, stream_rows, griffin_rows, agree_rows = [], [], [], []
  chunk_rtf, first_latency, oneshot_rtf, outputs = [], [], [], []
  for u in utts:
    vocoder.synthesize_mel(u.units)  # compiles this padded length
    t0 = time.perf_counter()
    mel_one = vocoder.synthesize_mel(u.units)  # [frames, n_mels]
    t1 = time.perf_counter()
    wave_one = vocoder.inverter(mel_one)
    seconds = len(wave_one) / mel_cfg.sample_rate
    oneshot_rtf.append(((t1 - t0) / seconds, (time.perf_counter() - t1) / seconds))
    pieces, t_prev = [], time.perf_counter()
    chunks = [u.units[i:i + chunk] for i in range(0, len(u.units), chunk)]
    for piece in vocoder.stream(chunks):
      now = time.perf_counter()
      if not pieces:
        first_latency.append(now - t_prev)
      if len(piece) >= chunk * vocoder.upsample * mel_cfg.hop_length // 2:
        chunk_rtf.append((now - t_prev) / (len(piece) / mel_cfg.sample_rate))
      pieces.append(piece)
      t_prev = now
    wave_stream = np.concatenate(pieces)
    mel_stream = np.concatenate(list(vocoder.stream_mel(chunks)))
    wave_ref_gl = vocoder.inverter(u.mel)
    oneshot_rows.append(_mel_distances(mel_one, u.mel))
    stream_rows.append(_mel_distances(mel_stream, u.mel))
    griffin_rows.append(_mel_distances(mi.log_mel(wave_ref_gl, mel_cfg), u.mel))
    agree = _mel_distances(mel_stream, mel_one)
    agree["wave_lsd_db"] = mi.log_spectral_distance(mi.log_mel(wave_stream, mel_cfg),
                                                    mi.log_mel(wave_one, mel_cfg))
    agree["num_samples_diff"] = abs(len(wave_stream) - len(wave_one))
    agree_rows.append(agree)
    outputs.append({"oneshot": wave_one, "stream": wave_stream, "reference_gl": wave_ref_gl,
                    "mel_oneshot": mel_one})
  result = {
      "num_utterances": len(utts),
      "oneshot_vs_reference": _mean_dicts(oneshot_rows),
      "stream_vs_reference": _mean_dicts(stream_rows),
      "griffin_lim_of_reference_vs_reference": _mean_dicts(griffin_rows),
      "stream_vs_oneshot": _mean_dicts(agree_rows),
      "rtf": {"per_chunk_mean": float(np.mean(chunk_rtf)),
              "per_chunk_max": float(np.max(chunk_rtf)),
              "oneshot_mean": float(np.sum(np.mean(oneshot_rtf, axis=0))),
              "oneshot_flow_mean": float(np.mean(oneshot_rtf, axis=0)[0]),
              "oneshot_griffin_lim_mean": float(np.mean(oneshot_rtf, axis=0)[1]),
              "first_chunk_latency_s_mean": float(np.mean(first_latency)),
              "chunk_tokens": chunk,
              "chunk_seconds": chunk * vocoder.upsample / mel_cfg.frame_rate_hz},
  }
  result["outputs"] = outputs
  return result
