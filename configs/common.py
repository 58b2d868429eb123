"""Shared pieces of the experiment configs: model presets, mesh, rules, training knobs.

Presets: `tiny` (seconds on a laptop CPU), `small` (minutes on CPU, the benchmark
size), `1b` (Llama-3.2-1B shapes), `8b` (Llama-3.1-8B shapes).
"""
from __future__ import annotations

import ml_collections

from data_pipelines import synthetic_text

PRESETS = ("tiny", "small", "1b", "8b")
SPEECH_TASKS = ("speech_typed", "speech_thinker", "speech_talker")  # config.task of stage 0, 1, 2

# name: (embed_dim, num_layers, num_heads, num_kv_heads, head_dim, mlp_dim, rope_theta, tied)
_MODEL_SHAPES = {
    "tiny": (64, 2, 4, 2, 16, 192, 10000.0, False),
    "small": (256, 4, 8, 4, 32, 768, 10000.0, False),
    "1b": (2048, 16, 32, 8, 64, 8192, 500000.0, True),
    "8b": (4096, 32, 32, 8, 128, 14336, 500000.0, False),
}


def parse_arg(arg: str | None) -> dict[str, str]:
  """`tiny`, `tiny,stage=2`, `tiny,text` or `tiny,text,pretrain` ->
  {'preset': 'tiny', 'stage': '2', 'text': '', 'pretrain': ''}."""
  parts = [p for p in (arg or "tiny").split(",") if p]
  out = {"preset": parts[0]}
  for p in parts[1:]:
    key, _, value = p.partition("=")
    out[key] = value
  unknown = set(out) - {"preset", "stage", "text", "pretrain"}
  if unknown:
    raise ValueError(f"unknown config option(s) {sorted(unknown)}; use e.g. 'tiny,stage=2', "
                     "'tiny,text' or 'tiny,text,pretrain'")
  if "pretrain" in out and "text" not in out:
    raise ValueError("config option 'pretrain' is text pre-training: use 'PRESET,text,pretrain'")
  if out["preset"] not in PRESETS:
    raise ValueError(f"unknown config preset {out['preset']!r}; choose from {PRESETS}")
  return out


# Talker decoder shapes (a few layers, as in VocalNet), same tuple layout as above.
_TALKER_SHAPES = {
    "tiny": (64, 2, 4, 2, 16, 192, 10000.0, False),
    "small": (256, 3, 8, 4, 32, 768, 10000.0, False),
    "1b": (1024, 4, 16, 4, 64, 4096, 10000.0, False),
    "8b": (2048, 6, 16, 8, 128, 8192, 10000.0, False),
}
# Audio encoder: (n_mels, embed_dim, num_layers, num_heads, mlp_dim); 1b/8b = Whisper-large-v3.
_ENCODER_SHAPES = {
    "tiny": (80, 64, 2, 4, 256),
    "small": (80, 256, 4, 4, 1024),
    "1b": (128, 1280, 32, 20, 5120),
    "8b": (128, 1280, 32, 20, 5120),
}


def model_config(preset: str, shapes: dict | None = None) -> ml_collections.ConfigDict:
  embed, layers, heads, kv_heads, head_dim, mlp, theta, tied = (shapes or _MODEL_SHAPES)[preset]
  return ml_collections.ConfigDict(dict(
      embed_dim=embed, num_layers=layers, num_heads=heads, num_kv_heads=kv_heads,
      head_dim=head_dim, mlp_dim=mlp, rope_theta=theta, tie_embeddings=tied, qkv_bias=False,
      norm_eps=1e-5,
      remat_policy="full" if preset in ("1b", "8b") else "none",  # none | full | save_dots
      scan_layers=preset in ("1b", "8b"),  # one nn.scan over the layers (params [layers, ...])
      attention_impl="einsum",  # einsum (hand-written) | xla | cudnn (jax.nn.dot_product_attention)
      vocab_size=0 if preset in ("tiny", "small") else 128256,  # 0: the tokenizer's size
      dtype="float32" if preset in ("tiny", "small") else "bfloat16",
      vocab_multiple=64 if preset in ("tiny", "small") else 128))


def speech_sections(c: ml_collections.ConfigDict, preset: str, stage: int) -> None:
  """Encoder, adaptor, Talker and spoken-QA data knobs of the speech model.

  stage 0 trains the Thinker alone on typed questions of the corpus's templates (cheap;
  stage 1 may start from it), stage 1 adaptor + Thinker (speech -> text; encoder
  optional), stage 2 the Talker alone (text -> speech tokens) from the stage-1 checkpoint
  (`init_from`).
  """
  if stage not in (0, 1, 2):
    raise ValueError(f"config option stage={stage}: choose 0 (typed), 1 (speech -> text) or "
                     "2 (Talker)")
  n_mels, e_dim, e_layers, e_heads, e_mlp = _ENCODER_SHAPES[preset]
  cpu = preset in ("tiny", "small")
  c.task = SPEECH_TASKS[stage]
  c.encoder = ml_collections.ConfigDict(dict(
      n_mels=n_mels, embed_dim=e_dim, num_layers=e_layers, num_heads=e_heads, mlp_dim=e_mlp,
      trainable=True,
      # mel frames per encoder frame: Whisper's 2 (50/s); tiny 4 (25/s, half the encoder's
      # cost on a CPU) with a 3-frame adaptor keeps 8.3 adapted frames/s (Whisper: 10)
      stride=4 if preset == "tiny" else 2))
  c.adaptor = ml_collections.ConfigDict(dict(stack=3 if preset == "tiny" else 5,
                                             hidden_dim=2 * c.model.embed_dim))
  # Stage-1 auxiliary losses (weights; 0 turns one off): CTC of the question transcript on
  # the encoder frames (an encoder trained from scratch learns to hear) and the answer
  # from the typed question on the same batch (the Thinker learns to answer).
  # ctc_on: `encoder` (a linear head on the encoder frames) or `adaptor` (the adapted frames
  # scored by the Thinker's token embeddings).
  # answer_weight: the spoken answer's own term; 0 with typed_weight 0 and the Thinker frozen
  # trains the ears alone (CTC only, no Thinker pass for the answer).
  # typed_source: `batch` (the typed term reads the batch's own question transcripts) or
  # `procedural` (a fresh typed question of the train templates at every stream position,
  # stage 0's stream: the Thinker keeps learning to answer instead of memorising the corpus).
  c.auxiliary = ml_collections.ConfigDict(dict(answer_weight=1.0,
                                               ctc_weight=1.0 if cpu else 0.0,
                                               typed_weight=1.0 if cpu else 0.0,
                                               typed_source="batch",
                                               ctc_on="adaptor"))
  # SpecAugment of the stage-1 question mel (training only): `freq_masks` bands of up to
  # `freq_width` mel bins and `time_masks` spans of up to `time_width` frames (and at most
  # `time_fraction` of the question) take the question's mean. Counts of 0 turn it off.
  c.spec_augment = ml_collections.ConfigDict(dict(freq_masks=0, freq_width=0, time_masks=0,
                                                  time_width=0, time_fraction=1.0))
  c.talker = ml_collections.ConfigDict(dict(
      model=model_config(preset, _TALKER_SHAPES), chunk_size=15, text_per_chunk=5,
      num_units=0 if cpu else 6561,  # 0: the unit tokenizer's size; 6561 = CosyVoice2
      fusion_hidden_dim=2 * _TALKER_SHAPES[preset][0]))
  c.data = ml_collections.ConfigDict(dict(
      name="spoken_qa",
      dir="demo_out/data",  # written by `python -m launch.prepare_data`
      # a batch pads its question mel to the smallest bucket that fits (one compiled step
      # per bucket); the last one is the model's window
      mel_buckets=(200, 300, 400, 600) if cpu else (1000, 2000, 3000),
      # global batches per length-sorting window (batches of similar question length, so
      # most fit a short bucket; `data_pipelines.length_grouping`); 0: plain shuffle
      length_group_window=16,
      max_question_tokens=48, prompt_len=52, response_len=32 if cpu else 256,
      max_units=104 if cpu else 750, seed=0,
      # stage 0: procedural typed questions of the corpus's train templates (no audio)
      typed_examples=1_000_000, typed_seed=17))


def base_config(arg: str | None, objective: str) -> ml_collections.ConfigDict:
  """Everything but the objective-specific knobs."""
  args = parse_arg(arg)
  preset = args["preset"]
  cpu = preset in ("tiny", "small")
  c = ml_collections.ConfigDict()
  c.preset = preset
  c.objective = objective
  c.task = "text_lm"
  c.seed = 0
  # A workdir whose latest params start this run (stage 2: stage 1's); `W,thinker=W2` then
  # takes the named top-level part from another run (an MDM Thinker adapted on typed text);
  # `thinker=W2` alone: this run's fresh params around W2's Thinker.
  c.init_from = ""
  c.model = model_config(preset)
  c.diffusion = ml_collections.ConfigDict(dict(
      schedule="linear",  # linear | cosine | polyK: t's law for uniform masking
      block_size=4 if preset == "tiny" else 16,
      layout="two_stream",  # two_stream ([x_t ; x_0], BD3-LM) | single_stream
      # uniform (one t per block) | hierarchical (the sampler's own states) | mixed
      masking="hierarchical",
      hierarchical_prob=0.5,  # share of hierarchical states per example when mixed
      sampler_steps=4,  # S: the decoder's default steps per block; hierarchical states are its
      shift_logits=False,  # Dream: position i predicts token i+1 (AR-initialised Thinkers; never the Talker)
      # with shift_logits (two_stream): score every block's context-predicted first token on
      # every draw (same ELBO, less variance; masking.score_context_predicted)
      score_first_token=True,
      # two_stream with shift_logits (a Thinker adapted from AR; never the Talker): the clean
      # copy attends block-causally (`block`) or causally (`causal`: its states stay the AR
      # model's; the decoder writes finished blocks the same way)
      clean_attention="block",
      # with shift_logits and two_stream (needs clean_attention causal): this weight times
      # the clean stream's AR next-token loss joins the ELBO (an AR Thinker keeps its task)
      ar_weight=0.0,
  ))
  c.data = ml_collections.ConfigDict(dict(
      name="synthetic_text", num_examples=100_000, prompt_len=32,
      response_len=16 if cpu else 256, tasks=synthetic_text.QA_TASKS,
      seed=0))
  c.train = ml_collections.ConfigDict(dict(
      steps={"tiny": 200, "small": 2000}.get(preset, 100_000),
      batch_size=32 if cpu else 256, grad_accum_steps=1,
      learning_rate=3e-3 if preset == "tiny" else (1e-3 if cpu else 3e-4),
      warmup_steps=20 if cpu else 2000, min_lr_ratio=0.1, weight_decay=0.01, b1=0.9, b2=0.98,
      grad_clip=1.0, log_every=10 if cpu else 100, checkpoint_every=100 if cpu else 1000,
      keep_checkpoints=3, async_checkpointing=True, progress_bar=True))
  # Comma-separated param paths kept fixed on top of the task's own choice, e.g.
  # "thinker" or "thinker/embed_tokens" (an MDM Thinker adapted from a speech one keeps the
  # token embeddings its ears were trained to speak).
  c.train.frozen = ""
  c.train.nonfinite = "stop"  # non-finite loss/grad/param norm: stop unsaved | skip the update
  c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, tensor=1))
  if "pretrain" in args:  # the shared text pre-training every Thinker starts from
    c.data.tasks = synthetic_text.PRETRAIN_TASKS
    c.data.seed = 7  # its own example stream (QA training draws seed 0, evaluation seed 1)
  if "text" not in args:
    speech_sections(c, preset, int(args.get("stage", 1)))
  c.logical_axis_rules = [
      ("batch", ["data", "fsdp"]), ("embed", "fsdp"), ("mlp", "tensor"), ("heads", "tensor"),
      ("kv_heads", "tensor"), ("kv", None), ("vocab", "tensor"), ("length", None),
      ("layers", None)]
  return c
