"""The two training stages of the speech model on a prepared spoken-QA corpus.

Stage 1 (`speech_thinker`): question audio -> encoder -> adaptor, spliced into the
prompt [bos, <|user|>, audio..., <|assistant|>]; the Thinker learns the text answer
(AR or MDM, per `config.objective`). Stage 2 (`speech_talker`): the frozen Thinker's
hidden states of the answer text are fused with its text embeddings and condition
the Talker, which learns the answer's speech units (AR, or MDM with one block = one
streaming chunk) under the streaming rule: chunk k sees text positions < m*(k+1).
"""
from __future__ import annotations

import json
import os
from typing import Any, NamedTuple

import grain
import jax
import jax.numpy as jnp
import ml_collections

from data_pipelines import features, speech_loader, text_tokenizer
from vocalnet_jax.diffusion import attention_masks
from vocalnet_jax.models import talker as talker_lib
from vocalnet_jax.models.speech_llm import SpeechLLM, init_inputs, speech_llm_from_config
from vocalnet_jax.speech.units import UnitTokenizer
from vocalnet_jax.training import objectives
from vocalnet_jax.training.tasks import TASKS, padded_vocab
from vocalnet_jax.training.validate import ConfigError

Array = jax.Array


class SpeechVocab:
  """Talker vocabulary: speech units 0..K-1, then pad, eos, [MASK] and a start token."""

  def __init__(self, num_units: int, multiple: int):
    self.num_units = num_units
    self.pad_id, self.eos_id, self.mask_id, self.bos_id = range(num_units, num_units + 4)
    self.size = padded_vocab(num_units + 4, multiple)


class TextIds(NamedTuple):
  """The special text ids the objectives need."""
  bos_id: int
  eos_id: int
  mask_id: int
  user_id: int
  assistant_id: int

  @classmethod
  def of(cls, tokenizer: Any) -> "TextIds":
    return cls(*(getattr(tokenizer, f) for f in cls._fields))


# Ids our trained sentencepiece models fix (text_tokenizer.train_sentencepiece); a dry
# run traces shapes only, so it uses these without reading a tokenizer.
TRAINED_TEXT_IDS = TextIds(bos_id=2, eos_id=3, mask_id=4, user_id=5, assistant_id=6)


class PreparedCorpus:
  """What `launch.prepare_data` wrote under `config.data.dir`: dataset + tokenizers."""

  def __init__(self, config: ml_collections.ConfigDict):
    data_dir = config.data.dir
    summary = os.path.join(data_dir, "summary.json")
    if not os.path.exists(summary):
      raise ConfigError(
          f"config.data.dir={data_dir!r} holds no prepared corpus ({summary} is missing); run "
          f"`python -m launch.prepare_data --config=configs/data.py:tiny --out={data_dir}`")
    with open(summary, encoding="utf-8") as f:
      self.dataset_dir = json.load(f)["dataset_dir"]
    self.text_tokenizer = text_tokenizer.load_tokenizer(os.path.join(data_dir, "tokenizer.model"))
    self.unit_tokenizer = UnitTokenizer.load(os.path.join(data_dir, "units.npz"))
    self.transform = speech_loader.SpeechTransform(
        self.text_tokenizer, speech_loader.SpeechBatchConfig.from_config(config.data),
        features.MelConfig(n_mels=config.encoder.n_mels), self.unit_tokenizer)

  def dataset(self, split: str, batch_size: int, seed: int,
              shuffle: bool = True) -> grain.IterDataset:
    return speech_loader.make_speech_dataset(
        speech_loader.open_source(self.dataset_dir, split), self.transform,
        batch_size=batch_size, seed=seed, shuffle=shuffle)


def part_fns(model: SpeechLLM, params: Any, part: str) -> objectives.DecoderFns:
  """DecoderFns of the `thinker` or the `talker` inside the speech model."""
  variables = {"params": params}
  method = lambda name: getattr(SpeechLLM, f"{part}_{name}")  # noqa: E731
  return objectives.DecoderFns(
      embed=lambda t: model.apply(variables, t, method=method("embed")),
      hidden=lambda e, p, m: model.apply(variables, e, p, m, method=method("hidden"))[0],
      logits=lambda h: model.apply(variables, h, method=method("logits")))


class SpeechThinkerTask:
  """Stage 1: speech question -> text answer."""

  def __init__(self, config: ml_collections.ConfigDict, shapes_only: bool = False):
    """shapes_only: no corpus is read (dry runs); vocabulary sizes must then be set in
    `config.model.vocab_size` and `config.talker.num_units`."""
    self.config = config
    self.corpus = None if shapes_only else PreparedCorpus(config)
    if shapes_only and not (config.model.vocab_size and config.talker.num_units):
      raise ConfigError("a dry run reads no tokenizer: set config.model.vocab_size and "
                        "config.talker.num_units")
    self.ids = TRAINED_TEXT_IDS if shapes_only else TextIds.of(self.corpus.text_tokenizer)
    text_vocab = config.model.vocab_size or self.corpus.text_tokenizer.vocab_size
    self.text_vocab = padded_vocab(text_vocab, config.model.vocab_multiple)
    self.speech_vocab = SpeechVocab(
        config.talker.num_units or self.corpus.unit_tokenizer.num_units,
        config.talker.model.vocab_multiple)
    self.model = speech_llm_from_config(config, self.text_vocab, self.speech_vocab.size)
    self.trainable = ("adaptor", "thinker") + (("encoder",) if config.encoder.trainable else ())

  def batch_spec(self, batch_size: int) -> dict[str, jax.ShapeDtypeStruct]:
    """Shapes of the largest batch the loader can yield (keys the losses read)."""
    d = self.config.data
    spec = lambda shape, dtype: jax.ShapeDtypeStruct((batch_size,) + shape, dtype)  # noqa: E731
    return {"mel": spec((d.mel_buckets[-1], self.config.encoder.n_mels), jnp.float32),
            "mel_valid": spec((d.mel_buckets[-1],), jnp.bool_),
            "response": spec((d.response_len,), jnp.int32),
            "response_valid": spec((d.response_len,), jnp.bool_),
            "answer_units": spec((d.max_units,), jnp.int32),
            "answer_units_valid": spec((d.max_units,), jnp.bool_)}

  def dataset(self, split: str, batch_size: int, seed: int,
              shuffle: bool = True) -> grain.IterDataset:
    return self.corpus.dataset(split, batch_size, seed, shuffle)

  def init_params(self, rng: Array, batch: dict) -> Any:
    inputs = init_inputs(1, 10, batch["mel"].shape[-1], 4, 4)
    return self.model.init(rng, *inputs)["params"]

  def thinker_batch(self, params: Any, batch: dict) -> objectives.ResponseBatch:
    """Prefix [bos, <|user|>, adapted audio..., <|assistant|>] and the text answer."""
    tok = self.ids
    audio, audio_valid = self.model.apply({"params": params}, batch["mel"], batch["mel_valid"],
                                          method=SpeechLLM.encode_audio)  # [b, A, embed]
    b = audio.shape[0]
    fns = part_fns(self.model, params, "thinker")
    head = fns.embed(jnp.tile(jnp.array([[tok.bos_id, tok.user_id]]), (b, 1)))  # [b, 2, embed]
    tail = fns.embed(jnp.full((b, 1), tok.assistant_id))  # [b, 1, embed]
    prefix = jnp.concatenate([head, audio.astype(head.dtype), tail], axis=1)
    ones = lambda n: jnp.ones((b, n), bool)  # noqa: E731
    prefix_valid = jnp.concatenate([ones(2), audio_valid, ones(1)], axis=1)
    return objectives.ResponseBatch(prefix, prefix_valid, batch["response"],
                                    batch["response_valid"])

  def lm_problem(self, params: Any, batch: dict) -> objectives.LMProblem:
    return objectives.LMProblem(part_fns(self.model, params, "thinker"),
                                self.thinker_batch(params, batch), self.ids.mask_id,
                                self.ids.eos_id, self.config.diffusion.block_size)

  def loss(self, params: Any, batch: dict, rng: Array) -> tuple[Array, dict]:
    return objectives.lm_loss(self.lm_problem(params, batch), rng, self.config.objective,
                              self.config.diffusion)


class SpeechTalkerTask(SpeechThinkerTask):
  """Stage 2: frozen Thinker states of the answer text -> the answer's speech units."""

  def __init__(self, config: ml_collections.ConfigDict, shapes_only: bool = False):
    super().__init__(config, shapes_only)
    self.trainable = ("talker",)
    t = config.talker
    self.speech_len = -(-(config.data.max_units + 1) // t.chunk_size) * t.chunk_size

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
    t, v = self.config.talker, self.speech_vocab
    hidden = self.thinker_states(params, batch)
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
                                v.mask_id, v.eos_id, t.chunk_size, start_id=v.bos_id)


TASKS.update(speech_thinker=SpeechThinkerTask, speech_talker=SpeechTalkerTask)
