"""VocalNet wiring: audio encoder + adaptor -> Thinker (text) -> Talker (speech tokens).

One flax module owns all four parts so a checkpoint holds the whole model; each
training stage freezes some of them (stage 1: encoder optional, stage 2: all but
the Talker). Entry points are methods so objectives and decoders can call each
part through `model.apply(variables, ..., method=SpeechLLM.<part>)`.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from data_pipelines import spelling
from vocalnet_jax.models import layers
from vocalnet_jax.models.decoder import Decoder, decoder_from_config
from vocalnet_jax.models.encoder import Adaptor, AudioEncoder
from vocalnet_jax.models.talker import Talker

Array = jax.Array


class SpeechLLM(nn.Module):
  """Parameters: {encoder, adaptor, thinker, talker, transcriber}.

  `transcriber` is a linear CTC head on the encoder frames (text vocabulary, blank =
  pad, or characters with `auxiliary.ctc_units=chars`): an auxiliary ASR objective that
  teaches an encoder trained from scratch to hear. Decoding calls it only to read the
  ears' spelling (`read_as=transcript`).

  `read_as` is what the Thinker reads of the audio: `frames` (the adapted frames),
  `ctc_tokens` (the adaptor's greedy CTC transcript, embedded as text: the Thinker reads
  exactly the prompt it reads when typed, for ears trained by CTC alone) or `transcript`
  (the transcriber's greedy CTC spelling, tokenized on the host like a typed question:
  `decoding.transcript`; this module builds no audio prompt then).
  """
  encoder: AudioEncoder
  adaptor: Adaptor
  thinker: Decoder
  talker: Talker
  transcriber: nn.Dense
  read_as: str = "frames"
  ctc_blank: int = 0  # the text pad id: CTC's blank

  def audio_prompt(self, mel: Array, mel_valid: Array, head: Array,
                   tail: Array) -> tuple[Array, Array]:
    """The Thinker prefix [head ; adapted audio ; tail] (layout: `data_pipelines.prompt`).

    mel [b, frames, n_mels], mel_valid [b, frames], head ids [b, H], tail ids [b, T] ->
    (embeddings [b, H + A + T, embed], validity [b, H + A + T]).
    """
    prefix, valid, _, _ = self.audio_prompt_and_transcript(mel, mel_valid, head, tail)
    return prefix, valid

  def audio_prompt_and_transcript(self, mel: Array, mel_valid: Array, head: Array, tail: Array,
                                  transcribe: str = "encoder"
                                  ) -> tuple[Array, Array, Array, Array]:
    """`audio_prompt` plus CTC logits of the transcript from the same pass ([b, F, text_vocab],
    frame validity [b, F]): over the encoder frames by the transcriber (`encoder`), or over
    the adapted frames by the Thinker's own token embeddings (`adaptor`: a frame that says a
    word is pushed towards that word's embedding, so the Thinker reads audio as text)."""
    if self.read_as == "transcript":
      raise ValueError("adaptor.read_as=transcript: the prompt is the transcript's text, "
                       "tokenized on the host (vocalnet_jax.decoding.transcript)")
    frames, frames_valid = self.encoder(mel, mel_valid)  # [b, F, enc], [b, F]
    audio, audio_valid = self.adaptor(frames, frames_valid)  # [b, A, embed], [b, A]
    head_emb, tail_emb = self.thinker_embed(head), self.thinker_embed(tail)
    audio = audio.astype(head_emb.dtype)
    # the adaptor's CTC logits [b, A, text_vocab], when the prompt or the caller reads them
    adaptor_ctc = (self.thinker.embedder.attend(audio)
                   if self.read_as == "ctc_tokens" or transcribe == "adaptor" else None)
    read, read_valid = audio, audio_valid
    if self.read_as == "ctc_tokens":  # the transcript's tokens at their frames, the rest dropped
      best = jnp.argmax(adaptor_ctc, axis=-1)  # [b, A]
      read = self.thinker_embed(best)
      read_valid = ctc_greedy_keep(best, audio_valid, self.ctc_blank)
    prefix = jnp.concatenate([head_emb, read, tail_emb], axis=1)
    valid = jnp.concatenate([jnp.ones(head.shape, bool), read_valid,
                             jnp.ones(tail.shape, bool)], axis=1)
    if transcribe == "adaptor":
      return prefix, valid, adaptor_ctc, audio_valid
    return prefix, valid, self.transcriber(frames), frames_valid

  def transcribe(self, mel: Array, mel_valid: Array) -> tuple[Array, Array]:
    """The transcriber's CTC logits over the encoder frames ([b, F, vocab], [b, F])."""
    frames, frames_valid = self.encoder(mel, mel_valid)
    return self.transcriber(frames), frames_valid

  def thinker_embed(self, tokens: Array) -> Array:
    return self.thinker.embed(tokens)

  def thinker_hidden(self, embeddings: Array, positions: Array, mask: Array,
                     cache: Optional[Sequence[layers.KVCache]] = None,
                     cache_index: Optional[Array] = None):
    return self.thinker.hidden_states(None, positions, mask, embeddings=embeddings, cache=cache,
                                      cache_index=cache_index)

  def thinker_logits(self, hidden: Array) -> Array:
    return self.thinker.logits(hidden)

  def talker_fuse(self, text_tokens: Array, thinker_hidden: Array) -> Array:
    """Talker conditioning from the Thinker's response text and hidden states."""
    return self.talker.fuse(self.thinker.embed(text_tokens), thinker_hidden)

  def talker_embed(self, speech_tokens: Array) -> Array:
    return self.talker.decoder.embed(speech_tokens)

  def talker_hidden(self, embeddings: Array, positions: Array, mask: Array,
                    cache: Optional[Sequence[layers.KVCache]] = None,
                    cache_index: Optional[Array] = None):
    return self.talker.decoder.hidden_states(None, positions, mask, embeddings=embeddings,
                                             cache=cache, cache_index=cache_index)

  def talker_logits(self, hidden: Array) -> Array:
    return self.talker.decoder.logits(hidden)

  def __call__(self, mel: Array, mel_valid: Array, text: Array, speech: Array) -> Array:
    """Touches every part once (used only to create the parameters)."""
    frames, frames_valid = self.encoder(mel, mel_valid)
    audio, _ = self.adaptor(frames, frames_valid)
    emb = jnp.concatenate([audio, self.thinker_embed(text)], axis=1)
    length = emb.shape[1]
    positions = jnp.broadcast_to(jnp.arange(length), emb.shape[:2])
    mask = jnp.ones((emb.shape[0], length, length), bool)
    hidden, _ = self.thinker_hidden(emb, positions, mask)
    cond = self.talker_fuse(text, hidden[:, audio.shape[1]:])
    talk = jnp.concatenate([cond, self.talker_embed(speech)], axis=1)
    t_len = talk.shape[1]
    t_hidden, _ = self.talker_hidden(talk, jnp.broadcast_to(jnp.arange(t_len), talk.shape[:2]),
                                     jnp.ones((talk.shape[0], t_len, t_len), bool))
    return (self.thinker_logits(hidden).sum() + self.talker_logits(t_hidden).sum()
            + self.transcriber(frames).sum())


def ctc_greedy_keep(best: Array, valid: Array, blank: int) -> Array:
  """Greedy CTC decoding as a mask: the frames whose argmax starts a new non-blank run.

  best [b, F] argmax ids; valid [b, F]. Returns [b, F] bool; best[keep] is the transcript.
  """
  new_run = jnp.concatenate([jnp.ones_like(best[:, :1], bool), best[:, 1:] != best[:, :-1]],
                            axis=1)
  return valid & new_run & (best != blank)


def spells(config: ml_collections.ConfigDict) -> bool:
  """Whether the transcriber's CTC targets are characters (`data_pipelines.spelling`,
  `auxiliary.ctc_units=chars`) instead of the Thinker's tokens."""
  return config.get("auxiliary", {}).get("ctc_units", "tokens") == "chars"


def speech_llm_from_config(config: ml_collections.ConfigDict, text_vocab: int,
                           speech_vocab: int, ctc_blank: int = 0) -> SpeechLLM:
  """Builds the model from `config.encoder`, `config.adaptor`, `config.model` (Thinker)
  and `config.talker`; `ctc_blank` is the text pad id."""
  dtype = jnp.dtype(config.model.dtype)
  e, a, t = config.encoder, config.adaptor, config.talker
  thinker = decoder_from_config(config.model, text_vocab)
  talker_decoder = decoder_from_config(t.model, speech_vocab)
  return SpeechLLM(
      encoder=AudioEncoder(e.embed_dim, e.num_layers, e.num_heads, e.mlp_dim,
                           # runs saved before the encoder's knobs: the Thinker's remat,
                           # unrolled layers
                           remat_policy=e.get("remat_policy", config.model.remat_policy),
                           scan_layers=e.get("scan_layers", False), dtype=dtype,
                           stride=e.get("stride", 2)),  # runs saved before the knob: 2
      adaptor=Adaptor(config.model.embed_dim, a.hidden_dim, a.stack, dtype=dtype),
      thinker=thinker,
      talker=Talker(talker_decoder, t.fusion_hidden_dim,
                    thinker_states=t.get("thinker_states", True)),  # runs saved before: True
      transcriber=nn.Dense(spelling.VOCAB_SIZE if spells(config) else text_vocab, dtype=dtype,
                           kernel_init=nn.with_logical_partitioning(
                               nn.initializers.lecun_normal(), ("embed", "vocab"))),
      read_as=a.get("read_as", "frames"),  # runs saved before the knob: frames
      ctc_blank=ctc_blank)


def init_inputs(batch: int, frames: int, n_mels: int, text_len: int,
                speech_len: int) -> tuple[Any, ...]:
  """Dummy inputs for `SpeechLLM.init` / `jax.eval_shape`."""
  return (jnp.zeros((batch, frames, n_mels), jnp.float32), jnp.ones((batch, frames), bool),
          jnp.zeros((batch, text_len), jnp.int32), jnp.zeros((batch, speech_len), jnp.int32))
