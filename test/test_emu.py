#!/usr/bin/python3
"""Tests of the CPU build's CUDA emulation (dev/cuda_cpu.h) through test/emu_faults (make test/emu_faults):

  faults       each fault (a barrier reached by part of a block, collectives naming exited or absent lanes, a
               deadlock, lanes in different collectives, launches over the limits, copies outside allocations)
               exits 1 with a message naming the kernel and its launch site (copies: the call and its file:line)
  collectives  every warp collective against a scalar model, under three fiber orders
  race         a kernel without its barrier gives different results under two orders; with it, the same
  convert      fp16 and bf16 conversions against numpy / torch (nearest even), tf32 against a float64 rounding
  gemm         cublasSgemm / StridedBatched over ops, leading dimensions, alpha, beta against float64; the loops'
               GEMM (no CBLAS) equals the scalar ascending-k loop bit for bit at every vector width and thread count
  cublasLt     cublasLtMatmul (bf16 A, B; C = D in bf16 or float32) over both transposes of each operand, beta 0 and 1
               and odd sizes against float64 on the same bf16 values, within the float32 accumulation bound; each bad
               call (ld, type, dims, attribute, C/D layouts, algorithm, alignment) faults with its call site
  orders       train_golf.cu's deterministic kernels give the same bits under forward, reverse and two random
               orders, on one OS thread and on two
  fused        each fused kernel (FUSE=1: residual mix / scale-add with the next norm) gives the bits of the plain
               kernels it replaces, fp32 and bf16 outputs, under forward and random fiber orders
  attention    the attention kernels (forward, dq, dk, dv) against float64 for T in {1, 17, 128, 1024}, head_dim 64
               and 128, GQA ratios 1, 2, 4; and within documents (DOC_ATTENTION): doc_bounds's segments against the
               rule written here, the kernels against float64 masked to them
  ptx          mma.sync, ldmatrix, cp.async (the CPU build's tensor-core instructions) against scalar models; their faults
               are in `faults` (a lane skipping an mma, a misaligned ldmatrix row, copies never waited for)
  flash        the bf16 flash kernels against float64 within an error bound derived from bf16 rounding, and their bits
               under two fiber orders; within documents too (the same bound, on the masked scores)
  trainer      train_golf_cpu with PRECISION=bf16 (flash attention) runs a tiny model, losses finite and near fp32's
  graph        stream capture: a sequence of launches, sets, copies and GEMMs captured once and replayed N times
               equals N eager runs bit for bit; each thing a capture forbids (synchronous copies and syncs, copies
               to or from pageable memory, allocations, a library call on the legacy stream, a second capture) and
               each misused graph (never instantiated, destroyed, a capture ended that never began) faults with its
               call site
  graph_trainer  train_golf_cpu with CUDA_GRAPH=1 and CUDA_GRAPH=0 (one emulation thread) logs the same losses and
               writes the same final_model.ckpt (and exact val losses), at PRECISION=fp32 and bf16, and with QAT and the loop schedule
               switching on mid-run (each switch runs a step eagerly and captures again), and with the architecture
               options (BigramHash, SmearGate, XSA, partial RoPE, LN scale, parallel lanes, gates) and EMA, and with
               DOC_ATTENTION
  speed        train_golf_cpu's default training step (PRECISION=bf16) against test/reference.py's on the CPU at
               dev/bench_train.sh --cpu's shape, timed in the same run: within SPEED_MAX_RATIO

Usage: /usr/bin/python3 test/test_emu.py [--bin DIR] [--only GROUP,...]
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
    ("mma_skip", "in kernel k_mma_skip launched at test/emu_faults.cu:", "exited while lane 0 waits for it in mma.sync"),
    ("ldmatrix_misaligned", "in kernel k_ldmatrix_misaligned", "lane 9's row address", "is not 16-byte aligned"),
    ("cp_async_pending", "in kernel k_cp_async_pending", "cp.async copies it never waited for"),
]
ORDERS = ["forward", "reverse", "random:1", "random:2"]


def emu(exe, *args, order="forward", threads="1", stdin=None, binary=False):
    env = dict(os.environ, GOLF_EMU_ORDER=order, GOLF_EMU_THREADS=threads)
    return subprocess.run([str(exe), *map(str, args)], input=stdin, capture_output=True, env=env, text=not binary)


def check_faults(R, exe):
    for name, *want in FAULTS:
        p = emu(exe, name)
        site = "launched at test/emu_faults.cu:" in p.stderr or "(test/emu_faults.cu:" in p.stderr
        R.check(f"fault {name}: exit 1, the message and the site", p.returncode == 1 and all(w in p.stderr for w in want) and site, p.stderr.strip()[-300:])
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


def check_ptx(R, exe):
    # mma.sync (4 random fragment sets: bits equal to the documented fp32 order), ldmatrix x4 / x4.trans / x2 from rows in
    # a random order, cp.async (group 0 after wait_group 1, group 1 after wait_group 0, a read before the wait stale)
    for order in ORDERS[:3]:
        p = emu(exe, "ptx", order=order)
        R.check(f"mma.sync, ldmatrix, cp.async equal scalar models of the PTX ISA ({order})", p.returncode == 0 and p.stdout.strip() == "ok",
                (p.stdout + p.stderr).strip()[-300:])


def check_gemm(R, exe):
    # C entries are at most 0.75 * 9 + 1.25 * 1 = 8; float32 sums of k = 9 products of |a|, |b| <= 1 err by at most
    # gamma_9 * 9 ~ 4.8e-6, the alpha/beta terms by 3 ulps of 8 ~ 1.4e-6: 6.2e-6 absolute, 1.6e-6 of the scale 4
    p = emu(exe, "gemm")
    err = float(p.stdout.strip()) if p.returncode == 0 and p.stdout.strip() else float("inf")
    R.check("cublasSgemm and StridedBatched (ops N/T, ld > rows, alpha, beta, beta = 0 with NaN in C) equal float64 within 1.6e-6", err <= 1.6e-6,
            f"{err:.2e} {p.stdout.strip()[-200:]}")
    # the loops' GEMM (no CBLAS) runs tiles on vector registers and OpenMP threads: the bits of the scalar loop at each
    # vector width (GOLF_EMU_GEMM_WIDTH caps it; a CPU without the ISA runs a narrower one, the same bits) and thread count
    for width in ("16", "8", "4"):
        for threads in ("1", "2"):
            p = subprocess.run([str(exe), "gemm_bits"], capture_output=True, text=True,
                               env=dict(os.environ, GOLF_EMU_GEMM_WIDTH=width, GOLF_EMU_THREADS=threads))
            if p.returncode == 0 and p.stdout.strip() == "cblas":
                R.skip(f"loops GEMM bits (width {width}, {threads} threads)", "built with CBLAS: OpenBLAS sums in its own order")
                break
            R.check(f"the loops' GEMM (vector width <= {width}, {threads} threads) equals the scalar ascending-k loop bit for bit",
                    p.returncode == 0 and p.stdout.strip() == "ok", (p.stdout + p.stderr).strip()[-300:])


LT_FAULTS = [("ld", "ld 3 (column-major: ld >= rows)"), ("type", "A is CUDA_R_32F: only CUDA_R_16BF operands"),
             ("dims", "layout of B is 5 x 4 but the op needs 4 x 4"), ("attr", "attribute 7 is not emulated"),
             ("cd", "C's layout (CUDA_R_32F 4 x 4, ld 4, stride 0) differs from D's"), ("algo", "not one cublasLtMatmulAlgoGetHeuristic returned"),
             ("align", "A (batch entry 0) is aligned to 2 bytes: cuBLASLt's tensor-core kernels need 16"),
             ("align16", "A (batch entry 0) is aligned to 16 bytes, under the 256 the algorithm was chosen for"),
             ("batch", "batch counts A 2, B 1, C 1, D 1: only equal counts are emulated"), ("overlap", "D's batch entries overlap"),
             ("layout_attr", "attribute 1 is not emulated (BATCH_COUNT and STRIDED_BATCH_OFFSET are)")]


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
    p = emu(exe, "lt_batch")
    R.check("cublasLtMatmul: a strided batch of 3 (BATCH_COUNT, STRIDED_BATCH_OFFSET) gives the bits of the 3 matmuls alone",
            p.returncode == 0 and p.stdout.strip() == "same", (p.stdout + p.stderr).strip()[-300:])


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


def check_fused(R, exe):
    # the fused kernels compute each element with the plain kernels' expressions in their order: bit for bit
    for order in ("forward", "random:5"):
        p = emu(exe, "fused", 3, order=order)
        lines = p.stdout.splitlines()
        bad = [ln for ln in lines if not ln.endswith(" same")]
        R.check(f"{len(lines)} fused-kernel cases give the plain kernels' bits ({order} order)", p.returncode == 0 and len(lines) == 16 and not bad,
                "; ".join(bad[:4]) or p.stderr[-200:])


def attention_mask(T, ds=None):
    """[T, T]: query t sees key s when s <= t (and s >= ds[t], the first key of its document segment, when given)"""
    mask = np.tril(np.ones((T, T), dtype=bool))
    return mask if ds is None else mask & (np.arange(T)[None, :] >= np.asarray(ds)[:, None])


def doc_segments(tok, chunk):
    """DOC_ATTENTION's rule, written here: a document starts at token 0 and at each BOS (1) and is cut every chunk
    tokens from its start; (ds, de): each token's segment's first token and one past its last"""
    T = len(tok)
    starts = [n for n in range(T) if n == 0 or tok[n] == 1]
    ds, de = np.zeros(T, dtype=np.int64), np.zeros(T, dtype=np.int64)
    for a, b in zip(starts, starts[1:] + [T]):
        for s0 in range(a, b, chunk):
            ds[s0:min(s0 + chunk, b)], de[s0:min(s0 + chunk, b)] = s0, min(s0 + chunk, b)
    return ds, de


def attention_ref(q, k, v, dy, ds=None):
    """float64 causal GQA attention and its gradients; q, dy [T, H, hd], k, v [T, KV, hd]; ds: within documents"""
    T, H, hd = q.shape
    KV = k.shape[1]
    y, lse, dq = np.zeros_like(q), np.zeros((H, T)), np.zeros_like(q)
    dk, dv = np.zeros_like(k), np.zeros_like(v)
    scale, mask = 1 / np.sqrt(hd), attention_mask(T, ds)
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


# Within documents: (T, head_dim, H, KV, chunk): the tokens' BOS are sparse in the first half (long documents, cut every
# chunk tokens) and dense in the second (emu_faults attention ... docs C)
DOC_CASES = [(1024, 64, 4, 2, 256), (200, 128, 2, 1, 48), (1024, 128, 4, 1, 128)]


def check_documents(R, label, docs, chunk):
    """doc_bounds's ds, de (docs = (tokens, ds, de) from emu_faults) against doc_segments; the number of documents"""
    tok, ds, de = (d.astype(np.int64) for d in docs)
    want = doc_segments(tok, chunk)
    n = int((tok[1:] == 1).sum()) + 1
    return R.check(f"{label}: doc_bounds's segments of {n} documents (cut every {chunk}) equal the rule's",
                   n >= 4 and (ds == want[0]).all() and (de == want[1]).all() and (want[1] - want[0]).max() == chunk,
                   f"ds differ at {np.flatnonzero(ds != want[0])[:5]}, de at {np.flatnonzero(de != want[1])[:5]}")


def check_attention(R, exe):
    # Tolerance: float32 sums of at most T = 1024 terms (scores over head_dim, outputs and gradients over keys or
    # queries), each with a relative error of a few ulps, give at most ~T * 2^-24 ~ 6e-5 of the largest entry in the
    # worst case; random-signed rounding grows as sqrt(T) (~2e-6 at T = 1024): 2e-5 of each tensor's largest entry
    # bounds it with room (documents only shorten the sums), a wrong mask, scale or GQA map is off by O(1).
    for T, hd, H, KV, chunk in [(1, 64, 2, 2, 0), (17, 64, 4, 2, 0), (128, 128, 4, 1, 0), (17, 128, 2, 1, 0), (128, 64, 4, 4, 0),
                                (1024, 64, 4, 2, 0)] + DOC_CASES:
        label = f"attention T={T} head_dim={hd} H={H} KV={KV}" + (f" in documents" if chunk else "")
        parts, err, raw = run_attention(exe, T, hd, H, KV, False, chunk=chunk)
        if not R.check(f"{label}: runs", parts is not None, err):
            continue
        if chunk and not check_documents(R, label, parts[9:], chunk):
            continue
        q, k, v, dy = parts[:4]
        want = attention_ref(q, k, v, dy, parts[10] if chunk else None)
        errs = {n: float(np.abs(g - w).max() / max(np.abs(w).max(), 1e-30)) for n, g, w in zip(("y", "lse", "dq", "dk", "dv"), parts[4:9], want)}
        R.check(f"{label}: y, lse, dq, dk, dv within 2e-5 of float64 (of each tensor's largest entry)", max(errs.values()) <= 2e-5,
                " ".join(f"{n} {e:.1e}" for n, e in errs.items()))
        if T in (128, 200):
            _, err2, raw2 = run_attention(exe, T, hd, H, KV, False, order="random:4", chunk=chunk)
            R.check(f"{label}: the same bits under a random fiber order", raw2 == raw, err2)


U32, UB16 = 2.0 ** -24, 2.0 ** -8   # unit roundoffs of float32 (24 significant bits) and bfloat16 (8)


def flash_bound(q, k, v, dy, y_got, ds=None):
    """Elementwise first-order bounds on |flash - float64| for y, lse, dq, dk, dv (the same shapes as attention_ref's),
    for q, k, v that are bf16 values (so the kernels' casts are exact) and a float32 dy, as training hands them. The
    kernels' own roundings, each bounded by the data:
      scores  s = q.k * scale: a chain of HD fp32 additions of exact bf16 products: |ds| <= (HD + 1) u32 A, A = scale sum |q_i k_i|
      p       exp(s - m) in fp32: relative (HD + 1) u32 A + u32 |s - m| + 2 u32 (expf); the online rescaling adds 4 u32 a tile
      P V     P rounded to bf16 (relative u_bf16) for the mma, fp32 chains of T additions: y errs by
              sum_s P (e_p |v_s - y_t| + u_bf16 |v_s|) + (T + 2 + tiles) u32 (P|v| + |y|)
      lse     m + log l: sum_s P e_p + (T + 2) u32 + 2 u32 (|lse| + |m|)
      dy      rounded to bf16 (relative u_bf16) for dP = dy16.v and D = dy16.y (so both read one dy): dS moves by
              P u_bf16 |dy|.|v_s - y_t| <= P u_bf16 (|dy||v|^T + |dy|.|y|), dv by u_bf16 P^T |dy|
      backward (from the kernel's y, and its lse within the bound above): P = exp(s - lse) relative
              e_P = e_s + u32 |s - lse| + 2 u32 + b_lse; dP = dy.v with (HD + 1) u32 B, B = sum |dy_i v_i|; D = dy.y_got off by
              sum |dy| b_y + (HD + 1) u32 sum |dy y|; dS = P (dP - D) then bf16: E = P (e_P |dP - D| + (HD + 1) u32 B + b_D) +
              (u_bf16 + 2 u32) |dS|; dq = scale (E|k| + (T + 2) u32 |dS||k|), dk = scale sum_heads (E^T|q| + (G T + 2) u32 |dS|^T|q|),
              dv = sum_heads ((P (e_P + u_bf16))^T |dy| + (G T + 1) u32 P^T |dy|)
    Products of two relative errors (below u_bf16^2) are left out; the factor 1.01 covers them. ds (documents): the
    scores masked to the segments; the chain lengths T and the tiles stay those of the whole sequence (upper bounds)."""
    T, H, hd = q.shape
    KV = k.shape[1]
    G = H // KV
    scale, mask = 1 / np.sqrt(hd), attention_mask(T, ds)
    tiles = (T + 31) // 32
    by, blse, bdq = np.zeros_like(q), np.zeros((H, T)), np.zeros_like(q)
    bdk, bdv = np.zeros_like(k), np.zeros_like(v)
    for h in range(H):
        kh = h // G
        Q, K, V, dY = q[:, h], k[:, kh], v[:, kh], dy[:, h]
        S = np.where(mask, Q @ K.T * scale, -np.inf)
        m = S.max(1, keepdims=True)
        P = np.exp(S - m)
        l = P.sum(1, keepdims=True)
        P /= l
        lse = m + np.log(l)
        Y = P @ V
        A = np.abs(Q) @ np.abs(K).T * scale
        es = (hd + 1) * U32 * A
        ep = np.where(mask, es + U32 * np.abs(np.where(mask, S, 0) - m) + 2 * U32 + 4 * U32 * tiles, 0)
        PV = P @ np.abs(V)
        by[:, h] = (P * ep) @ np.abs(V) + (P * ep).sum(1, keepdims=True) * np.abs(Y) + UB16 * PV + (T + 2 + tiles) * U32 * (PV + np.abs(Y))
        blse[h] = ((P * ep).sum(1, keepdims=True) + (T + 2) * U32 + 2 * U32 * (np.abs(lse) + np.abs(m)))[:, 0]
        eP = np.where(mask, es + U32 * np.abs(np.where(mask, S, 0) - lse) + 2 * U32 + blse[h][:, None], 0)
        dP = dY @ V.T
        B = np.abs(dY) @ np.abs(V).T
        D = (dY * y_got[:, h]).sum(1, keepdims=True)
        bD = (np.abs(dY) * by[:, h]).sum(1, keepdims=True) + (hd + 1) * U32 * (np.abs(dY) * np.abs(y_got[:, h])).sum(1, keepdims=True)
        dS = P * (dP - D)
        E = P * (eP * np.abs(dP - D) + (hd + 1) * U32 * B + bD + UB16 * (B + (np.abs(dY) * np.abs(y_got[:, h])).sum(1, keepdims=True))) \
            + (UB16 + 2 * U32) * np.abs(dS)
        bdq[:, h] = scale * (E @ np.abs(K) + (T + 2) * U32 * np.abs(dS) @ np.abs(K))
        bdk[:, kh] += scale * (E.T @ np.abs(Q) + (G * T + 2) * U32 * np.abs(dS).T @ np.abs(Q))
        bdv[:, kh] += (P * (eP + 2 * UB16)).T @ np.abs(dY) + (G * T + 1) * U32 * P.T @ np.abs(dY)
    return [1.01 * b for b in (by, blse, bdq, bdk, bdv)]


def run_attention(exe, T, hd, H, KV, flash, order="forward", chunk=0):
    """the attention kernels' inputs and outputs: q, k, v, dy, y, lse, dq, dk, dv (float64 arrays), with chunk > 0
    (documents) also the tokens, ds and de; or None and stderr"""
    p = emu(exe, "attention", T, hd, H, KV, 3, *(["flash"] if flash else []), *(["docs", chunk] if chunk else []), order=order,
            threads="2", binary=True)
    if p.returncode:
        return None, p.stderr[-300:].decode(errors="replace"), p.stdout
    a = np.frombuffer(p.stdout, dtype="<f4").astype(np.float64)
    nq, nk = T * H * hd, T * KV * hd
    shapes = [(T, H, hd), (T, KV, hd), (T, KV, hd), (T, H, hd), (T, H, hd), (H, T), (T, H, hd), (T, KV, hd), (T, KV, hd)]
    shapes += [(T,)] * (3 if chunk else 0)
    sizes = [int(np.prod(sh)) for sh in shapes]
    if sum(sizes) != len(a):
        return None, f"{len(a)} floats, {sum(sizes)} expected", p.stdout
    parts, o = [], 0
    for s, sh in zip(sizes, shapes):
        parts.append(a[o:o + s].reshape(sh))
        o += s
    return parts, "", p.stdout


def check_flash(R, exe):
    # The flash kernels (PRECISION=bf16) against float64 on their own bf16-rounded inputs, elementwise within
    # flash_bound (derived from bf16 rounding of P and dS and fp32 accumulation, as a function of the data).
    # Shapes: every T of {1, 17, 128, 1024} with head_dim 64 and 128, GQA ratios 1, 2, 4 (T = 1024: ratio 2 at head_dim
    # 64, ratios 1 and 4 at 128: the longest causal chains and the most tiles, ~2 s each; the whole group takes ~15 s
    # of CPU). Bits under two fiber orders for every shape (a missing cp.async wait or barrier between the stages would
    # read another fiber's half-written tile).
    for T, hd, H, KV, chunk in [(1, 64, 2, 2, 0), (1, 128, 4, 1, 0), (17, 64, 4, 2, 0), (17, 128, 4, 1, 0), (128, 64, 4, 1, 0),
                                (128, 128, 2, 1, 0), (128, 128, 2, 2, 0), (1024, 64, 4, 2, 0), (1024, 128, 1, 1, 0), (1024, 128, 4, 1, 0)] + DOC_CASES:
        label = f"flash attention T={T} head_dim={hd} H={H} KV={KV}" + (f" in documents" if chunk else "")
        parts, err, raw = run_attention(exe, T, hd, H, KV, True, chunk=chunk)
        if not R.check(f"{label}: runs", parts is not None, err):
            continue
        if chunk and not check_documents(R, label, parts[9:], chunk):
            continue
        q, k, v, dy = parts[:4]
        got = parts[4:9]
        ds = parts[10] if chunk else None
        want = attention_ref(q, k, v, dy, ds)
        bounds = flash_bound(q, k, v, dy, got[0], ds)
        ratios = {n: float((np.abs(g - w) / b).max()) for n, g, w, b in zip(("y", "lse", "dq", "dk", "dv"), got, want, bounds)}
        rel = {n: float(np.abs(g - w).max() / max(np.abs(w).max(), 1e-30)) for n, g, w in zip(("y", "lse", "dq", "dk", "dv"), got, want)}
        R.check(f"{label}: y, lse, dq, dk, dv within the bf16 error bound of float64 (worst error / bound)", max(ratios.values()) <= 1,
                " ".join(f"{n} {ratios[n]:.2f} ({rel[n]:.1e} of max)" for n in ratios))
        print(f"  {label}: error / bound " + " ".join(f"{n} {ratios[n]:.3f}" for n in ratios) +
              "; error / largest entry " + " ".join(f"{n} {rel[n]:.1e}" for n in rel))
        _, err2, raw2 = run_attention(exe, T, hd, H, KV, True, order="random:7", chunk=chunk)
        R.check(f"{label}: the same bits under forward and random:7 fiber orders", raw2 == raw, err2)


TRAINER_SHAPE = {"NUM_LAYERS": "2", "MODEL_DIM": "128", "NUM_KV_HEADS": "1", "MLP_MULT": "2", "TRAIN_SEQ_LEN": "128",
                 "TRAIN_BATCH_TOKENS": "2048", "VAL_BATCH_SIZE": "4096", "ITERATIONS": "3", "WARMDOWN_ITERS": "1",
                 "MAX_WALLCLOCK_SECONDS": "0", "TRAIN_LOG_EVERY": "1", "VAL_LOSS_EVERY": "0"}
# Losses of the bf16 run within 0.02 of the fp32 run's: bf16 attention perturbs y by ~2^-8 of its size (flash_bound),
# which moves a loss of ~7 by well under 0.01 over 3 steps of a 2-layer model; loose on purpose (the kernels
# themselves are held to flash_bound above), it catches NaN, a dead attention path or a diverging step.
TRAINER_LOSS_ATOL = 0.02


GRAPH_FAULTS = [  # (what, what the message must hold)
    ("memcpy", "cudaMemcpy at test/emu_faults.cu:", "a synchronous copy"),
    ("sync", "cudaDeviceSynchronize at test/emu_faults.cu:", "a device synchronization"),
    ("stream_sync", "cudaStreamSynchronize at test/emu_faults.cu:", "a stream synchronization"),
    ("d2h_pageable", "cudaMemcpyAsync at test/emu_faults.cu:", "a host read of device memory into pageable host memory"),
    ("h2d_pageable", "cudaMemcpyAsync at test/emu_faults.cu:", "a copy from pageable host memory"),
    ("malloc", "cudaMalloc at test/emu_faults.cu:", "an allocation"),
    ("legacy_gemm", "cublasSgemm at test/emu_faults.cu:", "issued to the legacy default stream"),
    ("twice", "cudaStreamBeginCapture at test/emu_faults.cu:", "a capture is already active"),
    ("global", "cudaStreamBeginCapture at test/emu_faults.cu:", "cudaStreamCaptureModeGlobal", "ThreadLocal"),
    ("no_workspace", "cublasSgemm at test/emu_faults.cu:", "without a workspace", "cublasSetWorkspace"),
    ("legacy_step", "cublasSgemm at test/emu_faults.cu:", "legacy default stream during a training step"),
    ("uninstantiated", "cudaGraphLaunch at test/emu_faults.cu:", "is not an instantiated graph"),
    ("destroyed", "cudaGraphLaunch at test/emu_faults.cu:", "is not an instantiated graph"),
    ("end_unbegun", "cudaStreamEndCapture at test/emu_faults.cu:", "ends a capture that was never begun"),
]


def check_graph(R, exe):
    for n in (1, 5):
        p = emu(exe, "graph", n)
        R.check(f"a captured sequence replayed {n} times equals {n} eager runs bit for bit", p.returncode == 0 and p.stdout.strip() == f"ok {n}",
                (p.stdout + p.stderr).strip()[-300:])
    for what, *want in GRAPH_FAULTS:
        p = emu(exe, "graph_fault", what)
        during = what not in ("uninstantiated", "destroyed", "end_unbegun", "global", "legacy_step")
        R.check(f"graph fault {what}: exit 1, the message and the call site", p.returncode == 1 and all(w in p.stderr for w in want) and
                (not during or "stream capture (begun at test/emu_faults.cu:" in p.stderr or "a capture is already active (begun at" in p.stderr),
                p.stderr.strip()[-300:])


# CUDA_GRAPH=1 against 0: the same bits, so one emulation thread (float atomics in another order differ in low bits)
GRAPH_RUNS = [("fp32", {"PRECISION": "fp32"}), ("bf16", {"PRECISION": "bf16"}),
              ("QAT and loop switching", {"ITERATIONS": "6", "QAT": "1", "QAT_START_FRAC": "0.3", "LOOP_ENCODER": "0,1,0", "LOOP_DECODER": "1",
                                          "LOOP_START_FRAC": "0.6"}),
              ("architecture options", {"ITERATIONS": "3", "NUM_LAYERS": "3", "BIGRAM_VOCAB_SIZE": "64", "BIGRAM_DIM": "32", "SMEAR_GATE": "1",
                                        "XSA_LAST_N": "1", "ROPE_DIMS": "32", "LN_SCALE": "1", "PARALLEL_FROM": "2", "SKIP_GATES": "1",
                                        "ATTN_OUT_GATE": "1", "MLP_LEAKY_SLOPE": "0.5", "EMA_DECAY": "0.9"}),
              ("DOC_ATTENTION", {"ITERATIONS": "3", "DOC_ATTENTION": "1", "PRECISION": "bf16"})]


def trainer_setup(R, prefix):
    """(train_golf_cpu, the shared folder, a new temporary folder, a 4,096-token val cut in it) for the trainer
    checks, or None (a failed check) when train_golf_cpu is not built"""
    import tempfile
    sys.path.insert(0, str(ROOT / "dev"))
    from val_cut import val_cut
    cpu = ROOT / "train_golf_cpu"
    if not cpu.exists():
        R.check("train_golf_cpu is built (make cpu)", False, str(cpu))
        return None
    shared = ROOT.parent / "shared"
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    return cpu, shared, tmp, val_cut(shared / "data" / "sample_sp1024", tmp / "data", 4096)


def check_graph_trainer(R, exe):
    import re
    import shutil
    setup = trainer_setup(R, "test_emu_graph_")
    if setup is None:
        return
    cpu, shared, tmp, data = setup
    try:
        for name, extra in GRAPH_RUNS:
            out = {}
            for graph in ("1", "0"):
                run_dir = tmp / f"{name.split()[0]}_{graph}"
                env = dict(os.environ, **dict(TRAINER_SHAPE, ITERATIONS="4"), NUM_HEADS="2", DATA_PATH=str(data),
                           TOKENIZER_PATH=str(shared / "tokenizers" / "fineweb_1024_bpe.model"), OUT_DIR=str(run_dir), RUN_ID=f"graph_{graph}",
                           CUDA_GRAPH=graph, GOLF_EMU_THREADS="1", OMP_WAIT_POLICY="passive")
                env.update(extra)
                p = subprocess.run([str(cpu)], capture_output=True, text=True, env=env, cwd=tmp)
                ck = run_dir / "final_model.ckpt"
                out[graph] = (p.returncode, re.findall(r"step:(\d+)/\d+ train_loss:(\S+)|_exact (val_loss:\S+ val_bpb:\S+)", p.stdout),
                              p.stdout.count("cuda_graph: captured"),
                              ck.read_bytes() if ck.exists() else b"", (p.stdout[-300:] + p.stderr[-300:]).strip())
            (rc1, l1, cap1, ck1, t1), (rc0, l0, cap0, ck0, t0) = out["1"], out["0"]
            want = 3 if "QAT" in name else 1   # captures: after step 0; and again after each switch
            R.check(f"CUDA_GRAPH=1 and 0 at {name}: both run, {want} capture(s), the same train losses and final_model.ckpt bit for bit",
                    rc1 == 0 and rc0 == 0 and cap1 == want and cap0 == 0 and len(l1) >= 3 and l1 == l0 and ck1 != b"" and ck1 == ck0,
                    f"rc {rc1} {rc0}, captures {cap1} {cap0}, losses {l1} / {l0}, ckpt equal {ck1 == ck0}: {t1 if rc1 else t0}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def check_trainer(R, exe):
    import re
    import shutil
    setup = trainer_setup(R, "test_emu_")
    if setup is None:
        return
    cpu, shared, tmp, data = setup
    try:
        for heads in ("2", "1"):   # head_dim 64, 128
            losses = {}
            for prec in ("fp32", "bf16"):
                log = tmp / f"launches_{prec}_{heads}.log"
                env = dict(os.environ, **TRAINER_SHAPE, NUM_HEADS=heads, PRECISION=prec, FLASH_ATTENTION="1", DATA_PATH=str(data),
                           TOKENIZER_PATH=str(shared / "tokenizers" / "fineweb_1024_bpe.model"), OUT_DIR=str(tmp / prec),
                           RUN_ID=f"emu_{prec}", GOLF_EMU_LOG=str(log), OMP_WAIT_POLICY="passive")
                p = subprocess.run([str(cpu)], capture_output=True, text=True, env=env, cwd=tmp)
                ls = [float(x) for x in re.findall(r"train_loss:([-+0-9.eEnaif]+)", p.stdout)]
                vl = re.findall(r"val_loss:([-+0-9.eEnaif]+)", p.stdout)
                ls += [float(vl[-1])] if vl else []
                kernels = log.read_text() if log.exists() else ""
                flash = "flash_forward<" in kernels and "flash_backward_dkv<" in kernels
                R.check(f"train_golf_cpu PRECISION={prec} head_dim {128 // int(heads)}: runs, {'flash' if prec == 'bf16' else 'SIMT'} attention, "
                        f"losses finite", p.returncode == 0 and len(ls) >= 4 and all(np.isfinite(ls)) and flash == (prec == "bf16"),
                        (p.stdout[-300:] + p.stderr[-300:]).strip())
                losses[prec] = ls
            a, b = losses["fp32"], losses["bf16"]
            d = max((abs(x - y) for x, y in zip(a, b)), default=float("inf"))
            R.check(f"head_dim {128 // int(heads)}: bf16 train and val losses within {TRAINER_LOSS_ATOL} of fp32's", len(a) == len(b) and d <= TRAINER_LOSS_ATOL,
                    f"fp32 {a} bf16 {b}")
            print(f"  head_dim {128 // int(heads)}: losses fp32 {a}, bf16 {b}: largest difference {d:.2e}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# speed: train_golf_cpu at its defaults (PRECISION=bf16, as `make cpu` built it) against test/reference.py on the CPU
# (float32, no AMP) at dev/bench_train.sh --cpu's shape, timed back to back: the faster of steps 2..SPEED_STEPS of each
# (the fastest step is the one least disturbed by other load on the machine; step 1 warms up). Before the emulator's
# fast GEMM and lean scheduler the ratio was 29x (31.3 against 1.08 s/step); SPEED_MAX_RATIO = 12 is over twice what
# this version measures on a loaded 2-core machine (README, the CPU build) and still fails a return to 20x or more.
SPEED_SHAPE = {"NUM_LAYERS": "4", "MODEL_DIM": "128", "NUM_HEADS": "2", "NUM_KV_HEADS": "1", "MLP_MULT": "2", "TRAIN_SEQ_LEN": "128",
               "TRAIN_BATCH_TOKENS": "8192", "VAL_BATCH_SIZE": "4096", "WARMDOWN_ITERS": "0", "MAX_WALLCLOCK_SECONDS": "0",
               "TRAIN_LOG_EVERY": "1", "VAL_LOSS_EVERY": "0"}
SPEED_STEPS = 4
SPEED_MAX_RATIO = 12.0


def fastest_step_ms(log):
    """the smallest train_time difference between consecutive logged steps after step 1 of a train_gpt.py-style log"""
    import re
    t = {int(k): float(v) for k, v in re.findall(r"step:(\d+)/\d+ train_loss:\S+ train_time:([0-9.]+)ms", log)}
    d = [t[k] - t[k - 1] for k in sorted(t) if k >= 2 and k - 1 in t]
    return min(d) if d else float("nan")


def check_speed(R, exe):
    import shutil
    setup = trainer_setup(R, "test_emu_speed_")
    if setup is None:
        return
    cpu, shared, tmp, data = setup
    try:
        env = dict(os.environ, **SPEED_SHAPE, ITERATIONS=str(SPEED_STEPS), DATA_PATH=str(data), OMP_WAIT_POLICY="passive",
                   TOKENIZER_PATH=str(shared / "tokenizers" / "fineweb_1024_bpe.model"), OUT_DIR=str(tmp), RUN_ID="speed")
        env.pop("PRECISION", None)
        g = subprocess.run([str(cpu)], capture_output=True, text=True, env=env, cwd=tmp)
        r = subprocess.run([sys.executable, str(ROOT / "test" / "reference.py"), "train", "--out", str(tmp / "ref.ckpt"), "--device", "cpu",
                            "--no-amp"], capture_output=True, text=True, env=env, cwd=tmp)
        gm, rm = fastest_step_ms(g.stdout), fastest_step_ms(r.stdout)
        ratio = gm / rm if rm > 0 else float("nan")
        print(f"  speed: train_golf_cpu (PRECISION=bf16) {gm / 1e3:.2f} s/step, reference.py {rm / 1e3:.2f} s/step: {ratio:.2f}x")
        R.check(f"train_golf_cpu's default training step within {SPEED_MAX_RATIO:.0f}x of reference.py's on the CPU (4x128, 8,192 tokens/step)",
                g.returncode == 0 and r.returncode == 0 and ratio <= SPEED_MAX_RATIO,
                f"{ratio:.2f}x ({gm:.0f} / {rm:.0f} ms) {(g.stdout[-200:] + g.stderr[-200:]) if g.returncode else ''}{r.stderr[-300:] if r.returncode else ''}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=str(ROOT / "test"), help="folder holding emu_faults (default: test/)")
    ap.add_argument("--only", default="", help="comma-separated groups to run (e.g. ptx,flash,trainer; default: all)")
    args = ap.parse_args()
    exe = Path(args.bin).resolve() / "emu_faults"
    if not exe.exists():
        raise SystemExit(f"test_emu.py: {exe} is missing: run make test/emu_faults first")
    R = Results()
    for fn in (check_faults, check_collectives, check_race, check_convert, check_gemm, check_cublaslt, check_orders, check_fused, check_attention, check_ptx, check_flash, check_trainer, check_graph, check_graph_trainer, check_speed):
        if args.only and fn.__name__[len("check_"):] not in args.only.split(","):
            continue
        try:
            fn(R, exe)
        except Exception as e:  # a crash of one group is a failure, the others still run
            R.check(f"{fn.__name__} ran", False, str(e)[-500:])
    R.finish()


if __name__ == "__main__":
    sys.exit(main())
