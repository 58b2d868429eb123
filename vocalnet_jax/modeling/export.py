"""A training run's answering params as a sharded orbax export for serving.

`export` restores only the params (a distillation run: its student), casts floating
params to the serving dtype and writes E/params (orbax, one shard per device, restorable
onto any mesh), E/config.json (the run's config, its mesh set to fill the devices there
are) and E/export.json (source, step, dtype; written last, it marks a complete export).
`modeling.restore` reads an export as well as a workdir.
"""
from __future__ import annotations

import json
import os
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

from vocalnet_jax.modeling import partitioning, restore, run_config
from vocalnet_jax.modeling.build import build
from vocalnet_jax.modeling.validate import ConfigError

DTYPES = ("float32", "bfloat16", "float16")


def export(workdir: str, out: str, dtype: Optional[str] = None, step: Optional[int] = None,
           devices: Optional[Sequence[jax.Device]] = None) -> dict:
  """Writes the export of `workdir` to `out`; returns what export.json records.
  Raises ConfigError (one line) for a bad workdir, step, out or dtype."""
  config = run_config.read(workdir) if os.path.isdir(workdir) else None
  if config is None:
    raise ConfigError(f"--workdir={workdir} is not a training workdir "
                      f"(no {os.path.join(workdir, run_config.FILENAME)})")
  if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
    raise ConfigError(f"--out={out} already exists and is not empty; refusing to overwrite it")
  dtype = dtype or config.model.dtype
  if dtype not in DTYPES:
    raise ConfigError(f"--dtype={dtype} is not one of {', '.join(DTYPES)}")
  step = restore.checkpoint_step(workdir, step)

  model = build(config)
  devices = list(devices if devices is not None else jax.devices())
  try:
    mesh = partitioning.make_mesh(config.mesh, devices)
  except ValueError:  # trained on another device count: any layout will do for writing
    mesh = partitioning.make_mesh(_fill_mesh(config.mesh), devices)
  rules = partitioning.rules_from_config(config.logical_axis_rules)
  abstract = restore.abstract_params(model, mesh, rules)
  params = restore.restore_params(workdir, abstract, model.params_scope, step)
  params = restore.cast_params(params, jnp.dtype(dtype))

  out = os.path.abspath(out)
  with ocp.StandardCheckpointer() as checkpointer:
    checkpointer.save(os.path.join(out, restore.EXPORT_PARAMS), params)
    checkpointer.wait_until_finished()
  info = {"source": os.path.abspath(workdir), "step": int(step), "dtype": dtype,
          "params_scope": list(model.params_scope), "task": config.task}
  if jax.process_index() == 0:
    served = config.copy_and_resolve_references()
    served.mesh = _fill_mesh(config.mesh)
    run_config.write(served, out)
    with open(os.path.join(out, restore.EXPORT_INFO), "w", encoding="utf-8") as f:
      json.dump(info, f, indent=1)
  return info


def _fill_mesh(mesh_cfg):
  """All devices on fsdp: a layout that fits any device count (decode may override it)."""
  mesh_cfg = mesh_cfg.copy_and_resolve_references()
  mesh_cfg.data, mesh_cfg.fsdp, mesh_cfg.tensor = 1, -1, 1
  return mesh_cfg
