"""gs:// workdirs survive path handling: nothing turns `gs://b/run` into `/cwd/gs:/b/run`
(what os.path.abspath does), and local paths still become absolute."""
import os

import orbax.checkpoint as ocp

from vocalnet_jax.modeling import paths, restore
from vocalnet_jax.training import checkpointing


def test_absolute_keeps_uris_and_resolves_local_paths(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  assert os.path.abspath("gs://bucket/run") == str(tmp_path / "gs:/bucket/run")  # the bug
  assert paths.absolute("gs://bucket/run") == "gs://bucket/run"
  assert paths.absolute("run") == str(tmp_path / "run")
  assert paths.absolute("/abs/run") == "/abs/run"
  assert restore.checkpoint_dir("gs://bucket/run") == "gs://bucket/run/checkpoints"
  assert restore.checkpoint_dir("run") == str(tmp_path / "run" / "checkpoints")


def test_the_trainer_hands_orbax_the_gs_path(monkeypatch):
  seen = []
  monkeypatch.setattr(ocp, "CheckpointManager", lambda directory, **_: seen.append(directory))
  checkpointing.Checkpointer("gs://bucket/run/checkpoints", keep=1, every=1)
  assert seen == ["gs://bucket/run/checkpoints"]


def test_corpus_tokenizers_load_through_epath(prepared_corpus, monkeypatch):
  """A `gs://` data dir: the text tokenizer and the unit codebook are read through
  etils.epath (here mapped onto the local corpus), never through os.path/open()."""
  from etils import epath

  from data_pipelines import text_tokenizer
  from vocalnet_jax.speech import units

  real_path, seen = epath.Path, []

  def gs_path(path):
    seen.append(str(path))
    return real_path(str(path).replace("gs://bucket/data", prepared_corpus))

  local_tok = text_tokenizer.load_tokenizer(os.path.join(prepared_corpus, "tokenizer.model"))
  local_units = units.UnitTokenizer.load(os.path.join(prepared_corpus, "units.npz"))
  monkeypatch.setattr(text_tokenizer.epath, "Path", gs_path)
  tok = text_tokenizer.load_tokenizer("gs://bucket/data/tokenizer.model")
  codebook = units.UnitTokenizer.load("gs://bucket/data/units.npz")
  assert tok.encode("what is 2 plus 3?") == local_tok.encode("what is 2 plus 3?")
  assert (codebook.codebook == local_units.codebook).all()
  assert "gs://bucket/data/tokenizer.model" in seen and "gs://bucket/data/units.npz" in seen
