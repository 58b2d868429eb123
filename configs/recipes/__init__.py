"""Named recipes: stage chains that `python -m launch.recipe` runs and resumes (docs/recipes.md)."""
from __future__ import annotations

from typing import Any


def knobs(arg: str | None, defaults: dict[str, Any]) -> dict[str, Any]:
  """'seed=1,mdm_steps=600' -> defaults with those knobs replaced (cast to the default's type).

  ValueError names an unknown knob or a value of the wrong type.
  """
  out = dict(defaults)
  for part in (p for p in (arg or "").split(",") if p):
    key, sep, value = part.partition("=")
    if key not in defaults or not sep:
      raise ValueError(f"unknown recipe option {part!r}; options (key=value): {sorted(defaults)}")
    try:
      out[key] = type(defaults[key])(value)
    except ValueError:
      raise ValueError(f"recipe option {key}={value!r}: expected "
                       f"{type(defaults[key]).__name__}") from None
  return out
