#!/usr/bin/python3
"""Tests of GPTQ (dev/golf_export --gptq), quantization-aware training and the weight EMA (test/reference.py), and
the artifact size prediction (golf_export --predict / --budget, dev/fit.sh).

  gptq codes   golf_export --gptq codes and scales vs a float64 numpy GPTQ written here (column by column, numpy's
               inverse and Cholesky) on the same W and H (--dump-hessians): every scheme, ternary groups, every clip
               rule, another damping and block size, dead input columns (zeroed mlp.fc rows) and an all-zero row
  gptq error   tr((W-Q) H (W-Q)^T) of GPTQ <= the row-wise quantizer's, every calibrated matrix, every scheme
  gptq bpb     a model trained 60 steps on CPU: golf_infer on each GPTQ blob == reference.py on its dequantized
               weights; the GPTQ roundtrip val_bpb <= the row-wise one at int6/int5/int4/ternary (int8 printed)
  gptq val     a --gptq glob matching fineweb_val_* shards is refused
  qat exact    reference.fake_quant == the values golf_export --clip none writes, bit for bit, every scheme
  qat ste      the fake-quantized linear's forward value and straight-through gradient vs the direct formulas
  qat train    bad QUANT / QAT_START_FRAC / EMA_DECAY are refused; QAT from half way: the switch is logged, losses
               finite and decreasing; per scheme, reference.py on its fake-quantized weights scores what golf_infer
               scores on the --clip none blob
  ema          the Trainer's EMA against the float64 formula over 4 steps; train() ends on the EMA weights
  predict      --predict of a blob's own shape == its size; a random-init shape predicted from another shape's
               blob; --budget exit codes (export and predict); dev/fit.sh prints its table; usage errors

Usage: /usr/bin/python3 test/test_quant.py [--bin DIR] [--shared DIR] [--keep]
The last line printed is "N passed, M failed, K skipped"; exit status 1 if anything failed.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "test"))
import reference  # noqa: E402
import test_infer as TI  # noqa: E402  (helpers: run, ref, eval_pair, the float64 row-wise quantizer, val shards)
from harness import Results, binary_test_args, require_binaries, run_groups  # noqa: E402

SCHEMES = ["int8", "int6", "int5", "int4", "ternary"]
TINY = TI.TINY                     # 3 layers, dim 64, 4/2 heads, MLP 2x, seq 64
TINY_SHAPE = ["--num-layers", "3", "--model-dim", "64", "--mlp-mult", "2", "--vocab-size", "1024", "--num-heads", "4", "--num-kv-heads", "2"]
# GPTQ's bpb is compared with the row-wise quantizer's where quantization error dominates the noise of which codes
# round which way; at int8 both are within ~1e-3 bpb of the float model on this small model and the order is chance.
GPTQ_NO_WORSE = ("int6", "int5", "int4", "ternary")


def shards(shared):
    return shared / "data" / "sample_sp1024"


def train_model(shared, out, steps, *flags):
    """reference.py train on the shared train shard (the stand-in prose, not FineWeb val); returns the log."""
    return TI.ref("train", *TINY, "--iterations", str(steps), "--train-batch-tokens", "4096", "--warmdown-iters", str(max(steps // 3, 1)),
                  "--max-wallclock-seconds", "0", "--no-val", "--data-path", shards(shared),
                  "--tokenizer-path", shared / "tokenizers" / "fineweb_1024_bpe.model", "--out", out, *flags).stdout


def dump_arrays(dump, name, shape):
    """codes int8 [rows, cols] and fp16 scale bits [rows, groups] of a golf_export --dump."""
    rows = shape[0] if len(shape) == 2 else 1
    codes = np.fromfile(dump / f"{name}.codes", np.int8).reshape(rows, -1)
    scales = np.fromfile(dump / f"{name}.scales", "<u2").reshape(rows, -1)
    return codes, scales


def dequantize(codes, scales, group=128):
    """codes * scale in float32 (golf_infer.c's decoder: (float)q * scale); ternary groups of `group` columns."""
    g = codes.shape[1] if scales.shape[1] == 1 else group
    s = np.repeat(scales.view(np.float16).astype(np.float32), g, axis=1)[:, :codes.shape[1]]
    return codes.astype(np.float32) * s


# ----------------------------------------------------------------------------------------------------
# the float64 GPTQ (the rule in dev/golf_export.c's header comment), column by column

def gptq_np(w, H, scales, scheme, group, damp=0.01):
    """codes int8 [rows, cols] of w under H with the given fp16 scale bits [rows, groups]: visit the columns by
    diag(H) descending (lower index first on ties); dead columns get H_jj = 1; every H_jj += damp * mean of the live
    H_jj; U = upper Cholesky factor of the inverse (numpy); per column q = clamp(rint(w/s)), e = (w - q s) / U_kk,
    later columns -= e U_k,later."""
    rows, cols = w.shape
    qmax = TI.QMAX[scheme]
    g = cols if scales.shape[1] == 1 else group
    d = np.diag(H).copy()
    order = sorted(range(cols), key=lambda j: (-d[j], j))
    A = H[np.ix_(order, order)].copy()
    live = [float(d[j]) for j in range(cols) if d[j] > 0]
    lam = damp * (sum(live) / len(live)) if live else 0.0
    for a in range(cols):
        if d[order[a]] == 0:
            A[a, a] = 1.0
        A[a, a] += lam
    U = np.linalg.cholesky(np.linalg.inv(A)).T
    W = w.astype(np.float64)[:, order].copy()
    s_all = scales.view(np.float16).astype(np.float64)
    codes = np.zeros((rows, cols), np.int8)
    for k in range(cols):
        s = s_all[:, order[k] // g]
        q = np.zeros(rows)
        nz = s > 0
        q[nz] = np.clip(np.rint(W[nz, k] / s[nz]), -qmax, qmax)
        codes[:, order[k]] = q
        e = (W[:, k] - q * s) / U[k, k]
        W[:, k + 1:] -= np.outer(e, U[k, k + 1:])
    return codes


def h_error(w, q, H):
    """tr((W - Q) H (W - Q)^T), float64."""
    d = w.astype(np.float64) - q.astype(np.float64)
    return float(np.einsum("ij,jk,ik->", d, H, d))


# ----------------------------------------------------------------------------------------------------
# GPTQ

def gptq_export(b, ck, out, scheme, shared, dump=None, hess=None, extra=()):
    cmd = [b / "golf_export", ck, out, "--quant", scheme, "--gptq", shards(shared) / "fineweb_train_*.bin", "--quiet", *extra]
    for flag, d in (("--dump", dump), ("--dump-hessians", hess)):
        if d is not None:
            d.mkdir(exist_ok=True)
            cmd += [flag, d]
    return TI.run(cmd)


def check_gptq_codes(R, b, shared, tmp, ck):
    c = reference.read_container(ck)
    tensors = dict(c.tensors)
    fc = tensors["blocks.0.mlp.fc.weight"].copy()
    fc[:8] = 0                        # hidden units 0..7 never fire: columns 0..7 of blocks.0.mlp.proj's input are dead
    cq = tensors["blocks.1.attn.c_q.weight"].copy()
    cq[3] = 0                         # an all-zero row: scale 0, codes 0
    tensors.update({"blocks.0.mlp.fc.weight": fc, "blocks.1.attn.c_q.weight": cq})
    edited = tmp / "gptq_edited.bin"
    reference.write_container(edited, c.config, c.steps, list(tensors.items()))
    cases = [("int8", 128, "search", 0.01, 128), ("int6", 128, "none", 0.1, 16), ("int5", 128, "sdclip", 0.01, 128), ("int4", 128, "search", 0.01, 128),
             ("ternary", 128, "search", 0.01, 128), ("ternary", 48, "search", 0.01, 128)]
    for scheme, group, clip, damp, block in cases:
        tag = f"{scheme}_{group}_{clip}"
        dump, hess = tmp / f"gc_{tag}", tmp / f"gh_{tag}"
        gptq_export(b, edited, tmp / "gc.golf", scheme, shared, dump, hess, ["--group", group, "--clip", clip, "--gptq-tokens", "8192",
                                                                            "--gptq-damp", damp, "--gptq-block", block])
        bad, n, dead = [], 0, 0
        for name, w in tensors.items():
            if not (hess / f"{name}.hessian").exists():
                continue
            n += 1
            H = np.fromfile(hess / f"{name}.hessian", np.float64).reshape(w.shape[1], w.shape[1])
            dead += int((np.diag(H) == 0).sum())
            got_c, got_s = dump_arrays(dump, name, w.shape)
            want_s = TI.quantize_np(w.astype(np.float32), scheme, group, clip)[1]
            want_c = gptq_np(w, H, got_s, scheme, group, damp)
            if not np.array_equal(got_s, want_s) or not np.array_equal(got_c, want_c):
                bad.append(f"{name}: {(got_c != want_c).sum()} codes, {(got_s != want_s).sum()} scales differ")
        # every code equal: both sides work in float64 from the same W, H and scales; their U differ in the last bits
        # (numpy's LAPACK vs golf_export's loops), which flips a code only if w/s lands within ~1e-12 of a rounding
        # boundary, so no code difference is allowed
        R.check(f"gptq codes {scheme} group {group} clip {clip} damp {damp} block {block}: codes equal the float64 GPTQ, scales the row-wise rule's",
                n == 18 and dead >= 8 and not bad, f"{n} calibrated tensors, {dead} dead columns" + ("; " + "; ".join(bad[:3]) if bad else ""))


def check_gptq_error(R, b, shared, tmp, ck):
    weights = reference.read_container(ck).tensors
    for scheme in SCHEMES:
        dump, hess = tmp / f"ge_{scheme}", tmp / f"geh_{scheme}"
        gptq_export(b, ck, tmp / "ge.golf", scheme, shared, dump, hess, ["--gptq-tokens", "16384"])
        worse, ratios = [], []
        for name, w in weights.items():
            if not (hess / f"{name}.hessian").exists():
                continue
            H = np.fromfile(hess / f"{name}.hessian", np.float64).reshape(w.shape[1], w.shape[1])
            codes, scales, _ = TI.quantize_np(w.astype(np.float32), scheme, 128, "search")
            e_row = h_error(w, dequantize(codes, scales), H)
            e_gptq = h_error(w, dequantize(*dump_arrays(dump, name, w.shape)), H)
            ratios.append(e_gptq / e_row)
            if e_gptq > e_row:
                worse.append(f"{name} {e_gptq:.4g} > {e_row:.4g}")
        R.check(f"gptq error {scheme}: tr((W-Q)H(W-Q)^T) of GPTQ <= row-wise on every calibrated matrix", len(ratios) == 18 and not worse,
                f"GPTQ / row-wise from {min(ratios):.3f} to {max(ratios):.3f}" + ("; " + "; ".join(worse[:3]) if worse else ""))


def check_gptq_bpb(R, b, shared, tmp, val, ck):
    infer = lambda blob: TI.parse_eval(TI.run([b / "golf_infer", blob, "--val", f"{val}/fineweb_val_*.bin", "--tokenizer",  # noqa: E731
                                               shared / "tokenizers" / "fineweb_1024_bpe.model", "--max-tokens", "4096"]).stdout)
    float_bpb = infer(ck)[1]
    for scheme in SCHEMES:
        dump = tmp / f"gb_{scheme}"
        row, gptq = tmp / f"row_{scheme}.golf", tmp / f"gptq_{scheme}.golf"
        TI.run([b / "golf_export", ck, row, "--quant", scheme, "--quiet"])
        gptq_export(b, ck, gptq, scheme, shared, dump)
        deq = tmp / f"gb_deq_{scheme}.bin"
        TI.dequantized_checkpoint(ck, dump, deq)
        r, c, _ = TI.eval_pair(b, shared, deq, gptq, val, None)
        R.check(f"gptq bpb {scheme}: golf_infer on the GPTQ blob == reference on its dequantized weights",
                TI.rel(c[1], r[1]) < TI.EVAL_RTOL and c[2:] == r[2:], f"val_bpb {c[1]:.9f} vs {r[1]:.9f}")
        row_bpb = infer(row)[1]
        detail = f"float {float_bpb:.5f}, row-wise {row_bpb:.5f}, GPTQ {c[1]:.5f}; {row.stat().st_size} vs {gptq.stat().st_size} bytes"
        if scheme in GPTQ_NO_WORSE:
            R.check(f"gptq bpb {scheme}: roundtrip val_bpb with GPTQ <= without", c[1] <= row_bpb, detail)
        else:
            print(f"INFO gptq bpb {scheme}: {detail}")


def check_gptq_refuses_val(R, b, shared, tmp, ck):
    p = subprocess.run([str(x) for x in [b / "golf_export", ck, tmp / "v.golf", "--gptq", shards(shared) / "fineweb_*.bin", "--quiet"]],
                       capture_output=True, text=True)
    R.check("gptq: a glob matching fineweb_val_* is refused (training data only)", p.returncode == 1 and "training data only" in p.stderr
            and not (tmp / "v.golf").exists(), p.stderr.strip()[:200])
    p = subprocess.run([str(x) for x in [b / "golf_export", ck, tmp / "v.golf", "--dump-hessians", tmp]], capture_output=True, text=True)
    R.check("gptq: --dump-hessians without --gptq is a usage error", p.returncode == 2, p.stderr.strip()[:120])


# ----------------------------------------------------------------------------------------------------
# QAT

def check_qat_exact(R, b, tmp, ck):
    weights = reference.read_container(ck).tensors
    for scheme, group in [(s, 128) for s in SCHEMES] + [("ternary", 48), ("ternary", 0)]:
        dump = tmp / f"qe_{scheme}_{group}"
        dump.mkdir()
        TI.run([b / "golf_export", ck, tmp / "qe.golf", "--quant", scheme, "--group", group, "--clip", "none", "--dump", dump, "--quiet"])
        bad, n = [], 0
        for name, w in weights.items():
            if not (dump / f"{name}.codes").exists():
                continue
            n += 1
            want = dequantize(*dump_arrays(dump, name, w.shape), group).reshape(w.shape)
            got = reference.fake_quant(torch.from_numpy(w.copy()), scheme, group).numpy()
            if got.dtype != np.float32 or not np.array_equal(got.view(np.uint32), want.view(np.uint32)):
                bad.append(f"{name}: {(got != want).sum()} values differ")
        R.check(f"qat exact {scheme} group {group}: fake_quant == golf_export --clip none's values, bit for bit", n == 19 and not bad,
                f"{n} tensors" + ("; " + "; ".join(bad[:3]) if bad else ""))


def check_qat_ste(R):
    gen = torch.Generator().manual_seed(3)
    w = (torch.randn(8, 16, generator=gen) * 0.1).requires_grad_()
    x, g = torch.randn(5, 16, generator=gen), torch.randn(5, 8, generator=gen)
    for scheme in SCHEMES:
        w.grad = None
        fq = reference.ste_fake_quant(w, scheme, 128)
        y = F.linear(x, fq)
        (y * g).sum().backward()
        q = reference.fake_quant(w, scheme, 128).requires_grad_()
        y2 = F.linear(x, q)
        (y2 * g).sum().backward()
        direct = g.double().T @ x.double()     # d sum(g * (x q^T)) / dq = g^T x
        # the float32 matmul's error against the float64 product: 5 terms of |g||x| <~ 10 each, eps 6e-8 -> <~ 3e-6
        err = float((w.grad.double() - direct).abs().max())
        ok = (torch.equal(fq, q.detach()) and torch.equal(y, y2) and torch.equal(w.grad, q.grad) and err < 1e-5 + 1e-6 * float(direct.abs().max()))
        R.check(f"qat ste {scheme}: forward == the fake-quantized weight's, gradient to w == the gradient to it == g^T x", ok,
                f"|grad - g^T x| = {err:.1e}")


def check_qat_train(R, b, shared, tmp, val):
    for flags, mention in ((["--quant", "int3"], "QUANT='int3'"), (["--qat-start-frac", "2"], "QAT_START_FRAC"), (["--ema-decay", "1"], "EMA_DECAY")):
        p = subprocess.run([sys.executable, str(ROOT / "test" / "reference.py"), "train", *TINY, "--iterations", "1", "--no-val", *flags],
                           capture_output=True, text=True)
        R.check(f"qat/ema settings: reference.py train {' '.join(flags)} is refused", p.returncode == 1 and mention in p.stderr, p.stderr.strip()[-160:])
    for scheme in SCHEMES:
        ck = tmp / f"qat_{scheme}.bin"
        log = train_model(shared, ck, 8, "--qat", "1", "--qat-start-frac", "0.5", "--quant", scheme)
        losses = [float(v) for v in re.findall(r"train_loss:([-\d.e+naif]+)", log)]
        ok = len(losses) == 8 and all(np.isfinite(losses)) and losses[-1] < losses[0] and f"qat:on step:4 scheme:{scheme}" in log
        R.check(f"qat train {scheme}: fake quantization from step 4 of 8, losses finite and decreasing", ok, " ".join(f"{v:.3f}" for v in losses))
        c = reference.read_container(ck)
        fq = tmp / f"qat_{scheme}_fq.bin"   # the reference's own fake quantization of every exported matrix
        reference.write_container(fq, c.config, c.steps, [(k, reference.fake_quant(torch.from_numpy(v.copy()), scheme).numpy()
                                                           if reference.param_class(k) != "control" else v) for k, v in c.tensors.items()])
        blob = tmp / f"qat_{scheme}.golf"
        TI.run([b / "golf_export", ck, blob, "--quant", scheme, "--clip", "none", "--quiet"])
        r, cc, _ = TI.eval_pair(b, shared, fq, blob, val, None)
        R.check(f"qat train {scheme}: golf_infer on the --clip none blob == reference on its fake-quantized weights",
                TI.rel(cc[1], r[1]) < TI.EVAL_RTOL and cc[2:] == r[2:], f"val_bpb {cc[1]:.9f} vs {r[1]:.9f}")


# ----------------------------------------------------------------------------------------------------
# EMA

def ema_formula(thetas, d):
    """float64 ema_0 = theta_0, ema_k = d ema_{k-1} + (1 - d) theta_k."""
    e = {k: v.double().clone() for k, v in thetas[0].items()}
    for t in thetas[1:]:
        e = {k: d * e[k] + (1 - d) * t[k].double() for k in e}
    return e


def ema_close(got, want):
    """float32 EMA vs the float64 formula: each update rounds twice (<= 2^-24 of max|theta| each), the errors of earlier
    steps shrink by d; 4 steps stay below 4 * 2^-23 = 4.8e-7 of max|theta|: bound 1e-6 of it."""
    scale = max(float(v.abs().max()) for v in want.values())
    err = max(float((got[k].double() - want[k]).abs().max()) for k in want)
    return err <= 1e-6 * scale, err / scale


def check_ema(R, shared):
    small = dict(num_layers=2, model_dim=32, num_heads=2, num_kv_heads=1, train_seq_len=16)
    cfg = reference.default_config(**small, ema_decay=0.8, iterations=4)
    model = reference.init_model(cfg, random_init=True)
    trainer = reference.Trainer(model, cfg)
    gen = torch.Generator().manual_seed(11)
    thetas = [{k: p.detach().clone() for k, p in model.named_parameters()}]
    for step in range(4):
        x = torch.randint(0, cfg.vocab_size, (2, 16), generator=gen)
        trainer.step(x, torch.roll(x, -1, 1), step, 1.0)
        thetas.append({k: p.detach().clone() for k, p in model.named_parameters()})
    ok, err = ema_close(trainer.ema.shadow, ema_formula(thetas, 0.8))
    R.check("ema: the Trainer's EMA (decay 0.8, 4 steps) == the float64 formula", ok, f"max error {err:.1e} of max|theta|")

    # train(): the weights it ends on (evaluated, saved, exported) are the EMA of every step's weights
    cfg = reference.default_config(**small, train_batch_tokens=256, iterations=4, max_wallclock_seconds=0.0, ema_decay=0.7,
                                   data_path=str(shards(shared)))
    model = reference.init_model(cfg)
    seen = [{k: p.detach().clone() for k, p in model.named_parameters()}]
    original = reference.Trainer.step

    def recording_step(self, *a):
        loss = original(self, *a)
        seen.append({k: p.detach().clone() for k, p in self.model.named_parameters()})
        return loss
    reference.Trainer.step = recording_step
    logs = []
    try:
        opts = argparse.Namespace(device="cpu", amp=False, compile=False, grad_accum=1, no_val=True, dtype="float32", max_tokens=None, byte260=False)
        reference.train(model, cfg, opts, log=logs.append)
    finally:
        reference.Trainer.step = original
    final = {k: p.detach() for k, p in model.named_parameters()}
    ok, err = ema_close(final, ema_formula(seen, 0.7))
    moved = any(not torch.equal(final[k], seen[-1][k]) for k in final)
    R.check("ema: train() ends on the EMA of its steps' weights (decay 0.7, 4 steps)", ok and moved and len(seen) == 5
            and any(line.startswith("ema:") for line in logs), f"max error {err:.1e} of max|theta|")


# ----------------------------------------------------------------------------------------------------
# size prediction and budget

def predict(b, *args):
    p = subprocess.run([str(x) for x in [b / "golf_export", "--predict", *args]], capture_output=True, text=True)
    m = re.search(r"^predict: .* model_bytes (\d+) code_bytes (\d+) total_bytes (\d+) budget (\d+) fits (\w+)", p.stdout, re.M)
    return p, (tuple(int(v) for v in m.groups()[:4]) + (m.group(5),) if m else None)


def check_predict(R, b, tmp, ck):
    code = (ROOT / "golf_infer.c").stat().st_size
    blob = tmp / "pred.golf"
    TI.run([b / "golf_export", ck, blob, "--quant", "int6", "--quiet"])
    size = blob.stat().st_size
    p, got = predict(b, *TINY_SHAPE, "--quant", "int6", "--measure", blob)
    # the blob's own shape: per class, codes x (the class's code bytes / its codes) gives back those code bytes
    R.check("predict: the measuring blob's own shape is predicted within 1% of its size", got is not None and abs(got[0] - size) <= 0.01 * size
            and got[1] == code and got[2] == got[0] + code, f"predicted {got[0] if got else p.stderr.strip()[:200]} vs {size} bytes")

    # another shape, both random-init: every matrix is U(+-1/sqrt(fan_in)) (embedding N(0, 0.005)) in both, so their codes
    # follow the same distribution and bytes per code differ only by the adaptive coder's learning cost per tensor
    # (measured 0.2-0.65%); bound 2%
    a, bb = tmp / "pred_a.bin", tmp / "pred_b.bin"
    TI.ref("init", "--random-init", *TINY, "--out", a)
    TI.ref("init", "--random-init", "--num-layers", "2", "--model-dim", "96", "--mlp-mult", "3", "--num-heads", "4", "--num-kv-heads", "2",
           "--train-seq-len", "64", "--seed", "5", "--out", bb)
    for scheme in SCHEMES:
        TI.run([b / "golf_export", a, tmp / "pa.golf", "--quant", scheme, "--quiet"])
        TI.run([b / "golf_export", bb, tmp / "pb.golf", "--quant", scheme, "--quiet"])
        actual = (tmp / "pb.golf").stat().st_size
        p, got = predict(b, "--num-layers", "2", "--model-dim", "96", "--mlp-mult", "3", "--vocab-size", "1024", "--num-heads", "4",
                         "--num-kv-heads", "2", "--quant", scheme, "--measure", tmp / "pa.golf", "--quiet")
        R.check(f"predict {scheme}: a 2x96 MLP-3x model from a 3x64 model's blob (both random-init) within 2%",
                got is not None and abs(got[0] - actual) <= 0.02 * actual, f"predicted {got[0] if got else p.stderr.strip()[:200]} vs {actual} bytes")

    # --budget: exit 0 and "fits" when code + blob fit, 1 and "does not fit" (blob still written) when not
    for budget, rc, word in ((code + size, 0, "fits"), (code + size - 1, 1, "does not fit")):
        out = tmp / f"budget_{rc}.golf"
        p = subprocess.run([str(x) for x in [b / "golf_export", ck, out, "--quant", "int6", "--quiet", "--budget", budget]], capture_output=True, text=True)
        R.check(f"budget {budget} (code + blob = {code + size}): exit {rc}, '{word}'", p.returncode == rc and f": {word} (" in p.stdout
                and out.exists() and out.stat().st_size == size, (p.stdout + p.stderr).strip()[-200:])
        p, got = predict(b, *TINY_SHAPE, "--quant", "int6", "--measure", blob, "--budget", budget)
        R.check(f"predict --budget {budget}: exit {rc}, fits {'yes' if rc == 0 else 'no'}", p.returncode == rc and got is not None
                and got[4] == ("yes" if rc == 0 else "no"), (p.stdout + p.stderr).strip()[-200:])

    for name, args, rc, mention in [("no --measure", [*TINY_SHAPE], 2, "--measure"), ("no shape", ["--measure", blob], 2, "--num-layers"),
                                    ("a checkpoint as --measure", [*TINY_SHAPE, "--measure", ck], 1, "not a .golf blob"),
                                    ("a scheme no blob measured", [*TINY_SHAPE, "--quant", "int4", "--measure", blob], 1, "int4")]:
        p, _ = predict(b, *args)
        R.check(f"predict: {name} -> exit {rc}", p.returncode == rc and mention in p.stderr, p.stderr.strip()[:160])


def check_fit(R, b, tmp, ck):
    shapes = "3x64x2x1024 9x512x2x1024 11x512x3x1024"
    env = dict(os.environ, SHAPES=shapes, SCHEMES="int6 int4 ternary", HEADS="4 2")
    p = subprocess.run(["bash", str(ROOT / "dev" / "fit.sh"), str(ck)], capture_output=True, text=True, env=env)
    rows = [line.split() for line in p.stdout.splitlines()[1:] if line and line.split()[0] in shapes.split()]
    ok = p.returncode == 0 and p.stdout.startswith("shape") and len(rows) == 9 and all(r[5] in ("yes", "no") for r in rows)
    # the tiny shape's int6 row equals --predict's number measured on the same checkpoint's int6 blob
    TI.run([b / "golf_export", ck, tmp / "fit6.golf", "--quant", "int6", "--quiet"])
    _, got = predict(b, *TINY_SHAPE, "--quant", "int6", "--measure", tmp / "fit6.golf")
    ok = ok and got is not None and rows[0][2] == "int6" and int(rows[0][3]) == got[0] and rows[0][5] == "yes" and rows[3][5] in ("yes", "no")
    R.check("fit.sh: a table row per shape and scheme (3 x 3), the tiny shape's bytes equal --predict's", ok, (p.stdout + p.stderr)[-600:])
    blob_only = subprocess.run(["bash", str(ROOT / "dev" / "fit.sh"), str(tmp / "fit6.golf"), "--budget", "1000000"], capture_output=True, text=True,
                               env=dict(env, SCHEMES="int6 int5"))
    lines = blob_only.stdout.splitlines()
    R.check("fit.sh with a blob: its scheme predicted, another scheme n/a", blob_only.returncode == 0 and any(" int6 " in x and x.split()[5] in ("yes", "no") for x in lines)
            and any(" int5 " in x and " n/a " in x for x in lines), blob_only.stdout[-400:] + blob_only.stderr[-200:])


def main():
    b, shared, keep = binary_test_args(__doc__)
    # OpenMP threads that spin while they wait make golf_infer/golf_export many times slower when the cores are shared
    # with other work; waiting passively costs nothing on an idle machine
    os.environ.setdefault("OMP_WAIT_POLICY", "passive")
    R = Results()
    tmp = Path(tempfile.mkdtemp(prefix="test_quant_"))
    try:
        require_binaries(b, "test_quant")
        if not (shared / "tokenizers" / "fineweb_1024_bpe.model").exists() or not shards(shared).exists():
            R.skip("everything", f"no shared data in {shared} (pass --shared DIR)")
        else:
            val = TI.make_val_shards(b, shared, tmp)
            ck = tmp / "trained60.bin"   # 60 steps at twice the matrix and embedding LR: far enough from init for quantization to matter
            train_model(shared, ck, 60, "--matrix-lr", "0.08", "--tied-embed-lr", "0.1")
            run_groups(R, [(check_gptq_codes, (R, b, shared, tmp, ck)), (check_gptq_error, (R, b, shared, tmp, ck)),
                              (check_gptq_bpb, (R, b, shared, tmp, val, ck)), (check_gptq_refuses_val, (R, b, shared, tmp, ck)),
                              (check_qat_exact, (R, b, tmp, ck)), (check_qat_ste, (R,)), (check_qat_train, (R, b, shared, tmp, val)),
                              (check_ema, (R, shared)), (check_predict, (R, b, tmp, ck)), (check_fit, (R, b, tmp, ck))], timing=True)
    finally:
        R.cleanup(tmp, keep)
    R.finish()

if __name__ == "__main__":
    main()
