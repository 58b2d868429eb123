"""What ears that spell heard: batched spelling equals one wave at a time."""
import jax
import numpy as np

from configs import ar
from data_pipelines import features, tts
from vocalnet_jax.decoding import transcript
from vocalnet_jax.modeling.build import build
from vocalnet_jax.models.speech_llm import init_inputs


def test_spell_waves_is_independent_of_the_batch(prepared_corpus):
  """Padding rows and frames change no row's spelling: a batch of 2 (the last one padded)
  spells each wave as its own unpadded greedy path does."""
  config = ar.get_config("tiny,stage=1")
  config.auxiliary.update(ctc_units="chars", ctc_on="encoder")
  config.data.dir = prepared_corpus
  model = build(config)
  params = jax.jit(model.module.init)(
      jax.random.key(0), *init_inputs(1, 10, config.encoder.n_mels, 4, 4))["params"]
  speaker = tts.speaker_pool(1, 0)[0]
  waves = [tts.synthesize(t, speaker) for t in ("what is two plus three", "hello", "red")]
  batched = transcript.spell_waves(model.module, params, waves, frames=400, batch_size=2)
  alone = []
  for wav in waves:
    mel = features.log_mel(wav, features.MelConfig())[None]  # [1, frames, n_mels]
    alone += transcript.heard_texts(*transcript.greedy_spelling(
        model.module, params, mel, np.ones(mel.shape[:2], bool)))
  assert batched == alone
  assert any(alone)  # random ears spell something
