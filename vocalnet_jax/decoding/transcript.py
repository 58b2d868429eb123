"""What ears that spell heard: the transcriber's greedy CTC, as text (`read_as=transcript`).

The Thinker then reads that text exactly as a typed question (its tokenizer and chat
template), so ears trained from scratch can sit in front of a pretrained Thinker whose
vocabulary they could never cover by sound alone.
"""
from __future__ import annotations

import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from data_pipelines import features, spelling
from vocalnet_jax.models.speech_llm import SpeechLLM, ctc_greedy_keep

Array = jax.Array


@functools.partial(jax.jit, static_argnames=("model",))
def greedy_spelling(model: SpeechLLM, params: Any, mel: Array,
                    mel_valid: Array) -> tuple[Array, Array]:
  """(mel [b, F, n_mels], mel_valid [b, F]) -> (argmax ids [b, F'], kept [b, F']): the
  transcriber's greedy CTC path over the encoder frames."""
  logits, frames_valid = model.apply({"params": params}, mel, mel_valid,
                                     method=SpeechLLM.transcribe)
  best = jnp.argmax(logits, axis=-1)  # [b, F']
  return best, ctc_greedy_keep(best, frames_valid, spelling.BLANK)


def heard_texts(best: Array, keep: Array) -> list[str]:
  """The spelled text of each row of a greedy CTC path."""
  best, keep = np.asarray(best), np.asarray(keep)
  return [spelling.unspell(b[k].tolist()) for b, k in zip(best, keep)]


def spell_waves(model: SpeechLLM, params: Any, waves: Sequence[np.ndarray], frames: int,
                batch_size: int = 16) -> list[str]:
  """What the ears spell for each 16 kHz wave, in batches of one shape ([batch_size, frames]
  log-mel, cut to `frames`), so the transcriber compiles once."""
  heard = []
  for start in range(0, len(waves), batch_size):
    chunk = waves[start:start + batch_size]
    mel, valid = features.padded_log_mels(chunk, frames, rows=batch_size)  # [b, F, n_mels]
    heard += heard_texts(*greedy_spelling(model, params, mel, valid))[:len(chunk)]
  return heard
