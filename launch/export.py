"""Exports a training run's answering params as a sharded orbax checkpoint for serving.

  python -m launch.export --workdir=W --out=E [--dtype=bfloat16] [--step=N]

Reads W's config.json, restores only the params of the latest step (or --step; a
distillation run exports its student), casts floating params to --dtype (default:
config.model.dtype) and writes E/params (orbax, one shard per device, restorable onto any
mesh), E/config.json (W's config, its mesh set to fill the devices there are) and
E/export.json (source, step, dtype; written last, it marks a complete export).
`launch.decode`, `launch.evaluate` and `launch.benchmark_decode` take `--checkpoint=E`.
An existing non-empty E is refused, never overwritten.
"""
import json

from absl import app, flags

from launch import distributed
from launch.logs import run_quietly
from vocalnet_jax.modeling import export as export_lib

_WORKDIR = flags.DEFINE_string("workdir", None, "Training workdir to export.")
_OUT = flags.DEFINE_string("out", None, "Export directory (must not exist or be empty).")
_DTYPE = flags.DEFINE_string("dtype", None, "Floating params dtype: "
                             f"{', '.join(export_lib.DTYPES)} (default: config.model.dtype).")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")


def main(argv):
  del argv
  distributed.initialize()
  if not (_WORKDIR.value and _OUT.value):
    raise app.UsageError("--workdir and --out are required")
  run_quietly(lambda: print(json.dumps(
      export_lib.export(_WORKDIR.value, _OUT.value, _DTYPE.value, _STEP.value))))


if __name__ == "__main__":
  app.run(main)
