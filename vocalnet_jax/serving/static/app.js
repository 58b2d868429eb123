// The page: record or drop a question, send it to every chosen model (one WebSocket each),
// show the streamed text, play the audio chunks as they arrive (Web Audio) and the
// latencies measured here from the end of the question. No build step, no dependencies.
"use strict";

const $ = (id) => document.getElementById(id);
const wsUrl = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
// Everything the page knows, readable from the console (and by the browser test).
const state = { ready: null, columns: {}, questions: 0 };
window.vocalnet = state;
let player = null;  // AudioContext for playback, made on the first user action

function log(message) {
  const li = document.createElement("li");
  li.textContent = `${new Date().toLocaleTimeString()} ${message}`;
  $("log").prepend(li);
}

function audioOut() {
  if (!player) player = new AudioContext();
  if (player.state === "suspended") player.resume();
  return player;
}

// ---- one column per model, each with its own socket ----
function makeColumn(name, info) {
  const el = document.createElement("div");
  el.className = "column";
  el.innerHTML = `<h2>${name.toUpperCase()} <span class="state">idle</span></h2>
    <div class="text"></div>
    <table>
      <tr class="big"><td>first text</td><td class="first_text">-</td></tr>
      <tr class="big"><td>first audio</td><td class="first_audio">-</td></tr>
      <tr><td>whole answer</td><td class="total">-</td></tr>
      <tr><td>waited for a slot (server)</td><td class="queue">-</td></tr>
      <tr><td>network forwards (Thinker + Talker)</td><td class="nfe">-</td></tr>
      <tr><td>audio chunks received / played</td><td class="chunks">-</td></tr>
      <tr><td>answer audio</td><td class="audio_s">-</td></tr>
    </table>
    <div class="controls"><label><input type="checkbox" class="mute"> mute</label>
      <button class="replay" disabled>replay</button>
      <label><input type="checkbox" class="use" checked> ask ${name.toUpperCase()}</label></div>`;
  $("columns").append(el);
  const col = { name, info, el, ws: null, busy: false, text: "", events: [], received: 0,
                played: 0, samples: [], firstTextMs: null, firstAudioMs: null, totalMs: null,
                done: null, error: null, pendingAudio: null, nextTime: 0, gain: null,
                sentAt: 0 };
  el.querySelector(".mute").onchange = (e) => { if (col.gain) col.gain.gain.value = e.target.checked ? 0 : 1; };
  el.querySelector(".replay").onclick = () => replay(col);
  connect(col);
  return col;
}

function show(col, cls, value) { col.el.querySelector("." + cls).textContent = value; }
const ms = (x) => (x === null || x === undefined ? "-" : `${Math.round(x)} ms`);

function connect(col) {
  const ws = new WebSocket(wsUrl);
  ws.binaryType = "arraybuffer";
  ws.onmessage = (msg) => (typeof msg.data === "string" ? onEvent(col, JSON.parse(msg.data))
                                                         : onSamples(col, msg.data));
  ws.onclose = () => { show(col, "state", "disconnected (reload the page)"); col.ws = null; };
  col.ws = ws;
}

function onEvent(col, event) {
  const now = performance.now() - col.sentAt;
  col.events.push(event.type);
  switch (event.type) {
    case "ready": break;
    case "note": log(`${col.name}: ${event.message}`); break;
    case "queued": show(col, "state", `queued (#${event.position})`); break;
    case "started": show(col, "state", "answering"); break;
    case "text":
      if (col.firstTextMs === null) { col.firstTextMs = now; show(col, "first_text", ms(now)); }
      col.text = event.text;
      show(col, "text", event.text);
      break;
    case "audio": col.pendingAudio = event; break;
    case "done":
      col.busy = false;
      col.done = event;
      col.totalMs = now;
      show(col, "state", "done");
      show(col, "text", event.text);
      show(col, "total", ms(now));
      show(col, "queue", ms(1000 * event.queue_s));
      show(col, "nfe", `${event.nfe} (${event.thinker_nfe} + ${event.nfe - event.thinker_nfe})`);
      show(col, "audio_s", `${event.audio_s.toFixed(2)} s`);
      col.el.querySelector(".replay").disabled = !col.samples.length;
      break;
    case "error":
      col.busy = false;
      col.error = event;
      show(col, "state", `error: ${event.code}`);
      col.el.querySelector(".text").innerHTML = "";
      col.el.querySelector(".text").append(Object.assign(document.createElement("span"),
        { className: "error", textContent: event.message }));
      log(`${col.name}: ${event.code}: ${event.message}`);
      break;
  }
}

function onSamples(col, buffer) {
  const header = col.pendingAudio;
  col.pendingAudio = null;
  const samples = new Float32Array(buffer);
  col.received += 1;
  col.samples.push(samples);
  if (col.firstAudioMs === null) {
    col.firstAudioMs = performance.now() - col.sentAt;
    show(col, "first_audio", ms(col.firstAudioMs));
  }
  play(col, samples);
  show(col, "chunks", `${col.received} / ${col.played}`);
}

// Chunks are queued back to back on the column's own gain node as they arrive.
function play(col, samples) {
  const ctx = audioOut();
  if (!col.gain) {
    col.gain = ctx.createGain();
    col.gain.gain.value = col.el.querySelector(".mute").checked ? 0 : 1;
    col.gain.connect(ctx.destination);
  }
  const buffer = ctx.createBuffer(1, samples.length, state.ready.sample_rate);
  buffer.copyToChannel(samples, 0);
  const source = ctx.createBufferSource();
  source.buffer = buffer;
  source.connect(col.gain);
  source.onended = () => { col.played += 1; show(col, "chunks", `${col.received} / ${col.played}`); };
  const start = Math.max(ctx.currentTime + 0.01, col.nextTime);
  source.start(start);
  col.nextTime = start + buffer.duration;
}

function replay(col) {
  const total = col.samples.reduce((n, s) => n + s.length, 0);
  const all = new Float32Array(total);
  let at = 0;
  for (const s of col.samples) { all.set(s, at); at += s.length; }
  col.nextTime = 0;
  play(col, all);
}

// ---- asking ----
function ask(wavBytes, endedAt, what) {
  state.questions += 1;
  $("question").textContent = `question ${state.questions}: ${what}`;
  audioOut();
  for (const col of Object.values(state.columns)) {
    if (!col.el.querySelector(".use").checked) continue;
    if (!col.ws || col.ws.readyState !== WebSocket.OPEN) { log(`${col.name}: not connected`); continue; }
    if (col.busy) { log(`${col.name}: still answering the last question`); continue; }
    Object.assign(col, { busy: true, text: "", events: [], received: 0, played: 0, samples: [],
                         firstTextMs: null, firstAudioMs: null, totalMs: null, done: null,
                         error: null, nextTime: 0, sentAt: endedAt });
    for (const cls of ["first_text", "first_audio", "total", "queue", "nfe", "chunks", "audio_s", "text"])
      show(col, cls, cls === "text" ? "" : "-");
    show(col, "state", "sent");
    const message = { type: "ask", model: col.name };
    if (col.info.mode === "mdm") {
      message.steps = Number($("steps").value);
      message.rule = $("rule").value;
    }
    col.ws.send(JSON.stringify(message));
    col.ws.send(wavBytes);
  }
}

// ---- recording: microphone -> 16 kHz mono 16-bit WAV ----
let recording = null;

async function startRecording() {
  const stream = await navigator.mediaDevices.getUserMedia({ audio: {
    channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false } });
  const ctx = new AudioContext();
  await ctx.audioWorklet.addModule("/static/capture.js");
  const node = new AudioWorkletNode(ctx, "capture");
  const chunks = [];
  node.port.onmessage = (e) => chunks.push(e.data);
  ctx.createMediaStreamSource(stream).connect(node);
  recording = { stream, ctx, node, chunks,
                limit: setTimeout(stopRecording, 1000 * state.ready.window_s - 100) };
  $("record").classList.add("on");
  $("record").textContent = "\u25A0 Stop";
}

async function stopRecording() {
  if (!recording) return;
  const endedAt = performance.now();  // the end of the question
  const { stream, ctx, node, chunks, limit } = recording;
  recording = null;
  clearTimeout(limit);
  stream.getTracks().forEach((t) => t.stop());
  node.disconnect();
  $("record").classList.remove("on");
  $("record").textContent = "\u25CF Record";
  const rate = ctx.sampleRate;
  await ctx.close();
  const samples = concat(chunks);
  const wav = encodeWav(await resample(samples, rate, state.ready.input_sample_rate),
                        state.ready.input_sample_rate);
  ask(wav, endedAt, `recorded ${(samples.length / rate).toFixed(2)} s`);
}

function concat(chunks) {
  const out = new Float32Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) { out.set(c, at); at += c.length; }
  return out;
}

async function resample(samples, from, to) {
  if (from === to || samples.length === 0) return samples;
  const length = Math.max(1, Math.round(samples.length * to / from));
  const offline = new OfflineAudioContext(1, length, to);
  const buffer = offline.createBuffer(1, samples.length, from);
  buffer.copyToChannel(samples, 0);
  const source = offline.createBufferSource();
  source.buffer = buffer;
  source.connect(offline.destination);
  source.start();
  return (await offline.startRendering()).getChannelData(0);
}

function encodeWav(samples, rate) {
  const view = new DataView(new ArrayBuffer(44 + 2 * samples.length));
  const text = (at, s) => [...s].forEach((c, i) => view.setUint8(at + i, c.charCodeAt(0)));
  text(0, "RIFF"); view.setUint32(4, 36 + 2 * samples.length, true); text(8, "WAVE");
  text(12, "fmt "); view.setUint32(16, 16, true); view.setUint16(20, 1, true);
  view.setUint16(22, 1, true); view.setUint32(24, rate, true); view.setUint32(28, 2 * rate, true);
  view.setUint16(32, 2, true); view.setUint16(34, 16, true);
  text(36, "data"); view.setUint32(40, 2 * samples.length, true);
  samples.forEach((x, i) => view.setInt16(44 + 2 * i, Math.max(-1, Math.min(1, x)) * 32767, true));
  return view.buffer;
}

// ---- a dropped or chosen file is sent as it is: the server reads and checks it ----
async function askFile(file) {
  const endedAt = performance.now();
  ask(await file.arrayBuffer(), endedAt, `file ${file.name} (${file.size} bytes)`);
}

function setUp(ready) {
  state.ready = ready;
  for (const [name, info] of Object.entries(ready.models)) state.columns[name] = makeColumn(name, info);
  const mdm = Object.values(ready.models).find((m) => m.mode === "mdm");
  if (mdm) {
    for (let s = 1; s <= mdm.max_steps; s++) $("steps").append(new Option(s, s, false, s === mdm.steps));
    for (const r of mdm.rules) $("rule").append(new Option(r, r, false, r === mdm.rule));
  } else {
    $("steps").parentElement.hidden = $("rule").parentElement.hidden = true;
  }
  $("status").textContent = `models: ${Object.keys(ready.models).join(", ")}; questions up to ` +
    `${ready.window_s.toFixed(1)} s; ${ready.max_active} answered at once, ${ready.max_waiting} may wait`;
  $("record").disabled = false;
}

$("record").onclick = () => (recording ? stopRecording() : startRecording().catch((e) => log(`microphone: ${e}`)));
$("file").onchange = (e) => e.target.files[0] && askFile(e.target.files[0]);
const drop = $("drop");
drop.ondragover = (e) => { e.preventDefault(); drop.classList.add("over"); };
drop.ondragleave = () => drop.classList.remove("over");
drop.ondrop = (e) => { e.preventDefault(); drop.classList.remove("over");
                       if (e.dataTransfer.files[0]) askFile(e.dataTransfer.files[0]); };

// The server's `ready` event (on a first socket) says which models and limits it has.
const probe = new WebSocket(wsUrl);
probe.onmessage = (msg) => { setUp(JSON.parse(msg.data)); probe.close(); };
probe.onerror = () => { $("status").textContent = "cannot reach the server"; };
