"""Test setup: 8 fake CPU devices so meshes like (2, 4) are real, before jax is imported."""
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(scope="session")
def devices():
  devs = jax.devices()
  assert len(devs) == 8, "tests expect XLA_FLAGS=--xla_force_host_platform_device_count=8"
  return devs


@pytest.fixture(scope="session")
def prepared_corpus(tmp_path_factory):
  """A micro spoken-QA corpus built by `launch.prepare_data` (24/4/4 examples, 32 units)."""
  from configs import data as data_config
  from launch import prepare_data

  config = data_config.get_config("tiny")
  config.corpus.num_train, config.corpus.num_test, config.corpus.num_heldout = 24, 4, 4
  config.corpus.num_speakers, config.corpus.num_heldout_speakers = 4, 2
  config.units.num_units, config.units.num_steps, config.units.batch_frames = 32, 10, 256
  config.text_tokenizer.vocab_size = 128
  out = str(tmp_path_factory.mktemp("corpus"))
  prepare_data.prepare(config, out)
  return out
