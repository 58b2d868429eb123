"""Tasks: what a training run optimises (model + data source + loss), chosen by
`config.task` from `TASKS`. The trainer is generic over them."""
from __future__ import annotations

import abc
import importlib
from typing import Any, Callable, Optional

import grain
import jax
import ml_collections

from data_pipelines import loader, synthetic_text
from vocalnet_jax.modeling.build import build
from vocalnet_jax.modeling.validate import ConfigError
from vocalnet_jax.models.decoder import Decoder
from vocalnet_jax.training import objectives
from vocalnet_jax.training.train_state import under_any

Array = jax.Array


class Task(abc.ABC):
  """A model of `modeling.build`, its data and its loss; the optional members default
  to: train every param, no decoder to distill, params restored as saved."""
  trainable: Optional[tuple[str, ...]] = None  # param paths to train ("thinker", ...); None: all
  frozen: tuple[str, ...] = ()  # paths kept fixed inside them (config.train.frozen)

  def __init__(self, config: ml_collections.ConfigDict, shapes_only: bool = False):
    """shapes_only: build the model without reading any file (dry runs)."""
    self.config = config
    self.built = build(config, shapes_only)
    self.model = self.built.module

  @abc.abstractmethod
  def dataset(self, split: str, batch_size: int, seed: int,
              shuffle: bool = True) -> grain.IterDataset: ...

  @abc.abstractmethod
  def batch_spec(self, batch_size: int) -> dict[str, jax.ShapeDtypeStruct]:
    """Shapes of the largest batch `dataset` yields."""

  @abc.abstractmethod
  def loss(self, params: Any, batch: dict, rng: Array) -> tuple[Array, dict]: ...

  def init_params(self, rng: Array) -> Any:
    return self.built.init_params(rng)

  def lm_problem(self, params: Any, batch: dict) -> objectives.LMProblem:
    """One decoder answering `batch` (what self-distillation needs)."""
    raise NotImplementedError(f"{type(self).__name__} has no decoder")

  def params_from_checkpoint(self, restore: Callable[[Any], Any], abstract_params: Any) -> Any:
    """This run's params from another run's (`config.init_from`); restore: abstract
    params -> the saved ones."""
    return restore(abstract_params)


def train_split(config: ml_collections.ConfigDict) -> str:
  """The split(s) a run trains on, "+"-joined (`config.data.train_split`; "train" for a run
  configured before the knob)."""
  return config.data.get("train_split", "train")


def train_split_parts(config: ml_collections.ConfigDict) -> list[str]:
  """The splits of `train_split`, one by one ("train+read" -> ["train", "read"])."""
  return train_split(config).split("+")


def decoder_fns(model: Decoder, params: Any) -> objectives.DecoderFns:
  """Binds `params` into the three decoder entry points the objectives use."""
  variables = {"params": params}
  return objectives.DecoderFns(
      embed=lambda t: model.apply(variables, t, method=Decoder.embed),
      hidden=lambda e, p, m: model.apply(variables, None, p, m, embeddings=e,
                                         method=Decoder.hidden_states)[0],
      logits=lambda h: model.apply(variables, h, method=Decoder.logits))


class TextLMTask(Task):
  """The Thinker alone on the procedural text QA task (no speech)."""

  def __init__(self, config: ml_collections.ConfigDict, shapes_only: bool = False):
    super().__init__(config, shapes_only)
    self.tokenizer = self.built.text_tokenizer

  def source(self, split: str) -> synthetic_text.SyntheticTextSource:
    return synthetic_text.source_from_config(self.config.data, split, self.tokenizer)

  def dataset(self, split: str, batch_size: int, seed: int,
              shuffle: bool = True) -> grain.IterDataset:
    return loader.make_dataset(self.source(split), lambda x: x, batch_size=batch_size,
                               seed=seed, shuffle=shuffle)

  def batch_spec(self, batch_size: int) -> dict[str, jax.ShapeDtypeStruct]:
    return {k: jax.ShapeDtypeStruct((batch_size,) + v.shape, v.dtype)
            for k, v in self.source("train")[0].items()}

  def lm_problem(self, params: Any, batch: dict) -> objectives.LMProblem:
    fns = decoder_fns(self.model, params)
    response_batch = objectives.ResponseBatch(
        fns.embed(batch["prompt"]), batch["prompt_valid"], batch["response"],
        batch["response_valid"])
    return objectives.LMProblem(fns, response_batch, self.tokenizer.mask_id,
                                self.tokenizer.eos_id, self.config.diffusion.block_size,
                                loss_chunk=self.config.train.get("loss_chunk", 0))

  def loss(self, params: Any, batch: dict, rng: Array) -> tuple[Array, dict]:
    return objectives.lm_loss(self.lm_problem(params, batch), rng, self.config.objective,
                              self.config.diffusion)


# Every task, as "module:class": imported only when asked for, so a text run never loads
# the speech stack (librosa, tfds).
TASKS: dict[str, str] = {
    "text_lm": "vocalnet_jax.training.tasks:TextLMTask",
    "speech_typed": "vocalnet_jax.training.speech_tasks:TypedThinkerTask",
    "speech_thinker": "vocalnet_jax.training.speech_tasks:SpeechThinkerTask",
    "speech_talker": "vocalnet_jax.training.speech_tasks:SpeechTalkerTask",
    "self_distill": "vocalnet_jax.distill.self_distill:SelfDistillTask",
}


def build_task(config: ml_collections.ConfigDict, shapes_only: bool = False) -> Task:
  """The task of `config.task`; shapes_only: build the model without opening data."""
  if config.task not in TASKS:
    raise ConfigError(f"config.task={config.task!r} is not registered; choose from "
                      f"{sorted(TASKS)}")
  module, name = TASKS[config.task].split(":")
  task = getattr(importlib.import_module(module), name)(config, shapes_only)
  frozen = tuple(p.strip().strip("/") for p in config.train.get("frozen", "").split(",")
                 if p.strip())
  untrained = [p for p in frozen
               if task.trainable is not None and not under_any(p, task.trainable)]
  if untrained:
    raise ConfigError(f"config.train.frozen={config.train.frozen!r}: {untrained} not under "
                      f"the parts task {config.task!r} trains: {list(task.trainable)}")
  task.frozen = frozen
  return task
