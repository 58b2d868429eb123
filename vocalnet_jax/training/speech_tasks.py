"""The two training stages of the speech model on a prepared spoken-QA corpus.

Stage 1 (`speech_thinker`): question audio -> encoder -> adaptor, spliced into the
prompt [bos, <|user|>, audio..., <|assistant|>]; the Thinker learns the text answer
(AR or MDM, per `config.objective`). Stage 2 (`speech_talker`): the frozen Thinker's
hidden states of the answer text are fused with its text embeddings and condition
the Talker, which learns the answer's speech units (AR, or MDM with one block = one
streaming chunk) under the streaming rule: chunk k sees text positions < m*(k+1).
With `config.talker.cache_thinker_states` the frozen Thinker's states of every answer are
computed once (`SpeechTalkerTask.state_cache`) and read with the batch, so a step runs the
Talker alone.
"""
from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Callable, Optional

from absl import logging
import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from data_pipelines import features, loader, mishearing, speech_loader, spelling, spoken_qa
from data_pipelines.prompt import prompt_head_tail
from vocalnet_jax.diffusion import attention_masks, losses
from vocalnet_jax.modeling import partitioning, restore
from vocalnet_jax.modeling.build import Model, check_corpus_fits, corpus_dataset_dir
from vocalnet_jax.modeling.validate import ConfigError
from vocalnet_jax.models import talker as talker_lib
from vocalnet_jax.models.speech_llm import SpeechLLM, spells
from vocalnet_jax.training import objectives, spec_augment
from vocalnet_jax.training.tasks import Task, train_split_parts

Array = jax.Array


class PreparedCorpus:
  """The splits `launch.prepare_data` wrote under `config.data.dir`, as training batches."""

  def __init__(self, config: ml_collections.ConfigDict, built: Model, with_units: bool):
    """with_units: batches carry the answer's speech units (the Talker's targets; stage 1
    skips them: loader CPU competes with the train step on a small machine)."""
    for split in train_split_parts(config):
      check_corpus_fits(config, split)
    self.dataset_dir = corpus_dataset_dir(config)
    self.data_dir, self.group_window = config.data.dir, config.data.get("length_group_window", 0)
    batch_config = dataclasses.replace(  # ears that spell read the question's characters
        speech_loader.SpeechBatchConfig.from_config(config.data),
        question_chars=(config.data.get("question_chars", 0) if spells(config) else 0))
    self.transform = speech_loader.SpeechTransform(
        built.text_tokenizer, batch_config,
        features.MelConfig(n_mels=config.encoder.n_mels),
        built.unit_tokenizer if with_units else None)

  def dataset(self, split: str, batch_size: int, seed: int, shuffle: bool = True,
              companion: Optional[Callable[[int], dict]] = None) -> grain.IterDataset:
    """Shuffled batches grouped by question length (`config.data.length_group_window`);
    `companion`: more arrays per stream position (`loader.make_dataset`)."""
    frames = None
    if shuffle and self.group_window:
      frames = speech_loader.load_question_frames(self.data_dir, split)
      if frames is None:
        logging.warning("%s has no %s (prepared before length grouping): batches of %r are "
                        "not grouped by length; rerun launch.prepare_data to group them",
                        self.data_dir, speech_loader.QUESTION_FRAMES, split)
    return speech_loader.make_speech_dataset(
        speech_loader.open_source(self.dataset_dir, split), self.transform,
        batch_size=batch_size, seed=seed, shuffle=shuffle, question_frames=frames,
        group_window=self.group_window, companion=companion)


def typed_spec(data: ml_collections.ConfigDict,
               batch_size: int) -> dict[str, jax.ShapeDtypeStruct]:
  """Shapes of a batch of typed questions (`spoken_qa.TypedQASource`)."""
  spec = lambda shape, dtype: jax.ShapeDtypeStruct((batch_size,) + shape, dtype)  # noqa: E731
  return {"prompt": spec((data.prompt_len,), jnp.int32),
          "prompt_valid": spec((data.prompt_len,), jnp.bool_),
          "response": spec((data.response_len,), jnp.int32),
          "response_valid": spec((data.response_len,), jnp.bool_)}


def mishear_spec(mishear: Optional[ml_collections.ConfigDict]) -> Optional[spoken_qa.MishearSpec]:
  """`config.data.mishear` as the typed source reads it (None: questions as typed)."""
  if mishear is None or not mishear.channel:
    return None
  try:
    channel = mishearing.load(mishear.channel)
  except ValueError as e:
    raise ConfigError(f"config.data.mishear.channel: {e}") from None
  return spoken_qa.MishearSpec(channel, mishear.fraction, mishear.max_scale)


def part_fns(model: SpeechLLM, params: Any, part: str) -> objectives.DecoderFns:
  """DecoderFns of the `thinker` or the `talker` inside the speech model."""
  variables = {"params": params}
  method = lambda name: getattr(SpeechLLM, f"{part}_{name}")  # noqa: E731
  return objectives.DecoderFns(
      embed=lambda t: model.apply(variables, t, method=method("embed")),
      hidden=lambda e, p, m: model.apply(variables, e, p, m, method=method("hidden"))[0],
      logits=lambda h: model.apply(variables, h, method=method("logits")))


TYPED_PREFIX = "typed_"  # batch keys of the procedural typed questions read beside stage 1's


class SpeechThinkerTask(Task):
  """Stage 1: speech question -> text answer."""

  reads_units = False  # batches carry `answer_units` (only the Talker's targets need them)
  trains_typed = True  # the typed-answer term of `config.auxiliary` is this task's

  def __init__(self, config: ml_collections.ConfigDict, shapes_only: bool = False):
    """shapes_only: no corpus is read (dry runs); vocabulary sizes must then be set in
    `config.model.vocab_size` and `config.talker.num_units`."""
    super().__init__(config, shapes_only)
    self.corpus = (None if shapes_only else
                   PreparedCorpus(config, self.built, with_units=self.reads_units))
    self.ids, self.speech_vocab = self.built.ids, self.built.speech_vocab
    self.trainable = ("adaptor", "thinker") + (("encoder",) if config.encoder.trainable else ())
    self.augment = spec_augment.SpecAugmentConfig.from_config(config.get("spec_augment"))
    aux = config.auxiliary
    # typed_source `procedural`: the typed term answers a fresh typed question of the train
    # templates at every stream position (stage 0's stream), not the batch's own transcript
    # (which the Thinker would meet once per epoch and could memorise).
    self.typed_stream = (self.trains_typed and aux.typed_weight > 0
                         and aux.get("typed_source", "batch") == "procedural")

  def batch_spec(self, batch_size: int) -> dict[str, jax.ShapeDtypeStruct]:
    """Shapes of the largest batch the loader can yield (keys the losses read)."""
    d = self.config.data
    spec = lambda shape, dtype: jax.ShapeDtypeStruct((batch_size,) + shape, dtype)  # noqa: E731
    return {"mel": spec((d.mel_buckets[-1], self.config.encoder.n_mels), jnp.float32),
            "mel_valid": spec((d.mel_buckets[-1],), jnp.bool_),
            "question_tokens": spec((d.max_question_tokens,), jnp.int32),
            "question_valid": spec((d.max_question_tokens,), jnp.bool_),
            "prompt": spec((d.prompt_len,), jnp.int32),
            "prompt_valid": spec((d.prompt_len,), jnp.bool_),
            "response": spec((d.response_len,), jnp.int32),
            "response_valid": spec((d.response_len,), jnp.bool_),
            **({"answer_units": spec((d.max_units,), jnp.int32),
                "answer_units_valid": spec((d.max_units,), jnp.bool_)} if self.reads_units
               else {}),
            **({TYPED_PREFIX + k: v for k, v in typed_spec(d, batch_size).items()}
               if self.typed_stream else {})}

  def typed_source(self, split: str) -> spoken_qa.TypedQASource:
    """Procedural typed questions of `split`'s templates (stage 0's stream)."""
    d = self.config.data
    return spoken_qa.TypedQASource(self.built.text_tokenizer, split, d.typed_examples,
                                   d.prompt_len, d.response_len, d.typed_seed,
                                   mishear_spec(d.get("mishear")))

  def dataset(self, split: str, batch_size: int, seed: int,
              shuffle: bool = True) -> grain.IterDataset:
    companion = None
    if self.typed_stream:
      typed = self.typed_source(split)
      companion = lambda i: {TYPED_PREFIX + k: v  # noqa: E731
                             for k, v in typed[i % len(typed)].items()}
    return self.corpus.dataset(split, batch_size, seed, shuffle, companion)

  def head_tail(self, batch_size: int) -> tuple[Array, Array]:
    """Prompt ids around the audio: ([b, H], [b, T])."""
    head, tail = prompt_head_tail(self.ids)
    return jnp.tile(jnp.array([head]), (batch_size, 1)), jnp.tile(jnp.array([tail]),
                                                                 (batch_size, 1))

  def thinker_batch(self, params: Any, batch: dict) -> objectives.ResponseBatch:
    """Prefix [bos, <|user|>, adapted audio..., <|assistant|>] and the text answer."""
    head, tail = self.head_tail(batch["mel"].shape[0])
    prefix, prefix_valid = self.model.apply({"params": params}, batch["mel"], batch["mel_valid"],
                                            head, tail, method=SpeechLLM.audio_prompt)
    return objectives.ResponseBatch(prefix, prefix_valid, batch["response"],
                                    batch["response_valid"])

  def lm_problem(self, params: Any, batch: dict) -> objectives.LMProblem:
    return self.thinker_problem(params, self.thinker_batch(params, batch))

  def typed_problem(self, params: Any, batch: dict, prefix: str = "") -> objectives.LMProblem:
    """The Thinker answering the typed question (`prompt`) instead of the audio; `prefix`
    picks the keys (TYPED_PREFIX: the procedural question read beside the audio)."""
    embed = part_fns(self.model, params, "thinker").embed
    get = lambda key: batch[prefix + key]  # noqa: E731
    return self.thinker_problem(params, objectives.ResponseBatch(
        embed(get("prompt")), get("prompt_valid"), get("response"), get("response_valid")))

  def thinker_problem(self, params: Any, batch: objectives.ResponseBatch) -> objectives.LMProblem:
    return objectives.LMProblem(part_fns(self.model, params, "thinker"), batch,
                                self.ids.mask_id, self.ids.eos_id,
                                self.config.diffusion.block_size,
                                loss_chunk=self.config.train.get("loss_chunk", 0))

  def loss(self, params: Any, batch: dict, rng: Array) -> tuple[Array, dict]:
    """The spoken answer's loss (weight `answer_weight`), plus the auxiliary terms of
    `config.auxiliary`:
    CTC of the question transcript on the encoder frames (the encoder learns to hear)
    and the same answer from the typed question (the Thinker learns to answer). The
    question's mel is SpecAugmented per `config.spec_augment` (off when its counts are 0)."""
    aux, objective, diffusion = self.config.auxiliary, self.config.objective, self.config.diffusion
    head, tail = self.head_tail(batch["mel"].shape[0])
    mel = spec_augment.spec_augment(batch["mel"], batch["mel_valid"],
                                    jax.random.fold_in(rng, 1), self.augment)
    prefix, prefix_valid, ctc_logits, frames_valid = self.model.apply(
        {"params": params}, mel, batch["mel_valid"], head, tail,
        aux.get("ctc_on", "encoder"),  # runs saved before the knob scored encoder frames
        method=SpeechLLM.audio_prompt_and_transcript)
    spoken = objectives.ResponseBatch(prefix, prefix_valid, batch["response"],
                                      batch["response_valid"])
    rng_spoken, rng_typed = jax.random.split(rng)
    loss, metrics = jnp.zeros((), jnp.float32), {}
    if aux.get("answer_weight", 1.0):  # 0: the ears alone (no Thinker pass for the answer)
      answer, metrics = objectives.lm_loss(self.thinker_problem(params, spoken), rng_spoken,
                                           objective, diffusion)
      metrics["answer_loss"] = answer
      loss = aux.get("answer_weight", 1.0) * answer
    if aux.ctc_weight:  # ears that spell score characters, others the Thinker's tokens
      if spells(self.config):
        labels, valid, blank = (batch["question_chars"], batch["question_chars_valid"],
                                spelling.BLANK)
      else:
        labels, valid, blank = batch["question_tokens"], batch["question_valid"], self.ids.pad_id
      metrics["ctc_loss"] = losses.ctc_per_token(ctc_logits, frames_valid, labels, valid, blank)
      loss = loss + aux.ctc_weight * metrics["ctc_loss"]
    if aux.typed_weight:
      typed = self.typed_problem(params, batch, TYPED_PREFIX if self.typed_stream else "")
      metrics["typed_loss"], _ = objectives.lm_loss(typed, rng_typed, objective, diffusion)
      loss = loss + aux.typed_weight * metrics["typed_loss"]
    metrics["loss"] = loss
    return loss, metrics


class TypedThinkerTask(SpeechThinkerTask):
  """Stage 0: the speech model's Thinker answers typed questions of the corpus's templates
  (procedural, `spoken_qa.TypedQASource`) with the corpus tokenizer; nothing else trains.
  Its params are the speech model's, so stage 1 starts from them with `init_from`."""

  def __init__(self, config: ml_collections.ConfigDict, shapes_only: bool = False):
    super().__init__(config, shapes_only)
    self.trainable = ("thinker",)

  def dataset(self, split: str, batch_size: int, seed: int,
              shuffle: bool = True) -> grain.IterDataset:
    return loader.make_dataset(self.typed_source(split), lambda x: x, batch_size=batch_size,
                               seed=seed, shuffle=shuffle)

  def batch_spec(self, batch_size: int) -> dict[str, jax.ShapeDtypeStruct]:
    return typed_spec(self.config.data, batch_size)

  def lm_problem(self, params: Any, batch: dict) -> objectives.LMProblem:
    return self.typed_problem(params, batch)

  def loss(self, params: Any, batch: dict, rng: Array) -> tuple[Array, dict]:
    return objectives.lm_loss(self.lm_problem(params, batch), rng, self.config.objective,
                              self.config.diffusion)


THINKER_STATES = "thinker_states"  # batch key of the cached states [b, R, embed]
AUDIO_KEYS = ("mel", "mel_valid", "question_tokens", "question_valid")  # what the cache spares


class SpeechTalkerTask(SpeechThinkerTask):
  """Stage 2: frozen Thinker states of the answer text -> the answer's speech units."""

  reads_units = True
  trains_typed = False

  def __init__(self, config: ml_collections.ConfigDict, shapes_only: bool = False):
    super().__init__(config, shapes_only)
    self.trainable = ("talker",)
    t = config.talker
    self.speech_len = -(-(config.data.max_units + 1) // t.chunk_size) * t.chunk_size
    # A text-only Talker (`talker.thinker_states=False`) reads no Thinker state: its batches
    # carry no audio and no Thinker runs, so there is nothing to cache either.
    self.reads_states = bool(t.get("thinker_states", True))
    self.cached = self.reads_states and bool(t.get("cache_thinker_states", False))
    self.reads_audio = self.reads_states and not self.cached  # the Thinker runs in the step
    self._caches: dict[str, np.ndarray] = {}  # split -> [examples, R, embed]

  def batch_spec(self, batch_size: int) -> dict[str, jax.ShapeDtypeStruct]:
    spec = super().batch_spec(batch_size)
    if self.reads_audio:
      return spec
    spec = {k: v for k, v in spec.items() if k not in AUDIO_KEYS}
    if self.cached:
      d, embed = self.config.data, self.config.model.embed_dim
      spec[THINKER_STATES] = jax.ShapeDtypeStruct((batch_size, d.response_len, embed),
                                                  jnp.float32)
    return spec

  def dataset(self, split: str, batch_size: int, seed: int,
              shuffle: bool = True) -> grain.IterDataset:
    """The corpus batches; cached: the audio replaced by the Thinker's states of each
    answer (looked up by the example's index); text-only: the audio dropped."""
    ds = super().dataset(split, batch_size, seed, shuffle)
    if self.reads_audio:
      return ds
    states = self.state_cache(split) if self.cached else None

    def without_audio(batch: dict) -> dict:
      batch = {k: v for k, v in batch.items() if k not in AUDIO_KEYS}
      return batch if states is None else {**batch, THINKER_STATES: states[batch["index"]]}
    return ds.map(without_audio)

  def state_cache(self, split: str, params: Optional[Any] = None,
                  batch_size: int = 32) -> np.ndarray:
    """[examples, R, embed] `thinker_states` of every example of `split`, by index, from
    `params` (default: config.init_from's Thinker, frozen in this stage); computed once."""
    if split not in self._caches:
      tick = time.perf_counter()
      params = self.frozen_thinker_params() if params is None else params
      size = len(speech_loader.open_source(self.corpus.dataset_dir, split))
      batch_size = min(batch_size, size)
      states = jax.jit(self.thinker_states)
      cache, seen = None, np.zeros(size, bool)
      batches = iter(self.corpus.dataset(split, batch_size, seed=0, shuffle=False))
      for _ in range(math.ceil(size / batch_size)):
        batch = next(batches)
        hidden = np.asarray(states(params, batch))  # [b, R, embed]
        if cache is None:
          cache = np.zeros((size,) + hidden.shape[1:], np.float32)
        cache[batch["index"]] = hidden
        seen[batch["index"]] = True
      assert seen.all(), f"{split}: {np.sum(~seen)} examples never read"
      self._caches[split] = cache
      if jax.process_index() == 0:
        print(f"cached the frozen Thinker's states of {size} {split} answers "
              f"({cache.nbytes / 2**20:.0f} MiB) in {time.perf_counter() - tick:.0f} s",
              flush=True)
    return self._caches[split]

  def frozen_thinker_params(self) -> Any:
    """The params of `config.init_from` (base run, with its grafted parts): what the
    frozen Thinker and its ears are in this stage."""
    from vocalnet_jax.training import trainer  # pylint: disable=import-outside-toplevel
    if not self.config.get("init_from"):
      raise ConfigError("config.talker.cache_thinker_states needs config.init_from (the "
                        "trained Thinker whose states are cached)")
    base, parts = trainer.parse_init_from(self.config.init_from)
    if not base:
      raise ConfigError(f"config.init_from={self.config.init_from!r}: caching the Thinker's "
                        "states needs a base run")
    mesh = partitioning.make_mesh(self.config.mesh)
    abstract = restore.abstract_params(
        self.built, mesh, partitioning.rules_from_config(self.config.logical_axis_rules))
    params = restore.restore_params(base, abstract, self.built.params_scope,
                                    exported_dtype=False)
    for part, workdir in parts.items():
      params = {**params, part: restore.restore_params(workdir, abstract[part], scope=(part,),
                                                       exported_dtype=False)}
    return params

  def thinker_states(self, params: Any, batch: dict) -> Array:
    """Hidden states of the answer text as decoding produces them: causal for an AR
    Thinker, block-causal (the clean pass that fills the KV cache) for MDM. [b, R, embed]"""
    rb = self.thinker_batch(params, batch)
    fns = part_fns(self.model, params, "thinker")
    resp_len = rb.response.shape[1]
    body = (attention_masks.causal_mask(resp_len) if self.config.objective == "ar" else
            attention_masks.block_causal_mask(resp_len, self.config.diffusion.block_size))
    emb = jnp.concatenate([rb.prefix_emb, fns.embed(rb.response)], axis=1)
    mask = attention_masks.with_prefix(body, rb.prefix_valid, rb.response_valid)
    positions = attention_masks.prefix_positions(rb.prefix_valid, resp_len)
    return jax.lax.stop_gradient(fns.hidden(emb, positions, mask)[:, -resp_len:])

  def speech_targets(self, batch: dict) -> tuple[Array, Array]:
    """Units + eos, padded to a whole number of chunks: ([b, S], [b, S])."""
    units, valid = batch["answer_units"], batch["answer_units_valid"]
    pad = self.speech_len - units.shape[1]
    units = jnp.pad(units, ((0, 0), (0, pad)))
    valid = jnp.pad(valid, ((0, 0), (0, pad)))
    length = jnp.sum(valid, axis=1, keepdims=True)  # [b, 1]
    pos = jnp.arange(self.speech_len)[None, :]
    v = self.speech_vocab
    targets = jnp.where(valid, units, jnp.where(pos == length, v.eos_id, v.pad_id))
    return targets.astype(jnp.int32), pos <= length

  def lm_problem(self, params: Any, batch: dict) -> objectives.LMProblem:
    """The Talker answering the fused Thinker states with speech units."""
    return self.talker_problem(params, batch, self.answer_states(params, batch))

  def answer_states(self, params: Any, batch: dict) -> Array:
    """The Thinker states of the answer text [b, R, embed]: cached with the batch, computed,
    or zeros for a text-only Talker (what its fusion reads in their place)."""
    if not self.reads_states:
      return jnp.zeros(batch["response"].shape + (self.config.model.embed_dim,), jnp.float32)
    return (batch[THINKER_STATES] if THINKER_STATES in batch
            else self.thinker_states(params, batch))

  def talker_problem(self, params: Any, batch: dict, hidden: Array) -> objectives.LMProblem:
    """`lm_problem` from given Thinker states of the answer text, hidden [b, R, embed]."""
    t, v = self.config.talker, self.speech_vocab
    cond = self.model.apply({"params": params}, batch["response"], hidden,
                            method=SpeechLLM.talker_fuse)  # [b, R, talker_embed]
    targets, valid = self.speech_targets(batch)
    num_text, b = cond.shape[1], cond.shape[0]
    text_pos, speech_pos = talker_lib.talker_positions(num_text, self.speech_len, t.chunk_size,
                                                       t.text_per_chunk)
    talker_batch = objectives.ResponseBatch(
        cond, batch["response_valid"], targets, valid,
        prefix_visibility=talker_lib.talker_text_visibility(
            num_text, self.speech_len, t.chunk_size, t.text_per_chunk),
        positions=(jnp.broadcast_to(text_pos, (b, num_text)),
                   jnp.broadcast_to(speech_pos, (b, self.speech_len))))
    return objectives.LMProblem(part_fns(self.model, params, "talker"), talker_batch,
                                v.mask_id, v.eos_id, t.chunk_size, start_id=v.bos_id,
                                loss_chunk=self.config.train.get("loss_chunk", 0))

  def loss(self, params: Any, batch: dict, rng: Array) -> tuple[Array, dict]:
    """The Talker's own loss (never stage 1's answer + auxiliaries: the Thinker is frozen),
    with `talker.state_dropout` of the Thinker states (training only)."""
    rate = float(self.config.talker.get("state_dropout", 0.0))
    if not rate:
      problem = self.lm_problem(params, batch)
    else:
      drop_rng, rng = jax.random.split(rng)
      hidden = drop_states(self.answer_states(params, batch), rate, drop_rng)
      problem = self.talker_problem(params, batch, hidden)
    return objectives.lm_loss(problem, rng, self.config.objective, self.config.diffusion)


def drop_states(hidden: Array, rate: float, rng: Array) -> Array:
  """Zeroes each answer position's Thinker state [b, R, embed] with probability `rate`: the
  fused conditioning of that position keeps only its text embedding."""
  keep = jax.random.bernoulli(rng, 1.0 - rate, hidden.shape[:2])  # [b, R]
  return jnp.where(keep[..., None], hidden, 0.0)

