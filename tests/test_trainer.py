import functools
import glob
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.helpers import tiny_config
from vocalnet_jax.modeling import run_config
from vocalnet_jax.modeling.validate import ConfigError
from vocalnet_jax.training import throughput, trainer
from vocalnet_jax.training.metrics import read_metrics

STEPS = 3


def _losses(history):
  return np.array([row["loss"] for row in history])


@pytest.fixture(scope="module")
def single_device_run(tmp_path_factory, devices):
  workdir = tmp_path_factory.mktemp("one")
  history = trainer.train(tiny_config(train__steps=STEPS), str(workdir), devices=devices[:1],
                          profile_steps=(2, 3))
  return workdir, _losses(history)


@pytest.mark.parametrize("mesh", [(8, 1, 1), (2, 4, 1), (1, 2, 4)])
def test_sharded_training_matches_single_device(mesh, single_device_run, tmp_path, devices):
  data, fsdp, tensor = mesh
  cfg = tiny_config(train__steps=STEPS, mesh__data=data, mesh__fsdp=fsdp, mesh__tensor=tensor)
  exp = trainer.setup_experiment(cfg, devices)
  assert dict(exp.mesh.shape) == {"data": data, "fsdp": fsdp, "tensor": tensor}
  if tensor > 1:  # the MLP really is split over the tensor axis
    spec = exp.state_shardings.params["layers_0"]["mlp"]["up_proj"]["kernel"].spec
    assert tuple(spec) == ("fsdp", "tensor")
  losses = _losses(trainer.train(cfg, str(tmp_path), devices=devices))
  np.testing.assert_allclose(losses, single_device_run[1], rtol=2e-5)


def test_metrics_jsonl_tensorboard_config_and_profile(single_device_run):
  workdir = single_device_run[0]
  rows = read_metrics(str(workdir))
  assert [r["step"] for r in rows] == list(range(1, STEPS + 1))
  assert {"step", "loss", "learning_rate", "tokens_per_s", "tokens_per_s_per_device",
          "grad_norm", "param_norm", "skipped_steps"} <= set(rows[0])
  assert rows[0]["tokens_per_s_per_device"] == pytest.approx(rows[0]["tokens_per_s"])  # 1 device
  assert "mfu" not in rows[0]  # no peak FLOP/s known for a CPU
  assert any(f.startswith("events.out.tfevents") for f in os.listdir(workdir / "tensorboard"))
  assert (json.loads(run_config.read(str(workdir)).to_json())
          == json.loads(tiny_config(train__steps=STEPS).to_json()))
  assert glob.glob(str(workdir / "profile" / "**" / "*.xplane.pb"), recursive=True)


def test_mfu_from_jaxpr_flops_and_chip_table(devices):
  assert throughput.peak_flops("NVIDIA H100 80GB HBM3") == 989e12
  assert throughput.peak_flops("TPU v5 lite") == 197e12  # v5e, not v5p
  assert throughput.peak_flops("TPU v5") == 459e12
  assert throughput.peak_flops("cpu") is None
  x, w = jnp.ones((8, 32)), jnp.ones((10, 32, 32))
  unrolled = jax.jit(lambda x, w: functools.reduce(lambda h, i: h @ w[i], range(10), x))
  layer = jax.checkpoint(lambda h, wi: (h @ wi, None))
  scanned = jax.jit(lambda x, w: jax.lax.scan(layer, x, w)[0])
  expected = 10 * 2 * 8 * 32 * 32
  assert throughput.jaxpr_matmul_flops(unrolled.trace(x, w).jaxpr) == expected
  assert throughput.jaxpr_matmul_flops(scanned.trace(x, w).jaxpr) == expected  # XLA: 1/10
  train = jax.jit(jax.grad(lambda x, w: jnp.sum(jax.lax.scan(layer, x, w)[0]), argnums=1))
  # the forward and both gradients (a linear layer needs no recomputed output)
  assert throughput.jaxpr_matmul_flops(train.trace(x, w).jaxpr) == 3 * expected
  flops = expected / len(devices)
  assert throughput.mfu(flops, 1e-3, "TPU v4") == pytest.approx(flops / 1e-3 / 275e12)
  assert throughput.mfu(flops, 1e-3, "cpu") is None


def test_step_flops_do_not_depend_on_scanning_the_layers(devices):
  """The same model, layers scanned or not: the same FLOPs per step (XLA's cost analysis
  counts a scanned stack's body once)."""
  flops = []
  for scan in (False, True):
    exp = trainer.setup_experiment(tiny_config(model__scan_layers=scan), devices)
    step = trainer.CompiledStep(exp)
    step.compile(exp.example_batch)
    flops.append(step.last_flops)
  assert flops[0] > 0
  assert flops[1] == pytest.approx(flops[0], rel=1e-6)


def test_interrupt_and_resume_reproduces_uninterrupted_run(tmp_path, devices):
  cfg = tiny_config(train__steps=6, train__checkpoint_every=3)
  full = _losses(trainer.train(cfg, str(tmp_path / "full"), devices=devices))
  first = trainer.train(cfg, str(tmp_path / "resumed"), devices=devices, stop_after_steps=4)
  # step 4 ran after the step-3 checkpoint; a preempted job loses it and redoes it
  assert [r["step"] for r in first] == [1, 2, 3, 4]
  os.system(f"rm -rf {tmp_path / 'resumed' / 'checkpoints' / '4'}")
  second = trainer.train(cfg, str(tmp_path / "resumed"), devices=devices)
  assert [r["step"] for r in second] == [4, 5, 6]
  np.testing.assert_array_equal(_losses(first)[:3], full[:3])
  np.testing.assert_array_equal(_losses(second), full[3:])


@pytest.mark.slow
@pytest.mark.parametrize("objective", ["mdm", "ar"])
def test_loss_decreases(objective, tmp_path, devices):
  cfg = tiny_config(objective, train__steps=120, train__batch_size=32)
  losses = _losses(trainer.train(cfg, str(tmp_path), devices=devices))
  assert losses[-10:].mean() < 0.6 * losses[:5].mean()


def test_gradient_accumulation_runs_sharded(tmp_path, devices):
  cfg = tiny_config("ar", train__steps=2, train__grad_accum_steps=2, mesh__data=8)
  losses = _losses(trainer.train(cfg, str(tmp_path), devices=devices))
  ref = _losses(trainer.train(tiny_config("ar", train__steps=1), str(tmp_path / "ref"),
                              devices=devices))
  # same first batch; microbatch means differ from the token-weighted full mean only slightly
  np.testing.assert_allclose(losses[0], ref[0], rtol=0.05)


def test_zero_steps_saves_init_from_as_the_runs_checkpoint(single_device_run, tmp_path, devices):
  """steps=0 assembles: the run's step-0 checkpoint holds init_from's params (here a text
  run's Thinker grafted onto a fresh init), restorable like any trained run's."""
  source, _ = single_device_run
  cfg = tiny_config(train__steps=0, init_from=f"thinker={source}", seed=7)
  assert trainer.train(cfg, str(tmp_path / "assembled"), devices=devices[:1]) == []
  exp = trainer.setup_experiment(cfg, devices[:1])
  assembled = trainer.load_params(str(tmp_path / "assembled"), exp)
  jax.tree_util.tree_map(np.testing.assert_array_equal, assembled,
                         trainer.load_params(str(source), exp))
  with pytest.raises(ConfigError, match="config.train.steps=0"):
    trainer.train(tiny_config(train__steps=0), str(tmp_path / "nothing"), devices=devices[:1])
