"""Load test of `launch.serve` on loopback: N clients x Q spoken questions, AR and MDM.

  python benchmarks/serve_load.py --checkpoint=demo_out/ar_stage2 \
      --checkpoint=demo_out/mdm_stage2 --vocoder=demo_out/vocoder/vocoder \
      --out=benchmarks/results/serve_load_tiny_cpu.json

Starts the server as a subprocess on 127.0.0.1 (a free port), then for each model and
each N in --clients opens N connections that each ask the first --questions questions of the
corpus's --split (the recordings of the checkpoint's prepared corpus; a smaller split is
cycled), one after another, starting at a different question per client. Per (model, N):
p50/p99 of first audio and first text as the client measures them (from the audio frame
sent), p50/p99 of the whole answer, wall time, answers per minute, errors by code, lost
requests (asked but neither answered nor refused), and the server's own pipeline figure
(first audio from the start of decoding, at N = 1 free of queueing). The server's resident
memory is read from /proc after one warm-up answer per model and after the last question.
Bounded: every answer has --answer_timeout_s, and no new question starts after --max_seconds
(the result then says how many were asked).
"""
from __future__ import annotations

import asyncio
import collections
import io
import os
import re
import signal
import subprocess
import sys
import time

import aiohttp
import numpy as np
import soundfile as sf
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from data_pipelines import speech_loader  # noqa: E402
from launch import logs  # noqa: E402
from vocalnet_jax.decoding import speech_io  # noqa: E402
from vocalnet_jax.evaluation import result_file  # noqa: E402
from vocalnet_jax.modeling import build, run_config  # noqa: E402
from vocalnet_jax.serving import client  # noqa: E402
from vocalnet_jax.serving.server import rss_mib  # noqa: E402

_CHECKPOINT = flags.DEFINE_multi_string("checkpoint", None, "Stage-2 workdirs (AR and MDM).",
                                        required=True)
_VOCODER = flags.DEFINE_string("vocoder", None, "Vocoder directory.", required=True)
_CLIENTS = flags.DEFINE_list("clients", ["1", "2", "4", "8"], "Concurrent clients.")
_QUESTIONS = flags.DEFINE_integer("questions", 25, "Questions per client.")
_SPLIT = flags.DEFINE_string("split", "test", "Corpus split the questions come from.")
_STEPS = flags.DEFINE_integer("steps", 4, "MDM steps per block (the demo evaluation's).")
_RULE = flags.DEFINE_string("rule", "threshold", "MDM commit rule (the demo evaluation's).")
_MAX_ACTIVE = flags.DEFINE_integer("max_active", 4, "Server: answers decoded at once.")
_MAX_WAITING = flags.DEFINE_integer("max_waiting", 16, "Server: queue places.")
_MAX_SECONDS = flags.DEFINE_float("max_seconds", 1800, "No new question after this long.")
_ANSWER_TIMEOUT = flags.DEFINE_float("answer_timeout_s", 120, "Per answer.")
_STARTUP_TIMEOUT = flags.DEFINE_float("startup_timeout_s", 1200, "Loading + compiling.")
_OUT = flags.DEFINE_string("out", "benchmarks/results/serve_load_tiny_cpu.json", "Result file.")


def start_server(port_timeout_s: float) -> tuple[subprocess.Popen, str]:
  """`launch.serve` on a free loopback port; returns it and its base URL once listening."""
  cmd = [sys.executable, "-m", "launch.serve", "--host=127.0.0.1", "--port=0",
         f"--vocoder={_VOCODER.value}", f"--steps={_STEPS.value}", f"--rule={_RULE.value}",
         f"--max_active={_MAX_ACTIVE.value}", f"--max_waiting={_MAX_WAITING.value}"]
  cmd += [f"--checkpoint={c}" for c in _CHECKPOINT.value]
  proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True,
                          env=dict(os.environ, XLA_FLAGS="", JAX_PLATFORMS="cpu"))
  deadline = time.time() + port_timeout_s
  for line in proc.stdout:  # blocks per line; the server prints a few
    print(f"[server] {line.rstrip()}", flush=True)
    if match := re.search(r"serving on (http://127\.0\.0\.1:\d+)/", line):
      return proc, match.group(1)
    if time.time() > deadline:
      break
  proc.kill()
  raise RuntimeError(f"the server did not start (exit code {proc.poll()})")


def questions(n: int) -> list[bytes]:
  """The first n questions of --split (all of it if smaller) as 16-bit WAV files."""
  config = run_config.resolve(None, _CHECKPOINT.value[0])
  size = len(speech_loader.open_source(build.corpus_dataset_dir(config), _SPLIT.value))
  out = []
  for i in range(min(n, size)):
    buf = io.BytesIO()
    sf.write(buf, speech_io.heldout_question(config, i, _SPLIT.value)["audio"], 16000,
             format="WAV", subtype="PCM_16")
    out.append(buf.getvalue())
  return out


async def one_client(http: aiohttp.ClientSession, url: str, model: str, audio: list[bytes],
                     offset: int, deadline: float, rows: list[dict]) -> None:
  ws, _ = await client.connect(http, url)
  try:
    for j in range(_QUESTIONS.value):  # cycling through the questions from `offset`
      if time.time() > deadline:
        return
      row = {"client": offset, "question": (offset + j) % len(audio)}
      rows.append(row)  # asked: counted as lost until it has an outcome
      reply = await asyncio.wait_for(client.ask(ws, audio[row["question"]], model=model),
                                     _ANSWER_TIMEOUT.value)
      row.update(outcome=reply.final["type"], code=reply.final.get("code"),
                 first_text_s=reply.first_text_s, first_audio_s=reply.first_audio_s,
                 total_s=reply.total_s, pipeline_first_audio_s=reply.final.get(
                     "pipeline_first_audio_s"), queue_s=reply.final.get("queue_s"),
                 nfe=reply.final.get("nfe"))
  except (asyncio.TimeoutError, ConnectionError, aiohttp.ClientError) as e:
    print(f"client {offset}: {type(e).__name__}: {e}", flush=True)
  finally:
    await ws.close()


def pct(values: list, q: float):
  values = [v for v in values if v is not None]
  return round(float(np.percentile(values, q)), 4) if values else None


def summarize(rows: list[dict], wall_s: float) -> dict:
  done = [r for r in rows if r.get("outcome") == "done"]
  errors = collections.Counter(r["code"] for r in rows if r.get("outcome") == "error")
  col = lambda key: [r[key] for r in done]  # noqa: E731
  return {"asked": len(rows), "answered": len(done), "errors": sum(errors.values()),
          "errors_by_code": dict(errors), "lost": sum(1 for r in rows if "outcome" not in r),
          "first_audio_p50_s": pct(col("first_audio_s"), 50),
          "first_audio_p99_s": pct(col("first_audio_s"), 99),
          "first_text_p50_s": pct(col("first_text_s"), 50),
          "total_p50_s": pct(col("total_s"), 50), "total_p99_s": pct(col("total_s"), 99),
          "pipeline_first_audio_p50_s": pct(col("pipeline_first_audio_s"), 50),
          "queue_p50_s": pct(col("queue_s"), 50), "queue_p99_s": pct(col("queue_s"), 99),
          "nfe_mean": round(float(np.mean(col("nfe"))), 2) if done else None,
          "wall_s": round(wall_s, 2),
          "answers_per_min": round(60 * len(done) / wall_s, 1) if wall_s else None}


async def load(url: str, models: list[str], audio: list[bytes], pid: int) -> dict:
  deadline = time.time() + _MAX_SECONDS.value
  async with aiohttp.ClientSession() as http:
    for model in models:  # one answer each first: memory is compared from a served state
      ws, _ = await client.connect(http, url + "/ws")
      await client.ask(ws, audio[0], model=model)
      await ws.close()
    out = {"rss_mib_before": round(rss_mib(str(pid)), 1), "runs": {}}
    for model in models:
      for n in map(int, _CLIENTS.value):
        rows: list[dict] = []
        tick = time.perf_counter()
        await asyncio.gather(*(one_client(http, url + "/ws", model, audio, c, deadline, rows)
                               for c in range(n)))
        summary = summarize(rows, time.perf_counter() - tick)
        summary["rss_mib_after"] = round(rss_mib(str(pid)), 1)
        out["runs"][f"{model}_clients{n}"] = summary
        print(f"{model} x{n}: {summary}", flush=True)
  out["rss_mib_after"] = round(rss_mib(str(pid)), 1)
  out["rss_change"] = round(out["rss_mib_after"] / out["rss_mib_before"] - 1, 4)
  out["stopped_early"] = time.time() > deadline
  return out


def main(argv):
  del argv
  audio = questions(_QUESTIONS.value)
  proc, url = start_server(_STARTUP_TIMEOUT.value)
  try:
    models = [run_config.resolve(None, c).objective for c in _CHECKPOINT.value]
    metrics = asyncio.run(load(url, models, audio, proc.pid))
  finally:
    proc.send_signal(signal.SIGINT)
    try:
      proc.wait(30)
    except subprocess.TimeoutExpired:
      proc.kill()
  for model in models:
    one = metrics["runs"].get(f"{model}_clients1", {})
    if one.get("first_audio_p50_s") and one.get("pipeline_first_audio_p50_s"):
      metrics[f"{model}_client_over_pipeline_first_audio_p50"] = round(
          one["first_audio_p50_s"] / one["pipeline_first_audio_p50_s"], 2)
  config = {"checkpoints": _CHECKPOINT.value, "vocoder": _VOCODER.value,
            "clients": [int(c) for c in _CLIENTS.value], "questions_per_client": _QUESTIONS.value,
            "split": _SPLIT.value, "mdm_steps": _STEPS.value, "mdm_rule": _RULE.value,
            "max_active": _MAX_ACTIVE.value, "max_waiting": _MAX_WAITING.value,
            "load_average_1_5_15_min": [round(x, 2) for x in os.getloadavg()]}
  result_file.write(_OUT.value, config, metrics)
  print(f"wrote {_OUT.value}")


if __name__ == "__main__":
  app.run(logs.main_quietly(main))
