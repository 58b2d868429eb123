"""A procedural text question -> answer task for training the Thinker LM without speech.

Examples are generated from (seed, index), so the source is random access,
deterministic and unbounded: grain can shuffle, shard and checkpoint it like any
on-disk dataset. Most tasks need the whole answer to be computed from the prompt
(addition, reversal, sorting, counting, doubling), so a model must learn the rule.
`digitsum` ("2 digits sum 12") has many right answers ("39", "84", ...): decoding
both digits in one parallel step mixes them ("34"), which is what few-step samplers
and self-distillation are about; `answer_is_valid` judges it by the rule.

Example layout (the LM batch contract also used by the speech corpus):
  prompt          [prompt_len] int32   left-padded with pad_id, starts with bos
  prompt_valid    [prompt_len] bool
  response        [response_len] int32 answer + eos, right-padded with pad_id
  response_valid  [response_len] bool  answer + eos positions
"""
from __future__ import annotations

import dataclasses
import re
import string
from typing import Any

import numpy as np

from data_pipelines.prompt import prompt_ids

QA_TASKS = ("add", "reverse", "sort", "count", "double")  # the fine-tuning / evaluation tasks
# Broader character skills for text pre-training (plus the QA tasks): what a pretrained LLM
# brings to VocalNet, in miniature.
PRETRAIN_TASKS = ("copy", "next", "sub", "max", "length", "range", "repeat", "inc") + QA_TASKS
TASKS = tuple(dict.fromkeys(PRETRAIN_TASKS + ("digitsum",)))
_DIGITSUM = re.compile(r"^(\d+) digits sum (\d+)$")


@dataclasses.dataclass(frozen=True)
class CharTokenizer:
  """Character tokenizer with the special ids the models need."""
  specials: tuple[str, ...] = ("<pad>", "<unk>", "<bos>", "<eos>", "<mask>", "<|user|>",
                               "<|assistant|>")
  chars: str = string.digits + string.ascii_lowercase + " +=:?-"

  pad_id = 0
  unk_id = 1
  bos_id = 2
  eos_id = 3
  mask_id = 4
  user_id = 5
  assistant_id = 6

  @property
  def vocab_size(self) -> int:
    return len(self.specials) + len(self.chars)

  def encode(self, text: str) -> list[int]:
    offset = len(self.specials)
    return [offset + self.chars.index(c) if c in self.chars else self.unk_id for c in text]

  def decode(self, ids) -> str:
    offset = len(self.specials)
    return "".join(self.chars[i - offset] for i in ids if offset <= i < self.vocab_size)


def make_qa(rng: np.random.Generator, task: str) -> tuple[str, str]:
  """One (question, answer) pair of `task`."""
  letters = string.ascii_lowercase
  if task == "add":
    a, b = rng.integers(0, 1000, size=2)
    return f"{a}+{b}=?", str(a + b)
  if task == "reverse":
    word = "".join(rng.choice(list(letters), size=rng.integers(3, 9)))
    return f"reverse {word}", word[::-1]
  if task == "sort":
    digits = "".join(map(str, rng.integers(0, 10, size=rng.integers(3, 10))))
    return f"sort {digits}", "".join(sorted(digits))
  if task == "count":
    word = "".join(rng.choice(list("abc"), size=rng.integers(4, 12)))
    ch = letters[rng.integers(0, 3)]
    return f"count {ch} in {word}", str(word.count(ch))
  if task == "double":
    word = "".join(rng.choice(list(letters), size=rng.integers(2, 6)))
    return f"double {word}", f"{word} {word}"
  if task == "copy":
    word = "".join(rng.choice(list(letters), size=rng.integers(3, 11)))
    return f"copy {word}", word
  if task == "next":
    word = "".join(rng.choice(list(letters), size=rng.integers(2, 8)))
    return f"next {word}", "".join(letters[(letters.index(c) + 1) % 26] for c in word)
  if task == "sub":
    a, b = sorted(rng.integers(0, 1000, size=2))[::-1]
    return f"{a}-{b}=?", str(a - b)
  if task == "max":
    a, b = rng.integers(0, 1000, size=2)
    return f"max {a} {b}", str(max(a, b))
  if task == "length":
    word = "".join(rng.choice(list(letters), size=rng.integers(1, 16)))
    return f"length {word}", str(len(word))
  if task == "range":
    a = int(rng.integers(0, 24))
    b = int(rng.integers(a + 1, min(a + 12, 25) + 1))
    return f"from {letters[a]} to {letters[b]}", letters[a:b + 1]
  if task == "repeat":
    word = "".join(rng.choice(list(letters), size=rng.integers(1, 4)))
    k = int(rng.integers(2, 5))
    return f"{k} times {word}", word * k
  if task == "inc":
    digits = rng.integers(0, 10, size=rng.integers(2, 9))
    return f"inc {''.join(map(str, digits))}", "".join(str((d + 1) % 10) for d in digits)
  if task == "digitsum":
    digits = rng.integers(0, 10, size=2)
    return f"{len(digits)} digits sum {digits.sum()}", "".join(map(str, digits))
  raise ValueError(f"unknown synthetic task {task!r}; choose from {TASKS}")


# The question form of each task, as `make_qa` writes it (so results can be split by task).
QUESTION_FORMS = {
    "add": r"\d+\+\d+=\?", "reverse": r"reverse [a-z]+", "sort": r"sort \d+",
    "count": r"count [a-z] in [a-z]+", "double": r"double [a-z]+", "copy": r"copy [a-z]+",
    "next": r"next [a-z]+", "sub": r"\d+-\d+=\?", "max": r"max \d+ \d+",
    "length": r"length [a-z]+", "range": r"from [a-z] to [a-z]", "repeat": r"\d times [a-z]+",
    "inc": r"inc \d+", "digitsum": r"\d+ digits sum \d+"}


def task_of(question: str) -> str:
  """The task whose question form `question` has ('unknown' for anything else)."""
  return next((t for t, form in QUESTION_FORMS.items() if re.fullmatch(form, question)),
              "unknown")


def answer_is_valid(question: str, prediction: str, reference: str) -> bool:
  """Whether `prediction` answers `question`: by the rule for `digitsum`, else exactly."""
  match = _DIGITSUM.match(question)
  if match is None:
    return prediction == reference
  n, total = int(match.group(1)), int(match.group(2))
  return len(prediction) == n and prediction.isdigit() and sum(map(int, prediction)) == total


class SyntheticTextSource:
  """Random-access source of tokenized QA examples with fixed prompt/response lengths."""

  def __init__(self, num_examples: int, prompt_len: int, response_len: int, seed: int = 0,
               tasks: tuple[str, ...] = TASKS, tokenizer: CharTokenizer | None = None):
    unknown = set(tasks) - set(TASKS)
    if unknown:
      raise ValueError(f"data.tasks has unknown task(s) {sorted(unknown)}; choose from {TASKS}")
    self.num_examples, self.prompt_len, self.response_len = num_examples, prompt_len, response_len
    self.seed, self.tasks = seed, tuple(tasks)
    self.tokenizer = tokenizer or CharTokenizer()

  def __len__(self) -> int:
    return self.num_examples

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng([self.seed, int(index)])
    question, answer = make_qa(rng, self.tasks[int(rng.integers(len(self.tasks)))])
    return pack_qa(self.tokenizer, question, answer, self.prompt_len, self.response_len,
                   f"example {index}")


def source_from_config(data: Any, split: str,
                       tokenizer: CharTokenizer | None = None) -> SyntheticTextSource:
  """The source of `config.data` for a split: `train`, or any other (held out: seed + 1)."""
  seed = data.seed if split == "train" else data.seed + 1
  return SyntheticTextSource(data.num_examples, data.prompt_len, data.response_len, seed=seed,
                             tasks=tuple(data.tasks), tokenizer=tokenizer)


def pack_qa(tokenizer: Any, question: str, answer: str, prompt_len: int, response_len: int,
            name: str) -> dict[str, np.ndarray]:
  """A typed question and its answer in the prompt layout (answer + eos), packed; ValueError
  naming `name` and the config field when either does not fit."""
  prompt = prompt_ids(tokenizer, tokenizer.encode(question))
  response = tokenizer.encode(answer) + [tokenizer.eos_id]
  if len(prompt) > prompt_len or len(response) > response_len:
    raise ValueError(f"{name} does not fit: prompt {len(prompt)} > data.prompt_len={prompt_len} "
                     f"or response {len(response)} > data.response_len={response_len}")
  return pack_example(prompt, response, prompt_len, response_len, tokenizer.pad_id)


def pack_example(prompt: list[int], response: list[int], prompt_len: int, response_len: int,
                 pad_id: int) -> dict[str, np.ndarray]:
  """Left-pads the prompt and right-pads the response to fixed lengths."""
  p = np.full(prompt_len, pad_id, np.int32)
  p[prompt_len - len(prompt):] = prompt
  r = np.full(response_len, pad_id, np.int32)
  r[:len(response)] = response
  return {
      "prompt": p,  # [prompt_len]
      "prompt_valid": np.arange(prompt_len) >= prompt_len - len(prompt),  # [prompt_len]
      "response": r,  # [response_len]
      "response_valid": np.arange(response_len) < len(response),  # [response_len]
  }
