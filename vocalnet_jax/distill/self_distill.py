"""Iterative self-distillation: a few-step student learns from its many-step self.

One round (the paper's iterative self-distillation): the teacher is a frozen copy that
decodes a block in S_t steps; the student, initialised from it, decodes in S_s = S_t / 2. On
the states the student's top-k sampler meets (block at its step k,
`masking.sampler_state_corruption`), the student's one forward is pulled towards what the
teacher reaches in its two corresponding steps (2k and 2k + 1):

  teacher step 2k   on x     -> commit its top-k confident tokens -> x'
  teacher step 2k+1 on x'    -> logits_2
  target at a masked position = the committed token where the teacher committed it at
                                step 2k (it is fixed from then on), softmax(logits_2)
                                where it was still masked (it now sees the commits)
  loss = mean over masked valid positions of KL(p_student(.|x) || p_target)

Reverse KL is mode-seeking: where the teacher would have split mass across several
completions, the student commits to one of them, which is what a sampler taking
bigger steps needs. The student then becomes the next round's teacher (16 -> 8 -> 4 ->
2, see `rounds.py`).

`SelfDistillTask` wraps any decoder task that offers `lm_problem(params, batch)` (the
text Thinker, the speech Thinker, the Talker), holding params {"student", "teacher"}
with only the student (and only the parts its base task trains) trainable.
"""
from __future__ import annotations

from typing import Any, Callable

import grain
import jax
import jax.numpy as jnp
import ml_collections

from vocalnet_jax.decoding import step_rules
from vocalnet_jax.diffusion import losses, masking
from vocalnet_jax.modeling.validate import ConfigError
from vocalnet_jax.training import objectives, tasks

Array = jax.Array
_NEVER = -1e9  # logit of [MASK]: never an output (finite, so KL terms stay 0 * finite)


def teacher_targets(logits_fn: Callable[[Array], Array], noisy: Array, teacher_step: Array,
                    teacher_steps: int, mask_id: int, block_size: int, rng: Array,
                    smoothing: float = 1e-3) -> tuple[Array, Array]:
  """The teacher's distribution after two of its top-k steps from `noisy`.

  A token the teacher commits at its first step is fixed from then on, so its target is
  that token (one-hot, label-smoothed by `smoothing` to keep the KL finite); the other
  masked positions take the teacher's second-step distribution, which sees the commits.
  logits_fn: ids [b, R] -> logits [b, R, V]; teacher_step: [b, nb] the step each block
  is about to take. Returns (target log-probs [b, R, V], committed at the first step [b, R]).
  """
  batch, resp_len = noisy.shape
  is_masked = noisy == mask_id  # [b, R]
  logits_1 = logits_fn(noisy)  # [b, R, V]
  flat = lambda x: x.reshape((-1, block_size) + x.shape[2:])  # noqa: E731  [b * nb, B, ...]
  tokens, commit = step_rules.confidence_topk(flat(logits_1), flat(is_masked),
                                              teacher_step.reshape(-1), teacher_steps, rng)
  commit = commit.reshape(batch, resp_len) & is_masked
  tokens = tokens.reshape(batch, resp_len)
  advanced = jnp.where(commit, tokens, noisy)  # [b, R]
  vocab = logits_1.shape[-1]
  fixed = jnp.log(jax.nn.one_hot(tokens, vocab) * (1.0 - smoothing) + smoothing / vocab)
  second = jax.nn.log_softmax(logits_fn(advanced), axis=-1)  # [b, R, V]
  return jnp.where(commit[..., None], fixed, second), commit


def self_distill_loss(student: objectives.LMProblem, teacher: objectives.LMProblem, rng: Array,
                      teacher_steps: int, states: str = "confidence",
                      smoothing: float = 1e-3, shift: bool = False) -> tuple[Array, dict]:
  """Reverse KL of the S_t/2-step student to the S_t-step teacher on sampler states.

  shift: the denoiser's logit alignment (`objectives.denoiser_logits`), as trained.
  states: which tokens of a block are still masked at the student's step k:
  `confidence` the ones the teacher is least sure of on the all-masked block (the
  sampler commits the most confident first; one more teacher forward), `uniform` any.
  """
  batch, block, mask_id = student.batch, student.block_size, student.mask_id
  valid = masking.block_valid(batch.response_valid, block)  # [b, R]
  clean = masking.fill_block_tail(batch.response, batch.response_valid, valid, student.eos_id)
  rng_state, rng_commit = jax.random.split(rng)

  def logits_fn(problem: objectives.LMProblem) -> Callable[[Array], Array]:
    def fn(x: Array) -> Array:
      logits = objectives.denoiser_logits(problem.fns, problem.batch, x, clean, valid, block,
                                          shift=shift)
      return logits.astype(jnp.float32).at[..., mask_id].set(_NEVER)
    return fn

  confidence = None
  if states == "confidence":
    all_masked = jnp.where(valid, mask_id, clean)  # [b, R]
    probs = jax.nn.softmax(logits_fn(teacher)(all_masked), axis=-1)  # [b, R, V]
    confidence = jax.lax.stop_gradient(jnp.max(probs, axis=-1))  # [b, R]
  elif states != "uniform":
    raise ValueError(f"config.distill.states={states!r}; choose 'confidence' or 'uniform'")
  state = masking.sampler_state_corruption(rng_state, valid, block, teacher_steps // 2,
                                           confidence)
  noisy = jnp.where(state.corrupted, mask_id, clean)  # [b, R]

  target, committed = teacher_targets(logits_fn(teacher), noisy, 2 * state.step, teacher_steps,
                                      mask_id, block, rng_commit, smoothing)
  target = jax.lax.stop_gradient(target)
  student_logits = logits_fn(student)(noisy)  # [b, R, V]
  scored = state.corrupted & valid
  loss = losses.reverse_kl(student_logits, target, scored)
  guess = jnp.argmax(student_logits, -1)
  n = jnp.maximum(jnp.sum(scored), 1)
  return loss, {"loss": loss, "target_tokens": jnp.sum(scored),
                "accuracy": jnp.sum((guess == clean) & scored) / n,
                "teacher_agreement": jnp.sum((guess == jnp.argmax(target, -1)) & scored) / n,
                "teacher_commit_ratio": jnp.sum(committed & scored) / n}


class SelfDistillTask(tasks.Task):
  """A distillation round over `config.distill.base_task` (see the module docstring)."""

  def __init__(self, config: ml_collections.ConfigDict, shapes_only: bool = False):
    base_config = config.copy_and_resolve_references()
    base_config.task = config.distill.base_task
    # train.frozen names this task's parts (student/...); the base checks them as its own
    base_config.train.frozen = ",".join(
        p.strip().removeprefix("student/") for p in config.train.get("frozen", "").split(",")
        if p.strip())
    self.base = tasks.build_task(base_config, shapes_only)
    if type(self.base).lm_problem is tasks.Task.lm_problem:
      raise ConfigError(f"config.distill.base_task={config.distill.base_task!r} has no decoder "
                        "to distill (it must offer lm_problem)")
    # the base's model and tokenizer; its params are this task's "student" and "teacher"
    self.config, self.model = config, self.base.model
    self.tokenizer = self.base.built.text_tokenizer
    base_trainable = self.base.trainable
    self.trainable = (tuple(f"student/{t}" for t in base_trainable) if base_trainable
                      else ("student",))

  def source(self, split: str) -> Any:
    return self.base.source(split)

  def dataset(self, split: str, batch_size: int, seed: int,
              shuffle: bool = True) -> grain.IterDataset:
    return self.base.dataset(split, batch_size, seed, shuffle)

  def batch_spec(self, batch_size: int) -> dict[str, jax.ShapeDtypeStruct]:
    return self.base.batch_spec(batch_size)

  def init_params(self, rng: Array) -> Any:
    params = self.base.init_params(rng)
    return {"student": params, "teacher": params}

  def loss(self, params: Any, batch: dict, rng: Array) -> tuple[Array, dict]:
    student = self.base.lm_problem(params["student"], batch)
    return self_distill_loss(student, self.base.lm_problem(params["teacher"], batch), rng,
                             self.config.distill.teacher_steps, self.config.distill.states,
                             self.config.distill.commit_smoothing,
                             self.config.diffusion.shift_logits and objectives.shifts(student))

  def params_from_checkpoint(self, restore: Callable[[Any], Any], abstract_params: Any) -> Any:
    """Student and teacher both start as the source run's model: a plain MDM run, or the
    student of the previous round (`config.distill.init_from_round`)."""
    part = abstract_params["student"]
    if self.config.distill.init_from_round:
      params = restore({"student": part})["student"]
    else:
      params = restore(part)
    return {"student": params, "teacher": jax.tree_util.tree_map(jnp.copy, params)}
