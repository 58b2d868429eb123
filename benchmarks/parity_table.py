"""Collects `benchmarks/mdm_parity.sh` evaluations over seeds into one result file: every
(seed, row, S) with its exact match and per-task scores, and per row at S = B/4 the
MDM/AR ratio on the mean over seeds, on every seed (and its minimum) and per task.

  python -m benchmarks.parity_table --workdir=workdirs/mdm_parity --seeds="0 1 2" \
      --rows="ar_pretrained mdm_adapted_shift_b4 ..." --pre_steps=3000 --steps=3000 \
      --out=benchmarks/results/mdm_parity_seeds_tiny_cpu.json
"""
from __future__ import annotations

from absl import app, flags

from benchmarks.parity_rows import evaluations, summary
from launch import logs
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
  app.run(logs.main_quietly(main))
