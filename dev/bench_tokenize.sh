#!/usr/bin/env bash
# Encoding throughput of tokenize against sentencepiece's Python encoder, both on one core.
#
#   bash dev/bench_tokenize.sh            (or: make bench)
#
# Environment:
#   MODEL   the .model file (default: fineweb_1024_bpe.model from ../shared/tokenizers or data/tokenizers)
#   TEXT    space-separated .jsonl files (default: the four files of ../shared/text)
#   SHARED  the shared data folder (default: ../shared, then data/)
#   PYTHON  the interpreter with sentencepiece (default: /usr/bin/python3)
#   REPEAT  timed runs of tokenize; the fastest counts (default: 3)
#
# MB = UTF-8 bytes of the documents' texts / 1e6. The sentencepiece time covers encoding only (the JSON is
# parsed before the clock starts), one document per call, so that it runs on a single thread.
set -euo pipefail
case "${1-}" in
  "") ;;
  -h|--help) sed -n '2,/^set -/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  *) echo "bench_tokenize: takes no arguments, got '$1' (settings are environment variables; --help shows them)" >&2; exit 2 ;;
esac
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-/usr/bin/python3}
REPEAT=${REPEAT:-3}
[[ "$REPEAT" =~ ^[1-9][0-9]*$ ]] || { echo "bench_tokenize: REPEAT='$REPEAT' is not a positive whole number" >&2; exit 2; }
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1

if [ -z "${SHARED:-}" ]; then
  for d in ../shared data; do
    if [ -d "$d/tokenizers" ]; then SHARED=$d; break; fi
  done
fi
SHARED=${SHARED:-../shared}
MODEL=${MODEL:-$SHARED/tokenizers/fineweb_1024_bpe.model}
if [ -z "${TEXT:-}" ]; then
  TEXT=""
  for f in fineweb_docs fineweb_val_docs wikipedia debian_prose; do
    for d in "$SHARED/text" "$SHARED"; do
      if [ -f "$d/$f.jsonl" ]; then TEXT="$TEXT $d/$f.jsonl"; break; fi
    done
  done
  TEXT=${TEXT# }
fi
[ -f "$MODEL" ] || { echo "bench_tokenize: model not found: $MODEL (set MODEL or SHARED)" >&2; exit 1; }
[ -n "${TEXT// /}" ] || { echo "bench_tokenize: no text files found (set TEXT or SHARED)" >&2; exit 1; }

# build
if [ ! -x tokenize ] || [ tokenize.c -nt tokenize ]; then
  if [ -f Makefile ]; then make --no-print-directory tokenize; else cc -O3 -o tokenize tokenize.c -lm; fi
fi

PIN=()
if command -v taskset >/dev/null 2>&1 && taskset -c 0 true 2>/dev/null; then PIN=(taskset -c 0); fi

work=$(mktemp -d "${TMPDIR:-/tmp}/bench_tokenize.XXXXXX")
trap 'rm -rf "$work"' EXIT

# one input file: every document of every TEXT file, in order
input=$work/input.jsonl
for f in $TEXT; do
  [ -f "$f" ] || { echo "bench_tokenize: text file not found: $f" >&2; exit 1; }
  cat "$f" >> "$input"
  if [ -n "$(tail -c 1 "$f")" ]; then echo >> "$input"; fi
done

echo "model: $MODEL"
echo "text:  $TEXT"
echo "cores: $(getconf _NPROCESSORS_ONLN); pinned to core 0: $([ ${#PIN[@]} -gt 0 ] && echo yes || echo "no (taskset not available)")"

# sentencepiece first: it also reports the byte and token counts
"${PIN[@]}" "$PYTHON" - "$MODEL" "$input" > "$work/sp.txt" <<'EOF'
import json, sys, time
import sentencepiece as spm
model, path = sys.argv[1], sys.argv[2]
sp = spm.SentencePieceProcessor(model_file=model)
texts = [json.loads(l)["text"] for l in open(path, encoding="utf-8") if l.strip()]
nbytes = sum(len(t.encode("utf-8")) for t in texts)
sp.encode(texts[0])   # warm-up
t0 = time.perf_counter()
ntok = 0
for t in texts:
    ntok += len(sp.encode(t))
dt = time.perf_counter() - t0
print(len(texts), nbytes, ntok, f"{dt:.6f}")
EOF
read -r ndocs nbytes sp_tokens sp_s < "$work/sp.txt"

best=""
for _ in $(seq "$REPEAT"); do
  t0=$(date +%s.%N)
  "${PIN[@]}" ./tokenize encode --model "$MODEL" --format jsonl "$input" > "$work/ids.txt"
  t1=$(date +%s.%N)
  t=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.6f", b - a }')
  if [ -z "$best" ] || awk -v t="$t" -v b="$best" 'BEGIN { exit !(t < b) }'; then best=$t; fi
done
c_tokens=$(wc -w < "$work/ids.txt")
c_docs=$(wc -l < "$work/ids.txt")

awk -v n="$ndocs" -v bytes="$nbytes" -v spt="$sp_tokens" -v sps="$sp_s" -v ct="$c_tokens" -v cs="$best" \
    -v cd="$c_docs" -v rep="$REPEAT" 'BEGIN {
  mb = bytes / 1e6
  printf "documents: %d, %.2f MB of text, %d tokens\n", n, mb, spt
  printf "tokenize:      %8.2f MB/s  (%.3f s, fastest of %d, whole process: start-up, JSON parsing, output)\n", mb / cs, cs, rep
  printf "sentencepiece: %8.2f MB/s  (%.3f s, Python, one thread, encoding only, JSON parsing excluded)\n", mb / sps, sps
  printf "tokenize/sentencepiece = %.2fx (target >= 2x)\n", sps / cs
  if (ct != spt || cd != n) printf "WARNING: tokenize printed %d tokens in %d lines, sentencepiece %d tokens for %d documents\n", ct, cd, spt, n
}'
