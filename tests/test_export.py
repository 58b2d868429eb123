"""launch.export: params-only sharded export that restores onto any mesh."""
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.helpers import tiny_config
from vocalnet_jax.evaluation import text_eval
from vocalnet_jax.modeling import export as export_lib
from vocalnet_jax.modeling import restore, run_config
from vocalnet_jax.modeling.validate import ConfigError
from vocalnet_jax.training import trainer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, devices):
  """`tiny,text` trained 2 steps on a (2, 4) data x fsdp mesh."""
  workdir = str(tmp_path_factory.mktemp("run"))
  trainer.train(tiny_config(train__steps=2, mesh__data=2, mesh__fsdp=4, mesh__tensor=1),
                workdir, devices=devices)
  return workdir


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory, devices):
  out = str(tmp_path_factory.mktemp("exports") / "f32")
  info = export_lib.export(trained, out, dtype="float32", devices=devices)
  return out, info


def _logits(model, params):
  """Logits of a fixed input, computed on one device from host copies of `params`."""
  tokens = (jnp.arange(12, dtype=jnp.int32).reshape(1, 12) * 7) % 30 + 3
  positions = jnp.arange(12)[None]
  mask = jnp.tril(jnp.ones((1, 12, 12), bool))
  host = jax.device_get(params)
  return np.asarray(model.module.apply({"params": host}, tokens, positions, mask)[0])


def _with_mesh(config, data, fsdp):
  config = config.copy_and_resolve_references()
  config.mesh.data, config.mesh.fsdp, config.mesh.tensor = data, fsdp, 1
  return config


def test_export_restores_on_one_device_and_another_mesh(trained, exported, devices):
  out, info = exported
  assert info["step"] == 2 and info["dtype"] == "float32" and info["params_scope"] == []
  assert restore.is_export(out) and not restore.is_export(trained)
  assert os.path.exists(os.path.join(out, "config.json"))
  config = run_config.read(trained)
  model, ref = restore.load(config, trained, devices)  # the trained params, (2, 4) mesh
  ref_logits = _logits(model, ref)
  for data, fsdp, devs in ((1, 1, devices[:1]), (4, 2, devices)):
    model, params = restore.load(_with_mesh(run_config.read(out), data, fsdp), out, devs)
    leaf = params["layers_0"]["mlp"]["up_proj"]["kernel"]
    assert dict(leaf.sharding.mesh.shape) == {"data": data, "fsdp": fsdp, "tensor": 1}
    for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(ref)):
      assert a.dtype == b.dtype == jnp.float32
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(_logits(model, params), ref_logits)


def test_bfloat16_export_and_evaluate_loader(trained, tmp_path, devices):
  out = str(tmp_path / "bf16")
  export_lib.export(trained, out, dtype="bfloat16", devices=devices)
  config = run_config.resolve(None, out)  # E is self-describing: what launch.evaluate does
  assert dict(config.mesh) == {"data": 1, "fsdp": -1, "tensor": 1}
  lm, params, tokenizer = text_eval.load_thinker(config, out)
  floats = [x for x in jax.tree_util.tree_leaves(params) if jnp.issubdtype(x.dtype, jnp.floating)]
  assert floats and all(x.dtype == jnp.bfloat16 for x in floats)
  assert lm is not None and tokenizer is not None
  _, ref = restore.load(run_config.read(trained), trained, devices)
  for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(ref)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b.astype(jnp.bfloat16)))
  # init_from an export (trainer.load_params) restores into the training dtype instead.
  abstract = jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype,
                                                                   sharding=x.sharding), ref)
  f32 = restore.restore_params(out, abstract, exported_dtype=False)
  for a, b in zip(jax.tree_util.tree_leaves(f32), jax.tree_util.tree_leaves(ref)):
    assert a.dtype == b.dtype
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b.astype(jnp.bfloat16)).astype(b.dtype))


def test_export_refuses_bad_input(trained, exported, tmp_path):
  out, _ = exported
  with pytest.raises(ConfigError, match="no step 99"):
    export_lib.export(trained, str(tmp_path / "a"), step=99)
  with pytest.raises(ConfigError, match="not one of"):
    export_lib.export(trained, str(tmp_path / "b"), dtype="float8")
  with pytest.raises(ConfigError, match="not a training workdir"):
    export_lib.export(str(tmp_path / "nowhere"), str(tmp_path / "c"))
  with pytest.raises(ConfigError, match="refusing to overwrite"):
    export_lib.export(trained, out)
  # The launcher: one clear line, non-zero exit, no traceback (one subprocess).
  script = ("import sys\nfrom absl import app\nfrom launch import export\n"
            "for argv in sys.argv[1:]:\n"
            "  try:\n    app.run(export.main, argv=['export'] + argv.split())\n"
            "  except SystemExit as e:\n    print('EXIT', e.code, flush=True)\n")
  cases = [f"--workdir={tmp_path / 'nowhere'} --out={tmp_path / 'd'}",
           f"--workdir={trained} --out={tmp_path / 'd'} --step=99",
           f"--workdir={trained} --out={out}",
           f"--workdir={trained} --out={tmp_path / 'd'} --dtype=float8"]
  env = dict(os.environ, XLA_FLAGS="", JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, "-c", script, *cases], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=300)
  text = proc.stdout + proc.stderr
  assert "Traceback" not in text, text
  assert [line for line in proc.stdout.splitlines() if line.startswith("EXIT")] == ["EXIT 1"] * 4
  for needle in ("not a training workdir", "no step 99", "refusing to overwrite", "not one of"):
    assert sum(needle in line for line in text.splitlines()) == 1, (needle, text)
  assert not os.path.exists(tmp_path / "d")
