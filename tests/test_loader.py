"""loader.make_dataset's companion: one new draw per stream position, resumable, per host."""
import grain
import numpy as np

from data_pipelines import loader
from tests import helpers

RECORDS = [{"index": np.int64(i)} for i in range(10)]
BATCH = 4


def _dataset(shard=None, batch_size=BATCH):
  # the companion returns its own position, so the test reads what each example was paired with
  return loader.make_dataset(RECORDS, lambda r: r, batch_size=batch_size, seed=1,
                             shard=shard or grain.sharding.NoSharding(),
                             companion=lambda i: {"position": np.int64(i)})


def test_companion_pairs_each_stream_position_once_across_epochs():
  it = iter(_dataset())
  batches = [next(it) for _ in range(6)]  # 24 examples: more than two epochs of 10 records
  positions = np.concatenate([b["position"] for b in batches])
  np.testing.assert_array_equal(positions, np.arange(24))  # a new draw each time
  records = np.concatenate([b["index"] for b in batches])
  assert len(set(records.tolist())) == len(RECORDS)  # while the records repeat


def test_companion_resumes_exactly_and_hosts_read_slices_of_one_stream():
  it = iter(_dataset())
  next(it)
  state = it.get_state()
  want = [next(it) for _ in range(3)]
  resumed = iter(_dataset())
  resumed.set_state(state)
  for w in want:
    got = next(resumed)
    for key in w:
      np.testing.assert_array_equal(got[key], w[key])
  helpers.assert_hosts_read_slices(_dataset, "position", BATCH)
