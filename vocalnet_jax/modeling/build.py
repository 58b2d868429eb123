"""The network, tokenizers and vocabularies a config means, built without opening data.

`build(config)` is what training tasks, the decoders, the evaluator and distillation
all start from: a `text_lm` config gives the text Thinker (`Decoder`) and the character
tokenizer; a speech config (`speech_thinker`, `speech_talker`) the `SpeechLLM` with the
tokenizers `launch.prepare_data` wrote under `config.data.dir` (never its splits); a
`self_distill` config its base task's model, whose answering params are the student.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, NamedTuple, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
from etils import epath

from data_pipelines import pretrained_tokenizer, synthetic_text, text_tokenizer
from vocalnet_jax.modeling.validate import ConfigError
from vocalnet_jax.models.decoder import decoder_from_config
from vocalnet_jax.models.speech_llm import init_inputs, speech_llm_from_config
from vocalnet_jax.speech.units import UnitTokenizer

Array = jax.Array


def padded_vocab(size: int, multiple: int) -> int:
  """Rounds the vocabulary up so the `vocab` axis shards evenly (unused ids never occur)."""
  return -(-size // multiple) * multiple


class SpeechVocab:
  """Talker vocabulary: speech units 0..K-1, then pad, eos, [MASK] and a start token."""

  def __init__(self, num_units: int, multiple: int):
    self.num_units = num_units
    self.pad_id, self.eos_id, self.mask_id, self.bos_id = range(num_units, num_units + 4)
    self.size = padded_vocab(num_units + 4, multiple)


class TextIds(NamedTuple):
  """The special text ids the objectives and decoders need."""
  bos_id: int
  eos_id: int
  mask_id: int
  user_id: int
  assistant_id: int
  pad_id: int  # also the transcriber's CTC blank

  @classmethod
  def of(cls, tokenizer: Any) -> "TextIds":
    return cls(*(getattr(tokenizer, f) for f in cls._fields))


# Ids our trained sentencepiece models fix (text_tokenizer.train_sentencepiece); a dry
# run traces shapes only, so it uses these without reading a tokenizer.
TRAINED_TEXT_IDS = TextIds(bos_id=2, eos_id=3, mask_id=4, user_id=5, assistant_id=6,
                           pad_id=0)


@dataclasses.dataclass(frozen=True)
class Model:
  """A config's network with what answering needs besides params."""
  module: nn.Module  # Decoder (text_lm) or SpeechLLM
  init_inputs: tuple[Array, ...]  # dummy inputs of `module.init` (params do not depend on them)
  text_tokenizer: Any  # encode/decode + special ids; None in a shapes-only speech build
  ids: TextIds
  speech_vocab: Optional[SpeechVocab] = None  # speech models only
  unit_tokenizer: Optional[UnitTokenizer] = None  # speech models read from a corpus only
  params_scope: tuple[str, ...] = ()  # path of the answering params in a checkpoint's params

  def init_params(self, rng: Array) -> Any:
    """Freshly initialised params (boxed with their logical axis names)."""
    return self.module.init(rng, *self.init_inputs)["params"]


def corpus_dataset_dir(config: ml_collections.ConfigDict) -> str:
  """The TFDS dataset directory of the prepared corpus under `config.data.dir`."""
  summary = epath.Path(config.data.dir) / "summary.json"
  if not summary.exists():
    raise ConfigError(
        f"config.data.dir={config.data.dir!r} holds no prepared corpus ({summary} is missing); "
        f"run `python -m launch.prepare_data --config=configs/data.py:tiny "
        f"--out={config.data.dir}`")
  stored = epath.Path(json.loads(summary.read_text(encoding="utf-8"))["dataset_dir"])
  # relative to the corpus directory, so a corpus can be moved or read from anywhere (an older
  # summary's relative path was relative to where it was prepared: tried second)
  for candidate in (epath.Path(config.data.dir) / stored, stored):
    if candidate.exists():
      return str(candidate)
  raise ConfigError(f"{summary}: dataset_dir={str(stored)!r} does not exist (a moved corpus? "
                    f"rerun launch.prepare_data --out={config.data.dir})")


def corpus_read_words(data_dir: str) -> list[str]:
  """The general English words the corpus's read split adds (its summary.json; none when
  the corpus has no summary or added none)."""
  summary = epath.Path(data_dir) / "summary.json"
  if not summary.exists():
    return []
  return json.loads(summary.read_text(encoding="utf-8")).get("read_words", [])


def check_corpus_fits(config: ml_collections.ConfigDict, split: str = "train") -> None:
  """ConfigError (one line) when the longest example of `split` in the corpus's summary.json
  (written by `launch.prepare_data`) exceeds the padded lengths of `config.data`: caught
  before compiling instead of as a loader traceback mid-training."""
  d = config.data
  limits = {"mel_frames": ("mel_buckets[-1]", d.mel_buckets[-1]),
            "question_tokens": ("max_question_tokens", d.max_question_tokens),
            "response_tokens": ("response_len", d.response_len),
            "answer_units": ("max_units", d.max_units)}
  corpus_dataset_dir(config)  # a missing corpus: the command that makes it
  summary = epath.Path(config.data.dir) / "summary.json"
  longest = json.loads(summary.read_text(encoding="utf-8")).get("max_lengths", {}).get(split, {})
  for key, (field, limit) in limits.items():
    if longest.get(key, 0) > limit:
      hint = " or prepare the corpus with a lower corpus.max_seconds" if key in (
          "mel_frames", "answer_units") else ""
      raise ConfigError(
          f"config.data.{field}={limit} is shorter than the longest {split!r} example's "
          f"{key} ({longest[key]}) in {summary}: raise config.data.{field}{hint}")


def _text_model(config: ml_collections.ConfigDict, shapes_only: bool) -> Model:
  del shapes_only  # the character tokenizer needs no files
  tok = synthetic_text.CharTokenizer()
  vocab = padded_vocab(config.model.vocab_size or tok.vocab_size, config.model.vocab_multiple)
  tokens = jnp.zeros((1, config.data.prompt_len), jnp.int32)  # [1, P]
  positions = jnp.broadcast_to(jnp.arange(tokens.shape[1]), tokens.shape)  # [1, P]
  mask = jnp.ones(tokens.shape + tokens.shape[1:], bool)  # [1, P, P]
  return Model(decoder_from_config(config.model, vocab), (tokens, positions, mask), tok,
               TextIds.of(tok))


def load_text_tokenizer(config: ml_collections.ConfigDict) -> Any:
  """The Thinker's tokenizer: a pretrained checkpoint's (`config.model.tokenizer`, `gguf:FILE`
  or `hf:DIR`, with its chat template) or the corpus's sentencepiece model."""
  spec = config.model.get("tokenizer", "")
  if not spec:
    return text_tokenizer.load_tokenizer(os.path.join(config.data.dir, "tokenizer.model"))
  try:
    return pretrained_tokenizer.load(spec)
  except (OSError, ValueError) as e:
    raise ConfigError(f"config.model.tokenizer={spec!r}: {e}") from None


def thinker_vocab(config: ml_collections.ConfigDict, tokenizer: Any) -> int:
  """The Thinker's vocabulary: the tokenizer's (its reserved tokens included, so a pretrained
  checkpoint's [MASK] adds no embedding row), padded to `vocab_multiple`."""
  return padded_vocab(config.model.vocab_size or tokenizer.vocab_size,
                      config.model.vocab_multiple)


def _speech_model(config: ml_collections.ConfigDict, shapes_only: bool) -> Model:
  """shapes_only: no tokenizer is read (dry runs); vocabulary sizes must then be set in
  `config.model.vocab_size` and `config.talker.num_units`."""
  if shapes_only:
    if not (config.model.vocab_size and config.talker.num_units):
      raise ConfigError("a dry run reads no tokenizer: set config.model.vocab_size and "
                        "config.talker.num_units")
    text_tok = units = None
    ids = TRAINED_TEXT_IDS
  else:
    corpus_dataset_dir(config)  # a missing corpus fails with the command that makes it
    text_tok = load_text_tokenizer(config)
    units = UnitTokenizer.load(os.path.join(config.data.dir, "units.npz"))
    ids = TextIds.of(text_tok)
  text_vocab = thinker_vocab(config, text_tok)
  speech_vocab = SpeechVocab(config.talker.num_units or units.num_units,
                             config.talker.model.vocab_multiple)
  return Model(speech_llm_from_config(config, text_vocab, speech_vocab.size, ids.pad_id),
               init_inputs(1, 10, config.encoder.n_mels, 4, 4), text_tok, ids, speech_vocab, units)


_BUILDERS = {"text_lm": _text_model, "speech_typed": _speech_model,
             "speech_thinker": _speech_model, "speech_talker": _speech_model}


def build(config: ml_collections.ConfigDict, shapes_only: bool = False) -> Model:
  """The model of `config.task`; shapes_only: read no files (dry runs)."""
  if config.task == "self_distill":  # params {"student", "teacher"}; answering uses the student
    base = config.copy_and_resolve_references()
    base.task = config.distill.base_task
    return dataclasses.replace(build(base, shapes_only), params_scope=("student",))
  if config.task not in _BUILDERS:
    raise ConfigError(f"config.task={config.task!r} has no model; choose from "
                      f"{sorted(_BUILDERS) + ['self_distill']}")
  return _BUILDERS[config.task](config, shapes_only)
