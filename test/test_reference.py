#!/usr/bin/python3
"""Tests of test/reference.py (the PyTorch reference of train_gpt.py) and dev/convert_pt.py.

  cli          unknown flags and a missing subcommand are usage errors (exit 2); environment variables
               set hyperparameters and flags beat them
  keys         the default config's state_dict is exactly train_gpt.py's (keys written out below, in
               order, with shapes); strict loads both ways; the untied head
  init         deterministic per SEED, the baseline's init values, bf16-representable
  container    save/load round trip bit for bit, the byte layout parsed independently, re-save identical,
               damaged files refused with a message
  convert      a torch.save'd train_gpt.py-style state_dict (bf16 embedding) -> golf checkpoint; wrong
               key sets, a wrong --num-heads and a non-state_dict file refused, naming the file
  rope         pairing and sign convention, relative-position property, the bf16 table mode
  forward      the model against a second writing in numpy (loops over heads, GQA, U-Net skips)
  precision    forward in float32 vs float64 (tolerance justified at the test)
  gradients    autograd vs central finite differences, float64, every parameter tensor
  newton-schulz  singular values of the 5-step quintic in the predicted band; transposition rule
  optimizer    the Muon update formula, the Muon/Adam split and learning rates, lr_mul, momentum warmup
  loader       training batches are the stream's spans in order
  windows      sliding-window rule: every target scored exactly once, including tails
  train        a few steps on the shared train shard reduce the validation loss; log format; header
  eval         bpb = loss/ln2 * tokens/bytes; byte count against sentencepiece decoding; stride = seq_len
               equals the plain evaluation; sliding stride scores the same tokens
  lut          byte tables against `./tokenize lut` (skipped when the binary is not built)
  logits       the logits subcommand (npy and text) against the in-process forward, float64
  debug-state  the debug file's records against a recomputation
  fast, cuda   the built-in kernels and the GPU paths (skipped where unavailable)

Usage: /usr/bin/python3 test/test_reference.py [--shared DIR] [--keep-tmp]
The shared tokenizer and shards are looked for in ../shared beside the repository (tokenizers/,
data/sample_sp1024/), then in the official layout data/tokenizers/ + data/datasets/fineweb10B_sp1024/;
--shared DIR names the folder. Tests needing them are skipped when they are missing.
Prints PASS/FAIL/SKIP per test; the last line is "N passed, M failed"; exit status 1 on any failure.
"""

import argparse
import math
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "test" / "reference.py"
CONVERT = ROOT / "dev" / "convert_pt.py"
PYTHON = sys.executable
sys.path.insert(0, str(ROOT / "test"))
import reference as R  # noqa: E402

TINY = dict(vocab_size=1024, num_layers=2, model_dim=64, num_heads=4, num_kv_heads=2, train_seq_len=64)
TINY_FLAGS = ["--num-layers", "2", "--model-dim", "64", "--num-heads", "4", "--num-kv-heads", "2", "--train-seq-len", "64"]


# --------------------------------------------------------------------------------------------------
# harness


class Skip(Exception):
    pass


class Results:
    def __init__(self):
        self.passed, self.failed, self.skipped = 0, 0, 0

    def run(self, name, fn, *args):
        t0 = time.time()
        try:
            detail = fn(*args)
        except Skip as e:
            self.skipped += 1
            print(f"SKIP {name}: {e}", flush=True)
            return
        except (AssertionError, SystemExit, Exception) as e:  # noqa: B014 - SystemExit: reference.fail
            self.failed += 1
            print(f"FAIL {name} ({time.time() - t0:.1f}s)", flush=True)
            text = "".join(traceback.format_exception(type(e), e, e.__traceback__)[-3:])
            for line in text.rstrip().split("\n"):
                print("     " + line, flush=True)
            return
        self.passed += 1
        print(f"PASS {name} ({time.time() - t0:.1f}s)" + (f"  [{detail}]" if detail else ""), flush=True)


def run(cmd, env=None, timeout=300):
    full_env = dict(os.environ)
    for name, *_ in R.HYPERPARAMETERS:  # the tests set hyperparameters explicitly
        full_env.pop(name, None)
    full_env.update(env or {})
    p = subprocess.run([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=full_env,
                       timeout=timeout, cwd=str(ROOT))
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def check(cond, msg=""):
    if not cond:
        raise AssertionError(msg)


def expect_ok(rc, out, err, what):
    check(rc == 0, f"{what}: exit status {rc}\nstdout: {out[-1500:]}\nstderr: {err[-1500:]}")


def tiny_cfg(**kw):
    return R.default_config(**{**TINY, **kw})


# --------------------------------------------------------------------------------------------------
# shared data


class Shared:
    def __init__(self, folder):
        self.tokenizer = self.data = None
        candidates = [Path(folder)] if folder else [ROOT.parent / "shared", ROOT / "data"]
        for c in candidates:
            tok = c / "tokenizers" / "fineweb_1024_bpe.model"
            for d in (c / "data" / "sample_sp1024", c / "datasets" / "fineweb10B_sp1024"):
                if tok.is_file() and list(d.glob("fineweb_val_*.bin")) and list(d.glob("fineweb_train_*.bin")):
                    self.tokenizer, self.data = tok, d
                    return

    def need(self):
        if self.data is None:
            raise Skip("no shared tokenizer/shards (../shared or data/; --shared DIR)")


# --------------------------------------------------------------------------------------------------
# cli


def test_cli(tmp):
    rc, _, err = run([PYTHON, REFERENCE, "eval", "--no-such-flag", "1"])
    check(rc == 2 and "unrecognized arguments" in err, f"unknown flag: rc {rc}, stderr {err!r}")
    rc, _, err = run([PYTHON, REFERENCE])
    check(rc == 2, f"no subcommand: rc {rc}")
    rc, _, err = run([PYTHON, REFERENCE, "init", "--out", tmp / "x.bin", "--iterations", "5"])
    check(rc == 2, f"a training flag on init must be refused: rc {rc}")
    rc, out, err = run([PYTHON, REFERENCE, "init", "--out", tmp / "env.bin", "--model-dim", "32"],
                       env={"NUM_LAYERS": "3", "MODEL_DIM": "48", "NUM_HEADS": "4", "NUM_KV_HEADS": "2"})
    expect_ok(rc, out, err, "init with environment")
    h = np.fromfile(tmp / "env.bin", dtype="<i4", count=256)
    check((h[4], h[5], h[6], h[7]) == (3, 32, 4, 2), f"header {h[3:10]}: NUM_LAYERS from env, --model-dim beats MODEL_DIM")
    rc, _, err = run([PYTHON, REFERENCE, "init", "--out", tmp / "bad.bin", "--model-dim", "30", "--num-heads", "4"])
    check(rc == 1 and "divisible" in err, f"invalid shape: rc {rc}, stderr {err!r}")
    rc, _, err = run([PYTHON, REFERENCE, "eval", "--ckpt", tmp / "env.bin", "--num-layers", "2", "--data-path", tmp])
    check(rc == 1 and "num_layers" in err, f"shape flag contradicting the checkpoint: rc {rc}, stderr {err!r}")
    return "usage errors exit 2; env and flag precedence"


# --------------------------------------------------------------------------------------------------
# keys: train_gpt.py's state_dict at the default config (9 layers, dim 512, 8 heads, 4 kv heads, MLP 2x,
# vocab 1024, tied), written out from its module definitions: GPT registers tok_emb, skip_weights, blocks,
# final_norm, lm_head; a state_dict lists a module's own parameters before its children's.

BASELINE_TOP = [("skip_weights", (4, 512)), ("tok_emb.weight", (1024, 512))]
BASELINE_BLOCK = [
    ("attn_scale", (512,)),
    ("mlp_scale", (512,)),
    ("resid_mix", (2, 512)),
    ("attn.q_gain", (8,)),
    ("attn.c_q.weight", (512, 512)),
    ("attn.c_k.weight", (256, 512)),
    ("attn.c_v.weight", (256, 512)),
    ("attn.proj.weight", (512, 512)),
    ("mlp.fc.weight", (1024, 512)),
    ("mlp.proj.weight", (512, 1024)),
]
BASELINE_PARAMS = 17_059_912


def baseline_keys(num_layers=9, untied=False):
    keys = list(BASELINE_TOP)
    for i in range(num_layers):
        keys += [(f"blocks.{i}.{name}", shape) for name, shape in BASELINE_BLOCK]
    if untied:
        keys.append(("lm_head.weight", (1024, 512)))
    return keys


def test_keys(tmp):
    model = R.GPT.from_config(R.default_config())
    mine = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    expected = baseline_keys()
    check(mine == expected, f"state_dict differs from train_gpt.py's:\n mine {mine[:4]}...\n expected {expected[:4]}...")
    n = sum(int(np.prod(s)) for _, s in expected)
    check(n == BASELINE_PARAMS == sum(p.numel() for p in model.parameters()), f"{n} parameters")
    # train_gpt.py -> here: a dict with exactly its keys and shapes loads strictly
    g = torch.Generator().manual_seed(5)
    theirs = {k: torch.randn(s, generator=g) for k, s in expected}
    result = model.load_state_dict(theirs, strict=True)
    check(not result.missing_keys and not result.unexpected_keys, str(result))
    check(all(torch.equal(model.state_dict()[k], v) for k, v in theirs.items()), "values after load")
    # here -> train_gpt.py: our state_dict has its keys (checked above) and loads strictly into a fresh model
    other = R.GPT.from_config(R.default_config())
    other.load_state_dict(model.state_dict(), strict=True)
    # an extra or missing key is refused
    bad = dict(theirs)
    bad.pop("blocks.8.mlp.proj.weight")
    try:
        other.load_state_dict(bad, strict=True)
        raise AssertionError("a missing key was accepted")
    except RuntimeError:
        pass
    untied = R.GPT.from_config(R.default_config(tie_embeddings=0))
    check([(k, tuple(v.shape)) for k, v in untied.state_dict().items()] == baseline_keys(untied=True), "untied keys")
    return f"{len(expected)} keys, {n} parameters"


# --------------------------------------------------------------------------------------------------
# init


def test_init(tmp):
    cfg = R.default_config()
    a, b = R.init_model(cfg).state_dict(), R.init_model(cfg).state_dict()
    check(all(torch.equal(a[k], b[k]) for k in a), "same SEED, different weights")
    c = R.init_model(R.default_config(seed=7)).state_dict()
    check(not torch.equal(a["blocks.0.attn.c_q.weight"], c["blocks.0.attn.c_q.weight"]), "SEED ignored")
    for k, v in a.items():
        check(torch.equal(v, v.bfloat16().float()), f"{k} not bf16-representable")
        if k.endswith(("attn.proj.weight", "mlp.proj.weight")):
            check(not v.any(), f"{k} should be zero")
        elif k.endswith(("c_q.weight", "c_k.weight", "c_v.weight", "fc.weight")):
            bound = 1 / math.sqrt(v.shape[1])
            check(v.abs().max() <= bound * 1.004 and v.abs().max() > 0.9 * bound, f"{k} outside U(+-1/sqrt(fan_in))")
        elif k.endswith("q_gain"):
            check(torch.all(v == 1.5), k)
        elif k.endswith(("attn_scale", "mlp_scale")) or k == "skip_weights":
            check(torch.all(v == 1), k)
        elif k.endswith("resid_mix"):
            check(torch.all(v[0] == 1) and torch.all(v[1] == 0), k)
    std = a["tok_emb.weight"].std().item()
    check(abs(std - 0.005) < 0.0001, f"tok_emb std {std}")
    r = R.init_model(tiny_cfg(tie_embeddings=0), random_init=True).state_dict()
    check(all(v.any() for v in r.values()) and not torch.all(r["blocks.0.resid_mix"][1] == 0), "--random-init leaves zeros")
    return f"tok_emb std {std:.5f}"


# --------------------------------------------------------------------------------------------------
# container


def parse_container_by_hand(path):
    """An independent reader of the documented layout."""
    data = Path(path).read_bytes()
    h = struct.unpack("<256i", data[:1024])
    pos, out = 1024, {}
    for _ in range(h[2]):
        (n,) = struct.unpack_from("<i", data, pos)
        name = data[pos + 4:pos + 4 + n].decode()
        pos += 4 + n
        code, ndim = struct.unpack_from("<ii", data, pos)
        dims = struct.unpack_from(f"<{ndim}i", data, pos + 8)
        pos += 8 + 4 * ndim
        count = int(np.prod(dims, dtype=np.int64))
        out[name] = np.frombuffer(data, dtype="<f4" if code == 0 else "<i4", count=count, offset=pos).reshape(dims)
        pos += 4 * count
    check(pos == len(data), "trailing bytes")
    return h, out


def test_container(tmp):
    cfg = tiny_cfg(tie_embeddings=0, rope_base=5000.0, logit_softcap=15.0)
    model = R.init_model(cfg, random_init=True)
    extra = [("debug.ints", torch.arange(-3, 9, dtype=torch.int32).reshape(3, 4)),
             ("debug.scalar", torch.tensor(2.5)), ("debug.empty", torch.zeros(0, 3))]
    path = tmp / "ck.bin"
    R.save(path, model, cfg, steps=42, extra=extra)
    h, recs = parse_container_by_hand(path)
    sd = model.state_dict()
    check(list(recs)[:len(sd)] == list(sd), "records are not the state_dict keys in order")
    check(h[:14] == (20261125, 1, len(sd) + 3, 1024, 2, 64, 4, 2, 128, 0, R.f32_bits(5000.0), R.f32_bits(15.0), 64, 42),
          f"header {h[:14]}")
    check(not any(h[14:]), "h[14..255] not zero")
    for k, v in sd.items():
        check(np.array_equal(recs[k].view(np.uint32), v.numpy().view(np.uint32)), f"{k} not bit-exact")
    check(recs["debug.ints"].dtype == np.dtype("<i4") and recs["debug.ints"].tolist() == extra[0][1].tolist(), "int32 record")
    check(recs["debug.scalar"].shape == () and recs["debug.scalar"] == 2.5, "0-d record")
    check(recs["debug.empty"].shape == (0, 3), "empty record")
    c = R.read_container(path)
    check(c.steps == 42 and c.config.rope_base == 5000.0 and c.config.logit_softcap == 15.0 and c.config.mlp_mult == 2, "read header")
    loaded, cfg2, steps = R.load(path)
    check(steps == 42, "steps")
    for k, v in loaded.state_dict().items():
        check(np.array_equal(v.numpy().view(np.uint32), sd[k].numpy().view(np.uint32)), f"load: {k}")
    path2 = tmp / "ck2.bin"
    R.save(path2, loaded, cfg2, steps=42, extra=extra)
    check(path.read_bytes() == path2.read_bytes(), "save(load(f)) differs from f")
    data = path.read_bytes()
    for name, damaged, needle in [("truncated", data[:-10], "truncated"), ("magic", b"\0" * 4 + data[4:], "magic"),
                                  ("trailing", data + b"x", "unexpected bytes")]:
        bad = tmp / f"bad_{name}.bin"
        bad.write_bytes(damaged)
        try:
            R.read_container(bad)
            raise AssertionError(f"{name} file accepted")
        except SystemExit as e:
            check(needle in str(e) and str(bad) in str(e), f"{name}: message {e}")
    return f"{len(recs)} records, {len(data)} bytes"


# --------------------------------------------------------------------------------------------------
# convert


def test_convert(tmp):
    cfg = tiny_cfg(num_layers=3)
    g = torch.Generator().manual_seed(3)
    sd = {k: torch.randn(v.shape, generator=g) for k, v in R.GPT.from_config(cfg).state_dict().items()}
    sd["tok_emb.weight"] = sd["tok_emb.weight"].bfloat16()  # train_gpt.py keeps the embedding in bf16
    src = tmp / "final_model.pt"
    torch.save(sd, src)
    out = tmp / "converted.bin"
    rc, so, se = run([PYTHON, CONVERT, src, out, "--train-seq-len", "64", "--steps", "7"])
    expect_ok(rc, so, se, "convert_pt.py")
    c = R.read_container(out)
    check((c.config.num_layers, c.config.model_dim, c.config.num_heads, c.config.num_kv_heads, c.config.mlp_mult,
           c.config.tie_embeddings, c.config.train_seq_len, c.steps) == (3, 64, 4, 2, 2, 1, 64, 7), f"config {c.config}")
    check(list(c.tensors) == list(sd), "record order")
    for k, v in sd.items():
        check(np.array_equal(c.tensors[k], v.float().numpy()), f"{k} value")
    R.load(out)  # strict load into the reference model

    import importlib.util
    spec = importlib.util.spec_from_file_location("convert_pt", CONVERT)
    convert = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(convert)

    def refused(state, needle, extra_args=()):
        p = tmp / "bad.pt"
        if isinstance(state, bytes):
            p.write_bytes(state)
        else:
            torch.save(state, p)
        try:
            convert.main([str(p), str(tmp / "bad.bin"), *extra_args])
        except SystemExit as e:
            msg = str(e)
            check(e.code != 0 and str(p) in msg and needle in msg, f"expected {needle!r} and the file name, got {msg!r}")
            return
        raise AssertionError(f"accepted ({needle})")

    missing = dict(sd)
    missing.pop("blocks.2.mlp.proj.weight")
    refused(missing, "missing ['blocks.2.mlp.proj.weight']")
    extra = dict(sd, **{"blocks.0.attn.bias": torch.zeros(3)})
    refused(extra, "unexpected ['blocks.0.attn.bias']")
    reshaped = dict(sd, skip_weights=torch.zeros(2, 64))
    refused(reshaped, "skip_weights has shape (2, 64)")
    refused(sd, "--num-heads 8 disagrees", ["--num-heads", "8"])
    refused(b"not a torch file", "cannot be read")
    refused([torch.zeros(2)], "expected a state_dict")
    return "bf16 embedding converted; 6 bad inputs refused"


# --------------------------------------------------------------------------------------------------
# rope


def test_rope(tmp):
    d, base, T = 16, 10000.0, 300
    cos, sin = R.rotary_tables(T, d, base, torch.float64, "cpu")
    x = torch.zeros(1, 1, T, d, dtype=torch.float64)
    x[..., 0] = 1.0  # e_0: pairs with element d/2
    y = R.apply_rotary(x, cos, sin)
    t = torch.arange(T, dtype=torch.float64)
    check(torch.allclose(y[0, 0, :, 0], torch.cos(t)) and torch.allclose(y[0, 0, :, d // 2], -torch.sin(t)),
          "rotation of e_0 should be (cos t, ..., -sin t at d/2)")
    x[..., 0], x[..., 1] = 0.0, 1.0
    y = R.apply_rotary(x, cos, sin)
    check(torch.allclose(y[0, 0, :, d // 2 + 1], -torch.sin(t / base ** (2 / d))), "frequency of pair 1")
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 1, T, d, generator=g, dtype=torch.float64), torch.randn(1, 1, T, d, generator=g, dtype=torch.float64)
    q[:, :, :] = q[:, :, :1]
    k[:, :, :] = k[:, :, :1]
    qr, kr = R.apply_rotary(q, cos, sin), R.apply_rotary(k, cos, sin)
    dots = [(qr[0, 0, m] @ kr[0, 0, m - 7]).item() for m in (7, 50, 299)]
    check(max(dots) - min(dots) < 1e-9, f"q.k should depend on m - n only: {dots}")
    check(torch.allclose(qr.norm(dim=-1), q.norm(dim=-1)), "rotation changes norms")
    c32, _ = R.rotary_tables(T, d, base, torch.float32, "cpu")
    inv = 1.0 / (base ** (torch.arange(0, d, 2, dtype=torch.float32) / d))
    check(torch.equal(c32[0, 0], torch.outer(torch.arange(T, dtype=torch.float32), inv).cos()), "float32 table")
    cb, sb = R.rotary_tables(T, d, base, torch.float32, "cpu", mode="bf16")
    check(cb.dtype == torch.bfloat16, "bf16 table dtype")
    check(torch.equal(cb[0, 0, 257], cb[0, 0, 256]) and not torch.equal(cb[0, 0, 255], cb[0, 0, 256]),
          "bf16 positions: 257 rounds to 256, 255 is exact")
    rot = R.Rotary(d, base)
    rot.bfloat16()  # what train_gpt.py's model.bfloat16() does to the buffer; then its eager table code:
    freqs = torch.outer(torch.arange(T, dtype=rot.inv_freq.dtype), rot.inv_freq)
    check(torch.equal(cb[0, 0], freqs.cos()) and torch.equal(sb[0, 0], freqs.sin()), "bf16 mode != eager bf16 tables")
    err = (cb.float() - c32).abs()
    check(err[0, 0, :256, 0].max() <= 2 ** -8, "bf16 table: pair 0 (inv_freq 1) at exact positions < 256")
    return f"bf16 table vs exact: max |cos err| {err[0, 0, :256].max().item():.3f} below position 256, {err.max().item():.3f} overall"


# --------------------------------------------------------------------------------------------------
# forward: a second, independent writing of the model in numpy (float64, one sequence, loops over
# heads), straight from the list of facts in reference.py's docstring


def numpy_forward(state, cfg, ids):
    w = {k: v.double().numpy() for k, v in state.items()}
    T, hd = len(ids), cfg.model_dim // cfg.num_heads
    group, half = cfg.num_heads // cfg.num_kv_heads, hd // 2

    def rms(x):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + 2.0 ** -23)

    angle = np.arange(T)[:, None] * (1.0 / cfg.rope_base ** (np.arange(0, hd, 2) / hd))[None, :]  # [T, hd/2]
    cos, sin = np.cos(angle), np.sin(angle)

    def rope(v):  # [T, hd]: element i pairs with i + hd/2
        a, b = v[:, :half], v[:, half:]
        return np.concatenate([a * cos + b * sin, b * cos - a * sin], axis=1)

    def block(i, x, x0):
        p = f"blocks.{i}."
        x = w[p + "resid_mix"][0] * x + w[p + "resid_mix"][1] * x0
        h = rms(x)
        q, k, v = h @ w[p + "attn.c_q.weight"].T, h @ w[p + "attn.c_k.weight"].T, h @ w[p + "attn.c_v.weight"].T
        y = np.zeros_like(q)
        for head in range(cfg.num_heads):
            kv = head // group
            qh = rope(rms(q[:, head * hd:(head + 1) * hd])) * w[p + "attn.q_gain"][head]
            kh = rope(rms(k[:, kv * hd:(kv + 1) * hd]))
            scores = qh @ kh.T / math.sqrt(hd)
            scores[np.triu_indices(T, 1)] = -np.inf
            probs = np.exp(scores - scores.max(1, keepdims=True))
            y[:, head * hd:(head + 1) * hd] = (probs / probs.sum(1, keepdims=True)) @ v[:, kv * hd:(kv + 1) * hd]
        x = x + w[p + "attn_scale"] * (y @ w[p + "attn.proj.weight"].T)
        hidden = np.maximum(rms(x) @ w[p + "mlp.fc.weight"].T, 0.0) ** 2
        return x + w[p + "mlp_scale"] * (hidden @ w[p + "mlp.proj.weight"].T)

    x = x0 = rms(w["tok_emb.weight"][ids])
    encoder = cfg.num_layers // 2
    skips = []
    for i in range(encoder):
        x = block(i, x, x0)
        skips.append(x)
    for j in range(cfg.num_layers - encoder):
        if skips:
            x = x + w["skip_weights"][j] * skips.pop()
        x = block(encoder + j, x, x0)
    head = w["tok_emb.weight"] if cfg.tie_embeddings else w["lm_head.weight"]
    return cfg.logit_softcap * np.tanh((rms(x) @ head.T) / cfg.logit_softcap)


def test_forward(tmp):
    worst = 0.0
    for layers, tie, heads, kv in [(3, 0, 4, 2), (4, 1, 4, 1), (1, 1, 2, 2)]:
        cfg = tiny_cfg(num_layers=layers, tie_embeddings=tie, num_heads=heads, num_kv_heads=kv, logit_softcap=3.0, rope_base=100.0)
        model = R.init_model(cfg, random_init=True).double()
        ids = torch.randint(0, 1024, (40,), generator=torch.Generator().manual_seed(layers)).tolist()
        with torch.no_grad():
            mine = model.forward_logits(torch.tensor([ids]))[0].numpy()
        theirs = numpy_forward(model.state_dict(), cfg, ids)
        diff = np.abs(mine - theirs).max()
        check(diff < 1e-10, f"layers {layers} tied {tie} heads {heads}/{kv}: max diff {diff}")
        worst = max(worst, diff)
    return f"3 shapes (odd/even depth, GQA 2:1 and 4:1, tied/untied), max diff {worst:.1e}"


# --------------------------------------------------------------------------------------------------
# precision


def test_precision(tmp):
    """float32 vs float64 forward, same weights. float32's unit roundoff is 2^-24 = 6e-8; a logit is the end
    of ~10 normalised products per layer with dot products of length <= 128 whose rounding errors grow
    like sqrt(length) * 6e-8 each, plus the rsqrt/softmax/tanh roundings: about 1e-6 of the logit scale
    over 3 layers (measured 1e-7..1e-6). The bound 2e-5 * max(1, |logits|) leaves 20x headroom for other
    BLAS kernels, while a real mismatch between the two paths (a constant in float32 only, a table in
    the wrong precision) moves logits by >= 1e-4."""
    worst = 0.0
    for tie in (1, 0):
        cfg = tiny_cfg(num_layers=3, tie_embeddings=tie)
        m32 = R.init_model(cfg, random_init=True)
        m64 = R.init_model(cfg, random_init=True).double()
        g = torch.Generator().manual_seed(11)
        x = torch.randint(0, 1024, (2, 64), generator=g)
        y = torch.randint(0, 1024, (2, 64), generator=g)
        with torch.no_grad():
            l32, l64 = m32.forward_logits(x), m64.forward_logits(x)
            loss32, loss64 = m32(x, y).item(), m64(x, y).item()
        check(l64.dtype == torch.float64, "float64 model computed in another dtype")
        diff = (l32.double() - l64).abs().max().item()
        scale = max(1.0, l64.abs().max().item())
        check(diff <= 2e-5 * scale, f"tied={tie}: max |logit diff| {diff} (scale {scale})")
        check(abs(loss32 - loss64) <= 2e-5 * loss64, f"tied={tie}: loss {loss32} vs {loss64}")
        worst = max(worst, diff / scale)
    return f"max relative logit diff {worst:.2e}"


# --------------------------------------------------------------------------------------------------
# gradients


def test_gradients(tmp):
    """Central differences with h = 1e-6 in float64: truncation error O(h^2 * f''') ~ 1e-12, rounding
    error ~ 1e-16 * |loss| / h ~ 1e-9, so |fd - grad| <= 1e-8 + 1e-6 |grad|."""
    cfg = R.default_config(vocab_size=64, num_layers=3, model_dim=32, num_heads=4, num_kv_heads=2, mlp_mult=2,
                           train_seq_len=16, tie_embeddings=0)
    model = R.init_model(cfg, random_init=True).double()
    g = torch.Generator().manual_seed(1)
    x, y = torch.randint(0, 64, (2, 16), generator=g), torch.randint(0, 64, (2, 16), generator=g)
    model(x, y).backward()
    h, checked, worst = 1e-6, 0, 0.0
    for name, p in model.named_parameters():
        grad = p.grad.reshape(-1)
        picks = {int(grad.abs().argmax()), int(torch.randint(0, grad.numel(), (1,), generator=g))}
        for i in picks:
            flat = p.data.view(-1)
            old = flat[i].item()
            with torch.no_grad():
                flat[i] = old + h
                plus = model(x, y).item()
                flat[i] = old - h
                minus = model(x, y).item()
                flat[i] = old
            fd, an = (plus - minus) / (2 * h), grad[i].item()
            check(abs(fd - an) <= 1e-8 + 1e-6 * abs(an), f"{name}[{i}]: autograd {an:.10e}, finite difference {fd:.10e}")
            worst = max(worst, abs(fd - an))
            checked += 1
    return f"{checked} entries over every parameter tensor, max |diff| {worst:.1e}"


# --------------------------------------------------------------------------------------------------
# newton-schulz


def test_newton_schulz(tmp):
    """NS5 acts on each singular value s of X = G/||G||_F (so s <= 1) as p(s) = a s + b s^3 + c s^5
    iterated 5 times. For s in [0.003, 1], p^5(s) lies in [0.682, 1.203] (scalar iteration on a fine
    grid); Gaussian matrices with aspect ratio >= 2 have s_min/||G||_F > 0.03, so every output singular
    value must be in that band (float32/float64, with 1% slack) and, with bf16 matmuls, in [0.6, 1.25].
    Square matrices have singular values near 0, which 5 steps cannot lift: only the upper bound holds."""
    s = np.linspace(0.003, 1, 100001)
    for _ in range(5):
        s = 3.4445 * s - 4.7750 * s ** 3 + 2.0315 * s ** 5
    check(0.68 < s.min() < 0.69 and 1.20 < s.max() < 1.21, f"scalar band [{s.min()}, {s.max()}]")
    g = torch.Generator().manual_seed(0)
    lo_hi = []
    for shape in [(64, 128), (128, 64), (96, 256)]:
        G = torch.randn(shape, generator=g)
        for dtype, lo, hi in [(torch.float32, 0.675, 1.215), (torch.float64, 0.675, 1.215), (torch.bfloat16, 0.6, 1.25)]:
            X = R.zeropower_via_newtonschulz5(G, 5, dtype)
            check(X.dtype == dtype and X.shape == G.shape, "dtype/shape")
            sv = torch.linalg.svdvals(X.double())
            check(lo <= sv.min() and sv.max() <= hi, f"{shape} {dtype}: singular values in [{sv.min():.4f}, {sv.max():.4f}]")
            lo_hi.append((sv.min().item(), sv.max().item()))
    G = torch.randn(96, 256, generator=g)
    check(torch.equal(R.zeropower_via_newtonschulz5(G.T, 5, torch.float32), R.zeropower_via_newtonschulz5(G, 5, torch.float32).T),
          "tall matrices must be computed on the transpose")
    sq = torch.linalg.svdvals(R.zeropower_via_newtonschulz5(torch.randn(128, 128, generator=g), 5, torch.float32).double())
    check(sq.max() <= 1.215, f"square: max singular value {sq.max()}")
    return f"singular values in [{min(a for a, _ in lo_hi):.3f}, {max(b for _, b in lo_hi):.3f}]"


# --------------------------------------------------------------------------------------------------
# optimizer


def test_optimizer(tmp):
    # Muon update formula on one matrix, two steps
    g = torch.Generator().manual_seed(2)
    p = torch.nn.Parameter(torch.randn(32, 16, generator=g, dtype=torch.float64))
    p0 = p.detach().clone()
    g1, g2 = torch.randn(32, 16, generator=g, dtype=torch.float64), torch.randn(32, 16, generator=g, dtype=torch.float64)
    opt = R.Muon([p], lr=0.04, momentum=0.9, backend_steps=5, ns_dtype=torch.float64)
    ns = lambda u: R.zeropower_via_newtonschulz5(u, 5, torch.float64) * math.sqrt(32 / 16)  # noqa: E731
    p.grad = g1.clone()
    opt.step()
    expect1 = p0 - 0.04 * ns(g1 + 0.9 * g1)
    check(torch.allclose(p.detach(), expect1, atol=1e-12), "Muon step 1")
    p.grad = g2.clone()
    opt.step()
    buf = 0.9 * g1 + g2
    check(torch.allclose(p.detach(), expect1 - 0.04 * ns(g2 + 0.9 * buf), atol=1e-12), "Muon step 2 (Nesterov)")

    # the split and learning rates
    for tie in (0, 1):
        cfg = tiny_cfg(tie_embeddings=tie)
        model = R.init_model(cfg)
        opts, muon = R.build_optimizers(model, cfg)
        names = {id(p): n for n, p in model.named_parameters()}
        groups = [(type(o).__name__, o.param_groups[0]["lr"], sorted(names[id(p)] for p in o.param_groups[0]["params"])) for o in opts]
        muon_names = sorted(f"blocks.{i}.{n}" for i in range(2) for n in
                            ("attn.c_q.weight", "attn.c_k.weight", "attn.c_v.weight", "attn.proj.weight", "mlp.fc.weight", "mlp.proj.weight"))
        scalar_names = sorted([f"blocks.{i}.{n}" for i in range(2) for n in ("attn_scale", "mlp_scale", "resid_mix", "attn.q_gain")] + ["skip_weights"])
        expected = [("Adam", 0.05 if tie else 0.6, ["tok_emb.weight"])]
        if not tie:
            expected.append(("Adam", 0.008, ["lm_head.weight"]))
        expected += [("Muon", 0.04, muon_names), ("Adam", 0.04, scalar_names)]
        check(groups == expected, f"tie={tie}: split {groups}")
        adam = opts[0]
        check(adam.defaults["betas"] == (0.9, 0.95) and adam.defaults["eps"] == 1e-8 and adam.defaults["weight_decay"] == 0, "Adam settings")

    # schedules
    cfg = R.default_config(iterations=100, warmdown_iters=20, max_wallclock_seconds=0)
    got = [R.lr_mul(cfg, s, 0.0) for s in (0, 79, 80, 90, 99, 100)]
    check(got == [1.0, 1.0, 1.0, 0.5, 0.05, 1.0], f"lr_mul by iterations {got}")
    cfg = R.default_config(warmdown_iters=150, max_wallclock_seconds=600)
    check(R.lr_mul(cfg, 100, 100_000.0) == 1.0, "wallclock: far from the cap")
    check(abs(R.lr_mul(cfg, 100, 590_000.0) - 10_000 / (150 * 5900)) < 1e-15, "wallclock: warmdown")
    check(R.lr_mul(cfg, 100, 700_000.0) == 0.0, "wallclock: past the cap")
    check(R.lr_mul(R.default_config(warmdown_iters=0), 5, 1e9) == 1.0, "no warmdown")
    m = [R.muon_momentum_at(R.default_config(), s) for s in (0, 250, 500, 900)]
    check(np.allclose(m, [0.85, 0.90, 0.95, 0.95], atol=1e-15), f"momentum warmup {m}")
    return "Muon formula, split, lr_mul, momentum"


# --------------------------------------------------------------------------------------------------
# loader


def test_loader(tmp, shared):
    shared.need()
    pattern = str(shared.data / "fineweb_train_*.bin")
    stream = R.load_data_shard(sorted(shared.data.glob("fineweb_train_*.bin"))[0]).astype(np.int64)
    loader = R.TrainLoader(pattern, 8 * 128, 64)
    for step in range(2):
        x, y = loader.next_batch()
        check(tuple(x.shape) == (16, 64), f"batch shape {tuple(x.shape)}")
        for span in range(8):
            start = (step * 8 + span) * 129
            chunk = stream[start:start + 129]
            check(np.array_equal(x[2 * span:2 * span + 2].reshape(-1).numpy(), chunk[:-1]), f"step {step} span {span} x")
            check(np.array_equal(y[2 * span:2 * span + 2].reshape(-1).numpy(), chunk[1:]), f"step {step} span {span} y")
    try:
        R.TrainLoader(pattern, 8 * 100, 64)
        raise AssertionError("a span that is not a multiple of seq_len was accepted")
    except SystemExit:
        pass
    return "8 spans of N/8 + 1 tokens per step"


# --------------------------------------------------------------------------------------------------
# windows


def test_windows(tmp):
    cases = 0
    for n, w, s in [(64, 64, 64), (256, 64, 64), (256, 64, 16), (250, 64, 16), (100, 64, 7), (64, 64, 1), (200, 32, 32), (201, 32, 5)]:
        wins = R.eval_windows(n, w, s)
        count = np.zeros(n + 1, dtype=int)
        for i, (start, lo) in enumerate(wins):
            check(0 <= start and start + w <= n, f"window {start} out of range")
            if i == 0:
                check(lo == 0, "the first window scores all its positions")
            elif start % s == 0:
                check(w - lo == s, f"window {i} at {start} scores {w - lo}, expected the last {s}")
            else:
                check(i == len(wins) - 1 and start == n - w and w - lo < s, f"window {i} at {start}: only the tail may be off the grid")
            count[start + 1 + lo:start + 1 + w] += 1
        check(count[0] == 0 and np.all(count[1:] == 1), f"N={n} W={w} S={s}: targets not scored exactly once")
        cases += 1
    check(R.eval_windows(250, 64, 16)[-1] == (186, 64 - 10), f"tail window {R.eval_windows(250, 64, 16)[-1]}")
    check(R.eval_windows(256, 64, 64) == [(0, 0), (64, 0), (128, 0), (192, 0)], "stride = seq_len is the plain evaluation")
    return f"{cases} (N, W, S) cases"


# --------------------------------------------------------------------------------------------------
# train, eval, logits, debug-state (share one trained checkpoint)


def data_flags(shared):
    return ["--data-path", shared.data, "--tokenizer-path", shared.tokenizer]


def test_train(tmp, shared):
    shared.need()
    steps = 24
    cmd = [PYTHON, REFERENCE, "train", *TINY_FLAGS, *data_flags(shared), "--iterations", steps, "--train-batch-tokens", 4096,
           "--warmdown-iters", 8, "--max-wallclock-seconds", 0, "--val-loss-every", 1000, "--train-log-every", 4,
           "--max-tokens", 4096, "--out", tmp / "trained.bin"]
    rc, out, err = run(cmd)
    expect_ok(rc, out, err, "train")
    lines = out.splitlines()
    val = {int(m.group(1)): float(m.group(2)) for m in (re.match(r"step:(\d+)/24 val_loss:(\d+\.\d+) val_bpb:\d+\.\d+ train_time:\d+ms step_avg:\d+\.\d+ms$", l) for l in lines) if m}
    train = [int(m.group(1)) for m in (re.match(r"step:(\d+)/24 train_loss:\d+\.\d{4} train_time:\d+ms step_avg:\d+\.\d{2}ms$", l) for l in lines) if m]
    check(set(val) == {0, steps}, f"validation lines at steps {sorted(val)}\n{out}")
    check(train == list(range(1, 11)) + [12, 16, 20, 24], f"train log lines at steps {train}")
    check(val[steps] < val[0] - 1.0, f"val loss {val[0]} -> {val[steps]}: training did not reduce it")
    check(abs(val[0] - math.log(1024)) < 0.05, f"initial loss {val[0]} should be about ln(1024)")
    check(R.read_container(tmp / "trained.bin").steps == steps, "steps in the header")
    rc, out, err = run([PYTHON, REFERENCE, "train", "--ckpt", tmp / "trained.bin", "--data-path", shared.data, "--iterations", 2,
                        "--train-batch-tokens", 4096, "--max-wallclock-seconds", 0, "--no-val", "--out", tmp / "more.bin"])
    expect_ok(rc, out, err, "train --ckpt")
    check(R.read_container(tmp / "more.bin").steps == steps + 2, "steps after continuing from a checkpoint")
    return f"val_loss {val[0]:.3f} -> {val[steps]:.3f} in {steps} steps"


def parse_eval(out):
    m = re.search(r"^val_loss:(\S+) val_bpb:(\S+) tokens:(\d+) bytes:(\d+)$", out, re.M)
    check(m is not None, f"no result line in {out!r}")
    return float(m.group(1)), float(m.group(2)), int(m.group(3)), int(m.group(4))


def test_eval(tmp, shared):
    shared.need()
    ck = tmp / "trained.bin"
    if not ck.exists():
        raise Skip("needs the train test's checkpoint")
    n = 8192
    base = [PYTHON, REFERENCE, "eval", "--ckpt", ck, *data_flags(shared), "--max-tokens", n]
    rc, out, err = run(base)
    expect_ok(rc, out, err, "eval")
    loss, bpb, tokens, nbytes = parse_eval(out)
    check(tokens == n, f"tokens {tokens}")
    check(abs(bpb - loss / math.log(2) * tokens / nbytes) <= 1e-12 * bpb, "bpb != loss/ln2 * tokens/bytes")
    # the byte count against sentencepiece: decode the targets document by document (BOS = 1 separates)
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=str(shared.tokenizer))
    val = np.concatenate([R.load_data_shard(f) for f in sorted(shared.data.glob("fineweb_val_*.bin"))])[:n + 1]
    docs, cur = [], []
    for t in val[1:].tolist():
        if t == 1:
            docs.append(cur)
            cur = []
        else:
            cur.append(t)
    docs.append(cur)
    decoded = sum(len(sp.decode(d).encode("utf-8")) for d in docs)
    check(decoded == nbytes, f"bytes {nbytes}, sentencepiece decoding gives {decoded}")
    # in-process, and stride = seq_len
    model, cfg, _ = R.load(ck)
    luts = R.load_luts(R.replace(cfg, tokenizer_path=str(shared.tokenizer)), False)
    r = R.evaluate(model, R.load_validation_tokens(str(shared.data / "fineweb_val_*.bin"), 64, n), 64, luts)
    check(abs(r.val_loss - loss) <= 1e-12 * loss and r.bytes == nbytes, f"in-process {r} vs CLI {loss}")
    rc, out, err = run(base + ["--stride", 64])
    expect_ok(rc, out, err, "eval --stride 64")
    l64 = parse_eval(out)
    check(abs(l64[0] - loss) <= 1e-9 * loss and l64[2:] == (tokens, nbytes), f"stride 64 {l64} vs plain {loss}")
    rc, out, err = run(base + ["--stride", 16, "--batch-seqs", 5])
    expect_ok(rc, out, err, "eval --stride 16")
    l16 = parse_eval(out)
    check(l16[2:] == (tokens, nbytes), f"sliding: tokens/bytes {l16[2:]}")
    check(abs(l16[0] - loss) < 0.2 and abs(l16[1] - l16[0] / math.log(2) * tokens / nbytes) <= 1e-12 * l16[1], f"sliding result {l16}")
    rc, out, err = run(base[:-2] + ["--max-tokens", 8200, "--stride", 24])
    expect_ok(rc, out, err, "eval with a cut")
    check(parse_eval(out)[2] == 8192, "the split must be cut to a multiple of TRAIN_SEQ_LEN")
    return f"val_loss {loss:.5f} bpb {bpb:.5f}; stride 16: {l16[0]:.5f}; {nbytes} bytes"


def test_lut(tmp, shared):
    shared.need()
    tokenize = ROOT / "tokenize"
    if not (tokenize.is_file() and os.access(tokenize, os.X_OK)):
        raise Skip("./tokenize is not built (make tokenize)")
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=str(shared.tokenizer))
    for args, luts in [(["--model", shared.tokenizer], R.build_sentencepiece_luts(sp, 1024)),
                       (["--byte260"], R.build_byte260_luts(260))]:
        rc, out, err = run([tokenize, "lut", *args])
        expect_ok(rc, out, err, "tokenize lut")
        rows = np.array([[int(v) for v in line.split()] for line in out.splitlines() if line and not line.startswith("#")])
        check(np.array_equal(rows[:, 0], np.arange(len(rows))), "ids")
        got = (rows[:, 1], rows[:, 2].astype(bool), rows[:, 3].astype(bool))
        check(len(rows) == len(luts.base_bytes), f"{len(rows)} rows vs {len(luts.base_bytes)}")
        check(np.array_equal(got[0], luts.base_bytes) and np.array_equal(got[1], luts.has_leading_space)
              and np.array_equal(got[2], luts.is_boundary), f"tables differ for {args}")
    return "sp1024 and byte260"


def test_logits(tmp, shared):
    shared.need()
    ck = tmp / "trained.bin"
    if not ck.exists():
        raise Skip("needs the train test's checkpoint")
    ids = [1, 966, 945, 946, 343, 551, 795, 954, 803, 834, 951, 949, 942, 448, 387, 456, 280, 337]
    rc, out, err = run([PYTHON, REFERENCE, "logits", "--ckpt", ck, "--dtype", "float64", "--tokens", " ".join(map(str, ids)), "--out", tmp / "l.npy"])
    expect_ok(rc, out, err, "logits --out")
    saved = np.load(tmp / "l.npy")
    (tmp / "ids.txt").write_text("\n".join(map(str, ids)))
    rc, out, err = run([PYTHON, REFERENCE, "logits", "--ckpt", ck, "--dtype", "float64", "--tokens-file", tmp / "ids.txt"])
    expect_ok(rc, out, err, "logits (text)")
    printed = np.array([[float(v) for v in line.split()] for line in out.splitlines()])
    model, _, _ = R.load(ck, dtype=torch.float64)
    with torch.no_grad():
        ref = model.forward_logits(torch.tensor([ids]))[0].numpy()
    check(saved.dtype == np.float64 and saved.shape == (len(ids), 1024), f"npy {saved.dtype} {saved.shape}")
    check(np.array_equal(saved, ref) and np.array_equal(printed, ref), f"max diff {np.abs(saved - ref).max()} / {np.abs(printed - ref).max()}")
    check(np.abs(ref).max() <= 30.0, "softcap")
    rc, _, err = run([PYTHON, REFERENCE, "logits", "--ckpt", ck, "--tokens", "1 5000"])
    check(rc == 1 and "outside" in err, f"out-of-range id: rc {rc} {err!r}")
    return f"{len(ids)} x 1024 float64, text and npy identical"


def test_debug_state(tmp, shared):
    shared.need()
    k = 3
    out_path = tmp / "dbg.bin"
    rc, out, err = run([PYTHON, REFERENCE, "debug-state", *TINY_FLAGS, *data_flags(shared), "--train-batch-tokens", 2048,
                        "--random-init", "--k", k, "--out", out_path])
    expect_ok(rc, out, err, "debug-state")
    c = R.read_container(out_path)
    cfg = tiny_cfg(train_batch_tokens=2048, data_path=str(shared.data))
    model = R.init_model(cfg, random_init=True)
    keys = list(model.state_dict())
    check(list(c.tensors)[:len(keys)] == keys, "weights first, in state_dict order")
    names = list(c.tensors)[len(keys):]
    bounds = [f"bound.{n}" for n in keys if n.endswith(".attn.q_gain")]   # q_gain_flash_bound of each attention
    check(names == ["debug.x", "debug.y", "debug.logits", "debug.loss"] + [f"grad.{n}" for n in keys] + bounds + ["debug.losses"],
          f"records {names}")
    check(all(c.tensors[b].shape == c.tensors[b[6:]].shape and np.all(np.isfinite(c.tensors[b])) and np.all(c.tensors[b] > 0)
              for b in bounds), "bound.*.q_gain: one positive finite bound per head")
    for n in keys:
        check(np.array_equal(c.tensors[n], model.state_dict()[n].numpy()), f"weight {n}")
    x, y = R.TrainLoader(str(shared.data / "fineweb_train_*.bin"), 2048, 64).next_batch()
    check(c.tensors["debug.x"].dtype == np.dtype("<i4") and np.array_equal(c.tensors["debug.x"], x.numpy())
          and np.array_equal(c.tensors["debug.y"], y.numpy()), "debug.x / debug.y")
    check(c.tensors["debug.logits"].shape == (32, 64, 1024), f"logits shape {c.tensors['debug.logits'].shape}")
    logits = torch.from_numpy(c.tensors["debug.logits"].astype(np.float64))
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 1024), y.reshape(-1)).item()
    check(abs(loss - float(c.tensors["debug.loss"][0])) < 1e-5, f"loss from debug.logits {loss} vs debug.loss {c.tensors['debug.loss']}")
    losses = c.tensors["debug.losses"]
    check(losses.shape == (k,) and losses[0] == c.tensors["debug.loss"][0], f"debug.losses {losses}")
    trainer = R.Trainer(model, cfg)
    trainer.loss_and_grad(x, y)
    for n, p in model.named_parameters():
        got = c.tensors[f"grad.{n}"]
        check(got.shape == tuple(p.shape) and np.allclose(got, p.grad.numpy(), rtol=1e-5, atol=1e-9), f"grad.{n}")
    loader = R.TrainLoader(str(shared.data / "fineweb_train_*.bin"), 2048, 64)
    mine = [trainer.step(*loader.next_batch(), s, 1.0) for s in range(k)]
    check(np.allclose(mine, losses, rtol=1e-6), f"losses {mine} vs {losses.tolist()}")
    check(losses[-1] < losses[0], f"losses should fall: {losses.tolist()}")
    return f"losses {[round(float(v), 4) for v in losses]}"


def test_fast(tmp):
    if not (hasattr(torch.nn.functional, "rms_norm") and hasattr(torch.nn.functional, "scaled_dot_product_attention")):
        raise Skip(f"PyTorch {torch.__version__} has no F.rms_norm / scaled_dot_product_attention")
    model = R.init_model(tiny_cfg(), random_init=True).double()
    x = torch.randint(0, 1024, (2, 64), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        slow = model.forward_logits(x)
        R.FAST_KERNELS["on"] = True
        try:
            fast = model.forward_logits(x)
        finally:
            R.FAST_KERNELS["on"] = False
    diff = (slow - fast).abs().max().item()
    check(diff < 1e-10, f"--fast differs by {diff}")
    return f"max diff {diff:.1e}"


def test_cuda(tmp, shared):
    if not torch.cuda.is_available():
        raise Skip("no CUDA device: --device cuda / --amp not exercised")
    shared.need()
    cmd = [PYTHON, REFERENCE, "train", *TINY_FLAGS, *data_flags(shared), "--iterations", 10, "--train-batch-tokens", 4096,
           "--max-wallclock-seconds", 0, "--max-tokens", 4096, "--device", "cuda", "--amp", "--val-loss-every", 0]
    rc, out, err = run(cmd)
    expect_ok(rc, out, err, "train --device cuda --amp")
    return out.strip().splitlines()[-1]


# --------------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description="tests of test/reference.py and dev/convert_pt.py")
    ap.add_argument("--shared", help="folder with tokenizers/ and data/sample_sp1024/ (default ../shared, then data/)")
    ap.add_argument("--keep-tmp", action="store_true", help="keep the temporary folder")
    args = ap.parse_args()
    shared = Shared(args.shared)
    tmp = Path(tempfile.mkdtemp(prefix="test_reference."))
    t0 = time.time()
    res = Results()
    plain = [("cli", test_cli), ("keys", test_keys), ("init", test_init), ("container", test_container),
             ("convert", test_convert), ("rope", test_rope), ("forward", test_forward), ("precision", test_precision), ("gradients", test_gradients),
             ("newton-schulz", test_newton_schulz), ("optimizer", test_optimizer), ("windows", test_windows)]
    data = [("loader", test_loader), ("train", test_train), ("eval", test_eval), ("lut", test_lut),
            ("logits", test_logits), ("debug-state", test_debug_state)]
    try:
        for name, fn in plain:
            res.run(name, fn, tmp)
        for name, fn in data:
            res.run(name, fn, tmp, shared)
        res.run("fast", test_fast, tmp)
        res.run("cuda", test_cuda, tmp, shared)
    finally:
        if args.keep_tmp:
            print(f"temporary files kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"time {time.time() - t0:.1f}s" + (f", {res.skipped} skipped" if res.skipped else ""))
    print(f"{res.passed} passed, {res.failed} failed")
    return 1 if res.failed else 0


if __name__ == "__main__":
    sys.exit(main())
