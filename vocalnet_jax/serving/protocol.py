"""The WebSocket protocol of `launch.serve` (documented in docs/serving.md).

Client -> server: a JSON text frame `{"type": "ask", "model": "mdm", "steps": 4,
"rule": "threshold"}` (model, steps and rule optional), then one binary frame holding the
question's audio file (WAV, FLAC, OGG or MP3). Server -> client: JSON events (`ready`,
`note`, `queued`, `started`, `text`, `audio`, `done`, `error`); each `audio` event is
followed by one binary frame of float32 little-endian samples. Every client mistake is one
`error` event with a `code` from ERROR_CODES and a one-line `message`; the connection stays
usable (the next ask is answered).
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any, Optional

import numpy as np

from vocalnet_jax.decoding import step_rules

PROTOCOL_VERSION = 1
ERROR_CODES = ("malformed", "not_audio", "empty", "too_long", "too_large", "busy", "internal")
ASK_FIELDS = ("type", "model", "steps", "rule")


class ProtocolError(Exception):
  """A request the server refuses; becomes one `error` event."""

  def __init__(self, code: str, message: str):
    assert code in ERROR_CODES, code
    super().__init__(message)
    self.code = code

  def event(self) -> dict[str, Any]:
    return error_event(self.code, str(self))


def error_event(code: str, message: str) -> dict[str, Any]:
  return {"type": "error", "code": code, "message": message}


@dataclasses.dataclass(frozen=True)
class ModelInfo:
  """What one loaded model accepts per request (sent in the `ready` event)."""
  mode: str  # ar | mdm (the checkpoint's objective)
  steps: int  # default S (MDM: forwards per text block and per speech chunk)
  max_steps: int  # S <= min(text block, speech chunk)
  rule: str  # default commit rule (MDM)

  def describe(self) -> dict[str, Any]:
    if self.mode == "ar":
      return {"mode": "ar"}
    return {"mode": "mdm", "steps": self.steps, "max_steps": self.max_steps, "rule": self.rule,
            "rules": list(step_rules.RULES)}


@dataclasses.dataclass(frozen=True)
class Ask:
  """One validated question request (the audio follows in a binary frame)."""
  model: str
  steps: int  # 0 for AR
  rule: str  # "" for AR


def parse_ask(text: str, models: dict[str, ModelInfo]) -> Ask:
  """The `ask` in a client text frame; ProtocolError('malformed') naming what is wrong."""
  try:
    msg = json.loads(text)
  except ValueError:
    raise ProtocolError("malformed", "a text frame must be a JSON object "
                        f"(got {_preview(text)})") from None
  if not isinstance(msg, dict):
    raise ProtocolError("malformed", f"a text frame must be a JSON object (got {_preview(text)})")
  if msg.get("type") != "ask":
    raise ProtocolError("malformed", f"unknown message type {msg.get('type')!r}: the client "
                        "sends {\"type\": \"ask\", ...} then the audio as one binary frame")
  unknown = sorted(set(msg) - set(ASK_FIELDS))
  if unknown:
    raise ProtocolError("malformed", f"ask: unknown field(s) {', '.join(unknown)}; "
                        f"fields are {', '.join(ASK_FIELDS)}")
  name = msg.get("model", next(iter(models)) if len(models) == 1 else None)
  if name not in models:
    raise ProtocolError("malformed", f"ask.model={name!r}: this server answers with "
                        f"{', '.join(sorted(models))}")
  info = models[name]
  if info.mode == "ar":
    for key in ("steps", "rule"):
      if msg.get(key) is not None:
        raise ProtocolError("malformed", f"ask.{key}: model {name!r} decodes AR (one token "
                            "per forward); steps and rule are MDM knobs")
    return Ask(name, 0, "")
  steps = msg.get("steps", info.steps)
  if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= info.max_steps:
    raise ProtocolError("malformed", f"ask.steps={steps!r}: an integer in [1, "
                        f"{info.max_steps}] for model {name!r}")
  rule = msg.get("rule", info.rule)
  if rule not in step_rules.RULES:
    raise ProtocolError("malformed", f"ask.rule={rule!r}: one of {', '.join(step_rules.RULES)}")
  return Ask(name, steps, rule)


def _preview(text: str, limit: int = 40) -> str:
  return repr(text if len(text) <= limit else text[:limit] + "...")


def ready_event(models: dict[str, ModelInfo], sample_rate: int, output_rate: int,
                window_s: float, max_bytes: int, max_active: int,
                max_waiting: int) -> dict[str, Any]:
  """The first event of a connection: what the server answers with and its limits."""
  return {"type": "ready", "protocol": PROTOCOL_VERSION,
          "models": {name: info.describe() for name, info in models.items()},
          "input_sample_rate": sample_rate, "sample_rate": output_rate,
          "window_s": round(window_s, 3), "max_bytes": max_bytes,
          "max_active": max_active, "max_waiting": max_waiting}


def audio_header(index: int, samples: int, time_s: float) -> dict[str, Any]:
  """Precedes one binary frame of `samples` float32 little-endian samples."""
  return {"type": "audio", "index": index, "samples": samples, "time_s": round(time_s, 4)}


def encode_samples(audio: np.ndarray) -> bytes:
  return np.asarray(audio, "<f4").tobytes()


def decode_samples(data: bytes) -> np.ndarray:
  return np.frombuffer(data, "<f4")


def check_size(data: bytes, max_bytes: int) -> None:
  if len(data) > max_bytes:
    raise ProtocolError("too_large", f"the audio is {len(data)} bytes, over the "
                        f"{max_bytes}-byte limit")


def optional_float(x: Optional[float]) -> Optional[float]:
  return None if x is None else round(float(x), 4)
