"""Length-grouped example order: batches of similar length, so padding to a length bucket
wastes little compute.

Why: spoken questions last 1-6 s but a batch pads to the bucket of its longest one; a
random batch of 32 almost always holds one long question, so every step paid for the
longest window. Sorting examples by length inside a window of a few shuffled batches and
shuffling the batches again (the usual bucket-by-length sampler) keeps the stream random
at the batch level while most batches fit a short bucket.

The order is a pure function of (lengths, group size, window, seed, epoch) and random
access, so grain's iterator state (a position) resumes it exactly.
"""
from __future__ import annotations

import sys
from typing import Any, Optional

import numpy as np


def epoch_order(lengths: np.ndarray, group: int, window: int, seed: int,
                epoch: int) -> np.ndarray:
  """One epoch's example indices [n // group * group]: shuffled, sorted by length inside
  windows of `window` groups, cut into groups of `group`, groups shuffled. The examples left
  over by the cut differ from epoch to epoch."""
  rng = np.random.default_rng([seed, epoch])
  order = rng.permutation(len(lengths))[:len(lengths) // group * group]
  span = window * group
  for start in range(0, len(order), span):
    chunk = order[start:start + span]
    order[start:start + span] = chunk[np.argsort(lengths[chunk], kind="stable")]
  groups = order.reshape(-1, group)  # [groups, group]
  return groups[rng.permutation(len(groups))].reshape(-1)


class LengthGroupedSource:
  """Random access to `source`'s records in the order of consecutive `epoch_order`s.

  group: examples per global batch (per-host batch x hosts: every host then reads a slice
  of one sorted global batch). num_epochs None: endless.
  """

  def __init__(self, source: Any, lengths: np.ndarray, group: int, window: int, seed: int,
               num_epochs: Optional[int] = None):
    lengths = np.asarray(lengths)
    if lengths.shape != (len(source),):
      raise ValueError(f"length grouping: {lengths.shape[0]} lengths for a source of "
                       f"{len(source)} examples")
    if len(source) < group:
      raise ValueError(f"length grouping: {len(source)} examples, fewer than one global batch "
                       f"({group})")
    self._source, self._lengths = source, lengths
    self._group, self._window, self._seed = group, max(1, window), seed
    self._per_epoch = len(source) // group * group
    epochs = num_epochs if num_epochs is not None else sys.maxsize // self._per_epoch
    self._len = self._per_epoch * epochs
    self._cached: tuple[int, np.ndarray] = (-1, np.zeros((0,), np.int64))

  def __len__(self) -> int:
    return self._len

  def _order(self, epoch: int) -> np.ndarray:
    """This epoch's order, computed once per epoch (reads move through epochs in turn). One
    (epoch, order) tuple, swapped whole, so reader threads never pair an epoch with another
    epoch's order."""
    cached_epoch, order = self._cached
    if cached_epoch != epoch:
      order = epoch_order(self._lengths, self._group, self._window, self._seed, epoch)
      self._cached = (epoch, order)
    return order

  def example_index(self, index: int) -> int:
    """The source index at position `index` of the grouped stream."""
    if not 0 <= index < self._len:
      raise IndexError(index)
    epoch, position = divmod(index, self._per_epoch)
    return int(self._order(epoch)[position])

  def __getitem__(self, index: int) -> Any:
    return self._source[self.example_index(index)]
