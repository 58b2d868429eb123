"""Length-grouped batches: a permutation per epoch, short padding, exact resume, host split."""
import grain
import numpy as np
import pytest

from data_pipelines import length_grouping, loader
from tests import helpers

LENGTHS = np.random.default_rng(0).integers(100, 600, size=203)
BATCH = 8


def _dataset(shard=None, batch_size=BATCH, window=4, lengths=LENGTHS, seed=3):
  source = [{"index": np.int64(i), "length": np.int64(n)} for i, n in enumerate(LENGTHS)]
  return loader.make_dataset(source, lambda r: r, batch_size=batch_size, seed=seed,
                             shard=shard or grain.sharding.NoSharding(), lengths=lengths,
                             group_window=window)


def test_each_epoch_is_a_new_permutation_of_whole_groups():
  n = len(LENGTHS) // BATCH * BATCH
  first = length_grouping.epoch_order(LENGTHS, BATCH, 4, seed=3, epoch=0)
  again = length_grouping.epoch_order(LENGTHS, BATCH, 4, seed=3, epoch=0)
  second = length_grouping.epoch_order(LENGTHS, BATCH, 4, seed=3, epoch=1)
  np.testing.assert_array_equal(first, again)
  assert len(first) == n and len(set(first.tolist())) == n and len(set(second.tolist())) == n
  assert not np.array_equal(first, second)


def test_groups_pad_to_far_less_than_a_random_order():
  """Sum over batches of the longest member (the padded cost) drops; a window of one batch
  is the plain shuffle's cost."""
  def padded(order):
    return LENGTHS[order].reshape(-1, BATCH).max(axis=1).sum()
  grouped = padded(length_grouping.epoch_order(LENGTHS, BATCH, 8, seed=3, epoch=0))
  random = padded(length_grouping.epoch_order(LENGTHS, BATCH, 1, seed=3, epoch=0))
  assert grouped < 0.8 * random
  # inside a batch the members are neighbours in their window's sorted order
  order = length_grouping.epoch_order(LENGTHS, BATCH, 25, seed=3, epoch=0)  # one window
  batches = LENGTHS[order].reshape(-1, BATCH)
  spans = sorted((b.min(), b.max()) for b in batches)
  assert all(hi <= next_lo for (_, hi), (next_lo, _) in zip(spans, spans[1:]))


def test_stream_crosses_epochs_and_resumes_exactly():
  it = iter(_dataset())
  per_epoch = len(LENGTHS) // BATCH
  seen = [next(it)["index"] for _ in range(per_epoch)]
  assert len(set(np.concatenate(seen).tolist())) == per_epoch * BATCH  # an epoch, no repeats
  state = it.get_state()
  tail = [next(it)["index"] for _ in range(3)]
  resumed = iter(_dataset())
  resumed.set_state(state)
  for want in tail:
    np.testing.assert_array_equal(next(resumed)["index"], want)


def test_hosts_read_slices_of_the_single_process_batches():
  helpers.assert_hosts_read_slices(_dataset, "index", BATCH, batches=5)


def test_lengths_must_match_the_source():
  with pytest.raises(ValueError, match="202 lengths for a source of 203"):
    next(iter(_dataset(lengths=LENGTHS[:-1])))
