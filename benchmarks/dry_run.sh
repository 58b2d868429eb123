#!/usr/bin/env bash
# Per-device memory of a preset's speech train step, compiled ahead of time for 8 fake CPU
# devices (fsdp=8, global batch 8) without allocating or reading data.
#   bash benchmarks/dry_run.sh 1b   -> benchmarks/results/dry_run_1b_cpu8.json
# Further arguments are config overrides (a preset without a fixed vocabulary needs
# --config.model.vocab_size=N --config.talker.num_units=M).
set -euo pipefail
PRESET=${1:?usage: bash benchmarks/dry_run.sh PRESET [--config.x=y ...]}
shift
OUT=${OUT:-benchmarks/results/dry_run_${PRESET}_cpu8.json}
XLA_FLAGS=--xla_force_host_platform_device_count=8 python -m launch.train \
  --config="configs/mdm.py:$PRESET" --config.mesh.data=1 --config.mesh.fsdp=8 \
  --config.train.batch_size=8 --dry_run "$@" | sed -n '/^{/,$p' | python -c "
import json, sys
from vocalnet_jax.evaluation import result_file
r = json.load(sys.stdin)
config = {k: r.pop(k) for k in ('preset', 'task', 'mesh', 'global_batch_size') if k in r}
config['note'] = ('compiled by XLA:CPU for 8 fake host devices; TPU/GPU compiles schedule '
                  'memory differently, so temp is indicative only')
result_file.write('$OUT', config, r, command='bash benchmarks/dry_run.sh $PRESET $*'.strip(),
                  device='cpu:cpu x8')
print('wrote $OUT')"
