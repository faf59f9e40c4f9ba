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

Usage: /usr/bin/python3 test/test_submit.py [--keep]
The last line printed is "N passed, M failed, K skipped"; exit status 1 if anything failed.
"""

import argparse
import json
import random
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
    body = struct.pack("<3I", 20261124, 2, blob_bytes) + bytes(244) + random.Random(seed).randbytes(blob_bytes - 260)
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
        lines += [f"Serialized model int8: {model} bytes crc32:{crc(blob)}",
                  f"final_int8_roundtrip val_loss:{val[0]:.4f} val_bpb:{val[1]:.4f} eval_time:{eval_ms:.0f}ms",
                  f"final_int8_roundtrip_exact val_loss:{val[0]:.8f} val_bpb:{val[1]:.8f}",
                  f"artifact: {counted_name} {code_bytes} + model {model} = {code_bytes + model} bytes (limit 16000000) "
                  f"{'OK' if code_bytes + model <= LIMIT else 'OVER'}"]
    (folder / "train.log").write_text("\n".join(lines) + "\n")
    return folder


def swap_blob(folder):
    """the run folder with its blob's first 16 bytes flipped: same size, not the blob its log describes"""
    blob = folder / "final_model.golf"
    data = blob.read_bytes()
    blob.write_bytes(bytes(b ^ 0xFF for b in data[:16]) + data[16:])
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


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = ap.parse_args()
    R = Results()
    tmp = Path(tempfile.mkdtemp(prefix="test_submit_"))
    try:
        for fn in (check_layout_values, check_refusals):
            try:
                fn(R, tmp)
            except Exception as e:  # one group's crash is a failure; the others still run
                R.check(f"{fn.__name__} ran", False, repr(e)[-500:])
    finally:
        R.cleanup(tmp, args.keep)
    R.finish()


if __name__ == "__main__":
    main()
