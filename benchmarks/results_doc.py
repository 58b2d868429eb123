"""Generates docs/results.md from the result files in benchmarks/results/.

  python -m benchmarks.results_doc           # rewrites docs/results.md
  python -m benchmarks.results_doc --check   # exit 1 if docs/results.md is out of date

Every table names the file it comes from and the file's command, commit, date, machine
and device; a result file this script has no dedicated section for still gets a table of
its scalar metrics, so no measurement is left out. The output depends on the files only
(sorted, fixed number formats): rerunning it leaves docs/results.md unchanged.
"""
from __future__ import annotations

import glob
import os
import sys
from typing import Any, Callable, Iterable, Optional, Sequence

from absl import app, flags

from launch import logs
from vocalnet_jax.evaluation import result_file

RESULTS_DIR = "benchmarks/results"
DOC = "docs/results.md"

_CHECK = flags.DEFINE_bool("check", False, "Only check that the doc is up to date.")

Cell = Any
Result = dict[str, Any]


def fmt(x: Cell, digits: int = 3) -> str:
  """A table cell: floats rounded, None as a dash."""
  if x is None:
    return "–"
  if isinstance(x, bool):
    return "yes" if x else "no"
  if isinstance(x, float):
    return f"{x:.{digits}f}"
  return str(x)


def table(headers: Sequence[str], rows: Iterable[Sequence[Cell]], digits: int = 3) -> str:
  lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
  lines += ["| " + " | ".join(fmt(c, digits) for c in row) + " |" for row in rows]
  return "\n".join(lines)


def machine_text(machine: Any) -> str:
  if isinstance(machine, dict):
    keys = ("cpu", "cores", "memory_gib", "accelerator", "os")
    parts = [f"{k} {machine[k]}" if k in ("cores", "memory_gib") else str(machine[k])
             for k in keys if machine.get(k) is not None]
    return ", ".join(parts)
  return str(machine)


def source(name: str, r: Result) -> str:
  """The evidence line under every table."""
  return (f"*Source: [`{RESULTS_DIR}/{name}`](../{RESULTS_DIR}/{name}): `{r['command']}`; "
          f"commit {str(r['commit'])[:7]}, {r['date']}; {machine_text(r['machine'])}; "
          f"device {r['device']}.*")


def ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
  return a / b if a is not None and b else None


# ---- sections: (file name) -> markdown ------------------------------------------------------

def demo(name: str, r: Result) -> str:
  runs = r["metrics"]["runs"]
  rows = []
  for run in runs:
    on300 = run.get("thinker_on_300_questions", {})
    pair = lambda key, on300=on300: " / ".join(  # noqa: E731
        fmt(on300.get(m, {}).get(key, {}).get("spoken_exact_match")) for m in ("ar", "mdm"))
    rows.append([run["label"], run.get("machine"), str(run["commit"])[:7],
                 run.get("total_wall_s"), run["ar"]["exact_match"], run["mdm"]["exact_match"],
                 run["mdm_over_ar_exact_match"],
                 f"{fmt(run['ar']['wer_vs_printed'], 2)} / {fmt(run['mdm']['wer_vs_printed'], 2)}",
                 run["mdm"]["thinker_nfe"], run["ar"]["thinker_nfe"],
                 pair("test300"), pair("unseen_voices300")])
  floors = runs[0]["floors"]
  seeds = [x for x in runs if x["label"].startswith("shipped recipe, seed")
           and "clean clone" not in x["label"]]
  spread = lambda key: (min(x[key]["exact_match"] for x in seeds),  # noqa: E731
                        max(x[key]["exact_match"] for x in seeds))
  text = [
      "## `make demo`: AR vs MDM on 50 spoken questions", "",
      "Each row is one whole `make demo` run (corpus, every training stage, evaluation). "
      "Exact match is on the 50 questions of the `test` split (recordings never trained on); "
      "WER is the independent ASR judge's transcript of the spoken answer against the "
      "model's own printed answer; the 300-question columns score the same Thinkers on "
      "300 `test` and 300 `unseen_voices` questions (`benchmarks/spoken_thinker_eval.py`).",
      "",
      table(["run", "machine", "commit", "wall s", "AR exact", "MDM exact", "MDM/AR",
             "WER AR / MDM", "NFE MDM", "NFE AR", "300 `test` AR / MDM",
             "300 `unseen_voices` AR / MDM"], rows, 2), "",
      "Machines: " + "; ".join(f"{k}: {machine_text(v)}" + (f" ({v['note']})" if v.get("note")
                                                            else "")
                               for k, v in sorted(r["config"].get("machines", {}).items()))
      + ".", "",
      f"Judge's floors (same ASR): WER {fmt(floors['corpus_audio']['wer'], 2)} on the "
      "corpus's own recording of the reference answers, "
      f"{fmt(floors['vocoder_resynthesis']['wer'], 2)} on the vocoder's resynthesis of "
      "their reference units.", ""]
  if seeds:
    lo_ar, hi_ar = spread("ar")
    lo_mdm, hi_mdm = spread("mdm")
    text += [f"**How much one run tells.** Over the {len(seeds)} seeds of the shipped recipe "
             f"on one machine, AR answers {fmt(lo_ar, 2)}–{fmt(hi_ar, 2)} and MDM "
             f"{fmt(lo_mdm, 2)}–{fmt(hi_mdm, 2)} of the 50. Every stage is deterministic on "
             "one machine (the clean-clone rerun prints the same answers); across machines "
             "floating point differs from the first stage with audio on, so the same recipe "
             "and seed can land anywhere in about that spread (the two rows of the earlier "
             "recipe).", ""]
  losses = [[run["label"], run.get("machine")] + [
      f"{x.get('steps', x.get('step'))}: {fmt(x['loss'], 4)}" for x in run["final_train_losses"]]
      for run in runs]
  text += ["Last logged training loss per stage (steps: loss):", "",
           table(["run", "machine", "AR stage 0", "AR stage 1", "MDM Thinker", "AR Talker",
                  "MDM Talker"], losses), ""]
  groups: dict[tuple, list] = {}  # runs of one recipe's stage list share a table
  for run in runs:
    if run.get("stage_wall_s"):
      groups.setdefault(tuple(s["stage"] for s in run["stage_wall_s"]), []).append(run)
  for stage_names, timed in groups.items():
    text += ["Wall seconds per stage (the machine and its load change these; compare rows "
             "of one machine):", "",
             table(["stage"] + [f"{x['label']} ({machine_text(x.get('machine'))})"
                                for x in timed],
                   [[n] + [x["stage_wall_s"][i]["wall_s"] for x in timed]
                    for i, n in enumerate(stage_names)]), ""]
  return "\n".join(text + [source(name, r)])


def spoken_eval(name: str, r: Result) -> str:
  m = r["metrics"]
  rows = [[x["label"], x["setting"], x["exact_match"], x["wer_vs_printed"], x["mel_distance"],
           x["thinker_nfe"], x["talker_nfe"], x["first_audio_s"], x["total_s"]]
          for x in m["rows"]]
  for key, label in (("corpus_audio", "floor: corpus audio"),
                     ("vocoder_resynthesis", "floor: vocoder resynthesis")):
    rows.append([label, "", None, m["floors"][key]["wer"], m["floors"][key]["mel_distance"],
                 None, None, None, None])
  return "\n".join([
      "## Decoder settings on the demo's checkpoints", "",
      f"Same checkpoints, same {r['config']['num_examples']} `{r['config']['split']}` "
      "questions; MDM at S steps per block (top-k), the confidence-threshold rule, and the "
      "MDM Talker self-distilled over its 15-unit chunks. " + r["config"]["note"] + ".", "",
      table(["model", "setting", "exact match", "WER vs printed", "mel L1", "NFE Thinker",
             "NFE Talker", "first audio s", "total s"], rows), "", source(name, r)])


def intelligibility(name: str, r: Result) -> str:
  """`benchmarks/spoken_eval_table.py` over several splits: both judges, with their floors
  per split."""
  m = r["metrics"]
  rows = [[x["label"], x["split"], x["setting"], x["exact_match"], x["wer_vs_printed"],
           x.get("identified"), x["talker_nfe"], x["first_audio_s"]] for x in m["rows"]]
  for split, floors in m["floors"].items():
    for key, label in (("corpus_audio", "floor: corpus audio"),
                       ("vocoder_resynthesis", "floor: vocoder resynthesis")):
      rows.append([label, split, "", None, floors[key]["wer"], floors[key].get("identified"),
                   None, None])
  return "\n".join([
      "## Spoken answers: both judges with their floors", "",
      "Each spoken answer judged against its own printed text: ASR WER and the share the "
      "forced choice identifies as that text. " + r["config"]["note"] + ".", "",
      table(["model", "split", "setting", "exact match", "WER vs printed", "identified",
             "NFE Talker", "first audio s"], rows, 2), "", source(name, r)])


def talker_units(name: str, r: Result) -> str:
  """`launch.talker_units --result`: unit accuracy per kept checkpoint of a Talker run,
  and per question template at its last step where the rows have it."""
  c, curve = r["config"], r["metrics"]["curve"]
  t = c["talker"]
  rows = [[x["step"], x["split"], x["num_answers"], x["teacher_forced_accuracy"],
           x["free_running_accuracy"], x["free_running_length_ratio"]] for x in curve]
  parts = [
      f"## Talker unit accuracy while it trains ({c['objective']}, `{name}`)", "",
      f"Talker run {c['train']['steps']} steps from `{c['init_from']}` (cached Thinker "
      f"states: {fmt(t.get('cache_thinker_states'))}; reads the Thinker states: "
      f"{fmt(t.get('thinker_states', True))}; state dropout {fmt(t.get('state_dropout', 0.0))}"
      "); free-running is 1 - unit edit distance / reference units.", "",
      table(["step", "split", "answers", "teacher-forced", "free-running", "length ratio"],
            rows), ""]
  last = curve[-1]
  if "free_running_by_template" in last:
    by, counts = last["free_running_by_template"], last["answers_by_template"]
    parts += [f"Free-running accuracy per question template at step {last['step']}:", "",
              table(["template", "answers", "free-running"],
                    [[k, counts[k], by[k]] for k in sorted(by)]), ""]
  return "\n".join(parts + [source(name, r)])


def mdm_recipe(name: str, r: Result) -> str:
  m = r["metrics"]
  cells = lambda x: [x["test50"]["spoken_exact_match"], x["test300"]["spoken_exact_match"],  # noqa
                     x["unseen_voices300"]["spoken_exact_match"]]
  rows = [[x["what"], x.get("train_wall_s")] + cells(x) for x in m["mdm_stage"]]
  talker = m["talker"]
  trows = [[k, v["exact_match"], v["wer_vs_printed"], v["mel_distance"], v["talker_nfe"]]
           for k, v in talker.items() if isinstance(v, dict)]
  return "\n".join([
      "## The MDM Thinker stage, one knob at a time", "",
      r["config"]["what"] + ". Exact match on the demo's 50, on 300 `test` and on 300 "
      "`unseen_voices` questions (threshold rule, S ≤ 4); train s on one machine.", "",
      table(["MDM Thinker stage", "train s", "50", "300 `test`", "300 `unseen_voices`"],
            rows), "",
      talker["what"] + ":", "",
      table(["Talker", "exact match", "WER vs printed", "mel L1", "NFE Talker"], trows, 2), "",
      source(name, r)])


def parity(name: str, r: Result) -> str:
  rows = r["metrics"]["rows"]
  main = [[x["row"], x["block_size"], x["steps"] or "AR", x["exact_match"], x["valid_rate"],
           x.get("exact_match_vs_ar_pretrained"), x["nfe_per_token"]] for x in rows]
  quarter = [x for x in rows if x["steps"] is None or x["steps"] == x["block_size"] // 4]
  tasks = sorted({t for x in quarter for t in x["per_task"]})
  per_task = [[x["row"], x["block_size"]] + [x["per_task"].get(t) for t in tasks]
              for x in quarter]
  c = r["config"]
  return "\n".join([
      "## Text: MDM vs AR at equal training steps", "",
      f"`tiny,text`: one AR pre-training of {c['pre_steps']} steps on the broad procedural "
      f"mix, then every row trains {c['steps']} steps on the QA tasks (`ar_pretrained` and "
      "`mdm_adapted_*` from the pre-trained weights, the rest from random init); exact match "
      "and valid-answer rate on held-out prompts. `shift` = shifted logits with every "
      "block's first token scored on every draw (the recipe), `shiftonly` = shifted logits "
      "alone, no suffix = plain adaptation.", "",
      table(["row", "B", "S", "exact match", "valid rate", "vs AR (pre-trained)",
             "NFE / token"], main), "",
      "Exact match per task at S = B/4 (AR: greedy):", "",
      table(["row", "B"] + tasks, per_task, 2), "", source(name, r)])


def parity_seeds(name: str, r: Result) -> str:
  """`benchmarks/mdm_parity.sh` over seeds: per row, the mean, per-seed and worst MDM/AR."""
  c, summary = r["config"], r["metrics"]["summary"]
  rows = [[x["row"], x["block_size"], x["steps"], " ".join(str(s) for s in x["seeds"]),
           x["exact_match_mean"], x["vs_ar_of_means"], x["vs_ar_min"],
           x["worst_task_minus_ar"]] for x in summary]
  return "\n".join([
      f"## Text: MDM vs AR over seeds ({c['steps']} steps per row)", "",
      f"`tiny,text`, seeds {c['seeds']}: AR pre-training of {c['pre_steps']} steps, then "
      f"{c['steps']} steps per row on the QA tasks; S = steps per block, exact match on "
      "held-out prompts (docs/parity.md).", "",
      table(["row", "B", "S", "seeds", "exact match (mean)", "MDM/AR of means",
             "MDM/AR worst seed", "worst task − AR"], rows), "", source(name, r)])


def decode(name: str, r: Result) -> str:
  m = r["metrics"]
  ar = next(x for x in m["rows"] if x["mode"] == "ar")
  rows = [[s["cache_update"], s["steps"], s["speedup"], s["ideal_b_over_s"],
           s["forward_cost_vs_ar"], s["first_chunk_change"]] for s in m["summary"]]
  c = r["config"]
  head = (f"## Decode speed: `{c.get('preset')}` on {r['device']}" if "preset" in c
          else f"## Decode speed on {r['device']}")
  return "\n".join([
      head, "",
      f"Random-init Thinker, batch {c.get('batch_size', ar.get('batch_size'))}, "
      f"{c.get('new_tokens', ar.get('new_tokens'))} new tokens, B = "
      f"{c.get('block_size', ar.get('block_size'))}, top-k rule. AR: "
      f"{fmt(ar['tokens_per_s'], 0)} tokens/s. Speedup = MDM tokens/s over AR tokens/s; "
      "first-chunk change vs AR." + (f" Note: {c['note']}." if c.get("note") else ""), "",
      table(["cache update", "S", "speedup", "ideal B/S", "block forward / AR forward",
             "first chunk vs AR"], rows, 2), "", source(name, r)])


def speech_latency(name: str, r: Result) -> str:
  rows = [[x["mode"], x["steps"], f"{x['nfe_thinker']} / {x['nfe_talker']}", x["first_text_s"],
           x["first_units_s"], x["first_audio_s"], x.get("first_audio_s_min"), x["total_s"]]
          for x in r["metrics"]["rows"]]
  c = r["config"]
  return "\n".join([
      f"## Spoken-answer latency: `{c['config']},{'stage=2'}`", "",
      "Question audio → encoder → Thinker → Talker → vocoder through the streaming path, "
      f"random weights, fixed-length answers; question: {c['question']} "
      f"({fmt(c['question_s'], 2)} s). Seconds after the question ends, medians of the "
      "repeats (the minimum beside). Load average while it ran: "
      f"{' / '.join(fmt(x, 1) for x in c.get('load_average_1_5_15_min', []))}.", "",
      table(["mode", "S", "NFE Thinker / Talker", "first text s", "first units s",
             "first audio s", "first audio s (min)", "total s"], rows), "", source(name, r)])


def neural_vocoder(name: str, r: Result) -> str:
  m, c = r["metrics"], r["config"]
  wer = m.get("wer", {})
  rows = []
  for inv in ("griffin_lim", "vocos"):
    if inv in m:
      x = m[inv]
      rows.append([inv, x["mel_l1"], x["lsd_db"], wer.get(f"{inv}_oneshot"),
                   wer.get(f"{inv}_stream"), x["rtf"]["oneshot_mean"],
                   x["rtf"]["per_chunk_mean"], x["stream_vs_oneshot_lsd_db"]])
  steps = (c.get("neural") or {}).get("train", {}).get("steps")
  return "\n".join([
      "## Mel → waveform: Griffin-Lim vs the neural (Vocos) stage", "",
      f"{c['input']}; {c['num_utterances']} `{c['split']}` answers; Vocos trained "
      f"{steps} steps, Griffin-Lim {c['griffin_lim_iters']} iterations. WER: the ASR judge "
      f"against the answer text (on the original audio: {fmt(wer.get('original'))}).", "",
      table(["inverter", "mel L1", "LSD dB", "WER one-shot", "WER streamed", "RTF one-shot",
             "RTF per chunk", "streamed vs one-shot LSD dB"], rows), "", source(name, r)])


def vocoder_units(name: str, r: Result) -> str:
  m, c = r["metrics"], r["config"]
  wer = m.get("wer", {})
  train = m.get("train", {})
  kind = (c.get("inversion") or {}).get("kind", "?")
  rows = [[kind, train.get("steps"), m["oneshot_vs_reference"]["mel_l1"],
           m["oneshot_vs_reference"]["lsd_db"], wer.get("vocoder_oneshot"),
           wer.get("vocoder_stream"), m["rtf"]["oneshot_mean"], m["rtf"]["per_chunk_mean"],
           m["stream_vs_oneshot"].get("wave_lsd_db")]]
  return "\n".join([
      f"## Units → mel → waveform with {kind}", "",
      f"Reference speech units → flow-matching mel → {kind}, the path a spoken answer takes; "
      f"{c['num_utterances']} answers. WER on the original audio: "
      f"{fmt(wer.get('original'))}.", "",
      table(["inverter", "flow steps", "mel L1", "LSD dB", "WER one-shot", "WER streamed",
             "RTF one-shot", "RTF per chunk", "streamed vs one-shot waveform LSD dB"], rows),
      "", source(name, r)])


def dry_run(name: str, r: Result) -> str:
  m, c = r["metrics"], r["config"]
  mem = m["memory_per_device_bytes"]
  gib = lambda b: b / 2**30  # noqa: E731
  parts = ", ".join(f"{k} {v / 1e9:.2f} B" for k, v in sorted(m["num_params_by_part"].items()))
  return "\n".join([
      f"## Train-step memory: `{c['preset']}` ({c['task']})", "",
      f"{m['num_params'] / 1e9:.2f} B parameters ({parts}); mesh {c['mesh']}, global batch "
      f"{c['global_batch_size']}. {c['note']}.", "",
      table(["argument GiB", "output GiB", "temp GiB"],
            [[gib(mem["argument"]), gib(mem["output"]), gib(mem["temp"])]], 2), "",
      source(name, r)])


def scan_dry_run(name: str, r: Result) -> str:
  rows = [[x["preset"], x["scan_layers"], x["remat_policy"], x["compile_s"], x["argument_gib"],
           x["temp_gib"]] for x in r["metrics"]["rows"]]
  return "\n".join([
      "## Scanned vs unrolled layers (text train step)", "",
      r["config"]["note"] + ".", "",
      table(["preset", "scan_layers", "remat", "compile s", "argument GiB", "temp GiB"], rows,
            1), "", source(name, r)])


def flat_scalars(x: Any, prefix: str = "") -> list[tuple[str, Cell]]:
  """(dotted key, value) of every number or string under `x` (lists by index)."""
  if isinstance(x, dict):
    return [kv for k, v in x.items() for kv in flat_scalars(v, f"{prefix}{k}.")]
  if isinstance(x, list):
    return [kv for i, v in enumerate(x) for kv in flat_scalars(v, f"{prefix}{i}.")]
  return [(prefix[:-1], x)]


def generic(name: str, r: Result, limit: int = 40) -> str:
  scalars = flat_scalars(r["metrics"])
  shown = scalars[:limit]
  more = f" (the first {limit} of {len(scalars)} values; the file has all)" if (
      len(scalars) > limit) else ""
  return "\n".join([f"## `{name}`", "", f"Metrics{more}:", "",
                    table(["metric", "value"], shown), "", source(name, r)])


# (file-name predicate, section); the first match renders the file, in this order
SECTIONS: list[tuple[Callable[[str], bool], Callable[[str, Result], str]]] = [
    (lambda n: n.startswith("demo_"), demo),
    (lambda n: n.startswith("spoken_eval_talker_"), intelligibility),
    (lambda n: n.startswith("spoken_eval_"), spoken_eval),
    (lambda n: n.startswith("talker_units_"), talker_units),
    (lambda n: n.startswith("mdm_recipe_"), mdm_recipe),
    (lambda n: n.startswith(("mdm_parity_screen", "mdm_parity_seeds",
                             "mdm_parity_four_seeds")), parity_seeds),
    (lambda n: n.startswith("mdm_parity_"), parity),
    (lambda n: n.startswith("decode_"), decode),
    (lambda n: n.startswith("speech_latency_"), speech_latency),
    (lambda n: n.startswith("neural_vocoder_"), neural_vocoder),
    (lambda n: n.startswith("vocoder_units_"), vocoder_units),
    (lambda n: n.startswith("dry_run_"), dry_run),
    (lambda n: n.startswith("scan_dry_run_"), scan_dry_run),
]

HEADER = """# Results

Generated by `python -m benchmarks.results_doc` from the result files in
`benchmarks/results/` (do not edit by hand: rerun it). Each file records the command that
wrote it, the commit, the machine and the device; each table below names its file. Timings
depend on the machine and its load; trained figures also move from run to run (seeds) and,
through floating point, from machine to machine: the demo section measures by how much.
"""


def render(results_dir: str = RESULTS_DIR) -> str:
  """The whole document."""
  names = sorted(os.path.basename(p) for p in glob.glob(os.path.join(results_dir, "*.json")))
  results = {n: result_file.read(os.path.join(results_dir, n)) for n in names}
  parts, done = [HEADER], set()
  for matches, section in SECTIONS:
    for n in names:
      if n not in done and matches(n):
        parts.append(section(n, results[n]))
        done.add(n)
  for n in names:
    if n not in done:
      parts.append(generic(n, results[n]))
  return "\n\n".join(p.rstrip("\n") for p in parts) + "\n"


def main(argv):
  del argv
  text = render()
  current = open(DOC, encoding="utf-8").read() if os.path.exists(DOC) else None
  if _CHECK.value:
    if current != text:
      sys.exit(f"error: {DOC} is out of date; run `python -m benchmarks.results_doc`")
    print(f"{DOC} is up to date")
    return
  os.makedirs(os.path.dirname(DOC), exist_ok=True)
  with open(DOC, "w", encoding="utf-8") as f:
    f.write(text)
  print(f"wrote {DOC}")


if __name__ == "__main__":
  app.run(logs.main_quietly(main))
