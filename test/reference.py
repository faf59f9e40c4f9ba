#!/usr/bin/python3
"""PyTorch reference of the Parameter Golf baseline (openai/parameter-golf train_gpt.py), the oracle
that golf's C/CUDA code is checked against.

Contract
========
* Model: `GPT` has the baseline's module and parameter names, so a state_dict saved by train_gpt.py
  (`final_model.pt`) loads here with strict=True and the other way round. Same init: for the same SEED
  and PyTorch version the weights equal train_gpt.py's step-0 weights bit for bit (same construction
  order on the CPU generator, then the bf16 round trip that train_gpt.py's `.bfloat16()` applies).
* Hyperparameters: every baseline environment variable (NUM_LAYERS, MODEL_DIM, ...) with the baseline's
  default, or the flag of the same name lowercased (`--num-layers 2`); a flag beats the environment,
  which beats a `--preset` recipe (baseline, r0322, r0405), which beats the defaults.
* Record-stack features (section 1's table; all off by default, so the default model and training are
  the baseline's bit for bit): MLP_HIDDEN, MLP_LEAKY_SLOPE, BIGRAM_VOCAB_SIZE/BIGRAM_DIM, SMEAR_GATE,
  XSA_LAST_N, ROPE_DIMS, LN_SCALE, PARALLEL_FROM, SKIP_GATES, ATTN_OUT_GATE, LOOP_ENCODER/LOOP_DECODER,
  VE_ENABLED/VE_DIM/VE_LAYERS (model, stored in the checkpoint header); LOOP_START_FRAC, MUON_WD, ADAM_WD, MUON_EQ_R,
  MUON_POLAR_EXPRESS, WARMDOWN_FRAC, MIN_LR_FRAC (training); EVAL_STRIDE, TTT_* (evaluation).
* Numerics: by default float32 on the CPU with RMSNorm and causal attention written out, so PyTorch 1.13
  and 2.x compute the same thing; `--dtype float64` for oracle comparisons. `--device cuda` applies the
  baseline's mixed precision by default (`--amp`: bf16 autocast, bf16 token embedding, bf16
  Newton-Schulz, bf16 RoPE tables; `--no-amp` for float32 on the GPU). `--compile` and `--fast`
  (F.rms_norm / F.scaled_dot_product_attention where they exist) need PyTorch 2.x.
  `--device cpu --amp` models autocast as the GPU's tensor cores compute it, for train_golf's PRECISION=bf16
  (section 3, Bf16Linear): every linear (the tied logits projection included) on bf16-rounded operands with
  float32 accumulation, its output rounded to bf16; its backward dX = bf16(dY) bf16(W), dW = bf16(dY)^T bf16(X),
  both float32 (not rounded); q, k, v rounded to bf16 where attention reads them (straight-through gradient);
  bf16 Newton-Schulz and a bf16 Muon update (as on the GPU); everything else, the weights, the token embedding
  and the RoPE tables float32. (torch 1.13's own CPU bf16 matmul accumulates in bf16: no model of a GPU.)
* Checkpoints: the golf container (section 5), float32 little-endian, records named by state_dict key.
* Subcommands: init, train, eval, logits, config, debug-state (section 11; `reference.py CMD --help`).

Facts a C/CUDA implementation must reproduce exactly
----------------------------------------------------
* RMSNorm without weight: y = x * rsqrt(mean(x^2) + eps), eps = 2^-23 (what F.rms_norm(eps=None)
  uses for float32 and, computing in float32, for bf16 input); applied to the embedding output (x0),
  before attention and MLP (attn_norm, mlp_norm), to q and k per head, and before the head (final_norm).
* RoPE: head_dim split in halves, element i pairs with i + head_dim/2; inv_freq[i] = 1/base^(2i/head_dim);
  angle = pos * inv_freq[i]; y1 = x1 cos + x2 sin, y2 = x2 cos - x1 sin (note the sign convention).
  train_gpt.py's `.bfloat16()` also casts the inv_freq buffer, so its tables are computed in bf16
  (positions past 256 rounded): `--rope-table bf16` reproduces them, the default is exact.
* Attention: q = rms_norm(q), k = rms_norm(k), rope(q), rope(k), q *= q_gain[head]; softmax(q k^T /
  sqrt(head_dim)) causal; query head h reads kv head h // (num_heads / num_kv_heads); heads are
  concatenated head-major ([T, H*D]) before proj.
* Block: x = resid_mix[0]*x + resid_mix[1]*x0; x += attn_scale * attn(attn_norm(x));
  x += mlp_scale * mlp.proj(relu(mlp.fc(mlp_norm(x)))^2). x0 = rms_norm(tok_emb[ids]).
* U-Net: the first num_layers//2 blocks push their outputs; decoder block j (j = 0, 1, ...) first adds
  skip_weights[j] * (the most recently pushed output, popped) while any remain.
* Head: logits = softcap * tanh((final_norm(x) @ W^T) / softcap), W = tok_emb.weight when tied, else
  lm_head.weight; loss = mean cross-entropy (natural log) over all B*T positions.
* Init: tok_emb N(0, TIED_EMBED_INIT_STD) when tied (N(0,1) untied); linears U(+-1/sqrt(fan_in));
  attn.proj, mlp.proj, lm_head zero; q_gain QK_GAIN_INIT; attn_scale, mlp_scale, skip_weights 1;
  resid_mix [1; 0]; every value rounded to bf16.
* Baseline precision (--amp): everything under bf16 autocast; tok_emb.weight is stored in bf16, so the
  residual stream is bf16; other weights are float32 and cast to bf16 at each use; logits are upcast to
  float32 for the loss; Newton-Schulz and the Muon update are bf16.
* Optimizers (section 8): Muon for the 2-D block matrices, Adam for the rest; data order (section 6);
  val_bpb (section 7).
* Features (the spec golf_infer.c and train_golf.cu share; classes GPT, Block, BigramHash, SmearGate,
  exclusive_self_attention, apply_partial_rotary): e = tok_emb[t] (+ bigram.scale * bigram.proj(
  bigram.embed[hash])); x0 = rms_norm(SmearGate(e)); a_in = rms_norm(x) / sqrt(l + 1) with LN_SCALE;
  XSA then the output gate on each head's attention output (sigmoid(ATTN_OUT_GATE_SCALE w . x[:12]));
  lanes for l >= PARALLEL_FROM in the PARALLEL_FORM's form (Block.forward_lanes, forward_lanes_0331);
  schedules and skips in GPT's docstring; ValueEmbedding (03-31): v += ve_layer_scales[j] * ve_shared.scale *
  ve_shared.proj(ve_shared.embed[t]) at the j-th schedule position of VE_LAYERS, before attention and XSA read v (no
  proj when VE_DIM is the kv width). Init: bigram.embed N(0, 0.02), bigram.proj 0, bigram.scale 0.05;
  ve_shared.embed N(0, 0.01), ve_shared.proj 0, ve_shared.scale 0.1, ve_layer_scales 1;
  smear.gate_w, smear.lam, attn.gate_w, skip_gates 0; lane_rho 1.1, lane_mix 1; parallel_resid sqrt(1.1),
  parallel_post 1; rounded to bf16 like every value (0.05 -> 0.0500488, 1.1 -> 1.1015625, sqrt(1.1) ->
  1.046875).

Contents
========
 1. Hyperparameters          environment variables, flags, presets, defaults, validation
 2. Numerics                 RMSNorm, rotary tables (partial RoPE), causal attention (written out), XSA
 3. Model                    CastedLinear, Rotary, CausalSelfAttention, MLP, Block (lanes), BigramHash,
                             SmearGate, GPT (schedules, skips), parameter_table
 4. Initialisation           seeded baseline init, --random-init, --amp dtypes
 5. Checkpoint container     header words (versions 1 and 2), write / read, save / load of models
 6. Data                     shards, TokenStream, training batches
 7. Evaluation               byte tables, val_loss / val_bpb, sliding windows, score-first TTT
 8. Optimizers               Newton-Schulz (Polar Express), Muon (WD, MuonEq-R), the split, lr schedule
 8b. QAT and EMA             fake quantization as golf_export exports, straight-through gradient, weight EMA
 9. Training                 one step, the loop (layer schedule switch)
10. Debug state              a training batch, logits, gradients and K losses in one file
11. Command line             subcommands
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import math
import os
import struct
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn


def fail(msg: str) -> None:
    """Stops with a one-line error (exit status 1): a user or data problem, not a bug."""
    raise SystemExit(f"reference.py: error: {msg}")


# ====================================================================================================
# 1. Hyperparameters
# ====================================================================================================
# One row per train_gpt.py environment variable: (NAME, type, default, groups). The flag is the name
# lowercased with '-' for '_'. Groups say which subcommands take it: "model" (shape and init), "train"
# (optimizer, schedule, loader), "data" (paths), "eval" (validation batching, stride), "ttt" (eval only).

HYPERPARAMETERS = [
    # model shape and init
    ("VOCAB_SIZE", int, 1024, "model"),
    ("NUM_LAYERS", int, 9, "model"),
    ("MODEL_DIM", int, 512, "model"),
    ("NUM_HEADS", int, 8, "model"),
    ("NUM_KV_HEADS", int, 4, "model"),
    ("MLP_MULT", int, 2, "model"),
    ("TIE_EMBEDDINGS", int, 1, "model"),
    ("ROPE_BASE", float, 10000.0, "model"),
    ("LOGIT_SOFTCAP", float, 30.0, "model"),
    ("QK_GAIN_INIT", float, 1.5, "model"),
    ("TIED_EMBED_INIT_STD", float, 0.005, "model"),
    ("TRAIN_SEQ_LEN", int, 1024, "model"),
    ("SEED", int, 1337, "model"),
    # data
    ("DATA_PATH", str, "./data/datasets/fineweb10B_sp1024", "data"),
    ("TOKENIZER_PATH", str, "./data/tokenizers/fineweb_1024_bpe.model", "data"),
    # evaluation
    ("VAL_BATCH_SIZE", int, 524_288, "eval"),
    # training
    ("VAL_LOSS_EVERY", int, 1000, "train"),
    ("TRAIN_LOG_EVERY", int, 200, "train"),
    ("ITERATIONS", int, 20000, "train"),
    ("WARMDOWN_ITERS", int, 150, "train"),
    ("WARMUP_STEPS", int, 10, "train"),
    ("TRAIN_BATCH_TOKENS", int, 524_288, "train"),
    ("MAX_WALLCLOCK_SECONDS", float, 600.0, "train"),
    ("EMBED_LR", float, 0.6, "train"),
    ("HEAD_LR", float, 0.008, "train"),
    ("TIED_EMBED_LR", float, 0.05, "train"),
    ("MATRIX_LR", float, 0.04, "train"),
    ("SCALAR_LR", float, 0.04, "train"),
    ("MUON_MOMENTUM", float, 0.95, "train"),
    ("MUON_BACKEND_STEPS", int, 5, "train"),
    ("MUON_MOMENTUM_WARMUP_START", float, 0.85, "train"),
    ("MUON_MOMENTUM_WARMUP_STEPS", int, 500, "train"),
    ("BETA1", float, 0.9, "train"),
    ("BETA2", float, 0.95, "train"),
    ("ADAM_EPS", float, 1e-8, "train"),
    ("GRAD_CLIP_NORM", float, 0.0, "train"),
    # architecture features (section 3; all off by default, stored in the checkpoint header)
    ("MLP_HIDDEN", int, 0, "model"),            # MLP hidden size overriding MLP_MULT * MODEL_DIM (0: MLP_MULT)
    ("MLP_LEAKY_SLOPE", float, 0.0, "model"),   # activation (x > 0 ? x : slope x)^2; 0 = relu^2
    ("BIGRAM_VOCAB_SIZE", int, 0, "model"),     # BigramHash table rows V_b (0: off; >= 2 when on)
    ("BIGRAM_DIM", int, 128, "model"),          # BigramHash table width d_b
    ("SMEAR_GATE", int, 0, "model"),            # SmearGate, April form: on the raw embedding before its norm (MODEL_DIM >= 12)
    ("XSA_LAST_N", int, 0, "model"),            # XSA on layers >= NUM_LAYERS - XSA_LAST_N
    ("ROPE_DIMS", int, 0, "model"),             # RoPE on the first R dims of each head (0: all)
    ("LN_SCALE", int, 0, "model"),              # block norm outputs times 1/sqrt(layer + 1)
    ("PARALLEL_FROM", int, 0, "model"),         # two-lane parallel residual blocks from this layer (0: off)
    ("PARALLEL_FORM", str, "0429", "model"),    # the lanes' form: 0429, 0331, 0331-virtual (PARALLEL_FROM counts positions)
    ("SKIP_GATES", int, 0, "model"),            # gated U-Net skips: lerp(w skip, x, sigmoid(g)) (04-05)
    ("ATTN_OUT_GATE", int, 0, "model"),         # per-head sigmoid gate on the attention output
    ("ATTN_OUT_GATE_SCALE", float, 1.0, "model"),   # the gate is sigmoid(scale w . x[:12]) (04-27's run: 0.5)
    ("DOC_ATTENTION", int, 0, "model"),         # attention within documents (04-10): BOS starts one, cut every TRAIN_SEQ_LEN
    ("VE_ENABLED", int, 0, "model"),            # ValueEmbedding (03-31): v += s_p scale proj(ve_embed[t]) at VE_LAYERS positions
    ("VE_DIM", int, 128, "model"),              # its table width (no projection when it equals the kv width)
    ("VE_LAYERS", str, "9,10", "model"),        # the schedule positions (virtual layers, increasing, below 64) that get it
    ("LOOP_ENCODER", str, "", "model"),         # depth recurrence: encoder layer schedule, e.g. "0,1,2,3,4,5,3,4"
    ("LOOP_DECODER", str, "", "model"),         # and decoder schedule, e.g. "5,3,4,5,6,7,8,9,10"
    # evaluation extras
    ("EVAL_STRIDE", int, 0, "eval"),            # sliding-window stride (0: non-overlapping windows); flag also --stride
    # training extras (section 8)
    ("LOOP_START_FRAC", float, 0.0, "train"),   # the loop schedule is used from this fraction of training on
    ("WARMDOWN_FRAC", float, 0.0, "train"),     # > 0: warmdown over this last fraction of training (else WARMDOWN_ITERS)
    ("MIN_LR_FRAC", float, 0.0, "train"),       # floor of the lr multiplier
    ("MUON_WD", float, 0.0, "train"),           # decoupled weight decay of the Muon matrices
    ("ADAM_WD", float, 0.0, "train"),           # decoupled weight decay of every Adam parameter (AdamW)
    ("MUON_EQ_R", int, 0, "train"),             # MuonEq-R: rows of the update normalised before Newton-Schulz
    ("MUON_POLAR_EXPRESS", int, 0, "train"),    # Polar Express per-iteration Newton-Schulz coefficients
    # legal score-first test-time training in `eval` (section 7)
    ("TTT_CHUNK_TOKENS", int, 0, "ttt"),        # chunk length in tokens (0: off; a multiple of TRAIN_SEQ_LEN)
    ("TTT_LR", float, 0.002, "ttt"),            # SGD learning rate
    ("TTT_STEPS", int, 1, "ttt"),               # SGD steps per chunk, each on the whole chunk
    # export scheme (golf_export's names), quantization-aware training, weight EMA (section 8b)
    ("QUANT", str, "int8", "train"),
    ("QUANT_EMBED", str, "", "train"),
    ("QUANT_ATTN", str, "", "train"),
    ("QUANT_MLP", str, "", "train"),
    ("QUANT_HEAD", str, "", "train"),
    ("QAT", int, 0, "train"),
    ("QAT_START_FRAC", float, 0.0, "train"),
    ("EMA_DECAY", float, 0.0, "train"),
]

# Extra flag spellings of a hyperparameter (besides the derived --name).
FLAG_ALIASES = {"EVAL_STRIDE": ("--stride",)}

# Recipes: hyperparameter overrides by name (`--preset NAME`). Precedence: defaults < preset < environment
# < flags. Values marked "from RECORDS.md / the issue" are the records' documented settings; values marked
# "guess" are what the record's lineage is believed to have used (not checked against its code).
PRESETS = {
    "baseline": {},  # train_gpt.py's baseline (the defaults)
    # 2026-03-22 record, 1.1228 bpb: 11L EMA GPTQ-lite warmdown 3500 (on 03-21's partial RoPE + LN scale,
    # 03-20's XSA4 + EMA, 03-19's BigramHash + SmearGate + Muon WD).
    "r0322": {
        # from RECORDS.md / the issue (its SmearGate is the March per-dimension form, which golf does not yet have:
        # SMEAR_GATE=1 here is the April form)
        "NUM_LAYERS": 11, "MLP_MULT": 3, "TRAIN_SEQ_LEN": 2048, "TRAIN_BATCH_TOKENS": 786_432, "XSA_LAST_N": 4,
        # the record's Rotary rescales its base past 1024 tokens: 1e4 * (2048 / 1024)^(16 / 14) = 22081.79 at its 2048
        # (to the 6 digits train_golf's config log prints)
        "ROPE_BASE": 22081.8,
        "ROPE_DIMS": 16, "LN_SCALE": 1, "EMA_DECAY": 0.997, "BIGRAM_VOCAB_SIZE": 2048, "BIGRAM_DIM": 128,
        "SMEAR_GATE": 1, "MUON_WD": 0.04, "WARMDOWN_ITERS": 3500, "EVAL_STRIDE": 64, "QUANT": "int6",
        # guess: optimizer settings of the record's lineage
        "ADAM_WD": 0.04, "MATRIX_LR": 0.025, "SCALAR_LR": 0.025, "TIED_EMBED_LR": 0.035, "MUON_MOMENTUM": 0.99,
        "MUON_MOMENTUM_WARMUP_START": 0.92, "MUON_MOMENTUM_WARMUP_STEPS": 1500, "GRAD_CLIP_NORM": 0.3,
    },
    # 2026-04-05 record, 1.0856 bpb: SP8192, MLP 4x, MuonEq-R, layers 4-5 looped from 50% of training
    # (no parallel residuals); the record's own defaults, which its run command keeps (test/test_records.py).
    "r0405": {
        "VOCAB_SIZE": 8192, "DATA_PATH": "./data/datasets/fineweb10B_sp8192",
        "TOKENIZER_PATH": "./data/tokenizers/fineweb_8192_bpe.model", "TIE_EMBEDDINGS": 1, "NUM_LAYERS": 11,
        "MLP_MULT": 4, "TRAIN_SEQ_LEN": 2048, "TRAIN_BATCH_TOKENS": 786_432, "MUON_EQ_R": 1, "MUON_WD": 0.085,
        "LOOP_START_FRAC": 0.5, "QK_GAIN_INIT": 4.0, "MLP_LEAKY_SLOPE": 0.5, "EVAL_STRIDE": 64,
        "QUANT": "int6", "QUANT_EMBED": "int8",
        # layers 4-5 run three times: the flat order 0,1,2,3,4,5,4,5,4,5,6,7,8,9,10 cut after its first half
        # (15 // 2 = 7 positions), the rule behind RECORDS.md's example for layers 3-5
        "LOOP_ENCODER": "0,1,2,3,4,5,4", "LOOP_DECODER": "5,4,5,6,7,8,9,10",
        "XSA_LAST_N": 11, "ROPE_DIMS": 16, "LN_SCALE": 1, "SKIP_GATES": 1, "EMA_DECAY": 0.997,
        "GRAD_CLIP_NORM": 0.3, "MUON_MOMENTUM": 0.99, "MUON_MOMENTUM_WARMUP_START": 0.92,
        "MUON_MOMENTUM_WARMUP_STEPS": 1500, "MATRIX_LR": 0.02, "SCALAR_LR": 0.02, "TIED_EMBED_LR": 0.03,
        "WARMDOWN_FRAC": 0.667,
    },
}
# The record folder (openai/parameter-golf records/track_10min_16mb/) each preset reproduces.
PRESET_RECORDS = {
    "baseline": "2026-03-17_NaiveBaseline",
    "r0322": "2026-03-22_11L_EMA_GPTQ-lite_warmdown3500_QAT015_1.1233",
    "r0405": "2026-04-05_SP8192_GPTQ-Embeddings_SDClip_Loop45x2",
}
# The clip rules of the records' exports (GPTQ-lite search, SDClip) are train_golf's QUANT_CLIP, which this
# reference does not have (its QAT fake-quantizes with golf_export's --clip none rule).

# Model fields that a checkpoint header fixes (the others only matter at init or in training).
SHAPE_FIELDS = ("vocab_size", "num_layers", "model_dim", "num_heads", "num_kv_heads", "mlp_mult",
                "tie_embeddings", "rope_base", "logit_softcap")
FEATURE_FIELDS = ("mlp_hidden", "mlp_leaky_slope", "bigram_vocab_size", "bigram_dim", "smear_gate", "xsa_last_n",
                  "rope_dims", "ln_scale", "parallel_from", "parallel_form", "skip_gates", "attn_out_gate",
                  "attn_out_gate_scale", "loop_encoder", "loop_decoder", "doc_attention", "ve_enabled", "ve_dim", "ve_layers")
# PARALLEL_FORM's values, in the order of header word 58's codes (golf_infer.c's PARALLEL_FORM_NAME)
PARALLEL_FORMS = ("0429", "0331", "0331-virtual")

# train_gpt.py splits every step into world_size * grad_accum_steps = 8 equal spans of the stream.
SPANS_PER_STEP = 8

# Names that train_gpt.py treats as control tensors: Adam with SCALAR_LR even when 2-D. The last ten are
# the architecture features' control tensors (skip_gates, bigram.scale, smear.gate_w / smear.lam,
# attn.gate_w, lane_rho, lane_mix, parallel_resid, parallel_post, ve_layer_scales, ve_shared.scale).
CONTROL_TENSOR_NAME_PATTERNS = ("attn_scale", "attn_scales", "mlp_scale", "mlp_scales", "resid_mix",
                                "resid_mixes", "q_gain", "skip_weight", "skip_weights",
                                "skip_gates", "bigram.scale", "smear.", "gate_w", "lane_rho", "lane_mix",
                                "parallel_resid", "parallel_post", "ve_layer_scales", "ve_shared.scale")

# The BOS id of the official tokenizers and shards (SmearGate does not smear into it).
BOS_ID = 1
# Maximum total length of the two loop schedules (checkpoint header words 26..57).
MAX_LOOP_POSITIONS = 32


def flag_name(env_name: str) -> str:
    return "--" + env_name.lower().replace("_", "-")


@dataclass
class Config:
    vocab_size: int
    num_layers: int
    model_dim: int
    num_heads: int
    num_kv_heads: int
    mlp_mult: int
    tie_embeddings: int
    rope_base: float
    logit_softcap: float
    qk_gain_init: float
    tied_embed_init_std: float
    train_seq_len: int
    seed: int
    data_path: str
    tokenizer_path: str
    val_batch_size: int
    val_loss_every: int
    train_log_every: int
    iterations: int
    warmdown_iters: int
    warmup_steps: int
    train_batch_tokens: int
    max_wallclock_seconds: float
    embed_lr: float
    head_lr: float
    tied_embed_lr: float
    matrix_lr: float
    scalar_lr: float
    muon_momentum: float
    muon_backend_steps: int
    muon_momentum_warmup_start: float
    muon_momentum_warmup_steps: int
    beta1: float
    beta2: float
    adam_eps: float
    grad_clip_norm: float
    mlp_hidden: int = 0
    mlp_leaky_slope: float = 0.0
    bigram_vocab_size: int = 0
    bigram_dim: int = 128
    smear_gate: int = 0
    xsa_last_n: int = 0
    rope_dims: int = 0
    ln_scale: int = 0
    parallel_from: int = 0
    parallel_form: str = "0429"
    skip_gates: int = 0
    attn_out_gate: int = 0
    attn_out_gate_scale: float = 1.0
    doc_attention: int = 0
    ve_enabled: int = 0
    ve_dim: int = 128
    ve_layers: str = "9,10"
    loop_encoder: str = ""
    loop_decoder: str = ""
    eval_stride: int = 0
    loop_start_frac: float = 0.0
    warmdown_frac: float = 0.0
    min_lr_frac: float = 0.0
    muon_wd: float = 0.0
    adam_wd: float = 0.0
    muon_eq_r: int = 0
    muon_polar_express: int = 0
    ttt_chunk_tokens: int = 0
    ttt_lr: float = 0.002
    ttt_steps: int = 1
    quant: str = "int8"
    quant_embed: str = ""
    quant_attn: str = ""
    quant_mlp: str = ""
    quant_head: str = ""
    qat: int = 0
    qat_start_frac: float = 0.0
    ema_decay: float = 0.0

    @property
    def mlp_width(self) -> int:
        """The MLP hidden size: MLP_HIDDEN when set, else MLP_MULT * MODEL_DIM."""
        return self.mlp_hidden if self.mlp_hidden > 0 else self.mlp_mult * self.model_dim

    @property
    def head_dim(self) -> int:
        return self.model_dim // self.num_heads

    @property
    def rope_width(self) -> int:
        """R, the rotated dims of each head: ROPE_DIMS, or all head_dim when 0."""
        return self.rope_dims if self.rope_dims > 0 else self.head_dim

    @property
    def default_schedule(self) -> tuple[list[int], list[int]]:
        """(encoder, decoder) physical layer indices of the baseline: the first NUM_LAYERS // 2, the rest."""
        return list(range(self.num_layers // 2)), list(range(self.num_layers // 2, self.num_layers))

    @property
    def loop_schedule(self) -> tuple[list[int], list[int]] | None:
        """(encoder, decoder) from LOOP_ENCODER / LOOP_DECODER, or None when they are not set."""
        if not self.loop_encoder and not self.loop_decoder:
            return None
        return parse_layer_list(self.loop_encoder, "LOOP_ENCODER"), parse_layer_list(self.loop_decoder, "LOOP_DECODER")

    def parallel_positions(self, encoder: list[int], decoder: list[int]) -> list[bool]:
        """Which positions of the schedule (encoder, decoder) run two lanes: those whose physical layer is >=
        PARALLEL_FROM, or with PARALLEL_FORM=0331-virtual those whose position is (0: none)."""
        order = encoder + decoder
        if self.parallel_from <= 0:
            return [False] * len(order)
        virtual = self.parallel_form == "0331-virtual"
        return [(pos if virtual else layer) >= self.parallel_from for pos, layer in enumerate(order)]

    @property
    def lane_layers(self) -> set[int]:
        """The physical layers that run two lanes at some position of either schedule (they hold the lanes'
        parameters)."""
        out = set()
        for sched in (self.default_schedule, self.loop_schedule):
            if sched is not None:
                out |= {layer for layer, par in zip(sched[0] + sched[1], self.parallel_positions(*sched)) if par}
        return out

    @property
    def ve_positions(self) -> list[int]:
        """The schedule positions ValueEmbedding adds to (VE_LAYERS when VE_ENABLED; the record: an empty list is off)."""
        return parse_layer_list(self.ve_layers, "VE_LAYERS") if self.ve_enabled else []

    @property
    def num_skip_rows(self) -> int:
        """S, the rows of skip_weights: the most skips any of the model's schedules uses."""
        return max(num_skips(*s) for s in (self.default_schedule, self.loop_schedule) if s is not None)


def parse_layer_list(text: str, name: str) -> list[int]:
    """ "0,1,2" -> [0, 1, 2]; fails with a message naming the variable on anything else."""
    try:
        return [int(v) for v in text.split(",")] if text.strip() else []
    except ValueError:
        fail(f"{name}={text!r} must be a comma-separated list of layer indices, e.g. 0,1,2,3")


def format_layer_list(layers) -> str:
    return ",".join(str(int(v)) for v in layers)


def num_skips(encoder: list[int], decoder: list[int]) -> int:
    """U-Net skips of a schedule: min(len(encoder), len(decoder))."""
    return min(len(encoder), len(decoder))


def default_config(**overrides) -> Config:
    """The baseline's defaults (environment ignored), with keyword overrides; for tests and tools."""
    values = {name.lower(): default for name, _, default, _ in HYPERPARAMETERS}
    values.update(overrides)
    return Config(**values)


def add_hyperparameter_flags(parser: argparse.ArgumentParser, groups: tuple[str, ...]) -> None:
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None,
                        help="hyperparameter recipe applied before the environment and the flags (default baseline); "
                             "each reproduces a record: " + ", ".join(f"{k} = {v}" for k, v in PRESET_RECORDS.items()))
    for name, typ, default, group in HYPERPARAMETERS:
        if group in groups:
            parser.add_argument(flag_name(name), *FLAG_ALIASES.get(name, ()), dest=name.lower(), type=typ, default=None,
                                metavar=name, help=f"default ${name} or {default!r}")


def resolve_sources(args: argparse.Namespace, environ=os.environ) -> dict[str, tuple[object, str]]:
    """Every hyperparameter's value and where it came from ("flag", "env", "preset NAME" or "default"):
    flags beat the environment, which beats the preset (--preset), which beats the defaults."""
    preset = getattr(args, "preset", None) or "baseline"
    out = {}
    for name, typ, default, _ in HYPERPARAMETERS:
        key = name.lower()
        flag = getattr(args, key, None)
        if flag is not None:
            out[key] = (flag, "flag")
        elif name in environ:
            try:
                out[key] = (typ(environ[name]), "env")
            except ValueError:
                fail(f"environment variable {name}={environ[name]!r} is not a valid {typ.__name__}")
        elif name in PRESETS[preset]:
            out[key] = (PRESETS[preset][name], f"preset {preset}")
        else:
            out[key] = (default, "default")
    return out


def resolve_config(args: argparse.Namespace, environ=os.environ) -> tuple[Config, set[str]]:
    """Config from flags, then environment variables, then the preset, then defaults. Also returns the
    fields that were set explicitly (flag or environment), to check them against a checkpoint's header."""
    sources = resolve_sources(args, environ)
    cfg = Config(**{key: value for key, (value, _) in sources.items()})
    validate_config(cfg)
    return cfg, {key for key, (_, src) in sources.items() if src in ("flag", "env")}


def model_config_problem(cfg: Config) -> str | None:
    """The first reason the model shape is invalid, or None."""
    checks = [
        (cfg.vocab_size > 0, f"VOCAB_SIZE must be positive, got {cfg.vocab_size}"),
        (cfg.num_layers > 0, f"NUM_LAYERS must be positive, got {cfg.num_layers}"),
        (cfg.model_dim > 0 and cfg.num_heads > 0 and cfg.num_kv_heads > 0, "MODEL_DIM, NUM_HEADS and NUM_KV_HEADS must be positive"),
        (cfg.model_dim % cfg.num_heads == 0, f"MODEL_DIM={cfg.model_dim} must be divisible by NUM_HEADS={cfg.num_heads}"),
        (cfg.num_heads % cfg.num_kv_heads == 0, f"NUM_HEADS={cfg.num_heads} must be divisible by NUM_KV_HEADS={cfg.num_kv_heads}"),
        (cfg.head_dim % 2 == 0, f"head_dim={cfg.head_dim} must be even for RoPE"),
        (cfg.mlp_mult > 0, f"MLP_MULT must be positive, got {cfg.mlp_mult}"),
        (cfg.tie_embeddings in (0, 1), f"TIE_EMBEDDINGS must be 0 or 1, got {cfg.tie_embeddings}"),
        (cfg.logit_softcap > 0, f"LOGIT_SOFTCAP must be positive, got {cfg.logit_softcap}"),
        (cfg.rope_base > 0, f"ROPE_BASE must be positive, got {cfg.rope_base}"),
        (cfg.train_seq_len > 0, f"TRAIN_SEQ_LEN must be positive, got {cfg.train_seq_len}"),
    ]
    for ok, msg in checks:
        if not ok:
            return msg
    return feature_config_problem(cfg)


def loop_schedule_problem(cfg: Config) -> str | None:
    """What is wrong with LOOP_ENCODER / LOOP_DECODER, or None (also None when neither is set)."""
    enc_text, dec_text = cfg.loop_encoder.strip(), cfg.loop_decoder.strip()
    if not enc_text and not dec_text:
        return None
    if not enc_text or not dec_text:
        return (f"LOOP_ENCODER={cfg.loop_encoder!r} and LOOP_DECODER={cfg.loop_decoder!r}: set both schedules or "
                f"neither")
    lists = []
    for name, text in (("LOOP_ENCODER", enc_text), ("LOOP_DECODER", dec_text)):
        try:
            lists.append([int(v) for v in text.split(",")])
        except ValueError:
            return f"{name}={text!r} must be a comma-separated list of layer indices, e.g. 0,1,2,3"
        bad = [v for v in lists[-1] if not 0 <= v < cfg.num_layers]
        if bad:
            return f"{name}={text!r}: layer {bad[0]} is outside 0..NUM_LAYERS-1={cfg.num_layers - 1}"
    total = len(lists[0]) + len(lists[1])
    if total > MAX_LOOP_POSITIONS:
        return f"LOOP_ENCODER + LOOP_DECODER hold {total} layers, more than the {MAX_LOOP_POSITIONS} a header can store"
    missing = sorted(set(range(cfg.num_layers)) - set(lists[0]) - set(lists[1]))
    if missing:
        return f"layer {missing[0]} appears in neither LOOP_ENCODER nor LOOP_DECODER (every layer must run)"
    return None


def feature_config_problem(cfg: Config) -> str | None:
    """The first reason the architecture features (MLP_HIDDEN .. LOOP_DECODER) are invalid, or None."""
    hd = cfg.head_dim
    checks = [
        (cfg.mlp_hidden >= 0, f"MLP_HIDDEN must be >= 0 (0: MLP_MULT * MODEL_DIM), got {cfg.mlp_hidden}"),
        (math.isfinite(cfg.mlp_leaky_slope), f"MLP_LEAKY_SLOPE must be finite, got {cfg.mlp_leaky_slope}"),
        (cfg.bigram_vocab_size >= 0 and cfg.bigram_vocab_size != 1,
         f"BIGRAM_VOCAB_SIZE must be 0 (off) or >= 2 (ids are hashed mod BIGRAM_VOCAB_SIZE - 1), got {cfg.bigram_vocab_size}"),
        (cfg.bigram_vocab_size == 0 or cfg.bigram_dim > 0, f"BIGRAM_DIM must be positive, got {cfg.bigram_dim}"),
        (cfg.smear_gate in (0, 1), f"SMEAR_GATE must be 0 or 1, got {cfg.smear_gate}"),
        (not cfg.smear_gate or cfg.model_dim >= 12, f"SMEAR_GATE needs MODEL_DIM >= 12 (its gate reads x[0:12]), got {cfg.model_dim}"),
        (cfg.attn_out_gate in (0, 1), f"ATTN_OUT_GATE must be 0 or 1, got {cfg.attn_out_gate}"),
        (not cfg.attn_out_gate or cfg.model_dim >= 12,
         f"ATTN_OUT_GATE needs MODEL_DIM >= 12 (its gates read the block input's first 12 dims), got {cfg.model_dim}"),
        (cfg.xsa_last_n >= 0, f"XSA_LAST_N must be >= 0, got {cfg.xsa_last_n}"),
        (cfg.rope_dims >= 0, f"ROPE_DIMS must be >= 0 (0: all of head_dim), got {cfg.rope_dims}"),
        (cfg.rope_dims % 2 == 0, f"ROPE_DIMS={cfg.rope_dims} must be even (dims rotate in pairs)"),
        (cfg.rope_dims <= hd, f"ROPE_DIMS={cfg.rope_dims} exceeds head_dim={hd} (MODEL_DIM / NUM_HEADS)"),
        (cfg.ln_scale in (0, 1), f"LN_SCALE must be 0 or 1, got {cfg.ln_scale}"),
        (cfg.parallel_from >= 0, f"PARALLEL_FROM must be >= 0 (0: off), got {cfg.parallel_from}"),
        (cfg.parallel_form in PARALLEL_FORMS, f"PARALLEL_FORM must be one of {', '.join(PARALLEL_FORMS)}, got {cfg.parallel_form!r}"),
        (cfg.skip_gates in (0, 1), f"SKIP_GATES must be 0 or 1, got {cfg.skip_gates}"),
        (not cfg.attn_out_gate or (math.isfinite(cfg.attn_out_gate_scale) and cfg.attn_out_gate_scale > 0),
         f"ATTN_OUT_GATE_SCALE must be positive and finite, got {cfg.attn_out_gate_scale}"),
        (cfg.doc_attention in (0, 1), f"DOC_ATTENTION must be 0 or 1, got {cfg.doc_attention}"),
        (cfg.ve_enabled in (0, 1), f"VE_ENABLED must be 0 or 1, got {cfg.ve_enabled}"),
    ]
    for ok, msg in checks:
        if not ok:
            return msg
    problem = loop_schedule_problem(cfg) or ve_problem(cfg)
    if problem or cfg.parallel_form != "0331" or cfg.loop_schedule is None:
        return problem
    par = cfg.parallel_positions(*cfg.loop_schedule)
    if any(a and not b for a, b in zip(par, par[1:])):
        return (f"PARALLEL_FORM=0331: a layer below PARALLEL_FROM={cfg.parallel_from} follows a parallel one in the loop "
                f"schedule (03-31's lanes never merge); count positions instead (0331-virtual) or move PARALLEL_FROM")
    return None


def ve_problem(cfg: Config) -> str | None:
    """What is wrong with VE_DIM / VE_LAYERS when ValueEmbedding is on, or None."""
    if not cfg.ve_enabled:
        return None
    try:
        pos = [int(v) for v in cfg.ve_layers.split(",")] if cfg.ve_layers.strip() else []
    except ValueError:
        return f"VE_LAYERS={cfg.ve_layers!r} must be a comma-separated list of schedule positions, e.g. 9,10"
    longest = max(len(s[0]) + len(s[1]) for s in (cfg.default_schedule, cfg.loop_schedule) if s is not None)
    if pos and not 1 <= cfg.ve_dim <= 65536:
        return f"VE_DIM must be in 1..65536, got {cfg.ve_dim}"
    if any(p < 0 or p >= 64 for p in pos) or any(b <= a for a, b in zip(pos, pos[1:])):
        return f"VE_LAYERS={cfg.ve_layers!r} must list increasing schedule positions in 0..63"
    if any(p >= longest for p in pos):
        return f"VE_LAYERS={cfg.ve_layers!r}: position {max(pos)} is past the end of every layer schedule ({longest} positions)"
    return None


def train_config_problem(cfg: Config) -> str | None:
    """The first reason the training / evaluation options are invalid, or None."""
    nonfinite = [name for name, typ, _, _ in HYPERPARAMETERS if typ is float and not math.isfinite(getattr(cfg, name.lower()))]
    negative = [name for name in ("ITERATIONS", "WARMDOWN_ITERS", "WARMUP_STEPS", "VAL_LOSS_EVERY", "TRAIN_LOG_EVERY",
                                  "MUON_MOMENTUM_WARMUP_STEPS", "MAX_WALLCLOCK_SECONDS", "EMBED_LR", "HEAD_LR", "TIED_EMBED_LR",
                                  "MATRIX_LR", "SCALAR_LR", "GRAD_CLIP_NORM") if getattr(cfg, name.lower()) < 0]
    checks = [
        (not nonfinite, ", ".join(f"{n}={getattr(cfg, n.lower())}" for n in nonfinite) + " must be finite"),
        (not negative, ", ".join(f"{n}={getattr(cfg, n.lower())}" for n in negative) + " must be >= 0"),
        (cfg.train_batch_tokens > 0 and cfg.val_batch_size > 0,
         f"TRAIN_BATCH_TOKENS and VAL_BATCH_SIZE must be positive, got {cfg.train_batch_tokens}, {cfg.val_batch_size}"),
        (0.0 <= cfg.beta1 < 1.0 and 0.0 <= cfg.beta2 < 1.0 and 0.0 <= cfg.muon_momentum < 1.0 and 0.0 <= cfg.muon_momentum_warmup_start < 1.0,
         f"BETA1, BETA2, MUON_MOMENTUM and MUON_MOMENTUM_WARMUP_START must be in [0, 1), got {cfg.beta1}, {cfg.beta2}, "
         f"{cfg.muon_momentum}, {cfg.muon_momentum_warmup_start}"),
        (cfg.adam_eps > 0, f"ADAM_EPS must be positive, got {cfg.adam_eps}"),
        (0.0 <= cfg.loop_start_frac <= 1.0, f"LOOP_START_FRAC must be in [0, 1], got {cfg.loop_start_frac}"),
        (0.0 <= cfg.warmdown_frac <= 1.0, f"WARMDOWN_FRAC must be in [0, 1] (0: WARMDOWN_ITERS), got {cfg.warmdown_frac}"),
        (0.0 <= cfg.min_lr_frac <= 1.0, f"MIN_LR_FRAC must be in [0, 1], got {cfg.min_lr_frac}"),
        (cfg.muon_wd >= 0 and cfg.adam_wd >= 0, f"MUON_WD and ADAM_WD must be >= 0, got {cfg.muon_wd}, {cfg.adam_wd}"),
        (cfg.muon_eq_r in (0, 1), f"MUON_EQ_R must be 0 or 1, got {cfg.muon_eq_r}"),
        (cfg.muon_polar_express in (0, 1), f"MUON_POLAR_EXPRESS must be 0 or 1, got {cfg.muon_polar_express}"),
        (cfg.muon_backend_steps >= 0, f"MUON_BACKEND_STEPS must be >= 0, got {cfg.muon_backend_steps}"),
        (0.0 <= cfg.ema_decay < 1.0, f"EMA_DECAY must be in [0, 1), got {cfg.ema_decay}"),
        (cfg.eval_stride >= 0, f"EVAL_STRIDE must be >= 0 (0: non-overlapping windows), got {cfg.eval_stride}"),
        (cfg.ttt_chunk_tokens >= 0, f"TTT_CHUNK_TOKENS must be >= 0 (0: off), got {cfg.ttt_chunk_tokens}"),
        (cfg.ttt_steps >= 0 and cfg.ttt_lr >= 0, f"TTT_STEPS and TTT_LR must be >= 0, got {cfg.ttt_steps}, {cfg.ttt_lr}"),
    ]
    for ok, msg in checks:
        if not ok:
            return msg
    return None


def validate_config(cfg: Config) -> None:
    problem = model_config_problem(cfg) or train_config_problem(cfg)
    if problem:
        fail(problem)


# ====================================================================================================
# 2. Numerics
# ====================================================================================================
# Written out so that PyTorch 1.13 (no F.rms_norm, no scaled_dot_product_attention) and 2.x compute the
# same thing. `--fast` switches to the built-ins where they exist (the calls train_gpt.py makes).

# train_gpt.py calls F.rms_norm(eps=None). ATen then computes float32 and bf16 input in float32 with
# eps = std::numeric_limits<float>::epsilon() (the docs' "finfo(x.dtype).eps" would be 2^-7 for bf16,
# but the float32 compute type decides). Here the same eps is used in every dtype, float64 included, so
# that the float64 oracle computes the same function as the float32 path.
RMS_NORM_EPS = float(torch.finfo(torch.float32).eps)  # 2^-23 = 1.1920928955078125e-07
LOW_PRECISION = (torch.bfloat16, torch.float16)
FAST_KERNELS = {"on": False}
CPU_AMP = {"on": False}   # --device cpu --amp: Bf16Linear and bf16 attention inputs (the tensor cores' autocast)
FLASH_BOUND = {"on": False}   # debug-state: each attention's q_gain_flash_bound summed on its module (_qgain_bound),
                              # each 03-31 block's lane_scale_rounding_sq on it (_lane_sq)


def autocast_context(device, amp: bool):
    """bf16 autocast on the GPU with --amp (train_gpt.py runs every forward under it), else nothing (on the CPU,
    --amp is modeled by Bf16Linear and round_bf16 instead)."""
    if not amp or not str(device).startswith("cuda"):
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda", dtype=torch.bfloat16)


def bf16r(x: Tensor) -> Tensor:
    """x rounded to bf16 (nearest even), held in x's dtype"""
    return x.to(torch.bfloat16).to(x.dtype)


class RoundBf16(torch.autograd.Function):
    """bf16r with a straight-through gradient: what a cast to bf16 does under autograd"""

    @staticmethod
    def forward(ctx, x):
        return bf16r(x)

    @staticmethod
    def backward(ctx, g):
        return g


class Bf16Linear(torch.autograd.Function):
    """y = bf16(bf16(x) bf16(w)^T): a linear under autocast as the tensor cores compute it (bf16 operands, float32
    accumulation: a float32 matmul of bf16 values; the output rounded to bf16). Backward: dX = bf16(dY) bf16(w),
    dW = bf16(dY)^T bf16(x), both left in float32 (train_golf accumulates dW into its float32 gradients)."""

    @staticmethod
    def forward(ctx, x, w):
        xb, wb = bf16r(x), bf16r(w)
        ctx.save_for_backward(xb, wb)
        return bf16r(xb @ wb.T)

    @staticmethod
    def backward(ctx, gy):
        xb, wb = ctx.saved_tensors
        gb = bf16r(gy)
        return gb @ wb, gb.reshape(-1, gb.size(-1)).T @ xb.reshape(-1, xb.size(-1))


def linear(x: Tensor, w: Tensor) -> Tensor:
    """F.linear without bias; Bf16Linear under --device cpu --amp"""
    return Bf16Linear.apply(x, w) if CPU_AMP["on"] else F.linear(x, w.to(x.dtype))


def rms_norm(x: Tensor) -> Tensor:
    """x / sqrt(mean(x^2) + eps) over the last dim. bf16/fp16 input is computed in float32 and rounded
    back (as F.rms_norm does); float32 and float64 are computed in their own precision."""
    if FAST_KERNELS["on"] and hasattr(F, "rms_norm"):
        return F.rms_norm(x, (x.size(-1),), eps=RMS_NORM_EPS)
    xf = x.float() if x.dtype in LOW_PRECISION else x
    y = xf * torch.rsqrt(xf.square().mean(dim=-1, keepdim=True) + RMS_NORM_EPS)
    return y.to(x.dtype)


def rotary_tables(seq_len: int, head_dim: int, base: float, dtype: torch.dtype, device,
                  mode: str = "exact") -> tuple[Tensor, Tensor]:
    """cos, sin [1, 1, seq_len, head_dim/2] of angle[t, i] = t * inv_freq[i], inv_freq[i] = 1/base^(2i/head_dim).
    mode "exact": computed in `dtype` (float32: the table train_gpt.py's Rotary would compute in float32,
    bit for bit; float64 for the oracle). mode "bf16": what train_gpt.py actually computes, because its
    `.bfloat16()` also casts the inv_freq buffer: inv_freq (float32) rounded to bf16, positions
    arange(T) in bf16 (exact only up to 256), their product rounded to bf16, cos and sin rounded to bf16
    (eager PyTorch semantics; a compiled graph may skip the intermediate roundings)."""
    if mode == "bf16":
        inv_freq = (1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32, device=device) / head_dim)))
        inv_freq = inv_freq.to(torch.bfloat16).float()
        t = torch.arange(seq_len, dtype=torch.float32, device=device).to(torch.bfloat16).float()
        freqs = torch.outer(t, inv_freq).to(torch.bfloat16).float()
        cos, sin = freqs.cos().to(torch.bfloat16), freqs.sin().to(torch.bfloat16)
        return cos[None, None, :, :], sin[None, None, :, :]
    if mode != "exact":
        raise ValueError(f"unknown rope table mode {mode!r}")
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=dtype, device=device) / head_dim))  # [D/2]
    t = torch.arange(seq_len, dtype=dtype, device=device)                                          # [T]
    freqs = torch.outer(t, inv_freq)                                                                # [T, D/2]
    return freqs.cos()[None, None, :, :], freqs.sin()[None, None, :, :]


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """x [B, H, T, D]: (x1, x2) = halves of D; returns (x1 cos + x2 sin, x2 cos - x1 sin)."""
    half = x.size(-1) // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat((x1 * cos + x2 * sin, x2 * cos - x1 * sin), dim=-1)


def apply_partial_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Partial RoPE (ROPE_DIMS): x [B, H, T, D], tables of R/2 frequencies; the first R dims rotate as in
    apply_rotary (pairs (i, i + R/2), inv_freq[i] = base^(-2i/R)), dims R..D-1 pass unchanged. R = D is
    apply_rotary itself."""
    rotated = 2 * cos.size(-1)
    if rotated == x.size(-1):
        return apply_rotary(x, cos, sin)
    return torch.cat((apply_rotary(x[..., :rotated], cos, sin), x[..., rotated:]), dim=-1)


def causal_attention(q: Tensor, k: Tensor, v: Tensor, allowed: Tensor | None = None) -> Tensor:
    """q [B, H, T, D], k and v [B, Hkv, T, D] -> [B, H, T, D]. Query head h uses kv head h // (H/Hkv)
    (repeat_interleave, as scaled_dot_product_attention's enable_gqa). Scale 1/sqrt(D). allowed [B, 1, T, T]
    (Documents.allowed), when given, replaces the causal mask: query t sees key s where allowed[b, 0, t, s]."""
    num_heads, num_kv_heads, seq_len, head_dim = q.size(1), k.size(1), q.size(2), q.size(3)
    if CPU_AMP["on"]:   # SDPA under autocast reads bf16 q, k, v
        q, k, v = RoundBf16.apply(q), RoundBf16.apply(k), RoundBf16.apply(v)
    if num_kv_heads != num_heads:
        k = k.repeat_interleave(num_heads // num_kv_heads, dim=1)  # [B, H, T, D]
        v = v.repeat_interleave(num_heads // num_kv_heads, dim=1)
    if FAST_KERNELS["on"] and hasattr(F, "scaled_dot_product_attention"):
        if allowed is not None:
            return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    scores = torch.matmul(q, k.transpose(-2, -1)) * (1.0 / math.sqrt(head_dim))  # [B, H, T, T]
    future = torch.ones(seq_len, seq_len, dtype=torch.bool, device=q.device).triu(1) if allowed is None else ~allowed
    scores = scores.masked_fill(future, float("-inf"))
    probs = torch.softmax(scores.float() if scores.dtype in LOW_PRECISION else scores, dim=-1)
    return torch.matmul(probs.to(v.dtype), v)


def q_gain_flash_bound(q: Tensor, k: Tensor, v: Tensor, dy: Tensor, gain: Tensor, allowed: Tensor | None = None) -> Tensor:
    """How far a bf16 flash attention backward's roundings may move the gradient of q_gain from its exact value, per
    head [H] (float64), for q [B, H, T, D] (q_gain applied), k, v [B, Hkv, T, D] and dy, the gradient of the attention
    output. The gradient is g_h = scale sum_{b,t,s} dS_ts (qhat_t . k_s), qhat = q / q_gain, dS_ts = P_ts (dP_ts - D_t),
    dP_ts = dy_t . v_s, D_t = dy_t . y_t: a sum that cancels heavily (sum_s dS_ts = 0), so neither a bound relative to g
    nor the worst case of every rounding adding up (sum_i |a_i|: thousands of times the errors seen) makes a check.
    The flash kernels round to bfloat16 (8 significant bits, relative error at most u = 2^-8), each an independent event:
      dS_ts for the dq product:               a = u |dS_ts| scale |qhat_t . k_s|                       per (b, t, s)
      dy_ti in dP and D (D from the rounded dy): g moves by delta dy_ti c_ti, c_ti = scale sum_s P_ts (v_si - y_ti)
                                                (qhat_t . k_s):  a = 2 u |dy_ti| |c_ti|                 per (b, t, i)
                                                (twice u: the later layers' roundings reach dy as a relative
                                                perturbation of the same size as its own rounding)
      P_ts in the forward's P V, moving D_t by dy_t . v_s delta P_ts:
                                                a = u P_ts |dy_t . v_s| scale |sum_s' P_ts' qhat_t . k_s'|  per (b, t, s)
    Under the probabilistic model of rounding errors (independent, mean zero, |delta_i| <= a_i; Higham and Mary, SIAM J.
    Sci. Comput. 41 (2019)), Hoeffding's inequality bounds the sum: P(|sum delta_i| > lam sqrt(sum a_i^2)) <= 2
    exp(-lam^2 / 2); lam = 6 puts that below 3e-8 per head. Returns lam sqrt(sum a^2) (fp32 accumulation and products of
    two roundings are far below it), computed in float64 from the float32 tensors. allowed: causal_attention's mask."""
    B, H, T, Dh = q.shape
    q, k, v, dy, gain = (t.detach().double() for t in (q, k, v, dy, gain))
    if k.size(1) != H:
        k, v = k.repeat_interleave(H // k.size(1), dim=1), v.repeat_interleave(H // v.size(1), dim=1)
    scale, u, lam = 1.0 / math.sqrt(Dh), 2.0 ** -8, 6.0
    qk = q @ k.transpose(-2, -1)                                                   # [B, H, T, T]
    future = torch.ones(T, T, dtype=torch.bool).triu(1) if allowed is None else ~allowed.cpu()
    P = torch.softmax((qk * scale).masked_fill(future, float("-inf")), dim=-1)
    y = P @ v
    qhk = qk / gain[None, :, None, None]                                           # qhat_t . k_s
    dS = P * (dy @ v.transpose(-2, -1) - (dy * y).sum(-1, keepdim=True))
    a_ds = u * dS.abs() * scale * qhk.abs()
    c = scale * ((P * qhk) @ v - y * (P * qhk).sum(-1, keepdim=True))             # [B, H, T, D]
    a_dy = 2 * u * dy.abs() * c.abs()
    a_p = u * P * (dy @ v.transpose(-2, -1)).abs() * scale * (P * qhk).sum(-1, keepdim=True).abs()
    return lam * ((a_ds ** 2).sum(dim=(0, 2, 3)) + (a_dy ** 2).sum(dim=(0, 2, 3)) + (a_p ** 2).sum(dim=(0, 2, 3))).sqrt()


def lane_scale_rounding_sq(x: Tensor, ux: Tensor, g: Tensor) -> Tensor:
    """sum over every entry of a_i^2, a_i = (ux_i + 2 u |x_i|) |g_i| (float64): the squared rounding magnitudes of the
    summands x_i g_i of one of 03-31's lane scale gradients (lane_scale_bound), u ux_i bounding x_i's perturbation and
    2 u |x_i| that of x_i's factor g_i, a lane's gradient; x, ux, g float32 of one shape."""
    x, ux, g = (t.detach().double() for t in (x, ux, g))
    return (((ux + 2 * x.abs()) * g.abs() * 2.0 ** -8) ** 2).sum()


def lane_scale_bound(sq: Tensor) -> Tensor:
    """How far train_golf's bf16 roundings may move the gradients of 03-31's lane scales parallel_resid r [2] and
    parallel_post p [2, 2] (branch, lane), and of its ValueEmbedding's scale and position scales, from their exact values, from the summed squares sq of their summands' rounding
    magnitudes (lane_scale_rounding_sq, same shapes). With l_k the lanes as they come in, A = attn_scale ao and M =
    mlp_scale mo the branch outputs, m_k = r0 l_k + p0k A the lanes after attention, d_k and d'_k the gradients of the
    block's outputs and of m_k (par_mlp_backward, par_attn_backward):
      g(r1) = sum m0 d0 + m1 d1,  g(p1k) = sum M dk,  g(r0) = sum l0 d'0 + l1 d'1,  g(p0k) = sum A d'k
    over all N d entries: sums that cancel to 1/50 .. 1/10000 of the sum of their terms' magnitudes (the norms after a
    block see almost nothing of a lane's scale), so neither a bound relative to g nor the sum of every summand's worst
    case makes a check, and the --amp reference's own distance D to float32 (one sample of the same noise) does not bound
    train_golf's. The arithmetic of these sums is float32 in both precisions; what bf16 moves is their factors, each
    rounding with relative error at most u = 2^-8, an independent event per entry:
      ao, mo (forward GEMM outputs, rounded to bf16): their own rounding, and their operand's (yx, or the MLP's ub)
        reaching them as a relative perturbation of the same size:              u |A|, u |M| twice: ux = 2 |A|, 2 |M|
      l_k (float32 lanes): the roundings of the earlier branch outputs summed into them:          ux = |l_k|
      m_k = r0 l_k + p0k A: both:                                                      ux = |r0 l_k| + 2 |p0k A|
      d_k, d'_k (float32 lane gradients): the bf16(dY) operand of each dX GEMM that forms them, and the later layers'
        forward roundings reaching them as a relative perturbation of the same size:       2 u |d| (q_gain's dy)
    so each summand x g moves by at most a = (ux + 2 |x|) u |g| (products of two roundings far below). ValueEmbedding's
    are sums of the same kind over every position p that gets it and all N kv_dim entries: g(scale) = sum s_p dv_p h and
    g(s_p) = sum dv_p base (h = proj(ve_embed[t]), base = scale h, dv_p the gradient of position p's v): x = h or base,
    ux = 2 |x| when h is the projection's bf16 GEMM output (0 for the table's float32 rows), g = s_p dv_p or dv_p, a lane
    gradient's kind. Under the
    probabilistic model of rounding errors (independent, mean zero, |delta_i| <= a_i; Higham and Mary, SIAM J. Sci.
    Comput. 41 (2019)), Hoeffding's inequality bounds the sum: P(|sum delta_i| > lam sqrt(sum a_i^2)) <= 2 exp(-lam^2 / 2);
    lam = 6 puts that below 3e-8 per entry, as q_gain_flash_bound. The squares add over every position that runs the
    layer and every micro-step. Returns lam sqrt(sq). The same on the flash and the SIMT paths: these roundings are the
    bf16 path's own (attention's extra ones under flash reach ao and the lanes as one more perturbation of the size of
    the ones counted, which the 2 u of each factor's upstream term stands for)."""
    return 6.0 * sq.sqrt()


def exclusive_self_attention(y: Tensor, v: Tensor) -> Tensor:
    """XSA: y [B, H, T, D] minus its component along the token's own value vector: y_h - (y_h . vhat) vhat,
    vhat = v_g / ||v_g|| (v [B, Hkv, T, D] after c_v, no norm, no RoPE; g = h // (H/Hkv); no eps)."""
    if v.size(1) != y.size(1):
        v = v.repeat_interleave(y.size(1) // v.size(1), dim=1)  # [B, H, T, D]
    vhat = v / v.norm(dim=-1, keepdim=True)
    return y - (y * vhat).sum(dim=-1, keepdim=True) * vhat


# ====================================================================================================
# 3. Model
# ====================================================================================================
# Module and parameter names, registration order and shapes follow train_gpt.py, so state_dicts are
# interchangeable. state_dict order (own parameters before children's): skip_weights, tok_emb.weight,
# then per block i: attn_scale, mlp_scale, resid_mix, attn.q_gain, attn.c_q.weight, attn.c_k.weight,
# attn.c_v.weight, attn.proj.weight, mlp.fc.weight, mlp.proj.weight; then lm_head.weight when untied.
# The architecture features add (names as in the records): skip_gates [S, dim] after skip_weights;
# blocks.i.lane_rho [2], blocks.i.lane_mix [2, 2] after resid_mix (i >= PARALLEL_FROM >= 1);
# blocks.i.attn.gate_w [H, 12] after q_gain; then bigram.scale [1], bigram.embed.weight [V_b, d_b],
# bigram.proj.weight [dim, d_b], smear.gate_w [12], smear.lam [1] at the end. Checkpoints are read by name;
# parameter_table() lists the same tensors in the order of golf_infer.c's parameter table.


class RMSNorm(nn.Module):
    """No weight; eps fixed to RMS_NORM_EPS (the baseline's eps=None resolves to it in float32)."""

    def forward(self, x: Tensor) -> Tensor:
        return rms_norm(x)


class CastedLinear(nn.Linear):
    """Weight kept in its own dtype, cast to the input's at the matmul (bf16 under autocast). With
    `fake_quant` = (scheme, group) set (quantization-aware training, section 8b) the matmul uses the weight
    as golf_export would export it, with a straight-through gradient."""

    fake_quant = None   # (scheme, group) while quantization-aware training is on

    def forward(self, x: Tensor) -> Tensor:
        bias = self.bias.to(x.dtype) if self.bias is not None else None
        w = self.weight if self.fake_quant is None else ste_fake_quant(self.weight, *self.fake_quant)
        if CPU_AMP["on"] and bias is None:
            return linear(x, w)
        return F.linear(x, w.to(x.dtype), bias)


class Rotary(nn.Module):
    """cos/sin tables cached for the last (seq_len, device, precision, mode). inv_freq is a non-persistent buffer as in
    the baseline (not in the state_dict); the tables are computed by rotary_tables in the model's working
    precision (float64 if the model was cast to float64, else float32) or, with table_mode "bf16", the
    way train_gpt.py computes them."""

    def __init__(self, dim: int, base: float = 10000.0):
        super().__init__()
        self.dim = dim
        self.base = base
        self.table_mode = "exact"
        inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self._seq_len_cached = 0
        self._key_cached: tuple | None = None
        self._cos_cached: Tensor | None = None
        self._sin_cached: Tensor | None = None

    def forward(self, seq_len: int, device, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        table_dtype = torch.float64 if self.inv_freq.dtype == torch.float64 else torch.float32
        key = (table_dtype, self.table_mode)
        if (self._cos_cached is None or self._sin_cached is None or self._seq_len_cached != seq_len
                or self._cos_cached.device != device or self._key_cached != key):
            self._cos_cached, self._sin_cached = rotary_tables(seq_len, self.dim, self.base, table_dtype, device,
                                                               self.table_mode)
            self._seq_len_cached = seq_len
            self._key_cached = key
        return self._cos_cached.to(dtype=dtype), self._sin_cached.to(dtype=dtype)


def set_rope_table_mode(model: nn.Module, mode: str) -> None:
    for module in model.modules():
        if isinstance(module, Rotary):
            module.table_mode = mode


class Documents:
    """DOC_ATTENTION's document segments of a batch input_ids [B, T] (the 2026-04-10 record's cu_seqlens): each run of
    `rows` rows is one stream (training: a micro-batch's span, which the record packs into one row; evaluation: each
    window alone, rows = 1); a document starts at the stream's first token and at every BOS, and is cut into segments
    of seq_len tokens from its start (the record's max_doc_len). A token attends to the keys of its segment up to
    itself; its RoPE position is its place in the segment (the record's positions in the packed row differ from these
    by the segment's start, which no query-key pair of a segment sees)."""

    def __init__(self, input_ids: Tensor, rows: int, seq_len: int):
        B, T = input_ids.shape
        if rows < 1 or B % rows:
            fail(f"a batch of {B} rows does not split into streams of {rows} rows")
        self.B, self.T, self.rows = B, T, rows
        ids = input_ids.reshape(B // rows, rows * T)                                     # [G, S] streams
        n = torch.arange(ids.size(1), device=ids.device)
        first = ids == BOS_ID
        first[:, 0] = True
        doc = torch.where(first, n, torch.zeros_like(n)).cummax(dim=1).values            # its document's first token
        self.starts = doc + torch.div(n - doc, seq_len, rounding_mode="floor") * seq_len  # [G, S] its segment's
        self.positions = n - self.starts                                                 # [G, S] in 0..seq_len-1
        self.allowed = ((n[None, :] <= n[:, None])[None] & (n[None, None, :] >= self.starts[:, :, None]))[:, None]  # [G, 1, S, S]

    def group(self, x: Tensor) -> Tensor:
        """[B, h, T, D] -> [G, h, rows * T, D]: each stream's rows one after another."""
        B, h, T, D = x.shape
        return x.reshape(B // self.rows, self.rows, h, T, D).transpose(1, 2).reshape(B // self.rows, h, self.rows * T, D)

    def ungroup(self, x: Tensor) -> Tensor:
        G, h, S, D = x.shape
        return x.reshape(G, h, self.rows, self.T, D).transpose(1, 2).reshape(self.B, h, self.T, D)

    def rope(self, rotary: "Rotary", device, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """cos, sin [B, 1, T, R/2] at every token's position in its segment (rows of the rotary's own tables)."""
        cos, sin = rotary(self.positions.size(1), device, dtype)
        at = lambda table: table[0, 0][self.positions].reshape(self.B, self.T, -1)[:, None]   # noqa: E731
        return at(cos), at(sin)


class CausalSelfAttention(nn.Module):
    """Causal GQA attention. rope_dims: R rotated dims per head (R = head_dim: the baseline). xsa: subtract
    from each head's output its component along the token's own normalised value vector. out_gate: the
    attention output gate, y_h *= sigmoid(gate_scale gate_w[h] . x[0:12]) (parameter attn.gate_w [H, 12])."""

    def __init__(self, dim: int, num_heads: int, num_kv_heads: int, rope_base: float, qk_gain_init: float,
                 rope_dims: int = 0, xsa: bool = False, out_gate: bool = False, gate_scale: float = 1.0):
        super().__init__()
        self.num_heads = num_heads
        self.num_kv_heads = num_kv_heads
        self.head_dim = dim // num_heads
        kv_dim = num_kv_heads * self.head_dim
        self.c_q = CastedLinear(dim, dim, bias=False)      # weight [dim, dim]
        self.c_k = CastedLinear(dim, kv_dim, bias=False)   # weight [kv_dim, dim]
        self.c_v = CastedLinear(dim, kv_dim, bias=False)   # weight [kv_dim, dim]
        self.proj = CastedLinear(dim, dim, bias=False)     # weight [dim, dim], zero at init
        self.proj._zero_init = True
        self.q_gain = nn.Parameter(torch.full((num_heads,), qk_gain_init, dtype=torch.float32))  # [H]
        self.rotary = Rotary(rope_dims or self.head_dim, base=rope_base)
        self.xsa = xsa
        self.gate_w = nn.Parameter(torch.zeros(num_heads, 12, dtype=torch.float32)) if out_gate else None  # [H, 12]
        self.gate_scale = gate_scale

    def forward(self, x: Tensor, docs: Documents | None = None, ve: Tensor | None = None) -> Tensor:
        """x [B, T, dim]; docs (DOC_ATTENTION): attention within its segments, RoPE at positions in them; ve [B, T, kv_dim]
        (ValueEmbedding at this position): added to v before attention and XSA read it (--device cpu --amp: the sum
        rounded to bf16, autocast's bf16 add)."""
        bsz, seqlen, dim = x.shape  # x [B, T, dim]
        q = self.c_q(x).reshape(bsz, seqlen, self.num_heads, self.head_dim).transpose(1, 2)     # [B, H, T, D]
        k = self.c_k(x).reshape(bsz, seqlen, self.num_kv_heads, self.head_dim).transpose(1, 2)  # [B, Hkv, T, D]
        v = self.c_v(x)
        if ve is not None:
            v = v + ve.to(dtype=v.dtype)
            if CPU_AMP["on"]:
                v = RoundBf16.apply(v)
        v = v.reshape(bsz, seqlen, self.num_kv_heads, self.head_dim).transpose(1, 2)            # [B, Hkv, T, D]
        q = rms_norm(q)
        k = rms_norm(k)
        cos, sin = self.rotary(seqlen, x.device, q.dtype) if docs is None else docs.rope(self.rotary, x.device, q.dtype)
        q = apply_partial_rotary(q, cos, sin)
        k = apply_partial_rotary(k, cos, sin)
        q = q * self.q_gain.to(dtype=q.dtype)[None, :, None, None]
        if docs is not None:   # each stream's rows as one sequence, masked to the segments
            q, k, v_att, allowed = docs.group(q), docs.group(k), docs.group(v), docs.allowed
        else:
            v_att, allowed = v, None
        y = causal_attention(q, k, v_att, allowed)                      # [B, H, T, D] (grouped: [G, H, S, D])
        if FLASH_BOUND["on"] and y.requires_grad:   # debug-state: q_gain_flash_bound once dy is known
            def add_bound(dy, q=q.detach(), k=k.detach(), v=v_att.detach()):
                b = q_gain_flash_bound(q, k, v, dy, self.q_gain, allowed)
                self._qgain_bound = b if getattr(self, "_qgain_bound", None) is None else self._qgain_bound + b
            y.register_hook(add_bound)
        if docs is not None:
            y = docs.ungroup(y)
        if self.xsa:
            y = exclusive_self_attention(y, v)
        if self.gate_w is not None:
            gate = torch.sigmoid(self.gate_scale * F.linear(x[..., :12], self.gate_w.to(x.dtype)))  # [B, T, H]
            y = y * gate.transpose(1, 2)[..., None]
        y = y.transpose(1, 2).contiguous().reshape(bsz, seqlen, dim)    # [B, T, dim], heads concatenated
        return self.proj(y)


class MLP(nn.Module):
    """proj(act(fc(x))) with act(u) = relu(u)^2, or (u > 0 ? u : slope u)^2 when leaky_slope != 0."""

    def __init__(self, dim: int, hidden: int, leaky_slope: float = 0.0):
        super().__init__()
        self.fc = CastedLinear(dim, hidden, bias=False)    # weight [hidden, dim]
        self.proj = CastedLinear(hidden, dim, bias=False)  # weight [dim, hidden], zero at init
        self.proj._zero_init = True
        self.leaky_slope = leaky_slope

    def forward(self, x: Tensor) -> Tensor:
        h = self.fc(x)
        h = torch.relu(h) if self.leaky_slope == 0 else F.leaky_relu(h, negative_slope=self.leaky_slope)
        return self.proj(h.square())


class Block(nn.Module):
    """Physical layer `layer` of cfg. Sequential positions run `forward` on one stream; parallel ones
    (cfg.parallel_positions) run on two lanes: `forward_lanes` (PARALLEL_FORM=0429: parameters lane_rho [2],
    lane_mix [2, 2]) or `forward_lanes_0331` (0331, 0331-virtual: parallel_resid [2], parallel_post [2, 2])."""

    def __init__(self, cfg: Config, layer: int):
        super().__init__()
        dim = cfg.model_dim
        self.attn_norm = RMSNorm()
        self.mlp_norm = RMSNorm()
        self.attn = CausalSelfAttention(dim, cfg.num_heads, cfg.num_kv_heads, cfg.rope_base, cfg.qk_gain_init,
                                        rope_dims=cfg.rope_width, xsa=layer >= cfg.num_layers - cfg.xsa_last_n,
                                        out_gate=bool(cfg.attn_out_gate), gate_scale=cfg.attn_out_gate_scale)
        self.mlp = MLP(dim, cfg.mlp_width, cfg.mlp_leaky_slope)
        self.attn_scale = nn.Parameter(torch.ones(dim, dtype=torch.float32))                     # [dim]
        self.mlp_scale = nn.Parameter(torch.ones(dim, dtype=torch.float32))                      # [dim]
        self.resid_mix = nn.Parameter(torch.stack((torch.ones(dim), torch.zeros(dim))).float())  # [2, dim]
        self.ln_scale = 1.0 / math.sqrt(layer + 1) if cfg.ln_scale else None  # LN_SCALE: s_l
        self.form = cfg.parallel_form
        if layer in cfg.lane_layers and self.form == "0429":
            self.lane_rho = nn.Parameter(torch.full((2,), 1.1, dtype=torch.float32))  # [2]
            self.lane_mix = nn.Parameter(torch.ones(2, 2, dtype=torch.float32))       # [2, 2]
        elif layer in cfg.lane_layers:
            self.parallel_resid = nn.Parameter(torch.full((2,), 1.1 ** 0.5, dtype=torch.float32))  # [2]
            self.parallel_post = nn.Parameter(torch.ones(2, 2, dtype=torch.float32))               # [2, 2]

    def normed(self, norm: RMSNorm, x: Tensor) -> Tensor:
        """norm(x), times s_l = 1/sqrt(layer + 1) with LN_SCALE."""
        y = norm(x)
        return y if self.ln_scale is None else y * self.ln_scale

    def forward(self, x: Tensor, x0: Tensor, docs: Documents | None = None, ve: Tensor | None = None) -> Tensor:
        mix = self.resid_mix.to(dtype=x.dtype)
        x = mix[0][None, None, :] * x + mix[1][None, None, :] * x0
        attn_out = self.attn(self.normed(self.attn_norm, x), docs, ve)
        x = x + self.attn_scale.to(dtype=x.dtype)[None, None, :] * attn_out
        x = x + self.mlp_scale.to(dtype=x.dtype)[None, None, :] * self.mlp(self.normed(self.mlp_norm, x))
        return x

    def forward_lanes(self, lane0: Tensor, lane1: Tensor, x0: Tensor, docs: Documents | None = None,
                      ve: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Parallel residuals: attention reads resid_mix(lane0, x0), the MLP reads lane1 as it came in;
        lane_k <- lane_rho[k] lane_k + lane_mix[k, 0] attn + lane_mix[k, 1] mlp, lane0 the raw lane (not the mix)."""
        mix = self.resid_mix.to(dtype=lane0.dtype)
        attn_in = mix[0][None, None, :] * lane0 + mix[1][None, None, :] * x0   # what attention reads; lane0 goes on raw
        attn = self.attn_scale.to(dtype=lane0.dtype)[None, None, :] * self.attn(self.normed(self.attn_norm, attn_in), docs, ve)
        mlp = self.mlp_scale.to(dtype=lane0.dtype)[None, None, :] * self.mlp(self.normed(self.mlp_norm, lane1))
        rho, pm = self.lane_rho.to(dtype=lane0.dtype), self.lane_mix.to(dtype=lane0.dtype)
        return (rho[0] * lane0 + pm[0, 0] * attn + pm[0, 1] * mlp,
                rho[1] * lane1 + pm[1, 0] * attn + pm[1, 1] * mlp)

    def forward_lanes_0331(self, lane0: Tensor, lane1: Tensor, x0: Tensor, docs: Documents | None = None,
                           ve: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """03-31's parallel residuals: attention reads resid_mix(lane0, x0) and writes into both lanes,
        lane_k <- r[0] lane_k + p[0, k] attn; then the MLP reads resid_mix(lane1, x0) of the updated lane 1,
        lane_k <- r[1] lane_k + p[1, k] mlp (r = parallel_resid, p = parallel_post [branch, lane])."""
        mix = self.resid_mix.to(dtype=lane0.dtype)
        r, p = self.parallel_resid.to(dtype=lane0.dtype), self.parallel_post.to(dtype=lane0.dtype)
        l0_in, l1_in = lane0, lane1
        attn_in = mix[0][None, None, :] * lane0 + mix[1][None, None, :] * x0
        attn = self.attn_scale.to(dtype=lane0.dtype)[None, None, :] * self.attn(self.normed(self.attn_norm, attn_in), docs, ve)
        lane0, lane1 = r[0] * lane0 + p[0, 0] * attn, r[0] * lane1 + p[0, 1] * attn
        mlp_in = mix[0][None, None, :] * lane1 + mix[1][None, None, :] * x0
        mlp = self.mlp_scale.to(dtype=lane0.dtype)[None, None, :] * self.mlp(self.normed(self.mlp_norm, mlp_in))
        out0, out1 = r[1] * lane0 + p[1, 0] * mlp, r[1] * lane1 + p[1, 1] * mlp
        if FLASH_BOUND["on"] and out0.requires_grad:   # debug-state: lane_scale_bound's squares, once each gradient is known
            l0, l1, m0, m1, A, M = (t.detach() for t in (l0_in, l1_in, lane0, lane1, attn, mlp))
            if getattr(self, "_lane_sq", None) is None:
                self._lane_sq = {"parallel_resid": torch.zeros(2, dtype=torch.float64), "parallel_post": torch.zeros(2, 2, dtype=torch.float64)}
            sq_r, sq_p = self._lane_sq["parallel_resid"], self._lane_sq["parallel_post"]
            rv, pv = r.detach(), p.detach()

            def on_out(k, m):
                def hook(d):   # d: the gradient of out_k -> g(r1) and g(p1k)
                    sq_r[1] += lane_scale_rounding_sq(m, (rv[0] * (l0 if k == 0 else l1)).abs() + 2 * (pv[0, k] * A).abs(), d)
                    sq_p[1, k] += lane_scale_rounding_sq(M, 2 * M.abs(), d)
                return hook

            def on_mid(k, lk):
                def hook(d):   # d: the gradient of m_k -> g(r0) and g(p0k)
                    sq_r[0] += lane_scale_rounding_sq(lk, lk.abs(), d)
                    sq_p[0, k] += lane_scale_rounding_sq(A, 2 * A.abs(), d)
                return hook
            out0.register_hook(on_out(0, m0))
            out1.register_hook(on_out(1, m1))
            lane0.register_hook(on_mid(0, l0))
            lane1.register_hook(on_mid(1, l1))
        return out0, out1


class BigramHash(nn.Module):
    """e += scale * proj(embed[hash(t_{i-1}, t_i)]): parameters bigram.embed.weight [V_b, d_b] (N(0, 0.02)),
    bigram.proj.weight [d, d_b] (zero at init), bigram.scale [1] (0.05)."""

    def __init__(self, vocab: int, bigram_dim: int, dim: int):
        super().__init__()
        self.vocab = vocab
        self.scale = nn.Parameter(torch.full((1,), 0.05, dtype=torch.float32))  # [1]
        self.embed = nn.Embedding(vocab, bigram_dim)                             # weight [V_b, d_b]
        self.proj = CastedLinear(bigram_dim, dim, bias=False)                    # weight [dim, d_b], zero at init
        self.proj._zero_init = True

    def forward(self, input_ids: Tensor) -> Tensor:
        """input_ids [B, T] -> [B, T, dim]"""
        h = self.proj(self.embed(bigram_hash(input_ids, self.vocab)))
        return self.scale.to(dtype=h.dtype) * h


def bigram_hash(input_ids: Tensor, vocab: int) -> Tensor:
    """input_ids [..., T] int64 -> BigramHash rows [..., T]: V_b - 1 at position 0, else
    ((36313 t_i) XOR (27191 t_{i-1})) mod (V_b - 1), in int64 on the raw ids."""
    ids = input_ids.long()
    out = torch.full_like(ids, vocab - 1)
    out[..., 1:] = torch.bitwise_xor(36313 * ids[..., 1:], 27191 * ids[..., :-1]) % (vocab - 1)
    return out


class ValueEmbedding(nn.Module):
    """ValueEmbedding's base (03-31): scale * proj(embed[t]): parameters ve_shared.embed.weight [V, d_ve] (N(0, 0.01)),
    ve_shared.proj.weight [kv_dim, d_ve] (zero at init; none when d_ve = kv_dim), ve_shared.scale [1] (0.1)."""

    def __init__(self, vocab: int, ve_dim: int, kv_dim: int):
        super().__init__()
        self.embed = nn.Embedding(vocab, ve_dim)                                              # weight [V, d_ve]
        self.proj = CastedLinear(ve_dim, kv_dim, bias=False) if ve_dim != kv_dim else None    # weight [kv_dim, d_ve]
        if self.proj is not None:
            self.proj._zero_init = True
        self.scale = nn.Parameter(torch.full((1,), 0.1, dtype=torch.float32))               # [1]

    def projected(self, input_ids: Tensor) -> Tensor:
        """proj(embed[t]) (the rows themselves without a projection): input_ids [B, T] -> [B, T, kv_dim]"""
        h = self.embed(input_ids)
        return h if self.proj is None else self.proj(h)

    def forward(self, input_ids: Tensor) -> Tensor:
        """input_ids [B, T] -> [B, T, kv_dim]"""
        h = self.projected(input_ids)
        return h * self.scale.to(dtype=h.dtype)


class SmearGate(nn.Module):
    """x_t += lam * sigmoid(gate_w . x_t[0:12]) * x_{t-1} for t >= 1 and tokens other than BOS (x_{t-1}
    taken before smearing). Parameters smear.gate_w [12], smear.lam [1], zero at init."""

    def __init__(self):
        super().__init__()
        self.gate_w = nn.Parameter(torch.zeros(12, dtype=torch.float32))  # [12]
        self.lam = nn.Parameter(torch.zeros(1, dtype=torch.float32))      # [1]

    def forward(self, x: Tensor, input_ids: Tensor) -> Tensor:
        """x [B, T, dim], input_ids [B, T] -> [B, T, dim]"""
        gate = torch.sigmoid(F.linear(x[..., :12], self.gate_w.to(x.dtype)[None, :]))  # [B, T, 1]
        on = input_ids != BOS_ID
        on[:, 0] = False
        prev = torch.cat((torch.zeros_like(x[:, :1]), x[:, :-1]), dim=1)                # x_{t-1}
        return x + (self.lam.to(dtype=x.dtype) * gate * on[..., None].to(x.dtype)) * prev


class GPT(nn.Module):
    """The model of a Config. Layers run in a schedule (encoder, decoder) of physical layer indices: the
    default one (first NUM_LAYERS // 2, the rest) or, when LOOP_ENCODER / LOOP_DECODER are set, the loop
    one (set_schedule). A schedule with ns = min(len(enc), len(dec)) skips pushes the outputs of its last ns
    encoder positions; decoder position i < ns takes the skip pushed (ns - 1 - i)-th before its block
    (apply_skip: x + w skip, or lerp(w skip, x, sigmoid(gate)) with SKIP_GATES), on lane 0 only when the
    block is parallel (the lanes split from one stream first, lane 1 without the skip). With
    PARALLEL_FORM=0331 (or 0331-virtual) a parallel encoder position pushes both lanes and a parallel decoder
    position takes the skip into both lanes, each its own lane of the pushed pair (one stream: into both);
    its lanes never merge before the final mean (model_config_problem refuses a schedule that would)."""

    def __init__(self, cfg: Config):
        super().__init__()
        problem = model_config_problem(cfg)
        if problem:
            fail(problem)
        self.tie_embeddings = bool(cfg.tie_embeddings)
        self.tied_embed_init_std = cfg.tied_embed_init_std
        self.doc_attention, self.train_seq_len = bool(cfg.doc_attention), cfg.train_seq_len
        self.logit_softcap = cfg.logit_softcap
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.model_dim)  # weight [V, dim]
        self.default_schedule, self.loop_schedule = cfg.default_schedule, cfg.loop_schedule
        self.parallel_form = cfg.parallel_form
        self.parallel = {looped: cfg.parallel_positions(*sched) for looped, sched in
                         ((False, self.default_schedule), (True, self.loop_schedule)) if sched is not None}
        self.looped = self.loop_schedule is not None
        self.skip_weights = nn.Parameter(torch.ones(cfg.num_skip_rows, cfg.model_dim, dtype=torch.float32))  # [S, dim]
        self.blocks = nn.ModuleList([Block(cfg, layer) for layer in range(cfg.num_layers)])
        self.final_norm = RMSNorm()
        self.lm_head = None if self.tie_embeddings else CastedLinear(cfg.model_dim, cfg.vocab_size, bias=False)  # [V, dim]
        if self.lm_head is not None:
            self.lm_head._zero_init = True
        # the features' modules are made after the baseline's and on a forked generator, so the baseline's
        # tensors get the baseline's random draws (their constructors' draws are all replaced by the init)
        with torch.random.fork_rng(devices=[]):
            self.bigram = BigramHash(cfg.bigram_vocab_size, cfg.bigram_dim, cfg.model_dim) if cfg.bigram_vocab_size else None
        self.smear = SmearGate() if cfg.smear_gate else None
        self.ve_positions = cfg.ve_positions   # ValueEmbedding: one shared base, a scale per listed position
        with torch.random.fork_rng(devices=[]):
            self.ve_shared = ValueEmbedding(cfg.vocab_size, cfg.ve_dim, cfg.num_kv_heads * cfg.head_dim) if self.ve_positions else None
        self.ve_layer_scales = nn.Parameter(torch.ones(len(self.ve_positions), dtype=torch.float32)) if self.ve_positions else None
        self.skip_gates = nn.Parameter(torch.zeros_like(self.skip_weights)) if cfg.skip_gates else None  # [S, dim]
        self._init_weights()

    @classmethod
    def from_config(cls, cfg: Config) -> "GPT":
        return cls(cfg)

    def _init_weights(self) -> None:
        if self.tie_embeddings:
            nn.init.normal_(self.tok_emb.weight, mean=0.0, std=self.tied_embed_init_std)
        if self.bigram is not None:
            nn.init.normal_(self.bigram.embed.weight, mean=0.0, std=0.02)
        if self.ve_shared is not None:
            nn.init.normal_(self.ve_shared.embed.weight, mean=0.0, std=0.01)
        for module in self.modules():
            if isinstance(module, nn.Linear) and getattr(module, "_zero_init", False):
                nn.init.zeros_(module.weight)

    def set_schedule(self, looped: bool) -> None:
        """Run the loop schedule (looped=True, the default when one is set: eval and export) or the default one."""
        if looped and self.loop_schedule is None:
            fail("set_schedule(looped=True): this model has no LOOP_ENCODER / LOOP_DECODER schedule")
        self.looped = looped

    def schedule(self) -> tuple[list[int], list[int]]:
        return self.loop_schedule if self.looped else self.default_schedule

    def embed(self, input_ids: Tensor) -> Tensor:
        """x0 [B, T, dim]: rms_norm(SmearGate(tok_emb[t] (+ BigramHash))): the smear acts on the raw embedding."""
        e = self.tok_emb(input_ids)
        if self.bigram is not None:
            e = e + self.bigram(input_ids).to(dtype=e.dtype)
        if self.smear is not None:
            e = self.smear(e, input_ids)
        return rms_norm(e)

    def apply_skip(self, i: int, x: Tensor, skip: Tensor) -> Tensor:
        """Decoder position i's skip into x: x + w skip, or with SKIP_GATES lerp(w skip, x, g) =
        g x + (1 - g) w skip, g = sigmoid(skip_gates[i]), w = skip_weights[i]."""
        scaled = self.skip_weights[i].to(dtype=skip.dtype)[None, None, :] * skip
        if self.skip_gates is None:
            return x + scaled
        g = torch.sigmoid(self.skip_gates[i].to(dtype=skip.dtype))[None, None, :]
        return g * x + (1 - g) * scaled

    def run_block(self, layer: int, par: bool, x: Tensor | None, lanes: tuple | None, x0: Tensor,
                  docs: Documents | None = None, ve: Tensor | None = None) -> tuple:
        """One block on the stream: returns (x, None) after a sequential block, (None, lanes) after a
        parallel one (par). A parallel block starting on a single stream copies it into both lanes; a sequential
        block after parallel ones first merges them, x = (lane0 + lane1) / 2."""
        block = self.blocks[layer]
        if par:
            lanes = lanes if lanes is not None else (x, x)
            return None, (block.forward_lanes(*lanes, x0, docs, ve) if self.parallel_form == "0429" else block.forward_lanes_0331(*lanes, x0, docs, ve))
        if lanes is not None:
            x = (lanes[0] + lanes[1]) / 2
        return block(x, x0, docs, ve), None

    def value_embeds(self, input_ids: Tensor, positions: int) -> list:
        """ValueEmbedding's addend to v at each of `positions` schedule positions: s_p * base (the base computed once),
        None where a position gets none (and everywhere when it is off)."""
        if self.ve_shared is None:
            return [None] * positions
        h = self.ve_shared.projected(input_ids)
        base = h * self.ve_shared.scale.to(dtype=h.dtype)
        out = [base * self.ve_layer_scales[self.ve_positions.index(p)].to(dtype=base.dtype) if p in self.ve_positions else None
               for p in range(positions)]
        if FLASH_BOUND["on"] and base.requires_grad:   # debug-state: lane_scale_bound's squares of the VE scales' gradients
            if getattr(self, "_lane_sq", None) is None:
                self._lane_sq = {"ve_shared.scale": torch.zeros(1, dtype=torch.float64),
                                 "ve_layer_scales": torch.zeros(len(self.ve_positions), dtype=torch.float64)}
            hd, bd, rounded = h.detach(), base.detach(), self.ve_shared.proj is not None   # a bf16 GEMM output, or the table's rows
            for j, p in enumerate(self.ve_positions):
                def hook(dv, j=j, s=float(self.ve_layer_scales[j])):   # dv: the gradient of v at position p
                    self._lane_sq["ve_shared.scale"] += lane_scale_rounding_sq(hd, 2 * hd.abs() if rounded else 0 * hd, s * dv)
                    self._lane_sq["ve_layer_scales"][j] += lane_scale_rounding_sq(bd, 2 * bd.abs() if rounded else 0 * bd, dv)
                if p < positions:
                    out[p].register_hook(hook)
        return out

    def forward_logits(self, input_ids: Tensor, doc_rows: int = 1) -> Tensor:
        """input_ids [B, T] int64 -> logits after the softcap [B, T, V]. DOC_ATTENTION: documents run across each
        doc_rows consecutive rows (Documents; training passes a span's rows, evaluation 1)."""
        docs = Documents(input_ids, doc_rows, self.train_seq_len) if self.doc_attention else None
        x0 = self.embed(input_ids)  # [B, T, dim]
        x, lanes = x0, None
        encoder, decoder = self.schedule()
        par = self.parallel[self.looped]
        ns = num_skips(encoder, decoder)
        skips: list = []   # a tensor, or (03-31's form) the pair of lanes
        ves = self.value_embeds(input_ids, len(encoder) + len(decoder))
        for e, layer in enumerate(encoder):
            x, lanes = self.run_block(layer, par[e], x, lanes, x0, docs, ves[e])
            if e >= len(encoder) - ns:
                skips.append(x if lanes is None else (lanes[0] + lanes[1]) / 2 if self.parallel_form == "0429" else lanes)
        for i, layer in enumerate(decoder):
            p = par[len(encoder) + i]
            if i < ns:   # lanes split (or merged) first; the skip goes into lane 0 only (04-29) or into both lanes (03-31)
                if p and lanes is None:
                    x, lanes = None, (x, x)
                elif not p and lanes is not None:
                    x, lanes = (lanes[0] + lanes[1]) / 2, None
                skip = skips[ns - 1 - i]
                if lanes is None:
                    x = self.apply_skip(i, x, skip)
                elif self.parallel_form == "0429":
                    lanes = (self.apply_skip(i, lanes[0], skip), lanes[1])
                else:
                    skip = skip if isinstance(skip, tuple) else (skip, skip)
                    lanes = (self.apply_skip(i, lanes[0], skip[0]), self.apply_skip(i, lanes[1], skip[1]))
            x, lanes = self.run_block(layer, p, x, lanes, x0, docs, ves[len(encoder) + i])
        if lanes is not None:
            x = (lanes[0] + lanes[1]) / 2
        x = self.final_norm(x)
        if self.tie_embeddings:
            logits_proj = linear(x, self.tok_emb.weight)
        else:
            logits_proj = self.lm_head(x)
        return self.logit_softcap * torch.tanh(logits_proj / self.logit_softcap)

    def forward(self, input_ids: Tensor, target_ids: Tensor | None = None, reduction: str = "mean", doc_rows: int = 1) -> Tensor:
        """Mean cross-entropy (the baseline's forward); reduction='none' gives the per-token NLL [B, T];
        no targets gives the logits. bf16 logits are upcast to float32 first, as in the baseline. doc_rows:
        forward_logits'."""
        logits = self.forward_logits(input_ids, doc_rows)
        if target_ids is None:
            return logits
        if logits.dtype in LOW_PRECISION:
            logits = logits.float()
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), target_ids.reshape(-1), reduction=reduction)
        return loss if reduction != "none" else loss.view(target_ids.shape)


def parameter_table(cfg: Config) -> list[tuple[str, tuple[int, ...], str]]:
    """(name, shape, class) of every tensor in the order of golf_infer.c's parameter table (classes embed,
    attn, mlp, head, control): tok_emb.weight, [bigram.embed.weight, bigram.proj.weight, bigram.scale],
    [smear.gate_w, smear.lam], [ve_shared.embed.weight, ve_shared.proj.weight (when d_ve != kv_dim), ve_shared.scale,
    ve_layer_scales], per layer attn.c_q/c_k/c_v/proj, mlp.fc/proj, attn.q_gain, attn_scale,
    mlp_scale, resid_mix, [attn.gate_w], [lane_rho, lane_mix | parallel_resid, parallel_post]; skip_weights,
    [skip_gates], [lm_head.weight].
    The same names and shapes as GPT(cfg).state_dict(), whose order is train_gpt.py's."""
    d, kv, hidden, V = cfg.model_dim, cfg.num_kv_heads * cfg.head_dim, cfg.mlp_width, cfg.vocab_size
    table = [("tok_emb.weight", (V, d), "embed")]
    if cfg.bigram_vocab_size:
        table += [("bigram.embed.weight", (cfg.bigram_vocab_size, cfg.bigram_dim), "embed"),
                  ("bigram.proj.weight", (d, cfg.bigram_dim), "mlp"), ("bigram.scale", (1,), "control")]
    if cfg.smear_gate:
        table += [("smear.gate_w", (12,), "control"), ("smear.lam", (1,), "control")]
    if cfg.ve_positions:
        table.append(("ve_shared.embed.weight", (V, cfg.ve_dim), "embed"))
        if cfg.ve_dim != kv:
            table.append(("ve_shared.proj.weight", (kv, cfg.ve_dim), "control"))
        table += [("ve_shared.scale", (1,), "control"), ("ve_layer_scales", (len(cfg.ve_positions),), "control")]
    for layer in range(cfg.num_layers):
        rows = [("attn.c_q.weight", (d, d), "attn"), ("attn.c_k.weight", (kv, d), "attn"),
                ("attn.c_v.weight", (kv, d), "attn"), ("attn.proj.weight", (d, d), "attn"),
                ("mlp.fc.weight", (hidden, d), "mlp"), ("mlp.proj.weight", (d, hidden), "mlp"),
                ("attn.q_gain", (cfg.num_heads,), "control"), ("attn_scale", (d,), "control"),
                ("mlp_scale", (d,), "control"), ("resid_mix", (2, d), "control")]
        if cfg.attn_out_gate:
            rows.append(("attn.gate_w", (cfg.num_heads, 12), "control"))
        if layer in cfg.lane_layers and cfg.parallel_form == "0429":
            rows += [("lane_rho", (2,), "control"), ("lane_mix", (2, 2), "control")]
        elif layer in cfg.lane_layers:
            rows += [("parallel_resid", (2,), "control"), ("parallel_post", (2, 2), "control")]
        table += [(f"blocks.{layer}.{name}", shape, cls) for name, shape, cls in rows]
    table.append(("skip_weights", (cfg.num_skip_rows, d), "control"))
    if cfg.skip_gates:
        table.append(("skip_gates", (cfg.num_skip_rows, d), "control"))
    if not cfg.tie_embeddings:
        table.append(("lm_head.weight", (V, d), "head"))
    return table


# ====================================================================================================
# 4. Initialisation
# ====================================================================================================


def init_model(cfg: Config, random_init: bool = False) -> GPT:
    """The baseline's init for SEED: torch.manual_seed then construction on the CPU generator (the same
    draws in the same order as train_gpt.py), then every value rounded to bf16, which is what
    train_gpt.py's `.bfloat16()` (and `.float()` back for the linears and control tensors) does.

    random_init: afterwards, from a generator seeded with SEED + 1, the zero-init matrices (attn.proj,
    mlp.proj, lm_head) get U(+-1/sqrt(fan_in)) like the other linears, and every control tensor
    (attn_scale, mlp_scale, resid_mix, q_gain, skip_weights) gets N(0, 0.1^2) added, so that a forward
    pass depends on every tensor."""
    torch.manual_seed(cfg.seed)
    model = GPT.from_config(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(torch.bfloat16).float())
    if random_init:
        gen = torch.Generator().manual_seed(cfg.seed + 1)
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, nn.Linear) and getattr(module, "_zero_init", False):
                    bound = 1.0 / math.sqrt(module.weight.size(1))
                    module.weight.copy_((torch.rand(module.weight.shape, generator=gen) * 2 - 1) * bound)
            for name, p in model.named_parameters():
                if any(pattern in name for pattern in CONTROL_TENSOR_NAME_PATTERNS):
                    p.add_(0.1 * torch.randn(p.shape, generator=gen))
    return model


def perturb_model(model: GPT, seed: int) -> None:
    """Move every tensor by O(1) from its init, so that no term vanishes (a zero gate, a mix of [1, 0], a unit
    scale): control tensors, gates and scales (CONTROL_TENSOR_NAME_PATTERNS, and every 1-d tensor) get U(-1, 1)
    added; matrices get U(+-1/sqrt(fan_in)) added (their init's own scale); embeddings N(0, s^2) with s their
    init's std (at least 0.02)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            u = torch.rand(p.shape, generator=gen) * 2 - 1
            if p.ndim < 2 or any(pattern in name for pattern in CONTROL_TENSOR_NAME_PATTERNS):
                p.add_(u.to(p.dtype))
            elif "emb" in name:
                s = max(float(p.float().std()), 0.02)
                p.add_((torch.randn(p.shape, generator=gen) * s).to(p.dtype))
            else:
                p.add_((u / math.sqrt(p.shape[1])).to(p.dtype))


def apply_baseline_dtypes(model: GPT) -> None:
    """The baseline's storage dtypes (--amp): everything bf16, then linears and control/low-dim tensors
    back to float32, which leaves tok_emb.weight in bf16 (trained by Adam in bf16)."""
    model.bfloat16()
    for module in model.modules():
        if isinstance(module, CastedLinear):
            module.float()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim < 2 or any(pattern in name for pattern in CONTROL_TENSOR_NAME_PATTERNS):
                p.data = p.data.float()


# ====================================================================================================
# 5. Checkpoint container
# ====================================================================================================
# Little-endian. Header: 256 int32:
#   h[0] = 20261125 (magic)   h[1] = version (1: no options; 5; 4 is read as 5 (its words 61..63 are 0), 3 also with
#   words 58..60 0; 2 is read
#   without SMEAR_GATE, SKIP_GATES, PARALLEL_FROM)
#   h[2] = number of tensor records
#   h[3] vocab_size  h[4] num_layers  h[5] model_dim  h[6] num_heads  h[7] num_kv_heads
#   h[8] mlp_hidden (the actual MLP width: MLP_HIDDEN, else MLP_MULT * MODEL_DIM)  h[9] tie_embeddings (0/1)
#   h[10] rope_base as float32 bits  h[11] logit_softcap as float32 bits  h[12] train_seq_len
#   h[13] steps trained
#   architecture features (version 2; 0 = off):
#   h[14] mlp_leaky_slope as float32 bits  h[15] bigram_vocab_size  h[16] bigram_dim (0 when bigram is off)
#   h[17] smear_gate  h[18] xsa_last_n  h[19] rope_dims (0 = all)  h[20] ln_scale  h[21] parallel_from
#   h[22] skip_gates  h[23] attn_out_gate  h[24] len(LOOP_ENCODER)  h[25] len(LOOP_DECODER) (0, 0: no loop)
#   h[26 .. 26 + h[24] + h[25]) the encoder then decoder layer indices (at most 32), the rest of 26..57 0
#   h[58] PARALLEL_FORM (0 0429, 1 0331, 2 0331-virtual)  h[59] ATTN_OUT_GATE_SCALE as float32 bits (0: 1)
#   h[60] DOC_ATTENTION  h[61] VE_DIM (0: ValueEmbedding off)  h[62..63] its positions as a 64-bit mask (bit p of
#   word 62 + p // 32; ve_layer_scales in increasing position order)  h[64..255] = 0
# A file whose words 14..255 are all 0 (every baseline model) is written as version 1, byte for byte the
# pre-feature format; any feature makes it version 5 (CKPT_VERSION). Version 1 files are read with every feature off.
# Then h[2] records: int32 name_len, name (UTF-8), int32 dtype (0 float32, 1 int32), int32 ndim,
# int32 dims[ndim], prod(dims) elements row-major. Model weights come first, under their state_dict
# keys in state_dict order; other records (debug.*, grad.*) may follow.

CKPT_MAGIC = 20261125
CKPT_VERSION = 5   # 3: SMEAR_GATE, SKIP_GATES, PARALLEL_FROM in the records' forms (golf_infer.c's version_problem);
                   # 4: words 58, 59, 60 (PARALLEL_FORM, ATTN_OUT_GATE_SCALE, DOC_ATTENTION); 5: words 61..63 (ValueEmbedding)
CKPT_VERSIONS_READ = (1, 2, 3, 4, 5)
CKPT_HEADER_INTS = 256
CKPT_LOOP_WORD = 26   # first word of the loop schedules
CKPT_FORM_WORD = 58   # PARALLEL_FORM, then ATTN_OUT_GATE_SCALE
CKPT_DOC_WORD = 60    # DOC_ATTENTION
CKPT_VE_WORD = 61     # VE_DIM, then the positions' mask (2 words)
DTYPE_CODES = {0: np.dtype("<f4"), 1: np.dtype("<i4")}


def f32_bits(x: float) -> int:
    return struct.unpack("<i", struct.pack("<f", x))[0]


def bits_f32(i: int) -> float:
    return struct.unpack("<f", struct.pack("<i", int(i)))[0]


def to_numpy_record(value) -> np.ndarray:
    """A tensor or array as float32 or int32 little-endian (floats of any width -> float32)."""
    if isinstance(value, Tensor):
        value = value.detach().cpu()
        value = value.float().numpy() if value.is_floating_point() else value.numpy()
    arr = np.asarray(value)
    if arr.dtype.kind == "f":
        return np.array(arr, dtype="<f4", order="C")  # (np.ascontiguousarray would turn 0-d into 1-d)
    if arr.dtype.kind in "iub":
        if arr.size and (arr.min() < -2**31 or arr.max() >= 2**31):
            fail("integer tensor out of int32 range")
        return np.array(arr, dtype="<i4", order="C")
    fail(f"cannot store a tensor of dtype {arr.dtype}")


def header_words(cfg: Config, steps: int, num_records: int) -> np.ndarray:
    """The 256 int32 header of cfg (layout above); version 1 when no feature word is set, else CKPT_VERSION."""
    h = np.zeros(CKPT_HEADER_INTS, dtype="<i4")
    h[:14] = [CKPT_MAGIC, 1, num_records, cfg.vocab_size, cfg.num_layers, cfg.model_dim, cfg.num_heads,
              cfg.num_kv_heads, cfg.mlp_width, int(bool(cfg.tie_embeddings)), f32_bits(cfg.rope_base),
              f32_bits(cfg.logit_softcap), cfg.train_seq_len, steps]
    h[14:24] = [f32_bits(cfg.mlp_leaky_slope), cfg.bigram_vocab_size, cfg.bigram_dim if cfg.bigram_vocab_size else 0,
                cfg.smear_gate, cfg.xsa_last_n, cfg.rope_dims, cfg.ln_scale, cfg.parallel_from, cfg.skip_gates,
                cfg.attn_out_gate]
    if cfg.loop_schedule is not None:
        encoder, decoder = cfg.loop_schedule
        h[24:26] = [len(encoder), len(decoder)]
        h[CKPT_LOOP_WORD:CKPT_LOOP_WORD + len(encoder) + len(decoder)] = encoder + decoder
    h[CKPT_FORM_WORD] = PARALLEL_FORMS.index(cfg.parallel_form)
    h[CKPT_FORM_WORD + 1] = 0 if cfg.attn_out_gate_scale == 1 else f32_bits(cfg.attn_out_gate_scale)
    h[CKPT_DOC_WORD] = cfg.doc_attention
    if cfg.ve_positions:
        mask = sum(1 << p for p in cfg.ve_positions)
        h[CKPT_VE_WORD:CKPT_VE_WORD + 3] = np.array([cfg.ve_dim, mask & 0xFFFFFFFF, mask >> 32], dtype=np.uint32).view("<i4")
    if h[14:].any():
        h[1] = CKPT_VERSION
    return h


def config_from_header(h: np.ndarray) -> Config:
    """The model fields of a header (the others at their defaults; validity is model_config_problem's
    business). The MLP width comes back as MLP_MULT when it is a multiple of model_dim, else as MLP_HIDDEN."""
    h = [int(v) for v in h]
    if h[1] == 1:
        h[14:] = [0] * (CKPT_HEADER_INTS - 14)
    d, hidden = h[5], h[8]
    divisible = d > 0 and hidden % d == 0
    n_enc, n_dec = h[24], h[25]
    loops = h[CKPT_LOOP_WORD:CKPT_LOOP_WORD + max(n_enc, 0) + max(n_dec, 0)] if 0 <= n_enc + n_dec <= MAX_LOOP_POSITIONS else []
    return default_config(vocab_size=h[3], num_layers=h[4], model_dim=d, num_heads=h[6], num_kv_heads=h[7],
                          mlp_mult=hidden // d if divisible else default_config().mlp_mult,
                          mlp_hidden=0 if divisible else hidden, tie_embeddings=h[9], rope_base=bits_f32(h[10]),
                          logit_softcap=bits_f32(h[11]), train_seq_len=h[12], mlp_leaky_slope=bits_f32(h[14]),
                          bigram_vocab_size=h[15], bigram_dim=h[16] if h[15] else default_config().bigram_dim,
                          smear_gate=h[17], xsa_last_n=h[18], rope_dims=h[19], ln_scale=h[20], parallel_from=h[21],
                          skip_gates=h[22], attn_out_gate=h[23], loop_encoder=format_layer_list(loops[:max(n_enc, 0)]),
                          loop_decoder=format_layer_list(loops[max(n_enc, 0):]),
                          parallel_form=PARALLEL_FORMS[h[58]] if 0 <= h[58] < len(PARALLEL_FORMS) else str(h[58]),
                          attn_out_gate_scale=bits_f32(h[59]) if h[59] else 1.0, doc_attention=h[CKPT_DOC_WORD],
                          ve_enabled=int(h[CKPT_VE_WORD] != 0), ve_dim=h[CKPT_VE_WORD] or default_config().ve_dim,
                          ve_layers=format_layer_list(p for p in range(64) if (h[CKPT_VE_WORD + 1 + p // 32] & 0xFFFFFFFF) >> (p % 32) & 1)
                          if h[CKPT_VE_WORD] else default_config().ve_layers)


def header_problem(h: np.ndarray) -> str | None:
    """What is wrong with a header's model words beyond model_config_problem, or None."""
    if int(h[1]) not in CKPT_VERSIONS_READ:
        return f"unsupported checkpoint version {int(h[1])} (this reads versions {', '.join(map(str, CKPT_VERSIONS_READ))})"
    if int(h[1]) < 4 and h[CKPT_DOC_WORD]:   # golf_infer.c's version_problem
        return f"header word {CKPT_DOC_WORD} (doc_attention) is set in a file older than version 4, which has no such word"
    if int(h[1]) < 5 and h[CKPT_VE_WORD:CKPT_VE_WORD + 3].any():
        return "header words 61..63 (ValueEmbedding) are set in a file older than version 5, which has no such words"
    if h[CKPT_VE_WORD] and not h[CKPT_VE_WORD + 1:CKPT_VE_WORD + 3].any() or h[CKPT_VE_WORD + 1:CKPT_VE_WORD + 3].any() and not h[CKPT_VE_WORD]:
        return "header words 61..63: VE_DIM and the ValueEmbedding positions must be set together"
    if int(h[1]) == 2 and (h[17] or h[21] or h[22]):
        return ("written before version 3, when SMEAR_GATE, SKIP_GATES and PARALLEL_FROM computed other forms than the "
                "records': it uses one of them, so its weights mean another model (train it again)")
    if min(int(v) for v in h[3:9]) <= 0:
        return (f"invalid model shape in header (vocab, layers, dim, heads, kv_heads, mlp_hidden): "
                f"{[int(v) for v in h[3:9]]}; all must be positive")
    if int(h[1]) >= 2:
        n_enc, n_dec = int(h[24]), int(h[25])
        if n_enc < 0 or n_dec < 0 or n_enc + n_dec > MAX_LOOP_POSITIONS or (n_enc == 0) != (n_dec == 0):
            return f"invalid loop schedule lengths in header words 24, 25: {n_enc}, {n_dec}"
        if h[CKPT_LOOP_WORD + n_enc + n_dec:CKPT_FORM_WORD].any() or h[CKPT_VE_WORD + 3:].any():
            return (f"header words past the loop schedule (from {CKPT_LOOP_WORD + n_enc + n_dec} to {CKPT_FORM_WORD - 1}, and from "
                    f"{CKPT_VE_WORD + 3}) must be 0")
    return None


def write_container(path, cfg: Config, steps: int, records) -> None:
    """records: iterable of (name, tensor or array). Written to PATH.tmp, then renamed."""
    records = [(name, to_numpy_record(value)) for name, value in records]
    header = header_words(cfg, steps, len(records))
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(header.tobytes())
        for name, arr in records:
            raw = name.encode("utf-8")
            code = 0 if arr.dtype.kind == "f" else 1
            f.write(struct.pack("<i", len(raw)))
            f.write(raw)
            f.write(struct.pack("<ii", code, arr.ndim))
            f.write(struct.pack(f"<{arr.ndim}i", *arr.shape))
            f.write(arr.tobytes())
    os.replace(tmp, path)


@dataclass
class Container:
    config: Config                       # model fields and train_seq_len from the header, rest defaults
    steps: int
    header: np.ndarray                   # the 256 raw int32
    tensors: "OrderedDict[str, np.ndarray]"


def read_container(path) -> Container:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        fail(f"{path}: cannot read checkpoint: {e.strerror}")
    hsize = 4 * CKPT_HEADER_INTS
    if len(data) < hsize:
        fail(f"{path}: not a golf checkpoint ({len(data)} bytes, shorter than the {hsize}-byte header)")
    h = np.frombuffer(data, dtype="<i4", count=CKPT_HEADER_INTS)
    if int(h[0]) != CKPT_MAGIC:
        fail(f"{path}: not a golf checkpoint (magic {int(h[0])}, expected {CKPT_MAGIC})")
    problem = header_problem(h)
    if problem:
        fail(f"{path}: {problem}")
    cfg = config_from_header(h)
    problem = model_config_problem(cfg)
    if problem:
        fail(f"{path}: invalid header: {problem}")
    tensors: OrderedDict[str, np.ndarray] = OrderedDict()
    pos = hsize

    def take(n: int, what: str) -> bytes:
        nonlocal pos
        if n < 0 or pos + n > len(data):
            fail(f"{path}: truncated at byte {pos} while reading {what} (record {len(tensors)})")
        chunk = data[pos:pos + n]
        pos += n
        return chunk

    for _ in range(int(h[2])):
        (name_len,) = struct.unpack("<i", take(4, "a name length"))
        if not 0 < name_len <= 4096:
            fail(f"{path}: bad name length {name_len} in record {len(tensors)}")
        try:
            name = take(name_len, "a name").decode("utf-8")
        except UnicodeDecodeError:
            fail(f"{path}: record {len(tensors)} has a name that is not UTF-8")
        code, ndim = struct.unpack("<ii", take(8, f"the dtype of {name}"))
        if code not in DTYPE_CODES or not 0 <= ndim <= 8:
            fail(f"{path}: record {name!r}: bad dtype code {code} or ndim {ndim}")
        dims = struct.unpack(f"<{ndim}i", take(4 * ndim, f"the dims of {name}"))
        if any(d < 0 for d in dims):
            fail(f"{path}: record {name!r}: negative dimension in {dims}")
        count = int(np.prod(dims, dtype=np.int64))
        dt = DTYPE_CODES[code]
        if name in tensors:
            fail(f"{path}: record {name!r} appears twice")
        tensors[name] = np.frombuffer(take(count * dt.itemsize, f"the data of {name}"), dtype=dt).reshape(dims)
    if pos != len(data):
        fail(f"{path}: {len(data) - pos} unexpected bytes after the last of {int(h[2])} records")
    return Container(cfg, int(h[13]), h.copy(), tensors)


def save(path, model: GPT, cfg: Config, steps: int = 0, extra=()) -> None:
    """Model weights (state_dict order, float32), then the `extra` (name, tensor) records."""
    records = list(model.state_dict().items()) + list(extra)
    write_container(path, cfg, steps, records)


def load(path, dtype: torch.dtype = torch.float32, device="cpu", base_cfg: Config | None = None) -> tuple[GPT, Config, int]:
    """A model from a checkpoint: config from the header (fields it lacks from base_cfg or the
    defaults), every state_dict key must be present with its shape (strict); records named debug.* or
    grad.* are ignored, any other extra record is an error."""
    c = read_container(path)
    cfg = c.config
    if base_cfg is not None:
        cfg = replace(base_cfg, **{f: getattr(cfg, f) for f in SHAPE_FIELDS + FEATURE_FIELDS + ("train_seq_len",)})
    model = GPT.from_config(cfg)
    expected = model.state_dict()
    missing = [k for k in expected if k not in c.tensors]
    unexpected = [k for k in c.tensors if k not in expected and not k.startswith(("debug.", "grad."))]
    if missing or unexpected:
        fail(f"{path}: checkpoint does not match its header's model: missing {missing[:5]}, unexpected {unexpected[:5]}")
    state = OrderedDict()
    for k, ref in expected.items():
        arr = c.tensors[k]
        if tuple(arr.shape) != tuple(ref.shape):
            fail(f"{path}: {k} has shape {tuple(arr.shape)}, the header's model needs {tuple(ref.shape)}")
        if arr.dtype.kind != "f":
            fail(f"{path}: {k} is stored as int32, expected float32")
        state[k] = torch.from_numpy(arr.copy())
    model.load_state_dict(state, strict=True)
    return model.to(device=device, dtype=dtype), cfg, c.steps


# ====================================================================================================
# 6. Data
# ====================================================================================================
# Shards: 256 int32 header (magic 20240520, version 1, token count), then uint16 tokens.

SHARD_MAGIC = 20240520


def load_data_shard(path) -> np.ndarray:
    path = Path(path)
    header = np.fromfile(path, dtype="<i4", count=256)
    if header.size != 256 or int(header[0]) != SHARD_MAGIC or int(header[1]) != 1:
        fail(f"{path}: unexpected shard header (not magic {SHARD_MAGIC} version 1)")
    num_tokens = int(header[2])
    expected = 256 * 4 + 2 * num_tokens
    if path.stat().st_size != expected:
        fail(f"{path}: shard size mismatch: {path.stat().st_size} bytes, header says {expected}")
    return np.fromfile(path, dtype="<u2", count=num_tokens, offset=256 * 4)


def shard_files(pattern: str) -> list[Path]:
    files = [Path(p) for p in sorted(glob.glob(pattern))]
    if not files:
        fail(f"no files found for pattern {pattern}")
    return files


class TokenStream:
    """The shards of a pattern in sorted order, read front to back, wrapping around forever."""

    def __init__(self, pattern: str):
        self.files = shard_files(pattern)
        self.file_idx = 0
        self.tokens = load_data_shard(self.files[0])
        self.pos = 0

    def take(self, n: int) -> np.ndarray:
        chunks, remaining = [], n
        while remaining > 0:
            avail = self.tokens.size - self.pos
            if avail <= 0:
                self.file_idx = (self.file_idx + 1) % len(self.files)
                self.tokens = load_data_shard(self.files[self.file_idx])
                self.pos = 0
                continue
            k = min(remaining, avail)
            chunks.append(self.tokens[self.pos:self.pos + k])
            self.pos += k
            remaining -= k
        return chunks[0] if len(chunks) == 1 else np.concatenate(chunks)


class TrainLoader:
    """train_gpt.py's batches: a step of TRAIN_BATCH_TOKENS = N is SPANS_PER_STEP (8) spans, each taken
    as N/8 + 1 consecutive stream tokens (x = span[:-1], y = span[1:]); the next span starts after the
    previous span's last token (so that token is a target but never an input). This order does not
    depend on the number of GPUs. Returns x, y [N/TRAIN_SEQ_LEN, TRAIN_SEQ_LEN] int64, spans in order."""

    def __init__(self, pattern: str, batch_tokens: int, seq_len: int):
        span = batch_tokens // SPANS_PER_STEP
        if span <= 0 or span % seq_len != 0:
            fail(f"TRAIN_BATCH_TOKENS={batch_tokens} / {SPANS_PER_STEP} = {span} must be a positive multiple "
                 f"of TRAIN_SEQ_LEN={seq_len}")
        self.stream = TokenStream(pattern)
        self.span, self.seq_len = span, seq_len

    def next_batch(self) -> tuple[Tensor, Tensor]:
        xs, ys = [], []
        for _ in range(SPANS_PER_STEP):
            chunk = self.stream.take(self.span + 1).astype(np.int64)
            xs.append(chunk[:-1].reshape(-1, self.seq_len))
            ys.append(chunk[1:].reshape(-1, self.seq_len))
        return torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys))


# ====================================================================================================
# 7. Evaluation
# ====================================================================================================


@dataclass
class ByteLuts:
    base_bytes: np.ndarray         # int16 [n]: UTF-8 bytes of the piece without its leading U+2581
    has_leading_space: np.ndarray  # bool [n]: piece starts with U+2581
    is_boundary: np.ndarray        # bool [n]: control / unknown / unused (and ids past the vocabulary)


def build_sentencepiece_luts(sp, vocab_size: int) -> ByteLuts:
    """Tables of size max(sp vocab, VOCAB_SIZE). Byte pieces count 1 byte."""
    n_sp = int(sp.vocab_size())
    size = max(n_sp, vocab_size)
    base = np.zeros(size, dtype=np.int16)
    space = np.zeros(size, dtype=np.bool_)
    boundary = np.ones(size, dtype=np.bool_)
    for i in range(n_sp):
        if sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i):
            continue
        boundary[i] = False
        if sp.is_byte(i):
            base[i] = 1
            continue
        piece = sp.id_to_piece(i)
        if piece.startswith("\u2581"):
            space[i] = True
            piece = piece[1:]
        base[i] = len(piece.encode("utf-8"))
    return ByteLuts(base, space, boundary)


def build_byte260_luts(vocab_size: int) -> ByteLuts:
    """The pure-byte tokenizer: ids 0..3 special (boundary, 0 bytes), id b + 4 is byte b (1 byte)."""
    size = max(260, vocab_size)
    base = np.zeros(size, dtype=np.int16)
    base[4:260] = 1
    boundary = np.ones(size, dtype=np.bool_)
    boundary[4:260] = False
    return ByteLuts(base, np.zeros(size, dtype=np.bool_), boundary)


def load_luts(cfg: Config, byte260: bool) -> ByteLuts:
    if byte260:
        return build_byte260_luts(cfg.vocab_size)
    import sentencepiece as spm
    if not cfg.tokenizer_path.endswith(".model"):
        fail(f"TOKENIZER_PATH must be a SentencePiece .model file: {cfg.tokenizer_path}")
    if not os.path.isfile(cfg.tokenizer_path):
        fail(f"tokenizer not found: {cfg.tokenizer_path} (set TOKENIZER_PATH or --tokenizer-path, or use --byte260)")
    sp = spm.SentencePieceProcessor(model_file=cfg.tokenizer_path)
    if int(sp.vocab_size()) != cfg.vocab_size:
        fail(f"VOCAB_SIZE={cfg.vocab_size} does not match tokenizer vocab_size={int(sp.vocab_size())}")
    return build_sentencepiece_luts(sp, cfg.vocab_size)


def load_validation_tokens(pattern: str, seq_len: int, max_tokens: int | None = None) -> np.ndarray:
    """All fineweb_val_*.bin shards concatenated (sorted names); with max_tokens only the first
    max_tokens + 1; then cut like the baseline to ((n - 1) // seq_len) * seq_len + 1 tokens."""
    tokens = np.concatenate([load_data_shard(f) for f in shard_files(pattern)])
    if max_tokens is not None:
        tokens = tokens[:max_tokens + 1]
    usable = ((tokens.size - 1) // seq_len) * seq_len
    if usable <= 0:
        fail(f"validation tokens too short for TRAIN_SEQ_LEN={seq_len} ({tokens.size} tokens)")
    return tokens[:usable + 1]


def eval_windows(num_targets: int, seq_len: int, stride: int) -> list[tuple[int, int]]:
    """Sliding windows over targets 1..N of tokens t[0..N] (window W = seq_len, stride S <= W).
    Returns (start, first_scored): the window's inputs are t[start : start+W], its targets
    t[start+1 : start+W+1], and it scores window positions first_scored..W-1.
      * windows start at 0, S, 2S, ... while start + W <= N; the first scores all W positions, each
        later one its last S (the targets just past the previous window's end);
      * tail: if targets remain after the last such window, one more window ends exactly at N
        (start N - W) and scores only the remaining N - end positions.
    Every target is scored exactly once; S = W gives the baseline's non-overlapping evaluation."""
    if not 1 <= stride <= seq_len:
        fail(f"stride must be in 1..TRAIN_SEQ_LEN={seq_len}, got {stride}")
    if num_targets < seq_len:
        fail(f"{num_targets} targets are fewer than one window of {seq_len}")
    windows, end, start = [(0, 0)], seq_len, stride
    while start + seq_len <= num_targets:
        windows.append((start, seq_len - stride))
        end = start + seq_len
        start += stride
    if end < num_targets:
        windows.append((num_targets - seq_len, seq_len - (num_targets - end)))
    return windows


@dataclass
class EvalResult:
    val_loss: float
    val_bpb: float
    tokens: int
    bytes: int
    nll_sum: float


def score_windows(model: nn.Module, tokens: np.ndarray, windows: list[tuple[int, int]], seq_len: int, luts: ByteLuts,
                  batch_seqs: int = 8, device="cpu", amp: bool = False) -> tuple[float, int, int]:
    """(sum NLL in nats, targets, bytes) of the scored positions of `windows` (eval_windows' (start,
    first_scored)), batch_seqs windows per forward pass. A target y after input x counts base_bytes[y] +
    (has_leading_space[y] and not is_boundary[x]) bytes; the NLLs are summed in float64."""
    toks = torch.from_numpy(tokens.astype(np.int64))
    base = torch.from_numpy(luts.base_bytes.astype(np.int64))
    space = torch.from_numpy(luts.has_leading_space)
    boundary = torch.from_numpy(luts.is_boundary)
    positions = torch.arange(seq_len)
    nll_sum, count, nbytes = 0.0, 0, 0
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for b in range(0, len(windows), batch_seqs):
            batch = windows[b:b + batch_seqs]
            x = torch.stack([toks[s:s + seq_len] for s, _ in batch])          # [b, W]
            y = torch.stack([toks[s + 1:s + seq_len + 1] for s, _ in batch])  # [b, W]
            scored = torch.stack([positions >= lo for _, lo in batch])       # [b, W] bool
            with autocast_context(device, amp):
                nll = model(x.to(device), y.to(device), reduction="none")      # [b, W]
            nll_sum += float(nll.double().cpu()[scored].sum())
            count += int(scored.sum())
            per_token = base[y] + (space[y] & ~boundary[x]).long()
            nbytes += int(per_token[scored].sum())
    model.train(was_training)
    return nll_sum, count, nbytes


def eval_result(nll_sum: float, count: int, nbytes: int, expected: int) -> EvalResult:
    """val_loss = sum NLL / tokens (nats); val_bpb = val_loss / ln 2 * tokens / bytes."""
    if count != expected:
        raise AssertionError(f"scored {count} targets, expected {expected}")
    val_loss = nll_sum / count
    bits_per_token = val_loss / math.log(2.0)
    tokens_per_byte = count / nbytes
    return EvalResult(val_loss, bits_per_token * tokens_per_byte, count, nbytes, nll_sum)


def evaluate(model: nn.Module, tokens: np.ndarray, seq_len: int, luts: ByteLuts, stride: int | None = None,
             batch_seqs: int = 8, device="cpu", amp: bool = False) -> EvalResult:
    """val_loss / val_bpb of every target of tokens (score_windows over eval_windows)."""
    n = tokens.size - 1
    windows = eval_windows(n, seq_len, stride or seq_len)
    return eval_result(*score_windows(model, tokens, windows, seq_len, luts, batch_seqs, device, amp), n)


def evaluate_ttt(model: GPT, tokens: np.ndarray, cfg: Config, luts: ByteLuts, batch_seqs: int = 8, device="cpu",
                 amp: bool = False, chunk_scores: list | None = None) -> EvalResult:
    """Legal score-first test-time training (TTT_CHUNK_TOKENS = C > 0). Targets 1..N are cut into chunks
    of C (the last may be shorter). For chunk k in order: every window (EVAL_STRIDE's, or non-overlapping)
    whose first scored target lies in the chunk is scored as in `evaluate` with the current weights; then,
    unless it is the last chunk, TTT_STEPS plain SGD steps (lr TTT_LR, every parameter) each on the mean
    loss of the chunk's C / TRAIN_SEQ_LEN sequences (inputs t[kC + jT : kC + (j+1)T], targets one later).
    So chunk k is scored by weights that trained on chunks < k only, and every target is trained on only
    after it was scored. The result is the sum of the chunks' scores; chunk_scores, if given, receives
    (nll_sum, targets, bytes) per chunk. The model's weights are changed."""
    n, seq_len, chunk = tokens.size - 1, cfg.train_seq_len, cfg.ttt_chunk_tokens
    if chunk <= 0 or chunk % seq_len != 0:
        fail(f"TTT_CHUNK_TOKENS={chunk} must be a positive multiple of TRAIN_SEQ_LEN={seq_len}")
    windows = eval_windows(n, seq_len, cfg.eval_stride or seq_len)
    num_chunks = -(-n // chunk)
    toks = torch.from_numpy(tokens.astype(np.int64))
    sgd = torch.optim.SGD(model.parameters(), lr=cfg.ttt_lr)
    nll_sum, count, nbytes = 0.0, 0, 0
    for k in range(num_chunks):
        mine = [w for w in windows if (w[0] + w[1]) // chunk == k]   # first scored target w[0] + w[1] + 1
        scores = score_windows(model, tokens, mine, seq_len, luts, batch_seqs, device, amp)
        if chunk_scores is not None:
            chunk_scores.append(scores)
        nll_sum, count, nbytes = nll_sum + scores[0], count + scores[1], nbytes + scores[2]
        if k == num_chunks - 1:
            break
        span = toks[k * chunk:(k + 1) * chunk + 1]
        x, y = span[:-1].reshape(-1, seq_len).to(device), span[1:].reshape(-1, seq_len).to(device)
        for _ in range(cfg.ttt_steps):
            sgd.zero_grad(set_to_none=True)
            with autocast_context(device, amp):
                loss = model(x, y)
            loss.backward()
            sgd.step()
    sgd.zero_grad(set_to_none=True)
    return eval_result(nll_sum, count, nbytes, n)


def eval_batch_seqs(cfg: Config, opts) -> int:
    """--batch-seqs, else the baseline's VAL_BATCH_SIZE / 8 / TRAIN_SEQ_LEN sequences (at most 8 on the
    CPU, to bound the [B, H, T, T] attention scores; batching does not change the result)."""
    if getattr(opts, "batch_seqs", None):
        return opts.batch_seqs
    n = cfg.val_batch_size // SPANS_PER_STEP // cfg.train_seq_len
    if n < 1:
        fail(f"VAL_BATCH_SIZE={cfg.val_batch_size} must provide at least one sequence "
             f"(>= {SPANS_PER_STEP} * TRAIN_SEQ_LEN)")
    return n if str(opts.device).startswith("cuda") else min(n, 8)


# ====================================================================================================
# 8. Optimizers
# ====================================================================================================
# Split (train_gpt.py):
#   Adam  tok_emb.weight          lr TIED_EMBED_LR (0.05) when tied, EMBED_LR (0.6) when untied
#   Adam  lm_head.weight          lr HEAD_LR (0.008), untied only
#   Muon  2-D block params not named like a control tensor: attn.c_q/c_k/c_v/proj, mlp.fc/proj weights;
#         lr MATRIX_LR (0.04)
#   Adam  block params of ndim < 2 or named like a control tensor (attn_scale, mlp_scale, resid_mix,
#         q_gain) and skip_weights; lr SCALAR_LR (0.04)
# Adam: betas (BETA1, BETA2) = (0.9, 0.95), eps ADAM_EPS = 1e-8, no weight decay (torch.optim.Adam; the
# baseline's fused=True kernel computes the same update). Every step sets lr = base_lr * lr_mul.
# Architecture features: bigram.embed.weight joins tok_emb.weight's Adam (same lr); bigram.proj.weight is a
# Muon matrix; skip_gates, bigram.scale, smear.*, attn.gate_w, lane_rho, lane_mix are control tensors
# (scalar Adam, SCALAR_LR).
# Options: MUON_WD: p <- p (1 - lr wd) before each Muon update (decoupled); ADAM_WD: the same for every Adam
# parameter (torch.optim.AdamW); MUON_EQ_R: each row of the Nesterov update divided by its L2 norm (zero
# rows stay zero) before Newton-Schulz; MUON_POLAR_EXPRESS: Newton-Schulz iteration k uses the k-th of
# POLAR_EXPRESS_COEFFS (the last one again past 5), after the same Frobenius normalisation.

NS_COEFFS = (3.4445, -4.7750, 2.0315)
POLAR_EXPRESS_COEFFS = ((8.1566, -22.4833, 15.8788), (4.0429, -2.8089, 0.5000), (3.8917, -2.7725, 0.5061),
                        (3.2858, -2.3681, 0.4645), (2.3465, -1.7098, 0.4232))
NS_EPS = 1e-7


def newton_schulz_coefficients(steps: int, polar_express: bool = False) -> list[tuple[float, float, float]]:
    """(a, b, c) of each of `steps` iterations: NS_COEFFS every time, or POLAR_EXPRESS_COEFFS in order
    (the last one repeated past the fifth)."""
    if not polar_express:
        return [NS_COEFFS] * steps
    return [POLAR_EXPRESS_COEFFS[min(k, len(POLAR_EXPRESS_COEFFS) - 1)] for k in range(steps)]


def zeropower_via_newtonschulz5(g: Tensor, steps: int = 5, dtype: torch.dtype = torch.bfloat16,
                                polar_express: bool = False) -> Tensor:
    """Approximate orthogonalisation of a 2-D g [rows, cols], computed in `dtype` (bf16 in the
    baseline): X = g / (||g||_F + 1e-7); work on X^T when rows > cols; `steps` times
    A = X X^T, X = a X + (b A + c A A) X with (a, b, c) = (3.4445, -4.7750, 2.0315), or the Polar
    Express coefficients of each iteration. On the CPU a bf16 product is taken as the GPU's tensor cores take it
    (bf16 operands, float32 accumulation, the result rounded to bf16): CPU builds of torch may accumulate bf16
    products in bf16 (seen: 5% of the largest entry at K = 512), which no GPU run of train_gpt.py does; and a
    coefficient times a bf16 tensor as the GPU takes it (the float coefficient times the value, rounded once):
    torch 1.13 on the CPU rounds the coefficient to bf16 first (3.4445 -> 3.4375)."""
    x = g.to(dtype)
    x = x / (x.norm() + NS_EPS)
    transposed = g.size(0) > g.size(1)
    if transposed:
        x = x.T
    if dtype == torch.bfloat16 and x.device.type == "cpu":
        mm = lambda u, v: (u.float() @ v.float()).to(dtype)
        mul = lambda s, u: (s * u.float()).to(dtype)
    else:
        mm = lambda u, v: u @ v
        mul = lambda s, u: s * u
    for a, b, c in newton_schulz_coefficients(steps, polar_express):
        A = mm(x, x.T)
        B = mul(b, A) + mul(c, mm(A, A))
        x = mul(a, x) + mm(B, x)
    return x.T if transposed else x


def normalize_rows(u: Tensor) -> Tensor:
    """MuonEq-R: each row of u [rows, cols] divided by its L2 norm; rows of norm 0 stay 0."""
    norms = u.norm(dim=1, keepdim=True)
    return torch.where(norms > 0, u / torch.where(norms > 0, norms, torch.ones_like(norms)), torch.zeros_like(u))


class Muon(torch.optim.Optimizer):
    """Per matrix p with gradient g: buf = momentum * buf + g; u = g + momentum * buf (Nesterov);
    with row_normalize (MUON_EQ_R) u = normalize_rows(u); with weight_decay (MUON_WD) p *= 1 - lr * wd;
    p -= lr * sqrt(max(1, rows/cols)) * NS5(u). ns_dtype: bf16 as in the baseline (--amp); float32 or
    float64 (the working dtype) otherwise. update_dtype: the dtype the scaled update is held in before it
    is added (bf16 in the baseline, whose update buffer is bf16)."""

    def __init__(self, params, lr: float, momentum: float, backend_steps: int, nesterov: bool = True,
                 ns_dtype: torch.dtype = torch.float32, update_dtype: torch.dtype | None = None,
                 weight_decay: float = 0.0, row_normalize: bool = False, polar_express: bool = False):
        super().__init__(params, dict(lr=lr, momentum=momentum, backend_steps=backend_steps, nesterov=nesterov,
                                      weight_decay=weight_decay))
        self.ns_dtype = ns_dtype
        self.update_dtype = update_dtype
        self.row_normalize = row_normalize
        self.polar_express = polar_express

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(g)
                buf = state["momentum_buffer"]
                buf.mul_(group["momentum"]).add_(g)
                if group["nesterov"]:
                    g = g.add(buf, alpha=group["momentum"])
                if self.row_normalize:
                    g = normalize_rows(g)
                u = zeropower_via_newtonschulz5(g, steps=group["backend_steps"], dtype=self.ns_dtype,
                                                polar_express=self.polar_express)
                scale = max(1, u.size(0) / u.size(1)) ** 0.5
                # a bf16 u times the float scale as the GPU computes it (see zeropower_via_newtonschulz5)
                u = (scale * u.float()).to(u.dtype) if u.dtype in LOW_PRECISION else u * scale
                if self.update_dtype is not None:
                    u = u.to(self.update_dtype)
                if group["weight_decay"] > 0:
                    p.mul_(1 - group["lr"] * group["weight_decay"])
                p.add_(u.to(dtype=p.dtype), alpha=-group["lr"])
        return None


def build_optimizers(model: GPT, cfg: Config, amp: bool = False, ns_dtype: torch.dtype | None = None) -> tuple[list, Muon]:
    """The baseline's split (plus the features' tensors, see above); returns (optimizers in the baseline's
    order, the Muon one)."""
    block_named = list(model.blocks.named_parameters())
    is_control = lambda name: any(pattern in name for pattern in CONTROL_TENSOR_NAME_PATTERNS)  # noqa: E731
    matrix_params = [p for name, p in block_named if p.ndim == 2 and not is_control(name)]
    scalar_params = [p for name, p in block_named if p.ndim < 2 or is_control(name)]
    if model.skip_weights.numel() > 0:
        scalar_params.append(model.skip_weights)
    token_params = [model.tok_emb.weight]
    if model.skip_gates is not None:
        scalar_params.append(model.skip_gates)
    if model.bigram is not None:
        token_params.append(model.bigram.embed.weight)
        matrix_params.append(model.bigram.proj.weight)
        scalar_params.append(model.bigram.scale)
    if model.smear is not None:
        scalar_params += [model.smear.gate_w, model.smear.lam]
    if model.ve_shared is not None:   # 03-31's groups: the table with the token embedding, the rest with the scalars
        token_params.append(model.ve_shared.embed.weight)
        scalar_params += ([model.ve_shared.proj.weight] if model.ve_shared.proj is not None else []) + [model.ve_shared.scale, model.ve_layer_scales]
    work_dtype = model.skip_weights.dtype
    adam_kwargs = dict(betas=(cfg.beta1, cfg.beta2), eps=cfg.adam_eps)
    if amp and not CPU_AMP["on"]:
        adam_kwargs["fused"] = True
    adam = torch.optim.Adam
    if cfg.adam_wd > 0:
        adam, adam_kwargs["weight_decay"] = torch.optim.AdamW, cfg.adam_wd
    token_lr = cfg.tied_embed_lr if cfg.tie_embeddings else cfg.embed_lr
    opt_tok = adam([{"params": token_params, "lr": token_lr, "base_lr": token_lr}], **adam_kwargs)
    muon = Muon(matrix_params, lr=cfg.matrix_lr, momentum=cfg.muon_momentum, backend_steps=cfg.muon_backend_steps,
                ns_dtype=ns_dtype or (torch.bfloat16 if amp else work_dtype),
                update_dtype=torch.bfloat16 if amp else None, weight_decay=cfg.muon_wd,
                row_normalize=bool(cfg.muon_eq_r), polar_express=bool(cfg.muon_polar_express))
    for group in muon.param_groups:
        group["base_lr"] = cfg.matrix_lr
    opt_scalar = adam([{"params": scalar_params, "lr": cfg.scalar_lr, "base_lr": cfg.scalar_lr}], **adam_kwargs)
    optimizers = [opt_tok, muon, opt_scalar]
    if model.lm_head is not None:
        opt_head = adam([{"params": [model.lm_head.weight], "lr": cfg.head_lr, "base_lr": cfg.head_lr}], **adam_kwargs)
        optimizers.insert(1, opt_head)
    return optimizers, muon


def training_fraction(cfg: Config, step: int, elapsed_ms: float) -> float:
    """How far training is, the time base of WARMDOWN_FRAC and LOOP_START_FRAC: elapsed_ms over the
    wallclock cap when MAX_WALLCLOCK_SECONDS > 0, else step / ITERATIONS (clamped to [0, 1])."""
    if cfg.max_wallclock_seconds > 0:
        frac = elapsed_ms / (1000.0 * cfg.max_wallclock_seconds)
    else:
        frac = step / max(cfg.iterations, 1)
    return min(max(frac, 0.0), 1.0)


def lr_mul(cfg: Config, step: int, elapsed_ms: float) -> float:
    """Learning-rate multiplier (warmdown only, no warmup), never below MIN_LR_FRAC.
    WARMDOWN_FRAC > 0: min(1, (1 - f) / WARMDOWN_FRAC) with f = training_fraction.
    Else WARMDOWN_ITERS <= 0: 1. With a wallclock cap (MAX_WALLCLOCK_SECONDS > 0):
    remaining_ms / (WARMDOWN_ITERS * elapsed_ms / max(step, 1)) once that is <= 1, where
    remaining_ms = max(cap - elapsed_ms, 0). Without: (ITERATIONS - step) / WARMDOWN_ITERS for
    ITERATIONS - WARMDOWN_ITERS <= step < ITERATIONS, else 1."""
    return max(warmdown_mul(cfg, step, elapsed_ms), cfg.min_lr_frac)


def warmdown_mul(cfg: Config, step: int, elapsed_ms: float) -> float:
    """lr_mul before the MIN_LR_FRAC floor."""
    if cfg.warmdown_frac > 0:
        return min(1.0, (1.0 - training_fraction(cfg, step, elapsed_ms)) / cfg.warmdown_frac)
    if cfg.warmdown_iters <= 0:
        return 1.0
    if cfg.max_wallclock_seconds <= 0:
        warmdown_start = max(cfg.iterations - cfg.warmdown_iters, 0)
        if warmdown_start <= step < cfg.iterations:
            return max((cfg.iterations - step) / max(cfg.warmdown_iters, 1), 0.0)
        return 1.0
    step_ms = elapsed_ms / max(step, 1)
    warmdown_ms = cfg.warmdown_iters * step_ms
    remaining_ms = max(1000.0 * cfg.max_wallclock_seconds - elapsed_ms, 0.0)
    return remaining_ms / max(warmdown_ms, 1e-9) if remaining_ms <= warmdown_ms else 1.0


def muon_momentum_at(cfg: Config, step: int) -> float:
    """Linear from MUON_MOMENTUM_WARMUP_START to MUON_MOMENTUM over MUON_MOMENTUM_WARMUP_STEPS steps."""
    if cfg.muon_momentum_warmup_steps <= 0:
        return cfg.muon_momentum
    frac = min(step / cfg.muon_momentum_warmup_steps, 1.0)
    return (1 - frac) * cfg.muon_momentum_warmup_start + frac * cfg.muon_momentum


# ====================================================================================================
# 8b. Quantization-aware training and EMA
# ====================================================================================================
# QAT (QAT=1): the matrices that run through a CastedLinear (attention and MLP weights, the untied lm_head;
# classes as in golf_infer.c's parameter table) use, once training progress reaches QAT_START_FRAC, their
# fake-quantized values in the forward pass: exactly what golf_export --clip none writes for the class's scheme
# (QUANT_ATTN / QUANT_MLP / QUANT_HEAD, else QUANT; ternary with golf_export's default group of 128), with a
# straight-through gradient (the float weight receives the gradient of the quantized one unchanged). fp16 and
# fp32 schemes are not fake-quantized, nor is tok_emb (an nn.Embedding, also the tied head). Progress is
# step / ITERATIONS, or elapsed training time / MAX_WALLCLOCK_SECONDS when that cap is set (the clock of
# lr_mul's warmdown); QAT_START_FRAC 0 fake-quantizes from the first step. Validation runs on the float weights.
# EMA (EMA_DECAY = d > 0): after every optimizer step ema = d * ema + (1 - d) * theta, in float32, for every
# parameter, starting from the weights training starts with; when training ends the EMA replaces the weights,
# so the final validation, the saved checkpoint and its export are the EMA's.

QUANT_SCHEMES = ("fp32", "fp16", "int8", "int6", "int5", "int4", "ternary")
SCHEME_QMAX = {"int8": 127, "int6": 31, "int5": 15, "int4": 7, "ternary": 1}
TERNARY_GROUP = 128   # golf_export's --group default and train_golf's export: columns per ternary scale


def param_class(name: str) -> str:
    """golf_infer.c's class of a state_dict key: embed, attn, mlp, head or control."""
    if name == "tok_emb.weight":
        return "embed"
    if name == "lm_head.weight":
        return "head"
    if name.startswith("blocks.") and name.endswith(("attn.c_q.weight", "attn.c_k.weight", "attn.c_v.weight", "attn.proj.weight")):
        return "attn"
    if name.startswith("blocks.") and name.endswith(("mlp.fc.weight", "mlp.proj.weight")):
        return "mlp"
    return "control"


def class_scheme(cfg: Config, cls: str) -> str:
    """The export scheme of a class: QUANT_<CLASS> when set, else QUANT; control tensors stay fp32."""
    if cls == "control":
        return "fp32"
    return getattr(cfg, f"quant_{cls}") or cfg.quant


def quant_config_problem(cfg: Config) -> str | None:
    """The first problem with the QUANT*, QAT and EMA settings, or None."""
    for name in ("quant", "quant_embed", "quant_attn", "quant_mlp", "quant_head"):
        value = getattr(cfg, name)
        if value not in QUANT_SCHEMES and not (value == "" and name != "quant"):
            return f"{name.upper()}={value!r} is not one of {' '.join(QUANT_SCHEMES)}"
    if cfg.qat not in (0, 1):
        return f"QAT must be 0 or 1, got {cfg.qat}"
    if not 0.0 <= cfg.qat_start_frac <= 1.0:
        return f"QAT_START_FRAC must be in [0, 1], got {cfg.qat_start_frac}"
    if not 0.0 <= cfg.ema_decay < 1.0:
        return f"EMA_DECAY must be in [0, 1), got {cfg.ema_decay}"
    return None


def fake_quant(w: Tensor, scheme: str, group: int = TERNARY_GROUP) -> Tensor:
    """The float32 values codes * fp16 scale that golf_export --clip none writes for w [rows, cols] (a vector is
    one row; w's values are taken as float32), bit for bit:
      intB     scale = fp16(fp32(max|row|) / qmax), q = clamp(rint(w / scale), -qmax, qmax)
      ternary  per group of `group` columns (0 or >= cols: the whole row), scale = fp16(fp32(mean|w|)) with the
               sum in float64, left to right; q = clamp(rint(w / scale), -1, 1)
    w / scale in float64, ties to even; a zero scale gives q = 0."""
    w32 = w.detach().float()
    w2 = w32.reshape(w32.size(0), -1) if w32.ndim >= 2 else w32.reshape(1, -1)   # [rows, cols]
    rows, cols = w2.shape
    qmax = SCHEME_QMAX[scheme]
    if scheme == "ternary":
        g = cols if group <= 0 or group >= cols else group
        ngroups = -(-cols // g)
        a = F.pad(w2.abs().double(), (0, ngroups * g - cols)).reshape(rows, ngroups, g)
        counts = torch.tensor([min(g, cols - k * g) for k in range(ngroups)], dtype=torch.float64)
        mean = (torch.cumsum(a, dim=-1)[..., -1] / counts).float()                 # [rows, ngroups]
        scale = mean.half().float().repeat_interleave(g, dim=1)[:, :cols]            # [rows, cols]
    else:
        amax = w2.abs().amax(dim=1)                                                  # [rows]
        scale = (amax / torch.tensor(float(qmax))).half().float()[:, None].expand(rows, cols)
    s64 = scale.double()
    q = torch.where(s64 > 0, torch.round(w2.double() / torch.where(s64 > 0, s64, torch.ones_like(s64))), torch.zeros_like(s64))
    q = q.clamp(-qmax, qmax) + 0.0   # (+ 0.0: no negative zeros, as the decoder's q * scale)
    return (q.float() * scale).reshape(w.shape)


def ste_fake_quant(w: Tensor, scheme: str, group: int = TERNARY_GROUP) -> Tensor:
    """fake_quant(w) in the forward pass, identity gradient to w (straight-through): fq + (w - w.detach()),
    whose value is fq exactly (w + (fq - w).detach() may round)."""
    return fake_quant(w, scheme, group).to(w.dtype) + (w - w.detach())


def set_fake_quant(model: nn.Module, cfg: Config, on: bool) -> None:
    """Switch every CastedLinear's fake quantization on (its class's scheme, when that is an integer or ternary
    scheme) or off."""
    for name, module in model.named_modules():
        if isinstance(module, CastedLinear):
            scheme = class_scheme(cfg, param_class(name + ".weight"))
            module.fake_quant = (scheme, TERNARY_GROUP) if on and scheme in SCHEME_QMAX else None


def qat_active(cfg: Config, step: int, elapsed_ms: float) -> bool:
    """QAT=1 and training_fraction (the time base of LOOP_START_FRAC and WARMDOWN_FRAC too) >= QAT_START_FRAC."""
    return bool(cfg.qat) and training_fraction(cfg, step, elapsed_ms) >= cfg.qat_start_frac


class Ema:
    """ema = decay * ema + (1 - decay) * theta per update, float32, every parameter; starts at the model's weights."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.reset(model)

    def reset(self, model: nn.Module) -> None:
        self.shadow = OrderedDict((k, p.detach().float().clone()) for k, p in model.named_parameters())

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for k, p in model.named_parameters():
            self.shadow[k].mul_(self.decay).add_(p.detach().float(), alpha=1.0 - self.decay)

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        for k, p in model.named_parameters():
            p.copy_(self.shadow[k].to(p.dtype))


# ====================================================================================================
# 9. Training
# ====================================================================================================


class Trainer:
    """One optimizer step = the batch of TrainLoader.next_batch(). grad_accum micro-batches (default 1)
    split its rows into equal parts; each micro loss is scaled by 1/grad_accum, so the gradient is that
    of the mean loss over the whole batch in every case. The baseline on one GPU runs the 8 spans as 8
    micro-steps (grad_accum 8): the same quantity, summed in another order."""

    def __init__(self, model: GPT, cfg: Config, device="cpu", amp: bool = False, compiled: nn.Module | None = None,
                 grad_accum: int = 1, ns_dtype: torch.dtype | None = None):
        self.model, self.cfg, self.device, self.amp = model, cfg, device, amp
        self.forward = compiled if compiled is not None else model
        self.grad_accum = grad_accum
        self.optimizers, self.muon = build_optimizers(model, cfg, amp=amp, ns_dtype=ns_dtype)
        self.qat = False   # fake-quantized forward in the next steps (section 8b; train() sets it)
        self.ema = Ema(model, cfg.ema_decay) if cfg.ema_decay > 0 else None
        # DOC_ATTENTION: the rows of one span (train_gpt.py's micro-batch of a rank), one stream of documents
        self.doc_rows = max(cfg.train_batch_tokens // SPANS_PER_STEP // cfg.train_seq_len, 1) if cfg.doc_attention else 1

    def zero_grad(self) -> None:
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)

    def use_schedule_at(self, frac: float) -> bool:
        """Depth recurrence: the loop schedule from LOOP_START_FRAC of training on (frac: training_fraction),
        the default schedule before. Returns whether the loop schedule runs (False when the model has none)."""
        if self.model.loop_schedule is None:
            return False
        self.model.set_schedule(frac >= self.cfg.loop_start_frac)
        return self.model.looped

    def loss_and_grad(self, x: Tensor, y: Tensor) -> float:
        """Sets .grad of every parameter to d(mean loss)/dθ; returns the mean loss."""
        self.zero_grad()
        rows = x.size(0)
        if rows % self.grad_accum != 0:
            fail(f"--grad-accum {self.grad_accum} does not divide the {rows} sequences of a batch")
        part = rows // self.grad_accum
        if part % self.doc_rows != 0:
            fail(f"--grad-accum {self.grad_accum} splits a span of {self.doc_rows} sequences (DOC_ATTENTION keeps a span whole)")
        total = 0.0
        for m in range(self.grad_accum):
            xs = x[m * part:(m + 1) * part].to(self.device)
            ys = y[m * part:(m + 1) * part].to(self.device)
            with autocast_context(self.device, self.amp):
                loss = self.forward(xs, ys, doc_rows=self.doc_rows)
            total += float(loss.detach())
            (loss / self.grad_accum).backward()
        return total / self.grad_accum

    def step(self, x: Tensor, y: Tensor, step: int, scale: float) -> float:
        """Training step number `step` (0-based) with lr multiplier `scale`; returns the loss before it."""
        set_fake_quant(self.model, self.cfg, self.qat)
        loss = self.loss_and_grad(x, y)
        set_fake_quant(self.model, self.cfg, False)
        momentum = muon_momentum_at(self.cfg, step)
        for group in self.muon.param_groups:
            group["momentum"] = momentum
        for opt in self.optimizers:
            for group in opt.param_groups:
                group["lr"] = group["base_lr"] * scale
        if self.cfg.grad_clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip_norm)
        for opt in self.optimizers:
            opt.step()
        if self.ema is not None:
            self.ema.update(self.model)
        self.zero_grad()
        return loss


def copy_state(state):
    """Deep copy of an optimizer state_dict (tensors cloned)."""
    if isinstance(state, Tensor):
        return state.detach().clone()
    if isinstance(state, dict):
        return {k: copy_state(v) for k, v in state.items()}
    if isinstance(state, list):
        return [copy_state(v) for v in state]
    return state


@contextlib.contextmanager
def eval_schedule(model: GPT):
    """Evaluation runs the loop schedule when the model has one (whatever training uses at the moment)."""
    looped = model.looped
    if model.loop_schedule is not None:
        model.set_schedule(True)
    try:
        yield model
    finally:
        model.looped = looped


def synchronize(device) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def train(model: GPT, cfg: Config, opts, log=print) -> int:
    """train_gpt.py's loop on one process: validation at step 0, every VAL_LOSS_EVERY steps and at the
    end (unless --no-val; on --max-tokens of the val split), wallclock cap MAX_WALLCLOCK_SECONDS
    (validation time excluded), lr schedule and momentum warmup by step. WARMUP_STEPS (steps that are
    run and then undone, weights, optimizer state and loader restored) only primes compiled code, so it
    is run only with --compile. Starting from --ckpt is a new run from those weights: fresh optimizer
    state, step 0 of the schedule. QAT and EMA as in section 8b. Returns the number of steps done."""
    problem = quant_config_problem(cfg)
    if problem:
        fail(problem)
    device, amp = opts.device, opts.amp
    compiled = torch.compile(model, dynamic=False, fullgraph=True) if opts.compile else None
    trainer = Trainer(model, cfg, device=device, amp=amp, compiled=compiled, grad_accum=opts.grad_accum)
    train_pattern = os.path.join(cfg.data_path, "fineweb_train_*.bin")
    loader = TrainLoader(train_pattern, cfg.train_batch_tokens, cfg.train_seq_len)
    val_tokens = luts = None
    if not opts.no_val:
        val_tokens = load_validation_tokens(os.path.join(cfg.data_path, "fineweb_val_*.bin"), cfg.train_seq_len,
                                            opts.max_tokens)
        luts = load_luts(cfg, opts.byte260)
        log(f"val_loader:pattern={os.path.join(cfg.data_path, 'fineweb_val_*.bin')} tokens:{val_tokens.size - 1}")
    log(f"model_params:{sum(p.numel() for p in model.parameters())}")
    token_lr = cfg.tied_embed_lr if cfg.tie_embeddings else cfg.embed_lr
    log(f"tie_embeddings:{bool(cfg.tie_embeddings)} embed_lr:{token_lr} "
        f"head_lr:{cfg.head_lr if model.lm_head is not None else 0.0} matrix_lr:{cfg.matrix_lr} scalar_lr:{cfg.scalar_lr}")
    log(f"train_batch_tokens:{cfg.train_batch_tokens} train_seq_len:{cfg.train_seq_len} iterations:{cfg.iterations} "
        f"warmup_steps:{cfg.warmup_steps if opts.compile else 0} max_wallclock_seconds:{cfg.max_wallclock_seconds:.3f}")
    log(f"seed:{cfg.seed} device:{device} dtype:{opts.dtype} amp:{amp} grad_accum:{opts.grad_accum}")
    log(f"quant:{cfg.quant} qat:{cfg.qat} qat_start_frac:{cfg.qat_start_frac} ema_decay:{cfg.ema_decay}")

    if opts.compile and cfg.warmup_steps > 0:
        initial_model = {k: v.detach().clone() for k, v in model.state_dict().items()}
        initial_opts = [copy_state(opt.state_dict()) for opt in trainer.optimizers]
        for w in range(cfg.warmup_steps):
            x, y = loader.next_batch()
            trainer.step(x, y, 0, 1.0)
            log(f"warmup_step:{w + 1}/{cfg.warmup_steps}")
        model.load_state_dict(initial_model, strict=True)
        for opt, state in zip(trainer.optimizers, initial_opts):
            opt.load_state_dict(state)
        if trainer.ema is not None:
            trainer.ema.reset(model)
        loader = TrainLoader(train_pattern, cfg.train_batch_tokens, cfg.train_seq_len)

    max_wallclock_ms = 1000.0 * cfg.max_wallclock_seconds if cfg.max_wallclock_seconds > 0 else None
    training_time_ms, stop_after_step, step, loop_logged = 0.0, None, 0, False
    synchronize(device)
    t0 = time.perf_counter()
    while True:
        last_step = step == cfg.iterations or (stop_after_step is not None and step >= stop_after_step)
        if last_step and trainer.ema is not None:
            trainer.ema.copy_to(model)
            log(f"ema: the final weights are the EMA (decay {cfg.ema_decay})")
        if val_tokens is not None and (last_step or (cfg.val_loss_every > 0 and step % cfg.val_loss_every == 0)):
            synchronize(device)
            training_time_ms += 1000.0 * (time.perf_counter() - t0)
            with eval_schedule(model):
                r = evaluate(model, val_tokens, cfg.train_seq_len, luts, stride=cfg.eval_stride if last_step else None,
                             batch_seqs=eval_batch_seqs(cfg, opts), device=device, amp=amp)
            log(f"step:{step}/{cfg.iterations} val_loss:{r.val_loss:.4f} val_bpb:{r.val_bpb:.4f} "
                f"train_time:{training_time_ms:.0f}ms step_avg:{training_time_ms / max(step, 1):.2f}ms")
            synchronize(device)
            t0 = time.perf_counter()
        if last_step:
            if stop_after_step is not None and step < cfg.iterations:
                log(f"stopping_early: wallclock_cap train_time:{training_time_ms:.0f}ms step:{step}/{cfg.iterations}")
            break
        elapsed_ms = training_time_ms + 1000.0 * (time.perf_counter() - t0)
        scale = lr_mul(cfg, step, elapsed_ms)
        if trainer.use_schedule_at(training_fraction(cfg, step, elapsed_ms)) and not loop_logged:
            log(f"layer_loop:enabled step:{step} frac:{training_fraction(cfg, step, elapsed_ms):.3f}")
            loop_logged = True
        if trainer.qat != qat_active(cfg, step, elapsed_ms):
            trainer.qat = not trainer.qat
            log(f"qat:{'on' if trainer.qat else 'off'} step:{step} scheme:{cfg.quant}")
        x, y = loader.next_batch()
        train_loss = trainer.step(x, y, step, scale)
        step += 1
        approx_ms = training_time_ms + 1000.0 * (time.perf_counter() - t0)
        if cfg.train_log_every > 0 and (step <= 10 or step % cfg.train_log_every == 0 or stop_after_step is not None):
            log(f"step:{step}/{cfg.iterations} train_loss:{train_loss:.4f} "
                f"train_time:{approx_ms:.0f}ms step_avg:{approx_ms / step:.2f}ms")
        if stop_after_step is None and max_wallclock_ms is not None and approx_ms >= max_wallclock_ms:
            stop_after_step = step
    return step


# ====================================================================================================
# 10. Debug state
# ====================================================================================================


def debug_state(model: GPT, cfg: Config, opts, k_steps: int) -> tuple[list, list]:
    """Records for a later check of the CUDA trainer, starting from `model` with fresh optimizers and the
    train loader at the start of the stream:
      debug.x, debug.y   int32 [B, T]    the first training batch (TrainLoader order)
      debug.logits       float32 [B, T, V] logits of debug.x (after the softcap)
      debug.loss         float32 [1]     mean cross-entropy on the batch
      grad.<key>         float32         d(debug.loss)/d(parameter), every state_dict key
      bound.<key>.q_gain float64 [H]     q_gain_flash_bound of the layer's attention(s) in that backward (q_gain keys)
      bound.<key>.parallel_resid, bound.<key>.parallel_post  float64 [2], [2, 2]
                                         lane_scale_bound of the 03-31 block's lane scales in that backward
      debug.losses       float32 [K]     losses of optimizer steps 0..K-1 (step k's batch is the loader's
                                         k-th, loss taken before step k's update; debug.losses[0] is
                                         debug.loss), lr multiplier by iterations (lr_mul with no
                                         wallclock cap), Muon momentum warmup and layer schedule
                                         (LOOP_START_FRAC of ITERATIONS) at step k
    The weights themselves are the records before these (as they were before step 0)."""
    device, amp = opts.device, opts.amp
    trainer = Trainer(model, cfg, device=device, amp=amp, grad_accum=opts.grad_accum)
    no_cap = replace(cfg, max_wallclock_seconds=0.0)
    trainer.use_schedule_at(training_fraction(no_cap, 0, 0.0))
    loader = TrainLoader(os.path.join(cfg.data_path, "fineweb_train_*.bin"), cfg.train_batch_tokens, cfg.train_seq_len)
    x, y = loader.next_batch()
    weights = [(k, v.detach().float().cpu().clone()) for k, v in model.state_dict().items()]
    with torch.no_grad(), autocast_context(device, amp):
        logits = model.forward_logits(x.to(device), trainer.doc_rows).float().cpu()
    FLASH_BOUND["on"] = True
    loss = trainer.loss_and_grad(x, y)
    FLASH_BOUND["on"] = False
    params = dict(model.named_parameters())
    grads = [(f"grad.{k}", params[k].grad.detach().float().cpu().clone()) for k, _ in weights]
    grads += [(f"bound.{name}.q_gain", mod._qgain_bound.cpu()) for name, mod in model.named_modules()
              if getattr(mod, "_qgain_bound", None) is not None]
    grads += [(f"bound.{name}.{key}" if name else f"bound.{key}", lane_scale_bound(sq)) for name, mod in model.named_modules()
              if getattr(mod, "_lane_sq", None) is not None for key, sq in mod._lane_sq.items()]
    losses = []
    for step in range(k_steps):
        if step > 0:
            x_step, y_step = loader.next_batch()
        else:
            x_step, y_step = x, y
        trainer.use_schedule_at(training_fraction(no_cap, step, 0.0))
        losses.append(trainer.step(x_step, y_step, step, lr_mul(no_cap, step, 0.0)))
    records = [("debug.x", x.to(torch.int32)), ("debug.y", y.to(torch.int32)), ("debug.logits", logits),
               ("debug.loss", torch.tensor([loss], dtype=torch.float32))]
    records += grads
    records.append(("debug.losses", torch.tensor(losses, dtype=torch.float32)))
    return weights, records


# ====================================================================================================
# 11. Command line
# ====================================================================================================

USAGE_EXAMPLES = """examples:
  reference.py init --out ck.bin --num-layers 2 --model-dim 64
  reference.py train --data-path ../shared/data/sample_sp1024 --iterations 50 --train-batch-tokens 8192 \\
      --train-seq-len 64 --num-layers 2 --model-dim 64 --max-wallclock-seconds 0 --out ck.bin
  reference.py eval --ckpt ck.bin --data-path ../shared/data/sample_sp1024 \\
      --tokenizer-path ../shared/tokenizers/fineweb_1024_bpe.model --max-tokens 65536 --stride 32
  reference.py logits --ckpt ck.bin --dtype float64 --tokens '1 400 29' --out logits.npy
  reference.py debug-state --num-layers 2 --model-dim 64 --train-seq-len 64 --train-batch-tokens 4096 \\
      --data-path ../shared/data/sample_sp1024 --k 5 --out dbg.bin
  reference.py config --preset r0322 --num-layers 9       # every hyperparameter and where it came from
  reference.py init --out f.bin --num-layers 4 --model-dim 64 --bigram-vocab-size 64 --smear-gate 1 \\
      --xsa-last-n 2 --rope-dims 8 --ln-scale 1 --parallel-from 2 --skip-gates 1 --attn-out-gate 1 \\
      --loop-encoder 0,1,2,1 --loop-decoder 2,3,0 --mlp-leaky-slope 0.5 --random-init
Every hyperparameter flag defaults to the train_gpt.py environment variable of the same name, then to
the --preset's value, then to the baseline's default."""

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def add_runtime_flags(p: argparse.ArgumentParser, init: bool = True) -> None:
    p.add_argument("--dtype", choices=sorted(DTYPES), default="float32", help="parameter and compute dtype (default float32)")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None, help="the baseline's mixed "
                   "precision: bf16 autocast, bf16 tok_emb, bf16 Newton-Schulz, bf16 RoPE tables (default on with --device "
                   "cuda and --dtype float32); with --device cpu the model of train_golf's PRECISION=bf16 (bf16 GEMM "
                   "operands, float32 accumulation, bf16 linear outputs and attention inputs, bf16 Newton-Schulz)")
    p.add_argument("--fast", action="store_true", help="F.rms_norm / F.scaled_dot_product_attention where they exist")
    p.add_argument("--rope-table", choices=("exact", "bf16"), default=None, help="RoPE cos/sin tables: exact "
                   "(default) or bf16, as train_gpt.py computes them (default with --amp)")
    if init:
        p.add_argument("--ckpt", help="start from this golf checkpoint instead of the SEED init")
        p.add_argument("--random-init", action="store_true", help="random values for the zero-init tensors too (tests)")


def add_eval_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-tokens", type=int, default=None, help="evaluate only the first N targets of the val split "
                   "(then cut to a multiple of TRAIN_SEQ_LEN)")
    p.add_argument("--byte260", action="store_true", help="byte tables of the pure-byte tokenizer instead of TOKENIZER_PATH's")
    p.add_argument("--batch-seqs", type=int, default=None, help="windows per forward pass (memory only)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reference.py", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=USAGE_EXAMPLES)
    sub = parser.add_subparsers(dest="cmd", metavar="{init,train,eval,logits,config,debug-state}")
    sub.required = True

    p = sub.add_parser("init", help="write the SEED init as a checkpoint")
    add_hyperparameter_flags(p, ("model",))
    p.add_argument("--random-init", action="store_true", help="random values for the zero-init tensors too (tests)")
    p.add_argument("--perturb", action="store_true", help="then move every tensor by O(1) from its init (tests; see perturb_model)")
    p.add_argument("--out", required=True, help="checkpoint to write")

    p = sub.add_parser("train", help="train like train_gpt.py (one process) and write a checkpoint")
    add_hyperparameter_flags(p, ("model", "data", "eval", "train"))
    add_runtime_flags(p)
    add_eval_flags(p)
    p.add_argument("--compile", action="store_true", help="torch.compile the model (PyTorch 2.x); runs WARMUP_STEPS")
    p.add_argument("--grad-accum", type=int, default=1, help="micro-batches per step (memory only; default 1)")
    p.add_argument("--no-val", action="store_true", help="skip the validation passes")
    p.add_argument("--out", help="checkpoint to write at the end")

    p = sub.add_parser("eval", help="val_loss / val_bpb on the val shards (EVAL_STRIDE / --stride: sliding windows; "
                       "TTT_CHUNK_TOKENS: score-first test-time training)")
    add_hyperparameter_flags(p, ("model", "data", "eval", "ttt"))
    add_runtime_flags(p)
    add_eval_flags(p)

    p = sub.add_parser("logits", help="logits (after the softcap) of one sequence")
    add_hyperparameter_flags(p, ("model",))
    add_runtime_flags(p)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--tokens", help="space-separated token ids")
    src.add_argument("--tokens-file", help="file of whitespace-separated token ids")
    p.add_argument("--out", help="write a .npy [T, V] (in --dtype) instead of printing one row per position")

    p = sub.add_parser("config", help="print every hyperparameter's resolved value and where it came from")
    add_hyperparameter_flags(p, ("model", "data", "eval", "train", "ttt"))

    p = sub.add_parser("debug-state", help="weights, one batch, its logits, loss, gradients and K step losses")
    add_hyperparameter_flags(p, ("model", "data", "train"))
    add_runtime_flags(p)
    p.add_argument("--k", type=int, default=5, help="optimizer steps whose losses are recorded (default 5)")
    p.add_argument("--grad-accum", type=int, default=1, help="micro-batches per step (memory only; default 1)")
    p.add_argument("--out", required=True, help="file to write")
    return parser


def setup_runtime(args) -> torch.dtype:
    FAST_KERNELS["on"] = bool(getattr(args, "fast", False))
    dtype = DTYPES[getattr(args, "dtype", "float32")]
    device = getattr(args, "device", "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        fail("--device cuda but no CUDA device is available")
    if hasattr(args, "amp") and args.amp is None:
        args.amp = device.startswith("cuda") and dtype == torch.float32
    if getattr(args, "amp", False):
        if dtype != torch.float32:
            fail("--amp needs --dtype float32")
        CPU_AMP["on"] = not device.startswith("cuda")   # the CPU's model of autocast (Bf16Linear)
    if getattr(args, "compile", False) and not hasattr(torch, "compile"):
        fail(f"--compile needs PyTorch 2.x (this is {torch.__version__})")
    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = bool(getattr(args, "amp", False))
        torch.backends.cudnn.allow_tf32 = bool(getattr(args, "amp", False))
    return dtype


def model_for(args, cfg: Config, explicit: set[str], dtype: torch.dtype) -> tuple[GPT, Config, int]:
    """--ckpt (whose header fixes the shape; explicit shape settings must agree) or the SEED init."""
    if getattr(args, "ckpt", None):
        header_cfg = read_container(args.ckpt).config
        for f in SHAPE_FIELDS + FEATURE_FIELDS:
            # an explicit setting disagrees when it would change the header (MLP_MULT under MLP_HIDDEN does not)
            if f in explicit and not np.array_equal(header_words(replace(header_cfg, **{f: getattr(cfg, f)}), 0, 0),
                                                    header_words(header_cfg, 0, 0)):
                fail(f"{args.ckpt}: checkpoint has {f}={getattr(header_cfg, f)!r} but {flag_name(f.upper())}/${f.upper()} "
                     f"says {getattr(cfg, f)!r}")
        seq_len = cfg.train_seq_len if "train_seq_len" in explicit else header_cfg.train_seq_len
        model, cfg, steps = load(args.ckpt, dtype=dtype, device=args.device, base_cfg=cfg)
        cfg = replace(cfg, train_seq_len=seq_len)
    else:
        model = init_model(cfg, random_init=getattr(args, "random_init", False)).to(device=args.device, dtype=dtype)
        steps = 0
    gpu_amp = getattr(args, "amp", False) and not CPU_AMP["on"]   # the CPU's --amp keeps float32 weights and tables
    if gpu_amp:
        apply_baseline_dtypes(model)
    rope_table = getattr(args, "rope_table", None) or ("bf16" if gpu_amp else "exact")
    set_rope_table_mode(model, rope_table)
    return model, cfg, steps


def read_token_ids(args, vocab_size: int) -> list[int]:
    text = args.tokens
    if args.tokens_file:
        try:
            text = Path(args.tokens_file).read_text()
        except OSError as e:
            fail(f"{args.tokens_file}: {e.strerror}")
    try:
        ids = [int(t) for t in text.split()]
    except ValueError:
        fail("token ids must be integers separated by whitespace")
    if not ids:
        fail("no token ids given")
    bad = [t for t in ids if not 0 <= t < vocab_size]
    if bad:
        fail(f"token id {bad[0]} outside 0..{vocab_size - 1}")
    return ids


def config_lines(args, changed_only: bool = False) -> list[str]:
    """`config NAME=value (source)` per hyperparameter (only those not at their default with changed_only)."""
    sources = resolve_sources(args)
    return [f"config {name}={sources[name.lower()][0]!s} ({sources[name.lower()][1]})" for name, *_ in HYPERPARAMETERS
            if not changed_only or sources[name.lower()][1] != "default"]


def output_problem(out, inputs=()) -> str | None:
    """Why the file path `out` cannot be written, or None: a folder, a folder that does not exist or cannot be
    written, or one of the input files (the same file by device and inode, however it is spelled)."""
    out = Path(out)
    folder = out.parent
    if out.is_dir():
        return f"{out} is a folder: name the file to write"
    if not folder.is_dir():
        return f"{out}: folder {folder} does not exist"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"{out}: folder {folder} is not writable"
    same = [str(p) for p in inputs if p and out.exists() and Path(p).exists() and os.path.samefile(out, p)]
    if same:
        return f"{out} is the input {same[0]}: it would be replaced; name another output file"
    return None


def cli_problem(args) -> str | None:
    """The first reason a command-line option (not a hyperparameter) cannot be used, or None."""
    for flag, least in (("grad_accum", 1), ("max_tokens", 1), ("batch_seqs", 1), ("k", 0)):
        value = getattr(args, flag, None)
        if value is not None and value < least:
            return f"--{flag.replace('_', '-')} must be >= {least}, got {value}"
    return None


def check_out(args) -> None:
    """Stops when --out cannot be written (see output_problem); checked once the config is known to be valid."""
    out = getattr(args, "out", None)
    problem = output_problem(out, (getattr(args, "ckpt", None), getattr(args, "tokens_file", None))) if out else None
    if problem:
        fail(problem)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    problem = cli_problem(args)
    if problem:
        fail(problem)
    if args.cmd == "config":
        resolve_config(args)
        print("\n".join([f"preset {args.preset or 'baseline'}"] + config_lines(args)))
        return 0
    if args.cmd == "init":
        cfg, _ = resolve_config(args)
        check_out(args)
        model = init_model(cfg, random_init=args.random_init)
        if args.perturb:
            perturb_model(model, cfg.seed + 2)
        save(args.out, model, cfg, steps=0)
        print(f"wrote {args.out}: {sum(p.numel() for p in model.parameters())} parameters, seed {cfg.seed}")
        return 0

    dtype = setup_runtime(args)
    cfg, explicit = resolve_config(args)
    check_out(args)
    model, cfg, steps = model_for(args, cfg, explicit, dtype)

    if args.cmd == "train":
        print("\n".join([f"preset {args.preset or 'baseline'}"] + config_lines(args, changed_only=True)))
        done = train(model, cfg, args)
        if args.out:
            save(args.out, model, cfg, steps=steps + done)
            print(f"wrote {args.out}: {steps + done} steps")
    elif args.cmd == "eval":
        tokens = load_validation_tokens(os.path.join(cfg.data_path, "fineweb_val_*.bin"), cfg.train_seq_len, args.max_tokens)
        luts = load_luts(cfg, args.byte260)
        if cfg.ttt_chunk_tokens > 0:
            r = evaluate_ttt(model, tokens, cfg, luts, batch_seqs=eval_batch_seqs(cfg, args), device=args.device,
                             amp=args.amp)
        else:
            r = evaluate(model, tokens, cfg.train_seq_len, luts, stride=cfg.eval_stride or None,
                         batch_seqs=eval_batch_seqs(cfg, args), device=args.device, amp=args.amp)
        print(f"val_loss:{r.val_loss!r} val_bpb:{r.val_bpb!r} tokens:{r.tokens} bytes:{r.bytes}")
    elif args.cmd == "logits":
        ids = read_token_ids(args, cfg.vocab_size)
        with torch.no_grad(), autocast_context(args.device, args.amp):
            logits = model.forward_logits(torch.tensor([ids], dtype=torch.int64, device=args.device))[0]  # [T, V]
        logits = logits.float().cpu() if logits.dtype in LOW_PRECISION else logits.cpu()
        if args.out:
            np.save(args.out, logits.numpy())
        else:
            fmt = "%.17g" if logits.dtype == torch.float64 else "%.9g"
            out = sys.stdout
            for row in logits.numpy():
                out.write(" ".join(fmt % v for v in row) + "\n")
    elif args.cmd == "debug-state":
        weights, records = debug_state(model, cfg, args, args.k)
        write_container(args.out, cfg, steps, weights + records)
        print(f"wrote {args.out}: {len(weights)} weights, {len(records)} debug records, "
              f"loss {float(records[3][1][0])!r}, losses {[float(v) for v in records[-1][1]]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
