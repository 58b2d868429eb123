"""Evaluates a trained model: text exact match (text Thinker) or spoken answers (speech).

  python -m launch.evaluate --config=configs/mdm.py:tiny,text --checkpoint=w/mdm --steps=1,2,4
  python -m launch.evaluate --config=configs/ar.py:tiny,text --checkpoint=w/ar --mode=ar
  python -m launch.evaluate --config=configs/mdm.py:tiny,stage=2 --checkpoint=W2 \
      --vocoder=VOC/vocoder --split=heldout --n=50 --out=E --steps=1,2,4

--config defaults to the --checkpoint workdir's config.json (a disagreeing one is an error).
Text: prints one JSON line per decoder setting and writes them all to --out (a file).
Speech (a stage-2 checkpoint, with --vocoder): answers the first n spoken questions of the
prepared corpus split through the streaming path (question audio -> encoder -> Thinker
text -> Talker units -> vocoder) once per setting (AR; MDM at each --steps, the Thinker and
the Talker both), scores them (`evaluation.speech_eval`: exact match, ASR WER of each
spoken answer against its own printed text, DTW log-mel L1 to the assistant voice
speaking that text, Thinker/Talker NFE, first-text/first-audio/total seconds) next to
the ASR's floors on the corpus audio and on the vocoder's resynthesis of the reference
units, writes --out/eval.json and the WAVs, and prints a table. A bad checkpoint,
vocoder, corpus or split is one line on stderr and exit status 1.
"""
import json
import os
import sys

import jax
import ml_collections
from absl import app, flags
from etils import epath
from ml_collections import config_flags

from launch import distributed
from launch.logs import quiet_logging
from vocalnet_jax.decoding import step_rules
from vocalnet_jax.decoding.block_diffusion import CACHE_UPDATES, DEFAULT_CACHE_UPDATE
from vocalnet_jax.evaluation import speech_evaluator, text_eval
from vocalnet_jax.modeling import run_config
from vocalnet_jax.modeling.validate import OBJECTIVES, ConfigError

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file[:arg] (default: the --checkpoint's config.json).")
_CHECKPOINT = flags.DEFINE_string("checkpoint", None,
                                  "Training workdir or launch.export directory.")
_MODE = flags.DEFINE_enum("mode", None, OBJECTIVES,
                          "Text decoder (default: config.objective; speech: always it).")
_STEPS = flags.DEFINE_list("steps", ["1", "2", "4"], "MDM steps per block to evaluate.")
_RULE = flags.DEFINE_enum("rule", None, step_rules.RULES, "Commit rule; default: the one "
                          "the checkpoint trained for (topk, or left_to_right for "
                          "diffusion.commit_order=left_to_right).")
_THRESHOLD = flags.DEFINE_float(
    "threshold", step_rules.THRESHOLD,
    "--rule=threshold: every masked token "
    "(speech: also unit) whose confidence passes it is committed, "
    "and at least what finishes the block in --steps forwards.")
_CACHE_UPDATE = flags.DEFINE_enum("cache_update", DEFAULT_CACHE_UPDATE, CACHE_UPDATES,
                                  "Block K/V update (text).")
_NUM = flags.DEFINE_integer("num_examples", 512,
                            "Examples (speech: the first n of --split, at most all of it).")
flags.DEFINE_alias("n", "num_examples")
_BATCH = flags.DEFINE_integer("batch_size", 64, "Decode batch size (text).")
_OUT = flags.DEFINE_string("out", None, "Text: JSON file (default: CHECKPOINT/eval_<mode>.json); "
                           "speech: directory (default: CHECKPOINT/eval_speech_<split>).")
_SPLIT = flags.DEFINE_string("split", None, "Speech: corpus split of the questions "
                             "(default: heldout).")
_VOCODER = flags.DEFINE_string("vocoder", None,
                               "Speech: vocoder directory (launch.train_vocoder's W/vocoder).")
_DOMAIN_LM = flags.DEFINE_bool("asr_domain_lm", True, "Speech: the ASR's language model is a "
                               "3-gram of the train-split answer texts (else pocketsphinx's "
                               "generic one).")
_TALKER_STEPS = flags.DEFINE_integer("talker_steps", 0, "Speech: the MDM Talker's steps per "
                                     "chunk (0: each --steps value, as the Thinker's).")
_TALKER_THRESHOLD = flags.DEFINE_float("talker_threshold", None, "Speech, --rule=threshold: "
                                       "the MDM Talker's confidence (default: --threshold).")
_FLOORS_FROM = flags.DEFINE_string("floors_from", None, "Speech: an earlier --out of the same "
                                   "split, questions and vocoder whose floors are reused.")
flags.mark_flags_as_required(["checkpoint"])


def main(argv):
  del argv
  distributed.initialize()
  quiet_logging()
  try:
    config = run_config.resolve(_CONFIG.value, _CHECKPOINT.value)
    rule = _RULE.value or step_rules.default_rule(config.diffusion)
    if speech_evaluator.is_speech(config):
      split = _SPLIT.value or "heldout"
      speech_evaluator.evaluate_speech(
          config, _CHECKPOINT.value, _VOCODER.value, split, _NUM.value,
          [int(s) for s in _STEPS.value], rule,
          _OUT.value or os.path.join(_CHECKPOINT.value, f"eval_speech_{split}"),
          _DOMAIN_LM.value, _MODE.value, " ".join(["python -m launch.evaluate"] + sys.argv[1:]),
          _FLOORS_FROM.value, _THRESHOLD.value,
          speech_evaluator.TalkerDecoding(_TALKER_STEPS.value, _TALKER_THRESHOLD.value))
    else:
      evaluate_text(config, rule)
  except ConfigError as e:
    sys.exit(f"error: {e}")  # one line on stderr, exit status 1


def evaluate_text(config: ml_collections.ConfigDict, rule: str) -> None:
  """Writes and prints one row per decoder setting (MDM rows with commit `rule`)."""
  for flag in (_SPLIT, _VOCODER, _FLOORS_FROM, _TALKER_THRESHOLD):
    if flag.value is not None:
      raise ConfigError(f"--{flag.name} evaluates spoken answers, but {_CHECKPOINT.value} is a "
                        f"text model (config.task={config.task}); drop --{flag.name} for text "
                        "exact match, or give a stage-2 speech checkpoint")
  mode = _MODE.value or config.objective
  lm, params, tokenizer = text_eval.load_thinker(config, _CHECKPOINT.value)
  prefix, valid, answers = text_eval.held_out_prompts(config, _NUM.value)
  results = []
  for steps in ([0] if mode == "ar" else [int(s) for s in _STEPS.value]):
    cfg = text_eval.decoder_config(config, tokenizer, mode, steps, rule,
                                   _CACHE_UPDATE.value, _THRESHOLD.value)
    row = dict(mode=mode, steps=steps or None, rule=rule if mode == "mdm" else "greedy",
               threshold=step_rules.recorded_threshold(rule if mode == "mdm" else None,
                                                       _THRESHOLD.value),
               **text_eval.evaluate(lm, params, tokenizer, prefix, valid, answers, cfg,
                                    config.data.response_len, _BATCH.value))
    print(json.dumps(row))
    results.append(row)
  if jax.process_index() == 0:
    out = _OUT.value or os.path.join(_CHECKPOINT.value, f"eval_{mode}.json")
    epath.Path(out).write_text(json.dumps(results, indent=1))  # local or gs://


if __name__ == "__main__":
  app.run(main)
