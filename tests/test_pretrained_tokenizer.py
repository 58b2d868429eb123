"""A pretrained checkpoint's tokenizer and chat template (GGUF and HF forms) behind the
TextTokenizer interface; the [MASK]/pad reserved tokens; ordinary logits unchanged."""
import jax.numpy as jnp
import numpy as np
import pytest

from configs import ar
from data_pipelines import pretrained_tokenizer, prompt
from tests import tokenizer_standin as ph
from vocalnet_jax.modeling import build
from vocalnet_jax.modeling.validate import ConfigError
from vocalnet_jax.models.decoder import decoder_from_config

pytest.importorskip("gguf")


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
  """(source tokenizers.Tokenizer, gguf:FILE spec, hf:DIR spec)."""
  tok = ph.train_bpe()
  d = tmp_path_factory.mktemp("pretrained")
  return (tok, "gguf:" + ph.write_gguf(tok, str(d / "standin.gguf")),
          "hf:" + ph.write_hf_dir(tok, str(d / "hf")))


def test_gguf_tokenizer_reproduces_the_source_bpe(standin):
  """Rebuilt from the GGUF's tokens, types and merges, the tokenizer encodes every corpus
  text to the ids of the BPE it was written from, and decodes them back to the text."""
  source, gguf_spec, _ = standin
  tok = pretrained_tokenizer.load(gguf_spec)
  assert tok.vocab_size == source.get_vocab_size()
  for text in ph.corpus_texts(100) + ["12 + 7 = 19", "Take 45 away from 300. What is left?"]:
    ids = tok.encode(text)
    assert ids == source.encode(text).ids, text
    assert tok.decode(ids) == text


def test_smollm_pre_tokenizer_splits_every_digit():
  """llama.cpp's `smollm` pre-tokenizer is SmolLM2's tokenizer.json one: each digit alone (the
  space before a number its own piece), words with their leading space (GPT-2 byte level)."""
  pieces = pretrained_tokenizer._pre_tokenizer("smollm", "x").pre_tokenize_str(" take 12 away, 7.")
  assert [p for p, _ in pieces] == ["\u0120take", "\u0120", "1", "2", "\u0120away", ",", "\u0120",
                                    "7", "."]
  with pytest.raises(ValueError, match="tokenizer.ggml.pre='qwen2' is not supported"):
    pretrained_tokenizer._pre_tokenizer("qwen2", "x")


def test_chat_template_round_trip(standin):
  """The prompt is the template's own rendering: head + question + tail encodes exactly as
  the rendered chat text (no BPE merge across the seams), in SmolLM2's layout."""
  _, gguf_spec, _ = standin
  tok = pretrained_tokenizer.load(gguf_spec)
  q = "if this month is june, what is next month?"
  assert tok.render(q) == ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, "
                           "trained by Hugging Face<|im_end|>\n<|im_start|>user\n" + q +
                           "<|im_end|>\n<|im_start|>assistant\n")
  for text in ph.corpus_texts(100)[::2]:
    assert prompt.prompt_ids(tok, tok.encode(text)) == tok.encode(tok.render(text))
  assert tok.decode(tok.encode(tok.render(q))) == ("system\nYou are a helpful AI assistant "
                                                    "named SmolLM, trained by Hugging Face\n"
                                                    "user\n" + q + "\nassistant\n")
  assert tok.eos_id == tok.encode("<|im_end|>")[0]  # an answer ends its turn


def test_hf_directory_gives_the_same_tokenizer(standin):
  _, gguf_spec, hf_spec = standin
  a, b = pretrained_tokenizer.load(gguf_spec), pretrained_tokenizer.load(hf_spec)
  assert a.prompt_affixes == b.prompt_affixes
  assert build.TextIds.of(a) == build.TextIds.of(b)
  for text in ph.corpus_texts(30):
    assert a.encode(text) == b.encode(text)


def test_mask_and_pad_are_reserved_tokens(standin):
  """[MASK] and pad are the checkpoint's unused special tokens: distinct from bos/eos/unk
  and each other, never produced by ordinary text, dropped when decoding."""
  source, gguf_spec, _ = standin
  tok = pretrained_tokenizer.load(gguf_spec)
  assert tok.mask_id == source.token_to_id("<empty_output>")
  assert tok.pad_id == source.token_to_id("<repo_name>")
  assert len({tok.mask_id, tok.pad_id, tok.bos_id, tok.eos_id, tok.unk_id}) == 5
  seen = {i for text in ph.corpus_texts(200) for i in tok.encode(text)}
  assert tok.mask_id not in seen and tok.pad_id not in seen
  assert tok.decode([tok.mask_id, *tok.encode("cat"), tok.pad_id]) == "cat"


def test_mask_token_leaves_the_checkpoint_logits(standin, tmp_path):
  """No embedding resize: the speech model built with the checkpoint's tokenizer has the
  checkpoint's vocabulary, and its Thinker, given the checkpoint's weights, gives the same
  logits for every token as transformers' Llama on the chat prompt."""
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  from vocalnet_jax.models import hf_import
  source, _, hf_spec = standin
  hf_dir = str(tmp_path / "llama")
  ph.write_hf_dir(source, hf_dir)
  hf_spec = "hf:" + hf_dir
  torch.manual_seed(0)
  llama = transformers.LlamaForCausalLM(transformers.LlamaConfig(
      vocab_size=source.get_vocab_size(), hidden_size=32, intermediate_size=64,
      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
      tie_word_embeddings=True, rope_theta=1e5)).eval()
  with torch.no_grad():
    for p in llama.parameters():
      p.normal_(0, 0.2)
  llama.save_pretrained(hf_dir)
  hp, params = hf_import.load_hf_decoder(hf_dir)
  config = ar.get_config("tiny,stage=0")
  config.model.update(tokenizer=hf_spec, embed_dim=32, num_layers=2, num_heads=4,
                      num_kv_heads=2, head_dim=8, mlp_dim=64, rope_theta=1e5,
                      tie_embeddings=True)
  tok = build.load_text_tokenizer(config)
  vocab = build.thinker_vocab(config, tok)
  assert vocab == source.get_vocab_size() == hp["vocab_size"]
  thinker = decoder_from_config(config.model, vocab)
  ids = prompt.prompt_ids(tok, tok.encode("what is 12 plus 7?"))
  tokens = jnp.asarray([ids])  # [1, L]
  positions = jnp.arange(len(ids))[None]  # [1, L]
  causal = jnp.tril(jnp.ones((1, len(ids), len(ids)), bool))  # [1, L, L]
  ours, _, _ = thinker.apply({"params": params}, tokens, positions, causal)
  with torch.no_grad():
    theirs = llama(torch.tensor([ids])).logits.numpy()
  # float32 through 2 layers of weights ~N(0, 0.2): logits of order 10 (test_hf_import)
  np.testing.assert_allclose(np.asarray(ours), theirs, atol=1e-3)


def test_bad_tokenizer_spec_is_one_config_error(tmp_path):
  config = ar.get_config("tiny,stage=0")
  config.model.tokenizer = f"gguf:{tmp_path}/missing.gguf"
  with pytest.raises(ConfigError, match="config.model.tokenizer=.*does not exist"):
    build.load_text_tokenizer(config)
  config.model.tokenizer = "safetensors:x"
  with pytest.raises(ConfigError, match="use gguf:FILE or hf:DIR"):
    build.load_text_tokenizer(config)


def test_common_words_are_word_initial_lowercase_pieces_in_vocabulary_order(standin):
  """The read split's general English: pieces that start a word ("Ġword"), 3+ lowercase
  letters, in id order (BPE merges come in frequency order), at most n of them."""
  source, gguf_spec, _ = standin
  tok = pretrained_tokenizer.load(gguf_spec)
  words = tok.common_words(1000)
  want = [p[1:] for p, _ in sorted(source.get_vocab().items(), key=lambda kv: kv[1])
          if p.startswith("\u0120") and p[1:].isascii() and p[1:].isalpha()
          and p[1:].islower() and len(p) > 3]
  assert list(words) == want and len(want) > 10
  assert "the" in words and "what" in words  # corpus words the stand-in BPE merged whole
  assert tok.common_words(5) == words[:5]
