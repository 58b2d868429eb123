"""The demo (`make demo`): the main job end to end on the embedded corpus, sized for a 2-core CPU.

spoken-QA corpus -> tokenizers/units -> AR Thinker on typed questions (stage 0) -> AR speech
Thinker (stage 1: CTC of the question transcript on the adapted frames teaches the encoder
to hear and the adaptor to speak the Thinker's token embeddings) -> MDM speech Thinker
adapted from it (Dream's shifted logits) behind the AR run's frozen encoder and token
embeddings -> a Talker for each (stage 2; the MDM Talker adapted from the AR one) ->
vocoder (flow matching + Vocos) -> both answer the same 50 spoken questions of the test
split (recordings never trained on), judged by an independent ASR (eval.json + WAVs). MDM
decodes with the confidence-threshold rule (Fast-dLLM), at most `mdm_eval_steps` forwards
per block.

  python -m launch.recipe --recipe=configs/recipes/demo.py --workdir=demo_out
  python -m launch.recipe --recipe=configs/recipes/demo.py:seed=1,stage1_steps=2000 --workdir=W
  python -m launch.recipe --recipe=configs/recipes/demo.py:num_read=16000 --workdir=W  # + TTS data
  python -m launch.recipe \
      --recipe=configs/recipes/demo.py:num_read=16000,ar_talker_answer_steps=1000 --workdir=W
  # the long Talkers of docs/talker.md (hours on a 2-core CPU): AR 3000 steps, MDM 3000 from
  # it and 3000 more at learning rate 1e-3, the MDM Talker decoded at most 15 steps per
  # chunk at threshold 0.6
  python -m launch.recipe --recipe=configs/recipes/demo.py:ar_talker_steps=3000,\
mdm_talker_steps=3000,mdm_talker_more_steps=3000,mdm_eval_talker_steps=15,\
mdm_eval_talker_threshold=0.6 --workdir=W

`seed` sets every training stage's init, noise and batch order (the corpus stays the same).
"""
from __future__ import annotations

import ml_collections

from configs.recipes import knobs

DEFAULTS = dict(
    seed=0,
    num_train=8000,
    # Test questions stored. TFDS stores a split in hashed order, so another num_test puts
    # other questions first: 50 keeps the 50 every demo has answered.
    num_test=50,
    stage0_steps=1200,
    # 2400 (was 2800): its time goes to the Talker stages, which needed it far more
    stage1_steps=2000,
    mdm_steps=2000,
    # sentences read aloud (`data_pipelines.spoken_qa`) that both Talkers train on beside
    # the train answers: text to speech on sentences and word orders no answer has; 0: none
    num_read=0,
    ar_talker_steps=1500,
    # > 0: then the AR Talker trains this many more steps on the train answers alone (at
    # 1e-3), which the AR evaluation uses: with read sentences it says the answers it trained
    # on worse, and 1000 such steps bring them back (docs/talker.md)
    ar_talker_answer_steps=0,
    mdm_talker_steps=1000,
    mdm_talker_more_steps=0,  # > 0: the MDM Talker goes on this many steps (mdm_stage2_more)
    mdm_talker_more_learning_rate=1e-3,
    vocoder_steps=400,
    vocos_steps=1000,
    split="test",
    num_eval=50,
    mdm_eval_steps=4,
    mdm_eval_rule="threshold",
    mdm_eval_talker_steps=0,  # the MDM Talker's own steps per chunk (0: mdm_eval_steps)
    mdm_eval_talker_threshold=0.0,  # its own threshold (0: the Thinker's)
)


def get_recipe(arg: str | None = None) -> ml_collections.ConfigDict:
  k = knobs(arg, DEFAULTS)
  # Every training stage reads the corpus of stage `data` and the recipe's seed.
  common = {"data.dir": "{data}", "train.progress_bar": False, "seed": k["seed"]}
  # the MDM Thinker is adapted from the AR one; its first-token weight is the one the demo's
  # results were measured with (the text recipe's default, 4, is not measured here yet)
  shift = {"diffusion.shift_logits": True, "diffusion.first_token_weight": 1.0}
  # The Talkers read the answer text alone (no Thinker states): the states carry the
  # question's phrasing, and a Talker reading them says answers to new phrasings far worse
  # (docs/talker.md). A step runs the Talker alone, with no audio and no Thinker pass.
  talker = {**common, "talker.thinker_states": False}
  # Only when asked, so that a default run's record (and its resume) stays as it was.
  read = {"corpus.num_read": k["num_read"]} if k["num_read"] else {}
  if k["num_read"]:
    talker["data.train_split"] = "train+read"
  # Spoken answers + CTC only (no typed term): it did not change spoken exact match and its
  # time buys more MDM steps, which is what closes the gap to AR.
  no_typed = {"auxiliary.typed_weight": 0}
  evaluate = dict(steps=k["mdm_eval_steps"], rule=k["mdm_eval_rule"],
                  vocoder="{vocoder}/vocoder", split=k["split"], n=k["num_eval"])
  mdm_eval = {**evaluate,
              **({"talker_steps": k["mdm_eval_talker_steps"]}
                 if k["mdm_eval_talker_steps"] else {}),
              **({"talker_threshold": k["mdm_eval_talker_threshold"]}
                 if k["mdm_eval_talker_threshold"] else {})}
  answer_stages, ar_talker = [], "{ar_stage2}"
  more_stages, mdm_talker = [], "{mdm_stage2}"
  if k["mdm_talker_more_steps"]:
    more_stages = [dict(
        name="mdm_stage2_more", launcher="train", config="configs/mdm.py:tiny,stage=2",
        description="the MDM Talker, continued",
        init_from="{mdm_stage1},talker={mdm_stage2}", steps=k["mdm_talker_more_steps"],
        overrides={**talker, **shift,
                   "train.learning_rate": k["mdm_talker_more_learning_rate"]})]
    mdm_talker = "{mdm_stage2_more}"
  if k["ar_talker_answer_steps"]:
    answer_stages = [dict(
        name="ar_stage2_answers", launcher="train", config="configs/ar.py:tiny,stage=2",
        description="the AR Talker, then on the train answers alone",
        init_from="{ar_stage1},talker={ar_stage2}", steps=k["ar_talker_answer_steps"],
        overrides={**common, "talker.thinker_states": False, "train.learning_rate": 1e-3})]
    ar_talker = "{ar_stage2_answers}"
  stages = [
      dict(name="data", launcher="prepare_data", config="configs/data.py:tiny",
           description=f"spoken-QA corpus ({k['num_train']} train questions), tokenizer, units",
           overrides={"corpus.num_train": k["num_train"], "corpus.num_test": k["num_test"],
                      **read}),
      dict(name="ar_stage0", launcher="train", config="configs/ar.py:tiny,stage=0",
           description="AR Thinker on typed questions (stage 0)",
           steps=k["stage0_steps"], overrides=common),
      dict(name="ar_stage1", launcher="train", config="configs/ar.py:tiny,stage=1",
           description="AR speech Thinker (stage 1: question audio -> text answer)",
           init_from="thinker={ar_stage0}", steps=k["stage1_steps"],
           overrides={**common, **no_typed}),
      # The adaptor keeps learning (CTC reaches it), so the MDM Thinker is not bound to how
      # well one AR run's ears happened to hear.
      dict(name="mdm_stage1", launcher="train", config="configs/mdm.py:tiny,stage=1",
           description="MDM speech Thinker adapted from the AR one behind its frozen encoder",
           init_from="{ar_stage1}", frozen="encoder,thinker/embed_tokens",
           steps=k["mdm_steps"], overrides={**common, **shift, **no_typed}),
      dict(name="ar_stage2", launcher="train", config="configs/ar.py:tiny,stage=2",
           description="AR Talker (stage 2: text -> speech units)",
           init_from="{ar_stage1}", steps=k["ar_talker_steps"], overrides=talker),
      # The MDM Talker starts from the AR one: the text-to-unit alignment it learned carries
      # over, and its answers are heard far better than a Talker trained from scratch.
      dict(name="mdm_stage2", launcher="train", config="configs/mdm.py:tiny,stage=2",
           description="MDM Talker adapted from the AR Talker",
           init_from="{mdm_stage1},talker={ar_stage2}", steps=k["mdm_talker_steps"],
           overrides={**talker, **shift}),
      *answer_stages,
      *more_stages,
      dict(name="vocoder", launcher="train_vocoder", config="configs/vocoder.py:tiny",
           description="vocoder (units -> mel: flow matching; mel -> waveform: Vocos)",
           steps=k["vocoder_steps"], flags={"data": "{data}"},
           overrides={"neural.train.steps": k["vocos_steps"]}),
      dict(name="eval_ar", launcher="evaluate",
           description=f"AR answers {k['num_eval']} spoken questions of the {k['split']} split",
           flags={"checkpoint": ar_talker, **evaluate}),
      # Same questions and vocoder: the MDM evaluation reuses the AR one's ASR floors.
      dict(name="eval_mdm", launcher="evaluate",
           description=f"MDM answers the same {k['num_eval']} questions",
           flags={"checkpoint": mdm_talker, **mdm_eval, "floors_from": "{eval_ar}"}),
      dict(name="summary", launcher="demo_summary",
           flags={"ar": "{eval_ar}", "mdm": "{eval_mdm}"}),
  ]
  return ml_collections.ConfigDict(dict(stages=stages))
