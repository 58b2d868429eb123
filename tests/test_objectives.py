"""The MDM objective sees what the decoder sees: training's two_stream logits of a block
equal the cached decoder's first-step logits of that block (plain and shifted)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.decoding_helpers import TOK, prompts, tiny_model
from vocalnet_jax.decoding import BlockDiffusionConfig, block_diffusion, decoder_lm
from vocalnet_jax.decoding.lm import context_keys, prefill
from vocalnet_jax.training import objectives, tasks

B = 4


@pytest.mark.parametrize("shift", [False, True])
def test_training_logits_equal_the_cached_decoders(shift):
  """Block 0 partly [MASK], block 1 all [MASK]: `denoiser_logits` over [prefix ; x_t ; x_0]
  gives each block the logits the decoder computes at that state: block 0 over the
  prefix's cache, block 1 over the cache of the clean block 0 (shifted: block 1's first
  token from the clean block's last state, never from the noisy block 0's)."""
  model, params = tiny_model()
  lm = decoder_lm(model)
  prefix, valid = prompts(["12+7=?", "sort 321"])
  batch, P = prefix.shape
  clean = jnp.array([TOK.encode("19") + [TOK.eos_id, TOK.eos_id] + [TOK.eos_id] * B,
                     TOK.encode("1234") + [TOK.eos_id] * B], jnp.int32)  # [2, 2B]
  noisy = clean.at[:, 1:].set(TOK.mask_id).at[:, B - 1].set(clean[:, B - 1])
  response_valid = jnp.ones_like(clean, bool)
  fns = tasks.decoder_fns(model, params)
  rb = objectives.ResponseBatch(fns.embed(prefix), valid, clean, response_valid)
  train = objectives.denoiser_logits(fns, rb, noisy, clean, response_valid, B, shift=shift)

  cfg = BlockDiffusionConfig(B, 2, TOK.mask_id, TOK.eos_id, shift_logits=shift)
  first_logits, cache = prefill(lm, params, prefix, valid, lm.init_cache(batch, P + 2 * B))
  start = jnp.sum(valid, 1, keepdims=True)
  mask0 = block_diffusion._block_mask(context_keys(valid, P + 2 * B, P), P, B)
  hidden0, _ = lm.forward(params, noisy[:, :B], start + jnp.arange(B)[None], mask0, cache, P)
  decode0, _ = block_diffusion._token_logits(lm, params, hidden0, first_logits, cfg)
  np.testing.assert_allclose(np.asarray(train[:, :B]), np.asarray(decode0), atol=2e-4,
                             rtol=2e-4)
  block0 = block_diffusion.Block(clean[:, :B], cache, jnp.int32(0), first_logits)
  block0 = block_diffusion.write_clean_block(
      lm, params, block0, context_keys(valid, P + 2 * B, P), P, start + jnp.arange(B)[None])
  positions = start + B + jnp.arange(B)[None]
  mask = block_diffusion._block_mask(context_keys(valid, P + 2 * B, P + B), P + B, B)
  hidden, _ = lm.forward(params, noisy[:, B:], positions, mask, block0.cache, P + B)
  decode, _ = block_diffusion._token_logits(lm, params, hidden, block0.next_logits, cfg)
  np.testing.assert_allclose(np.asarray(train[:, B:]), np.asarray(decode), atol=2e-4, rtol=2e-4)
  if shift:  # block 0's first token comes from the prompt's last state, as in AR
    np.testing.assert_allclose(np.asarray(train[:, 0]), np.asarray(first_logits), atol=2e-4,
                               rtol=2e-4)


def test_the_talker_never_shifts():
  """A decoder answering with a start token (the Talker) ignores `shift_logits`: its first
  chunk may not see the end of its prefix, so there is no context state to shift from."""
  from configs import mdm
  model, params = tiny_model()
  prefix, valid = prompts(["12+7=?"])
  fns = tasks.decoder_fns(model, params)
  response = jnp.array([TOK.encode("19") + [TOK.eos_id, TOK.eos_id]], jnp.int32)
  rb = objectives.ResponseBatch(fns.embed(prefix), valid, response, jnp.ones_like(response, bool))
  diffusion = mdm.get_config("tiny,text").diffusion
  losses = []
  for start_id, shift in [(None, False), (None, True), (1, False), (1, True)]:
    diffusion.shift_logits = shift
    problem = objectives.LMProblem(fns, rb, TOK.mask_id, TOK.eos_id, B, start_id=start_id)
    losses.append(float(objectives.lm_loss(problem, jax.random.key(0), "mdm", diffusion)[0]))
  assert losses[0] != losses[1]  # a Thinker shifts
  assert losses[2] == losses[3] == losses[0]  # the Talker does not
