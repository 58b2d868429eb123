"""Shared pieces of the experiment configs: model presets, mesh, rules, training knobs.

Presets: `tiny` (seconds on a laptop CPU), `small` (minutes on CPU, the benchmark
size), `1b` (Llama-3.2-1B shapes), `8b` (Llama-3.1-8B shapes). Every value that depends
on the preset sits in a table below: one row per field, one column per preset.

What a run leaves out gets the recipe that reached parity with AR (`MDM_RECIPE`,
`AUXILIARY`, `TINY_STEPS`; configs/recipes/ chains the stages and their grafts).
"""
from __future__ import annotations

from typing import Any

import ml_collections

from data_pipelines import synthetic_text

PRESETS = ("tiny", "small", "1b", "8b")
SPEECH_TASKS = ("speech_typed", "speech_thinker", "speech_talker")  # config.task of stage 0, 1, 2

# The Thinker's decoder.
THINKER = {
    "embed_dim":      {"tiny": 64, "small": 256, "1b": 2048, "8b": 4096},
    "num_layers":     {"tiny": 2, "small": 4, "1b": 16, "8b": 32},
    "num_heads":      {"tiny": 4, "small": 8, "1b": 32, "8b": 32},
    "num_kv_heads":   {"tiny": 2, "small": 4, "1b": 8, "8b": 8},
    "head_dim":       {"tiny": 16, "small": 32, "1b": 64, "8b": 128},
    "mlp_dim":        {"tiny": 192, "small": 768, "1b": 8192, "8b": 14336},
    "rope_theta":     {"tiny": 10000.0, "small": 10000.0, "1b": 500000.0, "8b": 500000.0},
    "tie_embeddings": {"tiny": False, "small": False, "1b": True, "8b": False},
}
# The Talker's decoder (a few layers, as in VocalNet).
TALKER = {
    "embed_dim":      {"tiny": 64, "small": 256, "1b": 1024, "8b": 2048},
    "num_layers":     {"tiny": 2, "small": 3, "1b": 4, "8b": 6},
    "num_heads":      {"tiny": 4, "small": 8, "1b": 16, "8b": 16},
    "num_kv_heads":   {"tiny": 2, "small": 4, "1b": 4, "8b": 8},
    "head_dim":       {"tiny": 16, "small": 32, "1b": 64, "8b": 128},
    "mlp_dim":        {"tiny": 192, "small": 768, "1b": 4096, "8b": 8192},
    "rope_theta":     {"tiny": 10000.0, "small": 10000.0, "1b": 10000.0, "8b": 10000.0},
    "tie_embeddings": {"tiny": False, "small": False, "1b": False, "8b": False},
}
# How both decoders run: CPU presets in float32, accelerator presets in bfloat16 with
# rematerialisation and scanned layers.
DECODER_RUNTIME = {
    "remat_policy":   {"tiny": "none", "small": "none", "1b": "full", "8b": "full"},  # | save_dots
    "scan_layers":    {"tiny": False, "small": False, "1b": True, "8b": True},  # one nn.scan
    "vocab_size":     {"tiny": 0, "small": 0, "1b": 128256, "8b": 128256},  # 0: the tokenizer's
    "dtype":          {"tiny": "float32", "small": "float32", "1b": "bfloat16", "8b": "bfloat16"},
    "vocab_multiple": {"tiny": 64, "small": 64, "1b": 128, "8b": 128},
    # the Thinker's tokenizer (speech tasks): '' the corpus's sentencepiece model
    # (config.data.dir), or a pretrained checkpoint's with its chat template: gguf:FILE | hf:DIR
    "tokenizer":      {"tiny": "", "small": "", "1b": "", "8b": ""},
}
# The audio encoder (1b/8b: Whisper-large-v3) and the adaptor after it.
ENCODER = {
    "n_mels":         {"tiny": 80, "small": 80, "1b": 128, "8b": 128},
    "embed_dim":      {"tiny": 64, "small": 256, "1b": 1280, "8b": 1280},
    "num_layers":     {"tiny": 2, "small": 4, "1b": 32, "8b": 32},
    "num_heads":      {"tiny": 4, "small": 4, "1b": 20, "8b": 20},
    "mlp_dim":        {"tiny": 256, "small": 1024, "1b": 5120, "8b": 5120},
    # mel frames per encoder frame: Whisper's 2 (50/s); tiny 4 (25/s, half the encoder's
    # cost on a CPU) with a 3-frame adaptor keeps 8.3 adapted frames/s (Whisper: 10)
    "stride":         {"tiny": 4, "small": 2, "1b": 2, "8b": 2},
    # as the Thinker's knobs: one nn.scan over the layers, each rematerialised
    "scan_layers":    {"tiny": False, "small": False, "1b": True, "8b": True},
    "remat_policy":   {"tiny": "none", "small": "none", "1b": "full", "8b": "full"},
}
ADAPTOR_STACK = {"tiny": 3, "small": 5, "1b": 5, "8b": 5}  # encoder frames per adapted frame
# Spoken-QA batches and the Talker's units.
SPEECH_DATA = {
    # a batch pads its question mel to the smallest bucket that fits (one compiled step
    # per bucket); the last one is the model's window
    "mel_buckets":    {"tiny": (200, 300, 400, 600), "small": (200, 300, 400, 600),
                       "1b": (1000, 2000, 3000), "8b": (1000, 2000, 3000)},
    "response_len":   {"tiny": 32, "small": 32, "1b": 256, "8b": 256},
    # the question's characters (ears that spell: auxiliary.ctc_units=chars); the corpus's
    # longest question is 79
    "question_chars": {"tiny": 96, "small": 96, "1b": 448, "8b": 448},
    "max_units":      {"tiny": 104, "small": 104, "1b": 750, "8b": 750},
    # the Talker's unit vocabulary: 0 the unit tokenizer's size; 6561 = CosyVoice2
    "num_units":      {"tiny": 0, "small": 0, "1b": 6561, "8b": 6561},
    # CTC of the question transcript: an encoder trained from scratch learns to hear (the
    # accelerator presets start from Whisper's)
    "ctc_weight":     {"tiny": 1.0, "small": 1.0, "1b": 0.0, "8b": 0.0},
}
TEXT_RESPONSE_LEN = {"tiny": 16, "small": 16, "1b": 256, "8b": 256}
BLOCK_SIZE = {"tiny": 4, "small": 16, "1b": 16, "8b": 16}  # MDM block B of the Thinker
TRAIN = {
    # tiny: TINY_STEPS (per task)
    "steps":          {"tiny": None, "small": 2000, "1b": 100_000, "8b": 100_000},
    "batch_size":     {"tiny": 32, "small": 32, "1b": 256, "8b": 256},
    "learning_rate":  {"tiny": 3e-3, "small": 1e-3, "1b": 3e-4, "8b": 3e-4},
    "warmup_steps":   {"tiny": 20, "small": 20, "1b": 2000, "8b": 2000},
    "log_every":      {"tiny": 10, "small": 10, "1b": 100, "8b": 100},
    "checkpoint_every": {"tiny": 100, "small": 100, "1b": 1000, "8b": 1000},
}

# --- The recipe that reached parity (defaults of every run) ------------------------------
# The MDM Thinker adapted from an AR one (benchmarks/mdm_parity.sh's `mdm_adapted_shift`
# rows; configs/recipes/text_parity.py, configs/recipes/demo.py). The MDM adaptation knobs
# live here and nowhere else.
MDM_RECIPE = dict(
    schedule="linear",  # linear | cosine | polyK: t's law for uniform masking
    layout="two_stream",  # two_stream ([x_t ; x_0], BD3-LM) | single_stream (hierarchical only)
    # uniform (one t per block) | hierarchical (the sampler's own states) | mixed
    masking="hierarchical",
    hierarchical_prob=0.5,  # share of hierarchical states per example when mixed
    sampler_steps=4,  # S: the decoder's default steps per block; hierarchical states are its
    # Dream: position i predicts token i+1, as the AR model it is adapted from (a Thinker;
    # the Talker never shifts)
    shift_logits=True,
    # with shift_logits (two_stream): score every block's context-predicted first token on
    # every draw (same expected loss, less variance; masking.score_context_predicted)
    score_first_token=True,
    # with score_first_token: that first token's weight (1: the ELBO's expectation). 4
    # closed the first-token gap over three seeds at B = 4 (`count`, a one-token answer:
    # 0.77 -> 0.99; every task within 0.05 of AR on the mean); at B = 16 2 does and 4 does
    # not (configs/recipes/text_parity.py FIRST_TOKEN_WEIGHT; docs/parity.md `_ftW_` rows)
    first_token_weight=4.0,
    # two_stream with shift_logits (a Thinker adapted from AR; never the Talker): the clean
    # copy attends block-causally (`block`) or causally (`causal`: its states stay the AR
    # model's; the decoder writes finished blocks the same way)
    clean_attention="block",
    # with shift_logits and two_stream (needs clean_attention causal): this weight times
    # the clean stream's AR next-token loss joins the ELBO; measured, it did not raise exact
    # match (docs/parity.md)
    ar_weight=0.0,
    # two_stream: every example twice per step, with a draw's mask and its complement
    # (Fast-dLLM v2), so each answer token is a masked target once per pair (twice the
    # denoiser rows per step; masking.complementary_pair)
    complementary_masks=False,
    # hierarchical states for a sampler committing by confidence (topk/threshold: masks at
    # uniformly chosen positions) or left to right (the block's last positions masked;
    # decode with --rule=left_to_right): masking.COMMIT_ORDERS
    commit_order="confidence",
    # which masked tokens of a hierarchical state are scored: every one (`masked`) or, for
    # a left_to_right sampler, only those it commits from that state (`committed`);
    # measured at B = 16 over three seeds, `committed` lost 0.15 exact match (docs/parity.md):
    # the predictions of the block's later masked tokens are useful training signal
    scored_tokens="masked",
)
# Stage-1 auxiliary losses (weights; 0 turns one off). typed_weight: the answer from the
# typed question on the same batch (a second Thinker pass per step); it did not change
# spoken exact match, and its time buys more steps (make demo).
AUXILIARY = dict(answer_weight=1.0, typed_weight=0.0, typed_source="batch", ctc_on="adaptor",
                 ctc_units="tokens")
# tiny's training steps per task (and objective where they differ): the step counts of the
# recipes that reached parity (text: 3000 pre-training + 3000; speech: make demo's).
TINY_STEPS = {"text_lm": 3000, "speech_typed": 1200, "speech_thinker": {"ar": 2800, "mdm": 2400},
              "speech_talker": 200}


def pick(table: dict[str, dict[str, Any]], preset: str) -> dict[str, Any]:
  """One preset's column of a per-field table: {field: value}."""
  return {field: by_preset[preset] for field, by_preset in table.items()}


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


def model_config(preset: str, shapes: dict | None = None) -> ml_collections.ConfigDict:
  """A decoder's config: `shapes` (THINKER or TALKER) and DECODER_RUNTIME of the preset."""
  return ml_collections.ConfigDict(dict(
      **pick(shapes or THINKER, preset), qkv_bias=False, norm_eps=1e-5,
      attention_impl="einsum",  # einsum (hand-written) | xla | cudnn (jax.nn.dot_product_attention)
      **pick(DECODER_RUNTIME, preset)))


def train_steps(preset: str, task: str, objective: str) -> int:
  """The default training steps: TINY_STEPS for tiny, TRAIN['steps'] otherwise."""
  if preset != "tiny":
    return TRAIN["steps"][preset]
  steps = TINY_STEPS[task]
  return steps[objective] if isinstance(steps, dict) else steps


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
  data = pick(SPEECH_DATA, preset)
  c.task = SPEECH_TASKS[stage]
  c.encoder = ml_collections.ConfigDict(dict(
      **pick(ENCODER, preset), trainable=True,
      from_checkpoint=""))  # "hf:DIR": a Whisper encoder's shapes (and stride 2)
  # read_as: what the Thinker reads of the audio, `frames` (the adapted frames),
  # `ctc_tokens` (the adaptor's greedy CTC transcript as text tokens; needs ctc_on=adaptor)
  # or `transcript` (the transcriber's spelling, tokenized as typed; needs ctc_units=chars)
  c.adaptor = ml_collections.ConfigDict(dict(stack=ADAPTOR_STACK[preset],
                                             hidden_dim=2 * c.model.embed_dim, read_as="frames"))
  # Stage-1 auxiliary losses: AUXILIARY and the CTC weight of the preset.
  # ctc_on: `encoder` (a linear head on the encoder frames) or `adaptor` (the adapted frames
  # scored by the Thinker's token embeddings).
  # ctc_units: the transcript's CTC targets, the Thinker's `tokens` or `chars`
  # (`data_pipelines.spelling`: ears that can spell words they never heard; ctc_on=encoder,
  # padded to data.question_chars).
  # answer_weight: the spoken answer's own term; 0 with typed_weight 0 and the Thinker frozen
  # trains the ears alone (CTC only, no Thinker pass for the answer).
  # typed_source: `batch` (the typed term reads the batch's own question transcripts) or
  # `procedural` (a fresh typed question of the train templates at every stream position,
  # stage 0's stream: the Thinker keeps learning to answer instead of memorising the corpus).
  c.auxiliary = ml_collections.ConfigDict(dict(AUXILIARY, ctc_weight=data["ctc_weight"]))
  # SpecAugment of the stage-1 question mel (training only): `freq_masks` bands of up to
  # `freq_width` mel bins and `time_masks` spans of up to `time_width` frames (and at most
  # `time_fraction` of the question) take the question's mean. Counts of 0 turn it off.
  c.spec_augment = ml_collections.ConfigDict(dict(freq_masks=0, freq_width=0, time_masks=0,
                                                  time_width=0, time_fraction=1.0))
  c.talker = ml_collections.ConfigDict(dict(
      model=model_config(preset, TALKER), chunk_size=15, text_per_chunk=5,
      num_units=data["num_units"], fusion_hidden_dim=2 * TALKER["embed_dim"][preset],
      # stage 2: the frozen Thinker's states of every training answer computed once from
      # config.init_from's Thinker (ears included), so a step runs the Talker alone
      cache_thinker_states=False,
      # stage 2, training only: each answer position's Thinker state is zeroed with this
      # probability (its text embedding stays); decoding always reads the states
      state_dropout=0.0,
      # False: the Talker reads the answer text alone, in training and decoding (the fused
      # Thinker states are zeroed), so it never sees how the question was phrased
      thinker_states=True))
  c.data = ml_collections.ConfigDict(dict(
      name="spoken_qa",
      dir="demo_out/data",  # written by `python -m launch.prepare_data`
      mel_buckets=data["mel_buckets"],
      # global batches per length-sorting window (batches of similar question length, so
      # most fit a short bucket; `data_pipelines.length_grouping`); 0: plain shuffle
      length_group_window=16,
      max_question_tokens=48, prompt_len=52, response_len=data["response_len"],
      max_units=data["max_units"], question_chars=data["question_chars"], seed=0,
      # stage 0: procedural typed questions of the corpus's train templates (no audio)
      typed_examples=1_000_000, typed_seed=17,
      # typed questions spelled as ears that spell hear them (`data_pipelines.mishearing`):
      # `channel` (launch.mishearing's channel.json; '' off), applied to `fraction` of them
      # at a strength uniform in [0, max_scale] times the channel's rates
      mishear=ml_collections.ConfigDict(dict(channel="", fraction=0.5, max_scale=2.0))))


def base_config(arg: str | None, objective: str) -> ml_collections.ConfigDict:
  """Everything but the objective-specific knobs."""
  args = parse_arg(arg)
  preset = args["preset"]
  c = ml_collections.ConfigDict()
  c.preset = preset
  c.objective = objective
  c.task = "text_lm"
  c.seed = 0
  # A workdir whose latest params start this run (stage 2: stage 1's); `W,thinker=W2` then
  # takes the named top-level part from another run (an MDM Thinker adapted on typed text);
  # `thinker=W2` alone: this run's fresh params around W2's Thinker.
  # Parts may also come from pretrained checkpoints: `thinker=hf:DIR` (Llama/Qwen2
  # safetensors), `thinker=gguf:FILE` (a Llama GGUF), `encoder=hf:DIR` (Whisper).
  c.init_from = ""
  c.model = model_config(preset)
  # "hf:DIR" | "gguf:FILE": the Thinker's shapes, RoPE, norm eps and vocabulary are the
  # checkpoint's (modeling/pretrained.py), whatever the preset says
  c.model.from_checkpoint = ""
  c.model.added_tokens = 0  # vocabulary rows after the checkpoint's (new special tokens)
  c.diffusion = ml_collections.ConfigDict(dict(MDM_RECIPE, block_size=BLOCK_SIZE[preset]))
  c.data = ml_collections.ConfigDict(dict(
      name="synthetic_text", num_examples=100_000, prompt_len=32,
      response_len=TEXT_RESPONSE_LEN[preset], tasks=synthetic_text.QA_TASKS,
      seed=0))
  c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, tensor=1))
  if "pretrain" in args:  # the shared text pre-training every Thinker starts from
    c.data.tasks = synthetic_text.PRETRAIN_TASKS
    c.data.seed = 7  # its own example stream (QA training draws seed 0, evaluation seed 1)
  if "text" not in args:
    speech_sections(c, preset, int(args.get("stage", 1)))
  # the split(s) training reads, "+"-joined: "train+read" adds a speech corpus's sentences
  # read aloud (`data_pipelines.spoken_qa`; the Talker's text-to-speech pre-training)
  c.data.train_split = "train"
  c.train = ml_collections.ConfigDict(dict(
      pick(TRAIN, preset), steps=train_steps(preset, c.task, objective), grad_accum_steps=1,
      min_lr_ratio=0.1, weight_decay=0.01, b1=0.9, b2=0.98, grad_clip=1.0, keep_checkpoints=3,
      async_checkpointing=True, progress_bar=True,
      # batches made ahead on a thread while the step runs (0: made between steps)
      prefetch_batches=2,
      # >0: the loss projects this many response positions to the vocabulary at a time
      loss_chunk=0))
  # Comma-separated param paths kept fixed on top of the task's own choice, e.g.
  # "thinker" or "thinker/embed_tokens" (an MDM Thinker adapted from a speech one keeps the
  # token embeddings its ears were trained to speak).
  c.train.frozen = ""
  c.train.nonfinite = "stop"  # non-finite loss/grad/param norm: stop unsaved | skip the update
  c.logical_axis_rules = [
      ("batch", ["data", "fsdp"]), ("embed", "fsdp"), ("mlp", "tensor"), ("heads", "tensor"),
      ("kv_heads", "tensor"), ("kv", None), ("vocab", "tensor"), ("length", None),
      ("layers", None)]
  return c
