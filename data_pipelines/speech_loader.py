"""grain loader for the spoken-QA corpus: features, tokens and speech units, bucketed batches.

Why: training needs padded numpy batches that are deterministic, shuffled,
sharded per host and resumable. The generic part (shard -> shuffle -> repeat ->
map -> batch, checkpointable iterator, global arrays) is `data_pipelines.loader`;
this module adds the speech transform and length-bucketed padding.

Batch keys (B = per-host batch size), produced by `SpeechTransform` + `pad_batch`:
  index               [B] int64            position of the example in its source
  mel                 [B, T, n_mels] f32   question log-mel, zero-padded; T = smallest
                                           `mel_buckets` entry >= longest in the batch
  mel_valid           [B, T] bool          real frames
  question_tokens     [B, Lq] int32        question transcript, right-padded with pad_id
  question_valid      [B, Lq] bool
  question_chars      [B, Lc] int32        its characters (`spelling`), when question_chars > 0
  question_chars_valid [B, Lc] bool
  prompt              [B, P] int32         [bos, <|user|>, question..., <|assistant|>],
                                           left-padded (text-only QA on the same corpus)
  prompt_valid        [B, P] bool
  response            [B, R] int32         answer tokens + eos, right-padded
  response_valid      [B, R] bool
  answer_units        [B, U] int32         speech units of the answer audio, padded with 0
  answer_units_valid  [B, U] bool
  answer_audio        [B, S] f32           only with `include_answer_audio`; zero-padded
  answer_audio_valid  [B, S] bool          to `max_answer_samples`
`prompt`/`prompt_valid`/`response`/`response_valid` follow the LM batch contract
of `synthetic_text.pack_example`.

Mel: taken from the stored `question_mel` when the dataset has it, `use_cached_mel`
is set and it was made with the same `MelConfig`, else computed here from
`question_audio`. On the tiny corpus (shared 2-core machine, same data, A/B
runs of benchmarks/loader_throughput.py) cached mel gave 236-253 examples/s vs
123-197 on the fly, for 26% more disk; log-mel costs ~2 ms per question.
Units: computed here with the fitted `UnitTokenizer` (not stored), so refitting
units never needs a dataset rebuild: from the stored `answer_mel` when it matches the
tokenizer's mel (a nearest-centroid lookup), else from `answer_audio` (~10 ms each).
Without a unit tokenizer the unit keys are absent. Examples longer than a configured
maximum raise an error naming the example and the config field.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Mapping, Optional, Protocol, Sequence

from etils import epath
import grain
import numpy as np
import tensorflow_datasets as tfds
import threadpoolctl

from data_pipelines import features, loader, spelling, synthetic_text
from data_pipelines.prompt import prompt_ids
from data_pipelines.text_tokenizer import TextTokenizer


QUESTION_FRAMES = "question_frames.npz"  # split -> [examples] question mel frames


@dataclasses.dataclass(frozen=True)
class SpeechBatchConfig:
  """Padding lengths; `mel_buckets` must end with the maximum number of mel frames."""

  mel_buckets: tuple[int, ...] = (300, 600, 1000)
  max_question_tokens: int = 64
  question_chars: int = 0  # > 0: also the question's characters (`spelling`), padded to this
  prompt_len: int = 68  # question tokens + bos, user, assistant
  response_len: int = 48
  max_units: int = 300
  max_answer_samples: int = 16000 * 8
  include_answer_audio: bool = False
  use_cached_mel: bool = True

  @classmethod
  def from_config(cls, cfg) -> "SpeechBatchConfig":
    names = {f.name for f in dataclasses.fields(cls)}
    values = {k: v for k, v in dict(cfg).items() if k in names}
    if "mel_buckets" in values:
      values["mel_buckets"] = tuple(values["mel_buckets"])
    return cls(**values)


class IndexedSource:
  """Wraps a random-access source so each record carries its own index."""

  def __init__(self, source: Any):
    self._source = source

  def __len__(self) -> int:
    return len(self._source)

  def __getitem__(self, index: int) -> dict[str, Any]:
    return {**self._source[index], "index": int(index)}


def open_source(dataset_dir: str, split: str) -> IndexedSource:
  """Random-access source over a prepared TFDS dataset directory (.../<name>/<config>/<version>)."""
  return IndexedSource(tfds.builder_from_directory(dataset_dir).as_data_source(split))


def record_text(value: Any) -> str:
  """A text feature of a TFDS record (bytes from `as_data_source`) as str."""
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _padded(values: Sequence[int] | np.ndarray, length: int, pad: int, dtype) -> tuple:
  """Right-pads to `length`: (array [length], valid [length])."""
  out = np.full((length,), pad, dtype)
  out[:len(values)] = values
  return out, np.arange(length) < len(values)


class UnitEncoder(Protocol):
  """What the loader needs of `vocalnet_jax.speech.units.UnitTokenizer`."""
  mel_config: features.MelConfig  # the log-mel `encode_mel` reads

  def encode(self, wav: np.ndarray) -> np.ndarray: ...  # 16 kHz [samples] -> int32 [units]
  def encode_mel(self, mel: np.ndarray) -> np.ndarray: ...  # [frames, n_mels] -> [units]


@dataclasses.dataclass(frozen=True)
class SpeechTransform:
  """One stored record -> dict of arrays (mel stays variable-length until `pad_batch`)."""

  text_tokenizer: TextTokenizer
  batch_config: SpeechBatchConfig
  mel_config: features.MelConfig = features.MelConfig()
  unit_tokenizer: Optional[UnitEncoder] = None

  def _check(self, example_id: str, what: str, length: int, limit: int, field: str) -> None:
    if length > limit:
      raise ValueError(f"example {example_id}: {what} has length {length} > {field}={limit}")

  def _cached_mel(self, record: Mapping[str, Any], key: str,
                  mel_config: features.MelConfig) -> Optional[np.ndarray]:
    """The record's stored log-mel `key` [frames, n_mels] when use_cached_mel is set and it
    was made with `mel_config`, else None (compute it from the audio)."""
    cached = record.get(key)
    if (self.batch_config.use_cached_mel and cached is not None
        and features.MelConfig(n_mels=cached.shape[-1]) == mel_config):
      return np.asarray(cached, np.float32)
    return None

  def _answer_units(self, record: Mapping[str, Any], answer_audio: np.ndarray) -> np.ndarray:
    """From the cached answer mel when it is the unit tokenizer's (same units, a lookup
    instead of ~10 ms of STFT), else from the audio."""
    cached = self._cached_mel(record, "answer_mel", self.unit_tokenizer.mel_config)
    if cached is not None:
      return self.unit_tokenizer.encode_mel(cached)
    return self.unit_tokenizer.encode(answer_audio)

  def __call__(self, record: Mapping[str, Any]) -> dict[str, np.ndarray]:
    cfg, tok = self.batch_config, self.text_tokenizer
    example_id = record_text(record["id"])
    mel = self._cached_mel(record, "question_mel", self.mel_config)  # [frames, n_mels]
    if mel is None:
      mel = features.log_mel(record["question_audio"], self.mel_config)  # [frames, n_mels]
    self._check(example_id, "question mel", mel.shape[0], cfg.mel_buckets[-1], "mel_buckets[-1]")

    question = tok.encode(record_text(record["question_text"]))
    self._check(example_id, "question tokens", len(question), cfg.max_question_tokens,
                "max_question_tokens")
    prompt = prompt_ids(tok, question)
    response = [*tok.encode(record_text(record["answer_text"])), tok.eos_id]
    self._check(example_id, "prompt", len(prompt), cfg.prompt_len, "prompt_len")
    self._check(example_id, "response", len(response), cfg.response_len, "response_len")
    out = synthetic_text.pack_example(prompt, response, cfg.prompt_len, cfg.response_len,
                                      tok.pad_id)
    out["question_tokens"], out["question_valid"] = _padded(
        question, cfg.max_question_tokens, tok.pad_id, np.int32)
    if cfg.question_chars:  # CTC targets of ears that spell (`auxiliary.ctc_units=chars`)
      chars = spelling.spell(record_text(record["question_text"]), f"example {example_id}")
      self._check(example_id, "question characters", len(chars), cfg.question_chars,
                  "question_chars")
      out["question_chars"], out["question_chars_valid"] = _padded(
          chars, cfg.question_chars, spelling.BLANK, np.int32)
    out["index"] = np.int64(record["index"])
    out["mel"] = mel

    answer_audio = np.asarray(record["answer_audio"], np.float32)  # [samples]
    if self.unit_tokenizer is not None:
      units = self._answer_units(record, answer_audio)  # [units]
      self._check(example_id, "answer units", units.size, cfg.max_units, "max_units")
      out["answer_units"], out["answer_units_valid"] = _padded(units, cfg.max_units, 0, np.int32)
    if cfg.include_answer_audio:
      self._check(example_id, "answer audio", answer_audio.size, cfg.max_answer_samples,
                  "max_answer_samples")
      out["answer_audio"], out["answer_audio_valid"] = _padded(
          answer_audio, cfg.max_answer_samples, 0.0, np.float32)
    return out


def bucket_length(length: int, buckets: Sequence[int]) -> int:
  """Smallest bucket >= length."""
  for b in buckets:
    if length <= b:
      return b
  raise ValueError(f"length {length} exceeds the largest bucket {buckets[-1]}")


def pad_batch(examples: Sequence[Mapping[str, np.ndarray]],
              mel_buckets: Sequence[int]) -> dict[str, np.ndarray]:
  """Stacks examples; pads `mel` to the bucket of the longest one and adds `mel_valid`."""
  frames = bucket_length(max(ex["mel"].shape[0] for ex in examples), mel_buckets)
  n_mels = examples[0]["mel"].shape[1]
  mel = np.zeros((len(examples), frames, n_mels), np.float32)  # [batch, frames, mels]
  mel_valid = np.zeros((len(examples), frames), bool)  # [batch, frames]
  for i, ex in enumerate(examples):
    mel[i, :ex["mel"].shape[0]] = ex["mel"]
    mel_valid[i, :ex["mel"].shape[0]] = True
  batch = {k: np.stack([ex[k] for ex in examples]) for k in examples[0] if k != "mel"}
  return {**batch, "mel": mel, "mel_valid": mel_valid}


def limit_blas_threads() -> None:
  """Makes numpy's BLAS single-threaded for this process.

  grain already runs transforms in parallel threads; letting each small mel /
  unit matmul also spawn OpenBLAS threads oversubscribes the CPU (measured on a
  2-core machine: 8 -> 139 examples/s once limited). JAX does not use this BLAS.
  """
  threadpoolctl.threadpool_limits(limits=1, user_api="blas")


def save_question_frames(data_dir: str, frames: Mapping[str, Sequence[int]]) -> None:
  """Writes each split's question mel frame counts (in source order) for length grouping."""
  with open(os.path.join(data_dir, QUESTION_FRAMES), "wb") as f:
    np.savez(f, **{split: np.asarray(v, np.int32) for split, v in frames.items()})


def load_question_frames(data_dir: str, split: str) -> Optional[np.ndarray]:
  """The split's question mel frame counts [examples] ("a+b": a's then b's, the order of
  TFDS's "a+b" source), or None for a corpus prepared before they were recorded."""
  path = epath.Path(data_dir) / QUESTION_FRAMES
  if not path.exists():
    return None
  parts = split.split("+")
  with path.open("rb") as f, np.load(f) as z:
    if not set(parts) <= set(z.files):
      return None
    return np.concatenate([np.asarray(z[part]) for part in parts])


def make_speech_dataset(source: Any, transform: SpeechTransform, *, batch_size: int, seed: int,
                        shuffle: bool = True, num_epochs: Optional[int] = None,
                        shard: Optional[grain.sharding.ShardOptions] = None,
                        question_frames: Optional[np.ndarray] = None,
                        group_window: int = 0,
                        companion: Optional[Callable[[int], Mapping[str, np.ndarray]]] = None
                        ) -> grain.IterDataset:
  """Per-host grain pipeline of padded speech batches (keys in the module doc).

  `source` must yield records with an `index` (see `IndexedSource`). Iterate
  with `iter(...)`; the iterator's `get_state`/`set_state` resume exactly.
  question_frames + group_window > 0: batches of similar question length
  (`length_grouping`), padded to their own `mel_buckets` entry. companion: more arrays per
  stream position (`loader.make_dataset`).
  Calls `limit_blas_threads()` (process-wide).
  """
  limit_blas_threads()
  buckets = transform.batch_config.mel_buckets
  return loader.make_dataset(
      source, transform, batch_size=batch_size, seed=seed, shuffle=shuffle,
      num_epochs=num_epochs, shard=shard,
      batch_fn=lambda examples: pad_batch(examples, buckets),
      lengths=question_frames, group_window=group_window, companion=companion)
