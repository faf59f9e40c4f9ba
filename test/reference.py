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
  default, or the flag of the same name lowercased (`--num-layers 2`); a flag beats the environment.
* Numerics: by default float32 on the CPU with RMSNorm and causal attention written out, so PyTorch 1.13
  and 2.x compute the same thing; `--dtype float64` for oracle comparisons. `--device cuda` applies the
  baseline's mixed precision by default (`--amp`: bf16 autocast, bf16 token embedding, bf16
  Newton-Schulz, bf16 RoPE tables; `--no-amp` for float32 on the GPU). `--compile` and `--fast`
  (F.rms_norm / F.scaled_dot_product_attention where they exist) need PyTorch 2.x.
* Checkpoints: the golf container (section 5), float32 little-endian, records named by state_dict key.
* Subcommands: init, train, eval, logits, debug-state (section 11; `reference.py CMD --help`).

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

Contents
========
 1. Hyperparameters          environment variables, flags, defaults
 2. Numerics                 RMSNorm, rotary tables, causal attention (written out)
 3. Model                    CastedLinear, Rotary, CausalSelfAttention, MLP, Block, GPT
 4. Initialisation           seeded baseline init, --random-init, --amp dtypes
 5. Checkpoint container     write / read, save / load of models
 6. Data                     shards, TokenStream, training batches
 7. Evaluation               byte tables, val_loss / val_bpb, sliding windows
 8. Optimizers               Newton-Schulz, Muon, the baseline's split, lr schedule
 8b. QAT and EMA             fake quantization as golf_export exports, straight-through gradient, weight EMA
 9. Training                 one step, the loop
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
# (optimizer, schedule, loader), "data" (paths), "eval" (validation batching).

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

# Model fields that a checkpoint header fixes (the others only matter at init).
SHAPE_FIELDS = ("vocab_size", "num_layers", "model_dim", "num_heads", "num_kv_heads", "mlp_mult",
                "tie_embeddings", "rope_base", "logit_softcap")

# train_gpt.py splits every step into world_size * grad_accum_steps = 8 equal spans of the stream.
SPANS_PER_STEP = 8

# Names that train_gpt.py treats as control tensors: Adam with SCALAR_LR even when 2-D.
CONTROL_TENSOR_NAME_PATTERNS = ("attn_scale", "attn_scales", "mlp_scale", "mlp_scales", "resid_mix",
                                "resid_mixes", "q_gain", "skip_weight", "skip_weights")


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
    quant: str
    quant_embed: str
    quant_attn: str
    quant_mlp: str
    quant_head: str
    qat: int
    qat_start_frac: float
    ema_decay: float

    @property
    def mlp_hidden(self) -> int:
        return self.mlp_mult * self.model_dim

    @property
    def head_dim(self) -> int:
        return self.model_dim // self.num_heads


def default_config(**overrides) -> Config:
    """The baseline's defaults (environment ignored), with keyword overrides; for tests and tools."""
    values = {name.lower(): default for name, _, default, _ in HYPERPARAMETERS}
    values.update(overrides)
    return Config(**values)


def add_hyperparameter_flags(parser: argparse.ArgumentParser, groups: tuple[str, ...]) -> None:
    for name, typ, default, group in HYPERPARAMETERS:
        if group in groups:
            parser.add_argument(flag_name(name), dest=name.lower(), type=typ, default=None, metavar=name,
                                help=f"default ${name} or {default}")


def resolve_config(args: argparse.Namespace, environ=os.environ) -> tuple[Config, set[str]]:
    """Config from flags, then environment variables, then defaults. Also returns the fields that were
    set explicitly (flag or environment), to check them against a checkpoint's header."""
    values, explicit = {}, set()
    for name, typ, default, _ in HYPERPARAMETERS:
        key = name.lower()
        flag = getattr(args, key, None)
        if flag is not None:
            values[key] = flag
            explicit.add(key)
        elif name in environ:
            try:
                values[key] = typ(environ[name])
            except ValueError:
                fail(f"environment variable {name}={environ[name]!r} is not a valid {typ.__name__}")
            explicit.add(key)
        else:
            values[key] = default
    cfg = Config(**values)
    validate_model_config(cfg)
    return cfg, explicit


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
    return None


def validate_model_config(cfg: Config) -> None:
    problem = model_config_problem(cfg)
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


def autocast_context(device, amp: bool):
    """bf16 autocast on the GPU with --amp (train_gpt.py runs every forward under it), else nothing."""
    if not amp:
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda", dtype=torch.bfloat16)


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


def causal_attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """q [B, H, T, D], k and v [B, Hkv, T, D] -> [B, H, T, D]. Query head h uses kv head h // (H/Hkv)
    (repeat_interleave, as scaled_dot_product_attention's enable_gqa). Scale 1/sqrt(D)."""
    num_heads, num_kv_heads, seq_len, head_dim = q.size(1), k.size(1), q.size(2), q.size(3)
    if num_kv_heads != num_heads:
        k = k.repeat_interleave(num_heads // num_kv_heads, dim=1)  # [B, H, T, D]
        v = v.repeat_interleave(num_heads // num_kv_heads, dim=1)
    if FAST_KERNELS["on"] and hasattr(F, "scaled_dot_product_attention"):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    scores = torch.matmul(q, k.transpose(-2, -1)) * (1.0 / math.sqrt(head_dim))  # [B, H, T, T]
    future = torch.ones(seq_len, seq_len, dtype=torch.bool, device=q.device).triu(1)
    scores = scores.masked_fill(future, float("-inf"))
    probs = torch.softmax(scores.float() if scores.dtype in LOW_PRECISION else scores, dim=-1)
    return torch.matmul(probs.to(v.dtype), v)


# ====================================================================================================
# 3. Model
# ====================================================================================================
# Module and parameter names, registration order and shapes follow train_gpt.py, so state_dicts are
# interchangeable. state_dict order (own parameters before children's): skip_weights, tok_emb.weight,
# then per block i: attn_scale, mlp_scale, resid_mix, attn.q_gain, attn.c_q.weight, attn.c_k.weight,
# attn.c_v.weight, attn.proj.weight, mlp.fc.weight, mlp.proj.weight; then lm_head.weight when untied.


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


class CausalSelfAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int, num_kv_heads: int, rope_base: float, qk_gain_init: float):
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
        self.rotary = Rotary(self.head_dim, base=rope_base)

    def forward(self, x: Tensor) -> Tensor:
        bsz, seqlen, dim = x.shape  # x [B, T, dim]
        q = self.c_q(x).reshape(bsz, seqlen, self.num_heads, self.head_dim).transpose(1, 2)     # [B, H, T, D]
        k = self.c_k(x).reshape(bsz, seqlen, self.num_kv_heads, self.head_dim).transpose(1, 2)  # [B, Hkv, T, D]
        v = self.c_v(x).reshape(bsz, seqlen, self.num_kv_heads, self.head_dim).transpose(1, 2)  # [B, Hkv, T, D]
        q = rms_norm(q)
        k = rms_norm(k)
        cos, sin = self.rotary(seqlen, x.device, q.dtype)
        q = apply_rotary(q, cos, sin)
        k = apply_rotary(k, cos, sin)
        q = q * self.q_gain.to(dtype=q.dtype)[None, :, None, None]
        y = causal_attention(q, k, v)                                   # [B, H, T, D]
        y = y.transpose(1, 2).contiguous().reshape(bsz, seqlen, dim)    # [B, T, dim], heads concatenated
        return self.proj(y)


class MLP(nn.Module):
    """proj(relu(fc(x))^2); hidden = mlp_mult * dim."""

    def __init__(self, dim: int, mlp_mult: int):
        super().__init__()
        hidden = mlp_mult * dim
        self.fc = CastedLinear(dim, hidden, bias=False)    # weight [hidden, dim]
        self.proj = CastedLinear(hidden, dim, bias=False)  # weight [dim, hidden], zero at init
        self.proj._zero_init = True

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(torch.relu(self.fc(x)).square())


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, num_kv_heads: int, mlp_mult: int, rope_base: float,
                 qk_gain_init: float):
        super().__init__()
        self.attn_norm = RMSNorm()
        self.mlp_norm = RMSNorm()
        self.attn = CausalSelfAttention(dim, num_heads, num_kv_heads, rope_base, qk_gain_init)
        self.mlp = MLP(dim, mlp_mult)
        self.attn_scale = nn.Parameter(torch.ones(dim, dtype=torch.float32))                     # [dim]
        self.mlp_scale = nn.Parameter(torch.ones(dim, dtype=torch.float32))                      # [dim]
        self.resid_mix = nn.Parameter(torch.stack((torch.ones(dim), torch.zeros(dim))).float())  # [2, dim]

    def forward(self, x: Tensor, x0: Tensor) -> Tensor:
        mix = self.resid_mix.to(dtype=x.dtype)
        x = mix[0][None, None, :] * x + mix[1][None, None, :] * x0
        attn_out = self.attn(self.attn_norm(x))
        x = x + self.attn_scale.to(dtype=x.dtype)[None, None, :] * attn_out
        x = x + self.mlp_scale.to(dtype=x.dtype)[None, None, :] * self.mlp(self.mlp_norm(x))
        return x


class GPT(nn.Module):
    def __init__(self, vocab_size: int, num_layers: int, model_dim: int, num_heads: int, num_kv_heads: int,
                 mlp_mult: int, tie_embeddings: bool, tied_embed_init_std: float, logit_softcap: float,
                 rope_base: float, qk_gain_init: float):
        super().__init__()
        self.tie_embeddings = bool(tie_embeddings)
        self.tied_embed_init_std = tied_embed_init_std
        self.logit_softcap = logit_softcap
        self.tok_emb = nn.Embedding(vocab_size, model_dim)  # weight [V, dim]
        self.num_encoder_layers = num_layers // 2
        self.num_decoder_layers = num_layers - self.num_encoder_layers
        self.num_skip_weights = min(self.num_encoder_layers, self.num_decoder_layers)
        self.skip_weights = nn.Parameter(torch.ones(self.num_skip_weights, model_dim, dtype=torch.float32))  # [L//2, dim]
        self.blocks = nn.ModuleList(
            [Block(model_dim, num_heads, num_kv_heads, mlp_mult, rope_base, qk_gain_init) for _ in range(num_layers)]
        )
        self.final_norm = RMSNorm()
        self.lm_head = None if self.tie_embeddings else CastedLinear(model_dim, vocab_size, bias=False)  # [V, dim]
        if self.lm_head is not None:
            self.lm_head._zero_init = True
        self._init_weights()

    @classmethod
    def from_config(cls, cfg: Config) -> "GPT":
        return cls(cfg.vocab_size, cfg.num_layers, cfg.model_dim, cfg.num_heads, cfg.num_kv_heads, cfg.mlp_mult,
                   bool(cfg.tie_embeddings), cfg.tied_embed_init_std, cfg.logit_softcap, cfg.rope_base,
                   cfg.qk_gain_init)

    def _init_weights(self) -> None:
        if self.tie_embeddings:
            nn.init.normal_(self.tok_emb.weight, mean=0.0, std=self.tied_embed_init_std)
        for module in self.modules():
            if isinstance(module, nn.Linear) and getattr(module, "_zero_init", False):
                nn.init.zeros_(module.weight)

    def forward_logits(self, input_ids: Tensor) -> Tensor:
        """input_ids [B, T] int64 -> logits after the softcap [B, T, V]."""
        x = rms_norm(self.tok_emb(input_ids))  # [B, T, dim]
        x0 = x
        skips: list[Tensor] = []
        for i in range(self.num_encoder_layers):
            x = self.blocks[i](x, x0)
            skips.append(x)
        for i in range(self.num_decoder_layers):
            if skips:
                x = x + self.skip_weights[i].to(dtype=x.dtype)[None, None, :] * skips.pop()
            x = self.blocks[self.num_encoder_layers + i](x, x0)
        x = self.final_norm(x)
        if self.tie_embeddings:
            logits_proj = F.linear(x, self.tok_emb.weight.to(x.dtype))
        else:
            logits_proj = self.lm_head(x)
        return self.logit_softcap * torch.tanh(logits_proj / self.logit_softcap)

    def forward(self, input_ids: Tensor, target_ids: Tensor | None = None, reduction: str = "mean") -> Tensor:
        """Mean cross-entropy (the baseline's forward); reduction='none' gives the per-token NLL [B, T];
        no targets gives the logits. bf16 logits are upcast to float32 first, as in the baseline."""
        logits = self.forward_logits(input_ids)
        if target_ids is None:
            return logits
        if logits.dtype in LOW_PRECISION:
            logits = logits.float()
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), target_ids.reshape(-1), reduction=reduction)
        return loss if reduction != "none" else loss.view(target_ids.shape)


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
#   h[0] = 20261125 (magic)   h[1] = 1 (version)   h[2] = number of tensor records
#   h[3] vocab_size  h[4] num_layers  h[5] model_dim  h[6] num_heads  h[7] num_kv_heads
#   h[8] mlp_hidden (= MLP_MULT * MODEL_DIM)  h[9] tie_embeddings (0/1)
#   h[10] rope_base as float32 bits  h[11] logit_softcap as float32 bits  h[12] train_seq_len
#   h[13] steps trained  h[14..255] = 0
# Then h[2] records: int32 name_len, name (UTF-8), int32 dtype (0 float32, 1 int32), int32 ndim,
# int32 dims[ndim], prod(dims) elements row-major. Model weights come first, under their state_dict
# keys in state_dict order; other records (debug.*, grad.*) may follow.

CKPT_MAGIC = 20261125
CKPT_VERSION = 1
CKPT_HEADER_INTS = 256
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


def write_container(path, cfg: Config, steps: int, records) -> None:
    """records: iterable of (name, tensor or array). Written to PATH.tmp, then renamed."""
    records = [(name, to_numpy_record(value)) for name, value in records]
    header = np.zeros(CKPT_HEADER_INTS, dtype="<i4")
    header[:14] = [CKPT_MAGIC, CKPT_VERSION, len(records), cfg.vocab_size, cfg.num_layers, cfg.model_dim,
                   cfg.num_heads, cfg.num_kv_heads, cfg.mlp_hidden, int(bool(cfg.tie_embeddings)),
                   f32_bits(cfg.rope_base), f32_bits(cfg.logit_softcap), cfg.train_seq_len, steps]
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
    config: Config                       # shape fields and train_seq_len from the header, rest defaults
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
    if int(h[1]) != CKPT_VERSION:
        fail(f"{path}: unsupported checkpoint version {int(h[1])} (this reads version {CKPT_VERSION})")
    if min(int(v) for v in h[3:9]) <= 0 or int(h[8]) % int(h[5]) != 0:
        fail(f"{path}: invalid model shape in header (vocab, layers, dim, heads, kv_heads, mlp_hidden): "
             f"{[int(v) for v in h[3:9]]}; mlp_hidden must be a positive multiple of model_dim")
    cfg = default_config(vocab_size=int(h[3]), num_layers=int(h[4]), model_dim=int(h[5]), num_heads=int(h[6]),
                         num_kv_heads=int(h[7]), mlp_mult=int(h[8]) // int(h[5]), tie_embeddings=int(h[9]),
                         rope_base=bits_f32(h[10]), logit_softcap=bits_f32(h[11]), train_seq_len=int(h[12]))
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
        cfg = replace(base_cfg, **{f: getattr(cfg, f) for f in SHAPE_FIELDS + ("train_seq_len",)})
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


def evaluate(model: nn.Module, tokens: np.ndarray, seq_len: int, luts: ByteLuts, stride: int | None = None,
             batch_seqs: int = 8, device="cpu", amp: bool = False) -> EvalResult:
    """val_loss = sum NLL / tokens (nats); val_bpb = val_loss / ln 2 * tokens / bytes, where a target y
    after input x counts base_bytes[y] + (has_leading_space[y] and not is_boundary[x]) bytes.
    The NLL of each scored target is summed in float64."""
    n = tokens.size - 1
    windows = eval_windows(n, seq_len, stride or seq_len)
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
    if count != n:
        raise AssertionError(f"scored {count} targets, expected {n}")
    val_loss = nll_sum / count
    bits_per_token = val_loss / math.log(2.0)
    tokens_per_byte = count / nbytes
    return EvalResult(val_loss, bits_per_token * tokens_per_byte, count, nbytes, nll_sum)


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

NS_COEFFS = (3.4445, -4.7750, 2.0315)
NS_EPS = 1e-7


def zeropower_via_newtonschulz5(g: Tensor, steps: int = 5, dtype: torch.dtype = torch.bfloat16) -> Tensor:
    """Approximate orthogonalisation of a 2-D g [rows, cols], computed in `dtype` (bf16 in the
    baseline): X = g / (||g||_F + 1e-7); work on X^T when rows > cols; `steps` times
    A = X X^T, X = a X + (b A + c A A) X with (a, b, c) = (3.4445, -4.7750, 2.0315)."""
    a, b, c = NS_COEFFS
    x = g.to(dtype)
    x = x / (x.norm() + NS_EPS)
    transposed = g.size(0) > g.size(1)
    if transposed:
        x = x.T
    for _ in range(steps):
        A = x @ x.T
        B = b * A + c * A @ A
        x = a * x + B @ x
    return x.T if transposed else x


class Muon(torch.optim.Optimizer):
    """Per matrix p with gradient g: buf = momentum * buf + g; u = g + momentum * buf (Nesterov);
    p -= lr * sqrt(max(1, rows/cols)) * NS5(u). ns_dtype: bf16 as in the baseline (--amp); float32 or
    float64 (the working dtype) otherwise. update_dtype: the dtype the scaled update is held in before it
    is added (bf16 in the baseline, whose update buffer is bf16)."""

    def __init__(self, params, lr: float, momentum: float, backend_steps: int, nesterov: bool = True,
                 ns_dtype: torch.dtype = torch.float32, update_dtype: torch.dtype | None = None):
        super().__init__(params, dict(lr=lr, momentum=momentum, backend_steps=backend_steps, nesterov=nesterov))
        self.ns_dtype = ns_dtype
        self.update_dtype = update_dtype

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
                u = zeropower_via_newtonschulz5(g, steps=group["backend_steps"], dtype=self.ns_dtype)
                u = u * max(1, u.size(0) / u.size(1)) ** 0.5
                if self.update_dtype is not None:
                    u = u.to(self.update_dtype)
                p.add_(u.to(dtype=p.dtype), alpha=-group["lr"])
        return None


def build_optimizers(model: GPT, cfg: Config, amp: bool = False, ns_dtype: torch.dtype | None = None) -> tuple[list, Muon]:
    """The baseline's split; returns (optimizers in the baseline's order, the Muon one)."""
    block_named = list(model.blocks.named_parameters())
    is_control = lambda name: any(pattern in name for pattern in CONTROL_TENSOR_NAME_PATTERNS)  # noqa: E731
    matrix_params = [p for name, p in block_named if p.ndim == 2 and not is_control(name)]
    scalar_params = [p for name, p in block_named if p.ndim < 2 or is_control(name)]
    if model.skip_weights.numel() > 0:
        scalar_params.append(model.skip_weights)
    work_dtype = model.skip_weights.dtype
    adam_kwargs = dict(betas=(cfg.beta1, cfg.beta2), eps=cfg.adam_eps)
    if amp:
        adam_kwargs["fused"] = True
    token_lr = cfg.tied_embed_lr if cfg.tie_embeddings else cfg.embed_lr
    opt_tok = torch.optim.Adam([{"params": [model.tok_emb.weight], "lr": token_lr, "base_lr": token_lr}], **adam_kwargs)
    muon = Muon(matrix_params, lr=cfg.matrix_lr, momentum=cfg.muon_momentum, backend_steps=cfg.muon_backend_steps,
                ns_dtype=ns_dtype or (torch.bfloat16 if amp else work_dtype),
                update_dtype=torch.bfloat16 if amp else None)
    for group in muon.param_groups:
        group["base_lr"] = cfg.matrix_lr
    opt_scalar = torch.optim.Adam([{"params": scalar_params, "lr": cfg.scalar_lr, "base_lr": cfg.scalar_lr}], **adam_kwargs)
    optimizers = [opt_tok, muon, opt_scalar]
    if model.lm_head is not None:
        opt_head = torch.optim.Adam([{"params": [model.lm_head.weight], "lr": cfg.head_lr, "base_lr": cfg.head_lr}], **adam_kwargs)
        optimizers.insert(1, opt_head)
    return optimizers, muon


def lr_mul(cfg: Config, step: int, elapsed_ms: float) -> float:
    """Learning-rate multiplier (warmdown only, no warmup). WARMDOWN_ITERS <= 0: 1. With a wallclock cap
    (MAX_WALLCLOCK_SECONDS > 0): remaining_ms / (WARMDOWN_ITERS * elapsed_ms / max(step, 1)) once that
    is <= 1, where remaining_ms = max(cap - elapsed_ms, 0). Without: (ITERATIONS - step) / WARMDOWN_ITERS
    for ITERATIONS - WARMDOWN_ITERS <= step < ITERATIONS, else 1."""
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
    """QAT=1 and progress >= QAT_START_FRAC: step / ITERATIONS, or elapsed_ms over the wallclock cap when set."""
    if not cfg.qat:
        return False
    if cfg.max_wallclock_seconds > 0:
        return elapsed_ms >= cfg.qat_start_frac * 1000.0 * cfg.max_wallclock_seconds
    return step >= cfg.qat_start_frac * cfg.iterations


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

    def zero_grad(self) -> None:
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)

    def loss_and_grad(self, x: Tensor, y: Tensor) -> float:
        """Sets .grad of every parameter to d(mean loss)/dθ; returns the mean loss."""
        self.zero_grad()
        rows = x.size(0)
        if rows % self.grad_accum != 0:
            fail(f"--grad-accum {self.grad_accum} does not divide the {rows} sequences of a batch")
        part = rows // self.grad_accum
        total = 0.0
        for m in range(self.grad_accum):
            xs = x[m * part:(m + 1) * part].to(self.device)
            ys = y[m * part:(m + 1) * part].to(self.device)
            with autocast_context(self.device, self.amp):
                loss = self.forward(xs, ys)
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
    training_time_ms, stop_after_step, step = 0.0, None, 0
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
            r = evaluate(model, val_tokens, cfg.train_seq_len, luts, batch_seqs=eval_batch_seqs(cfg, opts),
                         device=device, amp=amp)
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
      debug.losses       float32 [K]     losses of optimizer steps 0..K-1 (step k's batch is the loader's
                                         k-th, loss taken before step k's update; debug.losses[0] is
                                         debug.loss), lr multiplier by iterations (lr_mul with no
                                         wallclock cap) and Muon momentum warmup at step k
    The weights themselves are the records before these (as they were before step 0)."""
    device, amp = opts.device, opts.amp
    trainer = Trainer(model, cfg, device=device, amp=amp, grad_accum=opts.grad_accum)
    loader = TrainLoader(os.path.join(cfg.data_path, "fineweb_train_*.bin"), cfg.train_batch_tokens, cfg.train_seq_len)
    x, y = loader.next_batch()
    weights = [(k, v.detach().float().cpu().clone()) for k, v in model.state_dict().items()]
    with torch.no_grad(), autocast_context(device, amp):
        logits = model.forward_logits(x.to(device)).float().cpu()
    loss = trainer.loss_and_grad(x, y)
    params = dict(model.named_parameters())
    grads = [(f"grad.{k}", params[k].grad.detach().float().cpu().clone()) for k, _ in weights]
    no_cap = replace(cfg, max_wallclock_seconds=0.0)
    losses = []
    for step in range(k_steps):
        if step > 0:
            x_step, y_step = loader.next_batch()
        else:
            x_step, y_step = x, y
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
Every hyperparameter flag defaults to the train_gpt.py environment variable of the same name, then to
the baseline's default."""

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def add_runtime_flags(p: argparse.ArgumentParser, init: bool = True) -> None:
    p.add_argument("--dtype", choices=sorted(DTYPES), default="float32", help="parameter and compute dtype (default float32)")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None, help="the baseline's mixed "
                   "precision: bf16 autocast, bf16 tok_emb, bf16 Newton-Schulz, bf16 RoPE tables (cuda only; default "
                   "on with --device cuda and --dtype float32)")
    p.add_argument("--fast", action="store_true", help="F.rms_norm / F.scaled_dot_product_attention where they exist")
    p.add_argument("--rope-table", choices=("exact", "bf16"), default=None, help="RoPE cos/sin tables: exact "
                   "(default) or bf16, as train_gpt.py computes them (default with --amp)")
    if init:
        p.add_argument("--ckpt", help="start from this golf checkpoint instead of the SEED init")
        p.add_argument("--random-init", action="store_true", help="random values for the zero-init tensors too (tests)")


def add_eval_flags(p: argparse.ArgumentParser, stride: bool = True) -> None:
    p.add_argument("--max-tokens", type=int, default=None, help="evaluate only the first N targets of the val split "
                   "(then cut to a multiple of TRAIN_SEQ_LEN)")
    if stride:
        p.add_argument("--stride", type=int, default=None, help="sliding-window stride S (1..TRAIN_SEQ_LEN; "
                       "default: non-overlapping windows)")
    p.add_argument("--byte260", action="store_true", help="byte tables of the pure-byte tokenizer instead of TOKENIZER_PATH's")
    p.add_argument("--batch-seqs", type=int, default=None, help="windows per forward pass (memory only)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reference.py", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=USAGE_EXAMPLES)
    sub = parser.add_subparsers(dest="cmd", metavar="{init,train,eval,logits,debug-state}")
    sub.required = True

    p = sub.add_parser("init", help="write the SEED init as a checkpoint")
    add_hyperparameter_flags(p, ("model",))
    p.add_argument("--random-init", action="store_true", help="random values for the zero-init tensors too (tests)")
    p.add_argument("--out", required=True, help="checkpoint to write")

    p = sub.add_parser("train", help="train like train_gpt.py (one process) and write a checkpoint")
    add_hyperparameter_flags(p, ("model", "data", "eval", "train"))
    add_runtime_flags(p)
    add_eval_flags(p, stride=False)
    p.add_argument("--compile", action="store_true", help="torch.compile the model (PyTorch 2.x); runs WARMUP_STEPS")
    p.add_argument("--grad-accum", type=int, default=1, help="micro-batches per step (memory only; default 1)")
    p.add_argument("--no-val", action="store_true", help="skip the validation passes")
    p.add_argument("--out", help="checkpoint to write at the end")

    p = sub.add_parser("eval", help="val_loss / val_bpb on the val shards")
    add_hyperparameter_flags(p, ("model", "data", "eval"))
    add_runtime_flags(p)
    add_eval_flags(p)

    p = sub.add_parser("logits", help="logits (after the softcap) of one sequence")
    add_hyperparameter_flags(p, ("model",))
    add_runtime_flags(p)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--tokens", help="space-separated token ids")
    src.add_argument("--tokens-file", help="file of whitespace-separated token ids")
    p.add_argument("--out", help="write a .npy [T, V] (in --dtype) instead of printing one row per position")

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
        if not device.startswith("cuda"):
            fail("--amp needs --device cuda (bf16 autocast as in train_gpt.py)")
        if dtype != torch.float32:
            fail("--amp needs --dtype float32")
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
        for f in SHAPE_FIELDS:
            mine, theirs = getattr(cfg, f), getattr(header_cfg, f)
            if f in explicit and (float(mine) != float(theirs) if isinstance(mine, float) else mine != theirs):
                fail(f"{args.ckpt}: checkpoint has {f}={theirs} but {flag_name(f.upper())}/${f.upper()} says {mine}")
        seq_len = cfg.train_seq_len if "train_seq_len" in explicit else header_cfg.train_seq_len
        model, cfg, steps = load(args.ckpt, dtype=dtype, device=args.device, base_cfg=cfg)
        cfg = replace(cfg, train_seq_len=seq_len)
    else:
        model = init_model(cfg, random_init=getattr(args, "random_init", False)).to(device=args.device, dtype=dtype)
        steps = 0
    if getattr(args, "amp", False):
        apply_baseline_dtypes(model)
    rope_table = getattr(args, "rope_table", None) or ("bf16" if getattr(args, "amp", False) else "exact")
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


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.cmd == "init":
        cfg, _ = resolve_config(args)
        model = init_model(cfg, random_init=args.random_init)
        save(args.out, model, cfg, steps=0)
        print(f"wrote {args.out}: {sum(p.numel() for p in model.parameters())} parameters, seed {cfg.seed}")
        return 0

    dtype = setup_runtime(args)
    cfg, explicit = resolve_config(args)
    model, cfg, steps = model_for(args, cfg, explicit, dtype)

    if args.cmd == "train":
        done = train(model, cfg, args)
        if args.out:
            save(args.out, model, cfg, steps=steps + done)
            print(f"wrote {args.out}: {steps + done} steps")
    elif args.cmd == "eval":
        tokens = load_validation_tokens(os.path.join(cfg.data_path, "fineweb_val_*.bin"), cfg.train_seq_len, args.max_tokens)
        luts = load_luts(cfg, args.byte260)
        r = evaluate(model, tokens, cfg.train_seq_len, luts, stride=args.stride,
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
        if args.k < 0:
            fail("--k must be >= 0")
        weights, records = debug_state(model, cfg, args, args.k)
        write_container(args.out, cfg, steps, weights + records)
        print(f"wrote {args.out}: {len(weights)} weights, {len(records)} debug records, "
              f"loss {float(records[3][1][0])!r}, losses {[float(v) for v in records[-1][1]]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
