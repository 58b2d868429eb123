"""Streaming speech answers: interleaved streaming equals all-text-then-all-speech."""
import copy
import dataclasses

import jax
import numpy as np
import pytest

from configs import ar, mdm
from data_pipelines import tts
from vocalnet_jax.decoding import streaming
from vocalnet_jax.modeling.build import build


def _pipeline(module, shift, corpus, thinker_states=True):
  config = module.get_config("tiny,stage=2")
  config.talker.thinker_states = thinker_states
  config.diffusion.shift_logits = shift  # the Thinker's (the Talker never shifts)
  config.data.dir = corpus
  config.data.update(response_len=12, max_units=44, mel_buckets=(400,))
  config.talker.text_per_chunk = 3  # several text blocks per speech chunk and vice versa
  model = build(config)
  params = jax.jit(model.module.init)(jax.random.key(0), *streaming_init_inputs(config))["params"]
  return streaming.SpeechPipeline(model.module, params, model.text_tokenizer,
                                  model.speech_vocab, streaming.stream_config(config, 2, 3))


@pytest.mark.parametrize("module,shift", [(mdm, False), (mdm, True), (ar, False)])
def test_stream_equals_one_shot(module, shift, prepared_corpus):
  """The interleaved stream gives, chunk by chunk, the units of decoding all text first
  and all speech after, although its chunks start before the text has ended."""
  pipe = _pipeline(module, shift, prepared_corpus)
  wav = tts.synthesize("what is two plus three", tts.speaker_pool(1, 0)[0])
  events = list(pipe.stream(wav))
  one_shot = list(pipe._events(lambda: pipe._start(wav, jax.random.key(0)), interleave=False))
  kinds = [e.kind for e in events]
  # it really streams: speech starts before the last text block (one-shot: after it)
  assert kinds.index("units") < len(kinds) - 1 - kinds[::-1].index("text")
  assert [e.kind for e in one_shot] == sorted(kinds, key=("text", "units").index)
  stream_units = [e.units for e in events if e.kind == "units"]
  once_units = [e.units for e in one_shot if e.kind == "units"]
  assert len(stream_units) == len(once_units) >= 1 and sum(u.size for u in once_units) > 0
  for streamed, once in zip(stream_units, once_units):
    np.testing.assert_array_equal(streamed, once)
  once = pipe.respond(wav)
  assert events[-1].text == once["text"] == one_shot[-1].text != ""
  np.testing.assert_array_equal(np.concatenate(stream_units), once["units"])
  assert events[-1].nfe == once["nfe"] > 0
  assert [e.time_s for e in events] == sorted(e.time_s for e in events)


def test_text_and_speech_draw_from_independent_keys(prepared_corpus, monkeypatch):
  """Text and speech sampling get keys of their own: no key feeds both halves (one shared
  key would correlate their draws whenever sampling is random)."""
  keys = {"text": [], "speech": []}

  def spy(kind, fn):
    def wrapped(*args, **kwargs):
      keys[kind].append(tuple(np.asarray(jax.random.key_data(args[6])).ravel()))
      return fn(*args, **kwargs)
    return wrapped

  monkeypatch.setattr(streaming, "thinker_block", spy("text", streaming.thinker_block))
  monkeypatch.setattr(streaming, "talker_chunk", spy("speech", streaming.talker_chunk))
  pipe = _pipeline(mdm, False, prepared_corpus)
  pipe.respond(tts.synthesize("what is two plus three", tts.speaker_pool(1, 0)[0]))
  assert keys["text"] and keys["speech"]
  assert not set(keys["text"]) & set(keys["speech"])


@pytest.mark.parametrize("module", [mdm, ar])
def test_speak_says_a_text_as_the_talker_says_it_behind_a_thinker_that_printed_it(
    module, prepared_corpus, monkeypatch):
  """`speak(text)` gives the units `stream` gives when its Thinker prints exactly `text`
  (with states the text-only Talker must ignore), with none of the Thinker's forwards."""
  pipe = _pipeline(module, False, prepared_corpus, thinker_states=False)
  tok, block = pipe.text_tokenizer, pipe.cfg.text_block
  text = "seven is odd."
  ids = list(tok.encode(text)) + [tok.eos_id]
  ids += [tok.eos_id] * (pipe.cfg.num_text_blocks * block - len(ids))

  def printing_thinker(model, params, cache, prefix_valid, carry, j, rng, **kwargs):
    tokens = np.asarray([ids[int(j) * block:(int(j) + 1) * block]], np.int32)
    hidden = jax.random.normal(rng, (1, block, model.thinker.embed_dim))
    return tokens, hidden, carry, cache, 3

  wav = tts.synthesize("is seven odd or even", tts.speaker_pool(1, 0)[0])
  said = list(pipe.speak(text))
  monkeypatch.setattr(streaming, "thinker_block", printing_thinker)
  streamed = list(pipe.stream(wav))
  units = lambda events: [e.units for e in events if e.kind == "units"]  # noqa: E731
  assert len(units(said)) == len(units(streamed)) >= 1
  for a, b in zip(units(said), units(streamed)):
    np.testing.assert_array_equal(a, b)
  assert said[-1].text == streamed[-1].text == text
  assert said[-1].thinker_nfe == 0 and said[-1].nfe == streamed[-1].nfe - streamed[-1].thinker_nfe


def test_the_threshold_reaches_the_talkers_commit_rule(prepared_corpus):
  """StreamConfig.threshold is the threshold rule's: at 0 every unit of a chunk passes and
  the chunk takes one forward, above 1 none does and it takes all S (speech_steps=3)."""
  pipe = _pipeline(mdm, False, prepared_corpus, thinker_states=False)

  def said(threshold):
    cfg = dataclasses.replace(pipe.cfg, rule="threshold", threshold=threshold)
    return list(dataclasses.replace(pipe, cfg=cfg).speak("seven is odd."))

  eager, patient = said(0.0), said(1.01)
  chunks = sum(e.kind == "units" for e in eager)
  assert chunks == sum(e.kind == "units" for e in patient) >= 1
  assert patient[-1].nfe - eager[-1].nfe == chunks * (pipe.cfg.speech_steps - 1)
  # the Talker's own threshold (speech_threshold) overrides the shared one
  cfg = dataclasses.replace(pipe.cfg, rule="threshold", threshold=1.01, speech_threshold=0.0)
  assert list(dataclasses.replace(pipe, cfg=cfg).speak("seven is odd."))[-1].nfe == eager[-1].nfe


def test_the_talkers_owed_clean_forward_says_the_same_units_one_forward_cheaper(
    prepared_corpus):
  """cache_update next_block: each chunk's clean forward rides on the next chunk's first
  step, so the units are extra_forward's and every chunk costs one forward fewer (no unit
  ends the speech here, so every chunk of max_speech_tokens is said)."""
  pipe = _pipeline(mdm, False, prepared_corpus, thinker_states=False)
  endless = copy.copy(pipe.speech_vocab)
  endless.num_units, endless.eos_id = endless.size, endless.size + 1
  pipe = dataclasses.replace(pipe, speech_vocab=endless)

  def said(update):
    cfg = dataclasses.replace(pipe.cfg, cache_update=update)
    return list(dataclasses.replace(pipe, cfg=cfg).speak("seven is odd."))

  exact, fused = said("extra_forward"), said("next_block")
  units = lambda events: [e.units for e in events if e.kind == "units"]  # noqa: E731
  assert len(units(exact)) == len(units(fused)) == pipe.cfg.num_speech_chunks > 1
  for a, b in zip(units(exact), units(fused)):
    np.testing.assert_array_equal(a, b)
  assert exact[-1].nfe - fused[-1].nfe == len(units(exact))


def test_speak_refuses_a_talker_that_reads_thinker_states(prepared_corpus):
  with pytest.raises(ValueError, match="thinker_states=False"):
    _pipeline(mdm, False, prepared_corpus).speak("seven is odd.")


def streaming_init_inputs(config):
  from vocalnet_jax.models.speech_llm import init_inputs
  return init_inputs(1, 10, config.encoder.n_mels, 4, 4)


def test_thinker_states_of_the_last_block_never_see_past_eos():
  """The clean pass that fuses the final text block into the Talker hides the eos-filled
  tail, as training does (`SpeechTalkerTask.thinker_states` keys = answer + eos): states
  up to the eos are the same whatever follows it."""
  import jax.numpy as jnp
  from tests.decoding_helpers import TOK, prompts, tiny_model
  from vocalnet_jax.decoding import decoder_lm
  from vocalnet_jax.decoding.lm import context_keys, prefill, upto_first_eos
  model, params = tiny_model()
  lm = decoder_lm(model)
  prefix, valid = prompts(["12+7=?"])
  P, B = prefix.shape[1], 4
  _, cache = prefill(lm, params, prefix, valid, lm.init_cache(1, P + B))
  positions = jnp.sum(valid, 1, keepdims=True) + jnp.arange(B)[None]
  visible = context_keys(valid, P + B, P)
  eos = TOK.eos_id
  states = []
  for tail in (eos, 20):  # the block after "19<eos>": eos-filled, or anything else
    tokens = jnp.array([[TOK.encode("1")[0], TOK.encode("9")[0], eos, tail]])
    hidden, _ = streaming._clean_forward(lm, params, tokens, positions, visible, P, cache,
                                         upto_first_eos(tokens, eos))
    states.append(np.asarray(hidden[0, :3]))
  np.testing.assert_allclose(states[0], states[1], atol=1e-6)


def test_ears_that_spell_hand_the_thinker_their_transcript_as_a_typed_question(prepared_corpus):
  """read_as=transcript: the pipeline answers what the ears spelled exactly as the typed
  decoder answers that text; the typed prompt's padding (one compiled prefill per length
  bucket) leaves the Thinker's cache and first logits unchanged."""
  import jax.numpy as jnp
  from vocalnet_jax.decoding import transcript
  from vocalnet_jax.evaluation import text_eval
  config = ar.get_config("tiny,stage=2")
  config.auxiliary.update(ctc_units="chars", ctc_on="encoder")
  config.adaptor.read_as = "transcript"
  config.data.dir = prepared_corpus
  config.data.update(response_len=12, max_units=44, mel_buckets=(400,))
  model = build(config)
  params = jax.jit(model.module.init)(jax.random.key(0), *streaming_init_inputs(config))["params"]
  tok = model.text_tokenizer
  pipe = streaming.SpeechPipeline(model.module, params, tok, model.speech_vocab,
                                  streaming.stream_config(config))
  wav = tts.synthesize("what is two plus three", tts.speaker_pool(1, 0)[0])
  heard = transcript.heard_texts(*transcript.greedy_spelling(model.module, params,
                                                             *pipe._mel(wav)))[0]
  assert heard  # random ears spell something
  lm = streaming.part_lm(model.module, "thinker")
  prefix, valid = text_eval.encode_question(tok, heard, config.data.prompt_len)
  out = text_eval.generate(lm, params, prefix, valid, jax.random.key(0),
                           text_eval.decoder_config(config, tok, "ar"),
                           pipe.cfg.max_text_tokens)
  typed = tok.decode(np.asarray(out.tokens[0, :int(out.lengths[0])]).tolist())
  assert pipe.respond(wav)["text"] == typed
  padded, unpadded = (streaming.typed_prefill(model.module, params,
                                              *streaming.typed_prompt(tok, heard, bucket),
                                              cfg=pipe.cfg, mask_id=tok.mask_id)
                      for bucket in (64, 1))
  assert int(jnp.sum(~padded[1])) > 0  # the bucket padded this prompt
  np.testing.assert_allclose(padded[2], unpadded[2], atol=1e-5)
