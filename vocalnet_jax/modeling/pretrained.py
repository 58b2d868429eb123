"""Pretrained checkpoints as parts of a run: `hf:DIR` (Llama / Qwen2 or Whisper
safetensors) and `gguf:FILE` (a Llama GGUF file).

Two entry points, both driven by the config:
- `resolve_config`: `config.model.from_checkpoint = "hf:DIR" | "gguf:FILE"` fills the
  Thinker's shapes, RoPE, norm and vocabulary from the checkpoint's own config (HF
  config.json or GGUF metadata), and `config.encoder.from_checkpoint = "hf:DIR"` the
  encoder's from a Whisper config.json, so nobody copies numbers by hand.
  `config.model.added_tokens` rows are added to the checkpoint's vocabulary (new special
  tokens, e.g. an MDM mask): ids `checkpoint_vocab_size(source)` onwards.
- `load_part`: `init_from` parts (`thinker=hf:DIR`, `thinker=gguf:FILE`,
  `encoder=hf:DIR`) read tensor by tensor straight onto the run's shardings
  (`hf_import.place`). Vocabulary rows past the checkpoint's (added tokens and the
  padding to `vocab_multiple`) start as the mean of the checkpoint's embedding rows
  (and of its LM-head columns), the usual embedding-resize initialisation; rows of the
  checkpoint's own tokens are its values, so their logits are unchanged.

Any mismatch (another architecture, a config field the checkpoint disagrees with, a
tensor of another shape) is a ConfigError: one line naming the field or the tensor.
"""
from __future__ import annotations

import functools
from typing import Any, Union

import jax
import ml_collections
import numpy as np

from vocalnet_jax.modeling.validate import ConfigError
from vocalnet_jax.models import gguf_import, hf_import

PyTree = Any
KINDS = ("hf", "gguf")
PARTS = ("thinker", "encoder")  # what a pretrained checkpoint can provide
Checkpoint = Union[hf_import.Checkpoint, gguf_import.GGUFCheckpoint]
# Decoder hparams -> config.model fields (the same names)
DECODER_FIELDS = ("embed_dim", "num_layers", "num_heads", "num_kv_heads", "head_dim", "mlp_dim",
                  "rope_theta", "qkv_bias", "tie_embeddings", "norm_eps", "rope_scaling")
ENCODER_FIELDS = ("embed_dim", "num_layers", "num_heads", "mlp_dim", "n_mels", "stride")
_READ_ERRORS = (FileNotFoundError, ValueError, KeyError, NotImplementedError, ImportError)


def is_source(spec: str) -> bool:
  """Whether an `init_from` entry names a pretrained checkpoint (`hf:` / `gguf:`)."""
  kind, sep, path = spec.partition(":")
  return bool(sep) and kind in KINDS and bool(path)


@functools.lru_cache(maxsize=8)
def open_checkpoint(source: str) -> Checkpoint:
  """The checkpoint `source` names (opened once per process: a GGUF header is large)."""
  kind, _, path = source.partition(":")
  if not is_source(source):
    raise ConfigError(f"{source!r} is not a pretrained checkpoint: use hf:DIR or gguf:FILE")
  try:
    return hf_import.Checkpoint(path) if kind == "hf" else gguf_import.GGUFCheckpoint(path)
  except _READ_ERRORS as e:
    raise ConfigError(f"{source}: {_message(e)}") from None


def _message(e: Exception) -> str:
  return str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)


def decoder_hparams(source: str) -> dict:
  """`Decoder` keyword arguments of the Llama / Qwen2 checkpoint `source`."""
  try:
    return hf_import.decoder_hparams_from_hf_config(open_checkpoint(source).config)
  except _READ_ERRORS as e:
    raise ConfigError(f"{source} is not a Thinker checkpoint: {_message(e)}") from None


def checkpoint_vocab_size(source: str) -> int:
  """The checkpoint's vocabulary: added tokens take the ids from here on."""
  return decoder_hparams(source)["vocab_size"]


def encoder_hparams(source: str) -> dict:
  """`config.encoder` fields of the Whisper checkpoint `source` (Whisper's conv stride 2)."""
  ckpt = open_checkpoint(source)
  if not isinstance(ckpt, hf_import.Checkpoint):
    raise ConfigError(f"{source}: an encoder comes from an hf:DIR Whisper checkpoint")
  try:
    hp = hf_import.whisper_hparams_from_hf_config(ckpt.config)
    return dict(hp, n_mels=int(ckpt.config["num_mel_bins"]), stride=2)
  except _READ_ERRORS as e:
    raise ConfigError(f"{source} is not a Whisper encoder checkpoint: {_message(e)}") from None


def resolve_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """`config` with the Thinker's (and encoder's) fields taken from the checkpoints named
  by `from_checkpoint` (a copy; the same config when none is named)."""
  model_source = config.get("model", {}).get("from_checkpoint", "")
  encoder_source = config.get("encoder", {}).get("from_checkpoint", "")
  if not (model_source or encoder_source):
    return config
  out = config.copy_and_resolve_references()
  with out.unlocked():  # rope_scaling is a field only Llama-3 checkpoints need
    if model_source:
      hp = decoder_hparams(model_source)
      for field in DECODER_FIELDS:
        out.model[field] = hp[field]
      out.model.vocab_size = hp["vocab_size"] + int(out.model.get("added_tokens", 0))
    if encoder_source:
      for field, value in encoder_hparams(encoder_source).items():
        out.encoder[field] = value
  return out


def _disagreements(expected: dict, config: ml_collections.ConfigDict, fields: tuple[str, ...],
                   name: str) -> list[str]:
  def same(a, b):
    if isinstance(a, float) or isinstance(b, float):
      return a is not None and b is not None and np.isclose(float(a), float(b), rtol=1e-6)
    return (tuple(a) if isinstance(a, (list, tuple)) else a) == (
        tuple(b) if isinstance(b, (list, tuple)) else b)
  return [f"{name}.{f}={config.get(f)!r} (checkpoint: {expected[f]!r})" for f in fields
          if not same(config.get(f), expected[f])]


def _fit_error(source: str, section: str, wrong: list[str]) -> ConfigError:
  return ConfigError(f"{source} does not fit this model: {'; '.join(wrong)}; set "
                     f"config.{section}.from_checkpoint={source!r} to take its shapes")


def _mean_extended(tensor: hf_import.Tensor, size: int, axis: int) -> hf_import.Tensor:
  """`tensor` grown to `size` along `axis`, new entries the mean of the existing ones."""
  def read() -> np.ndarray:
    x = tensor.read()
    extra = size - x.shape[axis]
    if extra <= 0:
      return x  # equal, or smaller: `place` names the tensor
    mean = np.mean(x, axis=axis, keepdims=True, dtype=np.float32).astype(x.dtype)
    return np.concatenate([x, np.repeat(mean, extra, axis=axis)], axis=axis)
  return hf_import.Tensor(tensor.name, read)


def _stack_layers(tensors: dict, num_layers: int) -> dict:
  """Unscanned layer trees `layers_i` -> one `layers` tree of stacked leaves."""
  names = [f"layers_{i}" for i in range(num_layers)]
  out = {k: v for k, v in tensors.items() if k not in names}
  out["layers"] = jax.tree_util.tree_map(lambda *t: hf_import.stacked(t),
                                         *(tensors[n] for n in names))
  return out


def load_thinker(source: str, abstract: PyTree, config: ml_collections.ConfigDict) -> PyTree:
  """The Thinker's params from `source`, placed onto `abstract` (ShapeDtypeStructs with
  shardings; scanned or not, any vocabulary at least the checkpoint's)."""
  hp = decoder_hparams(source)
  wrong = _disagreements(hp, config.model, DECODER_FIELDS, "config.model")
  vocab = abstract["embed_tokens"]["embedding"].shape[0]
  if vocab < hp["vocab_size"]:
    wrong.append(f"vocabulary {vocab} < the checkpoint's {hp['vocab_size']}")
  if wrong:
    raise _fit_error(source, "model", wrong)
  _, tensors = hf_import.decoder_tensors(open_checkpoint(source))
  tensors["embed_tokens"]["embedding"] = _mean_extended(tensors["embed_tokens"]["embedding"],
                                                        vocab, axis=0)  # [vocab, embed]
  if "lm_head" in tensors:
    tensors["lm_head"]["kernel"] = _mean_extended(tensors["lm_head"]["kernel"], vocab,
                                                  axis=1)  # [embed, vocab]
  if "layers" in abstract:  # scan_layers
    tensors = _stack_layers(tensors, hp["num_layers"])
  return _place(tensors, abstract, f"thinker={source}")


def load_encoder(source: str, abstract: PyTree, config: ml_collections.ConfigDict) -> PyTree:
  """The audio encoder's params from the Whisper checkpoint `source`, onto `abstract`."""
  wrong = _disagreements(encoder_hparams(source), config.encoder, ENCODER_FIELDS,
                         "config.encoder")
  if wrong:
    raise _fit_error(source, "encoder", wrong)
  try:
    _, tensors = hf_import.whisper_tensors(open_checkpoint(source))
  except _READ_ERRORS as e:
    raise ConfigError(f"encoder={source}: {_message(e)}") from None
  return _place(tensors, abstract, f"encoder={source}")


def _place(tensors: PyTree, abstract: PyTree, what: str) -> PyTree:
  try:
    return hf_import.place(tensors, abstract, what)
  except _READ_ERRORS as e:
    raise ConfigError(_message(e) if what in _message(e) else f"{what}: {_message(e)}") from None


_LOADERS = {"thinker": load_thinker, "encoder": load_encoder}


def load_part(part: str, source: str, abstract: PyTree,
              config: ml_collections.ConfigDict) -> PyTree:
  """Params of `part` (a PARTS name) from the pretrained checkpoint `source`."""
  if part not in _LOADERS:
    raise ConfigError(f"config.init_from: {part}={source}: a pretrained checkpoint provides "
                      f"only {', '.join(PARTS)}")
  return _LOADERS[part](source, abstract, config)
