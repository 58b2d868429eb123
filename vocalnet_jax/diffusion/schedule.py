"""Masking schedules of the absorbing-state process: alpha(t) = P(token still clean at t).

t = 0 is clean, t = 1 fully masked. The MDM loss weight is -alpha'(t) / (1 - alpha(t))
(= 1/t for the linear schedule). A schedule is picked by a short string:
`linear`, `cosine`, or `polyK` (e.g. `poly3`).
"""
from __future__ import annotations

import dataclasses
import functools
import math
import re
from typing import Callable

import jax
import jax.numpy as jnp

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class Schedule:
  """alpha(t), its derivative and the inverse of the mask ratio 1 - alpha(t)."""
  name: str
  alpha: Callable[[Array], Array]
  dalpha: Callable[[Array], Array]
  t_from_mask_ratio: Callable[[Array], Array]

  def mask_prob(self, t: Array) -> Array:
    """Probability that a token is [MASK] at time t."""
    return 1.0 - self.alpha(t)

  def loss_weight(self, t: Array) -> Array:
    """-alpha'(t) / (1 - alpha(t)): the ELBO weight of a masked token's cross-entropy."""
    return -self.dalpha(t) / jnp.maximum(1.0 - self.alpha(t), 1e-12)


def _poly(k: float) -> Schedule:
  return Schedule(f"poly{k:g}", alpha=lambda t: 1.0 - t**k, dalpha=lambda t: -k * t**(k - 1),
                  t_from_mask_ratio=lambda r: r**(1.0 / k))


_HALF_PI = math.pi / 2
_COSINE = Schedule(
    "cosine", alpha=lambda t: jnp.cos(_HALF_PI * t),
    dalpha=lambda t: -_HALF_PI * jnp.sin(_HALF_PI * t),
    t_from_mask_ratio=lambda r: jnp.arccos(1.0 - r) / _HALF_PI)


@functools.lru_cache(maxsize=None)
def get_schedule(name: str) -> Schedule:
  """`linear` | `cosine` | `polyK` (K > 0), else a ValueError naming the field.

  Cached, so a name always maps to the same (hashable) object and jit does not
  recompile when a schedule is passed as a static argument.
  """
  if name == "linear":
    return _poly(1.0)
  if name == "cosine":
    return _COSINE
  match = re.fullmatch(r"poly(\d+(?:\.\d+)?)", name)
  if match and float(match.group(1)) > 0:
    return _poly(float(match.group(1)))
  raise ValueError(f"diffusion.schedule={name!r} is not a known schedule; "
                   "use 'linear', 'cosine' or 'polyK' (e.g. 'poly3')")


def antithetic_times(rng: Array, n: int, eps: float = 1e-3) -> Array:
  """n times in [eps, 1], stratified: (u + i/n) mod 1, which lowers the loss variance."""
  u = jax.random.uniform(rng, ())
  t = jnp.mod(u + jnp.arange(n) / n, 1.0)  # [n]
  return eps + (1.0 - eps) * t
