"""Text tokenizer: training with special ids, round trips, loading from disk."""

import os

import pytest

from data_pipelines import spoken_qa, text_tokenizer


@pytest.fixture(scope="module")
def corpus():
  examples = [spoken_qa.make_example(0, "train", i, 4) for i in range(400)]
  return [t for ex in examples for t in (ex.question, ex.answer)]


@pytest.fixture(scope="module")
def trained(corpus):
  return text_tokenizer.train_sentencepiece(corpus, vocab_size=300)


def test_special_ids(trained):
  t = trained
  assert (t.pad_id, t.unk_id, t.bos_id, t.eos_id) == (0, 1, 2, 3)
  assert (t.mask_id, t.user_id, t.assistant_id) == (4, 5, 6)
  assert 50 < t.vocab_size <= 300


def test_round_trip_and_digits_split(trained, corpus):
  for text in corpus[:50]:
    ids = trained.encode(text)
    assert all(0 <= i < trained.vocab_size for i in ids)
    assert trained.decode(ids) == text
  ids = trained.encode("427")
  assert trained.decode(ids) == "427" and len(ids) >= 3  # one piece per digit
  assert trained.decode([trained.bos_id, *ids, trained.mask_id, trained.eos_id]) == "427"


def test_save_and_load_sentencepiece_file_and_dir(trained, tmp_path):
  path = os.path.join(tmp_path, "tokenizer.model")
  trained.save(path)
  for source in (path, str(tmp_path)):  # a file, and an HF-style directory holding it
    loaded = text_tokenizer.load_tokenizer(source)
    assert loaded.encode("what is 3 plus 4?") == trained.encode("what is 3 plus 4?")
    assert loaded.mask_id == trained.mask_id


def test_load_hf_tokenizer_json(tmp_path):
  tokenizers = pytest.importorskip("tokenizers")
  specials = ["<pad>", "<unk>", "<s>", "</s>", "<mask>", "<|user|>", "<|assistant|>"]
  vocab = {tok: i for i, tok in enumerate(specials + ["hello", "world"])}
  tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="<unk>"))
  tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
  tok.add_special_tokens(specials)
  tok.save(os.path.join(tmp_path, "tokenizer.json"))
  loaded = text_tokenizer.load_tokenizer(str(tmp_path))
  assert loaded.encode("hello world") == [7, 8]
  assert (loaded.mask_id, loaded.assistant_id, loaded.vocab_size) == (4, 6, 9)


def test_missing_special_token_is_named(trained, tmp_path):
  path = os.path.join(tmp_path, "t.model")
  trained.save(path)
  with pytest.raises(ValueError, match="no special token '<\\|im_start\\|>'"):
    text_tokenizer.load_tokenizer(path, text_tokenizer.SpecialTokens(user="<|im_start|>"))


def test_bad_files_are_reported(tmp_path):
  with pytest.raises(FileNotFoundError, match="neither"):
    text_tokenizer.load_tokenizer(str(tmp_path))
  bad = os.path.join(tmp_path, "bad.model")
  with open(bad, "wb") as f:
    f.write(b"not a model")
  with pytest.raises(ValueError, match="bad.model is not a sentencepiece model"):
    text_tokenizer.load_tokenizer(bad)


def test_padding_ids_decode_to_nothing(trained):
  """The model's vocabulary is padded past the tokenizer's pieces; an untrained model may
  emit such an id, which decodes to nothing rather than raising."""
  ids = trained.encode("427")
  assert trained.decode(ids + [trained.vocab_size + 3]) == "427"
