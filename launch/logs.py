"""Launcher logging: warnings only unless --verbosity is given (orbax is chatty at INFO)."""
from absl import flags, logging


def quiet_logging() -> None:
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
