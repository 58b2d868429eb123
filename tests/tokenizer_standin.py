"""A stand-in for a pretrained checkpoint's tokenizer: a byte-level BPE trained on the corpus
texts, written as a GGUF (llama.cpp's `gpt2` tokenizer fields) and as an HF directory, with
SmolLM2's chat template and special tokens. Small enough to build in a second."""
from __future__ import annotations

import json
import os

import numpy as np

from data_pipelines import spoken_qa

# SmolLM2-135M-Instruct's chat template (its GGUF's tokenizer.chat_template).
CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
    "Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}")
SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<repo_name>", "<empty_output>")


def corpus_texts(n: int = 200) -> list[str]:
  """Questions and answers of the corpus's train and heldout splits."""
  out = []
  for split in ("train", "heldout"):
    for i in range(n):
      ex = spoken_qa.make_example(0, split, i, 1)
      out += [ex.question, ex.answer]
  return out


def train_bpe(vocab_size: int = 448):
  """A `tokenizers` byte-level BPE (SmolLM2's pre-tokenizer) trained on corpus texts; its
  size a multiple of the tiny preset's vocab_multiple, as SmolLM2's 49152 is."""
  from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
  tok = Tokenizer(models.BPE())
  tok.pre_tokenizer = pre_tokenizers.Sequence([
      pre_tokenizers.Digits(individual_digits=True),
      pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
  tok.decoder = decoders.ByteLevel()
  trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIALS),
                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                show_progress=False)
  tok.train_from_iterator(corpus_texts(), trainer)
  assert tok.get_vocab_size() == vocab_size
  return tok


def write_gguf(tok, path: str) -> str:
  """The tokenizer as a GGUF's metadata (no tensors), as llama.cpp's converter writes it."""
  import gguf
  model = json.loads(tok.to_str())["model"]
  tokens = [t for t, _ in sorted(model["vocab"].items(), key=lambda kv: kv[1])]
  merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
  writer = gguf.GGUFWriter(path, "llama")
  writer.add_tokenizer_model("gpt2")
  writer.add_tokenizer_pre("smollm")
  writer.add_token_list(tokens)
  writer.add_token_types([3 if t in SPECIALS else 1 for t in tokens])
  writer.add_token_merges(merges)
  writer.add_bos_token_id(tokens.index("<|im_start|>"))
  writer.add_eos_token_id(tokens.index("<|im_end|>"))
  writer.add_unk_token_id(tokens.index("<|endoftext|>"))
  writer.add_chat_template(CHAT_TEMPLATE)
  writer.write_header_to_file()
  writer.write_kv_data_to_file()
  writer.write_tensors_to_file()
  writer.close()
  return path


def write_hf_dir(tok, directory: str) -> str:
  """The tokenizer as an HF directory: tokenizer.json + tokenizer_config.json."""
  os.makedirs(directory, exist_ok=True)
  tok.save(os.path.join(directory, "tokenizer.json"))
  with open(os.path.join(directory, "tokenizer_config.json"), "w") as f:
    json.dump({"bos_token": "<|im_start|>", "eos_token": "<|im_end|>",
               "unk_token": "<|endoftext|>", "chat_template": CHAT_TEMPLATE}, f)
  return directory


def random_ids(tok, rng: np.random.Generator, n: int) -> list[int]:
  """n ids of ordinary (non-special) tokens."""
  specials = {tok.token_to_id(s) for s in SPECIALS}
  ordinary = [i for i in range(tok.get_vocab_size()) if i not in specials]
  return [int(i) for i in rng.choice(ordinary, size=n)]
