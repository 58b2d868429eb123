"""Training objectives on logits: AR next-token CE, the MDM ELBO, reverse KL.

Each returns a scalar normalised by a token count that does not depend on the noise
draw (valid response tokens), so losses of different draws are comparable.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax

Array = jax.Array


def token_cross_entropy(logits: Array, targets: Array) -> Array:
  """logits [batch, L, vocab] float, targets [batch, L] int -> [batch, L]."""
  return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), targets)


def chunked_cross_entropy(hidden: Array, targets: Array, logits_fn: Callable[[Array], Array],
                          chunk: int = 0) -> tuple[Array, Array]:
  """Per-token CE and argmax of `logits_fn(hidden)`, `chunk` positions at a time.

  hidden [batch, L, embed]; targets [batch, L]; logits_fn: [batch, l, embed] -> [batch, l,
  vocab]. Returns (ce [batch, L] float32, predicted ids [batch, L]). With 0 < chunk < L the
  sequence is scanned in pieces, each rematerialised in the backward pass, so only one
  piece's [batch, chunk, vocab] logits (not all L positions') exist at once; same values.
  """
  def piece(h: Array, t: Array) -> tuple[Array, Array]:
    logits = logits_fn(h)  # [batch, l, vocab]
    return token_cross_entropy(logits, t), jnp.argmax(logits, axis=-1)

  b, length = targets.shape
  if chunk <= 0 or chunk >= length:
    return piece(hidden, targets)
  n = -(-length // chunk)
  pad = n * chunk - length
  # [n, batch, chunk, ...]: the scanned axis first
  split = lambda x: jnp.moveaxis(  # noqa: E731
      jnp.pad(x, ((0, 0), (0, pad)) + ((0, 0),) * (x.ndim - 2)).reshape(
          (b, n, chunk) + x.shape[2:]), 1, 0)
  step = jax.checkpoint(lambda _, xs: (None, piece(*xs)))
  _, (ce, predicted) = jax.lax.scan(step, None, (split(hidden), split(targets)))
  merge = lambda x: jnp.moveaxis(x, 0, 1).reshape(b, n * chunk)[:, :length]  # noqa: E731
  return merge(ce), merge(predicted)


def ar_loss(logits: Array, targets: Array, loss_mask: Array) -> Array:
  """Mean next-token CE over `loss_mask` positions (logits already aligned to targets)."""
  return ar_loss_from_ce(token_cross_entropy(logits, targets), loss_mask)


def ar_loss_from_ce(ce: Array, loss_mask: Array) -> Array:
  """`ar_loss` from per-token CE [batch, L]."""
  return jnp.sum(ce * loss_mask) / jnp.maximum(jnp.sum(loss_mask), 1)


def mdm_loss(logits: Array, targets: Array, scored: Array, weight: Array,
             valid: Array) -> Array:
  """Masked-diffusion ELBO: sum over scored tokens of weight * CE, per valid token.

  logits [batch, L, vocab]; targets, scored, valid [batch, L]; weight [batch, L] (the
  corruption's per-position weight). The count of valid tokens does not depend on the
  noise draw, so the estimate is unbiased when the weights are.
  """
  return mdm_loss_from_ce(token_cross_entropy(logits, targets), scored, weight, valid)


def mdm_loss_from_ce(ce: Array, scored: Array, weight: Array, valid: Array) -> Array:
  """`mdm_loss` from per-token CE [batch, L]."""
  return jnp.sum(jnp.where(scored, weight * ce, 0.0)) / jnp.maximum(jnp.sum(valid), 1)


def reverse_kl(student_logits: Array, teacher_logits: Array, mask: Array) -> Array:
  """Mean over `mask` positions of KL(p_student || p_teacher); mode-seeking, as used
  for few-step distillation. logits [batch, L, vocab]; mask [batch, L]."""
  log_p = jax.nn.log_softmax(student_logits.astype(jnp.float32), axis=-1)
  log_q = jax.nn.log_softmax(teacher_logits.astype(jnp.float32), axis=-1)
  kl = jnp.sum(jnp.exp(log_p) * (log_p - log_q), axis=-1)  # [batch, L]
  return jnp.sum(kl * mask) / jnp.maximum(jnp.sum(mask), 1)


def ctc_per_token(logits: Array, frames_valid: Array, labels: Array, labels_valid: Array,
                  blank_id: int) -> Array:
  """CTC negative log-likelihood of the label sequences, summed and divided by the number
  of valid labels (a per-token loss like the others).

  logits [batch, frames, vocab]; frames_valid [batch, frames]; labels [batch, L];
  labels_valid [batch, L] (right-padded). Examples whose labels cannot fit their frames
  (optax gives them a huge finite value) are dropped so one short clip cannot swamp a batch.
  """
  nll = optax.ctc_loss(logits.astype(jnp.float32), 1.0 - frames_valid.astype(jnp.float32),
                       labels, 1.0 - labels_valid.astype(jnp.float32), blank_id=blank_id)
  n_labels = jnp.sum(labels_valid, axis=1)
  repeats = jnp.sum((labels[:, 1:] == labels[:, :-1]) & labels_valid[:, 1:], axis=1)
  feasible = jnp.sum(frames_valid, axis=1) >= n_labels + repeats  # a blank between repeats
  return (jnp.sum(jnp.where(feasible, nll, 0.0))
          / jnp.maximum(jnp.sum(jnp.where(feasible, n_labels, 0)), 1))
