"""Speech grain loader: keys/shapes, bucketing, determinism, resume, per-host sharding."""

import dataclasses

import grain
import numpy as np
import pytest

from data_pipelines import features, spelling, speech_loader as sl, spoken_qa, text_tokenizer, tts
from vocalnet_jax.speech import units

NUM = 16


@pytest.fixture(scope="module")
def records():
  speakers = tts.speaker_pool(4, 0)
  out = []
  for i in range(NUM):
    qa = spoken_qa.make_example(0, "train", i, 4)
    out.append({"id": qa.id.encode(), "question_text": qa.question.encode(),
                "answer_text": qa.answer.encode(),
                "question_audio": tts.synthesize(qa.question, speakers[qa.speaker_index]),
                "answer_audio": tts.synthesize(qa.answer, speakers[qa.speaker_index])})
  return out


@pytest.fixture(scope="module")
def transform(records):
  texts = [spoken_qa.make_example(0, "train", i, 4) for i in range(300)]
  tok = text_tokenizer.train_sentencepiece([t for q in texts for t in (q.question, q.answer)], 200)
  unit_tok = units.UnitTokenizer.fit([r["answer_audio"] for r in records],
                                     units.UnitConfig(num_units=32, num_steps=10, batch_frames=512))
  return sl.SpeechTransform(tok, sl.SpeechBatchConfig(mel_buckets=(200, 400, 800)),
                            unit_tokenizer=unit_tok)


def _dataset(records, transform, seed=0, shard=None, **kw):
  return sl.make_speech_dataset(sl.IndexedSource(records), transform, batch_size=4, seed=seed,
                                shard=shard or grain.sharding.NoSharding(), **kw)


def test_batch_keys_shapes_and_contents(records, transform):
  batch = next(iter(_dataset(records, transform, num_epochs=1)))
  frames = batch["mel"].shape[1]
  assert batch["mel"].shape == (4, frames, 80) and batch["mel"].dtype == np.float32
  assert frames in (200, 400, 800)
  lengths = batch["mel_valid"].sum(1)
  assert frames == sl.bucket_length(lengths.max(), (200, 400, 800))
  tok = transform.text_tokenizer
  for row, index in enumerate(batch["index"]):
    rec = records[index]
    mel = features.log_mel(rec["question_audio"])
    np.testing.assert_allclose(batch["mel"][row, :lengths[row]], mel, atol=1e-6)
    assert not batch["mel"][row, lengths[row]:].any()
    response = batch["response"][row][batch["response_valid"][row]]
    assert response[-1] == tok.eos_id and tok.decode(response) == rec["answer_text"].decode()
    prompt = batch["prompt"][row][batch["prompt_valid"][row]]
    assert list(prompt[:2]) == [tok.bos_id, tok.user_id] and prompt[-1] == tok.assistant_id
    unit_ids = transform.unit_tokenizer.encode(rec["answer_audio"])
    np.testing.assert_array_equal(batch["answer_units"][row][batch["answer_units_valid"][row]],
                                  unit_ids)
  for key, dtype in (("question_tokens", np.int32), ("answer_units", np.int32),
                     ("mel_valid", bool), ("index", np.int64)):
    assert batch[key].dtype == dtype


def test_deterministic_shuffled_and_resumable(records, transform):
  first = [b["index"] for b in _dataset(records, transform, num_epochs=1)]
  again = [b["index"] for b in _dataset(records, transform, num_epochs=1)]
  other = [b["index"] for b in _dataset(records, transform, seed=1, num_epochs=1)]
  np.testing.assert_array_equal(first, again)
  assert not np.array_equal(first, other)
  assert not np.array_equal(np.concatenate(first), np.arange(NUM))  # shuffled

  # grain prefetches ahead of the consumer; a bounded dataset keeps that work small here.
  it = iter(_dataset(records, transform, num_epochs=2))
  for _ in range(5):  # crosses the epoch boundary
    next(it)
  state = it.get_state()
  expected = next(it)
  resumed = iter(_dataset(records, transform, num_epochs=2))
  resumed.set_state(state)
  got = next(resumed)
  assert expected.keys() == got.keys()
  for key in expected:
    np.testing.assert_array_equal(got[key], expected[key])


def test_per_host_sharding_splits_without_overlap(records, transform):
  seen = []
  for host in range(2):
    shard = grain.sharding.ShardOptions(shard_index=host, shard_count=2)
    seen.append({int(i) for b in _dataset(records, transform, shard=shard, num_epochs=1)
                 for i in b["index"]})
  assert not seen[0] & seen[1]
  assert seen[0] | seen[1] == set(range(NUM))


def test_cached_mel_is_used_and_limits_are_named(records, transform):
  cached = dict(records[0], index=0, question_mel=np.ones((7, 80), np.float32))
  assert np.array_equal(transform(cached)["mel"], np.ones((7, 80), np.float32))
  other_bins = dict(cached, question_mel=np.ones((7, 128), np.float32))  # made with other params
  np.testing.assert_allclose(transform(other_bins)["mel"],
                             features.log_mel(records[0]["question_audio"]))
  # a cached answer mel gives the units of the audio it was made from (a lookup, no STFT)
  from_audio = transform(dict(records[0], index=0))["answer_units"]
  answer_mel = features.log_mel(records[0]["answer_audio"])
  no_audio = dict(records[0], index=0, answer_mel=answer_mel, answer_audio=np.zeros(1, np.float32))
  np.testing.assert_array_equal(transform(no_audio)["answer_units"], from_audio)
  other = dict(no_audio, answer_audio=records[0]["answer_audio"],
               answer_mel=np.ones((9, 128), np.float32))  # other params: the audio's units
  np.testing.assert_array_equal(transform(other)["answer_units"], from_audio)
  tight = sl.SpeechTransform(transform.text_tokenizer, sl.SpeechBatchConfig(response_len=3))
  with pytest.raises(ValueError, match="train-00000000: response has length .* > response_len=3"):
    tight(dict(records[0], index=0))


def test_batches_become_global_arrays_on_a_mesh(records, transform):
  import jax  # pylint: disable=g-import-not-at-top
  from jax.sharding import Mesh  # pylint: disable=g-import-not-at-top

  from data_pipelines import loader  # pylint: disable=g-import-not-at-top

  mesh = Mesh(np.array(jax.devices()[:8]).reshape(2, 4), ("data", "fsdp"))
  ds = sl.make_speech_dataset(sl.IndexedSource(records), transform, batch_size=8, seed=0,
                              shard=grain.sharding.NoSharding(), num_epochs=1)
  batch = next(iter(ds))
  global_batch = loader.to_global_batch(batch, loader.batch_sharding(mesh))
  for key, value in batch.items():
    assert global_batch[key].shape == value.shape
    assert len(global_batch[key].sharding.device_set) == 8
    np.testing.assert_array_equal(np.asarray(global_batch[key]), value)


def test_question_characters_are_spelled_when_asked_and_their_limit_is_named(records, transform):
  """question_chars > 0 adds the question's spelling (ears that spell), padded with the
  blank; 0 leaves it out; a question longer than the limit names example and field."""
  assert "question_chars" not in transform(sl.IndexedSource(records)[0])
  spelled = dataclasses.replace(
      transform, batch_config=dataclasses.replace(transform.batch_config, question_chars=96))
  for i in range(4):
    rec = sl.IndexedSource(records)[i]
    out = spelled(rec)
    chars = out["question_chars"][out["question_chars_valid"]]
    assert spelling.unspell(chars.tolist()) == rec["question_text"].decode()
    assert not out["question_chars"][~out["question_chars_valid"]].any()  # the blank pads
  short = dataclasses.replace(
      transform, batch_config=dataclasses.replace(transform.batch_config, question_chars=5))
  with pytest.raises(ValueError, match=r"example train-\S+: question characters .* "
                                       r"question_chars=5"):
    short(sl.IndexedSource(records)[0])
