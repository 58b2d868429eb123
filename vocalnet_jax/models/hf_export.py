"""Write a `Decoder` as a Hugging Face Llama (or, with q/k/v biases, Qwen2) checkpoint.

The inverse of `hf_import.load_hf_decoder`, through the same name and layout table
(`hf_layout.decoder_tensors`): `config.json` plus `model.safetensors`, or numbered
shards with `model.safetensors.index.json` past `max_shard_bytes`, written through
etils.epath (a `gs://` directory works). Scanned params (`scan_layers`) are unstacked.
Tensors keep the dtype they are given in.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any, Optional

import numpy as np
from etils import epath
from flax import traverse_util
from safetensors.numpy import save as safetensors_bytes

from vocalnet_jax.models import hf_layout
from vocalnet_jax.models.decoder import Decoder, unscan_params

# Decoder fields that fix the function and have a Llama/Qwen2 config field (below) ...
_EXPRESSED = ("vocab_size", "embed_dim", "num_layers", "num_heads", "num_kv_heads", "head_dim",
              "mlp_dim", "rope_theta", "qkv_bias", "tie_embeddings", "norm_eps", "rope_scaling")
# ... and those that only choose how it is computed (flax's own: parent, name).
_HOW_COMPUTED = ("remat_policy", "scan_layers", "dtype", "attention_impl", "parent", "name")
_MAX_SHARD_BYTES = 5 * 2**30  # what transformers' save_pretrained uses


class NotExpressible(ValueError):
  """The decoder has something a Llama/Qwen2 config cannot say."""


def check(decoder: Decoder) -> None:
  """Raises NotExpressible naming what in `decoder` a Llama/Qwen2 config cannot say."""
  unknown = [f.name for f in dataclasses.fields(decoder)
             if f.name not in _EXPRESSED + _HOW_COMPUTED]
  if unknown:
    raise NotExpressible(f"Decoder field(s) {', '.join(unknown)} have no Llama/Qwen2 "
                         "config equivalent")
  if decoder.rope_scaling is not None and len(decoder.rope_scaling) != 4:
    raise NotExpressible(f"rope_scaling={decoder.rope_scaling} is not Llama-3 scaling "
                         "(factor, low_freq_factor, high_freq_factor, original_max_positions)")


def hf_config(decoder: Decoder, torch_dtype: str, max_positions: int,
              extra: Optional[dict[str, Any]] = None) -> dict[str, Any]:
  """The `config.json` dict of `decoder` (read back by `hf_import` and by transformers).
  max_positions: the sequence length the model was trained on."""
  check(decoder)
  rope: dict[str, Any] = {"rope_type": "default", "rope_theta": float(decoder.rope_theta)}
  if decoder.rope_scaling is not None:
    factor, low, high, original = decoder.rope_scaling
    rope.update(rope_type="llama3", factor=float(factor), low_freq_factor=float(low),
                high_freq_factor=float(high), original_max_position_embeddings=int(original))
    max_positions = max(max_positions, int(original * factor))  # the length scaling serves
  model_type = "qwen2" if decoder.qkv_bias else "llama"
  config = dict(
      architectures=["Qwen2ForCausalLM" if decoder.qkv_bias else "LlamaForCausalLM"],
      model_type=model_type, vocab_size=decoder.vocab_size, hidden_size=decoder.embed_dim,
      intermediate_size=decoder.mlp_dim, num_hidden_layers=decoder.num_layers,
      num_attention_heads=decoder.num_heads, num_key_value_heads=decoder.num_kv_heads,
      head_dim=decoder.head_dim, hidden_act="silu", rms_norm_eps=float(decoder.norm_eps),
      tie_word_embeddings=bool(decoder.tie_embeddings), max_position_embeddings=max_positions,
      # transformers >= 5 reads rope_parameters, older versions rope_theta (+ rope_scaling)
      rope_parameters=rope, rope_theta=rope["rope_theta"],
      rope_scaling=None if rope["rope_type"] == "default" else rope,
      torch_dtype=torch_dtype, dtype=torch_dtype)
  if model_type == "llama":
    config.update(attention_bias=False, mlp_bias=False)
  else:
    config.update(use_sliding_window=False)
  config.update(extra or {})
  return config


def hf_tensors(decoder: Decoder, params: dict[str, Any]) -> dict[str, np.ndarray]:
  """HF tensor name -> host array in torch layout, for `decoder`'s `params`."""
  if decoder.scan_layers:
    params = unscan_params(params)
  flat = traverse_util.flatten_dict(params)
  table = hf_layout.decoder_tensors(decoder.num_layers, decoder.num_heads, decoder.num_kv_heads,
                                    decoder.qkv_bias, decoder.tie_embeddings)
  if set(flat) != set(table):
    extra = sorted("/".join(k) for k in set(flat) - set(table))
    missing = sorted("/".join(k) for k in set(table) - set(flat))
    raise NotExpressible(f"params do not match a Llama/Qwen2 decoder: extra {extra}, "
                         f"missing {missing}")
  return {name: np.ascontiguousarray(layout.to_hf(np.asarray(flat[path])))
          for path, (name, layout) in table.items()}


def save(directory: str, decoder: Decoder, params: dict[str, Any], max_positions: int,
         extra_config: Optional[dict[str, Any]] = None,
         max_shard_bytes: int = _MAX_SHARD_BYTES) -> list[str]:
  """Writes `decoder` with `params` (host or device arrays) as an HF checkpoint into
  `directory`, config.json last; returns the names of the files written."""
  tensors = hf_tensors(decoder, params)
  dtypes = {str(x.dtype) for x in tensors.values()}
  if len(dtypes) != 1:
    raise NotExpressible(f"params mix dtypes {sorted(dtypes)}; export them in one dtype")
  shards: list[dict[str, np.ndarray]] = [{}]
  size = 0  # bytes in the last shard
  for name, x in tensors.items():
    if shards[-1] and size + x.nbytes > max_shard_bytes:
      shards.append({})
      size = 0
    shards[-1][name] = x
    size += x.nbytes
  out = epath.Path(directory)
  out.mkdir(parents=True, exist_ok=True)
  config = hf_config(decoder, dtypes.pop(), max_positions, extra_config)
  names = (["model.safetensors"] if len(shards) == 1 else
           [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))])
  for name, shard in zip(names, shards):
    (out / name).write_bytes(safetensors_bytes(shard, metadata={"format": "pt"}))
  if len(shards) > 1:
    index = {"metadata": {"total_size": sum(x.nbytes for x in tensors.values())},
             "weight_map": {t: name for name, shard in zip(names, shards) for t in shard}}
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=1))
    names.append("model.safetensors.index.json")
  (out / "config.json").write_text(json.dumps(config, indent=1))  # last: the export is whole
  return names + ["config.json"]
