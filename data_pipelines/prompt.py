"""The prompt layout every Thinker input uses: [bos, <|user|>, question..., <|assistant|>],
or a pretrained tokenizer's chat template around the question (its `prompt_affixes`).

The question is text ids (typed or transcribed) or adapted audio frames (spoken); the
answer follows the assistant marker. Training data, the speech stages and the decoders
all build their prompts from here.
"""
from __future__ import annotations

from typing import Any, Sequence


def prompt_head_tail(tokenizer: Any) -> tuple[tuple[int, ...], tuple[int, ...]]:
  """(ids before the question, ids after it): the tokenizer's chat template when it has one
  (`pretrained_tokenizer.ChatTokenizer`), else its bos/user/assistant ids."""
  affixes = getattr(tokenizer, "prompt_affixes", None)
  if affixes is not None:
    return affixes
  return (tokenizer.bos_id, tokenizer.user_id), (tokenizer.assistant_id,)


def prompt_ids(tokenizer: Any, question: Sequence[int]) -> list[int]:
  """A question's ids in the prompt layout."""
  head, tail = prompt_head_tail(tokenizer)
  return [*head, *question, *tail]
