"""Rules training and decoding share: each side's view of the same rule agrees."""
import jax.numpy as jnp
import numpy as np
import pytest

from data_pipelines import synthetic_text
from vocalnet_jax.decoding import streaming
from vocalnet_jax.decoding.lm import block_mask, context_keys, prefill_mask
from vocalnet_jax.diffusion import attention_masks
from vocalnet_jax.evaluation import text_eval
from vocalnet_jax.models import talker


@pytest.mark.parametrize("chunk,per_chunk", [(4, 3), (15, 5), (3, 7)])
def test_streaming_talker_sees_what_training_shows(chunk, per_chunk):
  """Speech chunk k in the decoder's cache [text N ; speech] sees the text that training's
  `talker_text_visibility` rows of chunk k show (up to the answer's length) and the
  earlier chunks; text slot j sits at training's RoPE position."""
  num_text, num_chunks = 12, 4
  cache_len = num_text + num_chunks * chunk
  train_vis = np.asarray(talker.talker_text_visibility(num_text, num_chunks * chunk, chunk,
                                                       per_chunk))
  text_pos, _ = talker.talker_positions(num_text, num_chunks * chunk, chunk, per_chunk)
  np.testing.assert_array_equal(
      talker.text_positions(jnp.arange(num_text), chunk, per_chunk), text_pos)
  for answer_len in (num_text, 5):
    for k in range(num_chunks):
      vis = np.asarray(streaming.talker_visible(cache_len, num_text, jnp.int32(k),
                                                jnp.int32(answer_len), chunk, per_chunk))[0]
      for i in range(k * chunk, (k + 1) * chunk):  # every speech token of chunk k
        np.testing.assert_array_equal(vis[:num_text],
                                      train_vis[i] & (np.arange(num_text) < answer_len))
      np.testing.assert_array_equal(vis[num_text:], np.arange(num_chunks * chunk) < k * chunk)


def _prefix_valid():
  return jnp.array([[False, False, True, True, True], [True, True, True, True, True]])


def test_prefill_mask_is_the_prefix_rows_of_training():
  prefix_valid = _prefix_valid()
  resp, cache_len = 8, 13
  train = attention_masks.with_prefix(attention_masks.block_causal_mask(resp, 4), prefix_valid,
                                      jnp.ones((2, resp), bool))  # [2, P + R, P + R]
  decode = prefill_mask(prefix_valid, cache_len)  # [2, P, C]
  np.testing.assert_array_equal(decode[:, :, :5], train[:, :5, :5])
  assert not np.any(decode[:, :, 5:])


@pytest.mark.parametrize("objective", ["mdm", "ar"])
def test_block_sees_itself_and_its_cache_as_in_training(objective):
  """Block j of the answer, written after the prefix in the cache, sees what the clean
  stream of training sees (block-causal for MDM; causal rows for one-token AR blocks),
  with the answer's validity (answer + eos) hiding the tail of the last block."""
  prefix_valid = _prefix_valid()
  P, R, B = 5, 8, 4 if objective == "mdm" else 1
  body = (attention_masks.block_causal_mask(R, B) if objective == "mdm"
          else attention_masks.causal_mask(R))
  answer_valid = jnp.arange(R)[None] < jnp.array([[6], [8]])  # [2, R]
  train = attention_masks.with_prefix(body, prefix_valid, answer_valid)  # [2, P + R, P + R]
  for j in range(R // B):
    write = P + j * B
    decode = block_mask(context_keys(prefix_valid, P + R, write), jnp.int32(write),
                        answer_valid[:, j * B:(j + 1) * B])  # [2, B, C]
    rows = train[:, write:write + B]
    valid_rows = answer_valid[:, j * B:(j + 1) * B]  # rows of padding are never read
    np.testing.assert_array_equal(np.where(valid_rows[..., None], decode, False),
                                  np.where(valid_rows[..., None], rows, False))


def test_typed_question_uses_the_training_prompt():
  tok = synthetic_text.CharTokenizer()
  source = synthetic_text.SyntheticTextSource(4, 24, 12, seed=3, tokenizer=tok)
  for i in range(4):
    example = source[i]
    question = tok.decode(example["prompt"][example["prompt_valid"]][2:-1])
    ids, valid = text_eval.encode_question(tok, question, 24)
    np.testing.assert_array_equal(ids[0], example["prompt"])
    np.testing.assert_array_equal(valid[0], example["prompt_valid"])
