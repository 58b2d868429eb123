#!/usr/bin/env bash
# Spoken-answer latency on a lent accelerator machine (no network there): question audio
# -> encoder -> Thinker -> Talker -> vocoder through the streaming pipeline, AR vs MDM at
# S = 1, 2, 4, random init (no corpus: --text_vocab/--num_units sizes), random tiny vocoder,
# fixed-length answers. `small,stage=2` (the issue's target) and `1b,stage=2` (Llama-3.2-1B
# Thinker, Whisper-large encoder; 256 text tokens, 751 units). Writes JSON + PNG per preset
# under $OUT (default benchmarks/results) and logs; each stage has its own time limit.
#
# Needs, besides the text benchmark's packages (benchmarks/device_env.sh), what the speech
# path imports: librosa, soxr, soundfile, sentencepiece, tensorflow_datasets, threadpoolctl
# and espeakng_loader (the question TTS); missing ones must travel as wheels in .whl/.
#   bash benchmarks/device_speech_latency.sh
set -u
OUT=${OUT:-benchmarks/results}
source benchmarks/device_env.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv | tee "$OUT/device_speech.txt"
python3 -c "import jax, flax, sys; print(sys.version.split()[0], 'jax', jax.__version__, 'flax', flax.__version__, jax.devices())" | tee -a "$OUT/device_speech.txt"
python3 -c "import librosa, soxr, soundfile, sentencepiece, tensorflow_datasets, threadpoolctl, espeakng_loader" \
  || { echo "missing speech packages: put their wheels in .whl/"; exit 1; }

bench() {  # name, seconds, args...
  local name=$1 limit=$2; shift 2
  echo "== $name"
  timeout "$limit" python3 -m launch.benchmark_decode --out="$OUT/$name.json" "$@" \
    > "$OUT/$name.log" 2>&1
  echo "rc=$?"; grep -E '^\{"steps"|^wrote|Error|error' "$OUT/$name.log" | tail -8
}
bench speech_latency_small_gpu 240 --config=configs/mdm.py:small,stage=2 --repeats=10
bench speech_latency_1b_gpu 330 --config=configs/mdm.py:1b,stage=2 --repeats=3
