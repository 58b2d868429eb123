"""Train state and optimizer: AdamW with linear warmup + cosine decay and clipping."""
from __future__ import annotations

from typing import Any, Optional, Sequence

import flax.struct
from flax.core.meta import AxisMetadata
import jax
import ml_collections
import optax


class TrainState(flax.struct.PyTreeNode):
  """Everything a step changes; a checkpoint is exactly this."""
  step: jax.Array
  params: Any
  opt_state: Any

  def apply_gradients(self, grads: Any, tx: optax.GradientTransformation) -> "TrainState":
    updates, opt_state = tx.update(grads, self.opt_state, self.params)
    return self.replace(step=self.step + 1, params=optax.apply_updates(self.params, updates),
                        opt_state=opt_state)


def learning_rate_schedule(train_cfg: ml_collections.ConfigDict) -> optax.Schedule:
  """Linear warmup to `learning_rate`, cosine decay to `min_lr_ratio * learning_rate`."""
  warmup = min(train_cfg.warmup_steps, max(train_cfg.steps - 1, 0))
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=train_cfg.learning_rate, warmup_steps=warmup,
      decay_steps=max(train_cfg.steps, warmup + 1),
      end_value=train_cfg.learning_rate * train_cfg.min_lr_ratio)


def under_any(name: str, paths: Sequence[str]) -> bool:
  """Whether the '/'-joined param path `name` is one of `paths` or lies below one."""
  return any(name == t or name.startswith(t + "/") for t in paths)


def is_trained(path: tuple, trainable: Optional[Sequence[str]],
               frozen: Sequence[str] = ()) -> bool:
  """Whether a param at `path` (a tree path) lies under one of the `trainable` paths
  (None: all) and under none of the `frozen` ones ("thinker", "thinker/embedder",
  "student/adaptor": dict keys joined by '/')."""
  name = "/".join(str(k.key) for k in path if isinstance(k, jax.tree_util.DictKey))
  return (trainable is None or under_any(name, trainable)) and not under_any(name, frozen)


def make_optimizer(train_cfg: ml_collections.ConfigDict,
                   trainable: Optional[Sequence[str]] = None,
                   frozen: Sequence[str] = ()) -> optax.GradientTransformation:
  """clip_by_global_norm -> AdamW(schedule); every param outside `trainable` or inside
  `frozen` (param paths, see `is_trained`) is frozen: zero updates, no optimizer state."""
  tx = optax.chain(
      optax.clip_by_global_norm(train_cfg.grad_clip),
      optax.adamw(learning_rate_schedule(train_cfg), b1=train_cfg.b1, b2=train_cfg.b2,
                  weight_decay=train_cfg.weight_decay))
  if trainable is None and not frozen:
    return tx
  labels = lambda params: jax.tree_util.tree_map_with_path(  # noqa: E731
      lambda path, _: "train" if is_trained(path, trainable, frozen) else "freeze", params,
      is_leaf=lambda x: isinstance(x, AxisMetadata))  # a boxed param is one leaf
  return optax.multi_transform({"train": tx, "freeze": optax.set_to_zero()}, labels)


def freeze(params: Any, trainable: Optional[Sequence[str]], frozen: Sequence[str] = ()) -> Any:
  """stop_gradient on every param `is_trained` rejects, so no backward pass is spent on
  frozen parts."""
  if trainable is None and not frozen:
    return params
  return jax.tree_util.tree_map_with_path(
      lambda path, v: v if is_trained(path, trainable, frozen) else jax.lax.stop_gradient(v),
      params)
