"""Decode benchmark, AR vs MDM at S in {1, 2, 4, 8, 16}: JSON rows + a PNG plot.

  python -m launch.benchmark_decode --config=configs/mdm.py:small --out=benchmarks/results/bench.json

Random init unless --checkpoint (an MDM workdir) and --ar_checkpoint (an AR workdir)
are given; by default every request generates exactly --max_new_tokens (no early eos)
so both modes produce the same number of tokens. --config defaults to the --checkpoint
workdir's config.json; the --ar_checkpoint's model shapes must match it.
Logic: vocalnet_jax/decoding/benchmark.py.
"""
import json
import os

import jax
from absl import app, flags
from ml_collections import config_flags

from launch import distributed
from launch.logs import run_quietly
from vocalnet_jax.decoding import benchmark, step_rules
from vocalnet_jax.decoding import lm as lm_lib
from vocalnet_jax.decoding.block_diffusion import CACHE_UPDATES
from vocalnet_jax.evaluation import text_eval
from vocalnet_jax.modeling import run_config
from vocalnet_jax.modeling.validate import ConfigError

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Model config file[:arg] (MDM; default: the --checkpoint's config.json).")
_CHECKPOINT = flags.DEFINE_string("checkpoint", None,
                                  "MDM workdir or export (random init if unset).")
_AR_CHECKPOINT = flags.DEFINE_string("ar_checkpoint", None,
                                     "AR workdir or export (random init if unset).")
_OUT = flags.DEFINE_string("out", "benchmarks/results/bench.json", "JSON rows; PNG next to it.")
_STEPS = flags.DEFINE_list("steps", ["1", "2", "4", "8", "16"], "MDM steps per block.")
_RULE = flags.DEFINE_enum("rule", "topk", step_rules.RULES, "Commit rule.")
_CACHE_UPDATES = flags.DEFINE_list("cache_updates", list(CACHE_UPDATES),
                                   f"How a clean block's K/V enter the cache: {CACHE_UPDATES}.")
_MAX_NEW = flags.DEFINE_integer("max_new_tokens", 128, "Tokens per request.")
_BATCH = flags.DEFINE_integer("batch_size", 1, "Requests decoded together.")
_REPEATS = flags.DEFINE_integer("repeats", 10, "Timed repetitions after the warm-up.")
_STOP_AT_EOS = flags.DEFINE_bool("stop_at_eos", False, "Stop at eos instead of fixed length.")
_PARAM_DTYPE = flags.DEFINE_string("param_dtype", "",
                                   "Params as served (default: config.model.dtype).")


def main(argv):
  del argv
  distributed.initialize()
  run_quietly(bench)


def bench() -> None:
  """Runs the benchmark and writes its JSON rows and plot."""
  config = run_config.resolve(_CONFIG.value, _CHECKPOINT.value)
  if config.task != "text_lm":
    raise ConfigError(f"config.task={config.task!r}: launch.benchmark_decode times the text "
                      "Thinker (a `PRESET,text` config); the spoken pipeline's latency "
                      "benchmark is not built yet")
  ar_saved = run_config.read(_AR_CHECKPOINT.value) if _AR_CHECKPOINT.value else None
  if ar_saved is not None:
    run_config.check(ar_saved, config, _AR_CHECKPOINT.value, hard=run_config.PARAM_FIELDS,
                     soft=())
  lm, mdm_params, tokenizer = text_eval.load_thinker(config, _CHECKPOINT.value)
  _, ar_params, _ = text_eval.load_thinker(config, _AR_CHECKPOINT.value or _CHECKPOINT.value)
  param_dtype = _PARAM_DTYPE.value or config.model.dtype
  mdm_params, ar_params = (lm_lib.cast_params(p, param_dtype) for p in (mdm_params, ar_params))
  prefix, valid, _ = text_eval.held_out_prompts(config, _BATCH.value)
  spec = benchmark.BenchmarkSpec(
      block_size=config.diffusion.block_size, mask_id=tokenizer.mask_id,
      eos_id=tokenizer.eos_id, steps=tuple(int(s) for s in _STEPS.value), rule=_RULE.value,
      cache_updates=tuple(_CACHE_UPDATES.value), max_new_tokens=_MAX_NEW.value,
      repeats=_REPEATS.value, stop_at_eos=_STOP_AT_EOS.value)
  rows = benchmark.run(lm, ar_params, mdm_params, prefix, valid, spec)
  if jax.process_index() == 0:
    os.makedirs(os.path.dirname(os.path.abspath(_OUT.value)), exist_ok=True)
    with open(_OUT.value, "w") as f:
      json.dump({"rows": rows, "summary": benchmark.summary(rows), "config": config.preset,
                 "param_dtype": param_dtype, "checkpoint": _CHECKPOINT.value}, f, indent=1)
    benchmark.plot(rows, os.path.splitext(_OUT.value)[0] + ".png")
  for r in rows:
    print(json.dumps({k: r[k] for k in benchmark.ROW_KEYS}))
  for s in benchmark.summary(rows):
    print(json.dumps(s))
  print(f"wrote {_OUT.value} on {jax.devices()[0].platform}")


if __name__ == "__main__":
  app.run(main)
