#!/usr/bin/python3
"""Tests of a train_golf run that survives (the CPU build, train_golf_cpu, with GOLF_EMU_THREADS=1; tiny models):

  resume     1 rank: a run stopped by a NaN injected at step 4 (GOLF_INJECT_NAN) exits 1 naming the step and the
             tensor, with the last good state (after step 3) written; RESUME from it ends with the uninterrupted run's
             final_model.ckpt bit for bit and the same train losses, with EMA on, GRAD_CLIP_NORM, and QAT and the loop
             schedule switching on after the resume point; ON_NONFINITE=skip logs the step and goes on; NaN in the loss
  signals    SIGTERM in mid-run: the step finishes, the state is written, exit 143; RESUME gives the uninterrupted
             bits; SIGINT exits 130; a second SIGTERM exits at once (143, no state line)
  ranks      2 ranks started torchrun-style: the NaN stop on every rank (exit 1) with a state that resumes to the
             uninterrupted 2-rank bits; SIGTERM sent to rank 1 alone stops both after the same step (143) with a state
             that resumes to the same bits; the same NaN stop and resume under mpirun -np 2 (when mpirun exists)
  deadrank   2 ranks, DIST_TIMEOUT=10: rank 1 killed with SIGKILL in mid-run -> rank 0 exits 1 within DIST_TIMEOUT naming
             rank 1 (torchrun-style), and rank 0 killed -> rank 1 exits naming rank 0; rank 1 stopped (SIGSTOP, a hang)
             -> rank 0's watchdog ends it within DIST_TIMEOUT (+ 3 s of polling and exit) naming rank 1 (its heartbeat
             stopped), and rank 0 stopped -> rank 1 names rank 0; 4 ranks, rank 2 stopped -> ranks 0, 1, 3 name rank 2
             (1 and 3 hear only rank 0, which names it to them); under mpirun -np 2 a rank killed ends the job
             (non-zero) within DIST_TIMEOUT, and rank 1 (then rank 0) stopped ends it within DIST_TIMEOUT, the other
             rank naming the stopped one; a rank alive but hung in its work (GOLF_INJECT_HANG: its heartbeat goes on) ->
             every rank exits within DIST_TIMEOUT naming it (torchrun-style rank 1, then rank 0; mpirun rank 1)
  refusals   RESUME of a state written by another config (naming the entries), by another world size, a truncated
             state, a corrupted one, one with a damaged header, a file that is no state, a missing file, each before
             the device is set up and the model allocated (no hardware: or model_params line); CHECKPOINT_EVERY < 0,
             ON_NONFINITE other than stop/skip, a bad GOLF_INJECT_NAN; a CUDA driver older than the runtime
             (GOLF_EMU_DRIVER_VERSION): each exits 1 or 2 with a message naming the file or variable and leaves the
             state file byte for byte unchanged
  badinput   before any work (no hardware: or model_params line): a val shard with a wrong magic, a train shard past the
             first that is truncated, no val shard, a val token >= VOCAB_SIZE, a token >= VOCAB_SIZE in the last of four
             train shards, a tokenizer of another vocabulary size, an OUT_DIR that is a file, numbers out of range
             (TRAIN_SEQ_LEN=0, MATRIX_LR=-1, BETA2=1, ADAM_EPS=0, SDCLIP_K=0) and not finite (GRAD_CLIP_NORM=inf): exit 1
             naming the file or variable, every input byte for byte unchanged, no OUT_DIR and no log written; with 2
             ranks the bad last shard (rank 1's share of the scan) is refused by both, naming it

Usage: /usr/bin/python3 test/test_survive.py [--bin DIR] [--shared DIR] [--keep] [--only GROUP,...]
The last line printed is "N passed, M failed, K skipped"; exit status 1 if anything failed.
"""

import argparse
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "test"))
sys.path.insert(0, str(ROOT / "dev"))
from harness import Results, run_groups  # noqa: E402
from val_cut import val_cut  # noqa: E402

# a tiny model off every default that matters here: EMA, gradient clipping, QAT and the loop schedule switching on
# at step 4 (fraction 0.5 of 6 steps: 0-based step 3), perturbed learning rates
SHAPE = {"NUM_LAYERS": "2", "MODEL_DIM": "64", "NUM_HEADS": "2", "NUM_KV_HEADS": "1", "MLP_MULT": "2", "TRAIN_SEQ_LEN": "64",
         "TRAIN_BATCH_TOKENS": "1024", "VAL_BATCH_SIZE": "1024", "ITERATIONS": "6", "WARMDOWN_ITERS": "2", "MAX_WALLCLOCK_SECONDS": "0",
         "TRAIN_LOG_EVERY": "1", "VAL_LOSS_EVERY": "0", "EMA_DECAY": "0.9", "GRAD_CLIP_NORM": "0.3", "QAT": "1", "QAT_START_FRAC": "0.5",
         "LOOP_ENCODER": "0,1", "LOOP_DECODER": "0,1", "LOOP_START_FRAC": "0.5", "MATRIX_LR": "0.05", "SCALAR_LR": "0.03",
         "GOLF_EMU_THREADS": "1", "OMP_WAIT_POLICY": "passive"}
SWITCH_STEP = 3   # steps done before QAT and the loop schedule switch on


class Ctx:
    def __init__(self, exe, shared, tmp):
        self.exe, self.tmp = exe, tmp
        self.data = val_cut(shared / "data" / "sample_sp1024", tmp / "data", 2048)
        self.tok = shared / "tokenizers" / "fineweb_1024_bpe.model"
        self.base = {}   # name -> (final_model.ckpt bytes, {step: loss}) of the uninterrupted runs

    def env(self, out, **extra):
        e = {k: v for k, v in os.environ.items() if not k.startswith(("GOLF_", "RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_", "OMPI_", "PMI"))}
        e.update(SHAPE, DATA_PATH=str(self.data), TOKENIZER_PATH=str(self.tok), OUT_DIR=str(out), RUN_ID=out.name)
        e.update(extra)
        return e


def losses(text):
    return {int(s): v for s, v in re.findall(r"step:(\d+)/\d+ train_loss:(\S+)", text)}


def tail(p):
    return ((p.stdout or "")[-300:] + " | " + (p.stderr or "")[-300:]).strip()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run1(ctx, name, **extra):
    out = ctx.tmp / name
    return subprocess.run([str(ctx.exe)], env=ctx.env(out, **extra), cwd=ctx.tmp, capture_output=True, text=True, timeout=600), out


def start_ranks(ctx, out, world=2, **extra):
    """world processes started torchrun-style; returns the Popen list (rank order)"""
    port = str(free_port())
    extra = dict({"DIST_TIMEOUT": "60"}, **extra)
    return [subprocess.Popen([str(ctx.exe)], env=ctx.env(out, RANK=str(r), WORLD_SIZE=str(world), LOCAL_RANK=str(r), MASTER_ADDR="127.0.0.1",
                                                     MASTER_PORT=port, **extra),
                             cwd=ctx.tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in range(world)]


def finish(procs, timeout=600):
    outs = [p.communicate(timeout=timeout) for p in procs]
    return [(p.returncode, o[0], o[1]) for p, o in zip(procs, outs)]


def ranks2(ctx, name, **extra):
    out = ctx.tmp / name
    return finish(start_ranks(ctx, out, **extra)), out


def mpirun2(ctx, name, **extra):
    out = ctx.tmp / name
    p = subprocess.run([shutil.which("mpirun"), "--allow-run-as-root", "--oversubscribe", "-np", "2", str(ctx.exe)], env=ctx.env(out, **extra),
                       cwd=ctx.tmp, capture_output=True, text=True, timeout=600)
    return p, out


def same_as(ctx, key, out, text):
    """final_model.ckpt of out equal bit for bit to the uninterrupted run's, and every train loss logged in text too"""
    ck, ref = ctx.base[key]
    f = out / "final_model.ckpt"
    got = losses(text)
    ok = f.exists() and f.read_bytes() == ck and got and all(ref.get(s) == v for s, v in got.items())
    return ok, f"ckpt equal {f.exists() and f.read_bytes() == ck}; losses {got} vs {ref}"


def baseline(R, ctx, key, launch):
    p = launch()
    if key == "1":
        (proc, out) = p
        ok, text = proc.returncode == 0, proc.stdout
        detail = tail(proc)
    else:
        (res, out) = p
        ok, text = all(r[0] == 0 for r in res), res[0][1]
        detail = " | ".join(r[2][-200:] for r in res)
    if R.check(f"uninterrupted run ({key}) ends", ok and (out / "final_model.ckpt").exists(), detail):
        ctx.base[key] = ((out / "final_model.ckpt").read_bytes(), losses(text))
        return True
    return False


def wait_for(path, pattern, proc, limit=300):
    t0 = time.time()
    while time.time() - t0 < limit and proc.poll() is None:
        if path.exists() and re.search(pattern, path.read_text(errors="replace")):
            return True
        time.sleep(0.05)
    return False


def state_step(text):
    m = re.findall(r"state: step:(\d+)/", text) or re.findall(r"after step (\d+)\)", text)
    return int(m[-1]) if m else None


def check_resume(R, ctx):
    if not baseline(R, ctx, "1", lambda: run1(ctx, "base1")):
        return
    p, out = run1(ctx, "nan1", GOLF_INJECT_NAN="4:blocks.1.mlp.fc.weight")
    st = out / "train_state.bin"
    R.check("NaN in a gradient at step 4: exit 1, the step and the tensor named, the last good state written",
            p.returncode == 1 and "non-finite train loss or gradient at step 4" in p.stderr and "blocks.1.mlp.fc.weight" in p.stderr
            and "the last good state (after step 3)" in p.stdout and st.exists() and "step:4/6 train_loss" not in p.stdout, tail(p))
    if not st.exists():
        return
    r, _ = run1(ctx, "nan1", RESUME=str(st))
    ok, detail = same_as(ctx, "1", out, r.stdout)
    R.check(f"RESUME after the NaN stop (state after step 3; QAT and the loop schedule switch on after it) ends bit for bit as the "
            f"uninterrupted run", r.returncode == 0 and "resume: " in r.stdout and ok, detail + " " + tail(r))
    R.check("the resumed run logs QAT switching on at the step after the state", re.search(r"qat:on step:3\b", r.stdout) is not None, tail(r))
    p, out = run1(ctx, "skip1", GOLF_INJECT_NAN="2:loss", ON_NONFINITE="skip")
    R.check("ON_NONFINITE=skip with NaN in the loss at step 2: the step logged as skipped, the run ends (exit 0)",
            p.returncode == 0 and "nonfinite: step:2/6 (train loss nan): its update skipped" in p.stdout and "step:6/6 train_loss" in p.stdout, tail(p))


def check_signals(R, ctx):
    if "1" not in ctx.base and not baseline(R, ctx, "1", lambda: run1(ctx, "base1")):
        return
    for sig, code, name in ((signal.SIGTERM, 143, "SIGTERM"), (signal.SIGINT, 130, "SIGINT")):
        out = ctx.tmp / f"sig_{name}"
        log = ctx.tmp / f"sig_{name}.out"
        with open(log, "w") as f:
            proc = subprocess.Popen([str(ctx.exe)], env=ctx.env(out), cwd=ctx.tmp, stdout=f, stderr=subprocess.STDOUT, text=True)
            seen = wait_for(log, r"step:1/6 train_loss", proc)
            proc.send_signal(sig)
            proc.wait(timeout=300)
        text = log.read_text()
        k = state_step(text)
        R.check(f"{name} in mid-run: the step finishes, the state is written, exit {code}",
                seen and proc.returncode == code and f"signal: {name} during step:{k}/6" in text and (out / "train_state.bin").exists(),
                f"rc {proc.returncode}: {text[-300:]}")
        if name == "SIGTERM" and (out / "train_state.bin").exists():
            R.check("the SIGTERM state lies before the QAT and loop switch", k is not None and k <= SWITCH_STEP, f"state after step {k}")
            r = subprocess.run([str(ctx.exe)], env=ctx.env(out, RESUME=str(out / "train_state.bin")), cwd=ctx.tmp, capture_output=True, text=True)
            ok, detail = same_as(ctx, "1", out, r.stdout)
            R.check("RESUME after SIGTERM ends bit for bit as the uninterrupted run", r.returncode == 0 and ok, detail + " " + tail(r))
    out = ctx.tmp / "sig_twice"
    log = ctx.tmp / "sig_twice.out"
    with open(log, "w") as f:
        proc = subprocess.Popen([str(ctx.exe)], env=ctx.env(out), cwd=ctx.tmp, stdout=f, stderr=subprocess.STDOUT, text=True)
        seen = wait_for(log, r"step:1/6 train_loss", proc)
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        t0 = time.time()
        proc.wait(timeout=300)
    text = log.read_text()
    R.check("a second SIGTERM exits at once (143, no state written)", seen and proc.returncode == 143 and "signal: SIGTERM" not in text
            and not (out / "train_state.bin").exists(), f"rc {proc.returncode} after {time.time() - t0:.1f}s: {text[-200:]}")


def check_ranks(R, ctx):
    if not baseline(R, ctx, "2", lambda: ranks2(ctx, "base2")):
        return
    res, out = ranks2(ctx, "nan2", GOLF_INJECT_NAN="4:blocks.0.attn.c_q.weight")
    st = out / "train_state.bin"
    R.check("2 ranks, NaN at step 4: every rank exits 1, the state written",
            all(r[0] == 1 for r in res) and "blocks.0.attn.c_q.weight" in res[0][2] and st.exists(), " | ".join(r[2][-200:] for r in res))
    if st.exists():
        res, _ = ranks2(ctx, "nan2", RESUME=str(st))
        ok, detail = same_as(ctx, "2", out, res[0][1])
        R.check("2 ranks: RESUME after the NaN stop ends bit for bit as the uninterrupted 2-rank run (Muon's shares, EMA, QAT, loops)",
                all(r[0] == 0 for r in res) and ok, detail + " " + " | ".join(r[2][-200:] for r in res))
        p, _ = run1(ctx, "world1", RESUME=str(st))
        R.check("RESUME of a 2-rank state by one process is refused before any allocation, naming the world sizes",
                p.returncode == 1 and "written by a run of 2 ranks, this one has 1" in p.stderr and "hardware:" not in p.stdout, tail(p))
    out = ctx.tmp / "sig2"
    procs = start_ranks(ctx, out)
    log = ctx.tmp / "sig2_rank0.out"
    t0 = time.time()
    text0 = ""
    while time.time() - t0 < 300 and procs[0].poll() is None:   # rank 0 logs; its pipe is read by the line
        line = procs[0].stdout.readline()
        text0 += line
        if re.search(r"step:1/6 train_loss", line):
            break
    procs[1].send_signal(signal.SIGTERM)
    rest = finish(procs)
    text0 += rest[0][1]
    log.write_text(text0)
    k = state_step(text0)
    R.check("SIGTERM to rank 1 alone: both ranks stop after the same step, exit 143, the state written",
            [r[0] for r in rest] == [143, 143] and k is not None and "signal: SIGTERM" in text0 and (out / "train_state.bin").exists(),
            f"{[r[0] for r in rest]} {text0[-300:]}")
    if (out / "train_state.bin").exists():
        res, _ = ranks2(ctx, "sig2", RESUME=str(out / "train_state.bin"))
        ok, detail = same_as(ctx, "2", out, res[0][1])
        R.check("2 ranks: RESUME after SIGTERM ends bit for bit as the uninterrupted 2-rank run", all(r[0] == 0 for r in res) and ok, detail)
    if not shutil.which("mpirun"):
        R.skip("mpirun -np 2: NaN stop and resume", "no mpirun on this machine")
        return
    p, out = mpirun2(ctx, "mpi2", GOLF_INJECT_NAN="4")
    st = out / "train_state.bin"
    R.check("mpirun -np 2, NaN at step 4: exit non-zero, the state written", p.returncode != 0 and st.exists() and "step 4" in p.stderr, tail(p))
    if st.exists():
        p, _ = mpirun2(ctx, "mpi2", RESUME=str(st))
        ok, detail = same_as(ctx, "2", out, p.stdout)
        R.check("mpirun -np 2: RESUME ends bit for bit as the uninterrupted torchrun-style 2-rank run", p.returncode == 0 and ok, detail + " " + tail(p))


DEAD_TIMEOUT = 10   # DIST_TIMEOUT of the dead-rank runs; the watchdog polls every 0.1 s, a step takes about 1 s here


def line_wait(proc, pattern, limit=300):
    """read proc's stdout by the line until pattern (or its end); returns what was read"""
    text, t0 = "", time.time()
    while time.time() - t0 < limit:
        line = proc.stdout.readline()
        if not line:
            break
        text += line
        if re.search(pattern, line):
            break
    return text


def wait_victim(proc, victim, how, limit):
    """proc (a survivor or mpirun) after victim got signal how: (seconds it took to exit or None, its stderr); the victim is
    ended (killed, and continued when stopped)"""
    os.kill(victim, how)
    t0 = time.time()
    try:
        _, err = proc.communicate(timeout=limit)
        took = time.time() - t0
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        took = None
    try:
        os.kill(victim, signal.SIGKILL)
        os.kill(victim, signal.SIGCONT)
    except ProcessLookupError:
        pass
    return took, err


def mpi_ranks(proc):
    """{rank: pid} of the train_golf_cpu processes below mpirun proc (their OMPI_COMM_WORLD_RANK)"""
    ranks = {}
    for d in Path("/proc").iterdir():
        try:
            stat = (d / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[1]) != proc.pid or "train_golf_cpu" not in (d / "cmdline").read_text():
                continue
            env = dict(v.split("=", 1) for v in (d / "environ").read_bytes().decode(errors="replace").split("\0") if "=" in v)
            ranks[int(env["OMPI_COMM_WORLD_RANK"])] = int(d.name)
        except (OSError, ValueError, IndexError, KeyError):
            continue
    return ranks


def check_deadrank(R, ctx):
    long = dict(ITERATIONS="40", DIST_TIMEOUT=str(DEAD_TIMEOUT))
    limit = DEAD_TIMEOUT + 3
    for victim, how in ((1, signal.SIGKILL), (0, signal.SIGKILL), (1, signal.SIGSTOP), (0, signal.SIGSTOP)):
        procs = start_ranks(ctx, ctx.tmp / f"dead{victim}", **long)
        other = 1 - victim
        line_wait(procs[0], r"step:2/40 train_loss")
        took, err = wait_victim(procs[other], procs[victim].pid, how, DEAD_TIMEOUT + 60)
        procs[victim].communicate()
        name = "SIGKILL" if how == signal.SIGKILL else "SIGSTOP (hung)"
        want = f"rank {other}: .*rank {victim}\\b" if how == signal.SIGKILL else f"rank {other}: .*rank {victim} does not respond"
        R.check(f"torchrun-style: rank {victim} {name} -> rank {other} exits 1 within DIST_TIMEOUT={DEAD_TIMEOUT}s (+3 s), naming it",
                procs[other].returncode == 1 and took is not None and took < limit and re.search(want, err),
                f"rc {procs[other].returncode} after {took}s: {err[-300:]}")
    # 4 ranks: rank 2's heartbeat reaches rank 0 alone, which names it to ranks 1 and 3
    procs = start_ranks(ctx, ctx.tmp / "dead4", world=4, **long)
    line_wait(procs[0], r"step:2/40 train_loss")
    procs[2].send_signal(signal.SIGSTOP)
    t0, ends = time.time(), {}
    for r in (0, 1, 3):
        try:
            _, err = procs[r].communicate(timeout=DEAD_TIMEOUT + 60)
            ends[r] = (procs[r].returncode, time.time() - t0, err)
        except subprocess.TimeoutExpired:
            procs[r].kill()
            ends[r] = (None, None, procs[r].communicate()[1])
    procs[2].kill()
    procs[2].send_signal(signal.SIGCONT)
    procs[2].communicate()
    R.check(f"torchrun-style, 4 ranks: rank 2 SIGSTOP (hung) -> ranks 0, 1 and 3 exit 1 within DIST_TIMEOUT={DEAD_TIMEOUT}s (+3 s), each naming "
            f"rank 2 (1 and 3 as rank 0 reports it)", all(c == 1 and t is not None and t < limit and re.search(f"rank {r}: .*rank 2 does not respond", e)
                                                          for r, (c, t, e) in ends.items()),
            " | ".join(f"rank {r}: rc {c} after {t}s: {e[-200:]}" for r, (c, t, e) in ends.items()))
    # a rank alive (its watchdog beats) whose work never ends: GOLF_INJECT_HANG stops it in step 3 after issuing its
    # forward and backward; rank 0 hears every rank's progress and names the one whose work is not done
    for victim in (1, 0):
        procs = start_ranks(ctx, ctx.tmp / f"hang{victim}", GOLF_INJECT_HANG=f"{victim}:3", **long)
        line_wait(procs[0], r"step:2/40 train_loss")
        t0, ends = time.time(), {}
        for r, p in enumerate(procs):
            try:
                _, err = p.communicate(timeout=DEAD_TIMEOUT + 60)
                ends[r] = (p.returncode, time.time() - t0, err)
            except subprocess.TimeoutExpired:
                p.kill()
                ends[r] = (None, None, p.communicate()[1])
        R.check(f"torchrun-style: rank {victim}'s work hangs in step 3 (GOLF_INJECT_HANG, its heartbeat still beating) -> both ranks exit 1 "
                f"within DIST_TIMEOUT={DEAD_TIMEOUT}s (+3 s) of step 2, each naming rank {victim} as the one that hangs in its work",
                f"rank {victim}: GOLF_INJECT_HANG" in ends[victim][2] and all(
                    c == 1 and t is not None and t < limit and re.search(f"rank {r}: .*rank {victim} hangs in its work", e) for r, (c, t, e) in ends.items()),
                " | ".join(f"rank {r}: rc {c} after {t}s: {e[-250:]}" for r, (c, t, e) in ends.items()))
    if not shutil.which("mpirun"):
        R.skip("mpirun -np 2: a rank killed, a rank stopped", "no mpirun on this machine")
        return
    proc = subprocess.Popen([shutil.which("mpirun"), "--allow-run-as-root", "--oversubscribe", "-np", "2", str(ctx.exe)],
                            env=ctx.env(ctx.tmp / "hangmpi", GOLF_INJECT_HANG="1:3", **long), cwd=ctx.tmp, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    line_wait(proc, r"step:2/40 train_loss")
    t0 = time.time()
    try:
        _, err = proc.communicate(timeout=DEAD_TIMEOUT + 60)
        took = time.time() - t0
    except subprocess.TimeoutExpired:
        proc.kill()
        err, took = proc.communicate()[1], None
    R.check(f"mpirun -np 2: rank 1's work hangs in step 3 (GOLF_INJECT_HANG) -> the job ends (non-zero) within DIST_TIMEOUT={DEAD_TIMEOUT}s "
            f"(+3 s), rank 0 naming rank 1 as the one that hangs in its work", proc.returncode != 0 and took is not None and took < limit
            and re.search(r"rank 0: .*rank 1 hangs in its work", err), f"rc {proc.returncode} after {took}s: {err[-400:]}")
    for how, victim in ((signal.SIGKILL, None), (signal.SIGSTOP, 1), (signal.SIGSTOP, 0)):
        out = ctx.tmp / "deadmpi"
        proc = subprocess.Popen([shutil.which("mpirun"), "--allow-run-as-root", "--oversubscribe", "-np", "2", str(ctx.exe)], env=ctx.env(out, **long),
                                cwd=ctx.tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line_wait(proc, r"step:2/40 train_loss")
        ranks = mpi_ranks(proc)
        if how == signal.SIGKILL:   # the newest process, whichever rank it is
            took, err = wait_victim(proc, max(ranks.values()), how, DEAD_TIMEOUT + 60) if len(ranks) == 2 else (None, "")
            R.check(f"mpirun -np 2: a rank killed with SIGKILL ends the job (non-zero) within DIST_TIMEOUT={DEAD_TIMEOUT}s",
                    len(ranks) == 2 and proc.returncode != 0 and took is not None and took < limit, f"ranks {ranks}, rc {proc.returncode} after {took}s")
            continue
        took, err = wait_victim(proc, ranks[victim], how, DEAD_TIMEOUT + 60) if len(ranks) == 2 else (None, "")
        R.check(f"mpirun -np 2: rank {victim} SIGSTOP (hung) -> the job ends (non-zero) within DIST_TIMEOUT={DEAD_TIMEOUT}s (+3 s), rank {1 - victim} "
                f"naming it", len(ranks) == 2 and proc.returncode != 0 and took is not None and took < limit
                and re.search(f"rank {1 - victim}: .*rank {victim} does not respond", err), f"ranks {ranks}, rc {proc.returncode} after {took}s: {err[-400:]}")


def check_refusals(R, ctx):
    p, out = run1(ctx, "ref", CHECKPOINT_EVERY="3", ITERATIONS="3")
    st = out / "train_state.bin"
    if not R.check("CHECKPOINT_EVERY=3 writes the state after step 3", p.returncode == 0 and "state: step:3/3 written" in p.stdout and st.exists(), tail(p)):
        return
    good = st.read_bytes()
    bad_dir = ctx.tmp / "badstates"
    bad_dir.mkdir(exist_ok=True)
    (bad_dir / "truncated.bin").write_bytes(good[:-100])
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 1
    (bad_dir / "flipped.bin").write_bytes(bytes(flipped))
    damaged = bytearray(good)
    damaged[16 + 5] ^= 0x40   # the parameter count in the header: the size it implies is far beyond the file's
    (bad_dir / "damaged.bin").write_bytes(bytes(damaged))
    (bad_dir / "other.bin").write_bytes(b"not a state at all, just some bytes" * 4)
    cases = [  # (what, environment, exit status, what stderr must hold)
        ("another config", dict(ITERATIONS="3", RESUME=str(st), MATRIX_LR="0.04", EMA_DECAY="0.8"), 1,
         ["written by another config", "there MATRIX_LR=0.050000000000000003, here MATRIX_LR=0.040000000000000001", "EMA_DECAY"]),
        ("a truncated state", dict(ITERATIONS="3", RESUME=str(bad_dir / "truncated.bin")), 1, ["truncated.bin", "wrong size", "truncated or corrupted"]),
        ("a corrupted state", dict(ITERATIONS="3", RESUME=str(bad_dir / "flipped.bin")), 1, ["flipped.bin", "checksum mismatch"]),
        ("a state with a damaged header", dict(ITERATIONS="3", RESUME=str(bad_dir / "damaged.bin")), 1, ["damaged.bin", "wrong size", "its header says"]),
        ("a file that is no state", dict(ITERATIONS="3", RESUME=str(bad_dir / "other.bin")), 1, ["other.bin", "not a train_golf training state"]),
        ("a missing state", dict(ITERATIONS="3", RESUME=str(bad_dir / "missing.bin")), 1, ["missing.bin", "No such file"]),
        ("CHECKPOINT_EVERY=-1", dict(CHECKPOINT_EVERY="-1"), 1, ["CHECKPOINT_EVERY"]),
        ("CHECKPOINT_EVERY_SECONDS=nan", dict(CHECKPOINT_EVERY_SECONDS="nan"), 1, ["CHECKPOINT_EVERY_SECONDS", "not a number"]),
        ("ON_NONFINITE=ignore", dict(ON_NONFINITE="ignore"), 1, ["ON_NONFINITE must be stop or skip"]),
        ("GOLF_INJECT_NAN=x", dict(GOLF_INJECT_NAN="x"), 1, ["GOLF_INJECT_NAN='x'"]),
        ("GOLF_INJECT_NAN=2:nope", dict(GOLF_INJECT_NAN="2:nope"), 1, ["'nope' is neither loss nor a parameter"]),
        ("a CUDA driver older than the runtime", dict(GOLF_EMU_DRIVER_VERSION="12040"), 1, ["driver supports CUDA up to 12.4", "built with CUDA 12.8", "hint"]),
    ]
    before = {f: f.read_bytes() for f in [st] + sorted(bad_dir.iterdir())}
    for what, extra, code, want in cases:
        p, _ = run1(ctx, "ref", **extra)
        early = "RESUME" not in extra or ("hardware:" not in p.stdout and "model_params" not in p.stdout)   # a state is checked before the device and the model
        R.check(f"refused: {what} (exit {code}, the message names it{', before any allocation' if 'RESUME' in extra else ''})",
                p.returncode == code and all(w in p.stderr for w in want) and early and "Traceback" not in p.stderr, tail(p))
    R.check("the refused runs left the state files byte for byte unchanged", all(f.read_bytes() == b for f, b in before.items()))
    p = subprocess.run([str(ctx.exe), "--checkpoint-every", "x"], env=ctx.env(ctx.tmp / "ref"), cwd=ctx.tmp, capture_output=True, text=True)
    R.check("--checkpoint-every x is a usage error (exit 2)", p.returncode == 2 and "--checkpoint-every" in p.stderr, tail(p))


def shard(tokens, count=None):
    """a shard's bytes: the 256-int header (magic 20240520, version 1, count) and the uint16 tokens"""
    head = [20240520, 1, len(tokens) if count is None else count] + [0] * 253
    return struct.pack("<256i", *head) + struct.pack(f"<{len(tokens)}H", *tokens)


def check_badinput(R, ctx):
    root = ctx.tmp / "badinput"
    val = (ctx.data / "fineweb_val_000000.bin").read_bytes()
    train = sorted(ctx.data.glob("fineweb_train_*.bin"))[0]
    folders = {}

    def folder(name, files):
        d = root / name
        d.mkdir(parents=True, exist_ok=True)
        for fname, content in files.items():
            if isinstance(content, Path):
                (d / fname).symlink_to(content.resolve())
            else:
                (d / fname).write_bytes(content)
        folders[name] = d
        return d

    good_train = {"fineweb_train_000000.bin": train}
    folder("magic", dict(good_train, **{"fineweb_val_000000.bin": b"\x00\x01" + val[2:]}))
    folder("truncated", dict(good_train, **{"fineweb_val_000000.bin": val, "fineweb_train_000001.bin": shard(list(range(500)), count=1000)}))
    folder("noval", dict(good_train))
    folder("token", dict(good_train, **{"fineweb_val_000000.bin": shard([5] * 100 + [1024] + [7] * 100)}))
    # the last of four train shards holds a token >= VOCAB_SIZE (the stream reaches it only after 16.9M tokens)
    folder("lasttoken", dict(good_train, **{"fineweb_val_000000.bin": val, "fineweb_train_000001.bin": shard([3] * 1000),
                                          "fineweb_train_000002.bin": shard([4] * 1000), "fineweb_train_000003.bin": shard([9] * 300 + [1024] + [8] * 699)}))
    outfile = root / "not_a_folder"
    outfile.write_bytes(b"a file where OUT_DIR should be\n")
    cases = [  # (what, environment, what stderr must hold)
        ("a val shard with a wrong magic", dict(DATA_PATH=str(folders["magic"])), ["magic/fineweb_val_000000.bin", "bad header"]),
        ("a truncated second train shard", dict(DATA_PATH=str(folders["truncated"])), ["fineweb_train_000001.bin", "truncated"]),
        ("no val shard", dict(DATA_PATH=str(folders["noval"])), ["no files match", "fineweb_val_*.bin"]),
        ("a val token >= VOCAB_SIZE", dict(DATA_PATH=str(folders["token"])), ["token/fineweb_val_000000.bin", "token 1024 at position 100",
                                                                                "outside the model's vocabulary (1024)"]),
        ("a token >= VOCAB_SIZE in the last train shard", dict(DATA_PATH=str(folders["lasttoken"])),
         ["lasttoken/fineweb_train_000003.bin", "token 1024 at position 300", "outside the model's vocabulary (1024)"]),
        ("a tokenizer of another vocabulary size", dict(TOKENIZER_PATH=str(ctx.tok.parent / "fineweb_4096_bpe.model")),
         ["VOCAB_SIZE=1024 does not match tokenizer vocab_size=4096", "fineweb_4096_bpe.model"]),
        ("an OUT_DIR that is a file", dict(OUT_DIR=str(outfile)), ["not_a_folder"]),
        ("TRAIN_SEQ_LEN=0", dict(TRAIN_SEQ_LEN="0"), ["TRAIN_SEQ_LEN"]),
        ("MATRIX_LR=-1", dict(MATRIX_LR="-1"), ["MATRIX_LR"]),
        ("BETA2=1", dict(BETA2="1"), ["BETA2"]),
        ("ADAM_EPS=0", dict(ADAM_EPS="0"), ["ADAM_EPS"]),
        ("SDCLIP_K=0", dict(SDCLIP_K="0"), ["SDCLIP_K"]),
        ("GRAD_CLIP_NORM=inf", dict(GRAD_CLIP_NORM="inf"), ["GRAD_CLIP_NORM", "not a number"]),
    ]
    inputs = sorted(f for f in root.rglob("*") if f.is_file()) + [ctx.data / "fineweb_val_000000.bin", train]
    before = {f: f.read_bytes() for f in inputs}
    out = root / "out"
    for what, extra, want in cases:
        env = ctx.env(out, ITERATIONS="1")
        env.update(extra)
        p = subprocess.run([str(ctx.exe)], env=env, cwd=ctx.tmp, capture_output=True, text=True, timeout=300)
        R.check(f"refused before any work: {what} (exit 1, named)", p.returncode == 1 and all(w in p.stderr for w in want) and "model_params" not in p.stdout
                and "hardware:" not in p.stdout and "Traceback" not in p.stderr, tail(p))
    R.check("the refused runs left every input byte for byte unchanged", all(f.read_bytes() == b for f, b in before.items()))
    R.check("the refused runs wrote nothing: no OUT_DIR, no logs/RUN_ID.txt", not out.exists() and not (ctx.tmp / "logs" / f"{out.name}.txt").exists(),
            f"OUT_DIR exists {out.exists()}")
    # two ranks: the last shard is rank 1's share of the scan (shard f by rank f % 2); both refuse it, naming it
    res = finish(start_ranks(ctx, out, DATA_PATH=str(folders["lasttoken"]), ITERATIONS="1"))
    R.check("2 ranks: a token >= VOCAB_SIZE in the last train shard (rank 1's to scan) refused by both ranks before any work, naming it",
            [r[0] for r in res] == [1, 1] and all("lasttoken/fineweb_train_000003.bin': token 1024 at position 300" in r[2] for r in res)
            and "model_params" not in res[0][1] and not out.exists(), " | ".join(r[2][-300:] for r in res))


GROUPS = {"resume": check_resume, "signals": check_signals, "ranks": check_ranks, "deadrank": check_deadrank, "refusals": check_refusals,
          "badinput": check_badinput}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=str(ROOT), help="folder holding train_golf_cpu (default: the repository)")
    ap.add_argument("--shared", default=None, help="shared data folder (default: ../shared beside the repository)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    ap.add_argument("--only", default="", help="comma-separated groups: " + ",".join(GROUPS))
    args = ap.parse_args()
    exe = Path(args.bin).resolve() / "train_golf_cpu"
    if not exe.exists():
        raise SystemExit(f"test_survive.py: {exe} is missing: run make cpu first")
    only = [g for g in args.only.split(",") if g]
    for g in only:
        if g not in GROUPS:
            raise SystemExit(f"test_survive.py: unknown group '{g}' (groups: {', '.join(GROUPS)})")
    shared = Path(args.shared).resolve() if args.shared else ROOT.parent / "shared"
    R = Results()
    tmp = Path(tempfile.mkdtemp(prefix="test_survive_"))
    ctx = Ctx(exe, shared, tmp)
    run_groups(R, [(fn, (R, ctx)) for name, fn in GROUPS.items() if not only or name in only], timing=True)
    R.cleanup(tmp, args.keep)
    R.finish()


if __name__ == "__main__":
    main()
