#!/usr/bin/env python3
"""dev/val_cut.py — a data folder for short runs: the train shards of DATA (links) and its first val shard cut to its
first TOKENS + 1 tokens (header updated), so that a final eval stays short (the CPU build, tests, benchmarks).
Usage: python3 dev/val_cut.py DATA OUT TOKENS     (standard library only)"""
import struct
import sys
from pathlib import Path


def val_cut(data, out, tokens):
    """write OUT as above; returns OUT"""
    data, out = Path(data), Path(out)
    vals = sorted(data.glob("fineweb_val_*.bin"))
    if not vals or not list(data.glob("fineweb_train_*.bin")):
        raise SystemExit(f"val_cut: {data} holds no fineweb_train_*.bin or no fineweb_val_*.bin shards")
    out.mkdir(parents=True, exist_ok=True)
    for f in sorted(data.glob("fineweb_train_*.bin")):
        link = out / f.name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(f.resolve())
    with open(vals[0], "rb") as f:
        head = list(struct.unpack("<256i", f.read(1024)))
        toks = f.read(2 * (tokens + 1))
    head[2] = len(toks) // 2
    tmp = out / (vals[0].name + ".tmp")
    tmp.write_bytes(struct.pack("<256i", *head) + toks)
    tmp.replace(out / vals[0].name)
    return out


if __name__ == "__main__":
    if sys.argv[1:] in (["-h"], ["--help"]):
        print(__doc__)
        sys.exit(0)
    if len(sys.argv) != 4 or not sys.argv[3].isdigit() or int(sys.argv[3]) < 1:
        raise SystemExit("usage: python3 dev/val_cut.py DATA OUT TOKENS (TOKENS a positive whole number)")
    val_cut(sys.argv[1], sys.argv[2], int(sys.argv[3]))
