"""Answers one question with a trained Thinker: prints the answer, NFE and latency.

  python -m launch.decode --config=configs/mdm.py:tiny --checkpoint=/tmp/mdm --prompt="12+7=?"
  python -m launch.decode --config=configs/ar.py:tiny --checkpoint=/tmp/ar --prompt="sort 3141"

Inputs are dispatched by flag (`--prompt` today; `--audio`/`--out` join here when the
speech pipeline lands). Latency is the second, warm call; the first includes compile.
"""
import time

import jax
from absl import app, flags
from ml_collections import config_flags

from vocalnet_jax.evaluation import text_eval

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file[:arg].")
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Training workdir (random init if unset).")
_PROMPT = flags.DEFINE_string("prompt", None, "Text question, e.g. '12+7=?'.")
_MODE = flags.DEFINE_enum("mode", None, ["ar", "mdm"], "Decoder (default: config.objective).")
_STEPS = flags.DEFINE_integer("steps", 0, "MDM steps per block (0: config.diffusion).")
_RULE = flags.DEFINE_enum("rule", "topk", ["topk", "threshold", "ancestral"], "Commit rule.")
_CACHE_UPDATE = flags.DEFINE_enum("cache_update", "extra_forward",
                                  ["extra_forward", "reuse_last_step"], "Block K/V update.")
_MAX_NEW = flags.DEFINE_integer("max_new_tokens", 0, "0: config.data.response_len.")
flags.mark_flags_as_required(["config", "prompt"])


def decode_text(config, question: str) -> None:
  """Prints the answer to a typed question with NFE and cold/warm latency."""
  mode = _MODE.value or config.objective
  lm, params, tokenizer = text_eval.load_thinker(config, _CHECKPOINT.value)
  prefix, valid = text_eval.encode_question(tokenizer, question, config.data.prompt_len)
  cfg = text_eval.decoder_config(config, tokenizer, mode, _STEPS.value, _RULE.value,
                                 _CACHE_UPDATE.value)
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


def main(argv):
  del argv
  decode_text(_CONFIG.value, _PROMPT.value)


if __name__ == "__main__":
  app.run(main)
