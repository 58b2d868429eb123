"""Decode the text Thinker on held-out synthetic prompts and score the answers.

`load_thinker` restores a training workdir (latest orbax step) or makes a random init;
`decode_answers` runs AR or block-diffusion decoding in fixed-shape batches (one
compile per decoder configuration) and detokenizes; `evaluate` adds the metrics.
"""
from __future__ import annotations

from typing import Any, Optional, Union

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from data_pipelines import synthetic_text
from data_pipelines.prompt import prompt_ids
from vocalnet_jax.decoding import ar, block_diffusion, step_rules
from vocalnet_jax.decoding.lm import CachedLM, decoder_lm
from vocalnet_jax.diffusion import attention_masks
from vocalnet_jax.evaluation import text_metrics
from vocalnet_jax.modeling import restore
from vocalnet_jax.modeling.validate import ConfigError

Array = jax.Array
DecoderConfig = Union[ar.ARConfig, block_diffusion.BlockDiffusionConfig]


def load_thinker(config: ml_collections.ConfigDict, workdir: Optional[str] = None,
                 seed: int = 0) -> tuple[CachedLM, Any, Any]:
  """(CachedLM, params, tokenizer) from `workdir`'s latest checkpoint, or random init."""
  model, params = restore.load(config, workdir, seed=seed)
  return decoder_lm(model.module), params, model.text_tokenizer


def held_out_prompts(config: ml_collections.ConfigDict, n: int
                     ) -> tuple[Array, Array, list[str]]:
  """First n examples of the held-out split: prompts [n, P], validity [n, P], answers."""
  source = synthetic_text.source_from_config(config.data, "eval")
  examples = [source[i] for i in range(n)]
  answers = [source.tokenizer.decode(e["response"][e["response_valid"]]) for e in examples]
  return (jnp.asarray(np.stack([e["prompt"] for e in examples])),
          jnp.asarray(np.stack([e["prompt_valid"] for e in examples])), answers)


def generate(lm: CachedLM, params: Any, prefix: Array, valid: Array, rng: Array,
             cfg: DecoderConfig, max_new_tokens: int):
  """Dispatches on the decoder configuration's type."""
  module = ar if isinstance(cfg, ar.ARConfig) else block_diffusion
  return module.generate(lm, params, prefix, valid, rng, cfg=cfg, max_new_tokens=max_new_tokens)


def decode_answers(lm: CachedLM, params: Any, tokenizer: Any, prefix: Array, valid: Array,
                   cfg: DecoderConfig, max_new_tokens: int, batch_size: int = 64,
                   seed: int = 0) -> tuple[list[str], float, float]:
  """Answers as text, the mean NFE per batch and the NFE per emitted token (forwards over
  the longest answer of each batch and its eos: what a request waits for). The last batch
  is padded to shape with repeats (one shape, one compile)."""
  n = prefix.shape[0]
  texts, nfe, emitted = [], 0.0, 0
  for i in range(0, n, batch_size):
    rows = np.arange(i, i + batch_size) % n
    out = generate(lm, params, prefix[rows], valid[rows], jax.random.key(seed + i), cfg,
                   max_new_tokens)
    tokens, lengths = np.asarray(out.tokens), np.asarray(out.lengths)
    take = min(batch_size, n - i)
    texts += [tokenizer.decode(tokens[r, :lengths[r]]) for r in range(take)]
    nfe += float(out.nfe) * take
    emitted += min(int(lengths.max()) + 1, max_new_tokens) * take
  return texts, nfe / n, nfe / max(emitted, 1)


def evaluate(lm: CachedLM, params: Any, tokenizer: Any, prefix: Array, valid: Array,
             answers: list[str], cfg: DecoderConfig, max_new_tokens: int,
             batch_size: int = 64) -> dict:
  """Exact match (overall and per task), valid-answer rate (`synthetic_text.answer_is_valid`:
  tasks with many right answers), CER and NFE of one decoder configuration, with a few
  examples."""
  texts, nfe, nfe_per_token = decode_answers(lm, params, tokenizer, prefix, valid, cfg,
                                             max_new_tokens, batch_size)
  prompts, prompt_valid = np.asarray(prefix), np.asarray(valid)
  questions = [tokenizer.decode(p[v]) for p, v in zip(prompts, prompt_valid)]
  by_task: dict[str, list[int]] = {}
  for i, q in enumerate(questions):
    by_task.setdefault(synthetic_text.task_of(q), []).append(i)
  per_task = {task: text_metrics.exact_match([texts[i] for i in rows], [answers[i] for i in rows])
              for task, rows in sorted(by_task.items())}
  return {"exact_match": text_metrics.exact_match(texts, answers), "per_task": per_task,
          "valid_rate": float(np.mean([synthetic_text.answer_is_valid(q, t, a)
                                       for q, t, a in zip(questions, texts, answers)])),
          "char_error_rate": text_metrics.char_error_rate(texts, answers),
          "nfe_per_batch": nfe, "nfe_per_token": nfe_per_token, "num_examples": len(answers),
          "examples": [{"prediction": t, "reference": a} for t, a in zip(texts[:5], answers)]}


def encode_question(tokenizer: Any, question: str, prompt_len: int) -> tuple[Array, Array]:
  """A typed question as the training prompt layout: ids [1, P] and validity [1, P]."""
  ids = prompt_ids(tokenizer, tokenizer.encode(question))
  if len(ids) > prompt_len:
    raise ValueError(f"question needs {len(ids)} tokens > data.prompt_len={prompt_len}")
  ex = synthetic_text.pack_example(ids, [tokenizer.eos_id], prompt_len, 1, tokenizer.pad_id)
  return jnp.asarray(ex["prompt"][None]), jnp.asarray(ex["prompt_valid"][None])


def decoder_config(config: ml_collections.ConfigDict, tokenizer: Any, mode: str,
                   steps: int = 0, rule: str = "topk",
                   cache_update: str = block_diffusion.DEFAULT_CACHE_UPDATE,
                   threshold: float = step_rules.THRESHOLD) -> DecoderConfig:
  """AR greedy, or block diffusion with the config's block size and schedule
  (steps 0 = config.diffusion.sampler_steps; threshold: the threshold rule's confidence)."""
  if mode == "ar":
    return ar.ARConfig(tokenizer.eos_id, suppress=(tokenizer.mask_id,))
  d = config.diffusion
  trained_for = d.get("commit_order", "confidence")
  if (trained_for == "left_to_right") != (rule == "left_to_right"):
    logging.warning("decoding with rule=%s a model trained on the states of a sampler that "
                    "commits by %s (config.diffusion.commit_order): states it never saw",
                    rule, trained_for)
  try:
    return block_diffusion.BlockDiffusionConfig(
        d.block_size, steps or d.sampler_steps, tokenizer.mask_id, tokenizer.eos_id, rule=rule,
        threshold=threshold, schedule=d.schedule, cache_update=cache_update,
        shift_logits=d.shift_logits,
        clean_causal=attention_masks.clean_is_causal(d, d.shift_logits))
  except ValueError as e:  # e.g. --cache_update=reuse_last_step on a shifted-logits model
    raise ConfigError(f"{e} (config.diffusion.shift_logits={d.shift_logits})") from None
