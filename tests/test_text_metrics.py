"""evaluation.text_metrics: exact match over all pairs and over a chosen subset."""
from vocalnet_jax.evaluation import text_metrics


def test_exact_match_where_scores_only_the_kept_pairs():
  predictions, references = ["a", "b ", "x", "d"], ["a", "b", "c", "e"]
  assert text_metrics.exact_match(predictions, references) == 0.5
  assert text_metrics.exact_match_where(predictions, references, [True, True, True, False]) \
      == 2 / 3
  assert text_metrics.exact_match_where(predictions, references, [False, False, True, True]) \
      == 0.0
  assert text_metrics.exact_match_where(predictions, references, [False] * 4) == 0.0
