#!/usr/bin/python3
"""Tests of train_golf.cu against test/reference.py: on a GPU (`make test-gpu`; skipped when no GPU is visible), or
with --cpu on the CPU build train_golf_cpu (`make test`: the same kernels and host code, CUDA emulated by
dev/cuda_cpu.h; the reference on the CPU; a smaller batch and the first VAL_TOKENS_CPU val tokens).

  grads      from the same init and batch (a reference.py checkpoint, its debug-state): train_golf's step-0 loss
             and every parameter gradient (DUMP_GRADS) against the reference's float32 ones
  steps      the training losses of K steps (iteration-based warmdown, no wallclock cap) against the
             reference's debug.losses
  roundtrip  train_golf's final_<scheme>_roundtrip val_bpb equals golf_infer's on the blob it wrote
  submit     dev/submit.sh reads that run's folder (train.log + final_model.golf) and refuses it: it started from INIT_CKPT
  mpirun     the same short run under `mpirun -np 1` (when the build has MPI) gives the same losses
  env        the same run started torchrun-style (RANK=0 WORLD_SIZE=1 LOCAL_RANK=0) gives the same losses; with 2+ GPUs,
             two ranks started torchrun-style (TCP bootstrap of NCCL, no MPI) end with the same roundtrip val_loss
  ttt        the final roundtrip eval with score-first TTT against reference.py eval's TTT on the same weights
  options    the architecture options train_golf's kernels implement (OPTION_SETS below): step-0 loss and gradients
             again; and EVAL_STRIDE's sliding-window roundtrip val_bpb equals golf_infer --stride's
  perturbed  step-0 loss and gradients again from `reference.py init --perturb` (every tensor moved by O(1), so no
             term vanishes at a zero gate, a unit scale or a mix of [1, 0]), for the baseline, every option set and
             the plain paths (FUSE=0 RECOMPUTE=0 LOGIT_CHUNK=0)
  qat_ema    QAT=1 with EMA_DECAY: the K-step losses against the reference's, the roundtrip against golf_infer
  gptq       GPTQ_RESERVE_SECONDS > 0: the GPTQ export's roundtrip val_bpb equals golf_infer's on its blob
  ranks2     (with --cpu) two ranks by mpirun -np 2 and two started torchrun-style end with the final weights of one
             process (1e-5 of each tensor's largest entry), both writing final_model.golf; on the second option set
             (ValueEmbedding and a loop schedule among them)
  asan       (with --cpu) a short run of train_golf_cpu_asan (ASan + UBSan) reports nothing, with PRECISION=fp32 and bf16
             (the latter with QAT and FLASH_ATTENTION=1)
  bf16       PRECISION=bf16 against `reference.py debug-state --device cpu --amp` (its model of the tensor cores'
             autocast): step-0 loss and every gradient from the default init (and the K-step losses) and from
             `init --perturb` for the baseline (flash and SIMT attention) and every option set, within the bound of
             check_bf16 (q_gain under flash: plus the reference's q_gain_flash_bound; 03-31's lane scales
             parallel_resid and parallel_post and ValueEmbedding's ve_shared.scale and ve_layer_scales, sums that bf16
             noise dominates: plus its lane_scale_bound); from the
             perturbed inits each Muon matrix's first update against the reference's bf16 Newton-Schulz of
             train_golf's own gradient (check_bf16_muon)
Every check but bf16 runs PRECISION=fp32.

Usage: python3 test/test_gpu.py [--cpu] [--python PY] [--shared DIR] [--k K] [--bf16-only] [--keep]
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

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "test"))
import reference  # noqa: E402
sys.path.insert(0, str(ROOT / "dev"))
from val_cut import val_cut  # noqa: E402
from harness import Results  # noqa: E402

# A small model: the kernels see GQA, U-Net skips, head_dim 64; fast enough to run K steps twice.
SHAPE = {"NUM_LAYERS": "4", "MODEL_DIM": "128", "NUM_HEADS": "2", "NUM_KV_HEADS": "1", "MLP_MULT": "2", "TRAIN_SEQ_LEN": "128",
         "TRAIN_BATCH_TOKENS": "8192", "VAL_BATCH_SIZE": "8192", "ITERATIONS": "20", "WARMDOWN_ITERS": "5",
         "MAX_WALLCLOCK_SECONDS": "0", "LOGIT_CHUNK": "96"}   # the head in chunks of 96 tokens: several, and a short last one
# Tolerances. Both sides compute in float32 (train_golf: cuBLAS fp32 GEMMs, TF32 off; the reference: --no-amp);
# they differ only in summation order (cuBLAS blocking, atomics over 8,192 tokens, online softmax), ~1e-6
# relative per operation, grown through 4 layers and the backward pass: 1e-3 of a tensor's largest gradient
# entry bounds that with room; a wrong kernel is off by O(1). Losses: 1e-4 at step 0, and the 20-step curves
# within 2e-3 (optimizer steps amplify rounding differences slowly).
GRAD_RTOL_OF_MAX = 1e-3
LOSS0_ATOL = 1e-4
LOSS_CURVE_ATOL = 2e-3
# The options with GPU kernels, in groups (head_dim 64 here: RoPE on 32 of 64 dims; the kv width 64). ValueEmbedding
# (VE_*) rides along in the later groups: positions of a looped layer's first and second pass, each form of lanes, and
# at the kv width (no projection) with documents and XSA.
OPTION_SETS = [{"MLP_LEAKY_SLOPE": "0.5", "LN_SCALE": "1", "ROPE_DIMS": "32", "MLP_HIDDEN": "200"},
               # ValueEmbedding at positions 1 (layer 1's first pass) and 4 (layer 2's second), through a projection
               {"BIGRAM_VOCAB_SIZE": "97", "BIGRAM_DIM": "32", "SMEAR_GATE": "1", "XSA_LAST_N": "2", "SKIP_GATES": "1",
                "ATTN_OUT_GATE": "1", "LOOP_ENCODER": "0,1,2,1", "LOOP_DECODER": "2,3", "VE_ENABLED": "1", "VE_DIM": "48",
                "VE_LAYERS": "1,4"},
               # lanes split at layer 2, hand their mean to skips, take skips into lane 0 only, merge for layer 1, split again;
               # ValueEmbedding on the parallel position 2
               {"PARALLEL_FROM": "2", "LOOP_ENCODER": "0,1,2,3,2", "LOOP_DECODER": "3,1,3", "SKIP_GATES": "1", "VE_ENABLED": "1",
                "VE_DIM": "32", "VE_LAYERS": "2"},
               # 03-31's lanes from position 2: they start in the encoder, hand both lanes to the skips, take a skip into
               # each lane; layer 1 runs sequential at position 1 and parallel at 5; the output gate at scale 0.5;
               # ValueEmbedding at positions 1 and 5 (layer 1 sequential and parallel)
               {"PARALLEL_FROM": "2", "PARALLEL_FORM": "0331-virtual", "LOOP_ENCODER": "0,1,2,3,2", "LOOP_DECODER": "1,3,3",
                "SKIP_GATES": "1", "ATTN_OUT_GATE": "1", "ATTN_OUT_GATE_SCALE": "0.5", "VE_ENABLED": "1", "VE_DIM": "128",
                "VE_LAYERS": "1,5"},
               # attention within documents: a micro-batch's sequences one stream in training, each window alone in eval;
               # ValueEmbedding at the kv width (no projection) at positions 0 and 3
               {"DOC_ATTENTION": "1", "ROPE_DIMS": "32", "XSA_LAST_N": "2", "VE_ENABLED": "1", "VE_DIM": "64", "VE_LAYERS": "0,3"}]

# The plain paths beside the defaults: unfused norms, every activation kept, the head over the whole micro-batch
PLAIN_PATHS = {"FUSE": "0", "RECOMPUTE": "0", "LOGIT_CHUNK": "0"}

# --cpu: train_golf_cpu and a smaller batch (8 micro-steps of 2 sequences), the first VAL_TOKENS_CPU val tokens
CPU_SHAPE = {"TRAIN_BATCH_TOKENS": "2048", "VAL_BATCH_SIZE": "4096"}
VAL_TOKENS_CPU = 16384
BIN = ROOT / "train_golf"
DEVICE = "cuda"


def run(cmd, env=None, cwd=None):
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env, cwd=cwd)
    return p


def train_losses(text):
    return {int(m[1]): float(m[2]) for m in re.finditer(r"step:(\d+)/\d+ train_loss:([-\d.]+)", text)}


def check_grads(R, label, want, got):
    """step-0 loss and every gradient of train_golf (DUMP_GRADS) against the reference's debug-state"""
    l0, w0 = float(got["debug.loss"][0]), float(want["debug.loss"][0])
    R.check(f"{label}step-0 loss equals the reference's", abs(l0 - w0) < LOSS0_ATOL, f"{l0:.6f} vs {w0:.6f}")
    worst, bad = 0.0, []
    for name, g in want.items():
        if not name.startswith("grad."):
            continue
        err = float(np.abs(got[name] - g).max() / max(np.abs(g).max(), 1e-30))
        worst = max(worst, err)
        if err > GRAD_RTOL_OF_MAX:
            bad.append(f"{name}: {err:.1e}")
    R.check(f"{label}every gradient within 1e-3 of its largest entry", not bad, f"worst {worst:.1e}; " + "; ".join(bad[:5]))


def roundtrip_bpb(stdout, blob, data, tok, seq_len, stride=None):
    """train_golf's final roundtrip val_bpb and golf_infer's on the same blob"""
    m = re.search(r"final_(\w+)_roundtrip_exact val_loss:([\d.]+) val_bpb:([\d.]+)", stdout)
    q = run([ROOT / "golf_infer", blob, "--val", f"{data}/fineweb_val_*.bin", "--tokenizer", tok, "--seq-len", seq_len,
             *(["--stride", str(stride)] if stride else [])])
    g = re.search(r"val_bpb:([\d.]+)", q.stdout)
    return (float(m[3]) if m else None), (float(g[1]) if g else None)


def grads_from(R, args, env, tmp, label, init_flags, k=3):
    """reference init (init_flags) and debug-state, then train_golf from that checkpoint dumping step 0's gradients:
    checks them; returns train_golf's process (None when a step failed)"""
    ck, dbg, grads = tmp / "opt_init.ckpt", tmp / "opt_debug.bin", tmp / "opt_grads.bin"
    p = run([args.python, ROOT / "test" / "reference.py", "init", *init_flags, "--out", ck], env=env)
    R.check(f"{label}reference init", p.returncode == 0, p.stderr.strip()[-300:])
    p = run([args.python, ROOT / "test" / "reference.py", "debug-state", "--ckpt", ck, "--k", str(k), "--out", dbg, "--device", DEVICE, "--no-amp"], env=env)
    R.check(f"{label}reference debug-state", p.returncode == 0, p.stderr.strip()[-300:])
    p = run([BIN], env=dict(env, INIT_CKPT=str(ck), DUMP_GRADS=str(grads)), cwd=tmp)
    if not R.check(f"{label}train_golf runs", p.returncode == 0, (p.stdout[-500:] + p.stderr[-500:]).strip()):
        return None
    check_grads(R, label, reference.read_container(dbg).tensors, reference.read_container(grads).tensors)
    return p


def check_perturbed(R, args, env, tmp, options):
    """step-0 loss and gradients from an init in which every tensor is moved by O(1) (reference.py init --perturb)"""
    env = dict(env, **options, ITERATIONS="1")
    label = "perturbed init " + " ".join(f"{k}={v}" for k, v in options.items()) + ": "
    grads_from(R, args, env, tmp, label, ["--random-init", "--perturb"], k=1)


def check_options(R, args, env, tmp, data, tok, options):
    env = dict(env, **options, EVAL_STRIDE="32", ITERATIONS="3")
    label = "options " + " ".join(f"{k}={v}" for k, v in options.items()) + ": "
    p = grads_from(R, args, env, tmp, label, ["--random-init"])
    if p is None:
        return
    a, b = roundtrip_bpb(p.stdout, tmp / "final_model.golf", data, tok, SHAPE["TRAIN_SEQ_LEN"], stride=32)
    R.check(f"{label}EVAL_STRIDE=32 roundtrip val_bpb: train_golf equals golf_infer --stride 32", a is not None and b is not None and abs(a - b) < 1e-4,
            f"{a} vs {b}")


def check_ttt(R, args, env, tmp, data, tok):
    """train_golf's final roundtrip eval with TTT_CHUNK_TOKENS against reference.py eval with the same TTT on the
    dequantized weights of the same blob (golf_export on train_golf's checkpoint writes that blob byte for byte)"""
    import test_infer
    env = dict(env, TTT_CHUNK_TOKENS="16384", TTT_LR="0.002", TTT_STEPS="2", ITERATIONS="5")
    p = run([BIN], env=env, cwd=tmp)
    if not R.check("TTT: train_golf runs", p.returncode == 0, (p.stdout[-300:] + p.stderr[-300:]).strip()):
        return
    dump, deq = tmp / "ttt_dump", tmp / "ttt_deq.ckpt"
    dump.mkdir(exist_ok=True)
    q = run([ROOT / "golf_export", tmp / "final_model.ckpt", tmp / "ttt_check.golf", "--quant", "int8", "--dump", dump, "--quiet"])
    same = q.returncode == 0 and (tmp / "ttt_check.golf").read_bytes() == (tmp / "final_model.golf").read_bytes()
    test_infer.dequantized_checkpoint(tmp / "final_model.ckpt", dump, deq)
    r = run([args.python, ROOT / "test" / "reference.py", "eval", "--ckpt", deq, "--device", DEVICE, "--no-amp"], env=env)
    want = test_infer.parse_eval(r.stdout)[0] if r.returncode == 0 else None
    m = re.search(r"final_\w+_roundtrip_exact val_loss:([\d.]+)", p.stdout)
    got = float(m[1]) if m else None
    # float32 on both sides; the SGD steps move the weights by lr * gradients that differ ~1e-6 relative: 1e-4 bounds it
    R.check("TTT: train_golf's score-first roundtrip val_loss equals reference.py eval's (1e-4)", same and got is not None and want is not None
            and abs(got - want) < 1e-4, f"{got} vs {want}; blob identical: {same}; {r.stderr.strip()[-200:]}")


# Muon's update is Newton-Schulz of the gradient, which multiplies a perturbation of the small singular values by up
# to p'(0)^5 = 3.4445^5 ~ 490: float32 summation-order differences (~1e-7 relative) become up to ~5e-5 of a matrix's
# largest entry after a few steps (seen: 4e-5 against the reference, 1.3e-5 across ranks); 1e-4 bounds it, a wrong
# update is off by O(1e-2).
MUON_RTOL = 1e-4
MUON_SUFFIXES = ("c_q.weight", "c_k.weight", "c_v.weight", "attn.proj.weight", "mlp.fc.weight", "mlp.proj.weight")


def final_weights(path):
    return reference.read_container(path).tensors


def weights_close(a, b, rtol, only=lambda name: True):
    """(ok, detail): every tensor of checkpoint a (those `only` accepts) within rtol of its largest entry of b's"""
    worst, name = 0.0, ""
    for k, v in b.items():
        if not only(k):
            continue
        e = float(np.abs(a[k] - v).max() / max(np.abs(v).max(), 1e-30))
        if e > worst:
            worst, name = e, k
    return worst <= rtol, f"worst {worst:.1e} ({name})"


def check_ranks2(R, env, tmp, ck):
    """two ranks (mpirun -np 2, and two processes started torchrun-style) against one process: 3 steps from the same
    init. The ranks sum 4 micro-steps each instead of one process's 8, so the gradients differ only in summation order
    (float32, ~1e-7 relative). Muon's matrices agree within MUON_RTOL of each tensor's largest entry; Adam's tensors
    have no such bound: an entry whose gradient nearly cancels has a large
    relative rounding error that m / sqrt(v) passes on at full size (seen: 2.3e-4 of tok_emb's largest entry), so
    they are checked through the final roundtrip val_loss, within 1e-4 as on the GPU. A rank that skipped its share,
    or a wrong sum, is off by O(1e-2) in both."""
    base = dict(env, INIT_CKPT=str(ck), ITERATIONS="3")
    runs = {}
    for name in ("one", "mpirun", "torchrun"):
        (tmp / name).mkdir(exist_ok=True)
    p = run([BIN], env=dict(base, OUT_DIR=str(tmp / "one")), cwd=tmp)
    if not R.check("ranks2: one process runs", p.returncode == 0, p.stderr[-300:].strip()):
        return
    one = final_weights(tmp / "one" / "final_model.ckpt")
    m = re.search(r"final_\w+_roundtrip_exact val_loss:([\d.]+)", p.stdout)
    one_loss = float(m[1]) if m else None
    mpirun = shutil.which("mpirun")
    if mpirun:
        p = run([mpirun, "--allow-run-as-root", "--oversubscribe", "-np", "2", BIN], env=dict(base, OUT_DIR=str(tmp / "mpirun")), cwd=tmp)
        runs["mpirun -np 2"] = (p.returncode == 0, p.stdout + p.stderr[-300:], tmp / "mpirun")
    else:
        R.skip("ranks2: mpirun -np 2", "no mpirun on this machine")
    launch = dict(base, OUT_DIR=str(tmp / "torchrun"), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(29600 + os.getpid() % 300))
    procs = [subprocess.Popen([str(BIN)], env=dict(launch, RANK=str(r), WORLD_SIZE="2", LOCAL_RANK=str(r)), cwd=tmp, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for r in (1, 0)]
    outs = [pr.communicate(timeout=900) for pr in procs]
    runs["two ranks torchrun-style"] = (all(pr.returncode == 0 for pr in procs), outs[1][0] + " | ".join(o[1][-300:] for o in outs), tmp / "torchrun")
    for name, (ok, text, out) in runs.items():
        if not R.check(f"ranks2: {name} runs", ok, text[-400:].strip()):
            continue
        R.check(f"ranks2: {name} writes final_model.golf", (out / "final_model.golf").exists())
        good, detail = weights_close(final_weights(out / "final_model.ckpt"), one, MUON_RTOL, only=lambda k: k.endswith(MUON_SUFFIXES))
        R.check(f"ranks2: {name} ends with one process's Muon matrices ({MUON_RTOL} of each tensor's largest entry)", good, detail)
        got = re.findall(r"final_\w+_roundtrip_exact val_loss:([\d.]+)", text)
        R.check(f"ranks2: {name} ends with one process's roundtrip val_loss (1e-4)",
                len(got) == 1 and one_loss is not None and abs(float(got[0]) - one_loss) < 1e-4, f"{got} vs {one_loss}")


def check_qat_ema(R, args, env, tmp, data, tok, ck):
    """QAT=1 (from step 0): train_golf's K-step losses against reference.py debug-state's (the plain curve's tolerance)
    and its roundtrip against golf_infer on the blob. EMA_DECAY=0.9 with the optimizer options no other run reaches
    (GRAD_CLIP_NORM, MUON_WD, ADAM_WD, MUON_EQ_R, MUON_POLAR_EXPRESS): the final (EMA) Muon matrices against
    reference.py train's from the same init, within MUON_RTOL (see there; Adam's tensors: see check_ranks2). QAT's
    weights are not compared: a weight within rounding noise of a quantization boundary (hundreds of them among
    600,000) lands one level over, so QAT runs agree in their losses, not entry by entry."""
    k = 4
    (tmp / "qat").mkdir(exist_ok=True)
    q_env = dict(env, QAT="1", QAT_START_FRAC="0", ITERATIONS=str(k), OUT_DIR=str(tmp / "qat"))
    dbg, ref_ck = tmp / "qat_debug.bin", tmp / "ema_ref.ckpt"
    p = run([args.python, ROOT / "test" / "reference.py", "debug-state", "--ckpt", ck, "--k", str(k), "--out", dbg, "--device", DEVICE, "--no-amp"], env=q_env)
    R.check("QAT: reference debug-state", p.returncode == 0, p.stderr.strip()[-300:])
    g = run([BIN], env=dict(q_env, INIT_CKPT=str(ck)), cwd=tmp)
    if R.check("QAT: train_golf runs", g.returncode == 0, (g.stdout[-300:] + g.stderr[-300:]).strip()):
        losses = train_losses(g.stdout)
        ref = [float(v) for v in reference.read_container(dbg).tensors["debug.losses"]]
        diffs = [abs(losses.get(i + 1, float("nan")) - v) for i, v in enumerate(ref)]
        R.check(f"QAT: {k} training losses within {LOSS_CURVE_ATOL} of the reference's", all(d < LOSS_CURVE_ATOL for d in diffs), f"max diff {max(diffs):.2e}")
        a, b = roundtrip_bpb(g.stdout, tmp / "qat" / "final_model.golf", data, tok, SHAPE["TRAIN_SEQ_LEN"])
        R.check("QAT: roundtrip val_bpb equals golf_infer's on the blob", a is not None and b is not None and abs(a - b) < 1e-4, f"{a} vs {b}")
    e_env = dict(env, EMA_DECAY="0.9", ITERATIONS=str(k), OUT_DIR=str(tmp / "qat"), GRAD_CLIP_NORM="0.3", MUON_WD="0.04", ADAM_WD="0.04",
                 MUON_EQ_R="1", MUON_POLAR_EXPRESS="1")
    p = run([args.python, ROOT / "test" / "reference.py", "train", "--ckpt", ck, "--out", ref_ck, "--device", DEVICE, "--no-amp"], env=e_env)
    R.check("EMA + optimizer options: reference train", p.returncode == 0, p.stderr.strip()[-300:])
    g = run([BIN], env=dict(e_env, INIT_CKPT=str(ck)), cwd=tmp)
    if R.check("EMA + optimizer options: train_golf runs", g.returncode == 0, (g.stdout[-300:] + g.stderr[-300:]).strip()):
        good, detail = weights_close(final_weights(tmp / "qat" / "final_model.ckpt"), final_weights(ref_ck), MUON_RTOL, only=lambda k: k.endswith(MUON_SUFFIXES))
        R.check(f"EMA + optimizer options: the final (EMA) Muon matrices equal reference.py train's ({MUON_RTOL} of each tensor's largest entry)", good, detail)


def check_gptq(R, env, tmp, data, tok, ck):
    """GPTQ_RESERVE_SECONDS > 0 (under a wallclock cap that is never reached): the GPTQ export's roundtrip val_bpb
    equals golf_infer's on the blob written"""
    (tmp / "gptq").mkdir(exist_ok=True)
    env = dict(env, INIT_CKPT=str(ck), ITERATIONS="2", MAX_WALLCLOCK_SECONDS="100000", GPTQ_RESERVE_SECONDS="1", GPTQ_TOKENS="2048",
               QUANT="int6", OUT_DIR=str(tmp / "gptq"))
    p = run([BIN], env=env, cwd=tmp)
    if not R.check("GPTQ export: train_golf runs", p.returncode == 0, (p.stdout[-300:] + p.stderr[-300:]).strip()):
        return
    a, b = roundtrip_bpb(p.stdout, tmp / "gptq" / "final_model.golf", data, tok, SHAPE["TRAIN_SEQ_LEN"])
    R.check("GPTQ export: roundtrip val_bpb equals golf_infer's on the blob", a is not None and b is not None and abs(a - b) < 1e-4, f"{a} vs {b}")


def rel_err(a, b):
    """max |a - b| over b's largest entry"""
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


def check_bf16(R, args, env, tmp, label, init_flags, k):
    """PRECISION=bf16 from `reference.py init init_flags`: train_golf's step-0 loss, every gradient and (k > 1) its k
    training losses against the reference's --amp (bf16 GEMM operands, float32 accumulation, bf16 outputs: the model
    of autocast on tensor cores). The bound, per quantity: the reference's own distance between --amp and float32,
    D (measured here, same init and batch), is what bf16 rounding does to it. train_golf in bf16 is a bf16
    computation of the same model, so it lies within about D of the float32 result too, and by the triangle
    inequality within 2 D of the --amp one; plus the float32 tolerance (GRAD_RTOL_OF_MAX, LOSS0_ATOL, LOSS_CURVE_ATOL)
    for the summation order both share with the float32 checks. A wrong kernel is off by O(1). That bound alone
    would also pass a run that skipped bf16 (float32 lies within D), so each gradient with D above the float32
    tolerance must also lie nearer the --amp reference than the float32 one: the roundings are modeled, not only
    tolerated (measured: 1e-4 vs 4e-3 of a tensor's largest entry from the perturbed init). A gradient the reference
    writes a bound.<name> for (q_gain: q_gain_flash_bound; 03-31's parallel_resid and parallel_post, ValueEmbedding's
    ve_shared.scale and ve_layer_scales: lane_scale_bound),
    a sum that cancels so far that bf16 noise dominates it, gets that bound on top, per entry, and no "nearer" rule."""
    ck, d32, d16, grads = tmp / "bf16_init.ckpt", tmp / "bf16_fp32.bin", tmp / "bf16_amp.bin", tmp / "bf16_grads.bin"
    p = run([args.python, ROOT / "test" / "reference.py", "init", *init_flags, "--out", ck], env=env)
    R.check(f"{label}reference init", p.returncode == 0, p.stderr.strip()[-300:])
    for out, amp in ((d32, "--no-amp"), (d16, "--amp")):
        # the reference on the CPU on a GPU machine too: its --amp there is the tensor-core model of autocast with
        # train_golf's float32 weights (the GPU's --amp is train_gpt.py's mixed precision, bf16 embedding and tables)
        p = run([args.python, ROOT / "test" / "reference.py", "debug-state", "--ckpt", ck, "--k", str(k), "--out", out, "--device", "cpu", amp], env=env)
        R.check(f"{label}reference debug-state {amp}", p.returncode == 0, p.stderr.strip()[-300:])
    p = run([BIN], env=dict(env, PRECISION="bf16", ITERATIONS=str(k), INIT_CKPT=str(ck), DUMP_GRADS=str(grads)), cwd=tmp)
    if not R.check(f"{label}train_golf PRECISION=bf16 runs", p.returncode == 0, (p.stdout[-500:] + p.stderr[-500:]).strip()):
        return
    want, ref32, got = (reference.read_container(f).tensors for f in (d16, d32, grads))
    l0, w0, f0 = float(got["debug.loss"][0]), float(want["debug.loss"][0]), float(ref32["debug.loss"][0])
    tol = 2 * abs(w0 - f0) + LOSS0_ATOL
    R.check(f"{label}bf16 step-0 loss equals the --amp reference's within 2 |amp - fp32| + {LOSS0_ATOL}", abs(l0 - w0) <= tol,
            f"{l0:.6f} vs {w0:.6f} (fp32 {f0:.6f}): {abs(l0 - w0):.1e} vs {tol:.1e}")
    worst, bad, nearer = "", [], []
    wr = 0.0
    flash = env.get("FLASH_ATTENTION", "1") == "1"   # train_golf's default under PRECISION=bf16 (head_dim 64 here)
    wb, worst_b = 0.0, ""   # the worst of the gradients with a rounding bound
    for name, g in want.items():
        if not name.startswith("grad."):
            continue
        d = rel_err(ref32[name], g)
        err, err32 = rel_err(got[name], g), rel_err(got[name], ref32[name])
        bound = want.get("bound." + name[5:])
        if bound is not None:
            lane = not name.endswith(".q_gain")
            # lane: 03-31's lane scales (parallel_resid, parallel_post) and ValueEmbedding's scales (ve_shared.scale,
            # ve_layer_scales; seen: 1.0e-2 of the entry from --amp, 2.3e-3 its D): sums over all N d entries that cancel far below their
            # terms, so that bf16 noise dominates them and --amp's one sample D does not bound train_golf's. The
            # reference's lane_scale_bound (derived there) bounds each one's distance from its exact value, train_golf's
            # and --amp's alike, on the flash and the SIMT paths: per entry |golf - amp| <= 2 D + that bound + the float32
            # tolerance. No "nearer" requirement: that noise is what sets them apart from float32, and either precision
            # may land on either side of it (seen on the SIMT path: nearer float32 within the bound)
            # q_gain: a heavily cancelling sum that a few bf16 roundings move far beyond D. Under the flash kernels their
            # own roundings (P, dS, dy), which --amp does not model, move it by up to the reference's q_gain_flash_bound
            # (per head, derived there). The SIMT path makes --amp's roundings, but a value whose float32 result differs
            # in its last bits (summation order: OpenBLAS or not, cuBLAS) can round to the other bf16 neighbour: such
            # flips are perturbations of at most u of single dy, q, k, v elements, fewer than the flash kernels'
            # roundings of every dS and dy element, and the same bound holds them (seen: 0.05 of it; without it,
            # blocks.0's gradient is 2x over 2 D with OpenBLAS and within it without). So per entry
            # |golf - amp| <= 2 D + that bound + the float32 tolerance, and no "nearer" requirement
            scale = max(np.abs(g).max(), 1e-30)
            ratio = float((np.abs(got[name] - g) / (2 * d * scale + bound + GRAD_RTOL_OF_MAX * scale)).max())
            kind = "lane" if lane else "flash"
            if lane and ratio > wb:
                wb, worst_b = ratio, f"{name}: {ratio:.3f} of 2 D + lane bound + tol (error/bound {float((np.abs(got[name] - g) / bound).max()):.3f})"
            if not lane and ratio > wr:
                wr, worst = ratio, f"{name}: {ratio:.2f} of 2 D + flash bound + tol"
            if ratio > 1:
                bad.append(f"{name}: {err:.1e} of its largest entry, {ratio:.2f} of 2 D + the {kind} bound {np.asarray(bound).max():.1e} + tol")
            continue
        if err / (2 * d + GRAD_RTOL_OF_MAX) > wr:
            wr, worst = err / (2 * d + GRAD_RTOL_OF_MAX), f"{name}: {err:.1e} vs {2 * d + GRAD_RTOL_OF_MAX:.1e}"
        if err > 2 * d + GRAD_RTOL_OF_MAX:
            bad.append(f"{name}: {err:.1e} > 2 * {d:.1e} + {GRAD_RTOL_OF_MAX}")
        if d > GRAD_RTOL_OF_MAX and not err < err32 and not flash:
            nearer.append(f"{name}: {err:.1e} from --amp, {err32:.1e} from fp32")
    R.check(f"{label}every bf16 gradient within 2 D + {GRAD_RTOL_OF_MAX} of the --amp reference's (D: its distance to fp32; "
            "q_gain, 03-31's lane scales and the VE scales: plus their rounding bounds)", not bad,
            f"worst {worst}" + (f"; worst lane scale {worst_b}" if worst_b else "") + "; " + "; ".join(bad[:5]))
    # the "nearer" rule needs train_golf to make --amp's roundings: the SIMT attention does (FLASH_ATTENTION=0, checked
    # from the perturbed init below); the flash kernels' own roundings of P, dS and dy can put a gradient that attention
    # dominates nearer float32 (seen: blocks.3.attn_scale, 5.9e-3 from --amp and 5.1e-3 from fp32, within its 2 D of 1.1e-2)
    if not flash:
        R.check(f"{label}every bf16 gradient with D > {GRAD_RTOL_OF_MAX} nearer the --amp reference than the fp32 one", not nearer, "; ".join(nearer[:5]))
    if k == 1:
        check_bf16_muon(R, dict(env, ITERATIONS="1"), label, ck, grads, tmp / "final_model.ckpt")
    if k > 1:
        losses = train_losses(p.stdout)
        amp, f32 = [float(v) for v in want["debug.losses"]], [float(v) for v in ref32["debug.losses"]]
        diffs = [abs(losses.get(i + 1, float("nan")) - a) for i, a in enumerate(amp)]
        over = [f"step {i + 1}: {losses.get(i + 1, float('nan')):.4f} vs {a:.4f} (fp32 {f:.4f})" for i, (a, f) in enumerate(zip(amp, f32))
                if not diffs[i] <= 2 * abs(a - f) + LOSS_CURVE_ATOL]
        R.check(f"{label}{k} bf16 training losses within 2 |amp - fp32| + {LOSS_CURVE_ATOL} of the --amp reference's", not over,
                f"max diff {max(diffs):.1e}, max |amp - fp32| {max(abs(a - f) for a, f in zip(amp, f32)):.1e}; " + "; ".join(over[:4]))


def check_bf16_muon(R, env, label, ck, grads, final):
    """PRECISION=bf16, one step from ck: each Muon matrix's update (w0 - w1) / lr against reference.py's bf16
    Newton-Schulz (its CPU model of the GPU's) of train_golf's own step-0 gradient (grads), the same input. Both do
    the same bf16 operations on the same values; they part only where a float32 summation-order difference flips
    one bf16 rounding, which Newton-Schulz then spreads. So (1) every matrix lies within 2 D of the reference's, D its
    float32 Newton-Schulz's distance from its bf16 one (the triangle bound of check_bf16), and (2) at least a quarter
    lie within MUON_RTOL (no flip: float32 rounding of the update only, measured 3e-6; how many flip varies from run
    to run with the order of the gradients' atomics, measured 13 to 18 of 24); Newton-Schulz in other arithmetic
    leaves none there (measured: the coefficients rounded to bf16, as torch 1.13's CPU bf16 ops do, put all 24
    matrices over 1e-2)."""
    import torch
    it, wd = int(env["ITERATIONS"]), int(env["WARMDOWN_ITERS"])   # the run's (an iteration-based warmdown, no cap)
    lr = float(env.get("MATRIX_LR", "0.04")) * (it / wd if it - wd <= 0 else 1.0)   # its LR multiplier at step 0
    mu = float(env.get("MUON_MOMENTUM_WARMUP_START", "0.85"))                         # the momentum warmup's start at step 0
    w0, w1, g = (reference.read_container(f).tensors for f in (ck, final, grads))
    far, near, n, worst = [], 0, 0, 0.0
    for name in w0:
        if not name.endswith(MUON_SUFFIXES):
            continue
        G = torch.from_numpy(g["grad." + name].copy())
        u = G.add(G.clone(), alpha=mu)   # buf = g at step 0; Nesterov: g + mu buf
        scale = max(1, u.size(0) / u.size(1)) ** 0.5
        xb = (scale * reference.zeropower_via_newtonschulz5(u, 5, torch.bfloat16).float()).to(torch.bfloat16).float().numpy()
        xf = (scale * reference.zeropower_via_newtonschulz5(u, 5, torch.float32)).numpy()
        ours = (w0[name] - w1[name]) / np.float32(lr)
        err, d = rel_err(ours, xb), rel_err(xf, xb)
        n += 1
        near += err <= MUON_RTOL
        worst = max(worst, err / (2 * d))
        if err > 2 * d:
            far.append(f"{name}: {err:.1e} > 2 * {d:.1e}")
    R.check(f"{label}bf16 Muon: every matrix's first update within 2 D of reference.py's bf16 Newton-Schulz of the same gradient", n > 0 and not far,
            f"worst {worst:.2f} of the bound; " + "; ".join(far[:4]))
    R.check(f"{label}bf16 Muon: at least a quarter of the matrices' first updates within {MUON_RTOL} of it", 4 * near >= n > 0, f"{near} of {n}")


def check_asan(R, env, tmp, ck):
    """one short run of the ASan + UBSan build per PRECISION (bf16 with QAT, whose weights the bf16 shadow copies):
    exit 0 and no sanitizer report"""
    exe = ROOT / "train_golf_cpu_asan"
    if not exe.exists():
        R.skip("ASan run", f"{exe} is not built (make cpu SANITIZE=1)")
        return
    (tmp / "asan").mkdir(exist_ok=True)
    for precision, extra in (("fp32", {}), ("bf16", {"QAT": "1", "QUANT": "int6", "FLASH_ATTENTION": "1"})):
        p = run([exe], env=dict(env, **extra, PRECISION=precision, INIT_CKPT=str(ck), ITERATIONS="1", OUT_DIR=str(tmp / "asan"),
                                ASAN_OPTIONS="detect_leaks=0"), cwd=tmp)
        bad = [ln for ln in p.stderr.splitlines() if "AddressSanitizer" in ln or "runtime error" in ln]
        R.check(f"ASan + UBSan: a short train_golf_cpu_asan run with PRECISION={precision} reports nothing", p.returncode == 0 and not bad,
                "; ".join(bad[:3]) or p.stderr[-300:].strip())


def check_coverage(R, log):
    """every __global__ kernel of train_golf.cu was launched by the runs above (the CPU build's launch log)"""
    kernels = set(re.findall(r"__global__ void (?:__launch_bounds__\([^)]*\) )?(\w+)", (ROOT / "train_golf.cu").read_text()))
    ran = {line.split()[0].split("<")[0] for line in log.read_text().splitlines() if line.strip()} if log.exists() else set()
    missing = sorted(kernels - ran)
    R.check(f"every one of train_golf.cu's {len(kernels)} kernels ran", not missing, "never launched: " + ", ".join(missing))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--python", default=sys.executable, help="python with PyTorch for reference.py (default: this one)")
    ap.add_argument("--shared", default=None, help="shared data folder (default: ../shared beside the repository)")
    ap.add_argument("--k", type=int, default=None, help="training steps compared (default 20, 6 with --cpu)")
    ap.add_argument("--cpu", action="store_true", help="test the CPU build train_golf_cpu (no GPU needed)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    ap.add_argument("--bf16-only", action="store_true", help="only the PRECISION=bf16 checks")
    args = ap.parse_args()
    R = Results()
    global BIN, DEVICE
    if args.k is None:
        args.k = 6 if args.cpu else 20
    smi = shutil.which("nvidia-smi")
    if args.cpu:
        BIN, DEVICE = ROOT / "train_golf_cpu", "cpu"
        if not BIN.exists():
            raise SystemExit(f"test_gpu.py --cpu: {BIN} is missing: run make cpu first")
    elif not smi or "GPU" not in run([smi, "-L"]).stdout:
        R.skip("everything", "no CUDA device visible (nvidia-smi lists none)")
        R.finish()
    shared = Path(args.shared).resolve() if args.shared else ROOT.parent / "shared"
    data, tok = shared / "data" / "sample_sp1024", shared / "tokenizers" / "fineweb_1024_bpe.model"
    tmp = Path(tempfile.mkdtemp(prefix="test_gpu_"))
    if args.cpu:
        data = val_cut(data, tmp / "data", VAL_TOKENS_CPU)
    env = dict(dict(os.environ, **SHAPE), **(CPU_SHAPE if args.cpu else {}))
    env.update(DATA_PATH=str(data), TOKENIZER_PATH=str(tok), ITERATIONS=str(args.k), TRAIN_LOG_EVERY="1", VAL_LOSS_EVERY="0",
               OUT_DIR=str(tmp), RUN_ID="test_gpu", PRECISION="fp32")
    if args.cpu:
        env["GOLF_EMU_LOG"] = str(tmp / "launches.log")   # every launch of every run: which kernels ran
    try:
        check_bf16(R, args, env, tmp, "bf16 default init: ", [], args.k)
        for options in [{"FLASH_ATTENTION": "0"}] + [{}] + OPTION_SETS:
            check_bf16(R, args, dict(env, **options), tmp, "bf16 perturbed init " + " ".join(f"{k}={v}" for k, v in options.items()) + ": ",
                       ["--random-init", "--perturb"], 1)
        if not args.bf16_only:
            ck, dbg, grads = tmp / "init.ckpt", tmp / "debug.bin", tmp / "grads.bin"
            p = run([args.python, ROOT / "test" / "reference.py", "init", "--out", ck], env=env)
            R.check("reference init", p.returncode == 0, p.stderr.strip()[-300:])
            p = run([args.python, ROOT / "test" / "reference.py", "debug-state", "--ckpt", ck, "--k", args.k, "--out", dbg,
                     "--device", DEVICE, "--no-amp"], env=env)
            R.check("reference debug-state", p.returncode == 0, p.stderr.strip()[-300:])
            p = run([BIN], env=dict(env, INIT_CKPT=str(ck), DUMP_GRADS=str(grads)), cwd=tmp)
            R.check("train_golf runs", p.returncode == 0, (p.stdout[-500:] + p.stderr[-500:]).strip())
            if p.returncode == 0:
                want = reference.read_container(dbg).tensors
                check_grads(R, "", want, reference.read_container(grads).tensors)
                losses = train_losses(p.stdout)
                ref_losses = [float(v) for v in want["debug.losses"]]
                diffs = [abs(losses.get(i + 1, float("nan")) - v) for i, v in enumerate(ref_losses)]
                R.check(f"{len(ref_losses)} training losses within {LOSS_CURVE_ATOL} of the reference's", all(d < LOSS_CURVE_ATOL for d in diffs),
                        f"max diff {max(diffs):.2e}; golf {[round(losses.get(i + 1, -1), 4) for i in range(min(5, len(ref_losses)))]} ref {[round(v, 4) for v in ref_losses[:5]]}")
                a, b = roundtrip_bpb(p.stdout, tmp / "final_model.golf", data, tok, SHAPE["TRAIN_SEQ_LEN"])
                R.check("roundtrip val_bpb: train_golf equals golf_infer on the same blob", a is not None and b is not None and abs(a - b) < 1e-4,
                        f"{a} vs {b}")
                p3 = subprocess.run(["bash", ROOT / "dev" / "submit.sh", "--records", tmp / "records", "--date", "2026-01-01", tmp, "test_gpu"],
                                    capture_output=True, text=True)
                # this run started from INIT_CKPT, which a record's train_gpt.py cannot carry (test_submit.py packages real runs)
                R.check("dev/submit.sh reads the run folder and refuses it for its INIT_CKPT, writing nothing", p3.returncode == 1
                        and "set INIT_CKPT=" in p3.stderr and not (tmp / "records" / "2026-01-01_test_gpu").exists(), (p3.stdout + p3.stderr).strip()[-400:])
                launch = dict(env, INIT_CKPT=str(ck), MASTER_ADDR="127.0.0.1", MASTER_PORT="29517")
                p4 = run([BIN], env=dict(launch, RANK="0", WORLD_SIZE="1", LOCAL_RANK="0"), cwd=tmp)
                l4 = train_losses(p4.stdout)
                R.check("RANK=0 WORLD_SIZE=1 LOCAL_RANK=0 gives the same losses", p4.returncode == 0
                        and all(abs(l4.get(i, -9) - losses.get(i, 9)) < 1e-5 for i in range(1, args.k + 1)), p4.stderr[-300:].strip())
                ngpu = 0 if args.cpu else run([smi, "-L"]).stdout.count("GPU ")
                if ngpu >= 2:
                    # two ranks sum their gradients with NCCL instead of accumulating 8 micro-steps on one GPU: the weights
                    # after 5 steps differ only by summation order (float32 rounding, ~1e-6 relative per step), so the
                    # final roundtrip val_loss (reduced over both ranks) agrees within 1e-4 (the logged train_loss is rank
                    # 0's share of the batch, as in train_gpt.py, so it is not compared).
                    procs = [subprocess.Popen([str(BIN)], env=dict(launch, RANK=str(r), WORLD_SIZE="2", LOCAL_RANK=str(r)), cwd=tmp,
                                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in (1, 0)]
                    outs = [pr.communicate(timeout=600) for pr in procs]
                    exact = lambda text: [float(v) for v in re.findall(r"final_\w+_roundtrip_exact val_loss:([\d.]+)", text)]
                    one, two = exact(p4.stdout), exact(outs[1][0])
                    R.check("two ranks started torchrun-style end with one rank's roundtrip val_loss (1e-4)", all(pr.returncode == 0 for pr in procs)
                            and len(one) == 1 and len(two) == 1 and abs(one[0] - two[0]) < 1e-4, f"{one} vs {two}; " + " | ".join(o[1][-200:] for o in outs).strip())
                else:
                    R.skip("two ranks torchrun-style", "the CPU build's ranks are checked by ranks2" if args.cpu else f"{ngpu} GPU visible")
                mpirun = shutil.which("mpirun")
                if mpirun:
                    p2 = run([mpirun, "--allow-run-as-root", "-np", "1", BIN], env=dict(env, INIT_CKPT=str(ck)), cwd=tmp)
                    l2 = train_losses(p2.stdout)
                    R.check("mpirun -np 1 gives the same losses", p2.returncode == 0 and all(abs(l2.get(i, -9) - losses.get(i, 9)) < 1e-5 for i in range(1, args.k + 1)),
                            (p2.stderr[-300:]).strip())
                else:
                    R.skip("mpirun -np 1", "no mpirun on this machine")
            for options in [{}] + OPTION_SETS + [PLAIN_PATHS]:
                check_perturbed(R, args, env, tmp, options)
            for options in OPTION_SETS:
                check_options(R, args, env, tmp, data, tok, options)
            check_ttt(R, args, env, tmp, data, tok)
            check_qat_ema(R, args, env, tmp, data, tok, ck)
            check_gptq(R, env, tmp, data, tok, ck)
            if args.cpu:
                # the second option set (ValueEmbedding, a loop schedule, BigramHash, ...): their gradients summed over ranks too
                ranks_env, ranks_ck = dict(env, **OPTION_SETS[1]), tmp / "init_ranks2.ckpt"
                p = run([args.python, ROOT / "test" / "reference.py", "init", "--out", ranks_ck], env=ranks_env)
                if R.check("ranks2: reference init of the second option set", p.returncode == 0, p.stderr.strip()[-300:]):
                    check_ranks2(R, ranks_env, tmp, ranks_ck)
                check_asan(R, env, tmp, ck)
                check_coverage(R, tmp / "launches.log")
    finally:
        R.cleanup(tmp, args.keep)
    R.finish()


if __name__ == "__main__":
    sys.exit(main())
