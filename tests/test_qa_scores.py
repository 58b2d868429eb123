"""evaluation.qa_scores: the exact-match breakdowns (template, arithmetic, numbers)."""
from vocalnet_jax.evaluation import qa_scores


def test_number_class_is_the_longest_number_of_the_reference():
  assert qa_scores.number_class("78 plus 72 is 150.") == "multi_digit"
  assert qa_scores.number_class("david has 8 pears.") == "one_digit"
  assert qa_scores.number_class("0 is even.") == "one_digit"
  assert qa_scores.number_class("the boat is white.") == "no_digit"


def test_scores_split_exact_match_by_template_and_number_class():
  rows = [{"answer_text": a, "template": t} for a, t in (
      ("28 plus 52 is 80.", "add/0"), ("0 is even.", "parity/1"),
      ("the boat is white.", "color/0"), ("12 days is 288 hours.", "convert/2"))]
  texts = ["28 plus 52 is 83.", "0 is even.", "the boat is white.", "12 days is 288 hours."]
  s = qa_scores.scores(texts, rows)
  assert s["exact_match"] == 0.75
  assert (s["arithmetic_exact_match"], s["arithmetic_count"]) == (0.0, 1)
  assert s["per_template"] == {"add": 0.0, "color": 1.0, "convert": 1.0, "parity": 1.0}
  assert s["by_number"] == {"multi_digit": {"n": 2, "exact_match": 0.5},
                            "one_digit": {"n": 1, "exact_match": 1.0},
                            "no_digit": {"n": 1, "exact_match": 1.0}}
