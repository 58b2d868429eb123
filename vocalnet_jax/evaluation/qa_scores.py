"""Exact match of the spoken-QA corpus's answers, broken down by what the answers ask for.

Why: a single exact match hides where a decoder loses. The corpus's templates say what kind
of question it is (the arithmetic ones compute the answer from the numbers), and the longest
number in the reference says how many tokens a tokenizer that writes one token per digit
needs for it: a one-step block diffusion decoder predicts those digits in parallel.
"""
from __future__ import annotations

import re

from vocalnet_jax.evaluation import text_metrics

ARITHMETIC = ("add", "subtract", "compare", "count")  # answers computed from the numbers
NUMBER_CLASSES = ("multi_digit", "one_digit", "no_digit")  # the reference's longest number


def number_class(reference: str) -> str:
  """Which of NUMBER_CLASSES the reference answer falls in."""
  longest = max((len(d) for d in re.findall(r"\d+", reference)), default=0)
  return NUMBER_CLASSES[2 if longest == 0 else 1 if longest == 1 else 0]


def scores(texts: list[str], rows: list[dict[str, str]]) -> dict:
  """Exact match overall, on the arithmetic templates, per template and per number class
  (rows: the corpus records' `answer_text` and `template`, 'name/index')."""
  refs = [r["answer_text"] for r in rows]
  names = [r["template"].split("/")[0] for r in rows]
  classes = [number_class(r) for r in refs]
  pick = lambda keep: text_metrics.exact_match_where(texts, refs, keep)  # noqa: E731
  return {"exact_match": text_metrics.exact_match(texts, refs),
          "arithmetic_exact_match": pick([n in ARITHMETIC for n in names]),
          "arithmetic_count": sum(n in ARITHMETIC for n in names),
          "per_template": {t: pick([n == t for n in names]) for t in sorted(set(names))},
          "by_number": {c: {"n": classes.count(c), "exact_match": pick([k == c for k in classes])}
                        for c in NUMBER_CLASSES if c in classes}}
