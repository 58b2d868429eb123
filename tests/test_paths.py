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
