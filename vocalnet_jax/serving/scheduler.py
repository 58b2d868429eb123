"""One decoding thread shared by every request: a bounded admission queue and
least-attained-service interleaving.

The model is one device's worth of compute, so answers are decoded by one thread, step by
step: a step is one `next()` of a request's event iterator (one Thinker block, Talker
chunk or vocoder piece). Up to `max_active` requests are in progress at once; the next
step always goes to the active request that has taken the fewest steps (ties: the oldest),
so a new question gets its first text and audio after a few steps of the others instead of
after their whole answers. Up to `max_waiting` more wait for a slot; beyond that `submit`
refuses with `Busy`. `cancel` (a client gone) drops a waiting request at once and an active
one before its next step, closing its iterator: its slot is free for the next.
"""
from __future__ import annotations

import collections
import dataclasses
import threading
import traceback
from typing import Any, Callable, Iterator, Optional

END = object()  # the last item a job emits (after its events, an error, or nothing if cancelled)


class Busy(Exception):
  """Every slot and every queue place is taken; the message says so in one line."""


@dataclasses.dataclass(eq=False)
class Job:
  """One request: `start()` (called on the decoding thread) gives its events; `emit` takes
  each event, then END (called on the decoding thread: it must be thread-safe). The slot
is freed as soon as an item `is_final` (or the iterator ends)."""
  start: Callable[[], Iterator[Any]]
  emit: Callable[[Any], None]
  is_final: Callable[[Any], bool] = lambda item: False  # the answer is complete after it
  steps: int = 0
  cancelled: bool = False
  events: Optional[Iterator[Any]] = None


class Scheduler:
  """Bounded, interleaving executor of Jobs on one daemon thread."""

  def __init__(self, max_active: int, max_waiting: int,
               on_error: Callable[[Job, BaseException], None]):
    if max_active < 1 or max_waiting < 0:
      raise ValueError(f"max_active={max_active} must be >= 1 and max_waiting={max_waiting} "
                       ">= 0")
    self.max_active, self.max_waiting = max_active, max_waiting
    self._on_error = on_error  # emits a job's error event (the scheduler knows no protocol)
    self._cond = threading.Condition()
    self._active: list[Job] = []
    self._waiting: collections.deque[Job] = collections.deque()
    self._counts = collections.Counter()
    self._closing = False
    self._thread = threading.Thread(target=self._run, name="decode", daemon=True)
    self._thread.start()

  def submit(self, job: Job) -> int:
    """Admits `job`: 0 if it is active now, else its place in the queue (1 = next).
    Raises Busy when the queue is full."""
    with self._cond:
      if len(self._active) < self.max_active:
        self._active.append(job)
        place = 0
      elif len(self._waiting) < self.max_waiting:
        self._waiting.append(job)
        place = len(self._waiting)
      else:
        self._counts["refused"] += 1
        raise Busy(f"server busy: {len(self._active)} answers in progress and "
                   f"{len(self._waiting)} waiting (the queue holds {self.max_waiting}); "
                   "try again when one finishes")
      self._counts["admitted"] += 1
      self._cond.notify()
      return place

  def cancel(self, job: Job) -> None:
    """Drops `job` (its client is gone): at once if waiting, before its next step if active."""
    with self._cond:
      job.cancelled = True
      if job in self._waiting:
        self._waiting.remove(job)
        self._counts["cancelled"] += 1
      self._cond.notify()

  def stats(self) -> dict[str, int]:
    with self._cond:
      return {"active": len(self._active), "waiting": len(self._waiting),
              **{k: self._counts[k] for k in ("admitted", "finished", "cancelled", "failed",
                                              "refused")}}

  def close(self) -> None:
    with self._cond:
      self._closing = True
      self._cond.notify()
    self._thread.join()

  def _next_job(self) -> Optional[Job]:
    """Waits for work; returns the active job to step (None: closing). Cancelled jobs are
    removed first and their slots refilled from the queue."""
    with self._cond:
      while True:
        for job in [j for j in self._active if j.cancelled]:
          self._retire(job, "cancelled")
        if self._closing:
          return None
        if self._active:
          return min(self._active, key=lambda j: j.steps)  # stable: the oldest of the least
        self._cond.wait()

  def _retire(self, job: Job, outcome: str) -> None:
    """Frees `job`'s slot for the oldest waiting job (called with the lock held)."""
    self._active.remove(job)
    self._counts[outcome] += 1
    if job.events is not None:
      job.events.close()  # ends the decoding generator (outside any jit call)
    if self._waiting:
      self._active.append(self._waiting.popleft())

  def _run(self) -> None:
    while (job := self._next_job()) is not None:
      outcome = None
      try:
        if job.events is None:
          job.events = job.start()
        item = next(job.events)
        job.emit(item)
        job.steps += 1
        outcome = "finished" if job.is_final(item) else None
      except StopIteration:
        outcome = "finished"
      except Exception as e:  # noqa: BLE001 -- one request's failure must not stop the server
        traceback.print_exc()
        self._on_error(job, e)
        outcome = "failed"
      if outcome:
        job.emit(END)
        with self._cond:
          if job in self._active:
            self._retire(job, outcome)
