#!/usr/bin/python3
"""Tests of dev/submit.sh (and its back end dev/golf_log.py) on synthetic train_golf run folders: train.log with the
lines train_golf writes (config, command, code, hardware, step lines, Serialized, final roundtrip, artifact) and a
blob of chosen size. No GPU, no training.

  layout     the folder records/<date>_<NAME>/ holds what openai/parameter-golf's records hold (README.md,
             submission.json, the train logs, train_gpt.py: the counted code, dev/golf_log.py's train_gpt of this checkout)
             plus the blobs and golf_infer.c; the copies equal their sources
  values     submission.json: name, date, seeds, bytes, val_bpb/val_loss = the mean over seeds of the final
             roundtrip (exact line), recomputed here from the numbers the test wrote; README carries them
  refusals   artifact > 16,000,000 bytes, train > 600 s, eval > 600 s, unfinished log, logs that disagree (config,
             seed, blob size, blob CRC, code), missing files, existing folder without --force: exit 1, a message
             naming the file, and nothing written; unknown flags and bad names: exit 2
  record     (the CPU build, real runs) a short train_golf_cpu run packaged by submit.sh; the folder's train_gpt.py run
             with GOLF_CPU=1 as 2 ranks started torchrun-style (RANK, WORLD_SIZE, ... in the environment) and by torchrun
             itself: one build per node, the record's config passed, its log and blob written, the blob's val_bpb
             (golf_infer) equal to the log's roundtrip line, the artifact line counting train_gpt.py; those runs
             packaged again give the same train_gpt.py; README and submission.json agree with the logs; a damaged,
             truncated or undecodable embedded payload, and a missing nvcc, cuBLAS, NCCL or GPU, stop it with a message;
             where nvcc is installed, the CUDA build of its sources (train_golf then stops: no device)

Usage: /usr/bin/python3 test/test_submit.py [--keep] [--shared DIR] [--only GROUP,...]
The last line printed is "N passed, M failed, K skipped"; exit status 1 if anything failed.
"""

import argparse
import json
import os
import random
import re
import runpy
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "test"))
sys.path.insert(0, str(ROOT / "dev"))
from harness import Results  # noqa: E402
import golf_log  # noqa: E402

SUBMIT = ROOT / "dev" / "submit.sh"
LIMIT = 16_000_000
# What a records folder of openai/parameter-golf holds (records/track_10min_16mb/2026-03-17_NaiveBaseline: README.md,
# submission.json, train.log, train_gpt.py; multi-seed records: train_seed<S>.log), and submission.json's keys there.
RECORD_FILES = {"README.md", "submission.json"}
RECORD_JSON_KEYS = {"name", "date", "val_loss", "val_bpb", "bytes_total", "bytes_code"}
# the train_gpt.py of this checkout and the config of make_run's command line (--quant int8): the counted code
PACKED = golf_log.train_gpt(ROOT, {"QUANT": "int8"})


def crc(data):
    return f"{zlib.crc32(data) & 0xFFFFFFFF:08x}"


def code_line():
    parts = []
    for name in ("golf_infer.c", "train_golf.cu"):
        data = (ROOT / name).read_bytes()
        parts.append(f"{name} bytes:{len(data)} crc32:{crc(data)}")
    return "code: " + " ".join(parts)


def make_run(folder, seed, *, blob_bytes=4_000_000, train_ms=598_047, eval_ms=31_000, val=(2.0604, 1.21687994),
             finished=True, config=None, code=None, log_model_bytes=None, counted=None, args="--quant int8"):
    """A train_golf run folder: final_model.golf (blob_bytes: a blob header, seeded random bytes, the CRC-32) and train.log as train_golf writes it,
    with the given train time (last step line), eval time, final roundtrip (val_loss, val_bpb). counted: (name, bytes) of the
    artifact line's code (default golf_infer.c: a run of train_golf itself); args: the command line's arguments."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # a blob's frame (magic, version, total size, CRC-32) around seeded random bytes
    body = struct.pack("<3I", 20261124, 3, blob_bytes) + bytes(244) + random.Random(seed).randbytes(blob_bytes - 260)
    blob = body + struct.pack("<I", zlib.crc32(body))
    (folder / "final_model.golf").write_bytes(blob)
    cfg = {"DATA_PATH": "./data/datasets/fineweb10B_sp1024", "TOKENIZER_PATH": "./data/tokenizers/fineweb_1024_bpe.model",
           "RUN_ID": f"seed{seed}", "SEED": str(seed), "ITERATIONS": "20000", "TRAIN_BATCH_TOKENS": "524288", "TRAIN_SEQ_LEN": "1024",
           "MAX_WALLCLOCK_SECONDS": "598", "VOCAB_SIZE": "1024", "NUM_LAYERS": "9", "MODEL_DIM": "512", "NUM_HEADS": "8",
           "NUM_KV_HEADS": "4", "MLP_MULT": "2", "TIE_EMBEDDINGS": "1", "MATRIX_LR": "0.04", "OUT_DIR": str(folder), "QUANT": "int8",
           "QUANT_CLIP": "search", "DIST_TIMEOUT": "300"}
    cfg.update(config or {})
    counted_name, code_bytes = counted or ("golf_infer.c", (ROOT / "golf_infer.c").stat().st_size)
    model = len(blob) if log_model_bytes is None else log_model_bytes
    lines = [f"config {k}={v}" for k, v in cfg.items()]
    lines += [f"command: SEED={seed} OUT_DIR={folder} ./train_golf {args}", code or code_line(),
              "hardware: 8 x NVIDIA H100 80GB HBM3 (81559 MiB; rank 0 on host node1; launch mpirun)",
              "model_params:17059912", "world_size:8 grad_accum_steps:1",
              "step:0/20000 val_loss:6.9370 val_bpb:4.0978 train_time:0ms step_avg:0.01ms"]
    steps = 13365
    for s in (1, 2, 200, 400, steps):
        t = train_ms * s / steps
        lines.append(f"step:{s}/20000 train_loss:{6.9 - s * 1e-4:.4f} train_time:{t:.0f}ms step_avg:{t / s:.2f}ms")
    lines += [f"step:{steps}/20000 val_loss:2.0490 val_bpb:1.2102 train_time:{train_ms:.0f}ms step_avg:{train_ms / steps:.2f}ms",
              f"stopping_early: wallclock_cap train_time:{train_ms:.0f}ms step:{steps}/20000",
              "peak memory: 10472 MiB in use of 81559 MiB"]
    if finished:
        lines += [f"Serialized model int8: {model} bytes crc32:{crc(body)}",   # the blob's own closing CRC, as train_golf logs it
                  f"final_int8_roundtrip val_loss:{val[0]:.4f} val_bpb:{val[1]:.4f} eval_time:{eval_ms:.0f}ms",
                  f"final_int8_roundtrip_exact val_loss:{val[0]:.8f} val_bpb:{val[1]:.8f}",
                  f"artifact: {counted_name} {code_bytes} + model {model} = {code_bytes + model} bytes (limit 16000000) "
                  f"{'OK' if code_bytes + model <= LIMIT else 'OVER'}"]
    (folder / "train.log").write_text("\n".join(lines) + "\n")
    return folder


def swap_blob(folder):
    """the run folder with another intact blob of the same size (bytes past the header flipped, its CRC-32 redone): not the
    blob its log describes, though whole-file CRC-32s of the two would be equal (both the CRC residue)"""
    blob = folder / "final_model.golf"
    data = blob.read_bytes()
    body = data[:256] + bytes(b ^ 0xFF for b in data[256:272]) + data[272:-4]
    blob.write_bytes(body + struct.pack("<I", zlib.crc32(body)))
    return folder


def submit(*args, env=None):
    return subprocess.run(["bash", str(SUBMIT), *map(str, args)], capture_output=True, text=True, env=env)


def check_layout_values(R, tmp):
    recs = tmp / "records"
    vals = {1337: (2.06035852, 1.21687994), 42: (2.05811111, 1.21555555), 7: (2.06212345, 1.21800001)}
    runs = [make_run(tmp / f"run{s}", s, val=v, blob_bytes=15_000_000 + s) for s, v in vals.items()]
    p = submit("--records", recs, "--date", "2026-11-25", "--author", "A. Person", "--baseline", "2.0727", *runs, "ThreeSeeds")
    dest = recs / "2026-11-25_ThreeSeeds"
    ok = p.returncode == 0 and dest.is_dir()
    R.check("submit: three seeds -> records/2026-11-25_ThreeSeeds/", ok, (p.stdout + p.stderr).strip()[-300:])
    if not ok:
        return
    files = {f.name for f in dest.iterdir()}
    want = RECORD_FILES | {"train_gpt.py", "golf_infer.c"} | {f"train_seed{s}.log" for s in vals} | {f"final_model_seed{s}.golf" for s in vals}
    R.check("layout: README.md, submission.json, a train log per seed, train_gpt.py, the blobs and golf_infer.c (as "
            "openai/parameter-golf's records, plus the blobs and their scorer)", files == want, f"extra {sorted(files - want)}, missing {sorted(want - files)}")
    same = all((dest / f"train_seed{s}.log").read_bytes() == (tmp / f"run{s}" / "train.log").read_bytes()
               and (dest / f"final_model_seed{s}.golf").read_bytes() == (tmp / f"run{s}" / "final_model.golf").read_bytes() for s in vals)
    same &= (dest / "golf_infer.c").read_bytes() == (ROOT / "golf_infer.c").read_bytes()
    R.check("layout: logs, blobs and golf_infer.c are byte copies of their sources", same)
    R.check("layout: train_gpt.py is dev/golf_log.py's train_gpt of this checkout and the logs' config (QUANT=int8)",
            (dest / "train_gpt.py").read_bytes() == PACKED)
    R.check("layout: no temporary folder left in records/", [f.name for f in recs.iterdir()] == [dest.name], str(list(recs.iterdir())))
    sub = json.loads((dest / "submission.json").read_text())
    code_bytes = len(PACKED)
    mean_bpb = sum(v[1] for v in vals.values()) / 3
    mean_loss = sum(v[0] for v in vals.values()) / 3
    # submission.json keeps 8 decimals (the exact lines' precision): |error| <= 5e-9 plus float rounding
    close = lambda a, b: abs(a - b) <= 5e-9 + 1e-12 * abs(b)
    checks = {"keys of the records' submission.json": RECORD_JSON_KEYS <= set(sub),
              "name": sub.get("name") == "ThreeSeeds", "date": sub.get("date") == "2026-11-25", "author": sub.get("author") == "A. Person",
              "seeds": sub.get("seeds") == [1337, 42, 7],
              "val_bpb = mean roundtrip": close(sub.get("val_bpb", 0), mean_bpb), "val_loss = mean roundtrip": close(sub.get("val_loss", 0), mean_loss),
              "bytes_code": sub.get("bytes_code") == code_bytes, "bytes_model = largest blob": sub.get("bytes_model") == 15_001_337,
              "bytes_total = code + largest blob": sub.get("bytes_total") == code_bytes + 15_001_337,
              "per seed": all(close(sub["seed_results"][str(s)]["val_bpb"], v[1]) and sub["seed_results"][str(s)]["steps"] == 13365
                              and sub["seed_results"][str(s)]["train_time_ms"] == 598047 and sub["seed_results"][str(s)]["eval_time_ms"] == 31000
                              for s, v in vals.items()),
              "pre-quant": close(sub.get("pre_quant_val_bpb", 0), 1.2102), "p_value in (0, 1)": 0 < sub.get("p_value", -1) < 1}
    bad = [k for k, v in checks.items() if not v]
    R.check("submission.json: " + ", ".join(checks), not bad, f"wrong: {bad}; {json.dumps({k: v for k, v in sub.items() if k != 'seed_results'})[:400]}")
    readme = (dest / "README.md").read_text()
    need = [f"{mean_bpb:.8f}", f"{code_bytes + 15_001_337:,}", "598.0 s", "13365/20000", "31.0 s", "8 x NVIDIA H100 80GB HBM3",
            f"SEED=1337 OUT_DIR={tmp / 'run1337'} ./train_golf --quant int8", "1.2102", "NUM_LAYERS=9", "train_seed42.log"]
    R.check("README.md: score, artifact bytes, train and eval time, steps, hardware, command, pre-quant bpb, config, files",
            all(n in readme for n in need), f"missing: {[n for n in need if n not in readme]}")

    # golf_log.py pack: the same file without runs; a setting that is not NAME=value is a usage error
    out = tmp / "packed.py"
    p = subprocess.run([sys.executable, ROOT / "dev" / "golf_log.py", "pack", "--code", ROOT, "--out", out, "QUANT=int8"], capture_output=True, text=True)
    R.check("golf_log.py pack --code . --out F QUANT=int8 writes the train_gpt.py submit.sh wrote", p.returncode == 0 and out.read_bytes() == PACKED,
            p.stderr.strip())
    p = subprocess.run([sys.executable, ROOT / "dev" / "golf_log.py", "pack", "--code", ROOT, "--out", tmp / "x.py", "quant"], capture_output=True, text=True)
    R.check("golf_log.py pack with 'quant' (not NAME=value) -> exit 2, says so, writes nothing", p.returncode == 2 and "'quant' is not a NAME=value" in p.stderr
            and not (tmp / "x.py").exists(), p.stderr.strip())

    # one seed, and the folder already there
    run = make_run(tmp / "single", 2024)
    p = submit("--records", recs, "--date", "2026-11-25", run, "ThreeSeeds")
    R.check("refuses: the folder exists (no --force) -> exit 1, says so, leaves it alone",
            p.returncode == 1 and "already exists" in p.stderr and "--force" in p.stderr and (dest / "train_seed42.log").exists(), p.stderr.strip())
    p = submit("--records", recs, "--date", "2026-11-25", "--force", run, "ThreeSeeds")
    files = {f.name for f in dest.iterdir()}
    R.check("--force replaces the folder with the new submission", p.returncode == 0 and "train_seed2024.log" in files
            and "train_seed42.log" not in files and json.loads((dest / "submission.json").read_text())["seeds"] == [2024],
            (p.stdout + p.stderr).strip()[-300:] + f" {sorted(files)}")
    bad_run = make_run(tmp / "bad_force", 5, train_ms=600_001)
    p = submit("--records", recs, "--date", "2026-11-25", "--force", bad_run, "ThreeSeeds")
    R.check("--force with a bad run keeps the existing folder", p.returncode == 1 and (dest / "train_seed2024.log").exists(), p.stderr.strip()[-200:])


def check_refusals(R, tmp):
    recs = tmp / "refused"
    code_bytes = len(PACKED)
    other_code = code_line().replace("golf_infer.c bytes:", "golf_infer.c bytes:1")
    cases = [
        ("artifact over 16,000,000 bytes", lambda d: [make_run(d / "a", 1, blob_bytes=LIMIT - code_bytes + 1)], "artifact too large"),
        ("artifact of exactly 16,000,000 bytes is accepted", lambda d: [make_run(d / "a", 1, blob_bytes=LIMIT - code_bytes)], None),
        ("training over 600 s", lambda d: [make_run(d / "a", 1, train_ms=600_001)], "training took 600001 ms"),
        ("training of exactly 600 s is accepted", lambda d: [make_run(d / "a", 1, train_ms=600_000)], None),
        ("evaluation over 600 s", lambda d: [make_run(d / "a", 1, eval_ms=600_001)], "evaluation took 600001 ms"),
        ("an unfinished log", lambda d: [make_run(d / "a", 1, finished=False)], "did not finish"),
        ("logs with different configs", lambda d: [make_run(d / "a", 1), make_run(d / "b", 2, config={"NUM_LAYERS": "11"})],
         "different configs: NUM_LAYERS=9 vs NUM_LAYERS=11"),
        ("two logs with the same seed", lambda d: [make_run(d / "a", 1), make_run(d / "b", 1)], "both have SEED=1"),
        ("a log whose model bytes differ from its blob", lambda d: [make_run(d / "a", 1, log_model_bytes=123)], "not this run's blob"),
        ("a blob of the right size but other bytes", lambda d: [swap_blob(make_run(d / "a", 1))], "not this run's blob"),
        ("a log that ran other code", lambda d: [make_run(d / "a", 1, code=other_code)], "package the code that ran"),
        ("a log without a code line", lambda d: [make_run(d / "a", 1, code="model_params:1")], "no 'code:' line"),
        ("a run of this train_gpt.py (its artifact line counts it)", lambda d: [make_run(d / "a", 1, counted=("train_gpt.py", code_bytes))], None),
        ("a run of another train_gpt.py", lambda d: [make_run(d / "a", 1, counted=("train_gpt.py", code_bytes + 1))],
         f"ran a train_gpt.py of {code_bytes + 1} bytes"),
        ("an artifact line counting another file", lambda d: [make_run(d / "a", 1, counted=("other.c", 5))], "counted other.c as the code"),
        ("a run from INIT_CKPT (a file the record does not carry)", lambda d: [make_run(d / "a", 1, args="--quant int8 --init-ckpt x.ckpt", config={"INIT_CKPT": "x.ckpt"})],
         "set INIT_CKPT=x.ckpt"),
        ("a command line with an argument that is not a flag", lambda d: [make_run(d / "a", 1, args="--quant")], "argument '--quant' is not"),
    ]
    for i, (what, build, want) in enumerate(cases):
        d = tmp / f"case{i}"
        runs = build(d)
        p = submit("--records", recs, "--date", "2026-11-25", *runs, f"case{i}")
        dest = recs / f"2026-11-25_case{i}"
        if want is None:
            R.check(f"accepts {what}", p.returncode == 0 and dest.is_dir(), p.stderr.strip()[-300:])
            continue
        names_file = any(str(r / "train.log") in p.stderr for r in runs)
        R.check(f"refuses {what} -> exit 1, '{want}', names the log, writes nothing",
                p.returncode == 1 and want in p.stderr and names_file and not dest.exists()
                and not [f for f in recs.glob(".submit*")], p.stderr.strip()[-300:])
    # several violations at once are all reported
    runs = [make_run(tmp / "multi" / "a", 1, train_ms=700_000, eval_ms=700_000)]
    p = submit("--records", recs, "--date", "2026-11-25", *runs, "multi")
    R.check("reports every violation of a run at once", p.returncode == 1 and "training took" in p.stderr and "evaluation took" in p.stderr, p.stderr.strip())
    empty = tmp / "empty_run"
    empty.mkdir()
    p = submit("--records", recs, "--date", "2026-11-25", empty, "empty")
    R.check("refuses a folder without train.log and final_model.golf, naming both", p.returncode == 1
            and str(empty / "train.log") in p.stderr and str(empty / "final_model.golf") in p.stderr, p.stderr.strip())
    code_dir = tmp / "nocode"
    code_dir.mkdir()
    p = submit("--records", recs, "--date", "2026-11-25", "--code", code_dir, make_run(tmp / "c", 3), "nocode")
    R.check("refuses when --code has no golf_infer.c", p.returncode == 1 and str(code_dir / "golf_infer.c") in p.stderr, p.stderr.strip())
    run = make_run(tmp / "ok", 9)
    for args, want in [(["--bogus", run, "x"], "unknown option '--bogus'"), ([run, "bad/name"], "NAME 'bad/name'"), ([run], "need at least one RUN_DIR"),
                       (["--date", "25.11.2026", run, "x"], "not YYYY-MM-DD"), (["--records"], "--records needs a value")]:
        p = submit(*args)
        R.check(f"usage error: {' '.join(map(str, args))[-40:]} -> exit 2, '{want}'", p.returncode == 2 and want in p.stderr, p.stderr.strip())
    p = submit("--records", recs, tmp / "nonexistent", "x")
    R.check("refuses a RUN_DIR that is not a folder", p.returncode == 1 and "nonexistent: not a folder" in p.stderr, p.stderr.strip())
    p = submit("--help")
    R.check("--help prints the usage, exit 0", p.returncode == 0 and "RUN_DIR [RUN_DIR ...] NAME" in p.stdout, p.stderr.strip())


# --- record: real runs of the CPU build, and the folder's train_gpt.py ---------------------------------------------------
# a tiny model, off the defaults (learning rate, q gain, int6 by flag), PRECISION=fp32 so that golf_infer's float32
# forward scores the blob as train_golf's roundtrip does
TINY = {"NUM_LAYERS": "2", "MODEL_DIM": "64", "NUM_HEADS": "2", "NUM_KV_HEADS": "1", "TRAIN_SEQ_LEN": "64", "TRAIN_BATCH_TOKENS": "1024",
        "VAL_BATCH_SIZE": "1024", "ITERATIONS": "3", "WARMDOWN_ITERS": "2", "VAL_LOSS_EVERY": "0", "TRAIN_LOG_EVERY": "1",
        "MAX_WALLCLOCK_SECONDS": "0", "PRECISION": "fp32", "MATRIX_LR": "0.03", "QK_GAIN_INIT": "2"}
# golf_infer against train_golf's roundtrip: both float32 forward passes of the same decoded weights, in other summation
# orders; at 2 layers x 64 a token's loss differs by ~1e-6 relative (val_bpb ~4: ~4e-6), 1e-4 bounds it as test_gpu.py's
# roundtrip check does, while a wrong blob or a wrong model is off by far more than 1e-2
BPB_ATOL = 1e-4
BUILD_TIMEOUT = 1200   # seconds: the CPU build of train_golf.cu (~1 minute alone on 2 cores) plus a tiny run


def exact_line(text):
    """(val_loss, val_bpb) of the final roundtrip's exact line of a log, or None"""
    m = re.search(r"^final_\w+?_roundtrip_exact val_loss:([\d.]+) val_bpb:([\d.]+)", text, re.M)
    return (float(m[1]), float(m[2])) if m else None


def infer_bpb(blob, data, tok):
    q = subprocess.run([ROOT / "golf_infer", blob, "--val", f"{data}/fineweb_val_*.bin", "--tokenizer", tok, "--seq-len", TINY["TRAIN_SEQ_LEN"]],
                       capture_output=True, text=True)
    m = re.search(r"val_bpb:([\d.]+)", q.stdout)
    return float(m[1]) if m else None


def check_run_log(R, label, out_dir, data, tok, packed, seed, ranks):
    """a run of the folder's train_gpt.py: log and blob written, the record's config and this launch's seed in force,
    the artifact line counting train_gpt.py, the blob's val_bpb equal to the log's roundtrip"""
    log = out_dir / "train.log"
    if not R.check(f"{label}: the run wrote train.log and final_model.golf", log.is_file() and (out_dir / "final_model.golf").is_file()):
        return
    text = log.read_text()
    conf = {k: f"config {k}={v}" for k, v in dict(TINY, QUANT="int6", SEED=str(seed)).items()}
    R.check(f"{label}: the record's config (from train_gpt.py's CONFIG) and the launch's SEED are the run's", all(v in text for v in conf.values()),
            f"missing: {[v for v in conf.values() if v not in text]}")
    R.check(f"{label}: {ranks} ranks (hardware line)", re.search(rf"^hardware: {ranks} x ", text, re.M) is not None)
    want = f"artifact: train_gpt.py {len(packed)} + model {(out_dir / 'final_model.golf').stat().st_size} "
    R.check(f"{label}: the artifact line counts train_gpt.py's {len(packed):,} bytes", want in text, next((x for x in text.splitlines() if x.startswith("artifact")), "no artifact line"))
    got, b = exact_line(text), infer_bpb(out_dir / "final_model.golf", data, tok)
    R.check(f"{label}: the blob's val_bpb (golf_infer) equals the log's roundtrip line ({BPB_ATOL})", got is not None and b is not None
            and abs(got[1] - b) <= BPB_ATOL, f"{got} vs {b}")


def agrees(R, label, dest, logs):
    """the records folder's submission.json and README against its logs and its train_gpt.py"""
    sub = json.loads((dest / "submission.json").read_text())
    readme = (dest / "README.md").read_text()
    code = (dest / "train_gpt.py").stat().st_size
    finals = [exact_line(Path(lg).read_text()) for lg in logs]
    blobs = [(dest / f"final_model_seed{s}.golf").stat().st_size for s in sub["seeds"]]
    mean = lambda xs: sum(xs) / len(xs)
    # submission.json rounds to 8 decimals, the logs' exact lines print 8: the mean is within 5e-9 plus float rounding
    ok = {"bytes_code = the size of train_gpt.py": sub["bytes_code"] == code,
          "bytes_total = train_gpt.py + the largest blob": sub["bytes_total"] == code + max(blobs) and sub["bytes_model"] == max(blobs),
          "val_bpb and val_loss = the logs' roundtrip": abs(sub["val_bpb"] - mean([f[1] for f in finals])) <= 5e-9 + 1e-12
          and abs(sub["val_loss"] - mean([f[0] for f in finals])) <= 5e-9 + 1e-12,
          "README: score, train_gpt.py bytes, artifact bytes": f"{sub['val_bpb']:.8f}" in readme and f"train_gpt.py {code:,}" in readme
          and f"{sub['bytes_total']:,}" in readme}
    R.check(f"{label}: " + ", ".join(ok), all(ok.values()), f"wrong: {[k for k, v in ok.items() if not v]}")
    return sub, readme


def check_record(R, tmp, shared):
    tok = shared / "tokenizers" / "fineweb_1024_bpe.model"
    for need in (ROOT / "train_golf_cpu", ROOT / "golf_infer", shared / "data" / "sample_sp1024", tok):
        if not need.exists():
            R.check(f"record: {need} exists (make cpu golf_infer; the shared data)", False)
            return
    sys.path.insert(0, str(ROOT / "dev"))
    from val_cut import val_cut
    data = val_cut(shared / "data" / "sample_sp1024", tmp / "data", 8192)
    base = dict(os.environ, OMP_WAIT_POLICY="passive", DATA_PATH=str(data), TOKENIZER_PATH=str(tok))
    for k in list(base):   # nothing of the caller's config or launch may leak into these runs
        if k in golf_log.RECORD_REFUSE or k in TINY or k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR",
                                                              "MASTER_PORT", "GOLF_CPU", "GOLF_BUILD_DIR", "GOLF_CODE_FILE", "QUANT", "SEED"):
            del base[k]
    # 1. a short run of train_golf_cpu itself, packaged
    direct = tmp / "direct"
    direct.mkdir()
    p = subprocess.run([ROOT / "train_golf_cpu", "--quant", "int6"], env=dict(base, **TINY, SEED="11", OUT_DIR=str(direct / "out")),
                       cwd=direct, capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    if not R.check("record: a short train_golf_cpu run", p.returncode == 0, (p.stdout + p.stderr)[-400:]):
        return
    recs = tmp / "rec"
    p = submit("--records", recs, "--date", "2026-12-06", direct / "out", "Tiny")
    dest = recs / "2026-12-06_Tiny"
    if not R.check("record: submit.sh packages it", p.returncode == 0 and (dest / "train_gpt.py").is_file(), (p.stdout + p.stderr)[-400:]):
        return
    packed = (dest / "train_gpt.py").read_bytes()
    config = re.search(rb"^CONFIG = (\{.*\})$", packed, re.M)
    want = dict({k: v for k, v in TINY.items()}, QUANT="int6")
    R.check("record: train_gpt.py's CONFIG is the run's command line (environment and --quant) without SEED, OUT_DIR, DATA_PATH, "
            "TOKENIZER_PATH", config is not None and eval(config[1]) == dict(sorted(want.items())), config and config[1][:300])
    R.check("record: train_gpt.py is dev/golf_log.py's train_gpt of this checkout and that config", packed == golf_log.train_gpt(ROOT, dict(sorted(want.items()))))
    sub, readme = agrees(R, "record (train_golf run)", dest, [dest / "train_seed11.log"])
    R.check("record: README says the run was train_golf's own and how to run train_gpt.py", "by train_golf itself" in readme
            and "torchrun --standalone --nproc_per_node=8 train_gpt.py" in readme)

    # 2. the folder's train_gpt.py as 2 ranks started the way torchrun starts them (one build on this node)
    script = dest / "train_gpt.py"
    launch = dict(base, GOLF_CPU="1", GOLF_BUILD_DIR=str(tmp / "golf_build"))
    envrun = tmp / "envrun"
    envrun.mkdir()
    port = str(29000 + os.getpid() % 500)
    procs = [subprocess.Popen(["/usr/bin/python3", script], cwd=envrun, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env=dict(launch, SEED="12", OUT_DIR=str(envrun / "out"), RANK=str(r), WORLD_SIZE="2", LOCAL_RANK=str(r),
                                       LOCAL_WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=port)) for r in (0, 1)]
    outs = [pr.communicate(timeout=BUILD_TIMEOUT)[0] for pr in procs]
    ok = all(pr.returncode == 0 for pr in procs)
    R.check("record: train_gpt.py as 2 ranks (RANK/WORLD_SIZE/LOCAL_RANK/LOCAL_WORLD_SIZE/MASTER_ADDR/MASTER_PORT, GOLF_CPU=1) runs",
            ok, " | ".join(o[-300:] for o in outs))
    R.check("record: local rank 0 builds train_golf_cpu once, local rank 1 waits for it", outs[0].count("train_gpt.py: building") == 1
            and "building" not in outs[1] and len(list((tmp / "golf_build").glob("cpu-*/train_golf_cpu"))) == 1, outs[0][:200])
    if ok:
        check_run_log(R, "record: 2 env-launched ranks", envrun / "out", data, tok, packed, 12, 2)

    # 3. the same under torchrun itself (Debian's python3-torch ships it), on the build made above
    runs = [envrun / "out"] if ok else []
    if subprocess.run(["/usr/bin/python3", "-c", "import torch.distributed.run"], capture_output=True).returncode != 0:
        R.skip("record: torchrun --standalone --nproc_per_node=2 train_gpt.py", "/usr/bin/python3 has no torch.distributed.run")
    else:
        trun = tmp / "torchrun"
        trun.mkdir()
        # Debian's torch 1.13 under Python 3.11 cannot read its own default --redirects 0 (its Std flag enum iterates
        # without NONE), so the ranks' stdout goes to --log_dir and is echoed (--tee 1)
        p = subprocess.run(["/usr/bin/python3", "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "--redirects", "1",
                            "--tee", "1", "--log_dir", tmp / "torchrun_logs", script], cwd=trun,
                           env=dict(launch, SEED="13", OUT_DIR=str(trun / "out")), capture_output=True, text=True, timeout=BUILD_TIMEOUT)
        if R.check("record: torchrun --standalone --nproc_per_node=2 train_gpt.py (GOLF_CPU=1) runs, reusing the build", p.returncode == 0
                   and "building" not in p.stdout + p.stderr, (p.stdout + p.stderr)[-400:]):
            check_run_log(R, "record: torchrun", trun / "out", data, tok, packed, 13, 2)
            runs.append(trun / "out")

    # 4. the runs of train_gpt.py packaged again: the same train_gpt.py, and the folder agrees with their logs
    if runs:
        p = submit("--records", recs, "--date", "2026-12-06", *runs, "FromRecord")
        again = recs / "2026-12-06_FromRecord"
        if R.check("record: submit.sh packages the runs of train_gpt.py", p.returncode == 0, (p.stdout + p.stderr)[-400:]):
            R.check("record: their train_gpt.py is byte for byte the one that ran", (again / "train_gpt.py").read_bytes() == packed)
            _, readme = agrees(R, "record (train_gpt.py runs)", again, [again / f"train_seed{s}.log" for s in (12, 13)[:len(runs)]])
            R.check("record: README says the runs were this train_gpt.py's", "by this train_gpt.py" in readme)

    # 5. a damaged, truncated or undecodable payload, and missing tools: exit 1 and a message, no traceback, nothing run
    def run_stub(path, env, cwd):
        cwd.mkdir(parents=True, exist_ok=True)
        return subprocess.run(["/usr/bin/python3", path], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)

    stub = golf_log.load_stub(ROOT)
    mark = stub.MARK
    at = packed.rindex(mark) + len(mark)
    sources = re.search(rb"^SOURCES = \((\d+), 0x([0-9a-f]{8})\)", packed, re.M)
    flip = at + (len(packed) - at) // 2
    other = b"0" if packed[flip:flip + 1] != b"0" else b"1"
    damaged = packed[:flip] + other + packed[flip + 1:]
    text = damaged[at:].rstrip(b"\n")
    undecodable = damaged.replace(sources[0], b"SOURCES = (%d, 0x%08x)" % (len(text), zlib.crc32(text)))
    bad = tmp / "bad"
    bad.mkdir()
    for k, (what, data_bytes, want) in enumerate([("a damaged character", damaged, "damaged (CRC-32"),
                                                  ("the last 5,000 characters cut off", packed[:-5000], "the file is truncated"),
                                                  ("everything from the sources' line on cut off", packed[:packed.rindex(mark)], "0 characters, expected"),
                                                  ("a damaged character with a CRC-32 to match", undecodable, "do not decode")]):
        f = bad / f"train_gpt_{k}.py"
        f.write_bytes(data_bytes)
        p = run_stub(f, launch, bad / "cwd")   # the build of the intact file is there: it must not run
        R.check(f"record: train_gpt.py with {what} in its sources -> exit 1, '{want}', names the file, runs nothing", p.returncode == 1
                and want in p.stderr and str(f) in p.stderr and "Traceback" not in p.stderr and "step:" not in p.stdout, p.stderr.strip()[-300:])

    # missing nvcc, cuBLAS, NCCL, GPU (no GOLF_CPU): fake tools in a PATH of their own, a fake CUDA_HOME
    fake, cuda = tmp / "fakebin", tmp / "cuda"
    fake.mkdir()
    (cuda / "lib64").mkdir(parents=True)
    (cuda / "include").mkdir()
    nocuda = tmp / "nocuda"
    nocuda.mkdir()
    plain = "/usr/bin:/bin"
    gpu = {k: v for k, v in base.items() if k not in ("CUDA_HOME", "PATH", "LIBRARY_PATH")}
    if shutil.which("nvcc", path=plain) or shutil.which("nvidia-smi", path=plain) or Path("/usr/include/nccl.h").exists():
        R.skip("record: missing nvcc / cuBLAS / NCCL / GPU messages", f"this machine has nvcc or nvidia-smi in {plain}, or /usr/include/nccl.h")
        return
    p = run_stub(script, dict(gpu, PATH=plain, CUDA_HOME=str(nocuda)), tmp / "t_nvcc")
    R.check("record: no nvcc -> exit 1, 'nvcc not found'", p.returncode == 1 and "nvcc not found" in p.stderr and "Traceback" not in p.stderr, p.stderr.strip())
    two = [subprocess.Popen(["/usr/bin/python3", script], cwd=tmp / "t_nvcc", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(gpu, PATH=plain, CUDA_HOME=str(nocuda), RANK=str(r), WORLD_SIZE="2", LOCAL_RANK=str(r), LOCAL_WORLD_SIZE="2",
                                     MASTER_ADDR="127.0.0.1", MASTER_PORT=port)) for r in (0, 1)]
    errs = [pr.communicate(timeout=120)[1] for pr in two]
    R.check("record: no nvcc with 2 ranks -> local rank 0 says so, local rank 1 stops saying local rank 0's build failed",
            [pr.returncode for pr in two] == [1, 1] and "nvcc not found" in errs[0] and "local rank 0's build" in errs[1], " | ".join(errs))
    (fake / "nvcc").write_text("#!/bin/sh\nexit 1\n")
    (fake / "nvcc").chmod(0o755)
    path = f"{fake}:{plain}"
    if any((Path(d) / "libcublas.so").exists() for d in stub.SYSTEM_LIBS):
        R.skip("record: nvcc but no cuBLAS", f"this machine has a libcublas.so in {stub.SYSTEM_LIBS}")
    else:
        p = run_stub(script, dict(gpu, PATH=path, CUDA_HOME=str(nocuda)), tmp / "t_libs")
        R.check("record: nvcc but no cuBLAS -> exit 1, 'libcublas.so is missing'", p.returncode == 1 and "libcublas.so is missing" in p.stderr
                and "Traceback" not in p.stderr, p.stderr.strip())
    for lib in ("libcublas.so", "libcublasLt.so"):
        (cuda / "lib64" / lib).write_bytes(b"")
    p = run_stub(script, dict(gpu, PATH=path, CUDA_HOME=str(cuda)), tmp / "t_gpu")
    R.check("record: nvcc and cuBLAS, no driver -> exit 1, 'no GPU ... nvidia-smi not found'", p.returncode == 1 and "no GPU" in p.stderr
            and "nvidia-smi not found" in p.stderr and "Traceback" not in p.stderr, p.stderr.strip())
    ranks2 = dict(RANK="0", WORLD_SIZE="2", LOCAL_RANK="0", LOCAL_WORLD_SIZE="2")
    p = run_stub(script, dict(gpu, PATH=path, CUDA_HOME=str(cuda), **ranks2), tmp / "t_nccl")
    pip_nccl = any((Path(d) / "nvidia" / "nccl").exists() for d in sys.path if d)
    if pip_nccl:
        R.skip("record: WORLD_SIZE=2 without NCCL", "a pip nvidia-nccl is on sys.path")
    else:
        R.check("record: WORLD_SIZE=2 without nccl.h -> exit 1, 'NCCL is missing'", p.returncode == 1 and "NCCL is missing" in p.stderr
                and "Traceback" not in p.stderr, p.stderr.strip())
    (cuda / "include" / "nccl.h").write_text("")
    (fake / "nvidia-smi").write_text("#!/bin/sh\necho 'GPU 0: Fake GPU (UUID: GPU-0)'\n")
    (fake / "nvidia-smi").chmod(0o755)
    p = run_stub(script, dict(gpu, PATH=path, CUDA_HOME=str(cuda), **ranks2), tmp / "t_gpus")
    R.check("record: one GPU for 2 local ranks -> exit 1, 'nvidia-smi lists 1, 2 needed'", p.returncode == 1 and "nvidia-smi lists 1, 2 needed" in p.stderr
            and "Traceback" not in p.stderr, p.stderr.strip())
    R.check("record: none of these reached make (no cuda build folder)", not list(tmp.glob("t_*/golf_build/cuda-*[!d]")))

    # with a real nvcc (no GPU): the CUDA build of the unpacked sources, then train_golf stopping for want of a device
    real = shutil.which("nvcc") or "/usr/local/cuda/bin/nvcc"
    if not Path(real).exists():
        R.skip("record: the nvcc build of train_gpt.py's sources", "no nvcc on this machine")
        return
    smi = tmp / "smi_only"
    smi.mkdir()
    shutil.copy(fake / "nvidia-smi", smi / "nvidia-smi")
    # nvcc as a wrapper script outside the toolkit, as some machines install it: the stub asks nvcc for its toolkit
    wrap = tmp / "nvcc_wrapper"
    wrap.mkdir()
    (wrap / "nvcc").write_text(f'#!/bin/sh\nexec {Path(real).resolve()} "$@"\n')
    (wrap / "nvcc").chmod(0o755)
    stub = runpy.run_path(str(ROOT / "dev" / "train_gpt_stub.py"), run_name="stub")
    # the oracle: a toolkit folder whose bin/nvcc is the compiler itself (an ELF file, not a script), with CUDA's headers,
    # and which reports the same version as the nvcc on PATH ($real may itself be a wrapper script, as on some machines)
    top = Path(stub["nvcc_toolkit"](str(wrap / "nvcc")))
    version = lambda nvcc: subprocess.run([str(nvcc), "--version"], capture_output=True, text=True).stdout
    elf = (top / "bin" / "nvcc").is_file() and (top / "bin" / "nvcc").read_bytes()[:4] == b"\x7fELF"
    R.check("record: the stub's nvcc_toolkit finds the toolkit behind a wrapper nvcc script (its bin/nvcc an ELF compiler of the "
            "same version, its include/cuda_runtime.h there)", elf and (top / "include" / "cuda_runtime.h").is_file()
            and version(top / "bin" / "nvcc") == version(real) != "", f"{top} (nvcc on PATH: {real})")
    env = dict(gpu, PATH=f"{smi}:{wrap}:{plain}", OUT_DIR=str(tmp / "t_cuda" / "out"))
    cwd = tmp / "t_cuda"
    cwd.mkdir()
    p = subprocess.run(["/usr/bin/python3", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    built = list(cwd.glob("golf_build/cuda-*/train_golf"))
    R.check(f"record: with nvcc ({real}) train_gpt.py builds train_golf from its sources (make train_golf) and runs it, which stops "
            "with its CUDA or driver message (no device here)", "train_gpt.py: building" in p.stdout and len(built) == 1 and p.returncode != 0
            and ("CUDA: " in p.stdout + p.stderr or "no NVIDIA driver found" in p.stdout + p.stderr) and "Traceback" not in p.stderr,
            (p.stdout + p.stderr).strip()[-400:])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    ap.add_argument("--shared", default=str(ROOT.parent / "shared"), help="shared data folder (data/sample_sp1024, tokenizers)")
    ap.add_argument("--only", default="layout,refusals,record", help="groups to run (layout, refusals, record)")
    args = ap.parse_args()
    groups = {"layout": check_layout_values, "refusals": check_refusals, "record": lambda R, tmp: check_record(R, tmp, Path(args.shared))}
    only = args.only.split(",")
    if set(only) - set(groups):
        ap.error(f"--only: unknown group(s) {sorted(set(only) - set(groups))}; groups: {', '.join(groups)}")
    R = Results()
    tmp = Path(tempfile.mkdtemp(prefix="test_submit_"))
    try:
        for name in only:
            fn = groups[name]
            try:
                fn(R, tmp)
            except Exception as e:  # one group's crash is a failure; the others still run
                R.check(f"{name} ran", False, repr(e)[-500:])
    finally:
        R.cleanup(tmp, args.keep)
    R.finish()


if __name__ == "__main__":
    main()
