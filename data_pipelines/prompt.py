"""The prompt layout every Thinker input uses: [bos, <|user|>, question..., <|assistant|>].

The question is text ids (typed or transcribed) or adapted audio frames (spoken); the
answer follows the assistant marker. Training data, the speech stages and the decoders
all build their prompts from here.
"""
from __future__ import annotations

from typing import Any, Sequence


def prompt_head_tail(tokenizer: Any) -> tuple[tuple[int, ...], tuple[int, ...]]:
  """(ids before the question, ids after it) for a tokenizer with bos/user/assistant ids."""
  return (tokenizer.bos_id, tokenizer.user_id), (tokenizer.assistant_id,)


def prompt_ids(tokenizer: Any, question: Sequence[int]) -> list[int]:
  """A question's ids in the prompt layout."""
  head, tail = prompt_head_tail(tokenizer)
  return [*head, *question, *tail]
