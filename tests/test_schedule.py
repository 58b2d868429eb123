import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vocalnet_jax.diffusion.schedule import antithetic_times, get_schedule

NAMES = ["linear", "cosine", "poly2", "poly3"]


@pytest.mark.parametrize("name", NAMES)
def test_endpoints_and_monotone(name):
  s = get_schedule(name)
  t = jnp.linspace(0.0, 1.0, 101)
  alpha = s.alpha(t)
  np.testing.assert_allclose(alpha[0], 1.0, atol=1e-6)  # t=0 clean
  np.testing.assert_allclose(alpha[-1], 0.0, atol=1e-6)  # t=1 fully masked
  assert np.all(np.diff(np.asarray(alpha)) <= 1e-7)


@pytest.mark.parametrize("name", NAMES)
def test_derivative_matches_autodiff(name):
  s = get_schedule(name)
  t = jnp.linspace(0.05, 0.95, 19)
  np.testing.assert_allclose(s.dalpha(t), jax.vmap(jax.grad(s.alpha))(t), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_mask_ratio_inverse(name):
  s = get_schedule(name)
  r = jnp.array([0.25, 0.5, 0.75, 1.0])
  np.testing.assert_allclose(s.mask_prob(s.t_from_mask_ratio(r)), r, rtol=1e-5)


def test_linear_weight_is_one_over_t():
  t = jnp.array([0.1, 0.5, 1.0])
  np.testing.assert_allclose(get_schedule("linear").loss_weight(t), 1.0 / t, rtol=1e-6)


def test_unknown_schedule_names_field():
  with pytest.raises(ValueError, match="diffusion.schedule='sqrt'"):
    get_schedule("sqrt")


def test_antithetic_times_are_stratified():
  t = np.sort(np.asarray(antithetic_times(jax.random.key(3), 8, eps=0.0)))
  np.testing.assert_allclose(np.diff(t), 1 / 8, atol=1e-6)
  assert t.min() >= 0 and t.max() <= 1
