"""Renders the parity result files as the markdown tables of `docs/parity.md`.

  python -m benchmarks.parity_doc --table=benchmarks/results/mdm_parity_seeds_tiny_cpu.json \
      --diagnosis=benchmarks/results/parity_diagnosis_seed2.json
prints the tables (between the doc's generated markers) to stdout.
"""
from __future__ import annotations

from absl import app, flags

from benchmarks.parity_rows import BASELINE, BASELINE_X2
from launch import logs
from vocalnet_jax.evaluation import result_file

_TABLE = flags.DEFINE_list("table", [], "Result files of benchmarks/parity_table.py.")
_DIAGNOSIS = flags.DEFINE_list("diagnosis", [], "Result files of benchmarks/parity_diagnosis.py.")


def _f(x, digits: int = 3) -> str:
  return "–" if x is None else f"{x:.{digits}f}"


def seed_table(path: str) -> str:
  """Per row at S = B/4: exact match per seed, MDM/AR on the mean and per seed, per task."""
  r = result_file.read(path)
  c, rows = r["config"], r["metrics"]["summary"]
  lines = [f"`{path}` ({r['command']}; commit {r['commit'][:12]}, {r['date']}; "
           f"pre-training {c['pre_steps']} steps, rows {c['steps']} steps"
           + (f" (checkpoint of a {c['schedule_steps']}-step schedule)"
              if c.get("schedule_steps", c["steps"]) != c["steps"] else "") + ", "
           f"{c['num_examples']} held-out prompts)", "",
           "| row | B | S | seeds | exact match per seed | mean | MDM/AR of the means | "
           "MDM/AR per seed (min) |", "|---|---|---|---|---|---|---|---|"]
  for s in rows:
    per_seed = " / ".join(_f(x) for x in s["exact_match_per_seed"])
    ratios = " / ".join(_f(x) for x in s["vs_ar_per_seed"])
    trained = s.get("train_steps", [c["steps"]])
    name = s["row"] + ("" if trained == [c["steps"]] else
                       f" ({'/'.join(map(str, trained))} steps)")
    lines.append(f"| {name} | {s['block_size'] or '—'} | {s['steps'] or 'AR'} | "
                 f"{','.join(map(str, s['seeds']))} | {per_seed} | {_f(s['exact_match_mean'])} | "
                 f"{_f(s['vs_ar_of_means'])} | {ratios} ({_f(s['vs_ar_min'])}) |")
  tasks = sorted(rows[0]["per_task_mean"]) if rows else []
  if any(s.get("baseline", BASELINE) != BASELINE for s in rows):
    lines += ["", f"Rows trained for 2 x the steps (`_x2`) are compared with `{BASELINE_X2}`, "
              f"the AR row trained for as many steps; the others with `{BASELINE}`."]
  lines += ["", "Exact match per task, mean over the seeds (MDM − AR in brackets):", "",
            "| row | B | " + " | ".join(tasks) + " |", "|---|---|" + "---|" * len(tasks)]
  for s in rows:
    cells = [f"{_f(s['per_task_mean'][t], 2)}"
             + ("" if s["block_size"] is None else f" ({s['per_task_minus_ar'][t]:+.2f})")
             for t in tasks]
    lines.append(f"| {s['row']} | {s['block_size'] or '—'} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def diagnosis_table(path: str) -> str:
  """Teacher-forced accuracy by position kind and the decoded answers' first wrong position."""
  r = result_file.read(path)
  c, m = r["config"], r["metrics"]
  rows = ", ".join(f"{row} (step {step})"
                   for row, step in zip(c["workdir_rows"], c.get("checkpoint_steps", [None] * 3)))
  lines = [f"`{path}` (commit {r['commit'][:12]}; seed {c['seed']}, rows {rows}, "
           f"B = {c['block_size']}, {c['num_examples']} held-out prompts)", "",
           "Teacher-forced accuracy (p(target)) by position:", "",
           "| model / state | first token | later answer tokens | eos | eos-filled remainder |",
           "|---|---|---|---|---|"]
  for name, t in m["teacher_forced"].items():
    cells = [f"{_f(t[k]['accuracy'])} ({_f(t[k]['p_target'], 2)})" if k in t else "—"
             for k in ("first", "later", "eos", "remainder")]
    lines.append(f"| {name} | " + " | ".join(cells) + " |")
  tasks = sorted(k for k in m["teacher_forced"]["ar"]["first"]
                 if k not in ("accuracy", "p_target", "tokens"))
  lines += ["", "First-token teacher-forced accuracy per task:", "",
            "| model / state | " + " | ".join(tasks) + " |", "|---|" + "---|" * len(tasks)]
  for name, t in m["teacher_forced"].items():
    lines.append(f"| {name} | " + " | ".join(_f(t["first"][k], 2) for k in tasks) + " |")
  lines += ["", "Decoded answers (AR greedy, MDM at S = B/4): where the wrong ones first go wrong:",
            "", "| model | exact match | wrong | first token | later token | eos too early | "
            "no eos (remainder) | block offset of the error | first-token confidence right / "
            "wrong | " + " | ".join(tasks) + " |",
            "|---|---|---|---|---|---|---|---|---|" + "---|" * len(tasks)]
  for name, d in m["decoded"].items():
    w = d["first_wrong_at"]
    lines.append(f"| {name} | {_f(d['exact_match'])} | {d['wrong']} | {w['first']} | "
                 f"{w['later']} | {w['early_eos']} | {w['no_eos']} | "
                 f"{d['first_wrong_block_offset']} | {_f(d['first_token_confidence_right'], 2)} / "
                 f"{_f(d['first_token_confidence_wrong'], 2)} | "
                 + " | ".join(_f(d["per_task"].get(t), 2) for t in tasks) + " |")
  lines += ["", f"AR and MDM agree on the first token of {_f(m['first_token_agreement_ar_mdm'])} "
            f"of the prompts and on the whole answer of {_f(m['same_answer_ar_mdm'])}."]
  return "\n".join(lines)


def main(argv):
  del argv
  print("\n\n".join([seed_table(p) for p in _TABLE.value]
                    + [diagnosis_table(p) for p in _DIAGNOSIS.value]))


if __name__ == "__main__":
  app.run(logs.main_quietly(main))
