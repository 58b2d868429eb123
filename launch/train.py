"""Trains a config: `python -m launch.train --config=configs/mdm.py:tiny --workdir=DIR`.

Any field can be overridden (`--config.train.steps=50 --config.mesh.fsdp=4`).
Rerunning with the same workdir resumes from its latest checkpoint.
"""
from absl import app, flags, logging
from ml_collections import config_flags

from vocalnet_jax.training import trainer
from vocalnet_jax.training.validate import ConfigError

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file[:arg].")
_WORKDIR = flags.DEFINE_string("workdir", None, "Checkpoints, metrics.jsonl, TensorBoard.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  if not flags.FLAGS["verbosity"].present:  # orbax is chatty at INFO; --verbosity=0 restores it
    logging.set_verbosity(logging.WARNING)
  try:
    history = trainer.train(_CONFIG.value, _WORKDIR.value)
  except ConfigError as e:
    raise app.UsageError(str(e)) from None
  if history:
    print(f"final step {history[-1]['step']}: loss {history[-1]['loss']:.4f}")


if __name__ == "__main__":
  app.run(main)
