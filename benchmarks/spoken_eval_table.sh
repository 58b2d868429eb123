#!/usr/bin/env bash
# The spoken-answer table on a `make demo` output: AR vs MDM (S = 1, 2, 4 with the top-k
# rule, and the confidence-threshold rule with at most 4 steps) vs the MDM Talker self-distilled over its 15-unit chunks (rounds 8->4, 4->2, 2->1), same
# checkpoints, same questions, one independent ASR judge with its floors.
#   DEMO_DIR=demo_out bash benchmarks/spoken_eval_table.sh
# Writes $DEMO_DIR/eval_table/* and benchmarks/results/spoken_eval_$TAG.json.
set -euo pipefail
DEMO_DIR=${DEMO_DIR:-demo_out}
PY=${PY:-.venv/bin/python}
SPLIT=${SPLIT:-test}
NUM_EVAL=${NUM_EVAL:-50}
ROUND_STEPS=${ROUND_STEPS:-150}
TAG=${TAG:-tiny_cpu}
OUT=$DEMO_DIR/eval_table
VOCODER=$DEMO_DIR/vocoder/vocoder
FLOORS=()  # after the AR evaluation: every other one reuses its floors
evaluate() {  # evaluate CHECKPOINT STEPS OUT_DIR [RULE]
  $PY -m launch.evaluate --checkpoint="$1" --steps="$2" --vocoder="$VOCODER" --split="$SPLIT" \
    --n="$NUM_EVAL" --out="$3" --rule="${4:-topk}" "${FLOORS[@]}"
}
AR_EVAL=$DEMO_DIR/eval_ar  # make demo's own AR evaluation when it judged the same questions
[ -f "$AR_EVAL/eval.json" ] || { AR_EVAL=$OUT/ar; evaluate "$DEMO_DIR/ar_stage2" 1 "$AR_EVAL"; }
FLOORS=(--floors_from="$AR_EVAL")
[ -f "$OUT/mdm/eval.json" ] || evaluate "$DEMO_DIR/mdm_stage2" 1,2,4 "$OUT/mdm"
MDM_THRESHOLD=$OUT/mdm_threshold  # the confidence-threshold rule, at most 4 steps per block
[ -f "$MDM_THRESHOLD/eval.json" ] || evaluate "$DEMO_DIR/mdm_stage2" 4 "$MDM_THRESHOLD" threshold
# configs/distill.py with the teacher's data and decoder (overrides need an explicit --config)
$PY -m launch.distill --config=configs/distill.py:tiny,stage=2 --teacher="$DEMO_DIR/mdm_stage2" \
  --workdir="$OUT/distill_talker" --config.data.dir="$DEMO_DIR/data" \
  --config.diffusion.shift_logits=True --config.train.steps="$ROUND_STEPS" \
  --config.train.progress_bar=False
last=$(ls -d "$OUT"/distill_talker/round*_2to1)
evaluate "$last" 1,2 "$OUT/mdm_distilled"
$PY benchmarks/spoken_eval_table.py --eval=AR="$AR_EVAL" --eval=MDM="$OUT/mdm" \
  --eval="MDM, threshold rule"="$MDM_THRESHOLD" \
  --eval="MDM, Talker distilled 8->4->2->1"="$OUT/mdm_distilled" \
  --note="make demo checkpoints in $DEMO_DIR; distillation $ROUND_STEPS steps per round" \
  --out="benchmarks/results/spoken_eval_$TAG.json"
