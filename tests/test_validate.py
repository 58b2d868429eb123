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
    (dict(diffusion__complementary_masks=True, diffusion__layout="single_stream",
          diffusion__masking="hierarchical"), "diffusion.complementary_masks"),
    (dict(diffusion__commit_order="random"), "diffusion.commit_order"),
    (dict(diffusion__scored_tokens="all"), "diffusion.scored_tokens"),
    (dict(diffusion__scored_tokens="committed"), "diffusion.scored_tokens"),  # confidence
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


@pytest.mark.parametrize("field,value", [("fraction", 1.5), ("max_scale", -1.0)])
def test_bad_mishear_values_name_the_field(field, value):
  config = mdm.get_config("tiny,stage=0")
  config.data.mishear[field] = value
  with pytest.raises(ConfigError, match=rf"config\.data\.mishear\.{field}="):
    validate_config(config)


@pytest.mark.parametrize("field,value", [("typed_source", "corpus"), ("ctc_on", "thinker")])
def test_bad_auxiliary_values_name_the_field(field, value):
  config = mdm.get_config("tiny,stage=1")
  config.auxiliary[field] = value
  with pytest.raises(ConfigError, match=rf"config\.auxiliary\.{field}="):
    validate_config(config)


@pytest.mark.parametrize("read_as,ctc_on,units", [
    ("text", "adaptor", "tokens"), ("ctc_tokens", "encoder", "tokens"),
    ("transcript", "encoder", "tokens")])
def test_bad_read_as_names_the_field(read_as, ctc_on, units):
  """ctc_tokens reads the adaptor's CTC transcript: it needs ctc_on='adaptor'; transcript
  reads the transcriber's spelling: it needs ctc_units='chars'."""
  config = mdm.get_config("tiny,stage=1")
  config.adaptor.read_as, config.auxiliary.ctc_on = read_as, ctc_on
  config.auxiliary.ctc_units = units
  with pytest.raises(ConfigError, match=r"config\.adaptor\.read_as="):
    validate_config(config)


@pytest.mark.parametrize("units,ctc_on", [("letters", "encoder"), ("chars", "adaptor")])
def test_bad_ctc_units_name_the_field(units, ctc_on):
  """Characters are spelled on the encoder frames (the adaptor's CTC scores tokens)."""
  config = mdm.get_config("tiny,stage=1")
  config.auxiliary.ctc_units, config.auxiliary.ctc_on = units, ctc_on
  with pytest.raises(ConfigError, match=r"config\.auxiliary\.ctc_units="):
    validate_config(config)
  config.auxiliary.ctc_on, config.adaptor.read_as = "encoder", "transcript"
  if units == "chars":
    validate_config(config)  # the valid combination passes


@pytest.mark.parametrize("value", [-0.1, 1.0])
def test_bad_state_dropout_names_the_field(value):
  config = mdm.get_config("tiny,stage=2")
  config.talker.state_dropout = value
  with pytest.raises(ConfigError, match=r"config\.talker\.state_dropout="):
    validate_config(config)


@pytest.mark.parametrize("masking", ["uniform", "mixed"])
def test_single_stream_refuses_uniform_masking(masking):
  """single_stream has no clean copy: a uniformly masked block would be scored on noisy
  earlier blocks, which decoding never gives it (hierarchical keeps them clean)."""
  config = mdm.get_config("tiny,text")
  config.diffusion.update(layout="single_stream", masking=masking)
  with pytest.raises(ConfigError, match=rf"config\.diffusion\.masking='{masking}' with "
                                        r"layout='single_stream'"):
    validate_config(config)
  config.diffusion.masking = "hierarchical"
  validate_config(config)


def test_talker_sampler_steps_are_checked_against_its_chunk():
  """The Talker denoises 15-unit chunks: 16 steps would leave one sampler state that masks
  nothing (1/16 of its loss silently dropped), although 16 fits the Thinker's block."""
  config = mdm.get_config("small,stage=2")
  config.diffusion.sampler_steps = 16
  assert config.diffusion.block_size == 16 and config.talker.chunk_size == 15
  with pytest.raises(ConfigError,
                     match=r"sampler_steps=16 must be in \[1, talker\.chunk_size=15\]"):
    validate_config(config)
  thinker = mdm.get_config("small,stage=1")
  thinker.diffusion.sampler_steps = 16
  validate_config(thinker)  # the Thinker's own block of 16
  talker_distill = distill.get_config("small,stage=2")
  talker_distill.diffusion.sampler_steps = 16
  with pytest.raises(ConfigError, match=r"talker\.chunk_size=15"):
    validate_config(talker_distill)
