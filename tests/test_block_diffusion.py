"""Block diffusion: cached decode equals a no-cache recomputation (plain and shifted
logits), S = B commits one token per step, eos stops the block loop, the last block pays
no clean forward, the clean forward riding on the next block's first step (`next_block`)
writes the same K/V and tokens, threshold finishes early, one compile per config."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.decoding_helpers import TOK, full_logits, prompts, tiny_model
from vocalnet_jax.decoding import BlockDiffusionConfig, block_diffusion, decode_block, decoder_lm
from vocalnet_jax.decoding.lm import context_keys, prefill

B, N = 4, 12  # 3 blocks
QUESTIONS = ("12+7=?", "reverse abc")


def _cfg(steps=2, **kw):
  """extra_forward unless told: its clean forward per block is what the NFE counts check."""
  kw.setdefault("cache_update", "extra_forward")
  return BlockDiffusionConfig(B, steps, TOK.mask_id, kw.pop("eos_id", TOK.eos_id), **kw)


def _decode(cfg, stop_at_eos=True, questions=QUESTIONS):
  model, params = tiny_model()
  prefix, valid = prompts(list(questions))
  return block_diffusion.generate(decoder_lm(model), params, prefix, valid, jax.random.key(0),
                                  cfg=cfg, max_new_tokens=N, stop_at_eos=stop_at_eos)


def _reference(cfg):
  """No cache: every step runs [prefix ; finished blocks ; current block ; masked rest]
  through the full block-causal forward (later blocks are invisible to earlier ones).
  reuse_last_step: a finished block is seen as its last step's input (that step's commits
  still [MASK]), the K/V the cache kept."""
  model, params = tiny_model()
  prefix, valid = prompts(list(QUESTIONS))
  body = jnp.full((prefix.shape[0], N), TOK.mask_id, jnp.int32)
  seen = body  # what later blocks attend to
  offset = 0 if cfg.shift_logits else 1  # shifted: the state before token i predicts it
  for j in range(N // B):
    for step in range(cfg.steps):
      logits = full_logits(model, params, prefix, valid, seen, B)[
          :, offset + j * B:offset + (j + 1) * B]
      x = body[:, j * B:(j + 1) * B]
      is_masked = x == TOK.mask_id
      tokens, commit = cfg.step_rule(logits.at[..., TOK.mask_id].set(-jnp.inf), is_masked,
                                     jnp.int32(step), cfg.steps, jax.random.key(0))
      body = body.at[:, j * B:(j + 1) * B].set(jnp.where(commit & is_masked, tokens, x))
      kept = x if step == cfg.steps - 1 and cfg.cache_update == "reuse_last_step" else None
      # only block j changes what later steps see; earlier blocks keep what the cache kept
      seen = seen.at[:, j * B:(j + 1) * B].set(body[:, j * B:(j + 1) * B] if kept is None
                                               else kept)
  return np.asarray(body)


@pytest.mark.parametrize("shift", [False, True])
def test_cached_decode_equals_no_cache_recomputation(shift):
  cfg = _cfg(steps=2, shift_logits=shift)
  out = _decode(cfg, stop_at_eos=False)
  np.testing.assert_array_equal(out.tokens, _reference(cfg))
  # S steps + the clean-block forward per block, except the last block (nothing reads it)
  assert int(out.nfe) == (N // B) * (2 + 1) - 1


@pytest.mark.parametrize("shift,causal", [(False, False), (True, False), (True, True)])
def test_next_block_gives_extra_forwards_tokens_without_its_forwards(shift, causal):
  kw = dict(steps=2, shift_logits=shift, clean_causal=causal)
  exact = _decode(_cfg(**kw), stop_at_eos=False)
  fused = _decode(_cfg(cache_update="next_block", **kw), stop_at_eos=False)
  np.testing.assert_array_equal(fused.tokens, exact.tokens)
  if not causal:
    np.testing.assert_array_equal(fused.tokens, _reference(_cfg(**kw)))
  assert int(fused.nfe) == (N // B) * 2  # S per block: no clean forward of its own


def test_the_owed_clean_forward_writes_the_clean_blocks_cache():
  """Block 1's first step with block 0 owed leaves block 0's slots as block 0's own clean
  forward writes them, and gives block 1 the logits that forward gives (shifted)."""
  cfg = _cfg(steps=2, shift_logits=True, cache_update="next_block")
  model, params = tiny_model()
  lm = decoder_lm(model)
  prefix, valid = prompts(list(QUESTIONS))
  P, C = prefix.shape[1], prefix.shape[1] + 2 * B
  first, cache = prefill(lm, params, prefix, valid, lm.init_cache(2, C))
  pos0 = jnp.sum(valid, 1, keepdims=True) + jnp.arange(B)[None]
  vis0, vis1 = context_keys(valid, C, P), context_keys(valid, C, P + B)
  blk0 = block_diffusion.denoise_block(lm, params, cache, vis0, P, pos0, jax.random.key(0), cfg,
                                       first)
  clean = block_diffusion.write_clean_block(lm, params, blk0, vis0, P, pos0)
  key = jax.random.key(1)
  after_clean = block_diffusion.denoise_block(lm, params, clean.cache, vis1, P + B, pos0 + B,
                                              key, cfg, clean.next_logits)
  owed = block_diffusion.owed_block(blk0.tokens, pos0, vis0, jnp.int32(P))
  fused = block_diffusion.denoise_block(lm, params, blk0.cache, vis1, P + B, pos0 + B, key, cfg,
                                        owed=owed)
  for got, want in zip(fused.cache, after_clean.cache):
    np.testing.assert_allclose(got.k[:, :P + B], want.k[:, :P + B], atol=1e-5)
    np.testing.assert_allclose(got.v[:, :P + B], want.v[:, :P + B], atol=1e-5)
  np.testing.assert_array_equal(fused.tokens, after_clean.tokens)
  np.testing.assert_allclose(fused.next_logits, after_clean.next_logits, atol=1e-4)
  assert int(fused.nfe) == int(after_clean.nfe)


def test_s_equals_b_commits_one_token_per_step_via_decode_block():
  """decode_block on its own (as the streaming pipeline calls it): S = B steps plus the
  clean-block forward, no mask left, the no-cache reference's tokens (one commit per
  step is checked on the rule in test_step_rules)."""
  cfg = _cfg(steps=B)
  model, params = tiny_model()
  lm = decoder_lm(model)
  prefix, valid = prompts(list(QUESTIONS))
  P = prefix.shape[1]
  _, cache = prefill(lm, params, prefix, valid, lm.init_cache(2, P + B))
  positions = jnp.sum(valid, 1, keepdims=True) + jnp.arange(B)[None]
  step = jax.jit(decode_block, static_argnames=("lm", "cfg"))
  tokens, _, nfe, _ = step(lm, params, cache, context_keys(valid, P + B, P), P, positions,
                           jax.random.key(0), cfg=cfg)
  assert int(nfe) == B + 1
  assert not np.any(np.asarray(tokens) == TOK.mask_id)
  np.testing.assert_array_equal(tokens, _reference(cfg)[:, :B])


def test_eos_stops_after_its_block():
  cfg = _cfg(steps=2)
  free = np.asarray(_decode(cfg, stop_at_eos=False).tokens)
  eos = int(free[0, B + 1])  # a token row 0 emits in block 1
  out = _decode(_cfg(steps=2, eos_id=eos))
  first = [int(np.argmax(row == eos)) if np.any(row == eos) else N for row in free]
  np.testing.assert_array_equal(out.lengths, first)
  blocks = max(f // B + 1 for f in first)
  assert int(out.nfe) == min(blocks, N // B) * 3 - 1
  for row, length in enumerate(first):
    np.testing.assert_array_equal(out.tokens[row, :length], free[row, :length])
    assert np.all(np.asarray(out.tokens[row, length:]) == eos)


def test_threshold_zero_finishes_each_block_in_one_step():
  out = _decode(_cfg(steps=B, rule="threshold", threshold=0.0), stop_at_eos=False)
  assert int(out.nfe) == (N // B) * 2 - 1
  assert not np.any(np.asarray(out.tokens) == TOK.mask_id)


def test_reuse_last_step_saves_the_extra_forward_and_compiles_once():
  """Every block equals a no-cache recomputation that shows later blocks each finished
  block as its last step's input (what reuse keeps), with S forwards per block."""
  exact = _decode(_cfg(steps=2), stop_at_eos=False)
  cfg = _cfg(steps=2, cache_update="reuse_last_step")
  reuse = _decode(cfg, stop_at_eos=False)
  assert int(reuse.nfe) == (N // B) * 2
  np.testing.assert_array_equal(reuse.tokens, _reference(cfg))
  np.testing.assert_array_equal(reuse.tokens[:, :B], exact.tokens[:, :B])  # same first block
  size = block_diffusion.generate._cache_size()
  _decode(_cfg(steps=2, cache_update="reuse_last_step"), stop_at_eos=False,
          questions=("sort 3141", "double ab"))  # new request, same config and shapes
  assert block_diffusion.generate._cache_size() == size


def test_config_validation():
  with pytest.raises(ValueError, match="steps"):
    _cfg(steps=B + 1)
  with pytest.raises(ValueError, match="rule"):
    _cfg(rule="nope")


def test_shifted_logits_need_the_context_prediction():
  model, params = tiny_model()
  lm = decoder_lm(model)
  cache = lm.init_cache(1, 8)
  with pytest.raises(ValueError, match="first_logits"):
    decode_block(lm, params, cache, jnp.zeros((1, 8), bool), 4, jnp.arange(B)[None],
                 jax.random.key(0), _cfg(shift_logits=True))


def test_reuse_last_step_refuses_shifted_logits():
  """With shifted logits a block's first token is trained from the clean context; reuse
  keeps only the last denoising step's state over a block still partly [MASK]."""
  from configs import mdm
  from vocalnet_jax.evaluation import text_eval
  from vocalnet_jax.modeling.validate import ConfigError
  with pytest.raises(ValueError, match="reuse_last_step.*extra_forward"):
    _cfg(shift_logits=True, cache_update="reuse_last_step")
  _cfg(shift_logits=True)  # the exact update decodes shifted logits
  config = mdm.get_config("tiny,text")
  config.diffusion.shift_logits = True
  with pytest.raises(ConfigError, match=r"reuse_last_step.*shift_logits=True\)$"):
    text_eval.decoder_config(config, TOK, "mdm", 2, cache_update="reuse_last_step")
