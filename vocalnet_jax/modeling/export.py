"""A training run's answering params exported for serving: a sharded orbax checkpoint,
or the Thinker as a Hugging Face Llama/Qwen2 checkpoint.

`export` restores only the params (a distillation run: its student) and casts floating
params to the serving dtype. Format `orbax` writes E/params (one shard per device,
restorable onto any mesh), E/config.json (the run's config, its mesh set to fill the
devices there are) and E/export.json (source, step, dtype; written last, it marks a
complete export); `modeling.restore` reads such an export as well as a workdir. Format
`hf` writes the Thinker (a speech run's `thinker` sub-tree) with `models.hf_export`:
config.json + safetensors that `models.hf_import` and transformers load, plus the run's
sentencepiece `tokenizer.model` when it has one. Directories may be `gs://` paths.
"""
from __future__ import annotations

import json
import os
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import orbax.checkpoint as ocp
from etils import epath
from jax.experimental import multihost_utils

from vocalnet_jax.modeling import partitioning, paths, restore, run_config
from vocalnet_jax.modeling.build import Model, build
from vocalnet_jax.modeling.validate import ConfigError
from vocalnet_jax.models import hf_export
from vocalnet_jax.models.decoder import Decoder

DTYPES = ("float32", "bfloat16", "float16")
FORMATS = ("orbax", "hf")


def export(workdir: str, out: str, dtype: Optional[str] = None, step: Optional[int] = None,
           devices: Optional[Sequence[jax.Device]] = None, fmt: str = "orbax") -> dict:
  """Writes the export of `workdir` to `out` in format `fmt`; returns what it records
  (export.json, or config.json's `vocalnet_jax` entry for `hf`).
  Raises ConfigError (one line) for a bad workdir, step, out, dtype or format, or a
  Thinker that Llama/Qwen2 cannot express."""
  config = _training_config(workdir)
  if fmt not in FORMATS:
    raise ConfigError(f"--format={fmt} is not one of {', '.join(FORMATS)}")
  target = epath.Path(out)
  if target.exists() and (not target.is_dir() or any(target.iterdir())):
    raise ConfigError(f"--out={out} already exists and is not empty; refusing to overwrite it")
  dtype = dtype or config.model.dtype
  if dtype not in DTYPES:
    raise ConfigError(f"--dtype={dtype} is not one of {', '.join(DTYPES)}")
  step = restore.checkpoint_step(workdir, step)
  if jax.process_count() > 1:  # no host writes into `out` before every host has checked it
    multihost_utils.sync_global_devices("launch.export: inputs checked")

  model = build(config)
  module, sub_scope = (_thinker(model, workdir) if fmt == "hf" else (model.module, ()))
  devices = list(devices if devices is not None else jax.devices())
  try:
    mesh = partitioning.make_mesh(config.mesh, devices)
  except ValueError:  # trained on another device count: any layout will do for writing
    mesh = partitioning.make_mesh(_fill_mesh(config.mesh), devices)
  rules = partitioning.rules_from_config(config.logical_axis_rules)
  abstract = restore.abstract_params(model, mesh, rules)
  for name in sub_scope:
    abstract = abstract[name]
  scope = model.params_scope + sub_scope
  params = restore.restore_params(workdir, abstract, scope, step)
  params = restore.cast_params(params, jnp.dtype(dtype))
  info = {"source": paths.absolute(workdir), "step": int(step), "dtype": dtype,
          "params_scope": list(scope), "task": config.task}
  if fmt == "hf":
    _write_hf(config, model, module, params, out, info)
  else:
    _write_orbax(config, params, out, info)
  return info


def _training_config(workdir: str) -> ml_collections.ConfigDict:
  """The config of a training workdir; ConfigError naming what `workdir` is instead."""
  if restore.is_export(workdir):
    raise ConfigError(f"--workdir={workdir} is an export (launch.export output), not a "
                      "training workdir")
  config = run_config.read(workdir)
  if config is None:
    raise ConfigError(f"--workdir={workdir} is not a training workdir "
                      f"(no {os.path.join(workdir, run_config.FILENAME)})")
  return config


def _thinker(model: Model, workdir: str) -> tuple[Decoder, tuple[str, ...]]:
  """The text decoder of `model` and its path in the params; ConfigError if there is
  none or Llama/Qwen2 cannot express it."""
  module = model.module
  if isinstance(module, Decoder):
    found: tuple[Decoder, tuple[str, ...]] = (module, ())
  elif isinstance(getattr(module, "thinker", None), Decoder):
    found = (module.thinker, ("thinker",))
  else:
    raise ConfigError(f"--format=hf: the model of {workdir} ({type(module).__name__}) has no "
                      "Thinker decoder to write as Llama/Qwen2")
  try:
    hf_export.check(found[0])
  except hf_export.NotExpressible as e:
    raise ConfigError(f"--format=hf: the Thinker of {workdir} cannot be written as "
                      f"Llama/Qwen2: {e}") from None
  return found


def _write_orbax(config: ml_collections.ConfigDict, params, out: str, info: dict) -> None:
  out = paths.absolute(out)
  with ocp.StandardCheckpointer() as checkpointer:
    checkpointer.save(os.path.join(out, restore.EXPORT_PARAMS), params)
    checkpointer.wait_until_finished()
  if jax.process_index() == 0:
    served = config.copy_and_resolve_references()
    served.mesh = _fill_mesh(config.mesh)
    run_config.write(served, out)
    (epath.Path(out) / restore.EXPORT_INFO).write_text(json.dumps(info, indent=1))


def _write_hf(config: ml_collections.ConfigDict, model: Model, thinker: Decoder, params,
              out: str, info: dict) -> None:
  """Gathers the Thinker onto every host; process 0 writes it (and the tokenizer)."""
  host = (multihost_utils.process_allgather(params, tiled=True) if jax.process_count() > 1
          else jax.device_get(params))
  if jax.process_index() != 0:
    return
  extra = {"bos_token_id": model.ids.bos_id, "eos_token_id": model.ids.eos_id,
           "vocalnet_jax": dict(info, objective=config.objective, mask_id=model.ids.mask_id)}
  try:
    hf_export.save(out, thinker, host,
                   config.data.prompt_len + config.data.response_len, extra)
  except hf_export.NotExpressible as e:
    raise ConfigError(f"--format=hf: {info['source']} cannot be written as Llama/Qwen2: "
                      f"{e}") from None
  data_dir = config.data.get("dir")  # speech runs; a text run's tokenizer is characters
  if data_dir and (epath.Path(data_dir) / "tokenizer.model").is_file():
    (epath.Path(data_dir) / "tokenizer.model").copy(epath.Path(out) / "tokenizer.model")


def _fill_mesh(mesh_cfg):
  """All devices on fsdp: a layout that fits any device count (decode may override it)."""
  mesh_cfg = mesh_cfg.copy_and_resolve_references()
  mesh_cfg.data, mesh_cfg.fsdp, mesh_cfg.tensor = 1, -1, 1
  return mesh_cfg
