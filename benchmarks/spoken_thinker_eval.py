"""Text exact match of a speech Thinker (stage 0/1/2 workdir) on a corpus split, answering
each question from its audio (spoken) and from its transcript (typed), Thinker only.

  python benchmarks/spoken_thinker_eval.py --checkpoint=w/ar1 --split=test --n=50 \
      --out=benchmarks/results/x.json [--label=...]
  # questions 0..299 as the corpus generator makes them (not the stored split, which TFDS
  # keeps in hashed order), here test texts spoken by voices never in a 256-speaker train pool
  python benchmarks/spoken_thinker_eval.py --checkpoint=w/ar1 --split=test --n=300 \
      --synthesize --num_speakers=256 --voices_of=unseen_voices --out=...

Why: stage 1 is judged before any Talker exists; spoken vs typed on the same questions
separates hearing (encoder + adaptor) from answering (the Thinker), and the greedy CTC
transcript of the stage-1 transcript head (`heard_exact_match`) measures the hearing alone.
"""
import functools
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from data_pipelines import features, spoken_qa, tfds_builders, tts
from data_pipelines.prompt import prompt_head_tail, prompt_ids
from launch import logs
from vocalnet_jax.decoding import speech_io, streaming, transcript
from vocalnet_jax.evaluation import result_file, text_eval, text_metrics
from vocalnet_jax.modeling import build, restore, run_config, validate
from vocalnet_jax.models.speech_llm import SpeechLLM, ctc_greedy_keep, spells

_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Speech training workdir.")
_SPLIT = flags.DEFINE_string("split", "test", "Corpus split.")
_N = flags.DEFINE_integer("n", 50, "Questions (the split's first n).")
_OUT = flags.DEFINE_string("out", None, "JSON file to append this row to.")
_LABEL = flags.DEFINE_string("label", "", "Row label.")
_STEPS = flags.DEFINE_integer("steps", 0, "MDM denoising steps per block (0: the config's).")
_RULE = flags.DEFINE_string("rule", "topk", "MDM commit rule (decoding.step_rules.RULES).")
_READ_AS = flags.DEFINE_string("read_as", "", "What the Thinker reads of the audio "
                                "(config.adaptor.read_as); '' keeps the checkpoint's.")
_SYNTHESIZE = flags.DEFINE_bool(
    "synthesize", False, "Synthesize generator indices 0..n-1 of --split (the corpus's seed-0 "
    "generator and voices) instead of reading the stored split.")
_NUM_SPEAKERS = flags.DEFINE_integer("num_speakers", 256, "--synthesize: the corpus's "
                                     "config.corpus.num_speakers (train/test voices).")
_NUM_UNSEEN = flags.DEFINE_integer("num_unseen_speakers", 4, "--synthesize: the corpus's "
                                   "config.corpus.num_heldout_speakers.")
_VOICES_OF = flags.DEFINE_string("voices_of", "", "--synthesize: speak --split's texts with "
                                 "this split's voices (default: its own).")
flags.mark_flags_as_required(["checkpoint", "out"])


def synthesized_question(corpus: tfds_builders.SpokenQAConfig, split: str, index: int,
                         voices_of: str | None) -> dict[str, object]:
  """Question `index` of `split` as the generator makes it, spoken by `voices_of`'s pool."""
  qa, speaker = tfds_builders.question_speaker(corpus, split, index, voices_of)
  return {"audio": tts.synthesize(qa.question, speaker), "question": qa.question,
          "answer": qa.answer}


def padded_mel(wav: np.ndarray, frames: int) -> tuple[jax.Array, jax.Array]:
  """Question audio -> the model's padded log-mel window ([1, frames, n_mels], [1, frames])."""
  mel, valid = features.padded_log_mels([wav], frames)
  return jnp.asarray(mel), jnp.asarray(valid)


def spoken_answer(model, params, tok, cfg: streaming.StreamConfig, wav: np.ndarray) -> str:
  """The Thinker's answer to question audio, block by block as streaming decodes it."""
  mel, mel_valid = padded_mel(wav, cfg.mel_frames)
  head, tail = prompt_head_tail(tok)
  cache, valid, carry = streaming.thinker_prefill(
      model, params, mel, mel_valid, cfg=cfg, head=head, tail=tail, mask_id=tok.mask_id)
  text = []
  for j in range(cfg.num_text_blocks):
    tokens, _, carry, cache, _ = streaming.thinker_block(
        model, params, cache, valid, carry, jnp.int32(j), jax.random.key(j), cfg=cfg,
        mask_id=tok.mask_id, eos_id=tok.eos_id)
    text += np.asarray(tokens[0]).tolist()
    if tok.eos_id in text:
      return tok.decode(text[:text.index(tok.eos_id)])
  return tok.decode(text)


def heard_transcript(transcribe, params, tok, frames: int, wav: np.ndarray,
                     spell=None) -> str:
  """Greedy CTC of the stage-1 transcript head (argmax per frame, repeats merged, blanks
  = pad dropped): what the ears hear, apart from what the Thinker makes of it. `spell`
  (`transcript.greedy_spelling`): ears whose transcriber spells characters."""
  if spell is not None:
    return transcript.heard_texts(*spell(params, *padded_mel(wav, frames)))[0]
  logits, frames_valid = transcribe(params, *padded_mel(wav, frames))
  best = jnp.argmax(logits, -1)  # [1, frames]
  keep = ctc_greedy_keep(best, frames_valid, tok.pad_id)
  return tok.decode(np.asarray(best[0])[np.asarray(keep[0])].tolist())


def typed_answer(lm, params, tok, decoder, config, question: str, seed: int) -> str:
  """The Thinker's answer to `question` typed (its tokenizer and prompt); a question longer
  than the training prompt (a garbled transcript) gets a longer one, in steps of 16."""
  needed = -(-len(prompt_ids(tok, tok.encode(question))) // 16) * 16
  prefix, valid = text_eval.encode_question(tok, question, max(config.data.prompt_len, needed))
  out = text_eval.generate(lm, params, prefix, valid, jax.random.key(seed), decoder,
                           config.data.response_len)
  return tok.decode(np.asarray(out.tokens[0, :int(out.lengths[0])]).tolist())


def trained_words_subset(rows: dict[str, list]) -> dict[str, float | int]:
  """Spoken and heard exact match over the questions without unheard words: what ears
  trained on the corpus can reach, apart from words its recordings never say."""
  keep = [not u for u in rows["unheard_words"]]
  return {"n_trained_words": sum(keep),
          "spoken_exact_match_trained_words": text_metrics.exact_match_where(
              rows["spoken"], rows["reference"], keep),
          "heard_exact_match_trained_words": text_metrics.exact_match_where(
              rows["heard"], rows["question"], keep)}


def main(argv):
  del argv
  config = run_config.resolve(None, _CHECKPOINT.value)
  if _READ_AS.value:
    with config.unlocked():
      config.adaptor.read_as = _READ_AS.value
    try:
      validate.validate_config(config)
    except validate.ConfigError as e:
      sys.exit(f"error: --read_as: {e}")
  built, params = restore.load(config, _CHECKPOINT.value, jax.devices()[:1])
  model, tok = built.module, built.text_tokenizer
  cfg = streaming.stream_config(config, text_steps=_STEPS.value or None, rule=_RULE.value)
  lm = streaming.part_lm(model, "thinker")
  decoder = text_eval.decoder_config(config, tok, config.objective, steps=_STEPS.value,
                                     rule=_RULE.value)
  head, tail = (jnp.array([x]) for x in prompt_head_tail(tok))
  ctc_on = config.auxiliary.get("ctc_on", "encoder")
  transcribe = jax.jit(lambda p, m, v: model.apply(
      {"params": p}, m, v, head, tail, ctc_on, method=SpeechLLM.audio_prompt_and_transcript)[2:])
  spell = functools.partial(transcript.greedy_spelling, model) if spells(config) else None
  reads_transcript = config.adaptor.get("read_as", "frames") == "transcript"
  rows = {"spoken": [], "typed": [], "reference": [], "heard": [], "question": [],
          "unheard_words": []}
  corpus = tfds_builders.SpokenQAConfig(
      name="synthesized", num_speakers=_NUM_SPEAKERS.value,
      num_heldout_speakers=_NUM_UNSEEN.value)  # defaults: seed 0, the assistant voice
  voices_of = _VOICES_OF.value or _SPLIT.value
  read_words = build.corpus_read_words(config.data.dir)
  questions = (f"generator indices 0..n-1, voices of {voices_of} ({_NUM_SPEAKERS.value} train "
               "speakers)" if _SYNTHESIZE.value else "stored split, first n")
  for i in range(_N.value):
    if _SYNTHESIZE.value:
      ex = synthesized_question(corpus, _SPLIT.value, i, voices_of)
    else:
      ex = speech_io.heldout_question(config, i, _SPLIT.value)
    typed = functools.partial(typed_answer, lm, params, tok, decoder, config, seed=i)
    heard = heard_transcript(transcribe, params, tok, cfg.mel_frames, ex["audio"], spell)
    # read_as=transcript: the Thinker reads what the ears spelled, as a typed question
    rows["spoken"].append(typed(heard) if reads_transcript
                          else spoken_answer(model, params, tok, cfg, ex["audio"]))
    rows["typed"].append(typed(ex["question"]))
    rows["reference"].append(ex["answer"])
    rows["heard"].append(heard)
    rows["question"].append(ex["question"])
    rows["unheard_words"].append(spoken_qa.unheard_words(ex["question"], corpus.seed,
                                                         read_words))
  result = {"label": _LABEL.value, "checkpoint": _CHECKPOINT.value, "split": _SPLIT.value,
            "n": _N.value, "questions": questions, "objective": config.objective,
            "steps": cfg.text_steps if config.objective == "mdm" else None,
            "rule": _RULE.value if config.objective == "mdm" else None,
            "step": restore.checkpoint_step(_CHECKPOINT.value),
            "read_as": config.adaptor.get("read_as", "frames"),
            "spoken_exact_match": text_metrics.exact_match(rows["spoken"], rows["reference"]),
            "typed_exact_match": text_metrics.exact_match(rows["typed"], rows["reference"]),
            # the ears alone: greedy CTC transcript of the question == its text
            "heard_exact_match": text_metrics.exact_match(rows["heard"], rows["question"]),
            # the questions whose every word some train or read recording says
            **trained_words_subset(rows),
            "examples": [dict(zip(rows, r)) for r in zip(*rows.values())][:10],
            "command": result_file.command_line()}
  # one file, one row per call: the file's command is the latest, each row keeps its own
  previous = result_file.read(_OUT.value)["metrics"]["rows"] if os.path.exists(_OUT.value) else []
  result_file.write(_OUT.value, {"script": "benchmarks/spoken_thinker_eval.py"},
                    {"rows": previous + [result]})
  print({k: result[k] for k in ("label", "step", "spoken_exact_match", "typed_exact_match",
                                 "heard_exact_match", "n_trained_words",
                                 "spoken_exact_match_trained_words",
                                 "heard_exact_match_trained_words")})


if __name__ == "__main__":
  app.run(logs.main_quietly(main))
