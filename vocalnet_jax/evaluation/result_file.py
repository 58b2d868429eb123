"""One schema for every measured result in `benchmarks/results/`.

Each file names its evidence: the command that wrote it, the commit it ran at (and whether
the tree had uncommitted changes), the machine (CPU model, cores, memory, OS; never the host
name) and the accelerator, the date, the config it measured and the metrics.
`docs/results.md` is generated from these files.
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
from typing import Any, Optional

RESULTS_DIR = "benchmarks/results"  # where committed result files live, from the repo root
SCHEMA_KEYS = ("command", "commit", "machine", "device", "date", "config", "metrics")


def git_commit(repo_dir: Optional[str] = None) -> str:
  """HEAD's hash, with `+dirty` when tracked files differ from it (results already written
  under RESULTS_DIR do not count: they change no code); `unknown` outside git."""
  cwd = repo_dir or os.getcwd()
  try:
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True,
                          text=True, check=True).stdout.strip()
    dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", ".",
                            f":(exclude){RESULTS_DIR}"], cwd=cwd,
                           capture_output=True).returncode != 0
  except (OSError, subprocess.CalledProcessError):
    return "unknown"
  return head + ("+dirty" if dirty else "")


def _cpu_model() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
  try:
    with open("/proc/meminfo") as f:
      for line in f:
        if line.startswith("MemTotal:"):
          return round(int(line.split()[1]) / 2**20, 1)
  except OSError:
    pass
  return None


def machine_info() -> dict[str, Any]:
  """The host's hardware and OS, without its name."""
  return {"cpu": _cpu_model(), "cores": os.cpu_count(), "memory_gib": _memory_gib(),
          "os": f"{platform.system()} {platform.release()}",
          "python": platform.python_version()}


def device_info() -> str:
  """`cpu:cpu x8`, `gpu:NVIDIA H200 x1`: the JAX backend the run used."""
  import jax  # imported here so that reading results needs no JAX
  d = jax.devices()[0]
  return f"{d.platform}:{d.device_kind} x{jax.device_count()}"


def command_line(argv: Optional[list[str]] = None, module: Optional[str] = None) -> str:
  """The command that reproduces this run: `python -m MODULE flags` or `python SCRIPT flags`.

  Run as `python -m pkg.mod`, argv[0] is the module's absolute file: it is named by its
  module instead; a script's path is written relative to the working directory, so no
  result names the machine's directories."""
  if argv is None:
    argv = sys.argv
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if module is None and spec is not None and spec.name != "__main__":
      module = spec.name
  argv = list(argv)
  script = argv[0] if argv else ""
  if os.path.isabs(script) and os.path.realpath(script).startswith(os.getcwd() + os.sep):
    script = os.path.relpath(script)
  head = f"python -m {module}" if module else f"python {script}"
  return " ".join([head] + argv[1:])


def record(config: Any, metrics: Any, *, command: Optional[str] = None,
           device: Optional[str] = None) -> dict[str, Any]:
  """A result in the shared schema; `config` and `metrics` must be JSON-serialisable."""
  return {"command": command or command_line(), "commit": git_commit(),
          "machine": machine_info(), "device": device or device_info(),
          "date": datetime.date.today().isoformat(), "config": config, "metrics": metrics}


def write(path: str, config: Any, metrics: Any, **kwargs) -> dict[str, Any]:
  """Writes `record(config, metrics, **kwargs)` to `path` as indented JSON."""
  result = record(config, metrics, **kwargs)
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  with open(path, "w") as f:
    json.dump(result, f, indent=1, sort_keys=False)
    f.write("\n")
  return result


def read(path: str) -> dict[str, Any]:
  """Reads a result file; one clear error naming the file and the missing keys."""
  with open(path) as f:
    result = json.load(f)
  missing = [k for k in SCHEMA_KEYS if k not in result]
  if missing:
    raise ValueError(f"{path}: not a result file (missing {', '.join(missing)})")
  return result
