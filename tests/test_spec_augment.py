"""SpecAugment: what it masks, with what value, and how much on average."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vocalnet_jax.training.spec_augment import SpecAugmentConfig, spec_augment

B, T, F = 64, 120, 40


def _batch():
  mel = jax.random.normal(jax.random.key(0), (B, T, F)) + 3.0  # [B, T, F], no value equals the mean
  lengths = jnp.arange(B) % 60 + 61  # 61..120 valid frames
  return mel, jnp.arange(T)[None, :] < lengths[:, None], lengths


def test_off_by_default_returns_the_input():
  mel, valid, _ = _batch()
  assert spec_augment(mel, valid, jax.random.key(1), SpecAugmentConfig()) is mel


def test_masked_cells_take_the_mean_of_valid_frames_and_padding_is_untouched():
  mel, valid, _ = _batch()
  cfg = SpecAugmentConfig(freq_masks=2, freq_width=8, time_masks=2, time_width=20,
                          time_fraction=0.2)
  out = np.asarray(spec_augment(mel, valid, jax.random.key(1), cfg))
  mel, valid = np.asarray(mel), np.asarray(valid)
  changed = out != mel
  assert changed.any() and not changed[~valid].any()
  means = (mel * valid[..., None]).sum((1, 2)) / (valid.sum(1) * F)  # [B]
  rows = np.nonzero(changed)
  np.testing.assert_allclose(out[rows], means[rows[0]], rtol=1e-6)
  # A masked band covers every valid frame; a masked span every bin.
  for i in range(B):
    band = changed[i][valid[i]].all(axis=0)  # [F]
    span = changed[i].all(axis=1)  # [T]
    np.testing.assert_array_equal(changed[i][valid[i]], band[None, :] | span[valid[i]][:, None])


@pytest.mark.parametrize("width", [4, 10])
def test_expected_band_width_is_half_the_maximum(width):
  """One band of width uniform in {0..W}: E[masked bins] = W / 2 exactly."""
  mel, valid, _ = _batch()
  cfg = SpecAugmentConfig(freq_masks=1, freq_width=width)
  draws = jax.vmap(lambda k: spec_augment(mel, valid, k, cfg))(
      jax.random.split(jax.random.key(2), 40))  # [40, B, T, F]
  bins = np.asarray((draws != mel[None])[:, :, 0, :].sum(-1), np.float64)  # [40, B]
  assert abs(bins.mean() - width / 2) < 0.2  # an off-by-one width law is 0.5 away


def test_time_spans_stay_within_the_fraction_of_each_question():
  mel, valid, lengths = _batch()
  cfg = SpecAugmentConfig(time_masks=1, time_width=100, time_fraction=0.1)
  for seed in range(5):
    out = spec_augment(mel, valid, jax.random.key(seed), cfg)
    span = np.asarray((out != mel).all(-1).sum(-1))  # [B] masked frames
    assert (span <= np.floor(0.1 * np.asarray(lengths))).all() and span.max() > 0
