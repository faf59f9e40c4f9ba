"""The small test harness shared by golf's Python tests: PASS/FAIL/SKIP lines and the closing
"N passed, M failed, K skipped" line (the exit status is 1 when anything failed)."""

import shutil
import sys


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
