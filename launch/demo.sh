#!/usr/bin/env bash
# The main job end to end on the embedded corpus (called by `make demo`):
# spoken-QA corpus -> tokenizers/units -> VocalNet-MDM and its AR twin (stage 1: speech->text,
# stage 2: Talker) -> flow-matching vocoder -> answer a held-out spoken question, save WAVs.
# Step counts are sized for a 2-core CPU; override with e.g. STAGE1_STEPS=2000 make demo.
set -euo pipefail
DEMO_DIR=${DEMO_DIR:-demo_out}
PY=${PY:-.venv/bin/python}
STAGE1_STEPS=${STAGE1_STEPS:-300}
STAGE2_STEPS=${STAGE2_STEPS:-300}
HELDOUT=${HELDOUT:-0}
export XLA_FLAGS=${XLA_FLAGS:-}
DATA=$DEMO_DIR/data

step() { printf '\n=== %s ===\n' "$*"; }

step "1/5 spoken-QA corpus, sentencepiece tokenizer, speech units -> $DATA"
$PY -m launch.prepare_data --config=configs/data.py:tiny --out="$DATA"

for objective in mdm ar; do
  step "2/5 $objective stage 1 (speech question -> text answer), $STAGE1_STEPS steps"
  $PY -m launch.train --config="configs/$objective.py:tiny" --workdir="$DEMO_DIR/$objective/stage1" \
    --config.data.dir="$DATA" --config.train.steps="$STAGE1_STEPS"
  step "3/5 $objective stage 2 (Talker: text -> speech units), $STAGE2_STEPS steps"
  $PY -m launch.train --config="configs/$objective.py:tiny,stage=2" \
    --workdir="$DEMO_DIR/$objective/stage2" --config.init_from="$DEMO_DIR/$objective/stage1" \
    --config.data.dir="$DATA" --config.train.steps="$STAGE2_STEPS"
done

step "4/5 flow-matching vocoder (units -> mel -> waveform)"
$PY -m launch.train_vocoder --config=configs/vocoder.py:tiny --data="$DATA" \
  --workdir="$DEMO_DIR/vocoder"

for objective in mdm ar; do
  step "5/5 answer held-out spoken question #$HELDOUT with $objective"
  $PY -m launch.decode --config="configs/$objective.py:tiny,stage=2" \
    --checkpoint="$DEMO_DIR/$objective/stage2" --vocoder="$DEMO_DIR/vocoder/vocoder" \
    --config.data.dir="$DATA" --heldout="$HELDOUT" --out="$DEMO_DIR/answer_$objective.wav"
done
printf '\nDone: question and answers in %s (question.wav, answer_mdm.wav, answer_ar.wav)\n' \
  "$DEMO_DIR"
