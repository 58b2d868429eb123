import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vocalnet_jax.decoding import step_rules
from vocalnet_jax.diffusion import losses, masking
from vocalnet_jax.diffusion.schedule import get_schedule

BLOCK, STEPS = 4, 4


def _valid(lengths, total=16):
  resp = jnp.arange(total)[None, :] < jnp.asarray(lengths)[:, None]
  return resp, masking.block_valid(resp, BLOCK)


def test_block_valid_and_tail_fill():
  resp, valid = _valid([1, 5, 16])
  np.testing.assert_array_equal(valid.sum(1), [4, 8, 16])
  filled = masking.fill_block_tail(jnp.zeros((3, 16), jnp.int32), resp, valid, eos_id=9)
  np.testing.assert_array_equal(filled[1], [0] * 5 + [9] * 3 + [0] * 8)


def _draws(strategy, layout, schedule="linear", n_draws=64, batch=64, block=BLOCK, total=16,
           steps=STEPS, seed=0, complementary=False):
  """Corruptions of `n_draws` independent draws over one batch of random lengths."""
  lengths = np.random.default_rng(seed).integers(1, total + 1, size=batch)
  resp = jnp.arange(total)[None, :] < jnp.asarray(lengths)[:, None]
  valid = masking.block_valid(resp, block)
  draw = jax.jit(jax.vmap(lambda r: masking.sample_corruption(
      r, valid, block_size=block, schedule=get_schedule(schedule), strategy=strategy,
      hierarchical_prob=0.5, num_steps=steps, layout=layout, complementary=complementary)))
  return valid, draw(jax.random.split(jax.random.key(seed), n_draws))


def _loss_at_unit_cross_entropy(c, valid):
  """The real `mdm_loss` on logits whose cross-entropy is exactly 1 at every position."""
  a = -1.0 - np.log1p(-np.exp(-1.0))  # p(target) = e^a / (e^a + 1) = e^-1
  logits = jnp.broadcast_to(jnp.array([a, 0.0], jnp.float32), valid.shape + (2,))
  targets = jnp.zeros(valid.shape, jnp.int32)
  return jax.vmap(lambda s, w: losses.mdm_loss(logits, targets, s, w, valid))(c.scored, c.weight)


@pytest.mark.parametrize("strategy,schedule,layout", [
    (strategy, schedule, layout)
    for strategy, schedule in [("uniform", "linear"), ("uniform", "cosine"),
                               ("hierarchical", "linear"), ("mixed", "cosine")]
    for layout in masking.LAYOUTS if masking.masking_fits_layout(strategy, layout)])
@pytest.mark.parametrize("block,steps", [(4, 4), (15, 4)])
def test_loss_is_unbiased_at_unit_cross_entropy(strategy, schedule, layout, block, steps):
  """Every corruption keeps the unit-weight normalisation (not the same ELBO: hierarchical
  states are a reweighted subset of its terms unless S = B): with cross-entropy fixed at 1
  the loss averages 1.0 per valid token (the forced-target bug gave 2.3 / 1.24, the dropped
  early blocks 0.67)."""
  valid, c = _draws(strategy, layout, schedule, n_draws=128, batch=32, block=block,
                    total=4 * block, steps=steps)
  assert not np.any(np.asarray(c.scored & ~valid[None]))  # never scores padding
  assert not np.any(np.asarray(c.scored & ~c.corrupted))  # scores only what it masked
  np.testing.assert_allclose(float(jnp.mean(_loss_at_unit_cross_entropy(c, valid))), 1.0,
                             rtol=0.02)


def _block_scored(c, valid, block=BLOCK):
  """Per (draw, example, block): scored at all, and whether the block holds tokens."""
  n = valid.shape[0]
  scored = np.asarray(c.scored).reshape(c.scored.shape[0], n, -1, block).any(-1)
  return scored, np.asarray(valid).reshape(n, -1, block).any(-1)


@pytest.mark.parametrize("strategy", masking.STRATEGIES)
def test_scoring_context_predicted_first_tokens_keeps_the_loss_unbiased(strategy):
  """Shifted two_stream: every block's first token scored with weight 1 on every draw
  (its prediction never depends on the draw) still averages 1.0; under uniform masking
  (whose unit-CE loss varies with the draw) it also spreads less."""
  valid, c = _draws(strategy, "two_stream", n_draws=128, batch=32, total=16)
  rb = jax.vmap(lambda x: masking.score_context_predicted(x, valid, BLOCK))(c)
  first = np.asarray(valid) & (np.arange(16) % BLOCK == 0)
  assert np.asarray(rb.scored)[:, first].all()
  np.testing.assert_array_equal(rb.corrupted, c.corrupted)
  plain, blackwell = (_loss_at_unit_cross_entropy(x, valid) for x in (c, rb))
  np.testing.assert_allclose(float(jnp.mean(blackwell)), 1.0, rtol=0.02)
  if strategy == "uniform":
    assert float(jnp.std(blackwell)) < float(jnp.std(plain))


@pytest.mark.parametrize("strategy", masking.STRATEGIES)
def test_complementary_pair_masks_every_valid_position_exactly_once(strategy):
  """The pair's rows are the draw itself, then its complement: summed, their masks are
  `valid` exactly (each answer token a target once per pair, never padding), and every
  masked position is scored."""
  valid, plain = _draws(strategy, "two_stream", batch=32)
  _, pair = _draws(strategy, "two_stream", batch=32, complementary=True)
  first, second = (np.asarray(pair.corrupted)[:, i * 32:(i + 1) * 32] for i in (0, 1))
  np.testing.assert_array_equal(first, plain.corrupted)
  np.testing.assert_array_equal(first.astype(int) + second, np.broadcast_to(valid, first.shape))
  np.testing.assert_array_equal(pair.scored, pair.corrupted)


@pytest.mark.parametrize("strategy", masking.STRATEGIES)
def test_complementary_loss_is_one_on_every_draw_at_unit_cross_entropy(strategy):
  """With the pair's valid tokens as the denominator a unit cross-entropy gives exactly 1.0
  on every draw, not only on average; also with the first tokens scored on both rows."""
  valid, pair = _draws(strategy, "two_stream", n_draws=32, batch=16, complementary=True)
  valid2 = jnp.tile(valid, (2, 1))
  rb = jax.vmap(lambda x: masking.score_context_predicted(x, valid2, BLOCK))(pair)
  for c in (pair, rb):
    np.testing.assert_allclose(np.asarray(_loss_at_unit_cross_entropy(c, valid2)), 1.0,
                               rtol=1e-6)


def test_complementary_states_are_sampler_states_when_every_count_is():
  """At S = B every masked count 0..n is a state of the top-k sampler (or a finished
  block), so the complement of a hierarchical state is one too: both rows train on
  states the decoder meets."""
  valid, pair = _draws("hierarchical", "two_stream", batch=32, complementary=True)
  n = np.asarray(valid).reshape(32, -1, BLOCK).sum(-1)  # [batch, nb]
  counts = np.asarray(pair.corrupted).reshape(pair.corrupted.shape[0], 2, 32, -1, BLOCK).sum(-1)
  for value in range(BLOCK + 1):
    states = set(np.asarray(masking.topk_remaining(jnp.int32(value), STEPS)).tolist()) | {0}
    assert set(np.unique(counts[:, :, n == value]).tolist()) <= states
  assert set(np.unique(counts[:, 1, n == BLOCK]).tolist()) == {0, 1, 2, 3}


def test_complementary_masks_refuse_single_stream():
  _, valid = _valid([5])
  with pytest.raises(ValueError, match="complementary_masks needs layout='two_stream'"):
    masking.sample_corruption(jax.random.key(0), valid, block_size=BLOCK,
                              schedule=get_schedule("linear"), strategy="hierarchical",
                              hierarchical_prob=0.5, num_steps=STEPS, layout="single_stream",
                              complementary=True)


def test_two_stream_hierarchical_scores_every_valid_block():
  valid, c = _draws("hierarchical", "two_stream")
  scored, has = _block_scored(c, valid)
  assert scored[:, has].all() and not scored[:, ~has].any()


def test_single_stream_hierarchical_scores_one_block_uniformly():
  """Clean blocks, the current block at a sampler state (scored), then fully masked
  blocks (unscored); block j of an n-block answer is current with rate 1/n."""
  valid, c = _draws("hierarchical", "single_stream", n_draws=400)
  scored, has = _block_scored(c, valid)
  n_blocks = has.sum(-1)  # [batch]
  assert (scored.sum(-1) == 1).all()
  rate = scored.mean(0)  # [batch, nb]
  expect = np.where(has, 1.0 / n_blocks[:, None], 0.0)
  np.testing.assert_allclose(rate.mean(0)[:2], expect.mean(0)[:2], atol=0.03)
  corrupted = np.asarray(c.corrupted).reshape(400, valid.shape[0], -1, BLOCK)
  vb = np.asarray(valid).reshape(valid.shape[0], -1, BLOCK)
  current = scored.argmax(-1)  # [draws, batch]
  nb = vb.shape[1]
  before = np.arange(nb)[None, None, :] < current[..., None]
  after = np.arange(nb)[None, None, :] > current[..., None]
  assert not corrupted.any(-1)[before].any()  # the decoder's clean context
  full = corrupted.sum(-1) == vb.sum(-1)[None]
  assert full[after].all()  # the unknown future


def test_uniform_never_forces_a_target():
  """A block whose draw masked nothing stays unscored: at block size 4 and the linear
  schedule that happens with probability E[(1 - t)^4] = 1/5."""
  valid, c = _draws("uniform", "two_stream", n_draws=256, total=16, seed=1)
  scored, has = _block_scored(c, valid)
  np.testing.assert_allclose(1.0 - scored[:, has].mean(), 0.2, atol=0.01)
  weight = np.asarray(c.weight).reshape(256, valid.shape[0], -1, BLOCK)
  in_loss = np.asarray(c.scored).reshape(weight.shape)
  assert ((weight == weight.max(-1, keepdims=True)) | ~in_loss).all()  # one t per block


def test_training_states_are_the_sampler_states_for_every_block_size():
  """For all S <= n <= 32: the masked counts the real top-k rule leaves before each step
  equal `topk_remaining(n, S)`, and the hierarchical training states visit exactly them."""
  pairs = [(n, s) for s in range(1, 33) for n in range(s, 33)]
  n_arr = jnp.array([n for n, _ in pairs])
  s_arr = jnp.array([s for _, s in pairs])

  @jax.jit
  def sampler_counts(logits):
    is_masked = jnp.arange(32)[None, :] < n_arr[:, None]  # [pairs, 32]
    def step(is_masked, k):
      _, commit = step_rules.confidence_topk(logits, is_masked, k, s_arr, jax.random.key(0))
      return jnp.where((k < s_arr)[:, None], is_masked & ~commit, is_masked), is_masked.sum(-1)
    left, seen = jax.lax.scan(step, is_masked, jnp.arange(32))
    return left, seen.T  # [pairs, 32]

  left, seen = sampler_counts(jax.random.normal(jax.random.key(0), (len(pairs), 32, 11)))
  assert not bool(jnp.any(left))  # every block is clean after its S steps
  seen = np.asarray(seen)
  for steps in range(1, 33):
    rows = [i for i, (_, s) in enumerate(pairs) if s == steps]
    expect = np.asarray(masking.topk_remaining(n_arr[np.array(rows)], steps))  # [rows, S]
    np.testing.assert_array_equal(seen[rows, :steps], expect)
  for n, steps in [(15, 4), (13, 13), (16, 4), (32, 5), (7, 3)]:
    valid = jnp.arange(32)[None, :] < jnp.full((256, 1), n)
    c = masking.hierarchical_block_corruption(jax.random.key(n), valid, 32, steps)
    counts = set(np.asarray(c.corrupted.sum(-1)).tolist())
    assert counts == set(np.asarray(masking.topk_remaining(jnp.int32(n), steps)).tolist())


@pytest.mark.parametrize("prob", [0.0, 1.0])
def test_mixed_strategy_extremes(prob):
  """prob 1: every block is a 4-step sampler state (B = S = 4: 4, 3, 2 or 1 masked, weight
  4 / masked, as counted here); prob 0: uniform's continuous t (linear: weight 1 / t, so
  weights off that grid, and blocks that mask nothing)."""
  _, valid = _valid(np.full(64, 16))
  mixed = jax.jit(lambda r, v: masking.sample_corruption(
      r, v, block_size=BLOCK, schedule=get_schedule("linear"), num_steps=STEPS,
      strategy="mixed", hierarchical_prob=prob))(jax.random.key(5), valid)
  masked = np.asarray(mixed.corrupted).reshape(64, -1, BLOCK).sum(-1)  # [batch, blocks]
  weight = np.asarray(mixed.weight).reshape(64, -1, BLOCK).max(-1)  # the block's weight
  on_grid = np.isclose(weight[masked > 0], BLOCK / masked[masked > 0])
  if prob == 1.0:
    assert set(np.unique(masked)) == {1, 2, 3, 4} and on_grid.all()
  else:
    assert (masked == 0).any() and on_grid.mean() < 0.5


@pytest.mark.parametrize("strategy", ["uniform", "mixed"])
def test_single_stream_refuses_uniform_states(strategy):
  """single_stream scores a uniform block on its noisy earlier blocks, a context the
  decoder never gives it: refused (validate_config names the field first)."""
  _, valid = _valid([16])
  with pytest.raises(ValueError, match=f"diffusion.masking='{strategy}' needs layout"):
    masking.sample_corruption(jax.random.key(0), valid, block_size=BLOCK,
                              schedule=get_schedule("linear"), strategy=strategy,
                              hierarchical_prob=0.5, num_steps=STEPS, layout="single_stream")


def test_unknown_strategy_names_field():
  _, valid = _valid([4])
  with pytest.raises(ValueError, match="diffusion.masking"):
    masking.sample_corruption(jax.random.key(0), valid, block_size=BLOCK,
                              schedule=get_schedule("linear"), strategy="random",
                              hierarchical_prob=0.5, num_steps=STEPS)


def test_sampler_states_mask_the_sampler_counts_in_valid_positions():
  block, steps = 8, 4
  lengths = jnp.array([20, 8, 3, 32])
  valid = jnp.arange(32)[None, :] < lengths[:, None]  # [4, 32]
  valid = masking.block_valid(valid, block)
  state = masking.sampler_state_corruption(jax.random.key(0), valid, block, steps)
  assert state.step.shape == (4, 4) and bool(jnp.all((state.step >= 0) & (state.step < steps)))
  assert not bool(jnp.any(state.corrupted & ~valid))
  counts = jnp.sum(state.corrupted.reshape(4, 4, block), -1)  # [4, nb]
  n_valid = jnp.sum(valid.reshape(4, 4, block), -1)
  expect = jnp.take_along_axis(masking.topk_remaining(n_valid, steps), state.step[..., None],
                               -1)[..., 0]
  np.testing.assert_array_equal(counts, expect)
  # Over many draws every step of the sampler is visited.
  many = masking.sampler_state_corruption(jax.random.key(1), jnp.ones((64, 32), bool), block,
                                          steps)
  assert set(np.unique(np.asarray(many.step)).tolist()) == set(range(steps))


def test_sampler_states_mask_the_least_confident_first():
  valid = jnp.ones((2, 8), bool)
  confidence = jax.random.uniform(jax.random.key(3), (2, 8))
  state = masking.sampler_state_corruption(jax.random.key(4), valid, 4, 4, confidence)
  for row in range(2):
    for blk in range(2):
      conf = np.asarray(confidence[row, 4 * blk:4 * blk + 4])
      masked = np.asarray(state.corrupted[row, 4 * blk:4 * blk + 4])
      if 0 < masked.sum() < 4:
        assert conf[masked].max() < conf[~masked].min()


@pytest.mark.parametrize("layout", ["two_stream", "single_stream"])
def test_left_to_right_states_are_the_states_its_sampler_visits(layout):
  """The left_to_right rule, run from all [MASK] with random logits, visits exactly the
  blocks that commit_order='left_to_right' training draws: the last m positions masked for
  each of the sampler's counts m, and no other state."""
  block, steps = 16, 4
  rule = step_rules.get_rule("left_to_right")
  logits = jax.random.normal(jax.random.key(0), (8, block, 11))
  is_masked, visited = jnp.ones((8, block), bool), set()
  for k in range(steps):
    visited |= {tuple(row) for row in np.asarray(is_masked).tolist()}
    _, commit = rule(logits, is_masked, jnp.int32(k), steps, jax.random.key(k))
    is_masked = is_masked & ~commit
  assert not bool(jnp.any(is_masked))
  valid = jnp.ones((256, 2 * block), bool)
  c = masking.hierarchical_block_corruption(jax.random.key(1), valid, block, steps, layout,
                                            commit_order="left_to_right")
  blocks = np.asarray(c.corrupted).reshape(-1, block)
  drawn = {tuple(row) for row in blocks[blocks.any(-1)].tolist()}  # the scored states
  assert drawn == visited


def test_unknown_commit_order_names_field():
  _, valid = _valid([4])
  with pytest.raises(ValueError, match="diffusion.commit_order"):
    masking.sample_corruption(jax.random.key(0), valid, block_size=BLOCK,
                              schedule=get_schedule("linear"), strategy="hierarchical",
                              hierarchical_prob=0.5, num_steps=STEPS, commit_order="random")


@pytest.mark.parametrize("layout", ["two_stream", "single_stream"])
@pytest.mark.parametrize("block,steps", [(16, 4), (8, 3)])
def test_committed_scoring_scores_what_the_left_to_right_sampler_commits(layout, block, steps):
  """scored_tokens='committed': from every drawn state, one step of the left_to_right rule
  commits exactly the scored positions (8 tokens over 3 steps commit 3, 3, 2), and at unit
  cross-entropy every draw's loss is exactly 1 per valid token."""
  valid = jnp.ones((64, 2 * block), bool)
  c = masking.hierarchical_block_corruption(jax.random.key(2), valid, block, steps, layout,
                                            commit_order="left_to_right",
                                            scored_tokens="committed")
  masked = np.asarray(c.corrupted).reshape(-1, block)
  scored = np.asarray(c.scored).reshape(-1, block)
  rows = scored.any(-1)
  assert rows.sum() >= 32
  remaining = np.asarray(masking.topk_remaining(jnp.int32(block), steps)).tolist()
  rule = step_rules.get_rule("left_to_right")
  logits = jax.random.normal(jax.random.key(3), (1, block, 11))
  for m, s in zip(masked[rows], scored[rows]):
    k = remaining.index(int(m.sum()))
    _, commit = rule(logits, jnp.asarray(m)[None], jnp.int32(k), steps, jax.random.key(k))
    np.testing.assert_array_equal(np.asarray(commit[0]), s)
  np.testing.assert_allclose(np.asarray(_loss_at_unit_cross_entropy(
      jax.tree.map(lambda x: x[None], c), valid)), 1.0, rtol=1e-5)


def test_committed_scoring_needs_left_to_right():
  with pytest.raises(ValueError, match="diffusion.scored_tokens"):
    masking.hierarchical_block_corruption(jax.random.key(0), jnp.ones((1, 8), bool), 4, 2,
                                          scored_tokens="committed")


def test_first_token_weight_adds_its_share_of_blocks_at_unit_cross_entropy():
  """first_token_weight w: at unit cross-entropy the loss's expectation is 1 + (w - 1) x
  (valid blocks / valid tokens), since each valid block's first token weighs w instead of
  the ELBO's 1; w = 1 is the unbiased estimator."""
  valid, c = _draws("hierarchical", "two_stream", n_draws=64, batch=32, total=16)
  blocks = np.asarray(valid).reshape(valid.shape[0], -1, BLOCK).any(-1).sum()
  share = blocks / np.asarray(valid).sum()
  for w in (1.0, 4.0):
    rb = jax.vmap(lambda x: masking.score_context_predicted(x, valid, BLOCK, w))(c)  # noqa: B023
    np.testing.assert_allclose(float(jnp.mean(_loss_at_unit_cross_entropy(rb, valid))),
                               1.0 + (w - 1.0) * share, rtol=0.02)
