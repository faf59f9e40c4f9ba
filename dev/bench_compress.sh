#!/usr/bin/env bash
# How golf's entropy coder compares with general-purpose compressors on the same quantized codes.
#
#   bash dev/bench_compress.sh [CKPT]        (or: CKPT=path bash dev/bench_compress.sh)
#
# For each scheme (int8 int6 int5 ternary) the checkpoint goes through golf_export --dump; the codes of all
# quantized tensors are then laid out several ways and each layout is compressed with zstd -22 --ultra,
# xz -9e and brotli -q 11 -w 24 (the largest standard window); every compressor is credited with its best
# layout. Layouts (all tensors in model order, one stream):
#   bytes     one code per byte, two's complement (as dumped)
#   symbols   one code per byte, code + offset (the unsigned symbols golf codes)
#   colmajor  one code per byte, each tensor's codes column by column
#   packed    symbols bit-packed, B bits each (ternary 2), MSB first (int8: same as symbols, left out)
#   shuffled  packed, split into byte planes of 8-code blocks (B bytes each; int6 and int5 only)
#   bitplane  bit k of every symbol, one plane after another, most significant first
# golf's column counts the range-coded codes only: the payload bytes of the quantized tensors minus their
# fp16 scales (2 bytes each). The scales are the same for every coder and are left out everywhere.
# order0 is the order-0 empirical entropy of each tensor's codes, summed over tensors: what a static
# per-tensor coder would reach if its symbol table were free.
# A second table splits golf's bytes above that bound into: the learning cost of any adaptive order-0
# coder (KT estimator), the cost of golf's own estimator (binary tree, 11-bit probabilities moving by
# 1/32, computed from golf_infer.c's constants), and the range coder's flush and rounding.
# The project target: at int6, golf >= 3% smaller than the best of the others.
#
# Without a checkpoint a small model is trained on the CPU first (test/reference.py, about 0.6M
# parameters, 200 steps), whose weights are still close to their initial distribution.
#
# Environment:
#   CKPT        golf float32 checkpoint (default: train a small one)
#   SCHEMES     default "int8 int6 int5 ternary"
#   GROUP       ternary columns per scale, passed to golf_export --group (default 128)
#   PYTHON      interpreter with numpy and torch (default /usr/bin/python3)
#   SHARED      the shared data folder with data/sample_sp1024 and tokenizers (default ../shared)
#   ITERATIONS  training steps of the small model (default 200)
set -euo pipefail
start_dir=$PWD
cd "$(dirname "$0")/.."
repo=$PWD

PYTHON=${PYTHON:-/usr/bin/python3}
SCHEMES=${SCHEMES:-"int8 int6 int5 ternary"}
GROUP=${GROUP:-128}
SHARED=${SHARED:-../shared}
ITERATIONS=${ITERATIONS:-200}
CKPT=${1:-${CKPT:-}}
NPROC=$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN)

say() { echo "bench_compress: $*"; }
fail() { echo "bench_compress: error: $*" >&2; exit 1; }

for s in $SCHEMES; do
  case $s in int8|int6|int5|int4|ternary) ;; *) fail "unknown scheme '$s' in SCHEMES (int8 int6 int5 int4 ternary)";; esac
done
"$PYTHON" -c 'import numpy' 2>/dev/null || fail "$PYTHON cannot import numpy (set PYTHON)"
command -v cc >/dev/null || fail "no C compiler (cc) to build golf_export"
if [ -n "$CKPT" ]; then
  case $CKPT in /*) ;; *) CKPT=$start_dir/$CKPT;; esac
  [ -f "$CKPT" ] || fail "checkpoint not found: $CKPT"
fi

# compressors: a missing one is reported and left out
TOOLS=()
for t in zstd xz brotli; do
  if command -v "$t" >/dev/null 2>&1; then TOOLS+=("$t")
  else
    case $t in xz) pkg=xz-utils;; *) pkg=$t;; esac
    say "$t not found: its column is skipped (install it with: apt-get install -y $pkg)"
  fi
done

make --no-print-directory -s golf_export

work=$(mktemp -d "${TMPDIR:-/tmp}/bench_compress.XXXXXX")
trap 'rm -rf "$work"' EXIT

echo "date:    $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
cpu=$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | sed 's/.*: //' || true)
echo "machine: $(uname -m), $NPROC cores${cpu:+ ($cpu)}"
for t in "${TOOLS[@]}"; do
  case $t in
    zstd) v=$(zstd --version 2>&1 | head -n1);;
    xz) v=$(xz --version 2>&1 | head -n1);;
    brotli) v=$(brotli --version 2>&1 | head -n1);;
  esac
  echo "tool:    $v"
done

# ---------------------------------------------------------------------------------------------------------
# the checkpoint

if [ -z "$CKPT" ]; then
  data=$SHARED/data/sample_sp1024
  tok=$SHARED/tokenizers/fineweb_1024_bpe.model
  [ -d "$data" ] || fail "no checkpoint given and no training data at $data (set CKPT or SHARED)"
  [ -f "$tok" ] || fail "no checkpoint given and no tokenizer at $tok (set CKPT or SHARED)"
  "$PYTHON" -c 'import torch' 2>/dev/null || fail "no checkpoint given and $PYTHON cannot import torch (set CKPT or PYTHON)"
  CKPT=$work/small.bin
  say "no checkpoint given: training a small model on the CPU (4 layers, dim 128, vocab 1024, $ITERATIONS steps"
  say "of 8192 tokens). Its weights are still close to their initial distribution, so these numbers describe"
  say "near-init codes, not those of a fully trained model."
  t0=$SECONDS
  if ! "$PYTHON" test/reference.py train --num-layers 4 --model-dim 128 --num-heads 4 --num-kv-heads 2 \
        --train-seq-len 128 --iterations "$ITERATIONS" --train-batch-tokens 8192 --max-wallclock-seconds 0 --no-val \
        --data-path "$data" --tokenizer-path "$tok" --out "$CKPT" > "$work/train.log" 2>&1; then
    tail -n 20 "$work/train.log" >&2
    fail "training the small model failed"
  fi
  loss=$(grep -o 'train_loss:[0-9.]*' "$work/train.log" | tail -n1 | cut -d: -f2 || true)
  echo "checkpoint: small CPU-trained model ($ITERATIONS steps in $((SECONDS - t0)) s, last train loss ${loss:-?}), temporary"
else
  echo "checkpoint: $CKPT ($(stat -c %s "$CKPT") bytes)"
fi

# ---------------------------------------------------------------------------------------------------------
# helpers: layouts and bounds (Python), golf's estimator cost (C, with golf_infer.c's coder constants)

cat > "$work/cost.c" <<'EOF'
// Ideal code length, in bits, of golf's adaptive binary model on dumped codes: the same tree of
// probabilities, start value and update as golf_infer.c's range coder, without the coder's own rounding
// and flush. usage: cost BITS OFFSET FILE.codes...
#define GOLF_INFER_NO_MAIN
#include "golf_infer.c"

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    int bits = atoi(argv[1]), offset = atoi(argv[2]);
    double lg[RC_PROB_ONE + 1];
    for (int p = 1; p <= RC_PROB_ONE; p++) lg[p] = -log2((double)p / RC_PROB_ONE);
    double total = 0;
    for (int a = 3; a < argc; a++) {
        FILE *f = fopen(argv[a], "rb");
        if (!f) { perror(argv[a]); return 1; }
        uint16_t probs[256];
        rc_probs_init(probs, bits);
        int ch;
        while ((ch = getc(f)) != EOF) {
            int sym = (int8_t)ch + offset, m = 1;
            for (int i = bits - 1; i >= 0; i--) {
                int bit = (sym >> i) & 1;
                uint16_t *p = &probs[m];
                if (!bit) { total += lg[*p]; *p += (RC_PROB_ONE - *p) >> RC_MOVE_BITS; }
                else { total += lg[RC_PROB_ONE - *p]; *p -= *p >> RC_MOVE_BITS; }
                m = (m << 1) | bit;
            }
        }
        fclose(f);
    }
    printf("%.3f\n", total);
    return 0;
}
EOF
cc -O2 -w -I"$repo" -o "$work/cost" "$work/cost.c" -lm

cat > "$work/bench.py" <<'EOF'
import json, math, os, re, sys
import numpy as np

BITS = {"int8": 8, "int6": 6, "int5": 5, "int4": 4, "ternary": 2}

def levels(scheme):
    # (offset, qmax) as golf_infer.c's scheme_levels
    b = BITS[scheme]
    return (1, 1) if scheme == "ternary" else (1 << (b - 1), (1 << (b - 1)) - 1)

def shapes(shape_dir):
    # rows and columns of every quantized tensor, from an int8 dump (one scale per row)
    out = {}
    for f in os.listdir(shape_dir):
        if f.endswith(".codes"):
            name = f[:-6]
            n = os.path.getsize(os.path.join(shape_dir, f))
            rows = os.path.getsize(os.path.join(shape_dir, name + ".scales")) // 2
            out[name] = (rows, n // rows)
    return out

def prep(scheme, export_txt, dump, shape_dir, outdir):
    bits = BITS[scheme]
    offset, qmax = levels(scheme)
    shp = shapes(shape_dir)
    line = re.compile(r"^\s+(\S+)\s+(\S+)\s+(\S+)\s+(\d+) values ->\s+(\d+) bytes")
    tensors = []
    for l in open(export_txt):
        m = line.match(l)
        if m and m.group(3) == scheme:
            tensors.append((m.group(1), int(m.group(4)), int(m.group(5))))
    dumped = sorted(f[:-6] for f in os.listdir(dump) if f.endswith(".codes"))
    if sorted(t[0] for t in tensors) != dumped:
        sys.exit("bench_compress: golf_export's listing and its dump do not name the same tensors")
    golf = scales = values = 0
    order0 = kt = 0.0
    raw, col = [], []
    for name, count, payload in tensors:
        codes = np.fromfile(os.path.join(dump, name + ".codes"), dtype=np.int8)
        nsc = os.path.getsize(os.path.join(dump, name + ".scales")) // 2
        if codes.size != count:
            sys.exit(f"bench_compress: {name}.codes holds {codes.size} codes, the listing says {count}")
        rows, cols = shp[name]
        if rows * cols != count:
            sys.exit(f"bench_compress: {name}: shape {rows}x{cols} does not match {count} values")
        golf += payload - 2 * nsc
        scales += 2 * nsc
        values += count
        cnt = np.bincount(codes.astype(np.int64) + offset, minlength=2 * qmax + 1).astype(np.float64)
        nz = cnt[cnt > 0]
        order0 += float((nz * np.log2(count / nz)).sum())
        # KT (add-1/2) adaptive estimator over the scheme's 2*qmax+1 levels: no table, learns as it goes
        A = 2 * qmax + 1
        kt += (math.lgamma(count + A / 2) - math.lgamma(A / 2)
               - sum(math.lgamma(c + 0.5) - math.lgamma(0.5) for c in cnt)) / math.log(2)
        raw.append(codes)
        col.append(codes.reshape(rows, cols).T.ravel())
    raw = np.concatenate(raw)
    sym = (raw.astype(np.int16) + offset).astype(np.uint8)
    layouts = {"bytes": raw.view(np.uint8), "symbols": sym, "colmajor": np.concatenate(col).view(np.uint8)}
    # bit k of every symbol, MSB first: a (bits x n) matrix of bits, packed row by row
    planes = ((sym[None, :] >> np.arange(bits - 1, -1, -1, dtype=np.uint8)[:, None]) & 1).astype(np.uint8)
    layouts["bitplane"] = np.packbits(planes, axis=None)
    if bits < 8:
        packed = np.packbits(planes.T, axis=None)          # each symbol's B bits in a row, MSB first
        layouts["packed"] = packed
        if 8 % bits != 0:                                  # codes straddle byte boundaries
            blocks = len(packed) // bits                   # 8 codes = B bytes; a tail is kept as it is
            head = packed[: blocks * bits].reshape(blocks, bits).T.ravel()
            layouts["shuffled"] = np.concatenate([head, packed[blocks * bits:]])
    for k, v in layouts.items():
        v.tofile(os.path.join(outdir, k))
    print(json.dumps({"scheme": scheme, "tensors": len(tensors), "values": values, "golf": golf, "scales": scales,
                      "order0_bits": order0, "kt_bits": kt, "bits": bits, "offset": offset,
                      "files": [os.path.join(dump, t[0] + ".codes") for t in tensors]}))

def report(results_dir, schemes, tools):
    rows = []
    for s in schemes:
        st = json.load(open(os.path.join(results_dir, s + ".json")))
        best = {}
        for t in tools:
            sizes = {}
            for f in os.listdir(results_dir):
                if f.startswith(f"{s}.{t}."):
                    sizes[f.split(".", 2)[2]] = int(open(os.path.join(results_dir, f)).read())
            k = min(sizes, key=sizes.get)
            best[t] = (sizes[k], k)
        st["best"] = best
        st["adaptive_bits"] = float(open(os.path.join(results_dir, s + ".cost")).read())
        rows.append(st)

    print()
    print("Codes only (fp16 scales excluded everywhere); bytes; each compressor with its best layout in [ ]")
    hdr = f"{'scheme':<8} {'values':>9} {'golf':>9}"
    for t in tools:
        hdr += f" {t:>9} {'':<10}"
    hdr += f" {'order0':>9} {'golf/best':>9}  golf >= 3% smaller than best"
    print(hdr)
    print("-" * len(hdr))
    verdicts = {}
    for r in rows:
        line = f"{r['scheme']:<8} {r['values']:>9} {r['golf']:>9}"
        for t in tools:
            b, k = r["best"][t]
            line += f" {b:>9} {'[' + k + ']':<10}"
        line += f" {math.ceil(r['order0_bits'] / 8):>9}"
        if tools:
            other = min(r["best"][t][0] for t in tools)
            ratio = r["golf"] / other
            v = "MET" if r["golf"] <= 0.97 * other else "NOT MET"
            verdicts[r["scheme"]] = v
            line += f" {ratio:>9.4f}  {v} ({100 * (1 - ratio):+.2f}%)"
        else:
            line += f" {'n/a':>9}  n/a (no other compressor available)"
        print(line)
    if "int6" in verdicts:
        print(f"project target (int6: golf >= 3% smaller than the best other compressor): {verdicts['int6']}")
    print()
    print("Where golf's bytes above the order-0 bound go (bytes; bits/value in parentheses)")
    hdr = f"{'scheme':<8} {'order0':>16} {'+KT learning':>16} {'+golf model':>16} {'+coder flush':>16} {'= golf':>16}"
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        n = r["values"]
        o0, kt, ad = r["order0_bits"] / 8, r["kt_bits"] / 8, r["adaptive_bits"] / 8
        cell = lambda b: f"{b:>9.0f} ({8 * b / n:.3f})"
        print(f"{r['scheme']:<8} {cell(o0)} {cell(kt - o0)} {cell(ad - kt)} {cell(r['golf'] - ad)} {cell(r['golf'])}")
    print("  +KT learning: an adaptive order-0 coder (KT estimator, per tensor) over the order-0 bound, the cost of")
    print("                learning the symbol frequencies instead of storing a table")
    print("  +golf model:  golf's binary-tree estimator (11-bit probabilities, 1/32 update) over KT")
    print("  +coder flush: golf's actual bytes over the ideal length of its model (range coder flush and rounding,")
    print(f"                {rows[0]['tensors']} tensors each coded separately)")

if __name__ == "__main__":
    if sys.argv[1] == "prep":
        prep(*sys.argv[2:7])
    else:
        report(sys.argv[2], sys.argv[3].split(), sys.argv[4].split())
EOF

compress() {   # tool input output-size-file
  case $1 in
    zstd) zstd -q -22 --ultra -c "$2" | wc -c > "$3";;
    xz) xz -9e -c "$2" | wc -c > "$3";;
    brotli) brotli -q 11 -w 24 -c "$2" | wc -c > "$3";;
  esac
}

mkdir -p "$work/shapes" "$work/results"
./golf_export "$CKPT" "$work/shapes.golf" --quant int8 --dump "$work/shapes" --quiet > /dev/null

for s in $SCHEMES; do
  t0=$SECONDS
  d=$work/$s
  mkdir -p "$d/dump" "$d/in"
  ./golf_export "$CKPT" "$work/$s.golf" --quant "$s" --group "$GROUP" --dump "$d/dump" > "$d/export.txt"
  "$PYTHON" "$work/bench.py" prep "$s" "$d/export.txt" "$d/dump" "$work/shapes" "$d/in" > "$work/results/$s.json"
  read -r bits offset < <("$PYTHON" -c 'import json,sys; j=json.load(open(sys.argv[1])); print(j["bits"], j["offset"])' "$work/results/$s.json")
  mapfile -t files < <("$PYTHON" -c 'import json,sys; print("\n".join(json.load(open(sys.argv[1]))["files"]))' "$work/results/$s.json")
  "$work/cost" "$bits" "$offset" "${files[@]}" > "$work/results/$s.cost"
  # all compressions of this scheme, NPROC at a time
  pids=()
  for t in "${TOOLS[@]}"; do
    for f in "$d"/in/*; do
      while [ "$(jobs -rp | wc -l)" -ge "$NPROC" ]; do sleep 0.1; done
      compress "$t" "$f" "$work/results/$s.$t.$(basename "$f")" &
      pids+=($!)
    done
  done
  for p in "${pids[@]}"; do wait "$p" || fail "a compressor failed on the $s codes"; done
  say "$s: $(ls "$d/in" | wc -l) layouts x ${#TOOLS[@]} compressors in $((SECONDS - t0)) s"
  rm -rf "$d" "$work/$s.golf"
done

tools_list="${TOOLS[*]}"
"$PYTHON" "$work/bench.py" report "$work/results" "$SCHEMES" "$tools_list"
