#!/usr/bin/env bash
# The MDM-vs-AR parity recipe (benchmarks/mdm_parity.sh) with longer training than the
# CPU allows: shared AR text pre-training, then AR and the adapted MDM Thinker (shifted
# logits) fine-tuned for the same STEPS, scored on 512 held-out prompts.
#
#   PRE_STEPS=10000 STEPS=10000 bash benchmarks/device_text_quality.sh
# On a lent machine the packages its image lacks travel as wheels in .whl/
# (benchmarks/device_env.sh).
set -eu
source benchmarks/device_env.sh
PY=python3 W=${W:-w/text_quality} PRE_STEPS=${PRE_STEPS:-10000} STEPS=${STEPS:-10000} \
  ROWS=${ROWS:-"ar_pretrained mdm_adapted_shift_b4 mdm_adapted_shift_b16"} \
  OUT=${OUT:-benchmarks/results/mdm_parity_tiny_gpu.json} bash benchmarks/mdm_parity.sh
