#!/usr/bin/python3
"""Bad input to every command-line tool, as a new user would give it: one table per tool (tokenize, golf_infer,
golf_export, dev/convert_pt.py, test/reference.py, dev/fit.sh, dev/submit.sh, dev/plot.py, dev/significance.py and
the other dev/*.sh). Each row is a command run in a work folder holding small inputs (a checkpoint, its blob, a
checkpoint with a NaN, a state_dict, text, a run folder), the exit status it must give and a phrase its message
must hold. For every row: that status, that phrase, no Python traceback, no crash, and the work folder exactly as
before (nothing written, no input touched, nothing left half-written).

Usage: /usr/bin/python3 test/test_badinput.py [--bin DIR] [--shared DIR] [--keep]
The last line printed is "N passed, M failed, K skipped"; exit status 1 if anything failed.
"""

import hashlib
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "test"))
import reference  # noqa: E402
from harness import Results, binary_test_args, require_binaries, run_groups  # noqa: E402
from test_submit import make_run  # noqa: E402

PY = sys.executable
TINY = ["--num-layers", "2", "--model-dim", "32", "--num-heads", "2", "--num-kv-heads", "1", "--train-seq-len", "32"]


def snapshot(folder):
    """Every file and folder under folder: relative path -> content hash (None for a folder)."""
    return {str(p.relative_to(folder)): None if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*"))}


def make_inputs(b, work):
    """The work folder's inputs: m.ckpt (a tiny model), m.golf (its blob), nan.ckpt (one NaN weight), ok.pt and
    nan.pt (state_dicts), docs.jsonl, shards/ (tokenize's output), junk.golf (not a blob) and a run folder whose
    final_model.golf is not a blob."""
    subprocess.run([PY, ROOT / "test" / "reference.py", "init", *TINY, "--out", work / "m.ckpt"], check=True, capture_output=True)
    subprocess.run([b / "golf_export", work / "m.ckpt", work / "m.golf", "--quiet"], check=True, capture_output=True)
    c = reference.read_container(work / "m.ckpt")
    tensors = dict(c.tensors)
    w = np.array(tensors["blocks.1.mlp.proj.weight"])
    w.flat[7] = np.nan
    tensors["blocks.1.mlp.proj.weight"] = w
    reference.write_container(work / "nan.ckpt", c.config, 0, list(tensors.items()))
    sd = reference.init_model(reference.default_config(num_layers=2, model_dim=32, num_heads=2, num_kv_heads=1)).state_dict()
    torch.save(sd, work / "ok.pt")
    sd["blocks.0.mlp.fc.weight"][0, 0] = float("nan")
    torch.save(sd, work / "nan.pt")
    (work / "docs.jsonl").write_text('{"text": "one document"}\n{"text": "another document"}\n')
    subprocess.run([b / "tokenize", "shards", "--byte260", "--out", work / "shards", "--val-docs", "1", "--quiet", work / "docs.jsonl"],
                   check=True, capture_output=True)
    (work / "caseops_bad.jsonl").write_text('{"text": "fine"}\n{"text": "\\ue001"}\n')   # TITLE with no letter after it
    (work / "caseops_val").mkdir()   # a val shard whose byte sidecar holds one count fewer than its tokens
    shard = (work / "shards" / "fineweb_val_000000.bin").read_bytes()
    count = (len(shard) - 1024) // 2 - 1
    (work / "caseops_val" / "fineweb_val_000000.bin").write_bytes(shard)
    (work / "caseops_val" / "fineweb_val_bytes_000000.bin").write_bytes(shard[:8] + count.to_bytes(4, "little") + shard[12:1024] + b"\1\0" * count)
    (work / "junk.golf").write_bytes(b"not a blob\n" * 40)
    (work / "train.txt").write_text("step:1/10 train_loss:6.0 train_time:10ms step_avg:10.00ms\n")
    run = make_run(work / "run", 1, blob_bytes=5000)
    (run / "final_model.golf").write_bytes(b"\0" * 5000)
    (work / "records").mkdir()


def tables(b, shared):
    """{tool: [(what, argv, exit status, phrase of the message)]}; argv runs in the work folder."""
    tok = str(shared / "tokenizers" / "fineweb_1024_bpe.model")
    val = str(shared / "data" / "sample_sp1024" / "fineweb_val_000000.bin")
    train = str(shared / "data" / "sample_sp1024" / "fineweb_train_000000.bin")
    T, I, E = str(b / "tokenize"), [str(b / "golf_infer"), "m.golf"], [str(b / "golf_export"), "m.ckpt"]
    gen = [*I, "--tokenizer", tok, "--generate-ids", "1 2"]
    ev = [*I, "--tokenizer", tok, "--val", val]
    ref = [PY, str(ROOT / "test" / "reference.py")]
    dev = ROOT / "dev"
    return {
        "tokenize": [
            ("--vocab-size past 2^32 (used to wrap)", [T, "lut", "--byte260", "--vocab-size", "4294968320"], 2, "--vocab-size needs an integer in 0..16777216"),
            ("--vocab-size huge (used to hang)", [T, "lut", "--byte260", "--vocab-size", "99999999999"], 2, "--vocab-size needs an integer"),
            ("--vocab-size negative", [T, "lut", "--byte260", "--vocab-size", "-1"], 2, "--vocab-size needs an integer"),
            ("--shard-tokens past the int32 count", [T, "shards", "--byte260", "--out", "new", "--shard-tokens", "9999999999", "docs.jsonl"], 2,
             "--shard-tokens needs an integer in 1..2147483647"),
            ("--shard-tokens 0", [T, "shards", "--byte260", "--out", "new", "--shard-tokens", "0", "docs.jsonl"], 2, "--shard-tokens needs an integer"),
            ("--val-docs not a number", [T, "shards", "--byte260", "--out", "new", "--val-docs", "ten", "docs.jsonl"], 2, "--val-docs needs an integer"),
            ("--model a folder", [T, "info", "--model", "shards"], 1, "it is a folder, not a file"),
            ("an input file that is a folder (no output folder made)", [T, "shards", "--byte260", "--out", "new", "shards"], 1, "it is a folder"),
            ("encode of a folder", [T, "encode", "--model", tok, "shards"], 1, "it is a folder"),
            ("an input that is one of the output shards", [T, "shards", "--byte260", "--out", "shards", "--force", "shards/fineweb_val_000000.bin"],
             1, "the run would replace it"),
            ("an unknown last flag", [T, "decode", "--model", tok, "--bogus"], 2, "unknown flag '--bogus'"),
            ("a known last flag without its value", [T, "shards", "--byte260", "--out", "new", "docs.jsonl", "--empty"], 2, "'--empty' needs a value"),
            ("an unknown command", [T, "tokenise"], 2, "unknown command"),
            ("--caseops with --byte260", [T, "shards", "--caseops", "--byte260", "--out", "new", "docs.jsonl"], 2, "--caseops needs --model"),
            ("caseops --decode of malformed CaseOps text", [T, "caseops", "--decode", "caseops_bad.jsonl"], 1, "caseops_bad.jsonl:2: not CaseOps text"),
        ],
        "golf_infer": [
            ("-n negative (used to allocate 2^64 bytes)", [*gen, "-n", "-5"], 2, "-n '-5': not an integer in [1, 1048576]"),
            ("-n 0", [*gen, "-n", "0"], 2, "-n '0'"),
            ("--temp nan", [*gen, "--temp", "nan"], 2, "--temp 'nan': not a number"),
            ("--temp negative", [*gen, "--temp", "-1"], 2, "--temp '-1'"),
            ("--temp inf", [*gen, "--temp", "inf"], 2, "--temp 'inf'"),
            ("--top-k negative", [*gen, "--top-k", "-3"], 2, "--top-k '-3'"),
            ("--seed not a number (used to be 0)", [*gen, "--seed", "abc"], 2, "--seed 'abc'"),
            ("--max-tokens negative (used to score everything)", [*ev, "--max-tokens", "-4"], 2, "--max-tokens '-4'"),
            ("--seq-len negative (used to be ignored)", [*ev, "--seq-len", "-64"], 2, "--seq-len '-64'"),
            ("--seq-len with trailing letters", [*ev, "--seq-len", "64x"], 2, "--seq-len '64x'"),
            ("--stride 1.5", [*ev, "--stride", "1.5"], 2, "--stride '1.5': not an integer"),
            ("--tokenizer a folder (used to allocate 2^63 bytes)", [*I, "--tokenizer", "shards", "--val", val], 1, "'shards': it is a folder"),
            ("--val matching a folder", [*I, "--tokenizer", tok, "--val", "shard*"], 1, "it is a folder"),
            ("MODEL a folder", [str(b / "golf_infer"), "shards", "--logits-ids", "1"], 1, "it is a folder"),
            ("a byte sidecar holding one count fewer than its val shard's tokens", [*I, "--tokenizer", tok, "--val", "caseops_val/fineweb_val_*.bin"], 1,
             "fineweb_val_bytes_000000.bin' holds"),
            ("two modes at once (one used to win silently)", [*gen, "--val", val], 2, "different runs: pass one"),
            ("a last flag without its value", [*I, "--val"], 2, "--val needs a value"),
            ("an unknown last flag", [*I, "--bogus"], 2, "unknown flag '--bogus'"),
        ],
        "golf_export": [
            ("the output is the input (used to replace it)", [*E, "m.ckpt"], 1, "is the input 'm.ckpt'"),
            ("the output is the input spelled otherwise", [*E, "./shards/../m.ckpt"], 1, "is the input"),
            ("the output is a --gptq shard", [*E, "shards/fineweb_val_000000.bin", "--gptq", "shards/fineweb_val_*.bin"], 1, "is the input"),
            ("the output is a folder", [*E, "shards"], 1, "is a folder"),
            ("the output's folder does not exist (used to fail after the export)", [*E, "nowhere/m.golf"], 1, "folder 'nowhere' does not exist"),
            ("the checkpoint is a folder (used to allocate 2^63 bytes)", [str(b / "golf_export"), "shards", "x.golf"], 1, "it is a folder"),
            ("a NaN weight (used to export a valid blob)", [str(b / "golf_export"), "nan.ckpt", "x.golf"], 1,
             "tensor 'blocks.1.mlp.proj.weight' holds a non-finite value"),
            ("--sdclip-k 0 (used to export an all-zero model)", [*E, "x.golf", "--clip", "sdclip", "--sdclip-k", "0"], 2, "--sdclip-k '0'"),
            ("--sdclip-k nan", [*E, "x.golf", "--clip", "sdclip", "--sdclip-k", "nan"], 2, "--sdclip-k 'nan'"),
            ("--group 1.5 (used to be truncated)", [*E, "x.golf", "--group", "1.5"], 2, "--group '1.5': not an integer"),
            ("--budget 0", [*E, "x.golf", "--budget", "0"], 2, "--budget '0'"),
            ("--gptq-tokens negative", [*E, "x.golf", "--gptq", train, "--gptq-tokens", "-1"], 2, "--gptq-tokens '-1'"),
            ("--dump in a missing folder (used to fail after the export)", [*E, "x.golf", "--dump", "nowhere/dump"], 1,
             "--dump 'nowhere/dump': cannot create the folder"),
            ("--dump a file", [*E, "x.golf", "--dump", "docs.jsonl"], 1, "exists and is not a folder"),
            ("--dump-hessians without --gptq", [*E, "x.golf", "--dump-hessians", "hess"], 2, "--dump-hessians needs --gptq"),
            ("--measure a folder", [str(b / "golf_export"), "--predict", "--num-layers", "2", "--model-dim", "32", "--mlp-mult", "2",
                                    "--vocab-size", "1024", "--num-heads", "2", "--num-kv-heads", "1", "--measure", "shards"], 1, "it is a folder"),
            ("--measure not a blob", [str(b / "golf_export"), "--predict", "--num-layers", "2", "--model-dim", "32", "--mlp-mult", "2",
                                      "--vocab-size", "1024", "--num-heads", "2", "--num-kv-heads", "1", "--measure", "junk.golf"], 1, "not a .golf blob"),
            ("an unknown last flag (used to read as 'needs a value')", [*E, "x.golf", "--bogus"], 2, "unknown flag '--bogus'"),
            ("a last flag without its value", [*E, "x.golf", "--quant"], 2, "--quant needs a value"),
        ],
        "convert_pt.py": [
            ("the output is the input (used to replace it)", [PY, str(dev / "convert_pt.py"), "ok.pt", "./ok.pt"], 1, "is the input"),
            ("the output's folder does not exist (used to be a traceback)", [PY, str(dev / "convert_pt.py"), "ok.pt", "nowhere/x.ckpt"], 1,
             "folder nowhere does not exist"),
            ("a NaN tensor", [PY, str(dev / "convert_pt.py"), "nan.pt", "x.ckpt"], 1, "blocks.0.mlp.fc.weight holds non-finite values"),
            ("a folder as the input", [PY, str(dev / "convert_pt.py"), "shards", "x.ckpt"], 1, "no such file"),
        ],
        "reference.py": [
            ("--iterations -1 (used to run forever)", [*ref, "train", "--iterations", "-1", "--out", "x.ckpt"], 1, "ITERATIONS=-1 must be >= 0"),
            ("--max-wallclock-seconds nan", [*ref, "config", "--max-wallclock-seconds", "nan"], 1, "MAX_WALLCLOCK_SECONDS=nan must be finite"),
            ("--beta2 1", [*ref, "config", "--beta2", "1"], 1, "must be in [0, 1)"),
            ("--train-batch-tokens 0", [*ref, "config", "--train-batch-tokens", "0"], 1, "TRAIN_BATCH_TOKENS and VAL_BATCH_SIZE must be positive"),
            ("--grad-accum 0 (used to be a traceback)", [*ref, "train", "--grad-accum", "0"], 1, "--grad-accum must be >= 1"),
            ("--max-tokens 0", [*ref, "eval", "--max-tokens", "0"], 1, "--max-tokens must be >= 1"),
            ("--out in a missing folder (used to be a traceback)", [*ref, "init", *TINY, "--out", "nowhere/x.ckpt"], 1, "folder nowhere does not exist"),
            ("--out a folder", [*ref, "init", *TINY, "--out", "shards"], 1, "is a folder"),
            ("--out the --ckpt it starts from", [*ref, "train", "--ckpt", "m.ckpt", "--out", "./m.ckpt"], 1, "is the input"),
        ],
        "fit.sh": [
            ("a relative model path (used to be 'no such model file')", ["bash", str(dev / "fit.sh"), "junk.golf"], 1, "neither a .golf blob"),
            ("--budget not a number", ["bash", str(dev / "fit.sh"), "m.golf", "--budget", "abc"], 1, "--budget 'abc'"),
            ("a malformed shape (used to print n/a and exit 0)", ["env", "SHAPES=9x512", "bash", str(dev / "fit.sh"), "m.golf"], 1,
             "shape '9x512' in SHAPES"),
            ("an unknown scheme", ["env", "SCHEMES=int7", "bash", str(dev / "fit.sh"), "m.golf"], 1, "scheme 'int7' in SCHEMES"),
            ("an impossible shape (used to print n/a and exit 0)", ["env", "SHAPES=9x500x2x1024", "SCHEMES=int8", "bash", str(dev / "fit.sh"),
                                                                    "m.golf"], 1, "num_heads must divide model_dim"),
            ("HEADS with one number", ["env", "HEADS=8", "bash", str(dev / "fit.sh"), "m.golf"], 1, "HEADS='8'"),
        ],
        "submit.sh": [
            ("a final_model.golf that is not a blob", ["bash", str(dev / "submit.sh"), "--records", "records", "--date", "2026-11-25", "run", "X"],
             1, "not a .golf blob"),
            ("an impossible --date", ["bash", str(dev / "submit.sh"), "--records", "records", "--date", "2026-02-30", "run", "X"], 2,
             "--date '2026-02-30' is not a calendar date"),
            ("--baseline not a loss", ["bash", str(dev / "submit.sh"), "--records", "records", "--baseline", "nan", "run", "X"], 2, "--baseline 'nan'"),
            ("a missing records folder is not left behind", ["bash", str(dev / "submit.sh"), "--records", "records/new", "--date", "2026-11-25",
                                                             "run", "X"], 1, "not a .golf blob"),
        ],
        "plot.py, significance.py": [
            ("plot -o in a missing folder (used to be a traceback)", [PY, str(dev / "plot.py"), "-o", "nowhere/x.png", "train.txt"], 2,
             "folder nowhere does not exist"),
            ("significance of a NaN value", [PY, str(dev / "significance.py"), "--baseline", "2", "--values", "nan", "1"], 2, "not a finite number"),
            ("significance with an infinite baseline", [PY, str(dev / "significance.py"), "--baseline", "inf", "--values", "1", "2"], 2,
             "--baseline inf"),
            ("significance of seeds without spread (used to print nan)", [PY, str(dev / "significance.py"), "--baseline", "2", "--values", "1", "1"],
             1, "no spread"),
        ],
        "other dev/*.sh": [
            ("gpu_check.sh --k without its value", ["bash", str(dev / "gpu_check.sh"), "--k"], 2, "--k needs a value"),
            ("gpu_check.sh --k not a number", ["bash", str(dev / "gpu_check.sh"), "--k", "x"], 2, "--k 'x'"),
            ("bench_train.sh --warm not below --steps", ["bash", str(dev / "bench_train.sh"), "--steps", "5", "--warm", "10"], 2,
             "--steps must exceed --warm"),
            ("quickstart.sh with an argument (used to start installing)", ["bash", str(dev / "quickstart.sh"), "--install"], 2, "takes no arguments"),
            ("bench_tokenize.sh REPEAT=0", ["env", "REPEAT=0", "bash", str(dev / "bench_tokenize.sh")], 2, "REPEAT='0'"),
            ("bench_compress.sh with two checkpoints", ["bash", str(dev / "bench_compress.sh"), "a", "b"], 2, "at most one CKPT"),
        ],
    }


def check_table(R, tool, rows, work):
    for what, argv, want_rc, phrase in rows:
        before = snapshot(work)
        p = subprocess.run(argv, cwd=work, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)
        after = snapshot(work)
        changed = sorted(k for k in set(before) | set(after) if before.get(k, "-") != after.get(k, "-"))
        msg = (p.stderr + p.stdout).strip()
        ok = p.returncode == want_rc and phrase in msg and "Traceback" not in msg and not changed
        R.check(f"{tool}: {what} -> exit {want_rc}, '{phrase}', nothing written", ok,
                "" if ok else f"exit {p.returncode}, changed {changed[:4]}: " + msg[-400:].replace("\n", " | "))


def check_help(R, b):
    """--help of every tool: its usage on stdout, exit 0."""
    dev = ROOT / "dev"
    for argv in ([b / "tokenize", "--help"], [b / "golf_infer", "--help"], [b / "golf_export", "--help"], ["bash", dev / "fit.sh", "--help"],
                 ["bash", dev / "submit.sh", "--help"], ["bash", dev / "gpu_check.sh", "--help"], ["bash", dev / "bench_train.sh", "--help"],
                 ["bash", dev / "quickstart.sh", "--help"], ["bash", dev / "bench_tokenize.sh", "--help"],
                 ["bash", dev / "bench_compress.sh", "--help"], [PY, dev / "convert_pt.py", "--help"], [PY, ROOT / "test" / "reference.py", "--help"],
                 [PY, dev / "plot.py", "--help"], [PY, dev / "significance.py", "--help"]):
        p = subprocess.run(list(map(str, argv)), capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
        name = Path(str(argv[-2])).name
        R.check(f"{name} --help: its usage on stdout, exit 0", p.returncode == 0 and name.split(".")[0] in p.stdout and not p.stderr,
                "" if p.returncode == 0 else f"exit {p.returncode}: {p.stderr.strip()[-200:]}")


def main():
    b, shared, keep = binary_test_args(__doc__)
    R = Results()
    tmp = Path(tempfile.mkdtemp(prefix="test_badinput_"))
    try:
        require_binaries(b, "test_badinput")
        if not (shared / "tokenizers" / "fineweb_1024_bpe.model").exists() or not (shared / "data" / "sample_sp1024").exists():
            R.skip("everything", f"no shared data in {shared} (pass --shared DIR)")
        else:
            work = tmp / "work"
            work.mkdir()
            make_inputs(b, work)
            run_groups(R, [(check_table, (R, tool, rows, work)) for tool, rows in tables(b, shared).items()] + [(check_help, (R, b))])
    finally:
        R.cleanup(tmp, keep)
    R.finish()


if __name__ == "__main__":
    main()
