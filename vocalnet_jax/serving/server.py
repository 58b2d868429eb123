"""The aiohttp application: the page, its static files and the `/ws` answering socket.

Each WebSocket connection answers one question at a time (a page opens one per model to
ask AR and MDM side by side). Audio is checked (size, format, length) on arrival, before
it takes a place in the scheduler's queue; a mistake is one `error` event and the
connection goes on. A connection that closes drops its question from the queue or stops
its answer before the next decoding step. Static files are served from the package's
`static/` folder only (aiohttp's static route resolves paths inside it and refuses the rest).
"""
from __future__ import annotations

import asyncio
import functools
import os
import time
from typing import Any, Optional

from aiohttp import web

from data_pipelines.question_audio import QuestionAudioError, decode_question_audio
from vocalnet_jax.serving import protocol
from vocalnet_jax.serving.engine import Engine
from vocalnet_jax.serving.protocol import Ask, ProtocolError
from vocalnet_jax.serving.scheduler import END, Busy, Job, Scheduler

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
MAX_BYTES = 4 << 20  # question audio file size limit
QUESTION_NAME = "(received)"  # how audio errors name the question file


class Server:
  """Routes, limits and the shared scheduler of one Engine."""

  def __init__(self, engine: Engine, max_active: int = 4, max_waiting: int = 16,
               max_bytes: int = MAX_BYTES):
    self.engine, self.max_bytes = engine, max_bytes
    self.scheduler = Scheduler(max_active, max_waiting, _job_failed)
    self.connections = 0

  def ready_event(self) -> dict[str, Any]:
    e = self.engine
    return protocol.ready_event(e.models, e.sample_rate, e.output_rate, e.window_s,
                                self.max_bytes, self.scheduler.max_active,
                                self.scheduler.max_waiting)

  def app(self) -> web.Application:
    app = web.Application()
    app.router.add_get("/", self._index)
    app.router.add_get("/ws", self._websocket)
    app.router.add_get("/stats", self._stats)
    app.router.add_static("/static/", STATIC_DIR, follow_symlinks=False, show_index=False)
    app.on_shutdown.append(lambda _: asyncio.to_thread(self.scheduler.close))
    return app

  async def _index(self, request: web.Request) -> web.StreamResponse:
    return web.FileResponse(os.path.join(STATIC_DIR, "index.html"))

  async def _stats(self, request: web.Request) -> web.Response:
    return web.json_response({**self.scheduler.stats(), "connections": self.connections,
                              "rss_mib": round(rss_mib(), 1)})

  async def _websocket(self, request: web.Request) -> web.WebSocketResponse:
    # Frames up to twice the limit are read and refused with an error event; larger ones
    # close the connection with code 1009 (message too big) before they are buffered.
    ws = web.WebSocketResponse(max_msg_size=2 * self.max_bytes)
    await ws.prepare(request)
    connection = _Connection(self, ws)
    self.connections += 1
    try:
      await connection.send(self.ready_event())
      async for msg in ws:
        await connection.receive(msg)
    finally:
      self.connections -= 1
      connection.close()
    return ws


class _Connection:
  """One client: a pending ask, at most one answer in flight, and its event pump."""

  def __init__(self, server: Server, ws: web.WebSocketResponse):
    self.server, self.ws = server, ws
    self.ask: Optional[Ask] = None
    self.job: Optional[Job] = None
    self.pump: Optional[asyncio.Task] = None
    self._lock = asyncio.Lock()  # an audio header and its samples go out together

  async def send(self, event: Any) -> None:
    async with self._lock:
      if isinstance(event, tuple):  # (audio header, samples)
        await self.ws.send_json(event[0])
        await self.ws.send_bytes(event[1])
      else:
        await self.ws.send_json(event)

  async def receive(self, msg: Any) -> None:
    try:
      if msg.type == web.WSMsgType.TEXT:
        self._check_idle()
        self.ask = None  # a new ask replaces a pending one only if it is valid
        self.ask = protocol.parse_ask(msg.data, self.server.engine.models)
      elif msg.type == web.WSMsgType.BINARY:
        self._check_idle()
        if self.ask is None:
          raise ProtocolError("malformed", "a binary frame (audio) must follow an ask "
                              "message: send {\"type\": \"ask\", ...} first")
        ask, self.ask = self.ask, None
        await self._start(ask, msg.data)
    except ProtocolError as e:
      await self.send(e.event())

  def _check_idle(self) -> None:
    if self.job is not None:
      raise ProtocolError("malformed", "an answer is in progress on this connection; send the "
                          "next question after its done event (or open another connection)")

  async def _start(self, ask: Ask, data: bytes) -> None:
    received = time.perf_counter()  # the end of the question, for every latency
    protocol.check_size(data, self.server.max_bytes)
    engine = self.server.engine
    try:
      wav, notes = await asyncio.to_thread(decode_question_audio, data, QUESTION_NAME,
                                           engine.sample_rate, engine.window_s)
    except QuestionAudioError as e:
      raise ProtocolError(e.reason, str(e)) from None
    for note in notes:
      await self.send({"type": "note", "message": note})
    loop, events = asyncio.get_running_loop(), asyncio.Queue()
    job = Job(functools.partial(engine.answer, ask, wav, received),
              lambda item: loop.call_soon_threadsafe(events.put_nowait, item),
              is_final=lambda item: isinstance(item, dict) and item["type"] == "done",
              audio_s=functools.partial(_audio_seconds, rate=engine.output_rate))
    try:
      place = self.server.scheduler.submit(job)
    except Busy as e:
      raise ProtocolError("busy", str(e)) from None
    self.job = job
    self.pump = asyncio.create_task(self._pump(events))
    if place:
      await self.send({"type": "queued", "position": place})

  async def _pump(self, events: asyncio.Queue) -> None:
    """Sends the job's events until END; the connection takes a new ask from `done` on."""
    while (item := await events.get()) is not END:
      if isinstance(item, dict) and item["type"] in ("done", "error"):
        self.job = None
      try:
        await self.send(item)
      except ConnectionError:  # the client is gone: the handler's close cancels the job
        return
    self.job = None

  def close(self) -> None:
    """The client is gone: its question leaves the queue, its answer stops."""
    if self.job is not None:
      self.server.scheduler.cancel(self.job)
      self.job = None
    if self.pump is not None:
      self.pump.cancel()


def _audio_seconds(item: Any, rate: int) -> float:
  """Playing time of an answer event: an (audio header, samples) pair's, else 0."""
  return item[0]["samples"] / rate if isinstance(item, tuple) else 0.0


def _job_failed(job: Job, error: BaseException) -> None:
  job.emit(protocol.error_event("internal", f"decoding failed: {type(error).__name__}: "
                                f"{str(error).splitlines()[0] if str(error) else ''}"))


def rss_mib(pid: str = "self") -> float:
  """Resident memory of a process now (MiB), from /proc."""
  with open(f"/proc/{pid}/status") as f:
    for line in f:
      if line.startswith("VmRSS:"):
        return int(line.split()[1]) / 1024
  raise OSError(f"/proc/{pid}/status has no VmRSS")


async def serve(server: Server, host: str, port: int) -> None:
  """Runs until cancelled; prints the page's address once listening."""
  runner = web.AppRunner(server.app())
  await runner.setup()
  site = web.TCPSite(runner, host, port)
  await site.start()
  bound = runner.addresses[0][1]  # the port given, or the free one chosen for port 0
  print(f"serving on http://{host}:{bound}/ (Ctrl-C stops)", flush=True)
  try:
    await asyncio.Event().wait()
  finally:
    await runner.cleanup()
