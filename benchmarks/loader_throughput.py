"""Speech loader throughput (examples/s) on a `launch.prepare_data` output, as JSON.

  python -m benchmarks.loader_throughput --data=DATA --num_batches=100 --out=loader.json
  python -m benchmarks.loader_throughput --config=configs/mdm.py:small --data=DATA

Reports the grain pipeline rate (the batches a training config reads: its `data` padding,
`train.batch_size` and the encoder's mel bins; units computed with the data's units.npz)
and a per-example cost breakdown: reading a
record, log-mel from audio (what caching `question_mel` saves), reading with a
cached mel, tokenization and unit encoding. Compare a dataset built with
`--config.corpus.cache_mel_bins=80` against one without to decide on caching.
"""

from __future__ import annotations

import glob
import json
import os
import time

import grain
import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

from data_pipelines import features, speech_loader, text_tokenizer
from launch import logs
from vocalnet_jax.evaluation import result_file
from vocalnet_jax.speech import units as units_lib

_CONFIG = config_flags.DEFINE_config_file("config", "configs/mdm.py:tiny",
                                          "Speech training config[:options] whose batches to time.")
_DATA = flags.DEFINE_string("data", None, "prepare_data output directory.", required=True)
_SPLIT = flags.DEFINE_string("split", "train", "Split to read.")
_NUM_BATCHES = flags.DEFINE_integer("num_batches", 100, "Timed batches after the first.")
_BREAKDOWN = flags.DEFINE_integer("breakdown_examples", 50, "Examples for the cost breakdown.")
_OUT = flags.DEFINE_string("out", None, "Write the JSON here too.")


def _mean_seconds(fn, items) -> float:
  t0 = time.perf_counter()
  for item in items:
    fn(item)
  return (time.perf_counter() - t0) / max(len(items), 1)


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  config = _CONFIG.value
  info = glob.glob(os.path.join(_DATA.value, "**", "dataset_info.json"), recursive=True)
  if len(info) != 1:
    raise app.UsageError(f"expected one TFDS dataset under {_DATA.value}, found {info}")
  source = speech_loader.open_source(os.path.dirname(info[0]), _SPLIT.value)
  tok = text_tokenizer.load_tokenizer(os.path.join(_DATA.value, "tokenizer.model"))
  unit_tok = units_lib.UnitTokenizer.load(os.path.join(_DATA.value, "units.npz"))
  batch_config = speech_loader.SpeechBatchConfig.from_config(config.data)
  mel_config = features.MelConfig(n_mels=config.encoder.n_mels)  # as training reads them
  transform = speech_loader.SpeechTransform(tok, batch_config, mel_config, unit_tok)
  batch_size = config.train.batch_size

  # Per-example costs first, single-threaded, before grain's threads start.
  speech_loader.limit_blas_threads()
  n = min(_BREAKDOWN.value, len(source))
  records = [source[i] for i in range(n)]
  transform(records[0])  # warm caches (mel filters, lazy imports)
  has_cached = "question_mel" in records[0]
  per_example_ms = {
      "read_record": 1e3 * _mean_seconds(lambda i: source[i], list(range(n))),
      "log_mel_from_audio": 1e3 * _mean_seconds(
          lambda r: features.log_mel(r["question_audio"], mel_config), records),
      "tokenize": 1e3 * _mean_seconds(
          lambda r: [tok.encode(r[k].decode()) for k in ("question_text", "answer_text")], records),
      "unit_encode_answer": 1e3 * _mean_seconds(lambda r: unit_tok.encode(r["answer_audio"]),
                                                records),
      "full_transform": 1e3 * _mean_seconds(transform, records),
  }

  ds = speech_loader.make_speech_dataset(source, transform, batch_size=batch_size, seed=0,
                                         shard=grain.sharding.NoSharding())
  t0 = time.perf_counter()
  it = iter(ds)
  next(it)
  first_batch_s = time.perf_counter() - t0
  # Timed over many batches so grain's prefetch buffer (filled meanwhile) matters little.
  t0 = time.perf_counter()
  for _ in range(_NUM_BATCHES.value):
    next(it)
  elapsed = time.perf_counter() - t0
  result = {
      "data": _DATA.value, "split": _SPLIT.value, "num_examples_in_split": len(source),
      "dataset_has_cached_mel": has_cached, "batch_size": batch_size,
      "timed_batches": _NUM_BATCHES.value,
      "examples_per_s": _NUM_BATCHES.value * batch_size / elapsed,
      "batches_per_s": _NUM_BATCHES.value / elapsed,
      "first_batch_s": first_batch_s,
      "per_example_ms": per_example_ms,
      "num_units": unit_tok.num_units, "cpu_count": os.cpu_count(),
      "mean_question_seconds": float(np.mean([r["question_audio"].size for r in records]) / 16000),
  }
  print(json.dumps(result, indent=1))
  if _OUT.value:
    config = {k: result.pop(k) for k in ("data", "split", "batch_size", "timed_batches")}
    result_file.write(_OUT.value, config, result)


if __name__ == "__main__":
  app.run(logs.main_quietly(main))
