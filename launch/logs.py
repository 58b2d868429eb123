"""Launcher logging: warnings only unless --verbosity is given (orbax is chatty at INFO);
a ConfigError becomes a one-line usage error instead of a traceback."""
from typing import Callable, Sequence

from absl import app, flags, logging

from vocalnet_jax.modeling.validate import ConfigError


def quiet_logging() -> None:
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)


def run_quietly(body: Callable[[], None]) -> None:
  """Runs a launcher's body with quiet logging and config errors as usage errors."""
  quiet_logging()
  try:
    body()
  except ConfigError as e:
    raise app.UsageError(str(e)) from None


def main_quietly(main: Callable[[Sequence[str]], None]) -> Callable[[Sequence[str]], None]:
  """An absl main run by `run_quietly`: `app.run(main_quietly(main))`."""
  return lambda argv: run_quietly(lambda: main(argv))
