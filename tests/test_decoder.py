import jax
import jax.numpy as jnp
import numpy as np

from vocalnet_jax.diffusion.attention_masks import causal_mask
from vocalnet_jax.models import layers
from vocalnet_jax.models.decoder import Decoder, init_decoder_cache

MODEL = Decoder(vocab_size=40, embed_dim=32, num_layers=2, num_heads=4, num_kv_heads=2,
                head_dim=8, mlp_dim=64)
APPLY = jax.jit(MODEL.apply)


def _setup(length=7, batch=2):
  tokens = jax.random.randint(jax.random.key(0), (batch, length), 0, 40)
  positions = jnp.broadcast_to(jnp.arange(length), (batch, length))
  mask = jnp.broadcast_to(causal_mask(length), (batch, length, length))
  params = jax.jit(MODEL.init)(jax.random.key(1), tokens, positions, mask)
  return params, tokens, positions, mask


def test_shapes_and_causality():
  params, tokens, positions, mask = _setup()
  logits, hidden, cache = APPLY(params, tokens, positions, mask)
  assert logits.shape == (2, 7, 40) and hidden.shape == (2, 7, 32) and cache is None
  changed = tokens.at[:, -1].set((tokens[:, -1] + 1) % 40)
  logits2, _, _ = APPLY(params, changed, positions, mask)
  np.testing.assert_allclose(logits[:, :-1], logits2[:, :-1], atol=1e-5)  # future is invisible
  assert not np.allclose(logits[:, -1], logits2[:, -1])


def test_cached_token_by_token_equals_full_pass():
  params, tokens, positions, mask = _setup()
  full, _, _ = APPLY(params, tokens, positions, mask)
  cache = init_decoder_cache(MODEL, batch=2, max_len=10)
  steps = []
  for i in range(tokens.shape[1]):
    step_mask = jnp.broadcast_to(jnp.arange(10) <= i, (2, 1, 10))
    logits, _, cache = APPLY(params, tokens[:, i:i + 1], positions[:, i:i + 1], step_mask,
                                   cache=cache, cache_index=jnp.int32(i))
    steps.append(logits)
  np.testing.assert_allclose(jnp.concatenate(steps, 1), full, atol=1e-5)


def test_gqa_equals_mha_with_repeated_kv_heads():
  q = jax.random.normal(jax.random.key(0), (1, 3, 4, 8))
  k = jax.random.normal(jax.random.key(1), (1, 3, 2, 8))
  v = jax.random.normal(jax.random.key(2), (1, 3, 2, 8))
  mask = jnp.ones((1, 3, 3), bool)
  attend = jax.jit(layers.dot_product_attention)
  gqa = attend(q, k, v, mask)
  mha = attend(q, jnp.repeat(k, 2, axis=2), jnp.repeat(v, 2, axis=2), mask)
  np.testing.assert_allclose(gqa, mha, atol=1e-6)


def test_fully_masked_query_row_gives_zeros_not_nan():
  q = k = v = jnp.ones((1, 2, 2, 4))
  out = layers.dot_product_attention(q, k, v, jnp.array([[[True, False], [False, False]]]))
  assert np.isfinite(out).all() and np.allclose(out[0, 1], 0.0)


def test_rope_relative_positions():
  """Attention scores depend only on the position difference."""
  x = jax.random.normal(jax.random.key(0), (1, 1, 1, 8))
  y = jax.random.normal(jax.random.key(1), (1, 1, 1, 8))
  def score(pq, pk):
    return jnp.sum(layers.apply_rope(x, jnp.array([[pq]]), 1e4) *
                   layers.apply_rope(y, jnp.array([[pk]]), 1e4))
  np.testing.assert_allclose(score(3, 1), score(10, 8), rtol=1e-4)
