"""Metric sinks: `metrics.jsonl` (one JSON object per logged step) and TensorBoard,
written by process 0 only (every process may call them)."""
from __future__ import annotations

import json
import os
from typing import Mapping

import jax
from etils import epath
from tensorboardX import SummaryWriter


class MetricWriter:
  """Appends scalars to `<workdir>/metrics.jsonl` and TensorBoard event files."""

  def __init__(self, workdir: str):
    self._on = jax.process_index() == 0
    if self._on:
      epath.Path(workdir).mkdir(parents=True, exist_ok=True)  # local or gs://
      self._jsonl = (epath.Path(workdir) / "metrics.jsonl").open("a", encoding="utf-8")
      self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))

  def write(self, step: int, scalars: Mapping[str, float]) -> None:
    if not self._on:
      return
    row = {"step": int(step), **{k: float(v) for k, v in scalars.items()}}
    self._jsonl.write(json.dumps(row) + "\n")
    self._jsonl.flush()
    for k, v in scalars.items():
      self._tb.add_scalar(k, float(v), int(step))

  def close(self) -> None:
    if not self._on:
      return
    self._jsonl.close()
    self._tb.close()


def read_metrics(workdir: str) -> list[dict]:
  """Rows of `<workdir>/metrics.jsonl`, in order."""
  text = (epath.Path(workdir) / "metrics.jsonl").read_text(encoding="utf-8")
  return [json.loads(line) for line in text.splitlines() if line.strip()]
