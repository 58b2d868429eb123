"""Speech evaluation: DTW mel distance, WER aggregation, and the evaluator end to end."""
import dataclasses
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
import soundfile as sf

from configs import mdm
from data_pipelines import tts
from tests.test_vocoder import random_vocoder, tiny_config as tiny_vocoder_config
from vocalnet_jax.decoding import speech_io
from vocalnet_jax.evaluation import asr, speech_eval, speech_evaluator, text_metrics
from vocalnet_jax.modeling import run_config
from vocalnet_jax.modeling.validate import ConfigError
from vocalnet_jax.speech import mel_inversion

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MEL = mel_inversion.MelConfig()


def test_dtw_mel_distance_is_zero_for_identical_symmetric_and_grows_with_difference():
  voice = tts.speaker_pool(1, 0)[0]
  a = tts.synthesize("the first letter of table is t", voice)
  b = tts.synthesize("david has thirteen pears", voice)
  slow = tts.synthesize("the first letter of table is t",
                        tts.Speaker(voice.voice, voice.variant, rate=120))
  assert speech_eval.mel_distance(a, a, MEL) == 0.0
  ab, ba = speech_eval.mel_distance(a, b, MEL), speech_eval.mel_distance(b, a, MEL)
  np.testing.assert_allclose(ab, ba, rtol=1e-9)
  # the same words spoken slower align (DTW) closer than other words
  assert 0 < speech_eval.mel_distance(a, slow, MEL) < ab
  assert speech_eval.mel_distance(a, np.zeros(0, np.float32), MEL) is None


def test_dtw_mel_l1_matches_a_hand_computed_alignment():
  a = np.array([[0.0], [1.0], [2.0]])
  b = np.array([[0.0], [2.0]])
  # best path (0,0) (1,0|1) (2,1): costs 0, 1 (one side step, weight 1), 0 -> 1 / (3+2-1)
  np.testing.assert_allclose(speech_eval.dtw_mel_l1(a, b), 0.25)
  np.testing.assert_allclose(speech_eval.dtw_mel_l1(a, a + 0.5), 0.5)  # constant offset
  with pytest.raises(ValueError, match="equal n_mels"):
    speech_eval.dtw_mel_l1(a, np.zeros((2, 3)))


def test_word_errors_aggregate_to_the_asr_corpus_wer():
  refs = ["the first letter of table is T.", "david has 13 pears.", "Nine.", "?"]
  hyps = ["the first letter r e", "eighty has thirteen pears", "", "extra words"]
  errors = [speech_eval.word_errors(r, h) for r, h in zip(refs, hyps)]
  assert errors[1] == (1, 4)  # "13" is spelled out before scoring
  assert errors[3] == (2, 0)  # no reference words: insertions only
  np.testing.assert_allclose(speech_eval.corpus_wer(errors), asr.wer(refs, hyps))
  assert speech_eval.corpus_wer([(3, 0)]) is None


def _answer(printed, reference, errors, words, mel, audio, template="", seen=None,
            identified=None):
  return speech_eval.SpokenAnswer(
      index=0, question="q", reference=reference, printed=printed, transcript="",
      word_errors=errors, words=words, mel_distance=mel, thinker_nfe=4, talker_nfe=6,
      first_text_s=0.1, first_audio_s=0.5 if audio else None, total_s=1.0,
      audio_s=1.0 if audio else 0.0, template=template, seen_in_train=seen,
      identified=identified)


def test_exact_match_breaks_down_by_template_and_by_seen_question_text():
  answers = [_answer("4.", "4.", 0, 1, None, False, "add/sum_of", True),
             _answer("5.", "6.", 0, 1, None, False, "add/plus", False),
             _answer("5.", "6.", 0, 1, None, False, "add/plus", False),
             _answer("red.", "red.", 0, 1, None, False, "color/is", False),
             _answer("x.", "y.", 0, 1, None, False, "", None)]  # a manifest corpus: unknown
  s = speech_eval.summarize(answers)
  # phrasings of a template pool; an example without a template has its own group
  assert s["exact_match_by_template"] == {"": {"n": 1, "exact_match": 0.0},
                                          "add": {"n": 3, "exact_match": 1 / 3},
                                          "color": {"n": 1, "exact_match": 1.0}}
  # unknown seen-ness counts in neither group
  assert s["exact_match_seen"] == {"n": 1, "exact_match": 1.0}
  assert s["exact_match_new"] == {"n": 3, "exact_match": 1 / 3}
  none_seen = speech_eval.summarize(answers[1:3])
  assert none_seen["exact_match_seen"] == {"n": 0, "exact_match": None}


def test_summary_aggregates_over_examples_and_skips_missing_values():
  answers = [_answer("four.", " four.", 1, 1, 0.5, True, identified=True),
             _answer("five.", "six.", 2, 3, None, False, identified=False),
             _answer("six.", "six.", 0, 1, None, False)]  # not judged: not in the rate
  s = speech_eval.summarize(answers[:2])
  assert speech_eval.summarize(answers)["identified"] == s["identified"] == 0.5
  assert s["exact_match"] == 0.5 and s["num_with_audio"] == 1
  np.testing.assert_allclose(s["wer_vs_printed"], 3 / 4)
  assert s["mel_distance"] == 0.5 and s["first_audio_s"] == 0.5 and s["talker_nfe"] == 6
  table = speech_eval.format_table({"mdm_steps1": s}, {"corpus_audio": {"wer": 0.25,
                                                                        "mel_distance": 0.0}})
  assert "mdm_steps1" in table and "corpus_audio" in table


@pytest.fixture(scope="module")
def speech_setup(prepared_corpus, tmp_path_factory):
  """A tiny stage-2 MDM config on the micro corpus and a random vocoder of its units."""
  config = mdm.get_config("tiny,stage=2")
  config.data.dir = prepared_corpus
  config.data.update(response_len=8, max_units=30, mel_buckets=(600,))
  config.talker.text_per_chunk = 3
  vocoder_config = tiny_vocoder_config()
  vocoder_config.units.vocab_size = 32  # tests.helpers.micro_data_config's units
  vocoder_dir = str(tmp_path_factory.mktemp("vocoder"))
  random_vocoder(vocoder_config).save(vocoder_dir)
  return config, vocoder_dir


def speaking_pipeline(config, vocoder_dir):
  """Random weights whose Talker never ends early: its special-token logits are 0 (the
  best of the 32 unit logits is almost surely above), so every answer has audio."""
  pipe = speech_io.load_pipeline(config, None, vocoder_dir)
  params = jax.tree_util.tree_map(lambda x: x, pipe.params)  # a copy to edit
  head = params["talker"]["decoder"]["lm_head"]
  head["kernel"] = head["kernel"].at[:, pipe.speech_vocab.num_units:].set(0.0)
  return dataclasses.replace(pipe, params=params)


@pytest.mark.slow  # ~45 s of CPU: model init and one decoder setting's compiles
def test_evaluator_writes_scores_consistent_with_its_answers_and_wavs(speech_setup, tmp_path):
  config, vocoder_dir = speech_setup
  out = str(tmp_path / "eval")
  result = speech_evaluator.evaluate_pipeline(
      config, speaking_pipeline(config, vocoder_dir), "heldout", 2, [2], "topk", out,
      domain_lm=False,  # the generic LM loads in 1 s (a domain LM: ~25 s)
      talker=speech_evaluator.TalkerDecoding(steps=3))  # the Thinker's 2 for text blocks
  with open(os.path.join(out, "eval.json")) as f:
    saved = json.load(f)
  assert saved == json.loads(json.dumps(result))
  assert set(saved["settings"]) == {"mdm_steps2"}
  assert set(saved["floors"]) == {"corpus_audio", "vocoder_resynthesis", "examples"}
  assert saved["floors"]["corpus_audio"]["mel_distance"] == 0.0  # the assistant voice itself
  assert saved["floors"]["corpus_audio"]["identified"] == 1.0  # the forced choice's floor
  for name, setting in saved["settings"].items():
    examples, summary = setting["examples"], setting["summary"]
    assert summary["num_examples"] == len(examples) == 2
    assert summary["exact_match"] == text_metrics.exact_match(
        [e["printed"] for e in examples], [e["reference"] for e in examples])
    assert summary["wer_vs_printed"] == speech_eval.corpus_wer(
        [speech_eval.word_errors(e["printed"], e["transcript"]) for e in examples])
    assert summary["identified"] == np.mean([e["identified"] for e in examples])
    assert all(e["identified"] == (e["chosen"] == asr.normalize_text(e["printed"]) != "")
               for e in examples)
    assert setting["talker_steps"] == 3
    for e in examples:  # S=2 (topk commits half a block per step), Talker never ends early:
      blocks = e["thinker_nfe"] // 3  # Thinker: 2 steps + 1 clean pass per text block
      assert e["thinker_nfe"] == 3 * blocks > 0
      # Talker: 3 chunks (31 units max) x its own 3 steps (each chunk's clean pass rides
      # on the next chunk's first step, `next_block`) + 1 per text block fused
      assert e["talker_nfe"] == 3 * 3 + blocks
    assert summary["num_with_audio"] == 2
    for i, e in enumerate(examples):
      wave, rate = sf.read(os.path.join(out, name, f"answer_{i}.wav"))
      assert rate == 16000 and abs(wave.size / rate - e["audio_s"]) < 1e-3 and wave.size
  for i in range(2):
    for stem in ("question", "reference", "reference_vocoder"):
      wave, rate = sf.read(os.path.join(out, f"{stem}_{i}.wav"))
      assert rate == 16000 and wave.size > 0


def test_evaluator_bad_input_is_one_line_and_exit_1(speech_setup, tmp_path):
  config, vocoder_dir = speech_setup
  text_dir, speech_dir, no_corpus_dir = (str(tmp_path / d) for d in ("text", "speech", "nocorp"))
  run_config.write(mdm.get_config("tiny,text"), text_dir)
  run_config.write(config, speech_dir)  # a workdir without checkpoints
  no_corpus = config.copy_and_resolve_references()
  no_corpus.data.dir = str(tmp_path / "nowhere")
  run_config.write(no_corpus, no_corpus_dir)
  voc = f"--vocoder={vocoder_dir}"
  cases = {  # in this order: absl keeps a flag's value until a later argv sets it
      f"--checkpoint={text_dir} --split=heldout": "is a text model",
      f"--checkpoint={speech_dir}": "--vocoder is required",
      f"--checkpoint={speech_dir} --vocoder={tmp_path / 'novoc'}": "is not a vocoder directory",
      f"--checkpoint={no_corpus_dir} {voc}": "holds no prepared corpus",
      f"--checkpoint={speech_dir} {voc} --split=dev": "Unknown split 'dev'",
      f"--checkpoint={speech_dir} {voc} --split=heldout": "holds no checkpoint",
  }
  script = ("import sys\nfrom absl import app\nfrom launch import evaluate\n"
            "for argv in sys.argv[1:]:\n"
            "  try:\n    app.run(evaluate.main, argv=['evaluate'] + argv.split())\n"
            "  except SystemExit as e:\n    print('EXIT', e.code, flush=True)\n")
  env = dict(os.environ, XLA_FLAGS="", JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, "-c", script, *cases], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=300)
  assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
  # sys.exit(message): the message is the one line on stderr and the exit status is 1
  exits = [line for line in proc.stdout.splitlines() if line.startswith("EXIT")]
  assert len(exits) == len(cases), proc.stdout + proc.stderr
  for line, needle in zip(exits, cases.values()):
    assert line.startswith("EXIT error: ") and needle in line, (needle, line)


def test_reused_floors_need_the_same_split_questions_and_vocoder(tmp_path):
  floors = {"corpus_audio": {"wer": 0.4, "mel_distance": 0.0},
            "vocoder_resynthesis": {"wer": 0.2, "mel_distance": 0.6},
            "examples": [{"index": 0, "question": "q0"}, {"index": 1, "question": "q1"}]}
  (tmp_path / "eval.json").write_text(json.dumps(
      {"split": "test", "vocoder": "v", "floors": floors}))
  got, examples = speech_evaluator.reused_floors(str(tmp_path), "test", ["q0", "q1"], "v")
  assert got == {k: v for k, v in floors.items() if k != "examples"}
  assert examples == floors["examples"]
  for args, what in ((("heldout", ["q0", "q1"], "v"), "split"),
                     (("test", ["q0", "q1"], "w"), "vocoder"),
                     (("test", ["q0"], "v"), "questions")):
    with pytest.raises(ConfigError, match=f"judged other {what}"):
      speech_evaluator.reused_floors(str(tmp_path), *args)
  with pytest.raises(ConfigError, match="does not exist"):
    speech_evaluator.reused_floors(str(tmp_path / "none"), "test", ["q0"], "v")


def test_printed_texts_are_an_earlier_evaluations_for_the_same_questions(tmp_path):
  examples = [{"question": "q0", "printed": "a0"}, {"question": "q1", "printed": "a1"}]
  (tmp_path / "eval.json").write_text(json.dumps(
      {"split": "test", "settings": {"ar": {"examples": examples}}}))
  assert speech_evaluator.printed_texts(str(tmp_path), "test", ["q0", "q1"]) == ["a0", "a1"]
  assert speech_evaluator.printed_texts(str(tmp_path), "test", ["q0"]) == ["a0"]
  for args in (("heldout", ["q0"]), ("test", ["q1"]), ("test", ["q0", "q1", "q2"])):
    with pytest.raises(ConfigError, match="answered other questions"):
      speech_evaluator.printed_texts(str(tmp_path), *args)
  with pytest.raises(ConfigError, match="--texts_from=.* does not exist"):
    speech_evaluator.printed_texts(str(tmp_path / "none"), "test", ["q0"])


def _example(printed, errors, words, identified):
  return {"printed": printed, "word_errors": errors, "words": words, "identified": identified}


def test_printed_sentence_rows_judge_train_and_new_sentences_apart():
  run = {"split": "heldout", "settings": {"ar": {"examples": [
      _example("926 is larger.", 0, 3, True),
      _example("the day is orange.", 2, 4, False),
      _example("irene lives in rome.", 1, 4, True),
      _example("44 minus 2 is 2..", 3, 5, False)]}}}
  [row] = speech_eval.printed_sentence_rows("AR", run, {"926 is larger.", "irene lives in rome."})
  assert row["printed_train_sentence"] == 0.5
  assert row["train_sentence"] == {"n": 2, "wer_vs_printed": pytest.approx(1 / 7),
                                   "identified": 1.0}
  assert row["new_sentence"] == {"n": 2, "wer_vs_printed": pytest.approx(5 / 9),
                                 "identified": 0.0}
  assert row["all"]["wer_vs_printed"] == pytest.approx(6 / 16)


def test_printed_sentence_rows_carry_the_espeak_floor_of_the_same_texts():
  examples = [_example("926 is larger.", 0, 3, True), _example("the day is orange.", 2, 4, False)]
  for example, counted in zip(examples, [(1, 3), (3, 4)]):
    example[speech_eval.ESPEAK_ERRORS] = counted
  run = {"split": "test", "settings": {"ar": {"examples": examples}}}
  [row] = speech_eval.printed_sentence_rows("AR", run, {"926 is larger."})
  assert row["train_sentence"]["espeak_wer_vs_printed"] == pytest.approx(1 / 3)
  assert row["all"]["espeak_wer_vs_printed"] == pytest.approx(4 / 7)
  del examples[1][speech_eval.ESPEAK_ERRORS]  # a run without the floor reports none
  assert "espeak_wer_vs_printed" not in speech_eval.printed_sentence_rows(
      "AR", run, set())[0]["all"]


def test_espeak_errors_are_the_judge_on_the_assistant_voice_saying_each_text():
  text = "the day after monday is tuesday."
  judges = speech_evaluator.Judges(
      examples=[{}, {}], voices=[tts.DEFAULT_SPEAKER, tts.DEFAULT_SPEAKER],
      asr=asr.PocketSphinxASR(domain_texts=[text, "the cat is red."]),
      forced_choice=None, train_questions=set())
  said, empty = speech_evaluator.espeak_errors(judges, [text, ""])
  assert said[1] == 6 and said[0] <= 2
  assert empty == (0, 0)
