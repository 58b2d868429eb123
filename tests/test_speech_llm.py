"""The speech model's audio prompt: what the Thinker reads of the audio."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import ar
from data_pipelines import spelling
from vocalnet_jax.decoding import transcript
from vocalnet_jax.decoding.lm import prefill_mask
from vocalnet_jax.diffusion.attention_masks import prefix_positions
from vocalnet_jax.models.speech_llm import (SpeechLLM, ctc_greedy_keep, init_inputs,
                                            speech_llm_from_config)

BLANK = 0
VOCAB = 64  # small, so that random ears repeat tokens


def test_ctc_greedy_keep_merges_repeats_and_drops_blanks_and_padding():
  best = jnp.array([[5, 5, BLANK, 5, 7, 7, BLANK, BLANK, 9, 9]])
  valid = jnp.array([[True] * 8 + [False] * 2])
  keep = ctc_greedy_keep(best, valid, BLANK)
  assert np.asarray(best[0])[np.asarray(keep[0])].tolist() == [5, 5, 7]  # "a _ a" is two a's


def _speech_model(read_as: str) -> tuple[SpeechLLM, dict]:
  config = ar.get_config("tiny,stage=1")
  config.adaptor.read_as = read_as
  model = speech_llm_from_config(config, VOCAB, VOCAB, ctc_blank=BLANK)
  params = model.init(jax.random.key(0), *init_inputs(1, 10, config.encoder.n_mels, 4, 4))
  return model, nn.unbox(params)["params"]


def _last_logits(model: SpeechLLM, params: dict, embeddings: jax.Array,
                 valid: jax.Array) -> jax.Array:
  """The Thinker's next-token logits after a prompt [1, P, embed] with validity [1, P]."""
  v = {"params": params}
  hidden, _ = model.apply(v, embeddings, prefix_positions(valid, 0),
                          prefill_mask(valid, valid.shape[1]), method=SpeechLLM.thinker_hidden)
  return model.apply(v, hidden[:, -1], method=SpeechLLM.thinker_logits)


def test_ctc_tokens_prompt_is_the_typed_prompt_of_its_transcript():
  """read_as=ctc_tokens: the Thinker answers the audio exactly as it answers the typed prompt
  [head ; greedy CTC transcript ; tail] (dropped frames take no position)."""
  model, params = _speech_model("ctc_tokens")
  mel = jax.random.normal(jax.random.key(1), (1, 48, 80))
  mel_valid = jnp.arange(48)[None] < 40
  head, tail = jnp.array([[1, 2, 3]]), jnp.array([[4, 5]])
  args = ({"params": params}, mel, mel_valid, head, tail, "adaptor")
  _, _, ctc_logits, audio_valid = model.apply(*args, method=SpeechLLM.audio_prompt_and_transcript)
  best = np.asarray(jnp.argmax(ctc_logits[0], -1))[np.asarray(audio_valid[0])]
  blank = int(best[1])  # a token the random ears emit plays the blank, so some frames drop
  model = model.clone(ctc_blank=blank)
  prefix, valid, _, _ = model.apply(*args, method=SpeechLLM.audio_prompt_and_transcript)
  transcript = [int(t) for i, t in enumerate(best)
                if t != blank and (i == 0 or t != best[i - 1])]  # reference greedy CTC
  assert 0 < len(transcript) < len(best)
  typed = jnp.array([[1, 2, 3] + transcript + [4, 5]])
  typed_emb = model.apply({"params": params}, typed, method=SpeechLLM.thinker_embed)
  np.testing.assert_allclose(_last_logits(model, params, prefix, valid),
                             _last_logits(model, params, typed_emb, jnp.ones(typed.shape, bool)),
                             atol=1e-5, rtol=1e-5)


def test_frames_prompt_keeps_every_adapted_frame():
  model, params = _speech_model("frames")
  mel = jax.random.normal(jax.random.key(1), (1, 48, 80))
  mel_valid = jnp.arange(48)[None] < 40
  head, tail = jnp.array([[1, 2, 3]]), jnp.array([[4, 5]])
  _, valid, _, audio_valid = model.apply({"params": params}, mel, mel_valid, head, tail,
                                         "adaptor", method=SpeechLLM.audio_prompt_and_transcript)
  assert int(valid.sum()) == 5 + int(audio_valid.sum())


def test_ears_that_spell_transcribe_characters_and_build_no_audio_prompt():
  """ctc_units=chars: the transcriber scores the spelling alphabet; `transcript.greedy_spelling` is
  its greedy CTC path (argmax, repeats merged, blanks and padding dropped) as text; and
  read_as=transcript refuses an in-graph audio prompt (the host tokenizes the text)."""
  config = ar.get_config("tiny,stage=1")
  config.auxiliary.update(ctc_units="chars", ctc_on="encoder")
  config.adaptor.read_as = "transcript"
  model = speech_llm_from_config(config, VOCAB, VOCAB, ctc_blank=BLANK)
  params = nn.unbox(model.init(jax.random.key(0),
                               *init_inputs(1, 10, config.encoder.n_mels, 4, 4)))["params"]
  assert params["transcriber"]["kernel"].shape[-1] == spelling.VOCAB_SIZE
  mel = jax.random.normal(jax.random.key(1), (2, 48, 80))
  mel_valid = jnp.arange(48)[None] < jnp.array([[40], [48]])
  logits, frames_valid = model.apply({"params": params}, mel, mel_valid,
                                     method=SpeechLLM.transcribe)
  best, keep = transcript.greedy_spelling(model, params, mel, mel_valid)
  for row in range(2):
    path = np.asarray(jnp.argmax(logits[row], -1))[np.asarray(frames_valid[row])]
    want = [int(t) for i, t in enumerate(path)
            if t != spelling.BLANK and (i == 0 or t != path[i - 1])]  # reference greedy CTC
    assert transcript.heard_texts(best, keep)[row] == spelling.unspell(want)
  with pytest.raises(ValueError, match="read_as=transcript"):
    model.apply({"params": params}, mel, mel_valid, jnp.array([[1, 2]] * 2),
                jnp.array([[3]] * 2), method=SpeechLLM.audio_prompt)
