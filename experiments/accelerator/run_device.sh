#!/usr/bin/env bash
# Runs on the device machine (a GPU with JAX, no TensorFlow): installs the carried Keras wheels,
# unpacks the carried images, trains every job given as an argument in parallel on the one GPU
# with fer_keras.train_accel, and tars each run folder (with its log) into $OUT.
#
# Usage (the device tool's command; carry .whl and .devdata):
#   bash experiments/accelerator/run_device.sh "--config experiments/configs/A.yaml key=value" "--config B.yaml" ...
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
# Several trainers share the GPU, so none may pre-allocate most of its memory (JAX's default).
export PYTHONPATH="/tmp/site:$PWD" KERAS_BACKEND=jax XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1
python3 experiments/accelerator/pack_images.py unpack .devdata/fer2013_trainval.npz /tmp/fer2013 || exit 1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
mkdir -p /tmp/runs /tmp/logs
pids=()
i=0
for job in "$@"; do
    # shellcheck disable=SC2086  # each job is a word list of CLI arguments
    python3 -m fer_keras.train_accel --data-dir /tmp/fer2013 $job output_dir=/tmp/runs >"/tmp/logs/job$i.log" 2>&1 &
    pids+=($!)
    i=$((i + 1))
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
for log in /tmp/logs/*.log; do
    echo "== $log"; grep -E "step - |starting run|run folder|Error|error" "$log" | tail -4
    run=$(grep -o "/tmp/runs/[^ ]*" "$log" | head -1)
    [ -n "$run" ] && [ -d "$run" ] && cp "$log" "$run/train.log" && tar czf "$OUT/$(basename "$run").tgz" -C /tmp/runs "$(basename "$run")"
done
exit $status
