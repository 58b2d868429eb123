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
