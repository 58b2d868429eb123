"""The rows of the MDM-vs-AR parity table: the evaluations `benchmarks/mdm_parity.sh` left
under W/s<seed>/<row>/, and per row at S = B/4 the ratio to the AR row trained as long."""
from __future__ import annotations

import json
import os

import numpy as np

BASELINE = "ar_pretrained"
BASELINE_X2 = "ar_pretrained_x2"  # the AR twin of rows trained for 2 x STEPS


def baseline_of(row: str) -> str:
  """The AR row a row is compared with: the one trained for as many steps."""
  return BASELINE_X2 if "_x2" in row else BASELINE


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
  MDM/AR on the mean (ratio of the means) and per seed, per-task means and MDM - AR, against
  the AR row trained for as many steps (`baseline_of`)."""
  out = []
  for row in rows:
    ar = at_quarter(entries, baseline_of(row))
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
        row=row, baseline=baseline_of(row), block_size=block_size(row),
        steps=mine[seeds[0]]["steps"], seeds=seeds,
        train_steps=sorted({mine[s]["train_steps"] for s in seeds}),
        exact_match_mean=float(em.mean()), exact_match_per_seed=em.tolist(),
        vs_ar_of_means=float(em.mean() / base.mean()), vs_ar_per_seed=ratios.tolist(),
        vs_ar_min=float(ratios.min()), vs_ar_mean_of_ratios=float(ratios.mean()),
        per_task_mean=task_mean,
        per_task_minus_ar={t: task_mean[t] - task_ar[t] for t in tasks},
        worst_task_minus_ar=float(min(task_mean[t] - task_ar[t] for t in tasks))))
  return out
