"""The Colab notebook runs top to bottom (a few training steps) on the library as it is,
and its speech section speaks both models' answers."""
import json
import pathlib

import matplotlib
import pytest

NOTEBOOK = pathlib.Path(__file__).resolve().parents[1] / "notebooks" / "colab.ipynb"


@pytest.mark.slow  # trains three text models and five speech stages, a few steps each
def test_colab_notebook_runs_end_to_end(tmp_path, monkeypatch, devices):
  matplotlib.use("Agg")
  monkeypatch.chdir(NOTEBOOK.parents[1])  # the notebook's first cell moves to the checkout
  monkeypatch.setenv("VOCALNET_NOTEBOOK_STEPS", "3")
  monkeypatch.setenv("VOCALNET_NOTEBOOK_DIR", str(tmp_path))
  monkeypatch.setenv("VOCALNET_DEMO_DIR", str(tmp_path / "no_demo"))  # train, not load
  cells = json.loads(NOTEBOOK.read_text())["cells"]
  sources = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
  namespace = {}
  for i, source in enumerate(sources):
    exec(compile(source, f"{NOTEBOOK.name}:cell{i}", "exec"), namespace)
  assert [r["model"] for r in namespace["rows"]] == ["ar", "mdm", "mdm", "mdm"]
  assert all(0.0 <= r["exact_match"] <= 1.0 for r in namespace["rows"])
  summary = namespace["benchmark"].summary(namespace["bench_rows"])
  assert [s["steps"] for s in summary] == [4] and summary[0]["speedup"] > 0
  assert [e["round"] for e in namespace["entries"]] == [0, 1]
  for name in ("ar", "mdm"):  # the speech section played a spoken answer of each model
    reply = namespace["spoken"][name]
    assert reply.audio is not None and reply.audio.size > 0 and reply.nfe > 0
