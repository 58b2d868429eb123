import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import distill
from tests.helpers import tiny_config
from vocalnet_jax.distill import self_distill
from vocalnet_jax.modeling.build import build
from vocalnet_jax.training import tasks
from vocalnet_jax.training.train_state import freeze

MASK, VOCAB, BLOCK = 6, 7, 4


def _toy_logits_fn(x):
  """ids [b, R] -> logits [b, R, V] that depend on the position and on how many masks are
  left in the block, so a second teacher step sees something new."""
  table = jax.random.normal(jax.random.key(0), (x.shape[1], VOCAB))
  left = jnp.sum((x == MASK).reshape(x.shape[0], -1, BLOCK), -1)  # [b, nb]
  left = jnp.repeat(left, BLOCK, axis=1)  # [b, R]
  return table[None] * (1.0 + left[..., None]) + jax.nn.one_hot(x, VOCAB)


def test_teacher_targets_take_two_top_k_steps():
  noisy = jnp.array([[MASK, MASK, MASK, MASK, 3, MASK, 2, MASK]])
  step = jnp.array([[0, 2]])  # block 0 at step 0 of 4: commit 1; block 1 at step 2: commit 1
  target, committed = self_distill.teacher_targets(_toy_logits_fn, noisy, step, 4, MASK, BLOCK,
                                                   jax.random.key(0))
  logits_1 = np.asarray(_toy_logits_fn(noisy))
  probs = np.exp(logits_1) / np.exp(logits_1).sum(-1, keepdims=True)
  conf = np.where(np.asarray(noisy) == MASK, probs.max(-1), -1.0)[0]
  expect_commit = np.zeros(8, bool)
  for start in (0, 4):
    expect_commit[start + int(np.argmax(conf[start:start + 4]))] = True
  np.testing.assert_array_equal(np.asarray(committed)[0], expect_commit)
  best = logits_1[0].argmax(-1)
  advanced = np.where(expect_commit, best, np.asarray(noisy)[0])[None]
  logits_2 = np.asarray(_toy_logits_fn(jnp.asarray(advanced)))
  second = logits_2 - np.log(np.exp(logits_2).sum(-1, keepdims=True))
  fixed = np.log(np.eye(VOCAB)[best] * (1 - 1e-3) + 1e-3 / VOCAB)[None]
  expect = np.where(expect_commit[None, :, None], fixed, second)
  np.testing.assert_allclose(np.asarray(target), expect, rtol=1e-5, atol=1e-6)
  assert not np.allclose(logits_1[0, ~expect_commit], logits_2[0, ~expect_commit])


def _distill_task():
  config = distill.get_config("tiny,text")
  config.train.batch_size = 8
  return self_distill.SelfDistillTask(config)


def test_only_the_student_learns_and_the_objective_is_learnable():
  """On one fixed batch the student's reverse KL to the (frozen) teacher falls, and the
  teacher receives no gradient."""
  task = _distill_task()
  assert task.trainable == ("student",)
  batch = next(iter(task.dataset("train", 8, seed=0)))
  params = jax.jit(lambda r: nn.unbox(task.init_params(r)))(jax.random.key(0))
  loss_fn = lambda p: task.loss(freeze(p, task.trainable), batch, jax.random.key(1))  # noqa
  opt = optax.adam(3e-3)

  @jax.jit
  def step(p, s):
    (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(p)
    updates, s = opt.update(grads, s, p)
    return optax.apply_updates(p, updates), s, loss, grads

  state = opt.init(params)
  losses = []
  for i in range(40):
    params, state, loss, grads = step(params, state)
    losses.append(float(loss))
    if i == 0:
      teacher_grads = jax.tree_util.tree_leaves(grads["teacher"])
      student_grads = jax.tree_util.tree_leaves(grads["student"])
      assert all(float(jnp.max(jnp.abs(g))) == 0.0 for g in teacher_grads)
      assert max(float(jnp.max(jnp.abs(g))) for g in student_grads) > 0.0
  assert np.isfinite(losses).all() and losses[0] > 0.0
  assert np.mean(losses[-5:]) < 0.5 * losses[0], losses


def test_distill_task_wraps_the_base_task():
  task = _distill_task()
  assert isinstance(task.base, tasks.TextLMTask)
  assert task.model is task.base.model and task.tokenizer is task.base.tokenizer
  # answering (decode, evaluate) uses the student: the params under "student"
  assert build(task.config).params_scope == ("student",)
  assert build(task.config).module == task.model


def test_base_task_must_be_a_decoder():
  config = tiny_config()
  config.task = "self_distill"
  config.distill = dict(base_task="not_a_task", rounds=(4,), teacher_steps=4,
                        states="uniform", init_from_round=False, eval_examples=8)
  try:
    self_distill.SelfDistillTask(config)
  except ValueError as e:
    assert "not_a_task" in str(e)
  else:
    raise AssertionError("an unknown base task must be refused")


@pytest.mark.parametrize("stage,trained", [(1, {"adaptor", "thinker"}), (2, {"talker"})])
def test_speech_models_distill_with_their_own_frozen_parts(stage, trained, prepared_corpus):
  """The speech Thinker (stage 1) and the Talker (stage 2, 15-unit chunks) distill through
  the same task; only the student's parts that the base stage trains get gradients."""
  config = distill.get_config(f"tiny,stage={stage}")
  config.data.dir = prepared_corpus
  config.data.mel_buckets = (800,)
  config.encoder.trainable = False
  task = self_distill.SelfDistillTask(config)
  assert set(task.trainable) == {f"student/{t}" for t in trained}
  assert config.distill.rounds == ((8, 4, 2) if stage == 2 else (4, 2))
  batch = next(iter(task.dataset("train", 4, seed=0)))
  params = jax.jit(lambda r: nn.unbox(task.init_params(r)))(jax.random.key(0))
  grad_fn = jax.jit(jax.grad(lambda p: task.loss(freeze(p, task.trainable), batch,
                                                 jax.random.key(1))[0]))
  grads = grad_fn(params)
  for part, tree in grads["student"].items():
    largest = max(float(jnp.max(jnp.abs(g))) for g in jax.tree_util.tree_leaves(tree))
    assert (largest > 0) == (part in trained), part
  assert all(float(jnp.max(jnp.abs(g))) == 0 for g in jax.tree_util.tree_leaves(grads["teacher"]))


def test_frozen_parts_are_named_as_the_students_and_checked_by_the_base(prepared_corpus):
  """train.frozen names the distilled task's parts (student/thinker/...): the base task
  (here the typed Thinker, which trains `thinker`) accepts them as its own, and a part it
  does not train is still refused."""
  config = distill.get_config("tiny,stage=0")
  config.data.dir = prepared_corpus
  config.train.frozen = "student/thinker/embed_tokens,student/thinker/layers_0"
  task = tasks.build_task(config)
  assert task.frozen == ("student/thinker/embed_tokens", "student/thinker/layers_0")
  assert task.base.frozen == ("thinker/embed_tokens", "thinker/layers_0")
  config.train.frozen = "student/talker"
  with pytest.raises(ValueError, match="talker"):
    tasks.build_task(config)
