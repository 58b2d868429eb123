"""One decoding thread shared by every request: a bounded admission queue and
earliest-playback-deadline-first interleaving.

The model is one device's worth of compute, so answers are decoded by one thread, step by
step: a step is one `next()` of a request's event iterator (one Thinker block, Talker
chunk or vocoder piece). Up to `max_active` requests are in progress at once. The next step
goes to the active request whose listener would wait soonest (`Job.start_by`):
- a request with no audio out yet is already waited for, since its question arrived, so
  silent requests go first in order of arrival;
- a request that is playing has until its audio runs out, less the decoding time its last
  chunk took.
Streaming answers are decoded faster than they play, so a new question's first audio waits
for the step in progress and the silent questions that arrived before it, not for the
steps of every answer being spoken (as under round-robin or least-attained-service), and
no playing answer runs dry while the decoder can keep ahead of it. Up to `max_waiting`
more wait for a slot; beyond that `submit` refuses with `Busy`. `cancel` (a client gone)
drops a waiting request at once and an active one before its next step, closing its
iterator: its slot is free for the next.
"""
from __future__ import annotations

import collections
import dataclasses
import threading
import time
import traceback
from typing import Any, Callable, Iterator, Optional

END = object()  # the last item a job emits (after its events, an error, or nothing if cancelled)


class Busy(Exception):
  """Every slot and every queue place is taken; the message says so in one line."""


@dataclasses.dataclass(eq=False)
class Job:
  """One request: `start()` (called on the decoding thread) gives its events; `emit` takes
  each event, then END (called on the decoding thread: it must be thread-safe). The slot
  is freed as soon as an item `is_final` (or the iterator ends); `audio_s(item)` is the
  playing time an item carries (0 for text and control events)."""
  start: Callable[[], Iterator[Any]]
  emit: Callable[[Any], None]
  is_final: Callable[[Any], bool] = lambda item: False  # the answer is complete after it
  audio_s: Callable[[Any], float] = lambda item: 0.0
  cancelled: bool = False
  events: Optional[Iterator[Any]] = None
  # Scheduling state, in the scheduler's clock (seconds).
  admitted_at: float = 0.0
  first_audio_at: Optional[float] = None
  audio_out_s: float = 0.0  # playing time emitted so far
  work_since_audio_s: float = 0.0  # decoding time spent since its last audio item
  chunk_work_s: float = 0.0  # decoding time its last audio item took

  def start_by(self) -> float:
    """The latest time its next step can start without its listener waiting: its arrival
    while silent, else the end of its audio less the time its last chunk took to make."""
    if self.first_audio_at is None:
      return self.admitted_at
    return self.first_audio_at + self.audio_out_s - self.chunk_work_s

  def record_step(self, item: Any, started: float, ended: float) -> None:
    """Accounts one step that emitted `item` (a no-op for its audio if it carries none)."""
    self.work_since_audio_s += ended - started
    seconds = self.audio_s(item)
    if seconds > 0:
      self.first_audio_at = ended if self.first_audio_at is None else self.first_audio_at
      self.audio_out_s += seconds
      self.chunk_work_s, self.work_since_audio_s = self.work_since_audio_s, 0.0


def most_urgent(jobs: list[Job]) -> Job:
  """The job to step next: the earliest `start_by` (ties: the first in `jobs`, the oldest)."""
  return min(jobs, key=Job.start_by)


class Scheduler:
  """Bounded, interleaving executor of Jobs on one daemon thread."""

  def __init__(self, max_active: int, max_waiting: int,
               on_error: Callable[[Job, BaseException], None],
               clock: Callable[[], float] = time.perf_counter):
    if max_active < 1 or max_waiting < 0:
      raise ValueError(f"max_active={max_active} must be >= 1 and max_waiting={max_waiting} "
                       ">= 0")
    self.max_active, self.max_waiting = max_active, max_waiting
    self._on_error = on_error  # emits a job's error event (the scheduler knows no protocol)
    self._clock = clock
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
      job.admitted_at = self._clock()
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
          return most_urgent(self._active)
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
      outcome, items, error = None, [], None
      try:
        if job.events is None:
          job.events = job.start()
        started = self._clock()
        items.append(next(job.events))
        job.record_step(items[0], started, self._clock())
        outcome = "finished" if job.is_final(items[0]) else None
      except StopIteration:
        outcome = "finished"
      except Exception as e:  # noqa: BLE001 -- one request's failure must not stop the server
        traceback.print_exc()
        outcome, error = "failed", e
      if outcome:  # counted and its slot freed before its client hears the end
        with self._cond:
          if job in self._active:
            self._retire(job, outcome)
      for item in items:
        job.emit(item)
      if error is not None:
        self._on_error(job, error)
      if outcome:
        job.emit(END)
