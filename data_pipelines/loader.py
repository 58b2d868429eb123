"""Generic grain input pipeline: random-access source -> shuffle -> repeat -> example
transform -> batch -> this host's batches, plus global `jax.Array`s for a mesh.

Hosts split batches, not the source: host p reads per-host batches p, p + P, p + 2P, ...
of one global order, so the hosts' batches of a step, stacked in process order, are the
global batch a single process reads with the same seed (runs match across topologies).

The returned `grain.DatasetIterator` is checkpointable (`get_state` / `set_state`,
or `grain.checkpoint.CheckpointSave` inside an orbax `CheckpointManager`), so a
resumed run sees exactly the batches an uninterrupted run would have seen.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Optional

import grain
import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from data_pipelines import length_grouping

Batch = dict[str, np.ndarray]


def host_shard_options() -> grain.sharding.ShardOptions:
  """This process's share of the batches: shard `process_index` of `process_count`."""
  return grain.sharding.ShardOptions(
      shard_index=jax.process_index(), shard_count=jax.process_count(), drop_remainder=True)


def make_dataset(source: Any, transform: Callable[[Any], Mapping[str, np.ndarray]], *,
                 batch_size: int, seed: int, shuffle: bool = True,
                 num_epochs: Optional[int] = None,
                 shard: Optional[grain.sharding.ShardOptions] = None,
                 batch_fn: Optional[Callable[[list], Batch]] = None,
                 lengths: Optional[np.ndarray] = None, group_window: int = 0,
                 companion: Optional[Callable[[int], Mapping[str, np.ndarray]]] = None
                 ) -> grain.IterDataset:
  """Builds the per-host pipeline.

  source: any random-access source (`__len__`, `__getitem__`), e.g. a TFDS
    `as_data_source` or a procedural generator. transform: one record -> dict of
    fixed-shape numpy arrays. batch_size: per-host batch. num_epochs: None repeats forever.
    shard: default `host_shard_options()`; `NoSharding()` reads every batch.
    batch_fn: list of transformed examples -> batch (default: stack); e.g. pad
    variable-length examples to a length bucket.
    lengths, group_window: with both (and `shuffle`), each global batch holds examples of
    similar `lengths` (sorted inside windows of `group_window` global batches;
    `length_grouping`), so `batch_fn` can pad most batches to a short bucket.
    companion: stream position -> more fixed-shape arrays for that example (e.g. a
      procedural source read alongside the records: a new draw at every position, not
      one per record, and as resumable as the stream; the position counts across epochs).
  """
  if len(source) == 0:
    raise ValueError("data source is empty: nothing to train on")
  shard = shard or host_shard_options()
  if len(source) < batch_size * shard.shard_count:
    raise ValueError(f"data source has {len(source)} examples, fewer than one global batch "
                     f"({shard.shard_count} hosts x batch_size={batch_size})")
  if shuffle and lengths is not None and group_window > 0:
    ds = grain.MapDataset.source(length_grouping.LengthGroupedSource(
        source, lengths, batch_size * shard.shard_count, group_window, seed, num_epochs))
  else:
    ds = grain.MapDataset.source(source)
    ds = (ds.shuffle(seed=seed) if shuffle else ds).repeat(num_epochs)
  ds = (ds.map_with_index(lambda i, record: {**transform(record), **companion(i)})
        if companion else ds.map(transform))
  ds = ds.batch(batch_size, drop_remainder=True, batch_fn=batch_fn)
  ds = ds[:len(ds) - len(ds) % shard.shard_count]  # every host gets as many batches
  return ds[shard.shard_index::shard.shard_count].to_iter_dataset()


def prefetched(ds: grain.IterDataset, batches: int) -> grain.IterDataset:
  """`ds` read `batches` ahead on a background thread (0: as is), so the next batch is
  made while the device runs the step. Its iterator's state is still the position of the
  last batch handed out, so checkpoints resume exactly."""
  if batches <= 0:
    return ds
  return grain.experimental.ThreadPrefetchIterDataset(ds, prefetch_buffer_size=batches)


def batch_sharding(mesh: Mesh, batch_axes: tuple[str, ...] = ("data", "fsdp")) -> NamedSharding:
  """Leading (batch) dimension split over the data-parallel mesh axes."""
  axes = tuple(a for a in batch_axes if a in mesh.axis_names)
  return NamedSharding(mesh, PartitionSpec(axes))


def to_global_batch(batch: Mapping[str, np.ndarray],
                    sharding: NamedSharding) -> dict[str, jax.Array]:
  """Per-host numpy batch -> global arrays laid out by `sharding` (multi-host safe)."""
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in batch.items()}


def pad_to_common_shapes(batch: Mapping[str, np.ndarray]) -> Batch:
  """Pads every array with zeros (False) to the largest shape any process holds, so hosts
  that picked different length buckets build one global array (the bucket a single
  process would pick for the whole batch). One small all-gather; a no-op on one process."""
  if jax.process_count() == 1:
    return dict(batch)
  keys = sorted(batch)
  dims = np.concatenate([np.asarray(batch[k].shape[1:], np.int32) for k in keys])
  most = np.asarray(multihost_utils.process_allgather(dims)).max(axis=0)
  out, offset = {}, 0
  for k in keys:
    v = batch[k]
    target = most[offset:offset + v.ndim - 1]
    offset += v.ndim - 1
    out[k] = np.pad(v, [(0, 0)] + [(0, int(t) - s) for t, s in zip(target, v.shape[1:])])
  return out
