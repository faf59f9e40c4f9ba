#!/usr/bin/env bash
# dev/quickstart.sh — from a fresh Debian machine to a golf training run, in one command.
#   1. install build and test dependencies (apt-get; CUDA itself is expected under /usr/local/cuda)
#   2. build everything that can be built here (make)
#   3. find the data: $DATA_PATH, the official layout data/datasets/fineweb10B_sp1024/ (fetched with
#      openai/parameter-golf's data/cached_challenge_fineweb.py), or ../shared's sample shards
#   4. train on every visible GPU for QUICKSTART_SECONDS (default 120): ./train_golf or mpirun -np N ./train_golf
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
    build-essential make python3 python3-numpy python3-sentencepiece libopenmpi-dev openmpi-bin >/dev/null
fi

say "building"
make

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

[ -x ./train_golf ] || fail "train_golf is not built (nvcc not found: see the 'make' output above)"
NGPU=${NGPU:-$(nvidia-smi -L 2>/dev/null | grep -c GPU || true)}
[ "${NGPU:-0}" -ge 1 ] || fail "no CUDA device visible (nvidia-smi lists none): everything up to training is done"
export DATA_PATH TOKENIZER_PATH
export MAX_WALLCLOCK_SECONDS=${MAX_WALLCLOCK_SECONDS:-${QUICKSTART_SECONDS:-120}} OUT_DIR=${OUT_DIR:-runs/quickstart}
mkdir -p "$OUT_DIR"
if [ "$NGPU" -gt 1 ]; then
  command -v mpirun >/dev/null || fail "$NGPU GPUs but no mpirun: install openmpi-bin, or set NGPU=1"
  say "training on $NGPU GPUs for ${MAX_WALLCLOCK_SECONDS}s: mpirun -np $NGPU ./train_golf"
  mpirun --allow-run-as-root -np "$NGPU" ./train_golf
else
  say "training on 1 GPU for ${MAX_WALLCLOCK_SECONDS}s: ./train_golf"
  ./train_golf
fi
say "scoring the artifact with golf_infer (first 1M val tokens)"
./golf_infer "$OUT_DIR/final_model.golf" --val "$DATA_PATH/fineweb_val_*.bin" --tokenizer "$TOKENIZER_PATH" --max-tokens 1000000
say "a sample"
./golf_infer "$OUT_DIR/final_model.golf" --tokenizer "$TOKENIZER_PATH" --generate "The history of" -n 60 --seed 1
