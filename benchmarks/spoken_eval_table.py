"""One table of spoken answers from several `launch.evaluate` speech runs: exact match,
judge WER against the printed text, the share the forced-choice judge identifies as the
printed text, mel distance, NFE and latency per decoder setting, with both judges' floors
per split.

  python benchmarks/spoken_eval_table.py --eval=AR=D/eval_ar --eval=MDM=D/eval_mdm_steps \
      --eval="MDM, distilled Talker=D/eval_distilled" --out=benchmarks/results/x.json

Runs of one split must have answered the same questions (count, question texts).
"""
from __future__ import annotations

import sys

from absl import app, flags

from launch import logs
from vocalnet_jax.evaluation import result_file, speech_eval

_EVAL = flags.DEFINE_multi_string("eval", None, "LABEL=DIR of a launch.evaluate speech run.")
_OUT = flags.DEFINE_string("out", None, "JSON file to write.")
_NOTE = flags.DEFINE_string("note", "", "What the checkpoints are (free text, kept in the JSON).")
flags.mark_flags_as_required(["eval", "out"])

COLUMNS = (("exact_match", "exact match", "{:.2f}"), ("wer_vs_printed", "WER vs printed", "{:.2f}"),
           ("identified", "identified", "{:.2f}"),
           ("mel_distance", "mel dist.", "{:.2f}"), ("thinker_nfe", "NFE Thinker", "{:.1f}"),
           ("talker_nfe", "NFE Talker", "{:.1f}"), ("first_text_s", "first text s", "{:.3f}"),
           ("first_audio_s", "first audio s", "{:.3f}"), ("total_s", "total s", "{:.3f}"))


def questions(run: dict) -> list[str]:
  setting = next(iter(run["settings"].values()))
  return [e["question"] for e in setting["examples"]]


def rows_of(runs: list[tuple[str, str, dict]]) -> list[dict]:
  """One row per (run, decoder setting), in the order given."""
  rows = []
  for label, directory, run in runs:
    for name, setting in run["settings"].items():
      rows.append({"label": label, "setting": name, "split": run["split"],
                   "checkpoint": run.get("checkpoint"), "eval_dir": directory,
                   **setting["summary"]})
  return rows


def _fmt(fmt: str, value) -> str:
  return "-" if value is None else fmt.format(value)


def markdown(rows: list[dict], floors: dict[str, dict]) -> str:
  """The table, then each split's floors (`floors`: split -> eval.json floors)."""
  head = "| model | split | setting | " + " | ".join(c[1] for c in COLUMNS) + " |"
  lines = [head, "|" + "---|" * (len(COLUMNS) + 3)]
  for r in rows:
    lines.append(f"| {r['label']} | {r['split']} | {r['setting']} | "
                 + " | ".join(_fmt(fmt, r.get(key)) for key, _, fmt in COLUMNS) + " |")
  for split, f in floors.items():
    corpus, resynth = f["corpus_audio"], f["vocoder_resynthesis"]
    lines.append(f"\nFloors on {split!r}: ASR WER {corpus['wer']:.2f} on the corpus audio of "
                 f"the reference answers, {resynth['wer']:.2f} on the vocoder's resynthesis "
                 f"of their reference units; forced choice identifies "
                 f"{_fmt('{:.2f}', corpus.get('identified'))} and "
                 f"{_fmt('{:.2f}', resynth.get('identified'))} of them.")
  return "\n".join(lines)


def main(argv):
  del argv
  try:
    runs = [speech_eval.read_labelled_run(e) for e in _EVAL.value]
  except ValueError as e:
    sys.exit(f"error: {e}")
  firsts = {}  # split -> its first run
  for label, _, run in runs:
    first = firsts.setdefault(run["split"], (label, run))
    if questions(run) != questions(first[1]):
      sys.exit(f"error: --eval {label} answered other {run['split']!r} questions than "
               f"{first[0]}; evaluate the same --n")
  rows = rows_of(runs)
  floors = {split: {k: v for k, v in run["floors"].items() if k != "examples"}
            for split, (_, run) in firsts.items()}
  table = markdown(rows, floors)
  print(table)
  result_file.write(_OUT.value, {"note": _NOTE.value,
                                 "commands": [run.get("command") for _, _, run in runs]},
                    {"rows": rows, "floors": floors, "markdown": table},
                    device=runs[0][2].get("device"))
  print(f"wrote {_OUT.value}")


if __name__ == "__main__":
  app.run(logs.main_quietly(main))
