"""Streaming spoken answers: audio in -> text blocks -> speech chunks -> audio chunks out.

Pipeline per request (batch 1):
  question wav -> log-mel -> encoder + adaptor -> Thinker prefix
  [bos, <|user|>, audio..., <|assistant|>] prefilled into the Thinker's KV cache;
  loop: decode Thinker text blocks until speech chunk k has the text it may see
  (positions < text_per_chunk * (k + 1), or the text ended), write their fused
  conditioning into the Talker's cache, decode speech chunk k, hand it to the
  vocoder, yield audio.
Each of Thinker and Talker runs MDM (block diffusion, `decode_block`) or AR (one token
per forward). Every per-block step is one jitted function whose inner loop is a
`lax.scan` / `lax.while_loop`; the Python loop only walks blocks so results can be
yielded as soon as they exist. `respond` decodes all text first and all speech after
(no interleaving): streaming must give the same tokens, since chunk k never sees text
past its streaming limit.

Cache layouts: Thinker [prefix P ; text R]; Talker [text conditioning R ; speech S],
text slot j at RoPE position j * chunk // text_per_chunk, speech slot i at i (as in
training, `talker.talker_positions`).
"""
from __future__ import annotations

import dataclasses
import functools
import itertools
import time
from typing import Any, Iterator, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from data_pipelines import features
from vocalnet_jax.decoding.block_diffusion import BlockDiffusionConfig, decode_block
from vocalnet_jax.decoding.lm import Cache, CachedLM, upto_first_eos
from vocalnet_jax.diffusion import attention_masks
from vocalnet_jax.models import layers
from vocalnet_jax.models.speech_llm import SpeechLLM

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class StreamConfig:
  """Decoding knobs of both halves (hashable: static under jit)."""
  thinker_mode: str  # mdm | ar
  talker_mode: str  # mdm | ar
  text_block: int  # Thinker block size (AR: tokens per text chunk)
  text_steps: int
  speech_chunk: int  # Talker block = streaming chunk
  speech_steps: int
  text_per_chunk: int
  max_text_tokens: int
  max_speech_tokens: int
  rule: str = "topk"
  cache_update: str = "extra_forward"
  mel_frames: int = 600  # question mel is padded to this many frames (one compile)

  def __post_init__(self):
    for name in ("thinker_mode", "talker_mode"):
      if getattr(self, name) not in ("mdm", "ar"):
        raise ValueError(f"{name}={getattr(self, name)!r}: choose 'mdm' or 'ar'")

  @property
  def num_text_blocks(self) -> int:
    return -(-self.max_text_tokens // self.text_block)

  @property
  def num_speech_chunks(self) -> int:
    return -(-self.max_speech_tokens // self.speech_chunk)


class StreamEvent(NamedTuple):
  """One output of the stream: new text, a new audio chunk, or both."""
  text: str  # the answer text so far
  units: Optional[np.ndarray]  # speech units of this chunk (None for a text event)
  audio: Optional[np.ndarray]  # waveform chunk (None without vocoder / for text events)
  time_s: float  # seconds since the request started (the user's audio ended)
  nfe: int  # network forwards so far (Thinker + Talker)


@functools.lru_cache(maxsize=None)
def part_lm(model: SpeechLLM, part: str) -> CachedLM:
  """`CachedLM` of the Thinker or the Talker inside the speech model (cached: hashable)."""
  decoder = model.thinker if part == "thinker" else model.talker.decoder
  embed = getattr(SpeechLLM, f"{part}_embed")
  hidden = getattr(SpeechLLM, f"{part}_hidden")

  def forward(params, tokens, positions, mask, cache, cache_index):
    v = {"params": params}
    return model.apply(v, model.apply(v, tokens, method=embed), positions, mask, cache,
                       cache_index, method=hidden)

  def logits(params, h):
    return model.apply({"params": params}, h, method=getattr(SpeechLLM, f"{part}_logits"))

  def init_cache(batch, max_len):
    return layers.init_kv_cache(batch, max_len, decoder.num_layers, decoder.num_kv_heads,
                                decoder.head_dim, decoder.dtype)

  return CachedLM(forward, logits, init_cache)


def _slots(cache_len: int, start: Array, stop: Array) -> Array:
  """[cache_len] bool: slots in [start, stop)."""
  idx = jnp.arange(cache_len)
  return (idx >= start) & (idx < stop)


@functools.partial(jax.jit, static_argnames=("model", "cfg", "ids", "mask_id"))
def thinker_prefill(model: SpeechLLM, params: Any, mel: Array, mel_valid: Array, *,
                    cfg: StreamConfig, ids: tuple[int, int, int], mask_id: int):
  """Audio -> prefix -> Thinker cache. Returns (cache, prefix_valid [1, P], first AR token,
  never [MASK])."""
  bos, user, assistant = ids
  v = {"params": params}
  audio, audio_valid = model.apply(v, mel, mel_valid, method=SpeechLLM.encode_audio)
  head = model.apply(v, jnp.array([[bos, user]]), method=SpeechLLM.thinker_embed)
  tail = model.apply(v, jnp.array([[assistant]]), method=SpeechLLM.thinker_embed)
  prefix = jnp.concatenate([head, audio.astype(head.dtype), tail], axis=1)  # [1, P, embed]
  valid = jnp.concatenate([jnp.ones((1, 2), bool), audio_valid, jnp.ones((1, 1), bool)], 1)
  prefix_len = prefix.shape[1]
  cache_len = prefix_len + cfg.num_text_blocks * cfg.text_block
  lm = part_lm(model, "thinker")
  mask = attention_masks.causal_mask(prefix_len)[None] & valid[:, None, :]
  mask = jnp.pad(mask, ((0, 0), (0, 0), (0, cache_len - prefix_len)))
  positions = attention_masks.prefix_positions(valid, 0)
  hidden, cache = model.apply(v, prefix, positions, mask, lm.init_cache(1, cache_len),
                              jnp.int32(0), method=SpeechLLM.thinker_hidden)
  logits = lm.logits(params, hidden[:, -1:])[:, 0].at[:, mask_id].set(-jnp.inf)  # [1, vocab]
  first = jnp.argmax(logits, axis=-1).astype(jnp.int32)
  return cache, valid, first


def _clean_forward(lm: CachedLM, params: Any, tokens: Array, positions: Array, visible: Array,
                   write: Array, cache: Cache, own_valid: Array) -> tuple[Array, Cache]:
  """One forward of a finished block over the visible cache + its own valid slots
  (own_valid [1, B]); writes its K/V."""
  block, cache_len = tokens.shape[1], visible.shape[1]
  own = jax.lax.dynamic_update_slice_in_dim(jnp.zeros((1, cache_len), bool), own_valid, write,
                                            axis=1)  # [1, C]
  mask = jnp.broadcast_to((visible | own)[:, None, :], (1, block, cache_len))
  return lm.forward(params, tokens, positions, mask, cache, write)


def _ar_chunk(lm: CachedLM, params: Any, cache: Cache, carry: Array, visible: Array,
              first_slot: Array, first_pos: Array, length: int, suppress: Optional[int] = None):
  """`length` AR steps from `carry` (the token fed first). Step i feeds its token into slot
  first_slot + i (position first_pos + i), seeing `visible` and the fed slots so far.
  Returns (fed tokens [1, L], their hidden [1, L, embed], predictions [1, L], cache)."""
  cache_len = visible.shape[1]

  def step(state, i):
    token, cache = state
    slot = first_slot + i
    mask = (visible | _slots(cache_len, first_slot, slot + 1)[None])[:, None, :]  # [1, 1, C]
    hidden, cache = lm.forward(params, token[:, None], (first_pos + i)[None, None], mask, cache,
                               slot)
    logits = lm.logits(params, hidden)[:, 0]  # [1, vocab]
    if suppress is not None:
      logits = logits.at[:, suppress].set(-jnp.inf)
    nxt = jnp.argmax(logits, axis=-1).astype(jnp.int32)  # greedy
    return (nxt, cache), (token, hidden[:, 0], nxt)

  (_, cache), (fed, hidden, pred) = jax.lax.scan(step, (carry, cache), jnp.arange(length))
  return fed.T, jnp.swapaxes(hidden, 0, 1), pred.T, cache


@functools.partial(jax.jit, static_argnames=("model", "cfg", "mask_id", "eos_id"))
def thinker_block(model: SpeechLLM, params: Any, cache: Cache, prefix_valid: Array,
                  carry: Array, j: Array, rng: Array, *, cfg: StreamConfig, mask_id: int,
                  eos_id: int):
  """Text block j. Returns (tokens [1, B], hidden [1, B, embed], next AR carry, cache, nfe)."""
  lm, block = part_lm(model, "thinker"), cfg.text_block
  prefix_len, cache_len = prefix_valid.shape[1], cache[0].k.shape[1]
  write = prefix_len + j * block
  start = jnp.sum(prefix_valid, axis=1).astype(jnp.int32)  # [1]
  positions = start[:, None] + j * block + jnp.arange(block)[None, :]  # [1, B]
  visible = jnp.pad(prefix_valid, ((0, 0), (0, cache_len - prefix_len))) | _slots(
      cache_len, prefix_len, write)[None]
  if cfg.thinker_mode == "ar":
    tokens, hidden, pred, cache = _ar_chunk(lm, params, cache, carry, visible, write,
                                            positions[0, 0], block, suppress=mask_id)
    return tokens, hidden, pred[:, -1], cache, jnp.int32(block)
  bd = BlockDiffusionConfig(block, cfg.text_steps, mask_id, eos_id, rule=cfg.rule,
                            cache_update="reuse_last_step")
  blk = decode_block(lm, params, cache, visible, write, positions, rng, bd)
  # The clean pass gives the K/V the cache keeps and the states the Talker is fused with;
  # as in training (`SpeechTalkerTask.thinker_states`) they never see past the answer's eos.
  hidden, cache = _clean_forward(lm, params, blk.tokens, positions, visible, write, blk.cache,
                                 upto_first_eos(blk.tokens, eos_id))
  return blk.tokens, hidden, carry, cache, blk.nfe + 1


@functools.partial(jax.jit, static_argnames=("model", "cfg"))
def talker_write_text(model: SpeechLLM, params: Any, cache: Cache, tokens: Array, hidden: Array,
                      j: Array, *, cfg: StreamConfig) -> Cache:
  """Fuses text block j with its Thinker states and writes it into the Talker's text slots
  (text attends causally to text, as in training)."""
  v, block = {"params": params}, cfg.text_block
  cond = model.apply(v, tokens, hidden, method=SpeechLLM.talker_fuse)  # [1, B, embed]
  write = j * block
  slots = write + jnp.arange(block)
  positions = (slots * cfg.speech_chunk // cfg.text_per_chunk)[None]  # [1, B]
  cache_len = cache[0].k.shape[1]
  mask = (jnp.arange(cache_len)[None, :] <= slots[:, None])[None]  # [1, B, C]
  _, cache = model.apply(v, cond, positions, mask, cache, write, method=SpeechLLM.talker_hidden)
  return cache


@functools.partial(jax.jit, static_argnames=("model", "cfg", "text_slots", "mask_id", "eos_id",
                                             "bos_id"))
def talker_chunk(model: SpeechLLM, params: Any, cache: Cache, carry: Array, k: Array,
                 num_text: Array, rng: Array, *, cfg: StreamConfig, text_slots: int,
                 mask_id: int, eos_id: int, bos_id: int):
  """Speech chunk k, seeing text slots < min(text_per_chunk * (k + 1), num_text).
  Returns (units [1, C], next AR carry, cache, nfe)."""
  lm, chunk = part_lm(model, "talker"), cfg.speech_chunk
  cache_len = cache[0].k.shape[1]
  write = text_slots + k * chunk
  text_limit = jnp.minimum(cfg.text_per_chunk * (k + 1), num_text)
  visible = (_slots(cache_len, 0, text_limit) | _slots(cache_len, text_slots, write))[None]
  positions = (k * chunk + jnp.arange(chunk))[None]  # [1, C]
  if cfg.talker_mode == "ar":
    carry = jnp.where(k == 0, bos_id, carry)
    _, _, pred, cache = _ar_chunk(lm, params, cache, carry, visible, write, positions[0, 0],
                                  chunk, suppress=mask_id)
    return pred, pred[:, -1], cache, jnp.int32(chunk)
  bd = BlockDiffusionConfig(chunk, cfg.speech_steps, mask_id, eos_id, rule=cfg.rule,
                            cache_update=cfg.cache_update)
  blk = decode_block(lm, params, cache, visible, write, positions, rng, bd)
  return blk.tokens, carry, blk.cache, blk.nfe


@dataclasses.dataclass
class SpeechPipeline:
  """A trained speech model ready to answer spoken questions, streamed or at once."""
  model: SpeechLLM
  params: Any
  text_tokenizer: Any  # has encode/decode and bos/eos/mask/user/assistant ids
  speech_vocab: Any  # training.speech_tasks.SpeechVocab
  cfg: StreamConfig
  mel_config: features.MelConfig = features.MelConfig()
  vocoder: Optional[Any] = None  # speech.vocoder.Vocoder; None: units only

  def _mel(self, wav: np.ndarray) -> tuple[Array, Array]:
    mel = features.log_mel(np.asarray(wav, np.float32), self.mel_config)  # [frames, n_mels]
    if mel.shape[0] > self.cfg.mel_frames:
      raise ValueError(f"question audio has {mel.shape[0]} mel frames > "
                       f"mel_frames={self.cfg.mel_frames}; raise it or trim the audio")
    padded = np.zeros((1, self.cfg.mel_frames, mel.shape[1]), np.float32)
    padded[0, :mel.shape[0]] = mel
    return jnp.asarray(padded), jnp.asarray(np.arange(self.cfg.mel_frames) < mel.shape[0])[None]

  def _text_blocks(self, wav: np.ndarray, rng: Array) -> Iterator[tuple]:
    """Yields (tokens [B], hidden, j, nfe, finished) per text block."""
    tok = self.text_tokenizer
    cache, prefix_valid, carry = thinker_prefill(
        self.model, self.params, *self._mel(wav), cfg=self.cfg,
        ids=(tok.bos_id, tok.user_id, tok.assistant_id), mask_id=tok.mask_id)
    for j in range(self.cfg.num_text_blocks):
      rng, key = jax.random.split(rng)
      tokens, hidden, carry, cache, nfe = thinker_block(
          self.model, self.params, cache, prefix_valid, carry, jnp.int32(j), key, cfg=self.cfg,
          mask_id=tok.mask_id, eos_id=tok.eos_id)
      tokens_np = np.asarray(tokens[0])
      finished = bool(np.any(tokens_np == tok.eos_id)) or j + 1 == self.cfg.num_text_blocks
      yield tokens_np, (tokens, hidden), j, int(nfe), finished
      if finished:
        return

  def _speech(self, wav: np.ndarray, rng: Array, interleave: bool, log: list) -> Iterator[np.ndarray]:
    """Drives Thinker and Talker; yields unit chunks and appends text events to `log`."""
    t0 = time.perf_counter()
    tok, v, cfg = self.text_tokenizer, self.speech_vocab, self.cfg
    text_slots = cfg.num_text_blocks * cfg.text_block
    talker_cache = part_lm(self.model, "talker").init_cache(
        1, text_slots + cfg.num_speech_chunks * cfg.speech_chunk)
    text: list[int] = []
    nfe, num_text, text_done = 0, 0, False
    blocks = self._text_blocks(wav, rng)
    carry = jnp.full((1,), v.bos_id, jnp.int32)

    def next_text_block():
      nonlocal talker_cache, nfe, num_text, text_done
      tokens, (tok_arr, hidden), j, block_nfe, text_done = next(blocks)
      talker_cache = talker_write_text(self.model, self.params, talker_cache, tok_arr, hidden,
                                       jnp.int32(j), cfg=cfg)
      text.extend(int(t) for t in tokens)
      nfe += block_nfe + 1  # + the Talker's conditioning forward
      eos = [i for i, t in enumerate(text) if t == tok.eos_id]
      num_text = eos[0] + 1 if eos else len(text)
      log.append(StreamEvent(tok.decode(text[:num_text]), None, None, time.perf_counter() - t0,
                             nfe))

    for k in range(cfg.num_speech_chunks):
      while not text_done and (not interleave or len(text) < cfg.text_per_chunk * (k + 1)):
        next_text_block()
      rng, key = jax.random.split(rng)
      units, carry, talker_cache, chunk_nfe = talker_chunk(
          self.model, self.params, talker_cache, carry, jnp.int32(k), jnp.int32(num_text), key,
          cfg=cfg, text_slots=text_slots, mask_id=v.mask_id, eos_id=v.eos_id, bos_id=v.bos_id)
      nfe += int(chunk_nfe)
      units = np.asarray(units[0])
      stop = np.flatnonzero(units >= v.num_units)  # eos (or any special) ends the speech
      log.append(StreamEvent(tok.decode(text[:num_text]), units[:stop[0] if stop.size else None],
                             None, time.perf_counter() - t0, nfe))
      yield log[-1].units
      if stop.size:
        break
    while not text_done:  # the text is always finished, even when the speech ended first
      next_text_block()

  def stream(self, wav: np.ndarray, rng: Optional[Array] = None,
             interleave: bool = True) -> Iterator[StreamEvent]:
    """Yields text events as blocks finish and audio events as speech chunks are voiced."""
    rng = jax.random.key(0) if rng is None else rng
    log: list[StreamEvent] = []
    chunks = self._speech(wav, rng, interleave, log)
    if self.vocoder is None:
      for _ in chunks:
        yield from log
        log.clear()
      yield from log
      return
    t0 = time.perf_counter()
    nonempty = (u for u in chunks if u.size)
    first = next(nonempty, None)
    if first is None:  # the Talker ended before saying anything: text only
      yield from log
      return
    text, nfe = "", 0  # as of the newest Thinker/Talker event
    for audio in self.vocoder.stream(itertools.chain([first], nonempty)):
      last_units = None
      for event in log:
        if event.units is None:
          yield event
        else:
          last_units = event.units
        text, nfe = event.text, event.nfe
      log.clear()
      yield StreamEvent(text, last_units, audio, time.perf_counter() - t0, nfe)

  def respond(self, wav: np.ndarray, rng: Optional[Array] = None) -> dict[str, Any]:
    """The whole answer at once: all text first, then all speech, one-shot vocoder."""
    log: list[StreamEvent] = []
    rng = jax.random.key(0) if rng is None else rng
    chunks = list(self._speech(wav, rng, False, log))
    units = np.concatenate(chunks) if chunks else np.zeros(0, np.int32)
    audio = self.vocoder.synthesize(units) if self.vocoder is not None and units.size else None
    return {"text": log[-1].text, "units": units, "audio": audio, "nfe": log[-1].nfe}


def stream_config(config: Any, text_steps: Optional[int] = None,
                  speech_steps: Optional[int] = None, rule: str = "topk") -> StreamConfig:
  """StreamConfig of a training config (the objective decides AR vs MDM for both halves)."""
  d, t = config.data, config.talker
  return StreamConfig(
      thinker_mode=config.objective, talker_mode=config.objective,
      text_block=config.diffusion.block_size,
      text_steps=text_steps or config.diffusion.sampler_steps,
      speech_chunk=t.chunk_size, speech_steps=speech_steps or config.diffusion.sampler_steps,
      text_per_chunk=t.text_per_chunk, max_text_tokens=d.response_len,
      max_speech_tokens=d.max_units + 1, rule=rule, mel_frames=d.mel_buckets[-1])
