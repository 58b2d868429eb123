import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vocalnet_jax.decoding import step_rules
from vocalnet_jax.diffusion import masking
from vocalnet_jax.diffusion.schedule import get_schedule

BLOCK, STEPS = 4, 4
HIER = jax.jit(masking.hierarchical_block_corruption, static_argnums=(2, 3, 4))
UNIFORM = jax.jit(masking.uniform_block_corruption, static_argnums=(2, 3))


def _valid(lengths, total=16):
  resp = jnp.arange(total)[None, :] < jnp.asarray(lengths)[:, None]
  return resp, masking.block_valid(resp, BLOCK)


def test_block_valid_and_tail_fill():
  resp, valid = _valid([1, 5, 16])
  np.testing.assert_array_equal(valid.sum(1), [4, 8, 16])
  filled = masking.fill_block_tail(jnp.zeros((3, 16), jnp.int32), resp, valid, eos_id=9)
  np.testing.assert_array_equal(filled[1], [0] * 5 + [9] * 3 + [0] * 8)


def test_hierarchical_states_are_decoding_like():
  """Over many draws: clean blocks, then one block at ratio k/S, then fully masked."""
  lengths = np.random.default_rng(0).integers(1, 17, size=64)
  _, valid = _valid(lengths)
  grid = {k / STEPS for k in range(1, STEPS + 1)}
  for seed in range(20):
    c = HIER(jax.random.key(seed), valid, BLOCK, STEPS,
                                              get_schedule("linear"))
    corrupted, vb = np.asarray(c.corrupted).reshape(64, -1, BLOCK), np.asarray(valid).reshape(
        64, -1, BLOCK)
    assert not (corrupted & ~vb).any()  # never corrupts padding
    for b in range(64):
      n_blocks = int(vb[b].any(-1).sum())
      counts, sizes = corrupted[b].sum(-1)[:n_blocks], vb[b].sum(-1)[:n_blocks]
      first = int(np.argmax(counts > 0))
      assert counts.sum() > 0  # every example has a target
      assert (counts[:first] == 0).all()  # earlier blocks clean
      ratio = counts[first] / sizes[first]
      assert any(np.isclose(ratio, np.ceil(g * sizes[first]) / sizes[first]) for g in grid)
      assert (counts[first + 1:] == sizes[first + 1:]).all()  # later blocks fully masked


def test_uniform_masking_has_a_target_in_every_valid_block():
  _, valid = _valid(np.full(32, 16))
  for seed in range(10):
    c = UNIFORM(jax.random.key(seed), valid, BLOCK,
                                         get_schedule("cosine"))
    per_block = np.asarray(c.corrupted).reshape(32, -1, BLOCK).sum(-1)
    assert (per_block >= 1).all()
    weight = np.asarray(c.weight).reshape(32, -1, BLOCK)
    assert (weight == weight[..., :1]).all()  # one noise level per block


def test_uniform_mask_rate_follows_schedule():
  _, valid = _valid(np.full(512, 16))
  c = UNIFORM(jax.random.key(0), valid, BLOCK, get_schedule("linear"))
  # antithetic t ~ U(0,1] per block: mean mask rate ~ 1/2 (plus the at-least-one fix-up)
  assert 0.45 < float(c.corrupted.mean()) < 0.6


@pytest.mark.parametrize("prob,expect_hier", [(0.0, False), (1.0, True)])
def test_mixed_strategy_extremes(prob, expect_hier):
  _, valid = _valid(np.full(16, 16))
  kw = dict(block_size=BLOCK, schedule=get_schedule("linear"), num_steps=STEPS)
  rng = jax.random.key(5)
  mixed = jax.jit(lambda r, v: masking.sample_corruption(
      r, v, strategy="mixed", hierarchical_prob=prob, **kw))(rng, valid)
  rng_u, rng_h, _ = jax.random.split(rng, 3)
  ref = (HIER(rng_h, valid, BLOCK, STEPS, kw["schedule"])
         if expect_hier else UNIFORM(rng_u, valid, BLOCK, kw["schedule"]))
  np.testing.assert_array_equal(mixed.corrupted, ref.corrupted)


def test_unknown_strategy_names_field():
  _, valid = _valid([4])
  with pytest.raises(ValueError, match="diffusion.masking"):
    masking.sample_corruption(jax.random.key(0), valid, block_size=BLOCK,
                              schedule=get_schedule("linear"), strategy="random",
                              hierarchical_prob=0.5, num_steps=STEPS)


@pytest.mark.parametrize("n,steps", [(16, 4), (16, 16), (15, 4), (7, 3), (4, 1)])
def test_topk_remaining_matches_the_sampler(n, steps):
  """Masked counts before each step equal what the top-k rule actually leaves."""
  logits = jax.random.normal(jax.random.key(n + steps), (1, n, 11))
  is_masked = jnp.ones((1, n), bool)
  seen = []
  for step in range(steps):
    seen.append(int(jnp.sum(is_masked)))
    _, commit = step_rules.confidence_topk(logits, is_masked, jnp.int32(step), steps,
                                           jax.random.key(step))
    is_masked &= ~commit
  assert not bool(jnp.any(is_masked))
  assert masking.topk_remaining(jnp.int32(n), steps).tolist() == seen


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
