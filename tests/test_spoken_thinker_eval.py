"""benchmarks/spoken_thinker_eval.py --synthesize: the questions the corpus would store."""
import numpy as np

from benchmarks import spoken_thinker_eval
from data_pipelines import tfds_builders as tb


def test_synthesized_question_is_the_corpus_example_and_voices_change_only_the_voice():
  corpus = tb.SpokenQAConfig(name="synth", num_speakers=6, num_heldout_speakers=2)
  for index in range(3):
    _, stored = tb.synthesize_example(corpus, "test", index)
    ours = spoken_thinker_eval.synthesized_question(corpus, "test", index, "test")
    assert (ours["question"], ours["answer"]) == (stored["question_text"],
                                                 stored["answer_text"])
    np.testing.assert_array_equal(ours["audio"], stored["question_audio"])
  # test texts in the unseen voices: the same words, another speaker
  same = spoken_thinker_eval.synthesized_question(corpus, "test", 0, "test")
  other = spoken_thinker_eval.synthesized_question(corpus, "test", 0, "unseen_voices")
  assert other["question"] == same["question"] and other["answer"] == same["answer"]
  assert other["audio"].shape != same["audio"].shape or not np.array_equal(
      other["audio"], same["audio"])
