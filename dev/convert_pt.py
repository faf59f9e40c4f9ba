#!/usr/bin/python3
"""Convert a train_gpt.py state_dict (final_model.pt, torch.save'd; bf16 tensors allowed) into a golf
checkpoint (float32; format in test/reference.py section 5).

Usage: dev/convert_pt.py [--num-heads N] [--rope-base F] [--logit-softcap F] [--train-seq-len N]
                         [--steps N] final_model.pt out.bin

The model shape is read from the tensors: vocab_size and model_dim from tok_emb.weight, num_layers from
the blocks.N keys, num_heads from blocks.0.attn.q_gain (one gain per head; --num-heads, default 8, must
agree with it and divide model_dim), num_kv_heads from blocks.0.attn.c_k.weight, the MLP width from
blocks.0.mlp.fc.weight (MLP_MULT when a multiple of model_dim, else MLP_HIDDEN), tie_embeddings from
whether lm_head.weight exists. The key set must be exactly train_gpt.py's for that shape, every shape
must match, and every tensor must be floating point and finite;
the output must not be the input.
ROPE_BASE, LOGIT_SOFTCAP, TRAIN_SEQ_LEN and the step count are not in a state_dict: they come from the
flags (defaults: the baseline's 10000, 30, 1024, and 0 steps) and go into the header.
Exit status 0 on success, 1 with a message naming the file and the problem otherwise, 2 on usage errors.
"""

import argparse
import re
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "test"))
import reference as ref  # noqa: E402


def die(path, msg: str) -> None:
    raise SystemExit(f"convert_pt.py: error: {path}: {msg}")


def load_state_dict(path: Path) -> dict:
    if not path.is_file():
        die(path, "no such file")
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # a pickle that is not a plain state_dict, or not a torch file at all
        die(path, f"cannot be read as a torch.save'd state_dict ({type(e).__name__}: {str(e).splitlines()[0][:200]})")
    if not isinstance(obj, dict):
        die(path, f"holds a {type(obj).__name__}, expected a state_dict (a dict of tensors)")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        die(path, f"entries that are not named tensors: {bad[:5]}")
    prefixed = [k for k in obj if k.startswith(("_orig_mod.", "module."))]
    if prefixed:
        die(path, f"keys carry a wrapper prefix ({prefixed[0]!r}): save the unwrapped model's state_dict "
                  "(train_gpt.py saves base_model.state_dict())")
    return obj


def infer_config(path: Path, sd: dict, args) -> ref.Config:
    def need(key: str, ndim: int) -> torch.Tensor:
        if key not in sd:
            die(path, f"missing key {key!r}, needed to infer the model shape")
        t = sd[key]
        if t.ndim != ndim:
            die(path, f"{key} has shape {tuple(t.shape)}, expected {ndim} dimensions")
        return t

    vocab_size, model_dim = need("tok_emb.weight", 2).shape
    layer_ids = sorted({int(m.group(1)) for k in sd for m in [re.match(r"blocks\.(\d+)\.", k)] if m})
    if not layer_ids:
        die(path, "no blocks.N.* keys")
    num_layers = layer_ids[-1] + 1
    if layer_ids != list(range(num_layers)):
        die(path, f"block indices are not 0..{num_layers - 1}: {layer_ids}")
    num_heads = need("blocks.0.attn.q_gain", 1).shape[0]
    if args.num_heads is not None and args.num_heads != num_heads:
        die(path, f"--num-heads {args.num_heads} disagrees with blocks.0.attn.q_gain, which has {num_heads} entries (one per head)")
    if num_heads <= 0 or model_dim % num_heads != 0:
        die(path, f"num_heads={num_heads} does not divide model_dim={model_dim}")
    head_dim = model_dim // num_heads
    if head_dim % 2 != 0:
        die(path, f"head_dim={head_dim} (model_dim {model_dim} / num_heads {num_heads}) is odd; RoPE needs it even")
    kv_dim = need("blocks.0.attn.c_k.weight", 2).shape[0]
    if kv_dim == 0 or kv_dim % head_dim != 0 or num_heads % (kv_dim // head_dim) != 0:
        die(path, f"blocks.0.attn.c_k.weight has {kv_dim} rows, not a number of heads of {head_dim} that divides {num_heads}")
    hidden = int(need("blocks.0.mlp.fc.weight", 2).shape[0])
    return ref.default_config(vocab_size=int(vocab_size), num_layers=num_layers, model_dim=int(model_dim),
                              num_heads=int(num_heads), num_kv_heads=int(kv_dim // head_dim),
                              mlp_mult=hidden // int(model_dim) if hidden % model_dim == 0 else 2,
                              mlp_hidden=0 if hidden % model_dim == 0 else hidden, tie_embeddings=int("lm_head.weight" not in sd),
                              rope_base=args.rope_base, logit_softcap=args.logit_softcap,
                              train_seq_len=args.train_seq_len)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="convert_pt.py", description=__doc__.split("\n\n")[0])
    p.add_argument("input", help="train_gpt.py state_dict (final_model.pt)")
    p.add_argument("output", help="golf checkpoint to write")
    p.add_argument("--num-heads", type=int, default=None,
                   help="expected number of heads (default: read from q_gain; 8 in the baseline)")
    p.add_argument("--rope-base", type=float, default=10000.0, help="ROPE_BASE the model was trained with (10000)")
    p.add_argument("--logit-softcap", type=float, default=30.0, help="LOGIT_SOFTCAP (30)")
    p.add_argument("--train-seq-len", type=int, default=1024, help="TRAIN_SEQ_LEN (1024)")
    p.add_argument("--steps", type=int, default=0, help="steps trained, for the header (0)")
    args = p.parse_args(argv)
    path = Path(args.input)
    if args.rope_base <= 0 or args.logit_softcap <= 0 or args.train_seq_len <= 0 or args.steps < 0:
        p.error("--rope-base, --logit-softcap and --train-seq-len must be positive, --steps >= 0")

    problem = ref.output_problem(args.output, [args.input])
    if problem:
        raise SystemExit(f"convert_pt.py: error: {problem}")
    sd = load_state_dict(path)
    cfg = infer_config(path, sd, args)
    expected = ref.GPT.from_config(cfg).state_dict()  # train_gpt.py's keys, shapes and order
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    if missing or unexpected:
        die(path, f"key set differs from train_gpt.py's for the inferred shape (layers {cfg.num_layers}, dim "
                  f"{cfg.model_dim}, tied {bool(cfg.tie_embeddings)}): missing {missing[:6]}"
                  f"{' ...' if len(missing) > 6 else ''}, unexpected {unexpected[:6]}{' ...' if len(unexpected) > 6 else ''}")
    for k, t in expected.items():
        if tuple(sd[k].shape) != tuple(t.shape):
            die(path, f"{k} has shape {tuple(sd[k].shape)}, expected {tuple(t.shape)}")
        if not sd[k].is_floating_point():
            die(path, f"{k} has dtype {sd[k].dtype}, expected a floating-point tensor")
        if not torch.isfinite(sd[k]).all():
            die(path, f"{k} holds non-finite values (NaN or infinity): the model cannot be scored")
    records = [(k, sd[k].detach().float()) for k in expected]
    ref.write_container(args.output, cfg, args.steps, records)
    dtypes = sorted({str(sd[k].dtype).replace("torch.", "") for k in expected})
    print(f"wrote {args.output}: vocab {cfg.vocab_size}, {cfg.num_layers} layers x {cfg.model_dim}, heads "
          f"{cfg.num_heads}/{cfg.num_kv_heads}, mlp {cfg.mlp_width}, tied {bool(cfg.tie_embeddings)}, "
          f"{sum(t.numel() for t in expected.values())} parameters (from {', '.join(dtypes)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
