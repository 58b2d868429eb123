#!/usr/bin/env bash
# MDM vs AR answer quality at equal training steps on `tiny,text`, over training seeds
# (2-core CPU friendly). For every seed in SEEDS (`--config.seed` on every stage):
#   1. a shared AR text pre-training on the broad procedural mix (`tiny,text,pretrain`);
#   2. every row then trains STEPS steps on the QA tasks, same seed and batches:
#      AR from the pre-trained weights (the baseline) and MDM adapted from them (the rows
#      below), for B = 4 and 16;
#   3. exact match / valid-answer rate / NFE per token on 512 held-out prompts at
#      S = 1, B/4, B/2, B (EVAL=quarter: S = B/4 alone).
# Then benchmarks/parity_table.py writes the mean, minimum and per-task table to OUT
# (benchmarks/results/, via the shared result-file schema); benchmarks/parity_doc.py renders
# it for docs/parity.md. Finished stages are skipped and an interrupted one resumes, so the
# script can be rerun (or several run at once with different ROWS/SEEDS on the same W).
#   W=workdirs/parity SEEDS="0 1 2" bash benchmarks/mdm_parity.sh
# Rows (every knob named, so a row means the same whatever the config defaults):
#   ar_pretrained                AR fine-tuned from the pre-training (the baseline)
#   ar_pretrained_x2             the same for 2 x STEPS (the AR twin of the _x2_ rows)
#   mdm_adapted_shift_bB         hierarchical, shifted logits, first token scored on every draw
#                                (block-causal clean stream: the earlier recipe)
#   mdm_adapted_causal_bB        ... with a causal clean stream (its states are the AR model's)
#   mdm_adapted_causal_arW_bB    ... plus W x the clean stream's AR loss (ar1: W = 1)
#   mdm_adapted_comp_bB          the earlier recipe with complementary masks (each example
#                                twice per step, with a draw's mask and its complement)
#   mdm_adapted_shift_lrX_bB     the earlier recipe at learning rate X (lr1e-3)
#   *_sK_bB                      any MDM row trained on the states of a K-step sampler
#                                (diffusion.sampler_steps=K; s1: every block all [MASK],
#                                the one state S = 1 decodes from; mdm_adapted_shift_s1_b4
#                                is the B = 4 recipe; rows without _sK_ train on the config's
#                                sampler_steps, 4)
#   *_l2r_bB                     any MDM row decoded left to right (--rule=left_to_right:
#                                the top-k share from the leftmost masked tokens) and trained
#                                on that sampler's states (diffusion.commit_order=left_to_right)
#   *_committed_bB               any left-to-right row scoring only the tokens its sampler
#                                commits from each state (diffusion.scored_tokens=committed)
#   *_ftW_bB                     any row whose blocks' context-predicted first token is
#                                scored with weight W (diffusion.first_token_weight; 1: the ELBO)
#   *_x2_bB                      any row trained for 2 x STEPS (more steps than AR:
#                                mdm_adapted_shift_x2_b4 matches the complementary row's
#                                denoiser rows, twice the batch for STEPS steps)
#   mdm_adapted_shiftonly_bB, mdm_adapted_bB, ar_scratch, mdm_{hierarchical,uniform}_bB:
#                                the single-seed ablations of the earlier table
set -eu
PY=${PY:-.venv/bin/python}
W=${W:-workdirs/mdm_parity}
SEEDS=${SEEDS:-"0 1 2"}
PRE_STEPS=${PRE_STEPS:-3000}
STEPS=${STEPS:-3000}
EVAL=${EVAL:-all}
OUT=${OUT:-benchmarks/results/mdm_parity_seeds_tiny_cpu.json}
ROWS=${ROWS:-"ar_pretrained mdm_adapted_shift_b4 mdm_adapted_shift_s1_b4 mdm_adapted_comp_b4
  mdm_adapted_shift_b16"}
train() {  # workdir config steps overrides...
  local dir=$1 cfg=$2 steps=$3; shift 3
  $PY -m launch.train --config="$cfg" --workdir="$dir" --config.train.steps="$steps" \
    --config.train.checkpoint_every=500 --config.train.progress_bar=False "$@"
}
for seed in $SEEDS; do
  S=$W/s$seed
  train "$S/pretrain" configs/ar.py:tiny,text,pretrain "$PRE_STEPS" --config.seed="$seed"
  for row in $ROWS; do
    [ -f "$S/$row/eval.json" ] && continue
    case $row in
      ar_pretrained|ar_pretrained_x2) cfg=ar; args=(--config.init_from="$S/pretrain") ;;
      ar_scratch) cfg=ar; args=() ;;
      mdm_*) cfg=mdm; b=${row##*_b}; args=(--config.diffusion.block_size="$b")
        ft=1; if [[ $row =~ _ft([0-9.]+)_ ]]; then ft=${BASH_REMATCH[1]}; fi
        shifted=(--config.diffusion.shift_logits=True --config.diffusion.score_first_token=True
          --config.diffusion.first_token_weight="$ft")
        block=(--config.diffusion.clean_attention=block --config.diffusion.ar_weight=0
          --config.diffusion.complementary_masks=False)
        case $row in
          *uniform*) args+=(--config.diffusion.masking=uniform "${block[@]}") ;;
          *hierarchical*) args+=("${block[@]}") ;;
          *adapted_causal_ar*) w=${row#*_causal_ar}; w=${w%%_*}
            args+=(--config.init_from="$S/pretrain" "${shifted[@]}"
              --config.diffusion.clean_attention=causal --config.diffusion.ar_weight="$w") ;;
          *adapted_causal*) args+=(--config.init_from="$S/pretrain" "${shifted[@]}"
            --config.diffusion.clean_attention=causal --config.diffusion.ar_weight=0) ;;
          *adapted_comp*) args+=(--config.init_from="$S/pretrain" "${shifted[@]}" "${block[@]}"
            --config.diffusion.complementary_masks=True) ;;
          *adapted_shift_lr*) lr=${row#*_shift_lr}; lr=${lr%%_b*}
            args+=(--config.init_from="$S/pretrain" "${shifted[@]}" "${block[@]}"
              --config.train.learning_rate="$lr") ;;
          *adapted_shiftonly*) args+=(--config.init_from="$S/pretrain" "${block[@]}"
            --config.diffusion.shift_logits=True --config.diffusion.score_first_token=False) ;;
          *adapted_shift*) args+=(--config.init_from="$S/pretrain" "${shifted[@]}" "${block[@]}") ;;
          *adapted*) args+=(--config.init_from="$S/pretrain" "${block[@]}"
            --config.diffusion.shift_logits=False) ;;
          *) echo "unknown row $row" >&2; exit 2 ;;
        esac
        if [[ $row =~ _s([0-9]+)_ ]]; then
          args+=(--config.diffusion.sampler_steps="${BASH_REMATCH[1]}"); fi
        case $row in *_l2r_*) args+=(--config.diffusion.commit_order=left_to_right) ;; esac
        case $row in *_committed_*) args+=(--config.diffusion.scored_tokens=committed) ;; esac
 ;;
      *) echo "unknown row $row" >&2; exit 2 ;;
    esac
    case $row in *_x2_*|*_x2) row_steps=$((2 * STEPS)) ;; *) row_steps=$STEPS ;; esac
    train "$S/$row" "configs/$cfg.py:tiny,text" "$row_steps" --config.seed="$seed" "${args[@]}"
    if [ "$cfg" = ar ]; then steps=1
    elif [ "$EVAL" = quarter ]; then steps=$(( b / 4 ))
    else steps=$(printf '%s\n' 1 $((b / 4)) $((b / 2)) "$b" | sort -nu | paste -sd,); fi
    # the checkpoint's own config.json carries the architecture and decoding knobs
    case $row in *_l2r_*) rule=left_to_right ;; *) rule=topk ;; esac
    $PY -m launch.evaluate --checkpoint="$S/$row" --steps="$steps" --rule="$rule" \
      --out="$S/$row/eval.json.tmp"
    mv "$S/$row/eval.json.tmp" "$S/$row/eval.json"
  done
done
ROWS=$(echo $ROWS)  # one line
$PY -m benchmarks.parity_table --workdir="$W" --seeds="$SEEDS" --rows="$ROWS" \
  --pre_steps="$PRE_STEPS" --steps="$STEPS" --out="$OUT" \
  --command="W=$W SEEDS=\"$SEEDS\" EVAL=$EVAL ROWS=\"$ROWS\" PRE_STEPS=$PRE_STEPS STEPS=$STEPS OUT=$OUT bash benchmarks/mdm_parity.sh"
