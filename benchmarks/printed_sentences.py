"""How well the Talker says sentences it trained on against new ones: each spoken answer of
`launch.evaluate` speech runs, split by whether the Thinker's printed text is one of the
sentences its Talker trained on (the answers of every split of its `data.train_split`: the
train answers, and the read sentences of "train+read"), with the judge WER and
forced-choice share of each part, and the judge's WER on espeak (the assistant voice)
saying the same printed texts: the floor of exactly those sentences.

  python benchmarks/printed_sentences.py --eval=AR=W/eval_ar --eval=MDM=W/eval_mdm \
      --out=benchmarks/results/x.json

Why: a Talker's WER through the whole pipeline mixes two things, how well it speaks and
how unusual the texts its Thinker prints are; two Thinkers printing different shares of
new sentences give their Talkers different tasks.
"""
from __future__ import annotations

import os
import sys

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from launch import logs  # noqa: E402
from vocalnet_jax.evaluation import result_file, speech_eval  # noqa: E402
from vocalnet_jax.evaluation.speech_evaluator import Judges, espeak_errors, train_texts  # noqa: E402
from vocalnet_jax.modeling import run_config  # noqa: E402
from vocalnet_jax.training.tasks import train_split, train_split_parts  # noqa: E402

_EVAL = flags.DEFINE_multi_string("eval", None, "LABEL=DIR of a launch.evaluate speech run.")
_OUT = flags.DEFINE_string("out", None, "JSON file to write.")
flags.mark_flags_as_required(["eval", "out"])


def table_rows(runs: list[tuple[str, str, dict]]) -> list[dict]:
  """Rows of every run, each against the sentences its own Talker trained on."""
  answers: dict[tuple[str, str], set[str]] = {}  # (corpus dir, splits) -> their answers
  judges: dict[tuple[str, str, int], Judges] = {}  # (corpus dir, split, n) -> the judges
  rows = []
  for label, _, run in runs:
    config = run_config.resolve(None, run["checkpoint"])
    key = (config.data.dir, train_split(config))
    if key not in answers:
      answers[key] = set().union(*(train_texts(config, s)[1]
                                   for s in train_split_parts(config)))
    where = (config.data.dir, run["split"], run["num_examples"])
    if where not in judges:
      judges[where] = Judges.of(config, run["split"], run["num_examples"])
    for setting in run["settings"].values():
      examples = setting["examples"]
      errors = espeak_errors(judges[where], [e["printed"] for e in examples])
      for example, counted in zip(examples, errors):
        example[speech_eval.ESPEAK_ERRORS] = counted
    rows += speech_eval.printed_sentence_rows(label, run, answers[key])
  return rows


def main(argv):
  del argv
  try:
    runs = [speech_eval.read_labelled_run(e) for e in _EVAL.value]
    rows = table_rows(runs)
  except ValueError as e:
    sys.exit(f"error: {e}")
  for r in rows:
    fmt = lambda p: (f"n={p['n']:2d} WER {p['wer_vs_printed']:.2f} (espeak "  # noqa: E731
                     f"{p['espeak_wer_vs_printed']:.2f}) id {p['identified']:.2f}"
                     if p["n"] else f"n={p['n']:2d}")
    print(f"{r['label']:>28} {r['split']:>8} {r['setting']:>12}  printed a train sentence "
          f"{r['printed_train_sentence']:.2f}  | train sentences {fmt(r['train_sentence'])}"
          f"  | new {fmt(r['new_sentence'])}")
  result_file.write(_OUT.value, {"commands": [run.get("command") for _, _, run in runs]},
                    {"rows": rows}, device=runs[0][2].get("device"))
  print(f"wrote {_OUT.value}")


if __name__ == "__main__":
  app.run(logs.main_quietly(main))
