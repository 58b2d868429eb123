"""The decoding scheduler and the protocol's message checks, without a model."""
import threading

import pytest

from vocalnet_jax.serving import protocol
from vocalnet_jax.serving.protocol import Ask, ModelInfo, ProtocolError
from vocalnet_jax.serving.scheduler import END, Busy, Job, Scheduler


class Recorder:
  """Collects (job name, item) in emission order; `ended` fires when a job emits END."""

  def __init__(self):
    self.items, self.ended, self.lock = [], {}, threading.Lock()

  def job(self, name, steps, gate=None, closed=None, fail_at=None):
    self.ended[name], self.entered = threading.Event(), threading.Event()

    def events():
      self.entered.set()
      try:
        for i in range(steps):
          if gate is not None:
            assert gate.wait(30)
          if i == fail_at:
            raise RuntimeError("boom")
          yield i
      finally:
        if closed is not None:
          closed.set()

    def emit(item):
      with self.lock:
        self.items.append((name, item))
      if item is END:
        self.ended[name].set()
    return Job(events, emit)


def _failed(job, error):
  job.emit(f"error: {error}")


def test_the_queue_is_bounded_and_a_full_one_refuses_in_one_line():
  rec, gate = Recorder(), threading.Event()
  s = Scheduler(max_active=1, max_waiting=1, on_error=_failed)
  a, b, c = rec.job("a", 2, gate), rec.job("b", 1), rec.job("c", 1)
  assert s.submit(a) == 0 and s.submit(b) == 1
  with pytest.raises(Busy, match="1 answers in progress and 1 waiting"):
    s.submit(c)
  assert s.stats()["active"] == 1 and s.stats()["waiting"] == 1 and s.stats()["refused"] == 1
  gate.set()
  assert rec.ended["b"].wait(30)
  assert [n for n, _ in rec.items] == ["a", "a", "a", "b", "b"]  # b ran after a's END
  assert s.stats()["finished"] == 2 and s.stats()["active"] == 0
  s.close()


def test_least_served_first_interleaves_a_new_answer_ahead_of_older_ones():
  rec, gate = Recorder(), threading.Event()
  s = Scheduler(max_active=3, max_waiting=0, on_error=_failed)
  s.submit(rec.job("a", 3, gate))
  s.submit(rec.job("b", 3, gate))
  gate.set()
  assert rec.ended["a"].wait(30) and rec.ended["b"].wait(30)
  steps = [(n, i) for n, i in rec.items if i is not END]
  assert steps == [("a", 0), ("b", 0), ("a", 1), ("b", 1), ("a", 2), ("b", 2)]
  s.close()


def test_cancel_frees_a_waiting_place_at_once_and_an_active_slot_before_its_next_step():
  rec, gate, closed = Recorder(), threading.Event(), threading.Event()
  s = Scheduler(max_active=1, max_waiting=1, on_error=_failed)
  a = rec.job("a", 100, gate, closed)
  s.submit(a)
  assert rec.entered.wait(30)  # a's first step has begun
  b = rec.job("b", 1)
  s.submit(b)
  s.cancel(b)
  assert s.stats()["waiting"] == 0 and s.stats()["cancelled"] == 1
  c = rec.job("c", 1)
  assert s.submit(c) == 1  # b's place is free
  s.cancel(a)  # a is blocked inside a step; it is dropped before its next one
  gate.set()
  assert closed.wait(30) and rec.ended["c"].wait(30)  # a's generator closed; c answered
  assert ("a", END) not in rec.items and s.stats()["cancelled"] == 2
  assert sum(1 for n, _ in rec.items if n == "a") <= 1
  s.close()


def test_a_failing_answer_is_one_error_and_the_next_one_runs():
  rec = Recorder()
  s = Scheduler(max_active=1, max_waiting=1, on_error=_failed)
  s.submit(rec.job("a", 3, fail_at=1))
  s.submit(rec.job("b", 1))
  assert rec.ended["b"].wait(30)
  assert rec.items == [("a", 0), ("a", "error: boom"), ("a", END), ("b", 0), ("b", END)]
  assert s.stats()["failed"] == 1 and s.stats()["finished"] == 1
  s.close()


MODELS = {"ar": ModelInfo("ar", 0, 0, ""), "mdm": ModelInfo("mdm", 2, 4, "topk")}


def test_an_ask_takes_the_models_defaults_and_only_its_knobs():
  assert protocol.parse_ask('{"type": "ask", "model": "mdm"}', MODELS) == Ask("mdm", 2, "topk")
  assert protocol.parse_ask('{"type": "ask", "model": "mdm", "steps": 4, "rule": "threshold"}',
                            MODELS) == Ask("mdm", 4, "threshold")
  assert protocol.parse_ask('{"type": "ask", "model": "ar"}', MODELS) == Ask("ar", 0, "")
  assert protocol.parse_ask('{"type": "ask"}', {"mdm": MODELS["mdm"]}) == Ask("mdm", 2, "topk")


@pytest.mark.parametrize("text,words", [
    ('{"type": "ask"}', "answers with ar, mdm"),  # two models: say which
    ('{"type": "ask", "model": "ar", "steps": 2}', "steps and rule are MDM knobs"),
    ('{"type": "ask", "model": "mdm", "steps": 0}', "[1, 4]"),
    ('{"type": "ask", "model": "mdm", "steps": true}', "[1, 4]"),
    ('{"type": "ask", "model": "mdm", "steps": 2.0}', "[1, 4]"),
    ('{"type": "ask", "model": "mdm", "rule": "best"}', "topk, threshold, ancestral"),
    ('[1, 2]', "JSON object"),
    ('', "JSON object"),
])
def test_a_malformed_ask_names_what_is_wrong(text, words):
  with pytest.raises(ProtocolError, match=None) as err:
    protocol.parse_ask(text, MODELS)
  assert err.value.code == "malformed" and words in str(err.value)
