"""Spoken-answer latency benchmark: question audio -> encoder -> Thinker -> Talker -> vocoder.

Times the streaming pipeline users run (`streaming.SpeechPipeline.stream`, through
`speech_io.answer`, as `launch.decode --audio` does) with AR and with MDM at several
steps per block S (the same S for Thinker blocks and Talker chunks) on the same
weights and the same question: time to the first text block, to the first speech
units (Talker chunk 0 handed to the vocoder), to the first audio chunk (vocoder
included) and to the end of the answer, all from the same requests. Each
configuration is run once untimed (compilation, reported as `compile_s`), then all are
timed in interleaved rounds; medians (and minima) are reported.

Answers have a fixed length in every mode: the Thinker never emits eos and the
Talker never emits a special unit (their logits are -inf, `fixed_length`), so every
answer decodes all `max_text_tokens` text and `max_speech_tokens` units whatever the
weights say. The NFE split comes from the pipeline's own per-event counts.
"""
from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from data_pipelines import tts
from vocalnet_jax.decoding import benchmark, block_diffusion, speech_io, streaming
from vocalnet_jax.modeling import build, restore
from vocalnet_jax.modeling.validate import ConfigError, validate_config
from vocalnet_jax.models.decoder import Decoder
from vocalnet_jax.speech import neural_vocoder as nv
from vocalnet_jax.speech import vocoder as voc
from vocalnet_jax.speech.units import UnitTokenizer

Array = jax.Array
FIXED_LENGTH = ("the Thinker never emits eos (nor ids past its tokenizer) and the Talker never "
                "emits a special unit: their logits are -inf, so AR and MDM answers have the "
                "same fixed length (all text blocks, all speech chunks)")
# the plot's label suffix of an MDM row by the Talker's cache update
UPDATE_MARKS = {block_diffusion.DEFAULT_CACHE_UPDATE: "", "extra_forward": " x",
                "reuse_last_step": " r"}
ROW_KEYS = ("mode", "steps", "rule", "cache_update", "text_tokens", "units", "nfe_thinker",
            "nfe_talker", "nfe_talker_text", "nfe_total", "first_text_s", "first_units_s",
            "first_audio_s", "total_s", "compile_s", "text_tokens_per_s", "units_per_s",
            "audio_s", "device")


class BannedLogitsDecoder(Decoder):
  """A `Decoder` whose logits never pick ids >= `first_banned` nor those in `banned`
  (same parameters: a drop-in for a model's Thinker or Talker decoder)."""
  first_banned: int = 0  # 0: none
  banned: tuple[int, ...] = ()

  def logits(self, hidden: Array) -> Array:
    out = super().logits(hidden)  # [batch, length, vocab]
    if self.first_banned:
      out = out.at[..., self.first_banned:].set(-jnp.inf)
    return out.at[..., list(self.banned)].set(-jnp.inf) if self.banned else out


def with_banned_ids(decoder: Decoder, first_banned: int,
                    banned: tuple[int, ...]) -> BannedLogitsDecoder:
  """`decoder` as a BannedLogitsDecoder (same fields, same parameters)."""
  fields = {f.name: getattr(decoder, f.name) for f in dataclasses.fields(Decoder)
            if f.init and f.name not in ("parent", "name")}
  return BannedLogitsDecoder(**fields, first_banned=first_banned, banned=banned)


def fixed_length(pipe: streaming.SpeechPipeline) -> streaming.SpeechPipeline:
  """The pipeline with a model whose answers never stop early (see FIXED_LENGTH)."""
  m, tok = pipe.model, pipe.text_tokenizer
  thinker = with_banned_ids(m.thinker, tok.vocab_size, (tok.eos_id,))
  units = pipe.speech_vocab.num_units
  talker = m.talker.clone(decoder=with_banned_ids(m.talker.decoder, units, ()))
  return dataclasses.replace(pipe, model=m.clone(thinker=thinker, talker=talker))


class IdTokenizer:
  """Text tokenizer stand-in for random weights without a corpus: the special ids of
  our trained sentencepiece models, `vocab_size` ids, text = the ids written out."""

  def __init__(self, vocab_size: int):
    self.vocab_size = vocab_size
    for name, value in build.TRAINED_TEXT_IDS._asdict().items():
      setattr(self, name, value)

  def decode(self, ids: Any) -> str:
    return " ".join(str(int(i)) for i in ids)


def random_pipeline(config: ml_collections.ConfigDict,
                    rule: str = "topk") -> streaming.SpeechPipeline:
  """A SpeechPipeline with random weights and no corpus: vocabulary sizes from
  `config.model.vocab_size` and `config.talker.num_units` (both must be set)."""
  validate_config(config)
  model = build.build(config, shapes_only=True)
  init = jax.jit(lambda r: nn.unbox(model.init_params(r)))
  return streaming.SpeechPipeline(
      model.module, init(jax.random.key(config.seed)), IdTokenizer(config.model.vocab_size),
      model.speech_vocab, streaming.stream_config(config, rule=rule), speech_io.mel_config(config))


def has_corpus(config: ml_collections.ConfigDict) -> bool:
  return os.path.exists(os.path.join(config.data.dir, "summary.json"))


def random_vocoder(config: ml_collections.ConfigDict) -> voc.Vocoder:
  """An untrained vocoder of `config` (units.vocab_size and frame rate set): the same
  compute as a trained one (its `inversion.kind`'s inverter, random too), identity mel
  statistics."""
  model = voc.build_model(config)
  n_mels = config.mel.n_mels
  key_flow, key_inverter = jax.random.split(jax.random.key(config.seed))
  params = jax.jit(voc.init_params, static_argnums=0)(model, key_flow)
  zeros, ones = np.zeros(n_mels, np.float32), np.ones(n_mels, np.float32)
  inverter = None  # griffin_lim: built by the Vocoder
  if config.inversion.kind == "vocos":
    inverter = nv.NeuralInverter(config, nv.init_params(nv.generator_from_config(config),
                                                        key_inverter, n_mels), zeros, ones)
  return voc.Vocoder(config, params, zeros, ones, inverter)


def load_benchmark_pipeline(config: ml_collections.ConfigDict, checkpoint: Optional[str],
                            vocoder_dir: Optional[str],
                            vocoder_config: ml_collections.ConfigDict, rule: str = "topk"
                            ) -> tuple[streaming.SpeechPipeline, str]:
  """(pipeline with its vocoder, what the vocoder is). Weights: `checkpoint`'s, else
  random (with the corpus tokenizers when config.data.dir holds a corpus, else the
  vocabulary sizes of config.model.vocab_size / config.talker.num_units). Vocoder:
  `vocoder_dir`'s, else a random one of `vocoder_config` at the corpus's unit rate
  (25 Hz without a corpus: CosyVoice2's, as the demo corpus)."""
  if checkpoint or has_corpus(config):
    pipe = speech_io.load_pipeline(config, checkpoint, rule=rule)
    frame_rate = UnitTokenizer.load(os.path.join(config.data.dir, "units.npz")
                                    ).config.frame_rate_hz
  else:
    if not (config.model.vocab_size and config.talker.num_units):
      raise ConfigError(f"config.data.dir={config.data.dir!r} holds no corpus: random weights "
                        "need config.model.vocab_size and config.talker.num_units")
    pipe = random_pipeline(config, rule)
    frame_rate = 25
  if vocoder_dir:
    if not os.path.exists(os.path.join(vocoder_dir, "config.json")):
      raise ConfigError(f"vocoder {vocoder_dir}: no config.json there; give "
                        "launch.train_vocoder's W/vocoder")
    vocoder, what = voc.Vocoder.load(vocoder_dir), vocoder_dir
    if vocoder.vocab_size < pipe.speech_vocab.num_units:
      raise ConfigError(f"vocoder {vocoder_dir} reads {vocoder.vocab_size} units; the Talker "
                        f"speaks {pipe.speech_vocab.num_units}")
  else:
    vocoder_config = vocoder_config.copy_and_resolve_references()
    vocoder_config.units.vocab_size = pipe.speech_vocab.num_units
    vocoder_config.units.frame_rate_hz = float(frame_rate)
    vocoder = random_vocoder(vocoder_config)
    what = f"random {vocoder_config.preset} vocoder ({frame_rate} Hz units)"
  return dataclasses.replace(pipe, vocoder=vocoder), what


def load_params(config: ml_collections.ConfigDict, checkpoint: str) -> Any:
  """The answering params of a speech workdir or export (shapes of `config`)."""
  return restore.load(config, checkpoint, jax.devices()[:1])[1]


def synthetic_question(text: str, sample_rate: int = 16000) -> np.ndarray:
  """The question spoken by the corpus TTS (espeak-ng, default voice) [samples]."""
  return tts.synthesize(text, sample_rate=sample_rate)


@dataclasses.dataclass(frozen=True)
class SpeechBenchmarkSpec:
  """What to run: MDM steps S (kept when S <= text block and <= speech chunk), the commit
  rule, the Talker's cache updates, timed rounds."""
  steps: tuple[int, ...] = (1, 2, 4)
  rule: str = "topk"
  cache_updates: tuple[str, ...] = (block_diffusion.DEFAULT_CACHE_UPDATE,)
  repeats: int = 5


def modes(base: streaming.StreamConfig, spec: SpeechBenchmarkSpec
          ) -> list[tuple[dict, streaming.StreamConfig]]:
  """(row metadata, StreamConfig): AR first, then MDM per (cache_update, S)."""
  out = [(dict(mode="ar", steps=1, rule="greedy", cache_update="kv"),
          dataclasses.replace(base, thinker_mode="ar", talker_mode="ar"))]
  for update in spec.cache_updates:
    for s in spec.steps:
      if s <= min(base.text_block, base.speech_chunk):
        out.append((dict(mode="mdm", steps=s, rule=spec.rule, cache_update=update),
                    dataclasses.replace(base, thinker_mode="mdm", talker_mode="mdm", text_steps=s,
                                        speech_steps=s, rule=spec.rule, cache_update=update)))
  return out


def nfe_split(pipe: streaming.SpeechPipeline, wav: np.ndarray) -> dict[str, int]:
  """Forwards of one answer by part, from the units-only stream's per-event counts: a
  text event adds its Thinker block's forwards + 1 Talker forward writing that block's
  conditioning; a units event adds its Talker chunk's forwards. (The encoder and the
  Thinker's prefill are one forward each, not counted, as in `StreamEvent.nfe`.)"""
  counts = dict(text_tokens=0, units=0, nfe_thinker=0, nfe_talker=0, nfe_talker_text=0)
  nfe = 0
  for event in dataclasses.replace(pipe, vocoder=None).stream(wav):
    delta, nfe = event.nfe - nfe, event.nfe
    if event.kind == "text":
      counts["text_tokens"] += pipe.cfg.text_block
      counts["nfe_thinker"] += delta - 1
      counts["nfe_talker_text"] += 1
    else:
      counts["units"] += event.units.size
      counts["nfe_talker"] += delta
  counts["nfe_total"] = nfe
  return counts


class _ClockedVocoder:
  """A vocoder noting when the pipeline hands it Talker chunk 0 (the pipeline calls
  `stream` once that chunk's units exist), so first units and first audio come from the
  same request."""

  def __init__(self, vocoder: voc.Vocoder):
    self.vocoder, self.first_units_at = vocoder, None

  def stream(self, unit_chunks: Any) -> Any:
    self.first_units_at = time.perf_counter()
    return self.vocoder.stream(unit_chunks)


def _timed(pipe: streaming.SpeechPipeline, wav: np.ndarray) -> dict[str, float]:
  """One streamed request (events hold host arrays: every time is synced)."""
  clock = _ClockedVocoder(pipe.vocoder)
  tick = time.perf_counter()
  report = speech_io.answer(dataclasses.replace(pipe, vocoder=clock), wav)
  if report.first_audio_s is None:
    raise RuntimeError("the answer had no audio")
  return dict(first_text_s=report.first_text_s, first_units_s=clock.first_units_at - tick,
              first_audio_s=report.first_audio_s, total_s=report.total_s,
              audio_s=report.audio.size / pipe.mel_config.sample_rate, nfe=report.nfe)


def run(mdm_pipe: streaming.SpeechPipeline, wav: np.ndarray, spec: SpeechBenchmarkSpec,
        ar_params: Optional[Any] = None) -> list[dict]:
  """One row per mode (ROW_KEYS + minima), AR first. `mdm_pipe` carries the weights,
  vocoder and base StreamConfig; AR rows use `ar_params` (default: the same weights)."""
  if mdm_pipe.vocoder is None:
    raise ValueError("the latency benchmark needs a vocoder (first audio chunk)")
  base = fixed_length(mdm_pipe)
  list(base.vocoder.stream([np.zeros(base.cfg.speech_chunk, np.int32)]))  # compile it once
  pipes, metas, first_calls = [], [], []
  for meta, cfg in modes(base.cfg, spec):
    params = ar_params if meta["mode"] == "ar" and ar_params is not None else base.params
    pipe = dataclasses.replace(base, cfg=cfg, params=params)
    first_calls.append(_timed(pipe, wav)["total_s"])  # compiles this configuration's steps
    pipes.append(pipe)
    metas.append(dict(meta, **nfe_split(pipe, wav)))
  rounds = [[_timed(p, wav) for p in pipes] for _ in range(spec.repeats)]
  rows = []
  for i, (meta, pipe, first_call) in enumerate(zip(metas, pipes, first_calls)):
    runs = [r[i] for r in rounds]
    if any(r["nfe"] != meta["nfe_total"] for r in runs):
      raise RuntimeError(f"{meta['mode']} S={meta['steps']}: timed answers' NFE differs from "
                         f"the counted one ({meta['nfe_total']})")
    med = {k: float(np.median([r[k] for r in runs])) for k in
           ("first_text_s", "first_units_s", "first_audio_s", "total_s", "audio_s")}
    rows.append(dict(
        meta, **med, **{f"{k}_min": float(min(r[k] for r in runs)) for k in
                        ("first_units_s", "first_audio_s", "total_s")},
        compile_s=max(first_call - med["total_s"], 0.0),
        text_tokens_per_s=meta["text_tokens"] / med["total_s"],
        units_per_s=meta["units"] / med["total_s"],
        real_time_factor=med["total_s"] / med["audio_s"], repeats=spec.repeats,
        text_block=pipe.cfg.text_block, speech_chunk=pipe.cfg.speech_chunk,
        device=benchmark.device_name()))
  return rows


def summary(rows: list[dict]) -> list[dict]:
  """MDM rows relative to the AR row: change of first-audio / first-units latency and
  total time (-0.34 = the paper's 34 % lower first-chunk latency), NFE ratios."""
  ar = next(r for r in rows if r["mode"] == "ar")
  change = lambda r, k: r[k] / ar[k] - 1.0  # noqa: E731
  return [dict(steps=r["steps"], cache_update=r["cache_update"],
               first_audio_change=change(r, "first_audio_s"),
               first_units_change=change(r, "first_units_s"),
               total_change=change(r, "total_s"),
               nfe_thinker_ratio=r["nfe_thinker"] / ar["nfe_thinker"],
               nfe_talker_ratio=r["nfe_talker"] / ar["nfe_talker"])
          for r in rows if r["mode"] == "mdm"]


def result(rows: list[dict], pipe: streaming.SpeechPipeline, **about: Any
           ) -> tuple[dict, dict]:
  """(config, metrics) of a result file: what was run (`about`: config, checkpoints,
  question, vocoder...), the fixed-length rule, the stream config and the machine's load;
  then the rows and their summary."""
  config = {"what": "spoken-answer latency: question audio -> encoder -> Thinker -> Talker -> "
                    "vocoder (streaming pipeline); medians over repeats after a compile run",
            **about, "fixed_length": FIXED_LENGTH,
            # rows override its modes, steps and cache_update
            "base_stream_config": dataclasses.asdict(pipe.cfg), **benchmark.run_info()}
  return config, {"rows": rows, "summary": summary(rows)}


def plot(rows: list[dict], path: str) -> None:
  """PNG: latencies vs S (MDM) with AR as horizontal lines; NFE by part per mode."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  ar = next(r for r in rows if r["mode"] == "ar")
  mdm = sorted((r for r in rows if r["mode"] == "mdm"), key=lambda r: (r["cache_update"],
                                                                      r["steps"]))
  fig, (ax_lat, ax_nfe) = plt.subplots(1, 2, figsize=(11, 4))
  for key, color, label in (("first_units_s", "tab:green", "first units"),
                            ("first_audio_s", "tab:blue", "first audio chunk"),
                            ("total_s", "tab:orange", "whole answer")):
    for update, style in zip(sorted({r["cache_update"] for r in mdm}), ("o-", "s--", "^:")):
      sub = [r for r in mdm if r["cache_update"] == update]
      ax_lat.plot([r["steps"] for r in sub], [r[key] for r in sub], style, color=color,
                  label=f"MDM {label} ({update})")
    ax_lat.axhline(ar[key], color=color, ls=":", label=f"AR {label}")
  ax_lat.set_xscale("log", base=2)
  ax_lat.set_yscale("log")
  ax_lat.set_xlabel("MDM steps per block S (Thinker and Talker)")
  ax_lat.set_ylabel("seconds after the question ends (median)")
  ax_lat.legend(fontsize=7)
  names = ["AR"] + [f"S={r['steps']}" + UPDATE_MARKS[r["cache_update"]] for r in mdm]
  parts = [ar] + mdm
  thinker = np.array([r["nfe_thinker"] for r in parts])
  talker = np.array([r["nfe_talker"] + r["nfe_talker_text"] for r in parts])
  ax_nfe.bar(names, thinker, label="Thinker")
  ax_nfe.bar(names, talker, bottom=thinker, label="Talker (chunks + text writes)")
  ax_nfe.set_ylabel("network forwards per answer")
  ax_nfe.legend(fontsize=7)
  fig.suptitle(f"spoken answer, {ar['text_tokens']} text tokens + {ar['units']} units, "
               f"{ar['device']}")
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
