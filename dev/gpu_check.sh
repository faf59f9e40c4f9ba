#!/usr/bin/env bash
# dev/gpu_check.sh — the one command to run whenever a GPU is available.
#   1. builds everything (make; MPI/NCCL when found)
#   2. runs the GPU tests (make test-gpu: train_golf vs test/reference.py from the same init and batch)
#   3. trains STEPS steps (default 200) of the same config on the shared shards with train_golf and with
#      test/reference.py --compile (PyTorch 2.x) on the same GPU, exports and scores with golf_infer
#   4. prints a summary: test results, both loss curves at steps 50/100/200, ms/step of both and their ratio,
#      roundtrip val_bpb from train_golf and from golf_infer; logs and summary go to --out DIR
# Usage: bash dev/gpu_check.sh [--out DIR] [--steps N] [--python PY] [--preset NAME]
#   --preset runs both sides with a record preset (README "Presets"; the shape variables below are then not set,
#   so the preset's shape is used: expect minutes per side at r0322 / r0405 sizes; r0405 needs sp8192 data:
#   set DATA_PATH and TOKENIZER_PATH to it)
# Config of the comparison run (environment, train_gpt.py names): defaults below, a small baseline-family model.
set -uo pipefail
start_dir=$PWD
cd "$(dirname "$0")/.."
OUT=logs/gpu_check STEPS=200 PY=${GPU_PYTHON:-python3} PRESET_ARGS=()
usage() { sed -n '2,/^set -/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
usage_error() { echo "gpu_check: $* (--help shows the usage)" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --out|--steps|--python|--preset) [ $# -ge 2 ] || usage_error "$1 needs a value" ;;&
    --out) case $2 in /*) OUT=$2 ;; *) OUT=$start_dir/$2 ;; esac; shift 2 ;;
    --steps) STEPS=$2; shift 2 ;;
    --python) PY=$2; shift 2 ;;
    --preset) PRESET_ARGS=(--preset "$2"); shift 2 ;;
    *) usage_error "unknown argument '$1' (--out DIR --steps N --python PY --preset NAME)" ;;
  esac
done
[[ "$STEPS" =~ ^[1-9][0-9]*$ ]] || usage_error "--steps '$STEPS' is not a positive whole number"
mkdir -p "$OUT"
SHARED=${SHARED:-../shared}
export DATA_PATH=${DATA_PATH:-$SHARED/data/sample_sp1024} TOKENIZER_PATH=${TOKENIZER_PATH:-$SHARED/tokenizers/fineweb_1024_bpe.model}
if [ ${#PRESET_ARGS[@]} -eq 0 ]; then
  export NUM_LAYERS=${NUM_LAYERS:-9} MODEL_DIM=${MODEL_DIM:-512} NUM_HEADS=${NUM_HEADS:-8} NUM_KV_HEADS=${NUM_KV_HEADS:-4}
  export TRAIN_SEQ_LEN=${TRAIN_SEQ_LEN:-1024} TRAIN_BATCH_TOKENS=${TRAIN_BATCH_TOKENS:-65536} VAL_BATCH_SIZE=${VAL_BATCH_SIZE:-65536}
fi
export ITERATIONS=$STEPS WARMDOWN_ITERS=${WARMDOWN_ITERS:-50} MAX_WALLCLOCK_SECONDS=0 VAL_LOSS_EVERY=0 TRAIN_LOG_EVERY=10
summary=$OUT/summary.txt
: > "$summary"
say() { echo "$*" | tee -a "$summary"; }

say "gpu_check $(date -u +%Y-%m-%dT%H:%MZ) on $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 || echo 'no GPU')"
make 2>&1 | tee "$OUT/build.log" | tail -8
[ -x ./train_golf ] || { say "train_golf did not build: see $OUT/build.log"; exit 1; }

say "== make test-gpu"
make test-gpu GPU_PYTHON="$PY" 2>&1 | tee "$OUT/test_gpu.log" | grep -E "^(PASS|FAIL|SKIP)|passed"
tests=$(grep -E "passed, [0-9]+ failed" "$OUT/test_gpu.log" | tail -1)

say "== train_golf: $STEPS steps of ${PRESET_ARGS[*]:-${NUM_LAYERS}x${MODEL_DIM}, seq $TRAIN_SEQ_LEN, $TRAIN_BATCH_TOKENS tokens/step}"
OUT_DIR=$OUT RUN_ID=gpu_check_golf ./train_golf "${PRESET_ARGS[@]}" > "$OUT/train_golf.log" 2>&1; rc_golf=$?
say "== reference.py --compile, same config"
$PY test/reference.py train "${PRESET_ARGS[@]}" --device cuda --compile --out "$OUT/reference.ckpt" > "$OUT/reference.log" 2>&1; rc_ref=$?

loss_at() { grep -E "^step:$2/[0-9]+ train_loss" "$1" | head -1 | sed -E 's/.*train_loss:([0-9.]+).*/\1/'; }
avg_ms() { grep -E "^step:$STEPS/[0-9]+ train_loss" "$1" | tail -1 | sed -E 's/.*step_avg:([0-9.]+)ms.*/\1/'; }
golf_bpb=$(grep -E "final_.*_roundtrip_exact" "$OUT/train_golf.log" | sed -E 's/.*val_bpb:([0-9.]+).*/\1/')
infer_bpb=$(./golf_infer "$OUT/final_model.golf" --val "$DATA_PATH/fineweb_val_*.bin" --tokenizer "$TOKENIZER_PATH" ${TRAIN_SEQ_LEN:+--seq-len "$TRAIN_SEQ_LEN"} 2>&1 | tee "$OUT/golf_infer.log" | sed -nE 's/.*val_bpb:([0-9.]+).*/\1/p')
g_ms=$(avg_ms "$OUT/train_golf.log"); r_ms=$(avg_ms "$OUT/reference.log")
say ""
say "| check | train_golf | reference.py --compile |"
say "|---|---|---|"
say "| exit status | $rc_golf | $rc_ref |"
for s in 50 100 $STEPS; do say "| train_loss step $s | $(loss_at "$OUT/train_golf.log" $s) | $(loss_at "$OUT/reference.log" $s) |"; done
say "| ms/step | $g_ms | $r_ms |"
if [ -n "$g_ms" ] && [ -n "$r_ms" ]; then say "| speed ratio (reference ms / golf ms) | $(awk -v a="$r_ms" -v b="$g_ms" 'BEGIN{printf "%.2fx", a/b}') | |"; fi
say "| roundtrip val_bpb (train_golf / golf_infer) | $golf_bpb / $infer_bpb | |"
say "| make test-gpu | $tests | |"
say "logs: $OUT"
[ "$rc_golf" = 0 ] && [ "$rc_ref" = 0 ] && echo "$tests" | grep -q " 0 failed"
