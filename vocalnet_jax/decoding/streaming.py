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
from typing import Any, Callable, Iterator, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from data_pipelines import features
from data_pipelines.prompt import prompt_head_tail
from vocalnet_jax.decoding import step_rules, transcript
from vocalnet_jax.decoding.block_diffusion import (DEFAULT_CACHE_UPDATE, BlockDiffusionConfig,
                                                   decode_block,
                                                   denoise_after, denoise_block, owed_block)
from vocalnet_jax.decoding.lm import (Cache, CachedLM, block_mask, context_keys, prefill_mask,
                                      upto_first_eos)
from vocalnet_jax.diffusion import attention_masks
from vocalnet_jax.models import layers
from vocalnet_jax.models import talker as talker_lib
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
  threshold: float = step_rules.THRESHOLD  # the threshold rule's confidence
  speech_threshold: Optional[float] = None  # the Talker's, when not `threshold`
  # the MDM Talker's (the Thinker keeps extra_forward: its clean states condition the Talker)
  cache_update: str = DEFAULT_CACHE_UPDATE
  mel_frames: int = 600  # question mel is padded to this many frames (one compile)
  text_shift: bool = False  # the MDM Thinker's shifted logits (the Talker never shifts)
  clean_causal: bool = False  # the MDM Thinker's clean blocks attend causally (not the Talker)

  def __post_init__(self):
    for name in ("thinker_mode", "talker_mode"):
      if getattr(self, name) not in ("mdm", "ar"):
        raise ValueError(f"{name}={getattr(self, name)!r}: choose 'mdm' or 'ar'")

  @property
  def talker_threshold(self) -> float:
    """The threshold rule's confidence for the Talker's units."""
    return self.threshold if self.speech_threshold is None else self.speech_threshold

  @property
  def num_text_blocks(self) -> int:
    return -(-self.max_text_tokens // self.text_block)

  @property
  def text_slots(self) -> int:
    """Talker cache slots of the text conditioning (before the speech slots)."""
    return self.num_text_blocks * self.text_block

  @property
  def num_speech_chunks(self) -> int:
    return -(-self.max_speech_tokens // self.speech_chunk)


class StreamEvent(NamedTuple):
  """One output of the stream, tagged by `kind`: `text` (a Thinker block), `units` (a
  Talker chunk) or `audio` (a vocoder piece, with the newest chunk's units)."""
  text: str  # the answer text so far
  units: Optional[np.ndarray]  # speech units of this chunk (None for a text event)
  audio: Optional[np.ndarray]  # waveform chunk (None without vocoder / for text events)
  time_s: float  # seconds since the request started (the user's audio ended)
  nfe: int  # network forwards so far (Thinker + Talker)
  kind: str = "text"
  thinker_nfe: int = 0  # of `nfe`, the Thinker's (the rest: Talker, text conditioning included)


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


@functools.partial(jax.jit, static_argnames=("model", "cfg", "head", "tail", "mask_id"))
def thinker_prefill(model: SpeechLLM, params: Any, mel: Array, mel_valid: Array, *,
                    cfg: StreamConfig, head: tuple[int, ...], tail: tuple[int, ...],
                    mask_id: int):
  """Audio -> prefix [head ; audio ; tail] -> Thinker cache. Returns (cache, prefix_valid
  [1, P], the prefix's next-token logits [1, vocab], [MASK] never chosen)."""
  prefix, valid = model.apply({"params": params}, mel, mel_valid, jnp.array([head]),
                              jnp.array([tail]), method=SpeechLLM.audio_prompt)  # [1, P, embed]
  return _prefill(model, params, prefix, valid, cfg, mask_id)


@functools.partial(jax.jit, static_argnames=("model", "cfg", "mask_id"))
def typed_prefill(model: SpeechLLM, params: Any, ids: Array, valid: Array, *,
                  cfg: StreamConfig, mask_id: int):
  """A typed prompt (ids [1, P], valid [1, P]: `typed_prompt`) -> what `thinker_prefill`
  returns: the Thinker reads it as it reads a typed question."""
  prefix = model.apply({"params": params}, ids, method=SpeechLLM.thinker_embed)
  return _prefill(model, params, prefix, valid, cfg, mask_id)


def typed_prompt(tok: Any, question: str, bucket: int = 16) -> tuple[Array, Array]:
  """[head ; question ; padding ; tail] ids and validity [1, P], P a multiple of `bucket`
  (one compiled prefill per bucket): the padding sits where an audio prompt's padded
  frames sit, so the last position, whose logits start the answer, is the prompt's own."""
  head, tail = prompt_head_tail(tok)
  body = [*head, *tok.encode(question)]
  length = -(-(len(body) + len(tail)) // bucket) * bucket
  pad = length - len(body) - len(tail)
  ids = np.array([body + [tok.pad_id] * pad + list(tail)], np.int32)
  valid = np.array([[True] * len(body) + [False] * pad + [True] * len(tail)])
  return jnp.asarray(ids), jnp.asarray(valid)


def _prefill(model: SpeechLLM, params: Any, prefix: Array, valid: Array, cfg: StreamConfig,
             mask_id: int):
  """prefix [1, P, embed] with validity [1, P] -> (Thinker cache, valid, carry logits)."""
  v = {"params": params}
  cache_len = prefix.shape[1] + cfg.num_text_blocks * cfg.text_block
  lm = part_lm(model, "thinker")
  positions = attention_masks.prefix_positions(valid, 0)
  hidden, cache = model.apply(v, prefix, positions, prefill_mask(valid, cache_len),
                              lm.init_cache(1, cache_len), jnp.int32(0),
                              method=SpeechLLM.thinker_hidden)
  return cache, valid, _next_logits(lm, params, hidden, mask_id)


def _next_logits(lm: CachedLM, params: Any, hidden: Array, mask_id: int) -> Array:
  """The last state's next-token logits [1, vocab], [MASK] excluded: the Thinker's carry
  (AR feeds its argmax; shifted MDM predicts the next block's first token with it)."""
  return lm.logits(params, hidden[:, -1:])[:, 0].at[:, mask_id].set(-jnp.inf)


def _clean_forward(lm: CachedLM, params: Any, tokens: Array, positions: Array, visible: Array,
                   write: Array, cache: Cache, own_valid: Array,
                   causal: bool = False) -> tuple[Array, Cache]:
  """One forward of a finished block over the visible cache + its own valid slots
  (own_valid [1, B]; causal: up to each query); writes its K/V."""
  return lm.forward(params, tokens, positions, block_mask(visible, write, own_valid, causal),
                    cache, write)


def talker_visible(cache_len: int, text_slots: int, k: Array, num_text: Array,
                   chunk: int, text_per_chunk: int) -> Array:
  """[1, C] Talker cache slots speech chunk k sees besides its own: the text it may see
  (`talker.visible_text`, up to the answer's num_text) and the earlier chunks."""
  text_limit = jnp.minimum(talker_lib.visible_text(k, text_per_chunk), num_text)
  return (_slots(cache_len, 0, text_limit)
          | _slots(cache_len, text_slots, text_slots + k * chunk))[None]


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
  """Text block j after the carry (the context's next-token logits [1, vocab]). Returns
  (tokens [1, B], hidden [1, B, embed], the next carry, cache, nfe)."""
  lm, block = part_lm(model, "thinker"), cfg.text_block
  prefix_len, cache_len = prefix_valid.shape[1], cache[0].k.shape[1]
  write = prefix_len + j * block
  start = jnp.sum(prefix_valid, axis=1).astype(jnp.int32)  # [1]
  positions = start[:, None] + j * block + jnp.arange(block)[None, :]  # [1, B]
  visible = context_keys(prefix_valid, cache_len, write)  # [1, C]
  if cfg.thinker_mode == "ar":
    first = jnp.argmax(carry, axis=-1).astype(jnp.int32)  # [1]
    tokens, hidden, _, cache = _ar_chunk(lm, params, cache, first, visible, write,
                                         positions[0, 0], block, suppress=mask_id)
    return tokens, hidden, _next_logits(lm, params, hidden, mask_id), cache, jnp.int32(block)
  bd = BlockDiffusionConfig(block, cfg.text_steps, mask_id, eos_id, rule=cfg.rule,
                            threshold=cfg.threshold, shift_logits=cfg.text_shift,
                            clean_causal=cfg.clean_causal)
  blk = denoise_block(lm, params, cache, visible, write, positions, rng, bd, carry)
  # The clean pass (the block's `extra_forward`) gives the K/V the cache keeps, the next
  # block's first-token logits and the states the Talker is fused with; as in training
  # (`SpeechTalkerTask.thinker_states`) they never see past the answer's eos.
  hidden, cache = _clean_forward(lm, params, blk.tokens, positions, visible, write, blk.cache,
                                 upto_first_eos(blk.tokens, eos_id), cfg.clean_causal)
  return blk.tokens, hidden, _next_logits(lm, params, hidden, mask_id), cache, blk.nfe + 1


@functools.partial(jax.jit, static_argnames=("model", "cfg"))
def talker_write_text(model: SpeechLLM, params: Any, cache: Cache, tokens: Array, hidden: Array,
                      j: Array, *, cfg: StreamConfig) -> Cache:
  """Fuses text block j with its Thinker states and writes it into the Talker's text slots
  (text attends causally to text, as in training)."""
  v, block = {"params": params}, cfg.text_block
  cond = model.apply(v, tokens, hidden, method=SpeechLLM.talker_fuse)  # [1, B, embed]
  write = j * block
  slots = write + jnp.arange(block)
  positions = talker_lib.text_positions(slots, cfg.speech_chunk, cfg.text_per_chunk)[None]
  cache_len = cache[0].k.shape[1]
  mask = (jnp.arange(cache_len)[None, :] <= slots[:, None])[None]  # [1, B, C]
  _, cache = model.apply(v, cond, positions, mask, cache, write, method=SpeechLLM.talker_hidden)
  return cache


@functools.partial(jax.jit, static_argnames=("model", "cfg", "mask_id", "eos_id", "bos_id"))
def talker_chunk(model: SpeechLLM, params: Any, cache: Cache, carry: Array, k: Array,
                 num_text: Array, rng: Array, *, cfg: StreamConfig, mask_id: int, eos_id: int,
                 bos_id: int):
  """Speech chunk k, seeing text slots < min(text_per_chunk * (k + 1), num_text).
  carry: AR's next input [1]; MDM's previous chunk [1, C], whose clean forward this
  chunk's first step runs with `cache_update` next_block. Returns (units [1, C], the next
  carry, cache, nfe)."""
  lm, chunk = part_lm(model, "talker"), cfg.speech_chunk
  cache_len = cache[0].k.shape[1]
  write = cfg.text_slots + k * chunk
  visible = talker_visible(cache_len, cfg.text_slots, k, num_text, chunk, cfg.text_per_chunk)
  positions = (k * chunk + jnp.arange(chunk))[None]  # [1, C]
  if cfg.talker_mode == "ar":
    carry = jnp.where(k == 0, bos_id, carry)
    _, _, pred, cache = _ar_chunk(lm, params, cache, carry, visible, write, positions[0, 0],
                                  chunk, suppress=mask_id)
    return pred, pred[:, -1], cache, jnp.int32(chunk)
  bd = BlockDiffusionConfig(chunk, cfg.speech_steps, mask_id, eos_id, rule=cfg.rule,
                            threshold=cfg.talker_threshold, cache_update=cfg.cache_update)
  if cfg.cache_update == "next_block":
    # chunk k - 1 saw the text it sees again here: the text decoded before it was at least
    # its limit (or all of it), so min(its limit, num_text) has not changed since
    owed = owed_block(carry, positions - chunk,
                      talker_visible(cache_len, cfg.text_slots, k - 1, num_text, chunk,
                                     cfg.text_per_chunk), write - chunk)
    blk = denoise_after(lm, params, cache, visible, write, positions, rng, bd, None, owed,
                        k > 0)
  else:
    blk = decode_block(lm, params, cache, visible, write, positions, rng, bd)
  return blk.tokens, blk.tokens, blk.cache, blk.nfe


@dataclasses.dataclass
class SpeechPipeline:
  """A trained speech model ready to answer spoken questions, streamed or at once."""
  model: SpeechLLM
  params: Any
  text_tokenizer: Any  # has encode/decode and bos/eos/mask/user/assistant ids
  speech_vocab: Any  # modeling.build.SpeechVocab
  cfg: StreamConfig
  mel_config: features.MelConfig = features.MelConfig()
  vocoder: Optional[Any] = None  # speech.vocoder.Vocoder; None: units only

  def _mel(self, wav: np.ndarray) -> tuple[Array, Array]:
    wav = np.asarray(wav, np.float32)
    frames = features.num_frames(wav.size, self.mel_config)
    if frames > self.cfg.mel_frames:
      raise ValueError(f"question audio has {frames} mel frames > "
                       f"mel_frames={self.cfg.mel_frames}; raise it or trim the audio")
    mel, valid = features.padded_log_mels([wav], self.cfg.mel_frames, cfg=self.mel_config)
    return jnp.asarray(mel), jnp.asarray(valid)  # [1, mel_frames, n_mels], [1, mel_frames]

  def _start(self, wav: np.ndarray, rng: Array) -> _Answer:
    """Prefills the Thinker with the question; an empty Talker cache."""
    t0, cfg, tok = time.perf_counter(), self.cfg, self.text_tokenizer
    mel, mel_valid = self._mel(wav)
    if self.model.read_as == "transcript":  # the Thinker reads what the ears spelled, typed
      heard = transcript.heard_texts(*transcript.greedy_spelling(self.model, self.params, mel,
                                                                           mel_valid))[0]
      cache, prefix_valid, carry = typed_prefill(self.model, self.params,
                                                 *typed_prompt(tok, heard), cfg=cfg,
                                                 mask_id=tok.mask_id)
    else:
      head, tail = prompt_head_tail(tok)
      cache, prefix_valid, carry = thinker_prefill(self.model, self.params, mel, mel_valid,
                                                   cfg=cfg, head=head, tail=tail,
                                                   mask_id=tok.mask_id)
    text_rng, speech_rng = jax.random.split(rng)  # independent text and speech draws
    return _Answer(t0, cache, prefix_valid, carry, text_rng, *self.empty_talker(),
                   speech_rng)

  def empty_talker(self) -> tuple[Cache, Array]:
    """The Talker's empty cache and its carry: AR's first input (bos) [1], or MDM's
    previous chunk [1, C] (none yet)."""
    cfg = self.cfg
    cache = part_lm(self.model, "talker").init_cache(
        1, cfg.text_slots + cfg.num_speech_chunks * cfg.speech_chunk)
    if cfg.talker_mode == "mdm":
      return cache, jnp.full((1, cfg.speech_chunk), self.speech_vocab.mask_id, jnp.int32)
    return cache, jnp.full((1,), self.speech_vocab.bos_id, jnp.int32)

  def _start_saying(self, text: str, rng: Array) -> _Answer:
    """An answer whose text is given (`speak`): no Thinker, an empty Talker cache."""
    cfg, tok = self.cfg, self.text_tokenizer
    ids = (list(tok.encode(text)) + [tok.eos_id])[:cfg.max_text_tokens]
    ids += [tok.eos_id] * (cfg.num_text_blocks * cfg.text_block - len(ids))
    _, speech_rng = jax.random.split(rng)  # the speech draws `stream` makes from `rng`
    return _Answer(time.perf_counter(), None, None, None, None, *self.empty_talker(),
                   speech_rng, given_text=ids)

  def _text_event(self, a: _Answer) -> StreamEvent:
    """Decodes the next Thinker block (or takes it from the given text) and writes it into
    the Talker's text slots."""
    tok, j = self.text_tokenizer, a.num_blocks
    if a.given_text is not None:
      block = self.cfg.text_block
      tokens = jnp.asarray([a.given_text[j * block:(j + 1) * block]], jnp.int32)  # [1, B]
      hidden = jnp.zeros((*tokens.shape, self.model.thinker.embed_dim), jnp.float32)
      block_nfe = 0
    else:
      a.text_rng, key = jax.random.split(a.text_rng)
      tokens, hidden, a.thinker_carry, a.thinker_cache, block_nfe = thinker_block(
          self.model, self.params, a.thinker_cache, a.prefix_valid, a.thinker_carry,
          jnp.int32(j), key, cfg=self.cfg, mask_id=tok.mask_id, eos_id=tok.eos_id)
    a.talker_cache = talker_write_text(self.model, self.params, a.talker_cache, tokens, hidden,
                                       jnp.int32(j), cfg=self.cfg)
    a.text.extend(int(t) for t in np.asarray(tokens[0]))
    a.num_blocks += 1
    a.text_done = tok.eos_id in a.text or a.num_blocks == self.cfg.num_text_blocks
    a.nfe += int(block_nfe) + 1  # + the Talker's conditioning forward
    a.thinker_nfe += int(block_nfe)
    return StreamEvent(self._answer_text(a), None, None, time.perf_counter() - a.t0, a.nfe,
                       thinker_nfe=a.thinker_nfe)

  def _units_event(self, a: _Answer) -> StreamEvent:
    """Decodes the next Talker chunk over the text written so far."""
    v, k = self.speech_vocab, a.num_chunks
    a.speech_rng, key = jax.random.split(a.speech_rng)
    units, a.talker_carry, a.talker_cache, chunk_nfe = talker_chunk(
        self.model, self.params, a.talker_cache, a.talker_carry, jnp.int32(k),
        jnp.int32(self._num_text(a)), key, cfg=self.cfg, mask_id=v.mask_id, eos_id=v.eos_id,
        bos_id=v.bos_id)
    a.num_chunks += 1
    a.nfe += int(chunk_nfe)
    units = np.asarray(units[0])
    stop = np.flatnonzero(units >= v.num_units)  # eos (or any special) ends the speech
    a.speech_done = bool(stop.size) or a.num_chunks == self.cfg.num_speech_chunks
    return StreamEvent(self._answer_text(a), units[:stop[0] if stop.size else None], None,
                       time.perf_counter() - a.t0, a.nfe, "units", a.thinker_nfe)

  def _num_text(self, a: _Answer) -> int:
    """Text positions of the answer: through its first eos (all decoded ones without)."""
    eos = self.text_tokenizer.eos_id
    return a.text.index(eos) + 1 if eos in a.text else len(a.text)

  def _answer_text(self, a: _Answer) -> str:
    return self.text_tokenizer.decode(a.text[:self._num_text(a)])

  def _events(self, start: Callable[[], _Answer], interleave: bool) -> Iterator[StreamEvent]:
    """One answer (begun by `start()` at the first event) in decoding order: a `text` event
    per Thinker block, a `units` event per Talker chunk. Chunk k starts once the text it
    may see is decoded (interleave) or after all text; the text is always finished, even
    when the speech ended first."""
    a = start()
    while not a.speech_done:
      need = talker_lib.visible_text(a.num_chunks, self.cfg.text_per_chunk)
      while not a.text_done and (not interleave or len(a.text) < need):
        yield self._text_event(a)
      yield self._units_event(a)
    while not a.text_done:
      yield self._text_event(a)

  def stream(self, wav: np.ndarray, rng: Optional[Array] = None,
             interleave: bool = True) -> Iterator[StreamEvent]:
    """Yields text events as blocks finish and audio events as speech chunks are voiced
    (unit events instead without a vocoder)."""
    rng = jax.random.key(0) if rng is None else rng
    return self._voiced(self._events(lambda: self._start(wav, rng), interleave))

  def speak(self, text: str, rng: Optional[Array] = None) -> Iterator[StreamEvent]:
    """The Talker saying `text` as if its Thinker had printed it, streamed as `stream`
    streams (no Thinker runs: its forwards are 0): every Talker judged on the same texts.
    Text-only Talkers (`talker.thinker_states=False`) only: the states of a Thinker that
    did not print `text` are not those the Talker was trained on."""
    if self.model.talker.thinker_states:
      raise ValueError("speak() needs a Talker that reads the answer text alone "
                       "(talker.thinker_states=False); this one reads the Thinker's states")
    rng = jax.random.key(0) if rng is None else rng
    return self._voiced(self._events(lambda: self._start_saying(text, rng), True))

  def _voiced(self, events: Iterator[StreamEvent]) -> Iterator[StreamEvent]:
    """`events` with each voiced piece of audio (unit events as they are, no vocoder)."""
    if self.vocoder is None:
      yield from events
      return
    t0 = time.perf_counter()
    pending = _Pending(events)
    chunks = pending.unit_chunks()
    first = next(chunks, None)
    if first is None:  # the Talker ended before saying anything: text only
      yield from pending.drain()
      return
    text, nfe, thinker_nfe = "", 0, 0  # as of the newest Thinker/Talker event
    for audio in self.vocoder.stream(itertools.chain([first], chunks)):
      last_units = None
      for event in pending.drain():
        if event.kind == "text":
          yield event
        else:
          last_units = event.units
        text, nfe, thinker_nfe = event.text, event.nfe, event.thinker_nfe
      yield StreamEvent(text, last_units, audio, time.perf_counter() - t0, nfe, "audio",
                        thinker_nfe)

  def respond(self, wav: np.ndarray, rng: Optional[Array] = None) -> dict[str, Any]:
    """The whole answer at once: all text first, then all speech, one-shot vocoder."""
    rng = jax.random.key(0) if rng is None else rng
    events = list(self._events(lambda: self._start(wav, rng), False))
    chunks = [e.units for e in events if e.kind == "units"]
    units = np.concatenate(chunks) if chunks else np.zeros(0, np.int32)
    audio = self.vocoder.synthesize(units) if self.vocoder is not None and units.size else None
    return {"text": events[-1].text, "units": units, "audio": audio, "nfe": events[-1].nfe}


@dataclasses.dataclass
class _Answer:
  """What decoding one answer carries from block to block."""
  t0: float  # when the request started
  thinker_cache: Cache
  prefix_valid: Array  # [1, P]
  thinker_carry: Array  # [1, vocab] the Thinker's next-token logits
  text_rng: Array
  talker_cache: Cache
  talker_carry: Array  # the Talker's next AR input [1] or MDM's previous chunk [1, C]
  speech_rng: Array
  text: list[int] = dataclasses.field(default_factory=list)  # text ids decoded so far
  num_blocks: int = 0  # text blocks decoded (the next one's index)
  num_chunks: int = 0  # speech chunks decoded (the next one's index)
  text_done: bool = False
  speech_done: bool = False
  nfe: int = 0  # network forwards so far (Thinker + Talker)
  thinker_nfe: int = 0  # of which the Thinker's
  given_text: Optional[list[int]] = None  # text ids said instead of the Thinker's (`speak`)


class _Pending:
  """Events decoded while the vocoder pulls unit chunks, held until its next piece."""

  def __init__(self, events: Iterator[StreamEvent]):
    self._events, self._held = events, []

  def unit_chunks(self) -> Iterator[np.ndarray]:
    """The non-empty unit chunks of the events (each event is held as it passes)."""
    for event in self._events:
      self._held.append(event)
      if event.kind == "units" and event.units.size:
        yield event.units

  def drain(self) -> list[StreamEvent]:
    held, self._held = self._held, []
    return held


def stream_config(config: Any, text_steps: Optional[int] = None,
                  speech_steps: Optional[int] = None, rule: str = "topk",
                  threshold: float = step_rules.THRESHOLD,
                  cache_update: str = DEFAULT_CACHE_UPDATE,
                  speech_threshold: Optional[float] = None) -> StreamConfig:
  """StreamConfig of a training config (the objective decides AR vs MDM for both halves;
  cache_update and speech_threshold, when given: the MDM Talker's)."""
  d, t = config.data, config.talker
  return StreamConfig(
      thinker_mode=config.objective, talker_mode=config.objective,
      text_block=config.diffusion.block_size,
      text_steps=text_steps or config.diffusion.sampler_steps,
      speech_chunk=t.chunk_size, speech_steps=speech_steps or config.diffusion.sampler_steps,
      text_per_chunk=t.text_per_chunk, max_text_tokens=d.response_len,
      max_speech_tokens=d.max_units + 1, rule=rule, threshold=threshold,
      cache_update=cache_update, speech_threshold=speech_threshold,
      mel_frames=d.mel_buckets[-1],
      text_shift=config.diffusion.shift_logits,
      clean_causal=attention_masks.clean_is_causal(config.diffusion,
                                                   config.diffusion.shift_logits))
