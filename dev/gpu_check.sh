#!/usr/bin/env bash
# dev/gpu_check.sh — the one script to run whenever a GPU is lent: unattended, within 8 minutes on a cold H100/H200
# (build included), without MPI or NCCL (a single-GPU build: USE_MPI=0 USE_NCCL=0). Each step runs under `timeout`
# with its budget, cut to what is left of the whole (TOTAL_S); a step that fails or runs out is recorded and the next
# one runs. Steps and budgets (seconds):
#   build       120  make -j4 tokenize golf_infer golf_export train_golf dev/bench_attention USE_MPI=0 USE_NCCL=0
#   gpu_tests    75  test/test_gpu.py --k K (train_golf against test/reference.py on the GPU; skipped without
#                    a PyTorch with CUDA in --python)
#   memcheck     30  compute-sanitizer --tool memcheck on a 2-step run of a tiny config (2x128, seq 128)
#   racecheck    45  compute-sanitizer --tool racecheck on the same run (both skipped, with a message, when
#                    compute-sanitizer is neither on PATH nor in /usr/local/cuda/bin)
#   bench       195  dev/bench_train.sh --steps 6 --warm 2: 9x512 MLP 2x and 11x512 MLP 3x at 524,288 tokens/step
#                    against test/reference.py --compile (its side skipped without torch >= 2 with CUDA)
# Output: ONE summary file, DIR/summary.txt (device from nvidia-smi, date, every number the steps print, PASS / FAIL /
# SKIP / TIMEOUT per step), beside each step's log. Exit status 0 when no step failed or timed out.
# Usage: bash dev/gpu_check.sh [--out DIR] [--k K] [--python PY] [--shared DIR] [--dry-run]
#   --out DIR      default logs/gpu_check      --k K   training steps test_gpu.py compares (default 3)
#   --python PY    a python with PyTorch + CUDA (default: $GPU_PYTHON or python3)
#   --shared DIR   the shared data folder (default ../shared): data/sample_sp1024, tokenizers/fineweb_1024_bpe.model
#   --dry-run      print the plan and the budget of each step, run nothing (make test runs this)
set -uo pipefail
start_dir=$PWD
cd "$(dirname "$0")/.." || exit 1
OUT=logs/gpu_check K=3 PY=${GPU_PYTHON:-python3} SHARED=${SHARED:-../shared} DRY=0 TOTAL_S=465
usage() { sed -n '2,/^set -/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
usage_error() { echo "gpu_check: $* (--help shows the usage)" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --dry-run) DRY=1; shift ;;
    --out|--k|--python|--shared) [ $# -ge 2 ] || usage_error "$1 needs a value" ;;&
    --out) case $2 in /*) OUT=$2 ;; *) OUT=$start_dir/$2 ;; esac; shift 2 ;;
    --k) K=$2; shift 2 ;;
    --python) PY=$2; shift 2 ;;
    --shared) case $2 in /*) SHARED=$2 ;; *) SHARED=$start_dir/$2 ;; esac; shift 2 ;;
    *) usage_error "unknown argument '$1' (--out DIR --k K --python PY --shared DIR --dry-run)" ;;
  esac
done
[[ "$K" =~ ^[1-9][0-9]*$ ]] || usage_error "--k '$K' is not a positive whole number"

STEPS=(build gpu_tests memcheck racecheck bench)
declare -A BUDGET=([build]=120 [gpu_tests]=75 [memcheck]=30 [racecheck]=45 [bench]=195)
declare -A WHAT=(
  [build]="make -j4 tokenize golf_infer golf_export train_golf dev/bench_attention USE_MPI=0 USE_NCCL=0"
  [gpu_tests]="$PY test/test_gpu.py --k $K --python $PY --shared $SHARED"
  [memcheck]="compute-sanitizer --tool memcheck ./train_golf (2 steps, 2x128, seq 128, 1,024 tokens/step)"
  [racecheck]="compute-sanitizer --tool racecheck ./train_golf (the same run)"
  [bench]="bash dev/bench_train.sh --steps 6 --warm 2 --no-profile (9x512 MLP 2x, 11x512 MLP 3x vs reference.py --compile)"
)
sum=0
for s in "${STEPS[@]}"; do sum=$((sum + BUDGET[$s])); done
if [ "$DRY" = 1 ]; then
  echo "gpu_check --dry-run: the plan (budgets in seconds; each step under timeout, cut to what is left of $TOTAL_S s)"
  for s in "${STEPS[@]}"; do printf '  %-10s %4d s  %s\n' "$s" "${BUDGET[$s]}" "${WHAT[$s]}"; done
  printf '  %-10s %4d s  (limit 480 s = 8 min)\n' total "$sum"
  echo "  summary: $OUT/summary.txt"
  if [ "$sum" -gt "$TOTAL_S" ] || [ "$TOTAL_S" -gt 480 ]; then echo "gpu_check: the budgets ($sum s) exceed TOTAL_S $TOTAL_S or 8 minutes" >&2; exit 1; fi
  exit 0
fi

mkdir -p "$OUT" || { echo "gpu_check: cannot create '$OUT'" >&2; exit 1; }
summary=$OUT/summary.txt
: > "$summary"
say() { echo "$*" | tee -a "$summary"; }
t_start=$(date +%s)
declare -A RESULT
failed=0
# step NAME CMD...: run CMD under timeout (its budget, at most what is left) into OUT/NAME.log; records the result
step() {
  local name=$1; shift
  local left=$((TOTAL_S - ($(date +%s) - t_start))) limit=${BUDGET[$name]}
  [ "$left" -lt "$limit" ] && limit=$left
  if [ "$limit" -le 5 ]; then RESULT[$name]="TIMEOUT (no time left)"; failed=1; say "== $name: TIMEOUT (no time left of $TOTAL_S s)"; return 1; fi
  say "== $name (limit ${limit} s): ${WHAT[$name]}"
  local t0 rc
  t0=$(date +%s)
  timeout --kill-after=5 "$limit" "$@" > "$OUT/$name.log" 2>&1
  rc=$?
  local dt=$(($(date +%s) - t0))
  if [ "$rc" = 0 ]; then RESULT[$name]="PASS (${dt} s)"
  elif [ "$rc" = 124 ] || [ "$rc" = 137 ]; then RESULT[$name]="TIMEOUT (${dt} s)"; failed=1
  else RESULT[$name]="FAIL (exit $rc, ${dt} s; see $OUT/$name.log)"; failed=1; fi
  say "   ${RESULT[$name]}"
  return "$rc"
}
skip() { RESULT[$1]="SKIP ($2)"; say "== $1: SKIP ($2)"; }

gpu=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -1)
say "gpu_check $(date -u +%Y-%m-%dT%H:%M:%SZ) on ${gpu:-no GPU visible (nvidia-smi lists none)}; $(nproc) CPU cores; budget $TOTAL_S s"
say "commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo ' (with local changes)')"
if [ -z "$gpu" ]; then say "gpu_check: no GPU: nothing to check"; exit 1; fi
data=$SHARED/data/sample_sp1024 tok=$SHARED/tokenizers/fineweb_1024_bpe.model
if [ ! -d "$data" ] || [ ! -f "$tok" ]; then say "gpu_check: no shared data ($data, $tok): the steps that train will fail"; fi

step build make -j4 tokenize golf_infer golf_export train_golf dev/bench_attention USE_MPI=0 USE_NCCL=0
tail -3 "$OUT/build.log" | sed 's/^/   /' | tee -a "$summary"
built=0; [ -x ./train_golf ] && built=1

has_torch_cuda=$("$PY" -c 'import torch; print(int(torch.cuda.is_available() and int(torch.__version__.split(".")[0]) >= 2))' 2>/dev/null || echo 0)
if [ "$built" = 0 ]; then skip gpu_tests "train_golf did not build"
elif [ "$has_torch_cuda" != 1 ]; then skip gpu_tests "$PY has no PyTorch >= 2 with CUDA (--python)"
else
  step gpu_tests "$PY" test/test_gpu.py --k "$K" --python "$PY" --shared "$SHARED"
  grep -E "^(FAIL|SKIP)|passed, [0-9]+ failed" "$OUT/gpu_tests.log" | tail -12 | sed 's/^/   /' | tee -a "$summary"
fi

sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null)
if [ "$built" = 0 ]; then skip memcheck "train_golf did not build"; skip racecheck "train_golf did not build"
elif [ -z "$sanitizer" ]; then skip memcheck "no compute-sanitizer on PATH or in /usr/local/cuda/bin"; skip racecheck "no compute-sanitizer"
else
  mkdir -p "$OUT/tiny"
  /usr/bin/env python3 dev/val_cut.py "$data" "$OUT/tiny/data" 8192 > /dev/null 2>&1 || say "   val_cut failed: the sanitizer runs read the whole val shard"
  tiny_data=$OUT/tiny/data; [ -d "$tiny_data" ] || tiny_data=$data
  tiny=(env NUM_LAYERS=2 MODEL_DIM=128 NUM_HEADS=2 NUM_KV_HEADS=1 MLP_MULT=2 TRAIN_SEQ_LEN=128 TRAIN_BATCH_TOKENS=1024 VAL_BATCH_SIZE=8192
        ITERATIONS=2 WARMDOWN_ITERS=0 VAL_LOSS_EVERY=0 MAX_WALLCLOCK_SECONDS=0 DATA_PATH="$tiny_data" TOKENIZER_PATH="$tok"
        OUT_DIR="$OUT/tiny" RUN_ID=gpu_check_tiny)
  for tool in memcheck racecheck; do
    step "$tool" "${tiny[@]}" "$sanitizer" --tool "$tool" --error-exitcode 3 ./train_golf
    grep -E "ERROR SUMMARY|RACECHECK SUMMARY|hazard|Invalid" "$OUT/$tool.log" | head -5 | sed 's/^/   /' | tee -a "$summary"
  done
fi

if [ "$built" = 0 ]; then skip bench "train_golf did not build"
else
  ref_flag=(); [ "$has_torch_cuda" = 1 ] || { ref_flag=(--no-reference); say "   (bench: $PY has no PyTorch >= 2 with CUDA: reference.py --compile skipped)"; }
  step bench env SHARED="$SHARED" bash dev/bench_train.sh --steps 6 --warm 2 --no-profile --python "$PY" --out "$OUT/bench" "${ref_flag[@]}"
  grep -E "^\||measured" "$OUT/bench.log" | sed 's/^/   /' | tee -a "$summary"
fi

say ""
say "| step | result |"
say "|---|---|"
for s in "${STEPS[@]}"; do say "| $s | ${RESULT[$s]:-not run} |"; done
say "total $(($(date +%s) - t_start)) s of $TOTAL_S s; logs: $OUT"
exit "$failed"
