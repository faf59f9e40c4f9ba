#!/usr/bin/python3
"""Tests of the step planning tools (no GPU needed; train_golf_cpu must be built):

  memory   dev/bench_train.sh --memory prints the plan table of the baseline and of --preset r0405 (its planned bytes
           against an H100 80GB are printed and recorded, a plan that does not fit is not a failure); for a small
           config the plan's allocated bytes equal exactly the emulator's high-water of a real 1-step train_golf_cpu
           run (train_golf allocates nothing else: the cuBLAS workspace is one of its allocations, handed to cuBLAS with
           cublasSetWorkspace; cudaMalloc's rounding is outside both); the run's peak-memory lines say the same
   log     the launch log (GOLF_EMU_LOG) of that run: step marks, kernel arguments as allocation/offset/bytes and
           values, GEMM lines with m n k; GOLF_EMU_LOG_ONLY=1 logs the same launches without running them
  predict  dev/bench_train.sh --predict on the baseline and on r0405 prints a table labelled PREDICTION, knows every
           kernel, and its GEMM FLOPs per token are exactly 6 x the weights of the linear layers (forward 2, backward 4:
           every GEMM of a micro-step is a linear layer; attention runs in its own kernels), which is 6 x params less the
           norms, gains and scalars; dev/predict.py rejects unknown flags and a log without a training step
  attention  dev/bench_attention_cpu (the attention benchmark's driver, CPU build) runs at a small shape for both head
           dims and with --doc-len (DOC_ATTENTION's form), prints its table and summary line, its flash and SIMT outputs
           agree (its own 5% sanity bound), and it rejects an unknown flag and a head dim the flash kernels lack
  gpu      dev/gpu_check.sh parses (bash -n, shellcheck when installed), rejects unknown flags, and its --dry-run plan
           stays within 8 minutes

Usage: /usr/bin/python3 test/test_plan.py [--shared DIR] [--keep]
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
sys.path.insert(0, str(ROOT / "dev"))
from harness import Results, run_groups  # noqa: E402
from val_cut import val_cut  # noqa: E402

SMALL = {"NUM_LAYERS": "4", "MODEL_DIM": "128", "NUM_HEADS": "2", "NUM_KV_HEADS": "1", "MLP_MULT": "2", "TRAIN_SEQ_LEN": "128",
         "TRAIN_BATCH_TOKENS": "8192", "VAL_BATCH_SIZE": "8192", "ITERATIONS": "1", "VAL_LOSS_EVERY": "0", "MAX_WALLCLOCK_SECONDS": "0",
         "WARMDOWN_ITERS": "0"}
# what the environment may hold that would change the configs under test
CONFIG_VARS = set(SMALL) | {"PRESET", "DATA_PATH", "TOKENIZER_PATH", "OUT_DIR", "RUN_ID", "VOCAB_SIZE", "PLAN_MEMORY", "MATH_TF32", "PRECISION",
                            "GOLF_EMU_LOG", "GOLF_EMU_LOG_ONLY", "GOLF_EMU_EXIT_AT"}


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in CONFIG_VARS}
    env["OMP_WAIT_POLICY"] = "passive"
    env.update(extra)
    return env


def run(cmd, env=None, cwd=None, timeout=600):
    return subprocess.run([str(c) for c in cmd], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def summary(text, prefix):
    """the key:value fields of the line starting with prefix"""
    for line in text.splitlines():
        if line.startswith(prefix + " "):
            return dict(kv.split(":", 1) for kv in line.split()[1:])
    return {}


def matmul_weights(L, d, H, KV, mlp, V, positions=None, bigram_dim=0):
    """the weights every token multiplies in GEMMs: q, k, v, proj, fc, mlp proj per block position, the (tied) head,
    BigramHash's projection"""
    kv = KV * d // H
    return (positions or L) * (2 * d * d + 2 * kv * d + 2 * mlp * d * d) + V * d + bigram_dim * d


def check_memory(R, tmp, shared):
    env = clean_env(SHARED=str(shared))
    bench = ["bash", ROOT / "dev" / "bench_train.sh", "--out", tmp / "mem"]
    for name, flags in (("baseline", []), ("r0405", ["--preset", "r0405"])):
        p = run(bench + ["--memory"] + flags, env=env)
        s = summary(p.stdout, "memory_plan")
        classes = ["weights", "gradients", "optimizer state", "block activations", "per block position", "logits", "backward scratch",
                   "Newton-Schulz", "cuBLAS workspace", "planned total"]
        ok = p.returncode == 0 and bool(s) and all(c in p.stdout for c in classes)
        R.check(f"--memory {name}: the plan table with every class and a summary", ok, "" if ok else (p.stdout + p.stderr)[-400:])
        if s:
            planned, usable = int(s["planned_bytes"]), float(s["usable_bytes"])
            print(f"INFO --memory {name}: planned {planned} bytes ({planned / 2**30:.2f} GiB) per GPU at TRAIN_BATCH_TOKENS "
                  f"{s['train_batch_tokens']}, seq {s['train_seq_len']}: {'fits' if s['fits'] == '1' else 'DOES NOT FIT'} an H100 80GB "
                  f"({usable / 2**30:.2f} GiB usable)")
            R.check(f"--memory {name}: the fit line agrees with the numbers", (s["fits"] == "1") == (planned <= usable))
    R.check("--memory baseline fits an H100 80GB", summary(run(bench + ["--memory"], env=env).stdout, "memory_plan").get("fits") == "1")
    p = run(bench + ["--memory", "--no-such-flag", "1"], env=env)
    R.check("--memory with an unknown train_golf flag fails, naming it", p.returncode != 0 and "--no-such-flag" in p.stdout + p.stderr)


def check_highwater(R, tmp, shared):
    data = val_cut(shared / "data" / "sample_sp1024", tmp / "data", 8192)
    tok = shared / "tokenizers" / "fineweb_1024_bpe.model"
    base = clean_env(**SMALL, DATA_PATH=str(data), TOKENIZER_PATH=str(tok), OUT_DIR=str(tmp / "run"), RUN_ID="plan")
    bin_ = ROOT / "train_golf_cpu"
    plan = summary(run([bin_, "--plan-memory", "1"], env=base, cwd=tmp).stdout, "memory_plan")
    log = tmp / "launches.log"
    p = run([bin_], env=dict(base, GOLF_EMU_LOG=str(log)), cwd=tmp)
    ok = R.check("a 1-step train_golf_cpu run of the small config", p.returncode == 0, (p.stdout + p.stderr)[-400:])
    emu = re.search(r"the CPU build's emulated device allocations peaked at (\d+) bytes", p.stdout)
    mine = re.search(r"peak memory: \d+ MiB allocated by train_golf \(high-water (\d+) bytes", p.stdout)
    if ok and plan and emu and mine:
        a, e, w = int(plan["allocated_bytes"]), int(emu.group(1)), int(plan["workspace_bytes"])
        print(f"INFO small config: planned {a} bytes allocated ({w} of them the cuBLAS workspace) = {int(plan['planned_bytes'])}; emulator high-water {e}")
        R.check("the plan's allocated bytes equal the emulator's measured high-water exactly", a == e, f"plan {a} vs emulator {e}")
        R.check("the peak-memory line's high-water equals the emulator's", int(mine.group(1)) == e, f"{mine.group(1)} vs {e}")
        R.check("planned total = allocated, the cuBLAS workspace among it", int(plan["planned_bytes"]) == a and 0 < w < a)
    else:
        R.check("plan and peak-memory lines found", False, f"plan {plan}; {p.stdout[-300:]}")
        return
    lines = log.read_text().splitlines()
    marks = [ln.split()[1] for ln in lines if ln.startswith("mark ")]
    ok = marks[:11] == ["step"] + ["micro"] * 8 + ["optimizer", "step_end"]
    R.check("the launch log marks the step: step, 8 x micro, optimizer, step_end", ok, "" if ok else str(marks[:12]))
    emb = next((ln for ln in lines if ln.startswith("embedding_forward ")), "")
    args = emb.split(" args ")[-1].split() if " args " in emb else []
    N, d = 1024, 128   # one micro-step: 8192 / 8 tokens
    ok = len(args) == 5 and re.fullmatch(rf"p\d+\+0/{N * d * 4}", args[0]) is not None and args[3:] == [f"i{N}", f"i{d}"]
    R.check("a kernel's arguments: pointers as allocation+offset/bytes, integers as values", ok, "" if ok else emb)
    gemm = next((ln for ln in lines if ln.startswith("cublasLtMatmul ")), "")   # PRECISION=bf16 (the default): cuBLASLt
    ok = re.search(r" m \d+ n \d+ k \d+ batch 1 math bf16 us [\d.]+ args p\d+\+\d+/\d+ p\d+", gemm) is not None
    R.check("a GEMM line: m n k batch math and three operands", ok, "" if ok else gemm)
    log2 = tmp / "launches_only.log"
    p = run([bin_], env=dict(base, GOLF_EMU_LOG=str(log2), GOLF_EMU_LOG_ONLY="1", GOLF_EMU_EXIT_AT="step_end", OUT_DIR=str(tmp / "run2")), cwd=tmp)
    strip = lambda text: [re.sub(r" us [\d.]+", "", ln) for ln in text.splitlines()]
    first = strip(log.read_text())
    upto = first.index("mark step_end") + 1 if "mark step_end" in first else len(first)
    R.check("GOLF_EMU_LOG_ONLY=1 with GOLF_EMU_EXIT_AT=step_end logs the same launches up to the step's end, and stops",
            p.returncode == 0 and strip(log2.read_text()) == first[:upto], p.stderr[-300:])


def check_predict(R, tmp, shared):
    env = clean_env(SHARED=str(shared))
    bench = ["bash", ROOT / "dev" / "bench_train.sh", "--out", tmp / "pred"]
    shapes = {"baseline": ([], matmul_weights(9, 512, 8, 4, 2, 1024)),
              "r0405": (["--preset", "r0405"], matmul_weights(11, 512, 8, 4, 4, 8192))}   # step 0 runs the plain schedule
    for name, (flags, weights) in shapes.items():
        p = run(bench + ["--predict"] + flags, env=env)
        s = summary(p.stdout, "predict")
        ok = p.returncode == 0 and bool(s) and "PREDICTION" in p.stdout and "flash_forward" in p.stdout and "gradient all-reduce" in p.stdout   # bf16: flash by default
        R.check(f"--predict {name}: a table labelled PREDICTION with totals", ok, "" if ok else (p.stdout + p.stderr)[-500:])
        if not ok:
            continue
        print(f"INFO --predict {name}: {s['step_ms']} ms/step predicted on 8xH100 (PyTorch baseline measured 43.5 ms/step), "
              f"goal 33 ms {'met' if s['meets_goal'] == '1' else 'NOT met'}")
        R.check(f"--predict {name}: every kernel has a cost formula", s["unknown_kernels"] == "0", "" if s["unknown_kernels"] == "0" else p.stdout[-300:])
        g, params = float(s["gemm_flops_per_token"]), int(s["params"])
        R.check(f"--predict {name}: GEMM FLOPs per token = 6 x the linear layers' weights ({weights})", g == 6 * weights, f"{g} vs {6 * weights}")
        R.check(f"--predict {name}: those weights are all but the norms, gains and scalars of the {params} params", 0.99 * params < weights <= params)
    pr = ["python3", ROOT / "dev" / "predict.py"]
    p = run(pr + [tmp / "pred" / "launches.log", tmp / "pred" / "predict_run.log", "--batch-tokens", "786432", "--bogus"])
    R.check("dev/predict.py rejects an unknown flag", p.returncode == 2)
    empty = tmp / "empty.log"
    empty.write_text("embedding_forward x:1 grid 1,1,1 block 1,1,1 smem 0 us 1 args\n")
    p = run(pr + [empty, tmp / "pred" / "predict_run.log", "--batch-tokens", "786432"])
    ok = p.returncode == 2 and str(empty) in p.stderr
    R.check("dev/predict.py refuses a log without a training step, naming the file", ok, "" if ok else p.stderr[-200:])


def check_gpu_script(R, tmp):
    script = ROOT / "dev" / "gpu_check.sh"
    R.check("dev/gpu_check.sh parses (bash -n)", run(["bash", "-n", script]).returncode == 0)
    if shutil.which("shellcheck"):
        p = run(["shellcheck", script])
        R.check("dev/gpu_check.sh passes shellcheck", p.returncode == 0, p.stdout[-400:])
    else:
        R.skip("shellcheck of dev/gpu_check.sh", "shellcheck is not installed")
    p = run(["bash", script, "--dry-run", "--out", tmp / "gc"])
    total = re.search(r"total\s+(\d+) s", p.stdout)
    ok = p.returncode == 0 and bool(total) and int(total.group(1)) <= 480 and all(s in p.stdout for s in ("build", "gpu_tests", "memcheck", "racecheck", "bench"))
    R.check("gpu_check.sh --dry-run prints every step's budget, 8 minutes at most in all", ok, "" if ok else p.stdout[-400:])
    R.check("gpu_check.sh --dry-run runs nothing", not (tmp / "gc").exists())
    R.check("gpu_check.sh rejects an unknown flag", run(["bash", script, "--bogus"]).returncode == 2)


def check_attention_bench(R, tmp):
    exe = ROOT / "dev" / "bench_attention_cpu"
    if not exe.exists():
        R.check("dev/bench_attention_cpu is built (make dev/bench_attention_cpu)", False)
        return
    for hd in (64, 128):
        p = run([exe, "--batch", "1", "--seq", "80", "--heads", "4", "--kv-heads", "2", "--head-dim", hd, "--iters", "1"], env=clean_env())
        s = summary(p.stdout, "bench_attention")
        ok = p.returncode == 0 and "flash forward (bf16)" in p.stdout and "SIMT backward (fp32)" in p.stdout and {"fwd_tflops", "rel_diff"} <= set(s)
        R.check(f"bench_attention head_dim {hd}: table and summary, flash agrees with SIMT", ok, "" if ok else (p.stdout + p.stderr)[-400:])
    p = run([exe, "--batch", "2", "--seq", "80", "--heads", "4", "--kv-heads", "2", "--head-dim", "64", "--iters", "1", "--doc-len", "30"], env=clean_env())
    s = summary(p.stdout, "bench_attention")
    ok = p.returncode == 0 and "in documents" in p.stdout and {"fwd_tflops", "rel_diff"} <= set(s)
    R.check("bench_attention --doc-len: DOC_ATTENTION's form runs, table and summary", ok, "" if ok else (p.stdout + p.stderr)[-400:])
    p = run([exe, "--bogus"], env=clean_env())
    R.check("bench_attention rejects an unknown flag", p.returncode != 0 and "--bogus" in p.stderr, p.stderr[-200:])
    p = run([exe, "--head-dim", "96"], env=clean_env())
    R.check("bench_attention refuses head_dim 96 (no flash kernel)", p.returncode != 0 and "64 or 128" in p.stderr, p.stderr[-200:])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shared", default=None, help="shared data folder (default: ../shared beside the repository)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = ap.parse_args()
    if not (ROOT / "train_golf_cpu").exists():
        raise SystemExit(f"test_plan.py: {ROOT / 'train_golf_cpu'} is missing: run make cpu first")
    shared = Path(args.shared).resolve() if args.shared else ROOT.parent / "shared"
    R = Results()
    tmp = Path(tempfile.mkdtemp(prefix="test_plan_"))
    try:
        run_groups(R, [(check_memory, (R, tmp, shared)), (check_highwater, (R, tmp, shared)), (check_predict, (R, tmp, shared)),
                       (check_attention_bench, (R, tmp)), (check_gpu_script, (R, tmp))], timing=True)
    finally:
        R.cleanup(tmp, args.keep)
    R.finish()


if __name__ == "__main__":
    sys.exit(main())
