import jax
import jax.numpy as jnp
import numpy as np

from vocalnet_jax.diffusion import losses


def _reference_mdm(logits, targets, scored, valid, weight):
  total = 0.0
  for b in range(logits.shape[0]):
    for i in range(logits.shape[1]):
      if scored[b, i]:
        z = logits[b, i] - logits[b, i].max()
        log_p = z - np.log(np.exp(z).sum())
        total += weight[b, i] * -log_p[targets[b, i]]
  return total / valid.sum()


def test_mdm_loss_matches_direct_computation():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(2, 5, 7)).astype(np.float32)
  targets = rng.integers(0, 7, size=(2, 5))
  valid = np.array([[1, 1, 1, 1, 0], [1, 1, 1, 0, 0]], bool)
  scored = (rng.random((2, 5)) < 0.5) & valid
  weight = rng.uniform(1, 4, size=(2, 5)).astype(np.float32)
  got = losses.mdm_loss(jnp.asarray(logits), jnp.asarray(targets), jnp.asarray(scored),
                        jnp.asarray(weight), jnp.asarray(valid))
  np.testing.assert_allclose(got, _reference_mdm(logits, targets, scored, valid, weight),
                             rtol=1e-5)


def test_ar_loss_is_mean_ce_over_mask():
  logits = jnp.log(jnp.array([[[0.5, 0.5], [0.9, 0.1]]]))
  got = losses.ar_loss(logits, jnp.array([[0, 1]]), jnp.array([[True, False]]))
  np.testing.assert_allclose(got, np.log(2), rtol=1e-6)


def test_reverse_kl_zero_iff_equal_and_asymmetric():
  a = jax.random.normal(jax.random.key(0), (1, 3, 5))
  b = jax.random.normal(jax.random.key(1), (1, 3, 5))
  mask = jnp.ones((1, 3), bool)
  np.testing.assert_allclose(losses.reverse_kl(a, a, mask), 0.0, atol=1e-6)
  assert losses.reverse_kl(a, b, mask) > 0
  assert not np.isclose(losses.reverse_kl(a, b, mask), losses.reverse_kl(b, a, mask))
