"""Exact match of a trained text Thinker on held-out synthetic prompts, AR or MDM.

  python -m launch.evaluate --config=configs/mdm.py:tiny,text --checkpoint=/tmp/mdm --steps=1,2,4
  python -m launch.evaluate --config=configs/ar.py:tiny,text --checkpoint=/tmp/ar --mode=ar

--config defaults to the --checkpoint workdir's config.json (a disagreeing one is an error).
Prints one JSON line per decoder setting and writes them all to --out.
"""
import json
import os

import jax
from absl import app, flags
from etils import epath
from ml_collections import config_flags

from launch import distributed
from launch.logs import run_quietly
from vocalnet_jax.decoding import step_rules
from vocalnet_jax.decoding.block_diffusion import CACHE_UPDATES
from vocalnet_jax.evaluation import text_eval
from vocalnet_jax.modeling import run_config
from vocalnet_jax.modeling.validate import OBJECTIVES

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file[:arg] (default: the --checkpoint's config.json).")
_CHECKPOINT = flags.DEFINE_string("checkpoint", None,
                                  "Training workdir or launch.export directory.")
_MODE = flags.DEFINE_enum("mode", None, OBJECTIVES, "Decoder (default: config.objective).")
_STEPS = flags.DEFINE_list("steps", ["1", "2", "4"], "MDM steps per block to evaluate.")
_RULE = flags.DEFINE_enum("rule", "topk", step_rules.RULES, "Commit rule.")
_CACHE_UPDATE = flags.DEFINE_enum("cache_update", "extra_forward", CACHE_UPDATES,
                                  "Block K/V update.")
_NUM = flags.DEFINE_integer("num_examples", 512, "Held-out examples.")
_BATCH = flags.DEFINE_integer("batch_size", 64, "Decode batch size.")
_OUT = flags.DEFINE_string("out", None, "JSON file (default: CHECKPOINT/eval_<mode>.json).")
flags.mark_flags_as_required(["checkpoint"])


def main(argv):
  del argv
  distributed.initialize()
  run_quietly(evaluate)


def evaluate() -> None:
  """Writes and prints one row per decoder setting."""
  config = run_config.resolve(_CONFIG.value, _CHECKPOINT.value)
  mode = _MODE.value or config.objective
  lm, params, tokenizer = text_eval.load_thinker(config, _CHECKPOINT.value)
  prefix, valid, answers = text_eval.held_out_prompts(config, _NUM.value)
  results = []
  for steps in ([0] if mode == "ar" else [int(s) for s in _STEPS.value]):
    cfg = text_eval.decoder_config(config, tokenizer, mode, steps, _RULE.value,
                                   _CACHE_UPDATE.value)
    row = dict(mode=mode, steps=steps or None, rule=_RULE.value if mode == "mdm" else "greedy",
               **text_eval.evaluate(lm, params, tokenizer, prefix, valid, answers, cfg,
                                    config.data.response_len, _BATCH.value))
    print(json.dumps(row))
    results.append(row)
  if jax.process_index() == 0:
    out = _OUT.value or os.path.join(_CHECKPOINT.value, f"eval_{mode}.json")
    epath.Path(out).write_text(json.dumps(results, indent=1))  # local or gs://


if __name__ == "__main__":
  app.run(main)
