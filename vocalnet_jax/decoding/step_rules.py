"""Commit rules of a block-diffusion sampler: which masked positions become tokens.

Every rule has one signature, so the block loop takes any of them:

  rule(logits [b, B, V], is_masked [b, B], step [], num_steps, rng)
      -> (tokens [b, B] int32, commit [b, B] bool)

`commit` is a subset of `is_masked`; at the last step (step = num_steps - 1) every
rule commits all remaining masked positions, so a block is clean after num_steps.
Rules rank by the confidence (probability) of the proposed token, or by position
(left_to_right), with rank masks (argsort of argsort), never Python loops, so they jit
into the `lax` loop.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp

from vocalnet_jax.decoding import sampling
from vocalnet_jax.diffusion import masking
from vocalnet_jax.diffusion.schedule import Schedule, get_schedule

Array = jax.Array
StepRule = Callable[[Array, Array, Array, int, Array], tuple[Array, Array]]
RULES = ("topk", "threshold", "ancestral", "left_to_right")
THRESHOLD = 0.9  # the threshold rule's default confidence (Fast-dLLM's)


def _propose(logits: Array, rng: Array, temperature: float) -> tuple[Array, Array]:
  """Proposed tokens [b, B] and their probability under the model [b, B]."""
  tokens = sampling.sample(logits, rng, temperature)
  probs = jax.nn.softmax(logits, axis=-1)  # [b, B, V]
  return tokens, jnp.take_along_axis(probs, tokens[..., None], axis=-1)[..., 0]


def _confidence_ranks(confidence: Array, is_masked: Array) -> Array:
  """0 = most confident masked position; unmasked positions rank last. [b, B] int."""
  score = jnp.where(is_masked, confidence, -jnp.inf)
  return jnp.argsort(jnp.argsort(-score, axis=-1), axis=-1)


def _topk_share(confidence: Array, is_masked: Array, step: Array, num_steps: int) -> Array:
  """The k most confident masked positions, k = ceil(masked / steps left). [b, B] bool"""
  k = masking.topk_commit_count(jnp.sum(is_masked, axis=-1), num_steps - step)  # [b]
  return (_confidence_ranks(confidence, is_masked) < k[:, None]) & is_masked


def confidence_topk(logits: Array, is_masked: Array, step: Array, num_steps: int, rng: Array,
                    *, temperature: float = 0.0) -> tuple[Array, Array]:
  """LLaDA: commit the k most confident masked tokens, k = an even share of what is left
  (ceil(masked / steps left)); B / S per step when S divides B, one per step when S = B."""
  tokens, confidence = _propose(logits, rng, temperature)
  return tokens, _topk_share(confidence, is_masked, step, num_steps)


def confidence_threshold(logits: Array, is_masked: Array, step: Array, num_steps: int,
                         rng: Array, *, threshold: float = THRESHOLD,
                         temperature: float = 0.0) -> tuple[Array, Array]:
  """Fast-dLLM: commit every masked token with confidence > threshold, and at least what
  `confidence_topk` commits (its even share of what is left; one per step when S = B, as in
  Fast-dLLM). So a block never takes more than S forwards, never dumps most of a block on
  its last step when S < B (a 15-unit speech chunk in 4 steps), and finishes early when
  the model is sure."""
  tokens, confidence = _propose(logits, rng, temperature)
  share = _topk_share(confidence, is_masked, step, num_steps)
  commit = is_masked & ((confidence > threshold) | share)
  return tokens, commit


def left_to_right(logits: Array, is_masked: Array, step: Array, num_steps: int, rng: Array,
                  *, temperature: float = 0.0) -> tuple[Array, Array]:
  """LLaDA's semi-autoregressive sub-blocks: `confidence_topk`'s even share, taken from the
  leftmost masked positions instead of the most confident. Its states are known before
  decoding, so training draws exactly them (`diffusion.commit_order='left_to_right'`)."""
  tokens, _ = _propose(logits, rng, temperature)
  priority = jnp.broadcast_to(masking.left_to_right_priority(is_masked.shape[-1]),
                              is_masked.shape)  # [b, B]
  return tokens, _topk_share(priority, is_masked, step, num_steps)


def ancestral(logits: Array, is_masked: Array, step: Array, num_steps: int, rng: Array,
              *, schedule: Schedule, temperature: float = 1.0) -> tuple[Array, Array]:
  """MD4 reverse step t -> s (t = 1 - step/S, s = t - 1/S): each masked token unmasks with
  probability (alpha(s) - alpha(t)) / (1 - alpha(t)), its value sampled from the model."""
  rng_tok, rng_commit = jax.random.split(rng)
  tokens = sampling.sample(logits, rng_tok, temperature)
  t = 1.0 - step / num_steps
  s = jnp.maximum(t - 1.0 / num_steps, 0.0)
  alpha_t, alpha_s = schedule.alpha(t), schedule.alpha(s)
  p_unmask = (alpha_s - alpha_t) / jnp.maximum(1.0 - alpha_t, 1e-12)
  p_unmask = jnp.where(step >= num_steps - 1, 1.0, p_unmask)
  commit = is_masked & (jax.random.uniform(rng_commit, is_masked.shape) < p_unmask)
  return tokens, commit


def default_rule(diffusion_cfg: Any) -> str:
  """The rule a model decodes with unless told: the one whose states it trained on
  (`diffusion.commit_order`: left_to_right, else the top-k rule)."""
  order = diffusion_cfg.get("commit_order", "confidence")  # runs saved before the knob
  return "left_to_right" if order == "left_to_right" else "topk"


def recorded_threshold(rule: Optional[str], threshold: float) -> Optional[float]:
  """The confidence a result row records: the threshold rule's, else None."""
  return threshold if rule == "threshold" else None


@functools.lru_cache(maxsize=None)
def get_rule(name: str, threshold: float = THRESHOLD, temperature: float = 0.0,
             schedule: str = "linear") -> StepRule:
  """The rule called `name` with its knobs bound (cached: same knobs, same object).

  `temperature` applies to topk/threshold proposals; ancestral always samples (at
  temperature 1 when `temperature` is 0, as the reverse process prescribes).
  """
  if name == "topk":
    return functools.partial(confidence_topk, temperature=temperature)
  if name == "threshold":
    return functools.partial(confidence_threshold, threshold=threshold, temperature=temperature)
  if name == "left_to_right":
    return functools.partial(left_to_right, temperature=temperature)
  if name == "ancestral":
    return functools.partial(ancestral, schedule=get_schedule(schedule),
                             temperature=temperature or 1.0)
  raise ValueError(f"unknown step rule {name!r}; choose from {RULES}")
