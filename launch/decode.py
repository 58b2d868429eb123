"""Answers one question: typed (text Thinker) or spoken (the streaming speech model).

  python -m launch.decode --config=configs/mdm.py:tiny,text --checkpoint=W --prompt="12+7=?"
  python -m launch.decode --config=configs/mdm.py:tiny,stage=2 --config.data.dir=DATA \
      --checkpoint=W2 --vocoder=VOC/vocoder --audio=question.wav --out=answer.wav
  python -m launch.decode ... --heldout=0 --out=answer.wav   # a held-out corpus question

--config defaults to the one the --checkpoint workdir was trained with (its config.json);
a given config that disagrees with it on the model or the decoder is an error.

Prints the answer text, NFE and latencies (spoken: time to the first text and to the
first audio chunk, from the end of the question audio). Latencies are of the second,
warm call; the first includes compilation.

--audio is checked before any model is built: a missing, unreadable or empty file, or
one longer than the model's window, stops with one line naming it (exit 1); other
sample rates are resampled and several channels mixed down (said on stderr); silent
audio is answered with a warning.
"""
import os
import sys
import time

import jax
from absl import app, flags
from ml_collections import config_flags

from data_pipelines import question_audio
from launch import distributed
from launch.logs import quiet_logging
from vocalnet_jax.decoding import speech_io, step_rules
from vocalnet_jax.decoding.block_diffusion import CACHE_UPDATES, DEFAULT_CACHE_UPDATE
from vocalnet_jax.speech.audio_io import write_wav
from vocalnet_jax.evaluation import text_eval
from vocalnet_jax.modeling import run_config
from vocalnet_jax.modeling.validate import OBJECTIVES, ConfigError

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file[:arg] (default: the --checkpoint's config.json).")
_CHECKPOINT = flags.DEFINE_string(
    "checkpoint", None, "Training workdir or launch.export directory (random init if unset).")
_PROMPT = flags.DEFINE_string("prompt", None, "Text question, e.g. '12+7=?'.")
_MODE = flags.DEFINE_enum("mode", None, OBJECTIVES, "Decoder (default: config.objective).")
_STEPS = flags.DEFINE_integer("steps", 0, "MDM steps per block (0: config.diffusion).")
_RULE = flags.DEFINE_enum("rule", None, step_rules.RULES, "Commit rule; default: the one "
                          "the checkpoint trained for (topk, or left_to_right for "
                          "diffusion.commit_order=left_to_right).")
_CACHE_UPDATE = flags.DEFINE_enum("cache_update", DEFAULT_CACHE_UPDATE, CACHE_UPDATES,
                                  "Block K/V update.")
_MAX_NEW = flags.DEFINE_integer("max_new_tokens", 0, "0: config.data.response_len.")
_AUDIO = flags.DEFINE_string("audio", None, "Spoken question (WAV, resampled to 16 kHz).")
_HELDOUT = flags.DEFINE_integer("heldout", None, "Index of a held-out corpus question instead.")
_OUT = flags.DEFINE_string("out", None, "Where to write the spoken answer (16-bit WAV).")
_VOCODER = flags.DEFINE_string("vocoder", None, "Vocoder directory (train_vocoder's W/vocoder).")
_SPEECH_STEPS = flags.DEFINE_integer("speech_steps", 0, "Talker MDM steps per chunk (0: config).")


def decode_text(config, question: str, rule: str) -> None:
  """Prints the answer to a typed question with NFE and cold/warm latency."""
  mode = _MODE.value or config.objective
  lm, params, tokenizer = text_eval.load_thinker(config, _CHECKPOINT.value)
  prefix, valid = text_eval.encode_question(tokenizer, question, config.data.prompt_len)
  cfg = text_eval.decoder_config(config, tokenizer, mode, _STEPS.value, rule, _CACHE_UPDATE.value)
  max_new = _MAX_NEW.value or config.data.response_len
  run = lambda: jax.block_until_ready(  # noqa: E731
      text_eval.generate(lm, params, prefix, valid, jax.random.key(0), cfg, max_new))
  tick = time.perf_counter()
  run()
  cold = time.perf_counter() - tick
  tick = time.perf_counter()
  out = run()
  warm = time.perf_counter() - tick
  length = int(out.lengths[0])
  print(f"answer: {tokenizer.decode(out.tokens[0, :length].tolist())}")
  print(f"mode={mode} {cfg} nfe={int(out.nfe)} tokens={length} latency_s={warm:.4f} "
        f"first_call_s={cold:.2f} device={jax.devices()[0].platform}")


def decode_speech(config, rule: str) -> None:
  """Streams the spoken answer to a WAV or held-out question; writes question/answer WAVs."""
  if _AUDIO.value:
    wav, notes = question_audio.load_question_audio(
        _AUDIO.value, speech_io.mel_config(config).sample_rate,
        speech_io.question_window_s(config))
    for note in notes:
      print(note, file=sys.stderr)
    reference = None
  else:
    example = speech_io.heldout_question(config, _HELDOUT.value)
    wav, reference = example["audio"], example
    print(f"question: {example['question']}\nreference answer: {example['answer']}")
  pipe = speech_io.load_pipeline(config, _CHECKPOINT.value, _VOCODER.value, _STEPS.value,
                                 _SPEECH_STEPS.value, rule)
  speech_io.answer(pipe, wav)  # compile
  report = speech_io.answer(pipe, wav)
  print(f"answer: {report.text}")
  first_audio = "n/a (no audio)" if report.first_audio_s is None else (
      f"{report.first_audio_s:.3f}")
  print(f"mode={config.objective} nfe={report.nfe} first_text_s={report.first_text_s:.3f} "
        f"first_audio_chunk_s={first_audio} total_s={report.total_s:.3f} "
        f"device={jax.devices()[0].platform}")
  if _OUT.value and report.audio is not None:
    write_wav(_OUT.value, report.audio)
    print(f"wrote {_OUT.value} ({report.audio.size / 16000:.2f} s)")
    if reference is not None:
      question_path = os.path.join(os.path.dirname(os.path.abspath(_OUT.value)), "question.wav")
      write_wav(question_path, wav)
      print(f"wrote {question_path}")


def main(argv):
  del argv
  distributed.initialize()
  quiet_logging()
  try:
    config = run_config.resolve(_CONFIG.value, _CHECKPOINT.value)
    rule = _RULE.value or step_rules.default_rule(config.diffusion)
    if _PROMPT.value:
      decode_text(config, _PROMPT.value, rule)
    elif _AUDIO.value or _HELDOUT.value is not None:
      decode_speech(config, rule)
    else:
      raise app.UsageError("give --prompt (text), --audio=WAV or --heldout=N (speech)")
  except ConfigError as e:
    sys.exit(f"error: {e}")  # one line naming the field or path, exit status 1
  except question_audio.QuestionAudioError as e:
    sys.exit(f"error: {e}")  # one line on stderr, exit status 1


if __name__ == "__main__":
  app.run(main)
