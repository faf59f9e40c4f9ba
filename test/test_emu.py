#!/usr/bin/python3
"""Tests of the CPU build's CUDA emulation (dev/cuda_cpu.h) through test/emu_faults (make test/emu_faults):

  faults       each fault (a barrier reached by part of a block, collectives naming exited or absent lanes, a
               deadlock, lanes in different collectives, launches over the limits, copies outside allocations)
               exits 1 with a message naming the kernel and its launch site (copies: the call and its file:line)
  collectives  every warp collective against a scalar model, under three fiber orders
  race         a kernel without its barrier gives different results under two orders; with it, the same
  convert      fp16 and bf16 conversions against numpy / torch (nearest even), tf32 against a float64 rounding
  gemm         cublasSgemm / StridedBatched over ops, leading dimensions, alpha, beta against float64
  cublasLt     cublasLtMatmul (bf16 A, B; C = D in bf16 or float32) over both transposes of each operand, beta 0 and 1
               and odd sizes against float64 on the same bf16 values, within the float32 accumulation bound; each bad
               call (ld, type, dims, attribute, C/D layouts, algorithm, alignment) faults with its call site
  orders       train_golf.cu's deterministic kernels give the same bits under forward, reverse and two random
               orders, on one OS thread and on two
  attention    the attention kernels (forward, dq, dk, dv) against float64 for T in {1, 17, 128, 1024}, head_dim 64
               and 128, GQA ratios 1, 2, 4

Usage: /usr/bin/python3 test/test_emu.py [--bin DIR] [--keep]
"""

import argparse
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "test"))
from harness import Results  # noqa: E402

FAULTS = [  # (check, what the message must hold)
    ("partial_barrier", "__syncthreads reached by 16 of the block's 64 threads"),
    ("shfl_exited", "exited while lane 0 waits for it in __shfl_xor_sync"),
    ("shfl_absent", "names lane 16, which is not in the block"),
    ("mask_self", "not in the mask 0x00000001"),
    ("deadlock", "no progress: lane 0 waits in __shfl_sync"),
    ("disagree", "meet in different collectives"),
    ("threads", "more than 1024 threads per block"),
    ("grid", "a grid dimension over"),
    ("smem", "over 48 KiB without the opt-in"),
    ("smem_optin", "over the H100's 227 KiB"),
    ("memcpy_oob", "runs past the end of the device allocation"),
    ("memcpy_kind", "source 0x"),
]
ORDERS = ["forward", "reverse", "random:1", "random:2"]


def emu(exe, *args, order="forward", threads="1", stdin=None, binary=False):
    env = dict(os.environ, GOLF_EMU_ORDER=order, GOLF_EMU_THREADS=threads)
    return subprocess.run([str(exe), *map(str, args)], input=stdin, capture_output=True, env=env, text=not binary)


def check_faults(R, exe):
    for name, want in FAULTS:
        p = emu(exe, name)
        site = "launched at test/emu_faults.cu:" in p.stderr or "(test/emu_faults.cu:" in p.stderr
        R.check(f"fault {name}: exit 1, the message and the site", p.returncode == 1 and want in p.stderr and site, p.stderr.strip()[-300:])
    p = emu(exe, "smem_ok")
    R.check("64 KiB of dynamic shared memory after the opt-in launches", p.returncode == 0 and p.stdout.strip() == "ok", p.stderr[-200:])


def check_collectives(R, exe):
    for order in ORDERS[:3]:
        p = emu(exe, "collectives", order=order)
        R.check(f"warp collectives equal the scalar model ({order})", p.returncode == 0 and p.stdout.strip() == "ok", (p.stdout + p.stderr).strip()[-300:])


def check_race(R, exe):
    a, b = (emu(exe, "race", order=o).stdout.split() for o in ("forward", "reverse"))
    R.check("a kernel missing its barrier gives different bits under forward and reverse orders", len(a) == 2 and len(b) == 2 and a[0] != b[0], f"{a} {b}")
    R.check("the same kernel with its barriers gives the same bits", len(a) == 2 and len(b) == 2 and a[1] == b[1], f"{a} {b}")


def check_convert(R, exe):
    import torch
    rng = np.random.default_rng(5)
    xs = np.concatenate([rng.normal(0, 1, 300), rng.normal(0, 1e-5, 100), rng.normal(0, 3e4, 100),
                         [0.0, -0.0, 65504.0, 65519.0, 65520.0, 1e6, 5.960464477539063e-08, 2.98e-08, 2.9802322387695312e-08, 1.0009765625 * 2 ** -24,
                          np.inf, -np.inf, 1.0 + 2 ** -11, 1.0 + 3 * 2 ** -11, 1.0 + 2 ** -8, 1.0 + 3 * 2 ** -8]]).astype(np.float32)
    p = emu(exe, "convert", stdin="\n".join(repr(float(x)) for x in xs) + "\n")
    rows = [ln.split() for ln in p.stdout.splitlines()]
    ok = p.returncode == 0 and len(rows) == len(xs)
    half = xs.astype(np.float16).view(np.uint16)
    bf = torch.from_numpy(xs.copy()).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    bad = []
    for i, x in enumerate(xs):
        if not ok:
            break
        # tf32: nearest even to 10 mantissa bits, from the float64 value (exact for float32 inputs)
        m, e = np.frexp(np.float64(x))
        t = np.float32(np.ldexp(np.rint(m * 2 ** 11), e - 11)) if np.isfinite(x) else x
        want = (f"{half[i]:04x}", f"{bf[i]:04x}", f"{np.float32(t).view(np.uint32):08x}")
        if tuple(rows[i]) != want:
            bad.append(f"{x!r}: {rows[i]} vs {want}")
    R.check(f"fp16 / bf16 / tf32 of {len(xs)} floats equal numpy's, torch's and float64's nearest-even rounding", ok and not bad, "; ".join(bad[:4]) or p.stderr[-200:])


def check_gemm(R, exe):
    # C entries are at most 0.75 * 9 + 1.25 * 1 = 8; float32 sums of k = 9 products of |a|, |b| <= 1 err by at most
    # gamma_9 * 9 ~ 4.8e-6, the alpha/beta terms by 3 ulps of 8 ~ 1.4e-6: 6.2e-6 absolute, 1.6e-6 of the scale 4
    p = emu(exe, "gemm")
    err = float(p.stdout.strip()) if p.returncode == 0 and p.stdout.strip() else float("inf")
    R.check("cublasSgemm and StridedBatched (ops N/T, ld > rows, alpha, beta, beta = 0 with NaN in C) equal float64 within 1.6e-6", err <= 1.6e-6,
            f"{err:.2e} {p.stdout.strip()[-200:]}")


LT_FAULTS = [("ld", "ld 3 (column-major: ld >= rows)"), ("type", "A is CUDA_R_32F: only CUDA_R_16BF operands"),
             ("dims", "layout of B is 5 x 4 but the op needs 4 x 4"), ("attr", "attribute 7 is not emulated"),
             ("cd", "C's layout (CUDA_R_32F 4 x 4, ld 4) differs from D's"), ("algo", "not one cublasLtMatmulAlgoGetHeuristic returned"),
             ("align", "A is aligned to 2 bytes, under the 256 the algorithm was chosen for")]


def check_cublaslt(R, exe):
    # Bound per entry. The products of bf16 values (8-bit significands) are exact in float32; summing k of them in
    # float32, in any order, errs by at most gamma_{k-1} S_ab, gamma_j = j u / (1 - j u), u = 2^-24, S_ab = sum |a b|;
    # alpha * acc, beta * c and their sum add at most 3 u (|alpha| S_ab (1 + gamma) + |beta c|): together
    # e32 <= (gamma_k + 3u)(|alpha| S_ab + |beta c|) (rounded up once more for the float32 terms). Rounding to a bf16 D
    # adds at most 2^-8 of the value (8-bit significand, nearest): e <= e32 + 2^-8 (|exact| + e32). Float32 D: e32.
    u = 2.0 ** -24
    bad, worst, runs = [], 0.0, 0
    for m, n, k in ((13, 7, 29), (1, 5, 3), (33, 17, 65)):
        for ta in (0, 1):
            for tb in (0, 1):
                for dt in ("bf16", "f32"):
                    for beta in (0.0, 1.0):
                        seed = runs + 11
                        runs += 1
                        p = emu(exe, "lt", ta, tb, m, n, k, dt, beta, seed)
                        lines = p.stdout.splitlines()
                        if p.returncode != 0 or len(lines) != 5:
                            bad.append(f"{ta}{tb} {m}x{n}x{k} {dt} beta {beta}: rc {p.returncode} {p.stdout[-80:]} {p.stderr[-200:]}")
                            continue
                        vals = [np.array([float.fromhex(t) for t in ln.split()]) for ln in lines[1:]]
                        A = vals[0].reshape((m, k) if not ta else (k, m), order="F")
                        B = vals[1].reshape((k, n) if not tb else (n, k), order="F")
                        C0, D = vals[2].reshape((m, n), order="F"), vals[3].reshape((m, n), order="F")
                        oa, ob = (A.T if ta else A), (B.T if tb else B)
                        want = 0.75 * (oa @ ob) + (beta * C0 if beta != 0 else 0.0)
                        s_ab = 0.75 * (np.abs(oa) @ np.abs(ob)) + (abs(beta) * np.abs(C0) if beta != 0 else 0.0)
                        gam = k * u / (1 - k * u)
                        e32 = (gam + 3 * u) * s_ab * (1 + 4 * u)
                        bound = e32 + (2.0 ** -8 * (np.abs(want) + e32) if dt == "bf16" else 0.0)
                        err = np.abs(D - want)
                        ratio = float((err / np.maximum(bound, 1e-300)).max())
                        worst = max(worst, ratio)
                        if not np.all(err <= bound):
                            bad.append(f"op {ta}{tb} {m}x{n}x{k} {dt} beta {beta}: error {float(err.max()):.2e}, {ratio:.2f} of the bound")
    R.check(f"cublasLtMatmul: {runs} GEMMs (ops N/T x N/T, bf16 / float32 D, beta 0 (NaN C) and 1, odd sizes, ld > rows) within the "
            "float32-accumulation bound of float64 (plus bf16 rounding of D)", not bad and runs == 48, f"worst {worst:.2f} of the bound; " + "; ".join(bad[:4]))
    for name, want in LT_FAULTS:
        p = emu(exe, "lt_fault", name)
        R.check(f"cuBLASLt fault {name}: exit 1, the message and the call site", p.returncode == 1 and want in p.stderr and "at test/emu_faults.cu:" in p.stderr,
                p.stderr.strip()[-300:])


def check_orders(R, exe):
    outs = {}
    for threads in ("1", "2"):
        for order in ORDERS:
            p = emu(exe, "kernels", 11, order=order, threads=threads)
            outs[(order, threads)] = p.stdout if p.returncode == 0 else f"failed: {p.stderr[-200:]}"
    base = outs[("forward", "1")]
    n = len(base.splitlines())
    diff = [f"{k}" for k, v in outs.items() if v != base]
    R.check(f"{n} deterministic kernels give the same bits under {len(ORDERS)} orders on 1 and 2 OS threads", n >= 8 and not diff, "differ: " + ", ".join(diff))


def attention_ref(q, k, v, dy):
    """float64 causal GQA attention and its gradients; q, dy [T, H, hd], k, v [T, KV, hd]"""
    T, H, hd = q.shape
    KV = k.shape[1]
    y, lse, dq = np.zeros_like(q), np.zeros((H, T)), np.zeros_like(q)
    dk, dv = np.zeros_like(k), np.zeros_like(v)
    scale, mask = 1 / np.sqrt(hd), np.tril(np.ones((T, T), dtype=bool))
    for h in range(H):
        kh = h // (H // KV)
        S = np.where(mask, q[:, h] @ k[:, kh].T * scale, -np.inf)
        m = S.max(1, keepdims=True)
        P = np.exp(S - m)
        l = P.sum(1, keepdims=True)
        P /= l
        y[:, h] = P @ v[:, kh]
        lse[h] = (m + np.log(l))[:, 0]
        dP = dy[:, h] @ v[:, kh].T
        D = (dy[:, h] * y[:, h]).sum(1, keepdims=True)
        dS = P * (dP - D)
        dq[:, h] = dS @ k[:, kh] * scale
        dk[:, kh] += dS.T @ q[:, h] * scale
        dv[:, kh] += P.T @ dy[:, h]
    return y, lse, dq, dk, dv


def check_attention(R, exe):
    # Tolerance: float32 sums of at most T = 1024 terms (scores over head_dim, outputs and gradients over keys or
    # queries), each with a relative error of a few ulps, give at most ~T * 2^-24 ~ 6e-5 of the largest entry in the
    # worst case; random-signed rounding grows as sqrt(T) (~2e-6 at T = 1024): 2e-5 of each tensor's largest entry
    # bounds it with room, a wrong mask, scale or GQA map is off by O(1).
    for T, hd, H, KV in [(1, 64, 2, 2), (17, 64, 4, 2), (128, 128, 4, 1), (17, 128, 2, 1), (128, 64, 4, 4), (1024, 64, 4, 2)]:
        p = emu(exe, "attention", T, hd, H, KV, 3, threads="2", binary=True)
        label = f"attention T={T} head_dim={hd} H={H} KV={KV}"
        if not R.check(f"{label}: runs", p.returncode == 0, p.stderr[-200:].decode(errors="replace")):
            continue
        a = np.frombuffer(p.stdout, dtype="<f4").astype(np.float64)
        nq, nk = T * H * hd, T * KV * hd
        sizes = [nq, nk, nk, nq, nq, T * H, nq, nk, nk]
        parts, o = [], 0
        for s in sizes:
            parts.append(a[o:o + s])
            o += s
        q, k, v, dy = parts[0].reshape(T, H, hd), parts[1].reshape(T, KV, hd), parts[2].reshape(T, KV, hd), parts[3].reshape(T, H, hd)
        want = attention_ref(q, k, v, dy)
        got = [parts[4].reshape(T, H, hd), parts[5].reshape(H, T), parts[6].reshape(T, H, hd), parts[7].reshape(T, KV, hd), parts[8].reshape(T, KV, hd)]
        errs = {n: float(np.abs(g - w).max() / max(np.abs(w).max(), 1e-30)) for n, g, w in zip(("y", "lse", "dq", "dk", "dv"), got, want)}
        R.check(f"{label}: y, lse, dq, dk, dv within 2e-5 of float64 (of each tensor's largest entry)", o == len(a) and max(errs.values()) <= 2e-5,
                " ".join(f"{n} {e:.1e}" for n, e in errs.items()))
        if T == 128:
            r = emu(exe, "attention", T, hd, H, KV, 3, order="random:4", binary=True)
            R.check(f"{label}: the same bits under a random fiber order", r.returncode == 0 and r.stdout == p.stdout)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=str(ROOT / "test"), help="folder holding emu_faults (default: test/)")
    args = ap.parse_args()
    exe = Path(args.bin).resolve() / "emu_faults"
    if not exe.exists():
        raise SystemExit(f"test_emu.py: {exe} is missing: run make test/emu_faults first")
    R = Results()
    for fn in (check_faults, check_collectives, check_race, check_convert, check_gemm, check_cublaslt, check_orders, check_attention):
        try:
            fn(R, exe)
        except Exception as e:  # a crash of one group is a failure, the others still run
            R.check(f"{fn.__name__} ran", False, str(e)[-500:])
    R.finish()


if __name__ == "__main__":
    sys.exit(main())
