"""Runs a named recipe: `python -m launch.recipe --recipe=configs/recipes/demo.py --workdir=DIR`.

Each stage runs as the launcher a user would call (the command is printed first) into
DIR/<stage name>. Rerunning with the same DIR skips complete stages and resumes the rest;
a DIR trained by another recipe (other stages, configs, steps or seed) is refused in one
line. `--only=STAGE` runs that stage alone; `--dry_run` prints every command and runs none.
Recipes: configs/recipes/ (docs/recipes.md).
"""
import sys

from absl import app, flags

from launch import recipe_runner

_RECIPE = flags.DEFINE_string("recipe", None,
                              "Recipe file[:arg], e.g. configs/recipes/demo.py:seed=1.")
_WORKDIR = flags.DEFINE_string("workdir", None, "One directory per stage + recipe.json.")
_ONLY = flags.DEFINE_string("only", None, "Run this stage alone (even if complete).")
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "Print the commands; run nothing.")
flags.mark_flags_as_required(["recipe", "workdir"])


def main(argv):
  del argv
  try:
    recipe = recipe_runner.load(_RECIPE.value)
    recipe_runner.run(recipe, _WORKDIR.value, only=_ONLY.value, dry_run=_DRY_RUN.value)
  except recipe_runner.RecipeError as e:
    sys.exit(f"error: {e}")  # one line on stderr, exit status 1


if __name__ == "__main__":
  app.run(main)
