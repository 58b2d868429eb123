"""Sharded training loop, generic over tasks (MaxText-style).

abstract state via `jax.eval_shape` -> shardings from logical axis names -> sharded
init with `out_shardings` -> `jax.jit(train_step, in_shardings, out_shardings,
donate_argnums)`; compiled memory is logged before step 0; metrics go to
`metrics.jsonl` + TensorBoard; orbax checkpoints hold the state and the grain
iterator, so resuming from the workdir continues the exact run.

Multi-host: every process runs this loop on its share of the batch; process 0 alone
writes config.json, metrics and the progress bar. SIGTERM (preemption) saves at the next
step boundary and returns; a non-finite loss, gradient or parameter norm stops the run
without saving it (`train.nonfinite=stop`) or skips the update (`skip`).
"""
from __future__ import annotations

import dataclasses
import functools
import os
import time
from contextlib import nullcontext
from typing import Any, Callable, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from tqdm import tqdm

from data_pipelines import loader
from vocalnet_jax.modeling import partitioning, pretrained, restore, run_config
from vocalnet_jax.modeling.validate import ConfigError, validate_config
from vocalnet_jax.models.decoder import Decoder
from vocalnet_jax.training import tasks, throughput
from vocalnet_jax.training.checkpointing import Checkpointer, PreemptionNotice
from vocalnet_jax.training.metrics import MetricWriter
from vocalnet_jax.training.train_state import (TrainState, freeze, learning_rate_schedule,
                                               make_optimizer)

Array = jax.Array


class NonFiniteError(RuntimeError):
  """A step produced a non-finite loss, gradient norm or parameter norm."""


@dataclasses.dataclass
class Experiment:
  """The static pieces of a run: mesh, task, optimizer and shardings."""
  config: ml_collections.ConfigDict
  mesh: Mesh
  rules: tuple
  task: tasks.Task
  tx: optax.GradientTransformation
  example_batch: dict[str, Any]  # one per-host batch (or its ShapeDtypeStructs), for shapes
  abstract_state: TrainState  # unboxed ShapeDtypeStructs carrying their shardings
  state_shardings: TrainState
  batch_sharding: NamedSharding
  init_fn: Callable[[Array], TrainState]


def setup_experiment(config: ml_collections.ConfigDict,
                     devices: Optional[Sequence[jax.Device]] = None,
                     shapes_only: bool = False) -> Experiment:
  """Validates the config and derives every sharding without allocating the model.

  shapes_only: read no data; the example batch is the task's largest batch spec.
  `config.model.from_checkpoint` / `config.encoder.from_checkpoint` are resolved here
  (`Experiment.config` holds the checkpoint's shapes).
  """
  config = pretrained.resolve_config(config)
  validate_config(config)
  if config.get("init_from") and not shapes_only:  # a bad source fails before compiling
    for source in parse_init_from(config.init_from)[1].values():
      if pretrained.is_source(source):
        pretrained.open_checkpoint(source)
  mesh = partitioning.make_mesh(config.mesh, devices)
  rules = partitioning.rules_from_config(config.logical_axis_rules)
  task = tasks.build_task(config, shapes_only)
  tx = make_optimizer(config.train, task.trainable, task.frozen)
  if shapes_only:
    example_batch = task.batch_spec(per_host_batch_size(config))
  else:
    example_batch = next(iter(task.dataset(tasks.train_split(config),
                                           per_host_batch_size(config), config.seed)))

  def init_fn(rng: Array) -> TrainState:
    params = task.init_params(rng)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))

  abstract_state, state_shardings = partitioning.abstract_with_shardings(
      init_fn, mesh, rules, jax.random.key(0))
  return Experiment(config, mesh, rules, task, tx, example_batch, abstract_state, state_shardings,
                    loader.batch_sharding(mesh), init_fn)


def init_state(exp: Experiment) -> TrainState:
  """Initialises the train state directly in its sharded layout."""
  with exp.mesh, nn.logical_axis_rules(exp.rules):
    init = jax.jit(lambda r: nn.unbox(exp.init_fn(r)), out_shardings=exp.state_shardings)
    return init(jax.random.key(exp.config.seed))


def make_train_step(exp: Experiment) -> Callable[[TrainState, dict], tuple[TrainState, dict]]:
  """The jitted step: (state, global batch) -> (new state, metrics). State is donated."""
  accum = exp.config.train.grad_accum_steps
  lr_fn = learning_rate_schedule(exp.config.train)
  base_rng = jax.random.key(exp.config.seed + 1)
  batch_axes = exp.batch_sharding.spec[0]

  trainable, frozen = exp.task.trainable, exp.task.frozen
  skip_nonfinite = exp.config.train.nonfinite == "skip"

  def grads_and_metrics(params, batch, rng):
    grad_fn = jax.value_and_grad(
        lambda p, b, r: exp.task.loss(freeze(p, trainable, frozen), b, r), has_aux=True)
    if accum == 1:
      (_, metrics), grads = grad_fn(params, batch, rng)
      return grads, metrics
    micro = jax.tree_util.tree_map(
        lambda x: jax.lax.with_sharding_constraint(
            x.reshape((accum, -1) + x.shape[1:]),
            NamedSharding(exp.mesh, PartitionSpec(None, batch_axes))), batch)

    def body(carry, xs):
      mb, i = xs
      (_, metrics), grads = grad_fn(params, mb, jax.random.fold_in(rng, i))
      return jax.tree_util.tree_map(jnp.add, carry, (grads, metrics)), None

    first = jax.tree_util.tree_map(lambda x: x[0], micro)
    (_, metrics_shape), grads_shape = jax.eval_shape(grad_fn, params, first, rng)
    zeros = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype),
                                   (grads_shape, metrics_shape))
    (grads, metrics), _ = jax.lax.scan(body, zeros, (micro, jnp.arange(accum)))
    return jax.tree_util.tree_map(lambda x: x / accum, (grads, metrics))

  def train_step(state: TrainState, batch: dict) -> tuple[TrainState, dict]:
    rng = jax.random.fold_in(base_rng, state.step)
    grads, metrics = grads_and_metrics(state.params, batch, rng)
    new_state = state.apply_gradients(grads, exp.tx)
    norms = dict(grad_norm=optax.global_norm(grads), param_norm=optax.global_norm(new_state.params))
    finite = jnp.isfinite(metrics["loss"]) & jnp.isfinite(norms["grad_norm"]) & jnp.isfinite(
        norms["param_norm"])  # an inf/nan learning rate shows only in the new params
    if skip_nonfinite:  # keep params and optimizer state; the step (and data) move on
      new_state = jax.tree_util.tree_map(lambda new, old: jnp.where(finite, new, old),
                                         new_state, state.replace(step=new_state.step))
    return new_state, dict(metrics, **norms, learning_rate=lr_fn(state.step), finite=finite)

  batch_shardings = {k: exp.batch_sharding for k in exp.example_batch}
  return jax.jit(train_step, in_shardings=(exp.state_shardings, batch_shardings),
                 out_shardings=(exp.state_shardings, None), donate_argnums=(0,))


def per_host_batch_size(config: ml_collections.ConfigDict) -> int:
  """This process's share of `train.batch_size` (the global batch)."""
  if config.train.batch_size % jax.process_count():
    raise ConfigError(f"config.train.batch_size={config.train.batch_size} (the global batch) "
                      f"is not divisible by the {jax.process_count()} processes")
  return config.train.batch_size // jax.process_count()


def abstract_batch(exp: Experiment, host_batch: dict[str, np.ndarray]
                   ) -> dict[str, jax.ShapeDtypeStruct]:
  """A per-host batch as the global, sharded ShapeDtypeStructs the step sees."""
  return {k: jax.ShapeDtypeStruct((exp.config.train.batch_size,) + v.shape[1:], v.dtype,
                                  sharding=exp.batch_sharding)
          for k, v in host_batch.items()}


class CompiledStep:
  """The train step compiled ahead of time once per batch shape (length buckets give a
  few), logging each executable's memory before it first runs."""

  def __init__(self, exp: Experiment):
    self._exp, self._jitted, self._compiled = exp, make_train_step(exp), {}
    self.flops: dict[tuple, float] = {}  # matmul FLOPs per device, per executable
    self.last_flops: Optional[float] = None  # of the executable compiled or run last

  def compile(self, host_batch: dict[str, np.ndarray]):
    key = tuple(sorted((k, v.shape) for k, v in host_batch.items()))
    if key not in self._compiled:
      with self._exp.mesh, nn.logical_axis_rules(self._exp.rules):
        traced = self._jitted.trace(self._exp.abstract_state,
                                    abstract_batch(self._exp, host_batch))
        compiled = traced.lower().compile()
      self.memory = log_compiled_memory(compiled)  # of the latest compiled shape
      self._compiled[key] = compiled
      # the global step's matmuls, split evenly over the devices (SPMD)
      self.flops[key] = throughput.jaxpr_matmul_flops(traced.jaxpr) / self._exp.mesh.size
    self.last_flops = self.flops[key]
    return self._compiled[key]

  def __call__(self, state: TrainState, host_batch: dict[str, np.ndarray]):
    host_batch = loader.pad_to_common_shapes(host_batch)  # hosts' length buckets agree
    step = self.compile(host_batch)
    return step(state, loader.to_global_batch(host_batch, self._exp.batch_sharding))


def log_compiled_memory(compiled) -> dict[str, int]:
  """Reports the compiled step's memory per device (arguments, outputs, temporaries)."""
  analysis = compiled.memory_analysis()
  report = {name: int(getattr(analysis, f"{name}_size_in_bytes", 0)) for name in
            ("argument", "output", "temp", "generated_code")} if analysis is not None else {}
  logging.info("compiled train step memory per device (bytes): %s", report)
  if jax.process_index() == 0:
    print("compiled train step memory per device: "
          + ", ".join(f"{k}={v / 2**20:.1f} MiB" for k, v in report.items()), flush=True)
  return report


def dry_run(config: ml_collections.ConfigDict,
            devices: Optional[Sequence[jax.Device]] = None) -> dict[str, Any]:
  """Compiles the train step for the config's mesh without allocating the model or
  reading data; returns parameter count and per-device memory of the executable."""
  exp = setup_experiment(config, devices, shapes_only=True)
  step = CompiledStep(exp)
  tick = time.perf_counter()
  step.compile(exp.example_batch)
  compile_s = time.perf_counter() - tick
  params = exp.abstract_state.params
  return {
      "preset": config.get("preset", ""), "task": config.task,
      "mesh": dict(exp.mesh.shape), "devices": exp.mesh.size,
      "device_kind": exp.mesh.devices.flat[0].device_kind,
      "global_batch_size": config.train.batch_size,
      "num_params": int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(params))),
      "num_params_by_part": {k: int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(v)))
                             for k, v in params.items()} if isinstance(params, dict) else {},
      "memory_per_device_bytes": step.memory, "compile_s": round(compile_s, 1),
  }


def parse_init_from(spec: str) -> tuple[str, dict[str, str]]:
  """'W', 'W,thinker=W2' or 'thinker=W2' -> (base, {part: source}): every param from the
  base run W ('' : this run's fresh init), then each named top-level part from its own
  run (e.g. stage 0's Thinker into a speech model with other ears, or an MDM Thinker
  grafted onto ears that already hear) or from a pretrained checkpoint
  (`thinker=hf:DIR`, `thinker=gguf:FILE`, `encoder=hf:DIR`; `modeling.pretrained`)."""
  entries = [s.strip() for s in spec.split(",")]
  base = "" if "=" in entries[0] else entries.pop(0)
  if pretrained.is_source(base):
    raise ConfigError(f"config.init_from={spec!r}: a pretrained checkpoint gives one part: "
                      f"write 'thinker={base}' (or encoder=...)")
  parts = {}
  for entry in entries:
    part, sep, source = entry.partition("=")
    if not sep or not part or not source or part in parts:
      raise ConfigError(f"config.init_from={spec!r}: {entry!r} is not a new PART=WORKDIR "
                        "or PART=hf:DIR / PART=gguf:FILE (e.g. 'w/ar1,thinker=w/mdm0')")
    parts[part] = source
  return base, parts


# What a part's params depend on: a source run must agree on these (PARAM_FIELDS for a base).
PART_FIELDS = {"thinker": ("model",), "encoder": ("encoder",),
               "adaptor": ("adaptor.stack", "adaptor.hidden_dim", "encoder.embed_dim",
                           "model.embed_dim"),
               "talker": ("talker.model", "talker.num_units", "model.embed_dim")}


def _checked(workdir: str, exp: Experiment, fields: Sequence[str]) -> str:
  saved = run_config.read(workdir)
  if saved is not None:  # the source config: its model must be this one's
    run_config.check(saved, exp.config, workdir, hard=fields, soft=())
  return workdir


def load_params(init_from: str, exp: Experiment, fresh: Any = None) -> Any:
  """Params of the latest checkpoint of another run (e.g. stage 1 for stage 2), placed
  with this run's shardings, with parts grafted from other runs or pretrained checkpoints
  (`parse_init_from`; `fresh`: this run's initial params, the base when `init_from` names
  none). Optimizer states are not read."""
  base, parts = parse_init_from(init_from)
  abstract = exp.abstract_state.params
  if base:
    params = exp.task.params_from_checkpoint(  # an export's bf16 params train in f32
        functools.partial(restore.restore_params, _checked(base, exp, run_config.PARAM_FIELDS),
                          exported_dtype=False), abstract)
  elif fresh is not None:
    params = fresh
  else:
    raise ConfigError(f"config.init_from={init_from!r} names no base run")
  for part, source in parts.items():
    scope = _part_scope(params, part, exp)
    if pretrained.is_source(source):
      loaded = pretrained.load_part(part, source, _at(abstract, scope), exp.config)
    else:
      loaded = restore.restore_params(
          _checked(source, exp, PART_FIELDS.get(part, run_config.PARAM_FIELDS)),
          _at(abstract, scope), scope=scope, exported_dtype=False)
    params = loaded if not scope else {**params, part: loaded}
  return params


def _part_scope(params: Any, part: str, exp: Experiment) -> tuple[str, ...]:
  """Where `part` sits in the params: a top-level entry, or the whole tree for the
  `thinker` of a text run (its params are the Thinker's)."""
  if isinstance(params, dict) and part in params:
    return (part,)
  if part == "thinker" and isinstance(exp.task.model, Decoder):
    return ()
  names = sorted(params) if isinstance(params, dict) else []
  raise ConfigError(f"config.init_from: this model has no part {part!r}; parts: {names}")


def _at(tree: Any, scope: Sequence[str]) -> Any:
  for name in scope:
    tree = tree[name]
  return tree


def count_tokens(batch: dict[str, np.ndarray]) -> int:
  """Real (non-padding) tokens/frames in a batch: the sum of its `*_valid` masks."""
  return int(sum(np.sum(v) for k, v in batch.items() if k.endswith("_valid")))


def train(config: ml_collections.ConfigDict, workdir: str,
          devices: Optional[Sequence[jax.Device]] = None,
          stop_after_steps: Optional[int] = None,
          profile_steps: Optional[tuple[int, int]] = None) -> list[dict]:
  """Trains (or resumes) in `workdir`; returns the metric rows logged by this call.

  stop_after_steps: end this call after that many steps (simulates preemption; the
  next call resumes from the last checkpoint). profile_steps: (a, b) writes a JAX
  profiler trace of steps a..b (1-based, inclusive) to `workdir/profile`.
  Raises NonFiniteError (train.nonfinite=stop) naming the first non-finite step.
  """
  exp = setup_experiment(config, devices)
  config = exp.config  # with the shapes of a pretrained checkpoint (from_checkpoint)
  t = config.train
  main = jax.process_index() == 0
  saved = run_config.read(workdir)
  if saved is not None:  # resuming: the checkpoints must fit this model
    run_config.check(saved, config, workdir, soft=())
  if main:
    run_config.write(config, workdir)
  ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), keep=t.keep_checkpoints,
                      every=t.checkpoint_every, async_save=t.async_checkpointing)
  latest = ckpt.latest_step()
  if latest is not None and latest >= t.steps:  # finished: nothing to compile or restore
    ckpt.close()
    return []
  data_iter = iter(loader.prefetched(
      exp.task.dataset(tasks.train_split(config), per_host_batch_size(config), config.seed),
      t.prefetch_batches))
  step_fn = CompiledStep(exp)
  if t.steps:
    step_fn.compile(exp.example_batch)
  if latest is None:
    state = init_state(exp)
    if config.get("init_from"):
      state = state.replace(params=load_params(config.init_from, exp, state.params))
  else:
    logging.info("resuming from step %d in %s", latest, workdir)
    state = ckpt.restore(latest, exp.abstract_state, data_iter)
  if t.steps == 0:  # an assembly (e.g. ears of one run, Thinker of another): no step to take
    ckpt.save(0, state, data_iter, force=True)
  writer = MetricWriter(workdir)
  history, start = [], int(state.step)
  end = t.steps if stop_after_steps is None else min(t.steps, start + stop_after_steps)
  window = dict(tokens=0, flops=0.0, tick=time.perf_counter())
  skipped, tracing = 0, False
  progress = tqdm(range(start, end), initial=start, total=t.steps, desc="train",
                  disable=not (t.progress_bar and main))
  try:
    with exp.mesh, nn.logical_axis_rules(exp.rules), PreemptionNotice(ckpt.manager) as notice:
      for step in progress:
        done = step + 1
        if profile_steps and done == profile_steps[0]:
          jax.profiler.start_trace(os.path.join(workdir, "profile"))
          tracing = True
        batch = next(data_iter)
        window["tokens"] += count_tokens(batch)
        with jax.profiler.StepTraceAnnotation("train", step_num=done) if tracing else nullcontext():
          state, metrics = step_fn(state, batch)
        window["flops"] += step_fn.last_flops or 0.0
        if not bool(metrics.pop("finite")):
          if t.nonfinite == "stop":
            raise NonFiniteError(nonfinite_message(done, metrics, ckpt))
          skipped += 1
        if tracing and done == profile_steps[1]:
          jax.block_until_ready(state)
          jax.profiler.stop_trace()
          tracing = False
        if done % t.log_every == 0 or done == end:
          row = {k: float(v) for k, v in jax.device_get(metrics).items()}
          row.update(throughput_row(window, step_fn.last_flops is not None, exp.mesh),
                     skipped_steps=skipped)
          writer.write(done, row)
          history.append({"step": done, **row})
          progress.set_postfix(loss=f"{row['loss']:.3f}",
                               mfu=f"{row['mfu']:.1%}" if "mfu" in row else "n/a")
          window = dict(tokens=0, flops=0.0, tick=time.perf_counter())
        preempted = notice.reached(done)
        ckpt.save(done, state, data_iter, force=done == end or preempted)
        if preempted:
          ckpt.manager.wait_until_finished()
          if main:
            print(f"preempted: saved the checkpoint of step {done} in {workdir}; rerun the "
                  "same command to resume", flush=True)
          break
  finally:
    if tracing:
      jax.profiler.stop_trace()
    progress.close()
    ckpt.close()
    writer.close()
  return history


def throughput_row(window: dict, have_flops: bool, mesh: Mesh) -> dict[str, float]:
  """Tokens/s (whole run, per device) and MFU (known chips) since the last log row;
  `window` holds this host's tokens and one device's FLOPs since then."""
  seconds = max(time.perf_counter() - window["tick"], 1e-9)
  per_device = window["tokens"] / seconds / len(mesh.local_devices)
  row = {"tokens_per_s": per_device * mesh.size, "tokens_per_s_per_device": per_device}
  utilisation = throughput.mfu(window["flops"] if have_flops else None, seconds,
                               mesh.devices.flat[0].device_kind)
  if utilisation is not None:
    row["mfu"] = utilisation
  return row


def nonfinite_message(step: int, metrics: dict, ckpt: Checkpointer) -> str:
  """One line naming the step, the values and the checkpoint a rerun would resume from."""
  ckpt.manager.wait_until_finished()
  values = ", ".join(f"{k}={float(metrics[k]):.4g}" for k in ("loss", "grad_norm", "param_norm"))
  latest = ckpt.latest_step()
  kept = (f"the last good checkpoint is step {latest}" if latest is not None
          else "no checkpoint was saved")
  return (f"non-finite values at step {step} ({values}): stopped without saving it; {kept}. "
          "Lower config.train.learning_rate, or set config.train.nonfinite=skip")
