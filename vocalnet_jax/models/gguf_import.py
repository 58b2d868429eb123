"""Import a Llama-architecture GGUF file (llama.cpp's format) as a `Decoder`.

`GGUFCheckpoint` shows the file as a Hugging Face Llama checkpoint: an HF-style `config`
dict built from the GGUF metadata and `get(hf_name)` returning the HF tensor, dequantised
with the `gguf` package (F32, F16, Q8_0, Q4_1, ... anything `gguf.quants.dequantize`
reads), so `hf_import.decoder_tensors` and the one name/layout table of `hf_layout` do the
rest. The file is memory-mapped and each tensor dequantised when it is read.

llama.cpp's converter permutes the rows of `attn_q` / `attn_k` for its interleaved RoPE
(pairs (2i, 2i+1)); our layers, like HF's, rotate halves (i, i + head_dim/2).
`unpermute_rope_rows` undoes the converter's `permute_rope_rows`.
"""
from __future__ import annotations

import os
import re
from typing import Any

import numpy as np

ARCHITECTURE = "llama"

# HF tensor name (after the 'model.' prefix, layer 'N') -> GGUF tensor name.
_GLOBAL = {"model.embed_tokens.weight": "token_embd.weight",
           "model.norm.weight": "output_norm.weight", "lm_head.weight": "output.weight"}
_LAYER = {"self_attn.q_proj.weight": "attn_q.weight", "self_attn.k_proj.weight": "attn_k.weight",
          "self_attn.v_proj.weight": "attn_v.weight",
          "self_attn.o_proj.weight": "attn_output.weight",
          "mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight",
          "mlp.down_proj.weight": "ffn_down.weight",
          "input_layernorm.weight": "attn_norm.weight",
          "post_attention_layernorm.weight": "ffn_norm.weight"}
_LAYER_NAME = re.compile(r"model\.layers\.(\d+)\.(.+)")


def permute_rope_rows(w: np.ndarray, heads: int) -> np.ndarray:
  """llama.cpp's converter (HF -> GGUF): per head, rows (half, pair) become (pair, half).
  w: [heads*head_dim, ...]."""
  return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(
      w.shape)


def unpermute_rope_rows(w: np.ndarray, heads: int) -> np.ndarray:
  """The inverse (GGUF -> HF): interleaved-pair rows back to rotate-half order.
  w: [heads*head_dim, ...]."""
  return w.reshape(heads, w.shape[0] // heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(
      w.shape)


def _gguf():
  try:
    import gguf
  except ImportError as e:  # a pinned install requirement; a clear line if it is missing
    raise ImportError("reading GGUF files needs the `gguf` package (pip install gguf)") from e
  return gguf


class GGUFCheckpoint:
  """A Llama GGUF file seen as an HF checkpoint (`config`, `keys()`, `get(name)`)."""

  def __init__(self, path: str):
    if not os.path.isfile(path):
      raise FileNotFoundError(f"GGUF file {path!r} does not exist")
    gguf = _gguf()
    self.path = path
    try:
      self._reader = gguf.GGUFReader(path)
    except (ValueError, OSError) as e:  # wrong magic, truncated file
      raise ValueError(f"{path!r} is not a readable GGUF file: {e}") from None
    arch = self.field("general.architecture")
    if arch != ARCHITECTURE:
      raise NotImplementedError(f"GGUF {path!r} has architecture {arch!r}; only "
                                f"{ARCHITECTURE!r} is supported")
    if self.field("llama.rope.scaling.type", "none") not in ("none", "linear") or (
        self.field("llama.rope.scaling.factor", 1.0) != 1.0) or "rope_freqs.weight" in (
            t.name for t in self._reader.tensors):
      raise NotImplementedError(f"GGUF {path!r}: RoPE scaling is not supported")
    self._tensors = {t.name: t for t in self._reader.tensors}
    self.config = self._hf_config()
    self._heads = {"q_proj": self.config["num_attention_heads"],
                   "k_proj": self.config["num_key_value_heads"]}

  def field(self, key: str, default: Any = None) -> Any:
    """A metadata value (scalar, string or list), `default` if absent."""
    f = self._reader.fields.get(key)
    return default if f is None else f.contents()

  def _hf_config(self) -> dict:
    """The metadata as a Llama `config.json` dict."""
    def need(key: str) -> Any:
      value = self.field(f"llama.{key}")
      if value is None:
        raise KeyError(f"GGUF {self.path!r} has no metadata 'llama.{key}'")
      return value

    heads = int(need("attention.head_count"))
    embed = int(need("embedding_length"))
    vocab = self.field("llama.vocab_size") or self._tensors["token_embd.weight"].shape[-1]
    return dict(
        model_type="llama", vocab_size=int(vocab), hidden_size=embed,
        intermediate_size=int(need("feed_forward_length")),
        num_hidden_layers=int(need("block_count")), num_attention_heads=heads,
        num_key_value_heads=int(self.field("llama.attention.head_count_kv", heads)),
        head_dim=int(self.field("llama.rope.dimension_count", embed // heads)),
        rope_theta=float(self.field("llama.rope.freq_base", 10000.0)),
        # stored as float32 (9.99999975e-06 for 1e-5): read back at float32 precision
        rms_norm_eps=float(f"{float(need('attention.layer_norm_rms_epsilon')):.7g}"),
        tie_word_embeddings="output.weight" not in self._tensors, hidden_act="silu")

  def _gguf_name(self, name: str) -> str:
    if name in _GLOBAL:
      return _GLOBAL[name]
    match = _LAYER_NAME.fullmatch(name)
    if match and match.group(2) in _LAYER:
      return f"blk.{match.group(1)}.{_LAYER[match.group(2)]}"
    raise KeyError(f"tensor {name!r} has no GGUF counterpart")

  def keys(self) -> list[str]:
    inverse = {v: k for k, v in _GLOBAL.items()}
    out = []
    for name in self._tensors:
      if name in inverse:
        out.append(inverse[name])
      elif (m := re.fullmatch(r"blk\.(\d+)\.(.+)", name)):
        out += [f"model.layers.{m.group(1)}.{hf}" for hf, g in _LAYER.items() if g == m.group(2)]
    return out

  def get(self, name: str) -> np.ndarray:
    """HF tensor `name` as float32 [out, in] (torch layout), dequantised and, for q/k,
    un-permuted to rotate-half order."""
    gguf_name = self._gguf_name(name)
    if gguf_name not in self._tensors:
      raise KeyError(f"tensor {gguf_name!r} (HF {name!r}) not found in GGUF {self.path!r}")
    tensor = self._tensors[gguf_name]
    w = _gguf().quants.dequantize(tensor.data, tensor.tensor_type)
    w = np.asarray(w, np.float32).reshape(tuple(int(d) for d in reversed(tensor.shape)))
    proj = name.rsplit(".", 2)[-2]
    return unpermute_rope_rows(w, self._heads[proj]) if proj in self._heads else w

