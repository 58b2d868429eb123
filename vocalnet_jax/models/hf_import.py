"""Import Hugging Face checkpoints from a local directory (no hub access).

Supported: Llama and Qwen2 decoders -> `decoder.Decoder`, the Whisper encoder ->
`encoder.AudioEncoder`. A checkpoint directory holds `config.json` and one or more
`*.safetensors` files (sharded ones via `model.safetensors.index.json`). Tensors are
read one at a time with the safetensors numpy API (`Tensor` leaves: read when placed),
converted to our layout and, when a sharding tree is given, placed shard by shard
(`place`), so host memory holds about one tensor at a time. Each tensor's shape is
checked against the module's abstract init and a mismatch names the tensor.
`decoder_tensors` takes any checkpoint view with an HF config (`gguf_import` gives one).

Names and layout conversions: `hf_layout` (shared with `hf_export`).
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
from typing import Any, Callable, Optional, Sequence

import flax.linen as nn
from flax import traverse_util
import jax
import jax.numpy as jnp
import numpy as np
from safetensors import safe_open

from vocalnet_jax.models import hf_layout
from vocalnet_jax.models.decoder import Decoder
from vocalnet_jax.models.encoder import AudioEncoder, sinusoidal_positions

PyTree = Any


class Checkpoint:
  """Name -> tensor access over the safetensors files of a local HF directory."""

  def __init__(self, path: str):
    self.path = path
    config_file = os.path.join(path, "config.json")
    if not os.path.isfile(config_file):
      raise FileNotFoundError(f"HF checkpoint {path!r} has no config.json")
    with open(config_file) as f:
      self.config: dict = json.load(f)
    index_file = os.path.join(path, "model.safetensors.index.json")
    if os.path.isfile(index_file):
      with open(index_file) as f:
        self._file_of = {k: os.path.join(path, v) for k, v in json.load(f)["weight_map"].items()}
    else:
      files = sorted(f for f in os.listdir(path) if f.endswith(".safetensors"))
      if not files:
        raise FileNotFoundError(f"HF checkpoint {path!r} has no *.safetensors file")
      self._file_of = {}
      for name in files:
        with safe_open(os.path.join(path, name), framework="np") as f:
          self._file_of.update({k: os.path.join(path, name) for k in f.keys()})

  def keys(self) -> list[str]:
    return list(self._file_of)

  def get(self, name: str) -> np.ndarray:
    """Tensor `name` in its stored dtype (bfloat16 through ml_dtypes)."""
    if name not in self._file_of:
      raise KeyError(f"tensor {name!r} not found in HF checkpoint {self.path!r}")
    file = self._file_of[name]
    if not os.path.isfile(file):
      raise FileNotFoundError(f"HF checkpoint {self.path!r}: file {file!r} (holding {name!r}) "
                              "is missing")
    with safe_open(file, framework="np") as f:
      return f.get_tensor(name)


def _prefix(ckpt: Checkpoint, suffix: str) -> str:
  """The key prefix in front of `suffix` (e.g. 'model.' or 'model.encoder.')."""
  matches = sorted(k[:-len(suffix)] for k in ckpt.keys() if k.endswith(suffix))
  if not matches:
    raise KeyError(f"HF checkpoint {ckpt.path!r} has no tensor named '*{suffix}'")
  return matches[0]


@dataclasses.dataclass(frozen=True)
class Tensor:
  """One param leaf still on disk: `read()` gives checkpoint tensor `name` in our layout."""
  name: str
  read: Callable[[], np.ndarray]


def _load(ckpt: Any, name: str, layout: hf_layout.Layout) -> Tensor:
  """Tensor `name` of `ckpt` (anything with `get(name)`), read when asked, in our layout."""
  return Tensor(name, lambda: layout.to_ours(ckpt.get(name)))


def stacked(tensors: Sequence[Tensor]) -> Tensor:
  """Per-layer tensors as one leaf with a leading [layers] axis (scanned params), filled
  layer by layer into one buffer."""
  def read() -> np.ndarray:
    out = None
    for i, tensor in enumerate(tensors):
      x = tensor.read()
      if out is None:
        out = np.empty((len(tensors),) + x.shape, x.dtype)  # [layers, ...]
      if x.shape != out.shape[1:]:
        raise ValueError(f"tensor {tensor.name} has shape {x.shape}, layer 0's {out.shape[1:]}")
      out[i] = x
    return out
  return Tensor(re.sub(r"\.0\.", ".*.", tensors[0].name, count=1), read)


def place(tensors: PyTree, abstract: PyTree, what: str) -> PyTree:
  """Reads each `Tensor` leaf, checks its shape against `abstract` (ShapeDtypeStructs,
  optionally carrying a sharding) and puts it straight into that dtype and sharding, one
  tensor at a time (host memory holds about one tensor, never the model)."""
  flat_abstract = dict(traverse_util.flatten_dict(abstract))
  flat_tensors = dict(traverse_util.flatten_dict(tensors))
  if set(flat_abstract) != set(flat_tensors):
    missing = sorted("/".join(k) for k in set(flat_abstract) - set(flat_tensors))
    extra = sorted("/".join(k) for k in set(flat_tensors) - set(flat_abstract))
    raise ValueError(f"{what}: the checkpoint does not fit the model: params the checkpoint "
                     f"lacks {missing[:4]}, tensors the model lacks {extra[:4]}")
  out = {}
  for path, spec in flat_abstract.items():
    tensor = flat_tensors[path]
    x = tensor.read()
    if x.shape != spec.shape:
      raise ValueError(f"{what}: tensor {tensor.name} has shape {x.shape} (in our layout), "
                       f"the model's {'/'.join(path)} is {spec.shape}")
    x = np.asarray(x, spec.dtype)
    sharding = getattr(spec, "sharding", None)
    out[path] = (jnp.asarray(x) if sharding is None else
                 jax.make_array_from_callback(x.shape, sharding, lambda idx, x=x: x[idx]))
    del x
  return traverse_util.unflatten_dict(out)


def _target(abstract: PyTree, dtype: jnp.dtype, shardings: Optional[PyTree]) -> PyTree:
  """`abstract` in `dtype`, each leaf carrying its sharding from `shardings` (if given)."""
  if shardings is None:
    return jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape, dtype), abstract)
  return jax.tree_util.tree_map(lambda a, s: jax.ShapeDtypeStruct(a.shape, dtype, sharding=s),
                                abstract, shardings)


def _abstract_params(module: nn.Module, *inputs: Any) -> PyTree:
  variables = jax.eval_shape(lambda *args: module.init(jax.random.key(0), *args), *inputs)
  return nn.unbox(variables["params"])


def decoder_hparams_from_hf_config(config: dict) -> dict:
  """`Decoder` keyword arguments for a Llama / Qwen2 `config.json` dict."""
  model_type = config.get("model_type")
  if model_type not in ("llama", "qwen2"):
    raise NotImplementedError(f"decoder import supports llama and qwen2, not {model_type!r}")
  if config.get("attention_bias") or config.get("mlp_bias"):
    raise NotImplementedError("Llama attention_bias / mlp_bias checkpoints are not supported")
  if config.get("hidden_act", "silu") != "silu":
    raise NotImplementedError(f"hidden_act {config['hidden_act']!r} is not supported")
  if model_type == "qwen2" and config.get("use_sliding_window"):
    raise NotImplementedError("Qwen2 sliding-window attention is not supported")
  # transformers >= 5 writes `rope_parameters`; older Llama-3 files `rope_theta` + `rope_scaling`.
  rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
  rope_type = rope.get("rope_type", rope.get("type", "default"))
  if rope_type == "llama3":
    rope_scaling = (float(rope["factor"]), float(rope["low_freq_factor"]),
                    float(rope["high_freq_factor"]),
                    float(rope["original_max_position_embeddings"]))
  elif rope_type == "default":
    rope_scaling = None
  else:
    raise NotImplementedError(f"rope_type {rope_type!r} is not supported (default, llama3)")
  num_heads = config["num_attention_heads"]
  return dict(
      vocab_size=config["vocab_size"], embed_dim=config["hidden_size"],
      num_layers=config["num_hidden_layers"], num_heads=num_heads,
      num_kv_heads=config.get("num_key_value_heads") or num_heads,
      head_dim=config.get("head_dim") or config["hidden_size"] // num_heads,
      mlp_dim=config["intermediate_size"],
      rope_theta=float(rope.get("rope_theta", config.get("rope_theta", 10000.0))),
      qkv_bias=model_type == "qwen2", tie_embeddings=bool(config.get("tie_word_embeddings")),
      norm_eps=float(config["rms_norm_eps"]), rope_scaling=rope_scaling)


def decoder_tensors(ckpt: Any) -> tuple[dict, PyTree]:
  """(hparams, unscanned param tree of `Tensor`s) of a Llama / Qwen2 checkpoint: anything
  with an HF `config` dict, `keys()` and `get(name)` (`Checkpoint`, or a GGUF file's view)."""
  hp = decoder_hparams_from_hf_config(ckpt.config)
  table = hf_layout.decoder_tensors(
      hp["num_layers"], hp["num_heads"], hp["num_kv_heads"], hp["qkv_bias"],
      hp["tie_embeddings"], prefix=_prefix(ckpt, "embed_tokens.weight"))
  return hp, traverse_util.unflatten_dict({path: _load(ckpt, name, layout)
                                           for path, (name, layout) in table.items()})


def decoder_abstract(hp: dict) -> PyTree:
  """The unscanned param shapes of `Decoder(**hp)`."""
  tokens = jax.ShapeDtypeStruct((1, 1), jnp.int32)
  return _abstract_params(Decoder(**hp), tokens, tokens, jax.ShapeDtypeStruct((1, 1, 1), bool))


def load_decoder(ckpt: Any, dtype: jnp.dtype = jnp.float32,
                 shardings: Optional[PyTree] = None) -> tuple[dict, PyTree]:
  """(hparams, params) of the decoder in `ckpt` (see `decoder_tensors`)."""
  hp, tensors = decoder_tensors(ckpt)
  return hp, place(tensors, _target(decoder_abstract(hp), dtype, shardings),
                   f"decoder from {ckpt.path}")


def load_hf_decoder(path: str, dtype: jnp.dtype = jnp.float32,
                    shardings: Optional[PyTree] = None) -> tuple[dict, PyTree]:
  """Loads a local Llama / Qwen2 checkpoint.

  Returns (hparams, params): `Decoder(**hparams)` is the matching module and
  `params` its parameter tree (the content of `variables['params']`), cast to
  `dtype` and placed with `shardings` (a NamedSharding tree shaped like params).
  """
  return load_decoder(Checkpoint(path), dtype, shardings)


def whisper_hparams_from_hf_config(config: dict) -> dict:
  """`AudioEncoder` keyword arguments for a Whisper `config.json` dict."""
  if config.get("model_type") != "whisper":
    raise NotImplementedError(f"encoder import supports whisper, not {config.get('model_type')!r}")
  if config.get("activation_function", "gelu") != "gelu":
    raise NotImplementedError(f"activation {config['activation_function']!r} is not supported")
  return dict(embed_dim=config["d_model"], num_layers=config["encoder_layers"],
              num_heads=config["encoder_attention_heads"], mlp_dim=config["encoder_ffn_dim"])


def whisper_tensors(ckpt: Checkpoint) -> tuple[dict, PyTree]:
  """(hparams, param tree of `Tensor`s) of the encoder of a Whisper checkpoint (full
  model or encoder only). The stored position table must be Whisper's fixed sinusoids,
  which the encoder recomputes."""
  path = ckpt.path
  hp = whisper_hparams_from_hf_config(ckpt.config)
  p = _prefix(ckpt, "conv1.weight")
  positions = ckpt.get(f"{p}embed_positions.weight")  # [max_positions, embed]
  atol = 1e-4 if positions.dtype == np.float32 else 1e-2  # fp16 / bf16 rounding of sinusoids
  if not np.allclose(np.asarray(positions, np.float32), sinusoidal_positions(*positions.shape),
                     atol=atol):
    raise ValueError(f"{path}: embed_positions are not Whisper's sinusoids; "
                     "learned encoder positions are not supported")
  heads_in, heads_out, bias = (hf_layout.heads_in(hp["num_heads"]),
                              hf_layout.heads_out(hp["num_heads"]),
                              hf_layout.heads_bias(hp["num_heads"]))

  def conv(name: str) -> dict:
    return {"kernel": _load(ckpt, f"{p}{name}.weight", hf_layout.CONV),
            "bias": _load(ckpt, f"{p}{name}.bias", hf_layout.PLAIN)}

  def linear(name: str) -> dict:
    return {"kernel": _load(ckpt, f"{name}.weight", hf_layout.DENSE),
            "bias": _load(ckpt, f"{name}.bias", hf_layout.PLAIN)}

  def layer_norm(name: str) -> dict:
    return {"scale": _load(ckpt, f"{name}.weight", hf_layout.PLAIN),
            "bias": _load(ckpt, f"{name}.bias", hf_layout.PLAIN)}

  params: dict = {"conv1": conv("conv1"), "conv2": conv("conv2"),
                  "layer_norm": layer_norm(f"{p}layer_norm")}
  for i in range(hp["num_layers"]):
    lp = f"{p}layers.{i}."
    params[f"layers_{i}"] = {
        "self_attn": {
            "q_proj": {"kernel": _load(ckpt, f"{lp}self_attn.q_proj.weight", heads_in),
                       "bias": _load(ckpt, f"{lp}self_attn.q_proj.bias", bias)},
            "k_proj": {"kernel": _load(ckpt, f"{lp}self_attn.k_proj.weight", heads_in)},
            "v_proj": {"kernel": _load(ckpt, f"{lp}self_attn.v_proj.weight", heads_in),
                       "bias": _load(ckpt, f"{lp}self_attn.v_proj.bias", bias)},
            "out_proj": {"kernel": _load(ckpt, f"{lp}self_attn.out_proj.weight", heads_out),
                         "bias": _load(ckpt, f"{lp}self_attn.out_proj.bias", hf_layout.PLAIN)},
        },
        "self_attn_layer_norm": layer_norm(f"{lp}self_attn_layer_norm"),
        "final_layer_norm": layer_norm(f"{lp}final_layer_norm"),
        "fc1": linear(f"{lp}fc1"), "fc2": linear(f"{lp}fc2"),
    }
  return hp, params


def whisper_abstract(hp: dict, n_mels: int) -> PyTree:
  """The param shapes of `AudioEncoder(**hp)` on `n_mels` mel bins."""
  return _abstract_params(AudioEncoder(**hp), jax.ShapeDtypeStruct((1, 2, n_mels), jnp.float32),
                          jax.ShapeDtypeStruct((1, 2), bool))


def load_hf_whisper_encoder(path: str, dtype: jnp.dtype = jnp.float32,
                            shardings: Optional[PyTree] = None) -> tuple[dict, PyTree]:
  """Loads the encoder of a local Whisper checkpoint (full model or encoder only).

  Returns (hparams, params) for `AudioEncoder(**hparams)`. The number of mel bins is
  `config.json`'s `num_mel_bins` (the encoder reads it from its input).
  """
  ckpt = Checkpoint(path)
  hp, tensors = whisper_tensors(ckpt)
  abstract = whisper_abstract(hp, ckpt.config["num_mel_bins"])
  return hp, place(tensors, _target(abstract, dtype, shardings), f"Whisper encoder from {path}")


def load_hf_tokenizer(path: str) -> Any:
  """A transformers tokenizer from a local directory (transformers is an extra)."""
  try:
    from transformers import AutoTokenizer
  except ImportError as e:
    raise ImportError("load_hf_tokenizer needs `transformers` (pip install transformers)") from e
  if not os.path.isdir(path):
    raise FileNotFoundError(f"tokenizer directory {path!r} does not exist")
  return AutoTokenizer.from_pretrained(path, local_files_only=True)
