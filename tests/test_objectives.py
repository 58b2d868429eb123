"""The MDM objective sees what the decoder sees: training's two_stream logits of a block
equal the cached decoder's first-step logits of that block (plain and shifted, block-causal
or causal clean stream); the clean stream's AR term is the AR objective and keeps the loss's
expectation analytic."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.decoding_helpers import TOK, prompts, tiny_model
from vocalnet_jax.decoding import BlockDiffusionConfig, block_diffusion, decoder_lm
from vocalnet_jax.decoding.lm import context_keys, prefill
from vocalnet_jax.diffusion import masking
from vocalnet_jax.training import objectives, tasks

B = 4


@pytest.mark.parametrize("shift,causal", [(False, False), (True, False), (True, True)])
def test_training_logits_equal_the_cached_decoders(shift, causal):
  """Block 0 partly [MASK], block 1 all [MASK]: `denoiser_logits` over [prefix ; x_t ; x_0]
  gives each block the logits the decoder computes at that state: block 0 over the
  prefix's cache, block 1 over the cache of the clean block 0 (shifted: block 1's first
  token from the clean block's last state, never from the noisy block 0's; causal: the
  clean block written causally, as `clean_attention` causal trains it)."""
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
  train = objectives.denoiser_logits(fns, rb, noisy, clean, response_valid, B, shift=shift,
                                     causal_clean=causal)

  cfg = BlockDiffusionConfig(B, 2, TOK.mask_id, TOK.eos_id, shift_logits=shift,
                             clean_causal=causal)
  first_logits, cache = prefill(lm, params, prefix, valid, lm.init_cache(batch, P + 2 * B))
  start = jnp.sum(valid, 1, keepdims=True)
  mask0 = block_diffusion._block_mask(context_keys(valid, P + 2 * B, P), P, B)
  hidden0, _ = lm.forward(params, noisy[:, :B], start + jnp.arange(B)[None], mask0, cache, P)
  decode0, _ = block_diffusion._token_logits(lm, params, hidden0, first_logits, cfg)
  np.testing.assert_allclose(np.asarray(train[:, :B]), np.asarray(decode0), atol=2e-4,
                             rtol=2e-4)
  block0 = block_diffusion.Block(clean[:, :B], cache, jnp.int32(0), first_logits)
  block0 = block_diffusion.write_clean_block(
      lm, params, block0, context_keys(valid, P + 2 * B, P), P, start + jnp.arange(B)[None],
      causal=cfg.clean_causal)
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
  diffusion.update(shift_logits=True, clean_attention="causal", ar_weight=1.0)
  problem = objectives.LMProblem(fns, rb, TOK.mask_id, TOK.eos_id, B, start_id=1)
  # nor does it take the Thinker's causal clean stream or its AR term
  assert float(objectives.lm_loss(problem, jax.random.key(0), "mdm", diffusion)[0]) == losses[2]


@pytest.mark.parametrize("objective", ["ar", "mdm"])
def test_chunked_loss_keeps_the_objective(objective):
  """`loss_chunk` (the vocabulary projection 3 positions at a time) gives the same loss,
  metrics and parameter gradients as projecting the whole response at once."""
  from configs import mdm
  model, params = tiny_model()
  prefix, valid = prompts(["12+7=?", "sort 321"])
  response = jnp.array([TOK.encode("19") + [TOK.eos_id] * 6,
                        TOK.encode("1234") + [TOK.eos_id] * 4], jnp.int32)  # [2, 8]
  diffusion = mdm.get_config("tiny,text").diffusion

  def loss(p, chunk):
    fns = tasks.decoder_fns(model, p)
    rb = objectives.ResponseBatch(fns.embed(prefix), valid, response,
                                  jnp.ones_like(response, bool))
    problem = objectives.LMProblem(fns, rb, TOK.mask_id, TOK.eos_id, B, loss_chunk=chunk)
    return objectives.lm_loss(problem, jax.random.key(0), objective, diffusion)

  (want, want_metrics), want_grads = jax.value_and_grad(loss, has_aux=True)(params, 0)
  (got, got_metrics), got_grads = jax.value_and_grad(loss, has_aux=True)(params, 3)
  np.testing.assert_allclose(got, want, rtol=1e-5)
  for key in want_metrics:
    np.testing.assert_allclose(got_metrics[key], want_metrics[key], rtol=1e-5)
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
                         got_grads, want_grads)


def _problem(response_ids: list[list[int]]):
  model, params = tiny_model()
  prefix, valid = prompts(["12+7=?", "sort 321", "double ab"][:len(response_ids)])
  fns = tasks.decoder_fns(model, params)
  width = 3 * B
  response = jnp.array([r + [TOK.pad_id] * (width - len(r)) for r in response_ids], jnp.int32)
  response_valid = jnp.array([[i < len(r) for i in range(width)] for r in response_ids])
  return fns, objectives.ResponseBatch(fns.embed(prefix), valid, response, response_valid)


def test_the_causal_clean_streams_ar_loss_is_the_ar_objective():
  """With a causal clean stream, `clean_ar_loss` on the MDM pass's states is exactly the AR
  objective's loss on [prefix ; response] (the AR model an MDM is adapted from); the
  block-causal clean stream sees the next token inside its block and is not."""
  fns, rb = _problem([TOK.encode("19") + [TOK.eos_id],
                      TOK.encode("123") + [TOK.eos_id],
                      TOK.encode("ab ab") + [TOK.eos_id]])
  ar_loss = float(objectives.ar_objective(fns, rb)[0])
  valid = masking.block_valid(rb.response_valid, B)
  clean = masking.fill_block_tail(rb.response, rb.response_valid, valid, TOK.eos_id)
  noisy = jnp.where(valid, TOK.mask_id, clean)
  for causal in (True, False):
    states = objectives.denoiser_states(fns, rb, noisy, clean, valid, B, causal_clean=causal)
    loss = float(objectives.clean_ar_loss(fns, states, rb))
    if causal:
      np.testing.assert_allclose(loss, ar_loss, rtol=1e-5)
    else:
      assert abs(loss - ar_loss) > 1e-3


def _unit_cross_entropy_fns() -> objectives.DecoderFns:
  """A 2-token 'decoder' whose every prediction gives token 0 probability e^-1: the
  cross-entropy of target 0 is exactly 1 at every position."""
  a = -1.0 - np.log1p(-np.exp(-1.0))  # p(0) = e^a / (e^a + 1) = e^-1
  return objectives.DecoderFns(
      embed=lambda ids: jnp.zeros(ids.shape + (2,)),
      hidden=lambda emb, positions, mask: emb,
      logits=lambda h: jnp.broadcast_to(jnp.array([a, 0.0]), h.shape[:-1] + (2,)))


def _unit_ce_loss(num_draws: int, **diffusion_fields):
  """The MDM objective at unit cross-entropy on answers of 2, 5, 9 and 12 tokens (3 blocks,
  every target token 0 = eos), vmapped over `num_draws` keys: (loss, metrics, valid); the
  ELBO's first-token weight (1) unless `first_token_weight` is given."""
  from configs import mdm
  lengths = [2, 5, 9, 12]
  response = jnp.zeros((len(lengths), 3 * B), jnp.int32)  # token 0 = eos: every target is 0
  response_valid = jnp.arange(3 * B)[None, :] < jnp.array(lengths)[:, None]
  rb = objectives.ResponseBatch(jnp.zeros((len(lengths), 3, 2)), jnp.ones((len(lengths), 3), bool),
                                response, response_valid)
  diffusion = mdm.get_config("tiny,text").diffusion
  diffusion.update(shift_logits=True, **{"first_token_weight": 1.0, **diffusion_fields})
  loss_fn = jax.jit(jax.vmap(lambda r: objectives.mdm_objective(
      _unit_cross_entropy_fns(), rb, r, diffusion, mask_id=1, eos_id=0, shift=True)))
  return (*loss_fn(jax.random.split(jax.random.key(0), num_draws)), response_valid)


@pytest.mark.parametrize("weight", [0.0, 0.5, 2.0])
def test_ar_term_adds_its_weight_to_the_loss_at_unit_cross_entropy(weight):
  """At cross-entropy 1 everywhere the ELBO averages 1 per valid token (the masking's own
  test) and the AR term is exactly 1 per answer token, so the loss averages 1 + ar_weight.
  Answers end inside blocks (the eos-filled remainder is the ELBO's, not the AR term's)."""
  loss, metrics, _ = _unit_ce_loss(512, clean_attention="causal", ar_weight=weight)
  if weight:
    np.testing.assert_allclose(np.asarray(metrics["ar_loss"]), 1.0, rtol=1e-6)
  np.testing.assert_allclose(float(jnp.mean(loss)), 1.0 + weight, rtol=0.02)


def test_first_token_weight_adds_its_share_to_the_objective_at_unit_cross_entropy():
  """The objective passes diffusion.first_token_weight w to every block's context-predicted
  first token: the loss moves by exactly (w - 1) x first tokens / valid tokens, draw by draw
  (the same draws: only the weights differ)."""
  plain, _, response_valid = _unit_ce_loss(16)
  heavy, _, _ = _unit_ce_loss(16, first_token_weight=4.0)
  valid = masking.block_valid(response_valid, B)
  share = int((valid & (jnp.arange(3 * B) % B == 0)).sum()) / int(valid.sum())
  np.testing.assert_allclose(np.asarray(heavy - plain), 3.0 * share, rtol=1e-5)


@pytest.mark.parametrize("strategy", ["hierarchical", "uniform"])
def test_complementary_masks_keep_the_loss_at_one_per_token_on_every_draw(strategy):
  """The objective runs each example with a draw's mask and its complement: at unit
  cross-entropy its loss is 1.0 on every draw (each valid token scored once per pair, the
  shifted first token on both rows with weight 1), the scored tokens are twice the
  valid ones' share of a single draw's, and the mask ratio is exactly one half."""
  loss, metrics, response_valid = _unit_ce_loss(64, masking=strategy, complementary_masks=True)
  np.testing.assert_allclose(np.asarray(loss), 1.0, rtol=1e-6)
  np.testing.assert_allclose(np.asarray(metrics["mask_ratio"]), 0.5, rtol=1e-6)
  n_valid = int(masking.block_valid(response_valid, B).sum())
  n_first = int((masking.block_valid(response_valid, B) & (jnp.arange(3 * B) % B == 0)).sum())
  # every valid token once, plus each first token on the row where it is not masked
  np.testing.assert_array_equal(np.asarray(metrics["target_tokens"]), n_valid + n_first)
