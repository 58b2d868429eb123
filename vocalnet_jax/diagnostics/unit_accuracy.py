"""How well a Talker predicts the reference speech units: teacher-forced and free-running.

Teacher-forced: each reference unit (and the closing eos) predicted from the reference
before it, as decoding meets it: the AR Talker sees every earlier reference unit; the MDM
Talker sees the earlier chunks clean and its own chunk fully masked (one step per chunk).
Free-running: the Talker speaks the whole answer from the reference text and its Thinker
states, feeding back its own units (what it says when no reference helps); scored as
1 - unit edit distance / reference units, the unit analogue of 1 - WER.
Both condition on the reference text, so they measure the Talker alone, not the Thinker.
Free-running accuracy is also given per question template, so two splits whose answers
mix the templates differently can be compared template by template.
"""
from __future__ import annotations

import json
import os
from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
import jiwer
import ml_collections
import numpy as np

from data_pipelines import speech_loader
from vocalnet_jax.decoding import streaming
from vocalnet_jax.diffusion import masking
from vocalnet_jax.modeling import partitioning, restore
from vocalnet_jax.modeling.validate import ConfigError
from vocalnet_jax.training import objectives, tasks
from vocalnet_jax.training.speech_tasks import SpeechTalkerTask

Array = jax.Array


def _words(units: Sequence[int]) -> str:
  return " ".join(f"u{int(u)}" for u in units)


def unit_edit_accuracy(hyps: Sequence[Sequence[int]], refs: Sequence[Sequence[int]]) -> float:
  """1 - (total Levenshtein edits of unit sequences) / (total reference units)."""
  if len(hyps) != len(refs):
    raise ValueError(f"hyps ({len(hyps)}) and refs ({len(refs)}) must have the same length")
  if not all(len(r) for r in refs):
    raise ValueError("every reference needs at least one unit")
  edits = 0
  for hyp, ref in zip(hyps, refs):
    if not len(hyp):
      edits += len(ref)
      continue
    out = jiwer.process_words(_words(ref), _words(hyp))
    edits += out.substitutions + out.deletions + out.insertions
  return 1.0 - edits / sum(len(r) for r in refs)


def teacher_forced_counts(problem: objectives.LMProblem, objective: str) -> tuple[Array, Array]:
  """(right, scored): reference speech targets (units + eos; MDM: + the eos-filled chunk
  tail) and how many of them the argmax predicts, given the reference before them (module
  docstring)."""
  batch = problem.batch
  if objective == "ar":
    metrics = objectives.ar_objective(problem.fns, batch, start_id=problem.start_id)[1]
    return metrics["accuracy"] * metrics["target_tokens"], metrics["target_tokens"]
  valid = masking.block_valid(batch.response_valid, problem.block_size)  # [b, S]
  target = masking.fill_block_tail(batch.response, batch.response_valid, valid, problem.eos_id)
  noisy = jnp.where(valid, problem.mask_id, target)  # every chunk fully masked
  logits = objectives.denoiser_logits(problem.fns, batch, noisy, target, valid,
                                      problem.block_size)  # two-stream: earlier chunks clean
  return jnp.sum((jnp.argmax(logits, -1) == target) & valid), jnp.sum(valid)


def free_running_units(pipe: streaming.SpeechPipeline, tokens: np.ndarray, hidden: np.ndarray,
                       num_text: int) -> np.ndarray:
  """The Talker's units for one answer's text tokens [R] and Thinker states [R, embed]
  (the first num_text positions are the answer through its eos), decoded chunk by chunk
  as streaming does, up to its first eos."""
  cfg, v = pipe.cfg, pipe.speech_vocab
  block = cfg.text_block
  slots = cfg.text_slots
  tokens = np.pad(tokens, (0, slots - len(tokens)))[None]  # [1, slots]
  hidden = np.pad(hidden, ((0, slots - len(hidden)), (0, 0)))[None]  # [1, slots, embed]
  cache, carry = pipe.empty_talker()
  for j in range(cfg.num_text_blocks):
    cache = streaming.talker_write_text(
        pipe.model, pipe.params, cache, jnp.asarray(tokens[:, j * block:(j + 1) * block]),
        jnp.asarray(hidden[:, j * block:(j + 1) * block]), jnp.int32(j), cfg=cfg)
  rng, out = jax.random.key(0), []
  for k in range(cfg.num_speech_chunks):
    rng, key = jax.random.split(rng)
    units, carry, cache, _ = streaming.talker_chunk(
        pipe.model, pipe.params, cache, carry, jnp.int32(k), jnp.int32(num_text), key,
        cfg=cfg, mask_id=v.mask_id, eos_id=v.eos_id, bos_id=v.bos_id)
    units = np.asarray(units[0])
    stop = np.flatnonzero(units >= v.num_units)
    out.append(units[:stop[0] if stop.size else None])
    if stop.size:
      break
  return np.concatenate(out)


def measure(config: ml_collections.ConfigDict, task: SpeechTalkerTask, params: Any,
            split: str, n: int, speech_steps: int = 0, batch_size: int = 8) -> dict[str, Any]:
  """Teacher-forced and free-running unit accuracy of `params`' Talker on the first n
  answers of `split` (MDM free-running at `speech_steps` per chunk; 0: the config's)."""
  states = jax.jit(task.answer_states)  # no Thinker pass for a text-only Talker
  counts = jax.jit(lambda p, b: teacher_forced_counts(task.lm_problem(p, b), config.objective))
  pipe = streaming.SpeechPipeline(
      task.model, params, task.built.text_tokenizer, task.speech_vocab,
      streaming.stream_config(config, None, speech_steps or None))
  hyps, refs, names, tf_correct, tf_total = [], [], [], 0.0, 0
  source = speech_loader.open_source(task.corpus.dataset_dir, split)
  size = len(source)
  n = min(n, size)
  # the corpus's own batches (question audio included), never the cached states of training
  for batch in task.corpus.dataset(split, min(batch_size, n), seed=0, shuffle=False):
    batch = {k: v[:n - len(refs)] for k, v in batch.items()}
    right, scored = counts(params, batch)
    tf_correct, tf_total = tf_correct + float(right), tf_total + int(scored)
    hidden = np.asarray(states(params, batch))  # [b, R, embed]
    for i in range(len(hidden)):
      num_text = int(np.sum(batch["response_valid"][i]))
      hyps.append(free_running_units(pipe, np.asarray(batch["response"][i]), hidden[i],
                                     num_text))
      refs.append(np.asarray(batch["answer_units"][i])[batch["answer_units_valid"][i]])
      names.append(template_name(source[int(batch["index"][i])]))
    if len(refs) >= n:
      break
  return {"num_answers": len(refs), "teacher_forced_accuracy": tf_correct / tf_total,
          "free_running_accuracy": unit_edit_accuracy(hyps, refs),
          "free_running_length_ratio": sum(map(len, hyps)) / sum(map(len, refs)),
          "free_running_by_template": accuracy_by_template(hyps, refs, names),
          "answers_by_template": {name: names.count(name) for name in sorted(set(names))}}


def accuracy_by_template(hyps: Sequence[Sequence[int]], refs: Sequence[Sequence[int]],
                         names: Sequence[str]) -> dict[str, float]:
  """`unit_edit_accuracy` of each template's answers (names[i]: answer i's template)."""
  return {name: unit_edit_accuracy([h for h, t in zip(hyps, names) if t == name],
                                   [r for r, t in zip(refs, names) if t == name])
          for name in sorted(set(names))}


def template_name(record: dict[str, Any]) -> str:
  """The question template of a corpus record (`template` is "<name>/<phrasing index>")."""
  return speech_loader.record_text(record["template"]).split("/")[0]


def measure_checkpoints(config: ml_collections.ConfigDict, workdir: str, split: str, n: int,
                        speech_steps: int = 0, out: Optional[str] = None,
                        ) -> list[dict[str, Any]]:
  """`measure` at every checkpoint kept in the stage-2 `workdir` not yet in `out` (a JSON
  lines file, one row per step, appended: rerun it while the Talker trains to extend
  the curve)."""
  if config.task != "speech_talker":
    raise ConfigError(f"unit accuracy needs a stage-2 (speech_talker) run; {workdir} is "
                      f"config.task={config.task}")
  done = set()
  if out and os.path.isfile(out):
    with open(out, encoding="utf-8") as f:
      done = {json.loads(line)["step"] for line in f if line.strip()}
  task = tasks.build_task(config)
  mesh = partitioning.make_mesh(config.mesh, jax.devices()[:1])
  abstract = restore.abstract_params(task.built, mesh,
                                     partitioning.rules_from_config(config.logical_axis_rules))
  rows = []
  for step in restore.checkpoint_steps(workdir):
    if step in done:
      continue
    params = restore.restore_params(workdir, abstract, task.built.params_scope, step)
    row = {"step": step, "split": split, "speech_steps": speech_steps or None,
           **measure(config, task, params, split, n, speech_steps)}
    print(json.dumps(row), flush=True)
    rows.append(row)
    if out:
      with open(out, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
  return rows
