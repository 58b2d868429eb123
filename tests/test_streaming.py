"""Streaming speech answers: interleaved streaming equals all-text-then-all-speech."""
import jax
import numpy as np
import pytest

from configs import ar, mdm
from data_pipelines import tts
from vocalnet_jax.decoding import streaming
from vocalnet_jax.training import tasks


@pytest.mark.parametrize("module", [mdm, ar])
def test_stream_equals_one_shot(module, prepared_corpus):
  config = module.get_config("tiny,stage=2")
  config.data.dir = prepared_corpus
  config.data.update(response_len=12, max_units=44, mel_buckets=(400,))
  config.talker.text_per_chunk = 3  # several text blocks per speech chunk and vice versa
  task = tasks.build_task(config)
  params = jax.jit(task.model.init)(jax.random.key(0), *streaming_init_inputs(config))["params"]
  pipe = streaming.SpeechPipeline(task.model, params, task.corpus.text_tokenizer,
                                  task.speech_vocab, streaming.stream_config(config, 2, 3))
  wav = tts.synthesize("what is two plus three", tts.speaker_pool(1, 0)[0])
  events = list(pipe.stream(wav))
  once = pipe.respond(wav)
  units = [e.units for e in events if e.units is not None]
  assert events[-1].text == once["text"]
  np.testing.assert_array_equal(np.concatenate(units), once["units"])
  assert events[-1].nfe == once["nfe"] > 0
  assert [e.time_s for e in events] == sorted(e.time_s for e in events)
  # random weights still obey the streaming limit: chunk k saw text < 3 * (k + 1) only
  assert len(units) >= 1 and all(u.dtype.kind == "i" for u in units)


def streaming_init_inputs(config):
  from vocalnet_jax.models.speech_llm import init_inputs
  return init_inputs(1, 10, config.encoder.n_mels, 4, 4)
