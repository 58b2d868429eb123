#!/usr/bin/env bash
# MDM vs AR answer quality at equal training steps on `tiny,text` (2-core CPU friendly).
#   1. a shared AR text pre-training on the broad procedural mix (`tiny,text,pretrain`);
#   2. every row then trains STEPS steps on the QA tasks, same seed and batches:
#      AR from the pre-trained weights (the baseline), AR from scratch, MDM from scratch
#      (uniform and hierarchical masking), MDM adapted from the pre-trained AR weights
#      (hierarchical; plain, with Dream's shifted logits, and shifted with every block's
#      context-predicted first token scored on every draw: the recipe), for B = 4 and 16;
#   3. exact match / valid-answer rate / NFE per token on 512 held-out prompts at
#      S = 1, B/4, B/2, B; the table goes to benchmarks/results/mdm_parity_<tag>.json.
#   W=w/parity PRE_STEPS=3000 STEPS=3000 bash benchmarks/mdm_parity.sh
set -eu
PY=${PY:-.venv/bin/python}
W=${W:-w/mdm_parity}
PRE_STEPS=${PRE_STEPS:-3000}
STEPS=${STEPS:-3000}
OUT=${OUT:-benchmarks/results/mdm_parity_tiny_cpu.json}
ROWS=${ROWS:-"ar_pretrained mdm_adapted_shift_b4 mdm_adapted_shiftonly_b4 mdm_adapted_b4 mdm_adapted_shift_b16 mdm_adapted_shiftonly_b16 mdm_adapted_b16 ar_scratch mdm_hierarchical_b4 mdm_uniform_b4 mdm_hierarchical_b16 mdm_uniform_b16"}
train() {  # workdir config steps overrides...
  local dir=$1 cfg=$2 steps=$3; shift 3
  $PY -m launch.train --config="$cfg" --workdir="$dir" --config.train.steps="$steps" \
    --config.train.checkpoint_every="$steps" --config.train.progress_bar=False "$@"
}
train "$W/pretrain" configs/ar.py:tiny,text,pretrain "$PRE_STEPS"
for row in $ROWS; do
  case $row in
    ar_pretrained) cfg=ar; args=(--config.init_from="$W/pretrain") ;;
    ar_scratch) cfg=ar; args=() ;;
    mdm_*) cfg=mdm; b=${row##*_b}; args=(--config.diffusion.block_size="$b")
      case $row in
        *uniform*) args+=(--config.diffusion.masking=uniform) ;;
        *adapted_shiftonly*) args+=(--config.init_from="$W/pretrain" --config.diffusion.shift_logits=True
          --config.diffusion.score_first_token=False) ;;
        *adapted_shift*) args+=(--config.init_from="$W/pretrain" --config.diffusion.shift_logits=True) ;;
        *adapted*) args+=(--config.init_from="$W/pretrain") ;;
      esac ;;
    *) echo "unknown row $row" >&2; exit 2 ;;
  esac
  train "$W/$row" "configs/$cfg.py:tiny,text" "$STEPS" "${args[@]}"
  # evaluation needs the architecture knobs, not init_from
  eval_args=()
  for a in "${args[@]}"; do [[ $a == --config.init_from=* ]] || eval_args+=("$a"); done
  if [ "$cfg" = ar ]; then steps=1; else b=${row##*_b}; steps=$(printf '%s\n' 1 $((b / 4)) $((b / 2)) "$b" | sort -nu | paste -sd,); fi
  $PY -m launch.evaluate --config="configs/$cfg.py:tiny,text" --checkpoint="$W/$row" \
    --steps="$steps" --out="$W/$row/eval.json" "${eval_args[@]}"
done
$PY -m benchmarks.parity_table --workdir="$W" --rows="$ROWS" --pre_steps="$PRE_STEPS" \
  --steps="$STEPS" --out="$OUT"
