import json
import os

import jax
import numpy as np
import pytest

from configs import distill
from tests.helpers import tiny_config
from vocalnet_jax.distill import rounds
from vocalnet_jax.training import checkpointing, trainer


def _params(config, workdir):
  """The latest checkpoint's params in `workdir` (the whole {student, teacher} tree)."""
  exp = trainer.setup_experiment(config)
  ckpt = checkpointing.Checkpointer(os.path.join(workdir, "checkpoints"), keep=1, every=1)
  try:
    return ckpt.restore(ckpt.latest_step(), exp.abstract_state).params
  finally:
    ckpt.close()


def _assert_same(a, b):
  for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.fixture(scope="module")
def distilled(tmp_path_factory, devices):
  root = tmp_path_factory.mktemp("distill")
  teacher_config = tiny_config(train__steps=4)
  teacher = str(root / "teacher")
  trainer.train(teacher_config, teacher)
  config = distill.get_config("tiny,text")
  config.train.update(batch_size=16, steps=3, log_every=1, checkpoint_every=1000,
                      progress_bar=False)
  config.distill.eval_examples = 8
  entries = rounds.run(config, teacher, str(root / "rounds"))
  return config, teacher_config, teacher, str(root / "rounds"), entries


def test_rounds_halve_the_steps_and_score_every_budget(distilled):
  config, _, _, workdir, entries = distilled
  assert config.distill.rounds == (4, 2)
  assert [e["round"] for e in entries] == [0, 1, 2]
  assert [(e["teacher_steps"], e["student_steps"]) for e in entries[1:]] == [(4, 2), (2, 1)]
  for e in entries:
    assert [row["steps"] for row in e["eval"]] == [1, 2, 4]
    assert all(0.0 <= row["exact_match"] <= 1.0 for row in e["eval"])
  for e in entries[1:]:
    assert np.isfinite(e["final_loss"]) and e["final_loss"] >= 0.0
  with open(os.path.join(workdir, "rounds.json")) as f:
    assert json.load(f) == entries


def test_each_student_is_the_next_teacher(distilled):
  config, teacher_config, teacher, workdir, _ = distilled
  source = _params(teacher_config, teacher)
  round1 = _params(rounds.round_config(config, 1, teacher), rounds.round_workdir(workdir, 1, 4))
  round2 = _params(rounds.round_config(config, 2, ""), rounds.round_workdir(workdir, 2, 2))
  _assert_same(round1["teacher"], source)  # frozen all round long
  _assert_same(round2["teacher"], round1["student"])
  moved = [not np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(
      jax.tree_util.tree_leaves(round1["student"]), jax.tree_util.tree_leaves(source))]
  assert any(moved)


def test_rerun_skips_finished_rounds(distilled):
  config, _, teacher, workdir, _ = distilled
  again = rounds.run(config, teacher, workdir, evaluate=False)
  assert [e["round"] for e in again] == [0, 1, 2]
  assert all("final_loss" not in e and "eval" not in e for e in again)  # nothing retrained
