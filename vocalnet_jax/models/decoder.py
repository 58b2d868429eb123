"""Llama/Qwen2-style decoder LM used as the Thinker (and, smaller, as the Talker).

The decoder knows nothing about diffusion: the objective decides the attention
mask and which tokens are `mask_id`. It accepts token ids or ready-made input
embeddings (audio frames spliced into the prompt) and returns logits, final hidden
states and, when given one, the updated KV cache.

`scan_layers` runs the N layers as one `nn.scan` (params stacked under `layers` with a
leading `layers` axis: one layer is compiled once, whatever the depth); `scan_params` /
`unscan_params` convert checkpoints between the two layouts (`hf_import` writes the
unscanned one). `remat_policy` rematerialises each layer in the backward pass: `none`,
`full` (save nothing) or `save_dots` (keep matmul outputs), as MaxText's knob.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from vocalnet_jax.models import layers

Array = jax.Array
REMAT_POLICIES = {"none": None, "full": jax.checkpoint_policies.nothing_saveable,
                  "save_dots": jax.checkpoint_policies.checkpoint_dots}


def remat_layer(layer_cls: type, policy: str, scanned: bool) -> type:
  """The layer class rematerialised with `policy` (a REMAT_POLICIES name)."""
  if policy not in REMAT_POLICIES:
    raise ValueError(f"remat_policy={policy!r}; choose from {tuple(REMAT_POLICIES)}")
  if policy == "none":
    return layer_cls
  return nn.remat(layer_cls, policy=REMAT_POLICIES[policy], prevent_cse=not scanned)


class Decoder(nn.Module):
  """Token embedding -> N pre-norm decoder layers -> RMSNorm -> LM head."""
  vocab_size: int
  embed_dim: int
  num_layers: int
  num_heads: int
  num_kv_heads: int
  head_dim: int
  mlp_dim: int
  rope_theta: float = 10000.0
  qkv_bias: bool = False
  tie_embeddings: bool = False
  norm_eps: float = 1e-6
  remat_policy: str = "none"
  scan_layers: bool = False
  dtype: jnp.dtype = jnp.float32
  rope_scaling: layers.RopeScaling = None  # Llama-3 RoPE scaling, see layers.rope_inv_freq
  attention_impl: str = "einsum"  # layers.ATTENTION_IMPLS: einsum | xla | cudnn

  def setup(self):
    self.embedder = nn.Embed(
        self.vocab_size, self.embed_dim, dtype=self.dtype,
        embedding_init=nn.with_logical_partitioning(nn.initializers.normal(0.02),
                                                    ("vocab", "embed")),
        name="embed_tokens")
    layer_cls = remat_layer(layers.DecoderLayer, self.remat_policy, self.scan_layers)
    args = (self.num_heads, self.num_kv_heads, self.head_dim, self.mlp_dim, self.rope_theta,
            self.qkv_bias, self.norm_eps, self.dtype, self.rope_scaling, self.attention_impl)
    if self.scan_layers:
      self.stack = nn.scan(
          layer_cls, variable_axes={"params": 0}, split_rngs={"params": True},
          in_axes=(nn.broadcast, nn.broadcast, 0, nn.broadcast), length=self.num_layers,
          metadata_params={nn.PARTITION_NAME: "layers"})(*args, name="layers")
    else:
      self.blocks = [layer_cls(*args, name=f"layers_{i}") for i in range(self.num_layers)]
    self.final_norm = layers.RMSNorm(self.norm_eps, self.dtype, name="norm")
    if not self.tie_embeddings:
      self.lm_head = nn.Dense(
          self.vocab_size, use_bias=False, dtype=self.dtype,
          kernel_init=nn.with_logical_partitioning(nn.initializers.normal(0.02),
                                                   ("embed", "vocab")),
          name="lm_head")

  def embed(self, tokens: Array) -> Array:
    """tokens: [batch, length] -> [batch, length, embed]."""
    return self.embedder(tokens)

  def logits(self, hidden: Array) -> Array:
    """hidden: [batch, length, embed] (already normed) -> [batch, length, vocab] float32."""
    if self.tie_embeddings:
      out = self.embedder.attend(hidden)
    else:
      out = self.lm_head(hidden)
    return nn.with_logical_constraint(out.astype(jnp.float32), ("batch", "length", "vocab"))

  def hidden_states(self, tokens: Optional[Array], positions: Array, mask: Array, *,
                    embeddings: Optional[Array] = None,
                    cache: Optional[Sequence[layers.KVCache]] = None,
                    cache_index: Optional[Array] = None,
                    ) -> tuple[Array, Optional[list[layers.KVCache]]]:
    """Final-normed hidden states [batch, length, embed] (and the updated cache).

    Callers that score only part of the sequence take `logits` of that slice, so the
    vocabulary projection is not paid on context positions.
    """
    x = self.embed(tokens) if embeddings is None else embeddings.astype(self.dtype)
    x = nn.with_logical_constraint(x, ("batch", "length", "embed"))
    if self.scan_layers:  # the per-layer cache list is stacked to [layers, ...] and back
      stacked = None if cache is None else jax.tree_util.tree_map(
          lambda *c: jnp.stack(c), *cache)
      x, stacked = self.stack(x, positions, mask, stacked, cache_index)
      new_cache = None if cache is None else [
          jax.tree_util.tree_map(lambda c, i=i: c[i], stacked) for i in range(self.num_layers)]
      return self.final_norm(x), new_cache
    new_cache = [] if cache is not None else None
    for i, block in enumerate(self.blocks):
      x, layer_cache = block(x, positions, mask, None if cache is None else cache[i], cache_index)
      if cache is not None:
        new_cache.append(layer_cache)
    return self.final_norm(x), new_cache

  def __call__(self, tokens: Optional[Array], positions: Array, mask: Array, *,
               embeddings: Optional[Array] = None,
               cache: Optional[Sequence[layers.KVCache]] = None,
               cache_index: Optional[Array] = None,
               ) -> tuple[Array, Array, Optional[list[layers.KVCache]]]:
    """Runs the decoder.

    tokens: [batch, length] ids, or None when `embeddings` [batch, length, embed] is given.
    positions: [batch, length] RoPE positions. mask: [batch, length, k_len] boolean.
    Returns (logits [batch, length, vocab], hidden [batch, length, embed], new cache or None).
    """
    hidden, new_cache = self.hidden_states(tokens, positions, mask, embeddings=embeddings,
                                           cache=cache, cache_index=cache_index)
    return self.logits(hidden), hidden, new_cache


def decoder_from_config(cfg: ml_collections.ConfigDict, vocab_size: int) -> Decoder:
  """Builds a Decoder from a `config.model`-style ConfigDict."""
  return Decoder(
      vocab_size=vocab_size, embed_dim=cfg.embed_dim, num_layers=cfg.num_layers,
      num_heads=cfg.num_heads, num_kv_heads=cfg.num_kv_heads, head_dim=cfg.head_dim,
      mlp_dim=cfg.mlp_dim, rope_theta=cfg.rope_theta, qkv_bias=cfg.qkv_bias,
      tie_embeddings=cfg.tie_embeddings, norm_eps=cfg.norm_eps,
      remat_policy=cfg.remat_policy, scan_layers=cfg.scan_layers, dtype=jnp.dtype(cfg.dtype),
      rope_scaling=tuple(cfg.rope_scaling) if cfg.get("rope_scaling") else None,
      attention_impl=cfg.get("attention_impl", "einsum"))


def init_decoder_cache(model: Decoder, batch: int, max_len: int,
                       dtype: jnp.dtype = jnp.float32) -> list[layers.KVCache]:
  """Zero KV cache shaped for `model`."""
  return layers.init_kv_cache(batch, max_len, model.num_layers, model.num_kv_heads,
                              model.head_dim, dtype)


def scan_params(params: dict[str, Any], num_layers: int) -> dict[str, Any]:
  """Unscanned decoder params (`layers_0` .. `layers_{N-1}`) -> scanned (`layers`, each
  leaf with a leading [num_layers] axis); other entries are kept."""
  names = [f"layers_{i}" for i in range(num_layers)]
  if any(n not in params for n in names):
    raise ValueError(f"expected unscanned decoder params {names[0]}..{names[-1]}, got "
                     f"{sorted(params)}")
  out = {k: v for k, v in params.items() if k not in names}
  out["layers"] = jax.tree_util.tree_map(lambda *x: jnp.stack(x), *(params[n] for n in names))
  return out


def unscan_params(params: dict[str, Any]) -> dict[str, Any]:
  """Scanned decoder params (`layers`) -> `layers_0` .. `layers_{N-1}`."""
  if "layers" not in params:
    raise ValueError(f"expected scanned decoder params ('layers'), got {sorted(params)}")
  stacked = params["layers"]
  count = jax.tree_util.tree_leaves(stacked)[0].shape[0]
  out = {k: v for k, v in params.items() if k != "layers"}
  out.update({f"layers_{i}": jax.tree_util.tree_map(lambda x, i=i: x[i], stacked)
              for i in range(count)})
  return out
