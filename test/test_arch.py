#!/usr/bin/env python3
"""golf_infer's forward pass with the architecture options (README "Presets and the records they reproduce") against
test/reference.py (PyTorch, float64):

  logits    every option alone, then all together, on random-init models whose zero-init parameters are
            randomized too (so each option changes the output): golf_infer --logits-ids on the float32
            checkpoint vs reference.py logits --dtype float64.
  blob      a model with every option exported at int6 by golf_export: golf_infer on the blob vs the
            reference on the dequantized weights (val_loss/val_bpb, stride 16).
  header    golf_infer refuses checkpoints whose option words are invalid, naming the problem.
  versions  a version 2 file with a version 3 form is refused; DOC_ATTENTION files are version 5 (word 60), and the
            same file labelled version 3 is refused (a version 3 reader would run it without its documents), labelled
            version 4 read; ValueEmbedding files (words 61..63) labelled version 4 are refused the same way.

Usage: test/test_arch.py [--bin DIR] [--shared DIR] [--keep]
"""
import struct
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "test"))
from harness import Results, binary_test_args, require_binaries, run_groups  # noqa: E402
from test_infer import (LOGIT_RTOL_OF_MAX, EVAL_RTOL, TINY, dequantized_checkpoint, eval_pair, make_val_shards, ref, rel,  # noqa: E402
                        run)

# Each option alone on the tiny model (3 layers x 64, 4 heads of 16, 2 kv heads), then combinations.
OPTIONS = {
    "mlp hidden 96": ["--mlp-hidden", "96"],
    "leaky relu^2 0.5": ["--mlp-leaky-slope", "0.5"],
    "bigram hash 97x16": ["--bigram-vocab-size", "97", "--bigram-dim", "16"],
    "smear gate": ["--smear-gate", "1"],
    "xsa last 2": ["--xsa-last-n", "2"],
    "partial rope 8/16": ["--rope-dims", "8"],
    "ln scale": ["--ln-scale", "1"],
    "parallel from 1": ["--parallel-from", "1"],
    "skip gates": ["--skip-gates", "1"],
    "attn out gate": ["--attn-out-gate", "1"],
    "attn out gate, scale 0.5": ["--attn-out-gate", "1", "--attn-out-gate-scale", "0.5"],
    "doc attention": ["--doc-attention", "1"],
    "value embedding 24 at positions 0, 2": ["--ve-enabled", "1", "--ve-dim", "24", "--ve-layers", "0,2"],
    "value embedding at the kv width (no projection) at position 1": ["--ve-enabled", "1", "--ve-dim", "32", "--ve-layers", "1"],
    "loop 0,1,2,1 | 1,2": ["--loop-encoder", "0,1,2,1", "--loop-decoder", "1,2"],
    "parallel from 1, 03-31's form": ["--parallel-from", "1", "--parallel-form", "0331"],
}
ALL = [f for flags in OPTIONS.values() for f in flags]   # (the later --parallel-form wins: 03-31's)
COMBOS = {
    "all options": ALL,
    "all options, 04-29's lanes": ALL + ["--parallel-form", "0429"],
    # positions 3.. run two lanes: layer 1 sequential at position 1, parallel at 3 and 4; lanes from the encoder
    "all options, 03-31's lanes from position 3": ALL + ["--parallel-form", "0331-virtual", "--parallel-from", "3"],
    "all options, untied, 4 layers, loop + parallel": [
        f for k, flags in OPTIONS.items() if not k.startswith("loop") for f in flags] + [
        "--num-layers", "4", "--tie-embeddings", "0", "--loop-encoder", "0,1,2,1,2", "--loop-decoder", "3,2,3"],
}

# Header words of the options (golf_infer.c's config_header) and a bad value for each, with the message.
BAD_WORDS = [(19, 3, "rope_dims"), (21, -1, "parallel_from"), (18, -2, "xsa_last_n"), (15, 1, "bigram_vocab_size"),
             (24, 2, "loop schedule"), (58, 3, "parallel_form"), (60, 2, "doc_attention"), (61, -1, "ve_dim"),
             (62, 1, "ve_dim")]


def logits_pair(b, tmp, flags, seed, ids):
    ck = tmp / "arch.bin"
    ref("init", "--random-init", "--seed", str(seed), *TINY, *flags, "--out", ck)
    ref("logits", "--ckpt", ck, "--dtype", "float64", "--tokens", ids, "--out", tmp / "ref_logits.npy")
    expect = np.load(tmp / "ref_logits.npy")
    got = np.loadtxt(run([b / "golf_infer", ck, "--logits-ids", ids]).stdout.splitlines(), ndmin=2)
    return got, expect, ck


def check_logits(R, b, tmp):
    rng = np.random.default_rng(11)
    # token ids with BOS (1) inside, so SmearGate's mask and DOC_ATTENTION's documents are exercised
    ids = " ".join(map(str, [1, *rng.integers(2, 1024, 15), 1, *rng.integers(2, 1024, 20)]))
    base, _, _ = logits_pair(b, tmp, [], 5, ids)
    for label, flags in {**OPTIONS, **COMBOS}.items():
        got, expect, _ = logits_pair(b, tmp, flags, 5, ids)
        err = np.abs(got - expect).max() / np.abs(expect).max()
        changed = got.shape != base.shape or np.abs(got - base).max() > 1e-3 * np.abs(base).max()
        R.check(f"logits {label}", got.shape == expect.shape and err < LOGIT_RTOL_OF_MAX and changed,
                f"max |C - ref| / max|ref| = {err:.2e} (bound {LOGIT_RTOL_OF_MAX:g}); differs from the baseline: {changed}")
    # DOC_ATTENTION past golf_infer's blocks of 64 queries and keys: 200 tokens, documents at 0, 10 and 160; with
    # train_seq_len 256 the one at 10 spans three key blocks, with 64 it is cut at 74 and 138 (query blocks start inside
    # a segment and read keys from the block before)
    ids = " ".join(map(str, [7, *rng.integers(2, 1024, 9), 1, *rng.integers(2, 1024, 149), 1, *rng.integers(2, 1024, 39)]))
    for chunk in (256, 64):
        got, expect, _ = logits_pair(b, tmp, ["--doc-attention", "1", "--train-seq-len", str(chunk)], 6, ids)
        err = np.abs(got - expect).max() / np.abs(expect).max()
        R.check(f"logits doc attention on 200 tokens, train_seq_len {chunk}: segments across golf_infer's query and key blocks",
                got.shape == expect.shape and err < LOGIT_RTOL_OF_MAX, f"max |C - ref| / max|ref| = {err:.2e} (bound {LOGIT_RTOL_OF_MAX:g})")


def check_blob(R, b, shared, tmp, val):
    ck = tmp / "all.bin"
    ref("init", "--random-init", "--seed", "3", *TINY, *ALL, "--out", ck)
    blob, dump, deq = tmp / "all.golf", tmp / "dump", tmp / "all_deq.bin"
    dump.mkdir()
    run([b / "golf_export", ck, blob, "--quant", "int6", "--dump", dump, "--quiet"])
    dequantized_checkpoint(ck, dump, deq)
    r, c, _ = eval_pair(b, shared, deq, blob, val, 16, max_tokens=1024)
    ok = rel(c[0], r[0]) < EVAL_RTOL and rel(c[1], r[1]) < EVAL_RTOL and c[2:] == r[2:]
    R.check("blob: every option at int6, golf_infer on the blob = reference on the dequantized weights", ok,
            f"val_bpb {c[1]:.9f} vs {r[1]:.9f} (rel {rel(c[1], r[1]):.1e}, bound {EVAL_RTOL:g})")


def relabelled(path, version, tmp):
    """a copy of checkpoint or blob path (tmp/v<version>_<name>) whose header says version; a blob's closing CRC-32
    is recomputed over the patched bytes"""
    data = bytearray(path.read_bytes())
    struct.pack_into("<i", data, 4, version)
    if path.suffix == ".golf":
        struct.pack_into("<I", data, len(data) - 4, zlib.crc32(bytes(data[:-4])))
    old = tmp / f"v{version}_{path.name}"
    old.write_bytes(data)
    return old


def check_versions(R, b, tmp):
    """version 3 changed SMEAR_GATE, SKIP_GATES and PARALLEL_FROM to the records' forms: a version 2 checkpoint or blob
    using one of them is refused (its weights mean another model), one without them still loads; version 3 files load"""
    ck, blob = tmp / "v.bin", tmp / "v.golf"
    ref("init", "--random-init", "--seed", "4", *TINY, "--smear-gate", "1", "--out", ck)
    run([b / "golf_export", ck, blob, "--quant", "int8", "--quiet"])
    plain = tmp / "v_plain.bin"
    ref("init", "--random-init", "--seed", "4", *TINY, "--xsa-last-n", "1", "--out", plain)
    for label, path, refused in (("checkpoint with SMEAR_GATE", ck, True), ("blob with SMEAR_GATE", blob, True),
                                 ("checkpoint with XSA only", plain, False)):
        old = relabelled(path, 2, tmp)
        p = run([b / "golf_infer", old, "--logits-ids", "1 2"], expect=None)
        ok = (p.returncode == 1 and "written before version 3" in p.stderr and str(old) in p.stderr) if refused else p.returncode == 0
        R.check(f"version 2 {label}: {'refused, naming the file and why' if refused else 'still read'}", ok, p.stderr.strip()[-200:])
    # version 4 only added words 58, 59, 60 (PARALLEL_FORM, ATTN_OUT_GATE_SCALE, DOC_ATTENTION), zero in version 3
    # files: those still load
    for label, path in (("checkpoint", ck), ("blob", blob)):
        old = relabelled(path, 3, tmp)
        p = run([b / "golf_infer", old, "--logits-ids", "1 2"], expect=None)
        R.check(f"version 3 {label} with SMEAR_GATE: still read", p.returncode == 0, p.stderr.strip()[-200:])
    # DOC_ATTENTION: version 5 (its word 60), read, and labelled version 4 (which had word 60, not words 61..63) too;
    # labelled version 3 it is refused, checkpoint and blob alike
    dck, dblob = tmp / "d.bin", tmp / "d.golf"
    ref("init", "--random-init", "--seed", "4", *TINY, "--doc-attention", "1", "--out", dck)
    run([b / "golf_export", dck, dblob, "--quant", "int8", "--quiet"])
    for path in (dck, dblob):
        data = bytearray(path.read_bytes())
        version, word = struct.unpack_from("<i", data, 4)[0], struct.unpack_from("<i", data, 4 * 60)[0]
        p = run([b / "golf_infer", path, "--logits-ids", "1 2"], expect=None)
        R.check(f"DOC_ATTENTION {path.suffix} file: version 5, word 60 = 1, read", version == 5 and word == 1 and p.returncode == 0,
                f"version {version}, word 60 = {word}; {p.stderr.strip()[-200:]}")
        p4 = run([b / "golf_infer", relabelled(path, 4, tmp), "--logits-ids", "1 2"], expect=None)
        R.check(f"DOC_ATTENTION {path.suffix} file labelled version 4: read, the same logits", p4.returncode == 0 and p4.stdout == p.stdout,
                p4.stderr.strip()[-200:])
        old = relabelled(path, 3, tmp)
        p = run([b / "golf_infer", old, "--logits-ids", "1 2"], expect=None)
        R.check(f"DOC_ATTENTION {path.suffix} file labelled version 3: refused, naming the file and word 60",
                p.returncode == 1 and "word 60 (doc_attention)" in p.stderr and str(old) in p.stderr, p.stderr.strip()[-200:])
    # ValueEmbedding: version 5 (words 61..63), read; labelled version 4 it is refused (a version 4 reader has no such words)
    vck, vblob = tmp / "ve.bin", tmp / "ve.golf"
    ref("init", "--random-init", "--seed", "4", *TINY, "--ve-enabled", "1", "--ve-dim", "24", "--ve-layers", "0,2", "--out", vck)
    run([b / "golf_export", vck, vblob, "--quant", "int8", "--quiet"])
    for path in (vck, vblob):
        data = bytearray(path.read_bytes())
        version, words = struct.unpack_from("<i", data, 4)[0], struct.unpack_from("<3i", data, 4 * 61)
        p = run([b / "golf_infer", path, "--logits-ids", "1 2"], expect=None)
        R.check(f"ValueEmbedding {path.suffix} file: version 5, words 61..63 = 24, 0b101, 0, read",
                version == 5 and words == (24, 5, 0) and p.returncode == 0, f"version {version}, words {words}; {p.stderr.strip()[-200:]}")
        old = relabelled(path, 4, tmp)
        p = run([b / "golf_infer", old, "--logits-ids", "1 2"], expect=None)
        R.check(f"ValueEmbedding {path.suffix} file labelled version 4: refused, naming the file and words 61..63",
                p.returncode == 1 and "words 61..63 (ValueEmbedding)" in p.stderr and str(old) in p.stderr, p.stderr.strip()[-200:])


def check_header(R, b, tmp):
    ck = tmp / "hdr.bin"
    ref("init", "--random-init", "--seed", "1", *TINY, "--out", ck)
    data = bytearray(ck.read_bytes())
    for word, value, mention in BAD_WORDS:
        bad = bytearray(data)
        struct.pack_into("<i", bad, 4 * word, value)
        path = tmp / f"bad_{word}.bin"
        path.write_bytes(bad)
        p = run([b / "golf_infer", path, "--logits-ids", "1 2"], expect=None)
        R.check(f"header: word {word} = {value} is refused naming {mention}", p.returncode == 1 and mention in p.stderr
                and str(path) in p.stderr, p.stderr.strip()[-200:])


def main():
    b, shared, keep = binary_test_args(__doc__)
    R = Results()
    tmp = Path(tempfile.mkdtemp(prefix="test_arch_"))
    try:
        require_binaries(b, "test_arch")
        if not (shared / "tokenizers" / "fineweb_1024_bpe.model").exists():
            R.skip("everything", f"no shared data in {shared} (pass --shared DIR)")
        else:
            val = make_val_shards(b, shared, tmp)
            run_groups(R, [(check_logits, (R, b, tmp)), (check_blob, (R, b, shared, tmp, val)), (check_header, (R, b, tmp)), (check_versions, (R, b, tmp))])
    finally:
        R.cleanup(tmp, keep)
    R.finish()

if __name__ == "__main__":
    main()
