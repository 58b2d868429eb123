"""The text evaluator splits exact match by task, consistently with the overall score."""
import numpy as np

from configs import ar
from configs import mdm as mdm_config
from data_pipelines.synthetic_text import task_of
from vocalnet_jax.evaluation import text_eval


def test_per_task_exact_match_averages_to_the_overall_score():
  config = ar.get_config("tiny,text")
  lm, params, tokenizer = text_eval.load_thinker(config)
  prefix, valid, answers = text_eval.held_out_prompts(config, 40)
  cfg = text_eval.decoder_config(config, tokenizer, "ar")
  # Score against the model's own answers for half the rows, so some tasks are right.
  texts, _, _ = text_eval.decode_answers(lm, params, tokenizer, prefix, valid, cfg, 16, 20)
  mixed = [t if i % 2 else a for i, (t, a) in enumerate(zip(texts, answers))]
  result = text_eval.evaluate(lm, params, tokenizer, prefix, valid, mixed, cfg, 16, 20)
  questions = [tokenizer.decode(np.asarray(p)[np.asarray(v)]) for p, v in zip(prefix, valid)]
  counts = {t: sum(task_of(q) == t for q in questions) for t in result["per_task"]}
  assert set(result["per_task"]) <= set(config.data.tasks) and sum(counts.values()) == 40
  weighted = sum(result["per_task"][t] * n for t, n in counts.items()) / 40
  np.testing.assert_allclose(weighted, result["exact_match"])
  assert result["exact_match"] >= 0.5  # the rows scored against the model's own answers


def test_decoder_config_passes_the_threshold_rules_confidence():
  config = mdm_config.get_config("tiny,text")
  _, _, tokenizer = text_eval.load_thinker(config)
  cfg = text_eval.decoder_config(config, tokenizer, "mdm", 2, rule="threshold", threshold=0.4)
  assert (cfg.rule, cfg.threshold, cfg.steps) == ("threshold", 0.4, 2)
