"""Checks a config before anything is built, so bad values fail with one clear
message naming the field instead of a traceback from deep inside JAX."""
from __future__ import annotations

import ml_collections

from vocalnet_jax.diffusion.attention_masks import CLEAN_ATTENTIONS
from vocalnet_jax.diffusion.masking import (COMMIT_ORDERS, LAYOUTS, SCORED_TOKENS,
                                             STRATEGIES as MASKINGS, masking_fits_layout)
from vocalnet_jax.diffusion.schedule import get_schedule
from vocalnet_jax.models.layers import ATTENTION_IMPLS

OBJECTIVES = ("ar", "mdm")
DISTILL_STATES = ("confidence", "uniform")
NONFINITE = ("stop", "skip")
TYPED_SOURCES = ("batch", "procedural")
CTC_ON = ("encoder", "adaptor")  # where stage 1 scores the question transcript
READ_AS = ("frames", "ctc_tokens", "transcript")  # what the Thinker reads of the audio
CTC_UNITS = ("tokens", "chars")  # the question transcript's CTC targets


class ConfigError(ValueError):
  """A config field holds a value the run cannot use."""


def _require(ok: bool, message: str) -> None:
  if not ok:
    raise ConfigError(message)


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError naming the first bad field."""
  _require(config.objective in OBJECTIVES,
           f"config.objective={config.objective!r}; choose from {OBJECTIVES}")
  m = config.model
  _require(m.num_heads % m.num_kv_heads == 0,
           f"config.model.num_heads={m.num_heads} must be a multiple of "
           f"config.model.num_kv_heads={m.num_kv_heads}")
  _require(m.head_dim % 2 == 0, f"config.model.head_dim={m.head_dim} must be even for RoPE")
  for name, model in [("config.model", m)] + (
      [("config.talker.model", config.talker.model)] if "talker" in config else []):
    impl = model.get("attention_impl", "einsum")
    _require(impl in ATTENTION_IMPLS,
             f"{name}.attention_impl={impl!r}; choose from {ATTENTION_IMPLS}")
    _require(impl != "cudnn" or model.dtype in ("bfloat16", "float16"),
             f"{name}.attention_impl='cudnn' needs {name}.dtype bfloat16 or float16 "
             f"(cuDNN flash attention), got {model.dtype!r}")
  t = config.train
  _require(t.steps > 0 or (t.steps == 0 and config.get("init_from")),
           f"config.train.steps={t.steps} must be positive (0 only with config.init_from: "
           "its parts saved as this run's checkpoint)")
  _require(t.batch_size % t.grad_accum_steps == 0,
           f"config.train.batch_size={t.batch_size} is not divisible by "
           f"config.train.grad_accum_steps={t.grad_accum_steps}")
  _require(t.nonfinite in NONFINITE,
           f"config.train.nonfinite={t.nonfinite!r}; choose from {NONFINITE}")
  if config.objective == "mdm":
    d = config.diffusion
    try:
      get_schedule(d.schedule)
    except ValueError as e:
      raise ConfigError(str(e)) from None
    _require(d.layout in LAYOUTS, f"config.diffusion.layout={d.layout!r}; choose from {LAYOUTS}")
    _require(d.masking in MASKINGS,
             f"config.diffusion.masking={d.masking!r}; choose from {MASKINGS}")
    _require(0.0 <= d.hierarchical_prob <= 1.0,
             f"config.diffusion.hierarchical_prob={d.hierarchical_prob} must be in [0, 1]")
    _require(masking_fits_layout(d.masking, d.layout),
             f"config.diffusion.masking={d.masking!r} with layout='single_stream': uniform "
             "masking scores every block on noisy earlier blocks, which the decoder never "
             "gives it; use masking='hierarchical' or layout='two_stream'")
    _require(d.block_size > 0 and config.data.response_len % d.block_size == 0,
             f"config.diffusion.block_size={d.block_size} does not divide "
             f"config.data.response_len={config.data.response_len}")
    clean = d.get("clean_attention", "block")
    _require(clean in CLEAN_ATTENTIONS,
             f"config.diffusion.clean_attention={clean!r}; choose from {CLEAN_ATTENTIONS}")
    _require(d.get("ar_weight", 0.0) >= 0.0,
             f"config.diffusion.ar_weight={d.get('ar_weight')} must be >= 0")
    _require(not (d.get("ar_weight", 0.0) and d.shift_logits and d.layout == "two_stream")
             or clean == "causal",
             f"config.diffusion.ar_weight={d.get('ar_weight')} (with shift_logits, two_stream) "
             "needs clean_attention='causal'")
    _require(not d.get("complementary_masks", False) or d.layout == "two_stream",
             "config.diffusion.complementary_masks needs layout='two_stream' (the complement "
             "would mask single_stream's clean earlier blocks)")
    order = d.get("commit_order", "confidence")  # runs saved before the knob: confidence
    _require(order in COMMIT_ORDERS,
             f"config.diffusion.commit_order={order!r}; choose from {COMMIT_ORDERS}")
    scored = d.get("scored_tokens", "masked")  # runs saved before the knob: masked
    _require(scored in SCORED_TOKENS,
             f"config.diffusion.scored_tokens={scored!r}; choose from {SCORED_TOKENS}")
    _require(scored == "masked" or (order == "left_to_right" and d.masking != "uniform"
                                    and not d.get("complementary_masks", False)),
             f"config.diffusion.scored_tokens={scored!r} needs commit_order='left_to_right', "
             "hierarchical (or mixed) masking and no complementary_masks: only a left-to-right "
             "sampler's commits are known before the forward pass")
    block_name, block = _denoised_block(config)
    _require(1 <= d.sampler_steps <= block,
             f"config.diffusion.sampler_steps={d.sampler_steps} must be in [1, {block_name}="
             f"{block}]")
  if "auxiliary" in config:
    ctc_on = config.auxiliary.get("ctc_on", "encoder")  # runs saved before the knob: encoder
    _require(ctc_on in CTC_ON, f"config.auxiliary.ctc_on={ctc_on!r}; choose from {CTC_ON}")
    read_as = config.get("adaptor", {}).get("read_as", "frames")
    _require(read_as in READ_AS, f"config.adaptor.read_as={read_as!r}; choose from {READ_AS}")
    _require(read_as != "ctc_tokens" or ctc_on == "adaptor",
             f"config.adaptor.read_as={read_as!r} reads the adaptor's CTC transcript: it needs "
             "config.auxiliary.ctc_on='adaptor'")
    units = config.auxiliary.get("ctc_units", "tokens")
    _require(units in CTC_UNITS, f"config.auxiliary.ctc_units={units!r}; choose from {CTC_UNITS}")
    _require(units == "tokens" or ctc_on == "encoder",
             "config.auxiliary.ctc_units='chars' spells on the encoder frames: it needs "
             "config.auxiliary.ctc_on='encoder'")
    _require(read_as != "transcript" or units == "chars",
             "config.adaptor.read_as='transcript' reads the transcriber's spelling: it needs "
             "config.auxiliary.ctc_units='chars'")
    typed_source = config.auxiliary.get("typed_source", "batch")
    _require(typed_source in TYPED_SOURCES,
             f"config.auxiliary.typed_source={typed_source!r}; choose from {TYPED_SOURCES}")
  if "mel_buckets" in config.data:
    buckets = tuple(config.data.mel_buckets)
    _require(len(buckets) > 0 and all(a < b for a, b in zip(buckets, buckets[1:]))
             and buckets[0] > 0,
             f"config.data.mel_buckets={buckets} must be positive and increasing")
    window = config.data.get("length_group_window", 0)
    _require(window >= 0, f"config.data.length_group_window={window} must be >= 0")
  if "mishear" in config.data:
    m = config.data.mishear
    _require(0.0 <= m.fraction <= 1.0,
             f"config.data.mishear.fraction={m.fraction} must be in [0, 1]")
    _require(m.max_scale >= 0.0, f"config.data.mishear.max_scale={m.max_scale} must be >= 0")
  if "spec_augment" in config:
    a = config.spec_augment
    for field in ("freq_masks", "freq_width", "time_masks", "time_width"):
      _require(a[field] >= 0, f"config.spec_augment.{field}={a[field]} must be >= 0")
    _require("n_mels" not in config.get("encoder", {}) or a.freq_width <= config.encoder.n_mels,
             f"config.spec_augment.freq_width={a.freq_width} exceeds config.encoder.n_mels")
    _require(0.0 <= a.time_fraction <= 1.0,
             f"config.spec_augment.time_fraction={a.time_fraction} must be in [0, 1]")
  if "talker" in config:
    rate = config.talker.get("state_dropout", 0.0)
    _require(0.0 <= rate < 1.0, f"config.talker.state_dropout={rate} must be in [0, 1) (decoding "
             "reads the states; config.talker.thinker_states=False drops them everywhere)")
  if config.task == "self_distill":
    _validate_distill(config)


def _denoised_block(config: ml_collections.ConfigDict) -> tuple[str, int]:
  """The block the trained decoder denoises: the Talker's chunk or the Thinker's block."""
  task = config.distill.base_task if config.task == "self_distill" else config.task
  if task == "speech_talker":
    return "talker.chunk_size", config.talker.chunk_size
  return "block_size", config.diffusion.block_size


def _validate_distill(config: ml_collections.ConfigDict) -> None:
  d = config.distill
  _require(config.objective == "mdm", "config.objective must be 'mdm' to self-distill "
           f"(got {config.objective!r})")
  block = (config.talker.chunk_size if d.base_task == "speech_talker"
           else config.diffusion.block_size)
  for name, steps in [("teacher_steps", d.teacher_steps)] + [
      (f"rounds[{i}]", s) for i, s in enumerate(d.rounds)]:
    _require(steps >= 2 and steps % 2 == 0 and steps <= block,
             f"config.distill.{name}={steps} must be even and in [2, block size {block}] "
             "(the student takes half the teacher's steps)")
  _require(d.states in DISTILL_STATES,
           f"config.distill.states={d.states!r}; choose from {DISTILL_STATES}")
  _require(list(d.rounds) == sorted(d.rounds, reverse=True),
           f"config.distill.rounds={tuple(d.rounds)} must go from many steps to few")
