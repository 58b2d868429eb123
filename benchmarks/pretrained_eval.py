"""Typed exact match of a run's Thinker on the corpus's questions, per template, AR or MDM.

  python -m benchmarks.pretrained_eval --checkpoint=w/smollm2/ar --split=heldout --n=50 \
      --out=benchmarks/results/pretrained_smollm2_ar_cpu.json
  python -m benchmarks.pretrained_eval --checkpoint=w/smollm2/mdm --steps=1,2,4 --out=...

Why: the pretrained recipe (`configs/recipes/smollm2.py`) is judged on `heldout`, phrasings of
the templates never trained on, against the from-scratch Thinker on the same questions. Each
row reads the stored split's first n questions (the ones a spoken evaluation hears), types
them into the Thinker's own prompt (its tokenizer and chat template) and decodes greedily (AR)
or by block diffusion at each S of --steps (forwards per token count a batch's longest
answer: --batch_size=1 gives each request's own); exact match is also reported on the arithmetic
templates together, per template, and by the longest number in the answer
(`evaluation.qa_scores`).
"""
from __future__ import annotations

import time

import jax
import jax.numpy as jnp
from absl import app, flags

from data_pipelines import speech_loader
from launch import logs
from vocalnet_jax.decoding import step_rules
from vocalnet_jax.decoding.block_diffusion import CACHE_UPDATES, DEFAULT_CACHE_UPDATE
from vocalnet_jax.decoding.lm import decoder_lm
from vocalnet_jax.evaluation import qa_scores, result_file, text_eval
from vocalnet_jax.modeling import build, partitioning, pretrained, restore, run_config

_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Training workdir (its config.json).")
_SPLIT = flags.DEFINE_string("split", "heldout", "Corpus split whose questions are typed.")
_N = flags.DEFINE_integer("n", 50, "Questions: the stored split's first n.")
_STEPS = flags.DEFINE_list("steps", ["1"], "MDM denoising steps per block, one row each.")
_RULE = flags.DEFINE_enum("rule", "topk", step_rules.RULES,
                          "MDM commit rule (threshold: Fast-dLLM's, at most --steps steps).")
_THRESHOLD = flags.DEFINE_float(
    "threshold", step_rules.THRESHOLD,
    "--rule=threshold: commit a masked token "
    "once its confidence passes this (lower: fewer forwards).")
_CACHE_UPDATE = flags.DEFINE_enum(
    "cache_update", DEFAULT_CACHE_UPDATE, CACHE_UPDATES,
    "How a finished block's clean K/V enter the cache (next_block: in the next block's first "
    "step, no forward of its own; extra_forward: one more forward per block).")
_THINKER = flags.DEFINE_string("thinker", "", "gguf:FILE | hf:DIR: the Thinker's params from "
                               "this pretrained checkpoint instead of the run's (zero-shot).")
_DATA_DIR = flags.DEFINE_string("data_dir", "", "The prepared corpus to read the questions "
                                "from (default: the run's config.data.dir).")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 0, "Questions decoded together (0: all n "
                                   "at once); 1 counts each request's own forwards, which "
                                   "the threshold rule varies per question.")
_OUT = flags.DEFINE_string("out", None, "Result file (benchmarks/results/pretrained_*.json).")
flags.mark_flags_as_required(["checkpoint", "out"])


def questions(config, split: str, n: int) -> list[dict[str, str]]:
  """The stored split's first n (question, answer, template) texts."""
  source = speech_loader.open_source(build.corpus_dataset_dir(config), split)
  keys = ("question_text", "answer_text", "template")
  return [{k: speech_loader.record_text(source[i][k]) for k in keys}
          for i in range(min(n, len(source)))]


def main(argv):
  del argv
  config = run_config.resolve(None, _CHECKPOINT.value)
  if _DATA_DIR.value:
    config.data.dir = _DATA_DIR.value
  model = build.build(config)
  tok = model.text_tokenizer
  mesh = partitioning.make_mesh(config.mesh, jax.devices()[:1])
  abstract = restore.abstract_params(
      model, mesh, partitioning.rules_from_config(config.logical_axis_rules))
  # the Thinker alone: what typed questions need (a stage-0 run trains nothing else)
  if _THINKER.value:
    params = pretrained.load_part("thinker", _THINKER.value, abstract["thinker"], config)
  else:
    # a distillation run answers with its student (model.params_scope)
    params = restore.restore_params(_CHECKPOINT.value, abstract["thinker"],
                                    scope=(*model.params_scope, "thinker"))
  lm = decoder_lm(model.module.thinker)
  rows = questions(config, _SPLIT.value, _N.value)
  encoded = [text_eval.encode_question(tok, r["question_text"], config.data.prompt_len)
             for r in rows]
  prefix, valid = (jnp.concatenate(x) for x in zip(*encoded))  # [n, P]
  settings = [("ar", 0)] if config.objective == "ar" else [("mdm", int(s)) for s in _STEPS.value]
  results = []
  for mode, steps in settings:
    cfg = text_eval.decoder_config(config, tok, mode, steps=steps, rule=_RULE.value,
                                   threshold=_THRESHOLD.value, cache_update=_CACHE_UPDATE.value)
    tick = time.perf_counter()
    texts, nfe, nfe_per_token = text_eval.decode_answers(
        lm, params, tok, prefix, valid, cfg, config.data.response_len,
        batch_size=_BATCH_SIZE.value or len(rows))
    seconds = time.perf_counter() - tick
    results.append({"decoder": mode, "steps_per_block": steps or None,
                    "block_size": config.diffusion.block_size if mode == "mdm" else None,
                    "rule": _RULE.value if mode == "mdm" else None,
                    "threshold": step_rules.recorded_threshold(
                        _RULE.value if mode == "mdm" else None, _THRESHOLD.value),
                    "cache_update": _CACHE_UPDATE.value if mode == "mdm" else None,
                    **qa_scores.scores(texts, rows), "nfe_per_token": nfe_per_token,
                    "batch_size": _BATCH_SIZE.value or len(rows),
                    "decode_s_with_compile": round(seconds, 1),
                    "examples": [{"question": r["question_text"], "prediction": t,
                                  "reference": r["answer_text"]}
                                 for r, t in zip(rows, texts)]})
    print({k: results[-1][k] for k in ("decoder", "steps_per_block", "exact_match",
                                       "arithmetic_exact_match")}, flush=True)
  result_file.write(_OUT.value, {
      "checkpoint_step": None if _THINKER.value else restore.checkpoint_step(_CHECKPOINT.value),
      "thinker": _THINKER.value or "the run's",
      "objective": config.objective, "split": _SPLIT.value, "n": len(rows),
      "model": config.model.to_dict(), "prompt_len": config.data.prompt_len,
      "response_len": config.data.response_len}, {"rows": results},
      command=result_file.command_line(module="benchmarks.pretrained_eval"))


if __name__ == "__main__":
  app.run(logs.main_quietly(main))
