"""Where an adapted MDM's wrong answers go wrong, against the AR model on the same prompts.

On the first n held-out prompts of `tiny,text`, for the pre-trained AR model (before any
adaptation), the AR model fine-tuned on the QA tasks and an MDM row adapted from the same
pre-training (one seed of `benchmarks/mdm_parity.sh`):
  * decoded answers (AR greedy, MDM at S = B/4): exact match, and for every wrong answer the
    first wrong position: the first token, a later answer token, an eos too early, or the
    eos (a short answer that does not stop: the eos-filled remainder of its block); its
    block offset; the first token's confidence on right and wrong answers;
  * teacher forcing with the reference before every position: the AR next-token accuracy of
    the three models (the MDM's first token of a block is this prediction when its logits
    are shifted) and the MDM denoiser's accuracy with the earlier blocks clean and its block
    all [MASK] (the state S = 1 decodes from; other S only reorder commits inside a block)
    or with only the scored token masked (the denoiser's best case, no decoding-order effect),
    and for a row trained and decoded left to right, from exactly the state its S = B/4
    decoder predicts each position from; split into first token / later answer tokens /
    the eos-filled remainder, per task.

  python -m benchmarks.parity_diagnosis --workdir=workdirs/mdm_parity/s2 \
      --mdm_row=mdm_adapted_shift_b4 --out=benchmarks/results/parity_diagnosis_seed2.json
"""
from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from data_pipelines import synthetic_text
from launch import logs
from vocalnet_jax.decoding.lm import decoder_lm
from vocalnet_jax.diffusion import attention_masks, masking
from vocalnet_jax.evaluation import result_file, text_eval
from vocalnet_jax.modeling import restore, run_config
from vocalnet_jax.training import objectives, tasks

_WORKDIR = flags.DEFINE_string("workdir", None, "One seed's folder of the parity script's W.")
_PRETRAIN = flags.DEFINE_string("pretrain", "pretrain", "Row of the pre-trained AR model.")
_AR_ROW = flags.DEFINE_string("ar_row", "ar_pretrained", "Row of the fine-tuned AR model.")
_MDM_ROW = flags.DEFINE_string("mdm_row", "mdm_adapted_shift_b4", "Row of the adapted MDM.")
_NUM = flags.DEFINE_integer("num_examples", 512, "Held-out prompts.")
_OUT = flags.DEFINE_string("out", None, "Result file to write.")
flags.mark_flags_as_required(["workdir", "out"])


class Loaded:
  """A trained row: its config, params and decoder entry points."""

  def __init__(self, workdir: str):
    self.config = run_config.resolve(None, workdir)
    model, self.params = restore.load(self.config, workdir)
    self.module, self.tokenizer = model.module, model.text_tokenizer
    self.fns = tasks.decoder_fns(self.module, self.params)
    steps = [int(d) for d in os.listdir(os.path.join(workdir, "checkpoints")) if d.isdigit()]
    self.step = max(steps)  # the checkpoint restore.load read


def held_out(config: Any, n: int) -> dict[str, np.ndarray]:
  """The first n held-out QA examples, stacked, with their questions' tasks."""
  source = synthetic_text.source_from_config(config.data, "eval")
  examples = [source[i] for i in range(n)]
  out = {k: np.stack([e[k] for e in examples]) for k in examples[0]}
  tok = source.tokenizer
  out["task"] = np.array([synthetic_text.task_of(tok.decode(e["prompt"][e["prompt_valid"]]))
                          for e in examples])
  return out


def _batch(m: Loaded, data: dict) -> objectives.ResponseBatch:
  return objectives.ResponseBatch(m.fns.embed(jnp.asarray(data["prompt"])),
                                  jnp.asarray(data["prompt_valid"]),
                                  jnp.asarray(data["response"]),
                                  jnp.asarray(data["response_valid"]))


def ar_teacher_forced(m: Loaded, data: dict) -> np.ndarray:
  """[n, R, vocab] next-token log-probs with the reference before each position: the causal
  clean stream's shifted states (equal to the AR objective's, see its test)."""
  rb = _batch(m, data)
  states = objectives.denoiser_states(m.fns, rb, rb.response, rb.response, rb.response_valid,
                                      1, causal_clean=True)
  return np.asarray(jax.nn.log_softmax(m.fns.logits(states.shifted_context())))


def mdm_teacher_forced(m: Loaded, data: dict, state: str) -> np.ndarray:
  """[n, R, vocab] log-probs of the MDM denoiser with every earlier block clean and, in its
  own block, `state`: `block` all [MASK] (the state S = 1 decodes from); `one` only the
  predicted position masked (B passes: the denoiser's best case); `left_to_right` the
  state a left-to-right decoder at S = B/4 predicts each position from (its group of B/S
  and every later offset masked, the earlier ones clean; S passes)."""
  d, tok = m.config.diffusion, m.tokenizer
  block, rb = d.block_size, _batch(m, data)
  valid = masking.block_valid(rb.response_valid, block)
  clean = masking.fill_block_tail(rb.response, rb.response_valid, valid, tok.eos_id)
  causal = attention_masks.clean_is_causal(d, d.shift_logits)

  def log_probs(masked: jax.Array) -> np.ndarray:  # masked: [R] bool
    noisy = jnp.where(masked[None, :] & valid, tok.mask_id, clean)
    logits = objectives.denoiser_logits(m.fns, rb, noisy, clean, valid, block, d.layout,
                                        d.shift_logits, causal)
    return np.asarray(jax.nn.log_softmax(logits))

  offset = np.arange(clean.shape[1]) % block
  # the left-to-right sampler's masked count before each step masks a block's last offsets
  # (`masking.left_to_right_priority`); a step commits down to the next step's count
  left = [*np.asarray(masking.topk_remaining(jnp.int32(block), decode_steps(block))), 0]
  passes = {"block": [(offset >= 0, offset >= 0)],
            "one": [(offset == k, offset == k) for k in range(block)],
            "left_to_right": [(offset >= block - n, (offset >= block - n)
                               & (offset < block - after)) for n, after in zip(left, left[1:])]
            }[state]
  out = np.zeros(clean.shape + (m.module.vocab_size,), np.float32)
  for masked, predicted in passes:
    out[:, predicted] = log_probs(jnp.asarray(masked))[:, predicted]
  return out


def decode_steps(block: int) -> int:
  """S = B/4, the steps every row is decoded and diagnosed at."""
  return max(block // 4, 1)


def decode_rule(config) -> str:
  """The rule a row is decoded with: left to right if trained on that sampler's states."""
  return ("left_to_right" if config.diffusion.get("commit_order", "confidence")
          == "left_to_right" else "topk")


def position_kinds(data: dict, block: int) -> dict[str, np.ndarray]:
  """[n, R] masks: the answer's first token, its later tokens, the eos ending it, and the
  eos-filled remainder of its last block after that eos."""
  rv = data["response_valid"]
  length = rv.sum(1, keepdims=True)  # answer + eos
  idx = np.arange(rv.shape[1])[None, :]
  end = -(-length // block) * block
  kinds = {"first": idx == 0, "later": (idx > 0) & (idx < length - 1), "eos": idx == length - 1,
           "remainder": (idx >= length) & (idx < end)}
  return {k: np.broadcast_to(v, rv.shape) for k, v in kinds.items()}


def accuracy_table(log_probs: np.ndarray, targets: np.ndarray, kinds: dict,
                   task: np.ndarray) -> dict:
  """Argmax accuracy and mean probability of the target per position kind, overall and per
  task."""
  pred = log_probs.argmax(-1)
  p_target = np.exp(np.take_along_axis(log_probs, targets[..., None], -1)[..., 0])
  out = {}
  for kind, where in kinds.items():
    row = {"accuracy": float((pred == targets)[where].mean()),
           "p_target": float(p_target[where].mean()), "tokens": int(where.sum())}
    for t in sorted(set(task)):
      sel = where & (task == t)[:, None]
      row[t] = float((pred == targets)[sel].mean()) if sel.any() else None
    out[kind] = row
  return out


def decoded_errors(m: Loaded, data: dict, mode: str, first_log_probs: np.ndarray) -> dict:
  """Decodes every prompt (AR greedy / MDM at S = B/4) and classifies the wrong answers by
  their first wrong position. first_log_probs: [n, vocab] the first token's log-probs (the
  prefix's last state: the same for AR and a shifted MDM)."""
  block = m.config.diffusion.block_size
  cfg = text_eval.decoder_config(m.config, m.tokenizer, mode, decode_steps(block),
                                 rule=decode_rule(m.config))
  texts, _, _ = text_eval.decode_answers(decoder_lm(m.module), m.params, m.tokenizer,
                                         jnp.asarray(data["prompt"]),
                                         jnp.asarray(data["prompt_valid"]), cfg,
                                         m.config.data.response_len)
  tok, task = m.tokenizer, data["task"]
  refs = [tok.decode(r[v]) for r, v in zip(data["response"], data["response_valid"])]
  kinds = {"first": 0, "later": 0, "early_eos": 0, "no_eos": 0}
  offsets = np.zeros(block, int)
  conf_right, conf_wrong, per_task = [], [], {}
  first_conf = np.exp(first_log_probs.max(-1))
  for i, (pred, ref) in enumerate(zip(texts, refs)):
    per_task.setdefault(task[i], []).append(pred == ref)
    (conf_right if pred == ref else conf_wrong).append(first_conf[i])
    if pred == ref:
      continue
    j = next((k for k, (a, b) in enumerate(zip(pred, ref)) if a != b), min(len(pred), len(ref)))
    offsets[j % block] += 1
    kinds["first" if j == 0 and pred else "early_eos" if j == len(pred)
          else "no_eos" if j == len(ref) else "later"] += 1
  wrong = sum(kinds.values())
  return {"exact_match": 1.0 - wrong / len(refs), "wrong": wrong,
          "first_wrong_at": kinds, "first_wrong_block_offset": offsets.tolist(),
          "first_token_confidence_right": float(np.mean(conf_right)) if conf_right else None,
          "first_token_confidence_wrong": float(np.mean(conf_wrong)) if conf_wrong else None,
          "per_task": {t: float(np.mean(v)) for t, v in sorted(per_task.items())},
          "predictions": texts}


def main(argv):
  del argv
  w = _WORKDIR.value.rstrip("/")
  pre, ar, mdm = (Loaded(f"{w}/{r}") for r in (_PRETRAIN.value, _AR_ROW.value, _MDM_ROW.value))
  data = held_out(ar.config, _NUM.value)
  block = mdm.config.diffusion.block_size
  kinds = position_kinds(data, block)
  targets = np.asarray(masking.fill_block_tail(
      jnp.asarray(data["response"]), jnp.asarray(data["response_valid"]),
      masking.block_valid(jnp.asarray(data["response_valid"]), block), mdm.tokenizer.eos_id))
  teacher = {"pretrained_ar": ar_teacher_forced(pre, data), "ar": ar_teacher_forced(ar, data),
             "mdm_as_ar": ar_teacher_forced(mdm, data),
             "mdm_block_masked": mdm_teacher_forced(mdm, data, "block"),
             "mdm_one_masked": mdm_teacher_forced(mdm, data, "one")}
  if decode_rule(mdm.config) == "left_to_right":
    teacher["mdm_left_to_right_state"] = mdm_teacher_forced(mdm, data, "left_to_right")
  answer_kinds = {k: v for k, v in kinds.items() if k != "remainder"}
  tables = {name: accuracy_table(lp, targets, kinds if name.startswith("mdm_") and
                                 name != "mdm_as_ar" else answer_kinds, data["task"])
            for name, lp in teacher.items()}
  decoded = {"pretrained_ar": decoded_errors(pre, data, "ar", teacher["pretrained_ar"][:, 0]),
             "ar": decoded_errors(ar, data, "ar", teacher["ar"][:, 0]),
             "mdm": decoded_errors(mdm, data, "mdm", teacher["mdm_block_masked"][:, 0])}
  same = np.array([p == r for p, r in zip(decoded["ar"]["predictions"],
                                              decoded["mdm"]["predictions"])])
  mdm_first = teacher["mdm_block_masked"][:, 0].argmax(-1)
  ar_first = teacher["ar"][:, 0].argmax(-1)
  metrics = {
      "teacher_forced": tables,
      "decoded": {k: {kk: vv for kk, vv in v.items() if kk != "predictions"}
                  for k, v in decoded.items()},
      "first_token_agreement_ar_mdm": float((mdm_first == ar_first).mean()),
      "same_answer_ar_mdm": float(same.mean()),
      "examples": [{"task": t, "ar": a, "mdm": b} for t, a, b in zip(
          data["task"][:40], decoded["ar"]["predictions"], decoded["mdm"]["predictions"])
          if a != b][:12]}
  config = {"workdir_rows": [_PRETRAIN.value, _AR_ROW.value, _MDM_ROW.value],
            "checkpoint_steps": [pre.step, ar.step, mdm.step],
            "seed": int(ar.config.seed), "block_size": block, "num_examples": _NUM.value,
            "mdm_diffusion": mdm.config.diffusion.to_dict()}
  result_file.write(_OUT.value, config, metrics,
                    command=result_file.command_line(module="benchmarks.parity_diagnosis"))
  for name, table in tables.items():
    print(name, {k: round(v["accuracy"], 3) for k, v in table.items()})
  for name, d in decoded.items():
    print(name, round(d["exact_match"], 3), d["first_wrong_at"], d["per_task"])


if __name__ == "__main__":
  app.run(logs.main_quietly(main))
