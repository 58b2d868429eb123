"""Where the speech train step's memory goes, per device, from XLA's compiled memory analysis.

  XLA_FLAGS=--xla_force_host_platform_device_count=8 python -m benchmarks.memory_breakdown \
      --preset=1b --rows=1:mdm,2:mdm --variants=before,after

For each row (stage 1: encoder + adaptor + Thinker; stage 2: the Talker on the frozen
Thinker's states; AR or MDM) and each variant (config overrides, `VARIANTS`), it compiles the
whole train step (argument, output, temp bytes; FLOPs and bytes accessed from the cost
analysis) and, with `--parts`, each part alone at the step's shapes and shardings:
`ears` (encoder + adaptor, forward and backward; stage 2: forward with the Thinker, frozen),
`lm` (the Thinker's or Talker's objective from a given prefix: layers, logits and loss) and
`logits_loss` (the vocabulary projection and cross-entropy of the scored positions alone).
Parameters and optimizer state are counted from the sharded abstract state. Rows are merged
into `--out` (a `result_file` JSON) and the table is rendered into `--doc` between markers.
"""
from __future__ import annotations

import fcntl
import json
import os
import tempfile
import time
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import app, flags

from configs import ar as ar_config
from configs import mdm as mdm_config
from launch import logs
from vocalnet_jax.diffusion import losses
from vocalnet_jax.evaluation import result_file
from vocalnet_jax.models import layers as layers_lib
from vocalnet_jax.models.decoder import remat_layer
from vocalnet_jax.models.encoder import EncoderLayer
from vocalnet_jax.models.speech_llm import SpeechLLM
from vocalnet_jax.training import objectives, speech_tasks, throughput, trainer
from vocalnet_jax.training.train_state import freeze

# name -> overrides of the preset's config. `before`: the step as first measured (encoder
# layers unrolled, the whole response projected at once); `after`: the preset as configured
# now; the others change one knob of `after` each.
VARIANTS = {
    "before": {"encoder.scan_layers": False, "encoder.remat_policy": "full",
               "train.loss_chunk": 0},
    "after": {},
    "loss_chunk_64": {"train.loss_chunk": 64},
    "window_10s": {"data.mel_buckets": (1000,)},
    "save_dots": {"model.remat_policy": "save_dots", "encoder.remat_policy": "save_dots"},
}
MESH = {"mesh.data": 1, "mesh.fsdp": 8, "train.batch_size": 8}  # one sequence per device
TINY_VOCABS = {"model.vocab_size": 256, "talker.num_units": 64}  # tiny/small: no tokenizer read
CHIPS = ("TPU v5e", "TPU v5p", "H100", "H200")  # keys of throughput.PEAK_FLOPS / HBM

_PRESET = flags.DEFINE_string("preset", "1b", "Model preset of configs/{ar,mdm}.py.")
_ROWS = flags.DEFINE_list("rows", ["1:mdm", "1:ar", "2:mdm", "2:ar"], "STAGE:OBJECTIVE rows.")
_VARIANTS = flags.DEFINE_list("variants", ["before", "after"], f"Of {sorted(VARIANTS)}.")
_PARTS = flags.DEFINE_bool("parts", True, "Also compile each part alone.")
_STEP = flags.DEFINE_bool("step", True, "Compile the whole step (--nostep: the parts alone).")
_FSDP = flags.DEFINE_integer("fsdp", 8, "Devices of the fsdp axis (one sequence each).")
_OUT = flags.DEFINE_string("out", "benchmarks/results/memory_breakdown_cpu8.json", "Result JSON.")
_RECOST = flags.DEFINE_bool("recost", False, "Only recompute `scan_correction` of --out's rows "
                            "of this many devices.")
_DOC = flags.DEFINE_string("doc", "docs/memory.md", "Markdown file whose table is rewritten.")

GIB = 2**30


def row_config(preset: str, stage: int, objective: str, overrides: dict,
               fsdp: int) -> ml_collections.ConfigDict:
  """The preset's stage config with the mesh and a variant's overrides applied."""
  module = mdm_config if objective == "mdm" else ar_config
  config = module.get_config(f"{preset},stage={stage}")
  mesh = dict(MESH, **{"mesh.fsdp": fsdp, "train.batch_size": fsdp})
  vocabs = TINY_VOCABS if preset in ("tiny", "small") else {}
  for key, value in {**mesh, **vocabs, **overrides}.items():
    section, field = key.split(".")
    config[section][field] = value
  return config


def per_device_bytes(tree: Any) -> int:
  """Bytes one device holds of a tree of sharded ShapeDtypeStructs."""
  return int(sum(np.prod(x.sharding.shard_shape(x.shape)) * x.dtype.itemsize
                 for x in jax.tree_util.tree_leaves(tree)))


def compile_stats(fn: Callable, args: tuple, exp: trainer.Experiment) -> dict[str, float]:
  """Compiles `fn(*args)` (ShapeDtypeStructs) on the experiment's mesh: GiB per device."""
  tick = time.perf_counter()
  with exp.mesh, nn.logical_axis_rules(exp.rules):
    compiled = jax.jit(fn).lower(*args).compile()
  memory = compiled.memory_analysis()
  return {"temp_gib": memory.temp_size_in_bytes / GIB,
          "argument_gib": memory.argument_size_in_bytes / GIB,
          "compile_s": time.perf_counter() - tick}


def sharded(exp: trainer.Experiment, shape: tuple, dtype: Any) -> jax.ShapeDtypeStruct:
  """A batch-sharded activation input (first axis over the batch's mesh axes)."""
  return jax.ShapeDtypeStruct(shape, dtype, sharding=exp.batch_sharding)


def grad_of(loss: Callable, exp: trainer.Experiment) -> Callable:
  """Gradient of `loss(params, *args)` w.r.t. the params the task trains (as the step)."""
  task = exp.task
  return jax.grad(lambda p, *a: loss(freeze(p, task.trainable, task.frozen), *a))


def part_functions(exp: trainer.Experiment, stage: int) -> dict[str, tuple[Callable, tuple]]:
  """name -> (function, abstract args) of each part of the step, alone."""
  task, config = exp.task, exp.config
  params = exp.abstract_state.params
  batch = trainer.abstract_batch(exp, exp.example_batch)
  b = config.train.batch_size
  rng = jax.random.key(0)
  chunk = config.train.get("loss_chunk", 0)
  diffusion, objective = config.diffusion, config.objective

  def logits_loss(part: str) -> Callable:
    def loss(p, hidden, targets, valid):
      fns = speech_tasks.part_fns(task.model, p, part)
      ce, _ = losses.chunked_cross_entropy(hidden, targets, fns.logits, chunk)
      return losses.ar_loss_from_ce(ce, valid)
    return loss

  if stage == 1:
    prefix_fn = ears_prefix(task, b)
    ears = lambda p, batch: jnp.sum(prefix_fn(p, batch).astype(jnp.float32))  # noqa: E731
    prefix_len = jax.eval_shape(prefix_fn, params, batch).shape[1]

    def lm(p, prefix, prefix_valid, batch):
      rb = objectives.ResponseBatch(prefix, prefix_valid, batch["response"],
                                    batch["response_valid"])
      return objectives.lm_loss(task.thinker_problem(p, rb), rng, objective, diffusion)[0]

    embed, resp = config.model.embed_dim, config.data.response_len
    return {
        "ears": (grad_of(ears, exp), (params, batch)),
        "lm": (grad_of(lm, exp), (params, sharded(exp, (b, prefix_len, embed), jnp.bfloat16),
                                  sharded(exp, (b, prefix_len), jnp.bool_), batch)),
        "logits_loss": (jax.grad(logits_loss("thinker"), argnums=(0, 1)),
                        (params, sharded(exp, (b, resp, embed), jnp.bfloat16),
                         sharded(exp, (b, resp), jnp.int32), sharded(exp, (b, resp), jnp.bool_))),
    }

  def ears_thinker(p, batch):
    return task.thinker_states(p, batch)

  def lm(p, hidden, batch):
    return objectives.lm_loss(task.talker_problem(p, batch, hidden), rng, objective,
                              diffusion)[0]

  resp, speech = config.data.response_len, task.speech_len
  talker_embed = config.talker.model.embed_dim
  return {
      "ears": (ears_thinker, (params, batch)),
      "lm": (grad_of(lm, exp), (params, sharded(exp, (b, resp, config.model.embed_dim),
                                                jnp.bfloat16), batch)),
      "logits_loss": (jax.grad(logits_loss("talker"), argnums=(0, 1)),
                      (params, sharded(exp, (b, speech, talker_embed), jnp.bfloat16),
                       sharded(exp, (b, speech), jnp.int32), sharded(exp, (b, speech), jnp.bool_))),
  }


def layer_cost(layer: nn.Module, inputs: tuple, trained: bool) -> tuple[float, float]:
  """(FLOPs, bytes accessed) of one layer on one sequence: forward, plus (trained) the
  rematerialised forward and the backward, as one iteration of the step's scanned loops."""
  params = jax.eval_shape(layer.init, jax.random.key(0), *inputs)

  def forward(p, x):
    out = layer.apply(p, x, *inputs[1:])
    return jnp.sum((out[0] if isinstance(out, tuple) else out).astype(jnp.float32))

  # the value too: the step's forward loop runs before its backward loop recomputes
  fn = jax.value_and_grad(forward, argnums=(0, 1)) if trained else forward
  cost = jax.jit(fn).lower(params, inputs[0]).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost.get("flops", 0.0)), float(cost.get("bytes accessed", 0.0))


def scan_correction(exp: trainer.Experiment, stage: int) -> tuple[float, float]:
  """(FLOPs, bytes) per device that XLA's cost analysis leaves out of the step: it counts
  the body of a while loop (each `nn.scan` over layers) once, so each scanned stack adds
  (num_layers - 1) layers. With fsdp alone each device runs one sequence's layers."""
  config, task = exp.config, exp.task
  b = config.train.batch_size
  params, batch = exp.abstract_state.params, trainer.abstract_batch(exp, exp.example_batch)
  prefix_len = jax.eval_shape(ears_prefix(task, b), params, batch).shape[1]
  resp = config.data.response_len
  streams = 2 if config.objective == "mdm" and config.diffusion.layout == "two_stream" else 1
  dtype = jnp.dtype(config.model.dtype)

  def decoder_layer(m: ml_collections.ConfigDict, length: int, trained: bool):
    layer = remat_layer(layers_lib.DecoderLayer, m.remat_policy, True)(
        m.num_heads, m.num_kv_heads, m.head_dim, m.mlp_dim, m.rope_theta, m.qkv_bias,
        m.norm_eps, dtype)
    inputs = (jnp.zeros((1, length, m.embed_dim), dtype), jnp.zeros((1, length), jnp.int32),
              jnp.ones((1, length, length), bool))
    return m, layer_cost(layer, inputs, trained)

  e = config.encoder
  frames = -(-config.data.mel_buckets[-1] // e.get("stride", 2))
  enc_layer = remat_layer(EncoderLayer, e.get("remat_policy", "full"), True)(
      e.num_heads, e.mlp_dim, 1e-5, dtype)
  enc_trained = stage == 1 and e.trainable
  stacks = [(e, layer_cost(enc_layer, (jnp.zeros((1, frames, e.embed_dim), dtype),
                                       jnp.ones((1, frames, frames), bool)), enc_trained))]
  if stage == 1:
    stacks.append(decoder_layer(config.model, prefix_len + streams * resp, True))
  else:
    stacks.append(decoder_layer(config.model, prefix_len + resp, False))
    stacks.append(decoder_layer(config.talker.model, resp + streams * task.speech_len, True))
  scanned = [(m, cost) for m, cost in stacks if m.get("scan_layers", False)]
  return (sum((m.num_layers - 1) * f for m, (f, _) in scanned),
          sum((m.num_layers - 1) * by for m, (_, by) in scanned))


def ears_prefix(task: speech_tasks.SpeechThinkerTask, b: int) -> Callable:
  """params, batch -> the Thinker prefix embeddings [b, P, embed] (for its shape)."""
  def fn(p, batch):
    head, tail = task.head_tail(b)
    return task.model.apply({"params": p}, batch["mel"], batch["mel_valid"], head, tail,
                            method=SpeechLLM.audio_prompt)[0]
  return fn


def step_stats(exp: trainer.Experiment, stage: int) -> dict[str, Any]:
  """The whole step: memory (GiB per device), compile seconds (wall and CPU), FLOPs and bytes
  accessed per device (XLA's cost analysis) and their `scan_correction`."""
  step = trainer.CompiledStep(exp)
  tick, cpu_tick = time.perf_counter(), time.process_time()
  compiled = step.compile(exp.example_batch)
  compile_s, compile_cpu_s = time.perf_counter() - tick, time.process_time() - cpu_tick
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  flops, bytes_accessed = scan_correction(exp, stage)
  return {"argument_gib": step.memory["argument"] / GIB,
          "output_gib": step.memory["output"] / GIB, "temp_gib": step.memory["temp"] / GIB,
          "argument_plus_temp_gib": (step.memory["argument"] + step.memory["temp"]) / GIB,
          "compile_s": compile_s, "compile_cpu_s": compile_cpu_s,
          "flops_per_device": throughput.compiled_flops(compiled),
          "bytes_accessed_per_device": float((cost or {}).get("bytes accessed", 0.0)),
          "scan_correction": {"flops_per_device": flops,
                              "bytes_accessed_per_device": bytes_accessed}}


def measure_row(preset: str, stage: int, objective: str, variant: str,
                save: Callable[[dict], None]) -> None:
  """One table row: the whole step, then (--parts) each part alone; `save`d after each."""
  overrides = VARIANTS[variant]
  config = row_config(preset, stage, objective, overrides, _FSDP.value)
  exp = trainer.setup_experiment(config, shapes_only=True)
  state = exp.abstract_state
  row = {"preset": preset, "stage": stage, "objective": objective, "variant": variant,
         "overrides": {k: list(v) if isinstance(v, tuple) else v for k, v in overrides.items()},
         "devices": exp.mesh.size, "global_batch": config.train.batch_size,
         "mel_window_frames": int(config.data.mel_buckets[-1]),
         "num_params": int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(state.params))),
         "params_gib": per_device_bytes(state.params) / GIB,
         "opt_state_gib": per_device_bytes(state.opt_state) / GIB,
         "step": step_stats(exp, stage) if _STEP.value else None,
         "commit": result_file.git_commit()}
  rounded = lambda r: jax.tree_util.tree_map(  # noqa: E731
      lambda x: round(x, 3) if isinstance(x, float) else x, r)
  save(rounded(row))
  if _PARTS.value:
    row["parts"] = {name: compile_stats(fn, args, exp)
                    for name, (fn, args) in part_functions(exp, stage).items()}
    save(rounded(row))
  jax.clear_caches()


def render_table(rows: list[dict]) -> str:
  """The markdown table of the rows (GiB per device)."""
  head = ("| stage | objective | variant | argument | temp | **arg+temp** | params | opt state "
          "| ears (alone) | Thinker/Talker objective (alone) | logits+loss (alone) | compile s |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|\n")
  lines = []
  for r in sorted(rows, key=lambda r: (r["preset"], r["stage"], r["objective"],
                                       r["devices"], list(VARIANTS).index(r["variant"]))):
    s, parts = r["step"], r.get("parts", {})
    part = lambda k, parts=parts: (  # noqa: E731
        f"{parts[k]['temp_gib']:.2f}" if k in parts else "–")
    variant = r["variant"] + ("" if r["devices"] == 8 else f" (fsdp={r['devices']})")
    step = (f"{s['argument_gib']:.2f} | {s['temp_gib']:.2f} | **{s['argument_plus_temp_gib']:.2f}**"
            if s else "– | – | –")
    compile_s = f"{s['compile_s']:.0f}" if s else "–"
    lines.append(f"| {r['preset']} {r['stage']} | {r['objective']} | {variant} | {step} "
                 f"| {r['params_gib']:.2f} | {r['opt_state_gib']:.2f} | {part('ears')} "
                 f"| {part('lm')} | {part('logits_loss')} | {compile_s} |")
  return head + "\n".join(lines) + "\n"


def render_cost(rows: list[dict]) -> str:
  """Roofline step time of each `after` row on each chip: t_compute = FLOPs / peak,
  t_memory = bytes accessed / HBM bandwidth (both per device, from XLA's cost analysis of
  the step plus `scan_correction`),
  step >= max of the two; HFU ceiling = t_compute / step (hardware FLOPs, remat's
  recomputation included)."""
  head = ("| model, stage | chip | arg+temp / HBM | TFLOP per step | t_compute ms "
          "| t_memory ms | step ms (bound) | HFU ceiling | sequences/s per chip |\n"
          "|---|---|---|---|---|---|---|---|---|\n")
  lines = []
  for r in sorted(rows, key=lambda r: (r["preset"], r["stage"], r["objective"], r["devices"])):
    s = r["step"]
    if r["variant"] != "after" or not s or "scan_correction" not in s:
      continue
    flops = s["flops_per_device"] + s["scan_correction"]["flops_per_device"]
    bytes_accessed = (s["bytes_accessed_per_device"]
                      + s["scan_correction"]["bytes_accessed_per_device"])
    for chip in CHIPS:
      peak, (capacity, bandwidth) = throughput.peak_flops(chip), throughput.hbm(chip)
      t_compute = flops / peak
      t_memory = bytes_accessed / bandwidth
      step = max(t_compute, t_memory)
      need = s["argument_plus_temp_gib"] * GIB
      lines.append(
          f"| {r['preset']} {r['stage']} {r['objective']} (fsdp={r['devices']}) | {chip} "
          f"| {need / 1e9:.1f} / {capacity / 1e9:.0f} GB {'fits' if need <= capacity else 'NO'} "
          f"| {flops / 1e12:.1f} | {t_compute * 1e3:.0f} | {t_memory * 1e3:.0f} "
          f"| {step * 1e3:.0f} | {t_compute / step:.0%} | {1 / step:.2f} |")
  return head + "\n".join(lines) + "\n"


def write_doc(path: str, name: str, text: str) -> None:
  """Replaces the text between `path`'s markers `<!-- NAME:begin/end -->` with `text`."""
  begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
  if not os.path.exists(path):
    return
  doc = open(path).read()
  if begin not in doc or end not in doc:
    return
  before, rest = doc.split(begin, 1)
  after = rest.split(end, 1)[1]
  with open(path, "w") as f:
    f.write(f"{before}{begin}\n{text}{end}{after}")


def main(argv):
  del argv
  unknown = sorted(set(_VARIANTS.value) - set(VARIANTS))
  if unknown:
    raise app.UsageError(f"--variants: unknown {unknown}; choose from {sorted(VARIANTS)}")
  if _RECOST.value:
    for row in result_file.read(_OUT.value)["metrics"]["rows"]:
      if row["step"] and row["devices"] == jax.device_count():  # a mesh of this run's size
        config = row_config(row["preset"], row["stage"], row["objective"],
                            VARIANTS[row["variant"]], row["devices"])
        flops, bytes_accessed = scan_correction(
            trainer.setup_experiment(config, shapes_only=True), row["stage"])
        row["step"]["scan_correction"] = {"flops_per_device": round(flops, 3),
                                          "bytes_accessed_per_device": round(bytes_accessed, 3)}
        save(row)
    return
  for spec in _ROWS.value:
    stage, _, objective = spec.partition(":")
    if stage not in ("1", "2") or objective not in ("ar", "mdm"):
      raise app.UsageError(f"--rows: {spec!r} is not STAGE:OBJECTIVE with stage 1|2, ar|mdm")
    for variant in _VARIANTS.value:
      measure_row(_PRESET.value, int(stage), objective, variant, save)


def save(row: dict) -> None:
  """Merges `row` into --out (rows of other runs, even concurrent ones, are kept) and
  rewrites --doc's tables."""
  print(json.dumps(row), flush=True)
  lock_path = os.path.join(tempfile.gettempdir(), os.path.basename(_OUT.value) + ".lock")
  with open(lock_path, "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    rows = result_file.read(_OUT.value)["metrics"]["rows"] if os.path.exists(_OUT.value) else []
    key = lambda r: (r["preset"], r["stage"], r["objective"], r["variant"],  # noqa: E731
                     r["devices"])
    rows = [r for r in rows if key(r) != key(row)] + [row]
    result_file.write(_OUT.value, {"mesh": MESH, "variants": VARIANTS}, {"rows": rows},
                      command=result_file.command_line(module="benchmarks.memory_breakdown"))
    write_doc(_DOC.value, "memory_breakdown", render_table(rows))
    write_doc(_DOC.value, "memory_cost", render_cost(rows))


if __name__ == "__main__":
  app.run(logs.main_quietly(main))
