#!/usr/bin/python3
"""CPU tests of train_golf.cu's host code (test/train_host.cu's driver, -DTESTING), against test/reference.py.
The checks run on the CPU build of the driver (make test/train_host_cpu, and test/train_host_cpu_mpi where mpicxx
is found), so they need no nvcc and no GPU:

  build      the same driver compiles with nvcc too, plain and with MPI (only this check needs nvcc; skipped, with a
             message, without it)
  config     defaults equal reference.py's (train_gpt.py's) for every shared name; environment < flag;
             unknown flags and bad values are usage errors; validation of world sizes and shapes
  batches    for world sizes 1, 2, 4, 8 the tokens all ranks read over the micro-steps of a step are the
             reference's global batch, step after step
  schedule   lr_mul (iteration and wallclock warmdown, with and without a GPTQ reserve), the QAT start and the Muon
             momentum warmup equal the reference's
  checkpoint the seeded init written by train_golf loads strictly into the reference and has its shapes
  export     train_golf's export path writes the same blob bytes as golf_export for the same scheme, and with
             GPTQ_RESERVE_SECONDS the same as golf_export --gptq on the same training tokens
  mpi        with `mpirun -np 4` over MPI alone (the driver built with MPI): local ranks on one host, each rank's data span, the stop
             step agreed by all ranks, a sum over ranks, the id rank 0 broadcasts
  env        4 processes started torchrun-style (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR=127.0.0.1,
             MASTER_PORT) as two simulated hosts of two: the TCP bootstrap gives all the same id bytes, local ranks,
             data spans, stop and sum as above; wrong or missing variables, a missing rank, a duplicate RANK and another
             WORLD_SIZE are errors that name the problem; a build without MPI refuses to run under mpirun; with
             TORCHELASTIC_USE_AGENT_STORE=True (torchrun's agent holds MASTER_PORT) the ranks meet on MASTER_PORT + 1

Usage: /usr/bin/python3 test/test_train_host.py --exe test/train_host_cpu [--exe-mpi test/train_host_cpu_mpi]
                                                [--nvcc PATH] [--shared DIR]
The last line printed is "N passed, M failed, K skipped"; exit status 1 if anything failed.
"""

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
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


def same_value(text, want):
    """a printed config value against the reference's: numbers compared as floats, the rest as text"""
    if isinstance(want, (int, float)):
        try:
            return float(text) == float(want)
        except ValueError:
            return False
    return text == str(want)


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
    clean = {k: v for k, v in os.environ.items() if not k.isupper() or k in ("PATH", "HOME")}
    for preset in reference.PRESETS:   # train_golf's preset table and the reference's say the same
        p = run([exe, "config", "--preset", preset], env=clean)
        got = parse_config(p.stdout)
        want = {k: v for k, (v, _) in reference.resolve_sources(argparse.Namespace(preset=preset), environ={}).items()}
        bad = [f"{n}={v} vs {want[n.lower()]}" for n, v in got.items() if n.lower() in want and not same_value(v, want[n.lower()])]
        shared = [n for n in got if n.lower() in want]
        R.check(f"preset {preset}: train_golf's resolved config equals the reference's", p.returncode == 0 and len(shared) >= 50 and not bad,
                f"{len(shared)} shared names; " + "; ".join(bad)[:600] + p.stderr.strip()[-200:])
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
                 ["--iterations", "20", "--warmdown-iters", "0"], ["--muon-momentum-warmup-steps", "7", "--iterations", "10"],
                 ["--iterations", "100", "--warmdown-frac", "0.3", "--min-lr-frac", "0.1", "--max-wallclock-seconds", "0"],
                 ["--iterations", "1000", "--warmdown-frac", "0.5", "--min-lr-frac", "0.05", "--max-wallclock-seconds", "10"]):
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


LAUNCH_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def clean_env(**extra):
    """os.environ without launcher variables (torchrun's and mpirun's), plus extra."""
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_VARS and not k.startswith(("OMPI_", "PMI", "PMIX_", "TORCHELASTIC_"))}
    env.update({k: str(v) for k, v in extra.items()})
    return env


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_dist_rows(stdout, world, launch, reached, tokens, local_of):
    """the `train_host dist` lines of all ranks: (ok, detail). Every rank: its world, local rank and launch, x0 =
    the first token of its span (rank * 65 in the stream), the agreed stop, the sum of rank + 1, rank 0's id."""
    rows = sorted((line.split() for line in stdout.splitlines() if line.startswith("rank ")), key=lambda r: int(r[1]))
    if [int(r[1]) for r in rows] != list(range(world)):
        return False, f"ranks reporting: {[r[1] for r in rows]}"
    ids = {r[15] for r in rows}
    bad = []
    for r in rows:
        rank = int(r[1])
        got = (int(r[3]), int(r[5]), r[7], int(r[9]), int(r[11]), float(r[13]))
        want = (world, local_of(rank), launch, int(tokens[rank * 65]), 1 if reached >= 0 else 0, world * (world + 1) / 2)
        if got != want:
            bad.append(f"rank {rank}: {got} != {want}")
    if len(ids) != 1 or len(next(iter(ids))) != 256 or set(next(iter(ids))) == {"0"}:
        bad.append(f"{len(ids)} distinct ids")
    return not bad, "; ".join(bad)


def check_mpi(R, exe, shared, tokens):
    """the host side of multi-GPU runs over MPI alone: local ranks, data spans, the agreed stop, the id broadcast"""
    mpirun = shutil.which("mpirun")
    if not exe or not mpirun:
        R.skip("mpi", "no MPI build of the driver (make test/train_host_cpu_mpi needs mpicxx) or no mpirun "
               "(install libopenmpi-dev openmpi-bin)")
        return
    pattern = str(shared / "data" / "sample_sp1024" / "fineweb_train_*.bin")
    mpi_env = clean_env(OMPI_MCA_btl="self,vader", OMPI_MCA_rmaps_base_oversubscribe="1")
    for reached in (-1, 2):
        p = run([mpirun, "--allow-run-as-root", "--oversubscribe", "-np", "4", exe, "dist", pattern, "64", reached, 30], env=mpi_env)
        ok, detail = check_dist_rows(p.stdout, 4, "mpirun", reached, tokens, lambda r: r)
        ok &= p.returncode == 0
        R.check(f"mpi: 4 ranks on one host: local ranks 0..3, each its own span, stop agreed ({'rank 2 reached the cap' if reached >= 0 else 'none reached'}), "
                "sum and id alike", ok, "" if ok else detail + " " + (p.stdout + p.stderr).strip()[-300:])


def launch_env(exe, pattern, ranks, timeout=20, reached=-1, delay_rank0=0.3):
    """start one `train_host dist` per (rank, env) in ranks, rank 0 last (the others retry until it listens);
    returns [(rank, returncode, stdout, stderr)]"""
    procs = []
    for rank, env in sorted(ranks, key=lambda re: -re[0]):
        if rank == 0:
            time.sleep(delay_rank0)
        procs.append((rank, subprocess.Popen([str(exe), "dist", pattern, "64", str(reached), str(timeout)], env=env,
                                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)))
    out = []
    for rank, p in procs:
        try:
            o, e = p.communicate(timeout=timeout + 30)
        except subprocess.TimeoutExpired:
            p.kill()
            o, e = p.communicate()
            e += "\n(killed: the test's own timeout)"
        out.append((rank, p.returncode, o, e))
    return out


def check_env(R, exe, shared, tokens):
    """torchrun-style launches: the TCP bootstrap and reductions without MPI, and the errors of wrong environments"""
    pattern = str(shared / "data" / "sample_sp1024" / "fineweb_train_*.bin")
    for reached in (-1, 1):
        port = free_port()
        ranks = [(r, clean_env(RANK=r, WORLD_SIZE=4, LOCAL_RANK=r % 2, LOCAL_WORLD_SIZE=2, MASTER_ADDR="127.0.0.1", MASTER_PORT=port))
                 for r in range(4)]
        res = launch_env(exe, pattern, ranks, reached=reached)
        ok, detail = check_dist_rows("".join(o for _, _, o, _ in res), 4, "env", reached, tokens, lambda r: r % 2)
        rcs = [rc for _, rc, _, _ in res]
        R.check(f"env: 4 ranks as 2 hosts x 2 over TCP ({'rank 1 reached the cap' if reached >= 0 else 'none reached'}): the same id "
                "bytes, local ranks 0 1 0 1, each its own span, stop and sum agreed", ok and rcs == [0] * 4,
                f"exit codes {rcs}; {detail}; " + " | ".join(e.strip()[-150:] for _, _, _, e in res if e.strip()))
    # torchrun's agent serves its own store on MASTER_PORT (TORCHELASTIC_USE_AGENT_STORE=True): held here by a
    # listening socket, the ranks must meet on MASTER_PORT + 1
    for _ in range(20):
        agent = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        agent.bind(("0.0.0.0", 0))
        agent.listen(8)
        port = agent.getsockname()[1]
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                probe.bind(("0.0.0.0", port + 1))
            break
        except OSError:
            agent.close()
    try:
        ranks = [(r, clean_env(RANK=r, WORLD_SIZE=2, LOCAL_RANK=r, MASTER_ADDR="127.0.0.1", MASTER_PORT=port, TORCHELASTIC_USE_AGENT_STORE="True"))
                 for r in range(2)]
        res = launch_env(exe, pattern, ranks)
    finally:
        agent.close()
    ok, detail = check_dist_rows("".join(o for _, _, o, _ in res), 2, "env", -1, tokens, lambda r: r)
    R.check("env: under torchrun's agent store (TORCHELASTIC_USE_AGENT_STORE=True, MASTER_PORT taken) the ranks meet on MASTER_PORT + 1",
            ok and [rc for _, rc, _, _ in res] == [0, 0], detail + " | ".join(e.strip()[-150:] for _, _, _, e in res))
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as other:
        other.bind(("0.0.0.0", 0))
        other.listen(8)
        p = run([exe, "dist", pattern, "64", "-1", "5"], env=clean_env(RANK=0, WORLD_SIZE=2, LOCAL_RANK=0, MASTER_ADDR="127.0.0.1",
                                                                        MASTER_PORT=other.getsockname()[1]))
    R.check("env error: MASTER_PORT held by another program -> rank 0 says the port is in use", p.returncode != 0
            and "cannot listen on port" in p.stderr and "pick another MASTER_PORT" in p.stderr, p.stderr.strip()[-200:])
    p = run([exe, "dist", pattern, "64", "-1", "5"], env=clean_env())
    ok, detail = check_dist_rows(p.stdout, 1, "single", -1, tokens, lambda r: 0)
    R.check("env: no launcher variables: one rank, no network", p.returncode == 0 and ok, detail + p.stderr.strip()[-200:])

    # one process with a wrong environment: a clear error naming the variable
    base = dict(RANK=0, WORLD_SIZE=2, LOCAL_RANK=0, MASTER_ADDR="127.0.0.1", MASTER_PORT=free_port())
    cases = [({"LOCAL_RANK": None}, "LOCAL_RANK is not set"), ({"RANK": None, "LOCAL_RANK": None}, "RANK LOCAL_RANK are not set"),
             ({"RANK": "2"}, "RANK=2: must be below WORLD_SIZE=2"), ({"RANK": "x"}, "RANK='x': not an integer"),
             ({"WORLD_SIZE": "0"}, "WORLD_SIZE='0': not an integer in 1..65536"), ({"MASTER_ADDR": None}, "MASTER_ADDR is not set"),
             ({"MASTER_PORT": None}, "MASTER_PORT is not set"), ({"MASTER_PORT": "70000"}, "MASTER_PORT='70000': not an integer in 1..65535"),
             ({"LOCAL_RANK": "2", "LOCAL_WORLD_SIZE": "2"}, "LOCAL_RANK=2: must be below LOCAL_WORLD_SIZE=2")]
    for change, want in cases:
        env = dict(base, **{k: v for k, v in change.items() if v is not None})
        for k, v in change.items():
            if v is None:
                env.pop(k)
        p = run([exe, "dist", pattern, "64", "-1", "5"], env=clean_env(**env))
        R.check(f"env error: {' '.join(f'{k}={v}' if v is not None else f'no {k}' for k, v in change.items())} -> '{want}'",
                p.returncode != 0 and want in p.stderr and "rank " not in p.stdout, p.stderr.strip()[-200:])

    # the bootstrap's own failures, each within a short DIST timeout
    port = free_port()
    env = lambda r, w=2: clean_env(RANK=r, WORLD_SIZE=w, LOCAL_RANK=r, MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
    res = launch_env(exe, pattern, [(1, env(1))], timeout=1)
    R.check("env error: rank 1 alone -> 'cannot reach rank 0' after the timeout", res[0][1] != 0 and "cannot reach rank 0" in res[0][3],
            res[0][3].strip()[-200:])
    res = launch_env(exe, pattern, [(0, env(0, 3)), (1, env(1, 3))], timeout=2)
    r0 = [e for r, _, _, e in res if r == 0][0]
    R.check("env error: rank 2 of 3 missing -> rank 0 says which rank did not connect", all(rc != 0 for _, rc, _, _ in res)
            and "only 1 of 2 other ranks connected" in r0 and "missing: 2" in r0, " | ".join(e.strip()[-200:] for _, _, _, e in res))
    port = free_port()
    res = launch_env(exe, pattern, [(0, env(0, 3)), (1, env(1, 3)), (1, env(1, 3))], timeout=5)
    r0 = [e for r, _, _, e in res if r == 0][0]
    others = [e for r, _, _, e in res if r == 1]
    R.check("env error: two processes with RANK=1 -> rank 0 names the duplicate, the others stop", all(rc != 0 for _, rc, _, _ in res)
            and "two processes say RANK=1" in r0 and all("no id from rank 0" in e for e in others), " | ".join(e.strip()[-200:] for _, _, _, e in res))
    port = free_port()
    res = launch_env(exe, pattern, [(0, env(0, 2)), (1, env(1, 4))], timeout=5)
    r0 = [e for r, _, _, e in res if r == 0][0]
    R.check("env error: ranks with different WORLD_SIZE -> rank 0 says so", all(rc != 0 for _, rc, _, _ in res)
            and "says WORLD_SIZE=4 but rank 0 has WORLD_SIZE=2" in r0, " | ".join(e.strip()[-200:] for _, _, _, e in res))
    mpirun = shutil.which("mpirun")
    if mpirun:
        p = run([mpirun, "--allow-run-as-root", "-np", "1", exe, "dist", pattern, "64", "-1", "5"],
                env=clean_env(OMPI_MCA_btl="self,vader"))
        R.check("env error: a build without MPI under mpirun -> 'this build has no MPI'", p.returncode != 0 and "this build has no MPI" in p.stderr,
                p.stderr.strip()[-200:])


def build_nvcc(R, nvcc, tmp):
    """the driver under nvcc: train_golf.cu's host code compiles for the GPU build too, plain and with MPI"""
    p = run([nvcc, "-O1", "-std=c++17", "-arch=sm_90", f"-I{ROOT}", "-o", tmp / "train_host", ROOT / "test" / "train_host.cu",
             "-lcublas", "-lcublasLt"])
    R.check("build: train_golf.cu's host code compiles with nvcc (-DTESTING)", p.returncode == 0, p.stderr.strip()[-600:])
    mpicc = shutil.which("mpicc")
    if not mpicc:
        R.skip("build with MPI", "no mpicc")
        return
    flags = run([mpicc, "--showme:compile"]).stdout.split() + run([mpicc, "--showme:link"]).stdout.split()
    keep = [f for f in flags if f.startswith(("-I", "-L", "-l"))]
    p = run([nvcc, "-O1", "-std=c++17", "-arch=sm_90", "-DUSE_MPI", f"-I{ROOT}", "-o", tmp / "train_host_mpi",
             ROOT / "test" / "train_host.cu", "-lcublas", "-lcublasLt", *keep])
    R.check("build: train_golf.cu's host code compiles with nvcc and MPI", p.returncode == 0, p.stderr.strip()[-400:])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--exe", required=True, help="the driver's CPU build (make test/train_host_cpu)")
    ap.add_argument("--exe-mpi", default=None, help="the driver's CPU build with MPI (make test/train_host_cpu_mpi)")
    ap.add_argument("--nvcc", default=None, help="nvcc for the build check (default: PATH, then /usr/local/cuda/bin/nvcc; 'none': skip it)")
    ap.add_argument("--shared", default=None, help="shared data folder (default: ../shared beside the repository)")
    args = ap.parse_args()
    shared = Path(args.shared).resolve() if args.shared else ROOT.parent / "shared"
    exe, exe_mpi = Path(args.exe).resolve(), Path(args.exe_mpi).resolve() if args.exe_mpi else None
    for e in (exe, exe_mpi):
        if e and not os.access(e, os.X_OK):
            sys.exit(f"test_train_host: {e} is not an executable: build it first (make {e.relative_to(ROOT) if e.is_relative_to(ROOT) else e})")
    R = Results()
    nvcc = args.nvcc or shutil.which("nvcc") or ("/usr/local/cuda/bin/nvcc" if Path("/usr/local/cuda/bin/nvcc").exists() else None)
    nvcc = None if nvcc == "none" else nvcc
    if nvcc and not shutil.which(nvcc):
        sys.exit(f"test_train_host: --nvcc {nvcc}: not an executable")
    tmp = Path(tempfile.mkdtemp(prefix="test_train_host_"))
    try:
        if nvcc:
            build_nvcc(R, nvcc, tmp)
        else:
            R.skip("build", "no nvcc found: the nvcc compile of the host code is not checked here (every other check runs on the CPU build)")
        have_shards = (shared / "data" / "sample_sp1024").exists()
        tokens = reference.TokenStream(str(shared / "data" / "sample_sp1024" / "fineweb_train_*.bin")).take(8 * 65) if have_shards else None
        for fn, fargs in [(check_config, (R, exe)), (check_batches, (R, exe, shared)), (check_schedule, (R, exe)),
                          (check_checkpoint_export, (R, exe, tmp, shared)), (check_mpi, (R, exe_mpi, shared, tokens)),
                          (check_env, (R, exe, shared, tokens))]:
            if fn in (check_batches, check_mpi, check_env) and not have_shards:
                R.skip(fn.__name__[6:], f"no shards in {shared}")
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
