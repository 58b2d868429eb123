"""Scores of spoken answers: word errors of the ASR transcript, DTW log-mel distance, and
their aggregation per decoder setting (the `launch.evaluate` speech mode's math).

Pure functions over texts, waveforms and per-example records, so the launcher only
decodes, transcribes and writes files; `read_labelled_run` reads one run's eval.json back for
the tables built from several runs.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Optional, Sequence

import jiwer
import librosa
import numpy as np
from scipy.spatial.distance import cdist

from vocalnet_jax.evaluation import asr, text_metrics
from vocalnet_jax.speech import mel_inversion


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
  """(word edits, reference words) after `asr.normalize_text`; an empty reference counts
  every hypothesis word as an insertion (as `asr.wer` does)."""
  ref, hyp = asr.normalize_text(reference), asr.normalize_text(hypothesis)
  if not ref:
    return len(hyp.split()), 0
  out = jiwer.process_words(ref, hyp)
  return out.substitutions + out.deletions + out.insertions, len(ref.split())


def corpus_wer(errors: Sequence[tuple[int, int]]) -> Optional[float]:
  """Total edits over total reference words of (edits, words) pairs; None without words."""
  words = sum(w for _, w in errors)
  return sum(e for e, _ in errors) / words if words else None


def dtw_mel_l1(mel_a: np.ndarray, mel_b: np.ndarray) -> float:
  """Mean per-bin L1 between two log-mels [frames_a, n_mels], [frames_b, n_mels] along
  their DTW alignment.

  Symmetric DTW (diagonal steps weigh 2, horizontal/vertical 1), normalised by
  frames_a + frames_b - 1: every path then has the same total weight, so the value is
  a weighted mean of aligned-frame costs, equal for (a, b) and (b, a), and 0 only when
  each frame aligns to an identical one.
  """
  if mel_a.ndim != 2 or mel_b.ndim != 2 or mel_a.shape[1] != mel_b.shape[1]:
    raise ValueError(f"mels must be [frames, n_mels] with equal n_mels, got {mel_a.shape} "
                     f"and {mel_b.shape}")
  if not (len(mel_a) and len(mel_b)):
    raise ValueError("mels must have at least one frame each")
  cost = cdist(mel_a, mel_b, "cityblock") / mel_a.shape[1]  # [frames_a, frames_b]
  acc = librosa.sequence.dtw(C=cost, step_sizes_sigma=np.array([[1, 1], [0, 1], [1, 0]]),
                             weights_mul=np.array([2.0, 1.0, 1.0]), backtrack=False)
  return float(acc[-1, -1] / (len(mel_a) + len(mel_b) - 1))


def mel_distance(wave_a: np.ndarray, wave_b: np.ndarray,
                 cfg: mel_inversion.MelConfig) -> Optional[float]:
  """`dtw_mel_l1` of two waveforms' natural-log mels (the vocoder's analysis `cfg`);
  None when either is empty."""
  if not (np.size(wave_a) and np.size(wave_b)):
    return None
  return dtw_mel_l1(mel_inversion.log_mel(wave_a, cfg), mel_inversion.log_mel(wave_b, cfg))


@dataclasses.dataclass
class SpokenAnswer:
  """One spoken answer and its scores."""
  index: int  # example index in the split
  question: str
  reference: str  # the corpus's answer text
  printed: str  # the Thinker's answer text
  transcript: str  # the ASR's transcript of the spoken answer ("" without audio)
  word_errors: int  # ASR transcript vs the printed text
  words: int  # normalised words of the printed text
  mel_distance: Optional[float]  # `dtw_mel_l1` to the assistant voice speaking `printed`
  thinker_nfe: int
  talker_nfe: int
  first_text_s: float  # from the end of the question audio
  first_audio_s: Optional[float]  # None: no audio
  total_s: float
  audio_s: float  # length of the spoken answer
  template: str = ""  # the corpus's "<template>/<phrasing>" ("" when it has none)
  seen_in_train: Optional[bool] = None  # the question's text is also a train question
  chosen: str = ""  # the forced-choice judge's pick among the candidate texts
  identified: Optional[bool] = None  # `chosen` is the printed text (None: not judged)


def _mean(values: Sequence[Optional[float]]) -> Optional[float]:
  present = [v for v in values if v is not None]
  return float(np.mean(present)) if present else None


def summarize(answers: Sequence[SpokenAnswer]) -> dict[str, Any]:
  """Aggregates of one decoder setting: exact match, corpus WER of the spoken answers
  against their printed text, the share the forced-choice judge identifies as their
  printed text, mean mel distance (answers with audio and text), mean NFE and latencies
  (first audio: answers with audio)."""
  return {
      "num_examples": len(answers),
      "exact_match": text_metrics.exact_match([a.printed for a in answers],
                                              [a.reference for a in answers]),
      "wer_vs_printed": corpus_wer([(a.word_errors, a.words) for a in answers]),
      "identified": identified_rate([a.identified for a in answers]),
      "mel_distance": _mean([a.mel_distance for a in answers]),
      "num_with_audio": sum(a.first_audio_s is not None for a in answers),
      "thinker_nfe": _mean([a.thinker_nfe for a in answers]),
      "talker_nfe": _mean([a.talker_nfe for a in answers]),
      "first_text_s": _mean([a.first_text_s for a in answers]),
      "first_audio_s": _mean([a.first_audio_s for a in answers]),
      "total_s": _mean([a.total_s for a in answers]),
      "audio_s": _mean([a.audio_s for a in answers]),
      **exact_match_breakdown(answers),
  }


def exact_match_breakdown(answers: Sequence[SpokenAnswer]) -> dict[str, Any]:
  """Exact match per template, and on questions whose text is also a train question vs
  new ones (a templated corpus repeats short questions across splits: the ears then hear
  a new utterance of a known question, not a new question)."""
  groups: dict[str, list[SpokenAnswer]] = {}
  for a in answers:
    groups.setdefault(a.template.split("/")[0], []).append(a)
  seen = {key: [a for a in answers if a.seen_in_train is value]
          for key, value in (("seen", True), ("new", False))}
  match = lambda group: text_metrics.exact_match([a.printed for a in group],  # noqa: E731
                                                 [a.reference for a in group])
  return {
      "exact_match_by_template": {name: {"n": len(g), "exact_match": match(g)}
                                  for name, g in sorted(groups.items())},
      **{f"exact_match_{key}": {"n": len(g), "exact_match": match(g) if g else None}
         for key, g in seen.items()},
  }


def identified_rate(identified: Sequence[Optional[bool]]) -> Optional[float]:
  """Share of the judged answers (not None) that the forced choice identified."""
  return _mean([None if i is None else float(i) for i in identified])


def summarize_floor(rows: Sequence[dict[str, Any]]) -> dict[str, Optional[float]]:
  """Corpus WER, forced-choice identification and mean mel distance of reference audio
  rows with `word_errors`, `words`, `identified` and `mel_distance` (the judges' and the
  vocoder's floors)."""
  return {"wer": corpus_wer([(r["word_errors"], r["words"]) for r in rows]),
          "identified": identified_rate([r.get("identified") for r in rows]),
          "mel_distance": _mean([r["mel_distance"] for r in rows])}


def _cell(value: Optional[float], width: int, digits: int) -> str:
  return f"{'-':>{width}}" if value is None else f"{value:>{width}.{digits}f}"


def format_table(settings: dict[str, dict[str, Any]], floors: dict[str, dict[str, Any]]) -> str:
  """Plain-text table: one row per decoder setting (its `summarize`), then the floors
  (`summarize_floor`: WER, identified and mel distance only)."""
  head = (f"{'setting':<22}{'EM':>6}{'WER':>7}{'ID':>6}{'mel L1':>8}{'NFE thk':>9}{'NFE tlk':>9}"
          f"{'1st text s':>11}{'1st audio s':>12}{'total s':>9}")
  lines = [head, "-" * len(head)]
  for name, s in settings.items():
    lines.append(f"{name:<22}{_cell(s['exact_match'], 6, 2)}{_cell(s['wer_vs_printed'], 7, 2)}"
                 f"{_cell(s.get('identified'), 6, 2)}{_cell(s['mel_distance'], 8, 2)}"
                 f"{_cell(s['thinker_nfe'], 9, 1)}"
                 f"{_cell(s['talker_nfe'], 9, 1)}{_cell(s['first_text_s'], 11, 3)}"
                 f"{_cell(s['first_audio_s'], 12, 3)}{_cell(s['total_s'], 9, 3)}")
  for name, f in floors.items():
    lines.append(f"{name:<22}{'':>6}{_cell(f['wer'], 7, 2)}{_cell(f.get('identified'), 6, 2)}"
                 f"{_cell(f['mel_distance'], 8, 2)}")
  return "\n".join(lines)


def read_labelled_run(label_dir: str) -> tuple[str, str, dict[str, Any]]:
  """`LABEL=DIR` of a `launch.evaluate` speech run -> (label, DIR, its eval.json);
  ValueError naming the argument when it is malformed or the file is missing."""
  label, sep, directory = label_dir.rpartition("=")
  if not sep or not label:
    raise ValueError(f"--eval={label_dir!r} is not LABEL=DIR")
  path = os.path.join(directory, "eval.json")
  if not os.path.isfile(path):
    raise ValueError(f"--eval={label_dir!r}: {path} is missing (run launch.evaluate first)")
  with open(path) as f:
    return label, directory, json.load(f)


ESPEAK_ERRORS = "espeak_word_errors"  # example key: the judge on espeak saying the printed text


def _judged(examples: Sequence[dict[str, Any]]) -> dict[str, Any]:
  """Count, WER against the printed text and share identified of some eval.json examples,
  and the judge's WER on espeak saying the same texts where the examples carry it (the
  floor of exactly these sentences: `ESPEAK_ERRORS` = (word errors, words))."""
  judged = {"n": len(examples),
            "wer_vs_printed": corpus_wer([(e["word_errors"], e["words"]) for e in examples]),
            "identified": identified_rate([e.get("identified") for e in examples])}
  if examples and all(ESPEAK_ERRORS in e for e in examples):
    judged["espeak_wer_vs_printed"] = corpus_wer([tuple(e[ESPEAK_ERRORS]) for e in examples])
  return judged


def printed_sentence_rows(label: str, run: dict[str, Any],
                          train_answers: set[str]) -> list[dict[str, Any]]:
  """Per decoder setting of an eval.json `run`: the share of answers whose printed text is a
  train answer sentence, and the judges on those and on the rest (a Talker says sentences
  it trained on better than new ones, so two Thinkers printing different shares of new
  sentences give their Talkers different tasks)."""
  rows = []
  for name, setting in run["settings"].items():
    examples = setting["examples"]
    seen = [e for e in examples if e["printed"] in train_answers]
    new = [e for e in examples if e["printed"] not in train_answers]
    rows.append({"label": label, "setting": name, "split": run["split"],
                 "printed_train_sentence": len(seen) / len(examples),
                 "train_sentence": _judged(seen), "new_sentence": _judged(new),
                 "all": _judged(examples)})
  return rows
