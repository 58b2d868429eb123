"""Shared test fixtures: tiny configs that train in seconds."""
from __future__ import annotations

import ml_collections

from configs import ar, mdm


def tiny_config(base: str = "mdm", **overrides) -> ml_collections.ConfigDict:
  """The `tiny` preset shrunk further, with dotted-key overrides (`train__steps=3`)."""
  c = (mdm if base == "mdm" else ar).get_config("tiny,text")
  c.train.batch_size = 16
  c.train.log_every = 1
  c.train.progress_bar = False
  c.train.checkpoint_every = 1000
  for key, value in overrides.items():
    node = c
    *path, leaf = key.split("__")
    for p in path:
      node = node[p]
    node[leaf] = value
  return c
