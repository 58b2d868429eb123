"""Workdir, data and export paths through etils.epath, the path layer orbax uses.

A `gs://bucket/run` string then works where a local directory does: `os.path.abspath`
would turn it into `/cwd/gs:/bucket/run`, and `open()`, `os.path.isdir` or `os.listdir`
only see the local disk. epath reaches buckets through its installed backends
(tensorflow's gfile or gcsfs).
"""
from __future__ import annotations

import os

from etils import epath


def absolute(path: str) -> str:
  """`path` as an absolute string (orbax wants one): a local path resolved against the
  working directory, a URI (`gs://...`) unchanged (`epath.Path.absolute` mangles it)."""
  p = epath.Path(path)
  return os.fspath(p if p.is_absolute() else p.absolute())

