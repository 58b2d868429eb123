"""Params of a training workdir's latest orbax checkpoint (or of an export), and a
config's model with them.

Only `state.params` is read (never the optimizer state or the data iterator), onto the
shardings of the caller's abstract params, so answering a question needs the
checkpoint and the config's tokenizers but no optimizer and no training split.

An export directory (`launch.export`: params only, in a serving dtype) is read the same
way: `restore_params` decides which it was given by what is on disk (`export.json`).
"""
from __future__ import annotations

import json
import os
from typing import Any, Optional, Sequence

import flax.linen as nn
import jax
import ml_collections
import jax.numpy as jnp
import orbax.checkpoint as ocp
from absl import logging
from etils import epath

from vocalnet_jax.modeling import partitioning, paths
from vocalnet_jax.modeling.build import Model, build
from vocalnet_jax.modeling.validate import ConfigError, validate_config


def checkpoint_dir(workdir: str) -> str:
  """Where the trainer keeps a run's checkpoints."""
  return paths.absolute(os.path.join(workdir, "checkpoints"))


EXPORT_INFO = "export.json"  # written last by launch.export: marks a complete export
EXPORT_PARAMS = "params"  # the export's sharded orbax checkpoint of params


def is_export(directory: str) -> bool:
  """Whether `directory` is an export (launch.export) rather than a training workdir."""
  return (epath.Path(directory) / EXPORT_INFO).exists()


def cast_params(params: Any, dtype: Any) -> Any:
  """Floating leaves (arrays or ShapeDtypeStructs) in `dtype`; other leaves unchanged."""
  def cast(x):
    if not jnp.issubdtype(x.dtype, jnp.floating):
      return x
    if isinstance(x, jax.ShapeDtypeStruct):
      return jax.ShapeDtypeStruct(x.shape, jnp.dtype(dtype), sharding=x.sharding)
    return x.astype(dtype)
  return jax.tree_util.tree_map(cast, params)


def checkpoint_steps(workdir: str) -> list[int]:
  """The steps saved in `workdir`, ascending; ConfigError if there is none."""
  directory = checkpoint_dir(workdir)
  if not epath.Path(directory).is_dir():
    raise ConfigError(f"{workdir!r} holds no checkpoint ({directory} is missing)")
  manager = ocp.CheckpointManager(directory, item_names=("state",))
  try:
    steps = sorted(manager.all_steps())
  finally:
    manager.close()
  if not steps:
    raise ConfigError(f"{workdir!r} holds no checkpoint (no step in {directory})")
  return steps


def checkpoint_step(workdir: str, step: Optional[int] = None) -> int:
  """`step` if `workdir` holds it, else its latest step; ConfigError if there is none."""
  steps = checkpoint_steps(workdir)
  if step is None:
    return steps[-1]
  if step not in steps:
    raise ConfigError(f"{workdir!r} has no step {step} (steps: {steps})")
  return step


def _nest(scope: Sequence[str], tree: Any) -> Any:
  for name in reversed(scope):
    tree = {name: tree}
  return tree


def _restore_export(export_dir: str, abstract_params: Any, scope: Sequence[str],
                    exported_dtype: bool) -> Any:
  """An export read as if it were a training checkpoint whose params are the export's
  params nested under its `params_scope` (a distillation run exports its student)."""
  info = json.loads((epath.Path(export_dir) / EXPORT_INFO).read_text(encoding="utf-8"))
  stored_scope = tuple(info["params_scope"])
  item = _nest(scope, abstract_params)
  for name in stored_scope:
    if not isinstance(item, dict) or name not in item:
      raise ConfigError(f"export {export_dir} holds only the params under "
                        f"{'/'.join(stored_scope)}, not those asked for")
    item = item[name]
  if exported_dtype:  # restored in the dtype it was exported in, else in abstract_params'
    item = cast_params(item, info["dtype"])
  logging.info("loading params from export %s (step %d, %s)", export_dir, info["step"],
               info["dtype"])
  try:
    with ocp.StandardCheckpointer() as checkpointer:
      restored = checkpointer.restore(
          os.path.join(paths.absolute(export_dir), EXPORT_PARAMS), item)
  except (ValueError, KeyError) as e:
    raise ConfigError(f"export {export_dir} does not fit this config "
                      f"(preset/model sizes, config.data.dir vocabularies): {e}") from None
  params = _nest(stored_scope, restored)
  for name in scope:
    params = params[name]
  return params


def restore_params(workdir: str, abstract_params: Any, scope: Sequence[str] = (),
                   step: Optional[int] = None, exported_dtype: bool = True) -> Any:
  """`state.params[scope...]` of `step` (default: the latest) in `workdir`, onto
  `abstract_params`' shardings (ShapeDtypeStructs, any mesh). `workdir` may also be an
  export directory (`launch.export`), whose params keep their exported dtype unless
  `exported_dtype` is False (then they take `abstract_params`' dtypes, as for init_from)."""
  if is_export(workdir):
    if step is not None:
      raise ConfigError(f"{workdir!r} is an export (one step); --step does not apply")
    return _restore_export(workdir, abstract_params, scope, exported_dtype)
  step = checkpoint_step(workdir, step)
  manager = ocp.CheckpointManager(checkpoint_dir(workdir), item_names=("state",))
  try:
    logging.info("loading params from %s step %d", workdir, step)
    item = {"params": _nest(scope, abstract_params)}
    try:
      restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(
          item=item, restore_args=ocp.checkpoint_utils.construct_restore_args(item),
          partial_restore=True)))
    except ValueError as e:  # shapes differ: another preset, tokenizer or unit codebook
      raise ConfigError(f"checkpoint {workdir} (step {step}) does not fit this config "
                        f"(preset/model sizes, config.data.dir vocabularies): {e}") from None
  finally:
    manager.close()
  params = restored["state"]["params"]
  for name in scope:
    params = params[name]
  return params


def abstract_params(model: Model, mesh: jax.sharding.Mesh, rules: Any) -> Any:
  """The model's params as ShapeDtypeStructs carrying their logical-axis shardings."""
  abstract, _ = partitioning.abstract_with_shardings(model.init_params, mesh, rules,
                                                     jax.random.key(0))
  return abstract


def load(config: ml_collections.ConfigDict, workdir: Optional[str] = None,
         devices: Optional[Sequence[jax.Device]] = None,
         seed: Optional[int] = None) -> tuple[Model, Any]:
  """The model of `config` with its answering params, laid out on `config.mesh` over
  `devices` (default: all): those of `workdir`'s latest checkpoint, or a random init
  from key `seed` (default `config.seed`) when `workdir` is None."""
  validate_config(config)
  model = build(config)
  mesh = partitioning.make_mesh(config.mesh, devices)
  rules = partitioning.rules_from_config(config.logical_axis_rules)
  abstract = abstract_params(model, mesh, rules)
  if workdir:
    return model, restore_params(workdir, abstract, model.params_scope)
  shardings = jax.tree_util.tree_map(lambda x: x.sharding, abstract)
  with mesh, nn.logical_axis_rules(rules):
    init = jax.jit(lambda r: nn.unbox(model.init_params(r)), out_shardings=shardings)
    return model, init(jax.random.key(config.seed if seed is None else seed))
