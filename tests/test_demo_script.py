"""launch/demo.sh refuses a DEMO_DIR trained by another recipe (its stages would resume)."""
import subprocess


def _demo(demo_dir, **env):
  return subprocess.run(["bash", "launch/demo.sh"], capture_output=True, text=True,
                        env={"PATH": "/usr/bin:/bin", "DEMO_DIR": str(demo_dir), "PY": "false",
                             **env})


def test_a_new_dir_gets_the_recipe_and_a_different_recipe_is_refused(tmp_path):
  demo_dir = tmp_path / "demo"
  first = _demo(demo_dir)  # PY=false: stops at the first stage, after the recipe check
  assert first.returncode != 0 and "error:" not in first.stderr
  recipe = (demo_dir / "recipe.txt").read_text()
  again = _demo(demo_dir)  # the same recipe resumes
  assert "error:" not in again.stderr and (demo_dir / "recipe.txt").read_text() == recipe
  other = _demo(demo_dir, STAGE1_STEPS="5")
  assert other.returncode == 1 and other.stderr.count("\n") == 1
  assert f"{demo_dir}/recipe.txt differs" in other.stderr
  assert (demo_dir / "recipe.txt").read_text() == recipe  # the old run's stamp is kept
  reseeded = _demo(demo_dir, SEED="1")  # another seed is another run
  assert reseeded.returncode == 1 and "recipe.txt differs" in reseeded.stderr
