#!/usr/bin/env bash
# How golf's entropy coder compares with general-purpose compressors on the same quantized codes.
#
#   bash dev/bench_compress.sh [CKPT]        (or: CKPT=path bash dev/bench_compress.sh)
#
# For each scheme (int8 int6 int5 ternary) the checkpoint goes through golf_export --dump; the codes of all
# quantized tensors are then laid out several ways and each layout is compressed with zstd -22 --ultra,
# xz -9e and brotli -q 11 -w 24 (the largest standard window); every compressor is credited with its best
# layout; their container headers (zstd ~10, xz ~60, brotli a few bytes) count against them. Layouts (all
# tensors in model order, one stream):
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
# A second table splits golf's bytes above that bound into: its model's start-up learning (each tensor
# starts from flat probabilities), the steady cost of its adaptive model once warm (which its contexts can
# push below order0), and the range coder's flush and rounding. The model costs come from golf_infer.c's
# own code models (code_symbol), driven by a bit function that adds up -log2 p instead of range coding;
# if that interface is not there, the second table is left out.
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
case "${1-}" in
  -h|--help) sed -n '2,/^set -/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  -*) echo "bench_compress: unknown flag '$1' (usage: bash dev/bench_compress.sh [CKPT]; --help)" >&2; exit 2 ;;
esac
[ $# -le 1 ] || { echo "bench_compress: takes at most one CKPT, got $#" >&2; exit 2; }
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
[[ "$GROUP" =~ ^[0-9]+$ ]] || fail "GROUP='$GROUP' is not a whole number of columns"
[[ "$ITERATIONS" =~ ^[1-9][0-9]*$ ]] || fail "ITERATIONS='$ITERATIONS' is not a positive whole number"
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
# helpers: layouts and bounds (Python), the ideal lengths of golf's code models (C, through golf_infer.c)

cat > "$work/cost.c" <<'EOF'
// Ideal code lengths, in bits, of golf's code models on dumped codes: golf_infer.c's code_symbol with a
// bit function that adds -log2 P(bit) and updates the bit model as the range coder does, without the
// coder's own rounding and flush. For every code model and tensor: "cold" from the start state (what golf
// pays), and "warm" a second pass over the same codes from the state the first pass ended in.
// usage: cost BITS OFFSET QMAX FILE.codes COLS [FILE.codes COLS ...]
// prints per tensor, in order: cold and warm bits of each code model
#define GOLF_INFER_NO_MAIN
#include "golf_infer.c"

static int cost_bit(void *acc, BitModel *m, int bit) {
    *(double *)acc -= log2((bit ? 65536.0 - m->p : (double)m->p) / 65536.0);
    bm_update(m, bit);
    return bit;
}

int main(int argc, char **argv) {
    if (argc < 6 || (argc - 4) % 2) return 2;
    int bits = atoi(argv[1]), offset = atoi(argv[2]), qmax = atoi(argv[3]);
    for (int a = 4; a < argc; a += 2) {
        int cols = atoi(argv[a + 1]);
        FILE *f = fopen(argv[a], "rb");
        if (!f) { perror(argv[a]); return 1; }
        fseek(f, 0, SEEK_END);
        long n = ftell(f);
        fseek(f, 0, SEEK_SET);
        int8_t *c = (int8_t *)malloc(n > 0 ? (size_t)n : 1);
        if (!c || fread(c, 1, (size_t)n, f) != (size_t)n) { perror(argv[a]); return 1; }
        fclose(f);
        for (int coder = 0; coder < NUM_CODERS; coder++) {
            CodeState cs;
            code_state_init(&cs, coder, bits, offset, qmax, cols);
            for (int pass = 0; pass < 2; pass++) {
                double total = 0;
                for (long k = 0; k < n; k++) code_symbol(&cs, cost_bit, &total, c[k]);
                printf("%.3f ", total);
            }
            code_state_free(&cs);
        }
        printf("\n");
        free(c);
    }
    return 0;
}
EOF
COST=1
if ! cc -O2 -w -I"$repo" -o "$work/cost" "$work/cost.c" -lm 2> "$work/cost.err"; then
  COST=0
  say "golf_infer.c's code models could not be driven from outside (its interface changed): the breakdown of"
  say "golf's bytes is left out. Compiler said: $(head -n 3 "$work/cost.err" | tr '\n' ' ')"
fi

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
                      "order0_bits": order0, "kt_bits": kt, "bits": bits, "offset": offset, "qmax": qmax,
                      "cost_args": [x for t in tensors for x in (os.path.join(dump, t[0] + ".codes"), str(shp[t[0]][1]))]}))

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
        cost = os.path.join(results_dir, s + ".cost")
        st["model_bits"] = [[float(x) for x in l.split()] for l in open(cost)] if os.path.exists(cost) else None
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
        line += f" {r['order0_bits'] / 8:>9.0f}"
        if tools:
            other = min(r["best"][t][0] for t in tools)
            ratio = r["golf"] / other
            v = "MET" if r["golf"] <= 0.97 * other else "NOT MET"
            verdicts[r["scheme"]] = v
            d = 100 * (1 - ratio)
            line += f" {ratio:>9.4f}  {v} (golf {abs(d):.2f}% {'smaller' if d >= 0 else 'larger'})"
        else:
            line += f" {'n/a':>9}  n/a (no other compressor available)"
        print(line)
    if "int6" in verdicts:
        print(f"project target (int6: golf >= 3% smaller than the best of {', '.join(tools)}): {verdicts['int6']}")
    elif "int6" in schemes:
        print("project target (int6): cannot be judged, no other compressor available")
    print()
    if any(r["model_bits"] is None for r in rows):
        return
    print("Where golf's bytes above the order-0 bound go (bytes; bits/value in parentheses)")
    nmodels = len(rows[0]["model_bits"][0]) // 2
    names = (["tree only", "ctx only"] + [f"model {k}" for k in range(2, nmodels)])[:nmodels]
    hdr = (f"{'scheme':<8} {'order0':>16} {'+start-up':>16} {'+steady model':>16} {'+coder flush':>16} {'= golf':>16}   {'KT flat':>9}"
           + "".join(f" {x:>9}" for x in names) + "  tensors per model")
    print(hdr)
    print("-" * len(hdr))
    flush_total = 0
    for r in rows:
        n, mb = r["values"], r["model_bits"]
        o0 = r["order0_bits"] / 8
        # per tensor: [cold, warm] of each code model, in golf_infer.c's order (tree first); golf_export keeps
        # the model whose payload is smallest, which is the one with the smallest ideal length up to a byte or two
        pick = [min(range(nmodels), key=lambda k: t[2 * k]) for t in mb]
        cold = sum(t[2 * k] for t, k in zip(mb, pick)) / 8
        warm = sum(t[2 * k + 1] for t, k in zip(mb, pick)) / 8
        flush_total += r["golf"] - cold
        cell = lambda b: f"{b:>9.0f} ({8 * b / n:+.3f})"
        print(f"{r['scheme']:<8} {o0:>9.0f} ({8 * o0 / n:.3f}) {cell(cold - warm)} {cell(warm - o0)} {cell(r['golf'] - cold)}"
              f" {r['golf']:>9} ({8 * r['golf'] / n:.3f})   {r['kt_bits'] / 8:>9.0f}"
              + "".join(f" {sum(t[2 * k] for t in mb) / 8:>9.0f}" for k in range(nmodels))
              + "  " + " / ".join(str(pick.count(k)) for k in range(nmodels)))
    t = rows[0]["tensors"]
    print("  order0:         static order-0 entropy per tensor, its symbol table not counted")
    print("  +start-up:      golf's model learning each tensor from flat probabilities (its first pass over the codes")
    print("                  minus a second, warm pass)")
    print("  +steady model:  golf's warm model over order0: adaptive-probability noise, less what its contexts and")
    print("                  tracking gain (negative when golf's model beats a static order-0 coder)")
    print("  +coder flush:   golf's bytes over its model's ideal length: range coder start byte, flush and rounding,")
    print(f"                  {t} tensors each coded on its own ({flush_total / len(rows) / t:.1f} bytes per tensor on average)")
    print("  KT flat:        for comparison, a count-based adaptive order-0 coder over all 2*qmax+1 levels (KT estimator)")
    print("  tree only, ctx only: golf's ideal length with every tensor under its tree / its context code model")
    print("  tensors per model: how many tensors each code model codes best (golf_export keeps the smallest)")

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
  if [ "$COST" = 1 ]; then
    mapfile -t args < <("$PYTHON" -c 'import json,sys; j=json.load(open(sys.argv[1])); print("\n".join(map(str, [j["bits"], j["offset"], j["qmax"]] + j["cost_args"])))' "$work/results/$s.json")
    "$work/cost" "${args[@]}" > "$work/results/$s.cost"
  fi
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
  layouts=("$d"/in/*)
  say "$s: ${#layouts[@]} layouts x ${#TOOLS[@]} compressors in $((SECONDS - t0)) s"
  rm -rf "$d" "$work/$s.golf"
done

tools_list="${TOOLS[*]}"
"$PYTHON" "$work/bench.py" report "$work/results" "$SCHEMES" "$tools_list"
