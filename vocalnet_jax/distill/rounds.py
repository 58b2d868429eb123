"""Rounds of self-distillation: each round's student becomes the next round's teacher.

Round r trains in WORKDIR/round<r>_<S_t>to<S_s> (an ordinary training run: it resumes
after preemption, and a finished round is skipped when the driver is rerun). After the
teacher and after every round, the text Thinker is scored on held-out prompts at every
step budget, so the table shows where few-step quality moves; WORKDIR/rounds.json is
rewritten after each entry.
"""
from __future__ import annotations

import json
import os
from typing import Any, Optional

import jax
import ml_collections

from vocalnet_jax.evaluation import text_eval
from vocalnet_jax.training import trainer


def round_workdir(workdir: str, index: int, teacher_steps: int) -> str:
  return os.path.join(workdir, f"round{index}_{teacher_steps}to{teacher_steps // 2}")


def round_config(config: ml_collections.ConfigDict, index: int,
                 source: str) -> ml_collections.ConfigDict:
  """Config of round `index` (1-based), initialised from `source` (teacher or last round)."""
  c = config.copy_and_resolve_references()
  c.distill.teacher_steps = config.distill.rounds[index - 1]
  c.distill.init_from_round = index > 1
  c.init_from = source
  return c


def step_budgets(config: ml_collections.ConfigDict) -> list[int]:
  """1, 2, 4, ... up to the block size: the budgets every round is scored at."""
  return [1 << i for i in range(config.diffusion.block_size.bit_length())]


def score(config: ml_collections.ConfigDict, workdir: str,
          prompts: tuple[Any, Any, list[str]]) -> list[dict]:
  """Exact match / valid rate / CER / NFE of the model in `workdir` at every step budget
  on `prompts` = `text_eval.held_out_prompts(...)`."""
  lm, params, tokenizer = text_eval.load_thinker(config, workdir)
  prefix, valid, answers = prompts
  rows = []
  for steps in step_budgets(config):
    cfg = text_eval.decoder_config(config, tokenizer, "mdm", steps)
    result = text_eval.evaluate(lm, params, tokenizer, prefix, valid, answers, cfg,
                                config.data.response_len, batch_size=min(64, len(answers)))
    rows.append({"steps": steps, **{k: v for k, v in result.items() if k != "examples"}})
  return rows


def run(config: ml_collections.ConfigDict, teacher_workdir: str, workdir: str,
        evaluate: Optional[bool] = None) -> list[dict]:
  """All rounds of `config.distill.rounds`; returns the rounds.json entries.

  evaluate: score each model (default: when the distilled model is the text Thinker;
  speech models are judged with launch/decode.py instead).
  """
  if evaluate is None:
    evaluate = config.distill.base_task == "text_lm"
  os.makedirs(workdir, exist_ok=True)
  entries = []
  prompts = (text_eval.held_out_prompts(config, config.distill.eval_examples) if evaluate
             else None)  # the same held-out prompts for every model

  def record(entry: dict, model_config: ml_collections.ConfigDict, model_dir: str) -> None:
    if evaluate:
      entry["eval"] = score(model_config, model_dir, prompts)
    entries.append(entry)
    if jax.process_index() == 0:
      with open(os.path.join(workdir, "rounds.json"), "w") as f:
        json.dump(entries, f, indent=1)

  teacher_config = config.copy_and_resolve_references()
  teacher_config.task = config.distill.base_task
  record({"round": 0, "model": "teacher", "workdir": teacher_workdir}, teacher_config,
         teacher_workdir)
  source = teacher_workdir
  for index, teacher_steps in enumerate(config.distill.rounds, start=1):
    c = round_config(config, index, source)
    target = round_workdir(workdir, index, teacher_steps)
    history = trainer.train(c, target)
    entry = {"round": index, "teacher_steps": teacher_steps, "student_steps": teacher_steps // 2,
             "workdir": target}
    if history:
      entry.update(first_loss=history[0]["loss"], final_loss=history[-1]["loss"],
                   final_teacher_agreement=history[-1]["teacher_agreement"])
    record(entry, c, target)
    source = target
  return entries
