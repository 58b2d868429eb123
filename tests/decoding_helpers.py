"""A tiny random Thinker and no-cache reference decoders for the decoding tests."""
from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from data_pipelines.synthetic_text import CharTokenizer, pack_example
from configs.common import model_config
from vocalnet_jax.diffusion import attention_masks
from vocalnet_jax.models.decoder import Decoder, decoder_from_config

TOK = CharTokenizer()
VOCAB = 64


@functools.lru_cache(maxsize=None)
def tiny_model(logit_scale: float = 30.0) -> tuple[Decoder, dict]:
  """Random tiny decoder; the LM head is scaled so logits are spread (no near-ties
  between cached and uncached numerics)."""
  model = decoder_from_config(model_config("tiny"), VOCAB)
  tokens = jnp.zeros((1, 4), jnp.int32)
  params = jax.jit(lambda r: model.init(r, tokens, jnp.zeros((1, 4), jnp.int32),
                                        jnp.ones((1, 4, 4), bool)))(jax.random.key(0))
  params = nn.unbox(params)["params"]
  params["lm_head"]["kernel"] = params["lm_head"]["kernel"] * logit_scale
  return model, params


def prompts(questions: list[str], prompt_len: int = 16) -> tuple[jax.Array, jax.Array]:
  """Left-padded prompt ids [batch, P] and validity [batch, P]."""
  rows = [pack_example([TOK.bos_id, TOK.user_id] + TOK.encode(q) + [TOK.assistant_id],
                       [TOK.eos_id], prompt_len, 1, TOK.pad_id) for q in questions]
  return (jnp.asarray(np.stack([r["prompt"] for r in rows])),
          jnp.asarray(np.stack([r["prompt_valid"] for r in rows])))


@functools.partial(jax.jit, static_argnames=("model", "block_size"))
def full_logits(model: Decoder, params: dict, prefix: jax.Array, prefix_valid: jax.Array,
                body: jax.Array, block_size: int) -> jax.Array:
  """No-cache forward over [prefix ; body] with the block-causal mask (block_size=1 is
  causal). Returns logits [batch, N + 1, vocab] of positions P-1 .. P+N-1: index i is
  the AR prediction of body token i and the MDM prediction of body token i - 1."""
  n = body.shape[1]
  mask = attention_masks.with_prefix(attention_masks.block_causal_mask(n, block_size),
                                     prefix_valid, jnp.ones(body.shape, bool))
  positions = attention_masks.prefix_positions(prefix_valid, n)
  logits, _, _ = model.apply({"params": params}, jnp.concatenate([prefix, body], 1), positions,
                             mask)
  return logits[:, prefix.shape[1] - 1:]  # position p predicts AR token p+1
