"""Decode benchmark: AR vs block diffusion at several step budgets on the same model.

Both modes run the same network shapes on the same prompts, with a fixed number of
new tokens by default (no early eos), so tokens/s compare like for like. Each
configuration is warmed up (compile), then all are timed in interleaved rounds (minimum
reported, median kept);
first-chunk latency is the wall time of a request for one chunk only (prefill + the
first B tokens: one block for MDM, B steps for AR).
"""
from __future__ import annotations

import dataclasses
import functools
import os
import time
from typing import Any, Callable, Iterable, Optional

import jax
import numpy as np

from vocalnet_jax.decoding import ar, block_diffusion
from vocalnet_jax.decoding.lm import CachedLM, DecodeOutput

Array = jax.Array
ROW_KEYS = ("mode", "block_size", "steps", "rule", "cache_update", "tokens_per_s",
            "nfe_per_token", "first_chunk_latency_s", "total_latency_s", "forward_s", "compile_s",
            "device", "batch_size", "new_tokens")


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
  repeats: int = 10
  stop_at_eos: bool = False


def device_name() -> str:
  d = jax.devices()[0]
  return f"{d.platform}:{d.device_kind} x{jax.device_count()}"


def run_info() -> dict[str, Any]:
  """How busy the machine was (load average, this process's nice level): on a shared machine
  other jobs slow a low-priority benchmark. The command, commit, machine and device come from
  `evaluation.result_file`, which writes the result."""
  return {"load_average_1_5_15_min": list(os.getloadavg()), "nice": os.nice(0)}


def _wall(fn: Callable[[], DecodeOutput]) -> tuple[float, DecodeOutput]:
  """Seconds of one call, blocking on its result."""
  tick = time.perf_counter()
  out = jax.block_until_ready(fn())
  return time.perf_counter() - tick, out


def _time_interleaved(calls: list[tuple[Callable, Callable]], repeats: int
                      ) -> list[tuple[float, list[float], list[float], DecodeOutput]]:
  """Per (full request, first-chunk request): first-call seconds (compile + run), and the
  warm seconds of each over `repeats` rounds. Rounds visit every configuration in turn,
  so load from other processes on a shared machine hits all of them alike."""
  first = [(_wall(full), _wall(chunk)[0]) for full, chunk in calls]
  totals, chunks = [[] for _ in calls], [[] for _ in calls]
  for _ in range(repeats):
    for i, (full, chunk) in enumerate(calls):
      totals[i].append(_wall(full)[0])
      chunks[i].append(_wall(chunk)[0])
  return [(f[0][0], t, c, f[0][1]) for f, t, c in zip(first, totals, chunks)]


def run(lm: CachedLM, ar_params: Any, mdm_params: Any, prefix: Array, prefix_valid: Array,
        spec: BenchmarkSpec, rng: Optional[Array] = None) -> list[dict]:
  """One AR row, then one MDM row per (cache_update, S <= B). Rows carry ROW_KEYS;
  latencies are the minimum over repetitions (other load only ever adds time), the
  median is kept as `total_latency_median_s`."""
  rng = jax.random.key(0) if rng is None else rng
  batch = prefix.shape[0]
  common = dict(rng=rng, stop_at_eos=spec.stop_at_eos)
  ar_cfg = ar.ARConfig(spec.eos_id, suppress=(spec.mask_id,))
  metas = [dict(mode="ar", steps=1, rule="greedy", cache_update="kv")]
  decoders = [lambda n: ar.generate(lm, ar_params, prefix, prefix_valid, cfg=ar_cfg,
                                    max_new_tokens=n, **common)]
  for cache_update in spec.cache_updates:
    for steps in (s for s in spec.steps if s <= spec.block_size):
      cfg = block_diffusion.BlockDiffusionConfig(spec.block_size, steps, spec.mask_id,
                                                 spec.eos_id, rule=spec.rule,
                                                 cache_update=cache_update)
      metas.append(dict(mode="mdm", steps=steps, rule=spec.rule, cache_update=cache_update))
      decoders.append(lambda n, cfg=cfg: block_diffusion.generate(
          lm, mdm_params, prefix, prefix_valid, cfg=cfg, max_new_tokens=n, **common))
  calls = [(functools.partial(d, spec.max_new_tokens), functools.partial(d, spec.block_size))
           for d in decoders]
  rows = []
  for meta, (first, totals, chunks, out) in zip(metas, _time_interleaved(calls, spec.repeats)):
    total = min(totals)
    new_tokens = emitted_tokens(out, spec)
    rows.append(dict(meta, block_size=spec.block_size, tokens_per_s=batch * new_tokens / total,
                     nfe_per_token=int(out.nfe) / new_tokens, first_chunk_latency_s=min(chunks),
                     total_latency_s=total, total_latency_median_s=float(np.median(totals)),
                     # the timed request includes the prefill: one more forward than `nfe`
                     forward_s=total / (int(out.nfe) + 1), compile_s=max(first - total, 0.0),
                     device=device_name(), batch_size=batch, new_tokens=new_tokens))
  return rows


def emitted_tokens(out: DecodeOutput, spec: BenchmarkSpec) -> int:
  """Tokens the longest row produced: its answer and the eos that stopped it, or
  `max_new_tokens` when it never stopped (or decoding ran to the full length)."""
  if not spec.stop_at_eos:
    return spec.max_new_tokens
  return min(int(np.max(out.lengths)) + 1, spec.max_new_tokens)


def summary(rows: Iterable[dict]) -> list[dict]:
  """MDM rows relative to the AR row: speedup in tokens/s next to the ideal B/S (B/(S+1)
  with extra_forward), the cost of one MDM forward (B tokens) relative to one AR forward
  (1 token) -- speedup = NFE ratio / forward cost ratio -- and the first-chunk change."""
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
                    forward_cost_vs_ar=r["forward_s"] / base["forward_s"],
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
  updates = sorted({r["cache_update"] for r in rows if r["mode"] == "mdm"})
  for update, color in zip(updates, ("tab:blue", "tab:orange", "tab:green")):
    mdm = sorted((r for r in rows if r["mode"] == "mdm" and r["cache_update"] == update),
                 key=lambda r: r["steps"])
    steps = [r["steps"] for r in mdm]
    ax_speed.plot(steps, [r["tokens_per_s"] for r in mdm], "o-", color=color,
                  label=f"MDM ({update})")
    ax_lat.plot(steps, [r["first_chunk_latency_s"] for r in mdm], "o-", color=color,
                label=f"MDM first chunk ({update})")
    ax_lat.plot(steps, [r["total_latency_s"] for r in mdm], "s--", color=color,
                label=f"MDM total ({update})")
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
