"""Tasks: what a training run optimises (model + data source + loss), chosen by
`config.task`. The trainer is generic over them; the speech stages register here too."""
from __future__ import annotations

import importlib
from typing import Any, Callable, Protocol

import grain
import jax
import jax.numpy as jnp
import ml_collections

from data_pipelines import loader, synthetic_text
from vocalnet_jax.models.decoder import Decoder, decoder_from_config
from vocalnet_jax.training import objectives

Array = jax.Array


class Task(Protocol):
  """A task may also set `trainable`: the param paths ("thinker", "student/adaptor") to
  train, others frozen; decoder tasks also offer `lm_problem(params, batch)`."""
  def dataset(self, split: str, batch_size: int, seed: int,
              shuffle: bool = True) -> grain.IterDataset: ...
  def batch_spec(self, batch_size: int) -> dict[str, jax.ShapeDtypeStruct]: ...
  def init_params(self, rng: Array, batch: dict) -> Any: ...
  def loss(self, params: Any, batch: dict, rng: Array) -> tuple[Array, dict]: ...


def padded_vocab(size: int, multiple: int) -> int:
  """Rounds the vocabulary up so the `vocab` axis shards evenly (unused ids never occur)."""
  return -(-size // multiple) * multiple


def decoder_fns(model: Decoder, params: Any) -> objectives.DecoderFns:
  """Binds `params` into the three decoder entry points the objectives use."""
  variables = {"params": params}
  return objectives.DecoderFns(
      embed=lambda t: model.apply(variables, t, method=Decoder.embed),
      hidden=lambda e, p, m: model.apply(variables, None, p, m, embeddings=e,
                                         method=Decoder.hidden_states)[0],
      logits=lambda h: model.apply(variables, h, method=Decoder.logits))


class TextLMTask:
  """The Thinker alone on the procedural text QA task (no speech)."""

  def __init__(self, config: ml_collections.ConfigDict, shapes_only: bool = False):
    del shapes_only  # the procedural source costs nothing to open
    self.config = config
    self.tokenizer = synthetic_text.CharTokenizer()
    self.vocab_size = padded_vocab(config.model.vocab_size or self.tokenizer.vocab_size,
                                   config.model.vocab_multiple)
    self.model = decoder_from_config(config.model, self.vocab_size)

  def source(self, split: str) -> synthetic_text.SyntheticTextSource:
    d = self.config.data
    seed = d.seed if split == "train" else d.seed + 1
    return synthetic_text.SyntheticTextSource(d.num_examples, d.prompt_len, d.response_len,
                                              seed=seed, tasks=tuple(d.tasks),
                                              tokenizer=self.tokenizer)

  def dataset(self, split: str, batch_size: int, seed: int,
              shuffle: bool = True) -> grain.IterDataset:
    return loader.make_dataset(self.source(split), lambda x: x, batch_size=batch_size,
                               seed=seed, shuffle=shuffle)

  def batch_spec(self, batch_size: int) -> dict[str, jax.ShapeDtypeStruct]:
    return {k: jax.ShapeDtypeStruct((batch_size,) + v.shape, v.dtype)
            for k, v in self.source("train")[0].items()}

  def init_params(self, rng: Array, batch: dict) -> Any:
    tokens = jnp.zeros(batch["prompt"].shape, jnp.int32)
    positions = jnp.broadcast_to(jnp.arange(tokens.shape[1]), tokens.shape)
    mask = jnp.ones(tokens.shape + tokens.shape[1:], bool)
    return self.model.init(rng, tokens, positions, mask)["params"]

  def lm_problem(self, params: Any, batch: dict) -> objectives.LMProblem:
    fns = decoder_fns(self.model, params)
    response_batch = objectives.ResponseBatch(
        fns.embed(batch["prompt"]), batch["prompt_valid"], batch["response"],
        batch["response_valid"])
    return objectives.LMProblem(fns, response_batch, self.tokenizer.mask_id,
                                self.tokenizer.eos_id, self.config.diffusion.block_size)

  def loss(self, params: Any, batch: dict, rng: Array) -> tuple[Array, dict]:
    return objectives.lm_loss(self.lm_problem(params, batch), rng, self.config.objective,
                              self.config.diffusion)


TASKS: dict[str, Callable[[ml_collections.ConfigDict], Task]] = {"text_lm": TextLMTask}
# Tasks whose modules register themselves; imported only when asked for, so a text run
# never loads the speech stack (librosa, tfds).
_REGISTERED_ON_IMPORT = {"speech_thinker": "vocalnet_jax.training.speech_tasks",
                         "speech_talker": "vocalnet_jax.training.speech_tasks",
                         "self_distill": "vocalnet_jax.distill.self_distill"}


def build_task(config: ml_collections.ConfigDict, shapes_only: bool = False) -> Task:
  """shapes_only: build the model without opening data (dry runs)."""
  if config.task not in TASKS and config.task in _REGISTERED_ON_IMPORT:
    importlib.import_module(_REGISTERED_ON_IMPORT[config.task])
  if config.task not in TASKS:
    raise ValueError(f"config.task={config.task!r} is not registered; choose from {sorted(TASKS)}")
  return TASKS[config.task](config, shapes_only)

