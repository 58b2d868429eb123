"""The demo's last word: AR vs MDM on the same spoken questions, from two eval.json files.

  python -m launch.demo_summary --ar=demo_out/eval_ar --mdm=demo_out/eval_mdm

Prints text exact match (and MDM / AR), intelligibility (the independent ASR's WER of
each spoken answer against its own printed text, and the share the forced-choice judge
identifies as that text, next to both judges' floors on the corpus audio and on the
vocoder's resynthesis), first-audio latency and NFE, and where the WAVs are of the first
question both answer right and of the first one either answers wrong.
"""
import json
import os
import sys

from absl import app, flags

from vocalnet_jax.evaluation import text_metrics

_AR = flags.DEFINE_string("ar", None, "launch.evaluate --out directory of the AR model.")
_MDM = flags.DEFINE_string("mdm", None, "launch.evaluate --out directory of the MDM model.")
flags.mark_flags_as_required(["ar", "mdm"])


def _read(directory: str) -> dict:
  path = os.path.join(directory, "eval.json")
  if not os.path.exists(path):
    sys.exit(f"error: {path} does not exist; run `python -m launch.evaluate ... --out="
             f"{directory}` first")
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def main(argv):
  del argv
  runs = {"AR": _read(_AR.value), "MDM": _read(_MDM.value)}
  rows = {}
  for name, run in runs.items():
    setting, result = next(iter(run["settings"].items()))  # the demo evaluates one setting
    rule = result.get("rule", "greedy")
    label = setting if rule == "greedy" else f"{setting} {rule}"  # e.g. mdm_steps4 threshold
    rows[name] = dict(setting=setting, label=label, **result["summary"])
  ar, mdm = rows["AR"], rows["MDM"]
  run = runs["AR"]
  print(f"\n{run['num_examples']} spoken questions of the {run['split']!r} split, "
        "same questions for both:")
  width = max(len(r["label"]) for r in rows.values())
  print(f"{'':4} {'setting':{width}} {'exact match':>11} {'ASR WER':>8} {'identified':>10} "
        f"{'first audio s':>13} {'NFE Thinker':>11} {'NFE Talker':>10}")
  for name, r in rows.items():
    print(f"{name:4} {r['label']:{width}} {r['exact_match']:11.2f} {r['wer_vs_printed']:8.2f} "
          f"{_rate(r.get('identified')):>10} {r['first_audio_s']:13.3f} {r['thinker_nfe']:11.1f} "
          f"{r['talker_nfe']:10.1f}")
  ratio = mdm["exact_match"] / ar["exact_match"] if ar["exact_match"] else float("nan")
  print(f"MDM / AR exact match: {ratio:.2f}")
  floors = run["floors"]
  print(f"judges' floors: ASR WER {floors['corpus_audio']['wer']:.2f} on the corpus's "
        f"own audio of the answers, {floors['vocoder_resynthesis']['wer']:.2f} on the "
        "vocoder's resynthesis of their reference units; forced choice identifies "
        f"{_rate(floors['corpus_audio'].get('identified'))} and "
        f"{_rate(floors['vocoder_resynthesis'].get('identified'))} of them")
  _print_breakdown(rows)
  examples = {name: runs[name]["settings"][rows[name]["setting"]]["examples"] for name in runs}
  for title, index in _shown_questions(examples["AR"], examples["MDM"]):
    first = examples["AR"][index]
    print(f"\n{title}, question #{index}: {first['question']!r} "
          f"(reference: {first['reference']!r})")
    for name, directory in (("AR", _AR.value), ("MDM", _MDM.value)):
      example = examples[name][index]
      chosen = (f", forced choice heard {example['chosen']!r}"
                if example.get("identified") is not None else "")
      print(f"  {name:3} printed {example['printed']!r}, ASR heard "
            f"{example['transcript']!r}{chosen}")
      print(f"      {os.path.join(directory, rows[name]['setting'], f'answer_{index}.wav')}")
    print(f"  question audio: {os.path.join(_AR.value, f'question_{index}.wav')}")
  print(f"\neverything per question: {_AR.value}/eval.json, {_MDM.value}/eval.json")


def _rate(value) -> str:
  """A share as '0.82' ('-' when the run was not judged that way)."""
  return "-" if value is None else f"{value:.2f}"


def _print_breakdown(rows: dict[str, dict]) -> None:
  """Exact match on questions whose text is also a train question vs new ones, and per
  template (absent from eval.json files written before the breakdown existed)."""
  if "exact_match_seen" not in rows["AR"]:
    return
  print("exact match by question:", "  ".join(
      f"{name} {r['exact_match_seen']['exact_match'] or 0:.2f} asked in training "
      f"({r['exact_match_seen']['n']}), {r['exact_match_new']['exact_match'] or 0:.2f} new "
      f"({r['exact_match_new']['n']})" for name, r in rows.items()))
  templates = rows["AR"]["exact_match_by_template"]
  print("exact match by template (AR / MDM):", ", ".join(
      f"{t or 'none'} {templates[t]['exact_match']:.2f}/"
      f"{rows['MDM']['exact_match_by_template'].get(t, {}).get('exact_match', 0):.2f} "
      f"(n={templates[t]['n']})" for t in templates))


def _shown_questions(ar: list[dict], mdm: list[dict]) -> list[tuple[str, int]]:
  """(title, index) of the first question both answer right and the first one either
  answers wrong (a user hears a success and a failure, not whichever comes first)."""
  def correct(e):
    return text_metrics.exact_match([e["printed"]], [e["reference"]]) == 1
  right = [correct(a) and correct(m) for a, m in zip(ar, mdm)]
  shown = []
  if any(right):
    shown.append(("both right", right.index(True)))
  if not all(right):
    shown.append(("not both right", right.index(False)))
  return shown


if __name__ == "__main__":
  app.run(main)
