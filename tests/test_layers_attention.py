"""attention_impl: jax.nn.dot_product_attention ("xla") against the hand-written einsum path."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.helpers import tiny_config
from vocalnet_jax.diffusion.attention_masks import causal_mask
from vocalnet_jax.modeling.validate import ConfigError, validate_config
from vocalnet_jax.models import layers
from vocalnet_jax.models.decoder import Decoder, decoder_from_config, init_decoder_cache


def _qkv_mask(seed, batch=2, q_len=5, k_len=7, heads=4, kv_heads=2, head_dim=8):
  kq, kk, kv, km = jax.random.split(jax.random.key(seed), 4)
  q = jax.random.normal(kq, (batch, q_len, heads, head_dim))
  k = jax.random.normal(kk, (batch, k_len, kv_heads, head_dim))
  v = jax.random.normal(kv, (batch, k_len, kv_heads, head_dim))
  mask = jax.random.bernoulli(km, 0.6, (batch, q_len, k_len))
  mask = mask.at[0, 1].set(False).at[1, -1].set(False)  # queries that see no key
  mask = mask.at[0, 0].set(True)  # and one that sees every key
  return q, k, v, mask


@pytest.mark.parametrize("seed", [0, 1])
def test_xla_path_matches_einsum_with_gqa_and_empty_rows(seed):
  q, k, v, mask = _qkv_mask(seed)
  ref = jax.jit(layers.dot_product_attention)(q, k, v, mask)
  got = jax.jit(layers.dot_product_attention, static_argnums=4)(q, k, v, mask, "xla")
  assert got.shape == ref.shape == q.shape and got.dtype == ref.dtype
  assert np.isfinite(got).all()
  np.testing.assert_allclose(got, ref, atol=1e-5, rtol=1e-5)
  np.testing.assert_array_equal(got[0, 1], 0.0)
  np.testing.assert_array_equal(got[1, -1], 0.0)


def test_xla_path_broadcasts_a_batch_one_mask():
  q, k, v, _ = _qkv_mask(2)
  mask = causal_mask(7)[None, 2:]  # [1, 5, 7]
  np.testing.assert_allclose(layers.dot_product_attention(q, k, v, mask, "xla"),
                             layers.dot_product_attention(q, k, v, mask), atol=1e-5)


def test_unknown_implementation_is_refused():
  q, k, v, mask = _qkv_mask(0)
  with pytest.raises(ValueError, match="flash"):
    layers.dot_product_attention(q, k, v, mask, "flash")


KW = dict(vocab_size=40, embed_dim=32, num_layers=2, num_heads=4, num_kv_heads=2, head_dim=8,
          mlp_dim=64)


@pytest.mark.parametrize("scan", [False, True])
def test_decoder_logits_match_with_and_without_cache(scan):
  batch, length, max_len = 2, 6, 8
  einsum, xla = Decoder(**KW, scan_layers=scan), Decoder(**KW, scan_layers=scan,
                                                         attention_impl="xla")
  tokens = jax.random.randint(jax.random.key(0), (batch, length + 1), 0, 40)
  positions = jnp.broadcast_to(jnp.arange(length + 1), (batch, length + 1))
  valid = jnp.array([[True] * length, [False, False] + [True] * (length - 2)])  # left padding
  mask = causal_mask(length)[None] & valid[:, None, :]  # padding query rows see nothing
  params = jax.jit(einsum.init)(jax.random.key(1), tokens[:, :length], positions[:, :length],
                                mask)

  def run(model):
    full, _, _ = jax.jit(model.apply)(params, tokens[:, :length], positions[:, :length], mask)
    prefill_mask = jnp.pad(mask, ((0, 0), (0, 0), (0, max_len - length)))
    cache = init_decoder_cache(model, batch, max_len)
    pre, _, cache = jax.jit(model.apply)(params, tokens[:, :length], positions[:, :length],
                                         prefill_mask, cache=cache, cache_index=jnp.int32(0))
    step_mask = jnp.concatenate([valid, jnp.ones((batch, 1), bool),
                                 jnp.zeros((batch, max_len - length - 1), bool)], 1)[:, None]
    step, _, _ = jax.jit(model.apply)(params, tokens[:, length:], positions[:, length:],
                                      step_mask, cache=cache, cache_index=jnp.int32(length))
    return full, pre, step

  for ref, got in zip(run(einsum), run(xla)):
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=1e-4)


def test_config_knob_defaults_to_einsum_and_is_validated():
  config = tiny_config()
  assert config.model.attention_impl == "einsum"
  assert decoder_from_config(config.model, 40).attention_impl == "einsum"
  validate_config(config)
  assert decoder_from_config(tiny_config(model__attention_impl="xla").model,
                             40).attention_impl == "xla"
  with pytest.raises(ConfigError, match=r"config\.model\.attention_impl='flash'"):
    validate_config(tiny_config(model__attention_impl="flash"))
  with pytest.raises(ConfigError, match=r"config\.model\.attention_impl='cudnn' needs"):
    validate_config(tiny_config(model__attention_impl="cudnn"))  # tiny is float32
  validate_config(tiny_config(model__attention_impl="cudnn", model__dtype="bfloat16"))
