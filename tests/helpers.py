"""Shared test fixtures: tiny configs that train in seconds."""
from __future__ import annotations

import grain
import ml_collections
import numpy as np

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
  """`configs/data.py:tiny` cut to 24/4/4/2 examples and 8 read sentences, 4 speakers,
  32 units: builds in seconds."""
  c = data.get_config("tiny")
  c.corpus.num_train, c.corpus.num_test, c.corpus.num_heldout = 24, 4, 4
  c.corpus.num_unseen_voices, c.corpus.num_read = 2, 8
  c.corpus.num_speakers, c.corpus.num_heldout_speakers = 4, 2
  c.units.num_units, c.units.num_steps, c.units.batch_frames = 32, 10, 256
  c.text_tokenizer.vocab_size = 128
  return c


def assert_hosts_read_slices(dataset, key: str, batch_size: int, batches: int = 3) -> None:
  """Two hosts with per-host batch B, stacked in process order, read the global batches a
  single process reads with batch 2B (so runs match across topologies).
  dataset(shard=..., batch_size=...) -> a grain dataset (the default shard: one process)."""
  single = iter(dataset(batch_size=2 * batch_size))
  hosts = [iter(dataset(shard=grain.sharding.ShardOptions(p, 2, drop_remainder=True),
                        batch_size=batch_size)) for p in range(2)]
  for _ in range(batches):
    stacked = np.concatenate([next(h)[key] for h in hosts])
    np.testing.assert_array_equal(stacked, next(single)[key])
