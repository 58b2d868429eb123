"""launch.prepare_data end to end on a very small corpus: files, summary, reuse."""

import json
import os

import numpy as np
import pytest
from absl import app

from configs import data as data_config
from data_pipelines import features, speech_loader, text_tokenizer
from launch import prepare_data
from tests.helpers import micro_data_config
from vocalnet_jax.speech import units


def test_prepare_writes_dataset_tokenizers_and_summary(tmp_path):
  config = micro_data_config()
  out = str(tmp_path)
  summary = prepare_data.prepare(config, out)
  for name in ("summary.json", "tokenizer.model", "units.npz", "units_reconstruction.png"):
    assert os.path.exists(os.path.join(out, name)), name
  assert summary["kept"] == {"train": 24, "test": 4, "heldout": 4, "unseen_voices": 2,
                             "read": 8}
  assert summary["num_skipped"] == 0
  assert 0 < summary["total_hours"] < 0.1
  assert abs(summary["units"]["units_per_second"] - 25) < 2
  longest = summary["max_lengths"]["train"]
  assert 100 < longest["mel_frames"] < 1000 and 0 < longest["answer_units"] < 200
  assert 5 < longest["question_tokens"] < longest["mel_frames"]
  # every question's mel frames, in source order, for length-grouped batches
  source = speech_loader.open_source(os.path.join(out, summary["dataset_dir"]), "train")
  frames = speech_loader.load_question_frames(out, "train")
  assert frames.tolist() == [source[i]["question_mel"].shape[0] for i in range(len(source))]
  assert frames.max() == longest["mel_frames"]
  record = source[0]  # the answer's log-mel is cached beside the question's
  np.testing.assert_allclose(record["answer_mel"], features.log_mel(record["answer_audio"]),
                             atol=1e-6)
  assert json.load(open(os.path.join(out, "summary.json")))["kept"] == summary["kept"]
  tok = text_tokenizer.load_tokenizer(os.path.join(out, "tokenizer.model"))
  assert tok.vocab_size == summary["text_vocab_size"] and tok.mask_id == 4
  assert units.UnitTokenizer.load(os.path.join(out, "units.npz")).num_units == 32
  # A rerun reuses the complete dataset (same report) instead of rebuilding.
  again = prepare_data.prepare(config, out)
  assert again["kept"] == summary["kept"] and again["dataset_dir"] == summary["dataset_dir"]


def test_presets_and_scale_knob():
  tiny, small = data_config.get_config("tiny"), data_config.get_config("small")
  assert small.corpus.num_train > tiny.corpus.num_train
  big = data_config.get_config("small,scale=8")
  assert big.corpus.num_train == 8 * small.corpus.num_train


def test_read_words_come_from_a_pretrained_tokenizer_or_a_one_line_error(tmp_path):
  """corpus.read_words_from names a tokenizer whose commonest words the read split adds
  (and the dataset's name counts them); a missing file is one line naming the field."""
  assert prepare_data.general_words("", 100) == ()
  with pytest.raises(app.UsageError, match=r"^corpus\.read_words_from: GGUF file .*nope\.gguf"):
    prepare_data.general_words(f"gguf:{tmp_path}/nope.gguf", 100)
  config = data_config.get_config("tiny")
  config.corpus.update(num_read=8, read_words_from=f"gguf:{tmp_path}/nope.gguf")
  with pytest.raises(app.UsageError):
    prepare_data.make_builder(config, str(tmp_path))
  config.corpus.num_read = 0  # no read split: the words are not needed
  assert "_words" not in prepare_data.make_builder(config, str(tmp_path)).builder_config.name
