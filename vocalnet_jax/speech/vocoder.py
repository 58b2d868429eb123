"""Public vocoder API: speech tokens -> waveform, one-shot or streamed chunk by chunk.

`Vocoder` bundles the trained flow decoder (`flow_matching`), the mel normalisation
statistics and a mel inverter chosen by `inversion.kind`: 'griffin_lim'
(`mel_inversion.GriffinLimInverter`) or 'vocos' (`neural_vocoder.NeuralInverter`, trained,
saved with the vocoder); both are `mel_inversion.MelInverter` calls (log-mel -> waveform).

Streaming (`stream`): tokens arrive in chunks (e.g. one 15-token Talker block). Each
emission covers tokens up to `lookahead_tokens` before the newest one; its mel is
sampled over a window with `left_context_tokens` of history (optionally given as the
prompt mel, i.e. exactly what was already emitted) and the lookahead, with noise tied
to absolute frame indices. The last `crossfade_frames` mel frames of each emission are
held back and cross-faded with the next one, and the waveform is made the same way:
every new mel piece is inverted together with some already emitted frames
(`inversion_stream_frames`) and the sample overlap is cross-faded (`stream_waveform`,
the same rules for either inverter). Window shapes are fixed, so the sampler compiles
once for streaming.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
from typing import Any, Iterable, Iterator, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from vocalnet_jax.speech import flow_matching as fm
from vocalnet_jax.speech import mel_inversion as mi
from vocalnet_jax.speech import neural_vocoder as nv

Params = Any
INVERSION_KINDS = ("griffin_lim", "vocos")  # mel -> waveform: phase recovery or neural
NEURAL_STATE = "neural_state"  # checkpoint subdirectory of a trained NeuralInverter


def mel_config(config: ml_collections.ConfigDict) -> mi.MelConfig:
  return mi.MelConfig(**config.mel.to_dict())


def upsample_factor(config: ml_collections.ConfigDict) -> int:
  """Mel frames per speech token; the unit rate must divide the mel frame rate."""
  rate = float(config.units.frame_rate_hz)
  mel_rate = mel_config(config).frame_rate_hz
  if rate <= 0 or abs(mel_rate / rate - round(mel_rate / rate)) > 1e-6:
    raise ValueError(f"units.frame_rate_hz={rate} must divide the mel frame rate {mel_rate} Hz "
                     "(e.g. 25 or 50)")
  return int(round(mel_rate / rate))


def build_model(config: ml_collections.ConfigDict) -> fm.FlowDecoder:
  if config.units.vocab_size <= 0:
    raise ValueError(f"units.vocab_size must be positive, got {config.units.vocab_size}")
  return fm.decoder_from_config(config.model, config.units.vocab_size, upsample_factor(config),
                                config.mel.n_mels)


def init_params(model: fm.FlowDecoder, key: jax.Array, n_tokens: int = 4) -> Params:
  """Fresh parameters as plain arrays (logical-partitioning boxes removed: the vocoder
  runs on one device, and plain trees checkpoint/restore without a target)."""
  tokens = jnp.zeros((1, n_tokens), jnp.int32)  # [1, tokens]
  mel = jnp.zeros((1, n_tokens * model.upsample, model.n_mels))  # [1, frames, n_mels]
  return nn.meta.unbox(model.init(key, tokens, tokens >= 0, mel, jnp.zeros(1), mel))


def validate_units(units: Any, vocab_size: int, name: str = "units") -> np.ndarray:
  """Checks a token sequence and returns it as int32 [num_tokens]; errors name the problem."""
  arr = np.asarray(units)
  if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
    raise TypeError(f"{name} must be integer token ids, got dtype {arr.dtype}")
  if arr.ndim != 1:
    raise ValueError(f"{name} must be 1-D [num_tokens], got shape {arr.shape}")
  if arr.size == 0:
    raise ValueError(f"{name} is empty")
  bad = np.flatnonzero((arr < 0) | (arr >= vocab_size))
  if bad.size:
    raise ValueError(f"{name}[{bad[0]}] = {arr[bad[0]]} is out of range [0, {vocab_size}) "
                     f"({bad.size} bad ids)")
  return arr.astype(np.int32)


def crossfade(tail: np.ndarray, segment: np.ndarray) -> np.ndarray:
  """Linearly fades `tail` [n, ...] out and the first n rows of `segment` in; returns segment."""
  n = len(tail)
  if n == 0:
    return segment
  ramp = ((np.arange(n) + 0.5) / n).reshape((n,) + (1,) * (segment.ndim - 1))
  head = (1.0 - ramp) * tail + ramp * segment[:n]
  return np.concatenate([head.astype(segment.dtype), segment[n:]])


def inversion_stream_frames(config: ml_collections.ConfigDict) -> tuple[int, int, int]:
  """(context, hold, lookahead) mel frames of `stream_waveform` for the configured inverter.

  Griffin-Lim: `stream.gl_context_frames` of context, half of it held back, no lookahead
  (its phase is never exactly the one-shot phase). Neural: `neural_vocoder.stream_frames`
  (enough context and lookahead that streamed samples equal one-shot samples).
  """
  if config.inversion.kind == "vocos":
    return nv.stream_frames(config)
  context = config.stream.gl_context_frames
  return context, context // 2, 0


def stream_waveform(inverter: mi.MelInverter, mel_pieces: Iterable[np.ndarray], hop: int,
                    context_frames: int, hold_frames: int, lookahead_frames: int = 0
                    ) -> Iterator[np.ndarray]:
  """Log-mel pieces [frames_k, n_mels] -> waveform pieces [samples_k] whose concatenation
  covers all frames (F frames -> F * hop samples).

  Each new piece is inverted together with `context_frames` already received frames. Of
  each inversion, the last `lookahead_frames` (they lack right context) are dropped and
  remade by the next one, and the `hold_frames` before them are held back and cross-faded
  with the next inversion; at the end everything left is yielded.
  """
  if context_frames < hold_frames + lookahead_frames:
    raise ValueError(f"context_frames={context_frames} must be >= hold_frames + "
                     f"lookahead_frames = {hold_frames + lookahead_frames}")
  hold, drop = hold_frames * hop, lookahead_frames * hop  # samples
  mel = None  # frames so far [frames, n_mels]
  yielded = keep = 0  # samples yielded; of `fresh`, samples yielded
  tail = fresh = np.zeros(0, np.float32)  # tail: samples [yielded, +len(tail)), provisional
  for piece in mel_pieces:
    mel = piece if mel is None else np.concatenate([mel, piece])
    first = max(0, len(mel) - len(piece) - context_frames)  # re-invert received frames
    wave = inverter(mel[first:])  # absolute samples [first * hop, len(mel) * hop)
    fresh = crossfade(tail, wave[yielded - first * hop:])  # samples [yielded, len(mel) * hop)
    keep = max(len(fresh) - drop - hold, 0)
    yield fresh[:keep]
    yielded += keep
    tail = fresh[keep:max(len(fresh) - drop, keep)]
  yield fresh[keep:]


@functools.partial(jax.jit, static_argnames=("model", "num_steps", "method", "t_schedule",
                                             "cfg_scale"))
def _sample_window(model: fm.FlowDecoder, params: Params, tokens: jax.Array,
                   token_valid: jax.Array, cond: jax.Array, first_frame: jax.Array,
                   key: jax.Array, *, num_steps: int, method: str, t_schedule: str,
                   cfg_scale: float) -> jax.Array:
  """tokens, token_valid: [tokens]; cond: [frames, n_mels] normalised; -> mel [frames, n_mels]."""
  mu = model.apply(params, tokens[None], token_valid[None], method=fm.FlowDecoder.encode)
  frame_valid = jnp.repeat(token_valid, model.upsample)[None]  # [1, frames]
  noise = fm.frame_noise(key, first_frame, cond.shape[0], cond.shape[1])[None]
  mel = fm.sample(model, params, mu, cond[None], frame_valid, noise, num_steps=num_steps,
                  method=method, t_schedule=t_schedule, cfg_scale=cfg_scale)
  return mel[0]  # [frames, n_mels]


@dataclasses.dataclass
class Vocoder:
  """Trained token->mel flow decoder + mel statistics + mel inverter."""
  config: ml_collections.ConfigDict
  params: Params
  mel_mean: np.ndarray  # [n_mels]
  mel_std: np.ndarray  # [n_mels]
  inverter: Optional[mi.MelInverter] = None

  def __post_init__(self):
    self.model = build_model(self.config)
    self.upsample = self.model.upsample
    self.mel_cfg = mel_config(self.config)
    if self.inverter is None:  # an explicit inverter (any kind) is used as given
      kind = self.config.inversion.kind
      if kind not in INVERSION_KINDS:
        raise ValueError(f"inversion.kind {kind!r} is not one of {INVERSION_KINDS}")
      if kind != "griffin_lim":
        raise ValueError(f"inversion.kind {kind!r} needs a trained `inverter` "
                         "(Vocoder.load restores it from the checkpoint)")
      self.inverter = mi.GriffinLimInverter(self.mel_cfg, self.config.inversion.n_iter)
    self._key = jax.random.key(self.config.sample.seed)

  @property
  def vocab_size(self) -> int:
    return self.config.units.vocab_size

  def denormalize(self, mel: np.ndarray) -> np.ndarray:
    """Normalised mel (what the flow models) -> natural-log mel."""
    return np.asarray(mel) * self.mel_std + self.mel_mean

  def _sample(self, tokens: np.ndarray, token_valid: np.ndarray, cond: np.ndarray,
              first_frame: int) -> np.ndarray:
    s = self.config.sample
    return np.asarray(_sample_window(
        self.model, self.params, jnp.asarray(tokens), jnp.asarray(token_valid),
        jnp.asarray(cond, jnp.float32), jnp.asarray(first_frame, jnp.int32), self._key,
        num_steps=s.num_steps, method=s.method, t_schedule=s.t_schedule,
        cfg_scale=float(s.cfg_scale)))

  def synthesize_mel(self, units: Any) -> np.ndarray:
    """units: [num_tokens] ints -> log-mel [num_tokens * upsample, n_mels] in one shot."""
    units = validate_units(units, self.vocab_size)
    n = len(units)
    padded = -(-n // self.config.sample.pad_tokens) * self.config.sample.pad_tokens
    tokens = np.zeros(padded, np.int32)
    tokens[:n] = units
    cond = np.zeros((padded * self.upsample, self.mel_cfg.n_mels), np.float32)
    mel = self._sample(tokens, np.arange(padded) < n, cond, 0)
    return self.denormalize(mel[:n * self.upsample])

  def synthesize(self, units: Any) -> np.ndarray:
    """units: [num_tokens] ints -> waveform [samples] float32 at mel.sample_rate."""
    return self.inverter(self.synthesize_mel(units))

  def stream_mel(self, unit_chunks: Iterable[Any]) -> Iterator[np.ndarray]:
    """Yields log-mel pieces [frames_k, n_mels] whose concatenation covers all tokens."""
    st = self.config.stream
    up, n_mels = self.upsample, self.mel_cfg.n_mels
    left, ahead, fade = st.left_context_tokens, st.lookahead_tokens, st.crossfade_frames
    if fade > left * up:
      raise ValueError(f"stream.crossfade_frames={fade} must be <= left_context_tokens * "
                       f"upsample = {left * up}")
    width = left + st.chunk_tokens + ahead  # fixed window in tokens: one compile
    units = np.zeros(0, np.int32)
    mel = np.zeros((0, n_mels), np.float32)  # normalised frames of tokens [0, done)
    done = yielded = 0  # tokens with mel; frames yielded (the last `fade` are held back)
    for chunk in unit_chunks:
      if np.size(chunk) == 0:  # nothing new (e.g. a Talker step that produced no speech)
        continue
      units = np.concatenate([units, validate_units(chunk, self.vocab_size, "unit chunk")])
      while done < len(units) - ahead:
        mel, done = self._extend_mel(units, mel, done, min(len(units) - ahead,
                                                           done + st.chunk_tokens), width)
        keep = max(len(mel) - fade, 0)
        if keep > yielded:
          yield self.denormalize(mel[yielded:keep])
          yielded = keep
    if len(units) == 0:
      raise ValueError("unit_chunks gave no tokens")
    while done < len(units):  # flush the lookahead
      mel, done = self._extend_mel(units, mel, done, min(len(units), done + st.chunk_tokens),
                                   width)
    yield self.denormalize(mel[yielded:])

  def _extend_mel(self, units: np.ndarray, mel: np.ndarray, done: int, stop: int,
                  width: int) -> tuple[np.ndarray, int]:
    """Samples frames of tokens [done, stop) in a `width`-token window and cross-fades the
    joint; returns (normalised mel of tokens [0, stop), stop)."""
    st, up = self.config.stream, self.upsample
    start = max(0, done - st.left_context_tokens)
    win = units[start:min(len(units), stop + st.lookahead_tokens)]
    tokens = np.zeros(width, np.int32)  # [width]
    tokens[:len(win)] = win
    fade = min(st.crossfade_frames, done * up)  # frames re-generated and cross-faded
    cond = np.zeros((width * up, self.mel_cfg.n_mels), np.float32)  # [frames, n_mels]
    if st.prompt_left_context:
      prompt = mel[start * up:done * up - fade]  # final frames inside the window
      cond[:len(prompt)] = prompt
    window = self._sample(tokens, np.arange(width) < len(win), cond, start * up)
    piece = crossfade(mel[done * up - fade:done * up],
                      window[(done - start) * up - fade:(stop - start) * up])
    return np.concatenate([mel[:done * up - fade], piece]), stop

  def stream(self, unit_chunks: Iterable[Any]) -> Iterator[np.ndarray]:
    """Yields waveform pieces [samples_k] whose concatenation is the whole utterance."""
    yield from stream_waveform(self.inverter, self.stream_mel(unit_chunks),
                               self.mel_cfg.hop_length, *inversion_stream_frames(self.config))

  def save(self, directory: str) -> None:
    """Writes params + statistics (orbax) and config.json under `directory`."""
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "config.json"), "w") as f:
      f.write(self.config.to_json(indent=2))
    state = {"params": self.params, "mel_mean": self.mel_mean, "mel_std": self.mel_std}
    with ocp.StandardCheckpointer() as ckpt:
      ckpt.save(os.path.abspath(os.path.join(directory, "state")), state, force=True)
    if isinstance(self.inverter, nv.NeuralInverter):
      self.inverter.save(os.path.join(directory, NEURAL_STATE))

  @classmethod
  def load(cls, directory: str, inverter: Optional[mi.MelInverter] = None) -> "Vocoder":
    """Restores a `save`d vocoder (config from config.json, arrays from orbax; with
    inversion.kind 'vocos', its neural inverter too)."""
    with open(os.path.join(directory, "config.json")) as f:
      config = ml_collections.ConfigDict(json.load(f))
    with ocp.StandardCheckpointer() as ckpt:
      state = ckpt.restore(os.path.abspath(os.path.join(directory, "state")))
    if inverter is None and config.inversion.kind == "vocos":
      inverter = nv.NeuralInverter.load(os.path.join(directory, NEURAL_STATE), config)
    return cls(config, state["params"], np.asarray(state["mel_mean"]),
               np.asarray(state["mel_std"]), inverter)
