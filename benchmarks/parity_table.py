"""Collects `benchmarks/mdm_parity.sh` evaluations into one JSON table with the machine
and the command, plus the MDM/AR exact-match ratio of every MDM row.

  python -m benchmarks.parity_table --workdir=w/mdm_parity --rows="ar_pretrained ..." \
      --pre_steps=3000 --steps=3000 --out=benchmarks/results/mdm_parity_tiny_cpu.json
"""
from __future__ import annotations

import json
import os

from absl import app, flags

from vocalnet_jax.evaluation import result_file

_WORKDIR = flags.DEFINE_string("workdir", None, "The parity script's W.")
_ROWS = flags.DEFINE_string("rows", None, "Space-separated row names (workdir subfolders).")
_PRE_STEPS = flags.DEFINE_integer("pre_steps", None, "Shared pre-training steps.")
_STEPS = flags.DEFINE_integer("steps", None, "Steps every row trained on the QA tasks.")
_OUT = flags.DEFINE_string("out", None, "JSON to write.")
flags.mark_flags_as_required(["workdir", "rows", "pre_steps", "steps", "out"])


def table(workdir: str, rows: list[str]) -> list[dict]:
  """One entry per (row, S): exact match, valid rate, CER, NFE per token."""
  out = []
  for row in rows:
    path = os.path.join(workdir, row, "eval.json")
    if not os.path.exists(path):
      continue  # a row the run did not reach
    with open(path) as f:
      for r in json.load(f):
        out.append(dict(row=row, block_size=int(row.split("_b")[-1]) if "_b" in row else None,
                        steps=r["steps"], exact_match=r["exact_match"],
                        valid_rate=r["valid_rate"], char_error_rate=r["char_error_rate"],
                        nfe_per_token=r["nfe_per_token"], num_examples=r["num_examples"],
                        per_task=r.get("per_task", {})))
  base = next((r["exact_match"] for r in out if r["row"] == "ar_pretrained"), None)
  for r in out:
    if base:
      r["exact_match_vs_ar_pretrained"] = r["exact_match"] / base
  return out


def markdown(rows: list[dict]) -> str:
  """README table: one line per row, exact match (valid rate) at each S, NFE per token."""
  lines = ["| row | B | S | exact match | valid rate | vs AR (pre-trained) | NFE / token |",
           "|---|---|---|---|---|---|---|"]
  for r in rows:
    ratio = r.get("exact_match_vs_ar_pretrained")
    lines.append(f"| {r['row']} | {r['block_size'] or '—'} | {r['steps'] or 'AR'} | "
                 f"{r['exact_match']:.3f} | {r['valid_rate']:.3f} | "
                 f"{'—' if ratio is None else f'{ratio:.3f}×'} | {r['nfe_per_token']:.3f} |")
  lines += ["", "Exact match per task at S = B/4 (AR: greedy):", ""]
  quarter = [r for r in rows if r["steps"] is None or r["steps"] == r["block_size"] // 4]
  tasks = sorted({t for r in quarter for t in r["per_task"]})
  lines += ["| row | B | " + " | ".join(tasks) + " |", "|---|---|" + "---|" * len(tasks)]
  for r in quarter:
    lines.append(f"| {r['row']} | {r['block_size'] or '—'} | "
                 + " | ".join(f"{r['per_task'].get(t, float('nan')):.2f}" for t in tasks) + " |")
  return "\n".join(lines)


def main(argv):
  del argv
  rows = table(_WORKDIR.value, _ROWS.value.split())
  result_file.write(_OUT.value, {"preset": "tiny,text", "pre_steps": _PRE_STEPS.value,
                                 "steps": _STEPS.value, "rows": _ROWS.value.split()},
                    {"rows": rows}, command="bash benchmarks/mdm_parity.sh")
  print(markdown(rows))


if __name__ == "__main__":
  app.run(main)
