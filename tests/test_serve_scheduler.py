"""The decoding scheduler and the protocol's message checks, without a model."""
import threading

import pytest

from vocalnet_jax.serving import protocol
from vocalnet_jax.serving.protocol import Ask, ModelInfo, ProtocolError
from vocalnet_jax.serving.scheduler import END, Busy, Job, Scheduler, most_urgent


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


def _steps(rec):
  return [(n, i) for n, i in rec.items if i is not END]


def test_silent_answers_go_in_order_of_arrival():
  rec, gate = Recorder(), threading.Event()
  s = Scheduler(max_active=3, max_waiting=0, on_error=_failed)
  s.submit(rec.job("a", 3, gate))
  s.submit(rec.job("b", 3, gate))
  gate.set()
  assert rec.ended["a"].wait(30) and rec.ended["b"].wait(30)
  assert _steps(rec) == [("a", 0), ("a", 1), ("a", 2), ("b", 0), ("b", 1), ("b", 2)]
  s.close()


def test_a_new_question_goes_ahead_of_an_answer_that_is_playing():
  rec, gate = Recorder(), threading.Event()
  s = Scheduler(max_active=3, max_waiting=0, on_error=_failed)
  s.submit(rec.job("z", 1, gate))  # holds the decoder while a and b arrive
  assert rec.entered.wait(30)
  a = rec.job("a", 3)
  a.audio_s = lambda item: 10.0  # each item plays 10 s
  s.submit(a)
  s.submit(rec.job("b", 3))
  gate.set()
  assert rec.ended["a"].wait(30) and rec.ended["b"].wait(30)
  # a is heard after its first step; b, still silent, runs before a's 10 s run out.
  assert _steps(rec) == [("z", 0), ("a", 0), ("b", 0), ("b", 1), ("b", 2), ("a", 1), ("a", 2)]
  s.close()


def _job(admitted_at, *items):
  """A job admitted at `admitted_at` that emitted `items`: (audio seconds, start, end)."""
  job = Job(iter, lambda item: None, audio_s=lambda seconds: seconds)
  job.admitted_at = admitted_at
  for seconds, started, ended in items:
    job.record_step(seconds, started, ended)
  return job


def test_start_by_is_arrival_while_silent_then_end_of_audio_less_the_last_chunks_work():
  silent = _job(3.0, (0.0, 3.0, 3.5))  # a text step: still silent
  assert silent.start_by() == 3.0 and silent.first_audio_at is None
  # heard at 5.0 after 2 s of work (text 3-4, audio 4-5) carrying 0.5 s; then 1 s more
  # audio made in 0.25 s: it plays until 6.5 and its chunks take 0.25 s to make.
  playing = _job(3.0, (0.0, 3.0, 4.0), (0.5, 4.0, 5.0))
  assert playing.first_audio_at == 5.0 and playing.start_by() == 5.0 + 0.5 - 2.0
  playing.record_step(1.0, 5.0, 5.25)
  assert playing.start_by() == 5.0 + 1.5 - 0.25 and playing.first_audio_at == 5.0


def test_the_most_urgent_is_a_playing_answer_only_when_it_would_run_dry_first():
  playing = _job(0.0, (0.5, 0.0, 1.0))  # heard at 1.0, plays until 1.5, 1 s per chunk
  newcomer = _job(1.2)
  assert most_urgent([playing, newcomer]) is playing  # start_by 0.5: already late
  slack = _job(0.0, (4.0, 0.0, 1.0))  # plays until 5.0
  assert most_urgent([slack, newcomer]) is newcomer
  assert most_urgent([_job(2.0), newcomer]) is newcomer  # silent: in order of arrival
  tied = [_job(1.0), _job(1.0)]
  assert most_urgent(tied) is tied[0]


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
