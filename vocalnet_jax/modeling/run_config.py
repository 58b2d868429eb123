"""The workdir remembers its run: `config.json` is written when training starts and read
back by decode, evaluate, distill, benchmark and `init_from`, which compare it with the
config they were given: a field the params or the decoder depend on must agree (error),
a field that only changes what is read or scored is reported (warning)."""
from __future__ import annotations

import json
import os
from typing import Any, Optional, Sequence

import ml_collections
from absl import logging

from vocalnet_jax.modeling.validate import ConfigError

FILENAME = "config.json"
_ABSENT = "(absent)"
# The params' shapes: a checkpoint restores only into a model with these.
PARAM_FIELDS = ("model", "encoder", "adaptor", "talker.model", "talker.num_units")
# What the trained model expects at decode time, beyond its shapes.
HARD_FIELDS = PARAM_FIELDS + (
    "objective", "diffusion.block_size", "diffusion.sampler_steps", "diffusion.layout",
    "diffusion.shift_logits", "talker.chunk_size", "talker.text_per_chunk")
# The data and the masking: another value is legitimate but worth a word.
SOFT_FIELDS = ("preset", "task", "data", "diffusion.schedule", "diffusion.masking")


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
  if isinstance(tree, dict):
    out = {}
    for k, v in tree.items():
      out.update(_flatten(v, f"{prefix}{k}."))
    return out
  return {prefix[:-1]: tree}


def _plain(config: ml_collections.ConfigDict) -> dict[str, Any]:
  return json.loads(config.to_json())  # tuples become lists, as in a written config.json


def write(config: ml_collections.ConfigDict, workdir: str) -> None:
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, FILENAME), "w", encoding="utf-8") as f:
    f.write(config.to_json(indent=1, sort_keys=True))


def read(workdir: str) -> Optional[ml_collections.ConfigDict]:
  """The config a workdir was trained with, None if it has no config.json."""
  path = os.path.join(workdir, FILENAME)
  if not os.path.exists(path):
    return None
  with open(path, encoding="utf-8") as f:
    return ml_collections.ConfigDict(json.load(f))


def _differing(a: dict[str, Any], b: dict[str, Any], fields: Sequence[str]) -> list[str]:
  """Flat keys under `fields` whose values differ between flat configs a and b."""
  under = lambda key: any(key == f or key.startswith(f + ".") for f in fields)  # noqa: E731
  return sorted(k for k in set(a) | set(b)
                if under(k) and a.get(k, _ABSENT) != b.get(k, _ABSENT))


def check(saved: ml_collections.ConfigDict, given: ml_collections.ConfigDict, workdir: str,
          hard: Sequence[str] = HARD_FIELDS, soft: Sequence[str] = SOFT_FIELDS) -> None:
  """Raises ConfigError if a `hard` field differs; logs a warning for `soft` ones and for
  knobs the workdir's config.json does not have (added after that run: their defaults)."""
  a, b = _flatten(_plain(saved)), _flatten(_plain(given))
  describe = lambda k: f"{k}: workdir {a.get(k, _ABSENT)}, given {b.get(k, _ABSENT)}"  # noqa
  sections = {k.rsplit(".", 1)[0] for k in a if "." in k}
  hard_keys = _differing(a, b, hard)
  # a knob missing from a section the run did have was added after the run
  newer = [k for k in hard_keys if k not in a and k.rsplit(".", 1)[0] in sections]
  errors = [describe(k) for k in hard_keys if k not in newer]
  if errors:
    raise ConfigError(f"the config disagrees with {os.path.join(workdir, FILENAME)} on "
                      f"{'; '.join(errors)}")
  warnings = [describe(k) for k in newer + _differing(a, b, soft)]
  if warnings:
    logging.warning("config differs from %s on %s", os.path.join(workdir, FILENAME),
                    "; ".join(warnings))


def resolve(given: Optional[ml_collections.ConfigDict], workdir: Optional[str]
            ) -> ml_collections.ConfigDict:
  """The config to use with `workdir`: its config.json when none is given, else the given
  one once checked against it (a workdir without config.json is not checked)."""
  saved = read(workdir) if workdir else None
  if given is None:
    if saved is None:
      where = f"{workdir} has no {FILENAME}" if workdir else "no workdir was given"
      raise ConfigError(f"--config is required: {where}")
    return saved
  if saved is not None:
    check(saved, given, workdir)
  return given
