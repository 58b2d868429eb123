"""launch.recipe: the declared recipes, their commands, and the runner's skip/resume/refuse
rules."""
import functools
import importlib
import json
import os
import shlex
import stat
import sys

import pytest

from launch import recipe_runner

# The demo's ten commands, pinned (D: its DEMO_DIR): launch/demo.sh's before the demo became
# a recipe (its directories ar/stage0 ... are now the stages ar_stage0 ...), except the
# Talker stages, which now read the answer text alone for their own step counts, and the
# MDM stages, which pin the first-token weight they were measured with.
_DEMO_SH = (
    ("-m launch.prepare_data --config=configs/data.py:tiny --config.corpus.num_train=8000 "
     "--config.corpus.num_test=50 --out=D/data"),
    ("-m launch.train --config=configs/ar.py:tiny,stage=0 --workdir=D/ar_stage0 "
     "--config.data.dir=D/data --config.train.progress_bar=False --config.seed=0 "
     "--config.train.steps=1200"),
    ("-m launch.train --config=configs/ar.py:tiny,stage=1 --workdir=D/ar_stage1 "
     "--config.data.dir=D/data --config.train.progress_bar=False --config.seed=0 "
     "--config.init_from=thinker=D/ar_stage0 --config.train.steps=2000 "
     "--config.auxiliary.typed_weight=0"),
    ("-m launch.train --config=configs/mdm.py:tiny,stage=1 --workdir=D/mdm_stage1 "
     "--config.data.dir=D/data --config.train.progress_bar=False --config.seed=0 "
     "--config.diffusion.shift_logits=True --config.diffusion.first_token_weight=1.0 "
     "--config.init_from=D/ar_stage1 "
     "--config.train.frozen=encoder,thinker/embed_tokens --config.train.steps=2000 "
     "--config.auxiliary.typed_weight=0"),
    ("-m launch.train --config=configs/ar.py:tiny,stage=2 --workdir=D/ar_stage2 "
     "--config.data.dir=D/data --config.train.progress_bar=False --config.seed=0 "
     "--config.talker.thinker_states=False "
     "--config.init_from=D/ar_stage1 --config.train.steps=1500"),
    ("-m launch.train --config=configs/mdm.py:tiny,stage=2 --workdir=D/mdm_stage2 "
     "--config.data.dir=D/data --config.train.progress_bar=False --config.seed=0 "
     "--config.diffusion.shift_logits=True --config.diffusion.first_token_weight=1.0 "
     "--config.talker.thinker_states=False "
     "--config.init_from=D/mdm_stage1,talker=D/ar_stage2 --config.train.steps=1000"),
    ("-m launch.train_vocoder --config=configs/vocoder.py:tiny --data=D/data "
     "--workdir=D/vocoder --config.train.steps=400 --config.neural.train.steps=1000"),
    ("-m launch.evaluate --checkpoint=D/ar_stage2 --steps=4 --rule=threshold "
     "--vocoder=D/vocoder/vocoder --split=test --n=50 --out=D/eval_ar"),
    ("-m launch.evaluate --checkpoint=D/mdm_stage2 --steps=4 --rule=threshold "
     "--vocoder=D/vocoder/vocoder --split=test --n=50 --out=D/eval_mdm --floors_from=D/eval_ar"),
    ("-m launch.demo_summary --ar=D/eval_ar --mdm=D/eval_mdm"),
)
_RECIPES = ("configs/recipes/demo.py", "configs/recipes/text_parity.py",
            "configs/recipes/smollm2.py")


def _normalised(command):
  """A launcher command as (module, sorted flags): absl reads flags in any order."""
  return command[:2], sorted(command[2:])


def test_demo_recipe_runs_its_pinned_commands():
  planned = recipe_runner.commands(recipe_runner.load("configs/recipes/demo.py"), "D")
  expected = [command.split(" ") for command in _DEMO_SH]
  assert [_normalised(c) for _, c in planned] == [_normalised(c) for c in expected]


def test_demo_recipe_knobs_change_their_stage_only():
  base = recipe_runner.commands(recipe_runner.load("configs/recipes/demo.py"), "D")
  seeded = recipe_runner.commands(recipe_runner.load("configs/recipes/demo.py:seed=3"), "D")
  changed = [s["name"] for (s, a), (_, b) in zip(base, seeded) if a != b]
  assert changed == ["ar_stage0", "ar_stage1", "mdm_stage1", "ar_stage2", "mdm_stage2"]
  read = recipe_runner.commands(recipe_runner.load("configs/recipes/demo.py:num_read=64"), "D")
  changed = {s["name"]: set(b) - set(a) for (s, a), (_, b) in zip(base, read) if a != b}
  assert changed == {"data": {"--config.corpus.num_read=64"},
                     "ar_stage2": {"--config.data.train_split=train+read"},
                     "mdm_stage2": {"--config.data.train_split=train+read"}}
  answers = recipe_runner.commands(recipe_runner.load(
      "configs/recipes/demo.py:num_read=64,ar_talker_answer_steps=10"), "D")
  stages = {s["name"]: args for s, args in answers}
  assert "--config.init_from=D/ar_stage1,talker=D/ar_stage2" in stages["ar_stage2_answers"]
  assert "--config.train.steps=10" in stages["ar_stage2_answers"]
  assert not any("train_split" in a for a in stages["ar_stage2_answers"])  # the answers alone
  assert "--checkpoint=D/ar_stage2_answers" in stages["eval_ar"]
  assert "--config.init_from=D/mdm_stage1,talker=D/ar_stage2" in stages["mdm_stage2"]
  longer = {s["name"]: args for s, args in recipe_runner.commands(recipe_runner.load(
      "configs/recipes/demo.py:mdm_talker_more_steps=7,mdm_eval_talker_steps=15,"
      "mdm_eval_talker_threshold=0.6"), "D")}
  assert "--config.init_from=D/mdm_stage1,talker=D/mdm_stage2" in longer["mdm_stage2_more"]
  assert {"--config.train.steps=7", "--config.train.learning_rate=0.001"} <= set(
      longer["mdm_stage2_more"])
  assert {"--checkpoint=D/mdm_stage2_more", "--talker_steps=15", "--talker_threshold=0.6",
          "--steps=4"} <= set(longer["eval_mdm"])
  assert longer["eval_ar"] == {s["name"]: args for s, args in base}["eval_ar"]  # as before
  with pytest.raises(recipe_runner.RecipeError, match="unknown recipe option 'sede=3'"):
    recipe_runner.load("configs/recipes/demo.py:sede=3")


@functools.lru_cache(maxsize=None)
def _config(path_arg):
  path, _, arg = path_arg.partition(":")
  module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
  return module.get_config(arg or None)


@pytest.mark.parametrize("source", _RECIPES)
def test_every_override_names_a_field_of_its_config(source):
  """A typo in a recipe's dotted key is caught here, not after hours of earlier stages."""
  for stage, command in recipe_runner.commands(recipe_runner.load(source), "D"):
    if not stage["config"]:
      continue
    config = _config(stage["config"])
    for flag in command[2:]:
      if flag.startswith("--config."):
        key = flag.removeprefix("--config.").partition("=")[0]
        node = config
        for part in key.split("."):
          assert part in node, f"{source} stage {stage['name']}: no field {key}"
          node = node[part]


def _fake_python(tmp_path, fail_on=""):
  """A stand-in interpreter that logs each launcher call (and fails on one module)."""
  log = tmp_path / "calls.txt"
  script = tmp_path / "python"
  script.write_text(f"#!/bin/sh\necho \"$*\" >> {log}\n"
                    f"case \"$*\" in *'{fail_on or '@none@'}'*) exit 3;; esac\n")
  script.chmod(script.stat().st_mode | stat.S_IEXEC)
  return str(script), log


def _calls(log):
  return [line.split()[1] for line in log.read_text().splitlines()] if log.exists() else []


def test_runner_skips_complete_stages_and_reruns_the_failed_one(tmp_path):
  recipe = recipe_runner.load("configs/recipes/demo.py")
  work = str(tmp_path / "run")
  python, log = _fake_python(tmp_path, fail_on="mdm_stage1")
  with pytest.raises(recipe_runner.RecipeError, match="stage mdm_stage1 failed"):
    recipe_runner.run(recipe, work, python=python)
  assert _calls(log) == ["launch.prepare_data"] + ["launch.train"] * 3
  record = json.loads((tmp_path / "run" / "recipe.json").read_text())
  assert record["complete"] == ["ar_stage0", "ar_stage1", "data"]
  log.unlink()
  python, log = _fake_python(tmp_path)
  recipe_runner.run(recipe, work, python=python)  # resumes at the failed stage
  assert _calls(log) == ["launch.train"] * 3 + ["launch.train_vocoder"] + [
      "launch.evaluate"] * 2 + ["launch.demo_summary"]
  log.unlink()
  recipe_runner.run(recipe, work, python=python)  # all complete: only the summary reruns
  assert _calls(log) == ["launch.demo_summary"]
  log.unlink()
  recipe_runner.run(recipe, work, only="eval_ar", python=python)
  assert _calls(log) == ["launch.evaluate"]


def test_runner_refuses_a_workdir_of_another_recipe(tmp_path):
  python, log = _fake_python(tmp_path)
  work = str(tmp_path / "run")
  recipe_runner.run(recipe_runner.load("configs/recipes/demo.py"), work, only="data",
                    python=python)
  for other in ("configs/recipes/demo.py:seed=1", "configs/recipes/text_parity.py"):
    with pytest.raises(recipe_runner.RecipeError, match="holds a run of another recipe"):
      recipe_runner.run(recipe_runner.load(other), work, python=python)
  legacy = tmp_path / "legacy"  # e.g. a demo directory of the shell script (recipe.txt)
  legacy.mkdir()
  (legacy / "recipe.txt").write_text("0 8000")
  with pytest.raises(recipe_runner.RecipeError, match="has no recipe.json"):
    recipe_runner.run(recipe_runner.load("configs/recipes/demo.py"), str(legacy), python=python)
  assert _calls(log) == ["launch.prepare_data"]


def test_the_launcher_refuses_in_one_line(tmp_path):
  import subprocess
  bad = tmp_path / "bad.py"
  bad.write_text("def get_recipe(arg=None):\n  return {'stages': [dict(name='a', "
                 "launcher='train', init_from='{b}')]}\n")
  out = subprocess.run([sys.executable, "-m", "launch.recipe", f"--recipe={bad}",
                        f"--workdir={tmp_path / 'w'}"], capture_output=True, text=True)
  assert out.returncode == 1 and out.stderr.count("\n") == 1
  assert "placeholder {b} names no earlier stage" in out.stderr
  assert not os.path.exists(tmp_path / "w")


def test_dry_run_prints_every_command_and_writes_nothing(tmp_path, capsys):
  recipe = recipe_runner.load("configs/recipes/text_parity.py")
  recipe_runner.run(recipe, str(tmp_path / "w"), dry_run=True, python="py")
  lines = capsys.readouterr().out.strip().splitlines()
  assert [shlex.split(line)[2] for line in lines] == [
      recipe_runner.LAUNCHERS[s["launcher"]][0] for s in recipe.stages]
  assert not os.path.exists(tmp_path / "w")


def test_text_parity_weights_the_first_token_as_measured_for_its_block():
  weight = lambda arg: {s["name"]: s for s in recipe_runner.load(  # noqa: E731
      f"configs/recipes/text_parity.py:{arg}").stages}["mdm"]["overrides"].get(
          "diffusion.first_token_weight")
  assert (weight("block_size=4"), weight("block_size=16")) == (4.0, 2.0)
  assert weight("block_size=8") is None  # the config default
  assert weight("block_size=16,first_token_weight=3") == 3.0


def test_text_parity_decodes_in_the_order_it_trains_on():
  for order, rule in (("left_to_right", "left_to_right"), ("confidence", "topk")):
    stages = {s["name"]: s for s in recipe_runner.load(
        f"configs/recipes/text_parity.py:block_size=16,commit_order={order}").stages}
    assert stages["mdm"]["overrides"]["diffusion.commit_order"] == order
    assert stages["mdm"]["overrides"]["diffusion.sampler_steps"] == 4  # B/4
    assert stages["eval_mdm"]["flags"]["rule"] == rule
  with pytest.raises(recipe_runner.RecipeError, match="commit_order='sideways'"):
    recipe_runner.load("configs/recipes/text_parity.py:commit_order=sideways")


def test_smollm2_assembles_the_mdm_thinker_with_the_diffusion_it_trained_with():
  """The speech assembly decodes the MDM Thinker as its stage trained it (a causal clean
  stream read as a bidirectional one would give other K/V)."""
  stages = {s["name"]: s for s in recipe_runner.load(
      "configs/recipes/smollm2.py:mdm_clean_attention=causal").stages}
  for key in ("diffusion.shift_logits", "diffusion.clean_attention", "diffusion.sampler_steps"):
    assert stages["speech_mdm"]["overrides"][key] == stages["mdm"]["overrides"][key]
  assert stages["speech_mdm"]["overrides"]["diffusion.clean_attention"] == "causal"
