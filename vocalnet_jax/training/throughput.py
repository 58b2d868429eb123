"""Model FLOPs utilisation: the train step's matmul FLOPs, counted on its jaxpr, against
the chip's peak (dense bf16, from a small table); unknown chips (CPU) give None.

The count walks the traced step, not the compiled one: XLA's cost analysis counts a loop
body once, so a model with scanned layers (`scan_layers`) would report 1/num_layers of its
FLOPs. Here a `scan` multiplies its body by its length; rematerialised forwards inside the
backward pass are counted (hardware FLOPs, as the chip runs them).
"""
from __future__ import annotations

import math
from typing import Any, Iterator, Optional

import jax

# device_kind substring -> peak dense bf16 FLOP/s per device; first match wins, so more
# specific names come first ("TPU v5 lite" is v5e, plain "TPU v5" is v5p).
PEAK_FLOPS = (
    ("H200", 989e12), ("H100", 989e12), ("A100", 312e12),
    ("TPU v6 lite", 918e12), ("TPU v6e", 918e12),
    ("TPU v5 lite", 197e12), ("TPU v5e", 197e12), ("TPU v5p", 459e12), ("TPU v5", 459e12),
    ("TPU v4", 275e12),
)


# device_kind substring -> (HBM bytes, HBM bytes/s) per chip, from the vendors' spec pages
# (cloud.google.com/tpu/docs/v5e, /v5p; nvidia.com/en-us/data-center/h100, /h200: SXM).
HBM = (("H200", 141e9, 4.8e12), ("H100", 80e9, 3.35e12),
       ("TPU v5 lite", 16e9, 819e9), ("TPU v5e", 16e9, 819e9), ("TPU v5p", 95e9, 2765e9))


def _lookup(table: tuple, device_kind: str) -> Optional[tuple]:
  return next((row[1:] for row in table if row[0].lower() in device_kind.lower()), None)


def peak_flops(device_kind: str) -> Optional[float]:
  """Peak bf16 FLOP/s of one device of this kind, None if the chip is not in the table."""
  found = _lookup(PEAK_FLOPS, device_kind)
  return found[0] if found else None


def hbm(device_kind: str) -> Optional[tuple[float, float]]:
  """(HBM bytes, HBM bytes/s) of one chip of this kind, None if not in the table."""
  return _lookup(HBM, device_kind)


def compiled_flops(compiled: Any) -> Optional[float]:
  """FLOPs of one call of a compiled (SPMD) executable on one device, as XLA reports them
  (a loop body counted once)."""
  analysis = compiled.cost_analysis()
  if isinstance(analysis, (list, tuple)):  # older JAX: one dict per executable
    analysis = analysis[0] if analysis else None
  flops = (analysis or {}).get("flops")
  return float(flops) if flops and flops > 0 else None


def _sub_jaxprs(params: dict) -> Iterator[Any]:
  """The jaxprs an equation runs (pjit, remat, custom_vjp, cond branches, scan bodies)."""
  for value in params.values():
    for item in value if isinstance(value, (tuple, list)) else (value,):
      if isinstance(item, jax.extend.core.ClosedJaxpr):
        yield item.jaxpr
      elif isinstance(item, jax.extend.core.Jaxpr):
        yield item


def jaxpr_matmul_flops(jaxpr: Any) -> float:
  """2 x M x N x K summed over every dot_general of `jaxpr` (a Jaxpr or ClosedJaxpr), a scan
  body counted `length` times and a cond by its costliest branch. A while loop, whose trip
  count is not static, counts its body once."""
  jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
  total = 0.0
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    if name == "dot_general":
      (lhs_contract, _), _ = eqn.params["dimension_numbers"]
      lhs_shape = eqn.invars[0].aval.shape
      contracted = math.prod(lhs_shape[d] for d in lhs_contract)
      total += 2.0 * contracted * math.prod(eqn.outvars[0].aval.shape)
    elif name == "cond":
      total += max(jaxpr_matmul_flops(b) for b in eqn.params["branches"])
    else:
      inner = sum(jaxpr_matmul_flops(sub) for sub in _sub_jaxprs(eqn.params))
      total += inner * (eqn.params["length"] if name == "scan" else 1)
  return total


def mfu(flops_per_device: Optional[float], seconds: float, device_kind: str) -> Optional[float]:
  """Achieved / peak FLOP/s over a window in which each device ran `flops_per_device`."""
  peak = peak_flops(device_kind)
  if peak is None or flops_per_device is None or seconds <= 0:
    return None
  return flops_per_device / seconds / peak
