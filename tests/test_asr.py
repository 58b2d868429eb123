"""Independent offline ASR (pocketsphinx) and WER."""
from __future__ import annotations

import numpy as np
import pytest

from data_pipelines import tts
from vocalnet_jax.evaluation import asr


def test_number_words_and_normalisation():
  assert asr.number_to_words(0) == "zero"
  assert asr.number_to_words(597) == "five hundred ninety seven"
  assert asr.number_to_words(12000) == "twelve thousand"
  assert asr.normalize_text("12 plus 5 is 17.") == "twelve plus five is seventeen"
  assert asr.normalize_text("Cat is spelled C A T!") == "cat is spelled c a t"
  assert asr.normalize_text("one hundred and five") == "one hundred five"
  with pytest.raises(ValueError, match="number must be in"):
    asr.number_to_words(10**6)


def test_wer_counts_edits_over_reference_words():
  assert asr.wer(["the cat is red"], ["the cat is red"]) == 0.0
  assert asr.wer(["the cat is red", "two plus two"], ["the bat is", "2 plus two"]) == \
      pytest.approx(2 / 7)
  with pytest.raises(ValueError, match="same length"):
    asr.wer(["a"], [])
  with pytest.raises(ValueError, match="all empty"):
    asr.wer([""], ["a"])


@pytest.fixture(scope="module")
def domain_asr():
  return asr.PocketSphinxASR(domain_texts=[
      "the day after monday is tuesday", "seven plus five is twelve", "the cat is red",
      "the month after june is july", "anna lives in paris"])


def test_recognises_synthetic_speech_offline(domain_asr):
  text = "the day after monday is tuesday"
  hyp = domain_asr.transcribe(tts.synthesize(text))
  assert asr.wer([text], [hyp]) <= 0.34, hyp


def test_transcribe_rejects_bad_audio(domain_asr):
  with pytest.raises(ValueError, match="sample_rate must be 16000"):
    domain_asr.transcribe(np.zeros(100, np.float32), sample_rate=22050)
  with pytest.raises(ValueError, match="wave must be 1-D"):
    domain_asr.transcribe(np.zeros((2, 100), np.float32))
  with pytest.raises(TypeError, match="wave must be float"):
    domain_asr.transcribe(np.zeros(100, np.int16))
  with pytest.raises(ValueError, match="domain_texts has no words"):
    asr.PocketSphinxASR(domain_texts=["?!"])
