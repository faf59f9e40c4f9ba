#!/usr/bin/python3
"""Tests of the dev/ tools that need no GPU: dev/significance.py against hand-computed values; dev/golf_log.py's
reading of step lines against the numbers a synthetic log was written with; dev/plot.py writes a valid PNG of the
expected size for several runs and refuses malformed logs (clear message, nothing written); dev/outputs_digest.py's
save and check (a short run of train_golf_cpu). (dev/submit.sh: test_submit.py.)

Usage: /usr/bin/python3 test/test_tools.py
The last line printed is "N passed, M failed, K skipped"; exit status 1 if anything failed.
"""

import argparse
import math
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "test"))
sys.path.insert(0, str(ROOT / "dev"))
from harness import Results  # noqa: E402
import significance  # noqa: E402
import golf_log  # noqa: E402


def synthetic_log(path, steps, lr, val_every=50, ms_per_step=40.0):
    """A train log with train_golf's step lines: loss 6 / (1 + lr * step), val_bpb 3.5 / (1 + lr * step); returns the
    (step, loss, time_ms) and (step, bpb, time_ms) values written."""
    train, val, lines = [], [], []
    for s in range(0, steps + 1):
        t = s * ms_per_step
        if s % val_every == 0 or s == steps:
            v = 3.5 / (1 + lr * s)
            val.append((s, round(v, 4), round(t)))
            lines.append(f"step:{s}/{steps} val_loss:{v * 1.7:.4f} val_bpb:{v:.4f} train_time:{t:.0f}ms step_avg:{t / max(s, 1):.2f}ms")
        if s > 0 and (s <= 10 or s % 10 == 0):
            loss = 6 / (1 + lr * s)
            train.append((s, round(loss, 4), round(t)))
            lines.append(f"step:{s}/{steps} train_loss:{loss:.4f} train_time:{t:.0f}ms step_avg:{t / s:.2f}ms")
    Path(path).write_text("config SEED=1\nwarmup_step:1/20\n" + "\n".join(lines) + "\n")
    return train, val


def check_plot(R, tmp):
    tmp = Path(tmp)
    a, b = tmp / "run_a.txt", tmp / "run_b.txt"
    train_a, val_a = synthetic_log(a, 300, 0.02)
    synthetic_log(b, 200, 0.05, ms_per_step=55.0)
    log = golf_log.read_log(a)
    got_train = [(s, l, round(t)) for s, l, t in log.train]
    got_val = [(s, bpb, round(t)) for s, _, bpb, t in log.val]
    R.check("golf_log: step, loss, val_bpb and train_time of every step line as written", got_train == train_a and got_val == val_a
            and log.iterations == 300, f"{len(got_train)}/{len(train_a)} train, {len(got_val)}/{len(val_a)} val lines")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        R.skip("plot", "no matplotlib (apt-get install python3-matplotlib)")
        return
    plot = [sys.executable, ROOT / "dev" / "plot.py"]
    out = tmp / "curves.png"
    p = subprocess.run([*plot, "-o", out, "--label", "lr 0.02", "--label", "lr 0.05", a, b], capture_output=True, text=True)
    data = out.read_bytes() if out.exists() else b""
    # a PNG: 8-byte signature, then the IHDR chunk with width and height (figsize 12 x 8 inches at 110 dpi)
    size = struct.unpack(">II", data[16:24]) if len(data) > 24 and data[12:16] == b"IHDR" else None
    R.check("plot: two runs -> a PNG (signature, IHDR 1320 x 880)", p.returncode == 0 and data[:8] == b"\x89PNG\r\n\x1a\n"
            and size == (1320, 880) and len(data) > 10000, f"{p.stderr.strip()[-200:]} size {size}, {len(data)} bytes")
    R.check("plot: no temporary file left", sorted(f.name for f in tmp.iterdir() if "png" in f.name) == ["curves.png"])
    bad = tmp / "bad.txt"
    bad.write_text("step:1/10 train_loss:6.0 train_time:10ms step_avg:10.00ms\nstep:2/10 train_loss:oops train_time:20ms\n")
    empty = tmp / "empty.txt"
    empty.write_text("config SEED=1\nhello\n")
    before = out.read_bytes()
    for log_path, want in ((bad, f"{bad}:2: malformed step line"), (empty, f"{empty}: no 'step:N/M train_loss"), (tmp / "missing.txt", "cannot read")):
        p = subprocess.run([*plot, "-o", out, a, log_path], capture_output=True, text=True)
        R.check(f"plot: {log_path.name} -> exit 1, '{want[-40:]}', the PNG untouched", p.returncode == 1 and want in p.stderr
                and out.read_bytes() == before, p.stderr.strip()[-200:])
    p = subprocess.run([*plot, "-o", out, "--label", "x", a, b], capture_output=True, text=True)
    R.check("plot: one --label for two logs is a usage error", p.returncode == 2 and "one per log" in p.stderr, p.stderr.strip()[-200:])
    p = subprocess.run([*plot, "--bogus", a], capture_output=True, text=True)
    R.check("plot: an unknown flag is a usage error", p.returncode == 2, p.stderr.strip()[-200:])


def check_digest(R, tmp):
    """dev/outputs_digest.py: --save then --check of the same binary agree (exit 0); a changed digest is named (exit 1)"""
    exe = ROOT / "train_golf_cpu"
    if not exe.exists():
        R.skip("outputs_digest: save and check", "train_golf_cpu is not built (make cpu)")
        return
    tool, saved = ROOT / "dev" / "outputs_digest.py", tmp / "digest.txt"
    run = lambda *a: subprocess.run([sys.executable, tool, *a, "--only", "baseline-fp32-1rank"], capture_output=True, text=True, timeout=600)
    s, c = run("--save", saved), run("--check", saved)
    R.check("outputs_digest: --save then --check of one run -> exit 0, '1 of 1 runs identical'", s.returncode == 0 and c.returncode == 0
            and "1 of 1 runs identical" in c.stdout and saved.read_text().startswith("baseline-fp32-1rank ckpt:"), (s.stderr + c.stdout + c.stderr).strip()[-300:])
    saved.write_text(saved.read_text().replace("ckpt:", "ckpt:0"))
    c = run("--check", saved)
    R.check("outputs_digest: a different checkpoint -> exit 1 naming the run", c.returncode == 1 and "differ: baseline-fp32-1rank" in c.stdout,
            (c.stdout + c.stderr).strip()[-300:])


def main():
    argparse.ArgumentParser(description=__doc__.split("\n")[0]).parse_args()
    R = Results()
    # Student t tails with closed forms: nu = 1 (Cauchy) 1/2 - atan(t)/pi; nu = 2: (1 - t / sqrt(2 + t^2)) / 2;
    # and the textbook table value t_{0.05, 4} = 2.132 (given to 4 digits, so 1e-4 there; 1e-12 for closed forms).
    cases = [(t, 1, 0.5 - math.atan(t) / math.pi, 1e-12) for t in (-3.0, -0.5, 0.0, 0.7, 1.0, 5.0, 40.0)]
    cases += [(t, 2, 0.5 * (1 - t / math.sqrt(2 + t * t)), 1e-12) for t in (-2.0, 0.0, 1.0, 3.5, 12.0)]
    cases += [(2.132, 4, 0.05, 1e-4), (2.776, 4, 0.025, 1e-4), (3.747, 4, 0.01, 1e-4), (1.812, 10, 0.05, 1e-4)]
    bad = [f"t={t} nu={nu}: {significance.t_sf(t, nu)} vs {want}" for t, nu, want, tol in cases if abs(significance.t_sf(t, nu) - want) > tol]
    R.check("significance: Student t tails equal closed forms and table values", not bad, "; ".join(bad[:3]))
    # Hand-computed: values 2.055 2.058 2.056 2.057 -> mean 2.0565, sd sqrt(5/3)*1e-3, se sd/2;
    # baseline 2.07: t = (2.07 - 0.005 - 2.0565) / se.
    r = significance.analyse([2.055, 2.058, 2.056, 2.057], 2.07)
    se = math.sqrt(5.0 / 3.0) * 1e-3 / 2
    t = (2.07 - 0.005 - 2.0565) / se
    R.check("significance: mean, standard error and t of four seeds", abs(r["mean"] - 2.0565) < 1e-12 and abs(r["se"] - se) < 1e-12
            and abs(r["t"] - t) < 1e-9, f"mean {r['mean']}, se {r['se']:.3e}, t {r['t']:.4f}")
    with tempfile.TemporaryDirectory() as tmp:
        logs = []
        for i, v in enumerate((1.10, 1.12, 1.11)):
            p = Path(tmp) / f"seed{i}.txt"
            p.write_text(f"step:10/10 val_loss:1.5 val_bpb:0.9\nfinal_int8_roundtrip val_loss:{v + 0.001:.4f} val_bpb:0.6\n"
                         f"final_int8_roundtrip_exact val_loss:{v:.8f} val_bpb:0.65\n")
            logs.append(p)
        out = subprocess.run([sys.executable, ROOT / "dev" / "significance.py", "--baseline", "1.2", *logs], capture_output=True, text=True)
        R.check("significance: reads the exact roundtrip loss of each log and prints the table",
                out.returncode == 0 and "| 3 | 1.110000 |" in out.stdout and "rejected at p < 0.01" in out.stdout, out.stdout.strip()[-200:])
        empty = Path(tmp) / "unfinished.txt"
        empty.write_text("step:1/10 train_loss:5.0\n")
        out = subprocess.run([sys.executable, ROOT / "dev" / "significance.py", "--baseline", "1.2", logs[0], empty], capture_output=True, text=True)
        R.check("significance: a log without a final line is an error naming it", out.returncode != 0 and "unfinished.txt" in out.stderr, out.stderr.strip())
        check_plot(R, tmp)
        check_digest(R, Path(tmp))
    R.finish()


if __name__ == "__main__":
    main()
