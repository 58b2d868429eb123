"""TFDS builders: ArrayRecord round trip, validation report per bad-input kind, atomicity."""

import glob
import json
import os
import pickle

import numpy as np
import pytest
import soundfile as sf

from data_pipelines import features, spoken_qa, tfds_builders as tb, tts


def _tone(seconds: float, amplitude: float = 0.3, rate: int = 16000) -> np.ndarray:
  t = np.arange(int(seconds * rate)) / rate
  return (amplitude * np.sin(2 * np.pi * 200 * t)).astype(np.float32)


def test_embedded_corpus_array_record_round_trip(tmp_path):
  config = tb.SpokenQAConfig(name="rt", num_examples=(("train", 4), ("heldout", 2)),
                             num_speakers=3, num_heldout_speakers=2, num_workers=1)
  builder = tb.SpokenQA(config=config, data_dir=str(tmp_path))
  report = tb.build(builder)
  assert report["kept"] == {"train": 4, "heldout": 2} and report["skipped"] == {}
  assert glob.glob(os.path.join(builder.data_dir, "*.array_record*"))
  assert json.load(open(os.path.join(builder.data_dir, "build_report.json")))["kept"]["train"] == 4
  source = builder.as_data_source("train")
  stored = {source[i]["id"].decode(): source[i] for i in range(len(source))}
  for i in range(4):
    example_id, expected = tb.synthesize_example(config, "train", i)
    got = stored[example_id]
    for key in ("question_audio", "answer_audio"):
      assert got[key].dtype == np.float32
      np.testing.assert_array_equal(got[key], expected[key])
    for key in ("speaker", "answer_speaker", "template", "question_text", "answer_text"):
      assert got[key].decode() == expected[key]
  # Heldout speakers are never train speakers; every answer is in the assistant voice.
  held = builder.as_data_source("heldout")
  train_speakers = {s.name for s in tb.split_speakers(config, "train")}
  assert not {held[i]["speaker"].decode() for i in range(len(held))} & train_speakers
  records = list(stored.values()) + [held[i] for i in range(len(held))]
  assert {r["answer_speaker"].decode() for r in records} == {config.assistant_voice}
  assert config.assistant_voice not in {r["speaker"].decode() for r in records}


def test_worker_pool_build_skips_too_long_examples(tmp_path):
  """A worker returns the skipped example's InvalidExample through a pipe (pickled): the
  build reports it instead of hanging on an exception its result thread cannot rebuild."""
  err = pickle.loads(pickle.dumps(tb.InvalidExample("too_long", "x/question: 7.0 s > 6 s")))
  assert (err.reason, err.detail) == ("too_long", "x/question: 7.0 s > 6 s")
  config = tb.SpokenQAConfig(name="pool", num_examples=(("train", 6),), num_speakers=3,
                             num_heldout_speakers=2, num_workers=2,
                             limits=tb.AudioLimits(max_seconds=2.5))
  report = tb.build(tb.SpokenQA(config=config, data_dir=str(tmp_path)))
  skipped = report["skipped"].get("train", {})
  assert report["kept"]["train"] + sum(skipped.values()) == 6
  assert set(skipped) == {"too_long"} and report["kept"]["train"] > 0


def test_answers_use_one_assistant_voice_whatever_the_questioner():
  config = tb.SpokenQAConfig(name="voice", num_speakers=16, num_heldout_speakers=4,
                             assistant_voice="en-gb-x-rp+f3_r160_p55_g50")
  pools = {split: tb.split_speakers(config, split)
           for split in ("train", "test", "heldout", "unseen_voices")}
  assert pools["test"] == pools["train"] and pools["unseen_voices"] == pools["heldout"]
  assert not {s.name for s in pools["train"]} & {s.name for s in pools["heldout"]}
  assert all(config.assistant_voice not in {s.name for s in p} for p in pools.values())
  # Two train examples with the same answer text asked by different speakers.
  by_answer: dict[str, spoken_qa.QAText] = {}
  for i in range(2000):
    qa = spoken_qa.make_example(config.seed, "train", i, len(pools["train"]))
    first = by_answer.setdefault(qa.answer, qa)
    if first.speaker_index != qa.speaker_index:
      break
  else:
    pytest.fail("no repeated answer with different questioners in 2000 examples")
  examples = [tb.synthesize_example(config, "train", int(q.id.split("-")[1]))[1]
              for q in (first, qa)]
  assert examples[0]["speaker"] != examples[1]["speaker"]
  assert [e["answer_speaker"] for e in examples] == [config.assistant_voice] * 2
  np.testing.assert_array_equal(examples[0]["answer_audio"], examples[1]["answer_audio"])
  np.testing.assert_array_equal(
      examples[0]["answer_audio"], tts.synthesize(qa.answer, tts.Speaker.from_name(
          config.assistant_voice)))
  # Held-out questions come from the unseen pool; their answers still use the assistant.
  example_id, held = tb.synthesize_example(config, "heldout", 0)
  assert held["speaker"] in {s.name for s in pools["heldout"]}
  assert held["answer_speaker"] == config.assistant_voice


def test_question_speaker_is_the_stored_one_and_another_pool_changes_only_the_voice():
  config = tb.SpokenQAConfig(name="qs", num_speakers=6, num_heldout_speakers=2)
  for index in range(3):
    _, stored = tb.synthesize_example(config, "test", index)
    qa, speaker = tb.question_speaker(config, "test", index)
    assert (qa.question, qa.answer, speaker.name) == (
        stored["question_text"], stored["answer_text"], stored["speaker"])
  # test texts in the unseen voices (spoken_thinker_eval --voices_of): same words, new voice
  speakers = [tb.question_speaker(config, "test", i, "unseen_voices") for i in range(20)]
  assert [qa.question for qa, _ in speakers] == [
      tb.question_speaker(config, "test", i)[0].question for i in range(20)]
  assert {s.name for _, s in speakers} <= {s.name for s in tb.split_speakers(config, "heldout")}


@pytest.fixture()
def manifest(tmp_path):
  """A manifest with two good examples and one of every bad kind."""
  d = str(tmp_path)
  good = tts.synthesize("hello there")
  sf.write(os.path.join(d, "good.wav"), good, 16000)
  sf.write(os.path.join(d, "answer.wav"), _tone(0.8), 16000)
  sf.write(os.path.join(d, "empty.wav"), np.zeros((0,), np.float32), 16000)
  sf.write(os.path.join(d, "silent.wav"), np.zeros((16000,), np.float32), 16000)
  sf.write(os.path.join(d, "clipped.wav"), np.sign(_tone(1.0)) * 1.0, 16000, subtype="FLOAT")
  sf.write(os.path.join(d, "long.wav"), _tone(3.0), 16000)
  sf.write(os.path.join(d, "rate.wav"), _tone(1.0, rate=8000), 8000)
  with open(os.path.join(d, "garbage.wav"), "wb") as f:
    f.write(b"this is not audio")
  rows = [
      {"id": "good1", "question_audio": "good.wav", "question_text": "hi", "answer_text": "yo",
       "answer_audio": "answer.wav"},
      {"id": "good2", "question_audio": "good.wav", "question_text": "hi", "answer_text": "yo"},
      {"id": "unreadable", "question_audio": "garbage.wav", "question_text": "q",
       "answer_text": "a"},
      {"id": "nofile", "question_audio": "nope.wav", "question_text": "q", "answer_text": "a"},
      {"id": "empty", "question_audio": "empty.wav", "question_text": "q", "answer_text": "a"},
      {"id": "silent", "question_audio": "silent.wav", "question_text": "q", "answer_text": "a"},
      {"id": "clipped", "question_audio": "clipped.wav", "question_text": "q", "answer_text": "a"},
      {"id": "long", "question_audio": "good.wav", "question_text": "q", "answer_text": "a",
       "answer_audio": "long.wav"},
      {"id": "rate", "question_audio": "rate.wav", "question_text": "q", "answer_text": "a"},
      {"id": "nofield", "question_audio": "good.wav", "question_text": "q"},
      {"id": "good1", "question_audio": "good.wav", "question_text": "again", "answer_text": "a"},
  ]
  path = os.path.join(d, "train.jsonl")
  with open(path, "w") as f:
    f.write("\n".join(json.dumps(r) for r in rows) + "\n{broken json\n")
  return path


def test_manifest_reports_and_skips_each_bad_kind(manifest, tmp_path):
  config = tb.ManifestConfig(name="m", splits=(("train", manifest),), cache_mel_bins=80,
                             limits=tb.AudioLimits(max_seconds=2.0))
  builder = tb.SpokenQAManifest(config=config, data_dir=str(tmp_path / "tfds"))
  report = tb.build(builder)
  assert report["kept"] == {"train": 2}
  assert report["skipped"]["train"] == {"unreadable": 3, "empty": 1, "silent": 1, "clipped": 1,
                                        "too_long": 1, "wrong_rate": 1, "missing_field": 1,
                                        "duplicate_id": 1}
  reasons = {e["id"]: (e["reason"], e["detail"]) for e in report["skipped_examples"]}
  assert reasons["nofile"][0] == "unreadable" and "nope.wav" in reasons["nofile"][1]
  assert reasons["rate"][0] == "wrong_rate" and "rate.wav: 8000 Hz" in reasons["rate"][1]
  assert reasons["long"][0] == "too_long" and "long.wav" in reasons["long"][1]
  assert "answer_text" in reasons["nofield"][1]
  assert reasons[f"{manifest}:12"][0] == "unreadable"  # the broken JSON line
  source = builder.as_data_source("train")
  got = {source[i]["id"].decode(): source[i] for i in range(len(source))}
  assert got["good2"]["answer_audio"].shape == (0,)  # optional answer audio absent
  q = got["good1"]["question_audio"]
  np.testing.assert_allclose(got["good1"]["question_mel"], features.log_mel(q), atol=1e-6)


def test_interrupted_build_never_looks_complete(manifest, tmp_path, monkeypatch):
  calls = []

  def crash_on_third(*args):
    calls.append(1)
    if len(calls) == 3:
      raise KeyboardInterrupt  # e.g. the user pressed Ctrl-C mid-build
    return real(*args)

  real = tb.manifest_example
  monkeypatch.setattr(tb, "manifest_example", crash_on_third)
  config = tb.ManifestConfig(name="crash", splits=(("train", manifest),))
  data_dir = str(tmp_path / "tfds")
  with pytest.raises(KeyboardInterrupt):
    tb.build(tb.SpokenQAManifest(config=config, data_dir=data_dir))
  fresh = tb.SpokenQAManifest(config=config, data_dir=data_dir)
  assert not fresh.is_prepared()
  assert not os.path.exists(fresh.data_dir)
  monkeypatch.setattr(tb, "manifest_example", real)
  assert tb.build(fresh)["kept"] == {"train": 3}  # a clean rerun (3 s "long" passes 30 s limit)


def test_librispeech_record_maps_to_qa_features():
  record = {"id": b"84-121123-0000", "speaker_id": 84, "text": b"GO DO YOU HEAR",
            "speech": (np.ones(1600) * 16384).astype(np.int16)}
  ex = tb.librispeech_to_qa(record)
  assert ex["question_text"] == ex["answer_text"] == "go do you hear"
  assert ex["question_audio"].dtype == np.float32 and np.allclose(ex["question_audio"], 0.5)
  assert ex["template"] == "librispeech/asr" and ex["answer_audio"].shape == (0,)


def test_read_split_is_spoken_by_a_train_questioner_and_by_the_assistant():
  config = tb.SpokenQAConfig(name="read", num_speakers=6, num_heldout_speakers=2,
                             num_examples=(("train", 4), ("test", 4), ("read", 4)))
  train_voices = {s.name for s in tb.split_speakers(config, "train")}
  assistant = tts.Speaker.from_name(config.assistant_voice)
  for index in range(2):
    _, ex = tb.synthesize_example(config, "read", index)
    assert ex["question_text"] == ex["answer_text"] and ex["template"].startswith("read/")
    assert ex["speaker"] in train_voices and ex["answer_speaker"] == config.assistant_voice
    np.testing.assert_array_equal(ex["answer_audio"], tts.synthesize(ex["answer_text"],
                                                                     assistant))
