#!/usr/bin/env bash
# The Talker trained long with cached Thinker states, on a `make demo` output's Thinkers:
#   1. the AR Talker from DEMO_DIR/ar_stage1 (as the demo's stage 2, with
#      talker.cache_thinker_states), AR_STEPS steps, a checkpoint every EVERY steps;
#   2. its unit accuracy (teacher-forced and free-running) at every kept checkpoint, on the
#      `test` and the `heldout` reference answers;
#   3. the MDM Talker adapted from it behind DEMO_DIR/mdm_stage1 (as the demo), MDM_STEPS;
#   4. its unit accuracy;
#   5. both judged on the first NUM_EVAL questions of each split in SPLITS (AR; MDM at
#      S = 1, 2, 4, top-k rule) with the demo's vocoder: ASR WER and forced choice
#      against each answer's own printed text, with both floors.
# Finished stages are skipped and an interrupted training resumes, so the script can be
# rerun; STAGES picks a subset (e.g. STAGES="ar ar_units"); TALKER_ARGS adds config overrides
# to both Talker trainings (e.g. TALKER_ARGS=--config.talker.state_dropout=0.5).
#   DEMO_DIR=demo_out W=workdirs/talker_long bash benchmarks/talker_long.sh
# Writes benchmarks/results/talker_units_long_{ar,mdm}_$TAG.json and
# benchmarks/results/spoken_eval_talker_long_$TAG.json.
set -euo pipefail
PY=${PY:-.venv/bin/python}
DEMO_DIR=${DEMO_DIR:-demo_out}
W=${W:-workdirs/talker_long}
AR_STEPS=${AR_STEPS:-3000}
MDM_STEPS=${MDM_STEPS:-1000}
EVERY=${EVERY:-250}
SPLITS=${SPLITS:-"test heldout"}
NUM_EVAL=${NUM_EVAL:-50}
TAG=${TAG:-tiny_cpu}
STAGES=${STAGES:-"ar ar_units ar_units_heldout mdm mdm_units eval_ar eval_mdm table"}
RESULTS=benchmarks/results
VOCODER=$DEMO_DIR/vocoder/vocoder
has() { [[ " $STAGES " == *" $1 "* ]]; }
talker() {  # talker CONFIG WORKDIR STEPS INIT_FROM overrides...: the demo's stage 2, cached
  local cfg=$1 dir=$2 steps=$3 init=$4; shift 4
  $PY -m launch.train --config="$cfg" --workdir="$dir" --config.init_from="$init" \
    --config.train.steps="$steps" --config.train.checkpoint_every="$EVERY" \
    --config.train.keep_checkpoints=100 --config.talker.cache_thinker_states=True \
    --config.data.dir="$DEMO_DIR/data" --config.train.progress_bar=False --config.seed=0 \
    '--config.data.mel_buckets=(600,)' ${TALKER_ARGS:-} "$@"
}
units() {  # units WORKDIR NAME [SPLIT]: the curve over its kept checkpoints
  local split=${3:-test}
  $PY -m launch.talker_units --checkpoint="$1" --split="$split" --n="$NUM_EVAL" \
    --out="$1/unit_accuracy_$split.jsonl" \
    --result="$RESULTS/talker_units_long_$2${3:+_$3}_$TAG.json"
}
if has ar; then
  talker configs/ar.py:tiny,stage=2 "$W/ar_talker" "$AR_STEPS" "$DEMO_DIR/ar_stage1"
fi
if has ar_units; then units "$W/ar_talker" ar; fi
if has ar_units_heldout; then units "$W/ar_talker" ar heldout; fi
if has mdm; then
  talker configs/mdm.py:tiny,stage=2 "$W/mdm_talker" "$MDM_STEPS" \
    "$DEMO_DIR/mdm_stage1,talker=$W/ar_talker" --config.diffusion.shift_logits=True
fi
if has mdm_units; then units "$W/mdm_talker" mdm; fi
TABLE=()
for split in $SPLITS; do
  AR_EVAL=$W/eval_ar_$split MDM_EVAL=$W/eval_mdm_$split
  if has eval_ar && [ ! -f "$AR_EVAL/eval.json" ]; then
    $PY -m launch.evaluate --checkpoint="$W/ar_talker" --vocoder="$VOCODER" --split="$split" \
      --n="$NUM_EVAL" --out="$AR_EVAL"
  fi
  if has eval_mdm && [ ! -f "$MDM_EVAL/eval.json" ]; then
    $PY -m launch.evaluate --checkpoint="$W/mdm_talker" --steps=1,2,4 --rule=topk \
      --vocoder="$VOCODER" --split="$split" --n="$NUM_EVAL" --out="$MDM_EVAL" \
      --floors_from="$AR_EVAL"
  fi
  TABLE+=(--eval=AR="$AR_EVAL" --eval=MDM="$MDM_EVAL")
done
if has table; then
  $PY benchmarks/spoken_eval_table.py "${TABLE[@]}" --out="$RESULTS/spoken_eval_talker_long_$TAG.json" \
    --note="Talkers trained with cached Thinker states: AR $AR_STEPS steps, MDM $MDM_STEPS steps \
adapted from it, behind the Thinkers of a make demo run"
fi
