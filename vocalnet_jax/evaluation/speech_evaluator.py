"""Spoken answers of a stage-2 speech checkpoint on a prepared corpus split, scored.

What `launch.evaluate` runs for a speech checkpoint: the first n questions of a split
are answered through the streaming path (`decoding.speech_io.answer`: question audio ->
encoder -> Thinker text -> Talker units -> vocoder) once per decoder setting, scored
with `speech_eval` (its pure math), the independent ASR (`asr`) and the forced choice
among the questions' reference texts (`forced_choice`), next to both judges' floors on
the corpus audio and on the vocoder's resynthesis of the reference units.
Writes OUT/eval.json and the WAVs. Bad input raises ConfigError (one line).
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Optional, Sequence

import jax
import ml_collections
import numpy as np

from data_pipelines import speech_loader, tts
from vocalnet_jax.decoding import speech_io, step_rules, streaming
from vocalnet_jax.evaluation import asr as asr_lib
from vocalnet_jax.evaluation import forced_choice, speech_eval
from vocalnet_jax.modeling import build, restore
from vocalnet_jax.modeling.validate import ConfigError
from vocalnet_jax.speech import mel_inversion
from vocalnet_jax.speech.audio_io import write_wav
from vocalnet_jax.speech.vocoder import Vocoder

SPEECH_TASKS = ("speech_thinker", "speech_talker")


@dataclasses.dataclass(frozen=True)
class TalkerDecoding:
  """The MDM Talker's own steps per chunk and threshold, when not the Thinker's (a 15-unit
  chunk can take more steps than a 4-token text block)."""
  steps: int = 0  # 0: the Thinker's
  threshold: Optional[float] = None  # None: the Thinker's


def is_speech(config: ml_collections.ConfigDict) -> bool:
  """Whether the config answers spoken questions (else typed ones)."""
  return speech_io.answering_task(config) in SPEECH_TASKS


def evaluate_speech(config: ml_collections.ConfigDict, checkpoint: Optional[str],
                    vocoder_dir: Optional[str], split: str, n: int, steps: Sequence[int],
                    rule: str, out_dir: str, domain_lm: bool = True, mode: Optional[str] = None,
                    command: str = "", floors_from: Optional[str] = None,
                    threshold: float = step_rules.THRESHOLD,
                    talker: TalkerDecoding = TalkerDecoding()) -> dict[str, Any]:
  """Checks the inputs (ConfigError: one line), loads the pipeline of `checkpoint` (None:
  random weights) and `vocoder_dir`, then `evaluate_pipeline`."""
  n = _check_speech_inputs(config, checkpoint, vocoder_dir, split, n, mode)
  if talker.steps > config.talker.chunk_size:
    raise ConfigError(f"--talker_steps={talker.steps} > the Talker's chunk "
                      f"(config.talker.chunk_size={config.talker.chunk_size})")
  pipe = speech_io.load_pipeline(config, checkpoint, vocoder_dir, rule=rule)
  speech_io.check_vocoder_fits(pipe, vocoder_dir)
  if pipe.vocoder.mel_cfg.sample_rate != asr_lib.SAMPLE_RATE:
    raise ConfigError(f"--vocoder={vocoder_dir} speaks at {pipe.vocoder.mel_cfg.sample_rate} "
                      f"Hz; the ASR judge needs {asr_lib.SAMPLE_RATE} Hz")
  return evaluate_pipeline(config, pipe, split, n, steps, rule, out_dir, domain_lm,
                           {"command": command, "checkpoint": checkpoint,
                            "vocoder": vocoder_dir}, floors_from, threshold, talker)


def evaluate_pipeline(config: ml_collections.ConfigDict, pipe: streaming.SpeechPipeline,
                      split: str, n: int, steps: Sequence[int], rule: str, out_dir: str,
                      domain_lm: bool = True, about: Optional[dict] = None,
                      floors_from: Optional[str] = None,
                      threshold: float = step_rules.THRESHOLD,
                      talker: TalkerDecoding = TalkerDecoding()) -> dict[str, Any]:
  """Answers the first n questions of `split` with `pipe` (with a vocoder) once per decoder
  setting (AR; MDM: `steps` for the Thinker and the Talker both, `rule` with `threshold`
  for the threshold rule; `talker` overrides the Talker's); writes out_dir/eval.json
  (`about` first, e.g. the command) and the WAVs, prints the table, returns eval.json.
  floors_from: an earlier evaluation directory of the same questions and vocoder whose
  floors (and question/reference WAVs) are reused instead of recomputed."""
  j = Judges.of(config, split, n, domain_lm)
  examples, voices, asr, judge = j.examples, j.voices, j.asr, j.forced_choice
  os.makedirs(out_dir, exist_ok=True)
  vocoder = (about or {}).get("vocoder")
  floors, floor_examples = (
      reused_floors(floors_from, split, [e["question"] for e in examples], vocoder)
      if floors_from else judge_floors(config, pipe.vocoder, j, out_dir))
  settings = {}
  for name, s in ([("ar", 0)] if config.objective == "ar" else
                  [(f"mdm_steps{s}", s) for s in steps]):
    setting = dataclasses.replace(pipe, cfg=streaming.stream_config(
        config, s or None, talker.steps or s or None, rule, threshold,
        speech_threshold=talker.threshold))
    answers = _answer_all(setting, examples, voices, asr, judge, os.path.join(out_dir, name),
                          j.train_questions)
    settings[name] = {"mode": config.objective, "steps": s or None,
                      "rule": rule if config.objective == "mdm" else "greedy",
                      "threshold": step_rules.recorded_threshold(
                          rule if config.objective == "mdm" else None, threshold),
                      "talker_cache_update": (setting.cfg.cache_update
                                              if config.objective == "mdm" else None),
                      **({"talker_steps": setting.cfg.speech_steps,
                          "talker_threshold": step_rules.recorded_threshold(
                              rule, setting.cfg.talker_threshold)}
                         if config.objective == "mdm" and talker != TalkerDecoding() else {}),
                      "summary": speech_eval.summarize(answers),
                      "examples": [dataclasses.asdict(a) for a in answers]}
  result = {
      **(about or {}), "split": split,
      "num_examples": len(examples), "objective": config.objective,
      "asr": "pocketsphinx en-us acoustic model, " + (
          "3-gram LM of the train-split answer texts" if domain_lm else "generic LM"),
      "forced_choice": None if judge is None else (
          "the nearest (DTW over mean-normalised MFCCs) of the assistant voice speaking each "
          f"of the {len(judge.candidates)} distinct reference texts of these questions and "
          "the answer's own printed text; identified: the pick is the printed text"),
      "mel_distance": "mean |log-mel| L1 per bin along a symmetric DTW path "
                      "(speech_eval.dtw_mel_l1), vocoder mel analysis",
      "platform": jax.devices()[0].platform, "device": jax.devices()[0].device_kind,
      "cpu_count": os.cpu_count(), "settings": settings,
      "floors": {**floors, "examples": floor_examples},
      **({"floors_from": floors_from} if floors_from else {})}
  with open(os.path.join(out_dir, "eval.json"), "w") as f:
    json.dump(result, f, indent=1)
  print(speech_eval.format_table({k: v["summary"] for k, v in settings.items()}, floors))
  print(f"wrote {os.path.join(out_dir, 'eval.json')} and the WAVs under {out_dir}")
  return result


@dataclasses.dataclass
class Judges:
  """The first n questions of a split and what judges their spoken answers."""
  examples: list[dict]  # `speech_io.heldout_question`
  voices: list[Optional[tts.Speaker]]  # each answer's assistant voice
  asr: asr_lib.PocketSphinxASR
  forced_choice: Optional[forced_choice.ForcedChoice]
  train_questions: set[str]

  @classmethod
  def of(cls, config: ml_collections.ConfigDict, split: str, n: int,
         domain_lm: bool = True) -> "Judges":
    examples = [speech_io.heldout_question(config, i, split) for i in range(n)]
    train_questions, train_answers = train_texts(config)
    voices = [tts.Speaker.from_name(e["answer_speaker"]) if e["answer_speaker"] else None
              for e in examples]
    return cls(examples, voices,
               asr_lib.PocketSphinxASR(domain_texts=train_answers if domain_lm else None),
               _judge(examples, voices), train_questions)


def _check_speech_inputs(config: ml_collections.ConfigDict, checkpoint: Optional[str],
                         vocoder_dir: Optional[str], split: str, n: int,
                         mode: Optional[str]) -> int:
  """The number of examples to answer; ConfigError naming the first missing or mismatched
  input, before anything is built."""
  speech_io.check_speaking_inputs(config, checkpoint, vocoder_dir)
  if mode is not None and mode != config.objective:
    raise ConfigError(f"--mode={mode}: the speech model decodes with its "
                      f"config.objective={config.objective}")
  if n <= 0:
    raise ConfigError(f"--n={n} must be positive")
  dataset_dir = build.corpus_dataset_dir(config)  # a missing corpus: the command making it
  try:
    size = len(speech_loader.open_source(dataset_dir, split))
  except ValueError as e:  # tfds: "Unknown split 'x'. Should be one of [...]"
    raise ConfigError(f"--split={split}: {e}") from None
  if checkpoint and not restore.is_export(checkpoint):
    restore.checkpoint_step(checkpoint)  # a workdir without checkpoints is one line too
  return min(n, size)


def train_texts(config: ml_collections.ConfigDict,
                split: str = "train") -> tuple[set[str], list[str]]:
  """Question texts (which scored questions were also asked in training) and answer texts
  (the ASR's domain LM; never the scored split) of the train split (or `split`)."""
  source = speech_loader.open_source(build.corpus_dataset_dir(config), split)
  questions, answers = set(), []
  for i in range(len(source)):
    record = source[i]
    questions.add(speech_loader.record_text(record["question_text"]))
    answers.append(speech_loader.record_text(record["answer_text"]))
  return questions, answers


def _speak(text: str, voice: Optional[tts.Speaker]) -> np.ndarray:
  """The assistant voice saying `text` (empty without a voice or words)."""
  if voice is None or not asr_lib.normalize_text(text):
    return np.zeros(0, np.float32)
  return tts.synthesize(text, voice)


def espeak_errors(judges: Judges, texts: Sequence[str]) -> list[tuple[int, int]]:
  """(word errors, words) of the ASR judge on the assistant voice (espeak) saying each of
  `texts` (one per question of `judges`): the floor of a Talker's WER on exactly the texts
  its Thinker printed, which for sentences no answer has can lie above the corpus floors."""
  return [speech_eval.word_errors(text, _transcribe(judges.asr, _speak(text, voice)))
          for text, voice in zip(texts, judges.voices)]


def _judge(examples: Sequence[dict], voices: Sequence[Optional[tts.Speaker]]
           ) -> Optional[forced_choice.ForcedChoice]:
  """The forced choice among the questions' reference answers in the assistant voice (None
  when the corpus names no single assistant voice: nothing to render the candidates with)."""
  names = {v.name for v in voices if v is not None}
  if len(names) != 1 or None in voices:
    return None
  voice = voices[0]
  return forced_choice.ForcedChoice(lambda text: _speak(text, voice),
                                    [e["answer"] for e in examples])


def _identify(judge: Optional[forced_choice.ForcedChoice], wave: Optional[np.ndarray],
              text: str) -> dict[str, Any]:
  """{'chosen', 'identified'} of the forced choice (None: no judge)."""
  if judge is None:
    return {"chosen": "", "identified": None}
  chosen, identified = judge.identifies(wave, text)
  return {"chosen": chosen, "identified": identified}


def _transcribe(asr: asr_lib.PocketSphinxASR, wave: Optional[np.ndarray]) -> str:
  return asr.transcribe(wave) if wave is not None and wave.size else ""


def judge_floors(config: ml_collections.ConfigDict, vocoder: Optional[Vocoder],
                 judges: Judges, out_dir: str) -> tuple[dict, list[dict]]:
  """The judges' floors (ASR WER and forced-choice identification on the corpus audio of
  the reference answers) and the vocoder's (on its resynthesis of the reference units,
  streamed in Talker-sized chunks as the answers are), each with its mel distance to the
  assistant voice speaking the reference text (no vocoder: the corpus audio's alone).
  Writes question_i, reference_i and reference_vocoder_i WAVs."""
  unit_tokenizer = build.build(config).unit_tokenizer
  chunk = config.talker.chunk_size
  mel_cfg = mel_inversion.MelConfig() if vocoder is None else vocoder.mel_cfg
  voices, asr, judge = judges.voices, judges.asr, judges.forced_choice
  sources = ("corpus_audio",) + (() if vocoder is None else ("vocoder_resynthesis",))
  os.makedirs(out_dir, exist_ok=True)
  rows = []
  for i, ex in enumerate(judges.examples):
    resynth = np.zeros(0, np.float32)  # a manifest corpus may have no answer audio
    if ex["answer_audio"].size and vocoder is not None:
      units = unit_tokenizer.encode(ex["answer_audio"])  # [units]
      resynth = np.concatenate(list(vocoder.stream(
          [units[k:k + chunk] for k in range(0, len(units), chunk)])))
    spoken = _speak(ex["answer"], voices[i])
    waves = {"question": ex["audio"], "reference": ex["answer_audio"],
             **({} if vocoder is None else {"reference_vocoder": resynth})}
    for stem, wave in waves.items():
      write_wav(os.path.join(out_dir, f"{stem}_{i}.wav"), wave)
    row = {"index": i, "question": ex["question"], "reference": ex["answer"]}
    for name, wave in zip(sources, (ex["answer_audio"], resynth)):
      transcript = _transcribe(asr, wave)
      edits, words = speech_eval.word_errors(ex["answer"], transcript)
      row[name] = {"transcript": transcript, "word_errors": edits, "words": words,
                   **_identify(judge, wave, ex["answer"]),
                   "mel_distance": speech_eval.mel_distance(wave, spoken, mel_cfg)}
    rows.append(row)
  floors = {name: speech_eval.summarize_floor([r[name] for r in rows]) for name in sources}
  return floors, rows


def reused_floors(directory: str, split: str, questions: Sequence[str],
                  vocoder: Optional[str]) -> tuple[dict, list[dict]]:
  """The floors of DIRECTORY/eval.json, if it judged the same split, questions and vocoder
  (ConfigError naming the first difference otherwise)."""
  earlier, path = _earlier_evaluation(directory, "floors_from")
  floors = dict(earlier["floors"])
  examples = floors.pop("examples")
  for what, theirs, ours in (("split", earlier["split"], split),
                             ("vocoder", earlier.get("vocoder"), vocoder),
                             ("questions", [e["question"] for e in examples], list(questions))):
    if theirs != ours:
      raise ConfigError(f"--floors_from={directory} judged other {what} ({path}); evaluate "
                        "without it")
  return floors, examples


def printed_texts(directory: str, split: str, questions: Sequence[str]) -> list[str]:
  """The texts DIRECTORY/eval.json's first setting printed for `questions`, the first
  questions of `split` (ConfigError if it answered others)."""
  earlier, path = _earlier_evaluation(directory, "texts_from")
  examples = next(iter(earlier["settings"].values()))["examples"][:len(questions)]
  if earlier["split"] != split or [e["question"] for e in examples] != list(questions):
    raise ConfigError(f"--texts_from={directory}: {path} answered other questions than the "
                      f"first {len(questions)} of split {split!r}")
  return [e["printed"] for e in examples]


def _earlier_evaluation(directory: str, flag: str) -> tuple[dict[str, Any], str]:
  """DIRECTORY/eval.json of an earlier evaluation and its path (ConfigError naming --flag
  if it is missing)."""
  path = os.path.join(directory, "eval.json")
  if not os.path.isfile(path):
    raise ConfigError(f"--{flag}={directory}: {path} does not exist")
  with open(path, encoding="utf-8") as f:
    return json.load(f), path


def _answer_all(pipe: streaming.SpeechPipeline, examples: Sequence[dict],
                voices: Sequence[Optional[tts.Speaker]], asr: asr_lib.PocketSphinxASR,
                judge: Optional[forced_choice.ForcedChoice], out_dir: str,
                train_questions: set[str]) -> list[speech_eval.SpokenAnswer]:
  """Streams every answer (after one untimed call that compiles), then scores them and
  writes answer_i.wav (silent answers: no file)."""
  speech_io.answer(pipe, examples[0]["audio"])  # compile
  reports = [speech_io.answer(pipe, ex["audio"]) for ex in examples]
  return _scored(pipe, examples, reports, voices, asr, judge, out_dir, train_questions)


def say_all(pipe: streaming.SpeechPipeline, judges: Judges, texts: Sequence[str],
            out_dir: str) -> list[speech_eval.SpokenAnswer]:
  """The pipeline's Talker saying texts[i] for question i of `judges` (`speech_io.say`:
  no Thinker; text-only Talkers), scored as answers printing texts[i]; writes
  answer_i.wav."""
  speech_io.say(pipe, texts[0])  # compile
  reports = [speech_io.say(pipe, text) for text in texts]
  return _scored(pipe, judges.examples, reports, judges.voices, judges.asr,
                 judges.forced_choice, out_dir, judges.train_questions)


def _scored(pipe: streaming.SpeechPipeline, examples: Sequence[dict],
            reports: Sequence[speech_io.AnswerReport],
            voices: Sequence[Optional[tts.Speaker]], asr: asr_lib.PocketSphinxASR,
            judge: Optional[forced_choice.ForcedChoice], out_dir: str,
            train_questions: set[str]) -> list[speech_eval.SpokenAnswer]:
  """Each report judged against its own text; writes answer_i.wav (silent: no file)."""
  os.makedirs(out_dir, exist_ok=True)
  answers = []
  for i, (ex, r) in enumerate(zip(examples, reports)):
    if r.audio is not None:
      write_wav(os.path.join(out_dir, f"answer_{i}.wav"), r.audio)
    transcript = _transcribe(asr, r.audio)
    edits, words = speech_eval.word_errors(r.text, transcript)
    audio = np.zeros(0, np.float32) if r.audio is None else r.audio
    answers.append(speech_eval.SpokenAnswer(
        index=i, question=ex["question"], reference=ex["answer"], printed=r.text,
        transcript=transcript, word_errors=edits, words=words,
        mel_distance=speech_eval.mel_distance(audio, _speak(r.text, voices[i]),
                                              pipe.vocoder.mel_cfg),
        thinker_nfe=r.thinker_nfe, talker_nfe=r.nfe - r.thinker_nfe,
        first_text_s=r.first_text_s, first_audio_s=r.first_audio_s, total_s=r.total_s,
        audio_s=audio.size / asr_lib.SAMPLE_RATE, template=ex["template"],
        seen_in_train=ex["question"] in train_questions, **_identify(judge, r.audio, r.text)))
  return answers
