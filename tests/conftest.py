"""Test setup: 8 fake CPU devices so meshes like (2, 4) are real, before jax is imported."""
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(scope="module")
def devices():
  devs = jax.devices()
  assert len(devs) == 8, "tests expect XLA_FLAGS=--xla_force_host_platform_device_count=8"
  return devs


_CORPUS: dict[str, str] = {}  # built once per test process, read-only for every test


@pytest.fixture(scope="module")
def prepared_corpus(tmp_path_factory):
  """A micro spoken-QA corpus built by `launch.prepare_data` (24/4/4 examples, 32 units)."""
  if "dir" not in _CORPUS:
    from launch import prepare_data
    from tests.helpers import micro_data_config

    out = str(tmp_path_factory.mktemp("corpus"))
    prepare_data.prepare(micro_data_config(), out)
    _CORPUS["dir"] = out
  return _CORPUS["dir"]
