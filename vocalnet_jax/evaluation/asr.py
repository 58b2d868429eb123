"""Independent offline ASR (pocketsphinx, US-English model shipped in the pip package) and WER.

Speech intelligibility of generated audio is scored by an off-the-shelf recogniser that
this project never trains, so a low WER cannot come from the model overfitting its own
judge. pocketsphinx runs on CPU with no download: its acoustic model, dictionary and
language model live inside the wheel.
"""
from __future__ import annotations

import re
import tempfile
from typing import Optional, Sequence

import jiwer
import numpy as np

SAMPLE_RATE = 16000


_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen "
         "fourteen fifteen sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_to_words(n: int) -> str:
  """0 <= n < 10**6 -> English words as a TTS speaks them ("one hundred twenty three")."""
  if not 0 <= n < 10**6:
    raise ValueError(f"number must be in [0, 1e6), got {n}")
  if n < 20:
    return _ONES[n]
  if n < 100:
    return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
  if n < 1000:
    head = _ONES[n // 100] + " hundred"
    return head if n % 100 == 0 else head + " " + number_to_words(n % 100)
  head = number_to_words(n // 1000) + " thousand"
  return head if n % 1000 == 0 else head + " " + number_to_words(n % 1000)


def normalize_text(text: str) -> str:
  """Lower-case words for fair WER: digits spelled out, punctuation and "and" dropped.

  "and" is dropped because TTS voices differ on "one hundred (and) five".
  """
  text = re.sub(r"\d+", lambda m: " " + number_to_words(int(m.group())) + " ", text.lower())
  words = re.sub(r"[^a-z' ]+", " ", text).split()
  return " ".join(w for w in words if w != "and")


def _check_wave(wave: np.ndarray, sample_rate: int) -> np.ndarray:
  wave = np.asarray(wave)
  if sample_rate != SAMPLE_RATE:
    raise ValueError(f"sample_rate must be {SAMPLE_RATE} (pocketsphinx en-us model), "
                     f"got {sample_rate}")
  if wave.ndim != 1:
    raise ValueError(f"wave must be 1-D mono samples, got shape {wave.shape}")
  if not np.issubdtype(wave.dtype, np.floating):
    raise TypeError(f"wave must be float samples in [-1, 1], got dtype {wave.dtype}")
  return wave


class PocketSphinxASR:
  """Transcribes 16 kHz mono float waveforms with pocketsphinx's shipped en-us models.

  With `domain_texts`, the generic 3-gram language model is replaced by a 3-gram built
  from those sentences (pocketsphinx's own ARPA builder); the acoustic model stays the
  shipped one. Use training-split texts only, never the references being scored.
  """

  def __init__(self, domain_texts: Optional[Sequence[str]] = None):
    # Imported here so modules that only need `wer` do not load the recogniser.
    import pocketsphinx  # pylint: disable=import-outside-toplevel
    from pocketsphinx import lm as ps_lm  # pylint: disable=import-outside-toplevel
    if domain_texts is None:
      self._decoder = pocketsphinx.Decoder(samprate=SAMPLE_RATE, loglevel="FATAL")
      return
    sentences = sorted({normalize_text(t) for t in domain_texts} - {""})
    if not sentences:
      raise ValueError("domain_texts has no words after normalisation")
    arpa = ps_lm.ArpaBoLM(text="\n".join(sentences), add_start=True)
    arpa.compute()
    with tempfile.NamedTemporaryFile("w", suffix=".arpa") as f:
      arpa.write(f)
      f.flush()
      self._decoder = pocketsphinx.Decoder(samprate=SAMPLE_RATE, loglevel="FATAL", lm=f.name)

  def transcribe(self, wave: np.ndarray, sample_rate: int = SAMPLE_RATE) -> str:
    """wave: [samples] float in [-1, 1] -> normalised lower-case transcript."""
    wave = _check_wave(wave, sample_rate)
    pcm = (np.clip(wave, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
    self._decoder.start_utt()
    self._decoder.process_raw(pcm, no_search=False, full_utt=True)
    self._decoder.end_utt()
    hyp = self._decoder.hyp()
    return normalize_text(hyp.hypstr if hyp is not None else "")


def wer(references: Sequence[str], hypotheses: Sequence[str]) -> float:
  """Corpus word error rate (total edits / total reference words) after `normalize_text`."""
  if len(references) != len(hypotheses):
    raise ValueError(f"references ({len(references)}) and hypotheses ({len(hypotheses)}) "
                     "must have the same length")
  refs = [normalize_text(r) for r in references]
  if not any(refs):
    raise ValueError("references are all empty after normalisation")
  hyps = [normalize_text(h) for h in hypotheses]
  # jiwer rejects empty references; score such pairs as pure insertions ourselves.
  pairs = [(r, h) for r, h in zip(refs, hyps) if r]
  insertions = sum(len(h.split()) for r, h in zip(refs, hyps) if not r)
  out = jiwer.process_words([r for r, _ in pairs], [h for _, h in pairs])
  edits = out.substitutions + out.deletions + out.insertions + insertions
  return edits / sum(len(r.split()) for r, _ in pairs)


def wer_of_waves(asr: PocketSphinxASR, references: Sequence[str],
                 waves: dict[str, Sequence[np.ndarray]]) -> dict[str, float]:
  """WER of each named set of waveforms (one per reference text) against the references."""
  return {name: wer(references, [asr.transcribe(w) for w in ws]) for name, ws in waves.items()}
