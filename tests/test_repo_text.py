"""The tracked files speak of the project only: no development-process words, no absolute
paths of a developer's machine, no pointers to files outside the repository."""
import os
import re
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Built from pieces so that this file does not match itself.
FORBIDDEN = {
    "the word 'sess" "ion'": re.compile(r"\b" + "sess" + r"ions?\b", re.IGNORECASE),
    "the word 'sand" "box'": re.compile("sand" + "box", re.IGNORECASE),
    "an absolute path of a developer's machine": re.compile(
        r"(?<![\w.~$:/-])/(?:" + "work|root|home|tmp" + r")/"),
    "a pointer to MIS" "SION.md": re.compile("MIS" + r"SION\.md"),
}


def tracked_text_files() -> list[str]:
  try:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True)
  except (OSError, subprocess.CalledProcessError):
    pytest.skip("not a git checkout")
  return [p for p in out.stdout.decode().split("\0") if p]


def offences(text: str) -> list[str]:
  return [what for what, pattern in FORBIDDEN.items() if pattern.search(text)]


def test_the_patterns_catch_what_they_name_and_spare_the_rest():
  assert offences("as in sess" "ion 9") and offences("Sess" "ions differ")
  assert offences("a sand" "box VM") and offences("see MIS" "SION.md")
  assert offences("--out=/tm" "p/data") and offences("cd /wor" "k/main")
  assert not offences("sessional obsession, pytest scope, https://example.com/home/x")
  assert not offences("a path like w/" "tm" "p/x or ~/" "wor" "k/ or $HOME/" "wor" "k/")


def test_tracked_files_name_no_process_machine_or_outside_file():
  found = []
  for path in tracked_text_files():
    full = os.path.join(ROOT, path)
    if not os.path.isfile(full):
      continue  # deleted in the work tree
    try:
      with open(full, encoding="utf-8") as f:
        text = f.read()
    except UnicodeDecodeError:
      continue  # binary (PNG, audio)
    found += [f"{path}: {what}" for what in offences(text)]
  assert not found, "\n".join(found)
