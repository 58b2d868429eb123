"""Text tokenizer: train sentencepiece on the corpus text, or load an existing one.

Why: the Thinker needs subword ids plus special ids (pad, bos, eos, the diffusion
[MASK], and turn markers). Training gives a small vocabulary for the embedded
corpus; a user with a pretrained LLM loads its tokenizer instead.

Sources (`load_tokenizer(path)`):
  * a sentencepiece `.model` file (ours or any other),
  * a Hugging Face tokenizer directory holding `tokenizer.model` (sentencepiece)
    or `tokenizer.json` (read with the `tokenizers` package, installed with
    `transformers`).
Special tokens are looked up by their strings (`SpecialTokens`); a missing one
is an error naming the token and the file, not a silent fallback.

Our trained models fix the ids: pad=0, unk=1, bos=2, eos=3, <mask>=4,
<|user|>=5, <|assistant|>=6. Digits are split into single pieces so numbers
are spelled digit by digit (the arithmetic templates need it).
"""

from __future__ import annotations

import dataclasses
import io
from typing import Any, Iterable, Protocol

from etils import epath
import sentencepiece as spm


@dataclasses.dataclass(frozen=True)
class SpecialTokens:
  """Strings of the special tokens; override to match a pretrained tokenizer."""

  pad: str = "<pad>"
  unk: str = "<unk>"
  bos: str = "<s>"
  eos: str = "</s>"
  mask: str = "<mask>"
  user: str = "<|user|>"
  assistant: str = "<|assistant|>"


class _Backend(Protocol):
  def encode(self, text: str) -> list[int]: ...
  def decode(self, ids: list[int]) -> str: ...
  def piece_to_id(self, piece: str) -> int | None: ...
  def vocab_size(self) -> int: ...


class _SentencePiece:
  def __init__(self, model_proto: bytes):
    self.sp = spm.SentencePieceProcessor(model_proto=model_proto)
    self.model_proto = model_proto

  def encode(self, text: str) -> list[int]:
    return self.sp.encode(text)

  def decode(self, ids: list[int]) -> str:
    """Text of `ids`; ids past the pieces (the model's vocabulary padding, which an
    untrained model may emit) decode to nothing instead of raising."""
    size = self.sp.get_piece_size()
    return self.sp.decode([int(i) for i in ids if 0 <= int(i) < size])

  def piece_to_id(self, piece: str) -> int | None:
    i = self.sp.piece_to_id(piece)
    return None if i == self.sp.unk_id() and piece != self.sp.id_to_piece(i) else i

  def vocab_size(self) -> int:
    return self.sp.get_piece_size()


class _HFTokenizers:
  def __init__(self, path: str, tok: Any = None):
    """A `tokenizers.Tokenizer`: `tok` itself, or read from the JSON file `path`."""
    if tok is None:
      try:
        import tokenizers  # pylint: disable=g-import-not-at-top
      except ImportError as e:
        raise ImportError(f"{path} needs the `tokenizers` package (pip install transformers)"
                          ) from e
      tok = tokenizers.Tokenizer.from_file(path)
    self.tok = tok

  def encode(self, text: str) -> list[int]:
    return self.tok.encode(text, add_special_tokens=False).ids

  def decode(self, ids: list[int]) -> str:
    return self.tok.decode(ids, skip_special_tokens=True)

  def piece_to_id(self, piece: str) -> int | None:
    return self.tok.token_to_id(piece)

  def vocab_size(self) -> int:
    return self.tok.get_vocab_size(with_added_tokens=True)


class TextTokenizer:
  """encode/decode text and expose the special ids the models need."""

  def __init__(self, backend: _Backend, source: str, specials: SpecialTokens = SpecialTokens()):
    self._backend, self.source = backend, source
    ids = {}
    for field in dataclasses.fields(specials):
      token = getattr(specials, field.name)
      ids[field.name] = backend.piece_to_id(token)
      if ids[field.name] is None:
        raise ValueError(f"tokenizer {source} has no special token {token!r} "
                         f"(SpecialTokens.{field.name}); add it or set its string")
    self._ids = ids

  vocab_size = property(lambda self: self._backend.vocab_size())
  pad_id = property(lambda self: self._ids["pad"])
  unk_id = property(lambda self: self._ids["unk"])
  bos_id = property(lambda self: self._ids["bos"])
  eos_id = property(lambda self: self._ids["eos"])
  mask_id = property(lambda self: self._ids["mask"])
  user_id = property(lambda self: self._ids["user"])
  assistant_id = property(lambda self: self._ids["assistant"])

  def encode(self, text: str) -> list[int]:
    """Text -> ids, without bos/eos (callers add turn markers explicitly)."""
    return self._backend.encode(text)

  def decode(self, ids: Iterable[int]) -> str:
    """Ids -> text; special ids are dropped."""
    special = set(self._ids.values())
    return self._backend.decode([int(i) for i in ids if int(i) not in special])

  def save(self, path: str) -> None:
    """Writes a sentencepiece model file (only for sentencepiece-backed tokenizers)."""
    if not isinstance(self._backend, _SentencePiece):
      raise TypeError(f"only sentencepiece tokenizers can be saved; this one is {self.source}")
    with open(path, "wb") as f:
      f.write(self._backend.model_proto)


def train_sentencepiece(texts: Iterable[str], vocab_size: int,
                        model_type: str = "unigram") -> TextTokenizer:
  """Trains a sentencepiece model on `texts` with our special ids (see module doc).

  `vocab_size` is an upper bound: on a small corpus sentencepiece may stop earlier.
  """
  specials = SpecialTokens()
  proto = io.BytesIO()
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(texts), model_writer=proto, vocab_size=vocab_size,
      model_type=model_type, character_coverage=1.0, split_digits=True,
      hard_vocab_limit=False, normalization_rule_name="identity",
      pad_id=0, unk_id=1, bos_id=2, eos_id=3,
      pad_piece=specials.pad, unk_piece=specials.unk, bos_piece=specials.bos,
      eos_piece=specials.eos,
      user_defined_symbols=[specials.mask, specials.user, specials.assistant],
      minloglevel=2,
  )
  return TextTokenizer(_SentencePiece(proto.getvalue()), "trained sentencepiece", specials)


def load_tokenizer(path: str, specials: SpecialTokens = SpecialTokens()) -> TextTokenizer:
  """Loads a sentencepiece `.model` file or a Hugging Face tokenizer directory; local or
  any path etils.epath reads (`gs://...`)."""
  file = epath.Path(path)
  if file.is_dir():
    for name in ("tokenizer.model", "tokenizer.json"):
      if (file / name).exists():
        return load_tokenizer(str(file / name), specials)
    raise FileNotFoundError(f"{path} has neither tokenizer.model nor tokenizer.json")
  if not file.exists():
    raise FileNotFoundError(f"tokenizer file {path} does not exist")
  if path.endswith(".json"):
    return TextTokenizer(_HFTokenizers(path), path, specials)
  proto = file.read_bytes()
  try:
    backend = _SentencePiece(proto)
  except RuntimeError as e:
    raise ValueError(f"{path} is not a sentencepiece model: {e}") from e
  return TextTokenizer(backend, path, specials)
