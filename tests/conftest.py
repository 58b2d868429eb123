"""Test setup, before jax is imported: 8 fake CPU devices so meshes like (2, 4) are real, and
a compilation cache."""
import os
import tempfile

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# One XLA compilation cache for the run, shared by both pytest workers and the launchers
# the tests start: the suite compiles the same tiny models many times, and compiling is
# most of its time. Keyed by the program and the jax version, so a stale entry never hits.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      os.path.join(tempfile.gettempdir(), "vocalnet_jax_tests_xla_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")

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
