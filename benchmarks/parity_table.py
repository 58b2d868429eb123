"""Collects `benchmarks/mdm_parity.sh` evaluations over seeds into one result file: every
(seed, row, S) with its exact match and per-task scores, and per row at S = B/4 the
MDM/AR ratio on the mean over seeds, on every seed (and its minimum) and per task.

  python -m benchmarks.parity_table --workdir=workdirs/mdm_parity --seeds="0 1 2" \
      --rows="ar_pretrained mdm_adapted_shift_b4 ..." --pre_steps=3000 --steps=3000 \
      --out=benchmarks/results/mdm_parity_seeds_tiny_cpu.json
"""
from __future__ import annotations

import json
import os

import numpy as np
from absl import app, flags

from vocalnet_jax.evaluation import result_file

_WORKDIR = flags.DEFINE_string("workdir", None, "The parity script's W (one s<seed> per seed).")
_SEEDS = flags.DEFINE_string("seeds", "0 1 2", "Space-separated training seeds.")
_ROWS = flags.DEFINE_string("rows", None, "Space-separated row names (workdir subfolders).")
_PRE_STEPS = flags.DEFINE_integer("pre_steps", None, "Shared pre-training steps.")
_STEPS = flags.DEFINE_integer("steps", None, "Steps every row trained on the QA tasks.")
_SCHEDULE = flags.DEFINE_integer("schedule_steps", None, "The rows' learning-rate schedule "
                                 "length when they were evaluated before its end (default: steps).")
_COMMAND = flags.DEFINE_string("command", None, "How the evaluations were made, when not by the "
                               "parity script alone.")
_OUT = flags.DEFINE_string("out", None, "Result file to write.")
flags.mark_flags_as_required(["workdir", "rows", "pre_steps", "steps", "out"])

BASELINE = "ar_pretrained"


def block_size(row: str) -> int | None:
  """B of an MDM row name (`..._b16` -> 16); None for AR rows."""
  return int(row.rsplit("_b", 1)[1]) if row.startswith("mdm") else None


def train_steps(row_dir: str) -> int:
  """The steps a row trained for, from its config.json (`*_x2_*` rows train 2 x STEPS)."""
  with open(os.path.join(row_dir, "config.json")) as f:
    return int(json.load(f)["train"]["steps"])


def evaluations(workdir: str, seeds: list[int], rows: list[str]) -> list[dict]:
  """One entry per (seed, row, S) found under workdir/s<seed>/<row>/eval.json."""
  out = []
  for seed in seeds:
    for row in rows:
      path = os.path.join(workdir, f"s{seed}", row, "eval.json")
      if not os.path.exists(path):
        continue  # a row the run did not reach
      trained = train_steps(os.path.dirname(path))
      with open(path) as f:
        for r in json.load(f):
          out.append(dict(seed=seed, row=row, block_size=block_size(row), steps=r["steps"],
                          train_steps=trained,
                          exact_match=r["exact_match"], valid_rate=r["valid_rate"],
                          char_error_rate=r["char_error_rate"],
                          nfe_per_token=r["nfe_per_token"], num_examples=r["num_examples"],
                          per_task=r["per_task"]))
  return out


def at_quarter(entries: list[dict], row: str) -> dict[int, dict]:
  """seed -> the row's entry at S = B/4 (AR: its greedy entry)."""
  b = block_size(row)
  return {e["seed"]: e for e in entries
          if e["row"] == row and (b is None or e["steps"] == max(b // 4, 1))}


def summary(entries: list[dict], rows: list[str]) -> list[dict]:
  """Per row at S = B/4, over the seeds both it and the AR baseline reached: exact match,
  MDM/AR on the mean (ratio of the means) and per seed, per-task means and MDM - AR."""
  ar = at_quarter(entries, BASELINE)
  out = []
  for row in rows:
    mine = at_quarter(entries, row)
    seeds = sorted(set(mine) & set(ar))
    if not seeds:
      continue
    em = np.array([mine[s]["exact_match"] for s in seeds])
    base = np.array([ar[s]["exact_match"] for s in seeds])
    tasks = sorted(mine[seeds[0]]["per_task"])
    task_mean = {t: float(np.mean([mine[s]["per_task"][t] for s in seeds])) for t in tasks}
    task_ar = {t: float(np.mean([ar[s]["per_task"][t] for s in seeds])) for t in tasks}
    ratios = em / base
    out.append(dict(
        row=row, block_size=block_size(row), steps=mine[seeds[0]]["steps"], seeds=seeds,
        train_steps=sorted({mine[s]["train_steps"] for s in seeds}),
        exact_match_mean=float(em.mean()), exact_match_per_seed=em.tolist(),
        vs_ar_of_means=float(em.mean() / base.mean()), vs_ar_per_seed=ratios.tolist(),
        vs_ar_min=float(ratios.min()), vs_ar_mean_of_ratios=float(ratios.mean()),
        per_task_mean=task_mean,
        per_task_minus_ar={t: task_mean[t] - task_ar[t] for t in tasks},
        worst_task_minus_ar=float(min(task_mean[t] - task_ar[t] for t in tasks))))
  return out


def main(argv):
  del argv
  seeds = [int(s) for s in _SEEDS.value.split()]
  rows = _ROWS.value.split()
  entries = evaluations(_WORKDIR.value, seeds, rows)
  config = dict(preset="tiny,text", seeds=seeds, rows=rows, pre_steps=_PRE_STEPS.value,
                steps=_STEPS.value, schedule_steps=_SCHEDULE.value or _STEPS.value,
                num_examples=sorted({e["num_examples"] for e in entries}))
  command = _COMMAND.value or (f"SEEDS=\"{_SEEDS.value}\" ROWS=\"{' '.join(rows)}\" "
                               f"PRE_STEPS={_PRE_STEPS.value} STEPS={_STEPS.value} "
                               "bash benchmarks/mdm_parity.sh")
  result_file.write(_OUT.value, config, dict(summary=summary(entries, rows), evaluations=entries),
                    command=command)
  for s in summary(entries, rows):
    print(f"{s['row']:32s} seeds={s['seeds']} em={s['exact_match_mean']:.3f} "
          f"vs AR {s['vs_ar_of_means']:.3f} (min {s['vs_ar_min']:.3f}) "
          f"worst task {s['worst_task_minus_ar']:+.3f}")


if __name__ == "__main__":
  app.run(main)
