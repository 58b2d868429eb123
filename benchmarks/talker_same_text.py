"""The AR and MDM Talkers saying the same texts, judged as spoken answers are judged.

  python -m benchmarks.talker_same_text --checkpoint=demo_out/ar_stage2 \
      --checkpoint=demo_out/mdm_stage2 --vocoder=demo_out/vocoder/vocoder --split=heldout \
      --n=50 --steps=1,2,4 --out=benchmarks/results/talker_same_text_heldout_tiny_cpu.json

Why: `launch.evaluate` judges each spoken answer against the text its own Thinker printed,
so two models' WERs mix what each Thinker printed with how its Talker says it. Here no
Thinker runs: every Talker says the same texts (`SpeechPipeline.speak`), by default the
split's reference answers, or with --texts_from=DIR the texts a model printed in an
earlier `launch.evaluate` (DIR/eval.json, its first setting), and each is judged by the ASR
(WER against the text) and the forced choice (identified as the text), beside both judges'
floors on the corpus audio and the vocoder's resynthesis of the same references. MDM
Talkers say each text at each S of --steps (chunk steps, --rule). Text-only Talkers
(`talker.thinker_states=False`, the demo's) only.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile

from absl import app, flags

from launch import logs
from vocalnet_jax.decoding import speech_io, step_rules, streaming
from vocalnet_jax.decoding.block_diffusion import CACHE_UPDATES, DEFAULT_CACHE_UPDATE
from vocalnet_jax.evaluation import result_file, speech_eval, speech_evaluator
from vocalnet_jax.modeling import run_config
from vocalnet_jax.modeling.validate import ConfigError

_CHECKPOINT = flags.DEFINE_multi_string("checkpoint", None, "Stage-2 workdirs (AR and/or MDM) "
                                        "with text-only Talkers.")
_VOCODER = flags.DEFINE_string("vocoder", None, "Vocoder directory.")
_SPLIT = flags.DEFINE_string("split", "heldout", "Corpus split: its first n questions.")
_N = flags.DEFINE_integer("n", 50, "Questions.")
_STEPS = flags.DEFINE_list("steps", ["1", "2", "4"], "MDM Talker steps per chunk, one row each.")
_RULE = flags.DEFINE_string("rule", "threshold", "MDM commit rule (the demo evaluation's).")
_THRESHOLD = flags.DEFINE_float(
    "threshold", step_rules.THRESHOLD,
    "The threshold rule's confidence: every "
    "masked unit above it is committed (and at least what "
    "finishes the chunk in S forwards).")
_CACHE_UPDATE = flags.DEFINE_enum(
    "cache_update", DEFAULT_CACHE_UPDATE, CACHE_UPDATES,
    "How an MDM chunk's clean K/V enter the Talker's cache (next_block: in the next chunk's "
    "first step, no forward of its own; extra_forward: one more forward per chunk).")
_TEXTS_FROM = flags.DEFINE_string("texts_from", "", "An evaluation directory (DIR/eval.json of "
                                  "the same split) whose printed texts are said instead of "
                                  "the reference answers.")
_WAV_DIR = flags.DEFINE_string("wav_dir", "", "Where the WAVs go (default: a temporary "
                               "folder, removed once judged).")
_OUT = flags.DEFINE_string("out", None, "Result file.")
flags.mark_flags_as_required(["checkpoint", "vocoder", "out"])
# what a Talker saying given texts is judged by (exact match is 1 by construction)
SUMMARY = ("wer_vs_printed", "identified", "mel_distance", "num_with_audio", "talker_nfe",
           "first_audio_s", "total_s", "audio_s")


def _wav_folder() -> contextlib.AbstractContextManager[str]:
  """--wav_dir, kept; or a temporary folder, removed with its WAVs once judged."""
  if _WAV_DIR.value:
    return contextlib.nullcontext(_WAV_DIR.value)
  return tempfile.TemporaryDirectory(prefix="talker_same_text_")


def _say_and_judge(configs: list, judges: speech_evaluator.Judges, texts: list[str],
                   wav_dir: str) -> tuple[dict, dict]:
  """Every Talker (each MDM one at each S) says `texts`; its settings and the floors."""
  settings, summaries = {}, {}
  pipes = speech_io.load_speaking_pipelines(list(zip(configs, _CHECKPOINT.value)),
                                            _VOCODER.value)
  for checkpoint, config, pipe in zip(_CHECKPOINT.value, configs, pipes):
    steps = [0] if config.objective == "ar" else [int(s) for s in _STEPS.value]
    for s in steps:
      name = "ar" if config.objective == "ar" else f"mdm_steps{s}"
      setting = dataclasses.replace(pipe, cfg=streaming.stream_config(
          config, s or None, s or None, _RULE.value, _THRESHOLD.value, _CACHE_UPDATE.value))
      answers = speech_evaluator.say_all(setting, judges, texts, os.path.join(wav_dir, name))
      summary = summaries[name] = speech_eval.summarize(answers)
      settings[name] = {"checkpoint": checkpoint, "steps": s or None,
                        "rule": _RULE.value if s else None,
                        "threshold": step_rules.recorded_threshold(_RULE.value if s else None,
                                                                   _THRESHOLD.value),
                        "cache_update": _CACHE_UPDATE.value if s else None,
                        "summary": {k: summary[k] for k in SUMMARY},
                        "examples": [dataclasses.asdict(a) for a in answers]}
      print(name, settings[name]["summary"], flush=True)
  floors, _ = speech_evaluator.judge_floors(configs[0], pipes[0].vocoder, judges,
                                            os.path.join(wav_dir, "floors"))
  print(speech_eval.format_table(summaries, floors))
  return settings, floors


def main(argv):
  del argv
  configs = [run_config.resolve(None, c) for c in _CHECKPOINT.value]
  for checkpoint, config in zip(_CHECKPOINT.value, configs):
    speech_io.check_speaking_inputs(config, checkpoint, _VOCODER.value)
    if config.talker.get("thinker_states", True):
      raise ConfigError(f"--checkpoint={checkpoint}: its Talker reads the Thinker's states "
                        "(talker.thinker_states=True); only text-only Talkers say given texts")
  judges = speech_evaluator.Judges.of(configs[0], _SPLIT.value, _N.value)
  texts = ([e["answer"] for e in judges.examples] if not _TEXTS_FROM.value else
           speech_evaluator.printed_texts(_TEXTS_FROM.value, _SPLIT.value,
                                          [e["question"] for e in judges.examples]))
  with _wav_folder() as wav_dir:
    settings, floors = _say_and_judge(configs, judges, texts, wav_dir)
  result_file.write(_OUT.value, {
      "checkpoints": _CHECKPOINT.value, "vocoder": _VOCODER.value, "split": _SPLIT.value,
      "n": len(texts), "texts": _TEXTS_FROM.value or "reference answers",
      "mdm_rule": _RULE.value}, {"settings": settings, "floors": floors},
      command=result_file.command_line(module="benchmarks.talker_same_text"))


if __name__ == "__main__":
  app.run(logs.main_quietly(main))
