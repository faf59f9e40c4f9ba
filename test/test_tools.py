#!/usr/bin/python3
"""Tests of the dev/ tools that need no GPU: dev/significance.py against hand-computed values.

Usage: /usr/bin/python3 test/test_tools.py
The last line printed is "N passed, M failed, K skipped"; exit status 1 if anything failed.
"""

import argparse
import math
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "test"))
sys.path.insert(0, str(ROOT / "dev"))
from harness import Results  # noqa: E402
import significance  # noqa: E402


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
    R.finish()


if __name__ == "__main__":
    main()
