"""The one table between our params and Hugging Face tensors: names and layouts.

`hf_import` reads a checkpoint through it (HF -> ours) and `hf_export` writes one
(ours -> HF), so a name or a transpose is defined once and the two stay inverse.

Layout conversions (torch Linear weight is [out, in]):
  q/k/v_proj [heads*head_dim, embed] <-> kernel [embed, heads, head_dim]
  o_proj / out_proj [embed, heads*head_dim] <-> kernel [heads, head_dim, embed]
  q/k/v bias [heads*head_dim] <-> [heads, head_dim]
  Linear [out, in] <-> Dense kernel [in, out]; Conv1d [out, in, k] <-> Conv kernel [k, in, out]
"""
from __future__ import annotations

import dataclasses

import numpy as np

ParamPath = tuple[str, ...]  # keys from the params root to a leaf, e.g. ("norm", "scale")


@dataclasses.dataclass(frozen=True)
class Layout:
  """How one HF tensor maps onto one of our params, and back."""
  kind: str  # plain | dense | heads_in | heads_out | heads_bias | conv
  heads: int = 0  # heads_*: the number of heads the flat axis holds

  def to_ours(self, w: np.ndarray) -> np.ndarray:
    if self.kind == "plain":
      return w
    if self.kind == "dense":
      return w.T  # [in, out]
    if self.kind == "heads_in":  # [heads*head_dim, embed] -> [embed, heads, head_dim]
      return w.T.reshape(w.shape[1], self.heads, w.shape[0] // self.heads)
    if self.kind == "heads_out":  # [embed, heads*head_dim] -> [heads, head_dim, embed]
      return w.T.reshape(self.heads, w.shape[1] // self.heads, w.shape[0])
    if self.kind == "heads_bias":  # [heads*head_dim] -> [heads, head_dim]
      return w.reshape(self.heads, -1)
    if self.kind == "conv":  # [out, in, k] -> [k, in, out]
      return w.transpose(2, 1, 0)
    raise ValueError(f"unknown layout {self.kind!r}")

  def to_hf(self, x: np.ndarray) -> np.ndarray:
    if self.kind == "plain":
      return x
    if self.kind == "dense":
      return x.T  # [out, in]
    if self.kind == "heads_in":  # [embed, heads, head_dim] -> [heads*head_dim, embed]
      return x.reshape(x.shape[0], -1).T
    if self.kind == "heads_out":  # [heads, head_dim, embed] -> [embed, heads*head_dim]
      return x.reshape(-1, x.shape[-1]).T
    if self.kind == "heads_bias":  # [heads, head_dim] -> [heads*head_dim]
      return x.reshape(-1)
    if self.kind == "conv":  # [k, in, out] -> [out, in, k]
      return x.transpose(2, 1, 0)
    raise ValueError(f"unknown layout {self.kind!r}")


PLAIN, DENSE, CONV = Layout("plain"), Layout("dense"), Layout("conv")


def heads_in(heads: int) -> Layout:
  return Layout("heads_in", heads)


def heads_out(heads: int) -> Layout:
  return Layout("heads_out", heads)


def heads_bias(heads: int) -> Layout:
  return Layout("heads_bias", heads)


def decoder_tensors(num_layers: int, num_heads: int, num_kv_heads: int, qkv_bias: bool,
                    tie_embeddings: bool, prefix: str = "model."
                    ) -> dict[ParamPath, tuple[str, Layout]]:
  """Our (unscanned) `Decoder` param path -> (Llama/Qwen2 tensor name, layout).

  `prefix` is what precedes `embed_tokens.weight` in the checkpoint ('model.' for a
  *ForCausalLM); the untied `lm_head.weight` sits at the root.
  """
  table: dict[ParamPath, tuple[str, Layout]] = {
      ("embed_tokens", "embedding"): (f"{prefix}embed_tokens.weight", PLAIN),
      ("norm", "scale"): (f"{prefix}norm.weight", PLAIN)}
  for i in range(num_layers):
    ours, hf = f"layers_{i}", f"{prefix}layers.{i}."
    heads = {"q_proj": num_heads, "k_proj": num_kv_heads, "v_proj": num_kv_heads}
    for name, n in heads.items():
      table[(ours, "self_attn", name, "kernel")] = (f"{hf}self_attn.{name}.weight", heads_in(n))
      if qkv_bias:
        table[(ours, "self_attn", name, "bias")] = (f"{hf}self_attn.{name}.bias", heads_bias(n))
    table[(ours, "self_attn", "o_proj", "kernel")] = (f"{hf}self_attn.o_proj.weight",
                                                      heads_out(num_heads))
    for name in ("gate_proj", "up_proj", "down_proj"):
      table[(ours, "mlp", name, "kernel")] = (f"{hf}mlp.{name}.weight", DENSE)
    table[(ours, "input_norm", "scale")] = (f"{hf}input_layernorm.weight", PLAIN)
    table[(ours, "post_attention_norm", "scale")] = (f"{hf}post_attention_layernorm.weight",
                                                     PLAIN)
  if not tie_embeddings:
    table[("lm_head", "kernel")] = ("lm_head.weight", DENSE)
  return table
