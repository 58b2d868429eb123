"""Loaded speech models and the events of one answer, as the protocol sends them.

An `Engine` holds one streaming pipeline per model (named by its objective: `ar`, `mdm`)
sharing one vocoder, and turns a question waveform into protocol events: `started`,
`text` (the answer so far, per Thinker block), `audio` (+ its samples, per vocoder piece)
and `done` (NFE and latencies). Times are seconds from when the question's audio arrived
(`received`), so they include the wait for a slot; `done.pipeline_first_audio_s` is the
pipeline's own figure, from the start of decoding (what `speech_io.answer` measures).
"""
from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any, Callable, Iterator

import jax
import numpy as np

from vocalnet_jax.decoding import speech_io, streaming
from vocalnet_jax.modeling import restore
from vocalnet_jax.modeling.validate import ConfigError
from vocalnet_jax.serving import protocol
from vocalnet_jax.serving.protocol import Ask, ModelInfo


@dataclasses.dataclass
class Engine:
  """Pipelines by model name; all share `window_s` and the input/output sample rates."""
  pipelines: dict[str, streaming.SpeechPipeline]
  _tuned: dict[tuple[str, int, str], streaming.SpeechPipeline] = dataclasses.field(
      default_factory=dict)

  def __post_init__(self):
    if not self.pipelines:
      raise ValueError("an Engine needs at least one pipeline")
    rates = {p.mel_config.sample_rate for p in self.pipelines.values()}
    windows = {p.cfg.mel_frames for p in self.pipelines.values()}
    if len(rates) != 1 or len(windows) != 1:
      raise ValueError(f"the models read different audio (sample rates {rates}, mel windows "
                       f"{windows}); serve them from separate servers")
    for name, pipe in self.pipelines.items():
      if pipe.vocoder is None:
        raise ValueError(f"model {name!r} has no vocoder: the server answers aloud")

  @property
  def sample_rate(self) -> int:
    """Of the question audio the models read."""
    return self._any.mel_config.sample_rate

  @property
  def output_rate(self) -> int:
    return self._any.vocoder.mel_cfg.sample_rate

  @property
  def window_s(self) -> float:
    """Longest question (seconds) whose log-mel fits the models' window."""
    pipe = self._any
    return (pipe.cfg.mel_frames - 1) * pipe.mel_config.hop_length / self.sample_rate

  @property
  def _any(self) -> streaming.SpeechPipeline:
    return next(iter(self.pipelines.values()))

  @functools.cached_property
  def models(self) -> dict[str, ModelInfo]:
    return {name: ModelInfo(pipe.cfg.thinker_mode, pipe.cfg.text_steps,
                            min(pipe.cfg.text_block, pipe.cfg.speech_chunk), pipe.cfg.rule)
            for name, pipe in self.pipelines.items()}

  def pipeline(self, ask: Ask) -> streaming.SpeechPipeline:
    """The pipeline of `ask.model` decoding with its S and rule (a new pair compiles once)."""
    pipe = self.pipelines[ask.model]
    if pipe.cfg.thinker_mode == "ar":
      return pipe
    key = (ask.model, ask.steps, ask.rule)
    if key not in self._tuned:
      cfg = dataclasses.replace(pipe.cfg, text_steps=ask.steps, speech_steps=ask.steps,
                                rule=ask.rule)
      self._tuned[key] = dataclasses.replace(pipe, cfg=cfg)
    return self._tuned[key]

  def answer(self, ask: Ask, wav: np.ndarray, received: float) -> Iterator[Any]:
    """Events of one answer: dicts, and (audio header, samples bytes) pairs."""
    start = time.perf_counter()
    yield {"type": "started", "queue_s": round(start - received, 4)}
    first_text = first_audio = None
    text, nfe, thinker_nfe, samples, index = "", 0, 0, 0, 0
    for event in self.pipeline(ask).stream(wav):
      now = time.perf_counter()
      if event.kind == "text" and event.text != text:
        first_text = now if first_text is None else first_text
        yield {"type": "text", "text": event.text, "time_s": round(now - received, 4),
               "nfe": event.nfe}
      elif event.kind == "audio" and event.audio is not None and event.audio.size:
        first_audio = now if first_audio is None else first_audio
        yield (protocol.audio_header(index, int(event.audio.size), now - received),
               protocol.encode_samples(event.audio))
        index, samples = index + 1, samples + int(event.audio.size)
      text, nfe, thinker_nfe = event.text, event.nfe, event.thinker_nfe
    end = time.perf_counter()
    since = lambda t: protocol.optional_float(None if t is None else t - received)  # noqa: E731
    yield {"type": "done", "model": ask.model, "steps": ask.steps, "rule": ask.rule,
           "text": text, "nfe": nfe, "thinker_nfe": thinker_nfe,
           "queue_s": round(start - received, 4),
           "first_text_s": since(first_text), "first_audio_s": since(first_audio),
           "total_s": round(end - received, 4), "audio_chunks": index,
           "audio_s": round(samples / self.output_rate, 4),
           "pipeline_first_audio_s": protocol.optional_float(
               None if first_audio is None else first_audio - start)}

  def warm_up(self) -> None:
    """Compiles every model's default setting (and the vocoder) before serving."""
    silence = np.zeros(self.sample_rate, np.float32)  # 1 s
    for pipe in self.pipelines.values():
      speech_io.answer(pipe, silence)
      units = np.zeros(pipe.cfg.speech_chunk, np.int32)
      list(pipe.vocoder.stream([units, units]))  # the Talker may be silent on silence
    jax.effects_barrier()


def load_engine(checkpoints: list[str], vocoder_dir: str,
                config_of: Callable[[str], Any],
                steps: int = 0, rule: str = "topk") -> Engine:
  """An Engine of stage-2 `checkpoints` (one per objective) speaking through `vocoder_dir`.
  `config_of(checkpoint)` gives each checkpoint's config (its config.json)."""
  configs = {}
  for checkpoint in checkpoints:  # every input is checked before anything is built
    config = config_of(checkpoint)
    speech_io.check_speaking_inputs(config, checkpoint, vocoder_dir)
    if not restore.is_export(checkpoint):
      restore.checkpoint_step(checkpoint)
    if config.objective in configs:
      raise ConfigError(f"--checkpoint={checkpoint}: a second {config.objective} model; give "
                        "at most one AR and one MDM checkpoint")
    configs[config.objective] = (config, checkpoint)
  pipelines = speech_io.load_speaking_pipelines(list(configs.values()), vocoder_dir, steps,
                                                rule)
  return Engine(dict(zip(configs, pipelines)))
