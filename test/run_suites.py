#!/usr/bin/python3
"""Run make test's suites one after another and end with one summary of them all.

Each argument is one suite's command line (run by the shell). Its output passes through as it comes; its last line
"N passed, M failed[, K skipped]" is its count. Every suite runs even when an earlier one fails; at the end a table
of suites (counts, seconds, exit status) and the totals as the last line, "N passed, M failed, K skipped".
Exit status 1 when any suite failed, exited non-zero or printed no count.

Usage: /usr/bin/python3 test/run_suites.py [--only WORD] "CMD" ["CMD" ...]
  --only WORD   run only the suites whose command contains WORD (e.g. --only test_infer)
"""

import argparse
import re
import subprocess
import sys
import time

COUNT = re.compile(r"^(?:\w+: )?(\d+) passed, (\d+) failed(?:, (\d+) skipped)?\s*$")


def run_suite(cmd):
    """(passed, failed, skipped or 0, exit status, seconds); the counts are None when the suite printed none."""
    t0 = time.time()
    p = subprocess.Popen(cmd, shell=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace", bufsize=1)
    counts = None
    for line in p.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        m = COUNT.match(line)
        if m:
            counts = (int(m[1]), int(m[2]), int(m[3] or 0))
    rc = p.wait()
    return counts, rc, time.time() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", default=None, help="run only the suites whose command contains this word")
    ap.add_argument("suites", nargs="+", help="one shell command per suite")
    args = ap.parse_args()
    suites = [s for s in args.suites if not args.only or args.only in s]
    if not suites:
        sys.exit(f"run_suites: no suite's command contains '{args.only}'")
    rows, total, bad = [], [0, 0, 0], 0
    t0 = time.time()
    for cmd in suites:
        name = next((w.split("/")[-1] for w in cmd.split() if w.endswith(".py")), cmd.split()[0])
        print(f"\n=== {name}: {cmd}", flush=True)
        counts, rc, secs = run_suite(cmd)
        ok = counts is not None and counts[1] == 0 and rc == 0
        bad += not ok
        if counts:
            total = [a + b for a, b in zip(total, counts)]
        if counts is None:
            total[1] += 1   # a suite that died before its count counts as one failure
        rows.append((name, counts, rc, secs, ok))
    print(f"\n=== summary ({len(rows)} suites, {time.time() - t0:.0f} s)")
    for name, counts, rc, secs, ok in rows:
        what = f"{counts[0]:5d} passed {counts[1]:3d} failed {counts[2]:3d} skipped" if counts else "   no count printed (the suite died)"
        print(f"  {'ok  ' if ok else 'FAIL'} {name:24s} {what}  {secs:6.0f} s" + (f"  exit {rc}" if rc else ""))
    print(f"{total[0]} passed, {total[1]} failed, {total[2]} skipped")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
