"""Commit rules: counts per step, thresholds, schedule probabilities; sampling filters."""
import functools

import jax
import ml_collections
import jax.numpy as jnp
import numpy as np
import pytest

from vocalnet_jax.decoding import sampling, step_rules


@functools.partial(jax.jit, static_argnames=("rule", "num_steps"))
def _run_block(logits, rng, rule, num_steps):
  """Applies `rule` for num_steps steps from all-masked; returns commits per step [S, b, B]."""
  def body(is_masked, xs):
    step, key = xs
    _, commit = rule(logits, is_masked, step, num_steps, key)
    return is_masked & ~commit, commit & is_masked
  masked = jnp.ones(logits.shape[:2], bool)
  final, commits = jax.lax.scan(body, masked, (jnp.arange(num_steps),
                                                jax.random.split(rng, num_steps)))
  return final, commits


def _logits(b=3, block=8, vocab=11, seed=0):
  return jax.random.normal(jax.random.key(seed), (b, block, vocab)) * 3


@pytest.mark.parametrize("steps", [8, 2])
def test_topk_commits_even_share_and_one_per_step_when_s_equals_b(steps):
  logits = _logits()
  final, commits = _run_block(logits, jax.random.key(1), step_rules.get_rule("topk"), steps)
  counts = np.asarray(commits.sum(-1))  # [S, b]
  np.testing.assert_array_equal(counts, 8 // steps)  # S = B: exactly one per step
  assert not np.any(final)
  assert np.all(np.asarray(commits.sum(0)) == 1)  # each position committed exactly once


def test_topk_commits_most_confident_first():
  logits = _logits()
  tokens, commit = step_rules.get_rule("topk")(logits, jnp.ones((3, 8), bool), 0, 4,
                                               jax.random.key(0))
  conf = np.asarray(jax.nn.softmax(logits).max(-1))
  np.testing.assert_array_equal(tokens, np.asarray(logits).argmax(-1))
  for row in range(3):
    assert set(np.flatnonzero(commit[row])) == set(np.argsort(-conf[row])[:2])


def test_left_to_right_commits_the_leftmost_share_whatever_the_confidence():
  final, commits = _run_block(_logits(), jax.random.key(1), step_rules.get_rule("left_to_right"),
                              4)
  assert not np.any(final)
  for k in range(4):  # step k commits positions 2k and 2k + 1 of every row
    np.testing.assert_array_equal(np.flatnonzero(commits[k, 0]), [2 * k, 2 * k + 1])
    np.testing.assert_array_equal(commits[k], np.broadcast_to(commits[k, 0], (3, 8)))


def test_threshold_commits_above_tau_and_at_least_one():
  logits = _logits()
  rule = step_rules.get_rule("threshold", threshold=0.999)
  masked = jnp.ones((3, 8), bool).at[:, 0].set(False)
  _, commit = rule(logits, masked, 0, 8, jax.random.key(0))
  assert np.all(np.asarray(commit.sum(-1)) >= 1) and not np.any(commit[:, 0])
  _, commit = step_rules.get_rule("threshold", threshold=0.0)(logits, masked, 0, 8,
                                                              jax.random.key(0))
  np.testing.assert_array_equal(commit, masked)  # tau = 0: everything at once
  _, commit = rule(logits, masked, 7, 8, jax.random.key(0))
  np.testing.assert_array_equal(commit, masked)  # last allowed step: all remaining


@pytest.mark.parametrize("steps", [8, 4, 2])
def test_threshold_commits_at_least_the_topk_share(steps):
  """Nothing confident: exactly topk's commits (at most S forwards, no last-step dump);
  everything confident: the whole block in one step."""
  logits = _logits()
  unsure = step_rules.get_rule("threshold", threshold=1.0)
  _, commits = _run_block(logits, jax.random.key(1), unsure, steps)
  _, topk = _run_block(logits, jax.random.key(1), step_rules.get_rule("topk"), steps)
  np.testing.assert_array_equal(commits, topk)
  _, commits = _run_block(logits, jax.random.key(1),
                          step_rules.get_rule("threshold", threshold=0.0), steps)
  assert np.all(np.asarray(commits[0])) and not np.any(np.asarray(commits[1:]))


def test_ancestral_unmask_probability_follows_schedule():
  logits = _logits(b=512, block=16)
  final, commits = _run_block(logits, jax.random.key(3), step_rules.get_rule("ancestral"), 4)
  frac = np.asarray(commits.mean((1, 2)))  # linear: 1/4 of all tokens per step in expectation
  np.testing.assert_allclose(frac, 0.25, atol=0.02)
  assert not np.any(final)


def test_sampling_filters():
  logits = _logits()
  greedy = np.asarray(logits).argmax(-1)
  np.testing.assert_array_equal(sampling.sample(logits, jax.random.key(0), 1.0, top_k=1), greedy)
  np.testing.assert_array_equal(sampling.sample(logits, jax.random.key(0), 1.0, top_p=1e-6),
                                greedy)
  kept = np.isfinite(np.asarray(sampling.filter_logits(logits, top_k=3))).sum(-1)
  np.testing.assert_array_equal(kept, 3)
  probs = np.sort(np.asarray(jax.nn.softmax(logits)), -1)[..., ::-1]
  nucleus = np.isfinite(np.asarray(sampling.filter_logits(logits, top_p=0.9))).sum(-1)
  np.testing.assert_array_equal(nucleus, (np.cumsum(probs, -1) - probs < 0.9).sum(-1))


def test_default_rule_is_the_one_the_model_trained_for():
  assert step_rules.default_rule(ml_collections.ConfigDict(
      dict(commit_order="left_to_right"))) == "left_to_right"
  assert step_rules.default_rule(ml_collections.ConfigDict(
      dict(commit_order="confidence"))) == "topk"
  assert step_rules.default_rule(ml_collections.ConfigDict()) == "topk"  # saved before the knob
