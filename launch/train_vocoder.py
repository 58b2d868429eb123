"""Trains the flow-matching vocoder on corpus answers and evaluates it on held-out answers.

  python -m launch.train_vocoder --config=configs/vocoder.py:tiny --data=DIR --workdir=W

DIR is a `launch.prepare_data` output: the TFDS dataset (found by its dataset_info.json)
and a fitted unit tokenizer (.npz; or pass --units=PATH; if none exists one is fitted on
the training answers and saved to W/units.npz). Writes W/vocoder (orbax checkpoint +
config.json), W/samples/*.wav (16-bit) and *_mel.png, W/eval.json (with --eval_only:
W/samples_eval_only/, W/eval_eval_only.json).
"""
from __future__ import annotations

import glob
import json
import os
import time
from typing import Optional

from absl import app, flags, logging
import jax
import numpy as np
from ml_collections import config_flags

from data_pipelines import speech_loader
from launch import distributed
from vocalnet_jax.evaluation import asr as asr_lib
from vocalnet_jax.evaluation.plots import save_mel_panels
from vocalnet_jax.speech import units as units_lib
from vocalnet_jax.speech import vocoder as voc
from vocalnet_jax.speech import vocoder_training as vt
from vocalnet_jax.speech.audio_io import write_wav

_CONFIG = config_flags.DEFINE_config_file("config", "configs/vocoder.py:tiny", "Vocoder config.")
_DATA = flags.DEFINE_string("data", None, "prepare_data output directory.", required=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory.", required=True)
_UNITS = flags.DEFINE_string("units", None, "Unit tokenizer .npz (default: found in --data).")
_EVAL_ONLY = flags.DEFINE_bool(
    "eval_only", False, "Skip training: restore W/vocoder and evaluate it with this config's "
    "sample/stream/inversion/eval settings (e.g. to compare ODE steps or guidance).")


def find_one(root: str, pattern: str, what: str) -> Optional[str]:
  """The single path under `root` matching `pattern` (recursive), None if there is none."""
  hits = sorted(glob.glob(os.path.join(root, "**", pattern), recursive=True))
  if len(hits) > 1:
    raise ValueError(f"several {what} under {root}: {hits}; pass the one to use explicitly")
  return hits[0] if hits else None


def load_answers(dataset_dir: str, split: str, limit: int) -> list[tuple[str, np.ndarray]]:
  """(answer text, answer audio) of up to `limit` examples (limit <= 0: all) with audio."""
  source = speech_loader.open_source(dataset_dir, split)
  out = []
  for i in range(len(source)):
    record = source[i]
    audio = np.asarray(record["answer_audio"], np.float32)
    if audio.size:
      text = record["answer_text"]
      out.append((text.decode() if isinstance(text, bytes) else str(text), audio))
    if 0 < limit <= len(out):
      break
  return out


def main(argv):
  del argv
  distributed.initialize()
  if jax.process_count() > 1:
    raise app.UsageError("train_vocoder trains on one host: start it without the "
                         "multi-process flags")
  config, workdir = _CONFIG.value, _WORKDIR.value
  tag = "_eval_only" if _EVAL_ONLY.value else ""
  samples_dir = os.path.join(workdir, "samples" + tag)
  os.makedirs(samples_dir, exist_ok=True)
  dataset_info = find_one(_DATA.value, "dataset_info.json", "TFDS datasets")
  if dataset_info is None:
    raise FileNotFoundError(f"no TFDS dataset (dataset_info.json) under --data={_DATA.value}")
  dataset_dir = os.path.dirname(dataset_info)
  train_pairs = load_answers(dataset_dir, "train", config.data.max_train_utterances)
  eval_pairs = load_answers(dataset_dir, config.eval.split, config.eval.num_examples)
  logging.info("%d train / %d eval answers from %s", len(train_pairs), len(eval_pairs),
               dataset_dir)

  units_path = _UNITS.value or find_one(_DATA.value, "*units*.npz", "unit tokenizers")
  if units_path is None:
    units_path = os.path.join(workdir, "units.npz")
    logging.info("no unit tokenizer in --data; fitting one -> %s", units_path)
    units_lib.UnitTokenizer.fit([w for _, w in train_pairs]).save(units_path)
  tokenizer = units_lib.UnitTokenizer.load(units_path)
  config.units.vocab_size = tokenizer.config.num_units
  config.units.frame_rate_hz = float(tokenizer.config.frame_rate_hz)

  def utterances(pairs):
    return [vt.make_utterance(config, tokenizer.encode(w), w, text) for text, w in pairs]
  train_utts = [] if _EVAL_ONLY.value else utterances(train_pairs)
  eval_utts = utterances(eval_pairs)

  history, train_seconds = [], 0.0
  if _EVAL_ONLY.value:
    trained = voc.Vocoder.load(os.path.join(workdir, "vocoder"))
    for section in ("sample", "stream", "inversion"):
      trained.config[section] = config[section]
    vocoder = voc.Vocoder(trained.config, trained.params, trained.mel_mean, trained.mel_std)
  else:
    t0 = time.time()
    def log(step, loss):
      history.append({"step": step, "loss": loss, "seconds": time.time() - t0})
      logging.info("step %d  cfm loss %.4f  (%.0f s)", step, loss, time.time() - t0)
    vocoder = vt.train(config, train_utts, log)
    train_seconds = time.time() - t0
    vocoder.save(os.path.join(workdir, "vocoder"))

  asr = None
  if config.eval.asr:
    train_texts = [t for t, _ in train_pairs]
    asr = asr_lib.PocketSphinxASR(domain_texts=train_texts if config.eval.domain_lm else None)
  result = vt.evaluate(vocoder, eval_utts)
  outputs = result.pop("outputs")
  if asr is not None and any(u.text for u in eval_utts):
    result["wer"] = asr_lib.wer_of_waves(asr, [u.text for u in eval_utts], {
        "original": [u.wave for u in eval_utts],
        "griffin_lim_of_reference_mel": [o["reference_gl"] for o in outputs],
        "vocoder_oneshot": [o["oneshot"] for o in outputs],
        "vocoder_stream": [o["stream"] for o in outputs]})
  sr = vocoder.mel_cfg.sample_rate
  for i, (u, out) in enumerate(zip(eval_utts[:config.eval.num_wavs], outputs)):
    for name, wave in (("reference", u.wave), ("reference_griffin_lim", out["reference_gl"]),
                       ("vocoder_oneshot", out["oneshot"]), ("vocoder_stream", out["stream"])):
      write_wav(os.path.join(samples_dir, f"{i:02d}_{name}.wav"), wave, sr)
    save_mel_panels(os.path.join(samples_dir, f"{i:02d}_mel.png"), u.text,
                    {"reference": u.mel, "generated (one-shot)": out["mel_oneshot"]}, -10, 2)
  result.update(
      config=config.preset, units=units_path, vocab_size=config.units.vocab_size,
      unit_frame_rate_hz=config.units.frame_rate_hz, num_train_utterances=len(train_pairs),
      sample=vocoder.config.sample.to_dict(), stream=vocoder.config.stream.to_dict(),
      train={"seconds": train_seconds, "steps": config.train.steps, "loss_history": history},
      asr="pocketsphinx 5 en-us acoustic model, " + (
          "3-gram LM built from the train-split answer texts" if config.eval.domain_lm
          else "shipped generic LM"),
      machine=f"{os.cpu_count()}-core CPU")
  with open(os.path.join(workdir, f"eval{tag}.json"), "w") as f:
    json.dump(result, f, indent=2)
  logging.info("eval: %s", json.dumps({k: v for k, v in result.items() if k != "train"}))


if __name__ == "__main__":
  app.run(main)
