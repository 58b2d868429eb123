"""Orbax checkpoints of the train state together with the grain iterator state.

Saving both in one step directory means a resumed run continues the exact data
order. Orbax writes into a temporary directory and renames it when complete, so an
interrupted save never shadows the last good checkpoint; saves are asynchronous.
"""
from __future__ import annotations

import signal
import threading
from typing import Any, Optional

import grain
import jax
import orbax.checkpoint as ocp

from vocalnet_jax.modeling import paths


class Checkpointer:
  """Keep-N async CheckpointManager over items `state` and `data_iter`."""

  def __init__(self, directory: str, *, keep: int, every: int, async_save: bool = True):
    self.manager = ocp.CheckpointManager(
        paths.absolute(directory), item_names=("state", "data_iter"),
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, save_interval_steps=every,
                                             enable_async_checkpointing=async_save))

  def latest_step(self) -> Optional[int]:
    return self.manager.latest_step()

  def save(self, step: int, state: Any, data_iter: grain.DatasetIterator,
           force: bool = False) -> bool:
    return self.manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        data_iter=grain.checkpoint.CheckpointSave(data_iter)), force=force)

  def restore(self, step: int, abstract_state: Any,
              data_iter: Optional[grain.DatasetIterator] = None) -> Any:
    """Restores the state onto `abstract_state`'s shardings (any mesh) and, if given,
    rewinds `data_iter` in place to where the saved run was."""
    items = {"state": ocp.args.StandardRestore(abstract_state)}
    if data_iter is not None:
      items["data_iter"] = grain.checkpoint.CheckpointRestore(data_iter)
    return self.manager.restore(step, args=ocp.args.Composite(**items))["state"]

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()


class PreemptionNotice:
  """Whether the run was told to stop (SIGTERM, as a preempted TPU VM gets).

  Multi-process: JAX's preemption sync manager (through orbax) catches the signal and
  names one step at which every host stops together. Single process: a SIGTERM handler
  (installed while in the `with` block, from the main thread) sets a flag.
  """

  def __init__(self, manager: ocp.CheckpointManager):
    self._manager, self._signalled, self._previous = manager, False, None

  def __enter__(self) -> "PreemptionNotice":
    if jax.process_count() == 1 and threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    return self

  def __exit__(self, *exc) -> None:
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)

  def _handle(self, signum, frame) -> None:
    del signum, frame
    self._signalled = True

  def reached(self, step: int) -> bool:
    """Call once per step boundary, on every process: True means save `step` and stop."""
    return self._signalled or self._manager.reached_preemption(step)
