"""Trains a config: `python -m launch.train --config=configs/mdm.py:tiny --workdir=DIR`.

Any field can be overridden (`--config.train.steps=50 --config.mesh.fsdp=4`).
Rerunning with the same workdir resumes from its latest checkpoint.
`--profile_steps=a,b` writes a JAX profiler trace of steps a..b to WORKDIR/profile.
Multi-host: run the same command on every host (see launch/distributed.py); SIGTERM saves
at the next step and exits 0; a non-finite step exits 1 with one line naming it.
`--dry_run` compiles the step for the configured mesh without allocating or reading
data and prints the per-device memory (e.g. `configs/mdm.py:1b --config.mesh.fsdp=8`
with XLA_FLAGS=--xla_force_host_platform_device_count=8 on a CPU).
"""
import json
import sys

import jax
from absl import app, flags
from ml_collections import config_flags

from launch import distributed
from launch.logs import quiet_logging
from vocalnet_jax.training import trainer
from vocalnet_jax.modeling.validate import ConfigError

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file[:arg].")
_WORKDIR = flags.DEFINE_string("workdir", None, "Checkpoints, metrics.jsonl, TensorBoard.")
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "Compile only; print the memory report as JSON.")
_PROFILE = flags.DEFINE_list("profile_steps", [], "a,b: profile steps a..b into WORKDIR/profile.")
flags.mark_flags_as_required(["config"])


def main(argv):
  del argv
  distributed.initialize()
  quiet_logging()
  try:
    if _DRY_RUN.value:
      print(json.dumps(trainer.dry_run(_CONFIG.value), indent=1))
      return
    if not _WORKDIR.value:
      raise app.UsageError("--workdir is required (except with --dry_run)")
    history = trainer.train(_CONFIG.value, _WORKDIR.value, profile_steps=profile_window())
  except ConfigError as e:
    raise app.UsageError(str(e)) from None
  except trainer.NonFiniteError as e:
    sys.exit(f"error: {e}")
  if history and jax.process_index() == 0:
    print(f"final step {history[-1]['step']}: loss {history[-1]['loss']:.4f}")


def profile_window() -> tuple[int, int] | None:
  if not _PROFILE.value:
    return None
  try:
    first, last = (int(s) for s in _PROFILE.value)
  except ValueError:
    raise app.UsageError(f"--profile_steps={','.join(_PROFILE.value)}: give two step numbers "
                         "a,b") from None
  if not 1 <= first <= last:
    raise app.UsageError(f"--profile_steps={first},{last}: need 1 <= a <= b")
  return first, last


if __name__ == "__main__":
  app.run(main)
