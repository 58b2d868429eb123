"""Pod-scale training: two real processes, SIGTERM, non-finite steps (launch.train runs
in subprocesses on the CPU backend, like one process per host)."""
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np

from tests.helpers import tiny_config
from vocalnet_jax.training import trainer
from vocalnet_jax.training.checkpointing import Checkpointer
from vocalnet_jax.training.metrics import read_metrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--config=configs/mdm.py:tiny,text", "--config.train.batch_size=16",
        "--config.train.log_every=1", "--config.train.progress_bar=False"]


def _launch_train(workdir, *flags, devices=8, fast_compile=False, **popen_kw):
  """launch.train in a subprocess; fast_compile: LLVM -O0 (a third less CPU, for runs
  whose losses are compared with a tolerance, not bit for bit)."""
  xla = f"--xla_force_host_platform_device_count={devices}"
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT, XLA_FLAGS=xla + (
      " --xla_backend_optimization_level=0" if fast_compile else ""))
  return subprocess.Popen([sys.executable, "-m", "launch.train", f"--workdir={workdir}",
                           *TINY, *flags], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, **popen_kw)


def _losses(rows):
  return np.array([r["loss"] for r in rows])


def _restore(workdir, cfg, devices):
  exp = trainer.setup_experiment(cfg, devices)
  ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), keep=1, every=1)
  step = ckpt.latest_step()
  state = ckpt.restore(step, exp.abstract_state)
  ckpt.close()
  return step, state


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_two_processes_train_like_one(tmp_path, devices):
  """fsdp=8 spans both processes (4 devices each): same losses as one 8-device process,
  and the checkpoint both wrote restores in this single process."""
  steps, port = 3, _free_port()
  mesh = ["--config.mesh.data=1", "--config.mesh.fsdp=8", f"--config.train.steps={steps}"]
  procs = [_launch_train(tmp_path / "two", *mesh, f"--coordinator_address=127.0.0.1:{port}",
                         "--num_processes=2", f"--process_id={i}", devices=4, fast_compile=True)
           for i in range(2)]
  cfg = tiny_config(train__steps=steps, mesh__data=1, mesh__fsdp=8)
  single = _losses(trainer.train(cfg, str(tmp_path / "one"), devices=devices))
  for p in procs:
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err[-2000:]
  rows = read_metrics(str(tmp_path / "two"))  # written once, by process 0
  assert [r["step"] for r in rows] == list(range(1, steps + 1))
  np.testing.assert_allclose(_losses(rows), single, rtol=1e-5)
  step, two = _restore(str(tmp_path / "two"), cfg, devices)
  _, one = _restore(str(tmp_path / "one"), cfg, devices)
  assert step == steps
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
                         two.params, one.params)


def test_sigterm_saves_exits_zero_and_resumes_exactly(tmp_path, devices):
  workdir = tmp_path / "run"
  proc = _launch_train(workdir, "--config.train.steps=100000",
                       "--config.train.checkpoint_every=100000")
  metrics = workdir / "metrics.jsonl"
  deadline = time.time() + 90
  while not (metrics.exists() and metrics.read_text().count("\n") >= 2):
    assert proc.poll() is None and time.time() < deadline, proc.communicate()[1][-2000:]
    time.sleep(0.1)
  proc.send_signal(signal.SIGTERM)
  out, err = proc.communicate(timeout=60)
  assert proc.returncode == 0, err[-2000:]
  saved = max(r["step"] for r in read_metrics(str(workdir)))
  assert f"saved the checkpoint of step {saved}" in out
  cfg = tiny_config(train__steps=100000, train__checkpoint_every=100000)
  resumed = trainer.train(cfg, str(workdir), devices=devices, stop_after_steps=2)
  assert [r["step"] for r in resumed] == [saved + 1, saved + 2]
  full = trainer.train(cfg, str(tmp_path / "full"), devices=devices, stop_after_steps=saved + 2)
  np.testing.assert_array_equal(_losses(read_metrics(str(workdir))),
                                _losses(full))


def test_nonfinite_step_stops_with_one_line_and_keeps_last_checkpoint(tmp_path, devices):
  workdir = str(tmp_path)
  cfg = tiny_config(train__steps=2, train__checkpoint_every=1)
  trainer.train(cfg, workdir, devices=devices)
  proc = _launch_train(workdir, "--config.train.steps=4", "--config.train.checkpoint_every=1",
                       "--config.train.learning_rate=nan", fast_compile=True)
  out, err = proc.communicate(timeout=120)
  assert proc.returncode == 1
  assert "Traceback" not in err
  assert "error: non-finite values at step 3 (loss=" in err
  assert "the last good checkpoint is step 2" in err
  step, state = _restore(workdir, cfg, devices)
  assert step == 2
  assert all(np.isfinite(x).all() for x in jax.tree_util.tree_leaves(state.params))


def test_nonfinite_skip_keeps_params_and_counts(tmp_path, devices):
  cfg = tiny_config(train__steps=3, train__learning_rate=float("nan"), train__nonfinite="skip")
  rows = trainer.train(cfg, str(tmp_path), devices=devices)
  assert [r["skipped_steps"] for r in rows] == [1, 2, 3]
  step, state = _restore(str(tmp_path), cfg, devices)
  assert step == 3 and int(state.step) == 3
  init = trainer.init_state(trainer.setup_experiment(cfg, devices))
  jax.tree_util.tree_map(np.testing.assert_array_equal, state.params, init.params)


_PAD_SCRIPT = """
import sys, jax, numpy as np
jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.distributed.initialize(sys.argv[1], 2, int(sys.argv[2]))
from data_pipelines import loader
frames = 4 if jax.process_index() == 0 else 6  # each host picked another length bucket
batch = {"mel": np.ones((2, frames, 3), np.float32), "mel_valid": np.ones((2, frames), bool),
         "tokens": np.ones((2, 5), np.int32)}
out = loader.pad_to_common_shapes(batch)
assert {k: v.shape for k, v in out.items()} == {
    "mel": (2, 6, 3), "mel_valid": (2, 6), "tokens": (2, 5)}, out
assert out["mel_valid"].sum() == 2 * frames and out["mel"].sum() == 2 * frames * 3
print("ok")
"""


def test_hosts_with_different_length_buckets_pad_to_one():
  address = f"127.0.0.1:{_free_port()}"
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT,
             XLA_FLAGS="--xla_force_host_platform_device_count=1")
  procs = [subprocess.Popen([sys.executable, "-c", _PAD_SCRIPT, address, str(i)], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for i in range(2)]
  for p in procs:
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0 and out.strip().endswith("ok"), err[-2000:]
