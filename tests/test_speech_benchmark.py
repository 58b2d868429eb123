"""Spoken-answer latency benchmark: fixed-length answers, NFE per part as the decoder
configuration implies, and the result file's fields."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import common, vocoder as vocoder_configs
from vocalnet_jax.decoding import speech_benchmark
from vocalnet_jax.models.decoder import Decoder

TEXT_VOCAB, NUM_UNITS = 64, 32


def _config(tmp_path):
  """tiny stage 2 with no corpus: 8 text tokens (2 blocks of 4), 30 units (2 chunks of 15)."""
  c = common.base_config("tiny,stage=2", objective="mdm")
  c.data.dir = str(tmp_path / "no_corpus")
  c.model.vocab_size, c.talker.num_units = TEXT_VOCAB, NUM_UNITS
  c.data.response_len, c.data.max_units, c.data.mel_buckets = 8, 29, (100,)
  return c


def test_banned_logits_are_minus_inf_and_the_rest_unchanged():
  decoder = Decoder(vocab_size=64, embed_dim=16, num_layers=1, num_heads=2, num_kv_heads=1,
                    head_dim=8, mlp_dim=32)
  banned = speech_benchmark.with_banned_ids(decoder, first_banned=40, banned=(3,))
  hidden = jax.random.normal(jax.random.key(1), (1, 3, 16))
  tokens = jnp.zeros((1, 2), jnp.int32)
  params = jax.jit(decoder.init)(jax.random.key(0), tokens, jnp.arange(2)[None],
                                 jnp.ones((1, 2, 2), bool))["params"]
  base, out = (jax.jit(lambda p, h, m=m: m.apply({"params": p}, h, method="logits"))(
      params, hidden) for m in (decoder, banned))
  ids = np.r_[3, 40:64]
  assert bool(jnp.all(out[..., ids] == -jnp.inf))
  keep = np.setdiff1d(np.arange(64), ids)
  np.testing.assert_array_equal(out[..., keep], base[..., keep])


@pytest.mark.slow  # compiles the whole pipeline twice (AR, MDM) and the vocoder
def test_rows_nfe_and_result_file(tmp_path):
  config = _config(tmp_path)
  pipe, vocoder = speech_benchmark.load_benchmark_pipeline(
      config, None, None, vocoder_configs.get_config("tiny"))
  wav = 0.1 * np.random.default_rng(0).standard_normal(8000).astype(np.float32)  # 0.5 s
  spec = speech_benchmark.SpeechBenchmarkSpec(
      steps=(2, 8), cache_updates=("reuse_last_step",), repeats=1)
  rows = speech_benchmark.run(pipe, wav, spec)
  assert [(r["mode"], r["steps"], r["cache_update"]) for r in rows] == [
      ("ar", 1, "kv"), ("mdm", 2, "reuse_last_step")]  # S <= B only
  blocks, chunks = 8 // 4, 2
  # AR: one forward per token; MDM: S per block/chunk + the Thinker's clean forward (the
  # Talker's only with extra_forward); each text block is one Talker forward writing it.
  expected = [(8, 30), (blocks * 3, chunks * 2)]
  for r, (thinker, talker) in zip(rows, expected):
    assert set(speech_benchmark.ROW_KEYS) <= set(r)
    assert (r["text_tokens"], r["units"]) == (8, 30)  # fixed length in every mode
    assert (r["nfe_thinker"], r["nfe_talker"], r["nfe_talker_text"]) == (thinker, talker, blocks)
    assert r["nfe_total"] == thinker + talker + blocks
    assert 0 < r["first_audio_s"] <= r["total_s"] and r["audio_s"] == 30 / 25
  about, metrics = speech_benchmark.result(rows, pipe, config=config.preset, vocoder=vocoder)
  for key in ("config", "fixed_length", "base_stream_config", "nice"):
    assert about[key] is not None, key
  assert metrics["rows"] == rows
  assert [s["nfe_talker_ratio"] for s in metrics["summary"]] == [4 / 30]
  json.dumps([about, metrics])
  speech_benchmark.plot(rows, str(tmp_path / "speech.png"))
  assert (tmp_path / "speech.png").stat().st_size > 1000
