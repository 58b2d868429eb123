"""Exports a training run's answering params for serving.

  python -m launch.export --workdir=W --out=E [--dtype=bfloat16] [--step=N] [--format=hf]

Reads W's config.json, restores only the params of the latest step (or --step; a
distillation run exports its student) and casts floating params to --dtype (default:
config.model.dtype). W and E may be local or gs:// paths.

--format=orbax (default) writes E/params (orbax, one shard per device, restorable onto
any mesh), E/config.json (W's config, its mesh set to fill the devices there are) and
E/export.json (source, step, dtype; written last, it marks a complete export);
`launch.decode`, `launch.evaluate` and `launch.benchmark_decode` take `--checkpoint=E`.

--format=hf writes the Thinker (text decoder; a speech run's `thinker`) as a Hugging Face
Llama checkpoint (Qwen2 when config.model.qkv_bias): E/config.json + E/model.safetensors
(sharded past 5 GiB), and the run's sentencepiece tokenizer.model for speech runs. Load
it with `vocalnet_jax.models.hf_import.load_hf_decoder(E)` or transformers.

An existing non-empty E is refused, never overwritten. Bad input (W missing, empty, not
a training run, an export; a bad --step, --dtype, --format; a Thinker Llama/Qwen2 cannot
express) stops with one line naming it and exit status 1.
"""
import json
import sys

from absl import app, flags

from launch import distributed
from launch.logs import quiet_logging
from vocalnet_jax.modeling import export as export_lib
from vocalnet_jax.modeling.validate import ConfigError

_WORKDIR = flags.DEFINE_string("workdir", None, "Training workdir to export.")
_OUT = flags.DEFINE_string("out", None, "Export directory (must not exist or be empty).")
_DTYPE = flags.DEFINE_string("dtype", None, "Floating params dtype: "
                             f"{', '.join(export_lib.DTYPES)} (default: config.model.dtype).")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
_FORMAT = flags.DEFINE_string("format", "orbax", "orbax (sharded params, any mesh) or hf "
                              "(the Thinker as Hugging Face Llama/Qwen2 safetensors).")


def main(argv):
  del argv
  distributed.initialize()
  if not (_WORKDIR.value and _OUT.value):
    raise app.UsageError("--workdir and --out are required")
  quiet_logging()
  try:
    info = export_lib.export(_WORKDIR.value, _OUT.value, _DTYPE.value, _STEP.value,
                             fmt=_FORMAT.value)
  except ConfigError as e:
    sys.exit(f"error: {e}")  # one line on stderr, exit status 1 (no usage text)
  print(json.dumps(info))


if __name__ == "__main__":
  app.run(main)
