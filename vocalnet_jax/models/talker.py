"""The Talker: a small decoder that turns the Thinker's response into speech tokens.

Its input sequence is [fused text conditioning (N positions) ; speech tokens (S)].
Each conditioning position is `Linear(act(Linear([emb(text_j) ; thinker_hidden_j])))`.
Streaming (VocalNet): speech chunk k (chunk_size tokens) may see only text positions
< text_per_chunk * (k + 1), so speech can start before the text is finished.

Masks here are pure functions of shapes and indices, and the text-visibility rule is
kept apart from the speech-to-speech rule so it composes with any of them: causal (AR)
or the diffusion core's block-diffusion [x_t ; x_0] mask.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from vocalnet_jax.models import layers
from vocalnet_jax.models.decoder import Decoder

Array = jax.Array


def visible_text(chunk: Array | int, text_per_chunk: int) -> Array | int:
  """The streaming rule: speech chunk k may see text positions < text_per_chunk * (k + 1)."""
  return text_per_chunk * (chunk + 1)


def text_positions(slots: Array, chunk_size: int, text_per_chunk: int) -> Array:
  """RoPE position of text slot j: j * chunk_size // text_per_chunk (time-aligned)."""
  return slots * chunk_size // text_per_chunk


def talker_text_visibility(num_text: int, num_speech: int, chunk_size: int = 15,
                           text_per_chunk: int = 5) -> Array:
  """`visible_text` as bool[num_speech, num_text]: speech token i (chunk k = i // chunk_size)
  sees text position j iff j < text_per_chunk * (k + 1).

  For the [x_t ; x_0] training layout both halves index the same speech positions,
  so use `jnp.tile(vis, (2, 1))`.
  """
  chunk = jnp.arange(num_speech) // chunk_size  # [num_speech]
  return jnp.arange(num_text)[None, :] < visible_text(chunk[:, None], text_per_chunk)


def talker_attention_mask(text_visibility: Array, speech_mask: Array,
                          text_valid: Optional[Array] = None,
                          speech_valid: Optional[Array] = None) -> Array:
  """Full Talker mask over [text ; speech] queries and [text ; speech] keys.

  text_visibility: bool[S, N] (from `talker_text_visibility`, possibly tiled);
  speech_mask: bool[S, S_k] or [batch, S, S_k], any speech-to-speech rule (causal,
  block diffusion, a cache mask). Text attends causally to text and never to speech
  (text K/V must not change when later text or speech arrives). Optional validity
  masks text_valid [batch, N] and speech_valid [batch, S_k] hide padded keys.
  Returns bool[batch, N + S, N + S_k] (batch = 1 without validity masks).
  """
  num_speech, num_text = text_visibility.shape
  speech_mask = jnp.broadcast_to(speech_mask, (1,) * (3 - speech_mask.ndim) + speech_mask.shape)
  batch, _, num_speech_keys = speech_mask.shape
  text_rows = jnp.concatenate([
      jnp.tril(jnp.ones((num_text, num_text), bool)),
      jnp.zeros((num_text, num_speech_keys), bool)], axis=1)  # [N, N + S_k]
  text_rows = jnp.broadcast_to(text_rows, (batch,) + text_rows.shape)
  speech_rows = jnp.concatenate([
      jnp.broadcast_to(text_visibility, (batch, num_speech, num_text)), speech_mask],
                                axis=2)  # [batch, S, N + S_k]
  mask = jnp.concatenate([text_rows, speech_rows], axis=1)  # [batch, N + S, N + S_k]
  if text_valid is not None or speech_valid is not None:
    text_valid = jnp.ones((1, num_text), bool) if text_valid is None else text_valid
    speech_valid = jnp.ones((1, num_speech_keys), bool) if speech_valid is None else speech_valid
    b = max(text_valid.shape[0], speech_valid.shape[0])
    key_valid = jnp.concatenate([jnp.broadcast_to(text_valid, (b, num_text)),
                                 jnp.broadcast_to(speech_valid, (b, num_speech_keys))],
                                axis=1)  # [batch, N + S_k]
    mask = mask & key_valid[:, None, :]
  return mask


def talker_positions(num_text: int, num_speech: int, chunk_size: int = 15,
                     text_per_chunk: int = 5) -> tuple[Array, Array]:
  """Time-aligned RoPE positions: speech i at i, text j at j * chunk_size // text_per_chunk.

  Positions do not depend on the (unknown while streaming) total text length, and
  the last text position a chunk may see lies inside that chunk's position range.
  Returns (text positions int32[N], speech positions int32[S]).
  """
  text = text_positions(jnp.arange(num_text, dtype=jnp.int32), chunk_size, text_per_chunk)
  return text, jnp.arange(num_speech, dtype=jnp.int32)


class TalkerFusion(nn.Module):
  """Linear(act(Linear([text_emb ; thinker_hidden]))) per response text position."""
  out_dim: int
  hidden_dim: int
  activation: Callable[[Array], Array] = nn.silu
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, text_embeddings: Array, thinker_hidden: Array) -> Array:
    """text_embeddings: [batch, N, d_emb], thinker_hidden: [batch, N, d_thinker] -> [batch, N, out]
    (the Thinker's response-text embeddings and final hidden states, position by position)."""
    bias = lambda names: nn.with_logical_partitioning(nn.initializers.zeros, names)  # noqa: E731
    x = jnp.concatenate([text_embeddings.astype(self.dtype), thinker_hidden.astype(self.dtype)],
                        axis=-1)  # [batch, N, d_emb + d_thinker]
    h = nn.Dense(self.hidden_dim, dtype=self.dtype, kernel_init=layers._kernel(("embed", "mlp")),
                 bias_init=bias(("mlp",)), name="fc1")(x)  # [batch, N, hidden]
    h = nn.with_logical_constraint(self.activation(h), ("batch", "length", "mlp"))
    out = nn.Dense(self.out_dim, dtype=self.dtype, kernel_init=layers._kernel(("mlp", "embed")),
                   bias_init=bias(("embed",)), name="fc2")(h)  # [batch, N, out]
    return nn.with_logical_constraint(out, ("batch", "length", "embed"))


class Talker(nn.Module):
  """Fusion + a `Decoder` over [fused text conditioning ; speech tokens].

  `decoder` is an unbound Decoder whose vocabulary is the speech vocabulary (plus
  the diffusion `mask_id`); the fusion maps onto its width.
  """
  decoder: Decoder
  fusion_hidden_dim: int
  fusion_activation: Callable[[Array], Array] = nn.silu
  thinker_states: bool = True  # False: the conditioning reads the text alone (states zeroed)

  def setup(self):
    self.fusion = TalkerFusion(self.decoder.embed_dim, self.fusion_hidden_dim,
                               self.fusion_activation, self.decoder.dtype)

  def fuse(self, text_embeddings: Array, thinker_hidden: Array) -> Array:
    """[batch, N, d_emb], [batch, N, d_thinker] -> conditioning [batch, N, embed]."""
    if not self.thinker_states:
      thinker_hidden = jnp.zeros_like(thinker_hidden)
    return self.fusion(text_embeddings, thinker_hidden)

  def __call__(self, speech_tokens: Optional[Array], positions: Array, mask: Array, *,
               text_embeddings: Optional[Array] = None, thinker_hidden: Optional[Array] = None,
               cache: Optional[Sequence[layers.KVCache]] = None,
               cache_index: Optional[Array] = None,
               ) -> tuple[Array, Array, Optional[list[layers.KVCache]]]:
    """Runs the Talker on [fuse(text, hidden) ; embed(speech_tokens)].

    Either part may be absent (conditioning prefill: no speech; decode step with a
    cache: no text). positions: [batch, N + S]; mask: [batch, N + S, k_len].
    Returns (speech logits [batch, S, vocab], hidden [batch, N + S, embed], cache).
    """
    parts = []
    if text_embeddings is not None:
      parts.append(self.fuse(text_embeddings, thinker_hidden))  # [batch, N, embed]
    if speech_tokens is not None:
      parts.append(self.decoder.embed(speech_tokens))  # [batch, S, embed]
    x = jnp.concatenate(parts, axis=1)  # [batch, N + S, embed]
    hidden, new_cache = self.decoder.hidden_states(None, positions, mask, embeddings=x,
                                                   cache=cache, cache_index=cache_index)
    num_speech = 0 if speech_tokens is None else speech_tokens.shape[1]
    logits = self.decoder.logits(hidden[:, hidden.shape[1] - num_speech:])  # [batch, S, vocab]
    return logits, hidden, new_cache
