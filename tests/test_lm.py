import jax.numpy as jnp
import numpy as np

from configs.common import model_config
from tests import decoding_helpers as dh
from vocalnet_jax.decoding import lm
from vocalnet_jax.models.decoder import decoder_from_config


def test_cast_params_casts_floats_only():
  params = {"w": jnp.ones((2, 2)), "step": jnp.int32(3), "n": {"b": jnp.zeros(3)}}
  out = lm.cast_params(params, jnp.bfloat16)
  assert out["w"].dtype == jnp.bfloat16 and out["n"]["b"].dtype == jnp.bfloat16
  assert out["step"].dtype == jnp.int32


def test_bf16_params_serve_a_bf16_model_like_f32_params():
  """A model computing in bf16 already rounds its matmul operands, so storing its params in
  bf16 (half the bytes a decode step reads) moves the logits by bf16 rounding only."""
  _, params = dh.tiny_model()
  config = model_config("tiny")
  config.dtype = "bfloat16"
  model = decoder_from_config(config, dh.VOCAB)
  prefix, valid = dh.prompts(["sort 321", "reverse abc"])
  body = jnp.full((2, 4), dh.TOK.mask_id, jnp.int32)
  f32 = dh.full_logits(model, params, prefix, valid, body, 4).astype(jnp.float32)
  bf16 = dh.full_logits(model, lm.cast_params(params, jnp.bfloat16), prefix, valid, body,
                        4).astype(jnp.float32)
  rel = float(jnp.linalg.norm(bf16 - f32) / jnp.linalg.norm(f32))
  assert 0.0 <= rel < 2e-2, rel
  np.testing.assert_array_equal(jnp.argmax(f32, -1), jnp.argmax(bf16, -1))
