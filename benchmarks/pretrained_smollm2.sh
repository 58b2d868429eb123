#!/usr/bin/env bash
# SmolLM2-135M-Instruct through configs/recipes/smollm2.py, then typed exact match on the same
# `heldout` questions (new phrasings of the templates) for every row:
#   pretrained_scratch_ar_cpu.json   the demo's from-scratch tiny AR Thinker (stage 0): the row to beat
#   pretrained_smollm2_ar_cpu.json   SmolLM2 after AR fine-tuning (stage `ar`)
#   pretrained_smollm2_ar_heard_cpu.json  then taught to read misheard questions (stage `ar_heard`)
#   pretrained_smollm2_mdm_cpu.json  the MDM Thinker adapted from it (stage `mdm`), S = 1, 2, 4, B = 4
#   pretrained_smollm2_{ar_heard,mdm_threshold}_batch1_cpu.json  one request at a time (each
#                                    request's own forwards), MDM with the threshold rule (S <= 4)
#   pretrained_smollm2_spoken_cpu.json  the same heldout questions spoken (corpus audio), through
#                                    ears that spell: AR (`speech_ar`) and MDM (`speech_mdm`)
#                                    at S = 1, 4 and by the threshold rule, reading the ears'
#                                    spelling as typed
#   W=workdirs/smollm2 DATA=workdirs/data SCRATCH=demo_out/ar_stage0 bash benchmarks/pretrained_smollm2.sh
# DATA: the recipe's corpus (its `data` stage; '' lets the recipe prepare it under W/data);
# SCRATCH: the demo's stage-0 workdir (make demo). The GGUF: make smollm2.
set -eu
PY=${PY:-.venv/bin/python}
W=${W:-workdirs/smollm2}
DATA=${DATA:-}  # '': the recipe's own `data` stage (W/data)
SCRATCH=${SCRATCH:-demo_out/ar_stage0}
N=${N:-50}
R=benchmarks/results
KNOBS=${KNOBS:-}  # more recipe knobs, e.g. KNOBS=ears_train_split=train+read,ears_steps=2000
KNOBS=${DATA:+data=$DATA}${DATA:+${KNOBS:+,}}$KNOBS
$PY -m launch.recipe --recipe="configs/recipes/smollm2.py${KNOBS:+:$KNOBS}" --workdir="$W"
DATA=${DATA:-$W/data}
evaluate() {  # CHECKPOINT OUT [flags...]
  $PY -m benchmarks.pretrained_eval --checkpoint="$1" --data_dir="$DATA" --split=heldout \
    --n="$N" --out="$2" "${@:3}"
}
evaluate "$SCRATCH" "$R/pretrained_scratch_ar_cpu.json"
evaluate "$W/ar" "$R/pretrained_smollm2_ar_cpu.json"
[ -d "$W/ar_heard" ] && evaluate "$W/ar_heard" "$R/pretrained_smollm2_ar_heard_cpu.json"
evaluate "$W/mdm" "$R/pretrained_smollm2_mdm_cpu.json" --steps=1,2,4
[ -d "$W/ar_heard" ] && evaluate "$W/ar_heard" "$R/pretrained_smollm2_ar_heard_batch1_cpu.json" \
  --batch_size=1
evaluate "$W/mdm" "$R/pretrained_smollm2_mdm_threshold_batch1_cpu.json" --steps=4 \
  --rule=threshold --batch_size=1
SPOKEN=$R/pretrained_smollm2_spoken_cpu.json
rm -f "$SPOKEN"
spoken() {  # CHECKPOINT LABEL [flags...]
  $PY -m benchmarks.spoken_thinker_eval --checkpoint="$1" --split=heldout --n="$N" \
    --out="$SPOKEN" --label="$2" "${@:3}"
}
# the recipe's ears spell (read_as=transcript: the Thinker reads their spelling as typed)
spoken "$W/speech_ar" ar_transcript
spoken "$W/speech_ar" ar_transcript_test_split --split=test  # train phrasings, new recordings
for steps in 1 4; do
  spoken "$W/speech_mdm" "mdm_s${steps}_transcript" --steps=$steps
done
spoken "$W/speech_mdm" mdm_threshold_transcript --steps=4 --rule=threshold
