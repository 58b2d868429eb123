"""TFDS builders (ArrayRecord) for spoken QA: the embedded corpus and a user's JSONL manifest.

Why: one on-disk format for every speech source, random access for grain, and a
validation pass so bad audio never reaches training.

Features of every example (both builders; `as_data_source` returns numpy/bytes):
  id              Text    unique example id
  speaker         Text    the questioner's speaker id (espeak voice name for the embedded corpus)
  answer_speaker  Text    the voice of answer_audio: the one assistant voice (embedded corpus),
                          manifest `answer_speaker` or "" (manifest, LibriSpeech)
  template        Text    "<template>/<phrasing>" (embedded) or manifest `template`/"manifest"
  question_text   Text
  answer_text     Text
  question_audio  Tensor  float32 [samples], 16 kHz, mono (stored as raw bytes)
  answer_audio    Tensor  float32 [samples], 16 kHz, mono; [0] samples if the manifest has none
  question_mel    Tensor  float32 [frames, n_mels], only when built with `cache_mel_bins > 0`
  answer_mel      Tensor  float32 [frames, n_mels] of answer_audio ([0, n_mels] when it is
                          empty), likewise (version 1.1.0)
Speech units are not stored: `speech_loader` computes `answer_units` with the
fitted `UnitTokenizer` (the units are fitted on this dataset after it is built), from
`answer_mel` when its mel matches the tokenizer's (a nearest-centroid lookup), else from
the audio.

Validation (`check_audio`): every audio is checked and an example is skipped,
with its id/file and reason recorded in `builder.report`, when audio is
unreadable, empty, wrong-rate, too long, silent or clipped, a required field
is missing, or its id repeats an earlier one. Synthesis errors are caught per
example the same way. The counts are logged and written to
`<dataset dir>/build_report.json`.

Atomicity: TFDS writes into `<name>/<config>/incomplete.*_<version>` and renames
it to `<version>` only after every split (and our report) is written, so an
interrupted build never leaves a dataset that looks complete (`is_prepared()`
stays False) and a complete one always has its report.

LibriSpeech (speech recognition) is a supported catalog source: build it
yourself with `tfds build librispeech --manual_dir=...` (it needs the original
archives and Apache Beam; it cannot be downloaded here), then read it with
`LibriSpeechSource(data_dir, split)`, which maps each utterance to the same
features (question = the utterance, answer_text = its transcript, template
"librispeech/asr", answer_audio empty).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import multiprocessing
import os
from typing import Any, Iterator, Mapping

from absl import logging
import numpy as np
import soundfile as sf
import tensorflow_datasets as tfds

from data_pipelines import features, question_audio, spoken_qa, tts

SAMPLE_RATE = 16000
REPORT_FILE = "build_report.json"
REASONS = ("missing_field", "unreadable", "empty", "wrong_rate", "too_long", "silent",
           "clipped", "synthesis_error", "duplicate_id")


@dataclasses.dataclass(frozen=True)
class AudioLimits:
  """What counts as usable audio."""

  sample_rate: int = SAMPLE_RATE
  max_seconds: float = 30.0
  silence_rms: float = question_audio.SILENCE_RMS  # below this RMS the clip is silent
  clip_level: float = 0.999  # |x| at or above this is a clipped sample
  max_clipped_fraction: float = 0.001


class InvalidExample(Exception):
  """An example to skip; `reason` is one of REASONS, `detail` names the file/field."""

  def __init__(self, reason: str, detail: str):
    super().__init__(f"{reason}: {detail}")
    self.reason, self.detail = reason, detail

  def __reduce__(self):  # rebuilt from both fields when a synthesis worker returns it
    return InvalidExample, (self.reason, self.detail)


def check_audio(wav: np.ndarray, sample_rate: int, limits: AudioLimits, where: str) -> np.ndarray:
  """Returns `wav` as float32 mono [samples] or raises InvalidExample naming `where`."""
  if sample_rate != limits.sample_rate:
    raise InvalidExample("wrong_rate", f"{where}: {sample_rate} Hz, expected {limits.sample_rate}")
  wav = np.asarray(wav, np.float32)
  if wav.ndim == 2:
    wav = wav.mean(axis=1)  # [samples, channels] -> mono
  if wav.size == 0:
    raise InvalidExample("empty", f"{where}: no samples")
  seconds = wav.size / sample_rate
  if seconds > limits.max_seconds:
    raise InvalidExample("too_long", f"{where}: {seconds:.1f} s > {limits.max_seconds} s")
  if not np.all(np.isfinite(wav)):
    raise InvalidExample("unreadable", f"{where}: non-finite samples")
  rms = float(np.sqrt(np.mean(np.square(wav))))
  if rms < limits.silence_rms:
    raise InvalidExample("silent", f"{where}: RMS {rms:.2e} < {limits.silence_rms}")
  clipped = float(np.mean(np.abs(wav) >= limits.clip_level))
  if clipped > limits.max_clipped_fraction:
    raise InvalidExample("clipped", f"{where}: {clipped:.2%} of samples at full scale")
  return wav


def read_audio(path: str, limits: AudioLimits) -> np.ndarray:
  """Reads and checks an audio file; raises InvalidExample naming the file."""
  try:
    wav, rate = sf.read(path, dtype="float32", always_2d=False)
  except Exception as e:  # soundfile raises several types for missing/corrupt files
    raise InvalidExample("unreadable", f"{path}: {e}") from e
  return check_audio(wav, rate, limits, path)


def qa_features(cache_mel_bins: int) -> tfds.features.FeaturesDict:
  """The feature spec shared by every builder (see module doc)."""
  # Raw float32 buffers (BYTES encoding) serialise far faster than TFDS's float lists
  # (which took as long as synthesis); tfds.features.Audio cannot use that encoding.
  def audio():
    return tfds.features.Tensor(shape=(None,), dtype=np.float32,
                                encoding=tfds.features.Encoding.BYTES,
                                doc=f"mono waveform at {SAMPLE_RATE} Hz")
  spec = {name: tfds.features.Text() for name in
          ("id", "speaker", "answer_speaker", "template", "question_text", "answer_text")}
  spec.update(question_audio=audio(), answer_audio=audio())
  if cache_mel_bins:
    for name in ("question_mel", "answer_mel"):
      spec[name] = tfds.features.Tensor(shape=(None, cache_mel_bins), dtype=np.float32,
                                        encoding=tfds.features.Encoding.BYTES)
  return tfds.features.FeaturesDict(spec)


class BuildReport:
  """Kept/skipped counts per split, skip reasons and hours of audio."""

  def __init__(self) -> None:
    self.kept: collections.Counter = collections.Counter()
    self.seconds: collections.Counter = collections.Counter()
    self.skipped: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    self.skipped_examples: list[dict[str, str]] = []

  def keep(self, split: str, example: Mapping[str, Any]) -> None:
    self.kept[split] += 1
    samples = example["question_audio"].size + example["answer_audio"].size
    self.seconds[split] += samples / SAMPLE_RATE

  def skip(self, split: str, example_id: str, err: InvalidExample) -> None:
    logging.warning("skipping %s (%s): %s", example_id, err.reason, err.detail)
    self.skipped[split][err.reason] += 1
    self.skipped_examples.append(
        {"split": split, "id": example_id, "reason": err.reason, "detail": err.detail})

  def as_dict(self) -> dict[str, Any]:
    return {
        "kept": dict(self.kept),
        "skipped": {s: dict(c) for s, c in self.skipped.items()},
        "hours": {s: v / 3600 for s, v in self.seconds.items()},
        "total_hours": sum(self.seconds.values()) / 3600,
        "skipped_examples": self.skipped_examples,
    }


def _finish_example(ex: dict[str, Any], cache_mel_bins: int) -> dict[str, Any]:
  """Adds the cached log-mels of the question and answer audio (`cache_mel_bins` > 0)."""
  if cache_mel_bins:
    mel_config = features.MelConfig(n_mels=cache_mel_bins)
    ex["question_mel"] = features.log_mel(ex["question_audio"], mel_config)
    ex["answer_mel"] = (features.log_mel(ex["answer_audio"], mel_config)
                        if ex["answer_audio"].size else
                        np.zeros((0, cache_mel_bins), np.float32))
  return ex


RELEASE_NOTES = {"1.0.0": "question_mel cached", "1.1.0": "answer_mel cached too"}


class QABuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Shared parts: feature spec, report, validated example stream."""

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    self.report = BuildReport()

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=qa_features(self.builder_config.cache_mel_bins),
        description=self.__class__.__doc__)

  def _download_and_prepare(self, dl_manager, download_config) -> None:
    super()._download_and_prepare(dl_manager, download_config)
    # data_dir is still the incomplete directory here: the report is renamed with the data.
    with open(os.path.join(self.data_dir, REPORT_FILE), "w") as f:
      json.dump(self.report.as_dict(), f, indent=1)

  def _validated(self, split: str, results: Iterator[tuple[str, Any]]):
    """(id, example | InvalidExample) -> (id, example) for valid ones; records the rest."""
    seen: set[str] = set()
    for example_id, result in results:
      if not isinstance(result, InvalidExample) and example_id in seen:  # TFDS keys are unique
        result = InvalidExample("duplicate_id", f"{example_id} appears more than once")
      if isinstance(result, InvalidExample):
        self.report.skip(split, example_id, result)
      else:
        seen.add(example_id)
        self.report.keep(split, result)
        yield example_id, result


# ---------------------------------------------------------------- embedded corpus


@dataclasses.dataclass(eq=False)
class SpokenQAConfig(tfds.core.BuilderConfig):
  """Size and voices of the embedded corpus; `name` should encode them."""

  # (split, size); `spoken_qa.READ` adds sentences read aloud (`spoken_qa` module doc)
  num_examples: tuple[tuple[str, int], ...] = (("train", 800), ("test", 100), ("heldout", 100))
  seed: int = 0
  num_speakers: int = 24  # train/test question speakers
  num_heldout_speakers: int = 8  # extra question speakers, only for spoken_qa.UNSEEN_VOICE_SPLITS
  assistant_voice: str = tts.DEFAULT_SPEAKER.name  # `tts.Speaker.name` speaking every answer
  cache_mel_bins: int = 0  # > 0: also store question_mel with this many bins
  num_workers: int = 2  # synthesis processes
  limits: AudioLimits = AudioLimits()
  read_words: tuple[str, ...] = ()  # general English words the read split adds (spoken_qa)


def split_speakers(config: SpokenQAConfig, split: str) -> list[tts.Speaker]:
  """Question speakers: train/test share one pool; the unseen-voice splits (heldout,
  unseen_voices) use speakers never in it; never the assistant."""
  exclude = (config.assistant_voice,)
  if split in spoken_qa.UNSEEN_VOICE_SPLITS and config.num_heldout_speakers:
    return tts.speaker_pool(config.num_speakers + config.num_heldout_speakers,
                            config.seed, exclude)[config.num_speakers:]
  return tts.speaker_pool(config.num_speakers, config.seed, exclude)


def question_speaker(config: SpokenQAConfig, split: str, index: int,
                     voices_of: str | None = None) -> tuple[spoken_qa.QAText, tts.Speaker]:
  """Example `index` of `split` and its questioner, drawn from `voices_of`'s pool (default:
  the split's own, as the corpus stores it). The speaker is the generator's last draw, so
  another pool changes the voice, never the text (e.g. test texts in unseen voices)."""
  speakers = split_speakers(config, voices_of or split)
  qa = spoken_qa.corpus_example(config.seed, split, index, len(speakers), config.num_examples,
                                config.read_words)
  return qa, speakers[qa.speaker_index]


def synthesize_example(config: SpokenQAConfig, split: str, index: int) -> tuple[str, Any]:
  """(id, example dict) for example `index`, or (id, InvalidExample). Runs in a worker.

  The question is spoken by one of the split's speakers, the answer by the assistant voice
  (in the read split both say the same sentence).
  """
  qa, speaker = question_speaker(config, split, index)
  assistant = tts.Speaker.from_name(config.assistant_voice)
  try:
    question = tts.synthesize(qa.question, speaker)
    answer = tts.synthesize(qa.answer, assistant)
  except (RuntimeError, ValueError) as e:
    return qa.id, InvalidExample("synthesis_error", f"{qa.id}: {e}")
  try:
    ex = {
        "id": qa.id, "speaker": speaker.name, "answer_speaker": assistant.name,
        "template": qa.template,
        "question_text": qa.question, "answer_text": qa.answer,
        "question_audio": check_audio(question, SAMPLE_RATE, config.limits, f"{qa.id}/question"),
        "answer_audio": check_audio(answer, SAMPLE_RATE, config.limits, f"{qa.id}/answer"),
    }
  except InvalidExample as e:
    return qa.id, e
  return qa.id, _finish_example(ex, config.cache_mel_bins)


def _synthesize_star(args):
  return synthesize_example(*args)


class SpokenQA(QABuilder):
  """Embedded spoken QA corpus: templated questions in many espeak-ng voices, answers in one."""

  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = RELEASE_NOTES
  BUILDER_CONFIGS = [SpokenQAConfig(name="default")]

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download
    return {split: self._generate_examples(split, n)
            for split, n in self.builder_config.num_examples if n > 0}

  def _generate_examples(self, split: str, num_examples: int):
    config = self.builder_config
    jobs = [(config, split, i) for i in range(num_examples)]
    if config.num_workers <= 1:
      yield from self._validated(split, map(_synthesize_star, jobs))
      return
    # spawn: workers must not inherit TensorFlow's threads from this process.
    with multiprocessing.get_context("spawn").Pool(config.num_workers) as pool:
      yield from self._validated(split, pool.imap(_synthesize_star, jobs, chunksize=8))


# ---------------------------------------------------------------- JSONL manifest


@dataclasses.dataclass(eq=False)
class ManifestConfig(tfds.core.BuilderConfig):
  """A user corpus: `splits` maps split name -> JSONL manifest path.

  Each line: {"question_audio": path, "question_text": str, "answer_text": str,
  optional "answer_audio": path, "id", "speaker", "answer_speaker", "template"}. Relative audio
  paths are resolved against the manifest's directory. Audio must be 16 kHz.
  """

  splits: tuple[tuple[str, str], ...] = ()
  cache_mel_bins: int = 0
  limits: AudioLimits = AudioLimits()


REQUIRED_FIELDS = ("question_audio", "question_text", "answer_text")


def manifest_example(line: str, line_no: int, manifest: str,
                     config: ManifestConfig) -> tuple[str, Any]:
  """Parses and validates one manifest line -> (id, example) or (id, InvalidExample)."""
  where = f"{manifest}:{line_no}"
  try:
    record = json.loads(line)
  except json.JSONDecodeError as e:
    return where, InvalidExample("unreadable", f"{where}: bad JSON ({e})")
  example_id = str(record.get("id", where)) if isinstance(record, dict) else where
  try:
    if not isinstance(record, dict):
      raise InvalidExample("unreadable", f"{where}: not a JSON object")
    missing = [f for f in REQUIRED_FIELDS if not record.get(f)]
    if missing:
      raise InvalidExample("missing_field", f"{where}: missing {', '.join(missing)}")
    base = os.path.dirname(os.path.abspath(manifest))
    def path(p):
      return os.path.join(base, p)
    ex = {
        "id": example_id, "speaker": str(record.get("speaker", "")),
        "answer_speaker": str(record.get("answer_speaker", "")),
        "template": str(record.get("template", "manifest")),
        "question_text": str(record["question_text"]), "answer_text": str(record["answer_text"]),
        "question_audio": read_audio(path(record["question_audio"]), config.limits),
        "answer_audio": (read_audio(path(record["answer_audio"]), config.limits)
                         if record.get("answer_audio") else np.zeros((0,), np.float32)),
    }
  except InvalidExample as e:
    return example_id, e
  return example_id, _finish_example(ex, config.cache_mel_bins)


class SpokenQAManifest(QABuilder):
  """A user's spoken QA corpus given as JSONL manifests (one per split)."""

  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = RELEASE_NOTES
  BUILDER_CONFIGS = [ManifestConfig(name="default")]

  def _split_generators(self, dl_manager):
    del dl_manager
    if not self.builder_config.splits:
      raise ValueError("ManifestConfig.splits is empty: give split -> manifest.jsonl")
    for split, manifest in self.builder_config.splits:
      if not os.path.exists(manifest):
        raise FileNotFoundError(f"manifest for split {split!r} not found: {manifest}")
    return {split: self._generate_examples(split, manifest)
            for split, manifest in self.builder_config.splits}

  def _generate_examples(self, split: str, manifest: str):
    with open(manifest, encoding="utf-8") as f:
      lines = [(i + 1, line) for i, line in enumerate(f) if line.strip()]
    results = (manifest_example(line, no, manifest, self.builder_config) for no, line in lines)
    yield from self._validated(split, results)


# ---------------------------------------------------------------- building


def build(builder: QABuilder) -> dict[str, Any]:
  """Prepares `builder` as ArrayRecord (atomically) and returns its report.

  An existing complete dataset is reused (its saved report is returned).
  """
  if not builder.is_prepared():
    builder.download_and_prepare(
        file_format="array_record",
        download_config=tfds.download.DownloadConfig(try_download_gcs=False))
  with open(os.path.join(builder.data_dir, REPORT_FILE)) as f:
    report = json.load(f)
  for split, kept in report["kept"].items():
    logging.info("split %s: kept %d, skipped %s", split, kept, report["skipped"].get(split, {}))
  return report


# ---------------------------------------------------------------- LibriSpeech


def librispeech_to_qa(record: Mapping[str, Any]) -> dict[str, Any]:
  """A TFDS `librispeech` record (int16 `speech`) -> our example features (ASR task)."""
  text = record["text"].decode() if isinstance(record["text"], bytes) else str(record["text"])
  rid = record["id"].decode() if isinstance(record["id"], bytes) else str(record["id"])
  return {
      "id": rid, "speaker": str(record["speaker_id"]), "answer_speaker": "",
      "template": "librispeech/asr",
      "question_text": text.lower(), "answer_text": text.lower(),
      "question_audio": np.asarray(record["speech"], np.float32) / 32768.0,  # int16 -> [-1, 1]
      "answer_audio": np.zeros((0,), np.float32),
  }


class LibriSpeechSource:
  """Random-access view of a locally built TFDS `librispeech` split in our features."""

  def __init__(self, data_dir: str, split: str):
    self._source = tfds.data_source("librispeech", split=split, data_dir=data_dir,
                                    download=False)

  def __len__(self) -> int:
    return len(self._source)

  def __getitem__(self, index: int) -> dict[str, Any]:
    return librispeech_to_qa(self._source[index])
