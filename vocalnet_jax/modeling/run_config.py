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
from etils import epath

from vocalnet_jax.modeling import pretrained
from vocalnet_jax.modeling.validate import ConfigError

FILENAME = "config.json"
_ABSENT = "(absent)"
# The params' shapes: a checkpoint restores only into a model with these.
PARAM_FIELDS = ("model", "encoder", "adaptor.stack", "adaptor.hidden_dim", "talker.model",
                "talker.num_units", "auxiliary.ctc_units")
# What the trained model expects at decode time, beyond its shapes (adaptor.read_as: what
# the Thinker reads of the audio; an assembly of trained parts may choose another).
HARD_FIELDS = PARAM_FIELDS + (
    "adaptor.read_as", "objective", "diffusion.block_size", "diffusion.sampler_steps",
    "diffusion.layout", "diffusion.shift_logits", "talker.chunk_size", "talker.text_per_chunk",
    "talker.thinker_states")
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
  directory = epath.Path(workdir)
  directory.mkdir(parents=True, exist_ok=True)
  (directory / FILENAME).write_text(config.to_json(indent=1, sort_keys=True), encoding="utf-8")


def read(workdir: str) -> Optional[ml_collections.ConfigDict]:
  """The config a workdir was trained with, None if it has no config.json; ConfigError
  if that file is not such a config."""
  path = epath.Path(workdir) / FILENAME
  if not path.is_file():
    return None
  try:
    saved = json.loads(path.read_text(encoding="utf-8"))
  except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
    raise ConfigError(f"{path} is not a config written by launch.train ({e})") from None
  if isinstance(saved, dict) and "model_type" in saved:
    raise ConfigError(f"{path} is a Hugging Face model config (launch.export --format=hf), "
                      "not a training run's; load it with vocalnet_jax.models.hf_import")
  if not (isinstance(saved, dict) and "task" in saved and "model" in saved):
    raise ConfigError(f"{path} is not a config written by launch.train (no task/model)")
  return ml_collections.ConfigDict(saved)


def _differing(a: dict[str, Any], b: dict[str, Any], fields: Sequence[str]) -> list[str]:
  """Flat keys under `fields` whose values differ between flat configs a and b."""
  under = lambda key: any(key == f or key.startswith(f + ".") for f in fields)  # noqa: E731
  return sorted(k for k in set(a) | set(b)
                if under(k) and a.get(k, _ABSENT) != b.get(k, _ABSENT))


def check(saved: ml_collections.ConfigDict, given: ml_collections.ConfigDict, workdir: str,
          hard: Sequence[str] = HARD_FIELDS, soft: Sequence[str] = SOFT_FIELDS) -> None:
  """Raises ConfigError if a `hard` field differs; logs a warning for `soft` ones and for
  knobs the workdir's config.json does not have (added after that run: their defaults).
  Two AR runs only warn on `diffusion.*`: neither their params nor their decoder use it."""
  a, b = _flatten(_plain(saved)), _flatten(_plain(given))
  if a.get("objective") == b.get("objective") == "ar":
    diffusion = tuple(f for f in hard if f.startswith("diffusion."))
    hard, soft = tuple(f for f in hard if f not in diffusion), tuple(soft) + diffusion
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
  # a given config names its pretrained checkpoint; a saved one holds the shapes it gave
  given = pretrained.resolve_config(given)
  if saved is not None:
    check(saved, given, workdir)
  return given
