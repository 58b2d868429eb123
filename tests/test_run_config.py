"""The workdir's config.json: written by training, read back and compared by the rest."""
import os
import subprocess
import sys

import pytest
from absl import logging

from tests.helpers import tiny_config
from vocalnet_jax.modeling import run_config
from vocalnet_jax.training import trainer
from vocalnet_jax.modeling.validate import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def workdir(tmp_path):
  run_config.write(tiny_config(), str(tmp_path))
  return str(tmp_path)


def test_omitted_config_is_the_workdirs(workdir):
  config = run_config.resolve(None, workdir)
  assert config.diffusion.block_size == tiny_config().diffusion.block_size
  assert tuple(config.data.tasks) == tuple(tiny_config().data.tasks)
  with pytest.raises(ConfigError, match="--config is required: .* has no config.json"):
    run_config.resolve(None, os.path.dirname(workdir))


def test_hard_fields_are_errors_soft_fields_warnings(workdir, monkeypatch):
  assert run_config.resolve(tiny_config(train__steps=7), workdir).train.steps == 7  # ignored
  for key, value in [("diffusion__block_size", 8), ("diffusion__sampler_steps", 2),
                     ("model__embed_dim", 32), ("model__vocab_size", 100)]:
    name = key.replace("__", ".")
    with pytest.raises(ConfigError, match=rf"{name}: workdir \S+, given {value}"):
      run_config.resolve(tiny_config(**{key: value}), workdir)
  warned = []
  monkeypatch.setattr(logging, "warning", lambda msg, *args: warned.append(msg % args))
  run_config.resolve(tiny_config(data__response_len=8, diffusion__masking="uniform"), workdir)
  assert len(warned) == 1
  assert "data.response_len: workdir 16, given 8" in warned[0]
  assert "diffusion.masking: workdir hierarchical, given uniform" in warned[0]


def test_knobs_newer_than_the_run_are_warnings(tmp_path, monkeypatch):
  """A workdir written before a knob existed still loads (the knob's default is assumed,
  with a warning); the same knob set to another value than the run's is an error."""
  old = tiny_config()
  del old.model["attention_impl"]  # a run from before `model.attention_impl` existed
  run_config.write(old, str(tmp_path))
  warned = []
  monkeypatch.setattr(logging, "warning", lambda msg, *args: warned.append(msg % args))
  run_config.resolve(tiny_config(), str(tmp_path))
  assert "model.attention_impl: workdir (absent), given einsum" in warned[0]
  with pytest.raises(ConfigError, match="diffusion.shift_logits: workdir True, given False"):
    run_config.resolve(tiny_config(diffusion__shift_logits=False), str(tmp_path))


def test_an_ar_run_only_warns_on_diffusion_knobs(tmp_path, monkeypatch):
  """An AR run's params and decoder ignore `diffusion.*`: resuming one under a later MDM
  default warns; an MDM run with the same difference is refused."""
  for objective in ("ar", "mdm"):
    run_config.write(tiny_config(objective, diffusion__shift_logits=False), str(tmp_path))
    given = tiny_config(objective, diffusion__shift_logits=True)
    assert given.objective == objective
    if objective == "mdm":
      with pytest.raises(ConfigError, match="diffusion.shift_logits: workdir False, given True"):
        run_config.resolve(given, str(tmp_path))
      continue
    warned: list[str] = []
    monkeypatch.setattr(logging, "warning",
                        lambda msg, *args, out=warned: out.append(msg % args))
    run_config.resolve(given, str(tmp_path))
    assert "diffusion.shift_logits: workdir False, given True" in warned[0]


def test_speech_workdir_against_text_config_names_the_sections(workdir):
  speech = tiny_config()
  speech.talker = {"text_per_chunk": 5, "chunk_size": 15}
  with pytest.raises(ConfigError, match=r"talker.chunk_size: workdir \(absent\), given 15"):
    run_config.resolve(speech, workdir)


def test_init_from_checks_the_source_model(workdir, devices):
  exp = trainer.setup_experiment(tiny_config(model__num_layers=3), devices[:1])
  with pytest.raises(ConfigError, match="model.num_layers: workdir 2, given 3"):
    trainer.load_params(workdir, exp)


def test_launcher_reports_a_mismatch_in_one_line(workdir):
  proc = subprocess.run(
      [sys.executable, "-m", "launch.evaluate", "--config=configs/mdm.py:tiny,text",
       "--config.diffusion.block_size=8", f"--checkpoint={workdir}"],
      cwd=ROOT, env=dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT),
      capture_output=True, text=True, timeout=120)
  assert proc.returncode == 1 and "Traceback" not in proc.stderr
  assert "diffusion.block_size: workdir 4, given 8" in proc.stderr


def test_distill_without_config_uses_the_teachers(workdir, tmp_path):
  proc = subprocess.run(
      [sys.executable, "-m", "launch.distill", f"--teacher={workdir}",
       f"--workdir={tmp_path / 'distill'}"],
      cwd=ROOT, env=dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT),
      capture_output=True, text=True, timeout=120)
  # the config came from config.json: the run got as far as looking for the teacher's params
  assert proc.returncode == 1 and "Traceback" not in proc.stderr
  assert f"holds no checkpoint ({workdir}/checkpoints is missing)" in proc.stderr


def test_distill_config_of_a_talker_takes_the_teachers_decoder(tmp_path):
  """A shift-logits MDM Talker (stage 2) distils without --config: the stage comes from its
  task and its decoder fields from its config.json."""
  from configs import distill, mdm  # launch.distill's flags would clash with other launchers'
  teacher = mdm.get_config("tiny,stage=2")
  teacher.diffusion.shift_logits = True
  teacher.data.dir = "/corpus"
  run_config.write(teacher, str(tmp_path))
  config = distill.for_teacher(run_config.read(str(tmp_path)))
  run_config.check(run_config.read(str(tmp_path)), config, str(tmp_path), soft=())
  assert (config.task, config.distill.base_task) == ("self_distill", "speech_talker")
  assert config.diffusion.shift_logits and config.data.dir == "/corpus"
  assert tuple(config.distill.rounds) == (8, 4, 2)  # 15-unit chunks: 8 -> 4 -> 2 -> 1


def test_a_text_only_talker_is_not_read_as_a_state_reading_one(tmp_path):
  """The Talker's inputs are part of what it learned: a config that reads the Thinker's
  states cannot decode or distil a Talker trained on the answer text alone."""
  from configs import distill, mdm
  teacher = mdm.get_config("tiny,stage=2")
  teacher.talker.thinker_states = False
  run_config.write(teacher, str(tmp_path))
  with pytest.raises(ConfigError, match="talker.thinker_states: workdir False, given True"):
    run_config.resolve(distill.get_config("tiny,stage=2"), str(tmp_path))
  assert not distill.for_teacher(run_config.read(str(tmp_path))).talker.thinker_states
