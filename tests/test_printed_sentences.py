"""benchmarks/printed_sentences.py: answers split by whether the printed text is a train
answer sentence, each part with its own WER and forced-choice share."""
import pytest

from benchmarks import printed_sentences


def _example(printed, errors, words, identified):
  return {"printed": printed, "word_errors": errors, "words": words, "identified": identified}


def test_parts_count_their_own_errors():
  run = {"split": "heldout", "settings": {"ar": {"examples": [
      _example("926 is larger.", 0, 3, True),
      _example("the day is orange.", 2, 4, False),
      _example("irene lives in rome.", 1, 4, True),
      _example("44 minus 2 is 2..", 3, 5, False)]}}}
  [row] = printed_sentences.rows_of("AR", run, {"926 is larger.", "irene lives in rome."})
  assert row["printed_train_sentence"] == 0.5
  assert row["train_sentence"] == {"n": 2, "wer_vs_printed": pytest.approx(1 / 7),
                                   "identified": 1.0}
  assert row["new_sentence"] == {"n": 2, "wer_vs_printed": pytest.approx(5 / 9),
                                 "identified": 0.0}
  assert row["all"]["wer_vs_printed"] == pytest.approx(6 / 16)
