"""Characters as CTC targets: ears that spell what they hear.

Why: a CTC head over a pretrained tokenizer's whole-word pieces can only emit words whose
audio it heard in training; over characters it can spell a word it never heard, so ears
trained from scratch generalise to new phrasings. The transcript is then tokenized like a
typed question (`adaptor.read_as = transcript`). Id 0 is CTC's blank; 1.. are ALPHABET.
"""
from __future__ import annotations

from typing import Sequence

# lower- and upper-case letters (the corpus spells words as "S I L V E R"), digits, space
# and the punctuation of typed questions
ALPHABET = (" abcdefghijklmnopqrstuvwxyz" "ABCDEFGHIJKLMNOPQRSTUVWXYZ" "0123456789" ".,?!'-:;")
BLANK = 0
VOCAB_SIZE = len(ALPHABET) + 1
_IDS = {c: i + 1 for i, c in enumerate(ALPHABET)}


def spell(text: str, where: str = "text") -> list[int]:
  """Character ids of `text`; a character outside ALPHABET is a ValueError naming `where`."""
  try:
    return [_IDS[c] for c in text]
  except KeyError as e:
    raise ValueError(f"{where}: character {e.args[0]!r} is not in spelling.ALPHABET") from None


def unspell(ids: Sequence[int]) -> str:
  """The text of character ids (blanks dropped)."""
  return "".join(ALPHABET[i - 1] for i in ids if 0 < i <= len(ALPHABET))
