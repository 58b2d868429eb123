"""launch.demo_summary: the AR vs MDM lines it prints come from the two eval.json files."""
import json
import subprocess
import sys


def _eval(directory, setting, exact_match, printed, rule="greedy", first="2 times 3 is 6."):
  examples = [{"question": "what is 2 times 3?", "reference": "2 times 3 is 6.",
               "printed": p, "transcript": "two times three is six",
               "chosen": "two times three is six", "identified": p == first}
              for p in (first, printed)]
  summary = {"exact_match": exact_match, "wer_vs_printed": 0.25, "identified": exact_match,
             "first_audio_s": 0.5,
             "thinker_nfe": 6.0, "talker_nfe": 9.0,
             "exact_match_seen": {"n": 1, "exact_match": 1.0},
             "exact_match_new": {"n": 1, "exact_match": exact_match},
             "exact_match_by_template": {"multiply": {"n": 2, "exact_match": exact_match}}}
  directory.mkdir()
  (directory / "eval.json").write_text(json.dumps({
      "num_examples": 2, "split": "test",
      "settings": {setting: {"rule": rule, "summary": summary, "examples": examples}},
      "floors": {"corpus_audio": {"wer": 0.4, "identified": 1.0},
                 "vocoder_resynthesis": {"wer": 0.5, "identified": 0.9}}}))


def _run(*args):
  return subprocess.run([sys.executable, "-m", "launch.demo_summary", *args],
                        capture_output=True, text=True)


def test_prints_both_models_and_their_ratio(tmp_path):
  _eval(tmp_path / "ar", "ar", 0.8, "2 times 3 is 6.")
  _eval(tmp_path / "mdm", "mdm_steps2", 0.6, "2 times 3 is 5.", rule="threshold")
  out = _run(f"--ar={tmp_path / 'ar'}", f"--mdm={tmp_path / 'mdm'}")
  assert out.returncode == 0, out.stderr
  assert "MDM / AR exact match: 0.75" in out.stdout
  assert "mdm_steps2 threshold" in out.stdout and "'2 times 3 is 5.'" in out.stdout
  assert "AR 1.00 asked in training (1), 0.80 new (1)" in out.stdout
  assert "multiply 0.80/0.60 (n=2)" in out.stdout
  assert "forced choice identifies 1.00 and 0.90 of them" in out.stdout
  assert "forced choice heard 'two times three is six'" in out.stdout
  # the first question both answer right, then the first one either answers wrong
  assert "both right, question #0" in out.stdout
  assert "not both right, question #1" in out.stdout
  assert str(tmp_path / "mdm" / "mdm_steps2" / "answer_1.wav") in out.stdout


def test_missing_eval_is_one_line(tmp_path):
  _eval(tmp_path / "ar", "ar", 0.8, "x")
  out = _run(f"--ar={tmp_path / 'ar'}", f"--mdm={tmp_path / 'none'}")
  assert out.returncode == 1 and out.stderr.strip().count("\n") == 0
  assert str(tmp_path / "none" / "eval.json") in out.stderr
