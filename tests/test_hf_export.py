"""HF export: random tiny decoders (Llama GQA + Llama-3 RoPE, untied; Qwen2 with q/k/v bias,
tied; scanned layers) written with `hf_export`, read back with `hf_import`: same params and
logits; transformers loads the same files to the same logits."""
import json
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vocalnet_jax.models import hf_export, hf_import
from vocalnet_jax.models.decoder import Decoder, unscan_params

VOCAB, LENGTH, TOL = 64, 9, 1e-5
LLAMA = dict(vocab_size=VOCAB, embed_dim=32, num_layers=2, num_heads=4, num_kv_heads=2,
             head_dim=12, mlp_dim=48, rope_theta=500.0, norm_eps=1e-5,
             rope_scaling=(8.0, 1.0, 4.0, 32.0))
QWEN2 = dict(vocab_size=VOCAB, embed_dim=32, num_layers=2, num_heads=4, num_kv_heads=2,
             head_dim=8, mlp_dim=48, qkv_bias=True, tie_embeddings=True)


def _inputs():
  tokens = np.random.RandomState(0).randint(0, VOCAB, (2, LENGTH))
  positions = jnp.broadcast_to(jnp.arange(LENGTH), (2, LENGTH))
  mask = jnp.broadcast_to(jnp.tril(jnp.ones((LENGTH, LENGTH), bool)), (2, LENGTH, LENGTH))
  return tokens, positions, mask


def _random_params(decoder: Decoder) -> dict:
  """Init, then every leaf random (init has unit norms and zero biases)."""
  params = nn.unbox(decoder.init(jax.random.key(0), *_inputs())["params"])
  leaves, treedef = jax.tree_util.tree_flatten(params)
  keys = jax.random.split(jax.random.key(1), len(leaves))
  return jax.tree_util.tree_unflatten(
      treedef, [0.2 * jax.random.normal(k, x.shape, x.dtype) for k, x in zip(keys, leaves)])


def _logits(decoder: Decoder, params: dict) -> np.ndarray:
  return np.asarray(jax.jit(decoder.apply)({"params": params}, *_inputs())[0])


@pytest.mark.parametrize("hparams,scan", [(LLAMA, False), (QWEN2, False), (LLAMA, True)],
                         ids=["llama", "qwen2", "llama_scanned"])
def test_round_trip_through_hf_import(hparams, scan, tmp_path):
  decoder = Decoder(**hparams, scan_layers=scan)
  params = _random_params(decoder)
  # small shards: the index file and several safetensors files
  files = hf_export.save(str(tmp_path), decoder, params, max_positions=LENGTH,
                         max_shard_bytes=8000)
  assert "model.safetensors.index.json" in files and len(files) > 3
  assert sorted(os.listdir(tmp_path)) == sorted(files)
  config = json.loads((tmp_path / "config.json").read_text())
  assert config["model_type"] == ("qwen2" if hparams.get("qkv_bias") else "llama")
  hp, imported = hf_import.load_hf_decoder(str(tmp_path))
  reference = Decoder(**hparams)
  assert hp == {k: getattr(reference, k) for k in hp}  # hf_import's config reading inverts ours
  unscanned = unscan_params(params) if scan else params
  jax.tree_util.tree_map(np.testing.assert_array_equal, imported, unscanned)
  np.testing.assert_allclose(_logits(Decoder(**hp), imported), _logits(decoder, params),
                             atol=TOL, rtol=0)


def test_bfloat16_export_keeps_the_dtype(tmp_path):
  decoder = Decoder(**QWEN2)
  params = jax.tree_util.tree_map(lambda x: x.astype(jnp.bfloat16), _random_params(decoder))
  hf_export.save(str(tmp_path), decoder, params, max_positions=LENGTH)
  assert os.listdir(tmp_path) and json.loads((tmp_path / "config.json").read_text())[
      "torch_dtype"] == "bfloat16"
  _, imported = hf_import.load_hf_decoder(str(tmp_path), dtype=jnp.bfloat16)
  jax.tree_util.tree_map(np.testing.assert_array_equal, imported, params)


def test_what_hf_cannot_express_is_named():
  class QKNormDecoder(Decoder):  # a knob a Llama/Qwen2 config has no field for
    qk_norm: bool = True

  with pytest.raises(hf_export.NotExpressible, match="qk_norm"):
    hf_export.check(QKNormDecoder(**LLAMA))
  with pytest.raises(hf_export.NotExpressible, match="rope_scaling"):
    hf_export.check(Decoder(**dict(LLAMA, rope_scaling=(8.0, 1.0))))
  decoder = Decoder(**QWEN2)
  params = _random_params(decoder)
  del params["layers_1"]["self_attn"]["k_proj"]["bias"]
  with pytest.raises(hf_export.NotExpressible, match=r"layers_1/self_attn/k_proj/bias"):
    hf_export.hf_tensors(decoder, params)


@pytest.mark.parametrize("hparams", [LLAMA, QWEN2], ids=["llama", "qwen2"])
def test_transformers_loads_the_export(hparams, tmp_path):
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  decoder = Decoder(**hparams)
  params = _random_params(decoder)
  hf_export.save(str(tmp_path), decoder, params, max_positions=LENGTH)
  model = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path)).eval()
  expected = transformers.Qwen2ForCausalLM if hparams.get("qkv_bias") else (
      transformers.LlamaForCausalLM)
  assert isinstance(model, expected) and model.dtype == torch.float32
  tokens, _, _ = _inputs()
  with torch.no_grad():
    ref = model(torch.tensor(tokens)).logits.numpy()
  np.testing.assert_allclose(_logits(decoder, params), ref, atol=1e-4, rtol=0)
