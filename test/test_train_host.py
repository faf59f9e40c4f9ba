#!/usr/bin/python3
"""CPU tests of train_golf.cu's host code (built with nvcc -DTESTING into test/train_host.cu's driver; no GPU
needed), against test/reference.py:

  build      train_golf.cu compiles with nvcc (skipped, with a message, when nvcc is missing)
  config     defaults equal reference.py's (train_gpt.py's) for every shared name; environment < flag;
             unknown flags and bad values are usage errors; validation of world sizes and shapes
  batches    for world sizes 1, 2, 4, 8 the tokens all ranks read over the micro-steps of a step are the
             reference's global batch, step after step
  schedule   lr_mul (iteration and wallclock warmdown, with and without a GPTQ reserve), the QAT start and the Muon
             momentum warmup equal the reference's
  checkpoint the seeded init written by train_golf loads strictly into the reference and has its shapes
  export     train_golf's export path writes the same blob bytes as golf_export for the same scheme, and with
             GPTQ_RESERVE_SECONDS the same as golf_export --gptq on the same training tokens
  mpi        with `mpirun -np 4` over MPI alone: local ranks on one host, each rank's data span, the stop
             step agreed by all ranks

Usage: /usr/bin/python3 test/test_train_host.py [--nvcc PATH] [--shared DIR]
The last line printed is "N passed, M failed, K skipped"; exit status 1 if anything failed.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "test"))
import reference  # noqa: E402
from harness import Results  # noqa: E402

TINY = ["--num-layers", "2", "--model-dim", "64", "--num-heads", "2", "--num-kv-heads", "1", "--train-seq-len", "32"]


def run(cmd, env=None):
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env)


def parse_config(text):
    out = {}
    for line in text.splitlines():
        if line.startswith("config "):
            k, v = line[7:].split("=", 1)
            out[k] = v
    return out


def check_config(R, exe):
    p = run([exe, "config"], env={k: v for k, v in os.environ.items() if not k.isupper() or k in ("PATH", "HOME")})
    got = parse_config(p.stdout)
    ref = reference.default_config()
    bad = []
    for name, value in got.items():
        key = name.lower()
        if not hasattr(ref, key) or key in ("data_path", "tokenizer_path"):
            continue
        want = getattr(ref, key)
        if (float(value) if isinstance(want, (int, float)) else value) != (float(want) if isinstance(want, (int, float)) else want):
            bad.append(f"{name}={value} vs {want}")
    shared = [n for n in got if hasattr(ref, n.lower())]
    R.check("config defaults equal the reference's (train_gpt.py's)", p.returncode == 0 and len(shared) >= 35 and not bad,
            f"{len(shared)} shared names; " + "; ".join(bad))
    env = dict(os.environ, NUM_LAYERS="5", MATRIX_LR="0.02")
    got = parse_config(run([exe, "config", "--num-layers", "7"], env=env).stdout)
    R.check("config: a flag beats the environment, the environment beats the default",
            got.get("NUM_LAYERS") == "7" and got.get("MATRIX_LR") == "0.02", f"NUM_LAYERS={got.get('NUM_LAYERS')} MATRIX_LR={got.get('MATRIX_LR')}")
    for args, why in [(["--bogus", "1"], "unknown flag"), (["--num-layers", "x"], "not an integer"), (["--num-layers"], "missing value")]:
        p = run([exe, "config", *args])
        R.check(f"config: {why} is a usage error (exit 2)", p.returncode == 2 and p.stderr.strip() != "", p.stderr.strip()[:100])
    cases = [("1", [], True), ("8", [], True), ("3", [], False), ("1", ["--train-batch-tokens", "1000"], False),
             ("1", ["--model-dim", "100", "--num-heads", "3"], False), ("1", ["--num-heads", "32", "--model-dim", "512"], False),
             ("1", ["--quant", "int3"], False), ("2", ["--val-batch-size", "1024"], False),
             ("1", ["--qat", "1", "--qat-start-frac", "0.9", "--ema-decay", "0.997", "--gptq-reserve-seconds", "30"], True),
             ("1", ["--qat-start-frac", "1.5"], False), ("1", ["--qat", "2"], False), ("1", ["--ema-decay", "1"], False),
             ("1", ["--gptq-reserve-seconds", "600"], False), ("1", ["--gptq-reserve-seconds", "5", "--gptq-tokens", "100"], False)]
    for world, args, ok in cases:
        p = run([exe, "validate", world, *args])
        R.check(f"validate world {world} {' '.join(args) or '(defaults)'} -> {'ok' if ok else 'rejected'}",
                (p.returncode == 0) == ok, p.stdout.strip())


def check_batches(R, exe, shared):
    pattern = str(shared / "data" / "sample_sp1024" / "fineweb_train_*.bin")
    batch, seq, steps = 8 * 64, 32, 3
    loader = reference.TrainLoader(pattern, batch, seq)
    want = [loader.next_batch() for _ in range(steps)]
    for world in (1, 2, 4, 8):
        p = run([exe, "batches", pattern, batch, seq, world, steps, 1024])
        lines = p.stdout.splitlines()
        ok = p.returncode == 0 and len(lines) == 2 * steps
        for s in range(steps if ok else 0):
            x = np.array(lines[2 * s].split()[1:], dtype=np.int64)
            y = np.array(lines[2 * s + 1].split()[1:], dtype=np.int64)
            ok &= np.array_equal(x, want[s][0].numpy().reshape(-1)) and np.array_equal(y, want[s][1].numpy().reshape(-1))
        R.check(f"batches: world {world} ({8 // world} micro-steps) reads the reference's global batch, {steps} steps", ok, p.stderr.strip()[:200])


def check_schedule(R, exe):
    """lr_mul, qat_active and the momentum warmup against the reference's; GPTQ_RESERVE_SECONDS=R trains under
    a cap of MAX_WALLCLOCK_SECONDS - R, which is the reference's schedule with that cap"""
    for args in (["--iterations", "100", "--warmdown-iters", "30", "--max-wallclock-seconds", "0", "--qat", "1", "--qat-start-frac", "0.25"],
                 ["--iterations", "1000", "--warmdown-iters", "150", "--max-wallclock-seconds", "10", "--qat", "1", "--qat-start-frac", "0.5"],
                 ["--iterations", "1000", "--warmdown-iters", "150", "--max-wallclock-seconds", "10", "--gptq-reserve-seconds", "3",
                  "--qat", "1", "--qat-start-frac", "0.8"],
                 ["--iterations", "20", "--warmdown-iters", "0"], ["--muon-momentum-warmup-steps", "7", "--iterations", "10"]):
        p = run([exe, "schedule", *args])
        values = {a[2:].replace("-", "_"): (float(b) if "." in b or "seconds" in a or "frac" in a else int(b)) for a, b in zip(args[::2], args[1::2])}
        values["max_wallclock_seconds"] = values.get("max_wallclock_seconds", 600.0) - values.pop("gptq_reserve_seconds", 0.0)
        cfg = reference.default_config(**values)
        bad, n = [], 0
        for line in p.stdout.splitlines():
            f = line.split()
            if f[0] == "lr":
                got, want = float(f[3]), reference.lr_mul(cfg, int(f[1]), float(f[2]))
            elif f[0] == "qat":
                got, want = int(f[3]), int(reference.qat_active(cfg, int(f[1]), float(f[2])))
            else:
                got, want = float(f[2]), reference.muon_momentum_at(cfg, int(f[1]))
            n += 1
            if abs(got - want) > 1e-12 * max(1.0, abs(want)):   # both are double-precision evaluations of one formula
                bad.append(line + f" (reference {want})")
        R.check(f"schedule {' '.join(args)}: lr_mul, QAT start and momentum equal the reference's", p.returncode == 0 and n > 0 and not bad,
                f"{n} values; " + "; ".join(bad[:3]))


def check_checkpoint_export(R, exe, tmp, shared):
    ck = tmp / "init.ckpt"
    p = run([exe, "checkpoint", ck, *TINY, "--tie-embeddings", "0"])
    ok = p.returncode == 0
    detail = p.stderr.strip()[:200]
    if ok:
        try:
            model, cfg, steps = reference.load(ck)
            c = reference.read_container(ck)
            lm = c.tensors["lm_head.weight"]
            proj = c.tensors["blocks.0.attn.proj.weight"]
            emb = c.tensors["tok_emb.weight"]
            fc = c.tensors["blocks.0.mlp.fc.weight"]
            ok = (not lm.any() and not proj.any() and abs(float(emb.std()) - 1.0) < 0.05
                  and float(np.abs(fc).max()) <= 1 / np.sqrt(64) and float(c.tensors["blocks.1.attn.q_gain"][0]) == 1.5)
            detail = f"strict load ok; emb std {float(emb.std()):.3f}, |fc| <= {float(np.abs(fc).max()):.4f}"
        except SystemExit as e:
            ok, detail = False, str(e)
    R.check("checkpoint: train_golf's init loads strictly into the reference, init rules hold", ok, detail)
    for quant in ("int8", "int6", "ternary"):
        a, b = tmp / f"train_{quant}.golf", tmp / f"export_{quant}.golf"
        p1 = run([exe, "export", ck, a, "--quant", quant])
        p2 = run([ROOT / "golf_export", ck, b, "--quant", quant, "--quiet"])
        R.check(f"export {quant}: train_golf's blob is byte-identical to golf_export's", p1.returncode == 0 and p2.returncode == 0
                and a.read_bytes() == b.read_bytes(), (p1.stderr + p2.stderr).strip()[:200])
    data = shared / "data" / "sample_sp1024"
    if not data.exists():
        R.skip("export GPTQ", f"no shards in {shared}")
        return
    a, b = tmp / "train_gptq.golf", tmp / "export_gptq.golf"
    p1 = run([exe, "export", ck, a, *TINY, "--quant", "int6", "--gptq-reserve-seconds", "1", "--gptq-tokens", "4096", "--data-path", data])
    p2 = run([ROOT / "golf_export", ck, b, "--quant", "int6", "--gptq", data / "fineweb_train_*.bin", "--gptq-tokens", "4096", "--gptq-seq-len", "32", "--quiet"])
    R.check("export GPTQ (GPTQ_RESERVE_SECONDS > 0): train_golf's blob is byte-identical to golf_export --gptq's", p1.returncode == 0 and p2.returncode == 0
            and a.read_bytes() == b.read_bytes(), (p1.stderr + p2.stderr).strip()[:200])


def check_mpi(R, nvcc, tmp, shared):
    """the host side of multi-GPU runs over MPI alone: local ranks, data spans, the agreed stop"""
    mpicc, mpirun = shutil.which("mpicc"), shutil.which("mpirun")
    if not mpicc or not mpirun:
        R.skip("mpi", "no mpicc/mpirun (install libopenmpi-dev openmpi-bin)")
        return
    cflags = run([mpicc, "--showme:compile"]).stdout.split()
    lflags = run([mpicc, "--showme:link"]).stdout.split()
    exe = tmp / "train_host_mpi"
    keep = [f for f in cflags + lflags if f.startswith(("-I", "-L", "-l"))]
    p = run([nvcc, "-O1", "-std=c++17", "-DUSE_MPI", f"-I{ROOT}", "-o", exe, ROOT / "test" / "train_host.cu", "-lcublas", *keep])
    if not R.check("mpi: train_golf.cu's host code builds with MPI", p.returncode == 0, p.stderr.strip()[-400:]):
        return
    pattern = str(shared / "data" / "sample_sp1024" / "fineweb_train_*.bin")
    tokens = reference.TokenStream(pattern).take(4 * 65)
    for reached in (-1, 2):
        p = run([mpirun, "--allow-run-as-root", "--oversubscribe", "-np", "4", exe, "mpi", pattern, "64", reached],
                env=dict(os.environ, OMPI_MCA_btl="self,vader", OMPI_MCA_rmaps_base_oversubscribe="1"))
        rows = sorted(line.split() for line in p.stdout.splitlines() if line.startswith("rank "))
        ok = p.returncode == 0 and len(rows) == 4
        for r in rows if ok else []:
            rank, world, local, x0, stop = int(r[1]), int(r[3]), int(r[5]), int(r[7]), int(r[9])
            ok &= world == 4 and local == rank and x0 == int(tokens[rank * 65]) and stop == (1 if reached >= 0 else 0)
        R.check(f"mpi: 4 ranks on one host: local ranks 0..3, each its own span, stop agreed ({'rank 2 reached the cap' if reached >= 0 else 'none reached'})",
                ok, (p.stdout + p.stderr).strip()[-300:])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nvcc", default=None, help="nvcc to build with (default: PATH, then /usr/local/cuda/bin/nvcc)")
    ap.add_argument("--shared", default=None, help="shared data folder (default: ../shared beside the repository)")
    args = ap.parse_args()
    shared = Path(args.shared).resolve() if args.shared else ROOT.parent / "shared"
    R = Results()
    nvcc = args.nvcc or shutil.which("nvcc") or ("/usr/local/cuda/bin/nvcc" if Path("/usr/local/cuda/bin/nvcc").exists() else None)
    tmp = Path(tempfile.mkdtemp(prefix="test_train_host_"))
    try:
        if not nvcc:
            R.skip("everything", "no nvcc found: train_golf.cu's host code cannot be built here")
        else:
            exe = tmp / "train_host"
            p = run([nvcc, "-O1", "-std=c++17", f"-I{ROOT}", "-o", exe, ROOT / "test" / "train_host.cu", "-lcublas"])
            R.check("build: train_golf.cu's host code compiles with nvcc (-DTESTING)", p.returncode == 0, p.stderr.strip()[-600:])
            if p.returncode == 0:
                for fn, fargs in [(check_config, (R, exe)), (check_batches, (R, exe, shared)), (check_schedule, (R, exe)),
                                  (check_checkpoint_export, (R, exe, tmp, shared)), (check_mpi, (R, nvcc, tmp, shared))]:
                    if fn in (check_batches, check_mpi) and not (shared / "data" / "sample_sp1024").exists():
                        R.skip("batches", f"no shards in {shared}")
                        continue
                    try:
                        fn(*fargs)
                    except Exception as e:  # one group's crash is a failure; the others still run
                        R.check(f"{fn.__name__} ran", False, str(e)[-500:])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    R.finish()


if __name__ == "__main__":
    main()
