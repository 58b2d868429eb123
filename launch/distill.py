"""Iterative self-distillation of a trained MDM run, round after round.

  python -m launch.distill --config=configs/distill.py:tiny,text --teacher=w/mdm_text \
      --workdir=w/distill [--config.train.steps=300] [--config.distill.rounds=4,2]

Prints and writes WORKDIR/rounds.json: per round the losses and, for the text Thinker,
exact match at every step budget. Rerunning resumes. Logic: vocalnet_jax/distill/rounds.py.
"""
import json

from absl import app, flags
from ml_collections import config_flags

from launch.logs import quiet_logging
from vocalnet_jax.distill import rounds
from vocalnet_jax.modeling.validate import ConfigError, validate_config

_CONFIG = config_flags.DEFINE_config_file("config", None, "configs/distill.py[:options].")
_TEACHER = flags.DEFINE_string("teacher", None, "Workdir of the trained MDM run to distill.")
_WORKDIR = flags.DEFINE_string("workdir", None, "One subdirectory per round + rounds.json.")
flags.mark_flags_as_required(["config", "teacher", "workdir"])


def main(argv):
  del argv
  quiet_logging()
  try:
    validate_config(_CONFIG.value)
    entries = rounds.run(_CONFIG.value, _TEACHER.value, _WORKDIR.value)
  except (ConfigError, FileNotFoundError) as e:
    raise app.UsageError(str(e)) from None
  for e in entries:
    print(json.dumps(e))


if __name__ == "__main__":
  app.run(main)
