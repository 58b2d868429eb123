"""A pretrained checkpoint's own tokenizer and chat template, behind `TextTokenizer`.

Why: a Thinker started from a pretrained LM must read the prompt the way it was trained to:
its byte-level BPE and its chat template (`<|im_start|>user ... <|im_end|>` for SmolLM2),
not a sentencepiece model trained on our corpus. Sources:
  * `gguf:FILE`: the GGUF's tokens, token types, merges and `tokenizer.chat_template`
    (llama.cpp's `gpt2` tokenizer model, read with the `gguf` package, run by `tokenizers`);
  * `hf:DIR`: a Hugging Face directory's `tokenizer.json` and the `chat_template`, bos and
    eos of its `tokenizer_config.json`.

The prompt layout (`data_pipelines.prompt`) becomes the template's text before and after
the user's message with the generation prompt appended (`prompt_affixes`); an answer ends
with the template's end-of-turn token (eos). The MDM `[MASK]` and the padding id (also the
CTC blank) are reserved special tokens of the checkpoint that ordinary text never encodes
to: the highest-id special token that is not bos, eos or unk is [MASK], the next one pad.
No row is added to the embedding, so the checkpoint's shapes and the logits of every
ordinary token stay as they were.
"""
from __future__ import annotations

import json
from typing import Any

from etils import epath

from data_pipelines.text_tokenizer import SpecialTokens, TextTokenizer, _HFTokenizers

# Stands for the user's message while the template renders; never part of a real prompt.
_SENTINEL = "\x00QUESTION\x00"
# GGUF token types (llama.cpp's `LLAMA_TOKEN_TYPE_*`) that are special tokens.
_GGUF_CONTROL, _GGUF_USER_DEFINED = 3, 4


def _pre_tokenizer(name: str, source: str) -> Any:
  """`tokenizers` pre-tokenizer of llama.cpp's `tokenizer.ggml.pre` name."""
  from tokenizers import pre_tokenizers  # pylint: disable=g-import-not-at-top
  byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
  table = {
      "gpt2": byte_level,
      "default": byte_level,
      # SmolLM2 (StarCoder vocabulary): every digit alone, then GPT-2's byte-level split
      "smollm": pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                         byte_level]),
  }
  if name not in table:
    raise ValueError(f"{source}: tokenizer.ggml.pre={name!r} is not supported; "
                     f"choose a GGUF with one of {sorted(table)}")
  return table[name]


def _gguf_tokenizer(path: str) -> tuple[Any, list[str], dict[str, Any]]:
  """(tokenizers.Tokenizer, special token strings, metadata) of a GGUF file."""
  import gguf  # pylint: disable=g-import-not-at-top
  from tokenizers import Tokenizer, decoders, models  # pylint: disable=g-import-not-at-top
  reader = gguf.GGUFReader(path)
  meta = {k: f.contents() for k, f in reader.fields.items() if k.startswith("tokenizer.")}
  if meta.get("tokenizer.ggml.model") != "gpt2":
    raise ValueError(f"{path}: tokenizer.ggml.model={meta.get('tokenizer.ggml.model')!r}; "
                     "only byte-level BPE ('gpt2') GGUF tokenizers are supported")
  tokens, types = meta["tokenizer.ggml.tokens"], meta["tokenizer.ggml.token_type"]
  merges = [tuple(m.split(" ", 1)) for m in meta["tokenizer.ggml.merges"]]
  tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges,
                             fuse_unk=False, byte_fallback=False))
  tok.pre_tokenizer = _pre_tokenizer(meta.get("tokenizer.ggml.pre", "default"), path)
  tok.decoder = decoders.ByteLevel()
  special = [t for t, k in zip(tokens, types) if k in (_GGUF_CONTROL, _GGUF_USER_DEFINED)]
  tok.add_special_tokens(special)  # matched whole in text, skipped when decoding
  return tok, special, meta


def _render_affixes(template: str, source: str, **names: str) -> tuple[str, str]:
  """The chat template's text before and after one user message, generation prompt added."""
  import jinja2  # pylint: disable=g-import-not-at-top

  def raise_exception(message):
    raise jinja2.TemplateError(message)

  env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
  env.globals["raise_exception"] = raise_exception
  text = env.from_string(template).render(
      messages=[{"role": "user", "content": _SENTINEL}], add_generation_prompt=True, **names)
  if text.count(_SENTINEL) != 1:
    raise ValueError(f"{source}: the chat template does not place the user's message once")
  head, tail = text.split(_SENTINEL)
  return head, tail


class ChatTokenizer(TextTokenizer):
  """A pretrained BPE tokenizer whose prompt is its chat template (`prompt_affixes`)."""

  def __init__(self, backend: _HFTokenizers, source: str, specials: SpecialTokens,
               chat_template: str):
    super().__init__(backend, source, specials)
    self.chat_template, self.special_tokens = chat_template, specials
    head, tail = _render_affixes(chat_template, source, bos_token=specials.bos,
                                 eos_token=specials.eos)
    # ids before and after the question (prompt.prompt_head_tail reads these)
    self.prompt_affixes = (tuple(self.encode(head)), tuple(self.encode(tail)))

  def render(self, question: str) -> str:
    """The template's text of one user turn and the generation prompt (what a chat client
    sends the model): `encode(render(q)) == head + encode(q) + tail`."""
    head, tail = _render_affixes(self.chat_template, self.source,
                                 bos_token=self.special_tokens.bos,
                                 eos_token=self.special_tokens.eos)
    return head + question + tail

  def common_words(self, n: int) -> tuple[str, ...]:
    """The first `n` word-initial lowercase pieces of 3+ letters in id order (BPE merge
    order, roughly by frequency): general English words (and a few word stems), e.g. for
    ears to hear (`spoken_qa` read split). Shorter pieces are mostly fragments ("th")."""
    words = []
    for i in range(self.vocab_size):
      piece = self._backend.tok.id_to_token(i) or ""
      if piece.startswith(_WORD_START) and piece[1:].isascii() and piece[1:].isalpha() \
          and piece[1:].islower() and len(piece) > 3:
        words.append(piece[1:])
        if len(words) == n:
          break
    return tuple(words)


_WORD_START = "\u0120"  # byte-level BPE's space ("Ġ"): a token that starts a word


def _specials(special: list[str], bos: str, eos: str, unk: str, source: str) -> SpecialTokens:
  """bos/eos/unk as the checkpoint names them; [MASK] and pad from its reserved specials."""
  reserved = [t for t in reversed(special) if t not in (bos, eos, unk)]
  if len(reserved) < 2:
    raise ValueError(f"{source} has {len(reserved)} reserved special token(s) besides "
                     f"bos/eos/unk; [MASK] and pad need two")
  # user/assistant: the turn marker (the template itself writes the roles)
  return SpecialTokens(pad=reserved[1], unk=unk, bos=bos, eos=eos, mask=reserved[0],
                       user=bos, assistant=bos)


def load_gguf(path: str) -> ChatTokenizer:
  """The tokenizer and chat template stored in a GGUF file."""
  if not epath.Path(path).is_file():
    raise FileNotFoundError(f"GGUF file {path} does not exist")
  tok, special, meta = _gguf_tokenizer(path)
  if "tokenizer.chat_template" not in meta:
    raise ValueError(f"{path} has no tokenizer.chat_template")
  tokens = meta["tokenizer.ggml.tokens"]
  piece = lambda key: tokens[int(meta[key])]  # noqa: E731
  unk = piece("tokenizer.ggml.unknown_token_id") if "tokenizer.ggml.unknown_token_id" in meta \
      else special[0]
  specials = _specials(special, piece("tokenizer.ggml.bos_token_id"),
                       piece("tokenizer.ggml.eos_token_id"), unk, path)
  return ChatTokenizer(_HFTokenizers(path, tok), path, specials, meta["tokenizer.chat_template"])


def load_hf(directory: str) -> ChatTokenizer:
  """`tokenizer.json` and `tokenizer_config.json` (chat_template, bos/eos) of an HF dir."""
  d = epath.Path(directory)
  for name in ("tokenizer.json", "tokenizer_config.json"):
    if not (d / name).is_file():
      raise FileNotFoundError(f"{directory} has no {name}")
  cfg = json.loads((d / "tokenizer_config.json").read_text(encoding="utf-8"))
  if "chat_template" not in cfg:
    raise ValueError(f"{directory}/tokenizer_config.json has no chat_template")
  name = lambda t: t["content"] if isinstance(t, dict) else t  # noqa: E731
  backend = _HFTokenizers(str(d / "tokenizer.json"))
  special = [t.content for _, t in sorted(backend.tok.get_added_tokens_decoder().items())
             if t.special]
  bos, eos = name(cfg.get("bos_token")), name(cfg.get("eos_token"))
  unk = name(cfg.get("unk_token") or bos)
  return ChatTokenizer(backend, directory, _specials(special, bos, eos, unk, directory),
                       cfg["chat_template"])


def load(spec: str) -> ChatTokenizer:
  """`gguf:FILE` or `hf:DIR` -> the checkpoint's tokenizer and chat template."""
  kind, _, path = spec.partition(":")
  loaders = {"gguf": load_gguf, "hf": load_hf}
  if kind not in loaders or not path:
    raise ValueError(f"pretrained tokenizer {spec!r}: use gguf:FILE or hf:DIR")
  return loaders[kind](path)
