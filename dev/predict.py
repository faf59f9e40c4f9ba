#!/usr/bin/env python3
"""dev/predict.py — a PREDICTION (a roofline, not a measurement) of one training step of train_golf on 8xH100 SXM,
from the CPU build's launch log of a 1-step run (GOLF_EMU_LOG; dev/bench_train.sh --predict makes both logs).

What it reads
  LAUNCH_LOG  one training step cut out by its marks (mark step .. mark micro .. mark optimizer .. mark step_end):
              every kernel launch (name, grid, block, arguments: device pointers as allocation/offset/bytes, scalars as
              values), every GEMM (m, n, k, batch, math) and every copy or set (dev/cuda_cpu.h's contract has the format)
  TRAIN_LOG   the run's own log: config TRAIN_BATCH_TOKENS=..., config TRAIN_SEQ_LEN=..., model_params:N
The model
  The run has one process: 8 micro-steps of TRAIN_BATCH_TOKENS / 8 tokens. On 8 GPUs each GPU runs one micro-step
  of --batch-tokens / 8 tokens, so the first micro-step of the log is scaled linearly in tokens by
  s = (--batch-tokens / 8) / (run TRAIN_BATCH_TOKENS / 8): FLOPs and bytes times s, launch counts unchanged (exact
  for FLOPs at the same TRAIN_SEQ_LEN; weight bytes, which do not grow with tokens, are over-counted by s). The
  step's other launches (gradient zeroing, optimizer, EMA) are taken as they are.
  Per launch: time = max(tensor FLOPs / 600 TFLOP/s, SIMT FLOPs / 50 TFLOP/s, bytes / 2.5 TB/s) + 4 us (no CUDA
  graph). GEMMs: 2 m n k per batch entry; tensor FLOPs when the math is tf32 or bf16, SIMT (fp32 FFMA) when fp32;
  bytes (m k + k n + m n) x operand size (4, 2 for bf16) per batch entry (C's read when beta != 0 is not counted). Kernels: FLOPs and bytes of the tensors they
  read and write, from their arguments (KERNELS below: one formula per kernel name); a kernel not in the table reads
  and writes its pointer arguments from their offsets to the ends of their allocations, flagged "default" in the
  output. Host copies (h2d, d2h) at 25 GB/s. Then the gradient all-reduce: fp32 gradients (4 x model_params bytes),
  ring, 2 (n - 1) / n x bytes / 350 GB/s NVLink bus bandwidth, not overlapped with the backward.
  DOC_ATTENTION: the attention kernels run on the micro-batch as one sequence of N tokens whose document segments
  bound the keys (their tiles outside are skipped), so their (query, key) pairs are those of the segments: per head
  N x the mean pairs per token of documents of --doc-len tokens cut every TRAIN_SEQ_LEN (default: documents at least
  as long as the micro-batch, the pairs of the plain causal attention). The segments come from the tokens, which
  the log does not hold: --doc-len is an assumption the output states. doc_bounds is one block (one SM of 132).
Output: one line per kernel name (count, GFLOP, MB, predicted us, bound: compute / memory / launch), totals per GPU
and per step on 8 GPUs next to the PyTorch baseline's measured 43.5 ms/step (8xH100, 524,288 tokens/step), whether
the prediction meets --goal-ms, and a last line `predict key:value ...` for scripts.
Usage: python3 dev/predict.py LAUNCH_LOG TRAIN_LOG --batch-tokens N [--gpus 8] [--goal-ms 33] [--anchor-ms 43.5] [--doc-len L]
(standard library only; exit 2 on a log it cannot read)
"""
import argparse
import re
import sys

TENSOR_FLOPS, SIMT_FLOPS, HBM_BYTES, PCIE_BYTES = 600e12, 50e12, 2.5e12, 25e9
LAUNCH_US, NVLINK_BUS, SMS = 4.0, 350e9, 132
DOCS = {"seq": 0, "doc_len": 0, "seen": False}   # DOC_ATTENTION: TRAIN_SEQ_LEN, --doc-len; whether a launch used documents


class Ptr:
    def __init__(self, alloc, off, size):
        self.alloc, self.off, self.size = alloc, off, size


def parse_arg(t):
    if t == "p0" or t == "h":
        return None
    m = re.fullmatch(r"p(\d+)\+(\d+)/(\d+)", t)
    if m:
        return Ptr(*map(int, m.groups()))
    if t[0] == "i":
        return int(t[1:])
    if t[0] == "f":
        return float(t[1:])
    return None


# KERNELS: name -> f(a, grid) = (SIMT FLOPs, bytes[, tensor-core FLOPs]), a the arguments in the kernel's parameter order (pointers as Ptr
# or None, integers, floats), grid (x, y, z). Byte counts are the tensors read plus the tensors written (4-byte floats
# and ints; read-modify-write counts twice); reductions into a few floats and tiny tables (cos/sin, gains) are left out.
def ew(n, streams, flops):      # an elementwise kernel over n elements touching `streams` arrays of n floats
    return flops * n, 4 * streams * n


def doc_pairs_per_token(seq, doc_len):
    """mean (query, key) pairs per token of documents of doc_len tokens cut every seq (0: at least seq long)"""
    if doc_len <= 0:
        return (seq + 1) / 2
    whole, rest = divmod(doc_len, seq)
    return (whole * seq * (seq + 1) / 2 + rest * (rest + 1) / 2) / doc_len


def causal_pairs(a, B, T, H):
    """causal (query, key) pairs over all query heads; with document segments (the pointer before T, H, KV is set:
    DOC_ATTENTION, B = 1 and T = the micro-batch) those of the segments (doc_pairs_per_token)"""
    if isinstance(a[-4], Ptr):
        DOCS["seen"] = True
        return H * T * doc_pairs_per_token(DOCS["seq"], DOCS["doc_len"])
    return B * H * T * (T + 1) / 2


def att_dims(a, grid, heads_in_grid, q_index):
    T, H, KV = a[-3], a[-2], a[-1]
    B = grid[1] // heads_in_grid(H, KV)
    hd = a[q_index].size // (4 * B * T * H)
    return B, T, H, KV, hd, causal_pairs(a, B, T, H)


def attention_forward(a, g):
    B, T, H, KV, hd, pairs = att_dims(a, g, lambda H, KV: H, 2)
    return 4 * hd * pairs + 6 * pairs, 4 * (2 * B * T * H * hd + 2 * B * T * KV * hd + B * H * T)


def attention_backward_dq(a, g):
    B, T, H, KV, hd, pairs = att_dims(a, g, lambda H, KV: H, 4)
    return 6 * hd * pairs + 6 * pairs, 4 * (4 * B * T * H * hd + 2 * B * T * KV * hd + 2 * B * H * T)


def attention_backward_dkv(a, g):
    B, T, H, KV, hd, pairs = att_dims(a, g, lambda H, KV: KV, 3)
    return 8 * hd * pairs + 6 * pairs, 4 * (2 * B * T * H * hd + 4 * B * T * KV * hd + 2 * B * H * T)


# the tensor-core flash attention (PRECISION=bf16): its mma FLOPs count as tensor FLOPs (a third element); q, k, v, dy
# are read in bf16, y, lse, D, dq, dk, dv are fp32; the score pairs are the causal ones (the diagonal tiles' masked
# half is left out, as for the SIMT kernels)
def flash_dims(a, grid, heads_in_grid, q_index):
    T, H, KV = a[-3], a[-2], a[-1]
    B = grid[1] // heads_in_grid(H, KV)
    hd = a[q_index].size // (2 * B * T * H)
    return B, T, H, KV, hd, causal_pairs(a, B, T, H)


def flash_forward(a, g):   # S = Q K^T and P V: 4 hd per pair on tensor cores; the online softmax on SIMT
    B, T, H, KV, hd, pairs = flash_dims(a, g, lambda H, KV: H, 2)
    return 6 * pairs, 2 * (B * T * H * hd + 2 * B * T * KV * hd) + 4 * (B * T * H * hd + B * H * T), 4 * hd * pairs


def flash_backward_dq(a, g):   # S again, dP = dY V^T, dQ = dS K: 6 hd per pair
    B, T, H, KV, hd, pairs = flash_dims(a, g, lambda H, KV: H, 2)
    return 6 * pairs, 2 * (2 * B * T * H * hd + 2 * B * T * KV * hd) + 4 * (B * T * H * hd + 2 * B * H * T), 6 * hd * pairs


def flash_backward_dkv(a, g):   # S, dP, dV = P^T dY, dK = dS^T Q: 8 hd per pair
    B, T, H, KV, hd, pairs = flash_dims(a, g, lambda H, KV: KV, 3)
    return 6 * pairs, 2 * (2 * B * T * H * hd + 2 * B * T * KV * hd) + 4 * (2 * B * T * KV * hd + 2 * B * H * T), 8 * hd * pairs


KERNELS = {
    "embedding_forward": lambda a, g: (0, 4 * (2 * a[3] * a[4] + a[3])),
    "embedding_backward": lambda a, g: (a[3] * a[4], 4 * (3 * a[3] * a[4] + a[3])),
    "bigram_index": lambda a, g: (6 * a[2], 4 * 3 * a[2]),
    "add_scaled": lambda a, g: ew(a[3], 3, 2),
    "dot_accumulate": lambda a, g: ew(a[3], 2, 2),
    "smear_forward": lambda a, g: (2 * a[6] * a[8] + 30 * a[6], 4 * (2 * a[6] * a[8] + 2 * a[6])),
    "smear_backward": lambda a, g: (5 * a[9] * a[11], 4 * (3 * a[9] * a[11] + a[9])),
    "xsa_forward": lambda a, g: (6 * a[3] * a[4] * a[6], 4 * (2 * a[3] * a[4] * a[6] + a[3] * a[5] * a[6])),
    "xsa_backward": lambda a, g: (12 * a[5] * a[6] * a[8], 4 * (3 * a[5] * a[6] * a[8] + 3 * a[5] * a[7] * a[8])),
    "attn_gate_forward": lambda a, g: (3 * a[6] * a[7] * a[8], 4 * (2 * a[6] * a[7] * a[8] + 13 * a[6] * a[7])),
    "attn_gate_backward": lambda a, g: (4 * a[9] * a[10] * a[11], 4 * (3 * a[9] * a[10] * a[11] + 13 * a[9] * a[10])),
    "lane_mean": lambda a, g: ew(a[3], 3, 2),
    "lane_combine_forward": lambda a, g: ew(a[10] * a[11], 6, 10),
    "lane_combine_backward": lambda a, g: ew(a[14] * a[15], 10, 20),
    "par_mid_mix": lambda a, g: ew(a[8] * a[9], 4, 6),
    "par_mid1": lambda a, g: ew(a[6] * a[7], 3, 4),
    "par_combine_forward": lambda a, g: ew(a[10] * a[11], 6, 12),
    "par_mlp_backward": lambda a, g: ew(a[13] * a[14], 9, 20),
    "par_attn_backward": lambda a, g: ew(a[11] * a[12], 8, 14),
    "skip_forward": lambda a, g: ew(a[5] * a[6], 3, 8),
    "skip_backward": lambda a, g: ew(a[4] * a[5], 3, 7),
    "skip_weight_grads": lambda a, g: ew(a[5], 7, 10),
    "rmsnorm_forward": lambda a, g: (3 * a[3] * a[4], 4 * (2 * a[3] * a[4] + a[3])),
    "rmsnorm_backward": lambda a, g: (7 * a[4] * a[5], 4 * ((3 + a[6]) * a[4] * a[5] + a[4])),
    # fused (FUSE=1): the residual step and the norm after it in one pass (args: out, h, rstd, x, x0|s, mix|y, rows, d):
    # reads x and x0 (or y) and the column vector once, writes the residual and the norm output (float or bf16: counted as float)
    "mix_rmsnorm_forward": lambda a, g: (6 * a[6] * a[7], 4 * (4 * a[6] * a[7] + a[6])),
    "scale_add_rmsnorm_forward": lambda a, g: (5 * a[6] * a[7], 4 * (4 * a[6] * a[7] + a[6])),
    "mix_forward": lambda a, g: ew(a[4] * a[5], 3, 3),
    "mix_backward": lambda a, g: ew(a[4] * a[5], 4, 3),
    "scale_add_forward": lambda a, g: ew(a[4] * a[5], 3, 2),
    "scale_backward": lambda a, g: ew(a[3] * a[4], 2 + a[5], 2),
    "column_dot": lambda a, g: ew(a[3] * a[4], 2, 2),
    "relu2_forward": lambda a, g: ew(a[3], 2, 3),
    "relu2_backward": lambda a, g: ew(a[4], 3, 4),
    "qk_prep_forward": lambda a, g: (6 * a[7] * a[9] * a[10], 4 * (2 * a[7] * a[9] * a[10] + a[7] * a[9])),
    "qk_prep_backward": lambda a, g: (14 * a[9] * a[11] * a[12], 4 * (3 * a[9] * a[11] * a[12] + a[9] * a[11])),
    # one block walks the N tokens twice: the time of one SM's share of the GPU's SIMT rate
    "doc_bounds": lambda a, g: (8 * a[3] * SMS, 4 * 3 * a[3]),
    "attention_forward": attention_forward,
    "attention_backward_dq": attention_backward_dq,
    "attention_backward_dkv": attention_backward_dkv,
    "flash_forward": flash_forward,
    "flash_backward_dq": flash_backward_dq,
    "flash_backward_dkv": flash_backward_dkv,
    "flash_backward_prep": lambda a, g: (2 * a[4] * a[6] * a[7], a[4] * a[6] * a[7] * (4 + 4 + 2) + 4 * a[4] * a[6]),
    "softcap_cross_entropy": lambda a, g: (30 * a[3] * a[4], 4 * (2 * a[3] * a[4] + 2 * a[3])),
    "adam_update": lambda a, g: ew(a[4], 7, 12),
    "muon_momentum": lambda a, g: ew(a[3], 4, 4),
    "sum_squares_blocks": lambda a, g: ew(a[2], 1, 2),
    "sum_partials": lambda a, g: ew(a[2], 1, 1),
    "scale_by_inverse_norm": lambda a, g: ew(a[2], 2, 1),
    "transpose": lambda a, g: (0, 8 * a[2] * a[3]),
    "row_normalize": lambda a, g: (3 * a[1] * a[2], 12 * a[1] * a[2]),
    "muon_momentum_stack": lambda a, g: ew(a[5], 4, 4),
    "sum_squares_batched": lambda a, g: ew(a[2] * g[1], 1, 2),
    "scale_by_inverse_norm_batched": lambda a, g: ew(a[3], 2, 1),
    "scale_by_inverse_norm_bf16_batched": lambda a, g: ew(a[3], 2, 1),
    "transpose_batched": lambda a, g: (0, 8 * a[4]),
    "scale_at": lambda a, g: ew(a[3], 2, 1),
    "axpy_at": lambda a, g: ew(a[4], 3, 2),
    "scale_inplace": lambda a, g: ew(a[2], 2, 1),
    "axpy": lambda a, g: ew(a[3], 3, 2),
    "clip_scale": lambda a, g: ew(a[3], 2, 1),
    "fake_quant_rows": lambda a, g: (10 * g[0] * a[2], 12 * g[0] * a[2]),
    "ema_update": lambda a, g: ew(a[2], 3, 3),
    # PRECISION=bf16's casts and its Newton-Schulz steps (2-byte elements)
    "to_bf16": lambda a, g: (a[3], 6 * a[3]),
    "widen_bf16": lambda a, g: (0, 6 * a[2]),
    "round_bf16": lambda a, g: (a[1], 8 * a[1]),
    "ns_combine_bf16": lambda a, g: (4 * a[5], 6 * a[5]),
    "scale_by_inverse_norm_bf16": lambda a, g: ew(a[2], 2, 1),
}


def default_cost(args):
    return 0, sum(p.size - p.off for p in args if isinstance(p, Ptr))


def die(msg):
    print(f"predict: {msg}", file=sys.stderr)
    sys.exit(2)


def read_step(path):
    """the lines of the first training step: {'step': [...], 'micro': [[...], ...], 'optimizer': [...]}"""
    try:
        lines = open(path).read().splitlines()
    except OSError as e:
        die(f"launch log '{path}': {e.strerror}")
    phases, cur, done = {"step": [], "micro": [], "optimizer": []}, None, False
    for ln in lines:
        f = ln.split()
        if not f:
            continue
        if f[0] == "mark":
            if f[1] == "step_end" and cur is not None:
                done = True
                break
            if f[1] == "step":
                cur = phases["step"]
            elif f[1] == "micro" and cur is not None:
                phases["micro"].append([])
                cur = phases["micro"][-1]
            elif f[1] == "optimizer" and cur is not None:
                cur = phases["optimizer"]
            continue
        if cur is not None:
            cur.append(f)
    if not done or not phases["micro"]:
        die(f"launch log '{path}': no complete training step (mark step .. mark micro .. mark step_end); was it written by "
            "train_golf_cpu with GOLF_EMU_LOG and ITERATIONS >= 1?")
    return phases


def read_train_log(path):
    try:
        text = open(path).read()
    except OSError as e:
        die(f"train log '{path}': {e.strerror}")
    got = {}
    for key, pat in (("batch", r"config TRAIN_BATCH_TOKENS=(\d+)"), ("seq", r"config TRAIN_SEQ_LEN=(\d+)"), ("params", r"model_params:(\d+)")):
        m = re.search(pat, text)
        if not m:
            die(f"train log '{path}': no line matching '{pat}'")
        got[key] = int(m.group(1))
    return got


def cost(f):
    """(name, tensor FLOPs, SIMT FLOPs, bytes, host bytes, flagged) of one log line"""
    name = f[0]
    if name.startswith("cublas"):
        kv = dict(zip(f[2:12:2], f[3:13:2]))
        m, n, k, batch, math = int(kv["m"]), int(kv["n"]), int(kv["k"]), int(kv["batch"]), kv["math"]
        size = 2 if math == "bf16" else 4
        flops, nbytes = 2.0 * m * n * k * batch, size * (m * k + k * n + m * n) * batch
        return f"{name} ({math})", (flops if math in ("tf32", "bf16") else 0), (0 if math in ("tf32", "bf16") else flops), nbytes, 0, False
    if name.startswith("cudaMem"):
        n, kind = int(f[3]), f[5]
        if kind in ("h2d", "d2h"):
            return f"{name} ({kind})", 0, 0, 0, n, False
        return f"{name} ({kind})", 0, 0, (2 * n if kind == "d2d" else n), 0, False
    base = name.split("<")[0]
    grid = tuple(int(x) for x in f[3].split(","))
    args = [parse_arg(t) for t in f[f.index("args") + 1:]] if "args" in f else []
    if base in KERNELS:
        simt, nbytes, *tensor = KERNELS[base](args, grid)
        return base, (tensor[0] if tensor else 0), simt, nbytes, 0, False
    simt, nbytes = default_cost(args)
    return base, 0, simt, nbytes, 0, True


def launch_us(tensor, simt, nbytes, host):
    terms = {"compute": max(tensor / TENSOR_FLOPS, simt / SIMT_FLOPS) * 1e6, "memory": (nbytes / HBM_BYTES + host / PCIE_BYTES) * 1e6}
    bound = max(terms, key=terms.get)
    if terms[bound] < LAUNCH_US:
        bound = "launch"
    return max(terms.values()) + LAUNCH_US, bound


def main():
    ap = argparse.ArgumentParser(description="a roofline PREDICTION of one train_golf step on 8xH100 from the CPU build's launch log")
    ap.add_argument("launch_log")
    ap.add_argument("train_log")
    ap.add_argument("--batch-tokens", type=int, required=True, help="the predicted run's TRAIN_BATCH_TOKENS (all GPUs)")
    ap.add_argument("--gpus", type=int, default=8)
    ap.add_argument("--goal-ms", type=float, default=33.0)
    ap.add_argument("--anchor-ms", type=float, default=43.5, help="the PyTorch baseline's measured ms/step (8xH100, 524,288 tokens)")
    ap.add_argument("--doc-len", type=int, default=0, help="DOC_ATTENTION: the documents' length in tokens assumed for the attention's "
                                                         "pairs (default 0: at least the micro-batch, plain causal pairs)")
    args = ap.parse_args()
    if args.gpus < 1 or 8 % args.gpus or args.batch_tokens <= 0:
        die("--gpus must divide 8 and --batch-tokens be positive")
    phases, run = read_step(args.launch_log), read_train_log(args.train_log)
    DOCS.update(seq=run["seq"], doc_len=args.doc_len)
    run_micro = run["batch"] / 8                      # one process: 8 micro-steps
    gpu_micro = args.batch_tokens / args.gpus / (8 // args.gpus)
    if gpu_micro % run["seq"]:
        die(f"--batch-tokens {args.batch_tokens} does not split into sequences of {run['seq']} on {args.gpus} GPUs")
    scale, accum = gpu_micro / run_micro, 8 // args.gpus
    rows, flagged = {}, set()
    gemm_flops = 0.0
    for lines, s, reps in ((phases["step"], 1, 1), (phases["micro"][0], scale, accum), (phases["optimizer"], 1, 1)):
        for f in lines:
            name, tensor, simt, nbytes, host, flag = cost(f)
            tensor, simt, nbytes, host = tensor * s, simt * s, nbytes * s, host * s
            if lines is phases["micro"][0] and name.startswith("cublas"):
                gemm_flops += (tensor + simt) * reps
            us, bound = launch_us(tensor, simt, nbytes, host)
            r = rows.setdefault(name, {"count": 0, "flops": 0.0, "bytes": 0.0, "us": 0.0, "by": {}})
            r["count"] += reps
            r["flops"] += (tensor + simt) * reps
            r["bytes"] += (nbytes + host) * reps
            r["us"] += us * reps
            r["by"][bound] = r["by"].get(bound, 0) + us * reps
            if flag:
                flagged.add(name)
    grad_bytes = 4 * run["params"]
    n = args.gpus
    ar_us = (2 * (n - 1) / n * grad_bytes / NVLINK_BUS * 1e6) if n > 1 else 0.0
    gpu_us = sum(r["us"] for r in rows.values())
    total_ms = (gpu_us + ar_us) / 1e3
    tokens_per_gpu = gpu_micro * accum
    print(f"PREDICTION (roofline model, not a measurement): one training step of train_golf on {n}xH100 SXM, {args.batch_tokens} tokens/step "
          f"({tokens_per_gpu:.0f} per GPU, seq {run['seq']}), {run['params']} parameters")
    print(f"  from {args.launch_log}: a 1-step CPU-build run at TRAIN_BATCH_TOKENS {run['batch']}; its first micro-step scaled x{scale:g} in tokens "
          f"(FLOPs, bytes), launch counts as logged")
    print(f"  per launch: max(tensor FLOPs / {TENSOR_FLOPS / 1e12:.0f} TFLOP/s, SIMT FLOPs / {SIMT_FLOPS / 1e12:.0f} TFLOP/s, "
          f"bytes / {HBM_BYTES / 1e12:.1f} TB/s) + {LAUNCH_US:.0f} us; fp32 GEMMs are SIMT, tf32/bf16 GEMMs tensor")
    print(f"  {'kernel':<36} {'count':>6} {'GFLOP':>10} {'MB':>10} {'pred. us':>10} {'share':>6}  bound")
    for name, r in sorted(rows.items(), key=lambda kv: -kv[1]["us"]):
        bound = max(r["by"], key=r["by"].get)
        print(f"  {name:<36} {r['count']:>6} {r['flops'] / 1e9:>10.2f} {r['bytes'] / 1e6:>10.2f} {r['us']:>10.1f} "
              f"{100 * r['us'] / (gpu_us + ar_us):>5.1f}%  {bound}{'  (default cost: not in the table)' if name in flagged else ''}")
    launches = sum(r["count"] for r in rows.values())
    print(f"  {'gradient all-reduce (ring, NVLink)':<36} {1 if n > 1 else 0:>6} {0:>10.2f} {grad_bytes / 1e6:>10.2f} {ar_us:>10.1f} "
          f"{100 * ar_us / (gpu_us + ar_us):>5.1f}%  network")
    flops = sum(r["flops"] for r in rows.values())
    print(f"  per GPU: {launches} launches ({launches * LAUNCH_US / 1e3:.2f} ms of launch overhead), {flops / 1e12:.3f} TFLOP, "
          f"{sum(r['bytes'] for r in rows.values()) / 1e9:.2f} GB, {gpu_us / 1e3:.2f} ms; all {n} GPUs: {n * flops / 1e12:.3f} TFLOP per step")
    print(f"  GEMM FLOPs per token of the micro-step: {gemm_flops / tokens_per_gpu:.6g}; 6 x params = {6 * run['params']:.6g} "
          f"(ratio {gemm_flops / tokens_per_gpu / (6 * run['params']):.4f}: attention is not a GEMM here, norms and gains are no GEMM's weights)")
    verdict = "meets" if total_ms <= args.goal_ms else "does NOT meet"
    print(f"  predicted step on {n}xH100: {total_ms:.2f} ms ({gpu_us / 1e3:.2f} ms per GPU + {ar_us / 1e3:.2f} ms all-reduce), "
          f"{args.batch_tokens / total_ms * 1e3:.0f} tokens/s; PyTorch baseline measured {args.anchor_ms} ms/step (8xH100, 524,288 tokens); "
          f"the prediction {verdict} the goal of {args.goal_ms:g} ms")
    if DOCS["seen"]:
        print(f"  DOC_ATTENTION: attention pairs of documents of {args.doc_len or 'at least the micro-batch'} tokens cut every "
              f"{run['seq']} ({doc_pairs_per_token(run['seq'], args.doc_len):.1f} keys per query; plain causal: {(run['seq'] + 1) / 2:.1f}): an assumption (--doc-len)")
    if flagged:
        print(f"  default costs (kernels not in dev/predict.py's table): {', '.join(sorted(flagged))}")
    print(f"predict step_ms:{total_ms:.3f} gpu_ms:{gpu_us / 1e3:.3f} allreduce_ms:{ar_us / 1e3:.3f} launches:{launches} "
          f"gemm_flops_per_token:{gemm_flops / tokens_per_gpu:.1f} params:{run['params']} meets_goal:{int(total_ms <= args.goal_ms)} "
          f"unknown_kernels:{len(flagged)}")


if __name__ == "__main__":
    main()
