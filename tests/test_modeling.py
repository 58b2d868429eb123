"""Answering needs a checkpoint and the config's tokenizers, never the training split."""
import glob
import json
import os
import shutil

import grain
import jax
import ml_collections
import numpy as np
import pytest

from configs import mdm
from vocalnet_jax.decoding import speech_io
from vocalnet_jax.modeling import build, restore
from vocalnet_jax.modeling.validate import ConfigError
from vocalnet_jax.training import trainer
from vocalnet_jax.training.checkpointing import Checkpointer


def _corpus_copy(corpus: str, out: str) -> str:
  """A copy of the prepared corpus: its summary names the dataset relative to the corpus
  directory, so the copy reads its own dataset as it is."""
  shutil.copytree(corpus, out)
  with open(os.path.join(out, "summary.json")) as f:
    rel = json.load(f)["dataset_dir"]
  assert not os.path.isabs(rel) and not rel.startswith(".."), "stored under the corpus"
  return build.corpus_dataset_dir(ml_collections.ConfigDict({"data": {"dir": out}}))


def test_a_corpus_read_from_another_directory_and_a_missing_dataset(prepared_corpus, tmp_path,
                                                                    monkeypatch):
  copy = str(tmp_path / "corpus")
  dataset_dir = _corpus_copy(prepared_corpus, copy)
  assert dataset_dir.startswith(copy) and os.path.isdir(dataset_dir)
  monkeypatch.chdir(tmp_path / "corpus")  # any working directory
  assert build.corpus_dataset_dir(ml_collections.ConfigDict({"data": {"dir": copy}})) == dataset_dir
  shutil.rmtree(os.path.join(copy, "tfds"))
  with pytest.raises(ConfigError, match="summary.json: dataset_dir='tfds/.*' does not exist"):
    build.corpus_dataset_dir(ml_collections.ConfigDict({"data": {"dir": copy}}))


def test_decode_restores_params_without_the_training_split(prepared_corpus, tmp_path, devices):
  data_dir = str(tmp_path / "corpus")
  dataset_dir = _corpus_copy(prepared_corpus, data_dir)
  config = mdm.get_config("tiny,stage=2")
  config.data.dir = data_dir
  config.data.mel_buckets = (800,)
  config.train.batch_size = 8
  workdir = str(tmp_path / "run")
  exp = trainer.setup_experiment(config, devices[:1])  # training reads the train split...
  state = trainer.init_state(exp)
  state = state.replace(params=jax.tree_util.tree_map(lambda x: x + 0.5, state.params))
  ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), keep=1, every=1, async_save=False)
  ckpt.save(3, state, iter(grain.MapDataset.range(4).to_iter_dataset()), force=True)
  ckpt.close()

  train_files = glob.glob(os.path.join(dataset_dir, "*-train.*"))
  assert train_files
  for path in train_files:  # ...answering must not
    os.remove(path)
  pipe = speech_io.load_pipeline(config, workdir)
  jax.tree_util.tree_map(np.testing.assert_array_equal, pipe.params, state.params)
  question = speech_io.heldout_question(config, 0)
  report = speech_io.answer(pipe, question["audio"])
  assert report.nfe > 0 and isinstance(report.text, str)


def test_restore_reads_only_params_under_a_scope(tmp_path, devices):
  """A distillation checkpoint {student, teacher}: answering reads the student alone."""
  from configs import distill
  config = distill.get_config("tiny,text")
  config.train.batch_size = 8
  exp = trainer.setup_experiment(config, devices[:1])
  state = trainer.init_state(exp)
  student = jax.tree_util.tree_map(lambda x: x + 1.0, state.params["student"])
  state = state.replace(params={"student": student, "teacher": state.params["teacher"]})
  ckpt = Checkpointer(os.path.join(tmp_path, "checkpoints"), keep=1, every=1, async_save=False)
  ckpt.save(1, state, iter(grain.MapDataset.range(4).to_iter_dataset()), force=True)
  ckpt.close()
  model, params = restore.load(config, str(tmp_path), devices[:1])
  assert model.params_scope == ("student",)
  jax.tree_util.tree_map(np.testing.assert_array_equal, params, student)
