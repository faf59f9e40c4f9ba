"""The small test harness shared by golf's Python tests: PASS/FAIL/SKIP lines and the closing
"N passed, M failed, K skipped" line (the exit status is 1 when anything failed), and the command line and
check-group runner of the tests that drive the built binaries."""

import argparse
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class Results:
    def __init__(self):
        self.passed = self.failed = self.skipped = 0
        self.failures = []

    def check(self, name, ok, detail=""):
        """Record one check; prints PASS or FAIL with an optional detail in brackets; returns ok."""
        print(f"{'PASS' if ok else 'FAIL'} {name}" + (f"  [{detail}]" if detail else ""), flush=True)
        if ok:
            self.passed += 1
        else:
            self.failed += 1
            self.failures.append(name)
        return ok

    def skip(self, name, why):
        print(f"SKIP {name}: {why}", flush=True)
        self.skipped += 1

    def finish(self):
        """Print the summary and exit with 1 if anything failed."""
        if self.failures:
            print("failed: " + "; ".join(self.failures))
        print(f"{self.passed} passed, {self.failed} failed, {self.skipped} skipped")
        sys.exit(1 if self.failed else 0)

    def cleanup(self, tmp, keep=False):
        """Remove the temporary folder, or keep it (and say where) when asked or when something failed."""
        if keep or self.failed:
            print(f"temporary files kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def binary_test_args(doc):
    """--bin, --shared and --keep of a test that drives the built binaries: (bin folder, shared folder, keep)"""
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("--bin", default=str(ROOT), help="folder holding golf_infer, golf_export and tokenize (default: the repository)")
    ap.add_argument("--shared", default=None, help="shared data folder (default: ../shared beside the repository)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = ap.parse_args()
    return Path(args.bin).resolve(), Path(args.shared).resolve() if args.shared else ROOT.parent / "shared", args.keep


def require_binaries(b, test, names=("golf_infer", "golf_export", "tokenize")):
    for exe in names:
        if not (b / exe).exists():
            raise SystemExit(f"{test}: {b / exe} is missing: run make first")


def run_groups(R, groups, timing=False):
    """Run each (function, args) group of checks; a crash of one group is a failure, the others still run.
    With timing, print how long each took."""
    times = []
    for fn, fargs in groups:
        t0 = time.time()
        try:
            fn(*fargs)
        except Exception as e:
            R.check(f"{fn.__name__} ran", False, str(e)[-800:])
        times.append(f"{fn.__name__[6:]} {time.time() - t0:.0f}s")
    if timing:
        print("time: " + ", ".join(times))
