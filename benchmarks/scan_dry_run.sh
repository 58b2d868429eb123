#!/usr/bin/env bash
# Compile time and per-device memory of the 1b/8b text train step on the 8-device CPU
# mesh (fsdp=8, global batch 8), layers unrolled vs one nn.scan (both remat_policy=full).
#   bash benchmarks/scan_dry_run.sh   -> benchmarks/results/scan_dry_run_cpu8.json
set -eu
OUT=${OUT:-benchmarks/results/scan_dry_run_cpu8.json}
TMP=$(mktemp -d)
for preset in 1b 8b; do
  for scan in False True; do
    start=$(date +%s.%N)
    XLA_FLAGS=--xla_force_host_platform_device_count=8 python -m launch.train \
      --config=configs/mdm.py:$preset,text --config.mesh.data=1 --config.mesh.fsdp=8 \
      --config.train.batch_size=8 --config.model.remat_policy=full \
      --config.model.scan_layers=$scan --dry_run | sed -n '/^{/,$p' > "$TMP/${preset}_$scan.json"
    echo "$(date +%s.%N) - $start" | bc > "$TMP/${preset}_$scan.wall"
  done
done
python - "$TMP" "$OUT" <<'PY'
import json, sys, os
from vocalnet_jax.evaluation import result_file
tmp, out = sys.argv[1:]
rows = []
for preset in ("1b", "8b"):
  for scan in ("False", "True"):
    r = json.load(open(os.path.join(tmp, f"{preset}_{scan}.json")))
    m = r["memory_per_device_bytes"]
    rows.append({"preset": preset, "scan_layers": scan == "True", "remat_policy": "full",
                 "num_params": r["num_params"], "compile_s": r["compile_s"],
                 "process_wall_s": round(float(open(os.path.join(tmp, f"{preset}_{scan}.wall")).read()), 1),
                 "argument_gib": round(m["argument"] / 2**30, 2), "temp_gib": round(m["temp"] / 2**30, 2)})
result_file.write(
    out, {"presets": ["1b,text", "8b,text"], "mesh": "data=1, fsdp=8", "global_batch_size": 8,
          "note": "XLA:CPU, 8 fake host devices; compile_s is the train step's lower+compile, "
                  "noisy under load; memory is per device"},
    {"rows": rows}, command="bash benchmarks/scan_dry_run.sh", device="cpu:cpu x8")
print(json.dumps(rows, indent=1))
PY
