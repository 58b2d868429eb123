"""Import Hugging Face checkpoints from a local directory (no hub access).

Supported: Llama and Qwen2 decoders -> `decoder.Decoder`, the Whisper encoder ->
`encoder.AudioEncoder`. A checkpoint directory holds `config.json` and one or more
`*.safetensors` files (sharded ones via `model.safetensors.index.json`). Tensors are
read one at a time with the safetensors numpy API, converted to our layout and,
when a sharding tree is given, placed shard by shard, so host memory holds about
one tensor at a time. The converted tree is checked against the module's abstract
init (same keys, same shapes) before it is returned.

Names and layout conversions: `hf_layout` (shared with `hf_export`).
"""
from __future__ import annotations

import json
import os
from typing import Any, Callable, Optional

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
Thunk = Callable[[], np.ndarray]


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
    """Tensor `name` as float32 numpy (bfloat16 has no numpy dtype, so it is read through
    safetensors' flax API on the host CPU and converted)."""
    if name not in self._file_of:
      raise KeyError(f"tensor {name!r} not found in HF checkpoint {self.path!r}")
    file = self._file_of[name]
    if not os.path.isfile(file):
      raise FileNotFoundError(f"HF checkpoint {self.path!r}: file {file!r} (holding {name!r}) "
                              "is missing")
    with safe_open(file, framework="np") as f:
      if f.get_slice(name).get_dtype() != "BF16":
        return f.get_tensor(name).astype(np.float32)
    with jax.default_device(jax.devices("cpu")[0]), safe_open(file, framework="flax") as f:
      return np.asarray(f.get_tensor(name), np.float32)


def _prefix(ckpt: Checkpoint, suffix: str) -> str:
  """The key prefix in front of `suffix` (e.g. 'model.' or 'model.encoder.')."""
  matches = sorted(k[:-len(suffix)] for k in ckpt.keys() if k.endswith(suffix))
  if not matches:
    raise KeyError(f"HF checkpoint {ckpt.path!r} has no tensor named '*{suffix}'")
  return matches[0]


def _load(ckpt: Checkpoint, name: str, layout: hf_layout.Layout) -> Thunk:
  """Tensor `name`, read when called, in our layout."""
  return lambda: layout.to_ours(ckpt.get(name))


def _check_and_place(thunks: PyTree, abstract: PyTree, dtype: jnp.dtype,
                     shardings: Optional[PyTree], what: str) -> PyTree:
  """Checks key/shape agreement with the model's abstract params, then materialises
  each tensor (cast to `dtype`) directly into its sharding (or the default device)."""
  expected = jax.tree_util.tree_structure(abstract)
  got = jax.tree_util.tree_structure(thunks)
  if expected != got:
    raise ValueError(f"{what}: converted parameter tree does not match the model.\n"
                     f"model: {expected}\nconverted: {got}")
  if shardings is not None and jax.tree_util.tree_structure(shardings) != expected:
    raise ValueError(f"{what}: sharding tree does not match the parameter tree")
  flat_thunks, treedef = jax.tree_util.tree_flatten(thunks)
  flat_abstract = jax.tree_util.tree_leaves(abstract)
  flat_shardings = ([None] * len(flat_thunks) if shardings is None
                    else jax.tree_util.tree_leaves(shardings))
  paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(abstract)[0]]
  out = []
  for path, thunk, spec, sharding in zip(paths, flat_thunks, flat_abstract, flat_shardings):
    x = thunk().astype(dtype)
    if x.shape != spec.shape:
      raise ValueError(f"{what}: {path} has shape {x.shape} in the checkpoint, "
                       f"the model expects {spec.shape}")
    out.append(jnp.asarray(x) if sharding is None else
               jax.make_array_from_callback(x.shape, sharding, lambda idx, x=x: x[idx]))
  return jax.tree_util.tree_unflatten(treedef, out)


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


def load_hf_decoder(path: str, dtype: jnp.dtype = jnp.float32,
                    shardings: Optional[PyTree] = None) -> tuple[dict, PyTree]:
  """Loads a local Llama / Qwen2 checkpoint.

  Returns (hparams, params): `Decoder(**hparams)` is the matching module and
  `params` its parameter tree (the content of `variables['params']`), cast to
  `dtype` and placed with `shardings` (a NamedSharding tree shaped like params).
  """
  ckpt = Checkpoint(path)
  hp = decoder_hparams_from_hf_config(ckpt.config)
  table = hf_layout.decoder_tensors(
      hp["num_layers"], hp["num_heads"], hp["num_kv_heads"], hp["qkv_bias"],
      hp["tie_embeddings"], prefix=_prefix(ckpt, "embed_tokens.weight"))
  params = traverse_util.unflatten_dict({path: _load(ckpt, name, layout)
                                         for path, (name, layout) in table.items()})
  tokens = jax.ShapeDtypeStruct((1, 1), jnp.int32)
  abstract = _abstract_params(Decoder(**hp), tokens, tokens, jax.ShapeDtypeStruct((1, 1, 1), bool))
  return hp, _check_and_place(params, abstract, dtype, shardings, f"{hp} from {path}")


def whisper_hparams_from_hf_config(config: dict) -> dict:
  """`AudioEncoder` keyword arguments for a Whisper `config.json` dict."""
  if config.get("model_type") != "whisper":
    raise NotImplementedError(f"encoder import supports whisper, not {config.get('model_type')!r}")
  if config.get("activation_function", "gelu") != "gelu":
    raise NotImplementedError(f"activation {config['activation_function']!r} is not supported")
  return dict(embed_dim=config["d_model"], num_layers=config["encoder_layers"],
              num_heads=config["encoder_attention_heads"], mlp_dim=config["encoder_ffn_dim"])


def load_hf_whisper_encoder(path: str, dtype: jnp.dtype = jnp.float32,
                            shardings: Optional[PyTree] = None) -> tuple[dict, PyTree]:
  """Loads the encoder of a local Whisper checkpoint (full model or encoder only).

  Returns (hparams, params) for `AudioEncoder(**hparams)`. The number of mel bins is
  `config.json`'s `num_mel_bins` (the encoder reads it from its input). The stored
  position table must be Whisper's fixed sinusoids, which the encoder recomputes.
  """
  ckpt = Checkpoint(path)
  hp = whisper_hparams_from_hf_config(ckpt.config)
  p = _prefix(ckpt, "conv1.weight")
  positions = ckpt.get(f"{p}embed_positions.weight")  # [max_positions, embed]
  if not np.allclose(positions, sinusoidal_positions(*positions.shape), atol=1e-4):
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
  n_mels = ckpt.config["num_mel_bins"]
  abstract = _abstract_params(AudioEncoder(**hp), jax.ShapeDtypeStruct((1, 2, n_mels), jnp.float32),
                              jax.ShapeDtypeStruct((1, 2), bool))
  return hp, _check_and_place(params, abstract, dtype, shardings, f"Whisper encoder from {path}")


def load_hf_tokenizer(path: str) -> Any:
  """A transformers tokenizer from a local directory (transformers is an extra)."""
  try:
    from transformers import AutoTokenizer
  except ImportError as e:
    raise ImportError("load_hf_tokenizer needs `transformers` (pip install transformers)") from e
  if not os.path.isdir(path):
    raise FileNotFoundError(f"tokenizer directory {path!r} does not exist")
  return AutoTokenizer.from_pretrained(path, local_files_only=True)
