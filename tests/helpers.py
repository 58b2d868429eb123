"""Shared test fixtures: tiny configs that train in seconds."""
from __future__ import annotations

import ml_collections

from configs import ar, data, mdm


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


def micro_data_config() -> ml_collections.ConfigDict:
  """`configs/data.py:tiny` cut to 24/4/4 examples, 4 speakers, 32 units: builds in seconds."""
  c = data.get_config("tiny")
  c.corpus.num_train, c.corpus.num_test, c.corpus.num_heldout = 24, 4, 4
  c.corpus.num_speakers, c.corpus.num_heldout_speakers = 4, 2
  c.units.num_units, c.units.num_steps, c.units.batch_frames = 32, 10, 256
  c.text_tokenizer.vocab_size = 128
  return c
