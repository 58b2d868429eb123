"""Llama/Qwen2-style decoder LM used as the Thinker (and, smaller, as the Talker).

The decoder knows nothing about diffusion: the objective decides the attention
mask and which tokens are `mask_id`. It accepts token ids or ready-made input
embeddings (audio frames spliced into the prompt) and returns logits, final hidden
states and, when given one, the updated KV cache.
"""
from __future__ import annotations

from typing import Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from vocalnet_jax.models import layers

Array = jax.Array


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
  remat: bool = False
  dtype: jnp.dtype = jnp.float32
  rope_scaling: layers.RopeScaling = None  # Llama-3 RoPE scaling, see layers.rope_inv_freq

  def setup(self):
    self.embedder = nn.Embed(
        self.vocab_size, self.embed_dim, dtype=self.dtype,
        embedding_init=nn.with_logical_partitioning(nn.initializers.normal(0.02),
                                                    ("vocab", "embed")),
        name="embed_tokens")
    layer_cls = nn.remat(layers.DecoderLayer) if self.remat else layers.DecoderLayer
    self.blocks = [
        layer_cls(self.num_heads, self.num_kv_heads, self.head_dim, self.mlp_dim,
                  self.rope_theta, self.qkv_bias, self.norm_eps, self.dtype, self.rope_scaling,
                  name=f"layers_{i}")
        for i in range(self.num_layers)
    ]
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
      tie_embeddings=cfg.tie_embeddings, norm_eps=cfg.norm_eps, remat=cfg.remat,
      dtype=jnp.dtype(cfg.dtype),
      rope_scaling=tuple(cfg.rope_scaling) if cfg.get("rope_scaling") else None)


def init_decoder_cache(model: Decoder, batch: int, max_len: int,
                       dtype: jnp.dtype = jnp.float32) -> list[layers.KVCache]:
  """Zero KV cache shaped for `model`."""
  return layers.init_kv_cache(batch, max_len, model.num_layers, model.num_kv_heads,
                              model.head_dim, dtype)
