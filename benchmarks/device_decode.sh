#!/usr/bin/env bash
# Decode benchmark on a lent accelerator machine (no network there): AR vs block diffusion
# on `small,text` (the issue's target preset) and `1b,text` (Llama-3.2-1B shapes),
# random init, batch 1, 128 new tokens. Writes JSON + PNG per preset under $OUT
# (default benchmarks/results) and logs; each stage has its own time limit so a slow
# stage still leaves the earlier results.
#
# Run where python3 has jax (+ a GPU plugin); on a lent machine the packages its image
# lacks travel as wheels in .whl/ (benchmarks/device_env.sh):  bash benchmarks/device_decode.sh
set -u
OUT=${OUT:-benchmarks/results}
source benchmarks/device_env.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv | tee "$OUT/device.txt"
python3 -c "import jax, flax, sys; print(sys.version.split()[0], 'jax', jax.__version__, 'flax', flax.__version__, jax.devices())" | tee -a "$OUT/device.txt"

bench() {  # name, seconds, args...
  local name=$1 limit=$2; shift 2
  echo "== $name"
  timeout "$limit" python3 -m launch.benchmark_decode --out="$OUT/$name.json" "$@" \
    > "$OUT/$name.log" 2>&1
  echo "rc=$?"; grep -E '^\{"steps"|^wrote|Error|error' "$OUT/$name.log" | tail -12
}
bench decode_small_gpu 220 --config=configs/mdm.py:small,text --repeats=10
bench decode_1b_gpu 260 --config=configs/mdm.py:1b,text --steps=1,2,4,16 \
  --cache_updates=extra_forward,reuse_last_step --repeats=5
