"""Decode benchmark: rows carry the documented fields, summary and plot are written."""
import json

import jax
import jax.numpy as jnp

from tests.decoding_helpers import TOK, prompts, tiny_model
from vocalnet_jax.decoding import benchmark, decoder_lm
from vocalnet_jax.decoding.lm import DecodeOutput


def test_benchmark_rows_summary_and_plot(tmp_path):
  model, params = tiny_model()
  prefix, valid = prompts(["12+7=?"])
  spec = benchmark.BenchmarkSpec(block_size=4, mask_id=TOK.mask_id, eos_id=TOK.eos_id,
                                 steps=(2, 8), cache_updates=("reuse_last_step",),
                                 max_new_tokens=8, repeats=1)
  rows = benchmark.run(decoder_lm(model), params, params, prefix, valid, spec)
  assert [(r["mode"], r["steps"]) for r in rows] == [("ar", 1), ("mdm", 2)]  # S <= B only
  for r in rows:
    assert set(benchmark.ROW_KEYS) <= set(r) and r["tokens_per_s"] > 0
    assert r["new_tokens"] == 8 and r["device"].startswith(jax.devices()[0].platform)
  assert rows[0]["nfe_per_token"] == 7 / 8 and rows[1]["nfe_per_token"] == 4 / 8
  (summary,) = benchmark.summary(rows)
  assert summary["ideal_b_over_s"] == 2 and summary["speedup"] > 0
  benchmark.plot(rows, str(tmp_path / "bench.png"))
  assert (tmp_path / "bench.png").stat().st_size > 1000
  json.dumps(rows)


def test_emitted_tokens_never_exceed_the_budget():
  """A row that stops at eos counts its answer and the eos; one that never emits eos
  counts the budget, not one token more."""
  spec = benchmark.BenchmarkSpec(block_size=4, mask_id=TOK.mask_id, eos_id=TOK.eos_id,
                                 max_new_tokens=8, stop_at_eos=True)
  out = lambda lengths: DecodeOutput(jnp.zeros((2, 8), jnp.int32), jnp.array(lengths),  # noqa
                                     jnp.int32(0))
  assert benchmark.emitted_tokens(out([3, 5]), spec) == 6
  assert benchmark.emitted_tokens(out([3, 8]), spec) == 8
