"""Scanned decoder layers: same function as the unrolled stack, params convertible both
ways, KV-cache decoding unchanged, each remat policy gives the same gradients."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.helpers import tiny_config
from vocalnet_jax.models import decoder as decoder_lib
from vocalnet_jax.models import layers
from vocalnet_jax.training import trainer

KW = dict(vocab_size=64, embed_dim=32, num_layers=3, num_heads=4, num_kv_heads=2, head_dim=8,
          mlp_dim=64)
B, L = 2, 6


@pytest.fixture(scope="module")
def unscanned():
  model = decoder_lib.Decoder(**KW)
  tokens = jax.random.randint(jax.random.key(1), (B, L), 0, KW["vocab_size"])
  positions = jnp.broadcast_to(jnp.arange(L), (B, L))
  mask = jnp.broadcast_to(jnp.tril(jnp.ones((L, L), bool)), (B, L, L))
  params = model.init(jax.random.key(0), tokens, positions, mask)["params"]
  return model, nn.unbox(params), (tokens, positions, mask)


def test_conversion_round_trips_and_scanned_logits_match(unscanned):
  model, params, inputs = unscanned
  scanned = decoder_lib.scan_params(params, KW["num_layers"])
  assert scanned["layers"]["mlp"]["up_proj"]["kernel"].shape == (3, 32, 64)
  jax.tree_util.tree_map(np.testing.assert_array_equal,
                         decoder_lib.unscan_params(scanned), params)
  want = model.apply({"params": params}, *inputs)[0]
  got = decoder_lib.Decoder(**KW, scan_layers=True).apply({"params": scanned}, *inputs)[0]
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match="expected scanned decoder params"):
    decoder_lib.unscan_params(params)


def test_kv_cache_decoding_matches(unscanned):
  model, params, (tokens, positions, mask) = unscanned
  scanned = decoder_lib.scan_params(params, KW["num_layers"])
  cache = layers.init_kv_cache(B, 8, KW["num_layers"], KW["num_kv_heads"], KW["head_dim"])
  step_mask = jnp.ones((B, L, 8), bool) & (jnp.arange(8) < L)[None, None]
  outs = [m.apply({"params": p}, tokens, positions, step_mask, cache=cache,
                  cache_index=jnp.array(0))
          for m, p in [(model, params), (decoder_lib.Decoder(**KW, scan_layers=True), scanned)]]
  np.testing.assert_allclose(outs[1][0], outs[0][0], rtol=1e-5, atol=1e-5)
  assert len(outs[1][2]) == KW["num_layers"]
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5),
                         outs[1][2], outs[0][2])


@pytest.mark.parametrize("policy", ["none", "full", "save_dots"])
def test_remat_policies_give_the_same_gradients(policy, unscanned):
  model, params, inputs = unscanned
  loss = lambda m, p: m.apply({"params": p}, *inputs)[0].mean()  # noqa: E731
  want = decoder_lib.scan_params(jax.grad(lambda p: loss(model, p))(params), KW["num_layers"])
  scanned_model = decoder_lib.Decoder(**KW, scan_layers=True, remat_policy=policy)
  got = jax.grad(lambda p: loss(scanned_model, p))(
      decoder_lib.scan_params(params, KW["num_layers"]))
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
                         got, want)
  with pytest.raises(ValueError, match="remat_policy='some'"):
    decoder_lib.Decoder(**KW, remat_policy="some").init(jax.random.key(0), *inputs)


def test_sharded_scanned_loss_matches_unrolled(devices):
  """fsdp=8 shards the stacked params (their [layers] axis stays whole); same loss."""
  exps = [trainer.setup_experiment(tiny_config(mesh__data=1, mesh__fsdp=8,
                                               model__scan_layers=scan,
                                               model__remat_policy="full" if scan else "none"),
                                   devices) for scan in (False, True)]
  kernel = exps[1].state_shardings.params["layers"]["mlp"]["up_proj"]["kernel"]
  assert tuple(kernel.spec) == (None, "fsdp", "tensor")
  params = trainer.init_state(exps[0]).params
  params = [params, jax.device_put(decoder_lib.scan_params(params, 2),
                                   exps[1].state_shardings.params)]
  losses = []
  for exp, p in zip(exps, params):
    with exp.mesh, nn.logical_axis_rules(exp.rules):
      losses.append(jax.jit(exp.task.loss)(p, exp.example_batch, jax.random.key(0))[0])
  np.testing.assert_allclose(losses[1], losses[0], rtol=1e-5)
