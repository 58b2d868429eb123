"""Block-diffusion decoding: blocks of B tokens, each denoised from all-[MASK] in <= S steps.

`decode_block` is the unit the streaming pipeline and the Talker call with their own
cache and visibility: the block's queries see the visible cache slots (prefix and
finished blocks) and themselves bidirectionally. Every denoising step writes the
block's K/V into its slots [write_index, write_index + B); nothing else can see those
slots until the caller marks them visible, i.e. until the block is clean. Which K/V
stay there is the `cache_update` knob:
  extra_forward    one more forward on the clean block (exact, NFE + 1 per block);
  reuse_last_step  keep the last denoising step's K/V, computed while the tokens
                   committed at that step were still [MASK] (approximate, no extra NFE).
`generate` chains blocks in a `lax.while_loop` that stops after the block holding
eos. One compile per (config, shapes): blocks and requests reuse it.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp

from vocalnet_jax.decoding import step_rules
from vocalnet_jax.decoding.lm import (Cache, CachedLM, DecodeOutput, context_keys, finalize,
                                      prefill)

Array = jax.Array
CACHE_UPDATES = ("extra_forward", "reuse_last_step")


@dataclasses.dataclass(frozen=True)
class BlockDiffusionConfig:
  """Sampler knobs (hashable: a static jit argument)."""
  block_size: int
  steps: int  # S: at most S forwards per block (the threshold rule may use fewer)
  mask_id: int
  eos_id: int
  rule: str = "topk"  # topk | threshold | ancestral (see step_rules)
  threshold: float = 0.9
  temperature: float = 0.0
  schedule: str = "linear"
  cache_update: str = "extra_forward"  # extra_forward | reuse_last_step

  def __post_init__(self):
    if not 1 <= self.steps <= self.block_size:
      raise ValueError(f"steps={self.steps} must be in [1, block_size={self.block_size}]")
    if self.rule not in step_rules.RULES:
      raise ValueError(f"rule={self.rule!r}: choose from {step_rules.RULES}")
    if self.cache_update not in CACHE_UPDATES:
      raise ValueError(f"cache_update={self.cache_update!r}: choose from {CACHE_UPDATES}")

  @property
  def step_rule(self) -> step_rules.StepRule:
    return step_rules.get_rule(self.rule, self.threshold, self.temperature, self.schedule)


def decode_block(lm: CachedLM, params: Any, cache: Cache, visible: Array, write_index: Array,
                 positions: Array, rng: Array, cfg: BlockDiffusionConfig
                 ) -> tuple[Array, Cache, Array]:
  """Denoises one block and leaves its K/V in cache[write_index : write_index + B].

  visible: [batch, C] cache slots the block may attend to (excluding its own slots);
  positions: [batch, B] RoPE positions of the block. Returns (tokens [batch, B], cache,
  nfe []). Pure: jit it, or call it inside a jitted loop.
  """
  batch, block = positions.shape
  idx = jnp.arange(visible.shape[1])
  own = (idx >= write_index) & (idx < write_index + block)  # [C]
  mask = jnp.broadcast_to((visible | own[None])[:, None, :], (batch, block, visible.shape[1]))
  rule = cfg.step_rule

  def cond(carry):
    x, _, step, _ = carry
    return (step < cfg.steps) & jnp.any(x == cfg.mask_id)

  def body(carry):
    x, cache, step, rng = carry
    rng, key = jax.random.split(rng)
    hidden, cache = lm.forward(params, x, positions, mask, cache, write_index)
    logits = lm.logits(params, hidden).at[..., cfg.mask_id].set(-jnp.inf)  # [batch, B, vocab]
    is_masked = x == cfg.mask_id  # [batch, B]
    tokens, commit = rule(logits, is_masked, step, cfg.steps, key)
    return jnp.where(commit & is_masked, tokens, x), cache, step + 1, rng

  x = jnp.full((batch, block), cfg.mask_id, jnp.int32)
  x, cache, nfe, _ = jax.lax.while_loop(cond, body, (x, cache, jnp.int32(0), rng))
  if cfg.cache_update == "extra_forward":
    _, cache = lm.forward(params, x, positions, mask, cache, write_index)
    nfe = nfe + 1
  return x, cache, nfe


@functools.partial(jax.jit, static_argnames=("lm", "cfg", "max_new_tokens", "stop_at_eos"))
def generate(lm: CachedLM, params: Any, prefix: Array, prefix_valid: Array, rng: Array, *,
             cfg: BlockDiffusionConfig, max_new_tokens: int,
             stop_at_eos: bool = True) -> DecodeOutput:
  """Answers a left-padded prefix [batch, P] block by block (max_new_tokens rounded up to
  whole blocks); stops after the block where every row has emitted eos."""
  batch, prefix_len = prefix.shape
  block = cfg.block_size
  num_blocks = -(-max_new_tokens // block)
  cache_len = prefix_len + num_blocks * block
  start = jnp.sum(prefix_valid, axis=1).astype(jnp.int32)  # [batch]
  _, cache = prefill(lm, params, prefix, prefix_valid, lm.init_cache(batch, cache_len))
  out = jnp.full((batch, num_blocks * block), cfg.eos_id, jnp.int32)

  def cond(carry):
    j, _, _, done, _, _ = carry
    return (j < num_blocks) & ~(stop_at_eos & jnp.all(done))

  def body(carry):
    j, out, cache, done, nfe, rng = carry
    rng, key = jax.random.split(rng)
    write = prefix_len + j * block
    positions = start[:, None] + j * block + jnp.arange(block)[None, :]  # [batch, B]
    visible = context_keys(prefix_valid, cache_len, write)  # [batch, C]
    tokens, cache, block_nfe = decode_block(lm, params, cache, visible, write, positions, key,
                                            cfg)
    out = jax.lax.dynamic_update_slice_in_dim(out, tokens, j * block, axis=1)
    done = done | jnp.any(tokens == cfg.eos_id, axis=1)
    return j + 1, out, cache, done, nfe + block_nfe, rng

  init = (jnp.int32(0), out, cache, jnp.zeros((batch,), bool), jnp.int32(0), rng)
  _, out, _, _, nfe, _ = jax.lax.while_loop(cond, body, init)
  tokens, lengths = finalize(out, cfg.eos_id)
  return DecodeOutput(tokens[:, :max_new_tokens], jnp.minimum(lengths, max_new_tokens), nfe)
