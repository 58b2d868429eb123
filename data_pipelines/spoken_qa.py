"""Embedded spoken question -> answer corpus: text generator (speech comes from `tts`).

Why: training needs conversations whose answers follow from the question, with
nothing downloaded. Every answer is computed from the question (arithmetic,
comparisons, parity, spelling, first letters, calendar order, unit conversions,
facts stated inside the question, counting), so a model must use what it heard.

Each template has several phrasings (question wordings). A *combination* is a
(template, phrasing) pair. The held-out split uses only combinations that the
train split never contains: for template i the phrasing `i % num_phrasings(i)`
is held out, so every template and every phrasing style is still seen in
training, but not together (systematic generalisation).

Examples are a pure function of (seed, split, index): random access,
deterministic, shardable. Question speakers are drawn per example from a speaker
pool (`tts.speaker_pool`). Three evaluation splits hold out one more axis each:
`test` (new recordings of train combinations by train speakers), `unseen_voices`
(train combinations, speakers never in train) and `heldout` (held-out combinations,
speakers never in train), so a failure on `heldout` can be told apart from a voice
the ears never heard. Answers are all spoken by one assistant voice (`tfds_builders`).

The `read` split is not question answering: each example is one sentence, read aloud by a
train questioner (the ears' side: speech recognition) and by the assistant (the Talker's
side: text to speech). About half the sentences are answers of the templates with fresh
values, the rest short word sequences over the train split's words, so a Talker or ears
trained on it meet word orders no answer has. No sentence equals an answer of an
evaluation split, and no word is one that only held-out phrasings use, unless the corpus
adds general English words (`read_words`: e.g. a pretrained tokenizer's commonest whole
words), as ears for a pretrained Thinker need: a pretrained encoder has heard them all.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from typing import Any, Callable, Collection, Mapping, NamedTuple, Optional

import numpy as np

from data_pipelines import mishearing
from data_pipelines.synthetic_text import pack_qa

READ = "read"  # sentences read aloud (see the module doc), not question answering
SPLITS = ("train", "test", "heldout", "unseen_voices", READ)
EVAL_SPLITS = ("test", "heldout", "unseen_voices")
# Splits whose questions are spoken by speakers never in train (`tfds_builders.split_speakers`).
UNSEEN_VOICE_SPLITS = ("heldout", "unseen_voices")

NAMES = (
    "alice", "bob", "carol", "david", "emma", "frank", "grace", "henry", "irene", "jack",
    "karen", "liam", "maria", "noah", "olivia", "peter", "quinn", "rachel", "sam", "tina",
    "victor", "wendy", "xavier", "yvonne", "zoe", "oscar", "nina", "paul", "ruth", "steve",
    "laura", "mike", "julia", "kevin", "hannah", "ivan", "sofia", "tom", "uma", "george",
)
CITIES = (
    "paris", "london", "berlin", "madrid", "rome", "vienna", "prague", "dublin", "oslo",
    "lisbon", "tokyo", "seoul", "delhi", "cairo", "lima", "toronto", "chicago", "boston",
    "denver", "sydney", "moscow", "athens", "warsaw", "zurich", "geneva", "milan", "munich",
    "helsinki", "stockholm", "amsterdam",
)
OBJECTS = (
    "car", "house", "ball", "book", "chair", "table", "door", "cup", "hat", "shirt", "boat",
    "bike", "lamp", "pen", "bag", "box", "kite", "shoe", "bottle", "phone", "clock", "bird",
    "flower", "apple", "train", "truck", "coat", "fence", "roof", "window",
)
COLORS = ("red", "blue", "green", "yellow", "black", "white", "orange", "purple", "pink",
          "brown", "gray", "silver")
WORDS = (
    "cat", "dog", "sun", "moon", "tree", "fish", "milk", "rain", "snow", "wind", "star",
    "bread", "water", "music", "river", "stone", "cloud", "light", "night", "green", "happy",
    "table", "garden", "window", "pencil", "rabbit", "orange", "planet", "summer", "winter",
    "yellow", "bottle", "doctor", "market", "silver", "forest", "island", "coffee", "butter",
    "number", "letter", "animal", "friend", "school", "family", "mother", "father", "sister",
    "brother", "dinner", "answer", "people", "little", "simple", "middle", "castle", "jacket",
    "kitchen", "morning", "evening", "picture", "teacher", "weather", "country", "village",
)
DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august",
          "september", "october", "november", "december")
FRUITS = ("apples", "oranges", "pears", "bananas", "plums", "lemons", "cherries", "peaches")
# (from unit, to unit, factor)
CONVERSIONS = (("hours", "minutes", 60), ("minutes", "seconds", 60), ("meters", "centimeters", 100),
               ("kilograms", "grams", 1000), ("days", "hours", 24), ("weeks", "days", 7),
               ("kilometers", "meters", 1000), ("dollars", "cents", 100))


@dataclasses.dataclass(frozen=True)
class Template:
  """A question family: `make(rng)` -> (slots, answer); phrasings format the slots."""

  name: str
  phrasings: tuple[str, ...]
  make: Callable[[np.random.Generator], tuple[dict[str, object], str]]


def _pick(rng: np.random.Generator, values: tuple[str, ...]) -> str:
  return values[int(rng.integers(len(values)))]


def _add(rng):
  a, b = (int(x) for x in rng.integers(0, 100, size=2))
  return {"a": a, "b": b}, f"{a} plus {b} is {a + b}."


def _subtract(rng):
  a, b = sorted(int(x) for x in rng.integers(0, 100, size=2))[::-1]
  return {"a": a, "b": b}, f"{a} minus {b} is {a - b}."


def _multiply(rng):
  a, b = (int(x) for x in rng.integers(2, 13, size=2))
  return {"a": a, "b": b}, f"{a} times {b} is {a * b}."


def _compare(rng):
  a, b = (int(x) for x in rng.choice(1000, size=2, replace=False))
  return {"a": a, "b": b}, f"{max(a, b)} is larger."


def _parity(rng):
  n = int(rng.integers(0, 1000))
  return {"n": n}, f"{n} is {'even' if n % 2 == 0 else 'odd'}."


def _spell(rng):
  word = _pick(rng, WORDS)
  return {"word": word}, f"{word} is spelled {' '.join(word.upper())}."


def _first_letter(rng):
  word = _pick(rng, WORDS)
  return {"word": word}, f"the first letter of {word} is {word[0].upper()}."


def _next_day(rng):
  i = int(rng.integers(len(DAYS)))
  return {"day": DAYS[i]}, f"the day after {DAYS[i]} is {DAYS[(i + 1) % 7]}."


def _next_month(rng):
  i = int(rng.integers(len(MONTHS)))
  return {"month": MONTHS[i]}, f"the month after {MONTHS[i]} is {MONTHS[(i + 1) % 12]}."


def _convert(rng):
  src, dst, factor = CONVERSIONS[int(rng.integers(len(CONVERSIONS)))]
  n = int(rng.integers(1, 13))
  return {"n": n, "src": src, "dst": dst}, f"{n} {src} is {n * factor} {dst}."


def _lives_in(rng):
  name, city = _pick(rng, NAMES), _pick(rng, CITIES)
  return {"name": name, "city": city}, f"{name} lives in {city}."


def _color(rng):
  obj, color = _pick(rng, OBJECTS), _pick(rng, COLORS)
  return {"obj": obj, "color": color}, f"the {obj} is {color}."


def _count(rng):
  name, fruit = _pick(rng, NAMES), _pick(rng, FRUITS)
  a, b = (int(x) for x in rng.integers(1, 20, size=2))
  return {"name": name, "fruit": fruit, "a": a, "b": b}, f"{name} has {a + b} {fruit}."


TEMPLATES: tuple[Template, ...] = (
    Template("add", ("what is {a} plus {b}?", "add {a} and {b}.",
                     "what do you get when you add {a} to {b}?"), _add),
    Template("subtract", ("what is {a} minus {b}?", "subtract {b} from {a}.",
                          "take {b} away from {a}. what is left?"), _subtract),
    Template("multiply", ("what is {a} times {b}?", "multiply {a} by {b}.",
                          "what is the product of {a} and {b}?"), _multiply),
    Template("compare", ("which is larger, {a} or {b}?", "which number is bigger: {a} or {b}?",
                         "tell me the larger of {a} and {b}."), _compare),
    Template("parity", ("is {n} even or odd?", "tell me whether {n} is odd or even.",
                        "{n}: odd or even?"), _parity),
    Template("spell", ("how do you spell {word}?", "please spell the word {word}.",
                       "spell {word} for me."), _spell),
    Template("first_letter", ("what is the first letter of {word}?",
                              "which letter does {word} start with?",
                              "tell me the first letter of the word {word}."), _first_letter),
    Template("next_day", ("what day comes after {day}?", "which day follows {day}?",
                          "if today is {day}, what day is tomorrow?"), _next_day),
    Template("next_month", ("what month comes after {month}?", "which month follows {month}?",
                            "if this month is {month}, what is next month?"), _next_month),
    Template("convert", ("how many {dst} are in {n} {src}?", "convert {n} {src} to {dst}.",
                         "{n} {src} is how many {dst}?"), _convert),
    Template("lives_in", ("{name} lives in {city}. where does {name} live?",
                          "remember that {name} lives in {city}. which city is {name} in?",
                          "{name} has a home in {city}. tell me where {name} lives."), _lives_in),
    Template("color", ("the {obj} is {color}. what color is the {obj}?",
                       "i painted the {obj} {color}. which color is the {obj}?",
                       "look, a {color} {obj}. what color is that {obj}?"), _color),
    Template("count", ("{name} has {a} {fruit} and gets {b} more. how many {fruit} does "
                       "{name} have?", "{name} buys {a} {fruit}, then {b} more. how many "
                       "{fruit} now?", "{name} starts with {a} {fruit} and adds {b}. how "
                       "many {fruit} does {name} have?"), _count),
)


def heldout_combinations() -> frozenset[tuple[str, int]]:
  """The (template name, phrasing index) pairs reserved for the held-out split."""
  return frozenset((t.name, i % len(t.phrasings)) for i, t in enumerate(TEMPLATES))


def split_combinations(split: str) -> tuple[tuple[str, int], ...]:
  """(template name, phrasing index) pairs a split draws from, in a fixed order."""
  qa_splits = ("train",) + EVAL_SPLITS
  if split not in qa_splits:
    raise ValueError(f"unknown split {split!r} for questions; choose from {qa_splits}")
  held = heldout_combinations()
  every = [(t.name, p) for t in TEMPLATES for p in range(len(t.phrasings))]
  return tuple(c for c in every if (c in held) == (split == "heldout"))


@dataclasses.dataclass(frozen=True)
class QAText:
  """One text example before speech synthesis."""

  id: str
  split: str
  template: str  # "<template name>/<phrasing index>", the combination
  question: str
  answer: str
  speaker_index: int  # index into the split's speaker pool


def make_example(seed: int, split: str, index: int, num_speakers: int) -> QAText:
  """Example `index` of `split`; a pure function of its arguments."""
  combos = split_combinations(split)
  rng = np.random.default_rng([seed, SPLITS.index(split), index])
  name, phrasing = combos[int(rng.integers(len(combos)))]
  template = next(t for t in TEMPLATES if t.name == name)
  slots, answer = template.make(rng)
  return QAText(
      id=f"{split}-{index:08d}",
      split=split,
      template=f"{name}/{phrasing}",
      question=template.phrasings[phrasing].format(**slots),
      answer=answer,
      speaker_index=int(rng.integers(num_speakers)),
  )


READ_ANSWER_SHARE = 0.5  # the rest of the read split is word sequences
READ_WORDS = (3, 4)  # words per word sequence, inclusive
# A word sequence holds at most one number (0..999), and no read sentence is longer than
# the longest answers (37 characters), so read sentences are about as long as answers
# (`launch.prepare_data` reports the longest tokens and speech units of each split).
READ_MAX_CHARS = 32


@functools.lru_cache(maxsize=8)
def read_lexicon(seed: int, num_examples: int = 2000) -> tuple[str, ...]:
  """Sorted words (no numbers) of the first `num_examples` train questions and answers:
  word sequences never use a word that only held-out phrasings have."""
  words = set()
  for i in range(num_examples):
    ex = make_example(seed, "train", i, num_speakers=1)
    words.update(re.findall(r"[A-Za-z]+", f"{ex.question} {ex.answer}"))
  return tuple(sorted(words))


def unheard_words(text: str, seed: int, read_words: Collection[str] = ()) -> list[str]:
  """The words of `text` (numbers aside) outside `read_lexicon` and the corpus's added
  `read_words`: words no train or read recording of the corpus says, which ears trained on
  it cannot have learned."""
  lexicon = set(_read_words(seed, tuple(read_words)))
  return [w for w in re.findall(r"[A-Za-z]+", text) if w not in lexicon]


@functools.lru_cache(maxsize=8)
def eval_answers(seed: int, counts: tuple[tuple[str, int], ...]) -> frozenset[str]:
  """Every answer of the evaluation splits among `counts` ((split, size) pairs): the read
  split never contains them."""
  return frozenset(make_example(seed, split, i, num_speakers=1).answer
                   for split, n in counts if split in EVAL_SPLITS for i in range(n))


def _read_sentence(rng: np.random.Generator, lexicon: tuple[str, ...]) -> tuple[str, str]:
  """(kind, sentence): an answer of a random template, or a word sequence."""
  if rng.random() < READ_ANSWER_SHARE:
    template = TEMPLATES[int(rng.integers(len(TEMPLATES)))]
    return template.name, template.make(rng)[1]
  n = int(rng.integers(READ_WORDS[0], READ_WORDS[1] + 1))
  words = [_pick(rng, lexicon) for _ in range(n)]
  number_at = int(rng.integers(n + 1))  # n: no number
  if number_at < n:
    words[number_at] = str(int(rng.integers(1000)))
  return "words", " ".join(words) + "."


def make_read_example(seed: int, index: int, num_speakers: int,
                      exclude: Collection[str] = (), read_words: tuple[str, ...] = ()) -> QAText:
  """Example `index` of the read split (question = answer = one sentence of at most
  READ_MAX_CHARS characters), never a sentence in `exclude`; word sequences draw from the
  train lexicon plus `read_words`; a pure function of its arguments."""
  rng = np.random.default_rng([seed, SPLITS.index(READ), index])
  lexicon = _read_words(seed, read_words)
  kind, sentence = _read_sentence(rng, lexicon)
  while sentence in exclude or len(sentence) > READ_MAX_CHARS:
    kind, sentence = _read_sentence(rng, lexicon)
  return QAText(id=f"{READ}-{index:08d}", split=READ, template=f"{READ}/{kind}",
                question=sentence, answer=sentence,
                speaker_index=int(rng.integers(num_speakers)))


@functools.lru_cache(maxsize=8)
def _read_words(seed: int, read_words: tuple[str, ...]) -> tuple[str, ...]:
  """The read split's lexicon: the train lexicon and the added words, sorted, each once."""
  return tuple(sorted(set(read_lexicon(seed)) | set(read_words)))


def corpus_example(seed: int, split: str, index: int, num_speakers: int,
                   counts: Mapping[str, int] | tuple[tuple[str, int], ...] = (),
                   read_words: tuple[str, ...] = ()) -> QAText:
  """Example `index` of any split of a corpus with split sizes `counts` (which the read
  split needs, to leave out the evaluation splits' answers) and added `read_words`."""
  if split != READ:
    return make_example(seed, split, index, num_speakers)
  counts = tuple(sorted(dict(counts).items()))
  return make_read_example(seed, index, num_speakers, eval_answers(seed, counts), read_words)


MISHEAR_STREAM = 7  # the rng stream of a typed question's mishearing


class MishearSpec(NamedTuple):
  """Typed questions spelled as the ears hear them (`data_pipelines.mishearing`)."""
  channel: mishearing.Channel
  fraction: float  # of the questions
  max_scale: float  # strength uniform in [0, max_scale] x the channel's rates


class TypedQASource:
  """Random-access typed questions of a split, tokenized in the speech Thinker's prompt
  layout (`prompt`/`response` keys of `synthetic_text.pack_example`), no audio.

  Why: the Thinker can learn to answer from text at a fraction of the cost of a speech
  step (stage 0), so stage 1 only has to teach the encoder and adaptor to hear. Drawn
  from the same templates and combinations as the split, so a typed `train` stream never
  shows a held-out combination. With a `mishear` channel, a `fraction` of the questions is
  spelled as the ears would hear it, at a strength uniform in [0, max_scale] times the
  channel's rates (a question that then overflows the prompt stays as typed).
  """

  def __init__(self, tokenizer: Any, split: str, num_examples: int, prompt_len: int,
               response_len: int, seed: int, mishear: Optional[MishearSpec] = None):
    self.tokenizer, self.split, self.num_examples = tokenizer, split, num_examples
    self.prompt_len, self.response_len, self.seed = prompt_len, response_len, seed
    self.mishear = mishear

  def __len__(self) -> int:
    return self.num_examples

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    ex = make_example(self.seed, self.split, int(index), num_speakers=1)
    name = f"typed example {ex.id}"
    if self.mishear is not None:
      rng = np.random.default_rng([self.seed, int(index), MISHEAR_STREAM])
      if rng.random() < self.mishear.fraction:
        heard = self.mishear.channel.corrupt(ex.question, rng,
                                             rng.uniform(0.0, self.mishear.max_scale))
        try:
          return pack_qa(self.tokenizer, heard, ex.answer, self.prompt_len, self.response_len,
                         name)
        except ValueError:
          pass
    return pack_qa(self.tokenizer, ex.question, ex.answer, self.prompt_len, self.response_len,
                   name)
