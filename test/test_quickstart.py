#!/usr/bin/python3
"""README's first command, as a new user runs it: dev/quickstart.sh in a fresh copy of the tree (the files git tracks
and the untracked ones it does not ignore: no binaries, no run outputs), with ../shared beside it, on this machine
without a GPU:

  make       plain `make` in the copy builds what README says (tokenize, golf_infer, golf_export; train_golf with nvcc)
  run        quickstart builds exactly what it runs (train_golf_cpu and golf_infer, nothing else), trains PRESET=cpu for
             a short cap, and ends with golf_infer's val_bpb on the same val tokens as train_golf's roundtrip line, the
             comparison of the two, and a sample that continues the prompt
  no root    a user who is not root and has no sudo, with a package missing, is told what to install, before any work

Usage: /usr/bin/python3 test/test_quickstart.py [--seconds S] [--keep]
The last line printed is "N passed, M failed, K skipped"; exit status 1 if anything failed.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "test"))
from harness import Results  # noqa: E402

BINARIES = ["tokenize", "golf_infer", "golf_export", "train_golf", "train_golf_cpu"]


def fresh_copy(dst):
    """the tree as a clone of it would be, with the working tree's edits: tracked and untracked-unignored files"""
    files = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           capture_output=True, check=True).stdout.decode().split("\0")
    for f in filter(None, files):
        src = ROOT / f
        if src.is_file():
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / f)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=int, default=15, help="the training cap (QUICKSTART_SECONDS, default 15)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = ap.parse_args()
    shared = ROOT.parent / "shared"
    R = Results()
    tmp = Path(tempfile.mkdtemp(prefix="test_quickstart_"))
    tree = tmp / "golf"
    tree.mkdir()
    fresh_copy(tree)
    if shared.is_dir():
        (tmp / "shared").symlink_to(shared)
    R.check("the fresh copy holds no binary", not any((tree / b).exists() for b in BINARIES))

    p = subprocess.run(["make", "-n"], cwd=tree, capture_output=True, text=True)
    planned = [b for b in ("tokenize", "golf_infer", "golf_export") if re.search(rf"-o {b} ", p.stdout)]
    R.check("make: plain `make` builds tokenize, golf_infer and golf_export", p.returncode == 0 and len(planned) == 3,
            f"it would build {planned}: {p.stderr.strip()[-300:]}")

    if not (shared / "data" / "sample_sp1024").is_dir():
        R.skip("run", f"no sample shards in {shared}")
    else:
        env = {k: v for k, v in os.environ.items() if not k.isupper() or k in ("PATH", "HOME", "LANG", "TMPDIR")}
        env.update(SKIP_APT="1", NGPU="0", QUICKSTART_SECONDS=str(args.seconds), VAL_MAX_TOKENS="16384", OMP_WAIT_POLICY="passive")
        p = subprocess.run(["bash", "dev/quickstart.sh"], cwd=tree, env=env, capture_output=True, text=True, errors="replace")
        out = p.stdout + p.stderr
        (tmp / "quickstart.txt").write_text(out)
        tail = out.strip()[-900:]
        R.check("run: quickstart exits 0", p.returncode == 0, tail)
        built = sorted(b for b in BINARIES if (tree / b).exists())
        R.check("run: it built exactly what it ran (golf_infer, train_golf_cpu)", built == ["golf_infer", "train_golf_cpu"], f"built {built}")
        R.check("run: train_golf_cpu ran PRESET=cpu under the cap", "config PRESET=cpu" in out and
                f"config MAX_WALLCLOCK_SECONDS={args.seconds}" in out and "stopping_early: wallclock_cap" in out, tail)
        R.check("run: its hardware line names the CPU build", re.search(r"^hardware: 1 x CPU build on .*CUDA emulated", out, re.M) is not None,
                "\n".join(l for l in out.splitlines() if l.startswith("hardware"))[:300])
        score = re.search(r"^val_loss:(\S+) val_bpb:(\S+) tokens:(\d+)", out, re.M)
        roundtrip = re.search(r"^final_\w+?_roundtrip_exact val_loss:\S+ val_bpb:(\S+)", out, re.M)
        R.check("run: golf_infer scored the artifact on the 16,384 val tokens train_golf scored", score is not None and score[3] == "16384"
                and "tokens:16384 (the first 16384 of" in out, tail)
        same = re.search(r"^quickstart: same 16384 tokens: train_golf (\S+), golf_infer (\S+), differ by", out, re.M)
        R.check("run: quickstart compares the two scores of the same tokens", same is not None and roundtrip is not None and score is not None
                and float(same[1]) == float(roundtrip[1]) and float(same[2]) == float(score[2]), tail)
        sample = out.split("quickstart: a sample\n", 1)
        R.check("run: it ends with a sample that continues the prompt", len(sample) == 2 and sample[1].startswith("The history of")
                and len(sample[1].split("\n")[0]) > len("The history of") + 20, tail)

    # not root, no sudo, a package missing: the stubs say uid 1000 and that dpkg knows no package
    stubs = tmp / "stubs"
    stubs.mkdir()
    for name, body in (("id", "echo 1000"), ("dpkg", "exit 1"), ("apt-get", "echo 'apt-get must not run' >&2; exit 99")):
        (stubs / name).write_text(f"#!/bin/sh\n{body}\n")
        (stubs / name).chmod(0o755)
    path = ":".join([str(stubs)] + [d for d in os.environ["PATH"].split(":") if not (Path(d) / "sudo").exists()])
    p = subprocess.run(["bash", "dev/quickstart.sh"], cwd=tree, env=dict(PATH=path, HOME=str(tmp)), capture_output=True, text=True)
    R.check("no root: not root, no sudo, packages missing -> says what to install as root, exit 1, before building",
            p.returncode == 1 and "not root and has no sudo" in p.stderr and "python3-torch" in p.stderr
            and "apt-get must not run" not in p.stderr and "building" not in p.stdout, (p.stdout + p.stderr).strip()[-400:])

    R.cleanup(tmp, args.keep)
    R.finish()


if __name__ == "__main__":
    main()
