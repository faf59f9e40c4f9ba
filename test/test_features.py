#!/usr/bin/python3
"""Tests of test/reference.py's record-stack features against float64 formulas written here from the spec
(docs in reference.py sections 1, 3, 5, 7 and 8), never by calling reference.py's own helpers for the
expected value:

  hash         BigramHash rows: position 0, large ids (products past 2^32), several V_b, int64 math
  forward      the whole model vs np_forward (numpy, float64, loops over heads and positions) for each feature
               alone and all together: MLP_HIDDEN, LeakyReLU(0.5)^2, BigramHash, SmearGate (BOS masking), XSA,
               partial RoPE, LN scale, parallel residual lanes (merge and skip rules; 04-29's and 03-31's forms,
               PARALLEL_FROM counting layers or positions), gated skips, attention output gate (and its scale),
               depth-recurrence schedules (default and loop), ValueEmbedding (schedule positions; with and without its
               projection), attention within documents (cut every TRAIN_SEQ_LEN;
               and a batch's rows as one stream, doc_rows, against the formula on their concatenation); ROPE_DIMS =
               head_dim is the baseline bit for bit; XSA output orthogonal to the own value vector
  precision    float32 vs float64 with every feature on
  gradients    autograd vs central differences on every feature tensor
  table        parameter_table (golf_infer's order) has the state_dict's names and shapes; control tensors
  optimizer    Muon with MuonEq-R, Polar Express and decoupled WD vs a float64 Newton-Schulz written here;
               AdamW (ADAM_WD) vs a float64 Adam; the optimizer split of the feature tensors; GRAD_CLIP_NORM
  schedule     lr_mul with WARMDOWN_FRAC (steps and wallclock) and MIN_LR_FRAC; LOOP_START_FRAC switching
  presets      precedence defaults < preset < environment < flag; every preset valid
  validation   bad settings refused with a message naming the variable
  checkpoint   version 5 header words parsed by hand; round trip; version 1 (baseline), 3 and 4 files readable;
               damaged feature words, missing and unexpected feature tensors refused
  ttt          score-first TTT: TTT_LR=0 equals plain eval; chunk k scored by weights trained on chunks < k
               only (a direct loop here)
  cli          init / train (every feature, a few steps, finite falling loss, loop switch logged) / eval
               (stride, TTT) / logits (vs np_forward) / config on the shared shards (skipped without them)

Usage: /usr/bin/python3 test/test_features.py [--shared DIR] [--keep]
Prints PASS/FAIL/SKIP per check and "N passed, M failed, K skipped"; exit status 1 on any failure.
"""

import argparse
import math
import os
import re
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "test"))
import reference as R  # noqa: E402
from harness import Results  # noqa: E402

REFERENCE = ROOT / "test" / "reference.py"

# Tolerances. float64 model vs float64 numpy formula: the same operations summed in other orders; unit
# roundoff 1.1e-16, a logit is the end of a few hundred dependent roundings over <= 6 block runs of
# O(1) activations, so differences stay below 1e-13 (seen: ~1e-15). A formula error (a wrong RoPE pair, a
# missing BOS mask, a skip in the wrong lane) moves logits by >= 1e-3. Hence atol 1e-10 + rtol 1e-10 |ref|.
F64_ATOL, F64_RTOL = 1e-10, 1e-10
# float32 vs float64, as test_reference.py's precision test: unit roundoff 6e-8 grows to ~1e-6 of the logit
# scale over a few layers; 2e-5 * max(1, |logits|) leaves 20x headroom.
F32_RTOL_OF_SCALE = 2e-5
# Optimizer formulas in float64: a Newton-Schulz step multiplies matrices of norm <= ~1.2; 5-7 steps and
# the update keep errors near 1e-15; bound 1e-12 (a wrong coefficient or a missed row norm moves >= 1e-3).
OPT_ATOL = 1e-12

# The Polar Express coefficients, as listed in ../shared/RECORDS.md (Formulas).
POLAR_EXPRESS = [(8.1566, -22.4833, 15.8788), (4.0429, -2.8089, 0.5000), (3.8917, -2.7725, 0.5061),
                 (3.2858, -2.3681, 0.4645), (2.3465, -1.7098, 0.4232)]
BASE_NS = (3.4445, -4.7750, 2.0315)

TINY = dict(vocab_size=64, num_layers=4, model_dim=32, num_heads=4, num_kv_heads=2, train_seq_len=20,
            logit_softcap=5.0, rope_base=100.0)
FEATURE_TENSORS = ("bigram.scale", "smear.", "gate_w", "skip_gates", "lane_rho", "lane_mix", "parallel_resid", "parallel_post", "ve_")
ALL_ON = dict(mlp_hidden=40, mlp_leaky_slope=0.5, bigram_vocab_size=7, bigram_dim=5, smear_gate=1, xsa_last_n=2,
              rope_dims=4, ln_scale=1, parallel_from=2, skip_gates=1, attn_out_gate=1, ve_enabled=1, ve_dim=6, ve_layers="1,2")
# a loop schedule that goes sequential -> parallel -> sequential -> parallel in the encoder, pushes skips
# while lanes are live and adds skips to both lanes in the decoder (PARALLEL_FROM = 2, 4 layers)
LANE_LOOP = dict(loop_encoder="0,2,1,3", loop_decoder="2,0,3,1")


def close(a, b, atol, rtol):
    """max |a - b| - (atol + rtol |b|) <= 0 elementwise; returns (ok, max |a - b|)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    diff = np.abs(a - b)
    return bool(a.shape == b.shape and np.all(diff <= atol + rtol * np.abs(b))), float(diff.max()) if diff.size else 0.0


def cfg_of(**kw):
    return R.default_config(**{**TINY, **kw})


def feature_model(cfg, seed=0):
    """The seeded random init (every zero-init matrix random) with the features' control tensors moved far
    from their init values (N(0, 0.5^2) added), so that each feature changes the output."""
    model = R.init_model(R.replace(cfg, seed=1000 + seed), random_init=True).double()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if any(f in name for f in FEATURE_TENSORS):
                p.add_(0.5 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return model


def token_ids(seed, T, vocab=64):
    ids = torch.randint(0, vocab, (T,), generator=torch.Generator().manual_seed(seed))
    ids[0], ids[5], ids[6], ids[13] = 1, 1, 1, 1   # BOS at the start and inside, twice in a row
    return ids.tolist()


# --------------------------------------------------------------------------------------------------
# the float64 formula of the model, from the spec


def np_forward(state, cfg, ids, looped):
    w = {k: v.detach().double().numpy() for k, v in state.items()}
    T, d, H, Hkv, L = len(ids), cfg.model_dim, cfg.num_heads, cfg.num_kv_heads, cfg.num_layers
    hd = d // H
    R_ = cfg.rope_dims or hd
    half = R_ // 2
    group = H // Hkv

    def rms(x):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + 2.0 ** -23)

    def sigmoid(z):
        return 1.0 / (1.0 + np.exp(-z))

    # DOC_ATTENTION: a document starts at token 0 and at each BOS, cut every train_seq_len tokens from its start; a
    # token sees the keys of its segment up to itself, at RoPE positions counted from the segment's start
    first = np.zeros(T, dtype=np.int64)
    if cfg.doc_attention:
        for t in range(T):
            doc = t if t == 0 or ids[t] == 1 else doc
            first[t] = doc + (t - doc) // cfg.train_seq_len * cfg.train_seq_len
    angle = (np.arange(T) - first)[:, None] * np.array([cfg.rope_base ** (-2.0 * i / R_) for i in range(half)])[None, :]
    cos, sin = np.cos(angle), np.sin(angle)

    def rope(v):   # [T, hd]: pairs (i, i + R/2) for i < R/2; dims R.. unchanged
        out = v.copy()
        a, b = v[:, :half], v[:, half:R_]
        out[:, :half] = a * cos + b * sin
        out[:, half:R_] = b * cos - a * sin
        return out

    # embedding stage
    e = w["tok_emb.weight"][ids].copy()
    if cfg.bigram_vocab_size:
        vb = cfg.bigram_vocab_size
        rows = [vb - 1] + [((36313 * ids[i]) ^ (27191 * ids[i - 1])) % (vb - 1) for i in range(1, T)]
        e += w["bigram.scale"][0] * (w["bigram.embed.weight"][rows] @ w["bigram.proj.weight"].T)
    if cfg.smear_gate:   # on the raw embedding, before the norm
        smeared = e.copy()
        for t in range(1, T):
            if ids[t] != 1:
                g = sigmoid(e[t, :12] @ w["smear.gate_w"])
                smeared[t] = e[t] + w["smear.lam"][0] * g * e[t - 1]
        e = smeared
    x = rms(e)
    x0 = x
    # ValueEmbedding: base = scale * proj(ve_embed[ids]) (no proj at the kv width); the block at schedule position p in
    # VE_LAYERS adds ve_layer_scales[j] * base to its v (j: p's index in the list)
    ve_pos = [int(v) for v in cfg.ve_layers.split(",")] if cfg.ve_enabled and cfg.ve_layers.strip() else []
    if ve_pos:
        rows = w["ve_shared.embed.weight"][ids]
        ve_base = w["ve_shared.scale"][0] * (rows @ w["ve_shared.proj.weight"].T if "ve_shared.proj.weight" in w else rows)
    at = {"pos": -1}   # the schedule position running

    def attention(l, a_in):
        p = f"blocks.{l}."
        q, k, v = a_in @ w[p + "attn.c_q.weight"].T, a_in @ w[p + "attn.c_k.weight"].T, a_in @ w[p + "attn.c_v.weight"].T
        if at["pos"] in ve_pos:
            v = v + w["ve_layer_scales"][ve_pos.index(at["pos"])] * ve_base
        y = np.zeros((T, d))
        for h in range(H):
            g = h // group
            qh = rope(rms(q[:, h * hd:(h + 1) * hd])) * w[p + "attn.q_gain"][h]
            kh = rope(rms(k[:, g * hd:(g + 1) * hd]))
            vg = v[:, g * hd:(g + 1) * hd]
            scores = qh @ kh.T / math.sqrt(hd)
            scores[np.triu_indices(T, 1)] = -np.inf
            scores[np.arange(T)[None, :] < first[:, None]] = -np.inf
            probs = np.exp(scores - scores.max(1, keepdims=True))
            yh = (probs / probs.sum(1, keepdims=True)) @ vg
            if l >= L - cfg.xsa_last_n:
                vhat = vg / np.sqrt((vg * vg).sum(1, keepdims=True))
                yh = yh - (yh * vhat).sum(1, keepdims=True) * vhat
            if cfg.attn_out_gate:
                yh = yh * sigmoid(cfg.attn_out_gate_scale * (a_in[:, :12] @ w[p + "attn.gate_w"][h]))[:, None]
            y[:, h * hd:(h + 1) * hd] = yh
        return w[p + "attn_scale"] * (y @ w[p + "attn.proj.weight"].T)

    def mlp(l, m_in):
        p = f"blocks.{l}."
        h = m_in @ w[p + "mlp.fc.weight"].T
        h = np.where(h > 0, h, cfg.mlp_leaky_slope * h) ** 2
        return w[p + "mlp_scale"] * (h @ w[p + "mlp.proj.weight"].T)

    def scale(l):
        return 1.0 / math.sqrt(l + 1) if cfg.ln_scale else 1.0

    def block(l, par, x, lanes):
        """-> (x, lanes) after physical layer l (par: at a parallel position)"""
        p = f"blocks.{l}."
        rm = w[p + "resid_mix"]
        if par and cfg.parallel_form != "0429":   # 03-31: attention on lane 0's mix into both lanes, then the MLP on lane 1's
            lane0, lane1 = lanes if lanes is not None else (x, x)
            r, po = w[p + "parallel_resid"], w[p + "parallel_post"]
            a = attention(l, rms(rm[0] * lane0 + rm[1] * x0) * scale(l))
            lane0, lane1 = r[0] * lane0 + po[0, 0] * a, r[0] * lane1 + po[0, 1] * a
            m = mlp(l, rms(rm[0] * lane1 + rm[1] * x0) * scale(l))
            return None, (r[1] * lane0 + po[1, 0] * m, r[1] * lane1 + po[1, 1] * m)
        if par:
            lane0, lane1 = lanes if lanes is not None else (x, x)
            a = attention(l, rms(rm[0] * lane0 + rm[1] * x0) * scale(l))   # lane 0 itself goes on unmixed
            m = mlp(l, rms(lane1) * scale(l))
            rho, pm = w[p + "lane_rho"], w[p + "lane_mix"]
            return None, (rho[0] * lane0 + pm[0, 0] * a + pm[0, 1] * m, rho[1] * lane1 + pm[1, 0] * a + pm[1, 1] * m)
        if lanes is not None:
            x = (lanes[0] + lanes[1]) / 2
        x = rm[0] * x + rm[1] * x0
        x = x + attention(l, rms(x) * scale(l))
        return x + mlp(l, rms(x) * scale(l)), None

    if looped:
        enc = [int(v) for v in cfg.loop_encoder.split(",")]
        dec = [int(v) for v in cfg.loop_decoder.split(",")]
    else:
        enc, dec = list(range(L // 2)), list(range(L // 2, L))
    ns = min(len(enc), len(dec))
    # parallel positions: physical layer >= PARALLEL_FROM, or (0331-virtual) position >= PARALLEL_FROM
    pos_of = (lambda pos, l: pos) if cfg.parallel_form == "0331-virtual" else (lambda pos, l: l)
    par = [cfg.parallel_from >= 1 and pos_of(pos, l) >= cfg.parallel_from for pos, l in enumerate(enc + dec)]
    two = cfg.parallel_form != "0429"   # 03-31: skips hold both lanes and go into both

    def skip_into(i, cur, sk):
        ws = w["skip_weights"][i] * sk
        if cfg.skip_gates:   # lerp(ws, cur, g)
            g = sigmoid(w["skip_gates"][i])
            return g * cur + (1 - g) * ws
        return cur + ws

    lanes, skips = None, []
    for e_pos, l in enumerate(enc):
        at["pos"] = e_pos
        x, lanes = block(l, par[e_pos], x, lanes)
        if e_pos >= len(enc) - ns:
            skips.append(x if lanes is None else lanes if two else (lanes[0] + lanes[1]) / 2)
    for i, l in enumerate(dec):
        p_i = par[len(enc) + i]
        if i < ns:   # lanes split or merged first, then the skip into lane 0 only (03-31: into each lane its own)
            if p_i and lanes is None:
                x, lanes = None, (x, x)
            elif not p_i and lanes is not None:
                x, lanes = (lanes[0] + lanes[1]) / 2, None
            sk = skips[ns - 1 - i]
            if lanes is None:
                x = skip_into(i, x, sk)
            elif two:
                sk = sk if isinstance(sk, tuple) else (sk, sk)
                lanes = (skip_into(i, lanes[0], sk[0]), skip_into(i, lanes[1], sk[1]))
            else:
                lanes = (skip_into(i, lanes[0], sk), lanes[1])
        at["pos"] = len(enc) + i
        x, lanes = block(l, p_i, x, lanes)
    if lanes is not None:
        x = (lanes[0] + lanes[1]) / 2
    head = w["tok_emb.weight"] if cfg.tie_embeddings else w["lm_head.weight"]
    return cfg.logit_softcap * np.tanh((rms(x) @ head.T) / cfg.logit_softcap)


def model_logits(model, ids):
    with torch.no_grad():
        return model.forward_logits(torch.tensor([ids]))[0].numpy()


# --------------------------------------------------------------------------------------------------
# checks


def check_hash(res):
    bad = []
    rng = np.random.default_rng(3)
    for vb in (2, 3, 7, 2048, 10240):
        for ids in ([5], [0, 0, 1], rng.integers(0, 1 << 20, 50).tolist(), [1048575, 1048574, 1, 1048575, 65535]):
            want = [vb - 1] + [((36313 * ids[i]) ^ (27191 * ids[i - 1])) % (vb - 1) for i in range(1, len(ids))]
            got = R.bigram_hash(torch.tensor([ids]), vb)[0].tolist()
            if got != want:
                bad.append(f"V_b {vb} ids {ids[:4]}: {got[:4]} vs {want[:4]}")
    big = R.bigram_hash(torch.tensor([[1048575, 1048575]]), 10240)[0, 1].item()
    res.check("hash: BigramHash rows equal Python integer math (position 0, V_b 2..10240, ids up to 2^20)", not bad,
              "; ".join(bad[:3]) or f"(36313*1048575 xor 27191*1048575) mod 10239 = {big}")


def check_forward(res):
    cases = {"baseline shape": {}, "MLP_HIDDEN 40": dict(mlp_hidden=40), "LeakyReLU(0.5)^2": dict(mlp_leaky_slope=0.5),
             "BigramHash": dict(bigram_vocab_size=7, bigram_dim=5), "SmearGate": dict(smear_gate=1),
             "XSA last 2": dict(xsa_last_n=2), "XSA all (GQA 4/1)": dict(xsa_last_n=9, num_kv_heads=1),
             "partial RoPE 4/8": dict(rope_dims=4), "partial RoPE 2/8": dict(rope_dims=2), "LN scale": dict(ln_scale=1),
             "parallel from 2": dict(parallel_from=2), "parallel from 1, 3 layers": dict(parallel_from=1, num_layers=3),
             "gated skips": dict(skip_gates=1), "attention output gate": dict(attn_out_gate=1),
             "attention output gate, scale 0.5": dict(attn_out_gate=1, attn_out_gate_scale=0.5),
             "03-31's lanes from 2": dict(parallel_from=2, parallel_form="0331"),
             "03-31's lanes from 1, 3 layers, gated skips": dict(parallel_from=1, num_layers=3, parallel_form="0331", skip_gates=1),
             "documents (cut every 6)": dict(doc_attention=1, train_seq_len=6),
             "ValueEmbedding 6 at positions 1, 3": dict(ve_enabled=1, ve_dim=6, ve_layers="1,3"),
             "ValueEmbedding at the kv width (no projection) at position 0": dict(ve_enabled=1, ve_dim=16, ve_layers="0"),
             "untied, everything": dict(ALL_ON, tie_embeddings=0), "everything and documents": dict(ALL_ON, doc_attention=1)}
    loops = {"loop 0,1,2,1 | 2,3,0": dict(loop_encoder="0,1,2,1", loop_decoder="2,3,0"),
             "loop 0,1,2,1 | 2,3,0, ValueEmbedding at positions 3, 6 (layer 1's second pass, not its first)":
                 dict(loop_encoder="0,1,2,1", loop_decoder="2,3,0", ve_enabled=1, ve_dim=6, ve_layers="3,6"),
             "loop 0,1,2,3,2 | 3,1 (first positions push nothing)": dict(loop_encoder="0,1,2,3,2", loop_decoder="3,1"),
             "loop with lanes": dict(LANE_LOOP, parallel_from=2),
             "loop with lanes, everything": dict(ALL_ON, **LANE_LOOP),
             "loop, 3 layers, lanes from 1": dict(ALL_ON, num_layers=3, parallel_from=1, loop_encoder="0,1,2,1",
                                                  loop_decoder="1,2,0,2,1"),
             # lanes from position 2: layers 1, 3, 2, 0, 3, 1 (0 and 1 also sequential before), both lanes' skips
             "loop with 03-31's lanes from position 2, everything": dict(ALL_ON, **LANE_LOOP, parallel_form="0331-virtual"),
             "loop with 03-31's lanes from layer 2": dict(ALL_ON, parallel_form="0331", loop_encoder="0,1,2,3,2",
                                                          loop_decoder="3,2,3")}
    for i, (label, kw) in enumerate(list(cases.items()) + list(loops.items())):
        cfg = cfg_of(**kw)
        model = feature_model(cfg, seed=i)
        ids = token_ids(i, 20)
        schedules = [True, False] if cfg.loop_encoder else [False]
        for looped in schedules:
            if cfg.loop_encoder:
                model.set_schedule(looped)
            ok, diff = close(model_logits(model, ids), np_forward(model.state_dict(), cfg, ids, looped), F64_ATOL, F64_RTOL)
            res.check(f"forward {label}{' (loop schedule)' if looped else ' (default schedule)' if cfg.loop_encoder else ''}"
                      f" vs the float64 formula", ok, f"max diff {diff:.1e}")
    # documents across rows: doc_rows = 2 reads two rows as one stream (training's micro-batch); without BigramHash and
    # SmearGate (which start at each row) that is the formula on the rows' concatenation
    cfg = cfg_of(doc_attention=1, train_seq_len=6, rope_dims=4, parallel_from=2)
    model = feature_model(cfg, seed=31)
    ids = token_ids(31, 20)[:10] + token_ids(32, 20)[:10]
    with torch.no_grad():
        two = model.forward_logits(torch.tensor(ids).view(2, 10), doc_rows=2).reshape(20, -1).numpy()
    ok, diff = close(two, np_forward(model.state_dict(), cfg, ids, False), F64_ATOL, F64_RTOL)
    res.check("forward documents: two rows as one stream (doc_rows 2) vs the formula on their concatenation", ok, f"max diff {diff:.1e}")
    # ROPE_DIMS = head_dim is the baseline bit for bit; a feature's zero-init tensors leave the baseline output
    cfg = cfg_of()
    base = feature_model(cfg)
    full = R.GPT.from_config(R.replace(cfg, rope_dims=cfg.head_dim)).double()
    full.load_state_dict(base.state_dict())
    ids = token_ids(99, 20)
    res.check("forward: ROPE_DIMS = head_dim gives the baseline's logits bit for bit",
              np.array_equal(model_logits(full, ids), model_logits(base, ids)))
    gated = R.init_model(cfg_of(skip_gates=1, attn_out_gate=1, smear_gate=1, bigram_vocab_size=5), random_init=False).double()
    plain = R.init_model(cfg_of(), random_init=False).double()
    sd = plain.state_dict()
    gated_sd = gated.state_dict()
    same_init = all(torch.equal(sd[k], gated_sd[k]) for k in sd)
    res.check("init: the features' tensors come after the baseline's, which keep the baseline's seeded values", same_init)
    # SmearGate at BOS and position 0 leaves rms_norm(e); XSA output is orthogonal to the own value vector
    smear = feature_model(cfg_of(smear_gate=1), seed=5)
    ids = token_ids(5, 20)
    with torch.no_grad():
        x0 = smear.embed(torch.tensor([ids]))[0].numpy()
        e = smear.tok_emb.weight.numpy()[ids]
    plain_x = e / np.sqrt((e * e).mean(-1, keepdims=True) + 2.0 ** -23)
    bos = [t for t in range(20) if ids[t] == 1]
    moved = [t for t in range(1, 20) if ids[t] != 1]
    res.check("SmearGate: positions 0 and BOS unchanged, every other position moved",
              close(x0[bos], plain_x[bos], F64_ATOL, F64_RTOL)[0] and all(np.abs(x0[t] - plain_x[t]).max() > 1e-6 for t in moved),
              f"BOS at {bos}")
    attn = R.CausalSelfAttention(32, 4, 2, 100.0, 1.5, rope_dims=4, xsa=True).double()
    a_in = torch.randn(1, 12, 32, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    captured = {}
    attn.proj.register_forward_hook(lambda m, i, o: captured.__setitem__("y", i[0]))
    with torch.no_grad():
        attn(a_in)
    with torch.no_grad():
        v = (a_in[0] @ attn.c_v.weight.T).reshape(12, 2, 8).numpy()
    y = captured["y"][0].reshape(12, 4, 8).numpy()
    dots = max(abs(float(y[t, h] @ v[t, h // 2])) for t in range(12) for h in range(4))
    res.check("XSA: every head's output is orthogonal to its token's value vector", dots < 1e-12, f"max |y.v| {dots:.1e}")


def check_precision(res):
    worst = 0.0
    ok = True
    for kw in (ALL_ON, dict(ALL_ON, **LANE_LOOP), dict(ALL_ON, **LANE_LOOP, parallel_form="0331-virtual")):
        cfg = cfg_of(**kw)
        m64 = feature_model(cfg)
        m32 = R.GPT.from_config(cfg)
        m32.load_state_dict({k: v.float() for k, v in m64.state_dict().items()})
        ids = token_ids(1, 20)
        l64, l32 = model_logits(m64, ids), model_logits(m32, ids)
        diff = np.abs(l32.astype(np.float64) - l64).max()
        scale = max(1.0, np.abs(l64).max())
        ok &= diff <= F32_RTOL_OF_SCALE * scale
        worst = max(worst, diff / scale)
    res.check("precision: float32 vs float64 with every feature on, default and loop schedules, both lane forms", ok,
              f"max {worst:.1e} of the logit scale")


def check_gradients(res):
    """Central differences, h = 1e-6 in float64: truncation ~1e-12, rounding ~1e-16 |loss| / h ~ 1e-9,
    so |fd - grad| <= 1e-8 + 1e-6 |grad| (as test_reference.py)."""
    bad, checked = [], 0
    for form in ("0429", "0331-virtual"):
        cfg = cfg_of(**ALL_ON, **LANE_LOOP, tie_embeddings=0, train_seq_len=12, parallel_form=form, attn_out_gate_scale=0.5)
        b, c = gradient_fd(cfg)
        bad, checked = bad + b, checked + c
    res.check("gradients: autograd vs central differences on every feature tensor (04-29's and 03-31's lanes)", not bad and checked > 40,
              "; ".join(bad[:3]) or f"{checked} entries")


def gradient_fd(cfg):
    """(mismatches, entries checked) of the feature tensors' autograd against central differences"""
    model = feature_model(cfg, seed=4)
    g = torch.Generator().manual_seed(6)
    x, y = torch.randint(0, 64, (2, 12), generator=g), torch.randint(0, 64, (2, 12), generator=g)
    x[:, 3] = 1
    model(x, y).backward()
    bad, checked = [], 0
    for name, p in model.named_parameters():
        if not (any(f in name for f in FEATURE_TENSORS) or name.startswith("bigram.") or name == "skip_weights"):
            continue
        grad = p.grad.reshape(-1)
        for i in {int(grad.abs().argmax()), int(torch.randint(0, grad.numel(), (1,), generator=g))}:
            flat = p.data.view(-1)
            old = flat[i].item()
            with torch.no_grad():
                flat[i] = old + 1e-6
                plus = model(x, y).item()
                flat[i] = old - 1e-6
                minus = model(x, y).item()
                flat[i] = old
            fd = (plus - minus) / 2e-6
            checked += 1
            if not abs(fd - grad[i].item()) <= 1e-8 + 1e-6 * abs(grad[i].item()):
                bad.append(f"{cfg.parallel_form} {name}[{i}] autograd {grad[i].item():.6e} fd {fd:.6e}")
    return bad, checked


def check_table(res):
    for label, kw in (("everything", dict(ALL_ON, **LANE_LOOP, tie_embeddings=0)), ("baseline", {}),
                      ("03-31's lanes from position 2", dict(ALL_ON, **LANE_LOOP, parallel_form="0331-virtual"))):
        cfg = cfg_of(**kw)
        table = R.parameter_table(cfg)
        sd = R.GPT.from_config(cfg).state_dict()
        same = sorted((n, s) for n, s, _ in table) == sorted((k, tuple(v.shape)) for k, v in sd.items())
        res.check(f"table ({label}): parameter_table has the state_dict's names and shapes", same and len(table) == len(sd))
    table = R.parameter_table(cfg_of(**ALL_ON, **LANE_LOOP, tie_embeddings=0))
    names = [n for n, _, _ in table]
    want_head = ["tok_emb.weight", "bigram.embed.weight", "bigram.proj.weight", "bigram.scale", "smear.gate_w", "smear.lam",
                 "ve_shared.embed.weight", "ve_shared.proj.weight", "ve_shared.scale", "ve_layer_scales", "blocks.0.attn.c_q.weight"]
    want_l3 = [f"blocks.3.{n}" for n in ("attn.c_q.weight", "attn.c_k.weight", "attn.c_v.weight", "attn.proj.weight",
                                          "mlp.fc.weight", "mlp.proj.weight", "attn.q_gain", "attn_scale", "mlp_scale",
                                          "resid_mix", "attn.gate_w", "lane_rho", "lane_mix")]
    i3 = names.index("blocks.3.attn.c_q.weight")
    res.check("table: golf_infer's order (embedding stage, per layer, skips, head)",
              names[:11] == want_head and names[i3:i3 + 13] == want_l3 and names[-3:] == ["skip_weights", "skip_gates", "lm_head.weight"]
              and "blocks.1.lane_rho" not in names, f"{names[:11]} ... {names[-3:]}")
    shapes = dict((n, s) for n, s, _ in table)
    res.check("table: skip rows S = max over both schedules", shapes["skip_weights"] == (4, 32), str(shapes["skip_weights"]))
    # 03-31's lanes counting positions: layers at positions >= 2 of either schedule (the loop's 0,2,1,3 | 2,0,3,1 puts
    # layers 1 and 0 there too), their lambdas after resid_mix and attn.gate_w
    names = [n for n, _, _ in R.parameter_table(cfg_of(**ALL_ON, **LANE_LOOP, parallel_form="0331-virtual"))]
    lanes = sorted(n for n in names if "parallel_" in n)
    i0 = names.index("blocks.0.attn.gate_w")
    res.check("table: 03-31's parallel_resid, parallel_post for every layer parallel at a position >= 2 of either schedule",
              lanes == [f"blocks.{l}.parallel_{k}" for l in range(4) for k in ("post", "resid")]
              and names[i0 + 1:i0 + 3] == ["blocks.0.parallel_resid", "blocks.0.parallel_post"], str(lanes))


def np_newton_schulz(u, coeffs):
    x = u / (np.linalg.norm(u) + 1e-7)
    tall = x.shape[0] > x.shape[1]
    if tall:
        x = x.T
    for a, b, c in coeffs:
        A = x @ x.T
        x = a * x + (b * A + c * A @ A) @ x
    return x.T if tall else x


def check_optimizer(res):
    g = torch.Generator().manual_seed(2)
    for steps in (5, 7):
        coeffs = [POLAR_EXPRESS[min(k, 4)] for k in range(steps)]
        u = torch.randn(12, 20, generator=g, dtype=torch.float64)
        ok, diff = close(R.zeropower_via_newtonschulz5(u, steps, torch.float64, polar_express=True).numpy(),
                         np_newton_schulz(u.numpy(), coeffs), OPT_ATOL, 0)
        res.check(f"optimizer: Polar Express {steps} steps (the last triple reused past 5) vs the formula", ok, f"max diff {diff:.1e}")
    # Muon with EqR, Polar Express and decoupled WD, two steps, one wide and one tall matrix with a zero row
    lr, mom, wd = 0.03, 0.9, 0.2
    for polar in (False, True):
        for shape in ((8, 20), (20, 8)):
            p = torch.nn.Parameter(torch.randn(*shape, generator=g, dtype=torch.float64))
            p0 = p.detach().numpy().copy()
            opt = R.Muon([p], lr=lr, momentum=mom, backend_steps=5, ns_dtype=torch.float64, weight_decay=wd,
                         row_normalize=True, polar_express=polar)
            grads = [torch.randn(*shape, generator=g, dtype=torch.float64) for _ in range(2)]
            grads[0][3] = 0.0
            grads[1][3] = 0.0
            buf, want = np.zeros(shape), p0
            for gr in grads:
                p.grad = gr.clone()
                opt.step()
                buf = mom * buf + gr.numpy()
                u = gr.numpy() + mom * buf
                norms = np.sqrt((u * u).sum(1, keepdims=True))
                u = np.divide(u, norms, out=np.zeros_like(u), where=norms > 0)
                ns = np_newton_schulz(u, POLAR_EXPRESS if polar else [BASE_NS] * 5)
                want = want * (1 - lr * wd) - lr * math.sqrt(max(1, shape[0] / shape[1])) * ns
            ok, diff = close(p.detach().numpy(), want, OPT_ATOL, 0)
            res.check(f"optimizer: Muon {shape} MuonEq-R + decoupled WD{' + Polar Express' if polar else ''}, 2 steps "
                      f"(a zero row) vs the formula", ok, f"max diff {diff:.1e}")
    # AdamW: decoupled decay then the Adam update, three steps
    p = torch.nn.Parameter(torch.randn(6, 5, generator=g, dtype=torch.float64))
    cfg = cfg_of(adam_wd=0.3)
    b1, b2, eps, lr = cfg.beta1, cfg.beta2, cfg.adam_eps, 0.05
    model = R.GPT.from_config(cfg_of()).double()
    opts, _ = R.build_optimizers(model, cfg)
    adam_cls = type(opts[0])
    opt = adam_cls([p], lr=lr, betas=(b1, b2), eps=eps, weight_decay=cfg.adam_wd)
    m = v = np.zeros((6, 5))
    want = p.detach().numpy().copy()
    for t in range(1, 4):
        gr = torch.randn(6, 5, generator=g, dtype=torch.float64)
        p.grad = gr.clone()
        opt.step()
        gn = gr.numpy()
        m, v = b1 * m + (1 - b1) * gn, b2 * v + (1 - b2) * gn * gn
        want = want * (1 - lr * cfg.adam_wd) - lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
    ok, diff = close(p.detach().numpy(), want, OPT_ATOL, 0)
    res.check("optimizer: ADAM_WD is AdamW (decoupled decay, then Adam) on every Adam group, vs the formula",
              ok and all(o.defaults.get("weight_decay") == 0.3 for o in opts if o is not _), f"max diff {diff:.1e}")
    # the split of the feature tensors
    cfg = cfg_of(**ALL_ON, **LANE_LOOP, tie_embeddings=0, muon_wd=0.1, muon_eq_r=1, muon_polar_express=1)
    model = R.GPT.from_config(cfg)
    opts, muon = R.build_optimizers(model, cfg)
    names = {id(p): n for n, p in model.named_parameters()}
    groups = [sorted(names[id(p)] for p in o.param_groups[0]["params"]) for o in opts]
    everything = sorted(n for g_ in groups for n in g_)
    tok, head, mu, scal = groups
    control_like = [n for n in scal if not n.endswith(("attn_scale", "mlp_scale", "resid_mix", "q_gain", "skip_weights"))]
    ok = (everything == sorted(names.values()) and tok == ["bigram.embed.weight", "tok_emb.weight", "ve_shared.embed.weight"]
          and head == ["lm_head.weight"] and "bigram.proj.weight" in mu and all(n.endswith(".weight") for n in mu)
          and sorted(control_like) == sorted(["bigram.scale", "skip_gates", "smear.gate_w", "smear.lam", "ve_shared.proj.weight",
                                              "ve_shared.scale", "ve_layer_scales"]
                                             + [f"blocks.{i}.attn.gate_w" for i in range(4)]
                                             + [f"blocks.{i}.{n}" for i in (2, 3) for n in ("lane_rho", "lane_mix")])
          and muon.param_groups[0]["weight_decay"] == 0.1 and muon.row_normalize and muon.polar_express)
    res.check("optimizer: feature tensors split as the spec says (bigram.embed and ve_shared.embed with tok_emb, bigram.proj Muon, "
              "controls and ve_shared.proj scalar Adam)",
              ok, f"tok {tok}, muon {len(mu)}, scalar extras {control_like[:4]}...")
    # GRAD_CLIP_NORM: clip_grad_norm_ over every parameter before the optimizers step
    for clip in (0.05, 1e6):
        cfg = cfg_of(**ALL_ON, grad_clip_norm=clip)
        model = feature_model(cfg).float()
        trainer = R.Trainer(model, cfg)
        seen = []
        original = trainer.optimizers[0].step
        trainer.optimizers[0].step = lambda *a, **k: (seen.append(math.sqrt(sum(float(p.grad.double().square().sum())
                                                                                 for p in model.parameters() if p.grad is not None))),
                                                     original(*a, **k))[1]
        x = torch.randint(0, 64, (2, 20), generator=g)
        trainer.step(x, x.roll(-1, 1), 0, 1.0)
        norm = seen[0]
        res.check(f"optimizer: GRAD_CLIP_NORM={clip:g}: global gradient norm at the step {'equals the clip' if clip < 1 else 'unclipped'}",
                  abs(norm - clip) <= 1e-4 * clip if clip < 1 else norm < clip, f"norm {norm:.6g}")


def check_schedule(res):
    cfg = cfg_of(iterations=100, warmdown_frac=0.2, max_wallclock_seconds=0)
    got = [R.lr_mul(cfg, s, 0.0) for s in (0, 79, 80, 90, 99, 100)]
    want = [1.0, 1.0, 1.0, 0.5, 0.05, 0.0]
    res.check("schedule: WARMDOWN_FRAC by steps = (1 - step/ITERATIONS) / frac, capped at 1", close(got, want, 1e-12, 0)[0], str(got))
    cfg = cfg_of(warmdown_frac=0.25, max_wallclock_seconds=600, warmdown_iters=3)
    got = [R.lr_mul(cfg, 7, ms) for ms in (100_000.0, 450_000.0, 540_000.0, 600_000.0, 700_000.0)]
    want = [1.0, 1.0, 0.4, 0.0, 0.0]
    res.check("schedule: WARMDOWN_FRAC by wallclock fraction (WARMDOWN_ITERS ignored)", close(got, want, 1e-12, 0)[0], str(got))
    cfg = cfg_of(iterations=100, warmdown_iters=20, max_wallclock_seconds=0, min_lr_frac=0.1)
    got = [R.lr_mul(cfg, s, 0.0) for s in (50, 90, 95, 99)]
    res.check("schedule: MIN_LR_FRAC floors the multiplier (WARMDOWN_ITERS too)", close(got, [1.0, 0.5, 0.25, 0.1], 1e-12, 0)[0], str(got))
    # LOOP_START_FRAC: default schedule before, loop schedule from the fraction on; eval uses the loop one
    cfg = cfg_of(**LANE_LOOP, loop_start_frac=0.5, iterations=10, max_wallclock_seconds=0)
    model = R.GPT.from_config(cfg)
    trainer = R.Trainer(model, cfg)
    states = []
    for step in (0, 4, 5, 9):
        trainer.use_schedule_at(R.training_fraction(cfg, step, 0.0))
        states.append(model.schedule())
    with R.eval_schedule(model):
        during_eval = model.schedule()
    loop, default = cfg.loop_schedule, cfg.default_schedule
    res.check("schedule: LOOP_START_FRAC 0.5 of 10 steps: default at steps 0, 4; loop at 5, 9; evaluation loops",
              states == [default, default, loop, loop] and during_eval == loop and model.schedule() == loop, str(states))
    trainer.use_schedule_at(0.1)
    with R.eval_schedule(model):
        during_eval = model.schedule()
    res.check("schedule: evaluation during the default phase runs the loop schedule, then training's comes back",
              during_eval == loop and model.schedule() == default)
    cfg = cfg_of(max_wallclock_seconds=100)
    res.check("schedule: training_fraction by wallclock when capped", R.training_fraction(cfg, 3, 25_000.0) == 0.25)


def last_line(text):
    lines = text.strip().splitlines()
    return lines[-1] if lines else ""


def run(cmd, env=None, timeout=600):
    full_env = {k: v for k, v in os.environ.items() if k not in {n for n, *_ in R.HYPERPARAMETERS}}
    full_env.update(env or {})
    return subprocess.run([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env,
                          timeout=timeout, cwd=str(ROOT))


def check_presets(res):
    names = [name for name, *_ in R.HYPERPARAMETERS]
    res.check("presets: the hyperparameter table names each variable once", len(names) == len(set(names)),
              str(sorted({n for n in names if names.count(n) > 1})))
    bad = []
    types = {name: typ for name, typ, _, _ in R.HYPERPARAMETERS}
    for preset, values in R.PRESETS.items():
        for name, value in values.items():
            if name not in types or not isinstance(value, types[name]):
                bad.append(f"{preset}.{name}")
        cfg = R.default_config(**{k.lower(): v for k, v in values.items()})
        problem = R.model_config_problem(cfg) or R.train_config_problem(cfg)
        if problem:
            bad.append(f"{preset}: {problem}")
    r0405 = R.default_config(**{k.lower(): v for k, v in R.PRESETS["r0405"].items()})
    enc, dec = r0405.loop_schedule
    flat = enc + dec
    res.check("presets: every value is a hyperparameter of its type and every preset validates", not bad, "; ".join(bad[:3]))
    res.check("presets: r0405 loops layers 4-5 (0..3, 4,5 x3, 6..10, cut at half) with 7 skips",
              flat == [0, 1, 2, 3, 4, 5, 4, 5, 4, 5, 6, 7, 8, 9, 10] and len(enc) == 7 and r0405.num_skip_rows == 7, f"{enc} | {dec}")
    p = run([sys.executable, REFERENCE, "config", "--preset", "r0322", "--num-layers", "5", "--xsa-last-n", "2"],
            env={"NUM_LAYERS": "7", "MLP_MULT": "4", "MATRIX_LR": "0.5"})
    lines = dict(re.findall(r"^config (\w+)=(.*)$", p.stdout, re.M))
    want = {"NUM_LAYERS": "5 (flag)", "XSA_LAST_N": "2 (flag)", "MLP_MULT": "4 (env)", "MATRIX_LR": "0.5 (env)",
            "ROPE_DIMS": "16 (preset r0322)", "EMA_DECAY": "0.997 (preset r0322)", "MODEL_DIM": "512 (default)",
            "ROPE_BASE": "22081.8 (preset r0322)", "LOGIT_SOFTCAP": "30.0 (default)"}
    res.check("presets: default < preset < environment < flag (reference.py config)",
              p.returncode == 0 and all(lines.get(k) == v for k, v in want.items()) and len(lines) == len(R.HYPERPARAMETERS),
              "; ".join(f"{k}={lines.get(k)}" for k in want if lines.get(k) != want[k]) or last_line(p.stderr))
    p = run([sys.executable, REFERENCE, "config"])
    lines = dict(re.findall(r"^config (\w+)=\S+ \((\w+)", p.stdout, re.M))
    res.check("presets: no preset means every value is the default", p.returncode == 0 and set(lines.values()) == {"default"})
    p = run([sys.executable, REFERENCE, "config", "--preset", "nope"])
    res.check("presets: an unknown preset is a usage error", p.returncode == 2 and "invalid choice" in p.stderr, last_line(p.stderr))


def check_validation(res):
    cases = [
        (dict(rope_dims=3), "ROPE_DIMS=3 must be even"), (dict(rope_dims=10), "ROPE_DIMS=10 exceeds head_dim=8"),
        (dict(rope_dims=-2), "ROPE_DIMS must be >= 0"),
        (dict(smear_gate=1, model_dim=8, num_heads=2, num_kv_heads=1), "SMEAR_GATE needs MODEL_DIM >= 12"),
        (dict(attn_out_gate=1, model_dim=8, num_heads=2, num_kv_heads=1), "ATTN_OUT_GATE needs MODEL_DIM >= 12"),
        (dict(bigram_vocab_size=1), "BIGRAM_VOCAB_SIZE must be 0 (off) or >= 2"),
        (dict(bigram_vocab_size=4, bigram_dim=0), "BIGRAM_DIM must be positive"),
        (dict(loop_encoder="0,1,2,3"), "set both schedules or neither"),
        (dict(loop_decoder="0,1,2,3"), "set both schedules or neither"),
        (dict(loop_encoder="0,1,4", loop_decoder="2,3"), "layer 4 is outside 0..NUM_LAYERS-1=3"),
        (dict(loop_encoder="0,-1", loop_decoder="2,3"), "layer -1 is outside"),
        (dict(loop_encoder="0,1", loop_decoder="3,1"), "layer 2 appears in neither"),
        (dict(loop_encoder="0,1,x", loop_decoder="2,3"), "LOOP_ENCODER='0,1,x' must be a comma-separated list"),
        (dict(loop_encoder=",".join(["0", "1"] * 9), loop_decoder=",".join(["2", "3"] * 8)), "hold 34 layers, more than the 32"),
        (dict(mlp_hidden=-1), "MLP_HIDDEN must be >= 0"), (dict(smear_gate=2), "SMEAR_GATE must be 0 or 1"),
        (dict(parallel_from=-1), "PARALLEL_FROM must be >= 0"), (dict(xsa_last_n=-1), "XSA_LAST_N must be >= 0"),
        (dict(parallel_form="0330"), "PARALLEL_FORM must be one of 0429, 0331, 0331-virtual"),
        (dict(attn_out_gate=1, attn_out_gate_scale=0.0), "ATTN_OUT_GATE_SCALE must be positive"),
        # physical layers 2, 3 then 1: 03-31's lanes would have to merge (its code drops such a block's output)
        (dict(parallel_from=2, parallel_form="0331", loop_encoder="0,2", loop_decoder="3,1"), "03-31's lanes never merge"),
        (dict(loop_start_frac=1.5), "LOOP_START_FRAC must be in [0, 1]"), (dict(warmdown_frac=-0.1), "WARMDOWN_FRAC must be in [0, 1]"),
        (dict(min_lr_frac=2.0), "MIN_LR_FRAC must be in [0, 1]"), (dict(muon_eq_r=2), "MUON_EQ_R must be 0 or 1"),
        (dict(muon_wd=-1.0), "MUON_WD and ADAM_WD must be >= 0"), (dict(ttt_chunk_tokens=-1), "TTT_CHUNK_TOKENS must be >= 0"),
    ]
    bad = []
    for kw, needle in cases:
        try:
            R.validate_config(cfg_of(**kw))
            bad.append(f"{kw} accepted")
        except SystemExit as e:
            if needle not in str(e):
                bad.append(f"{kw}: {e}")
    res.check(f"validation: {len(cases)} bad settings refused, each naming the variable", not bad, "; ".join(bad[:3]))
    ok = []
    for kw in (dict(loop_encoder=",".join(["0", "1"] * 8), loop_decoder=",".join(["2", "3"] * 8)), dict(xsa_last_n=50, parallel_from=9),
               dict(rope_dims=8), dict(smear_gate=1, model_dim=12, num_heads=2, num_kv_heads=1),
               dict(parallel_from=2, parallel_form="0331-virtual", loop_encoder="0,2", loop_decoder="3,1")):
        try:
            R.validate_config(cfg_of(**kw))
            ok.append(True)
        except SystemExit as e:
            ok.append(str(e))
    res.check("validation: limits accepted (32 positions, XSA_LAST_N / PARALLEL_FROM past the depth, R = head_dim, dim 12, "
              "03-31's lanes counting positions in the schedule the layer count refuses)",
              all(v is True for v in ok), str(ok))
    p = run([sys.executable, REFERENCE, "init", "--out", "/nonexistent/x.bin", "--num-layers", "2", "--model-dim", "32",
             "--num-heads", "4", "--rope-dims", "5"])
    res.check("validation: the CLI exits 1 with the message", p.returncode == 1 and "ROPE_DIMS=5 must be even" in p.stderr, last_line(p.stderr))


def check_checkpoint(res, tmp):
    cfg = cfg_of(**dict(ALL_ON, mlp_hidden=45), **LANE_LOOP, tie_embeddings=0)
    model = feature_model(cfg)
    path = tmp / "features.bin"
    R.save(path, model, cfg, steps=9)
    data = path.read_bytes()
    h = struct.unpack("<256i", data[:1024])
    f32 = lambda v: struct.unpack("<i", struct.pack("<f", v))[0]  # noqa: E731
    want = {0: 20261125, 1: 5, 3: 64, 4: 4, 5: 32, 6: 4, 7: 2, 8: 45, 9: 0, 12: 20, 13: 9, 14: f32(0.5), 15: 7, 16: 5, 17: 1,
            18: 2, 19: 4, 20: 1, 21: 2, 22: 1, 23: 1, 24: 4, 25: 4, 26: 0, 27: 2, 28: 1, 29: 3, 30: 2, 31: 0, 32: 3, 33: 1}
    wrong = {k: (h[k], v) for k, v in want.items() if h[k] != v}
    res.check("checkpoint: version 5 header words 3..33 as the spec lists them (MLP_HIDDEN 45 stored directly)",
              not wrong and not any(h[34:61]), str(wrong))
    # words 61..63: VE_DIM and the ValueEmbedding positions 1, 2 as bits of a 64-bit mask
    res.check("checkpoint: VE_DIM=6 in word 61, VE_LAYERS=1,2 as the mask 0b110 in words 62, 63", h[61:64] == (6, 6, 0) and not any(h[64:]),
              str(h[61:64]))
    # words 58, 59: PARALLEL_FORM's code and ATTN_OUT_GATE_SCALE's float32 bits (0 for the scale 1)
    for form, code in (("0331", 1), ("0331-virtual", 2)):
        c2 = R.replace(cfg, parallel_form=form, attn_out_gate_scale=0.5, loop_encoder="0,1,2,3", loop_decoder="2,3")
        R.save(tmp / "form.bin", feature_model(c2), c2)
        h2 = struct.unpack("<256i", (tmp / "form.bin").read_bytes()[:1024])
        back = R.read_container(tmp / "form.bin").config
        res.check(f"checkpoint: PARALLEL_FORM={form} and ATTN_OUT_GATE_SCALE=0.5 in words 58, 59 and back",
                  h2[58:60] == (code, f32(0.5)) and not h2[60] and back.parallel_form == form and back.attn_out_gate_scale == 0.5,
                  f"{h2[58:60]}, read {back.parallel_form} {back.attn_out_gate_scale}")
    # word 60: DOC_ATTENTION, after the words of the parallel form and the gate scale
    c3 = R.replace(cfg, doc_attention=1)
    R.save(tmp / "doc.bin", feature_model(c3), c3)
    h3 = struct.unpack("<256i", (tmp / "doc.bin").read_bytes()[:1024])
    back = R.read_container(tmp / "doc.bin").config
    res.check("checkpoint: DOC_ATTENTION=1 in word 60 (version 5) and back", h3[1] == 5 and h3[58:61] == (0, 0, 1)
              and not any(h3[64:]) and back.doc_attention == 1, f"version {h3[1]}, words 58..60 {h3[58:61]}, read {back.doc_attention}")
    c = R.read_container(path)
    back = {f: getattr(c.config, f) for f in R.SHAPE_FIELDS + R.FEATURE_FIELDS}
    res.check("checkpoint: header round trip to the config", all(back[f] == getattr(cfg, f) for f in back),
              str({f: (back[f], getattr(cfg, f)) for f in back if back[f] != getattr(cfg, f)}))
    loaded, cfg2, steps = R.load(path, dtype=torch.float64)
    ids = token_ids(3, 20)
    rounded = {k: v.float().double() for k, v in model.state_dict().items()}   # the file stores float32
    ok, diff = close(model_logits(loaded, ids), np_forward(rounded, cfg, ids, True), F64_ATOL, F64_RTOL)
    res.check("checkpoint: strict load gives the stored model (loop schedule on)", steps == 9 and loaded.looped and ok,
              f"max diff {diff:.1e}")
    R.save(tmp / "again.bin", loaded, cfg2, steps=9)
    res.check("checkpoint: save(load(f)) == f", (tmp / "again.bin").read_bytes() == data)
    base_cfg = cfg_of()
    R.save(tmp / "base.bin", feature_model(base_cfg), base_cfg)
    hb = np.fromfile(tmp / "base.bin", dtype="<i4", count=256)
    res.check("checkpoint: a baseline model is written as version 1 with words 14.. zero (the pre-feature format)",
              hb[1] == 1 and not hb[14:].any() and hb[8] == 64)
    # a version 1 file with junk in the new words still reads with every feature off
    raw = bytearray((tmp / "base.bin").read_bytes())
    raw[4 * 15:4 * 16] = struct.pack("<i", 99)
    (tmp / "v1junk.bin").write_bytes(bytes(raw))
    c = R.read_container(tmp / "v1junk.bin")
    res.check("checkpoint: version 1 files read with every new word taken as 0", c.config.bigram_vocab_size == 0)
    R.load(tmp / "v1junk.bin")
    failures = []

    def refused(name, blob, needle, **load_kw):
        p = tmp / f"bad_{name}.bin"
        p.write_bytes(blob)
        try:
            R.load(p, **load_kw)
            failures.append(f"{name} accepted")
        except SystemExit as e:
            if needle not in str(e) or str(p) not in str(e):
                failures.append(f"{name}: {e}")

    def patched(word, value, version=None):
        b = bytearray(data)
        if version is not None:
            b[4:8] = struct.pack("<i", version)
        b[4 * word:4 * word + 4] = struct.pack("<i", value)
        return bytes(b)

    refused("loop_len", patched(24, 30), "invalid loop schedule lengths")
    refused("loop_half", patched(25, 0), "invalid loop schedule lengths")
    refused("loop_layer", patched(27, 9), "outside 0..NUM_LAYERS-1")
    refused("after_loop", patched(40, 3), "past the loop schedule")
    refused("after_ve", patched(64, 3), "past the loop schedule")
    refused("ve_half", patched(61, 0), "VE_DIM and the ValueEmbedding positions must be set together")
    refused("form", patched(58, 3), "PARALLEL_FORM must be one of")
    refused("version", patched(1, 6), "unsupported checkpoint version 6")
    refused("ve_words_v4", patched(1, 4), "header words 61..63 (ValueEmbedding) are set in a file older than version 5")
    refused("doc_word_v3", patched(60, 1, version=3), "header word 60 (doc_attention) is set in a file older than version 4")
    # versions 3 and 4: words 58, 59 (and 61..63) zero, the same model (one without ValueEmbedding)
    c4 = R.replace(cfg, ve_enabled=0)
    m4 = feature_model(c4)
    R.save(tmp / "nove.bin", m4, c4)
    m4, _, _ = R.load(tmp / "nove.bin", dtype=torch.float64)
    nove = (tmp / "nove.bin").read_bytes()
    refused("version2", nove[:4] + struct.pack("<i", 2) + nove[8:], "written before version 3")   # SMEAR_GATE, SKIP_GATES, PARALLEL_FROM on: their old forms
    for version in (3, 4):
        old = bytearray((tmp / "nove.bin").read_bytes())
        old[4:8] = struct.pack("<i", version)
        (tmp / f"v{version}.bin").write_bytes(bytes(old))
        vo, _, _ = R.load(tmp / f"v{version}.bin", dtype=torch.float64)
        res.check(f"checkpoint: a version {version} file (words {'58, 59, ' if version == 3 else ''}61..63 zero) reads as the same model",
                  close(model_logits(vo, ids), model_logits(m4, ids), 0, 0)[0])
    refused("rope", patched(19, 3), "ROPE_DIMS=3 must be even")
    refused("no_bigram", patched(15, 0), "unexpected ['bigram.")   # header without the feature, tensors present
    records = [(k, v) for k, v in R.read_container(path).tensors.items() if k != "blocks.2.lane_mix"]
    R.write_container(tmp / "missing.bin", cfg, 9, records)
    refused("missing", (tmp / "missing.bin").read_bytes(), "missing ['blocks.2.lane_mix']")
    res.check("checkpoint: damaged feature words and missing / unexpected feature tensors refused, naming the file",
              not failures, "; ".join(failures[:3]))


def check_ttt(res, shared, tmp):
    cfg = cfg_of(**ALL_ON, vocab_size=1024, train_seq_len=16, ttt_chunk_tokens=32, ttt_lr=0.0, ttt_steps=2)
    if shared:
        import sentencepiece as spm
        tokens = R.load_validation_tokens(str(shared / "fineweb_val_*.bin"), 16, 160)
        sp = spm.SentencePieceProcessor(model_file=str(shared.parent.parent / "tokenizers" / "fineweb_1024_bpe.model"))
        luts = R.build_sentencepiece_luts(sp, 1024)
    else:   # pure-byte ids
        tokens = np.random.default_rng(1).integers(4, 260, 161).astype(np.uint16)
        luts = R.build_byte260_luts(1024)
    model = feature_model(cfg)
    plain = R.evaluate(model, tokens, 16, luts, batch_seqs=3)
    zero = R.evaluate_ttt(model, tokens, cfg, luts, batch_seqs=4)
    ok, diff = close(zero.nll_sum, plain.nll_sum, 0, 1e-12)
    res.check("ttt: TTT_LR=0 gives plain eval's result (float64; batching differs only)",
              ok and (zero.tokens, zero.bytes) == (plain.tokens, plain.bytes), f"{zero.val_bpb!r} vs {plain.val_bpb!r}")
    # chunk k is scored by weights trained on chunks < k only: a direct loop with its own SGD
    cfg = R.replace(cfg, ttt_lr=0.05, eval_stride=0)
    mine = feature_model(cfg)
    theirs = feature_model(cfg)
    scores = []
    R.evaluate_ttt(theirs, tokens, cfg, luts, batch_seqs=4, chunk_scores=scores)
    want, C, T = [], 32, 16
    toks = torch.from_numpy(tokens.astype(np.int64))
    n = tokens.size - 1
    for k in range(-(-n // C)):
        nll = 0.0
        with torch.no_grad():
            for s in range(k * C, min((k + 1) * C, n), T):
                logits = mine.forward_logits(toks[None, s:s + T])[0]
                nll -= float(torch.log_softmax(logits, -1).gather(1, toks[s + 1:s + T + 1, None]).sum())
        want.append(nll)
        if (k + 1) * C < n:
            x, y = toks[k * C:(k + 1) * C].reshape(-1, T), toks[k * C + 1:(k + 1) * C + 1].reshape(-1, T)
            for _ in range(cfg.ttt_steps):
                logits = mine.forward_logits(x)
                loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
                grads = torch.autograd.grad(loss, list(mine.parameters()))
                with torch.no_grad():
                    for p, gr in zip(mine.parameters(), grads):
                        p.sub_(cfg.ttt_lr * gr)
    got = [s[0] for s in scores]
    untrained = []
    R.evaluate_ttt(feature_model(cfg), tokens, R.replace(cfg, ttt_lr=0.0), luts, chunk_scores=untrained)
    # float64 both ways, the same operations in other orders: 1e-9 relative is ample (seen ~1e-15)
    ok, diff = close(got, want, 0, 1e-9)
    moved = got[0] == untrained[0][0] and all(abs(g - u[0]) > 1e-6 for g, u in zip(got[1:], untrained[1:]))
    res.check("ttt: chunk k's score uses weights trained (SGD, TTT_STEPS each) on chunks < k only (direct loop)",
              ok and len(got) == 5 and moved, f"{len(got)} chunks, max diff {diff:.1e}")
    try:
        R.evaluate_ttt(feature_model(cfg), tokens, R.replace(cfg, ttt_chunk_tokens=24), luts)
        refused = "accepted"
    except SystemExit as e:
        refused = str(e)
    res.check("ttt: a chunk that is not a multiple of TRAIN_SEQ_LEN is refused",
              "TTT_CHUNK_TOKENS=24 must be a positive multiple of TRAIN_SEQ_LEN=16" in refused, refused)


def check_cli(res, shared, tmp):
    if shared is None:
        res.skip("cli", "no shared shards (../shared/data/sample_sp1024; --shared DIR)")
        return
    tok = shared.parent.parent / "tokenizers" / "fineweb_1024_bpe.model"
    flags = ["--num-layers", "4", "--model-dim", "32", "--num-heads", "4", "--num-kv-heads", "2", "--train-seq-len", "32",
             "--mlp-hidden", "40", "--mlp-leaky-slope", "0.5", "--bigram-vocab-size", "64", "--bigram-dim", "8", "--smear-gate", "1",
             "--xsa-last-n", "2", "--rope-dims", "4", "--ln-scale", "1", "--parallel-from", "2", "--skip-gates", "1",
             "--attn-out-gate", "1", "--loop-encoder", "0,2,1,3", "--loop-decoder", "2,0,3,1"]
    ck = tmp / "cli.bin"
    p = run([sys.executable, REFERENCE, "train", *flags, "--data-path", shared, "--tokenizer-path", tok, "--iterations", "12",
             "--train-batch-tokens", "2048", "--max-wallclock-seconds", "0", "--val-loss-every", "12", "--train-log-every", "1",
             "--max-tokens", "2048", "--loop-start-frac", "0.5", "--muon-wd", "0.05", "--adam-wd", "0.01", "--muon-eq-r", "1",
             "--muon-polar-express", "1", "--warmdown-frac", "0.3", "--min-lr-frac", "0.1", "--grad-clip-norm", "1.0",
             "--stride", "16", "--out", ck])
    losses = [float(v) for v in re.findall(r"train_loss:(\S+)", p.stdout)]
    vals = [float(v) for v in re.findall(r"val_loss:(\S+)", p.stdout)]
    ok = (p.returncode == 0 and len(losses) == 12 and all(math.isfinite(v) for v in losses) and losses[-1] < losses[0] - 0.5
          and "layer_loop:enabled step:6" in p.stdout and "config MUON_EQ_R=1 (flag)" in p.stdout and len(vals) == 2 and vals[1] < vals[0])
    res.check("cli: train with every feature and option on: finite falling loss, loop from step 6, config printed",
              ok, f"losses {losses[:1]}..{losses[-1:]} val {vals}" if p.returncode == 0 else p.stderr[-400:])
    if p.returncode != 0:
        return
    ids = "1 17 300 5 1 1 999 42 7 1023 64 2"
    p = run([sys.executable, REFERENCE, "logits", "--ckpt", ck, "--dtype", "float64", "--tokens", ids, "--out", tmp / "l.npy"])
    model, cfg, _ = R.load(ck, dtype=torch.float64)
    want = np_forward(model.state_dict(), cfg, [int(v) for v in ids.split()], True)
    ok, diff = close(np.load(tmp / "l.npy"), want, F64_ATOL, F64_RTOL) if p.returncode == 0 else (False, 0)
    res.check("cli: logits --dtype float64 of the trained feature checkpoint equal the float64 formula (loop schedule)",
              ok, f"max diff {diff:.1e}" if p.returncode == 0 else p.stderr[-300:])
    base = [sys.executable, REFERENCE, "eval", "--ckpt", ck, "--data-path", shared, "--tokenizer-path", tok, "--max-tokens", "1024",
            "--dtype", "float64"]
    outs = {}
    for label, extra in (("plain", []), ("stride", ["--stride", "8"]), ("ttt0", ["--ttt-chunk-tokens", "256", "--ttt-lr", "0"]),
                         ("ttt", ["--ttt-chunk-tokens", "256", "--ttt-lr", "0.01"]), ("env", [])):
        q = run(base + extra, env={"EVAL_STRIDE": "8"} if label == "env" else None)
        m = re.search(r"^val_loss:(\S+) val_bpb:(\S+) tokens:(\d+) bytes:(\d+)$", q.stdout, re.M)
        outs[label] = (float(m.group(1)), int(m.group(3))) if q.returncode == 0 and m else last_line(q.stderr)
    ok = all(isinstance(v, tuple) and v[1] == 1024 for v in outs.values())
    ok = ok and abs(outs["ttt0"][0] - outs["plain"][0]) <= 1e-12 * outs["plain"][0] and outs["env"] == outs["stride"]
    ok = ok and outs["ttt"][0] != outs["plain"][0] and outs["stride"][0] != outs["plain"][0]
    res.check("cli: eval of the feature checkpoint: plain, --stride / EVAL_STRIDE, TTT (TTT_LR 0 = plain)", ok,
              ", ".join(f"{k} {v[0]:.6f}" if isinstance(v, tuple) else f"{k}: {v}" for k, v in outs.items()))
    p = run([sys.executable, REFERENCE, "eval", "--ckpt", ck, "--data-path", shared, "--tokenizer-path", tok, "--max-tokens", "1024",
             "--rope-dims", "8"])
    res.check("cli: a feature flag contradicting the checkpoint is refused", p.returncode == 1 and "rope_dims=4" in p.stderr, last_line(p.stderr))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shared", default=str(ROOT.parent / "shared"), help="folder with data/sample_sp1024 and tokenizers/")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = ap.parse_args()
    shards = Path(args.shared) / "data" / "sample_sp1024"
    shared = shards if list(shards.glob("fineweb_val_*.bin")) and (Path(args.shared) / "tokenizers").is_dir() else None
    res = Results()
    tmp = Path(tempfile.mkdtemp(prefix="test_features."))
    try:
        for fn, fargs in ((check_hash, ()), (check_forward, ()), (check_precision, ()), (check_gradients, ()), (check_table, ()),
                          (check_optimizer, ()), (check_schedule, ()), (check_presets, ()), (check_validation, ()),
                          (check_checkpoint, (tmp,)), (check_ttt, (shared, tmp)), (check_cli, (shared, tmp))):
            try:
                fn(res, *fargs)
            except (Exception, SystemExit) as e:  # noqa: B014 - SystemExit: reference.fail
                res.check(f"{fn.__name__} ran", False, f"{type(e).__name__}: {str(e)[-600:]}")
    finally:
        res.cleanup(tmp, args.keep)
    res.finish()


if __name__ == "__main__":
    main()
