"""Flow-matching vocoder: speech units -> log-mel (OT-CFM, ODE) -> waveform (Griffin-Lim/Vocos).

  python -m launch.prepare_data --config=configs/data.py:tiny --out=/tmp/data
  python -m launch.train_vocoder --config=configs/vocoder.py:tiny --data=/tmp/data \
      --workdir=/tmp/voc
  python -m launch.train_vocoder --config=configs/vocoder.py:small --data=... --workdir=...

`tiny` trains on a 2-core CPU in minutes; `small` is meant for one accelerator. The
token vocabulary and unit frame rate are read from the data (`units.vocab_size`,
`units.frame_rate_hz`); any rate that divides the mel frame rate works (25 Hz -> x4,
50 Hz -> x2; CosyVoice2 tokens: 6561 codes at 25 Hz). The launcher writes eval.json with
mel L1, log-spectral distance, ASR WER (original / Griffin-Lim of the reference mel /
vocoder), real-time factor per chunk and the streaming-vs-one-shot difference; measured
numbers are in README.md and benchmarks/results/.

mel -> waveform (`inversion.kind`): 'vocos' (default; a ConvNeXt + iSTFT generator,
`neural`, trained after the flow model by the same launcher and saved with it;
`--init_flow=DIR` trains only it behind an existing flow checkpoint) or 'griffin_lim'
(phase recovery, nothing to train):

  python -m launch.train_vocoder --config=configs/vocoder.py:tiny --data=DIR --workdir=W \
      [--init_flow=OLD/vocoder] [--compare_out=benchmarks/results/X.json]
  python -m launch.train_vocoder ... --config.inversion.kind=griffin_lim
"""
from __future__ import annotations

import ml_collections

from configs.common import pick

PRESETS = ("tiny", "small")

# One row per field, one column per preset.
FLOW_MODEL = {  # the flow-matching estimator (units -> mel)
    "embed_dim":       {"tiny": 96, "small": 256},
    "encoder_layers":  {"tiny": 2, "small": 3},
    "estimator_layers": {"tiny": 3, "small": 6},
    "num_heads":       {"tiny": 4, "small": 8},
    "mlp_dim":         {"tiny": 256, "small": 768},
}
FLOW_TRAIN = {
    "steps":           {"tiny": 800, "small": 20000},
    "batch_size":      {"tiny": 8, "small": 32},
    "segment_tokens":  {"tiny": 32, "small": 100},
    "learning_rate":   {"tiny": 2e-3, "small": 1e-3},
    "warmup_steps":    {"tiny": 100, "small": 1000},
    "log_every":       {"tiny": 100, "small": 500},
}
NEURAL_MODEL = {  # the Vocos generator (mel -> waveform)
    "dim":             {"tiny": 128, "small": 384},
    "intermediate_dim": {"tiny": 384, "small": 1152},
    "num_blocks":      {"tiny": 4, "small": 8},
}
NEURAL_TRAIN = {
    "steps":           {"tiny": 6000, "small": 200000},
    "batch_size":      {"tiny": 8, "small": 16},
    "segment_frames":  {"tiny": 32, "small": 64},
    "learning_rate":   {"tiny": 1e-3, "small": 5e-4},
    "warmup_steps":    {"tiny": 100, "small": 1000},
    "log_every":       {"tiny": 250, "small": 1000},
}
OTHER = {
    "disc_learning_rate": {"tiny": 1e-3, "small": 2e-4},  # the adversarial discriminator's
    "max_train_utterances": {"tiny": 400, "small": -1},  # answers with audio; -1: all
    "eval_examples":   {"tiny": 12, "small": 50},
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  preset = arg or "tiny"
  if preset not in PRESETS:
    raise ValueError(f"unknown vocoder preset {preset!r}; choose from {PRESETS}")
  other = pick(OTHER, preset)
  c = ml_collections.ConfigDict()
  c.preset = preset
  c.seed = 0
  # Filled from the data by the launcher; kept in the checkpoint's config.
  c.units = ml_collections.ConfigDict(dict(vocab_size=-1, frame_rate_hz=-1.0))
  c.mel = ml_collections.ConfigDict(dict(
      sample_rate=16000, n_fft=1024, win_length=640, hop_length=160, n_mels=80,
      fmin=0.0, fmax=8000.0))
  c.model = ml_collections.ConfigDict(dict(
      **pick(FLOW_MODEL, preset), token_window=8, frame_window=32, kernel_size=5))
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
  # mel -> waveform: "vocos" (trained after the flow, `neural`) or "griffin_lim" (n_iter).
  c.inversion = ml_collections.ConfigDict(dict(kind="vocos", n_iter=32))
  c.neural = ml_collections.ConfigDict(dict(
      model=dict(**pick(NEURAL_MODEL, preset), kernel_size=7),
      pad_frames=64,  # inputs padded (masked) to a multiple: bounded recompiles
      train=dict(**pick(NEURAL_TRAIN, preset), weight_decay=0.01, grad_clip=1.0),
      # (n_fft, hop, win) of the multi-resolution STFT loss, in samples at 16 kHz.
      stft_resolutions=((256, 64, 256), (512, 128, 512), (1024, 256, 1024)),
      loss=dict(mel_weight=1.0, stft_weight=1.0,
                adversarial=False,  # multi-resolution spectrogram discriminator, hinge
                adv_weight=0.05, feature_weight=0.1, disc_channels=16,
                disc_learning_rate=other["disc_learning_rate"])))
  c.train = ml_collections.ConfigDict(dict(**pick(FLOW_TRAIN, preset), weight_decay=0.01,
                                           grad_clip=1.0))
  c.data = ml_collections.ConfigDict(dict(max_train_utterances=other["max_train_utterances"]))
  c.eval = ml_collections.ConfigDict(dict(
      num_examples=other["eval_examples"], split="heldout", num_wavs=3,
      asr=True, domain_lm=True))  # pocketsphinx LM: 3-gram of train answers, else generic
  return c
