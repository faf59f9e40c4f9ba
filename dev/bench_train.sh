#!/usr/bin/env bash
# dev/bench_train.sh — training speed of train_golf against test/reference.py --compile, same model, batch and GPU,
# measured in one run.
#   For each shape (the baseline 9x512 MLP 2x and the 11-layer MLP 3x, seq 1024, 524,288 tokens per step = 8
#   micro-steps of 65,536 on one GPU): STEPS steps of each; ms/step over the steps after WARM (the first steps
#   include compilation and cuBLAS heuristics), tokens/s, MFU, and the ratio golf tokens/s / reference tokens/s.
#   MFU = model FLOPs per second / the card's bf16 dense peak measured here (a torch bf16 matmul of 8192^3).
#   Model FLOPs per token (training = 3x forward): 6 * P_matmul + 6 * L * T * d, P_matmul the weights of every
#   linear layer (blocks and lm_head; the tied embedding counts once, as the head), and 6 L T d the causal
#   attention (QK^T and AV: 2 T d forward per token and layer with the causal half).
#   Then attention alone (dev/bench_attention.cu): ms and TFLOP/s of the flash (bf16) and SIMT (fp32) kernels at
#   head_dim 64 and 128 (model dim 512), T = 1024, 64 sequences.
#   Then a per-kernel breakdown of train_golf's steps (nsys, when installed) so the next optimisation is chosen by data.
#   --cpu: the CPU build instead (no GPU needed): train_golf_cpu (its default PRECISION=bf16; PRECISION=fp32 in the
#   environment for the fp32 path) against test/reference.py on the CPU (float32, same threads) at test/test_gpu.py's
#   SHAPE (4 layers x 128, seq 128, 8,192 tokens per step): ms/step of each over the steps after WARM and their ratio
#   (the CPU build's target: within 3x).
#   --memory [FLAGS...]: the device memory plan per GPU of the config that train_golf's FLAGS and environment give
#   (e.g. --memory --preset r0405), without a GPU and without allocating it: train_golf_cpu with PLAN_MEMORY=1 runs
#   trainer_alloc's own size arithmetic and prints bytes per buffer class, the cuBLAS workspace, the total and whether
#   it fits an H100 80GB. Everything after --memory goes to train_golf.
#   --predict [FLAGS...]: a PREDICTION (roofline, not a measurement) of that config's training step on 8xH100 SXM:
#   a 1-step train_golf_cpu run at 8 x TRAIN_SEQ_LEN tokens (one sequence per micro-step) writes its launch log
#   (GOLF_EMU_LOG, with GOLF_EMU_LOG_ONLY=1: logged, not computed), and dev/predict.py scales one micro-step to the
#   config's TRAIN_BATCH_TOKENS / 8 tokens per GPU and prices every launch (dev/predict.py's header has the model).
#   Data: the shared sp1024 shards (tokens < 1024 are valid for any vocabulary; the costs do not depend on them) and
#   the shared tokenizer of the config's VOCAB_SIZE. Everything after --predict goes to train_golf.
#   --no-reference: train_golf's side only (no test/reference.py run); --no-profile: no nsys breakdown.
# Usage: bash dev/bench_train.sh [--cpu] [--steps N] [--warm W] [--python PY] [--out DIR] [--no-reference] [--no-profile]
#        bash dev/bench_train.sh [--out DIR] --memory|--predict [TRAIN_GOLF_FLAGS...]
# Needs a GPU (except with --cpu, --memory, --predict); prints why and exits 0 when none is visible.
set -uo pipefail
start_dir=$PWD
cd "$(dirname "$0")/.." || exit 1
STEPS=40 WARM=10 PY=${GPU_PYTHON:-python3} OUT=logs/bench_train CPU=0 MODE="" REF=1 PROFILE=1
usage() { sed -n '2,/^set -/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
usage_error() { echo "bench_train: $* (--help shows the usage)" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --cpu) CPU=1; shift ;;
    --no-reference) REF=0; shift ;;
    --no-profile) PROFILE=0; shift ;;
    --memory|--predict) MODE=${1#--}; shift; break ;;
    --steps|--warm|--python|--out) [ $# -ge 2 ] || usage_error "$1 needs a value" ;;&
    --steps) STEPS=$2; shift 2 ;;
    --warm) WARM=$2; shift 2 ;;
    --python) PY=$2; shift 2 ;;
    --out) case $2 in /*) OUT=$2 ;; *) OUT=$start_dir/$2 ;; esac; shift 2 ;;
    *) usage_error "unknown argument '$1' (--cpu --steps N --warm W --python PY --out DIR --no-reference --no-profile --memory --predict)" ;;
  esac
done
[[ "$STEPS" =~ ^[1-9][0-9]*$ && "$WARM" =~ ^[0-9]+$ ]] || usage_error "--steps '$STEPS' and --warm '$WARM' must be whole numbers (--steps positive)"
[ "$STEPS" -gt "$WARM" ] || usage_error "--steps must exceed --warm"
if [ -n "$MODE" ]; then   # --memory / --predict: "$@" holds train_golf's flags
  mkdir -p "$OUT" || { echo "bench_train: cannot create '$OUT'" >&2; exit 1; }
  OUT=$(cd "$OUT" && pwd)
  make train_golf_cpu > "$OUT/build_cpu.log" 2>&1 || { echo "bench_train: make train_golf_cpu failed (see $OUT/build_cpu.log)" >&2; exit 1; }
  bin=$PWD/train_golf_cpu
  plan=$(cd "$OUT" && PLAN_MEMORY=1 "$bin" "$@" 2>&1) || { echo "$plan"; echo "bench_train: train_golf_cpu --plan-memory 1 $* failed" >&2; exit 1; }
  if [ "$MODE" = memory ]; then echo "$plan"; exit 0; fi
  summary=$(echo "$plan" | grep '^memory_plan ')
  field() { echo "$summary" | tr ' ' '\n' | sed -n "s/^$1://p"; }
  B=$(field train_batch_tokens) T=$(field train_seq_len) V=$(field vocab_size)
  if [ -z "$B" ] || [ -z "$T" ] || [ -z "$V" ]; then echo "bench_train: no memory_plan summary line from train_golf_cpu" >&2; exit 1; fi
  SHARED=$(cd "${SHARED:-../shared}" 2>/dev/null && pwd) || { echo "bench_train: no shared folder '${SHARED:-../shared}' (set SHARED)" >&2; exit 1; }
  tok=${TOKENIZER_PATH:-$SHARED/tokenizers/fineweb_${V}_bpe.model}
  [ -f "$tok" ] || { echo "bench_train: no tokenizer '$tok' for VOCAB_SIZE $V (set TOKENIZER_PATH)" >&2; exit 1; }
  tok=$(cd "$(dirname "$tok")" && pwd)/$(basename "$tok")
  [ "$V" -ge 1024 ] || { echo "bench_train: --predict reads the sp1024 shards: VOCAB_SIZE $V is below 1024" >&2; exit 1; }
  /usr/bin/python3 dev/val_cut.py "$SHARED/data/sample_sp1024" "$OUT/data_cut" $((8 * T)) > /dev/null || exit 1
  rm -f "$OUT/launches.log"
  # the config's flags, then the 1-step run's own (later flags win); the environment keeps the rest of the config
  (cd "$OUT" && GOLF_EMU_LOG=$OUT/launches.log GOLF_EMU_LOG_ONLY=1 GOLF_EMU_EXIT_AT=step_end OMP_WAIT_POLICY=passive \
    "$bin" "$@" --train-batch-tokens $((8 * T)) --val-batch-size $((8 * T)) --iterations 1 --val-loss-every 0 --max-wallclock-seconds 0 \
    --data-path "$OUT/data_cut" --tokenizer-path "$tok" --out-dir "$OUT" --run-id predict > "$OUT/predict_run.log" 2>&1) ||
    { echo "bench_train: the 1-step train_golf_cpu run failed (see $OUT/predict_run.log)" >&2; exit 1; }
  python3 dev/predict.py "$OUT/launches.log" "$OUT/predict_run.log" --batch-tokens "$B"
  exit
fi
if [ "$CPU" = 1 ]; then
  mkdir -p "$OUT"
  make train_golf_cpu >/dev/null 2>&1 || { echo "bench_train: make train_golf_cpu failed"; exit 1; }
  SHARED=${SHARED:-../shared}
  export TOKENIZER_PATH=${TOKENIZER_PATH:-$SHARED/tokenizers/fineweb_1024_bpe.model} OMP_WAIT_POLICY=passive
  src=${DATA_PATH:-$SHARED/data/sample_sp1024}
  export DATA_PATH=$OUT/data_cut   # the train shards, and 8,193 val tokens (the final eval is not what is timed)
  /usr/bin/python3 dev/val_cut.py "$src" "$DATA_PATH" 8192 || exit 1
  export NUM_LAYERS=4 MODEL_DIM=128 NUM_HEADS=2 NUM_KV_HEADS=1 MLP_MULT=2 TRAIN_SEQ_LEN=128 TRAIN_BATCH_TOKENS=8192 VAL_BATCH_SIZE=8192
  export ITERATIONS=$STEPS WARMDOWN_ITERS=0 MAX_WALLCLOCK_SECONDS=0 VAL_LOSS_EVERY=0 TRAIN_LOG_EVERY=1 OUT_DIR=$OUT
  PRECISION=${PRECISION:-bf16} ./train_golf_cpu > "$OUT/cpu_golf.log" 2>&1 || { echo "bench_train: train_golf_cpu failed (see $OUT/cpu_golf.log)"; exit 1; }
  /usr/bin/python3 test/reference.py train --out "$OUT/cpu_ref.ckpt" --device cpu --no-amp > "$OUT/cpu_ref.log" 2>&1 ||
    { echo "bench_train: reference.py train failed (see $OUT/cpu_ref.log)"; exit 1; }
  ms() {   # mean ms/step over the steps after WARM, from train_time:
    grep -o 'step:[0-9]*/[0-9]* train_loss:[^ ]* train_time:[0-9.]*' "$1" | sed 's/.*step:\([0-9]*\)\/.*train_time:\([0-9.]*\)/\1 \2/' |
      awk -v w="$WARM" '$1 == w { a = $2 } { b = $2; n = $1 } END { if (n > w) printf "%.1f", (b - a) / (n - w); else print "nan" }'
  }
  g=$(ms "$OUT/cpu_golf.log"); r=$(ms "$OUT/cpu_ref.log")
  echo "bench_train --cpu: $(date +%F), $(nproc) cores, threads ${OMP_NUM_THREADS:-all}; 4x128 seq 128, 8192 tokens/step, steps $((WARM + 1))..$STEPS"
  echo "train_golf_cpu (PRECISION=${PRECISION:-bf16}) ms/step $g   reference.py (torch $(/usr/bin/python3 -c 'import torch; print(torch.__version__)'), cpu, float32) ms/step $r   ratio golf/ref $(awk -v a="$g" -v b="$r" 'BEGIN { printf "%.2f", a / b }')x"
  exit 0
fi
if ! nvidia-smi -L 2>/dev/null | grep -q GPU; then echo "bench_train: no CUDA device visible (nvidia-smi lists none): skipped"; exit 0; fi
mkdir -p "$OUT"
make >/dev/null 2>&1 || { echo "bench_train: make failed"; exit 1; }
[ -x ./train_golf ] || { echo "bench_train: train_golf did not build"; exit 1; }
SHARED=${SHARED:-../shared}
export DATA_PATH=${DATA_PATH:-$SHARED/data/sample_sp1024} TOKENIZER_PATH=${TOKENIZER_PATH:-$SHARED/tokenizers/fineweb_1024_bpe.model}
export TRAIN_SEQ_LEN=1024 TRAIN_BATCH_TOKENS=524288 VAL_BATCH_SIZE=524288 ITERATIONS=$STEPS WARMDOWN_ITERS=0
export MAX_WALLCLOCK_SECONDS=0 VAL_LOSS_EVERY=0 TRAIN_LOG_EVERY=1

peak=$($PY - <<'EOF'
import torch
a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16); b = torch.randn_like(a)
for _ in range(3): a @ b
torch.cuda.synchronize(); s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
s.record()
for _ in range(20): a @ b
e.record(); torch.cuda.synchronize()
print(f"{20 * 2 * 8192**3 / (s.elapsed_time(e) / 1e3) / 1e12:.1f}")
EOF
)
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
echo "bench_train $(date -u +%Y-%m-%dT%H:%MZ) on $gpu; measured bf16 matmul peak ${peak} TFLOP/s; $STEPS steps, timed after $WARM" | tee "$OUT/summary.txt"

# ms per step between steps WARM and STEPS from a train_gpt.py-style log's train_time
ms_per_step() {
  sed -nE 's/^step:([0-9]+)\/[0-9]+ train_loss:[^ ]+ train_time:([0-9.]+)ms.*/\1 \2/p' "$1" |
    awk -v w="$WARM" -v n="$STEPS" '$1 == w { a = $2 } $1 == n { b = $2 } END { if (a != "" && b != "") printf "%.2f", (b - a) / (n - w) }'
}
# model FLOPs per token of the shape in the environment
flops_per_token() {
  awk -v L="$NUM_LAYERS" -v d="$MODEL_DIM" -v H="$NUM_HEADS" -v KV="$NUM_KV_HEADS" -v m="$MLP_MULT" -v V=1024 -v T="$TRAIN_SEQ_LEN" \
    'BEGIN { kv = KV * d / H; p = L * (2 * d * d + 2 * kv * d + 2 * m * d * d) + V * d; printf "%.0f", 6 * p + 6 * L * T * d }'
}

echo "| shape | implementation | ms/step | tokens/s | MFU | golf / reference |" | tee -a "$OUT/summary.txt"
echo "|---|---|---|---|---|---|" | tee -a "$OUT/summary.txt"
for shape in "9 512 8 4 2" "11 512 8 4 3"; do
  read -r NUM_LAYERS MODEL_DIM NUM_HEADS NUM_KV_HEADS MLP_MULT <<<"$shape"
  export NUM_LAYERS MODEL_DIM NUM_HEADS NUM_KV_HEADS MLP_MULT
  tag="${NUM_LAYERS}x${MODEL_DIM}_mlp${MLP_MULT}"
  OUT_DIR=$OUT RUN_ID=bench_golf_$tag ./train_golf > "$OUT/golf_$tag.log" 2>&1 || echo "bench_train: train_golf failed, see $OUT/golf_$tag.log"
  if [ "$REF" = 1 ]; then
    $PY test/reference.py train --device cuda --compile --out "$OUT/ref_$tag.ckpt" > "$OUT/ref_$tag.log" 2>&1 || echo "bench_train: reference failed, see $OUT/ref_$tag.log"
  else : > "$OUT/ref_$tag.log"; fi
  fpt=$(flops_per_token)
  g=$(ms_per_step "$OUT/golf_$tag.log"); r=$(ms_per_step "$OUT/ref_$tag.log")
  row() {  # name ms
    [ -n "$2" ] || { echo "| $tag | $1 | (no timing) | | | |"; return; }
    awk -v name="$1" -v tag="$tag" -v ms="$2" -v f="$fpt" -v pk="$peak" -v B="$TRAIN_BATCH_TOKENS" \
      'BEGIN { tps = B / (ms / 1e3); printf "| %s | %s | %.1f | %.0f | %.1f%% |", tag, name, ms, tps, 100 * tps * f / (pk * 1e12) }'
  }
  echo "$(row train_golf "$g") $( [ -n "$g" ] && [ -n "$r" ] && awk -v a="$r" -v b="$g" 'BEGIN{printf "%.2fx", a/b}') |" | tee -a "$OUT/summary.txt"
  echo "$(row 'reference.py --compile' "$r") |" | tee -a "$OUT/summary.txt"
done

# attention only: train_golf's flash kernels (bf16) against its SIMT kernels (fp32), one micro-step's sequences
echo "== attention only (dev/bench_attention: 64 x 1024 tokens, 8 heads, 4 kv heads, causal; target: flash forward >= 350 TFLOP/s at head_dim 64)" | tee -a "$OUT/summary.txt"
if make dev/bench_attention > "$OUT/build_attention.log" 2>&1; then
  for hd in 64 128; do
    ./dev/bench_attention --batch 64 --seq 1024 --heads $((512 / hd)) --kv-heads $((256 / hd)) --head-dim $hd > "$OUT/attention_hd$hd.log" 2>&1 ||
      echo "bench_train: bench_attention head_dim $hd failed (see $OUT/attention_hd$hd.log)"
    sed -n '2,7p' "$OUT/attention_hd$hd.log" | sed "s/^/  [head_dim $hd] /" | tee -a "$OUT/summary.txt"
  done
else
  echo "bench_train: make dev/bench_attention failed (see $OUT/build_attention.log)" | tee -a "$OUT/summary.txt"
fi

if [ "$PROFILE" = 0 ]; then
  echo "(--no-profile: no per-kernel breakdown)" | tee -a "$OUT/summary.txt"
elif command -v nsys >/dev/null; then
  echo "== per-kernel time of train_golf (nsys, 5 steps of the baseline shape)" | tee -a "$OUT/summary.txt"
  export NUM_LAYERS=9 MODEL_DIM=512 NUM_HEADS=8 NUM_KV_HEADS=4 MLP_MULT=2 ITERATIONS=5
  nsys profile -f true -o "$OUT/golf_profile" ./train_golf > "$OUT/nsys_run.log" 2>&1 &&
    nsys stats --report cuda_gpu_kern_sum --format csv "$OUT/golf_profile.nsys-rep" 2>/dev/null |
    awk -F, 'NR > 1 && NF > 8 { gsub(/"/, ""); printf "%6.1f%%  %10.0f ns  %6d calls  %s\n", $1, $2, $3, $9 }' | head -20 | tee -a "$OUT/summary.txt"
else
  echo "(nsys not installed: no per-kernel breakdown)" | tee -a "$OUT/summary.txt"
fi
echo "logs: $OUT"
