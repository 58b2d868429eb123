"""AR decoding: cached greedy equals the no-cache argmax loop; eos; fixed length; one compile."""
import jax
import jax.numpy as jnp
import numpy as np

from tests.decoding_helpers import TOK, full_logits, prompts, tiny_model
from vocalnet_jax.decoding import ARConfig, ar, decoder_lm

N = 10


def _decode(eos_id=TOK.eos_id, stop_at_eos=True, questions=("12+7=?", "reverse abc")):
  model, params = tiny_model()
  prefix, valid = prompts(list(questions))
  return ar.generate(decoder_lm(model), params, prefix, valid, jax.random.key(0),
                     cfg=ARConfig(eos_id), max_new_tokens=N, stop_at_eos=stop_at_eos)


def _reference(questions=("12+7=?", "reverse abc")):
  """Greedy without a cache: a full causal forward per new token (fixed shape)."""
  model, params = tiny_model()
  prefix, valid = prompts(list(questions))
  body = jnp.zeros((prefix.shape[0], N), jnp.int32)
  for i in range(N):
    body = body.at[:, i].set(jnp.argmax(full_logits(model, params, prefix, valid, body, 1)[:, i],
                                        -1))
  return np.asarray(body)


def test_cached_greedy_equals_no_cache_loop_and_compiles_once():
  out = _decode(stop_at_eos=False)
  np.testing.assert_array_equal(out.tokens, _reference())
  assert int(out.nfe) == N - 1  # token 0 comes from the prefill
  size = ar.generate._cache_size()
  _decode(stop_at_eos=False, questions=("sort 3141", "double ab"))  # new request, same shapes
  assert ar.generate._cache_size() == size


def test_stops_at_eos_per_row():
  free = np.asarray(_decode(stop_at_eos=False).tokens)
  eos = int(free[0, 3])  # pretend the token row 0 emits at step 3 is eos
  first = [int(np.argmax(row == eos)) if np.any(row == eos) else N for row in free]
  out = _decode(eos_id=eos)
  np.testing.assert_array_equal(out.lengths, first)
  for row, length in enumerate(first):
    np.testing.assert_array_equal(out.tokens[row, :length], free[row, :length])
    assert np.all(np.asarray(out.tokens[row, length:]) == eos)
  assert int(out.nfe) == min(max(first), N - 1)  # loop ends when every row is done



def test_cache_is_laid_out_by_logical_axes_under_a_mesh(devices):
  """Under jax.set_mesh + logical rules the zero cache is sharded over batch and kv_heads."""
  from flax import linen as nn
  from jax.sharding import Mesh
  model, _ = tiny_model()
  mesh = Mesh(np.asarray(devices).reshape(4, 2), ("data", "tensor"))
  rules = (("batch", "data"), ("kv_heads", "tensor"), ("length", None), ("kv", None))
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    cache = jax.jit(lambda: decoder_lm(model).init_cache(4, 8))()
  assert cache[0].k.sharding.spec[:3] == ("data", None, "tensor")
