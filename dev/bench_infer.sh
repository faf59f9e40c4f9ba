#!/usr/bin/env bash
# dev/bench_infer.sh — CPU evaluation speed of golf_infer against test/reference.py eval (torch, float32), same
# checkpoint, same val tokens, same threads, measured in one run.
#   For each shape (9x512 MLP 2x and 11x512 MLP 3x, seq 1024, random-init weights): golf_infer eval on THREADS and on 1
#   thread, reference.py eval on THREADS (OMP_NUM_THREADS); tokens/s of each (scored targets / wall time of the
#   whole command, start-up and model load included), golf / reference, golf's 1 -> THREADS scaling, tokens/s per
#   core, and the val_bpb of both (they must agree to 1e-6 relative). Then generation (KV cache, greedy): tokens/s
#   of GEN tokens, from the wall time of -n GEN less that of -n 1.
# Usage: bash dev/bench_infer.sh [--tokens N] [--threads K] [--gen N]   (defaults 8192, 2, 256)
set -euo pipefail
cd "$(dirname "$0")/.."
TOKENS=8192 THREADS=2 GEN=256 PYTHON=${PYTHON:-/usr/bin/python3} SHARED=${SHARED:-../shared}
while [ $# -gt 0 ]; do
  case "$1" in
    --tokens) TOKENS=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --gen) GEN=$2; shift 2 ;;
    *) echo "bench_infer: unknown argument '$1' (--tokens N --threads K --gen N)" >&2; exit 2 ;;
  esac
done
fail() { echo "bench_infer: error: $*" >&2; exit 1; }
[ -d "$SHARED/data/sample_sp1024" ] || fail "no $SHARED/data/sample_sp1024 (set SHARED)"
"$PYTHON" -c 'import torch' 2>/dev/null || fail "$PYTHON cannot import torch (set PYTHON)"
make -s golf_infer >/dev/null || fail "make golf_infer failed"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
VAL="$SHARED/data/sample_sp1024/fineweb_val_*.bin" TOK="$SHARED/tokenizers/fineweb_1024_bpe.model"

# timed OUT CMD...: run CMD with its stdout into OUT; prints the wall seconds
timed() { local out=$1 t0; shift; t0=$(date +%s.%N); "$@" >"$out" 2>"$out.err" || { cat "$out.err" >&2; fail "$* failed"; }; echo "$(date +%s.%N) - $t0" | bc -l; }
field() { sed -n "s/.*$1:\([^ ]*\).*/\1/p" "$2" | head -1; }
rate() { echo "($1) / ($2)" | bc -l | xargs printf '%.0f'; }

echo "bench_infer: $(date -u +%Y-%m-%d), $(uname -m), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores;" \
     "$TOKENS val tokens, threads $THREADS; $(cc --version | head -1); torch $("$PYTHON" -c 'import torch; print(torch.__version__)')"
printf '%-14s %12s %12s %7s %12s %8s %9s %14s %14s %9s %s\n' shape golf_tok/s ref_tok/s ratio golf_1t_tok/s scaling tok/s/core \
       golf_bpb ref_bpb rel_diff gen_tok/s
for shape in "9x512_MLP2x" "11x512_MLP3x"; do
  case $shape in 9x512_MLP2x) flags=(--num-layers 9 --mlp-mult 2) ;; *) flags=(--num-layers 11 --mlp-mult 3) ;; esac
  ck=$TMP/$shape.bin
  "$PYTHON" test/reference.py init --random-init "${flags[@]}" --model-dim 512 --train-seq-len 1024 --out "$ck" >/dev/null
  g=$(timed "$TMP/g" ./golf_infer "$ck" --val "$VAL" --tokenizer "$TOK" --max-tokens "$TOKENS" --threads "$THREADS")
  g1=$(timed "$TMP/g1" ./golf_infer "$ck" --val "$VAL" --tokenizer "$TOK" --max-tokens "$TOKENS" --threads 1)
  r=$(OMP_NUM_THREADS=$THREADS timed "$TMP/r" "$PYTHON" test/reference.py eval --ckpt "$ck" --data-path "$SHARED/data/sample_sp1024" \
      --tokenizer-path "$TOK" --max-tokens "$TOKENS")
  n=$(field tokens "$TMP/g")
  [ "$n" = "$(field tokens "$TMP/r")" ] || fail "$shape: golf_infer scored $n tokens, the reference $(field tokens "$TMP/r")"
  gb=$(field val_bpb "$TMP/g") rb=$(field val_bpb "$TMP/r")
  rel=$("$PYTHON" -c "print('%.1e' % (abs($gb - $rb) / abs($rb)))")
  s1=$(timed "$TMP/s1" ./golf_infer "$ck" --tokenizer "$TOK" --generate-ids 1 -n 1 --temp 0 --threads "$THREADS")
  sn=$(timed "$TMP/sn" ./golf_infer "$ck" --tokenizer "$TOK" --generate-ids 1 -n "$GEN" --temp 0 --threads "$THREADS")
  printf '%-14s %12s %12s %6.2fx %12s %7.2fx %9s %14s %14.8f %9s %s\n' "$shape" "$(rate "$n" "$g")" "$(rate "$n" "$r")" "$(echo "$r / $g" | bc -l)" \
         "$(rate "$n" "$g1")" "$(echo "$g1 / $g" | bc -l)" "$(rate "$n / $THREADS" "$g")" "$gb" "$rb" "$rel" "$(rate "$GEN - 1" "$sn - $s1")"
  "$PYTHON" -c "import sys; sys.exit(abs($gb - $rb) > 1e-6 * abs($rb))" || fail "$shape: val_bpb differs by $rel relative (more than 1e-6)"
done
