import subprocess
import sys

import pytest

from configs import distill, mdm
from tests.helpers import tiny_config
from vocalnet_jax.training import trainer
from vocalnet_jax.modeling.validate import ConfigError, validate_config


@pytest.mark.parametrize("overrides,field", [
    (dict(diffusion__schedule="sqrt"), "diffusion.schedule"),
    (dict(diffusion__block_size=5), "diffusion.block_size"),
    (dict(diffusion__masking="random"), "diffusion.masking"),
    (dict(diffusion__sampler_steps=9), "diffusion.sampler_steps"),
    (dict(diffusion__clean_attention="full"), "diffusion.clean_attention"),
    (dict(diffusion__ar_weight=1.0, diffusion__shift_logits=True,
          diffusion__clean_attention="block"), "diffusion.ar_weight"),
    (dict(objective="gan"), "config.objective"),
    (dict(model__num_kv_heads=3), "model.num_heads"),
    (dict(train__grad_accum_steps=3), "train.batch_size"),
])
def test_bad_values_fail_early_naming_the_field(overrides, field, devices):
  with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
    trainer.setup_experiment(tiny_config(**overrides), devices)


def test_mesh_that_does_not_fit_names_the_field(devices):
  with pytest.raises(ValueError, match=r"config\.mesh=.*needs 12 devices but 8"):
    trainer.setup_experiment(tiny_config(mesh__data=3, mesh__tensor=4), devices)


@pytest.mark.parametrize("launcher,flag", [("train", "workdir"), ("evaluate", "checkpoint"),
                                           ("benchmark_decode", "out")])
def test_launcher_reports_bad_config_without_traceback(launcher, flag, tmp_path):
  proc = subprocess.run(
      [sys.executable, "-m", f"launch.{launcher}", "--config=configs/mdm.py:tiny,text",
       f"--{flag}={tmp_path / 'x'}", "--config.diffusion.schedule=sqrt"],
      capture_output=True, text=True, timeout=300)
  assert proc.returncode != 0
  assert "diffusion.schedule='sqrt'" in proc.stderr
  assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("overrides,field", [
    (dict(distill__teacher_steps=3), "distill.teacher_steps"),
    (dict(distill__rounds=(2, 4)), "distill.rounds"),
    (dict(distill__rounds=(8, 4)), r"distill.rounds\[0\]"),
    (dict(distill__states="greedy"), "distill.states"),
    (dict(objective="ar"), "config.objective"),
])
def test_bad_distill_values_name_the_field(overrides, field, devices):
  config = distill.get_config("tiny,text")
  for key, value in overrides.items():
    section, _, leaf = key.rpartition("__")
    (config[section] if section else config)[leaf] = value
  with pytest.raises(ConfigError, match=field):
    trainer.setup_experiment(config, devices)


@pytest.mark.parametrize("field,value", [("mel_buckets", (600, 300)), ("mel_buckets", ()),
                                         ("length_group_window", -1)])
def test_bad_speech_data_values_name_the_field(field, value):
  config = mdm.get_config("tiny,stage=1")
  config.data[field] = value
  with pytest.raises(ConfigError, match=rf"config\.data\.{field}="):
    validate_config(config)


@pytest.mark.parametrize("field,value", [("typed_source", "corpus"), ("ctc_on", "thinker")])
def test_bad_auxiliary_values_name_the_field(field, value):
  config = mdm.get_config("tiny,stage=1")
  config.auxiliary[field] = value
  with pytest.raises(ConfigError, match=rf"config\.auxiliary\.{field}="):
    validate_config(config)
