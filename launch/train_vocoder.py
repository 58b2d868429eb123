"""Trains the flow-matching vocoder on corpus answers and evaluates it on held-out answers.

  python -m launch.train_vocoder --config=configs/vocoder.py:tiny --data=DIR --workdir=W

DIR is a `launch.prepare_data` output: the TFDS dataset (found by its dataset_info.json)
and a fitted unit tokenizer (.npz; or pass --units=PATH; if none exists one is fitted on
the training answers and saved to W/units.npz). Writes W/vocoder (orbax checkpoint +
config.json), W/samples/*.wav (16-bit) and *_mel.png, W/eval.json (with --eval_only:
W/samples_eval_only/, W/eval_eval_only.json).

With --config.inversion.kind=vocos a neural mel -> waveform vocoder is trained on the
answer audio after the flow model and saved with it (W/vocoder/neural_state), so
`launch.decode --vocoder=W/vocoder` uses it. --init_flow=OLD/vocoder skips flow training
and reuses that flow model (its units, mel and model sections). --compare_out=PATH
writes Griffin-Lim vs the neural vocoder on the reference mels of the eval answers (mel
L1, log-spectral distance, ASR WER, real-time factors), with the machine and command.
"""
from __future__ import annotations

import glob
import json
import os
import time
from typing import Optional

from absl import app, flags, logging
import jax
import ml_collections
from ml_collections import config_flags

from launch import distributed
from vocalnet_jax.evaluation import asr as asr_lib
from vocalnet_jax.evaluation import result_file
from vocalnet_jax.evaluation.plots import save_mel_panels
from vocalnet_jax.speech import mel_inversion as mi
from vocalnet_jax.speech import neural_vocoder as nv
from vocalnet_jax.speech import neural_vocoder_training as nvt
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
_INIT_FLOW = flags.DEFINE_string(
    "init_flow", None, "A trained vocoder directory (W/vocoder) whose flow model is reused "
    "instead of training one; with inversion.kind=vocos only the neural vocoder trains.")
_COMPARE_OUT = flags.DEFINE_string(
    "compare_out", None, "Write Griffin-Lim vs neural vocoder on reference mels here (JSON).")


def find_one(root: str, pattern: str, what: str) -> Optional[str]:
  """The single path under `root` matching `pattern` (recursive), None if there is none."""
  hits = sorted(glob.glob(os.path.join(root, "**", pattern), recursive=True))
  if len(hits) > 1:
    raise ValueError(f"several {what} under {root}: {hits}; pass the one to use explicitly")
  return hits[0] if hits else None


def restore_vocoder(directory: str, flag: str) -> voc.Vocoder:
  """A saved vocoder, or a usage error naming the flag when `directory` holds none."""
  if not os.path.isfile(os.path.join(directory, "config.json")):
    raise app.UsageError(f"{flag}={directory} is not a train_vocoder checkpoint "
                         "(no config.json); pass W/vocoder of a finished run")
  return voc.Vocoder.load(directory)


def with_sections(trained: ml_collections.ConfigDict, config: ml_collections.ConfigDict,
                  sections: tuple[str, ...]) -> ml_collections.ConfigDict:
  """A copy of a restored vocoder's config with `sections` taken from the flag config."""
  merged = ml_collections.ConfigDict(trained.to_dict())
  for section in sections:
    merged[section] = config[section]
  return merged


def restored_inverter(trained: voc.Vocoder, config: ml_collections.ConfigDict
                      ) -> Optional[mi.MelInverter]:
  """The restored neural vocoder when inversion.kind=vocos (None: Griffin-Lim is built)."""
  if config.inversion.kind != "vocos":
    return None
  if not isinstance(trained.inverter, nv.NeuralInverter):
    raise app.UsageError("--config.inversion.kind=vocos but the restored vocoder has no "
                         "neural vocoder; train one (without --eval_only)")
  return trained.inverter


def compare_inverters(vocoder: voc.Vocoder, eval_utts, asr, samples_dir: str,
                      train_info: dict) -> dict:
  """Griffin-Lim (and the trained neural vocoder) on the reference mels of `eval_utts`."""
  config = vocoder.config
  inverters = {"griffin_lim": mi.GriffinLimInverter(vocoder.mel_cfg, config.inversion.n_iter)}
  if isinstance(vocoder.inverter, nv.NeuralInverter):
    inverters["vocos"] = vocoder.inverter
  result = nvt.compare_inverters(inverters, [u.wave for u in eval_utts], config)
  outputs = result.pop("outputs")
  if asr is not None:
    waves = {"original": [u.wave for u in eval_utts]}
    for name, outs in outputs.items():
      waves.update({f"{name}_{mode}": ws for mode, ws in outs.items()})
    result["wer"] = asr_lib.wer_of_waves(asr, [u.text for u in eval_utts], waves)
  for name, outs in outputs.items():
    for i, wave in enumerate(outs["oneshot"][:config.eval.num_wavs]):
      write_wav(os.path.join(samples_dir, f"{i:02d}_reference_mel_{name}.wav"), wave,
                vocoder.mel_cfg.sample_rate)
  result.update(
      num_utterances=len(eval_utts), split=config.eval.split,
      input="reference audio -> log-mel -> inverter (isolates mel -> waveform)",
      neural=config.neural.to_dict() if "neural" in config else None, train=train_info,
      griffin_lim_iters=config.inversion.n_iter)
  return result


_EVAL_CONFIG_KEYS = ("config", "units", "vocab_size", "unit_frame_rate_hz",
                     "num_train_utterances", "inversion", "sample", "stream", "asr")


def _write_result(path: str, result: dict, config_keys: tuple[str, ...]) -> None:
  """`result` in the shared result schema: `config_keys` describe the run, the rest is
  measured."""
  result_file.write(path, {k: result[k] for k in config_keys if k in result},
                    {k: v for k, v in result.items() if k not in config_keys},
                    command=result_file.command_line(module="launch.train_vocoder"))


def main(argv):
  del argv
  distributed.initialize()
  if jax.process_count() > 1:
    raise app.UsageError("train_vocoder trains on one host: start it without the "
                         "multi-process flags")
  config, workdir = _CONFIG.value, _WORKDIR.value
  if config.inversion.kind not in voc.INVERSION_KINDS:
    raise app.UsageError(f"--config.inversion.kind={config.inversion.kind!r} is not one of "
                         f"{voc.INVERSION_KINDS}")
  tag = "_eval_only" if _EVAL_ONLY.value else ""
  samples_dir = os.path.join(workdir, "samples" + tag)
  os.makedirs(samples_dir, exist_ok=True)
  dataset_info = find_one(_DATA.value, "dataset_info.json", "TFDS datasets")
  if dataset_info is None:
    raise FileNotFoundError(f"no TFDS dataset (dataset_info.json) under --data={_DATA.value}")
  dataset_dir = os.path.dirname(dataset_info)
  train_pairs = vt.corpus_answers(dataset_dir, "train", config.data.max_train_utterances)
  eval_pairs = vt.corpus_answers(dataset_dir, config.eval.split, config.eval.num_examples)
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

  trained = None  # a restored vocoder whose flow model is reused
  if _EVAL_ONLY.value or _INIT_FLOW.value:
    trained = (restore_vocoder(os.path.join(workdir, "vocoder"), "--workdir") if _EVAL_ONLY.value
               else restore_vocoder(_INIT_FLOW.value, "--init_flow"))
    if trained.config.units.vocab_size != config.units.vocab_size:
      raise app.UsageError(f"the restored vocoder has {trained.config.units.vocab_size} units "
                           f"but {units_path} has {config.units.vocab_size}")
    sections = ("sample", "stream", "inversion") + (() if _EVAL_ONLY.value else
                                                     ("neural", "eval"))
    config = with_sections(trained.config, config, sections)

  def utterances(pairs):
    return [vt.make_utterance(config, tokenizer.encode(w), w, text) for text, w in pairs]
  train_utts = [] if trained is not None else utterances(train_pairs)
  eval_utts = utterances(eval_pairs)

  history, neural_history, train_seconds, neural_seconds = [], [], 0.0, 0.0
  if _EVAL_ONLY.value:
    vocoder = voc.Vocoder(config, trained.params, trained.mel_mean, trained.mel_std,
                          restored_inverter(trained, config))
  else:
    t0 = time.time()
    def log(step, loss):
      history.append({"step": step, "loss": loss, "seconds": time.time() - t0})
      logging.info("step %d  cfm loss %.4f  (%.0f s)", step, loss, time.time() - t0)
    flow = trained or vt.train(config, train_utts, log)
    train_seconds = time.time() - t0
    inverter = None
    if config.inversion.kind == "vocos":
      t0 = time.time()
      def log_neural(step, metrics):
        neural_history.append({"step": step, **metrics, "seconds": time.time() - t0})
        logging.info("neural step %d  %s  (%.0f s)", step, metrics, time.time() - t0)
      inverter = nvt.train(config, [w for _, w in train_pairs], log_neural)
      neural_seconds = time.time() - t0
    vocoder = voc.Vocoder(config, flow.params, flow.mel_mean, flow.mel_std, inverter)
    vocoder.save(os.path.join(workdir, "vocoder"))

  asr = None
  if config.eval.asr:
    train_texts = [t for t, _ in train_pairs]
    asr = asr_lib.PocketSphinxASR(domain_texts=train_texts if config.eval.domain_lm else None)
  train_info = {"seconds": train_seconds, "steps": config.train.steps,
                "flow_from": _INIT_FLOW.value, "loss_history": history,
                "neural_seconds": neural_seconds, "neural_loss_history": neural_history}
  if _COMPARE_OUT.value:
    comparison = compare_inverters(vocoder, eval_utts, asr, samples_dir, train_info)
    _write_result(_COMPARE_OUT.value, comparison, ("num_utterances", "split", "input", "neural",
                                                   "griffin_lim_iters"))
    logging.info("inverters: %s", json.dumps({k: v for k, v in comparison.items()
                                             if k in ("griffin_lim", "vocos", "wer")}))
  result = vt.evaluate(vocoder, eval_utts)
  outputs = result.pop("outputs")
  inverter_name = config.inversion.kind
  if asr is not None and any(u.text for u in eval_utts):
    result["wer"] = asr_lib.wer_of_waves(asr, [u.text for u in eval_utts], {
        "original": [u.wave for u in eval_utts],
        f"{inverter_name}_of_reference_mel": [o["reference_gl"] for o in outputs],
        "vocoder_oneshot": [o["oneshot"] for o in outputs],
        "vocoder_stream": [o["stream"] for o in outputs]})
  sr = vocoder.mel_cfg.sample_rate
  for i, (u, out) in enumerate(zip(eval_utts[:config.eval.num_wavs], outputs)):
    for name, wave in (("reference", u.wave), (f"reference_{inverter_name}", out["reference_gl"]),
                       ("vocoder_oneshot", out["oneshot"]), ("vocoder_stream", out["stream"])):
      write_wav(os.path.join(samples_dir, f"{i:02d}_{name}.wav"), wave, sr)
    save_mel_panels(os.path.join(samples_dir, f"{i:02d}_mel.png"), u.text,
                    {"reference": u.mel, "generated (one-shot)": out["mel_oneshot"]}, -10, 2)
  result.update(
      config=config.preset, units=units_path, vocab_size=config.units.vocab_size,
      unit_frame_rate_hz=config.units.frame_rate_hz, num_train_utterances=len(train_pairs),
      inversion=config.inversion.to_dict(),
      sample=vocoder.config.sample.to_dict(), stream=vocoder.config.stream.to_dict(),
      train=train_info,
      asr="pocketsphinx 5 en-us acoustic model, " + (
          "3-gram LM built from the train-split answer texts" if config.eval.domain_lm
          else "shipped generic LM"))
  _write_result(os.path.join(workdir, f"eval{tag}.json"), result, _EVAL_CONFIG_KEYS)
  logging.info("eval: %s", json.dumps({k: v for k, v in result.items() if k != "train"}))


if __name__ == "__main__":
  app.run(main)
