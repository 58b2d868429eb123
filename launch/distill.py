"""Iterative self-distillation of a trained MDM run, round after round.

  python -m launch.distill --config=configs/distill.py:tiny,text --teacher=w/mdm_text \
      --workdir=w/distill [--config.train.steps=300] [--config.distill.rounds=4,2]

--config defaults to configs/distill.py for the teacher's preset and task, with the
teacher's data and seed (its config.json); the teacher's model and decoder fields must
match the config. Prints and writes WORKDIR/rounds.json: per round the losses and, for
the text Thinker, exact match at every step budget. Rerunning resumes.
Logic: vocalnet_jax/distill/rounds.py.
"""
import json

from absl import app, flags
from ml_collections import config_flags

import ml_collections

from configs import distill as distill_configs
from launch import distributed
from launch.logs import quiet_logging
from vocalnet_jax.distill import rounds
from vocalnet_jax.modeling import run_config
from vocalnet_jax.modeling.validate import ConfigError, validate_config

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "configs/distill.py[:options] (default: from the teacher's config.json).")
_TEACHER = flags.DEFINE_string("teacher", None, "Workdir of the trained MDM run to distill.")
_WORKDIR = flags.DEFINE_string("workdir", None, "One subdirectory per round + rounds.json.")
flags.mark_flags_as_required(["teacher", "workdir"])


def distill_config(teacher: str, given: ml_collections.ConfigDict | None
                   ) -> ml_collections.ConfigDict:
  """The given config, or configs/distill.py for the teacher's run; checked against it."""
  saved = run_config.read(teacher)
  if given is None:
    if saved is None:
      raise ConfigError(f"--config is required: {teacher} has no {run_config.FILENAME}")
    try:
      given = distill_configs.for_teacher(saved)
    except ValueError as e:
      raise ConfigError(f"{teacher}: {e}") from None
  if saved is not None:
    run_config.check(saved, given, teacher, soft=())
  return given


def main(argv):
  del argv
  distributed.initialize()
  quiet_logging()
  try:
    config = distill_config(_TEACHER.value, _CONFIG.value)
    validate_config(config)
    entries = rounds.run(config, _TEACHER.value, _WORKDIR.value)
  except (ConfigError, FileNotFoundError) as e:
    raise app.UsageError(str(e)) from None
  for e in entries:
    print(json.dumps(e))


if __name__ == "__main__":
  app.run(main)
