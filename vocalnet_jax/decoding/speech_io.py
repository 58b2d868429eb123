"""Loading a trained speech model for answering: checkpoint + tokenizers + vocoder.

Shared by `launch.decode --audio/--heldout`, the streaming benchmark and the notebook.
"""
from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Iterator, Optional, Sequence

import jax
import ml_collections
import numpy as np

from data_pipelines import features, speech_loader
from vocalnet_jax.decoding import streaming
from vocalnet_jax.modeling import build, restore
from vocalnet_jax.modeling.validate import ConfigError
from vocalnet_jax.speech.vocoder import Vocoder


def answering_task(config: ml_collections.ConfigDict) -> str:
  """The task whose model answers (a distillation run: its base task's)."""
  return config.distill.base_task if config.task == "self_distill" else config.task


def check_speaking_inputs(config: ml_collections.ConfigDict, checkpoint: Optional[str],
                          vocoder_dir: Optional[str]) -> None:
  """ConfigError (one line) unless `config` (of `checkpoint`) is a stage-2 model and
  `vocoder_dir` a vocoder directory; checked before anything is built."""
  task = answering_task(config)
  if task != "speech_talker":
    raise ConfigError(f"spoken answers need a stage-2 (speech_talker) checkpoint; "
                      f"{checkpoint} is config.task={task}")
  if not vocoder_dir:
    raise ConfigError("--vocoder is required for spoken answers (launch.train_vocoder's "
                      "W/vocoder)")
  if not os.path.isfile(os.path.join(vocoder_dir, "config.json")):
    raise ConfigError(f"--vocoder={vocoder_dir} is not a vocoder directory "
                      f"({os.path.join(vocoder_dir, 'config.json')} is missing)")


def check_vocoder_fits(pipe: streaming.SpeechPipeline, vocoder_dir: str) -> None:
  """ConfigError unless the vocoder reads the speech units the model speaks."""
  if pipe.vocoder.vocab_size != pipe.speech_vocab.num_units:
    raise ConfigError(f"--vocoder={vocoder_dir} reads {pipe.vocoder.vocab_size} speech units "
                      f"but the model speaks {pipe.speech_vocab.num_units}; train the vocoder "
                      "on the same corpus")


def load_pipeline(config: ml_collections.ConfigDict, checkpoint: Optional[str],
                  vocoder_dir: Optional[str] = None, text_steps: int = 0, speech_steps: int = 0,
                  rule: str = "topk") -> streaming.SpeechPipeline:
  """A SpeechPipeline from a stage-2 training workdir (random weights if None)."""
  model, params = restore.load(config, checkpoint, jax.devices()[:1])
  return streaming.SpeechPipeline(
      model.module, params, model.text_tokenizer, model.speech_vocab,
      streaming.stream_config(config, text_steps or None, speech_steps or None, rule),
      mel_config(config),
      Vocoder.load(vocoder_dir) if vocoder_dir else None)


def load_speaking_pipelines(runs: Sequence[tuple[ml_collections.ConfigDict, str]],
                            vocoder_dir: str, steps: int = 0,
                            rule: str = "topk") -> list[streaming.SpeechPipeline]:
  """A SpeechPipeline per (config, checkpoint), all speaking through one vocoder loaded
  once from `vocoder_dir` (ConfigError if it reads other units than a model speaks)."""
  vocoder, pipelines = None, []
  for config, checkpoint in runs:
    pipe = load_pipeline(config, checkpoint, None if vocoder else vocoder_dir, steps, steps,
                         rule)
    vocoder = vocoder or pipe.vocoder
    pipe = dataclasses.replace(pipe, vocoder=vocoder)
    check_vocoder_fits(pipe, vocoder_dir)
    pipelines.append(pipe)
  return pipelines


def mel_config(config: ml_collections.ConfigDict) -> features.MelConfig:
  """The log-mel features the speech encoder of `config` reads."""
  return features.MelConfig(n_mels=config.encoder.n_mels)


def question_window_s(config: ml_collections.ConfigDict) -> float:
  """Longest question audio (seconds) whose log-mel fits the model's `mel_frames` window."""
  mel = mel_config(config)
  mel_frames = streaming.stream_config(config).mel_frames
  return (mel_frames - 1) * mel.hop_length / mel.sample_rate  # num_frames = 1 + samples // hop


def heldout_question(config: ml_collections.ConfigDict, index: int,
                     split: str = "heldout") -> dict[str, Any]:
  """Question audio and texts of one example of the prepared corpus."""
  source = speech_loader.open_source(build.corpus_dataset_dir(config), split)
  if not 0 <= index < len(source):
    raise ValueError(f"--heldout={index} is out of range: split {split!r} has {len(source)} "
                     "examples")
  record = source[index]
  text = lambda key: speech_loader.record_text(record[key])  # noqa: E731
  return {"audio": np.asarray(record["question_audio"], np.float32),
          "question": text("question_text"), "answer": text("answer_text"),
          "answer_audio": np.asarray(record["answer_audio"], np.float32),
          "answer_speaker": text("answer_speaker"), "template": text("template")}


@dataclasses.dataclass
class AnswerReport:
  text: str
  audio: Optional[np.ndarray]
  nfe: int
  first_text_s: float
  first_audio_s: Optional[float]
  total_s: float
  thinker_nfe: int = 0  # of `nfe`, the Thinker's (the rest: the Talker's)


def answer(pipe: streaming.SpeechPipeline, wav: np.ndarray) -> AnswerReport:
  """Streams one answer, collecting text, audio and the latencies of first outputs."""
  return collect(pipe.stream(wav))


def say(pipe: streaming.SpeechPipeline, text: str) -> AnswerReport:
  """The pipeline's Talker saying `text` (`SpeechPipeline.speak`), collected as `answer`."""
  return collect(pipe.speak(text))


def collect(events: Iterator[streaming.StreamEvent]) -> AnswerReport:
  """Consumes a not yet started stream of events: text, audio and first-output latencies."""
  tick = time.perf_counter()
  first_text = first_audio = None
  audio, text, nfe, thinker_nfe = [], "", 0, 0
  for event in events:
    if event.text and first_text is None:
      first_text = event.time_s  # when the Thinker produced it (events may be yielded later)
    if event.audio is not None:
      audio.append(event.audio)
      if first_audio is None and event.audio.size:
        first_audio = time.perf_counter() - tick
    text, nfe, thinker_nfe = event.text, event.nfe, event.thinker_nfe
  return AnswerReport(text, np.concatenate(audio) if audio else None, nfe, first_text or 0.0,
                      first_audio, time.perf_counter() - tick, thinker_nfe)
