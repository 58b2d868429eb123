"""`config.init_from` parts from pretrained checkpoints (`thinker=hf:DIR`,
`thinker=gguf:FILE`) and `config.model.from_checkpoint`: the run takes the checkpoint's
shapes, its tensors land on the run's shardings unchanged, rows past its vocabulary start
at the mean embedding, and bad sources fail with one line naming the field or tensor."""
import os
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("gguf")
pytest.importorskip("transformers")

from tests import pretrained_checkpoints  # noqa: E402
from tests.helpers import tiny_config  # noqa: E402
from vocalnet_jax.modeling.validate import ConfigError  # noqa: E402
from vocalnet_jax.models import hf_import  # noqa: E402
from vocalnet_jax.models.decoder import scan_params  # noqa: E402
from vocalnet_jax.training import trainer  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
  """A random Llama (vocabulary 60, untied) as an HF directory and as an F32 GGUF, a
  Qwen2 (q/k/v biases, tied) and a Whisper directory."""
  root = tmp_path_factory.mktemp("pretrained")
  llama = pretrained_checkpoints.llama(str(root / "llama"))
  pretrained_checkpoints.write_llama_gguf(str(root / "llama.gguf"),
                                      pretrained_checkpoints.state_dict(llama),
                                      pretrained_checkpoints.LLAMA)
  pretrained_checkpoints.qwen2(str(root / "qwen2"))
  pretrained_checkpoints.whisper(str(root / "whisper"))
  return {k: str(root / k) for k in ("llama", "llama.gguf", "qwen2", "whisper")}


def _thinker_run(source: str, devices, init_from: str = "", **overrides):
  """(experiment, params after init_from) of a tiny AR text run over an fsdp=8 mesh with
  scanned layers, its model taken from `source`."""
  config = tiny_config("ar", model__from_checkpoint=source, model__scan_layers=True,
                       init_from=init_from or f"thinker={source}", **overrides)
  config.mesh.update(data=1, fsdp=8)
  exp = trainer.setup_experiment(config, devices)
  return exp, trainer.load_params(exp.config.init_from, exp, trainer.init_state(exp).params)


def test_thinker_from_hf_takes_its_shapes_and_tensors(ckpts, devices):
  exp, params = _thinker_run(f"hf:{ckpts['llama']}", devices)
  m = exp.config.model
  assert (m.embed_dim, m.num_layers, m.num_heads, m.num_kv_heads, m.head_dim, m.mlp_dim,
          m.rope_theta, m.tie_embeddings, m.vocab_size) == (32, 2, 4, 2, 8, 48, 500.0, False, 60)
  _, expected = hf_import.load_hf_decoder(ckpts["llama"])
  expected = scan_params(expected, 2)
  embedding = np.asarray(params["embed_tokens"]["embedding"])  # [64, 32]: padded vocabulary
  head = np.asarray(params["lm_head"]["kernel"])  # [32, 64]
  np.testing.assert_array_equal(embedding[:60], expected["embed_tokens"]["embedding"])
  np.testing.assert_array_equal(head[:, :60], expected["lm_head"]["kernel"])
  # the 4 padding rows (columns of the head) start at the checkpoint's mean
  np.testing.assert_allclose(embedding[60:], np.repeat(embedding[:60].mean(0, keepdims=True),
                                                       4, 0), rtol=1e-6)
  np.testing.assert_allclose(head[:, 60:], np.repeat(head[:, :60].mean(1, keepdims=True), 4, 1),
                             rtol=1e-6)
  for name in ("layers", "norm"):
    jax.tree_util.tree_map(np.testing.assert_array_equal, params[name], expected[name])
  shardings = jax.tree_util.tree_map(lambda x: x.sharding, params)
  assert shardings == exp.state_shardings.params  # straight onto the run's layout
  q = params["layers"]["self_attn"]["q_proj"]["kernel"]  # [layers, embed, heads, head_dim]
  assert q.sharding.spec[1] == "fsdp" and len(q.addressable_shards) == 8


def test_thinker_from_gguf_equals_the_hf_checkpoint(ckpts, devices):
  _, from_hf = _thinker_run(f"hf:{ckpts['llama']}", devices)
  _, from_gguf = _thinker_run(f"gguf:{ckpts['llama.gguf']}", devices)
  jax.tree_util.tree_map(np.testing.assert_array_equal, from_gguf, from_hf)


def test_added_tokens_leave_the_checkpoints_logits_unchanged(ckpts, devices):
  source = f"hf:{ckpts['llama']}"
  exp, params = _thinker_run(source, devices)
  wide_exp, wide = _thinker_run(source, devices, model__added_tokens=5)
  assert wide_exp.config.model.vocab_size == 65  # ids 60..64 are the new tokens
  assert wide["embed_tokens"]["embedding"].shape == (128, 32)  # padded to 64s
  tokens = np.random.RandomState(0).randint(0, 60, (2, 7))
  positions = jnp.broadcast_to(jnp.arange(7), (2, 7))
  mask = jnp.broadcast_to(jnp.tril(jnp.ones((7, 7), bool)), (2, 7, 7))

  def logits(e, p):
    return np.asarray(e.task.model.apply({"params": p}, tokens, positions, mask)[0])
  np.testing.assert_allclose(logits(wide_exp, wide)[..., :60], logits(exp, params)[..., :60],
                             atol=1e-5, rtol=0)


def test_qwen2_thinker(ckpts, devices):
  exp, params = _thinker_run(f"hf:{ckpts['qwen2']}", devices)
  assert exp.config.model.qkv_bias and exp.config.model.tie_embeddings
  assert "lm_head" not in params and "bias" in params["layers"]["self_attn"]["q_proj"]


def _error(config_overrides: dict, devices) -> str:
  """The ConfigError of setting up a tiny text run with `config_overrides` and loading
  its init_from, asserted to be one line."""
  config = tiny_config("ar", **config_overrides)
  with pytest.raises(ConfigError) as info:
    exp = trainer.setup_experiment(config, devices)
    trainer.load_params(exp.config.init_from, exp, trainer.init_state(exp).params)
  message = str(info.value)
  assert "\n" not in message, message
  return message


def test_bad_sources_are_one_line_naming_them(ckpts, tmp_path, devices):
  llama, whisper, qwen2 = ckpts["llama"], ckpts["whisper"], ckpts["qwen2"]
  missing = str(tmp_path / "missing")
  assert "no config.json" in _error(dict(init_from=f"thinker=hf:{missing}"), devices)
  assert "does not exist" in _error(dict(init_from=f"thinker=gguf:{missing}.gguf"), devices)
  assert "not a readable GGUF" in _error(dict(init_from=f"thinker=gguf:{llama}/config.json"),
                                         devices)
  # another architecture: a Whisper directory as a Thinker
  assert "supports llama and qwen2, not 'whisper'" in _error(
      dict(init_from=f"thinker=hf:{whisper}", model__from_checkpoint=f"hf:{llama}"), devices)
  # a Qwen2 (q/k/v biases, tied) into a model with the Llama's shapes: the fields named
  message = _error(dict(init_from=f"thinker=hf:{qwen2}", model__from_checkpoint=f"hf:{llama}"),
                   devices)
  assert "config.model.qkv_bias=False (checkpoint: True)" in message
  assert "config.model.tie_embeddings=False (checkpoint: True)" in message
  # the preset's own shapes without from_checkpoint: the first differing field is named
  assert "config.model.embed_dim=64 (checkpoint: 32)" in _error(
      dict(init_from=f"thinker=hf:{llama}"), devices)
  assert "write 'thinker=hf:" in _error(dict(init_from=f"hf:{llama}"), devices)
  assert "this model has no part 'talker'" in _error(
      dict(init_from=f"talker=hf:{llama}", model__from_checkpoint=f"hf:{llama}"), devices)


def test_a_tensor_of_another_shape_is_named(ckpts, tmp_path, devices):
  from safetensors.numpy import load_file, save_file
  bad = tmp_path / "bad"
  shutil.copytree(ckpts["llama"], bad)
  tensors = load_file(str(bad / "model.safetensors"))
  name = "model.layers.1.mlp.up_proj.weight"
  tensors[name] = tensors[name][:40]  # [40, 32] where the config says [48, 32]
  save_file(tensors, str(bad / "model.safetensors"))
  message = _error(dict(init_from=f"thinker=hf:{bad}", model__from_checkpoint=f"hf:{bad}"),
                   devices)
  assert name in message and "(32, 40)" in message, message


def test_launch_train_names_a_missing_checkpoint(tmp_path):
  """The launcher's own exit: status 1 and one line, no traceback."""
  missing = str(tmp_path / "nowhere")
  proc = subprocess.run(
      [sys.executable, "-m", "launch.train", "--config=configs/ar.py:tiny,text",
       f"--workdir={tmp_path / 'w'}", f"--config.init_from=thinker=gguf:{missing}"],
      cwd=ROOT, env=dict(os.environ, XLA_FLAGS="", JAX_PLATFORMS="cpu"),
      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
  assert proc.returncode != 0 and "Traceback" not in proc.stdout, proc.stdout
  assert f"GGUF file '{missing}' does not exist" in proc.stdout, proc.stdout
