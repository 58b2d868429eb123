#!/usr/bin/env bash
# Decode benchmark on a lent accelerator machine (no network there): AR vs block diffusion
# on `small,text` (the issue's target preset) and `1b,text` (Llama-3.2-1B shapes),
# random init, batch 1, 128 new tokens. Writes JSON + PNG per preset under $OUT
# (default benchmarks/results) and logs; each stage has its own time limit so a slow
# stage still leaves the earlier results.
#
# Run where the image's python has jax + a GPU plugin; packages that image lacks travel
# as wheels in .whl/ (grain, array_record, ml_collections, portpicker, flax pinned as in
# setup.cfg):  bash benchmarks/device_decode.sh
set -u
OUT=${OUT:-benchmarks/results}
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
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
