"""Tiny pretrained checkpoints for tests: random Llama / Qwen2 / Whisper written by
transformers, and a Llama GGUF written with gguf's own GGUFWriter and tensor-name map."""
from __future__ import annotations

from typing import Optional

import numpy as np

from vocalnet_jax.models.gguf_import import permute_rope_rows

# A tiny Llama: vocabulary 60 (padded to 64 by the tiny preset: 4 rows past the checkpoint's)
LLAMA = dict(vocab_size=60, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
             num_attention_heads=4, num_key_value_heads=2, head_dim=8, rms_norm_eps=1e-5,
             rope_theta=500.0, tie_word_embeddings=False)


def randomize(model, skip: str = "embed_positions") -> None:
  """HF zero-initialises biases and ones norms; random values make every tensor count."""
  import torch
  torch.manual_seed(0)
  with torch.no_grad():
    for name, p in model.named_parameters():
      if skip not in name:
        p.normal_(0.0, 0.2)


def llama(path: str, **overrides):
  """A random `LlamaForCausalLM` saved to `path`; returns the model."""
  import transformers
  model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**dict(LLAMA, **overrides)))
  randomize(model)
  model.eval().save_pretrained(path)
  return model


def qwen2(path: str, **overrides):
  import transformers
  cfg = dict(vocab_size=60, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
             num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
  model = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**dict(cfg, **overrides)))
  randomize(model)
  model.eval().save_pretrained(path)
  return model


def whisper(path: str, n_mels: int = 80):
  import transformers
  cfg = transformers.WhisperConfig(
      num_mel_bins=n_mels, d_model=32, encoder_layers=2, encoder_attention_heads=4,
      encoder_ffn_dim=48, decoder_layers=1, decoder_attention_heads=4, decoder_ffn_dim=48,
      max_source_positions=12, max_target_positions=8, vocab_size=50, pad_token_id=0,
      bos_token_id=1, eos_token_id=2, decoder_start_token_id=1)
  model = transformers.WhisperModel(cfg)
  randomize(model)
  model.eval().save_pretrained(path)
  return model


def write_llama_gguf(path: str, tensors: dict[str, np.ndarray], config: dict,
                     qtypes: Optional[dict[str, str]] = None,
                     architecture: str = "llama") -> None:
  """Writes HF-named Llama tensors ([out, in], float32) as llama.cpp's converter does:
  gguf's tensor-name map, q/k rows permuted for interleaved RoPE, each tensor in
  `qtypes[hf_name]` (a GGMLQuantizationType name, default F32)."""
  import gguf
  layers = config["num_hidden_layers"]
  names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, layers)
  writer = gguf.GGUFWriter(path, architecture)
  writer.add_block_count(layers)
  writer.add_context_length(64)
  writer.add_embedding_length(config["hidden_size"])
  writer.add_feed_forward_length(config["intermediate_size"])
  writer.add_head_count(config["num_attention_heads"])
  writer.add_head_count_kv(config["num_key_value_heads"])
  writer.add_rope_dimension_count(config["head_dim"])
  writer.add_rope_freq_base(config["rope_theta"])
  writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
  writer.add_vocab_size(config["vocab_size"])
  heads = {"q_proj": config["num_attention_heads"], "k_proj": config["num_key_value_heads"]}
  for name, x in tensors.items():
    x = np.asarray(x, np.float32)
    proj = name.rsplit(".", 2)[-2]
    if proj in heads:
      x = permute_rope_rows(x, heads[proj])
    qtype = gguf.GGMLQuantizationType[(qtypes or {}).get(name, "F32")]
    data = gguf.quants.quantize(x, qtype) if qtype != gguf.GGMLQuantizationType.F32 else x
    writer.add_tensor(names.get_name(name, try_suffixes=(".weight",)), data,
                      raw_dtype=qtype if data.dtype == np.uint8 else None)  # block-quantised
  writer.write_header_to_file()
  writer.write_kv_data_to_file()
  writer.write_tensors_to_file()
  writer.close()


def state_dict(model) -> dict[str, np.ndarray]:
  """A torch model's tensors as float32 numpy (tied copies dropped, as save_pretrained)."""
  tensors = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
  if model.config.tie_word_embeddings:
    tensors.pop("lm_head.weight", None)
  return tensors
