"""The shared result schema: every key present, no host name, a clear error on a foreign file."""
import json
import platform

import pytest

from vocalnet_jax.evaluation import result_file


def test_write_read_round_trip(tmp_path):
  path = str(tmp_path / "r.json")
  written = result_file.write(path, {"preset": "tiny"}, {"exact_match": 0.5},
                              command="python -m launch.x --a=1", device="cpu:cpu x1")
  back = result_file.read(path)
  assert back == json.loads(json.dumps(written))
  assert set(result_file.SCHEMA_KEYS) <= set(back)
  assert back["metrics"] == {"exact_match": 0.5}
  assert back["command"] == "python -m launch.x --a=1"
  assert back["commit"]  # a hash, `+dirty`, or `unknown` outside git
  assert platform.node() not in json.dumps(back["machine"])


def test_read_refuses_a_file_without_the_schema(tmp_path):
  path = tmp_path / "old.json"
  path.write_text(json.dumps({"rows": []}))
  with pytest.raises(ValueError, match="old.json: not a result file .*command"):
    result_file.read(str(path))


def test_command_line_names_the_module():
  assert result_file.command_line(["x.py", "--n=3"], module="launch.serve") == (
      "python -m launch.serve --n=3")


def test_command_line_never_names_the_machine_s_directories(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  script = str(tmp_path / "benchmarks" / "x.py")
  assert result_file.command_line([script, "--n=3"]) == "python benchmarks/x.py --n=3"


def test_git_commit_is_dirty_for_code_changes_not_for_written_results(tmp_path):
  import subprocess
  run = lambda *a: subprocess.run(["git", *a], cwd=tmp_path, check=True,  # noqa: E731
                                  capture_output=True)
  (tmp_path / result_file.RESULTS_DIR).mkdir(parents=True)
  result = tmp_path / result_file.RESULTS_DIR / "r.json"
  code = tmp_path / "code.py"
  result.write_text("{}")
  code.write_text("x = 1\n")
  run("init", "-q")
  run("add", ".")
  run("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c")
  clean = result_file.git_commit(str(tmp_path))
  assert "+" not in clean
  result.write_text('{"a": 1}')  # an earlier benchmark's output changes no code
  assert result_file.git_commit(str(tmp_path)) == clean
  code.write_text("x = 2\n")
  assert result_file.git_commit(str(tmp_path)) == clean + "+dirty"
