"""Block-diffusion decoding: blocks of B tokens, each denoised from all-[MASK] in <= S steps.

`decode_block` is the unit the streaming pipeline and the Talker call with their own
cache and visibility: the block's queries see the visible cache slots (prefix and
finished blocks) and themselves bidirectionally. Every denoising step writes the
block's K/V into its slots [write_index, write_index + B); nothing else can see those
slots until the caller marks them visible, i.e. until the block is clean. Which K/V
stay there is the `cache_update` knob:
  extra_forward    one more forward on the clean block (`write_clean_block`: exact,
                   NFE + 1 per block but the last, whose cache nothing reads);
  next_block       the same clean forward, run inside the next block's first denoising
                   step: one forward over [finished block ; next block all [MASK]] (2B
                   queries, each row with its own mask), so the K/V and the tokens are
                   extra_forward's and a block costs only its denoising forwards (the
                   pipelining of Fast-dLLM v2 and D2F; the caller carries the block it owes,
                   `CleanBlock`);
  reuse_last_step  keep the last denoising step's K/V, computed while the tokens
                   committed at that step were still [MASK] (approximate, no extra NFE).
With `shift_logits` (a Thinker adapted from AR, see `objectives.denoiser_logits`) the
state before token i predicts it: a block's first token comes from the context's
next-token logits (the prefill, or the previous block's clean forward). Training scores
that token from the clean context only, so `reuse_last_step` (whose only state after a
block is the last denoising step's, over a block still partly [MASK]) cannot give it:
the combination is refused.
`generate` chains blocks in a `lax.while_loop` that stops after the block holding
eos. One compile per (config, shapes): blocks and requests reuse it.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp

from vocalnet_jax.decoding import step_rules
from vocalnet_jax.decoding.lm import (Cache, CachedLM, DecodeOutput, block_mask, context_keys,
                                      finalize, prefill)

Array = jax.Array
CACHE_UPDATES = ("extra_forward", "next_block", "reuse_last_step")
# extra_forward's tokens and K/V without its forward per block
DEFAULT_CACHE_UPDATE = "next_block"


@dataclasses.dataclass(frozen=True)
class BlockDiffusionConfig:
  """Sampler knobs (hashable: a static jit argument)."""
  block_size: int
  steps: int  # S: at most S forwards per block (the threshold rule may use fewer)
  mask_id: int
  eos_id: int
  rule: str = "topk"  # topk | threshold | ancestral (see step_rules)
  threshold: float = step_rules.THRESHOLD
  temperature: float = 0.0
  schedule: str = "linear"
  cache_update: str = DEFAULT_CACHE_UPDATE  # one of CACHE_UPDATES
  shift_logits: bool = False  # position i predicts token i+1 (as trained, see objectives)
  clean_causal: bool = False  # a clean block's K/V attend causally (diffusion.clean_attention)

  def __post_init__(self):
    if not 1 <= self.steps <= self.block_size:
      raise ValueError(f"steps={self.steps} must be in [1, block_size={self.block_size}]")
    if self.rule not in step_rules.RULES:
      raise ValueError(f"rule={self.rule!r}: choose from {step_rules.RULES}")
    if self.cache_update not in CACHE_UPDATES:
      raise ValueError(f"cache_update={self.cache_update!r}: choose from {CACHE_UPDATES}")
    if self.shift_logits and self.cache_update == "reuse_last_step":
      raise ValueError("cache_update='reuse_last_step' cannot decode shifted logits (a "
                       "block's first token is trained from the clean context, and reuse "
                       "keeps no clean state): use cache_update='extra_forward' or "
                       "'next_block'")

  @property
  def step_rule(self) -> step_rules.StepRule:
    return step_rules.get_rule(self.rule, self.threshold, self.temperature, self.schedule)


class Block(NamedTuple):
  """A denoised block: its tokens, the cache holding its last K/V, the forwards spent and
  the logits its last position gives the next token (the next block's first token when
  logits are shifted) [batch, vocab]."""
  tokens: Array  # [batch, B] int32
  cache: Cache
  nfe: Array  # [] int32
  next_logits: Array  # [batch, vocab] float32


class CleanBlock(NamedTuple):
  """A finished block whose clean forward is owed (`next_block`): the next block's first
  denoising step runs it. The next block's cache slots follow its own."""
  tokens: Array  # [batch, B] int32
  positions: Array  # [batch, B] RoPE positions
  mask: Array  # [batch, B, C] what its clean queries see: the visible slots and itself
  write_index: Array  # [] its first cache slot


def owed_block(tokens: Array, positions: Array, visible: Array, write_index: Array,
               causal: bool = False) -> CleanBlock:
  """The `CleanBlock` of a block denoised at `write_index` seeing `visible` [batch, C]
  (causal: its clean queries see themselves causally, as `write_clean_block`'s)."""
  return CleanBlock(tokens, positions, _block_mask(visible, write_index, tokens.shape[1], causal),
                    write_index)


def _block_mask(visible: Array, write_index: Array, block: int, causal: bool = False) -> Array:
  """[batch, B, C]: the visible cache slots and the block's own slots (causal: up to self)."""
  return block_mask(visible, write_index, jnp.ones((visible.shape[0], block), bool), causal)


def _token_logits(lm: CachedLM, params: Any, hidden: Array, first_logits: Optional[Array],
                  cfg: BlockDiffusionConfig) -> tuple[Array, Array]:
  """Logits of the block's tokens [batch, B, vocab] (shifted: position i's state predicts
  token i+1, token 0 from `first_logits`) and of the token after the block [batch, vocab]."""
  logits = lm.logits(params, hidden)  # [batch, B, vocab]
  if cfg.shift_logits:
    return jnp.concatenate([first_logits[:, None], logits[:, :-1]], axis=1), logits[:, -1]
  return logits, logits[:, -1]


def denoise_block(lm: CachedLM, params: Any, cache: Cache, visible: Array, write_index: Array,
                  positions: Array, rng: Array, cfg: BlockDiffusionConfig,
                  first_logits: Optional[Array] = None,
                  owed: Optional[CleanBlock] = None) -> Block:
  """Denoises one block from all-[MASK] in <= S steps; the last step's K/V stay in
  cache[write_index : write_index + B], computed while that step's commits were still
  [MASK] (`reuse_last_step`; `write_clean_block` makes them exact).

  visible: [batch, C] cache slots the block may attend to (excluding its own slots);
  positions: [batch, B] RoPE positions of the block; first_logits: [batch, vocab] the
  context's prediction of the block's first token (required when logits are shifted,
  unless `owed` gives it); owed: the previous block's clean forward, run in the first
  step's forward (`next_block`: the first step's queries are [owed block ; this block],
  which writes the owed block's exact K/V and gives its next-token logits).
  Pure: jit it, or call it inside a jitted loop.
  """
  batch, block = positions.shape
  if cfg.shift_logits and first_logits is None and owed is None:
    raise ValueError("shift_logits needs first_logits: the context's next-token logits")
  mask = _block_mask(visible, write_index, block)
  rule = cfg.step_rule

  def commit(x, hidden, first, step, key):
    logits, after = _token_logits(lm, params, hidden, first, cfg)
    logits = logits.at[..., cfg.mask_id].set(-jnp.inf)  # [batch, B, vocab]
    is_masked = x == cfg.mask_id  # [batch, B]
    tokens, commit = rule(logits, is_masked, step, cfg.steps, key)
    return jnp.where(commit & is_masked, tokens, x), after

  def step_fn(x, cache, step, rng, first):
    rng, key = jax.random.split(rng)
    hidden, cache = lm.forward(params, x, positions, mask, cache, write_index)
    x, after = commit(x, hidden, first, step, key)
    return x, cache, step + 1, rng, after, first

  no_logits = jnp.zeros((batch, 0), jnp.float32)  # what stands for them unshifted

  def owed_step(x, cache, rng):
    """The first step and the owed clean forward in one forward [batch, B_owed + B]."""
    rng, key = jax.random.split(rng)
    n = owed.tokens.shape[1]
    hidden, cache = lm.forward(params, jnp.concatenate([owed.tokens, x], axis=1),
                               jnp.concatenate([owed.positions, positions], axis=1),
                               jnp.concatenate([owed.mask, mask], axis=1), cache,
                               owed.write_index)
    # the clean context's next-token logits: the block's first token when shifted
    first = lm.logits(params, hidden[:, n - 1:n])[:, 0] if cfg.shift_logits else no_logits
    x, after = commit(x, hidden[:, n:], first, jnp.int32(0), key)
    return x, cache, jnp.int32(1), rng, after, first

  def cond(carry):
    x, _, step, _, _, _ = carry
    return (step < cfg.steps) & jnp.any(x == cfg.mask_id)

  x = jnp.full((batch, block), cfg.mask_id, jnp.int32)
  if owed is not None:
    first = owed_step(x, cache, rng)
  else:  # S >= 1: the first step always runs
    first = step_fn(x, cache, jnp.int32(0), rng,
                    no_logits if first_logits is None else first_logits)
  x, cache, nfe, _, after, _ = jax.lax.while_loop(cond, lambda c: step_fn(*c[:4], c[5]), first)
  return Block(x, cache, nfe, after)


def denoise_after(lm: CachedLM, params: Any, cache: Cache, visible: Array, write_index: Array,
                  positions: Array, rng: Array, cfg: BlockDiffusionConfig,
                  first_logits: Optional[Array], owed: Optional[CleanBlock],
                  has_owed: Array) -> Block:
  """`denoise_block` for a loop that carries its previous block (`next_block`): its clean
  forward rides on this block's first step when `has_owed` ([] bool; false for a loop's
  first block). owed None: nothing is owed (the other cache updates)."""
  args = (lm, params, cache, visible, write_index, positions, rng, cfg, first_logits)
  if owed is None:
    return denoise_block(*args)
  return jax.lax.cond(has_owed, lambda: denoise_block(*args, owed=owed),
                      lambda: denoise_block(*args))


def write_clean_block(lm: CachedLM, params: Any, block: Block, visible: Array,
                      write_index: Array, positions: Array, causal: bool = False) -> Block:
  """The extra forward of a finished block: exact K/V into the cache, and the clean
  context's next-token logits. One more NFE. causal: the block attends to itself causally,
  as the clean stream of a model trained with `diffusion.clean_attention` causal."""
  mask = _block_mask(visible, write_index, positions.shape[1], causal)
  hidden, cache = lm.forward(params, block.tokens, positions, mask, block.cache, write_index)
  return Block(block.tokens, cache, block.nfe + 1, lm.logits(params, hidden[:, -1:])[:, 0])


def decode_block(lm: CachedLM, params: Any, cache: Cache, visible: Array, write_index: Array,
                 positions: Array, rng: Array, cfg: BlockDiffusionConfig,
                 first_logits: Optional[Array] = None) -> Block:
  """`denoise_block`, then its K/V as `cfg.cache_update` says (the unit the streaming
  pipeline calls with its own cache and visibility; with `next_block` the caller owes the
  clean forward to the next block: `denoise_after`)."""
  out = denoise_block(lm, params, cache, visible, write_index, positions, rng, cfg, first_logits)
  if cfg.cache_update == "extra_forward":
    out = write_clean_block(lm, params, out, visible, write_index, positions, cfg.clean_causal)
  return out


@functools.partial(jax.jit, static_argnames=("lm", "cfg", "max_new_tokens", "stop_at_eos"))
def generate(lm: CachedLM, params: Any, prefix: Array, prefix_valid: Array, rng: Array, *,
             cfg: BlockDiffusionConfig, max_new_tokens: int,
             stop_at_eos: bool = True) -> DecodeOutput:
  """Answers a left-padded prefix [batch, P] block by block (max_new_tokens rounded up to
  whole blocks); stops after the block where every row has emitted eos. The last block's
  clean forward is skipped (`extra_forward`) or never owed (`next_block`): nothing reads
  its cache."""
  batch, prefix_len = prefix.shape
  block = cfg.block_size
  num_blocks = -(-max_new_tokens // block)
  cache_len = prefix_len + num_blocks * block
  start = jnp.sum(prefix_valid, axis=1).astype(jnp.int32)  # [batch]
  first_logits, cache = prefill(lm, params, prefix, prefix_valid, lm.init_cache(batch, cache_len))
  out = jnp.full((batch, num_blocks * block), cfg.eos_id, jnp.int32)

  def cond(carry):
    j, _, _, done, _, _, _ = carry
    return (j < num_blocks) & ~(stop_at_eos & jnp.all(done))

  def body(carry):
    j, out, cache, done, nfe, rng, first_logits = carry
    rng, key = jax.random.split(rng)
    write = prefix_len + j * block
    positions = start[:, None] + j * block + jnp.arange(block)[None, :]  # [batch, B]
    visible = context_keys(prefix_valid, cache_len, write)  # [batch, C]
    owed = None
    if cfg.cache_update == "next_block":  # block j - 1's clean forward (none for j = 0)
      previous = jax.lax.dynamic_slice_in_dim(out, jnp.maximum(j - 1, 0) * block, block, axis=1)
      owed = owed_block(previous, positions - block,
                        context_keys(prefix_valid, cache_len, write - block), write - block,
                        cfg.clean_causal)
    blk = denoise_after(lm, params, cache, visible, write, positions, key, cfg, first_logits,
                        owed, j > 0)
    out = jax.lax.dynamic_update_slice_in_dim(out, blk.tokens, j * block, axis=1)
    done = done | jnp.any(blk.tokens == cfg.eos_id, axis=1)
    last = (j + 1 == num_blocks) | (stop_at_eos & jnp.all(done))
    if cfg.cache_update == "extra_forward":
      blk = jax.lax.cond(last, lambda b: b,
                         lambda b: write_clean_block(lm, params, b, visible, write, positions,
                                                     cfg.clean_causal), blk)
    return j + 1, out, blk.cache, done, nfe + blk.nfe, rng, blk.next_logits

  init = (jnp.int32(0), out, cache, jnp.zeros((batch,), bool), jnp.int32(0), rng, first_logits)
  _, out, _, _, nfe, _, _ = jax.lax.while_loop(cond, body, init)
  tokens, lengths = finalize(out, cfg.eos_id)
  return DecodeOutput(tokens[:, :max_new_tokens], jnp.minimum(lengths, max_new_tokens), nfe)
