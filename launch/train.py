"""Trains a config: `python -m launch.train --config=configs/mdm.py:tiny --workdir=DIR`.

Any field can be overridden (`--config.train.steps=50 --config.mesh.fsdp=4`).
Rerunning with the same workdir resumes from its latest checkpoint.
`--dry_run` compiles the step for the configured mesh without allocating or reading
data and prints the per-device memory (e.g. `configs/mdm.py:1b --config.mesh.fsdp=8`
with XLA_FLAGS=--xla_force_host_platform_device_count=8 on a CPU).
"""
import json

from absl import app, flags
from ml_collections import config_flags

from launch.logs import quiet_logging
from vocalnet_jax.training import trainer
from vocalnet_jax.modeling.validate import ConfigError

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file[:arg].")
_WORKDIR = flags.DEFINE_string("workdir", None, "Checkpoints, metrics.jsonl, TensorBoard.")
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "Compile only; print the memory report as JSON.")
flags.mark_flags_as_required(["config"])


def main(argv):
  del argv
  quiet_logging()
  try:
    if _DRY_RUN.value:
      print(json.dumps(trainer.dry_run(_CONFIG.value), indent=1))
      return
    if not _WORKDIR.value:
      raise app.UsageError("--workdir is required (except with --dry_run)")
    history = trainer.train(_CONFIG.value, _WORKDIR.value)
  except ConfigError as e:
    raise app.UsageError(str(e)) from None
  if history:
    print(f"final step {history[-1]['step']}: loss {history[-1]['loss']:.4f}")


if __name__ == "__main__":
  app.run(main)
