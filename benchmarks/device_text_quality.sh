#!/usr/bin/env bash
# Text quality of AR vs MDM with longer training than the CPU allows: trains the
# `tiny,text` Thinker with each objective for STEPS steps, then scores exact match on
# 512 held-out prompts (AR greedy; MDM top-k at S = 1, 2, 4 = B). Writes eval JSON and
# the training metrics under $OUT (default /tmp/text_quality).
#
#   STEPS=8000 bash benchmarks/device_text_quality.sh
# On a lent machine the packages its image lacks travel as wheels in .whl/
# (benchmarks/device_env.sh).
set -u
OUT=${OUT:-/tmp/text_quality}
STEPS=${STEPS:-8000}
LIMIT=${LIMIT:-150}  # seconds per training run; a cut run is scored at its last checkpoint
mkdir -p "$OUT"
source benchmarks/device_env.sh
for obj in ar mdm; do
  work=/tmp/text_quality_work/$obj
  echo "== train $obj ($STEPS steps, limit ${LIMIT}s)"
  timeout "$LIMIT" python3 -m launch.train --config="configs/$obj.py:tiny,text" --workdir="$work" \
    --config.train.steps="$STEPS" --config.train.checkpoint_every=1000 \
    --config.train.log_every=100 --config.train.progress_bar=False > "$OUT/train_$obj.log" 2>&1
  echo "rc=$?"; tail -n 2 "$work/metrics.jsonl"; cp "$work/metrics.jsonl" "$OUT/metrics_$obj.jsonl"
  python3 -m launch.evaluate --config="configs/$obj.py:tiny,text" --checkpoint="$work" \
    --out="$OUT/eval_$obj.json" > "$OUT/eval_$obj.log" 2>&1
  echo "rc=$?"; grep -E '"exact_match"|Error' "$OUT/eval_$obj.log" | tail -4
done
