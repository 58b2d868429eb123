#!/usr/bin/env bash
# Self-distillation where few-step decoding loses: the `digitsum` task ("2 digits sum 12")
# has many right answers, so committing both digits in one parallel step mixes them.
#   1. teacher: tiny text MDM (B=4) on digitsum, TEACHER_STEPS steps
#   2. distillation rounds 4->2 and 2->1 (ROUND_STEPS each, reverse KL)
#   3. control: the same teacher fine-tuned with the plain MDM loss for as many steps,
#      at the distillation learning rate, so extra training alone is measured too
# Valid-answer rate and exact match at S = 1, 2, 4 land in W/distill/rounds.json and
# W/control/eval_mdm.json.   W=w/ds bash benchmarks/distill_digitsum.sh
set -eu
W=${W:-w/distill_digitsum}
TEACHER_STEPS=${TEACHER_STEPS:-4000}
ROUND_STEPS=${ROUND_STEPS:-300}
TASK="--config.data.tasks=('digitsum',)"
QUIET="--config.train.progress_bar=False --config.train.log_every=50"
python -m launch.train --config=configs/mdm.py:tiny,text --workdir="$W/teacher" "$TASK" $QUIET \
  --config.train.steps="$TEACHER_STEPS" --config.train.checkpoint_every=1000
python -m launch.distill --config=configs/distill.py:tiny,text --teacher="$W/teacher" \
  --workdir="$W/distill" "$TASK" $QUIET --config.train.steps="$ROUND_STEPS"
LR=$(python -c "from configs import distill; print(distill.get_config('tiny,text').train.learning_rate)")
python -m launch.train --config=configs/mdm.py:tiny,text --workdir="$W/control" "$TASK" $QUIET \
  --config.init_from="$W/teacher" --config.train.steps=$((2 * ROUND_STEPS)) \
  --config.train.learning_rate="$LR" --config.train.checkpoint_every=1000
python -m launch.evaluate --config=configs/mdm.py:tiny,text --checkpoint="$W/control" "$TASK"
