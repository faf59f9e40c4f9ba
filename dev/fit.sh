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
# fits yes/no (n/a with the reason when no measured model holds that scheme). Exit status 0 unless a step failed.
set -euo pipefail
cd "$(dirname "$0")/.."
fail() { echo "fit.sh: $*" >&2; exit 1; }

SHAPES=${SHAPES:-"9x512x2x1024 10x512x3x1024 11x512x3x1024 11x512x4x1024 12x576x3x1024 11x512x4x4096"}
SCHEMES=${SCHEMES:-"int8 int6 int5 int4 ternary"}
HEADS=${HEADS:-"8 4"}
TIE=${TIE:-1}
budget=16000000
models=()
while [ $# -gt 0 ]; do
  case "$1" in
    --budget) [ $# -ge 2 ] || fail "--budget needs a value"; budget=$2; shift 2 ;;
    -*) fail "unknown flag '$1' (usage: dev/fit.sh MODEL... [--budget BYTES])" ;;
    *) models+=("$1"); shift ;;
  esac
done
[ ${#models[@]} -gt 0 ] || fail "usage: dev/fit.sh MODEL... [--budget BYTES]  (MODEL: a .golf blob or a float32 checkpoint)"
read -r heads kv_heads <<< "$HEADS"

make --no-print-directory -s golf_export >/dev/null || fail "cannot build golf_export"
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
        ./golf_export "$m" "$work/m$i.$s.golf" --quant "$s" --quiet >/dev/null || fail "golf_export could not export $m at $s"
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
    out=$(./golf_export --predict --num-layers "$L" --model-dim "$D" --mlp-mult "$M" --vocab-size "$V" --num-heads "$heads" \
          --num-kv-heads "$kv_heads" --tie-embeddings "$TIE" --quant "$s" --budget "$budget" --quiet "${measure[@]}" 2>&1) || rc=$?
    line=$(grep '^predict:' <<< "$out" || true)
    if [ -z "$line" ]; then
      printf '%-16s %12s %-8s %12s %12s %-5s %s\n' "$shape" - "$s" - - n/a "$(head -1 <<< "$out")"
      continue
    fi
    # predict: shape S params P scheme S model_bytes B code_bytes C total_bytes T budget X fits yes|no
    read -r _ _ _ _ params _ _ _ model _ _ _ total _ _ _ fits <<< "$line"
    printf '%-16s %12s %-8s %12s %12s %-5s\n' "$shape" "$params" "$s" "$model" "$total" "$fits"
  done
done
echo "budget $budget bytes; bits per code measured on: ${models[*]}"
