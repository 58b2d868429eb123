"""launch.export: params-only sharded export that restores onto any mesh."""
import json
import os
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from configs import mdm
from tests.helpers import tiny_config
from tests.test_pod import _free_port
from vocalnet_jax.evaluation import text_eval
from vocalnet_jax.modeling import export as export_lib
from vocalnet_jax.modeling import restore, run_config
from vocalnet_jax.modeling.validate import ConfigError
from vocalnet_jax.models import hf_import
from vocalnet_jax.models.decoder import Decoder
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


def _logits(module, params):
  """Logits of a fixed input, computed on one device from host copies of `params`."""
  tokens = (jnp.arange(12, dtype=jnp.int32).reshape(1, 12) * 7) % 30 + 3
  positions = jnp.arange(12)[None]
  mask = jnp.tril(jnp.ones((1, 12, 12), bool))
  host = jax.device_get(params)
  return np.asarray(module.apply({"params": host}, tokens, positions, mask)[0])


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
  ref_logits = _logits(model.module, ref)
  for data, fsdp, devs in ((1, 1, devices[:1]), (4, 2, devices)):
    model, params = restore.load(_with_mesh(run_config.read(out), data, fsdp), out, devs)
    leaf = params["layers_0"]["mlp"]["up_proj"]["kernel"]
    assert dict(leaf.sharding.mesh.shape) == {"data": data, "fsdp": fsdp, "tensor": 1}
    for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(ref)):
      assert a.dtype == b.dtype == jnp.float32
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(_logits(model.module, params), ref_logits)


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
  # The launcher: one clear line, non-zero exit, no traceback.
  bad = {name: tmp_path / name for name in ("empty", "config_only", "garbage")}
  for path in bad.values():
    path.mkdir()
  shutil.copy(os.path.join(trained, "config.json"), bad["config_only"])
  (bad["garbage"] / "config.json").write_text("{not json")
  d = tmp_path / "d"
  cases = {f"--workdir={tmp_path / 'nowhere'} --out={d}": "is not a training workdir",
           f"--workdir={bad['empty']} --out={d}": "is not a training workdir",
           f"--workdir={bad['config_only']} --out={d}": "holds no checkpoint",
           f"--workdir={bad['garbage']} --out={d}": "is not a config written by launch.train",
           f"--workdir={out} --out={d}": "is an export (launch.export output)",
           f"--workdir={trained} --out={d} --step=99": "no step 99",
           f"--workdir={trained} --out={out}": "refusing to overwrite",
           f"--workdir={trained} --out={d} --dtype=float8": "--dtype=float8 is not one of",
           f"--workdir={trained} --out={d} --format=onnx": "--format=onnx is not one of"}
  _assert_one_line_each("launch.export", cases)
  assert not os.path.exists(d)


_SCRIPT = """
import importlib, sys
from absl import app, flags
{setup}
main = importlib.import_module({launcher!r}).main
for argv in sys.argv[1:]:
  flags.FLAGS.unparse_flags()
  print('CASE', argv, file=sys.stderr, flush=True)
  try:
    app.run(main, argv=['launcher'] + argv.split())
  except SystemExit as e:  # as the interpreter would: a string is printed, status 1
    code = e.code
    if isinstance(code, str):
      print(code, file=sys.stderr)
      code = 1
    print('EXIT', code, file=sys.stderr, flush=True)
"""


def _assert_one_line_each(launcher: str, cases: dict[str, str], setup: str = "") -> None:
  """Runs `launcher`'s main on each case's argv in one subprocess (flags reset between
  them; `setup` runs first): every case prints one line, holding its needle, and exits 1."""
  script = _SCRIPT.format(setup=setup, launcher=launcher)
  env = dict(os.environ, XLA_FLAGS="", JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, "-c", script, *cases], cwd=ROOT, env=env,
                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
  assert "Traceback" not in proc.stdout, proc.stdout
  outputs = proc.stdout.split("CASE ")[1:]
  assert len(outputs) == len(cases), proc.stdout
  for (argv, needle), text in zip(cases.items(), outputs):
    lines = text.splitlines()
    assert lines[0] == argv and lines[-1] == "EXIT 1", text
    assert len(lines) == 3 and needle in lines[1], (needle, text)  # the message alone


def test_decode_names_a_bad_checkpoint(trained, tmp_path, devices):
  hf = tmp_path / "hf"
  export_lib.export(trained, str(hf), devices=devices, fmt="hf")
  (tmp_path / "empty").mkdir()
  (tmp_path / "garbage").mkdir()
  (tmp_path / "garbage" / "config.json").write_text("[1, 2]")
  text = "--config=configs/mdm.py:tiny,text --prompt=1+2=?"
  _assert_one_line_each("launch.decode", {
      f"{text} --checkpoint={tmp_path / 'nowhere'}": "holds no checkpoint",
      f"--prompt=1+2=? --checkpoint={tmp_path / 'empty'}": "--config is required",
      f"--prompt=1+2=? --checkpoint={tmp_path / 'garbage'}": "not a config written by",
      f"--prompt=1+2=? --checkpoint={hf}": "is a Hugging Face model config",
      f"--config=configs/mdm.py:small,text --prompt=1+2=? --checkpoint={trained}":
          "model.embed_dim: workdir 64, given 256"})  # a workdir of another config


def test_hf_export_refuses_a_thinker_hf_cannot_express(trained, tmp_path):
  """A Thinker with a knob Llama/Qwen2 has no field for (here a stand-in `qk_norm`)."""
  setup = """
import dataclasses
from vocalnet_jax.modeling import export as export_lib
from vocalnet_jax.models.decoder import Decoder

class QKNormDecoder(Decoder):
  qk_norm: bool = True

def qk_norm_build(config, build=export_lib.build):
  model = build(config)
  fields = {f.name: getattr(model.module, f.name) for f in dataclasses.fields(Decoder)
            if f.name not in ('parent', 'name')}
  return dataclasses.replace(model, module=QKNormDecoder(**fields))

export_lib.build = qk_norm_build
"""
  out = tmp_path / "hf"
  _assert_one_line_each("launch.export", {
      f"--workdir={trained} --out={out} --format=hf":
          "cannot be written as Llama/Qwen2: Decoder field(s) qk_norm"}, setup)
  assert not out.exists()


def _hf_logits(path):
  """Logits of `_logits`' input from an HF export read back with hf_import."""
  hp, params = hf_import.load_hf_decoder(path)
  return _logits(Decoder(**hp), params)


def test_hf_export_round_trips_through_hf_import(trained, tmp_path, devices):
  out = str(tmp_path / "hf")
  info = export_lib.export(trained, out, dtype="float32", devices=devices, fmt="hf")
  assert info["step"] == 2 and info["params_scope"] == []
  config = json.loads((tmp_path / "hf" / "config.json").read_text())
  assert config["model_type"] == "llama" and config["vocalnet_jax"]["step"] == 2
  model, ref = restore.load(run_config.read(trained), trained, devices)
  assert config["vocalnet_jax"]["mask_id"] == model.ids.mask_id
  np.testing.assert_allclose(_hf_logits(out), _logits(model.module, ref), atol=1e-6, rtol=0)
  # bfloat16: the stored tensors are the trained ones rounded once
  out16 = str(tmp_path / "hf16")
  export_lib.export(trained, out16, dtype="bfloat16", devices=devices, fmt="hf")
  _, params16 = hf_import.load_hf_decoder(out16, dtype=jnp.bfloat16)
  np.testing.assert_array_equal(
      np.asarray(params16["layers_1"]["mlp"]["down_proj"]["kernel"]),
      np.asarray(ref["layers_1"]["mlp"]["down_proj"]["kernel"].astype(jnp.bfloat16)))


def _saved_init(config, workdir, devices, step=3):
  """`workdir` as training leaves it (config.json, a checkpoint of `state.params`), holding
  random init params: a workdir of any model without training one."""
  model, params = restore.load(config, None, devices)
  run_config.write(config, workdir)
  with ocp.CheckpointManager(restore.checkpoint_dir(workdir), item_names=("state",)) as m:
    m.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave({"params": params})))
  return model, params


def test_hf_export_of_scanned_layers(tmp_path, devices):
  workdir = str(tmp_path / "scan")
  model, params = _saved_init(tiny_config(model__scan_layers=True, model__qkv_bias=True),
                              workdir, devices)
  assert "layers" in params  # stacked [num_layers, ...] params
  out = str(tmp_path / "hf")
  export_lib.export(workdir, out, devices=devices, fmt="hf")
  assert json.loads((tmp_path / "hf" / "config.json").read_text())["model_type"] == "qwen2"
  np.testing.assert_allclose(_hf_logits(out), _logits(model.module, params), atol=1e-6, rtol=0)


def test_hf_export_of_a_speech_run_writes_its_thinker(prepared_corpus, tmp_path, devices):
  """A speech workdir: its `thinker` sub-tree and the corpus's sentencepiece tokenizer."""
  config = mdm.get_config("tiny")
  config.data.dir = prepared_corpus
  workdir = str(tmp_path / "speech")
  model, params = _saved_init(config, workdir, devices[:1])
  out = str(tmp_path / "hf")
  info = export_lib.export(workdir, out, devices=devices[:1], fmt="hf")
  assert info["params_scope"] == ["thinker"] and info["step"] == 3
  assert (tmp_path / "hf" / "tokenizer.model").read_bytes() == (
      open(os.path.join(prepared_corpus, "tokenizer.model"), "rb").read())
  hp, imported = hf_import.load_hf_decoder(out)
  assert hp["vocab_size"] == model.module.thinker.vocab_size
  jax.tree_util.tree_map(np.testing.assert_array_equal, imported,
                         jax.device_get(params["thinker"]))


def test_two_processes_write_the_hf_export_of_one(trained, tmp_path, devices):
  """launch.export --format=hf from two processes (4 CPU devices each, the run's 2x4 mesh
  across both): process 0 writes the same files one process writes."""
  one = tmp_path / "one"
  export_lib.export(trained, str(one), devices=devices, fmt="hf")
  two, port = tmp_path / "two", _free_port()
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT,
             XLA_FLAGS="--xla_force_host_platform_device_count=4")
  procs = [subprocess.Popen(
      [sys.executable, "-m", "launch.export", f"--workdir={trained}", f"--out={two}",
       "--format=hf", f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2",
       f"--process_id={i}"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, text=True) for i in range(2)]
  for p in procs:
    _, err = p.communicate(timeout=180)
    assert p.returncode == 0, err[-2000:]
  assert sorted(os.listdir(two)) == sorted(os.listdir(one)) == ["config.json",
                                                                "model.safetensors"]
  for name in os.listdir(one):
    assert (two / name).read_bytes() == (one / name).read_bytes(), name
