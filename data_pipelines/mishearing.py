"""A mishearing channel: the character edits that ears that spell make, counted from their
transcripts and replayed on typed text.

Why: a Thinker that reads the ears' spelling (`adaptor.read_as=transcript`) is fine-tuned on
clean typed questions, so a misspelled word ("frst leter", "sub tract") is text it never
met. Passing training questions through the ears' own errors teaches it to read them. The
channel is memoryless over the reference's characters: each is kept, deleted or replaced
(by a character drawn from what that character became), and any character may be followed
by an inserted one. Counts are fit by Levenshtein alignment (rapidfuzz `editops`); rates
of rare characters back off to the overall rates with `PRIOR` pseudo-counts.
"""
from __future__ import annotations

import collections
import dataclasses
import functools
import json
from typing import Iterable, Mapping

import numpy as np
from rapidfuzz.distance import Levenshtein

PRIOR = 20.0  # pseudo-counts of the overall rate in each character's rate


@dataclasses.dataclass(frozen=True)
class Channel:
  """Edit counts of (reference, heard) pairs; JSON round trips through `to_json`."""
  chars: Mapping[str, int]  # reference character -> occurrences
  deleted: Mapping[str, int]  # reference character -> times dropped
  replaced: Mapping[str, Mapping[str, int]]  # reference character -> heard character -> times
  inserted: Mapping[str, int]  # heard character inserted -> times
  pairs: int  # sentences counted
  errors: int  # Levenshtein distance summed over the pairs

  @property
  def num_chars(self) -> int:
    return sum(self.chars.values())

  @property
  def cer(self) -> float:
    """Character error rate of the pairs the channel was fit on."""
    return self.errors / max(self.num_chars, 1)

  # The overall counts behind every character's rates, summed once (a data loader replays
  # the channel on every typed question).
  @functools.cached_property
  def _overall_delete(self) -> float:
    return sum(self.deleted.values()) / max(self.num_chars, 1)

  @functools.cached_property
  def _replaced_to(self) -> collections.Counter:
    """Heard character -> times any reference character was replaced by it."""
    out = collections.Counter()
    for row in self.replaced.values():
      out.update(row)
    return out

  @functools.cached_property
  def _inserted(self) -> tuple[list[str], np.ndarray]:
    options = sorted(self.inserted)
    counts = np.array([self.inserted[d] for d in options], float)
    return options, counts / max(counts.sum(), 1.0)

  def delete_rate(self, c: str) -> float:
    return (self.deleted.get(c, 0) + PRIOR * self._overall_delete) / (self.chars.get(c, 0) + PRIOR)

  @functools.cached_property
  def _overall_replace(self) -> float:
    return sum(self._replaced_to.values()) / max(self.num_chars, 1)

  def replace_rate(self, c: str) -> float:
    own = sum(self.replaced.get(c, {}).values())
    return (own + PRIOR * self._overall_replace) / (self.chars.get(c, 0) + PRIOR)

  def insert_rate(self) -> float:
    """Per reference character: the chance an inserted character follows it."""
    return sum(self.inserted.values()) / max(self.num_chars, 1)

  def replacement(self, c: str) -> tuple[list[str], np.ndarray]:
    """What `c` becomes when replaced: its own counts plus PRIOR of the overall replacements
    (never `c` itself)."""
    overall = self._replaced_to.copy()
    overall.pop(c, None)
    own = self.replaced.get(c, {})
    options = sorted(set(overall) | set(own))
    if not options:
      return [], np.zeros(0)
    norm = max(sum(overall.values()), 1)
    weights = np.array([own.get(d, 0) + PRIOR * overall.get(d, 0) / norm for d in options])
    return options, weights / weights.sum()

  def corrupt(self, text: str, rng: np.random.Generator, scale: float = 1.0) -> str:
    """`text` as ears with `scale` times the fit rates would spell it."""
    out = []
    insert = min(1.0, scale * self.insert_rate())
    inserted, inserted_p = self._inserted
    for c in text:
      drop, swap = scale * self.delete_rate(c), scale * self.replace_rate(c)
      if drop + swap > 1.0:
        drop, swap = drop / (drop + swap), swap / (drop + swap)
      u = rng.random()
      if u < drop:
        pass
      elif u < drop + swap:
        options, p = self.replacement(c)
        out.append(options[rng.choice(len(options), p=p)] if options else c)
      else:
        out.append(c)
      if inserted and rng.random() < insert:
        out.append(inserted[rng.choice(len(inserted), p=inserted_p)])
    return "".join(out)

  def to_json(self) -> str:
    return json.dumps(dataclasses.asdict(self), indent=1, sort_keys=True)


def fit(pairs: Iterable[tuple[str, str]]) -> Channel:
  """The channel of (reference, heard) pairs: every edit of a minimal alignment counted."""
  chars, deleted, inserted = collections.Counter(), collections.Counter(), collections.Counter()
  replaced: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
  n = errors = 0
  for ref, heard in pairs:
    n += 1
    chars.update(ref)
    ops = Levenshtein.editops(ref, heard)
    errors += len(ops)
    for op in ops:
      if op.tag == "delete":
        deleted[ref[op.src_pos]] += 1
      elif op.tag == "replace":
        replaced[ref[op.src_pos]][heard[op.dest_pos]] += 1
      else:
        inserted[heard[op.dest_pos]] += 1
  return Channel(dict(chars), dict(deleted), {c: dict(r) for c, r in replaced.items()},
                 dict(inserted), n, errors)


def load(path: str) -> Channel:
  """A channel written by `Channel.to_json`; ValueError naming `path` if it is not one."""
  try:
    with open(path) as f:
      raw = json.load(f)
    return Channel(**{k: raw[k] for k in ("chars", "deleted", "replaced", "inserted", "pairs",
                                          "errors")})
  except FileNotFoundError:
    raise ValueError(f"{path}: no such mishearing channel (written by "
                     "`python -m launch.mishearing`)") from None
  except (ValueError, KeyError, TypeError) as e:
    raise ValueError(f"{path}: not a mishearing channel ({type(e).__name__}: {e})") from None
