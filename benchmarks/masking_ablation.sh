#!/usr/bin/env bash
# Ablation of the MDM training states: uniform per-block masking vs hierarchical
# block-wise states (the default: the sampler's own states) vs a per-example 50/50 mix,
# same steps and seed, `tiny,text` (B=4); exact match at S = 1, 2, 4 on 512 held-out prompts.
#   W=w/abl STEPS=3000 bash benchmarks/masking_ablation.sh   -> W/<masking>/eval_mdm.json
set -eu
W=${W:-w/masking_ablation}
STEPS=${STEPS:-3000}
for masking in uniform hierarchical mixed; do
  python -m launch.train --config=configs/mdm.py:tiny,text --workdir="$W/$masking" \
    --config.diffusion.masking="$masking" --config.train.steps="$STEPS" \
    --config.train.checkpoint_every="$STEPS" --config.train.progress_bar=False
  python -m launch.evaluate --config=configs/mdm.py:tiny,text --checkpoint="$W/$masking" \
    --config.diffusion.masking="$masking"
done
