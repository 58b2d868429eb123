"""Decode benchmark: AR vs block diffusion at several step budgets on the same model.

Both modes run the same network shapes on the same prompts, with a fixed number of
new tokens by default (no early eos), so tokens/s compare like for like. Each
configuration is warmed up (compile) and then timed over several repetitions;
first-chunk latency is the wall time of a request for one chunk only (prefill + the
first B tokens: one block for MDM, B steps for AR).
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Iterable, Optional

import jax
import numpy as np

from vocalnet_jax.decoding import ar, block_diffusion
from vocalnet_jax.decoding.lm import CachedLM, DecodeOutput

Array = jax.Array
ROW_KEYS = ("mode", "block_size", "steps", "rule", "cache_update", "tokens_per_s",
            "nfe_per_token", "first_chunk_latency_s", "total_latency_s", "compile_s", "device",
            "batch_size", "new_tokens")


@dataclasses.dataclass(frozen=True)
class BenchmarkSpec:
  """What to run: MDM step budgets (S <= B kept), block size, rule, lengths, repetitions."""
  block_size: int
  mask_id: int
  eos_id: int
  steps: tuple[int, ...] = (1, 2, 4, 8, 16)
  rule: str = "topk"
  cache_updates: tuple[str, ...] = ("extra_forward", "reuse_last_step")
  max_new_tokens: int = 128
  repeats: int = 3
  stop_at_eos: bool = False


def device_name() -> str:
  d = jax.devices()[0]
  return f"{d.platform}:{d.device_kind} x{jax.device_count()}"


def _timed(fn: Callable[[], DecodeOutput], repeats: int) -> tuple[float, float, DecodeOutput]:
  """(first-call seconds, median steady-state seconds, output); blocks on the result."""
  tick = time.perf_counter()
  out = jax.block_until_ready(fn())
  first = time.perf_counter() - tick
  times = []
  for _ in range(repeats):
    tick = time.perf_counter()
    out = jax.block_until_ready(fn())
    times.append(time.perf_counter() - tick)
  return first, float(np.median(times)), out


def _measure(generate: Callable[..., DecodeOutput], spec: BenchmarkSpec, batch: int,
             **row: Any) -> dict:
  """Times a full request and a first-chunk request of one decoder configuration."""
  first, total, out = _timed(lambda: generate(spec.max_new_tokens), spec.repeats)
  _, chunk, _ = _timed(lambda: generate(spec.block_size), spec.repeats)
  new_tokens = spec.max_new_tokens if not spec.stop_at_eos else int(np.max(out.lengths)) + 1
  return dict(row, block_size=spec.block_size, tokens_per_s=batch * new_tokens / total,
              nfe_per_token=int(out.nfe) / new_tokens, first_chunk_latency_s=chunk,
              total_latency_s=total, compile_s=max(first - total, 0.0), device=device_name(),
              batch_size=batch, new_tokens=new_tokens)


def run(lm: CachedLM, ar_params: Any, mdm_params: Any, prefix: Array, prefix_valid: Array,
        spec: BenchmarkSpec, rng: Optional[Array] = None) -> list[dict]:
  """One AR row, then one MDM row per (cache_update, S <= B). Rows carry ROW_KEYS."""
  rng = jax.random.key(0) if rng is None else rng
  batch = prefix.shape[0]
  common = dict(rng=rng, stop_at_eos=spec.stop_at_eos)
  ar_cfg = ar.ARConfig(spec.eos_id)
  rows = [_measure(lambda n: ar.generate(lm, ar_params, prefix, prefix_valid, cfg=ar_cfg,
                                         max_new_tokens=n, **common),
                   spec, batch, mode="ar", steps=1, rule="greedy", cache_update="kv")]
  for cache_update in spec.cache_updates:
    for steps in (s for s in spec.steps if s <= spec.block_size):
      cfg = block_diffusion.BlockDiffusionConfig(spec.block_size, steps, spec.mask_id,
                                                 spec.eos_id, rule=spec.rule,
                                                 cache_update=cache_update)
      rows.append(_measure(
          lambda n, cfg=cfg: block_diffusion.generate(lm, mdm_params, prefix, prefix_valid,
                                                      cfg=cfg, max_new_tokens=n, **common),
          spec, batch, mode="mdm", steps=steps, rule=spec.rule, cache_update=cache_update))
  return rows


def summary(rows: Iterable[dict]) -> list[dict]:
  """MDM rows relative to the AR row: speedup in tokens/s next to the ideal B/S (+1 forward
  per block for extra_forward), and the first-chunk latency change."""
  rows = list(rows)
  base = next(r for r in rows if r["mode"] == "ar")
  out = []
  for r in rows:
    if r["mode"] != "mdm":
      continue
    extra = 1 if r["cache_update"] == "extra_forward" else 0
    out.append(dict(steps=r["steps"], cache_update=r["cache_update"],
                    speedup=r["tokens_per_s"] / base["tokens_per_s"],
                    ideal_b_over_s=r["block_size"] / r["steps"],
                    ideal_nfe=r["block_size"] / (r["steps"] + extra),
                    first_chunk_change=r["first_chunk_latency_s"] / base["first_chunk_latency_s"]
                    - 1.0))
  return out


def plot(rows: list[dict], path: str) -> None:
  """PNG: tokens/s and latencies vs steps, MDM per cache update, AR as horizontal lines."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  base = next(r for r in rows if r["mode"] == "ar")
  fig, (ax_speed, ax_lat) = plt.subplots(1, 2, figsize=(11, 4))
  for update in sorted({r["cache_update"] for r in rows if r["mode"] == "mdm"}):
    mdm = sorted((r for r in rows if r["mode"] == "mdm" and r["cache_update"] == update),
                 key=lambda r: r["steps"])
    steps = [r["steps"] for r in mdm]
    ax_speed.plot(steps, [r["tokens_per_s"] for r in mdm], "o-", label=f"MDM ({update})")
    ax_lat.plot(steps, [r["first_chunk_latency_s"] for r in mdm], "o-",
                label=f"MDM first chunk ({update})")
    ax_lat.plot(steps, [r["total_latency_s"] for r in mdm], "s--", label=f"MDM total ({update})")
  steps = sorted({r["steps"] for r in rows if r["mode"] == "mdm"})
  ax_speed.plot(steps, [base["tokens_per_s"] * base["block_size"] / s for s in steps], "k:",
                label="ideal AR x B/S")
  ax_speed.axhline(base["tokens_per_s"], color="gray", label="AR")
  ax_lat.axhline(base["first_chunk_latency_s"], color="gray", label="AR first chunk")
  ax_lat.axhline(base["total_latency_s"], color="gray", ls="--", label="AR total")
  for ax, ylabel in ((ax_speed, "tokens / s"), (ax_lat, "latency (s)")):
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("MDM steps per block S")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7)
  fig.suptitle(f"decode, B={base['block_size']}, {base['new_tokens']} tokens, "
               f"batch {base['batch_size']}, {base['device']}")
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
