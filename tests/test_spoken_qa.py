"""Embedded spoken-QA text generator: determinism, answers, held-out combinations."""

import re

import numpy as np
import pytest

from data_pipelines import spoken_qa


def test_at_least_ten_templates_with_several_phrasings():
  assert len(spoken_qa.TEMPLATES) >= 10
  assert all(len(t.phrasings) >= 2 for t in spoken_qa.TEMPLATES)


def test_generation_is_deterministic_from_seed():
  a = [spoken_qa.make_example(7, "train", i, 16) for i in range(50)]
  b = [spoken_qa.make_example(7, "train", i, 16) for i in range(50)]
  c = [spoken_qa.make_example(8, "train", i, 16) for i in range(50)]
  assert a == b
  assert [x.question for x in a] != [x.question for x in c]


def test_heldout_combinations_never_in_train_or_test():
  held = {f"{n}/{p}" for n, p in spoken_qa.heldout_combinations()}
  for split in ("train", "test", "unseen_voices"):  # unseen_voices: new voices, seen phrasings
    seen = {spoken_qa.make_example(0, split, i, 4).template for i in range(2000)}
    assert not seen & held
    assert len(seen) == len(spoken_qa.split_combinations(split))  # every combination is used
  heldout = {spoken_qa.make_example(0, "heldout", i, 4).template for i in range(500)}
  assert heldout == held
  # Every template and every phrasing index still appears in training.
  train = spoken_qa.split_combinations("train")
  assert {n for n, _ in train} == {t.name for t in spoken_qa.TEMPLATES}
  assert {p for _, p in train} == {0, 1, 2}


def test_answers_follow_from_questions():
  for i in range(300):
    ex = spoken_qa.make_example(1, "train", i, 4)
    nums = [int(x) for x in re.findall(r"\d+", ex.question)]
    name = ex.template.split("/")[0]
    if name == "add":
      assert ex.answer.endswith(f" {sum(nums)}.")
    elif name == "multiply":
      assert ex.answer.endswith(f" {nums[0] * nums[1]}.")
    elif name == "compare":
      assert ex.answer == f"{max(nums)} is larger."
    elif name == "count":
      assert f" {sum(nums)} " in ex.answer
    elif name == "lives_in":
      city = ex.answer.split()[-1].rstrip(".")
      assert city in ex.question


def test_unknown_split_is_rejected():
  with pytest.raises(ValueError, match="unknown split"):
    spoken_qa.make_example(0, "validation", 0, 4)


def test_typed_source_is_the_split_in_the_prompt_layout():
  """Typed examples decode to make_example's question and answer, in the Thinker's prompt
  layout; a typed train stream never shows a held-out combination."""
  from data_pipelines.synthetic_text import CharTokenizer
  tok = CharTokenizer()
  held = spoken_qa.heldout_combinations()
  source = spoken_qa.TypedQASource(tok, "train", 100, prompt_len=140, response_len=48, seed=3)
  for i in range(100):
    ex, item = spoken_qa.make_example(3, "train", i, num_speakers=1), source[i]
    prompt = item["prompt"][item["prompt_valid"]].tolist()
    assert prompt[:2] == [tok.bos_id, tok.user_id] and prompt[-1] == tok.assistant_id
    assert prompt[2:-1] == tok.encode(ex.question)
    response = item["response"][item["response_valid"]].tolist()
    assert response == [*tok.encode(ex.answer), tok.eos_id]
    name, phrasing = ex.template.split("/")
    assert (name, int(phrasing)) not in held
  with pytest.raises(ValueError, match="prompt_len"):
    spoken_qa.TypedQASource(tok, "train", 1, prompt_len=4, response_len=48, seed=3)[0]


def _is_subsequence(short: str, long: str) -> bool:
  it = iter(long)
  return all(c in it for c in short)


def test_typed_source_misspells_a_fraction_as_its_channel_would():
  """With a channel that only deletes (mostly 'e'), a `fraction` of the questions lose
  characters and nothing else; answers are never touched; an index is a pure function."""
  from data_pipelines import mishearing
  from data_pipelines.synthetic_text import CharTokenizer
  tok = CharTokenizer()
  texts = [spoken_qa.make_example(0, "train", i, 1).question for i in range(50)]
  channel = mishearing.fit((t, t.replace("e", "")) for t in texts)
  spec = spoken_qa.MishearSpec(channel, fraction=0.5, max_scale=2.0)
  plain = spoken_qa.TypedQASource(tok, "train", 400, prompt_len=140, response_len=48, seed=3)
  heard = spoken_qa.TypedQASource(tok, "train", 400, prompt_len=140, response_len=48, seed=3,
                                  mishear=spec)
  changed = 0
  for i in range(400):
    a, b = plain[i], heard[i]
    np.testing.assert_array_equal(a["response"], b["response"])
    question = lambda item: tok.decode(item["prompt"][item["prompt_valid"]].tolist()[2:-1])  # noqa: E731
    clean, misheard = question(a), question(b)
    assert _is_subsequence(misheard, clean)
    changed += misheard != clean
    np.testing.assert_array_equal(b["prompt"], heard[i]["prompt"])
  # chosen with chance 1/2; a chosen question keeps its every 'e' only at scales near 0
  assert 0.35 * 400 <= changed <= 0.5 * 400 + 3 * np.sqrt(100)


COUNTS = (("train", 800), ("test", 50), ("heldout", 50), ("unseen_voices", 50), ("read", 400))


def test_read_split_is_sentences_read_aloud_never_an_evaluation_answer():
  """question = answer = one sentence; half template answers, half word sequences over the
  train split's words; deterministic; no sentence is an answer of an evaluation split."""
  read = [spoken_qa.corpus_example(0, "read", i, 8, COUNTS) for i in range(400)]
  assert read == [spoken_qa.corpus_example(0, "read", i, 8, COUNTS) for i in range(400)]
  assert all(ex.question == ex.answer and ex.split == "read" for ex in read)
  kinds = [ex.template.split("/")[1] for ex in read]
  assert 0.4 < kinds.count("words") / len(kinds) < 0.65
  assert {k for k in kinds if k != "words"} <= {t.name for t in spoken_qa.TEMPLATES}
  evaluated = {spoken_qa.make_example(0, s, i, 1).answer for s, n in COUNTS[1:4]
               for i in range(n)}
  assert not evaluated & {ex.answer for ex in read}
  lexicon = set(spoken_qa.read_lexicon(0))
  for ex in read:
    if ex.template == "read/words":
      assert all(w.isdigit() or w in lexicon for w in ex.answer.rstrip(".").split())


def test_read_split_redraws_a_sentence_it_must_leave_out():
  first = spoken_qa.make_read_example(0, 3, 8)
  other = spoken_qa.make_read_example(0, 3, 8, exclude={first.answer})
  assert other.answer != first.answer and other.id == first.id


def test_read_words_never_include_a_word_only_held_out_phrasings_use():
  held = spoken_qa.heldout_combinations()
  trained = set()
  for i in range(3000):
    ex = spoken_qa.make_example(0, "train", i, 1)
    trained.update(re.findall(r"[A-Za-z]+", f"{ex.question} {ex.answer}"))
  only_held = {w for t in spoken_qa.TEMPLATES for p, text in enumerate(t.phrasings)
               if (t.name, p) in held for w in re.findall(r"[a-z]+", re.sub(r"{\w+}", "", text))
               } - trained
  assert only_held  # e.g. "product": the test can fail
  assert not only_held & set(spoken_qa.read_lexicon(0))


def test_unheard_words_are_the_words_no_train_or_read_recording_says():
  train_question = spoken_qa.make_example(0, "train", 0, 1).question
  assert spoken_qa.unheard_words(train_question, 0) == []
  assert spoken_qa.unheard_words("what is the product of 2 and 7?", 0) == ["product"]


def test_read_words_add_general_english_and_change_nothing_else():
  """A corpus's added read words join the train lexicon of the word sequences; answers,
  other splits and a corpus without them are unchanged; unheard_words counts them heard."""
  extra = ("subtract", "product", "whether")
  plain = [spoken_qa.corpus_example(0, "read", i, 8, COUNTS) for i in range(300)]
  added = [spoken_qa.corpus_example(0, "read", i, 8, COUNTS, extra) for i in range(300)]
  lexicon = set(spoken_qa.read_lexicon(0)) | set(extra)
  said = set()
  for ex in added:
    if ex.template == "read/words":
      words = ex.answer.rstrip(".").split()
      assert all(w.isdigit() or w in lexicon for w in words)
      said.update(words)
  assert said & set(extra)  # the added words are spoken
  assert [e.template for e in plain] == [e.template for e in added]
  assert [e.answer for e in plain if e.template != "read/words"] == [
      e.answer for e in added if e.template != "read/words"]
  assert spoken_qa.corpus_example(0, "train", 5, 8, COUNTS, extra) == \
      spoken_qa.corpus_example(0, "train", 5, 8, COUNTS)
  assert spoken_qa.unheard_words("what is the product of 2 and 7?", 0, extra) == []
