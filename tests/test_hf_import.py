"""HF import parity: tiny random Llama (GQA, untied), Qwen2 (qkv bias, tied) and Whisper
encoder built locally with transformers + torch, saved, imported, compared in float32."""
import os
import shutil

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from vocalnet_jax.models import hf_import  # noqa: E402
from vocalnet_jax.models.decoder import Decoder, scan_params  # noqa: E402
from vocalnet_jax.models.encoder import AudioEncoder  # noqa: E402

TOL = 1e-4
VOCAB, LENGTH = 64, 9


def _randomize(model: "torch.nn.Module", skip: str = "embed_positions") -> None:
  """HF zero-initialises biases and ones norms; random values make every tensor count."""
  torch.manual_seed(0)
  with torch.no_grad():
    for name, p in model.named_parameters():
      if skip not in name:
        p.normal_(0.0, 0.2)


def _save(model, path, **kwargs) -> str:
  model.save_pretrained(path, **kwargs)
  return str(path)


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
  cfg = transformers.LlamaConfig(
      vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
      num_attention_heads=4, num_key_value_heads=2, head_dim=12, rms_norm_eps=1e-5,
      tie_word_embeddings=False,
      # Llama-3 scaling; with head_dim 12 and theta 500 the wavelengths 6.3, 17.7, 49.9.. fall
      # in the kept (< 32/4), interpolated and divided (> 32/1) bands.
      rope_parameters=dict(rope_type="llama3", rope_theta=500.0, factor=8.0, low_freq_factor=1.0,
                           high_freq_factor=4.0, original_max_position_embeddings=32))
  model = transformers.LlamaForCausalLM(cfg).eval()
  _randomize(model)
  # Small shards: exercises model.safetensors.index.json.
  return model, _save(model, tmp_path_factory.mktemp("llama"), max_shard_size="20KB")


@pytest.fixture(scope="module")
def qwen2(tmp_path_factory):
  cfg = transformers.Qwen2Config(
      vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
      num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
  model = transformers.Qwen2ForCausalLM(cfg).eval()
  _randomize(model)
  return model, _save(model, tmp_path_factory.mktemp("qwen2"))


@pytest.fixture(scope="module")
def whisper(tmp_path_factory):
  cfg = transformers.WhisperConfig(
      num_mel_bins=16, d_model=32, encoder_layers=2, encoder_attention_heads=4,
      encoder_ffn_dim=48, decoder_layers=1, decoder_attention_heads=4, decoder_ffn_dim=48,
      max_source_positions=12, max_target_positions=8, vocab_size=50, pad_token_id=0,
      bos_token_id=1, eos_token_id=2, decoder_start_token_id=1)
  model = transformers.WhisperModel(cfg).eval()
  _randomize(model)
  return model, _save(model, tmp_path_factory.mktemp("whisper"))


def _decoder_parity(model, path, shardings=None, scan=False) -> tuple[float, float]:
  hp, params = hf_import.load_hf_decoder(path, shardings=shardings)
  if scan:  # the imported (unscanned) layers stacked for a scanned model
    hp, params = dict(hp, scan_layers=True), scan_params(params, hp["num_layers"])
  tokens = np.random.RandomState(0).randint(0, VOCAB, (2, LENGTH))
  with torch.no_grad():
    ref = model(torch.tensor(tokens), output_hidden_states=True)
  positions = jnp.broadcast_to(jnp.arange(LENGTH), (2, LENGTH))
  mask = jnp.broadcast_to(jnp.tril(jnp.ones((LENGTH, LENGTH), bool)), (2, LENGTH, LENGTH))
  logits, hidden, _ = jax.jit(Decoder(**hp).apply)({"params": params}, tokens, positions, mask)
  return (float(np.abs(np.asarray(logits) - ref.logits.numpy()).max()),
          float(np.abs(np.asarray(hidden) - ref.hidden_states[-1].numpy()).max()))


def test_llama_parity(llama):
  model, path = llama
  assert os.path.exists(os.path.join(path, "model.safetensors.index.json"))
  hp, _ = hf_import.load_hf_decoder(path)
  assert (hp["num_kv_heads"], hp["head_dim"], hp["rope_theta"], hp["qkv_bias"],
          hp["tie_embeddings"], hp["norm_eps"]) == (2, 12, 500.0, False, False, 1e-5)
  assert hp["rope_scaling"] == (8.0, 1.0, 4.0, 32.0)
  logit_diff, hidden_diff = _decoder_parity(model, path)
  print(f"llama max abs diff: logits {logit_diff:.2e} hidden {hidden_diff:.2e}")
  assert logit_diff <= TOL and hidden_diff <= TOL


def test_scanned_llama_parity(llama):
  logit_diff, hidden_diff = _decoder_parity(*llama, scan=True)
  assert logit_diff <= TOL and hidden_diff <= TOL


def test_qwen2_parity(qwen2):
  model, path = qwen2
  hp, params = hf_import.load_hf_decoder(path)
  assert hp["qkv_bias"] and hp["tie_embeddings"] and "lm_head" not in params
  logit_diff, hidden_diff = _decoder_parity(model, path)
  print(f"qwen2 max abs diff: logits {logit_diff:.2e} hidden {hidden_diff:.2e}")
  assert logit_diff <= TOL and hidden_diff <= TOL


def test_whisper_encoder_parity(whisper):
  model, path = whisper
  hp, params = hf_import.load_hf_whisper_encoder(path)
  frames = 2 * model.config.max_source_positions  # HF insists on the full window
  mel = np.random.RandomState(0).randn(2, frames, 16).astype(np.float32)
  with torch.no_grad():
    ref = model.encoder(torch.tensor(mel).transpose(1, 2)).last_hidden_state.numpy()
  hidden, mask = jax.jit(AudioEncoder(**hp).apply)({"params": params}, mel,
                                                   jnp.ones((2, frames), bool))
  diff = float(np.abs(np.asarray(hidden) - ref).max())
  print(f"whisper encoder max abs diff: {diff:.2e}")
  assert hidden.shape == ref.shape and bool(mask.all()) and diff <= TOL


def test_whisper_encoder_only_checkpoint(whisper, tmp_path):
  """An encoder saved on its own (no 'model.encoder.' prefix) imports to the same params."""
  model, path = whisper
  _, full = hf_import.load_hf_whisper_encoder(path)
  _, alone = hf_import.load_hf_whisper_encoder(_save(model.encoder, tmp_path))
  jax.tree_util.tree_map(np.testing.assert_array_equal, full, alone)


def test_sharded_placement(qwen2):
  if jax.device_count() < 8:
    pytest.skip("needs XLA_FLAGS=--xla_force_host_platform_device_count=8")
  model, path = qwen2
  hp, _ = hf_import.load_hf_decoder(path)
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:8]).reshape(2, 4), ("data", "model"))
  rules = (("embed", "data"), ("mlp", "model"), ("heads", "model"), ("vocab", "model"))
  tokens = jnp.zeros((1, 1), jnp.int32)
  boxed = jax.eval_shape(Decoder(**hp).init, jax.random.key(0), tokens, tokens,
                         jnp.ones((1, 1, 1), bool))["params"]
  shardings = nn.logical_to_mesh_sharding(nn.get_partition_spec(boxed), mesh, rules)
  _, params = hf_import.load_hf_decoder(path, shardings=shardings)
  q_kernel = params["layers_0"]["self_attn"]["q_proj"]["kernel"]
  assert q_kernel.sharding.spec == jax.sharding.PartitionSpec("data", "model", None)
  assert len(q_kernel.addressable_shards) == 8
  logit_diff, _ = _decoder_parity(model, path, shardings=shardings)
  assert logit_diff <= TOL


def test_bfloat16_checkpoint(tmp_path):
  cfg = transformers.LlamaConfig(vocab_size=VOCAB, hidden_size=16, intermediate_size=24,
                                 num_hidden_layers=1, num_attention_heads=2)
  model = transformers.LlamaForCausalLM(cfg).to(torch.bfloat16)
  _, params = hf_import.load_hf_decoder(_save(model, tmp_path))
  expected = model.model.embed_tokens.weight.detach().float().numpy()
  np.testing.assert_array_equal(params["embed_tokens"]["embedding"], expected)


def test_missing_file_and_tensor_errors(llama, qwen2, tmp_path):
  _, path = qwen2
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(FileNotFoundError, match="config.json"):
    hf_import.load_hf_decoder(str(empty))
  shutil.copy(os.path.join(path, "config.json"), empty)
  with pytest.raises(FileNotFoundError, match="safetensors"):
    hf_import.load_hf_decoder(str(empty))
  # A checkpoint without one tensor names that tensor.
  from safetensors.numpy import load_file, save_file
  pruned = tmp_path / "pruned"
  shutil.copytree(path, pruned)
  tensors = load_file(str(pruned / "model.safetensors"))
  del tensors["model.layers.1.self_attn.k_proj.bias"]
  save_file(tensors, str(pruned / "model.safetensors"))
  with pytest.raises(KeyError, match=r"model\.layers\.1\.self_attn\.k_proj\.bias"):
    hf_import.load_hf_decoder(str(pruned))
  # A shard listed in the index but absent from disk names the file.
  _, llama_path = llama
  sharded = tmp_path / "sharded"
  shutil.copytree(llama_path, sharded)
  shard = sorted(f for f in os.listdir(sharded) if f.endswith(".safetensors"))[-1]
  os.remove(sharded / shard)
  with pytest.raises(FileNotFoundError, match=shard):
    hf_import.load_hf_decoder(str(sharded))


def test_load_hf_tokenizer(tmp_path):
  tokenizers = pytest.importorskip("tokenizers")
  vocab = {"[UNK]": 0, "hello": 1, "world": 2}
  tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
  tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
  transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]").save_pretrained(
      tmp_path)
  loaded = hf_import.load_hf_tokenizer(str(tmp_path))
  assert loaded("hello world foo", add_special_tokens=False)["input_ids"] == [1, 2, 0]
  with pytest.raises(FileNotFoundError):
    hf_import.load_hf_tokenizer(str(tmp_path / "missing"))
