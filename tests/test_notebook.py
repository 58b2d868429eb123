"""The Colab notebook runs top to bottom (a few training steps) on the library as it is."""
import json
import pathlib

import matplotlib

NOTEBOOK = pathlib.Path(__file__).resolve().parents[1] / "notebooks" / "colab.ipynb"


def _is_shell_magic(source: str) -> bool:
  return any(line.startswith(("%", "!")) for line in source.splitlines())


def test_colab_notebook_runs_end_to_end(tmp_path, monkeypatch, devices):
  matplotlib.use("Agg")
  monkeypatch.setenv("VOCALNET_NOTEBOOK_STEPS", "3")
  monkeypatch.setenv("VOCALNET_NOTEBOOK_DIR", str(tmp_path))
  cells = json.loads(NOTEBOOK.read_text())["cells"]
  sources = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
  namespace = {}
  for i, source in enumerate(sources):
    if not _is_shell_magic(source):  # the Colab install cell
      exec(compile(source, f"{NOTEBOOK.name}:cell{i}", "exec"), namespace)
  assert [r["model"] for r in namespace["rows"]] == ["ar", "mdm", "mdm", "mdm"]
  assert all(0.0 <= r["exact_match"] <= 1.0 for r in namespace["rows"])
  summary = namespace["benchmark"].summary(namespace["bench_rows"])
  assert [s["steps"] for s in summary] == [4] and summary[0]["speedup"] > 0
  assert [e["round"] for e in namespace["entries"]] == [0, 1]
