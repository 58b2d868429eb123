"""benchmarks/demo_result.py records a finished demo run in the result schema and appends
repeated runs (run as a subprocess: its absl flags stay out of the test process)."""
import json
import os
import subprocess
import sys

from vocalnet_jax.evaluation import result_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STAGES = ("ar_stage0", "ar_stage1", "mdm_stage1", "ar_stage2", "mdm_stage2")


def _fake_demo(demo_dir, ar_exact, mdm_exact):
  """The files a finished `make demo` leaves: recipe, metrics per stage, two evaluations."""
  os.makedirs(demo_dir)
  with open(os.path.join(demo_dir, "recipe.json"), "w") as f:
    json.dump({"recipe": "configs/recipes/demo.py", "stages": [], "complete": []}, f)
  for i, stage in enumerate(STAGES):
    os.makedirs(os.path.join(demo_dir, stage))
    with open(os.path.join(demo_dir, stage, "metrics.jsonl"), "w") as f:
      f.write(json.dumps({"step": 5, "loss": 2.0 + i}) + "\n")
      f.write(json.dumps({"step": 10, "loss": 1.0 + i}) + "\n")
      f.write(json.dumps({"step": 10, "eval_nothing": 0.0}) + "\n")
  floors = {"corpus_audio": {"wer": 0.4}, "vocoder_resynthesis": {"wer": 0.2},
            "examples": [{"x": 1}]}
  for name, setting, exact in (("ar", "ar", ar_exact), ("mdm", "mdm_steps4", mdm_exact)):
    os.makedirs(os.path.join(demo_dir, f"eval_{name}"))
    with open(os.path.join(demo_dir, f"eval_{name}", "eval.json"), "w") as f:
      json.dump({"settings": {setting: {"summary": {"exact_match": exact, "wer_vs_printed": 0.7},
                                        "examples": []}}, "floors": floors}, f)
  log = os.path.join(demo_dir, "demo.log")
  with open(log, "w") as f:
    f.write("\n=== 1/2 corpus (23:59:00) ===\nwork\n\n=== 2/2 train (00:01:30) ===\n")
  return log


def _record(demo_dir, log, out, label):
  return subprocess.run(
      [sys.executable, "-m", "benchmarks.demo_result", f"--demo_dir={demo_dir}", f"--log={log}",
       f"--out={out}", f"--label={label}"], cwd=ROOT, capture_output=True, text=True,
      env={**os.environ, "JAX_PLATFORMS": "cpu"})


def test_demo_runs_are_recorded_and_appended(tmp_path):
  out = str(tmp_path / "demo.json")
  first = _fake_demo(str(tmp_path / "a"), 0.5, 0.6)
  assert _record(tmp_path / "a", first, out, "seed 0").returncode == 0
  second = _fake_demo(str(tmp_path / "b"), 0.4, 0.4)
  assert _record(tmp_path / "b", second, out, "seed 1").returncode == 0
  r = result_file.read(out)
  runs = r["metrics"]["runs"]
  assert [x["label"] for x in runs] == ["seed 0", "seed 1"]
  assert runs[0]["mdm_over_ar_exact_match"] == 0.6 / 0.5
  assert runs[1]["mdm_over_ar_exact_match"] == 1.0
  assert runs[0]["recipe"] == "configs/recipes/demo.py"
  assert [x["loss"] for x in runs[0]["final_train_losses"]] == [1.0, 2.0, 3.0, 4.0, 5.0]
  assert runs[0]["floors"] == {"corpus_audio": {"wer": 0.4}, "vocoder_resynthesis": {"wer": 0.2}}
  stages = runs[0]["stage_wall_s"]
  assert [s["stage"] for s in stages] == ["corpus", "train"]
  assert stages[0]["wall_s"] == 150  # across midnight
  assert r["command"].startswith("make demo > demo.log; python -m benchmarks.demo_result")


def test_an_unfinished_demo_is_one_line_and_exit_1(tmp_path):
  (tmp_path / "half").mkdir()
  run = _record(tmp_path / "half", "", str(tmp_path / "x.json"), "seed 0")
  assert run.returncode == 1 and run.stderr.strip().count("\n") == 0
  assert "is not a finished `make demo` run" in run.stderr
