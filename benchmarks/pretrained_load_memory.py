"""Peak host memory while a 1b-shaped bf16 Llama checkpoint loads onto 8 devices (fsdp).

  XLA_FLAGS=--xla_force_host_platform_device_count=8 \
    python -m benchmarks.pretrained_load_memory [--dir=SCRATCH] [--out=JSON]

Writes a random checkpoint with `configs/ar.py:1b,text`'s Thinker shapes (Llama-3.2-1B:
16 x 2048, 32/8 heads, vocabulary 128256, tied; bf16 safetensors, one shard per layer)
into a scratch directory, then, in a fresh process, loads it the way a run does
(`config.model.from_checkpoint` + `pretrained.load_thinker` onto the scanned params of
an fsdp=8 mesh, here in bfloat16) and reports its peak RSS next to the checkpoint's size.
On a CPU the 8 devices are host memory, so the placed params themselves count in the
RSS: the loader's own cost is the peak minus the baseline minus the placed bytes.
The scratch checkpoint is deleted afterwards (~2.5 GB).
"""
from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
from absl import app, flags

from launch import logs

_DIR = flags.DEFINE_string("dir", None, "Scratch directory (default: a new temporary one).")
_OUT = flags.DEFINE_string("out", "benchmarks/results/pretrained_load_memory_1b_cpu8.json",
                           "Result JSON.")
_WRITE = flags.DEFINE_string("write", None, "Internal: write the checkpoint here, print JSON.")
_MEASURE = flags.DEFINE_string("measure", None, "Internal: load this checkpoint, print JSON.")
CONFIG = "configs/ar.py:1b,text"


def _config():
  from configs import ar
  config = ar.get_config("1b,text")
  config.mesh.update(data=1, fsdp=8, tensor=1)
  return config


def write_checkpoint(directory: str) -> int:
  """A random bf16 Llama with the config's Thinker shapes, one safetensors shard per
  layer (the host holds one layer at a time); returns its size in bytes."""
  import ml_dtypes
  from flax import traverse_util
  from safetensors.numpy import save_file

  from vocalnet_jax.models import hf_export, hf_import, hf_layout
  from vocalnet_jax.models.decoder import decoder_from_config

  config = _config()
  config.model.scan_layers = False
  decoder = decoder_from_config(config.model, config.model.vocab_size)
  hp = {f: getattr(decoder, f) for f in ("vocab_size", "embed_dim", "num_layers", "num_heads",
                                         "num_kv_heads", "head_dim", "mlp_dim", "rope_theta",
                                         "qkv_bias", "tie_embeddings", "norm_eps",
                                         "rope_scaling")}
  shapes = traverse_util.flatten_dict(hf_import.decoder_abstract(hp))
  table = hf_layout.decoder_tensors(hp["num_layers"], hp["num_heads"], hp["num_kv_heads"],
                                    hp["qkv_bias"], hp["tie_embeddings"])
  rng = np.random.default_rng(0)
  shards: dict[str, list] = {}  # one per layer, and one for the embedding and final norm
  for path, entry in table.items():
    shards.setdefault(path[0] if path[0].startswith("layers_") else "rest", []).append(
        (path, entry))
  weight_map, total = {}, 0
  for i, entries in enumerate(shards.values()):
    tensors = {}
    for path, (name, layout) in entries:
      x = np.empty(shapes[path].shape, ml_dtypes.bfloat16)
      flat = x.reshape(-1)
      for start in range(0, flat.size, 1 << 24):  # 16M values at a time
        chunk = rng.standard_normal(min(1 << 24, flat.size - start), np.float32)
        flat[start:start + chunk.size] = 0.02 * chunk
      tensors[name] = np.ascontiguousarray(layout.to_hf(x))
    file = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
    save_file(tensors, os.path.join(directory, file), metadata={"format": "pt"})
    weight_map.update({name: file for name in tensors})
    total += sum(x.nbytes for x in tensors.values())
    del tensors
  with open(os.path.join(directory, "model.safetensors.index.json"), "w") as f:
    json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f)
  with open(os.path.join(directory, "config.json"), "w") as f:
    json.dump(hf_export.hf_config(decoder, "bfloat16", 131072), f, indent=1)
  return total


def _rss_bytes() -> int:
  with open("/proc/self/statm") as f:
    return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure(directory: str) -> dict:
  """Loads `directory` as a run's Thinker (bf16, fsdp=8, scanned); memory in bytes."""
  import jax

  from vocalnet_jax.modeling import partitioning, pretrained, restore
  from vocalnet_jax.modeling.build import build

  config = _config()
  config.model.from_checkpoint = f"hf:{directory}"
  config = pretrained.resolve_config(config)
  mesh = partitioning.make_mesh(config.mesh)
  abstract = restore.abstract_params(build(config), mesh,
                                     partitioning.rules_from_config(config.logical_axis_rules))
  abstract = restore.cast_params(abstract, "bfloat16")
  jax.block_until_ready(jax.device_put(np.zeros(1)))  # the runtime up before the baseline
  baseline = _rss_bytes()
  tick = time.perf_counter()
  params = pretrained.load_thinker(config.model.from_checkpoint, abstract, config)
  jax.block_until_ready(params)
  seconds = time.perf_counter() - tick
  placed = sum(x.nbytes for x in jax.tree_util.tree_leaves(params))
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
  from vocalnet_jax.evaluation import result_file
  return dict(baseline_rss_bytes=baseline, peak_rss_bytes=peak, final_rss_bytes=_rss_bytes(),
              placed_params_bytes=placed, load_s=round(seconds, 1),
              devices=mesh.size, mesh=dict(mesh.shape), device=result_file.device_info())


def _in_child(flag: str, directory: str) -> dict:
  """Runs this module with `--flag=directory` in a fresh process (the parent holds no
  JAX runtime and no tensor); its RESULT line."""
  proc = subprocess.run([sys.executable, "-m", "benchmarks.pretrained_load_memory",
                         f"--{flag}={directory}"], text=True, stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT, check=False)
  lines = [s for s in proc.stdout.splitlines() if s.startswith("RESULT ")]
  if proc.returncode or not lines:
    sys.exit(f"error: --{flag} failed:\n{proc.stdout[-2000:]}")
  return json.loads(lines[-1][len("RESULT "):])


def main(argv):
  del argv
  if _WRITE.value or _MEASURE.value:
    tick = time.perf_counter()
    out = (dict(checkpoint_bytes=write_checkpoint(_WRITE.value)) if _WRITE.value
           else measure(_MEASURE.value))
    print("RESULT " + json.dumps(dict(out, seconds=round(time.perf_counter() - tick, 1))),
          flush=True)
    return
  from vocalnet_jax.evaluation import result_file
  directory = tempfile.mkdtemp(dir=_DIR.value)
  try:
    written = _in_child("write", directory)
    size, write_s = written["checkpoint_bytes"], written["seconds"]
    print(f"wrote a {size / 2**30:.2f} GiB checkpoint in {write_s:.0f} s", flush=True)
    m = _in_child("measure", directory)
  finally:
    shutil.rmtree(directory, ignore_errors=True)
  gib = lambda b: round(b / 2**30, 3)  # noqa: E731
  metrics = dict(
      checkpoint_gib=gib(size), placed_params_gib=gib(m["placed_params_bytes"]),
      baseline_rss_gib=gib(m["baseline_rss_bytes"]), peak_rss_gib=gib(m["peak_rss_bytes"]),
      final_rss_gib=gib(m["final_rss_bytes"]),
      loader_overhead_gib=gib(m["peak_rss_bytes"] - m["baseline_rss_bytes"]
                              - m["placed_params_bytes"]),
      load_s=m["load_s"], write_s=write_s)
  print(f"checkpoint {metrics['checkpoint_gib']} GiB; peak RSS {metrics['peak_rss_gib']} GiB "
        f"(baseline {metrics['baseline_rss_gib']}, placed params "
        f"{metrics['placed_params_gib']}, loader overhead {metrics['loader_overhead_gib']})")
  result_file.write(_OUT.value, dict(config=CONFIG, mesh=m["mesh"], devices=m["devices"],
                                     checkpoint_dtype="bfloat16", params_dtype="bfloat16",
                                     layers="scanned"), metrics,
                    command=result_file.command_line(module="benchmarks.pretrained_load_memory"),
                    device=m["device"])


if __name__ == "__main__":
  app.run(logs.main_quietly(main))
