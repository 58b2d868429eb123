"""The floors of both judges of spoken answers, on the corpus audio of the reference
answers and on the vocoder's resynthesis of their reference units: ASR WER (pocketsphinx,
3-gram LM of the train answers) and the forced choice among the questions' reference texts
(`evaluation.forced_choice`: share identified as their own text).

  python benchmarks/judge_floors.py --data=demo_out/data --vocoder=demo_out/vocoder/vocoder \
      --splits=test,heldout --n=50 --out=benchmarks/results/judge_floors_tiny_cpu.json

Writes the WAVs under --wav_dir (default: next to the vocoder). Without --vocoder: the
floors on the corpus audio alone.
"""
from __future__ import annotations

import os
import sys

from absl import app, flags

from configs import ar
from launch import logs
from vocalnet_jax.evaluation import result_file, speech_evaluator
from vocalnet_jax.modeling.validate import ConfigError
from vocalnet_jax.speech.vocoder import Vocoder

_DATA = flags.DEFINE_string("data", None, "A corpus written by launch.prepare_data.")
_VOCODER = flags.DEFINE_string("vocoder", None, "launch.train_vocoder's W/vocoder (none: the "
                               "corpus audio's floors alone).")
_SPLITS = flags.DEFINE_list("splits", ["test", "heldout"], "Corpus splits.")
_NUM = flags.DEFINE_integer("n", 50, "The first n answers of each split.")
_OUT = flags.DEFINE_string("out", None, "Result file (benchmarks/results/*.json).")
_WAV_DIR = flags.DEFINE_string("wav_dir", None, "WAVs (default: VOCODER/../judge_floors, "
                               "else DATA/judge_floors).")
flags.mark_flags_as_required(["data", "out"])


def main(argv):
  del argv
  config = ar.get_config("tiny,stage=2")  # the units' chunking and the corpus's tokenizers
  config.data.dir = _DATA.value
  wav_dir = _WAV_DIR.value or os.path.join(
      os.path.dirname(_VOCODER.value) if _VOCODER.value else _DATA.value, "judge_floors")
  try:
    vocoder = Vocoder.load(_VOCODER.value) if _VOCODER.value else None
    metrics = {}
    for split in _SPLITS.value:
      judges = speech_evaluator.Judges.of(config, split, _NUM.value)
      floors, _ = speech_evaluator.judge_floors(config, vocoder, judges,
                                                os.path.join(wav_dir, split))
      metrics[split] = {"num_examples": len(judges.examples),
                        "forced_choice_candidates": len(judges.forced_choice.candidates),
                        **floors}
      print(split, metrics[split], flush=True)
  except (ConfigError, FileNotFoundError) as e:
    sys.exit(f"error: {e}")
  result_file.write(_OUT.value, {"data": _DATA.value, "vocoder": _VOCODER.value,
                                 "splits": _SPLITS.value, "n": _NUM.value,
                                 "asr": "pocketsphinx en-us, 3-gram LM of the train answers",
                                 "forced_choice": "DTW over mean-normalised MFCCs to the "
                                                  "assistant voice speaking each candidate"},
                    metrics)
  print(f"wrote {_OUT.value}")


if __name__ == "__main__":
  app.run(logs.main_quietly(main))
