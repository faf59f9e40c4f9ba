#!/usr/bin/env bash
# dev/fit.sh — which model shapes fit the artifact budget: for every shape (layers x dim x MLP mult x vocab) and
# scheme, the artifact bytes (golf_infer.c + blob) that golf_export --predict expects from bits per code measured
# on the models you pass, so you can pick the largest model that fits.
#
#   bash dev/fit.sh MODEL... [--budget BYTES]          (budget default 16000000)
#
#   MODEL    a .golf blob (its classes and schemes are measured as they are) or a golf float32 checkpoint
#            (exported once per scheme of SCHEMES to measure each). Bits per code depend on the weights: a blob of a
#            GPU-trained model near the size you aim at gives the real numbers; a small CPU-trained model only a
#            rough guide (its weights are still close to their random initial distribution).
#   SHAPES   (environment) layers x model_dim x mlp_mult x vocab_size, space-separated
#            (default "9x512x2x1024 10x512x3x1024 11x512x3x1024 11x512x4x1024 12x576x3x1024 11x512x4x4096")
#   SCHEMES  (environment) golf_export --quant S for the embedding, attention, MLP and head, space-separated
#            (default "int8 int6 int5 int4 ternary")
#   HEADS    (environment) "num_heads num_kv_heads" of every shape (default "8 4")
#   TIE      (environment) tie_embeddings of every shape (default 1)
#
# Prints one table row per shape and scheme: shape, parameters, scheme, predicted blob bytes, artifact bytes,
# fits yes/no (n/a with the reason when no measured model holds that scheme). Every setting is checked before any work;
# exit status 0 when every row was computed, 1 (with a message) on a bad setting or a failed step.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)   # golf_export is built there; model paths stay relative to the caller's folder
fail() { echo "fit.sh: $*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

SHAPES=${SHAPES:-"9x512x2x1024 10x512x3x1024 11x512x3x1024 11x512x4x1024 12x576x3x1024 11x512x4x4096"}
SCHEMES=${SCHEMES:-"int8 int6 int5 int4 ternary"}
HEADS=${HEADS:-"8 4"}
TIE=${TIE:-1}
budget=16000000
models=()
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --budget) [ $# -ge 2 ] || fail "--budget needs a value"; budget=$2; shift 2 ;;
    -*) fail "unknown flag '$1' (usage: dev/fit.sh MODEL... [--budget BYTES])" ;;
    *) models+=("$1"); shift ;;
  esac
done
[ ${#models[@]} -gt 0 ] || fail "usage: dev/fit.sh MODEL... [--budget BYTES]  (MODEL: a .golf blob or a float32 checkpoint)"
read -r heads kv_heads extra_heads <<< "$HEADS" || true
# every setting checked before any work: a bad one would otherwise only show as an n/a row
positive='^[1-9][0-9]*$'
[[ "$budget" =~ $positive ]] || fail "--budget '$budget' is not a positive whole number of bytes"
[[ "$heads" =~ $positive && "$kv_heads" =~ $positive && -z "$extra_heads" ]] || fail "HEADS='$HEADS' is not \"num_heads num_kv_heads\" (e.g. \"8 4\")"
[[ "$TIE" == 0 || "$TIE" == 1 ]] || fail "TIE='$TIE' is not 0 or 1"
[ -n "${SHAPES// /}" ] || fail "SHAPES is empty"
[ -n "${SCHEMES// /}" ] || fail "SCHEMES is empty"
for shape in $SHAPES; do
  [[ "$shape" =~ ^[1-9][0-9]*x[1-9][0-9]*x[1-9][0-9]*x[1-9][0-9]*$ ]] || fail "shape '$shape' in SHAPES is not LAYERSxDIMxMLP_MULTxVOCAB (e.g. 9x512x2x1024)"
done
for s in $SCHEMES; do
  case "$s" in fp32|fp16|int8|int6|int5|int4|ternary) ;; *) fail "scheme '$s' in SCHEMES is not one of fp32 fp16 int8 int6 int5 int4 ternary" ;; esac
done
for m in "${models[@]}"; do [ -f "$m" ] || fail "no such model file: $m"; done

make -C "$ROOT" --no-print-directory -s golf_export >/dev/null || fail "cannot build golf_export"
work=$(mktemp -d "${TMPDIR:-/tmp}/golf_fit.XXXXXX")
trap 'rm -rf "$work"' EXIT

# the blobs to measure: blobs as given, checkpoints exported at every scheme
measure=()
i=0
for m in "${models[@]}"; do
  [ -f "$m" ] || fail "no such model file: $m"
  magic=$(od -An -tu4 -N4 "$m" | tr -d ' ')
  case "$magic" in
    20261124) measure+=(--measure "$m") ;;
    20261125)
      for s in $SCHEMES; do
        "$ROOT/golf_export" "$m" "$work/m$i.$s.golf" --quant "$s" --quiet >/dev/null || fail "golf_export could not export $m at $s"
        measure+=(--measure "$work/m$i.$s.golf")
      done ;;
    *) fail "$m is neither a .golf blob nor a golf checkpoint (magic $magic)" ;;
  esac
  i=$((i + 1))
done

printf '%-16s %12s %-8s %12s %12s %-5s\n' shape params scheme model_bytes artifact fits
for shape in $SHAPES; do
  IFS=x read -r L D M V <<< "$shape"
  [ -n "$V" ] || fail "shape '$shape' is not LAYERSxDIMxMLP_MULTxVOCAB"
  for s in $SCHEMES; do
    rc=0
    out=$("$ROOT/golf_export" --predict --num-layers "$L" --model-dim "$D" --mlp-mult "$M" --vocab-size "$V" --num-heads "$heads" \
          --num-kv-heads "$kv_heads" --tie-embeddings "$TIE" --quant "$s" --budget "$budget" --quiet "${measure[@]}" 2>&1) || rc=$?
    line=$(grep '^predict:' <<< "$out" || true)
    if [ -z "$line" ]; then   # a scheme no measured model holds is a row of its own; anything else is an error
      grep -q 'no measured blob holds' <<< "$out" || fail "golf_export --predict failed for shape $shape at $s: $(head -1 <<< "$out")"
      printf '%-16s %12s %-8s %12s %12s %-5s %s\n' "$shape" - "$s" - - n/a "$(head -1 <<< "$out")"
      continue
    fi
    # predict: shape S params P scheme S model_bytes B code_bytes C total_bytes T budget X fits yes|no
    read -r _ _ _ _ params _ _ _ model _ _ _ total _ _ _ fits <<< "$line"
    printf '%-16s %12s %-8s %12s %12s %-5s\n' "$shape" "$params" "$s" "$model" "$total" "$fits"
  done
done
echo "budget $budget bytes; bits per code measured on: ${models[*]}"
