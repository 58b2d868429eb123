"""Records a finished `make demo` run as a result file (one run per call, appended).

  make demo > demo.log
  python -m benchmarks.demo_result --demo_dir=demo_out --log=demo.log \
      --label="seed 0" --out=benchmarks/results/demo_tiny_cpu.json

Reads the run's recipe (`recipe.json`), the last logged loss of every training stage
(`metrics.jsonl`), the AR and MDM evaluations (`eval_{ar,mdm}/eval.json`) and, from the
demo's printed log, the wall time of every stage. Repeated runs (other seeds, another
machine) are appended to the same file's `metrics.runs`, so the spread a figure has from
run to run is stored beside the figure.
"""
from __future__ import annotations

import datetime
import json
import os
import re
import sys

from absl import app, flags

from launch import logs
from vocalnet_jax.evaluation import result_file

_DEMO_DIR = flags.DEFINE_string("demo_dir", "demo_out", "The demo's DEMO_DIR.")
_LOG = flags.DEFINE_string("log", None, "The demo's printed output (stage wall times).")
_LABEL = flags.DEFINE_string("label", "seed 0", "What distinguishes this run.")
_OUT = flags.DEFINE_string("out", "benchmarks/results/demo_tiny_cpu.json", "Result file.")

STAGES = ("ar_stage0", "ar_stage1", "mdm_stage1", "ar_stage2", "mdm_stage2")
# `=== 3/11 AR speech Thinker ... (12:34:56) ===`, printed by launch.recipe at each stage start
_STAGE_LINE = re.compile(r"^=== (\d+)/\d+ (.*) \((\d\d:\d\d:\d\d)\) ===$")


def stage_wall_s(log_text: str, end: datetime.datetime) -> list[dict]:
  """Seconds between consecutive stage headers of the demo log; the last stage ends at
  `end` (the log file's modification time)."""
  starts = [(m.group(2), datetime.datetime.strptime(m.group(3), "%H:%M:%S"))
            for m in map(_STAGE_LINE.match, log_text.splitlines()) if m]
  times = [t for _, t in starts] + [end.replace(year=1900, month=1, day=1)]
  return [{"stage": name, "wall_s": round((b - a).total_seconds()) % 86400}
          for (name, a), b in zip(starts, times[1:])]


def last_loss(workdir: str) -> dict:
  """The last logged step and loss of a training workdir."""
  with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
    rows = [json.loads(line) for line in f if '"loss"' in line]
  return {"stage": workdir, "step": rows[-1]["step"], "loss": rows[-1]["loss"]}


def evaluation(directory: str) -> tuple[dict, dict]:
  """(summary of the one evaluated setting, floors) of a `launch.evaluate` output."""
  with open(os.path.join(directory, "eval.json"), encoding="utf-8") as f:
    run = json.load(f)
  setting, result = next(iter(run["settings"].items()))  # the demo evaluates one setting
  floors = {k: v for k, v in run["floors"].items() if k != "examples"}
  return {"setting": setting, "rule": result.get("rule", "greedy"), **result["summary"]}, floors


def demo_run(demo_dir: str, label: str, log: str | None) -> dict:
  """One run's figures."""
  ar, floors = evaluation(os.path.join(demo_dir, "eval_ar"))
  mdm, _ = evaluation(os.path.join(demo_dir, "eval_mdm"))
  with open(os.path.join(demo_dir, "recipe.json"), encoding="utf-8") as f:
    recipe = json.load(f)
  run = {"label": label, "commit": result_file.git_commit(),
         "machine": result_file.machine_info(),
         "recipe": recipe["recipe"],  # the recipe and its knobs (launch.recipe's record)
         "final_train_losses": [last_loss(os.path.join(demo_dir, s)) for s in STAGES],
         "ar": ar, "mdm": mdm,
         "mdm_over_ar_exact_match": mdm["exact_match"] / ar["exact_match"] if ar["exact_match"]
                                    else None,
         "floors": floors}
  if log:
    with open(log, encoding="utf-8") as f:
      stages = stage_wall_s(f.read(), datetime.datetime.fromtimestamp(os.path.getmtime(log)))
    run.update(stage_wall_s=stages, total_wall_s=sum(s["wall_s"] for s in stages))
  return run


def main(argv):
  del argv
  try:
    run = demo_run(_DEMO_DIR.value, _LABEL.value, _LOG.value)
  except (OSError, KeyError, IndexError) as e:
    sys.exit(f"error: {_DEMO_DIR.value} is not a finished `make demo` run ({e})")
  previous = result_file.read(_OUT.value) if os.path.exists(_OUT.value) else None
  runs = previous["metrics"]["runs"] if previous else []
  config = previous["config"] if previous else {
      "recipe": "configs/recipes/demo.py; each run names its recipe and knobs"}
  result_file.write(_OUT.value, config, {"runs": runs + [run]}, command="make demo > demo.log; "
                    + result_file.command_line(module="benchmarks.demo_result"))
  print(f"wrote {_OUT.value} ({len(runs) + 1} runs)")


if __name__ == "__main__":
  app.run(logs.main_quietly(main))
