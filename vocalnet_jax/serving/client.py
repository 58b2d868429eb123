"""A protocol client: asks one question over an open WebSocket and times the answer.

Used by the load benchmark and the tests; latencies are measured here, from the moment
the question's audio frame was sent (the end of the question, as the page measures them).
"""
from __future__ import annotations

import dataclasses
import json
import time
from typing import Any, Optional

import aiohttp
import numpy as np

from vocalnet_jax.serving import protocol


@dataclasses.dataclass
class Reply:
  """Everything the server sent for one question, in order, with client-side times."""
  events: list[dict[str, Any]] = dataclasses.field(default_factory=list)
  audio: list[np.ndarray] = dataclasses.field(default_factory=list)  # one per audio event
  first_text_s: Optional[float] = None
  first_audio_s: Optional[float] = None
  total_s: Optional[float] = None

  @property
  def final(self) -> dict[str, Any]:
    """The `done` or `error` event that ended the reply."""
    return self.events[-1]

  @property
  def ok(self) -> bool:
    return bool(self.events) and self.final["type"] == "done"

  def kinds(self) -> list[str]:
    return [e["type"] for e in self.events]


async def send_ask(ws: aiohttp.ClientWebSocketResponse, audio: Optional[bytes],
                   **ask: Any) -> None:
  """An ask (model, steps, rule as given) followed by the audio file's bytes."""
  await ws.send_str(json.dumps({"type": "ask", **ask}))
  if audio is not None:
    await ws.send_bytes(audio)


async def read_reply(ws: aiohttp.ClientWebSocketResponse, sent: float) -> Reply:
  """Events until `done` or `error` (sent: perf_counter when the audio went out)."""
  reply = Reply()
  while True:
    msg = await ws.receive()
    if msg.type != aiohttp.WSMsgType.TEXT:
      raise ConnectionError(f"expected an event, got {msg.type.name} {msg.data!r}")
    event = json.loads(msg.data)
    reply.events.append(event)
    now = time.perf_counter() - sent
    if event["type"] == "text" and reply.first_text_s is None:
      reply.first_text_s = now
    elif event["type"] == "audio":
      samples = await ws.receive()
      if samples.type != aiohttp.WSMsgType.BINARY:
        raise ConnectionError(f"an audio event must be followed by samples, got {samples.type}")
      reply.audio.append(protocol.decode_samples(samples.data))
      if reply.first_audio_s is None:
        reply.first_audio_s = time.perf_counter() - sent
    elif event["type"] in ("done", "error"):
      reply.total_s = now
      return reply


async def ask(ws: aiohttp.ClientWebSocketResponse, audio: bytes, **settings: Any) -> Reply:
  """One question on an idle connection, answered (or refused) in full."""
  await send_ask(ws, audio, **settings)
  return await read_reply(ws, time.perf_counter())


async def connect(http: aiohttp.ClientSession, url: str
                  ) -> tuple[aiohttp.ClientWebSocketResponse, dict[str, Any]]:
  """Opens the answering socket; returns it with the server's `ready` event."""
  ws = await http.ws_connect(url, max_msg_size=0)
  ready = json.loads((await ws.receive()).data)
  if ready.get("type") != "ready":
    raise ConnectionError(f"the server did not say ready: {ready}")
  return ws, ready
