#!/usr/bin/env bash
# dev/quickstart.sh — from a fresh Debian machine to a golf training run, in one command.
#   1. install build and test dependencies (apt-get; CUDA itself is expected under /usr/local/cuda)
#   2. build everything that can be built here (make)
#   3. find the data: $DATA_PATH, the official layout data/datasets/fineweb10B_sp1024/ (fetched with
#      openai/parameter-golf's data/cached_challenge_fineweb.py), or ../shared's sample shards
#   4. train on every visible GPU for QUICKSTART_SECONDS (default 120): ./train_golf or mpirun -np N ./train_golf;
#      without a GPU: train_golf_cpu (the CPU build, make cpu) on a small model (2 layers x 128, seq 128) for
#      QUICKSTART_SECONDS (default 90)
#   5. score the exported artifact with golf_infer and print a generated sample
# Environment: DATA_PATH, TOKENIZER_PATH, NGPU, QUICKSTART_SECONDS, OUT_DIR, SKIP_APT=1, any train_golf hyperparameter.
set -euo pipefail
case "${1-}" in
  "") ;;
  -h|--help) sed -n '2,/^set -/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  *) echo "quickstart: takes no arguments, got '$1' (settings are environment variables; --help shows them)" >&2; exit 2 ;;
esac
cd "$(dirname "$0")/.."

say() { echo "quickstart: $*"; }
fail() { echo "quickstart: error: $*" >&2; exit 1; }

if [ "${SKIP_APT:-0}" != 1 ] && command -v apt-get >/dev/null; then
  SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
  say "installing dependencies with apt-get"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    build-essential make python3 python3-numpy python3-sentencepiece python3-torch python3-matplotlib \
    libopenblas0-pthread libopenblas-dev libopenmpi-dev openmpi-bin >/dev/null
fi

say "building"
make
make cpu

# data: the first place that holds both splits wins
if [ -z "${DATA_PATH:-}" ]; then
  for d in data/datasets/fineweb10B_sp1024 ../shared/data/sample_sp1024; do
    if ls "$d"/fineweb_train_*.bin >/dev/null 2>&1 && ls "$d"/fineweb_val_*.bin >/dev/null 2>&1; then DATA_PATH=$d; break; fi
  done
fi
if [ -z "${TOKENIZER_PATH:-}" ]; then
  for t in data/tokenizers/fineweb_1024_bpe.model ../shared/tokenizers/fineweb_1024_bpe.model; do
    if [ -f "$t" ]; then TOKENIZER_PATH=$t; break; fi
  done
fi
[ -n "${DATA_PATH:-}" ] || fail "no shards found. Fetch the official data with openai/parameter-golf:
    python3 data/cached_challenge_fineweb.py --variant sp1024 --train-shards 10
  (run from a clone of that repository, then copy or link its data/ folder here), or make shards from
  your own text: ./tokenize shards --model fineweb_1024_bpe.model --out data/mine --val-docs 1000 docs.jsonl"
[ -n "${TOKENIZER_PATH:-}" ] || fail "no tokenizer found: set TOKENIZER_PATH to fineweb_1024_bpe.model"
say "data: $DATA_PATH   tokenizer: $TOKENIZER_PATH"

NGPU=${NGPU:-$(nvidia-smi -L 2>/dev/null | grep -c GPU || true)}
export DATA_PATH TOKENIZER_PATH OUT_DIR=${OUT_DIR:-runs/quickstart}
mkdir -p "$OUT_DIR"
if [ "${NGPU:-0}" -lt 1 ]; then
  # the same train_golf.cu, its CUDA emulated on the CPU: every kernel runs, but slowly (a small model)
  export MAX_WALLCLOCK_SECONDS=${MAX_WALLCLOCK_SECONDS:-${QUICKSTART_SECONDS:-90}}
  export NUM_LAYERS=${NUM_LAYERS:-2} MODEL_DIM=${MODEL_DIM:-128} NUM_HEADS=${NUM_HEADS:-2} NUM_KV_HEADS=${NUM_KV_HEADS:-1} \
         TRAIN_SEQ_LEN=${TRAIN_SEQ_LEN:-128} TRAIN_BATCH_TOKENS=${TRAIN_BATCH_TOKENS:-4096} VAL_BATCH_SIZE=${VAL_BATCH_SIZE:-4096} \
         ITERATIONS=${ITERATIONS:-100000} WARMDOWN_ITERS=${WARMDOWN_ITERS:-20} VAL_LOSS_EVERY=${VAL_LOSS_EVERY:-0} TRAIN_LOG_EVERY=${TRAIN_LOG_EVERY:-10}
  # the final eval of train_golf_cpu on the whole val split would take long: it scores a cut of it (the first 65,536 tokens)
  cut_dir="$OUT_DIR/val_cut"
  python3 dev/val_cut.py "$DATA_PATH" "$cut_dir" 65536 || fail "cannot cut the val shard of $DATA_PATH"
  export DATA_PATH=$cut_dir
  say "no CUDA device visible: training with the CPU BUILD (train_golf_cpu, CUDA emulated on the CPU; not a GPU's speed)"
  say "a ${NUM_LAYERS}x${MODEL_DIM} model for ${MAX_WALLCLOCK_SECONDS}s, scored on the first 65,536 val tokens"
  OMP_WAIT_POLICY=passive ./train_golf_cpu
elif [ ! -x ./train_golf ]; then
  fail "train_golf is not built (nvcc not found: see the 'make' output above)"
elif [ "$NGPU" -gt 1 ]; then
  export MAX_WALLCLOCK_SECONDS=${MAX_WALLCLOCK_SECONDS:-${QUICKSTART_SECONDS:-120}}
  command -v mpirun >/dev/null || fail "$NGPU GPUs but no mpirun: install openmpi-bin, or set NGPU=1"
  say "training on $NGPU GPUs for ${MAX_WALLCLOCK_SECONDS}s: mpirun -np $NGPU ./train_golf"
  mpirun --allow-run-as-root -np "$NGPU" ./train_golf
else
  export MAX_WALLCLOCK_SECONDS=${MAX_WALLCLOCK_SECONDS:-${QUICKSTART_SECONDS:-120}}
  say "training on 1 GPU for ${MAX_WALLCLOCK_SECONDS}s: ./train_golf"
  ./train_golf
fi
say "scoring the artifact with golf_infer (at most the first 1M val tokens of $DATA_PATH)"
./golf_infer "$OUT_DIR/final_model.golf" --val "$DATA_PATH/fineweb_val_*.bin" --tokenizer "$TOKENIZER_PATH" --max-tokens 1000000
say "a sample"
./golf_infer "$OUT_DIR/final_model.golf" --tokenizer "$TOKENIZER_PATH" --generate "The history of" -n 60 --seed 1
