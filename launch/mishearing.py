"""Fits the mishearing channel of ears that spell (`data_pipelines.mishearing`).

  python -m launch.mishearing --checkpoint=W/ears --out=W/mishearing

Sentences the ears never heard (the corpus's read-sentence generator, past any index a
corpus stores, over its lexicon and read words) are spoken by voices drawn apart from the
corpus's pools, transcribed by the ears' greedy spelling, and every character edit between
sentence and transcript is counted. Writes OUT/channel.json (for `data.mishear.channel`)
and OUT/heard.json (the CER and the first pairs, in the `benchmarks/results` schema). No
evaluation split is read.
"""
import os
import sys

import jax
import numpy as np
from absl import app, flags

from data_pipelines import mishearing, spoken_qa, tts
from launch.logs import main_quietly
from vocalnet_jax.decoding import streaming, transcript
from vocalnet_jax.evaluation import result_file
from vocalnet_jax.modeling import build, restore, run_config
from vocalnet_jax.modeling.validate import ConfigError
from vocalnet_jax.models.speech_llm import spells

_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Ears that spell: a training workdir "
                                  "with auxiliary.ctc_units=chars.")
_OUT = flags.DEFINE_string("out", None, "Directory for channel.json and heard.json.")
_N = flags.DEFINE_integer("n", 1000, "Sentences transcribed.")
# Far past any read split a corpus stores, so every sentence is new to the ears.
_FIRST = flags.DEFINE_integer("first", 10_000_000, "First read-sentence generator index.")
_CORPUS_SEED = flags.DEFINE_integer("corpus_seed", 0, "The corpus generator's seed.")
_VOICES = flags.DEFINE_integer("voices", 32, "Speakers, drawn with --voice_seed.")
_VOICE_SEED = flags.DEFINE_integer("voice_seed", 1_000_003, "Seed of the speaker pool "
                                   "(apart from the corpus's pools, drawn from its seed).")
_BATCH = flags.DEFINE_integer("batch_size", 16, "Sentences per transcription batch.")
flags.mark_flags_as_required(["checkpoint", "out"])


def sentences(n: int, first: int, seed: int, read_words: tuple[str, ...],
              voices: list[tts.Speaker]) -> list[tuple[str, tts.Speaker]]:
  """n read sentences (generator indices first.., never an evaluation answer) and voices."""
  out = []
  for i in range(first, first + n):
    ex = spoken_qa.make_read_example(seed, i, len(voices), read_words=read_words)
    out.append((ex.question, voices[ex.speaker_index]))
  return out


def main(argv):
  del argv
  try:
    config = run_config.resolve(None, _CHECKPOINT.value)
    if not spells(config):
      raise ConfigError(f"--checkpoint={_CHECKPOINT.value}: its ears do not spell "
                        "(auxiliary.ctc_units must be 'chars' with ctc_on='encoder')")
    built, params = restore.load(config, _CHECKPOINT.value, jax.devices()[:1])
  except (ConfigError, FileNotFoundError, ValueError) as e:
    sys.exit(f"error: {e}")
  read_words = tuple(build.corpus_read_words(config.data.dir))
  voices = tts.speaker_pool(_VOICES.value, _VOICE_SEED.value, (tts.DEFAULT_SPEAKER.name,))
  texts = sentences(_N.value, _FIRST.value, _CORPUS_SEED.value, read_words, voices)
  frames = streaming.stream_config(config).mel_frames
  heard = transcript.spell_waves(built.module, params,
                                 [tts.synthesize(text, voice) for text, voice in texts],
                                 frames, _BATCH.value)
  channel = mishearing.fit((t, h) for (t, _), h in zip(texts, heard))
  os.makedirs(_OUT.value, exist_ok=True)
  with open(os.path.join(_OUT.value, "channel.json"), "w") as f:
    f.write(channel.to_json())
  report = {"n": channel.pairs, "cer": channel.cer,
            "exact": float(np.mean([t == h for (t, _), h in zip(texts, heard)])),
            "pairs": [{"sentence": t, "heard": h} for (t, _), h in zip(texts[:50], heard)]}
  result_file.write(os.path.join(_OUT.value, "heard.json"),
                    {"checkpoint": _CHECKPOINT.value, "first": _FIRST.value,
                     "voices": _VOICES.value, "voice_seed": _VOICE_SEED.value}, report)
  print(f"{channel.pairs} new sentences: CER {channel.cer:.3f}, exact {report['exact']:.2f} "
        f"-> {_OUT.value}/channel.json")


if __name__ == "__main__":
  app.run(main_quietly(main))
