#!/usr/bin/env python3
"""dev/outputs_digest.py — what a change of train_golf.cu must leave bit-identical: for each preset (baseline, r0322,
r0405) x PRECISION (fp32, bf16) x ranks (1, 2 torchrun-style), a short train_golf_cpu run at a small width, and of it
the MD5 of final_model.ckpt, of the blob, and of every train and val loss line. A restructure saves the digests
before and checks them after.

Usage: python3 dev/outputs_digest.py --save FILE | --check FILE  [--exe train_golf_cpu] [--shared ../shared] [--only WORD]
  --save   write one line per run: "<run> ckpt:<md5> blob:<md5> log:<md5>"
  --check  run the same and compare with FILE; exit 1 naming each run that differs, 0 when all are equal
Runs use GOLF_EMU_THREADS=1 (the CPU build is bit-reproducible then) and a val set cut to 2,048 tokens. Standard
library only."""
import argparse
import hashlib
import os
import re
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "dev"))
from val_cut import val_cut  # noqa: E402

# the presets keep their structure (layer count, loops, options); the width and the step are cut down
SMALL = {"MODEL_DIM": "64", "NUM_HEADS": "2", "NUM_KV_HEADS": "1", "TRAIN_SEQ_LEN": "64", "TRAIN_BATCH_TOKENS": "1024",
         "VAL_BATCH_SIZE": "1024", "ITERATIONS": "3", "WARMDOWN_ITERS": "1", "MAX_WALLCLOCK_SECONDS": "0",
         "TRAIN_LOG_EVERY": "1", "VAL_LOSS_EVERY": "2", "SEED": "7", "GOLF_EMU_THREADS": "1", "OMP_NUM_THREADS": "1"}
PRESETS = {"baseline": {}, "r0322": {"BIGRAM_VOCAB_SIZE": "256", "BIGRAM_DIM": "32"},
           "r0405": {"TOKENIZER_PATH": "tokenizers/fineweb_8192_bpe.model"}}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def md5(b):
    return hashlib.md5(b).hexdigest()


def run(exe, shared, data, tmp, preset, prec, ranks):
    name = f"{preset}-{prec}-{ranks}rank"
    out = tmp / name
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GOLF_", "RANK", "WORLD_SIZE", "LOCAL_", "MASTER_", "OMPI_", "PMI"))}
    env.update(SMALL, PRESET=preset, PRECISION=prec, DATA_PATH=str(data), OUT_DIR=str(out), RUN_ID=name,
               TOKENIZER_PATH=str(shared / "tokenizers" / "fineweb_1024_bpe.model"))
    env.update({k: (str(shared / v) if k == "TOKENIZER_PATH" else v) for k, v in PRESETS[preset].items()})
    if ranks == 1:
        procs = [subprocess.Popen([str(exe)], env=env, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)]
    else:
        port = str(free_port())
        procs = [subprocess.Popen([str(exe)], env=dict(env, RANK=str(r), WORLD_SIZE=str(ranks), LOCAL_RANK=str(r), MASTER_ADDR="127.0.0.1",
                                                       MASTER_PORT=port, DIST_TIMEOUT="120"),
                                  cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in range(ranks)]
    outs = [p.communicate(timeout=1800) for p in procs]
    if any(p.returncode for p in procs):
        err = next(o for p, o in zip(procs, outs) if p.returncode)
        raise SystemExit(f"outputs_digest: {name} failed: {(err[0][-400:] + err[1][-400:]).strip()}")
    log = "\n".join(l for l in outs[0][0].splitlines() if re.match(r"step:\d+/\d+ (train_loss|val_loss)|final_", l))
    log = re.sub(r" (train_time|step_avg|eta|eval_time):\S+", "", log)   # times differ run to run
    blobs = sorted(out.glob("*.golf")) or sorted(out.glob("final_model*.bin"))
    ck = out / "final_model.ckpt"
    return name, (f"ckpt:{md5(ck.read_bytes()) if ck.exists() else 'none'} blob:{md5(blobs[0].read_bytes()) if blobs else 'none'} "
                  f"log:{md5(log.encode())}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--save", metavar="FILE", help="write the digests to FILE")
    g.add_argument("--check", metavar="FILE", help="compare with the digests in FILE")
    ap.add_argument("--exe", default=str(ROOT / "train_golf_cpu"), help="the CPU build (default: train_golf_cpu)")
    ap.add_argument("--shared", default=str(ROOT.parent / "shared"), help="shared data folder (data/sample_sp1024, tokenizers)")
    ap.add_argument("--only", default="", help="only the runs whose name contains WORD")
    a = ap.parse_args()
    exe, shared = Path(a.exe).resolve(), Path(a.shared).resolve()
    if not exe.exists():
        raise SystemExit(f"outputs_digest: {exe} is missing: run make cpu first")
    want = {}
    if a.check:
        try:
            want = dict(l.split(" ", 1) for l in Path(a.check).read_text().splitlines() if l.strip())
        except (OSError, ValueError) as e:
            raise SystemExit(f"outputs_digest: {a.check}: cannot read digests ({e})")
    with tempfile.TemporaryDirectory(prefix="outputs_digest_") as t:
        tmp = Path(t)
        data = val_cut(shared / "data" / "sample_sp1024", tmp / "data", 2048)
        got, bad = {}, []
        for preset in PRESETS:
            for prec in ("fp32", "bf16"):
                for ranks in (1, 2):
                    if a.only and a.only not in f"{preset}-{prec}-{ranks}rank":
                        continue
                    name, d = run(exe, shared, data, tmp, preset, prec, ranks)
                    got[name] = d
                    same = "" if not a.check else ("  same" if want.get(name) == d else f"  DIFFERS (saved: {want.get(name, 'none')})")
                    print(f"{name} {d}{same}", flush=True)
                    if a.check and want.get(name) != d:
                        bad.append(name)
    if a.save:
        Path(a.save).write_text("".join(f"{k} {v}\n" for k, v in got.items()))
        print(f"outputs_digest: {len(got)} runs saved to {a.save}")
        return 0
    print(f"outputs_digest: {len(got) - len(bad)} of {len(got)} runs identical" + (f"; differ: {', '.join(bad)}" if bad else ""))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
