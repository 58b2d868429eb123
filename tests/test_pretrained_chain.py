"""The 1b/8b path on stand-ins: tiny random Llama, Qwen2 and Whisper checkpoints written by
transformers start runs (`hf:`) on 8 fake devices with fsdp and scanned layers, train a
few steps, export with `launch.export --format=hf`, and transformers reloads the trained
weights."""
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from configs import ar  # noqa: E402
from tests import pretrained_checkpoints  # noqa: E402
from vocalnet_jax.modeling import restore, run_config  # noqa: E402
from vocalnet_jax.models import hf_export, hf_import  # noqa: E402
from vocalnet_jax.training import trainer  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")


def _run(*argv: str) -> str:
  proc = subprocess.run([sys.executable, "-m", *argv], cwd=ROOT, env=ENV, text=True,
                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=900)
  assert proc.returncode == 0, proc.stdout[-3000:]
  return proc.stdout


def _assert_export_holds(out: str, workdir: str, speech: bool, devices) -> None:
  """transformers loads `out` and its tensors are the workdir's trained Thinker's."""
  model, params = restore.load(run_config.read(workdir), workdir, devices)
  trained = jax.device_get(params["thinker"] if speech else params)
  decoder = model.module.thinker if speech else model.module
  expected = hf_export.hf_tensors(decoder, trained)
  loaded = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
  got = loaded.state_dict()
  for name, x in expected.items():
    np.testing.assert_array_equal(got[name].float().numpy(), x, err_msg=name)


@pytest.mark.slow
def test_qwen2_text_run_from_hf_through_the_launchers(tmp_path, devices):
  qwen2 = str(tmp_path / "qwen2")
  pretrained_checkpoints.qwen2(qwen2)
  workdir, out = str(tmp_path / "run"), str(tmp_path / "export")
  _run("launch.train", "--config=configs/ar.py:tiny,text", f"--workdir={workdir}",
       f"--config.model.from_checkpoint=hf:{qwen2}", f"--config.init_from=thinker=hf:{qwen2}",
       "--config.model.scan_layers=True", "--config.mesh.data=1", "--config.mesh.fsdp=8",
       "--config.train.steps=2", "--config.train.batch_size=8", "--config.train.progress_bar=False")
  _run("launch.export", f"--workdir={workdir}", f"--out={out}", "--format=hf")
  _assert_export_holds(out, workdir, False, devices)
  # the run moved away from the checkpoint it started from
  _, start = hf_import.load_hf_decoder(qwen2)
  _, end = hf_import.load_hf_decoder(out)
  assert not np.array_equal(start["norm"]["scale"], end["norm"]["scale"])


def _speech_config(stage: int, corpus: str, init_from: str, **model):
  c = ar.get_config(f"tiny,stage={stage}")
  c.data.dir = corpus
  c.data.mel_buckets = (800,)
  c.init_from = init_from
  c.model.update(scan_layers=True, **model)
  c.mesh.update(data=1, fsdp=8)
  c.train.update(steps=2, batch_size=8, log_every=1, progress_bar=False)
  return c


@pytest.mark.slow
def test_speech_stages_from_hf_llama_and_whisper(prepared_corpus, tmp_path, devices):
  """Stage 0 from `thinker=hf:LLAMA`; stage 1 takes stage 0's Thinker (a workdir part)
  beside `encoder=hf:WHISPER` (a pretrained part); its Thinker exported to transformers."""
  llama, whisper = str(tmp_path / "llama"), str(tmp_path / "whisper")
  pretrained_checkpoints.llama(llama, vocab_size=136)  # the micro corpus's tokenizer has 128
  pretrained_checkpoints.whisper(whisper, n_mels=80)
  s0 = _speech_config(0, prepared_corpus, f"thinker=hf:{llama}", from_checkpoint=f"hf:{llama}")
  trainer.train(s0, str(tmp_path / "s0"), devices=devices)
  s1 = _speech_config(1, prepared_corpus, f"thinker={tmp_path / 's0'},encoder=hf:{whisper}",
                      from_checkpoint=f"hf:{llama}")
  s1.encoder.from_checkpoint = f"hf:{whisper}"
  exp = trainer.setup_experiment(s1, devices)
  assert (exp.config.encoder.embed_dim, exp.config.encoder.stride) == (32, 2)
  fresh = trainer.init_state(exp).params
  start = trainer.load_params(s1.init_from, exp, fresh)
  _, encoder = hf_import.load_hf_whisper_encoder(whisper)
  jax.tree_util.tree_map(np.testing.assert_array_equal, start["encoder"], encoder)
  typed = restore.restore_params(str(tmp_path / "s0"), exp.abstract_state.params["thinker"],
                                 scope=("thinker",))
  jax.tree_util.tree_map(np.testing.assert_array_equal, start["thinker"], typed)
  jax.tree_util.tree_map(np.testing.assert_array_equal, start["adaptor"], fresh["adaptor"])
  history = trainer.train(s1, str(tmp_path / "s1"), devices=devices)
  assert all(np.isfinite(r["loss"]) for r in history)
  out = str(tmp_path / "export")
  _run("launch.export", f"--workdir={tmp_path / 's1'}", f"--out={out}", "--format=hf")
  _assert_export_holds(out, str(tmp_path / "s1"), True, devices)
