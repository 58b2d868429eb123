"""The answering server end to end on tiny AR and MDM checkpoints: protocol round trip,
every bad input, the queue bound, disconnects, static files and a real browser."""
import asyncio
import io
import os
import threading

import aiohttp
import grain
import jax
import numpy as np
import pytest
import soundfile as sf

from configs import mdm
from data_pipelines.question_audio import decode_question_audio
from tests.test_vocoder import random_vocoder, tiny_config as tiny_vocoder_config
from vocalnet_jax.decoding import speech_io
from vocalnet_jax.modeling import run_config
from vocalnet_jax.serving import browser, client, engine as engine_lib, server as server_lib
from vocalnet_jax.serving.protocol import Ask
from vocalnet_jax.training import trainer
from vocalnet_jax.training.checkpointing import Checkpointer

RATE = 16000


def speaking_checkpoint(module, corpus: str, workdir: str, devices) -> None:
  """A tiny stage-2 checkpoint (config.json + orbax step) of random weights whose Thinker
  and Talker never end early (their eos logits, and those of ids past the tokenizer, are
  0: below the best random logit), so every answer has text and audio of full length."""
  config = module.get_config("tiny,stage=2")
  config.data.dir = corpus
  config.train.batch_size = 8
  state = trainer.init_state(trainer.setup_experiment(config, devices[:1]))
  # answers shorter than the corpus's (the lengths shape no parameter): fast tests
  config.data.update(response_len=8, max_units=30, mel_buckets=(600,))
  config.talker.text_per_chunk = 3
  params = jax.tree_util.tree_map(lambda x: x, state.params)
  model = speech_io.build.build(config)
  thinker_head = params["thinker"]["lm_head"]
  silent = np.arange(thinker_head["kernel"].shape[1])  # eos and ids past the tokenizer's
  silent = (silent == model.text_tokenizer.eos_id) | (silent >= model.text_tokenizer.vocab_size)
  thinker_head["kernel"] = thinker_head["kernel"].at[:, silent].set(0.0)
  talker_head = params["talker"]["decoder"]["lm_head"]
  talker_head["kernel"] = talker_head["kernel"].at[:, model.speech_vocab.num_units:].set(0.0)
  ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), keep=1, every=1, async_save=False)
  ckpt.save(1, state.replace(params=params), iter(grain.MapDataset.range(4).to_iter_dataset()),
            force=True)
  ckpt.close()
  run_config.write(config, workdir)


class ServerThread:
  """A Server on 127.0.0.1 (a free port) with its own event loop in a thread."""

  def __init__(self, server: server_lib.Server):
    self.server, self._started = server, threading.Event()
    self._thread = threading.Thread(target=asyncio.run, args=(self._main(),), daemon=True)
    self._thread.start()
    assert self._started.wait(30), "the server did not start"

  async def _main(self):
    from aiohttp import web
    self._stop = asyncio.Event()
    runner = web.AppRunner(self.server.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    self.port = runner.addresses[0][1]
    self._loop = asyncio.get_running_loop()
    self._started.set()
    await self._stop.wait()
    await runner.cleanup()

  @property
  def url(self) -> str:
    return f"http://127.0.0.1:{self.port}"

  def stop(self):
    self._loop.call_soon_threadsafe(self._stop.set)
    self._thread.join(30)


@pytest.fixture(scope="module")
def speech_dirs(prepared_corpus, tmp_path_factory, devices):
  """A tiny MDM stage-2 checkpoint and a random vocoder of its units."""
  root = tmp_path_factory.mktemp("serve")
  workdir = str(root / "mdm")
  speaking_checkpoint(mdm, prepared_corpus, workdir, devices)
  vocoder_config = tiny_vocoder_config()
  vocoder_config.units.vocab_size = 32  # tests.helpers.micro_data_config's units
  random_vocoder(vocoder_config).save(str(root / "vocoder"))
  return workdir, str(root / "vocoder")


@pytest.fixture(scope="module")
def served(speech_dirs):
  """The checkpoint behind a server: one answer at a time, one may wait."""
  workdir, vocoder = speech_dirs
  engine = engine_lib.load_engine([workdir], vocoder, lambda w: run_config.resolve(None, w),
                                  steps=2)
  engine.warm_up()
  question = speech_io.heldout_question(run_config.resolve(None, workdir), 0)["audio"]
  thread = ServerThread(server_lib.Server(engine, max_active=1, max_waiting=1,
                                          max_bytes=1 << 20))
  yield thread, wav_bytes(question)
  thread.stop()


def wav_bytes(wav: np.ndarray, rate: int = RATE) -> bytes:
  out = io.BytesIO()
  sf.write(out, wav, rate, format="WAV", subtype="PCM_16")
  return out.getvalue()


def run(coro_fn, served, *args):
  """Runs `coro_fn(http, ws_url, *args)` with a fresh HTTP client."""
  thread, _ = served

  async def main():
    async with aiohttp.ClientSession() as http:
      return await coro_fn(http, thread.url + "/ws", *args)
  return asyncio.run(main())


async def _ask_once(http, url, audio, settings):
  ws, ready = await client.connect(http, url)
  reply = await client.ask(ws, audio, **settings)
  await ws.close()
  return ready, reply


def test_protocol_round_trip_gives_the_pipelines_own_answer(served):
  thread, audio = served
  ready, reply = run(_ask_once, served, audio, {"model": "mdm", "steps": 2, "rule": "topk"})
  assert ready["models"]["mdm"] == {"mode": "mdm", "steps": 2, "max_steps": 4, "rule": "topk",
                                    "rules": ["topk", "threshold", "ancestral", "left_to_right"]}
  assert ready["sample_rate"] == RATE
  assert reply.ok, reply.events
  kinds = reply.kinds()
  assert kinds[0] == "started" and kinds[-1] == "done" and "text" in kinds
  assert kinds.index("text") < len(kinds) - 1 and kinds.count("audio") == len(reply.audio) > 0
  done = reply.final
  # the same question through the pipeline in-process: the same text, NFE and samples
  engine = thread.server.engine
  wav, _ = decode_question_audio(audio, "q", RATE, engine.window_s)
  pipe = engine.pipeline(Ask("mdm", 2, "topk"))
  events = list(pipe.stream(wav))
  expected = np.concatenate([e.audio for e in events if e.audio is not None])
  np.testing.assert_array_equal(np.concatenate(reply.audio), expected)
  texts = [e["text"] for e in reply.events if e["type"] == "text"]
  assert done["text"] == events[-1].text == texts[-1]
  assert done["nfe"] == events[-1].nfe and done["audio_chunks"] == len(reply.audio)
  assert done["audio_s"] == pytest.approx(expected.size / RATE, abs=1e-4)
  assert 0 <= done["queue_s"] <= done["first_text_s"] <= done["total_s"]
  assert done["first_audio_s"] <= done["total_s"] and reply.first_audio_s <= reply.total_s


def _tone(seconds: float) -> np.ndarray:
  return (0.3 * np.sin(2 * np.pi * 220 * np.arange(int(seconds * RATE)) / RATE)).astype(np.float32)


BAD_INPUTS = {  # name: (ask text frame, binary frame or None, error code, words of the message)
    "not_audio": ('{"type": "ask"', None, "malformed", "JSON object"),
    "not_audio_bytes": ('{"type": "ask", "model": "mdm"}', b"RIFF, but no audio at all" * 9,
                        "not_audio", "cannot be decoded"),
    "too_long": ('{"type": "ask", "model": "mdm"}', None, "too_long", "window"),
    "over_size": ('{"type": "ask", "model": "mdm"}', b"\0" * ((1 << 20) + 1), "too_large",
                  "byte limit"),
    "empty": ('{"type": "ask", "model": "mdm"}', b"", "empty", "empty"),
    "no_samples": ('{"type": "ask", "model": "mdm"}', None, "empty", "no samples"),
    "unknown_type": ('{"type": "hello"}', None, "malformed", "unknown message type"),
    "unknown_field": ('{"type": "ask", "model": "mdm", "voice": 1}', None, "malformed", "voice"),
    "unknown_model": ('{"type": "ask", "model": "gpt"}', None, "malformed", "answers with mdm"),
    "steps_out_of_range": ('{"type": "ask", "model": "mdm", "steps": 99}', None, "malformed",
                           "[1, 4]"),
    "audio_without_ask": (None, b"RIFF", "malformed", "must follow an ask"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_each_bad_input_is_one_error_event_and_the_next_question_is_answered(served, case):
  text, binary, code, words = BAD_INPUTS[case]
  binary = {"too_long": wav_bytes(_tone(7.5)), "no_samples": wav_bytes(np.zeros(0, np.float32))
            }.get(case, binary)
  _, audio = served

  async def body(http, url):
    ws, _ = await client.connect(http, url)
    if text is not None:
      await ws.send_str(text)
    if binary is not None:
      await ws.send_bytes(binary)
    bad = await client.read_reply(ws, 0.0)
    good = await client.ask(ws, audio, model="mdm")
    await ws.close()
    return bad, good

  bad, good = run(body, served)
  assert bad.kinds() == ["error"], bad.events  # exactly one event, and it is the error
  assert bad.final["code"] == code and words in bad.final["message"], bad.final
  assert "\n" not in bad.final["message"]
  assert good.ok and good.kinds()[0] == "started", good.events  # nothing left over


def _stats(thread) -> dict:
  async def get():
    async with aiohttp.ClientSession() as http:
      async with http.get(thread.url + "/stats") as r:
        return await r.json()
  return asyncio.run(get())


def test_queue_bound_and_disconnects_free_their_places(served):
  """One slot, one queue place: a third question is refused; a queued client that leaves
  frees its place at once, and one that leaves mid-answer frees the slot."""
  thread, audio = served
  before = _stats(thread)

  async def body(http, url):
    (c1, _), (c2, _), (c3, _) = [await client.connect(http, url) for _ in range(3)]
    # S=1 is not warmed up: c1's answer is compiling while the others arrive
    await client.send_ask(c1, audio, model="mdm", steps=1)
    assert (await c1.receive_json())["type"] == "started"
    await client.send_ask(c2, audio, model="mdm")
    assert await c2.receive_json() == {"type": "queued", "position": 1}
    busy = await client.ask(c3, audio, model="mdm")
    await client.send_ask(c1, audio, model="mdm")  # a second question on a busy connection
    in_progress = await c1.receive_json()
    stats = _stats_in_thread(thread)
    await c2.close()  # leaves the queue
    after_queue_leaves = await _wait_stats(thread, lambda s: s["waiting"] == 0)
    await c1.close()  # leaves mid-answer
    after_answer_leaves = await _wait_stats(thread, lambda s: s["active"] == 0)
    again = await client.ask(c3, audio, model="mdm")
    await c3.close()
    return busy, in_progress, stats, after_queue_leaves, after_answer_leaves, again

  busy, in_progress, stats, left_queue, left_answer, again = run(body, served)
  assert busy.kinds() == ["error"] and busy.final["code"] == "busy", busy.events
  assert "1 answers in progress and 1 waiting" in busy.final["message"]
  assert in_progress["code"] == "malformed" and "in progress" in in_progress["message"]
  assert (stats["active"], stats["waiting"]) == (1, 1)
  assert stats["refused"] == before["refused"] + 1
  assert left_queue["cancelled"] == before["cancelled"] + 1
  assert left_answer["cancelled"] == before["cancelled"] + 2
  assert left_answer["finished"] == before["finished"]  # c1's answer was stopped, not finished
  assert again.ok, again.events


def _stats_in_thread(thread) -> dict:
  """/stats from inside a running event loop (asyncio.run needs a thread of its own)."""
  out = {}
  t = threading.Thread(target=lambda: out.update(_stats(thread)))
  t.start()
  t.join()
  return out


async def _wait_stats(thread, ok, timeout_s: float = 120.0) -> dict:
  for _ in range(int(timeout_s / 0.1)):
    stats = await asyncio.to_thread(_stats, thread)
    if ok(stats):
      return stats
    await asyncio.sleep(0.1)
  raise TimeoutError(f"stats never satisfied the condition: {stats}")


def test_a_client_gone_between_ask_and_audio_leaves_nothing_behind(served):
  thread, audio = served
  before = _stats(thread)

  async def body(http, url):
    ws, _ = await client.connect(http, url)
    await ws.send_str('{"type": "ask", "model": "mdm"}')
    await ws.close()
    return await _ask_once(http, url, audio, {"model": "mdm"})

  _, reply = run(body, served)
  assert reply.ok
  # the slot is released just after the final event is sent: wait for it, not for a guess
  after = asyncio.run(_wait_stats(thread, lambda s: s["active"] == s["waiting"] == 0
                                  and s["connections"] == 0, timeout_s=30.0))
  assert after["admitted"] == before["admitted"] + 1


@pytest.mark.parametrize("path", ["/static/../server.py", "/static/%2e%2e/server.py",
                                  "/static/..%2fserver.py", "/static/%2e%2e%2fprotocol.py",
                                  "/static/../../../../etc/passwd", "/static//etc/passwd",
                                  "/static/.%2e/engine.py"])
def test_static_files_cannot_be_read_outside_their_folder(served, path):
  thread, _ = served

  async def raw_get(target):  # sent as is: a client library would normalise the path
    reader, writer = await asyncio.open_connection("127.0.0.1", thread.port)
    writer.write(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    data = await reader.read()
    writer.close()
    return data

  leaked = asyncio.run(raw_get(path))
  status = int(leaked.split(b" ", 2)[1])
  assert status in (400, 403, 404), leaked[:200]
  assert b"import" not in leaked and b"root:" not in leaked
  page = asyncio.run(raw_get("/static/app.js"))
  assert page.startswith(b"HTTP/1.1 200") and b"WebSocket" in page


@pytest.mark.skipif(not os.path.exists(browser.CHROMIUM),
                    reason=f"{browser.CHROMIUM} is not installed (make browser-test installs it)")
def test_the_page_in_a_real_browser_hears_the_microphone_shows_text_and_plays_audio(
    served, tmp_path):
  thread, audio = served
  question = str(tmp_path / "question.wav")
  with open(question, "wb") as f:
    f.write(audio)
  shot = os.environ.get("SERVE_SCREENSHOT", str(tmp_path / "page.png"))
  columns = asyncio.run(browser.talk(thread.url + "/", question, shot))
  assert set(columns) == {"mdm"}
  for name, col in columns.items():
    assert col["error"] is None, (name, col)
    assert col["done"] and "text" in col["events"] and col["text"] == col["done"]["text"] != ""
    assert col["received"] == col["done"]["audio_chunks"] > 0
    assert col["played"] == col["received"]  # every chunk's playback ended in Web Audio
    assert 0 < col["firstTextMs"] <= col["totalMs"] and 0 < col["firstAudioMs"] <= col["totalMs"]
  with open(shot, "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"



def test_the_launcher_refuses_bad_checkpoints_and_vocoders_in_one_line(speech_dirs, tmp_path):
  import subprocess
  import sys
  workdir, vocoder = speech_dirs
  empty, text = tmp_path / "empty", str(tmp_path / "text")
  empty.mkdir()
  run_config.write(mdm.get_config("tiny,text"), text)
  cases = {
      f"--checkpoint={workdir}": "--vocoder is required",
      f"--checkpoint={workdir} --vocoder={empty}": "is not a vocoder directory",
      f"--checkpoint={empty} --vocoder={vocoder}": "has no config.json",
      f"--checkpoint={text} --vocoder={vocoder}": "need a stage-2 (speech_talker) checkpoint",
      f"--checkpoint={workdir} --checkpoint={workdir} --vocoder={vocoder}": "a second mdm model",
  }
  script = ("import sys\nfrom absl import app, flags\nfrom launch import serve\n"
            "for argv in sys.argv[1:]:\n"
            "  flags.FLAGS.unparse_flags()  # each case from the defaults\n"
            "  try:\n    app.run(serve.main, argv=['serve'] + argv.split())\n"
            "  except SystemExit as e:\n    print('EXIT', e.code, flush=True)\n")
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  proc = subprocess.run([sys.executable, "-c", script, *cases], cwd=root, capture_output=True,
                        text=True, timeout=300, env=dict(os.environ, XLA_FLAGS=""))
  assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
  # sys.exit(message): the message is the one line on stderr and the exit status is 1
  exits = [line for line in proc.stdout.splitlines() if line.startswith("EXIT")]
  assert len(exits) == len(cases), proc.stdout + proc.stderr
  for line, needle in zip(exits, cases.values()):
    assert line.startswith("EXIT error: ") and needle in line, (needle, line)
