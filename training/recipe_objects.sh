#!/usr/bin/env bash
# Fine-tune the shipped weights on your own objects, then export a checkpoint for the node:
#   1. ~5 min: 150 scenes × 10 frames at 320×240 of your meshes dropped among the HOPE
#      objects, two generator shards in parallel;
#   2. ~10 min: training/configs/finetune_objects.yaml (300 steps) from the shipped weights;
#   3. ~1 min: the fp16 export with its record, RUN/ockd_objects.pt.
# Then: ros2 launch ockd_ros pose.launch.py ... with `checkpoint: RUN/ockd_objects.pt` and
# `objects: [your meshes]` in the parameters file (or ockd-eval --config with
# features: {checkpoint: ...}).
# Every step resumes: re-running skips finished scenes and continues training from RUN/last.pt.
#
#   training/recipe_objects.sh "a.ply b.ply" mm [DATA_DIR] [RUN_DIR]   (from the repository root)
set -euo pipefail
MESHES=${1:?usage: recipe_objects.sh \"MESH [MESH ...]\" UNITS [DATA_DIR] [RUN_DIR]}
UNITS=${2:-mm}
DATA=${3:-data/objects}
RUN=${4:-runs/objects}
PY=${PYTHON:-python}
SCENES=${SCENES:-150}  # fewer for a quick try
STEPS=${STEPS:-}  # training steps other than the config's 300

entries=()
for mesh in $MESHES; do
    [ -e "$mesh" ] || { echo "error: no mesh file $mesh" >&2; exit 2; }
    entries+=("$mesh@$UNITS")
done
meshes=$(IFS=,; echo "${entries[*]}")
# The HOPE objects join as objects, not only distractors: the inter-object descriptor learns
# to tell yours from others.
GEN=(--config training/configs/generate_cpu.yaml --meshes "$meshes,hope"
     --scenes "$SCENES" --frames-per-scene 10 --size 320x240 --seed 0 --out "$DATA")

mkdir -p "$RUN"
"$PY" -m ockd_ros.training.scenes "${GEN[@]}" --shard 0/2 --quiet 2> "$RUN/generate_0.log" &
"$PY" -m ockd_ros.training.scenes "${GEN[@]}" --shard 1/2
wait

resume=()
[ -f "$RUN/last.pt" ] && resume=(--resume)
[ -n "$STEPS" ] && resume+=(--steps "$STEPS")
"$PY" -m ockd_ros.training.train --config training/configs/finetune_objects.yaml \
    --data "$DATA" --out "$RUN" --init ockd_ros/weights/ockd_default.pt "${resume[@]}"
"$PY" -m ockd_ros.training.export "$RUN/final.pt" --out "$RUN/ockd_objects.pt" --local \
    --data-command "ockd-gen ${GEN[*]} --shard 0/2 (and 1/2)"
echo "checkpoint for the node: $RUN/ockd_objects.pt"
