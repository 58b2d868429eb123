import jax.numpy as jnp
import numpy as np

from vocalnet_jax.diffusion import attention_masks as am

# Hand-drawn [x_t ; x_0] mask for L=6, B=2 (rows = queries, cols = keys).
#            x_t: 0 1 2 3 4 5   x_0: 0 1 2 3 4 5
BD3_L6_B2 = np.array([
    [1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    [1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    [0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 0, 0],
    [0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 0, 0],
    [0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0],
    [0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0],
    [0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0],
    [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0],
    [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1],
    [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1],
], bool)


def test_bd3_mask_matches_hand_drawn():
  np.testing.assert_array_equal(am.bd3_mask(6, 2), BD3_L6_B2)


def test_block_causal_mask():
  expected = np.array([[1, 1, 0, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 1, 0], [1, 1, 1, 1, 0],
                       [1, 1, 1, 1, 1]], bool)
  np.testing.assert_array_equal(am.block_causal_mask(5, 2), expected)


def test_with_prefix_and_positions():
  prefix_valid = jnp.array([[False, True, True]])
  body_valid = jnp.array([[True, True, False]])
  m = np.asarray(am.with_prefix(am.causal_mask(3), prefix_valid, body_valid))[0]
  assert not m[:, 0].any()  # padded prefix key is never visible
  assert m[3, 1] and m[3, 2] and not m[1, 3]  # body sees prefix, prefix never sees body
  assert not m[:, 5].any()  # invalid body key
  pos = am.prefix_positions(prefix_valid, 2, repeats=2)
  np.testing.assert_array_equal(pos, [[0, 0, 1, 2, 3, 2, 3]])  # x_0 reuses x_t positions
