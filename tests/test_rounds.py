import json
import os

import jax
import numpy as np
import pytest

from configs import distill
from tests.helpers import tiny_config
from vocalnet_jax.decoding import BlockDiffusionConfig, block_diffusion
from vocalnet_jax.distill import rounds
from vocalnet_jax.evaluation import text_eval, text_metrics
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


def _decoded(config, workdir, steps, prompts):
  """The model in `workdir` answering `prompts` with S = steps, decoded here directly."""
  lm, params, tok = text_eval.load_thinker(config, workdir)
  prefix, valid, _ = prompts
  cfg = BlockDiffusionConfig(config.diffusion.block_size, steps, tok.mask_id, tok.eos_id,
                             shift_logits=config.diffusion.shift_logits)
  out = block_diffusion.generate(lm, params, prefix, valid, jax.random.key(0), cfg=cfg,
                                 max_new_tokens=config.data.response_len)
  lengths = np.asarray(out.lengths)
  return [tok.decode(np.asarray(out.tokens)[i, :lengths[i]]) for i in range(len(lengths))], out


def test_rounds_halve_the_steps_and_score_every_budget(distilled):
  """Every entry's row at S steps is its own model (teacher, then each round's student)
  decoded at S steps: exact match, CER and forwards recomputed here."""
  config, _, teacher, workdir, entries = distilled
  assert config.distill.rounds == (4, 2)
  assert [e["round"] for e in entries] == [0, 1, 2]
  assert [(e["teacher_steps"], e["student_steps"]) for e in entries[1:]] == [(4, 2), (2, 1)]
  prompts = text_eval.held_out_prompts(config, config.distill.eval_examples)
  teacher_config = config.copy_and_resolve_references()
  teacher_config.task = config.distill.base_task
  round1, round2 = rounds.round_workdir(workdir, 1, 4), rounds.round_workdir(workdir, 2, 2)
  models = [(teacher_config, teacher), (rounds.round_config(config, 1, teacher), round1),
            (rounds.round_config(config, 2, round1), round2)]
  for e, (model_config, model_dir) in zip(entries, models):
    assert e["workdir"] == model_dir
    assert [row["steps"] for row in e["eval"]] == [1, 2, 4]
    for row in e["eval"]:
      texts, out = _decoded(model_config, model_dir, row["steps"], prompts)
      assert row["exact_match"] == text_metrics.exact_match(texts, prompts[2])
      assert row["char_error_rate"] == pytest.approx(
          text_metrics.char_error_rate(texts, prompts[2]))
      assert row["nfe_per_batch"] == float(out.nfe) >= row["steps"]
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
