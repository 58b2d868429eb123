"""Speech data: embedded spoken-QA corpus (or a JSONL manifest), tokenizers, speech units.

  python -m launch.prepare_data --config=configs/data.py:tiny --out=data
  python -m launch.prepare_data --config=configs/data.py:small --out=data_small
  python -m launch.prepare_data --config=configs/data.py:small,scale=8 --out=...  # ~tens of hours
  python -m launch.prepare_data --config=configs/data.py:tiny \
      --config.corpus.manifest.train=/data/train.jsonl --config.corpus.manifest.test=... --out=...

Presets: `tiny` (800 train questions, 50 each for `test`, `heldout` and `unseen_voices`;
`make demo` builds it with `--config.corpus.num_train=8000`), `small` (4000 and 250 each).
`scale=N` multiplies the number of examples (one example is ~4.1 s of question + answer audio), so
`small,scale=8` is ~40 hours. espeak-ng synthesis measured 77-273x real time per
process on a shared 2-core machine (1.3-4.5 hours of audio per minute); the
whole build (synthesis + validation + ArrayRecord writing) is slower, see the
summary.json that prepare_data writes.
"""

from __future__ import annotations

import ml_collections

from configs.common import pick

PRESETS = ("tiny", "small")

# Split sizes and fitting budget: one row per field, one column per preset (`scale=N`
# multiplies the split sizes).
SIZES = {
    "num_train":          {"tiny": 800, "small": 4000},
    "num_test":           {"tiny": 50, "small": 250},
    "num_heldout":        {"tiny": 50, "small": 250},  # held-out phrasings, unseen voices
    "num_unseen_voices":  {"tiny": 50, "small": 250},  # train phrasings, unseen voices
    # sentences read aloud by a train questioner and by the assistant (the Talker's TTS
    # pre-training, `spoken_qa` module doc); 0: no read split
    "num_read":           {"tiny": 0, "small": 0},
}
OTHER = {
    "num_heldout_speakers": {"tiny": 4, "small": 8},  # the unseen voices of heldout/unseen_voices
    # synthesis processes (tiny on 2 cores: 1 is faster, the main process validates,
    # computes mels and writes the records)
    "num_workers":        {"tiny": 1, "small": 2},
    "unit_fit_steps":     {"tiny": 200, "small": 500},  # k-means steps of the unit tokenizer
}


def _parse(arg: str | None) -> tuple[str, float]:
  """'small,scale=8' -> ('small', 8.0)."""
  preset, *opts = (arg or "tiny").split(",")
  if preset not in PRESETS:
    raise ValueError(f"unknown data preset {preset!r}; choose from {PRESETS}")
  scale = 1.0
  for opt in opts:
    key, _, value = opt.partition("=")
    if key != "scale":
      raise ValueError(f"unknown data config option {key!r} in {arg!r}; only scale=N")
    scale = float(value)
  return preset, scale


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  preset, scale = _parse(arg)
  sizes = {k: max(1, int(round(v * scale))) if v else 0 for k, v in pick(SIZES, preset).items()}
  other = pick(OTHER, preset)
  c = ml_collections.ConfigDict()
  c.preset = preset
  c.corpus = ml_collections.ConfigDict(dict(
      seed=0,
      **sizes,
      # Question speakers of train/test: many, so the ears learn to hear voices instead of
      # memorising a few (test on `unseen_voices`; README, Results). Synthesis costs the same.
      num_speakers=256,
      num_heldout_speakers=other["num_heldout_speakers"],
      # Every answer is spoken by this voice (`tts.Speaker.name`), never a question speaker's:
      # the unit tokenizer, the Talker and the vocoder learn one assistant voice.
      assistant_voice="en-us_r175_p50_g50",
      num_workers=other["num_workers"],
      # > 0: store question_mel and answer_mel (default mel params, this many bins) at build
      # time; the loader then skips the question's log-mel and the answer's STFT for its
      # speech units (benchmarks/loader_throughput.py measures it). 0: both on the fly.
      cache_mel_bins=80,
      # Longer question/answer audio is skipped at build time (summary.json counts it): the
      # CPU model presets read at most 600 mel frames (configs/common.py mel_buckets), and a
      # 6.00 s clip is 601 frames.
      max_seconds=5.99,
      # General English for the read split's word sequences, beside the train lexicon: the
      # commonest `num_read_words` whole words of a pretrained tokenizer (gguf:FILE | hf:DIR),
      # for ears in front of a pretrained Thinker. '': the train lexicon alone, so no read
      # word is one only held-out phrasings use.
      read_words_from="",
      num_read_words=2000,
      # A user corpus instead of the embedded one: split -> JSONL manifest path.
      manifest=ml_collections.ConfigDict(dict(train="", test="")),
  ))
  c.mel = ml_collections.ConfigDict(dict(sample_rate=16000, n_fft=400, hop_length=160, n_mels=80))
  c.text_tokenizer = ml_collections.ConfigDict(dict(
      path="",  # a sentencepiece .model or HF tokenizer dir to load instead of training
      vocab_size=512, model_type="unigram"))
  c.units = ml_collections.ConfigDict(dict(
      num_units=512,  # 6561 = CosyVoice2's vocabulary size
      frame_rate_hz=25,  # 25 or 50
      n_mels=80, num_steps=other["unit_fit_steps"], batch_frames=4096, seed=0,
      max_fit_frames=200_000))
  return c
