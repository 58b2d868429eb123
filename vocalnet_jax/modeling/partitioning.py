"""Device mesh and logical-axis -> mesh-axis shardings (MaxText style).

Parameters and activations carry logical names (`embed`, `mlp`, `heads`, ...); the
config's `logical_axis_rules` maps them to the mesh axes (`data`, `fsdp`, `tensor`).
A dimension that a mesh axis does not divide is replicated instead (e.g. 2 KV heads
on a 4-way tensor axis), so one rules table serves every model size.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("data", "fsdp", "tensor")


def mesh_shape(mesh_cfg: ml_collections.ConfigDict, num_devices: int) -> tuple[int, ...]:
  """Resolves the config's mesh sizes (one may be -1 = fill) against the device count."""
  sizes = [int(mesh_cfg[a]) for a in MESH_AXES]
  if sum(s == -1 for s in sizes) > 1 or any(s == 0 or s < -1 for s in sizes):
    raise ValueError(f"config.mesh={dict(mesh_cfg)}: sizes must be positive, at most one -1")
  known = math.prod(s for s in sizes if s != -1)
  if -1 in sizes:
    if num_devices % known:
      raise ValueError(f"config.mesh={dict(mesh_cfg)} does not fit {num_devices} devices: "
                       f"{num_devices} is not divisible by {known}")
    sizes[sizes.index(-1)] = num_devices // known
  if math.prod(sizes) != num_devices:
    raise ValueError(f"config.mesh={dict(mesh_cfg)} needs {math.prod(sizes)} devices but "
                     f"{num_devices} are available")
  return tuple(sizes)


def make_mesh(mesh_cfg: ml_collections.ConfigDict,
              devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A (data, fsdp, tensor) mesh over `devices` (default: all)."""
  devices = list(devices if devices is not None else jax.devices())
  shape = mesh_shape(mesh_cfg, len(devices))
  return Mesh(np.asarray(devices).reshape(shape), MESH_AXES)


def rules_from_config(rules: Sequence[Sequence[Any]]) -> tuple[tuple[str, Any], ...]:
  """ConfigDict lists -> the tuple-of-pairs form flax expects."""
  return tuple((name, tuple(axes) if isinstance(axes, list) else axes) for name, axes in rules)


def _fit_spec(spec: PartitionSpec, shape: tuple[int, ...], mesh: Mesh) -> PartitionSpec:
  """Replicates any dimension its mesh axes do not divide evenly."""
  fitted = []
  for dim, axes in zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec))):
    names = () if axes is None else (axes if isinstance(axes, tuple) else (axes,))
    size = math.prod(mesh.shape[a] for a in names)
    fitted.append(axes if size and dim % size == 0 else None)
  return PartitionSpec(*fitted)


def logical_shardings(abstract_tree: Any, mesh: Mesh, rules) -> Any:
  """NamedShardings for a (boxed, abstract) pytree from its logical axis names."""
  logical_specs = nn.get_partition_spec(abstract_tree)
  mesh_shardings = nn.logical_to_mesh_sharding(logical_specs, mesh, rules)
  shapes = nn.unbox(abstract_tree)
  return jax.tree_util.tree_map(
      lambda sh, x: NamedSharding(mesh, _fit_spec(sh.spec, x.shape, mesh)),
      mesh_shardings, shapes, is_leaf=lambda x: isinstance(x, NamedSharding))


def abstract_with_shardings(init_fn: Callable[..., Any], mesh: Mesh, rules, *args
                            ) -> tuple[Any, Any]:
  """(ShapeDtypeStructs carrying their shardings, the shardings) of `init_fn(*args)`'s
  boxed output, traced without allocating it."""
  with mesh, nn.logical_axis_rules(rules):
    boxed = jax.eval_shape(init_fn, *args)
    shardings = logical_shardings(boxed, mesh, rules)
  abstract = jax.tree_util.tree_map(
      lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), nn.unbox(boxed),
      shardings)
  return abstract, shardings
