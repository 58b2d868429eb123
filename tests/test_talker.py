"""Talker: streaming text-visibility mask vs hand-drawn matrices, mask composition,
fusion shapes, streaming/causal independence, and cached decoding == full forward."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vocalnet_jax.models.decoder import Decoder, init_decoder_cache
from vocalnet_jax.models.talker import (Talker, TalkerFusion, talker_attention_mask,
                                        talker_positions, talker_text_visibility)


def talker_ar_mask(num_text, num_speech, chunk_size, text_per_chunk, text_valid=None):
  """AR Talker mask: causal over speech plus the streaming text rule."""
  return talker_attention_mask(
      talker_text_visibility(num_text, num_speech, chunk_size, text_per_chunk),
      jnp.tril(jnp.ones((num_speech, num_speech), bool)), text_valid)


def test_text_visibility_hand_drawn():
  # chunk_size 3, text_per_chunk 2: chunk k sees text j < 2(k + 1).
  expected = np.array([
      [1, 1, 0, 0, 0, 0, 0],
      [1, 1, 0, 0, 0, 0, 0],
      [1, 1, 0, 0, 0, 0, 0],
      [1, 1, 1, 1, 0, 0, 0],
      [1, 1, 1, 1, 0, 0, 0],
      [1, 1, 1, 1, 0, 0, 0],
      [1, 1, 1, 1, 1, 1, 0],
      [1, 1, 1, 1, 1, 1, 0],
  ], bool)
  np.testing.assert_array_equal(talker_text_visibility(7, 8, chunk_size=3, text_per_chunk=2),
                                expected)


def test_ar_mask_hand_drawn_with_text_padding():
  # 3 text positions (the last is padding), 4 speech tokens, chunk 2, 1 text per chunk.
  mask = talker_ar_mask(3, 4, chunk_size=2, text_per_chunk=1,
                        text_valid=jnp.array([[True, True, False]]))
  expected = np.array([
      # t0 t1 t2 s0 s1 s2 s3
      [1, 0, 0, 0, 0, 0, 0],  # t0: causal text
      [1, 1, 0, 0, 0, 0, 0],  # t1
      [1, 1, 0, 0, 0, 0, 0],  # t2 (padded key hidden)
      [1, 0, 0, 1, 0, 0, 0],  # s0: chunk 0 sees t0
      [1, 0, 0, 1, 1, 0, 0],  # s1
      [1, 1, 0, 1, 1, 1, 0],  # s2: chunk 1 sees t0, t1 (t2 is padding)
      [1, 1, 0, 1, 1, 1, 1],  # s3
  ], bool)
  np.testing.assert_array_equal(mask, expected[None])


def test_attention_mask_composes_with_any_speech_mask():
  """[x_t ; x_0] layout: the speech block is passed through, the text rule is tiled."""
  num_text, num_speech = 6, 8
  speech_mask = np.random.RandomState(0).rand(2, 2 * num_speech, 2 * num_speech) < 0.5
  vis = np.tile(talker_text_visibility(num_text, num_speech, 4, 3), (2, 1))
  speech_valid = np.arange(2 * num_speech)[None] < np.array([[16], [12]])
  mask = jax.jit(talker_attention_mask)(vis, speech_mask, speech_valid=speech_valid)
  assert mask.shape == (2, num_text + 2 * num_speech, num_text + 2 * num_speech)
  np.testing.assert_array_equal(mask[:, num_text:, num_text:],
                                speech_mask & speech_valid[:, None, :])
  np.testing.assert_array_equal(mask[:, num_text:, :num_text], jnp.broadcast_to(vis, (2, 16, 6)))
  assert not mask[:, :num_text, num_text:].any()  # text never sees speech


def test_positions_time_aligned():
  text, speech = talker_positions(4, 6, chunk_size=15, text_per_chunk=5)
  np.testing.assert_array_equal(text, [0, 3, 6, 9])
  np.testing.assert_array_equal(speech, np.arange(6))


def test_fusion_shapes():
  fusion = TalkerFusion(out_dim=24, hidden_dim=40)
  text, hidden = jnp.ones((2, 5, 16)), jnp.ones((2, 5, 32))
  shapes = jax.eval_shape(fusion.init, jax.random.key(0), text, hidden)
  assert shapes["params"]["fc1"]["kernel"].value.shape == (48, 40)
  assert jax.eval_shape(fusion.apply, shapes, text, hidden).shape == (2, 5, 24)


N, S, CHUNK, TPC, VOCAB = 6, 8, 4, 2, 40


@pytest.fixture(scope="module")
def talker_setup():
  talker = Talker(Decoder(vocab_size=VOCAB, embed_dim=16, num_layers=2, num_heads=4,
                          num_kv_heads=2, head_dim=8, mlp_dim=32), fusion_hidden_dim=24)
  rng = np.random.RandomState(1)
  text_emb = jnp.asarray(rng.randn(2, N, 12), jnp.float32)
  thinker_hidden = jnp.asarray(rng.randn(2, N, 20), jnp.float32)
  speech = jnp.asarray(rng.randint(0, VOCAB, (2, S)), jnp.int32)
  text_pos, speech_pos = talker_positions(N, S, CHUNK, TPC)
  positions = jnp.broadcast_to(jnp.concatenate([text_pos, speech_pos]), (2, N + S))
  mask = jnp.broadcast_to(talker_ar_mask(N, S, CHUNK, TPC), (2, N + S, N + S))
  params = jax.jit(talker.init)(jax.random.key(2), speech, positions, mask,
                                text_embeddings=text_emb, thinker_hidden=thinker_hidden)
  return talker, jax.jit(talker.apply), params, text_emb, thinker_hidden, speech, positions, mask


def test_talker_streaming_and_causality(talker_setup):
  talker, apply, params, text_emb, thinker_hidden, speech, positions, mask = talker_setup
  logits, hidden, cache = apply(params, speech, positions, mask, text_embeddings=text_emb,
                                thinker_hidden=thinker_hidden)
  assert logits.shape == (2, S, VOCAB) and hidden.shape == (2, N + S, 16) and cache is None
  # Changing text positions >= TPC (invisible to chunk 0) and speech after chunk 0 leaves
  # chunk 0 untouched, and changes chunk 1.
  later_text = text_emb.at[:, TPC:].add(1.0)
  later_speech = speech.at[:, CHUNK:].set((speech[:, CHUNK:] + 1) % VOCAB)
  changed, _, _ = apply(params, later_speech, positions, mask, text_embeddings=later_text,
                        thinker_hidden=thinker_hidden)
  np.testing.assert_allclose(changed[:, :CHUNK], logits[:, :CHUNK], atol=1e-5)
  assert np.abs(np.asarray(changed[:, CHUNK:] - logits[:, CHUNK:])).max() > 1e-3


def test_talker_cached_decoding_matches_full_forward(talker_setup):
  """Prefill the conditioning into a KV cache, then feed speech one token at a time."""
  talker, apply, params, text_emb, thinker_hidden, speech, positions, mask = talker_setup
  full, _, _ = apply(params, speech, positions, mask, text_embeddings=text_emb,
                     thinker_hidden=thinker_hidden)
  cache = init_decoder_cache(talker.decoder, 2, N + S)
  _, _, cache = apply(params, None, positions[:, :N], mask[:, :N], text_embeddings=text_emb,
                      thinker_hidden=thinker_hidden, cache=cache, cache_index=0)
  step = jax.jit(lambda p, tok, pos, m, c, i: talker.apply(p, tok, pos, m, cache=c, cache_index=i))
  for i in range(S):
    q = N + i
    logits, _, cache = step(params, speech[:, i:i + 1], positions[:, q:q + 1], mask[:, q:q + 1],
                            cache, q)
    np.testing.assert_allclose(logits[:, 0], full[:, i], atol=1e-5)


def test_text_only_talker_ignores_the_thinker_states(talker_setup):
  """thinker_states=False: the same params give logits that no Thinker state changes, and
  they equal the full Talker's given all-zero states (training and decoding alike)."""
  talker, apply, params, text_emb, hidden, speech, positions, mask = talker_setup
  text_only = Talker(talker.decoder, talker.fusion_hidden_dim, thinker_states=False)
  run = lambda module, h: module.apply(params, speech, positions, mask,  # noqa: E731
                                       text_embeddings=text_emb, thinker_hidden=h)[0]
  np.testing.assert_array_equal(run(text_only, hidden), run(text_only, 3.0 * hidden + 1.0))
  np.testing.assert_allclose(run(text_only, hidden), run(talker, jnp.zeros_like(hidden)),
                             rtol=1e-6)
  assert not np.allclose(run(talker, hidden), run(talker, jnp.zeros_like(hidden)))
