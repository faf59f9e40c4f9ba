#!/usr/bin/env bash
# dev/quickstart.sh — from a fresh Debian machine to a golf training run, in one command.
#   1. install what is missing (apt-get: the build tools, OpenBLAS, Open MPI, and python3-torch with sentencepiece for
#      `make test`; about 2.7 GB and a few minutes the first time, with progress); nvcc itself is not in Debian's main
#      archive: README "Build" says where to get it
#   2. build what this machine runs: train_golf_cpu (the CPU build) or, with a GPU, train_golf; and golf_infer
#   3. find the data: $DATA_PATH, the official layout data/datasets/fineweb10B_sp1024/ (fetched with
#      openai/parameter-golf's data/cached_challenge_fineweb.py), or ../shared's sample shards
#   4. train on every visible GPU for QUICKSTART_SECONDS (default 120): ./train_golf or mpirun -np N ./train_golf;
#      without a GPU: train_golf_cpu --preset cpu (2 layers x 128, seq 128, scored on the first 65,536 val tokens)
#      for QUICKSTART_SECONDS (default 90)
#   5. score the exported artifact with golf_infer (the same val tokens as train_golf where it can: the CPU run's cut)
#      and print a generated sample
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

# 1. dependencies: only what dpkg does not have yet
PACKAGES="build-essential make python3 python3-numpy python3-sentencepiece python3-torch python3-matplotlib
          libopenblas0-pthread libopenblas-dev libopenmpi-dev openmpi-bin"
if [ "${SKIP_APT:-0}" != 1 ] && command -v apt-get >/dev/null; then
  missing=$(for p in $PACKAGES; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done | xargs)
  if [ -n "$missing" ]; then
    if [ "$(id -u)" = 0 ]; then SUDO=
    elif command -v sudo >/dev/null; then SUDO=sudo
    else fail "these packages are missing and this user is not root and has no sudo: $missing
  install them as root (apt-get install $missing), then run again with SKIP_APT=1"; fi
    say "installing with apt-get (the first time about 2.7 GB and a few minutes): $missing"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    total=$($SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -s --no-install-recommends $missing | grep -c '^Inst ' || true)
    # apt's own lines, folded into one progress line every 10 packages set up
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing 2>&1 |
      awk -v total="$total" '/^Setting up / { n++; if (n % 10 == 0 || n == total) { printf "quickstart: %d of %d packages set up\n", n, total; fflush() } }
                             /^E: / { print; fflush() }'
    [ "${PIPESTATUS[0]}" = 0 ] || fail "apt-get install failed (its message is above)"
  fi
fi

# 2. build what runs here
NGPU=${NGPU:-$(nvidia-smi -L 2>/dev/null | grep -c GPU || true)}
if [ "${NGPU:-0}" -lt 1 ]; then
  say "no CUDA device visible: building the CPU build (train_golf_cpu) and golf_infer"
  make train_golf_cpu golf_infer
else
  nvcc=${NVCC:-$(command -v nvcc || ls "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc" /opt/cuda/bin/nvcc 2>/dev/null | head -1 || true)}
  [ -n "$nvcc" ] || fail "$NGPU GPU(s) visible but no nvcc: install the CUDA toolkit (README \"Build\"), or run NGPU=0 bash dev/quickstart.sh for the CPU build"
  say "$NGPU GPU(s): building train_golf (nvcc $nvcc) and golf_infer"
  make train_golf golf_infer NVCC="$nvcc"
fi

# 3. data: the first place that holds both splits wins
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
  your own text: make tokenize && ./tokenize shards --model fineweb_1024_bpe.model --out data/mine --val-docs 1000 docs.jsonl"
[ -n "${TOKENIZER_PATH:-}" ] || fail "no tokenizer found: set TOKENIZER_PATH to fineweb_1024_bpe.model"
say "data: $DATA_PATH   tokenizer: $TOKENIZER_PATH"

# 4. train
export DATA_PATH TOKENIZER_PATH OUT_DIR=${OUT_DIR:-runs/quickstart}
mkdir -p "$OUT_DIR"
if [ "${NGPU:-0}" -lt 1 ]; then
  # the same train_golf.cu, its CUDA emulated on the CPU: every kernel runs, but slowly (PRESET=cpu: a small model
  # scored on the first VAL_MAX_TOKENS val tokens; any variable set here overrides the preset)
  export PRESET=${PRESET:-cpu} MAX_WALLCLOCK_SECONDS=${MAX_WALLCLOCK_SECONDS:-${QUICKSTART_SECONDS:-90}}
  export VAL_MAX_TOKENS=${VAL_MAX_TOKENS:-65536}
  say "training with the CPU BUILD (train_golf_cpu, CUDA emulated on the CPU; not a GPU's speed): PRESET=$PRESET for ${MAX_WALLCLOCK_SECONDS}s"
  OMP_WAIT_POLICY=passive ./train_golf_cpu 2>&1 | tee "$OUT_DIR/quickstart_train.txt"
  [ "${PIPESTATUS[0]}" = 0 ] || fail "train_golf_cpu failed (its message is above)"
  score_tokens=$VAL_MAX_TOKENS
else
  export MAX_WALLCLOCK_SECONDS=${MAX_WALLCLOCK_SECONDS:-${QUICKSTART_SECONDS:-120}}
  if [ "$NGPU" -gt 1 ]; then
    command -v mpirun >/dev/null || fail "$NGPU GPUs but no mpirun: install openmpi-bin, or set NGPU=1"
    root=; [ "$(id -u)" = 0 ] && root=--allow-run-as-root
    say "training on $NGPU GPUs for ${MAX_WALLCLOCK_SECONDS}s: mpirun $root -np $NGPU ./train_golf"
    mpirun $root -np "$NGPU" ./train_golf 2>&1 | tee "$OUT_DIR/quickstart_train.txt"
  else
    say "training on 1 GPU for ${MAX_WALLCLOCK_SECONDS}s: ./train_golf"
    ./train_golf 2>&1 | tee "$OUT_DIR/quickstart_train.txt"
  fi
  [ "${PIPESTATUS[0]}" = 0 ] || fail "train_golf failed (its message is above)"
  score_tokens=${VAL_MAX_TOKENS:-1000000}   # golf_infer on the CPU: a prefix of the val split, not all of it
fi

# 5. score the artifact and compare with train_golf's own score of it
say "scoring the artifact with golf_infer (the first $score_tokens val tokens of $DATA_PATH)"
./golf_infer "$OUT_DIR/final_model.golf" --val "$DATA_PATH/fineweb_val_*.bin" --tokenizer "$TOKENIZER_PATH" --max-tokens "$score_tokens" |
  tee "$OUT_DIR/quickstart_score.txt"
python3 - "$OUT_DIR/quickstart_train.txt" "$OUT_DIR/quickstart_score.txt" <<'EOF' || fail "train_golf and golf_infer disagree on the artifact (above)"
import re, sys
train, score = open(sys.argv[1]).read(), open(sys.argv[2]).read()
tg = re.search(r"final_\w+?_roundtrip_exact val_loss:\S+ val_bpb:(\S+)", train)
tn = re.search(r"val_loader:shards pattern=\S+ tokens:(\d+)", train)
prec = re.search(r"^config PRECISION=(\S+)", train, re.M)
gi = re.search(r"val_bpb:(\S+) tokens:(\d+)", score)
if not (tg and tn and gi):
    sys.exit("quickstart: no final roundtrip line in train_golf's output or no val_bpb from golf_infer")
a, b, na, nb = float(tg[1]), float(gi[1]), int(tn[1]), int(gi[2])
if na != nb:
    print(f"quickstart: train_golf scored {na} val tokens, golf_infer {nb}: different tokens, so their val_bpb "
          f"({a:.6f}, {b:.6f}) are not comparable")
elif prec and prec[1] == "fp32":
    print(f"quickstart: same {na} tokens: train_golf {a:.8f}, golf_infer {b:.8f} (differ by {abs(a - b):.1e}; both float32)")
    if abs(a - b) > 1e-4:
        sys.exit(1)
else:
    print(f"quickstart: same {na} tokens: train_golf {a:.8f}, golf_infer {b:.8f}, differ by {abs(a - b):.1e}: train_golf scores "
          "with bf16 GEMM operands (PRECISION=bf16, as train_gpt.py's autocast), golf_infer in float32; with PRECISION=fp32 "
          "the two agree to 1e-6")
EOF
say "a sample"
./golf_infer "$OUT_DIR/final_model.golf" --tokenizer "$TOKENIZER_PATH" --generate "The history of" -n 60 --seed 1 2>/dev/null
say "done: the run's log is $OUT_DIR/train.log, the artifact $OUT_DIR/final_model.golf"
