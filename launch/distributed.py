"""Multi-process start shared by every launcher: call `initialize()` first in `main`,
before anything touches a JAX device.

One process per host. On a Cloud TPU VM slice nothing needs to be given (JAX reads the
slice from the TPU metadata); elsewhere pass `--coordinator_address=HOST:PORT
--num_processes=N --process_id=I` on every host, or set JAX_COORDINATOR_ADDRESS,
JAX_NUM_PROCESSES and JAX_PROCESS_ID. Without any of these the run is single-process.
"""
from __future__ import annotations

import importlib.util
import os
from typing import Optional

import jax
from absl import app, flags

_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "HOST:PORT of process 0 (multi-process runs off Cloud TPU).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes in the run (one per host).")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index, 0..num_processes-1.")


def _setting(flag: flags.FlagHolder, env: str) -> Optional[str]:
  return str(flag.value) if flag.value is not None else os.environ.get(env)


def initialize() -> None:
  """Starts `jax.distributed` when the run is multi-process (flags, environment or a
  Cloud TPU VM); raises app.UsageError naming what is missing or wrong."""
  address = _setting(_COORDINATOR, "JAX_COORDINATOR_ADDRESS")
  count = _setting(_NUM_PROCESSES, "JAX_NUM_PROCESSES")
  index = _setting(_PROCESS_ID, "JAX_PROCESS_ID")
  given = {"--coordinator_address (JAX_COORDINATOR_ADDRESS)": address,
           "--num_processes (JAX_NUM_PROCESSES)": count, "--process_id (JAX_PROCESS_ID)": index}
  if any(v is not None for v in given.values()):
    missing = [k for k, v in given.items() if v is None]
    if missing:
      raise app.UsageError(f"a multi-process run also needs {', '.join(missing)}")
    count_i, index_i = int(count), int(index)
    if not 0 <= index_i < count_i:
      raise app.UsageError(f"--process_id={index_i} must be in [0, --num_processes={count_i})")
    if count_i > 1:
      jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU backend only
      jax.distributed.initialize(address, count_i, index_i)
  elif importlib.util.find_spec("libtpu") is not None:  # a Cloud TPU VM: the slice is known
    jax.distributed.initialize()

