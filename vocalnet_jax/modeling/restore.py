"""Params of a training workdir's latest orbax checkpoint, and a config's model with them.

Only `state.params` is read (never the optimizer state or the data iterator), onto the
shardings of the caller's abstract params, so answering a question needs the
checkpoint and the config's tokenizers but no optimizer and no training split.
"""
from __future__ import annotations

import os
from typing import Any, Optional, Sequence

import flax.linen as nn
import jax
import ml_collections
import orbax.checkpoint as ocp
from absl import logging

from vocalnet_jax.modeling import partitioning
from vocalnet_jax.modeling.build import Model, build
from vocalnet_jax.modeling.validate import ConfigError, validate_config


def checkpoint_dir(workdir: str) -> str:
  """Where the trainer keeps a run's checkpoints."""
  return os.path.abspath(os.path.join(workdir, "checkpoints"))


def _nest(scope: Sequence[str], tree: Any) -> Any:
  for name in reversed(scope):
    tree = {name: tree}
  return tree


def restore_params(workdir: str, abstract_params: Any, scope: Sequence[str] = ()) -> Any:
  """`state.params[scope...]` of the latest step in `workdir`, onto `abstract_params`'
  shardings (ShapeDtypeStructs, any mesh)."""
  directory = checkpoint_dir(workdir)
  if not os.path.isdir(directory):
    raise FileNotFoundError(f"{workdir!r} holds no checkpoint ({directory} is missing)")
  manager = ocp.CheckpointManager(directory, item_names=("state",))
  try:
    step = manager.latest_step()
    if step is None:
      raise FileNotFoundError(f"{workdir!r} holds no checkpoint (no step in {directory})")
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
