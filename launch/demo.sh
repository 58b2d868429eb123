#!/usr/bin/env bash
# The main job end to end on the embedded corpus (called by `make demo`):
# spoken-QA corpus -> tokenizers/units -> AR Thinker on typed questions (stage 0) ->
# AR speech Thinker (stage 1: CTC of the question transcript on the adapted frames teaches
# the encoder to hear and the adaptor to speak the Thinker's token embeddings) ->
# MDM speech Thinker adapted from it (Dream's shifted logits) behind the AR run's frozen
# encoder and token embeddings -> a Talker for each (stage 2; the MDM Talker adapted from
# the AR one) -> vocoder (flow matching + Vocos) -> both answer the same 50 spoken questions
# of the test split (recordings never trained on; short questions can repeat a train
# question's text), judged by an independent ASR (eval.json + WAVs). MDM decodes with the
# confidence-threshold rule (Fast-dLLM), at most MDM_EVAL_STEPS forwards per block.
# Step counts are sized for a 2-core CPU; override with e.g. STAGE1_STEPS=2000 make demo.
# SEED sets every training stage's init, noise and batch order (the corpus stays the same):
# SEED=1 make demo shows how much a figure moves with the run (README, Results).
set -euo pipefail
DEMO_DIR=${DEMO_DIR:-demo_out}
PY=${PY:-.venv/bin/python}
NUM_TRAIN=${NUM_TRAIN:-8000}
# Test questions stored. TFDS stores a split in hashed order, so another NUM_TEST puts other
# questions first: 50 keeps the 50 questions every earlier demo answered. A corpus prepared
# with more (same train split, tokenizer and units) scores these checkpoints with less
# noise: benchmarks/spoken_thinker_eval.py --n=300.
NUM_TEST=${NUM_TEST:-50}
STAGE0_STEPS=${STAGE0_STEPS:-1200}
STAGE1_STEPS=${STAGE1_STEPS:-2800}
MDM_STEPS=${MDM_STEPS:-2400}
STAGE2_STEPS=${STAGE2_STEPS:-200}
VOCODER_STEPS=${VOCODER_STEPS:-400}
VOCOS_STEPS=${VOCOS_STEPS:-1000}
SPLIT=${SPLIT:-test}
NUM_EVAL=${NUM_EVAL:-50}
MDM_EVAL_STEPS=${MDM_EVAL_STEPS:-4}
MDM_EVAL_RULE=${MDM_EVAL_RULE:-threshold}
SEED=${SEED:-0}
export XLA_FLAGS=${XLA_FLAGS:-}
DATA=$DEMO_DIR/data
SHIFT=--config.diffusion.shift_logits=True  # the MDM Thinker is adapted from the AR one

# A rerun resumes every stage from its workdir, so a DEMO_DIR trained by another recipe (other
# steps, corpus, or an older demo.sh) would silently mix runs: refuse it in one line.
RECIPE="$SEED $NUM_TRAIN $NUM_TEST $STAGE0_STEPS $STAGE1_STEPS $MDM_STEPS $STAGE2_STEPS $VOCODER_STEPS $VOCOS_STEPS $(cksum < "$0")"
if [ -e "$DEMO_DIR" ] && [ "$(cat "$DEMO_DIR/recipe.txt" 2>/dev/null)" != "$RECIPE" ]; then
  echo "error: $DEMO_DIR holds a run of another recipe ($DEMO_DIR/recipe.txt differs);" \
    "remove it (make clean) or set DEMO_DIR to a new directory" >&2
  exit 1
fi
mkdir -p "$DEMO_DIR" && echo "$RECIPE" > "$DEMO_DIR/recipe.txt"

step() { printf '\n=== %s (%s) ===\n' "$*" "$(date +%T)"; }
train() {  # train CONFIG WORKDIR [overrides...]
  local config=$1 workdir=$2
  shift 2
  $PY -m launch.train --config="$config" --workdir="$workdir" --config.data.dir="$DATA" \
    --config.train.progress_bar=False --config.seed="$SEED" "$@"
}

step "1/7 spoken-QA corpus ($NUM_TRAIN train questions), sentencepiece tokenizer, speech units"
$PY -m launch.prepare_data --config=configs/data.py:tiny --config.corpus.num_train="$NUM_TRAIN" \
  --config.corpus.num_test="$NUM_TEST" --out="$DATA"

step "2/7 AR Thinker on typed questions (stage 0), $STAGE0_STEPS steps"
train configs/ar.py:tiny,stage=0 "$DEMO_DIR/ar/stage0" --config.train.steps="$STAGE0_STEPS"

step "3/7 AR speech Thinker (stage 1: question audio -> text answer), $STAGE1_STEPS steps"
# Spoken answers + CTC only: the typed term (a second Thinker pass per step) did not change
# spoken exact match on 300 test questions and costs time; without it the Thinker forgets
# typed prompts (measured: README, Results).
train configs/ar.py:tiny,stage=1 "$DEMO_DIR/ar/stage1" \
  --config.init_from="thinker=$DEMO_DIR/ar/stage0" --config.train.steps="$STAGE1_STEPS" \
  --config.auxiliary.typed_weight=0

step "4/7 MDM speech Thinker adapted from the AR one behind its frozen encoder, $MDM_STEPS steps"
# The spoken answer + CTC, no typed term: its time buys more MDM steps, which is what closes
# the gap to AR; the adaptor keeps learning (CTC reaches it) so the MDM Thinker is not bound
# to how well one AR run's ears happened to hear (README, Results).
train configs/mdm.py:tiny,stage=1 "$DEMO_DIR/mdm/stage1" $SHIFT \
  --config.init_from="$DEMO_DIR/ar/stage1" \
  --config.train.frozen=encoder,thinker/embed_tokens --config.train.steps="$MDM_STEPS" \
  --config.auxiliary.typed_weight=0

step "5/7 Talkers (stage 2: text -> speech units), $STAGE2_STEPS steps each"
# One mel bucket: a few hundred steps save less on short batches than three more compiles cost.
ONE_BUCKET='--config.data.mel_buckets=(600,)'
train configs/ar.py:tiny,stage=2 "$DEMO_DIR/ar/stage2" "$ONE_BUCKET" \
  --config.init_from="$DEMO_DIR/ar/stage1" --config.train.steps="$STAGE2_STEPS"
# The MDM Talker starts from the AR one (as the MDM Thinker from the AR Thinker): the
# text-to-unit alignment it learned carries over, and its answers are heard far better
# than a Talker trained from scratch for the same steps (README, Results).
train configs/mdm.py:tiny,stage=2 "$DEMO_DIR/mdm/stage2" $SHIFT "$ONE_BUCKET" \
  --config.init_from="$DEMO_DIR/mdm/stage1,talker=$DEMO_DIR/ar/stage2" \
  --config.train.steps="$STAGE2_STEPS"

step "6/7 vocoder (units -> mel: $VOCODER_STEPS steps; mel -> waveform, Vocos: $VOCOS_STEPS)"
$PY -m launch.train_vocoder --config=configs/vocoder.py:tiny --data="$DATA" \
  --workdir="$DEMO_DIR/vocoder" --config.train.steps="$VOCODER_STEPS" \
  --config.neural.train.steps="$VOCOS_STEPS"

step "7/7 answer $NUM_EVAL spoken questions of the $SPLIT split (recordings never trained on) with AR and MDM"
FLOORS=()  # the MDM evaluation reuses the AR one's floors (same questions, same vocoder)
for objective in ar mdm; do
  $PY -m launch.evaluate --checkpoint="$DEMO_DIR/$objective/stage2" --steps="$MDM_EVAL_STEPS" \
    --rule="$MDM_EVAL_RULE" \
    --vocoder="$DEMO_DIR/vocoder/vocoder" --split="$SPLIT" --n="$NUM_EVAL" \
    --out="$DEMO_DIR/eval_$objective" "${FLOORS[@]}"
  FLOORS=(--floors_from="$DEMO_DIR/eval_ar")
done
$PY -m launch.demo_summary --ar="$DEMO_DIR/eval_ar" --mdm="$DEMO_DIR/eval_mdm"
