#!/usr/bin/python3
"""Tests of golf_infer (the artifact's CPU scorer), the blob format and dev/golf_export, against
test/reference.py (PyTorch) and a float64 numpy quantizer written here.

  logits      golf_infer --logits-ids vs reference.py logits --dtype float64 (random-init models:
              tied + GQA, untied, one layer, no GQA)
  eval        val_loss / val_bpb of golf_infer vs reference.py eval --dtype float64 (a model trained 30
              steps by reference.py) on val shards that ./tokenize wrote from ../shared/text, stride =
              seq_len and stride 16
  quantize    golf_export --dump codes and scales vs the numpy quantizer, every scheme, ternary groups
  roundtrip   a model trained a few steps with reference.py, exported at int8 / int6 / int5 / int4 / ternary:
              golf_infer on the blob vs reference.py on the dequantized weights; the artifact line
  generate    prompt ids of ASCII text equal sentencepiece's (four models); seeded sampling is repeatable;
              --temp 0 follows the reference's argmax
  sanitizers  golf_infer built with -fsanitize=address,undefined: eval, generate, logits run clean
  corruption  dev/fuzz_blob (AddressSanitizer + UBSan build): 10,000 flips and truncations rejected, and
              CRC-fixed damage never read out of bounds
  errors      bad blobs, checkpoints, shards, tokenizers and flags: exit 1 (2 for usage) with a message
  caseops     a CaseOps val set (tokenize shards --caseops, byte sidecars) and the plain one of the same documents
              give val_bpb the same denominator, their UTF-8 bytes (every target scored); --val-bytes; bad sidecars
              refused naming the file; train_golf_cpu's roundtrip val_bpb on either equals golf_infer's

Usage: /usr/bin/python3 test/test_infer.py [--bin DIR] [--shared DIR] [--keep]
The last line printed is "N passed, M failed, K skipped"; exit status 1 if anything failed.
"""

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "test"))
import reference  # noqa: E402
from harness import Results, binary_test_args, require_binaries, run_groups  # noqa: E402

PY = sys.executable
SCHEMES = ["fp32", "fp16", "int8", "int6", "int5", "int4", "ternary"]
QMAX = {"int8": 127, "int6": 31, "int5": 15, "int4": 7, "ternary": 1}
TINY = ["--num-layers", "3", "--model-dim", "64", "--num-heads", "4", "--num-kv-heads", "2", "--mlp-mult", "2",
        "--train-seq-len", "64"]

# Tolerances.
# logits: golf_infer computes in float32; its error against the float64 reference comes from float32
# rounding (eps 6e-8) accumulated over dot products of length <= 128 and 3-4 layers of residual updates;
# measured about 4e-7 of the largest |logit|. 1e-5 of max|logit| is the bound the design promises.
LOGIT_RTOL_OF_MAX = 1e-5
# val_loss / val_bpb: averages of ~4,000 float32 NLLs; per-token errors are ~1e-7 relative and do not add
# up coherently, so 1e-6 relative is the promised bound.
EVAL_RTOL = 1e-6


def run(cmd, expect=0, cwd=None):
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, cwd=cwd)
    if expect is not None and p.returncode != expect:
        raise RuntimeError(f"{' '.join(map(str, cmd))} exited {p.returncode}:\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    return p


def ref(*args):
    return run([PY, ROOT / "test" / "reference.py", *args])


def parse_eval(text):
    m = re.search(r"val_loss:([-\d.e+]+) val_bpb:([-\d.e+]+) tokens:(\d+) bytes:(\d+)", text)
    if not m:
        raise RuntimeError(f"no val_loss line in: {text[-500:]}")
    return float(m[1]), float(m[2]), int(m[3]), int(m[4])


def rel(a, b):
    return abs(a - b) / max(abs(b), 1e-300)


# ----------------------------------------------------------------------------------------------------
# the float64 quantizer (the rule in dev/golf_export.c's header comment)

CLIP_RATIOS = [1.0, 0.995, 0.99, 0.985, 0.98, 0.975, 0.97, 0.96, 0.95, 0.94, 0.93, 0.92, 0.9, 0.88, 0.86, 0.84, 0.82, 0.8]


def quantize_span(seg, qmax, sf):
    """codes, fp16 scale bits and squared error (summed left to right in float64) of one span under scale ~sf."""
    h = np.float16(sf)
    scale = float(h)
    q = np.clip(np.rint(seg.astype(np.float64) / scale), -qmax, qmax) if scale > 0 else np.zeros(seg.size)
    err = np.cumsum((seg.astype(np.float64) - q * scale) ** 2)[-1] if seg.size else 0.0
    return q.astype(np.int8), h.view(np.uint16), float(err)


def quantize_np(w, scheme, group, clip="search", sd_k=12.5):
    """codes int8 [rows, cols], scales uint16 (fp16 bits) [rows, groups] and the squared error per row of a
    float32 matrix, by the rule in dev/golf_export.c's header comment."""
    rows, cols = w.shape
    qmax = QMAX[scheme]
    g = cols if scheme != "ternary" or group <= 0 or group >= cols else group
    ngroups = (cols + g - 1) // g
    codes = np.zeros((rows, cols), np.int8)
    scales = np.zeros((rows, ngroups), np.uint16)
    errors = np.zeros(rows)
    for r in range(rows):
        for s in range(ngroups):
            seg = w[r, s * g:(s + 1) * g]
            if scheme == "ternary":
                total = np.cumsum(np.abs(seg.astype(np.float64)))[-1]   # left to right, as the C loop
                best = quantize_span(seg, qmax, np.float32(total / seg.size))
            elif clip == "sdclip":
                mean = np.cumsum(seg.astype(np.float64))[-1] / seg.size
                var = np.cumsum((seg.astype(np.float64) - mean) ** 2)[-1] / seg.size
                best = quantize_span(seg, qmax, np.float32(float(np.float32(sd_k)) * np.sqrt(var)) / np.float32(qmax))  # k is a float32 in C
            else:
                amax = np.float32(np.abs(seg).max())
                best = quantize_span(seg, qmax, amax / np.float32(qmax))
                for ratio in (CLIP_RATIOS[1:] if clip == "search" else []):
                    trial = quantize_span(seg, qmax, amax * np.float32(ratio) / np.float32(qmax))
                    if trial[2] < best[2]:
                        best = trial
            codes[r, s * g:(s + 1) * g], scales[r, s], e = best
            errors[r] += e
    return codes, scales, errors


def dequantized_checkpoint(src, dump, dst):
    """A copy of checkpoint src whose quantized tensors are replaced by codes * scale from golf_export's dump."""
    c = reference.read_container(src)
    records = []
    for name, arr in c.tensors.items():
        cf, sf = dump / f"{name}.codes", dump / f"{name}.scales"
        if cf.exists():
            rows = arr.shape[0] if arr.ndim == 2 else 1
            codes = np.fromfile(cf, np.int8).reshape(rows, -1).astype(np.float32)
            scales = np.fromfile(sf, "<u2").view(np.float16).astype(np.float32).reshape(rows, -1)
            g = -(-codes.shape[1] // scales.shape[1])
            arr = (codes * np.repeat(scales, g, axis=1)[:, :codes.shape[1]]).reshape(arr.shape)
        records.append((name, arr))
    reference.write_container(dst, c.config, c.steps, records)


# ----------------------------------------------------------------------------------------------------
# checks

def check_logits(R, b, tmp):
    rng = np.random.default_rng(7)
    variants = {
        "tied, GQA 4/2": TINY,
        "untied": TINY + ["--tie-embeddings", "0"],
        "one layer": ["--num-layers", "1", "--model-dim", "32", "--num-heads", "2", "--num-kv-heads", "1", "--train-seq-len", "32"],
        "no GQA, 4 layers": ["--num-layers", "4", "--model-dim", "48", "--num-heads", "3", "--num-kv-heads", "3", "--train-seq-len", "32"],
    }
    for label, flags in variants.items():
        ck = tmp / f"logits_{len(flags)}_{label[:4]}.bin"
        ref("init", "--random-init", "--seed", str(rng.integers(1000)), *flags, "--out", ck)
        ids = " ".join(map(str, rng.integers(0, 1024, 40)))
        ref("logits", "--ckpt", ck, "--dtype", "float64", "--tokens", ids, "--out", tmp / "ref_logits.npy")
        expect = np.load(tmp / "ref_logits.npy")
        got = np.loadtxt(run([b / "golf_infer", ck, "--logits-ids", ids]).stdout.splitlines(), ndmin=2)
        err = np.abs(got - expect).max() / np.abs(expect).max()
        R.check(f"logits {label}", got.shape == expect.shape and err < LOGIT_RTOL_OF_MAX,
                f"max |C - ref| / max|ref| = {err:.2e} (bound {LOGIT_RTOL_OF_MAX:g}), shape {got.shape}")


def make_val_shards(b, shared, tmp):
    """val shards tokenized by ./tokenize from the shared FineWeb val documents."""
    out = tmp / "val"
    run([b / "tokenize", "shards", "--model", shared / "tokenizers" / "fineweb_1024_bpe.model", "--out", out,
         "--val-docs", "12", "--quiet", shared / "text" / "fineweb_val_docs.jsonl"])
    for f in out.glob("fineweb_train_*"):
        f.unlink()
    return out


def eval_pair(b, shared, ck, model, val, stride, max_tokens=4096, infer_flags=()):
    tok = shared / "tokenizers" / "fineweb_1024_bpe.model"
    flags = ["--data-path", val, "--tokenizer-path", tok, "--max-tokens", str(max_tokens)]
    if stride:
        flags += ["--stride", str(stride)]
    r = parse_eval(ref("eval", "--ckpt", ck, "--dtype", "float64", *flags).stdout)
    p = run([b / "golf_infer", model, "--val", f"{val}/fineweb_val_*.bin", "--tokenizer", tok, "--max-tokens", str(max_tokens),
             *(["--stride", str(stride)] if stride else []), *infer_flags])
    return r, parse_eval(p.stdout), p.stdout


def train_tiny(shared, tmp):
    """a tiny model trained 30 steps by reference.py on the shared train shard (confident, non-uniform logits)"""
    ck = tmp / "trained.bin"
    ref("train", *TINY, "--iterations", "30", "--train-batch-tokens", "4096", "--warmdown-iters", "10",
        "--max-wallclock-seconds", "0", "--no-val", "--data-path", shared / "data" / "sample_sp1024",
        "--tokenizer-path", shared / "tokenizers" / "fineweb_1024_bpe.model", "--out", ck)
    return ck


def check_eval(R, b, shared, tmp, val, ck):
    for stride in (None, 16):
        r, c, _ = eval_pair(b, shared, ck, ck, val, stride)
        ok = rel(c[0], r[0]) < EVAL_RTOL and rel(c[1], r[1]) < EVAL_RTOL and c[2:] == r[2:]
        R.check(f"eval stride {stride or 'seq_len'}", ok,
                f"val_loss {c[0]:.9f} vs {r[0]:.9f}, val_bpb {c[1]:.9f} vs {r[1]:.9f} (rel {rel(c[1], r[1]):.1e}), tokens/bytes {c[2:]} vs {r[2:]}")


def check_quantize(R, b, tmp):
    ck = tmp / "quant_model.bin"
    ref("init", "--random-init", *TINY, "--out", ck)
    weights = reference.read_container(ck).tensors
    cases = [(s, 128, c) for s in ("int8", "int6", "int5", "int4") for c in ("search", "none", "sdclip")] + \
            [("ternary", 128, "search"), ("ternary", 0, "search"), ("ternary", 48, "search")]
    for scheme, group, clip in cases:
        dump = tmp / f"dump_{scheme}_{group}_{clip}"
        dump.mkdir()
        run([b / "golf_export", ck, tmp / "q.golf", "--quant", scheme, "--group", group, "--clip", clip, "--dump", dump, "--quiet"])
        bad, worse = [], []
        n = 0
        for name, w in weights.items():
            if not (dump / f"{name}.codes").exists():
                continue
            n += 1
            w2 = (w.reshape(w.shape[0], -1) if w.ndim == 2 else w.reshape(1, -1)).astype(np.float32)
            codes, scales, err = quantize_np(w2, scheme, group, clip)
            got_c = np.fromfile(dump / f"{name}.codes", np.int8).reshape(codes.shape)
            got_s = np.fromfile(dump / f"{name}.scales", "<u2").reshape(scales.shape)
            if not np.array_equal(got_c, codes) or not np.array_equal(got_s, scales):
                bad.append(f"{name}: {(got_c != codes).sum()} codes, {(got_s != scales).sum()} scales differ")
            if clip == "search":
                worse += [f"{name} row {r}" for r in np.nonzero(err > quantize_np(w2, scheme, group, "none")[2])[0]]
        R.check(f"quantize {scheme} group {group} clip {clip}: codes and scales equal the float64 quantizer", n > 0 and not bad,
                f"{n} tensors" + ("; " + "; ".join(bad[:3]) if bad else ""))
        if clip == "search" and scheme != "ternary":
            R.check(f"quantize {scheme}: the clip search never has a larger row error than no clipping", not worse, "; ".join(worse[:3]))
    # passthrough schemes decode exactly (fp32) / to numpy's float16 rounding (fp16)
    for scheme in ("fp32", "fp16"):
        blob = tmp / f"pass_{scheme}.golf"
        run([b / "golf_export", ck, blob, "--quant", scheme, "--quant-control", scheme, "--quiet"])
        ids = "1 2 3 4 5 6 7 8"
        got = np.loadtxt(run([b / "golf_infer", blob, "--logits-ids", ids]).stdout.splitlines(), ndmin=2)
        src = ck
        if scheme == "fp16":   # the same model with every weight rounded through float16
            c = reference.read_container(ck)
            src = tmp / "f16.bin"
            reference.write_container(src, c.config, c.steps, [(k, v.astype(np.float16).astype(np.float32)) for k, v in c.tensors.items()])
        want = np.loadtxt(run([b / "golf_infer", src, "--logits-ids", ids]).stdout.splitlines(), ndmin=2)
        R.check(f"blob {scheme} decodes to exactly the (rounded) weights", np.array_equal(got, want))


def check_roundtrip(R, b, shared, tmp, val, ck):
    code_bytes = (ROOT / "golf_infer.c").stat().st_size
    for scheme in ("int8", "int6", "int5", "int4", "ternary"):
        dump = tmp / f"rt_{scheme}"
        dump.mkdir()
        blob = tmp / f"trained_{scheme}.golf"
        run([b / "golf_export", ck, blob, "--quant", scheme, "--dump", dump, "--quiet"])
        deq = tmp / f"deq_{scheme}.bin"
        dequantized_checkpoint(ck, dump, deq)
        r, c, out = eval_pair(b, shared, deq, blob, val, None)
        R.check(f"roundtrip {scheme}: golf_infer on the blob == reference on the dequantized weights",
                rel(c[1], r[1]) < EVAL_RTOL and c[2:] == r[2:], f"val_bpb {c[1]:.9f} vs {r[1]:.9f} ({blob.stat().st_size} bytes)")
        line = f"artifact: golf_infer.c {code_bytes} + model {blob.stat().st_size} = {code_bytes + blob.stat().st_size} bytes (limit 16000000) OK"
        R.check(f"artifact line {scheme}", line in out, line)


def check_corruption(R, b, tmp):
    exe = tmp / "fuzz_blob"
    cc = os.environ.get("CC", "cc")
    p = subprocess.run([cc, "-std=c99", "-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all", f"-I{ROOT}",
                        "-o", exe, ROOT / "dev" / "fuzz_blob.c", "-lm"], capture_output=True, text=True)
    sanitized = p.returncode == 0
    if not sanitized:
        run([cc, "-std=c99", "-O2", f"-I{ROOT}", "-o", exe, ROOT / "dev" / "fuzz_blob.c", "-lm"])
    ck = tmp / "fuzz_model.bin"
    ref("init", "--random-init", "--num-layers", "2", "--model-dim", "32", "--num-heads", "2", "--num-kv-heads", "1",
        "--vocab-size", "256", "--train-seq-len", "32", "--out", ck)
    for scheme in ("int6", "ternary", "fp16"):
        blob = tmp / f"fuzz_{scheme}.golf"
        run([b / "golf_export", ck, blob, "--quant", scheme, "--quiet"])
        p = subprocess.run([exe, blob, "10000", "12345"], capture_output=True, text=True)
        R.check(f"corruption {scheme}: 10,000 flips/truncations rejected, no out-of-bounds access"
                + ("" if sanitized else " (no sanitizer available)"), p.returncode == 0, (p.stdout + p.stderr).strip()[-300:])


def check_generate(R, b, shared, tmp, ck):
    import sentencepiece as spm
    prompts = ["Hello world, this is a   test of 12345 tokens.", "  The quick brown fox jumps over the lazy dog  ",
               "Tabs\tand\nnewlines; symbols ~!@#$%^&*()_+{}|:\"<>? and numbers 3.14159", "x"]
    for model in ("fineweb_1024_bpe", "fineweb_4096_bpe", "fineweb_8192_bpe", "variant_1024_nobytefallback_bpe"):
        path = shared / "tokenizers" / f"{model}.model"
        sp = spm.SentencePieceProcessor(model_file=str(path))
        c = reference.read_container(ck)
        cfg = c.config
        vck = tmp / f"gen_{model}.bin"
        if cfg.vocab_size != sp.vocab_size():   # the same tiny model with this tokenizer's vocabulary
            ref("init", *TINY, "--vocab-size", str(sp.vocab_size()), "--out", vck)
        else:
            vck = ck
        bad = []
        for text in prompts:
            p = run([b / "golf_infer", vck, "--tokenizer", path, "--generate", text, "-n", "3", "--seed", "5"])
            got = [int(t) for t in p.stderr.split("prompt ids:")[1].split("\n")[0].split()]
            want = [sp.bos_id()] + sp.encode(text)
            if got != want:
                bad.append(f"{text!r}: {got} vs {want}")
        R.check(f"generate: ASCII prompt ids equal sentencepiece's ({model})", not bad, "; ".join(bad)[:300])
    tok = shared / "tokenizers" / "fineweb_1024_bpe.model"
    outs = [run([b / "golf_infer", ck, "--tokenizer", tok, "--generate", "Once upon a time", "-n", "30", "--seed", str(s)]).stdout for s in (1, 1, 2)]
    R.check("generate: the same seed gives the same text, another seed another", outs[0] == outs[1] and outs[0] != outs[2]
            and outs[0].startswith("Once upon a time"), repr(outs[0][:80]))
    # hot sampling picks byte pieces that split characters: the text must still be valid UTF-8, each ill-formed
    # stretch one U+FFFD as Python's decode(errors="replace") (the Unicode standard's maximal-subpart practice) gives
    sp1 = spm.SentencePieceProcessor(model_file=str(tok))
    piece_bytes = lambda i: (bytes([int(sp1.id_to_piece(i)[3:5], 16)]) if sp1.is_byte(i) else b"" if sp1.is_control(i)
                             else sp1.id_to_piece(i).replace("\u2581", " ").encode())
    bad, ill = [], 0
    for seed in range(1, 7):
        p = subprocess.run([str(b / "golf_infer"), str(ck), "--tokenizer", str(tok), "--generate-ids", "1", "-n", "300", "--temp", "3",
                            "--top-k", "0", "--seed", str(seed)], capture_output=True)
        ids = [int(t) for t in p.stderr.decode().split("continuation ids:")[1].split()]
        raw = b"".join(piece_bytes(i) for i in ids)
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            ill += 1
        want = raw.decode("utf-8", errors="replace") + "\n"
        try:
            got = p.stdout.decode("utf-8")
        except UnicodeDecodeError as e:
            got = f"(invalid UTF-8: {e})"
        if p.returncode != 0 or got != want:
            bad.append(f"seed {seed}: {got[:60]!r} vs {want[:60]!r}")
    R.check(f"generate: the text is valid UTF-8, ill-formed bytes as U+FFFD like Python's decoder ({ill} of 6 samples had split characters)",
            not bad and ill > 0, "; ".join(bad)[:400] if bad else "" if ill else "no sample had a split character: the check saw nothing")
    greedy = run([b / "golf_infer", ck, "--tokenizer", tok, "--generate-ids", "1 300 400", "-n", "5", "--temp", "0"])
    ids = [1, 300, 400]
    for _ in range(5):   # greedy continuation from the reference's logits
        ref("logits", "--ckpt", ck, "--dtype", "float64", "--tokens", " ".join(map(str, ids)), "--out", tmp / "g.npy")
        ids.append(int(np.load(tmp / "g.npy")[-1].argmax()))
    sp = spm.SentencePieceProcessor(model_file=str(tok))
    want = "".join(sp.id_to_piece(i).replace("\u2581", " ") if not sp.is_byte(i) else "" for i in ids[3:])
    R.check("generate --temp 0 follows the reference's argmax", greedy.stdout.rstrip("\n") == want, f"{greedy.stdout.strip()!r} vs {want!r}")
    # DOC_ATTENTION on the KV cache: a BOS inside the prompt starts a document, and the generation runs past its
    # train_seq_len = 8 chunks, so the cache's steps must carry the document start. The reference's forward of the
    # whole sequence is causal, so its logits at position t are those of the sequence up to t: each greedy pick must
    # be their argmax
    dck = tmp / "gen_docs.bin"
    ref("init", *TINY, "--train-seq-len", "8", "--doc-attention", "1", "--random-init", "--perturb", "--tie-embeddings", "0", "--seed", "3",
        "--out", dck)   # untied and perturbed: a tied random model keeps repeating the prompt's last token
    prompt = [1, 300, 400, 1, 500, 600]
    greedy = run([b / "golf_infer", dck, "--tokenizer", tok, "--generate-ids", " ".join(map(str, prompt)), "-n", "14", "--temp", "0"])
    got = [int(t) for t in greedy.stderr.split("continuation ids:")[1].split()]
    ref("logits", "--ckpt", dck, "--dtype", "float64", "--tokens", " ".join(map(str, prompt + got)), "--out", tmp / "g.npy")
    want = [int(v) for v in np.load(tmp / "g.npy")[len(prompt) - 1:-1].argmax(axis=1)]
    R.check("generate --temp 0 with DOC_ATTENTION (documents cut every 8, a BOS in the prompt) follows the reference's argmax",
            len(got) == 14 and got == want, f"{got} vs {want}")


def check_sanitizers(R, b, shared, tmp, val, ck):
    exe = tmp / "golf_infer_asan"
    cc = os.environ.get("CC", "cc")
    p = subprocess.run([cc, "-std=c99", "-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-o", exe,
                        ROOT / "golf_infer.c", "-lm"], capture_output=True, text=True)
    if p.returncode != 0:
        R.skip("golf_infer under ASan/UBSan", f"the compiler cannot build with sanitizers: {p.stderr.strip()[:200]}")
        return
    blob = tmp / "asan.golf"
    run([b / "golf_export", ck, blob, "--quant", "int6", "--quiet"])
    tok = shared / "tokenizers" / "fineweb_1024_bpe.model"
    runs = {"eval --stride 16 (blob)": [blob, "--val", f"{val}/fineweb_val_*.bin", "--tokenizer", tok, "--max-tokens", "256", "--stride", "16"],
            "generate (checkpoint)": [ck, "--tokenizer", tok, "--generate", "Sanitized text", "-n", "8"],
            "logits (blob)": [blob, "--logits-ids", "1 2 3"]}
    for label, cmd in runs.items():
        p = subprocess.run([str(c) for c in [exe, *cmd]], capture_output=True, text=True)
        R.check(f"golf_infer under ASan/UBSan: {label}", p.returncode == 0 and "runtime error" not in p.stderr, p.stderr.strip()[-300:])


def caseops_val(b, shared, tmp, ndocs=40):
    """the first ndocs val documents as plain val shards and as CaseOps ones (tokenize shards --caseops: with the byte
    sidecar), sp1024; (plain folder, CaseOps folder, the documents' UTF-8 bytes). Train shards are kept (train_golf)."""
    src = tmp / "caseops_docs.jsonl"
    lines = (shared / "text" / "fineweb_val_docs.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    src.write_text("".join(lines[:ndocs + 20]), encoding="utf-8")
    utf8 = sum(len(json.loads(l)["text"].encode("utf-8")) for l in lines[:ndocs])
    tok = shared / "tokenizers" / "fineweb_1024_bpe.model"
    folders = []
    for name, extra in (("plain", []), ("caseops", ["--caseops"])):
        out = tmp / f"cval_{name}"
        run([b / "tokenize", "shards", "--model", tok, "--out", out, "--val-docs", str(ndocs), "--shard-tokens", "40000", "--quiet", *extra, src])
        folders.append(out)
    return folders[0], folders[1], utf8


def check_caseops(R, b, shared, tmp, ck):
    """val_bpb of a CaseOps val set counts the plain text's bytes: the same val documents as plain shards and as CaseOps
    shards with the byte sidecar, every target scored (--seq-len 1 leaves nothing cut), give the same byte total,
    the documents' UTF-8 bytes. Bad sidecars are refused naming the file. train_golf (CPU build) reads it too."""
    plain, cops, utf8 = caseops_val(b, shared, tmp)
    tok = shared / "tokenizers" / "fineweb_1024_bpe.model"
    ntok = {d: sum((p.stat().st_size - 1024) // 2 for p in d.glob("fineweb_val_[0-9]*.bin")) for d in (plain, cops)}
    side = sorted(cops.glob("fineweb_val_bytes_*.bin"))
    R.check("tokenize shards --caseops wrote one byte sidecar per val shard (several)", len(side) == len(list(cops.glob("fineweb_val_[0-9]*.bin"))) > 1,
            f"{[p.name for p in side]}")
    res = {}
    for label, d, extra in (("plain", plain, []), ("CaseOps", cops, []), ("CaseOps --val-bytes", cops, ["--val-bytes", f"{cops}/fineweb_val_bytes_*.bin"])):
        p = run([b / "golf_infer", ck, "--val", f"{d}/fineweb_val_*.bin", "--tokenizer", tok, "--seq-len", "1", *extra])
        res[label] = parse_eval(p.stdout) + (p.stderr,)
    pl, co, cx = res["plain"], res["CaseOps"], res["CaseOps --val-bytes"]
    R.check("CaseOps val: the sidecars are not read as tokens (every val token scored once)", pl[2] == ntok[plain] - 1 and co[2] == ntok[cops] - 1,
            f"tokens {pl[2]} / {co[2]}, shards hold {ntok[plain]} / {ntok[cops]}")
    R.check("CaseOps val: golf_infer says it counts the sidecars' bytes", "CaseOps byte sidecars" in co[4] and "CaseOps" not in pl[4], co[4].strip()[:200])
    R.check("CaseOps val: val_bpb's denominator equals the plain val set's (the documents' UTF-8 bytes)", pl[3] == co[3] == utf8 and co[2] > pl[2],
            f"bytes {pl[3]} plain, {co[3]} CaseOps, UTF-8 {utf8}; tokens {pl[2]} plain, {co[2]} CaseOps")
    R.check("CaseOps val: --val-bytes naming the sidecars gives the same", cx[:4] == co[:4], f"{cx[:4]} vs {co[:4]}")
    R.check("CaseOps val: val_bpb = val_loss / ln 2 * tokens / bytes", rel(co[1], co[0] / np.log(2) * co[2] / co[3]) < 1e-7, f"{co}")

    # refusals: each names the file
    vals = ["--tokenizer", tok, "--seq-len", "1"]
    good = side[0].read_bytes()

    def bad_set(first_sidecar=None, drop_second=False):
        d = tmp / f"cbad_{len(list(tmp.glob('cbad_*')))}"
        d.mkdir()
        for p in cops.glob("fineweb_val_*.bin"):
            (d / p.name).write_bytes(p.read_bytes())
        if first_sidecar is not None:
            (d / side[0].name).write_bytes(first_sidecar)
        if drop_second:
            (d / side[1].name).unlink()
        return d
    bad_dirs = {}
    short = bytearray(good[:-2])
    short[8:12] = ((len(good) - 1024) // 2 - 1).to_bytes(4, "little")
    for name, content, mention in [("wrong magic", b"\0\0\0\0" + good[4:], ["bad header"]),
                                   ("wrong version", good[:4] + (2).to_bytes(4, "little") + good[8:], ["bad header"]),
                                   ("truncated", good[:-6], ["bytes, but its header"]),
                                   ("one count fewer than its val shard's tokens", bytes(short), ["counts, but its val shard", "fineweb_val_000000.bin"]),
                                   ("empty", b"", ["bad header"])]:
        d = bad_dirs[name] = bad_set(first_sidecar=content)
        expect_error(R, f"golf_infer rejects a byte sidecar: {name}", [b / "golf_infer", ck, "--val", f"{d}/fineweb_val_*.bin", *vals],
                     [side[0].name, *mention])
    d = bad_set(drop_second=True)
    expect_error(R, "golf_infer rejects a CaseOps val set missing one sidecar", [b / "golf_infer", ck, "--val", f"{d}/fineweb_val_*.bin", *vals],
                 [side[1].name.replace("_bytes", ""), "no byte sidecar"])
    expect_error(R, "golf_infer rejects --val-bytes for the plain val set (counts differ)",
                 [b / "golf_infer", ck, "--val", f"{plain}/fineweb_val_*.bin", "--val-bytes", f"{cops}/fineweb_val_bytes_*.bin", *vals],
                 ["fineweb_val_bytes_00000", "counts, but its val shard"])
    expect_error(R, "golf_infer rejects --val-bytes matching fewer files than the val shards",
                 [b / "golf_infer", ck, "--val", f"{cops}/fineweb_val_*.bin", "--val-bytes", str(side[0]), *vals], ["fewer byte sidecars"])
    expect_error(R, "golf_infer rejects --val-bytes matching nothing",
                 [b / "golf_infer", ck, "--val", f"{cops}/fineweb_val_*.bin", "--val-bytes", f"{tmp}/none_*.bin", *vals], ["no byte sidecar matches"])
    expect_error(R, "golf_infer rejects a val glob matching only sidecars",
                 [b / "golf_infer", ck, "--val", f"{cops}/fineweb_val_bytes_*.bin", *vals], ["only CaseOps byte sidecars"])
    expect_error(R, "golf_infer: --val-bytes without --val is a usage error", [b / "golf_infer", ck, "--val-bytes", str(side[0]), "--generate-ids", "1"],
                 ["--val-bytes"], rc=2)

    asan = tmp / "golf_infer_asan"   # built by check_sanitizers; a refusal exits holding what it read (no leak check there)
    if asan.exists():
        for label, d, rc in (("reads a CaseOps val set", cops, 0), ("refuses a truncated sidecar", bad_dirs["truncated"], 1)):
            env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0") if rc else None
            p = subprocess.run([str(c) for c in [asan, ck, "--val", f"{d}/fineweb_val_*.bin", *vals, "--max-tokens", "256"]], capture_output=True,
                               text=True, env=env)
            R.check(f"golf_infer under ASan/UBSan {label}", p.returncode == rc and "runtime error" not in p.stderr and "AddressSanitizer" not in p.stderr,
                    p.stderr.strip()[-300:])

    # train_golf (the CPU build of train_golf.cu) counts the same bytes: the denominator its final roundtrip val_loss and
    # val_bpb imply (8 decimals each: ~1e-9 relative, far below one byte) is golf_infer's byte count on the blob it
    # wrote, to the byte; val_bpb itself within 1e-4 (test_gpu.py's bound for train_golf against golf_infer)
    cpu = b / "train_golf_cpu"
    if not cpu.exists():
        R.skip("CaseOps val in train_golf", f"{cpu} is not built (make cpu)")
        return
    for label, d in (("plain", plain), ("CaseOps", cops)):
        out = tmp / f"ctrain_{label}"
        env = dict(os.environ, NUM_LAYERS="2", MODEL_DIM="64", NUM_HEADS="2", NUM_KV_HEADS="1", TRAIN_SEQ_LEN="64", TRAIN_BATCH_TOKENS="1024",
                   VAL_BATCH_SIZE="4096", ITERATIONS="2", WARMDOWN_ITERS="1", VAL_LOSS_EVERY="0", MAX_WALLCLOCK_SECONDS="0", DATA_PATH=str(d),
                   TOKENIZER_PATH=str(tok), OUT_DIR=str(out), RUN_ID=f"caseops_{label}", OMP_WAIT_POLICY="passive")
        p = subprocess.run([str(cpu)], capture_output=True, text=True, env=env, cwd=tmp)
        m = re.search(r"final_\w+_roundtrip_exact val_loss:([\d.]+) val_bpb:([\d.]+)", p.stdout)
        q = run([b / "golf_infer", out / "final_model.golf", "--val", f"{d}/fineweb_val_*.bin", "--tokenizer", tok], expect=None)
        ok = p.returncode == 0 and m is not None and q.returncode == 0
        g = parse_eval(q.stdout) if ok else None
        implied = float(m[1]) * g[2] / (np.log(2) * float(m[2])) if ok else None
        said = "val_loader:bytes from the CaseOps byte sidecars" in p.stdout
        R.check(f"train_golf on the {label} val set: val_bpb's bytes are golf_infer's on its blob (to the byte), val_bpb within 1e-4, "
                f"{'says it counts the sidecars' if label == 'CaseOps' else 'no sidecar'}",
                ok and abs(implied - g[3]) < 0.5 and abs(float(m[2]) - g[1]) < 1e-4 and said == (label == "CaseOps"),
                (f"bytes {implied:.3f} vs {g[3]}, val_bpb {m[2]} vs {g[1]}" if ok else f"{p.stdout[-800:]}{p.stderr[-800:]}{q.stderr[-300:]}"))


def expect_error(R, name, cmd, mention, rc=1):
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    ok = p.returncode == rc and all(m in p.stderr for m in mention)
    R.check(name, ok, f"exit {p.returncode}: {p.stderr.strip()[:160]}")


def check_errors(R, b, shared, tmp, val):
    ck = tmp / "err_model.bin"
    ref("init", "--random-init", *TINY, "--out", ck)
    blob = tmp / "err.golf"
    run([b / "golf_export", ck, blob, "--quant", "int6", "--quiet"])
    data = blob.read_bytes()
    tok = shared / "tokenizers" / "fineweb_1024_bpe.model"
    vals = ["--val", f"{val}/fineweb_val_*.bin", "--tokenizer", tok, "--max-tokens", "128"]

    def variant(name, content):
        p = tmp / name
        p.write_bytes(content)
        return p

    bad_magic = b"GOLF" + data[4:]
    bad_version = bytearray(data); bad_version[4] = 9
    flipped = bytearray(data); flipped[len(data) // 2] ^= 0x40
    for name, content, mention in [("wrong magic", bad_magic, ["bad magic"]), ("wrong version", bytes(bad_version), ["version"]),
                                   ("truncated", data[:-100], ["truncated"]), ("one flipped byte", bytes(flipped), ["checksum"]),
                                   ("empty file", b"", ["shorter"])]:
        p = variant(f"bad_{name.replace(' ', '_')}.golf", content)
        expect_error(R, f"golf_infer rejects a blob: {name}", [b / "golf_infer", p, *vals], [str(p), *mention])
    c = reference.read_container(ck)
    missing = variant("missing.bin", b"")
    reference.write_container(missing, c.config, 0, list(c.tensors.items())[1:])
    expect_error(R, "golf_infer rejects a checkpoint missing a tensor", [b / "golf_infer", missing, *vals], [str(missing), "missing"])
    good = sorted(val.glob("fineweb_val_*.bin"))[0].read_bytes()
    for name, content, mention in [("bad header", b"\0" * 4 + good[4:], ["bad header"]), ("wrong size", good[:-2], ["bytes"]),
                                   ("token outside the vocab", good[:1024] + (5000).to_bytes(2, "little") + good[1026:], ["outside"])]:
        d = tmp / f"shard_{name.replace(' ', '_')}"
        d.mkdir()
        (d / "fineweb_val_000000.bin").write_bytes(content)
        expect_error(R, f"golf_infer rejects a shard: {name}",
                     [b / "golf_infer", blob, "--val", f"{d}/fineweb_val_*.bin", "--tokenizer", tok], ["fineweb_val_000000.bin", *mention])
    expect_error(R, "golf_infer rejects a tokenizer of another vocab size",
                 [b / "golf_infer", blob, "--val", f"{val}/fineweb_val_*.bin", "--tokenizer", shared / "tokenizers" / "fineweb_4096_bpe.model"],
                 ["vocab mismatch"])
    expect_error(R, "golf_infer rejects a glob matching nothing", [b / "golf_infer", blob, "--val", f"{tmp}/nothing_*.bin", "--tokenizer", tok],
                 ["no files match"])
    expect_error(R, "golf_infer rejects an unknown flag", [b / "golf_infer", blob, "--bogus"], ["unknown flag"], rc=2)
    expect_error(R, "golf_export rejects an unknown scheme", [b / "golf_export", ck, tmp / "x.golf", "--quant", "int3"], ["unknown scheme"], rc=2)


def main():
    b, shared, keep = binary_test_args(__doc__)
    R = Results()
    tmp = Path(tempfile.mkdtemp(prefix="test_infer_"))
    try:
        require_binaries(b, "test_infer")
        if not (shared / "tokenizers" / "fineweb_1024_bpe.model").exists() or not (shared / "text").exists():
            R.skip("everything", f"no shared data in {shared} (pass --shared DIR)")
        else:
            val = make_val_shards(b, shared, tmp)
            trained = train_tiny(shared, tmp)
            run_groups(R, [(check_logits, (R, b, tmp)), (check_eval, (R, b, shared, tmp, val, trained)), (check_quantize, (R, b, tmp)),
                              (check_roundtrip, (R, b, shared, tmp, val, trained)),
                              (check_generate, (R, b, shared, tmp, trained)), (check_sanitizers, (R, b, shared, tmp, val, trained)), (check_corruption, (R, b, tmp)), (check_errors, (R, b, shared, tmp, val)),
                              (check_caseops, (R, b, shared, tmp, trained))])
    finally:
        R.cleanup(tmp, keep)
    R.finish()

if __name__ == "__main__":
    main()
