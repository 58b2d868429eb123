"""Unit accuracy of a Talker at each kept checkpoint of a stage-2 run (teacher-forced and
free-running against the reference units; `diagnostics.unit_accuracy`):

  python -m launch.talker_units --checkpoint=W --split=test --n=50

Appends one JSON row per new step to --out (default: W/unit_accuracy.jsonl), so rerunning
it while the Talker trains extends the curve; --result also writes every row of --out as a
benchmarks/results file. A bad workdir is one line and exit status 1.
"""
import json
import os
import sys

from absl import app, flags

from launch.logs import quiet_logging
from vocalnet_jax.diagnostics import unit_accuracy
from vocalnet_jax.evaluation import result_file
from vocalnet_jax.modeling import run_config
from vocalnet_jax.modeling.validate import ConfigError

_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Stage-2 training workdir.")
_SPLIT = flags.DEFINE_string("split", "test", "Corpus split of the reference answers.")
_NUM = flags.DEFINE_integer("n", 50, "Answers scored (the first n of --split).")
_STEPS = flags.DEFINE_integer("steps", 0, "MDM Talker steps per chunk (0: the config's).")
_OUT = flags.DEFINE_string("out", None,
                           "JSON lines file (default: CHECKPOINT/unit_accuracy.jsonl).")
_RESULT = flags.DEFINE_string("result", None, "Also write the curve to this result file.")
flags.mark_flags_as_required(["checkpoint"])


def main(argv):
  del argv
  quiet_logging()
  try:
    config = run_config.resolve(None, _CHECKPOINT.value)
    out = _OUT.value or os.path.join(_CHECKPOINT.value, "unit_accuracy.jsonl")
    unit_accuracy.measure_checkpoints(config, _CHECKPOINT.value, _SPLIT.value, _NUM.value,
                                      _STEPS.value, out)
  except ConfigError as e:
    sys.exit(f"error: {e}")
  if _RESULT.value:
    with open(out, encoding="utf-8") as f:
      rows = [json.loads(line) for line in f if line.strip()]
    result_file.write(_RESULT.value,
                      {"checkpoint": _CHECKPOINT.value, "objective": config.objective,
                       "init_from": config.get("init_from"), "train": config.train.to_dict(),
                       "talker": config.talker.to_dict()},
                      {"curve": rows},
                      command=result_file.command_line(module="launch.talker_units"))


if __name__ == "__main__":
  app.run(main)
