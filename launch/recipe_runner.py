"""Runs a named recipe (`configs/recipes/*.py`): its stages in order, each as the absl app a
user would call, each into WORKDIR/<stage name>.

A recipe module's `get_recipe(arg)` returns a ConfigDict whose `stages` list holds one dict
per stage (`STAGE_FIELDS`). `{name}` in a stage's `init_from`, `overrides` or `flags` is the
directory of the stage called `name`. WORKDIR/recipe.json records the stages and which are
complete: a rerun skips complete stages and reruns the others (a training resumes from its
last checkpoint), and a WORKDIR that holds another recipe's run is refused.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import shlex
import subprocess
import sys
import time
from typing import Any

import ml_collections

RECORD = "recipe.json"

# launcher -> (module, the flag that names the stage's own directory; None: it writes nothing)
LAUNCHERS = {
    "prepare_data": ("launch.prepare_data", "out"),
    "train": ("launch.train", "workdir"),
    "train_vocoder": ("launch.train_vocoder", "workdir"),
    "distill": ("launch.distill", "workdir"),
    "evaluate": ("launch.evaluate", "out"),
    "export": ("launch.export", "out"),
    "mishearing": ("launch.mishearing", "out"),
    "demo_summary": ("launch.demo_summary", None),
}
TRAINING = ("train", "train_vocoder", "distill")  # launchers whose config has train.steps

# A stage's fields and their defaults (None: required).
STAGE_FIELDS = dict(
    name=None,  # its directory under WORKDIR and its `{name}` placeholder
    launcher=None,  # a key of LAUNCHERS
    description="",  # printed in the stage's header
    config="",  # --config, e.g. configs/mdm.py:tiny,stage=1
    init_from="",  # --config.init_from, e.g. {ar_stage1},talker={ar_stage2}
    frozen="",  # --config.train.frozen, e.g. encoder,thinker/embed_tokens
    steps=0,  # --config.train.steps (0: the config's)
    overrides={},  # dotted config key -> value: --config.KEY=VALUE
    flags={},  # other launcher flags: name -> value (a list is joined by commas)
)


class RecipeError(ValueError):
  """A malformed recipe or a workdir it cannot use; the message is one line."""


@dataclasses.dataclass(frozen=True)
class Recipe:
  source: str  # path[:arg] as given
  stages: tuple[dict[str, Any], ...]  # complete dicts (every STAGE_FIELDS key)

  def names(self) -> list[str]:
    return [s["name"] for s in self.stages]

  def record(self) -> dict[str, Any]:
    """The JSON form that identifies a run of this recipe (placeholders unresolved)."""
    return json.loads(json.dumps(list(self.stages)))


def load(source: str) -> Recipe:
  """`configs/recipes/demo.py[:arg]` -> its checked Recipe."""
  path, _, arg = source.partition(":")
  if not os.path.isfile(path):
    raise RecipeError(f"--recipe={source}: no recipe file {path}")
  spec = importlib.util.spec_from_file_location(f"recipe_{abs(hash(path))}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not hasattr(module, "get_recipe"):
    raise RecipeError(f"{path} defines no get_recipe(arg)")
  try:
    recipe = module.get_recipe(arg or None)
  except ValueError as e:
    raise RecipeError(f"{source}: {e}") from None
  stages = recipe.stages if isinstance(recipe, ml_collections.ConfigDict) else recipe["stages"]
  return Recipe(source, tuple(_checked(path, i, dict(s)) for i, s in enumerate(stages)))


def _checked(path: str, index: int, stage: dict[str, Any]) -> dict[str, Any]:
  where = f"{path} stage {stage.get('name', index)!s}"
  unknown = sorted(set(stage) - set(STAGE_FIELDS))
  if unknown:
    raise RecipeError(f"{where}: unknown field(s) {unknown}; fields: {sorted(STAGE_FIELDS)}")
  missing = [k for k, v in STAGE_FIELDS.items() if v is None and not stage.get(k)]
  if missing:
    raise RecipeError(f"{where}: missing field(s) {missing}")
  if stage["launcher"] not in LAUNCHERS:
    raise RecipeError(f"{where}: launcher {stage['launcher']!r}; choose from {sorted(LAUNCHERS)}")
  if stage["launcher"] not in TRAINING and (stage.get("steps") or stage.get("frozen")
                                            or stage.get("init_from")):
    raise RecipeError(f"{where}: steps/frozen/init_from are training fields; launcher "
                      f"{stage['launcher']!r} trains nothing")
  return {k: stage.get(k, v) for k, v in STAGE_FIELDS.items()}


def check_names(recipe: Recipe) -> None:
  """Unique stage names, and every placeholder names this stage or an earlier one."""
  seen: list[str] = []
  for stage in recipe.stages:
    if stage["name"] in seen:
      raise RecipeError(f"{recipe.source}: two stages named {stage['name']!r}")
    seen.append(stage["name"])
    try:
      argv(stage, {n: n for n in seen})
    except KeyError as e:
      raise RecipeError(f"{recipe.source} stage {stage['name']}: placeholder {{{e.args[0]}}} "
                        f"names no earlier stage (earlier: {seen})") from None


def _value(value: Any, dirs: dict[str, str], joined: bool) -> str:
  if joined and isinstance(value, (list, tuple)):
    return ",".join(str(v) for v in value)
  return str(value).format(**dirs) if isinstance(value, str) else str(value)


def argv(stage: dict[str, Any], dirs: dict[str, str]) -> list[str]:
  """The launcher's flags for one stage; dirs: stage name -> its directory."""
  _, dir_flag = LAUNCHERS[stage["launcher"]]
  out = [f"--config={stage['config']}"] if stage["config"] else []
  if dir_flag and dir_flag not in stage["flags"]:
    out.append(f"--{dir_flag}={dirs[stage['name']]}")
  out += [f"--{k}={_value(v, dirs, joined=True)}" for k, v in stage["flags"].items()]
  if stage["init_from"]:
    out.append(f"--config.init_from={_value(stage['init_from'], dirs, joined=False)}")
  if stage["frozen"]:
    out.append(f"--config.train.frozen={stage['frozen']}")
  if stage["steps"]:
    out.append(f"--config.train.steps={stage['steps']}")
  out += [f"--config.{k}={_value(v, dirs, joined=False)}" for k, v in stage["overrides"].items()]
  return out


def commands(recipe: Recipe, workdir: str) -> list[tuple[dict[str, Any], list[str]]]:
  """(stage, full argv after `python`) for every stage, directories resolved under workdir."""
  check_names(recipe)
  dirs = {n: os.path.join(workdir, n) for n in recipe.names()}
  return [(s, ["-m", LAUNCHERS[s["launcher"]][0]] + argv(s, dirs)) for s in recipe.stages]


def _read_record(workdir: str) -> dict[str, Any] | None:
  try:
    with open(os.path.join(workdir, RECORD)) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def claim(recipe: Recipe, workdir: str) -> list[str]:
  """The stages already complete in workdir; RecipeError if it holds another recipe's run."""
  record = _read_record(workdir)
  if record is None:
    if os.path.isdir(workdir) and os.listdir(workdir):
      raise RecipeError(f"{workdir} is not empty and has no {RECORD} (a run of another recipe "
                        "or launcher): remove it or choose a new --workdir")
    record = dict(recipe=recipe.source, stages=recipe.record(), complete=[])
  elif record.get("stages") != recipe.record():
    raise RecipeError(f"{workdir} holds a run of another recipe ({record.get('recipe')}; "
                      f"{workdir}/{RECORD} differs): remove it or choose a new --workdir")
  record["recipe"] = recipe.source
  _write_record(workdir, record)
  return list(record["complete"])


def _write_record(workdir: str, record: dict[str, Any]) -> None:
  os.makedirs(workdir, exist_ok=True)
  tmp = os.path.join(workdir, RECORD + ".tmp")
  with open(tmp, "w") as f:
    json.dump(record, f, indent=1)
  os.replace(tmp, os.path.join(workdir, RECORD))


def _mark_complete(workdir: str, name: str) -> None:
  record = _read_record(workdir)
  record["complete"] = sorted(set(record["complete"]) | {name})
  _write_record(workdir, record)


def run(recipe: Recipe, workdir: str, only: str | None = None, dry_run: bool = False,
        python: str = sys.executable) -> None:
  """Runs the recipe's stages (or `only` that one, even if complete) in order.

  A stage that fails ends the run with RecipeError (its own output says why); stages
  whose launcher writes nothing (a summary) run every time.
  """
  planned = commands(recipe, workdir)
  if only is not None and only not in recipe.names():
    raise RecipeError(f"--only={only}: no such stage; stages: {recipe.names()}")
  complete = [] if dry_run else claim(recipe, workdir)
  for i, (stage, args) in enumerate(planned):
    name = stage["name"]
    if only not in (None, name):
      continue
    command = shlex.join([python] + args)
    if dry_run:
      print(command)
      continue
    if name in complete and only is None:
      print(f"=== {i + 1}/{len(planned)} {name}: complete, skipped ===")
      continue
    title = f"{name}: {stage['description']}" if stage["description"] else name
    print(f"\n=== {i + 1}/{len(planned)} {title} ({time.strftime('%H:%M:%S')}) ===\n"
          f"{command}", flush=True)
    if LAUNCHERS[stage["launcher"]][1] is not None:
      os.makedirs(os.path.join(workdir, name), exist_ok=True)
    code = subprocess.run([python] + args, check=False).returncode
    if code != 0:
      raise RecipeError(f"stage {name} failed (exit status {code}); rerun the same command to "
                        "resume")
    if LAUNCHERS[stage["launcher"]][1] is not None:
      _mark_complete(workdir, name)
