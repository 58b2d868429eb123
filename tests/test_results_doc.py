"""benchmarks/results: every file in the shared schema; docs/results.md generated from them,
unchanged by a rerun, every table naming its file."""
import glob
import json
import os
import re

from benchmarks import results_doc
from vocalnet_jax.evaluation import result_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, results_doc.RESULTS_DIR)


def _result_paths():
  return sorted(glob.glob(os.path.join(RESULTS, "*.json")))


def test_every_result_file_carries_the_schema():
  assert _result_paths()
  for path in _result_paths():
    r = result_file.read(path)  # raises naming the file and the missing keys
    for key in ("command", "commit", "machine", "device", "date"):
      assert r[key], f"{path}: empty {key}"
    assert re.fullmatch(r"[0-9a-f]{7,40}(\+dirty)?", r["commit"]), path


def test_results_doc_is_the_rendering_of_the_files():
  with open(os.path.join(ROOT, results_doc.DOC), encoding="utf-8") as f:
    committed = f.read()
  cwd = os.getcwd()
  os.chdir(ROOT)
  try:
    assert results_doc.render() == committed, (
        "docs/results.md is out of date: run `python -m benchmarks.results_doc`")
  finally:
    os.chdir(cwd)


def test_every_table_names_its_file_and_every_file_has_a_table():
  text = results_doc.render(RESULTS)
  sections = text.split("\n## ")[1:]
  named = set()
  for section in sections:
    sources = re.findall(r"\*Source: \[`benchmarks/results/([^`]+\.json)`\]", section)
    assert len(sources) == 1, section[:80]  # one file per section, named under its tables
    assert "| --- |" not in section and section.count("|---|") >= 1
    named.add(sources[0])
  assert named == {os.path.basename(p) for p in _result_paths()}


def test_a_file_without_a_section_is_rendered_from_its_metrics(tmp_path):
  result_file.write(str(tmp_path / "new_thing_cpu.json"), {"preset": "tiny"},
                    {"speed": {"tokens_per_s": 123.456}, "rows": [{"exact_match": 0.5}]},
                    command="python -m launch.x", device="cpu:cpu x1")
  text = results_doc.render(str(tmp_path))
  assert "## `new_thing_cpu.json`" in text
  assert "| speed.tokens_per_s | 123.456 |" in text and "| rows.0.exact_match | 0.500 |" in text
  assert "`python -m launch.x`" in text
  assert results_doc.render(str(tmp_path)) == text  # deterministic


def test_a_file_without_the_schema_is_refused_by_name(tmp_path):
  (tmp_path / "old.json").write_text(json.dumps({"rows": []}))
  try:
    results_doc.render(str(tmp_path))
  except ValueError as e:
    assert "old.json: not a result file" in str(e)
  else:
    raise AssertionError("a file without the schema was rendered")
