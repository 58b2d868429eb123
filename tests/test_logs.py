"""Launchers and benchmarks turn a config mistake into one line and a non-zero exit."""
import os
import subprocess
import sys

import pytest
from absl import app

from launch import logs
from vocalnet_jax.modeling.validate import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_main_quietly_makes_a_config_error_a_usage_error_and_passes_the_rest():
  def bad(argv):
    raise ConfigError(f"{argv[1]}: no such run")

  with pytest.raises(app.UsageError, match="w/x: no such run"):
    logs.main_quietly(bad)(["prog", "w/x"])
  with pytest.raises(KeyError):  # not a config mistake: left alone
    logs.main_quietly(lambda argv: {}["k"])(["prog"])


def test_a_benchmark_on_a_missing_run_says_so_in_one_line(tmp_path):
  missing = str(tmp_path / "no_run")
  out = subprocess.run([sys.executable, "-m", "benchmarks.pretrained_eval",
                        f"--checkpoint={missing}", f"--out={tmp_path / 'r.json'}"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert out.returncode == 1
  assert "Traceback" not in out.stderr
  assert out.stderr.strip().splitlines()[-1].endswith(f"{missing} has no config.json")
