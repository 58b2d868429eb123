"""Text answer metrics for the synthetic QA task: exact match and character error rate."""
from __future__ import annotations

from typing import Sequence


def edit_distance(a: str, b: str) -> int:
  """Levenshtein distance (insertions, deletions, substitutions all cost 1)."""
  row = list(range(len(b) + 1))
  for i, ca in enumerate(a, 1):
    prev, row[0] = row[0], i
    for j, cb in enumerate(b, 1):
      prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
  return row[-1]


def exact_match(predictions: Sequence[str], references: Sequence[str]) -> float:
  """Fraction of predictions equal to their reference (after stripping spaces at the ends)."""
  pairs = list(zip(predictions, references, strict=True))
  return sum(p.strip() == r.strip() for p, r in pairs) / max(len(pairs), 1)


def exact_match_where(predictions: Sequence[str], references: Sequence[str],
                      keep: Sequence[bool]) -> float:
  """`exact_match` over the pairs whose `keep` is true (0 when none is)."""
  rows = [(p, r) for p, r, k in zip(predictions, references, keep, strict=True) if k]
  return exact_match([p for p, _ in rows], [r for _, r in rows])


def char_error_rate(predictions: Sequence[str], references: Sequence[str]) -> float:
  """Total character edits over total reference characters (corpus CER)."""
  pairs = list(zip(predictions, references, strict=True))
  edits = sum(edit_distance(p, r) for p, r in pairs)
  return edits / max(sum(len(r) for _, r in pairs), 1)
