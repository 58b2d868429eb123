"""Characters as CTC targets: a lossless round trip, blank 0, a clear error otherwise."""
import pytest

from data_pipelines import spelling, spoken_qa


def test_spell_round_trips_every_corpus_text_and_never_uses_the_blank():
  texts = [spoken_qa.make_example(0, split, i, 1) for split in ("train", "heldout")
           for i in range(200)]
  for ex in texts:
    for text in (ex.question, ex.answer):
      ids = spelling.spell(text)
      assert spelling.BLANK not in ids and max(ids) < spelling.VOCAB_SIZE
      assert spelling.unspell(ids) == text


def test_unspell_drops_blanks():
  ids = spelling.spell("hi 7?")
  assert spelling.unspell([0] + ids[:2] + [0] + ids[2:]) == "hi 7?"


def test_a_character_outside_the_alphabet_names_the_text():
  with pytest.raises(ValueError, match=r"example q-7: character 'é'"):
    spelling.spell("café", "example q-7")
