"""The forced-choice judge: it names the right answer text among the candidates."""
import ml_collections
import numpy as np

from data_pipelines import speech_loader, tts
from vocalnet_jax.evaluation import forced_choice
from vocalnet_jax.modeling import build


def _corpus_answers(data_dir: str) -> list[tuple[str, np.ndarray, str]]:
  """(answer text, answer audio, assistant voice) of every test and heldout example."""
  dataset_dir = build.corpus_dataset_dir(ml_collections.ConfigDict({"data": {"dir": data_dir}}))
  out = []
  for split in ("test", "heldout"):
    source = speech_loader.open_source(dataset_dir, split)
    for i in range(len(source)):
      r = source[i]
      out.append((speech_loader.record_text(r["answer_text"]),
                  np.asarray(r["answer_audio"], np.float32),
                  speech_loader.record_text(r["answer_speaker"])))
  return out


def test_ranks_the_right_text_first_on_the_corpus_audio_and_in_another_voice(prepared_corpus):
  answers = _corpus_answers(prepared_corpus)
  voice = tts.Speaker.from_name(answers[0][2])
  assert {a[2] for a in answers} == {voice.name}  # one assistant voice renders the candidates
  judge = forced_choice.ForcedChoice(lambda t: tts.synthesize(t, voice), [a[0] for a in answers])
  assert len(judge.candidates) >= 6  # a real choice, not a coin toss
  other = tts.Speaker("en-us", "m3", rate=150, pitch=35)  # a listener's view: not a copy
  for text, audio, _ in answers:
    dist = judge.distances(audio, judge.candidates)
    assert min(dist, key=dist.get) == judge.add(text)
    assert judge.identifies(audio, text) == (judge.add(text), True)
    assert judge.identifies(tts.synthesize(text, other), text)[1], text


def test_own_text_is_a_candidate_texts_compare_normalised_and_silence_is_never_identified():
  voice = tts.Speaker()
  judge = forced_choice.ForcedChoice(lambda t: tts.synthesize(t, voice),
                                     ["198 is even.", "the day after monday is tuesday."])
  wave = tts.synthesize("the cup is red.", voice)
  assert judge.identifies(wave, "the cup is red.") == ("the cup is red", True)
  # an answer's printed text is a choice for that answer alone, never a later distractor
  assert judge.candidates == ["one hundred ninety eight is even",
                              "the day after monday is tuesday"]
  # (were "the cup is red" kept as a candidate, it would be picked here)
  assert judge.identifies(wave, "the cup is blue.") == ("the cup is blue", True)
  # a wrong printed text: the audio is nearer a reference than that text
  assert judge.identifies(tts.synthesize("198 is even.", voice), "the day is orange.") == (
      "one hundred ninety eight is even", False)
  assert judge.identifies(None, "198 is even.") == ("", False)
  assert judge.identifies(np.zeros(0, np.float32), "198 is even.") == ("", False)
  assert judge.add("One hundred ninety-eight is EVEN") == "one hundred ninety eight is even"
  feats = forced_choice.mfcc(wave)
  assert feats.shape[1] == forced_choice.N_MFCC - 1
  np.testing.assert_allclose(feats.mean(axis=0), 0.0, atol=1e-4)  # mean-normalised
