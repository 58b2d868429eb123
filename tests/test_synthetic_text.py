import numpy as np
import pytest

from data_pipelines import synthetic_text


def test_examples_are_deterministic_and_fit_the_contract():
  source = synthetic_text.SyntheticTextSource(100, 32, 16, seed=3)
  a, b = source[7], source[7]
  for key in a:
    np.testing.assert_array_equal(a[key], b[key])
  tok = source.tokenizer
  ex = source[11]
  assert ex["prompt"][ex["prompt_valid"]][0] == tok.bos_id
  assert ex["prompt"][ex["prompt_valid"]][-1] == tok.assistant_id
  answer = ex["response"][ex["response_valid"]]
  assert answer[-1] == tok.eos_id and tok.eos_id not in answer[:-1]


@pytest.mark.parametrize("task", synthetic_text.TASKS)
def test_every_reference_answer_is_valid(task):
  rng = np.random.default_rng(0)
  for _ in range(50):
    question, answer = synthetic_text.make_qa(rng, task)
    assert synthetic_text.answer_is_valid(question, answer, answer)


@pytest.mark.parametrize("task", synthetic_text.TASKS)
def test_every_question_names_its_task(task):
  """`task_of` recovers the task from the question alone (per-task evaluation)."""
  rng = np.random.default_rng(2)
  for _ in range(50):
    assert synthetic_text.task_of(synthetic_text.make_qa(rng, task)[0]) == task
  assert synthetic_text.task_of("what is this") == "unknown"


def test_digitsum_has_many_right_answers_judged_by_the_rule():
  rng = np.random.default_rng(1)
  answers = {synthetic_text.make_qa(rng, "digitsum") for _ in range(200)}
  by_question = {}
  for q, a in answers:
    by_question.setdefault(q, set()).add(a)
  assert max(len(v) for v in by_question.values()) > 3  # one question, several answers
  valid = synthetic_text.answer_is_valid
  assert valid("3 digits sum 12", "390", "444") and valid("3 digits sum 12", "048", "444")
  assert not valid("3 digits sum 12", "049", "444")  # two answers' digits mixed
  assert not valid("3 digits sum 12", "39", "444") and not valid("3 digits sum 3", "1a1", "")
  assert not valid("sort 321", "132", "123") and valid("sort 321", "123", "123")


def test_unknown_task_is_named():
  with pytest.raises(ValueError, match="nope"):
    synthetic_text.SyntheticTextSource(10, 32, 16, tasks=("add", "nope"))
