#!/usr/bin/env bash
# One device call for the next release round (a lent GPU with JAX, no TensorFlow; 15 minutes of
# device time per task, one command at most 10 minutes). Eight plans (ROUND):
#   long       (default) six tier candidates trained in parallel for the whole call;
#   distill    teachers in parallel, their flip ensemble built on the device, then students distilled
#              from it, with an undistilled control;
#   resnet     the accurate tier's ResNet-SE alone, three seeds sharing the GPU for the whole call;
#   regularise both tiers' networks with stronger weight decay or weight averaging, four runs;
#   fer2013    FER2013's own labels: two VGG-48s and two ResNet-SEs, each for the whole call;
#   robust     both tiers' networks with camera degradations from the first epoch, beside an undegraded control;
#   resolution the accurate tier's ResNet-SE from scratch at 48x48 and at 64x64, two seeds each, at equal epochs;
#   fer2013_start  four FERPlus ResNet-SEs at 64x64 from scratch, then each fine-tuned on FER2013's own labels.
# Every run anneals its cosine within its time budget (fer_keras.array_trainer's TimeBudget), and each
# run folder comes back as a .tgz in $OUT (at most 8 files, 64 MiB), to be ensembled, exported and
# tested on the CPU.
#
# On the device (carry .whl and .devdata; see README.md):
#   bash experiments/accelerator/gpu_round.sh            # or ROUND=distill bash ...
# Smoke test on a CPU with JAX and Keras installed (capped data, seconds-long budgets):
#   WHEELS= PYTHON=/tmp/jaxenv/bin/python DATA=../shared/datasets/fer2013 RUNS=/tmp/round OUT=/tmp/round_out \
#     BUDGET=40 TEACHER_BUDGET=40 STUDENT_BUDGET=30 EXTRA="data.max_per_class=40" ROUND=long bash experiments/accelerator/gpu_round.sh
set -uo pipefail
PYTHON=${PYTHON:-python3}
DATA=${DATA:-/tmp/fer2013}
RUNS=${RUNS:-/tmp/runs}
OUT=${OUT:?OUT must name the folder the run archives go to}
ROUND=${ROUND:-long}
BUDGET=${BUDGET:-510}                   # long, resnet: seconds per run, data loading and compilation included
TEACHER_BUDGET=${TEACHER_BUDGET:-290}   # distill: seconds per teacher, then per student
STUDENT_BUDGET=${STUDENT_BUDGET:-170}
EXTRA=${EXTRA:-}                         # overrides appended to every run
RESOLUTION_EPOCHS=${RESOLUTION_EPOCHS:-45}  # resolution: every run's epochs (equal at both sizes), within BUDGET
START_BUDGET=${START_BUDGET:-320}         # fer2013_start: seconds per FERPlus start, then per FER2013 fine-tune
FINETUNE_BUDGET=${FINETUNE_BUDGET:-190}
WHEELS=${WHEELS-.whl}                    # Keras wheels for the device's Python 3.12; empty: use the installed Keras
CONFIGS=experiments/configs
# The accurate tier's ResNet-SE as the resolution round trains it: the regularise round's AdamW decay 0.05
# (g_resnet_wd, 87.85%) and the shipped tier's camera degradations and face wear at p=0.1.
TIER_RESNET=(--config "$CONFIGS/ferplus_resnet_se_accel.yaml" train.weight_decay=0.05
    data.augment.low_resolution=0.1 data.augment.blur=0.1 data.augment.noise=0.1 data.augment.jpeg=0.1 data.augment.occlusion=0.1)
case "$ROUND" in long | distill | resnet | regularise | fer2013 | robust | resolution | fer2013_start) ;;
    *) echo "ROUND=$ROUND: choose long, distill, resnet, regularise, fer2013, robust, resolution or fer2013_start" >&2; exit 2 ;; esac
export KERAS_BACKEND=jax XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD"
if [ -n "$WHEELS" ] && [ -d "$WHEELS" ]; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl || exit 1
    export PYTHONPATH="/tmp/site:$PYTHONPATH"
fi
if [ ! -d "$DATA" ]; then  # any layout pack_images packs: the Kaggle one, or FERPlus's own
    "$PYTHON" experiments/accelerator/pack_images.py unpack .devdata/fer2013_trainval.npz "$DATA" || exit 1
fi
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
mkdir -p "$RUNS/logs" "$OUT"

# train NAME BUDGET ARGS...: one train_accel run named NAME; train.epochs (EPOCHS, default 400) is only an upper bound under a budget.
train() {
    local name=$1 budget=$2
    shift 2
    # shellcheck disable=SC2086  # EXTRA is a word list of overrides
    "$PYTHON" -m fer_keras.train_accel --data-dir "$DATA" "$@" name="$name" output_dir="$RUNS" \
        train.time_budget_s="$budget" train.epochs="${EPOCHS:-400}" train.early_stopping_patience=0 $EXTRA >"$RUNS/logs/$name.log" 2>&1
    echo "$name: exit $?, $(grep -o 'best val_accuracy [0-9.]*' "$RUNS/logs/$name.log" || tail -1 "$RUNS/logs/$name.log")"
}
run_dir() { ls -d "$RUNS"/*-"$1" 2>/dev/null | tail -1; }

# pack FULL... -- RECORDS...: FULL run folders come back whole, RECORDS without their models, with the logs.
pack() {
    local name dir records=(logs)
    while [ $# -gt 0 ] && [ "$1" != "--" ]; do
        dir=$(run_dir "$1")
        [ -n "$dir" ] && tar czf "$OUT/$(basename "$dir").tgz" -C "$RUNS" "$(basename "$dir")"
        shift
    done
    [ $# -gt 0 ] && shift
    for name in "$@"; do
        dir=$(run_dir "$name")
        [ -n "$dir" ] && records+=("$(basename "$dir")")
    done
    tar czf "$OUT/records.tgz" --exclude='*.keras' -C "$RUNS" "${records[@]}"
    ls -la "$OUT"
}

# long: the shipped tiers' architectures trained about twice as long as in the H100 round, where
# the fast tier's VGG gained with epochs (110 epochs: 86.30% validation). Fast-tier VGGs (1.24M,
# 0.28 ms) and accurate-tier ResNet-SEs (2.8M); with flip, a ResNet-SE and up to two VGGs fit 3 ms
# (fer_keras.ensemble --flip --budget-ms 2.9 --budget-mb 6 picks them).
# Six models, about 48 MB, come back whole.
long_round() {
    local plain=(data.batch_size=128 train.precision=float32)
    train f_vgg_a "$BUDGET" --config "$CONFIGS/ferplus_vgg.yaml" "${plain[@]}" train.seed=1337 &
    train f_vgg_b "$BUDGET" --config "$CONFIGS/ferplus_vgg.yaml" "${plain[@]}" train.seed=2 &
    train f_vgg_mix "$BUDGET" --config "$CONFIGS/ferplus_vgg.yaml" "${plain[@]}" train.seed=3 data.augment.mixup=0.2 &
    train a_resnet_a "$BUDGET" --config "$CONFIGS/ferplus_resnet_se_accel.yaml" train.seed=1337 &
    train a_resnet_b "$BUDGET" --config "$CONFIGS/ferplus_resnet_se_accel.yaml" train.seed=2 &
    train a_resnet_mix "$BUDGET" --config "$CONFIGS/ferplus_resnet_se_accel.yaml" train.seed=3 data.augment.mixup=0.2 &
    wait
    pack f_vgg_a f_vgg_b f_vgg_mix a_resnet_a a_resnet_b a_resnet_mix
}

# resnet: in the long round the fast-tier VGG gained a point from 110 to 174 epochs, while the
# ResNet-SE, sharing the GPU with five other runs, got 60 epochs (7 s each), about the H100
# round's 48. Three ResNet-SEs alone get the GPU to themselves, and more epochs in the same call.
# The third keeps a moving average of its weights (train.ema_momentum), which on the CPU raised the
# accurate tier's ResNet-SE from 87.08% to 87.71% flip validation in a warm restart
# (experiments/configs/ferplus_resnet_se_ema_cpu.yaml); the average changes no training step.
# Three models, about 32 MB, come back whole.
resnet_round() {
    train r_resnet_a "$BUDGET" --config "$CONFIGS/ferplus_resnet_se_accel.yaml" train.seed=1337 &
    train r_resnet_b "$BUDGET" --config "$CONFIGS/ferplus_resnet_se_accel.yaml" train.seed=2 &
    train r_resnet_ema "$BUDGET" --config "$CONFIGS/ferplus_resnet_se_accel.yaml" train.seed=4 train.ema_momentum=0.999 &
    wait
    pack r_resnet_a r_resnet_b r_resnet_ema
}

# regularise: in the resnet round all three ResNet-SEs peaked before their cosine ended and fell back
# 0.5-0.7 points while training accuracy rose to 93% (release 0.3.0's member peaked at epoch 107 of
# 136). Every run so far used AdamW's weight decay at 1e-4, which at a 0.002 learning rate barely
# acts; 0.05 is the usual AdamW strength. Two ResNet-SEs (one also with weight averaging and more
# random erasing) and two fast-tier VGGs (the VGG has not been retrained since the long round:
# one with averaging, one with the stronger decay). Four models, about 32 MB, come back whole.
regularise_round() {
    local plain=(data.batch_size=128 train.precision=float32)
    train g_resnet_wd "$BUDGET" --config "$CONFIGS/ferplus_resnet_se_accel.yaml" train.seed=5 train.weight_decay=0.05 &
    train g_resnet_wd_ema "$BUDGET" --config "$CONFIGS/ferplus_resnet_se_accel.yaml" train.seed=6 train.weight_decay=0.05 \
        train.ema_momentum=0.999 data.augment.erasing=0.5 &
    train g_vgg_ema "$BUDGET" --config "$CONFIGS/ferplus_vgg.yaml" "${plain[@]}" train.seed=5 train.ema_momentum=0.999 &
    train g_vgg_wd "$BUDGET" --config "$CONFIGS/ferplus_vgg.yaml" "${plain[@]}" train.seed=6 train.weight_decay=0.05 &
    wait
    pack g_resnet_wd g_resnet_wd_ema g_vgg_ema g_vgg_wd
}

# fer2013: the FER2013 target (73.5% on its test split, original labels). The H100 round's FER2013
# networks, whose weights are lost, were cut by their budget after 41-70 epochs (the seed-2 and
# seed-3 ResNet-SEs before their cosine annealed) and still reached 70.13% (VGG-48, flip) and 71.20%
# as a five-member ensemble. Four runs sharing the GPU get about twice those epochs, annealed.
# Fine-tuning a FERPlus network instead reached 70.62% with flip in 24 CPU epochs
# (experiments/runs/fer2013_from_ferplus_ensemble_flip), but its 12 MB source would not fit the call.
# The ResNet-SEs take AdamW decay 0.05, which gave the best FERPlus ResNet-SE of the regularise round
# (87.85% against 86.99-87.44% at 1e-4; README.md). Four models (2.8M parameters each), about 41 MB, come back whole.
# All four follow FER2013's published protocol (data.val_split=public_test: all of train/, chosen on
# PublicTest, scored on PrivateTest back on the CPU), which cost nothing against the 10% hold-out in
# a paired CPU run (fer2013_vgg_protocol_{public_test,holdout}_cpu.yaml) and makes the numbers the literature's.
# The second ResNet-SE takes 64x64 faces: the FER2013 record is a pair of a 48 and a 64 network
# (experiments/runs/fer2013_protocol_resnet_seed69_64_pair), and the resolution round found 64 better from scratch.
fer2013_round() {
    local decay=(train.weight_decay=0.05) protocol=(data.val_split=public_test)
    train e_vgg48_a "$BUDGET" --config "$CONFIGS/fer2013_vgg48_accel.yaml" "${protocol[@]}" train.seed=1337 &
    train e_vgg48_b "$BUDGET" --config "$CONFIGS/fer2013_vgg48_accel.yaml" "${protocol[@]}" train.seed=2 &
    train e_resnet_a "$BUDGET" --config "$CONFIGS/fer2013_resnet_se_accel.yaml" "${protocol[@]}" "${decay[@]}" train.seed=1337 &
    train e_resnet_b "$BUDGET" --config "$CONFIGS/fer2013_resnet_se_accel.yaml" "${protocol[@]}" "${decay[@]}" train.seed=2 model.image_size=64 &
    wait
    pack e_vgg48_a e_vgg48_b e_resnet_a e_resnet_b
}

# robust: the shipped tiers lose 29-43 points to strong blur, noise and a face a third the size
# (fer_keras.benchmark robustness). Fine-tuning the fast tier's VGG for 8 CPU epochs with the camera
# degradations of data.augment at p=0.2 won back up to 27 of them but cost 0.5 points of clean
# validation (experiments/configs/ferplus_vgg_robust_cpu.yaml); at p=0.1 it cost 0.12 and kept most of
# the gain (ferplus_vgg_robust_p10_cpu.yaml, release 0.4.0's fast tier). Both were frozen-batch-norm
# fine-tunes of a converged network. Here the networks see the degradations from the first epoch: two fast-tier VGGs
# and an accurate-tier ResNet-SE (seed 2, as release 0.3.0's), and a VGG without them as the control
# that shares the GPU the same way, so the clean cost is measured at equal epochs (seed 1337 on both
# sides). The ResNet-SE takes the regularise round's AdamW decay 0.05 (see fer2013 above).
# Since release 0.10.0 the shipped tiers were also fine-tuned on face wear (data.augment.occlusion at
# p=0.1: 11-14 points more under a mask, 4-6 under sunglasses, no clean cost on test), so the degraded runs
# see it too: a candidate must not give that back.
# The ResNet-SE takes 64x64 faces, which beat 48 from scratch in the resolution round
# (experiments/runs/ferplus_resolution_round). Choose on clean validation (the ship rule) and on
# `benchmark robustness --split val`. Four models, about 31 MB, come back whole.
robust_round() {
    local plain=(data.batch_size=128 train.precision=float32)
    local degrade=(data.augment.low_resolution=0.2 data.augment.blur=0.2 data.augment.noise=0.2 data.augment.jpeg=0.2 data.augment.occlusion=0.1)
    train v_vgg_a "$BUDGET" --config "$CONFIGS/ferplus_vgg.yaml" "${plain[@]}" "${degrade[@]}" train.seed=1337 &
    train v_vgg_b "$BUDGET" --config "$CONFIGS/ferplus_vgg.yaml" "${plain[@]}" "${degrade[@]}" train.seed=2 &
    train v_resnet "$BUDGET" --config "$CONFIGS/ferplus_resnet_se_accel.yaml" "${degrade[@]}" train.weight_decay=0.05 train.seed=2 model.image_size=64 &
    train v_vgg_control "$BUDGET" --config "$CONFIGS/ferplus_vgg.yaml" "${plain[@]}" train.seed=1337 &
    wait
    pack v_vgg_a v_vgg_b v_resnet v_vgg_control
}

# resolution: release 0.11.0's accurate tier runs its ResNet-SE once on the face upsampled to 64x64
# inside the graph: a CPU fine-tune of 0.10.0's member at 64 reached 87.89% validation against 87.32%
# for its 48 twin (87.80 against 87.59% with flip), one seed each
# (experiments/configs/ferplus_resnet_se_in{64,48}_cpu.yaml). Whether 64 pays from scratch: ResNet-SEs
# at 48 and at 64 (model.image_size=64: the loader upsamples the faces), seeds 5 and 7, with the
# regularise round's decay 0.05 (g_resnet_wd, 87.85%) and the shipped tier's camera degradations and
# face wear at p=0.1, so a winner is an accurate-tier candidate as it is. Every run stops at
# RESOLUTION_EPOCHS, so the sizes compare at equal epochs: the 48 runs finish first and leave the GPU
# to the 64 ones (1.78x the multiply-adds); BUDGET only guards the call (a run it cuts short anneals
# early, and its history.csv says so). Compare on validation with and without flip
# (`evaluate --split val --tta flip`), then in 0.11.0's layout (`fer_keras.ensemble`, the VGGs first).
# Four models (2.8M parameters each), about 41 MB, come back whole. Run on 2026-12-04: 64 won by 0.67 points
# at 45 epochs (experiments/runs/ferplus_resolution_round).
resolution_round() {
    local EPOCHS=$RESOLUTION_EPOCHS  # read by train()
    train z_resnet48_a "$BUDGET" "${TIER_RESNET[@]}" train.seed=5 &
    train z_resnet48_b "$BUDGET" "${TIER_RESNET[@]}" train.seed=7 &
    train z_resnet64_a "$BUDGET" "${TIER_RESNET[@]}" model.image_size=64 train.seed=5 &
    train z_resnet64_b "$BUDGET" "${TIER_RESNET[@]}" model.image_size=64 train.seed=7 &
    wait
    pack z_resnet48_a z_resnet48_b z_resnet64_a z_resnet64_b
}

# fer2013_start: on FER2013's protocol, ensembles gained from members fine-tuned from new FERPlus starts
# and not from more seeds of one start (experiments/runs/fer2013_protocol_resnet_four_two_starts_64), and
# the best single network came from a 64x64 FERPlus start trained from scratch on the GPU and fine-tuned
# for 20 CPU epochs (fer2013_resnet_se_protocol_in64_from_gpu_y_resnet64_20ep_cpu.yaml: 71.86% PublicTest
# with flip). The call cannot carry starts (the images alone take 52 of the 64 MiB), so it makes them:
# four FERPlus ResNet-SEs at 64 with the resolution round's recipe (seeds 13-19, START_BUDGET each,
# sharing the GPU), then each one fine-tuned on FER2013 with that CPU run's recipe
# (fer2013_resnet_se_protocol_in64_finetune_accel.yaml, 20 epochs within FINETUNE_BUDGET). Neither stage
# sees PrivateTest. The four fine-tuned models (2.8M parameters each, about 47 MB) come back whole, the
# starts as records; PublicTest picks the ensembles back on the CPU. Run on 2026-12-04: the starts got 34-39
# epochs (84.57-85.77% FERPlus validation) and their fine-tunes 67.57-68.63% PublicTest, 3 points under the
# 92-epoch start's; no ensemble with them passed the bar (experiments/runs/fer2013_start_round): starts need the
# whole call, two at a time.
fer2013_start_round() {
    local seed start starts=() finetuned=() EPOCHS  # EPOCHS: read by train()
    for seed in 13 15 17 19; do
        starts+=("p_resnet64_$seed")
        train "p_resnet64_$seed" "$START_BUDGET" "${TIER_RESNET[@]}" model.image_size=64 train.seed="$seed" &
    done
    wait
    EPOCHS=20
    for seed in 13 15 17 19; do
        start="$(run_dir "p_resnet64_$seed")/best.keras"
        [ -f "$start" ] || continue
        finetuned+=("q_fer2013_64_$seed")
        train "q_fer2013_64_$seed" "$FINETUNE_BUDGET" --config "$CONFIGS/fer2013_resnet_se_protocol_in64_finetune_accel.yaml" \
            train.init_from="$start" &
    done
    wait
    pack "${finetuned[@]}" -- "${starts[@]}"
}

# distill: four teachers (the H100 round's two strongest architectures, two seeds each, one with
# MixUp), their flip ensemble, then students. Five models (about 41 MB) come back whole.
distill_round() {
    local teachers=(t_resnet_a t_resnet_b t_vgg48_a t_vgg48_b) members=() name dir teacher="$RUNS/teacher_ensemble_flip" plain distill
    train t_resnet_a "$TEACHER_BUDGET" --config "$CONFIGS/ferplus_resnet_se_accel.yaml" train.seed=1337 &
    train t_resnet_b "$TEACHER_BUDGET" --config "$CONFIGS/ferplus_resnet_se_accel.yaml" train.seed=2 data.augment.mixup=0.2 &
    train t_vgg48_a "$TEACHER_BUDGET" --config "$CONFIGS/ferplus_vgg48_accel.yaml" train.seed=1337 &
    train t_vgg48_b "$TEACHER_BUDGET" --config "$CONFIGS/ferplus_vgg48_accel.yaml" train.seed=2 &
    wait

    for name in "${teachers[@]}"; do
        dir=$(run_dir "$name")
        [ -n "$dir" ] && [ -f "$dir/best.keras" ] && members+=(--model "$dir/best.keras")
    done
    "$PYTHON" -m fer_keras.ensemble "${members[@]}" --flip --data-dir "$DATA" --out "$teacher" 2>&1 | tail -6

    # Students, distilled from the teacher ensemble: the fast tier's VGG, with an undistilled twin as
    # the control (on the CPU, 60 epochs distilled from the int8 accurate tier gained nothing:
    # experiments/configs/ferplus_vgg_distill_scratch.yaml), and a ResNet-SE warm-started from a
    # teacher, for the accurate tier's pair (ResNet-SE + VGG with flip fits 3 ms).
    if [ -f "$teacher/best.keras" ]; then
        plain=(data.batch_size=128 train.precision=float32)
        distill=(data.teacher="$teacher/best.keras" data.teacher_weight=0.7 "${plain[@]}")
        train s_vgg "$STUDENT_BUDGET" --config "$CONFIGS/ferplus_vgg.yaml" "${distill[@]}" &
        train s_vgg_plain "$STUDENT_BUDGET" --config "$CONFIGS/ferplus_vgg.yaml" "${plain[@]}" &
        train s_resnet "$STUDENT_BUDGET" --config "$CONFIGS/ferplus_resnet_se_accel.yaml" "${distill[@]}" \
            train.learning_rate=0.0005 train.warmup_epochs=0 train.init_from="$(run_dir t_resnet_a)/best.keras" &
        wait
    fi
    cp "$teacher/metrics.json" "$RUNS/logs/teacher_ensemble_metrics.json" 2>/dev/null
    pack t_resnet_a t_vgg48_a s_vgg s_vgg_plain s_resnet -- t_resnet_b t_vgg48_b
}

"${ROUND}_round"
