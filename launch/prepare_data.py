"""Builds the speech data: corpus -> TFDS ArrayRecord -> text tokenizer -> speech units.

  python -m launch.prepare_data --config=configs/data.py:tiny --out=DIR

Writes under DIR:
  tfds/<builder>/<config>/1.1.0/   the dataset (+ build_report.json: kept/skipped and why)
  tokenizer.model                  sentencepiece model (unless config.text_tokenizer.path)
  units.npz                        speech-unit tokenizer
  units_reconstruction.png         log-mel vs codebook reconstruction of one test answer
  question_frames.npz              each split's question mel frames (length-grouped batches)
  summary.json                     hours, kept/skipped, vocab sizes, codebook usage, longest
                                   mel/tokens/units per split, wall times
Rerunning with the same DIR reuses a complete dataset and refits the tokenizers.
`prepare(config, out)` does the same from Python (e.g. a notebook).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from absl import app, flags, logging
import ml_collections
from ml_collections import config_flags
import numpy as np
import tqdm

from data_pipelines import features
from data_pipelines import tfds_builders as tb
from data_pipelines import pretrained_tokenizer, text_tokenizer, tts
from data_pipelines.speech_loader import (IndexedSource, limit_blas_threads, record_text,
                                          save_question_frames)
from vocalnet_jax.evaluation.plots import save_mel_panels
from vocalnet_jax.speech import units as units_lib

_CONFIG = config_flags.DEFINE_config_file("config", None, "Data config file[:preset].")
_OUT = flags.DEFINE_string("out", None, "Output directory.")
flags.mark_flags_as_required(["config", "out"])


def general_words(spec: str, n: int) -> tuple[str, ...]:
  """`corpus.read_words_from`'s commonest `n` words ('' -> none)."""
  if not spec:
    return ()
  try:
    return pretrained_tokenizer.load(spec).common_words(n)
  except (FileNotFoundError, ValueError) as e:
    raise app.UsageError(f"corpus.read_words_from: {e}") from None


def make_builder(config: ml_collections.ConfigDict, data_dir: str) -> tb.QABuilder:
  """The embedded-corpus builder, or the manifest builder when manifests are configured."""
  c = config.corpus
  limits = tb.AudioLimits(max_seconds=c.max_seconds)
  manifests = tuple((s, p) for s, p in c.manifest.items() if p)
  if manifests:
    return tb.SpokenQAManifest(data_dir=data_dir, config=tb.ManifestConfig(
        name=f"manifest_mel{c.cache_mel_bins}", splits=manifests,
        cache_mel_bins=c.cache_mel_bins, limits=limits))
  counts = (("train", c.num_train), ("test", c.num_test), ("heldout", c.num_heldout),
            ("unseen_voices", c.num_unseen_voices), ("read", c.num_read))
  assistant = tts.Speaker.from_name(c.assistant_voice)  # VoiceError names a malformed voice
  read_words = general_words(c.read_words_from, c.num_read_words) if c.num_read else ()
  name = (f"s{c.seed}_n{c.num_train}-{c.num_test}-{c.num_heldout}-{c.num_unseen_voices}"
          f"_spk{c.num_speakers}-{c.num_heldout_speakers}_mel{c.cache_mel_bins}"
          f"_asst-{assistant.name.replace('+', '-')}"
          + (f"_read{c.num_read}" if c.num_read else "")
          + (f"_words{len(read_words)}" if read_words else ""))
  return tb.SpokenQA(data_dir=data_dir, config=tb.SpokenQAConfig(
      name=name, num_examples=counts, seed=c.seed, num_speakers=c.num_speakers,
      num_heldout_speakers=c.num_heldout_speakers, assistant_voice=assistant.name,
      cache_mel_bins=c.cache_mel_bins, num_workers=c.num_workers, limits=limits,
      read_words=read_words))


def _records(source, desc: str, limit: int | None = None):
  n = len(source) if limit is None else min(limit, len(source))
  for i in tqdm.trange(n, desc=desc, leave=False):
    yield source[i]


def split_lengths(source, tok: text_tokenizer.TextTokenizer,
                  unit_tok: units_lib.UnitTokenizer, mel_config: features.MelConfig,
                  split: str) -> tuple[dict[str, int], list[int]]:
  """Longest question mel / question tokens / response (+eos) / answer units in a split,
  and every question's mel frames in source order (for length-grouped batches).

  Training configs must pad to at least the longest (`SpeechBatchConfig` raises otherwise).
  """
  pool = units_lib.UnitTokenizer.pool(unit_tok.config)
  longest = {"mel_frames": 0, "question_tokens": 0, "response_tokens": 0, "answer_units": 0}
  question_frames = []
  for r in _records(source, f"lengths {split}"):
    answer_samples = np.asarray(r["answer_audio"]).size
    lengths = {
        "mel_frames": features.num_frames(np.asarray(r["question_audio"]).size, mel_config),
        "question_tokens": len(tok.encode(record_text(r["question_text"]))),
        "response_tokens": len(tok.encode(record_text(r["answer_text"]))) + 1,  # + eos
        "answer_units": (features.num_frames(answer_samples, unit_tok.mel_config) // pool
                         if answer_samples else 0),
    }
    longest = {k: max(v, lengths[k]) for k, v in longest.items()}
    question_frames.append(lengths["mel_frames"])
  return longest, question_frames


def save_reconstruction_png(tokenizer: units_lib.UnitTokenizer, wav: np.ndarray, title: str,
                            path: str) -> None:
  """Original log-mel above the mel rebuilt from the unit codebook."""
  mel = tokenizer.stacked_frames(wav, tokenizer.config).reshape(-1, tokenizer.config.n_mels)
  rebuilt = tokenizer.decode_mel(tokenizer.encode(wav))
  save_mel_panels(path, title, {"log-mel": mel, "from units": rebuilt}, -1.5, 1.5)


def prepare(config: ml_collections.ConfigDict, out: str) -> dict[str, Any]:
  """Runs every stage and returns the summary (also written to out/summary.json)."""
  os.makedirs(out, exist_ok=True)
  limit_blas_threads()  # log-mel matmuls are tiny; BLAS threads only contend
  times: dict[str, float] = {}
  t0 = time.time()
  builder = make_builder(config, os.path.join(out, "tfds"))
  report = tb.build(builder)
  times["corpus_s"] = time.time() - t0
  sources = {s: IndexedSource(builder.as_data_source(s)) for s in builder.info.splits}
  train, test = sources["train"], sources.get("test", sources["train"])

  t0 = time.time()
  if config.text_tokenizer.path:
    tok = text_tokenizer.load_tokenizer(config.text_tokenizer.path)
  else:
    texts = [record_text(r[k]) for r in _records(train, "tokenizer text")
             for k in ("question_text", "answer_text")]
    tok = text_tokenizer.train_sentencepiece(texts, config.text_tokenizer.vocab_size,
                                             config.text_tokenizer.model_type)
    tok.save(os.path.join(out, "tokenizer.model"))
  times["text_tokenizer_s"] = time.time() - t0

  t0 = time.time()
  unit_config = units_lib.UnitConfig.from_config(config.units)
  unit_tok = units_lib.UnitTokenizer.fit(
      (r["answer_audio"] for r in _records(train, "unit features")), unit_config,
      max_frames=config.units.max_fit_frames)
  unit_tok.save(os.path.join(out, "units.npz"))
  times["units_fit_s"] = time.time() - t0
  t0 = time.time()
  answers = [np.asarray(r["answer_audio"]) for r in _records(test, "unit usage")]
  answers = [a for a in answers if a.size]
  unit_seqs = [unit_tok.encode(a) for a in answers]
  seconds = sum(a.size for a in answers) / 16000
  usage = units_lib.codebook_usage(unit_seqs, unit_tok.num_units)
  usage["units_per_second"] = usage["num_tokens"] / max(seconds, 1e-9)
  if answers:
    title = f"{unit_tok.num_units} units at {unit_tok.frame_rate_hz} Hz"
    save_reconstruction_png(unit_tok, answers[0], title,
                            os.path.join(out, "units_reconstruction.png"))
  times["units_eval_s"] = time.time() - t0
  mel_config = features.MelConfig.from_config(config.mel)
  per_split = {s: split_lengths(src, tok, unit_tok, mel_config, s) for s, src in sources.items()}
  lengths = {s: longest for s, (longest, _) in per_split.items()}
  save_question_frames(out, {s: frames for s, (_, frames) in per_split.items()})

  corpus_minutes = times["corpus_s"] / 60
  summary = {
      "dataset_dir": os.path.relpath(builder.data_dir, out),  # read against config.data.dir
      "hours": report["hours"], "total_hours": report["total_hours"],
      "kept": report["kept"], "skipped": report["skipped"],
      "num_skipped": sum(sum(c.values()) for c in report["skipped"].values()),
      "text_vocab_size": tok.vocab_size,
      "text_special_ids": {k: getattr(tok, f"{k}_id") for k in
                           ("pad", "bos", "eos", "mask", "user", "assistant")},
      "units": {"num_units": unit_tok.num_units, "frame_rate_hz": unit_tok.frame_rate_hz,
                "usage_on": "test answers" if "test" in sources else "train answers", **usage},
      "max_lengths": lengths,
      "wall_times_s": times,
      "audio_hours_per_build_minute": report["total_hours"] / max(corpus_minutes, 1e-9),
      # general English the read split adds (`spoken_qa.unheard_words` counts them heard)
      "read_words": list(getattr(builder.builder_config, "read_words", ())),
  }
  with open(os.path.join(out, "summary.json"), "w") as f:
    json.dump(summary, f, indent=1)
  return summary


def main(argv):
  del argv
  if not flags.FLAGS["verbosity"].present:  # TFDS logs every shard at INFO
    logging.set_verbosity(logging.WARNING)
  try:
    summary = prepare(_CONFIG.value, _OUT.value)
  except tts.VoiceError as e:
    raise app.UsageError(str(e)) from None
  print(json.dumps(summary, indent=1))
  skipped = summary["skipped"]
  print(f"\n{summary['total_hours']:.2f} h of audio, kept {summary['kept']}, skipped "
        f"{summary['num_skipped']} {skipped or ''}; text vocab {summary['text_vocab_size']}, "
        f"{summary['units']['num_units']} units at {summary['units']['frame_rate_hz']} Hz "
        f"({summary['units']['used_fraction']:.0%} used, perplexity "
        f"{summary['units']['perplexity']:.0f}); corpus built in "
        f"{summary['wall_times_s']['corpus_s']:.0f} s -> {_OUT.value}")


if __name__ == "__main__":
  app.run(main)
