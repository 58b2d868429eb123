"""Decode benchmarks: JSON rows + a PNG plot, AR vs MDM on the same weights.

Text Thinker (`PRESET,text`): tokens/s and latency at S in {1, 2, 4, 8, 16}.
  python -m launch.benchmark_decode --config=configs/mdm.py:small,text \
      --out=benchmarks/results/bench.json
Spoken answers (a speech config, e.g. `PRESET,stage=2`): question audio -> encoder ->
Thinker -> Talker -> vocoder through the streaming pipeline `launch.decode` uses; time
to the first audio chunk and to the whole answer, NFE of Thinker and Talker, at S in
{1, 2, 4} (vocalnet_jax/decoding/speech_benchmark.py).
  python -m launch.benchmark_decode --config=configs/mdm.py:small,stage=2

Random init unless --checkpoint (an MDM workdir) and --ar_checkpoint (an AR workdir)
are given; by default every request generates a fixed length (no early eos) so both
modes produce the same number of tokens. --config defaults to the --checkpoint
workdir's config.json; the --ar_checkpoint's model shapes must match it.
Speech: without a prepared corpus at config.data.dir, random weights use --text_vocab
and --num_units; the vocoder is --vocoder (train_vocoder's W/vocoder) or a random one of
configs/vocoder.py:--vocoder_preset (its time counts in the first-audio latency); the
question is --audio, corpus question --heldout, or the corpus TTS speaking --question.
The answer length is config.data.response_len text tokens and config.data.max_units + 1
units (override with --config.data.*).
"""
import dataclasses
import json
import os
import sys

import jax
from absl import app, flags
from ml_collections import config_flags

from configs import vocoder as vocoder_configs
from launch import distributed
from launch.logs import run_quietly
from vocalnet_jax.decoding import benchmark, step_rules
from vocalnet_jax.decoding import lm as lm_lib
from vocalnet_jax.decoding.block_diffusion import CACHE_UPDATES, DEFAULT_CACHE_UPDATE
from vocalnet_jax.evaluation import result_file, text_eval
from vocalnet_jax.modeling import run_config
from vocalnet_jax.modeling.validate import ConfigError

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Model config file[:arg] (MDM; default: the --checkpoint's config.json).")
_CHECKPOINT = flags.DEFINE_string("checkpoint", None,
                                  "MDM workdir or export (random init if unset).")
_AR_CHECKPOINT = flags.DEFINE_string("ar_checkpoint", None,
                                     "AR workdir or export (random init if unset).")
_OUT = flags.DEFINE_string("out", None, "JSON rows; PNG next to it (default: "
                           "benchmarks/results/bench.json, speech: "
                           "benchmarks/results/speech_latency_PRESET_PLATFORM.json).")
_STEPS = flags.DEFINE_list("steps", None, "MDM steps per block (default 1,2,4,8,16; "
                           "speech: 1,2,4, for Thinker blocks and Talker chunks alike).")
_RULE = flags.DEFINE_enum("rule", "topk", step_rules.RULES, "Commit rule.")
_CACHE_UPDATES = flags.DEFINE_list(
    "cache_updates", None, f"How a clean block's K/V enter the cache: {CACHE_UPDATES} "
    f"(default all; speech: the Talker's, default {DEFAULT_CACHE_UPDATE}).")
_REPEATS = flags.DEFINE_integer("repeats", 10, "Timed repetitions after the warm-up.")
# text only
_MAX_NEW = flags.DEFINE_integer("max_new_tokens", 128, "Tokens per request (text).")
_BATCH = flags.DEFINE_integer("batch_size", 1, "Requests decoded together (text).")
_STOP_AT_EOS = flags.DEFINE_bool("stop_at_eos", False,
                                 "Stop at eos instead of fixed length (text).")
_PARAM_DTYPE = flags.DEFINE_string("param_dtype", "",
                                   "Params as served (text; default: config.model.dtype).")
# speech only
_VOCODER = flags.DEFINE_string("vocoder", None, "Trained vocoder directory (speech; "
                               "train_vocoder's W/vocoder); random weights if unset.")
_VOCODER_PRESET = flags.DEFINE_enum("vocoder_preset", "tiny", vocoder_configs.PRESETS,
                                    "configs/vocoder.py preset of the random vocoder (speech).")
_AUDIO = flags.DEFINE_string("audio", None, "Question WAV (speech).")
_HELDOUT = flags.DEFINE_integer("heldout", None, "Held-out corpus question index (speech).")
_QUESTION = flags.DEFINE_string("question", "what is the first letter of table?",
                                "Question the corpus TTS speaks (speech, default input).")
_TEXT_VOCAB = flags.DEFINE_integer(
    "text_vocab", 384, "Text vocabulary of random weights without a corpus when "
    "config.model.vocab_size is 0 (speech; the demo corpus has 373).")
_NUM_UNITS = flags.DEFINE_integer(
    "num_units", 512, "Speech units of random weights without a corpus when "
    "config.talker.num_units is 0 (speech; the demo corpus has 512).")
_TEXT_ONLY = ("max_new_tokens", "batch_size", "stop_at_eos", "param_dtype")
_SPEECH_ONLY = ("vocoder", "vocoder_preset", "audio", "heldout", "question", "text_vocab",
                "num_units")
SPEECH_TASKS = ("speech_thinker", "speech_talker")


def main(argv):
  del argv
  distributed.initialize()
  run_quietly(bench)


def _reject(names: tuple[str, ...], task: str) -> None:
  given = [f"--{n}" for n in names if flags.FLAGS[n].present]
  if given:
    raise ConfigError(f"{', '.join(given)}: not used by a config.task={task!r} benchmark")


def bench() -> None:
  config = run_config.resolve(_CONFIG.value, _CHECKPOINT.value)
  if config.task == "text_lm":
    _reject(_SPEECH_ONLY, config.task)
    bench_text(config)
  elif config.task in SPEECH_TASKS:
    _reject(_TEXT_ONLY, config.task)
    bench_speech(config)
  else:
    raise ConfigError(f"config.task={config.task!r}: launch.benchmark_decode times "
                      f"'text_lm' or {SPEECH_TASKS} configs")


def _ar_params_saved(config):
  """The --ar_checkpoint's config, checked to share the model's shapes (None if unset)."""
  ar_saved = run_config.read(_AR_CHECKPOINT.value) if _AR_CHECKPOINT.value else None
  if ar_saved is not None:
    run_config.check(ar_saved, config, _AR_CHECKPOINT.value, hard=run_config.PARAM_FIELDS,
                     soft=())
  return ar_saved


def _write(config: dict, metrics: dict, plot, default_out: str) -> str:
  """Writes the result file (process 0; `evaluation.result_file`'s schema) and the PNG of
  its rows next to it; returns the JSON path."""
  out = _OUT.value or default_out
  if jax.process_index() == 0:
    result_file.write(out, config, metrics,
                      command=result_file.command_line(module="launch.benchmark_decode"))
    plot(metrics["rows"], os.path.splitext(out)[0] + ".png")
  return out


def bench_text(config) -> None:
  """Times the text Thinker, AR vs MDM, and writes its JSON rows and plot."""
  _ar_params_saved(config)
  lm, mdm_params, tokenizer = text_eval.load_thinker(config, _CHECKPOINT.value)
  _, ar_params, _ = text_eval.load_thinker(config, _AR_CHECKPOINT.value or _CHECKPOINT.value)
  param_dtype = _PARAM_DTYPE.value or config.model.dtype
  mdm_params, ar_params = (lm_lib.cast_params(p, param_dtype) for p in (mdm_params, ar_params))
  prefix, valid, _ = text_eval.held_out_prompts(config, _BATCH.value)
  spec = benchmark.BenchmarkSpec(
      block_size=config.diffusion.block_size, mask_id=tokenizer.mask_id,
      eos_id=tokenizer.eos_id, steps=tuple(int(s) for s in _STEPS.value or (1, 2, 4, 8, 16)),
      rule=_RULE.value, cache_updates=tuple(_CACHE_UPDATES.value or CACHE_UPDATES),
      max_new_tokens=_MAX_NEW.value, repeats=_REPEATS.value, stop_at_eos=_STOP_AT_EOS.value)
  rows = benchmark.run(lm, ar_params, mdm_params, prefix, valid, spec)
  out = _write({"preset": config.preset, "param_dtype": param_dtype,
                "checkpoint": _CHECKPOINT.value, "ar_checkpoint": _AR_CHECKPOINT.value,
                "spec": dataclasses.asdict(spec), **benchmark.run_info()},
               {"rows": rows, "summary": benchmark.summary(rows)}, benchmark.plot,
               "benchmarks/results/bench.json")
  for r in rows:
    print(json.dumps({k: r[k] for k in benchmark.ROW_KEYS}))
  for s in benchmark.summary(rows):
    print(json.dumps(s))
  print(f"wrote {out} on {jax.devices()[0].platform}")


def _question(config):
  """(question waveform, what it is): --audio, --heldout or the TTS speaking --question."""
  from data_pipelines import question_audio  # pylint: disable=g-import-not-at-top
  # pylint: disable-next=g-import-not-at-top
  from vocalnet_jax.decoding import speech_benchmark, speech_io
  rate, window_s = speech_io.mel_config(config).sample_rate, speech_io.question_window_s(config)
  if _AUDIO.value:
    try:
      wav, notes = question_audio.load_question_audio(_AUDIO.value, rate, window_s)
    except question_audio.QuestionAudioError as e:
      raise ConfigError(str(e)) from None
    for note in notes:
      print(note, file=sys.stderr)
    return wav, _AUDIO.value
  if _HELDOUT.value is not None:
    example = speech_io.heldout_question(config, _HELDOUT.value)
    return example["audio"], f"heldout #{_HELDOUT.value}: {example['question']}"
  wav = speech_benchmark.synthetic_question(_QUESTION.value, rate)
  if wav.size > window_s * rate:
    raise ConfigError(f"--question={_QUESTION.value!r} is spoken in {wav.size / rate:.1f} s, "
                      f"longer than the model's {window_s:.2f} s window; shorten it")
  return wav, f"TTS (espeak-ng, default voice): {_QUESTION.value}"


def bench_speech(config) -> None:
  """Times spoken answers, AR vs MDM, and writes its JSON rows and plot. The speech
  modules (espeak-ng TTS, TFDS corpus reader) are imported here, so a text run needs
  none of their packages (a lent accelerator image may lack them)."""
  # pylint: disable-next=g-import-not-at-top
  from vocalnet_jax.decoding import speech_benchmark, speech_io
  wav, question = _question(config)
  if not (_CHECKPOINT.value or speech_benchmark.has_corpus(config)):  # random, no corpus
    config.model.vocab_size = config.model.vocab_size or _TEXT_VOCAB.value
    config.talker.num_units = config.talker.num_units or _NUM_UNITS.value
  pipe, vocoder = speech_benchmark.load_benchmark_pipeline(
      config, _CHECKPOINT.value, _VOCODER.value, vocoder_configs.get_config(_VOCODER_PRESET.value),
      _RULE.value)
  ar_params = None
  if _AR_CHECKPOINT.value:
    _ar_params_saved(config)
    ar_params = speech_benchmark.load_params(config, _AR_CHECKPOINT.value)
  spec = speech_benchmark.SpeechBenchmarkSpec(
      steps=tuple(int(s) for s in _STEPS.value or (1, 2, 4)), rule=_RULE.value,
      cache_updates=tuple(_CACHE_UPDATES.value or (DEFAULT_CACHE_UPDATE,)), repeats=_REPEATS.value)
  rows = speech_benchmark.run(pipe, wav, spec, ar_params)
  platform = jax.devices()[0].platform
  out = _write(*speech_benchmark.result(
      rows, pipe, config=config.preset, task=config.task, checkpoint=_CHECKPOINT.value,
      ar_checkpoint=_AR_CHECKPOINT.value, vocoder=vocoder, question=question,
      question_s=wav.size / speech_io.mel_config(config).sample_rate),
      speech_benchmark.plot,
      f"benchmarks/results/speech_latency_{config.preset}_{platform}.json")
  for r in rows:
    print(json.dumps({k: r[k] for k in speech_benchmark.ROW_KEYS}))
  for s in speech_benchmark.summary(rows):
    print(json.dumps(s))
  print(f"wrote {out} on {platform}")


if __name__ == "__main__":
  app.run(main)
