"""Flow-matching vocoder: speech units -> log-mel (OT-CFM, ODE) -> waveform (Griffin-Lim).

  python -m launch.prepare_data --config=configs/data.py:tiny --out=/tmp/data
  python -m launch.train_vocoder --config=configs/vocoder.py:tiny --data=/tmp/data --workdir=/tmp/voc
  python -m launch.train_vocoder --config=configs/vocoder.py:small --data=... --workdir=...

`tiny` (0.86M params with 512 units, 800 steps) trains in about 4-8 minutes on a
2-core CPU (measured: 475 s while other jobs shared the cores; CFM loss 1.9 -> 0.58).
`small` (10M params, about 30x the compute per step, 20k steps) is meant for one
accelerator; it has not been timed here. The token vocabulary and unit frame rate are
read from the data (`units.vocab_size`, `units.frame_rate_hz`); any rate that divides
the mel frame rate works (25 Hz -> x4, 50 Hz -> x2; CosyVoice2 tokens: 6561 codes at
25 Hz). The launcher writes eval.json with mel L1, log-spectral distance, ASR WER
(original / Griffin-Lim of the reference mel / vocoder), real-time factor per chunk and
the streaming-vs-one-shot difference.

Measured on the 50 held-out answers of `configs/data.py:tiny` (512 units at 25 Hz, 400
train answers, shared 2-core CPU; pocketsphinx with a train-answer 3-gram LM):
                          mel L1  LSD dB  WER one-shot / stream  (original 0.62, GL of ref 0.49)
  tiny, 800 steps          0.85    9.2    0.72 / 0.73
  tiny, 2500 steps         0.61    6.6    0.66 / 0.62   (--config.train.steps=2500, 19 min)
Streamed (15-token chunks) vs one-shot: mel L1 0.03-0.04, LSD 0.4 dB (mel), 1.6-1.8 dB
(waveform, Griffin-Lim per piece). Real-time factor: one-shot 0.24-0.40 (flow 0.05-0.09,
Griffin-Lim the rest), per streamed 0.6 s chunk 0.50-0.79 mean.
"""
from __future__ import annotations

import ml_collections

PRESETS = ("tiny", "small")

# name: (embed_dim, encoder_layers, estimator_layers, num_heads, mlp_dim)
_SHAPES = {"tiny": (96, 2, 3, 4, 256), "small": (256, 3, 6, 8, 768)}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  preset = arg or "tiny"
  if preset not in PRESETS:
    raise ValueError(f"unknown vocoder preset {preset!r}; choose from {PRESETS}")
  embed, enc_layers, est_layers, heads, mlp = _SHAPES[preset]
  tiny = preset == "tiny"
  c = ml_collections.ConfigDict()
  c.preset = preset
  c.seed = 0
  # Filled from the data by the launcher; kept in the checkpoint's config.
  c.units = ml_collections.ConfigDict(dict(vocab_size=-1, frame_rate_hz=-1.0))
  c.mel = ml_collections.ConfigDict(dict(
      sample_rate=16000, n_fft=1024, win_length=640, hop_length=160, n_mels=80,
      fmin=0.0, fmax=8000.0))
  c.model = ml_collections.ConfigDict(dict(
      embed_dim=embed, encoder_layers=enc_layers, estimator_layers=est_layers, num_heads=heads,
      mlp_dim=mlp, token_window=8, frame_window=32, kernel_size=5))
  c.flow = ml_collections.ConfigDict(dict(
      sigma_min=1e-4, cfg_dropout=0.2, prompt_prob=0.5, max_prompt_frac=0.3,
      t_schedule="cosine"))
  c.sample = ml_collections.ConfigDict(dict(
      num_steps=10, method="euler", t_schedule="cosine", cfg_scale=0.5, seed=0,
      pad_tokens=16))  # one-shot inputs are padded to a multiple of pad_tokens (fewer compiles)
  c.stream = ml_collections.ConfigDict(dict(
      chunk_tokens=15,  # one Talker block
      left_context_tokens=8, lookahead_tokens=3,
      crossfade_frames=4,  # mel frames cross-faded at each chunk joint
      gl_context_frames=16,  # already-emitted mel frames re-inverted for phase continuity
      prompt_left_context=True))  # give emitted mel as the prompt over the left context
  c.inversion = ml_collections.ConfigDict(dict(kind="griffin_lim", n_iter=32))
  c.train = ml_collections.ConfigDict(dict(
      steps=800 if tiny else 20000, batch_size=8 if tiny else 32,
      segment_tokens=32 if tiny else 100, learning_rate=2e-3 if tiny else 1e-3,
      warmup_steps=100 if tiny else 1000, weight_decay=0.01, grad_clip=1.0,
      log_every=100 if tiny else 500))
  c.data = ml_collections.ConfigDict(dict(
      max_train_utterances=400 if tiny else -1))  # answers with audio; -1: all
  c.eval = ml_collections.ConfigDict(dict(
      num_examples=12 if tiny else 50, split="heldout", num_wavs=3,
      asr=True, domain_lm=True))  # pocketsphinx LM: 3-gram of train answers, else generic
  return c
