"""One table of spoken answers from several `launch.evaluate` speech runs on the same
questions: exact match, judge WER against the printed text, mel distance, NFE and latency
per decoder setting, with the judge's floors.

  python benchmarks/spoken_eval_table.py --eval=AR=D/eval_ar --eval=MDM=D/eval_mdm_steps \
      --eval="MDM, distilled Talker=D/eval_distilled" --out=benchmarks/results/x.json

Refuses runs that did not answer the same questions (split, count, question texts).
"""
from __future__ import annotations

import json
import os
import sys

from absl import app, flags

from vocalnet_jax.evaluation import result_file

_EVAL = flags.DEFINE_multi_string("eval", None, "LABEL=DIR of a launch.evaluate speech run.")
_OUT = flags.DEFINE_string("out", None, "JSON file to write.")
_NOTE = flags.DEFINE_string("note", "", "What the checkpoints are (free text, kept in the JSON).")
flags.mark_flags_as_required(["eval", "out"])

COLUMNS = (("exact_match", "exact match", "{:.2f}"), ("wer_vs_printed", "WER vs printed", "{:.2f}"),
           ("mel_distance", "mel dist.", "{:.2f}"), ("thinker_nfe", "NFE Thinker", "{:.1f}"),
           ("talker_nfe", "NFE Talker", "{:.1f}"), ("first_text_s", "first text s", "{:.3f}"),
           ("first_audio_s", "first audio s", "{:.3f}"), ("total_s", "total s", "{:.3f}"))


def read_run(label_dir: str) -> tuple[str, str, dict]:
  label, sep, directory = label_dir.rpartition("=")
  if not sep or not label:
    raise ValueError(f"--eval={label_dir!r} is not LABEL=DIR")
  path = os.path.join(directory, "eval.json")
  if not os.path.isfile(path):
    raise ValueError(f"--eval={label_dir!r}: {path} is missing (run launch.evaluate first)")
  with open(path) as f:
    return label, directory, json.load(f)


def questions(run: dict) -> list[str]:
  setting = next(iter(run["settings"].values()))
  return [e["question"] for e in setting["examples"]]


def rows_of(runs: list[tuple[str, str, dict]]) -> list[dict]:
  """One row per (run, decoder setting), in the order given."""
  rows = []
  for label, directory, run in runs:
    for name, setting in run["settings"].items():
      rows.append({"label": label, "setting": name, "checkpoint": run.get("checkpoint"),
                   "eval_dir": directory, **setting["summary"]})
  return rows


def markdown(rows: list[dict], floors: dict) -> str:
  head = "| model | setting | " + " | ".join(c[1] for c in COLUMNS) + " |"
  lines = [head, "|" + "---|" * (len(COLUMNS) + 2)]
  for r in rows:
    lines.append(f"| {r['label']} | {r['setting']} | "
                 + " | ".join(fmt.format(r[key]) for key, _, fmt in COLUMNS) + " |")
  lines.append(f"\nJudge's floor (same ASR): WER {floors['corpus_audio']['wer']:.2f} on the "
               f"corpus audio of the reference answers, {floors['vocoder_resynthesis']['wer']:.2f}"
               " on the vocoder's resynthesis of their reference units.")
  return "\n".join(lines)


def main(argv):
  del argv
  try:
    runs = [read_run(e) for e in _EVAL.value]
  except ValueError as e:
    sys.exit(f"error: {e}")
  first = runs[0][2]
  for label, _, run in runs[1:]:
    if (run["split"], questions(run)) != (first["split"], questions(first)):
      sys.exit(f"error: --eval {label} answered other questions than {runs[0][0]} "
               f"({run['split']} vs {first['split']}); evaluate the same split and --n")
  rows = rows_of(runs)
  floors = {k: v for k, v in first["floors"].items() if k != "examples"}
  table = markdown(rows, floors)
  print(table)
  result_file.write(
      _OUT.value, {"note": _NOTE.value, "split": first["split"],
                   "num_examples": first["num_examples"], "markdown": table},
      {"rows": rows, "floors": floors,
       "commands": [run.get("command") for _, _, run in runs]},
      device=first.get("device"))
  print(f"wrote {_OUT.value}")


if __name__ == "__main__":
  app.run(main)
