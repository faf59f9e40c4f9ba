#!/usr/bin/env python3
"""dev/golf_log.py — read train logs (train_golf, test/reference.py, train_gpt.py: they share the line formats), and
turn finished train_golf runs into a records folder (the back end of dev/submit.sh).

Lines read (anything else is ignored):
  config NAME=value                                          train_golf's resolved config
  command: ...  code: golf_infer.c bytes:N crc32:X train_golf.cu bytes:N crc32:X  hardware: ...
  step:N/M train_loss:x [train_time:Tms [step_avg:Ams]] [eta:Ns]  (a line of this kind that does not parse is an error)
  step:N/M val_loss:x val_bpb:y [train_time:Tms [step_avg:Ams]]  (likewise)
  stopping_early: ...
  Serialized model SCHEME: N bytes [crc32:X]
  final_SCHEME_roundtrip val_loss:x val_bpb:y [eval_time:Tms]  and  final_SCHEME_roundtrip_exact val_loss:x val_bpb:y
  artifact: FILE N + model M = T bytes ...                   FILE: the counted code (golf_infer.c, or train_gpt.py)

  python3 dev/golf_log.py submission --out DIR --name NAME --date YYYY-MM-DD --code DIR [--baseline LOSS]
                                     [--author A] [--github-id G] [--blurb TEXT] RUN_DIR...
      checks the runs (see check_runs) and fills DIR: README.md, submission.json, train_seed<S>.log,
      final_model_seed<S>.golf, train_gpt.py (the counted code: see train_gpt), golf_infer.c (the blob's scorer, a copy
      of the one inside train_gpt.py). Exit 1 with the reasons when a check fails. Only the Python standard library
      is needed.

  python3 dev/golf_log.py pack --code DIR --out FILE [NAME=value ...]
      writes the train_gpt.py of DIR's sources with the given config (what submission writes, without runs).
"""

import argparse
import base64
import json
import lzma
import re
import shlex
import shutil
import struct
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path

ARTIFACT_LIMIT = 16_000_000      # bytes: counted code + compressed model
TRAIN_LIMIT_MS = 600_000         # 10 minutes of training (train_time of the log)
EVAL_LIMIT_MS = 600_000          # 10 minutes of evaluation (eval_time of the final roundtrip line)
PER_SEED_KEYS = ("SEED", "RUN_ID", "OUT_DIR")   # config values that may differ between the seeds of one submission
CODE_FILES = ("golf_infer.c", "train_golf.cu")  # the code the log's code: line names (scorer and trainer)
# what train_gpt.py carries: everything `make train_golf` and `make train_golf_cpu` read (plus dev/cpu/*.h)
PACKED = ("Makefile", "train_golf.cu", "golf_infer.c", "dev/golf_export.c", "dev/cuda_cpu.h")
STUB = "dev/train_gpt_stub.py"
COUNTED = "train_gpt.py"
# config a record does not carry: per run (the seed, names, folders) or per machine (where the data is)
RECORD_SKIP = ("SEED", "RUN_ID", "OUT_DIR", "DATA_PATH", "TOKENIZER_PATH")
RECORD_REFUSE = ("INIT_CKPT", "DUMP_GRADS", "PLAN_MEMORY")   # runs a record cannot reproduce

NUM = r"([-+0-9.eEinfaINF]+)"
TIME = rf"(?: train_time:{NUM}ms(?: step_avg:{NUM}ms)?)?(?:\s|$)"
RE_TRAIN = re.compile(rf"^step:(\d+)/(\d+) train_loss:{NUM}{TIME}")
RE_VAL = re.compile(rf"^step:(\d+)/(\d+) val_loss:{NUM} val_bpb:{NUM}{TIME}")
RE_STEP_KIND = re.compile(r"^step:\d+/\d+ (train_loss|val_loss):")
RE_FINAL = re.compile(rf"^final_(\w+?)_roundtrip(_exact)? val_loss:{NUM} val_bpb:{NUM}(?: eval_time:{NUM}ms)?")
RE_SERIAL = re.compile(r"^Serialized model (\S+): (\d+) bytes(?: crc32:([0-9a-f]{8}))?")
RE_ARTIFACT = re.compile(r"^artifact: (\S+) (\d+) \+ model (\d+) = (\d+) bytes")
RE_CODE = re.compile(r" (\S+) bytes:(\d+) crc32:([0-9a-f]{8})")
RE_HARDWARE = re.compile(r"^hardware: (\d+) x (.+) \((\d+) MiB; rank 0 on host (\S+); launch (\S+)\)$")


class LogError(Exception):
    """A log that cannot be read or used; the message names the file (and line)."""


@dataclass
class Log:
    path: Path
    config: dict = field(default_factory=dict)       # NAME -> value (strings, as printed)
    command: str = None
    code: dict = field(default_factory=dict)         # file name -> (bytes, crc32 hex)
    hardware: tuple = None                           # (ranks, gpu name, MiB, host, launch)
    train: list = field(default_factory=list)        # (step, train_loss, train_time_ms or None)
    val: list = field(default_factory=list)          # (step, val_loss, val_bpb, train_time_ms or None)
    iterations: int = None
    stopped_early: bool = False
    serialized: tuple = None                         # (scheme, bytes, crc32 hex or None)
    final: dict = field(default_factory=dict)        # "plain"/"exact" -> (scheme, val_loss, val_bpb, eval_ms or None)
    artifact: tuple = None                           # (counted file's name, its bytes, model bytes, total)

    def final_result(self):
        """(val_loss, val_bpb) of the final roundtrip: the exact line when there is one."""
        f = self.final.get("exact") or self.final.get("plain")
        if not f:
            raise LogError(f"{self.path}: no final_..._roundtrip val_loss line (did the run finish?)")
        return f[1], f[2]

    def train_time_ms(self):
        """the training time at the end: the largest train_time of any step line (0 without step lines)."""
        return max([t for _, _, t in self.train if t is not None] + [t for _, _, _, t in self.val if t is not None] + [0.0])

    def last_step(self):
        return max([s for s, _, _ in self.train] + [s for s, _, _, _ in self.val] + [0])


def _float(text, path, lineno):
    try:
        return float(text)
    except ValueError:
        raise LogError(f"{path}:{lineno}: '{text}' is not a number") from None


def read_log(path):
    """Parse one log (see the module docstring); raises LogError naming the file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise LogError(f"{path}: cannot read: {e.strerror}") from None
    log = Log(path)
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.rstrip("\r")
        if line.startswith("step:"):
            m = RE_TRAIN.match(line)
            if m:
                log.train.append((int(m[1]), _float(m[3], path, lineno), _float(m[4], path, lineno) if m[4] else None))
                log.iterations = int(m[2])
                continue
            m = RE_VAL.match(line)
            if m:
                log.val.append((int(m[1]), _float(m[3], path, lineno), _float(m[4], path, lineno), _float(m[5], path, lineno) if m[5] else None))
                log.iterations = int(m[2])
                continue
            if RE_STEP_KIND.match(line):
                raise LogError(f"{path}:{lineno}: malformed step line (expected 'step:N/M train_loss:x train_time:Tms step_avg:Ams' "
                               f"or 'step:N/M val_loss:x val_bpb:y train_time:Tms step_avg:Ams'): {line[:120]}")
        elif line.startswith("config ") and "=" in line:
            k, v = line[7:].split("=", 1)
            log.config[k] = v
        elif line.startswith("command: "):
            log.command = line[9:]
        elif line.startswith("code:"):
            log.code = {m[1]: (int(m[2]), m[3]) for m in RE_CODE.finditer(line)}
        elif line.startswith("hardware: "):
            m = RE_HARDWARE.match(line)
            if not m:
                raise LogError(f"{path}:{lineno}: malformed hardware line: {line[:120]}")
            log.hardware = (int(m[1]), m[2], int(m[3]), m[4], m[5])
        elif line.startswith("stopping_early:"):
            log.stopped_early = True
        elif line.startswith("Serialized model "):
            m = RE_SERIAL.match(line)
            if m:
                log.serialized = (m[1], int(m[2]), m[3])
        elif line.startswith("final_"):
            m = RE_FINAL.match(line)
            if m:
                eval_ms = _float(m[5], path, lineno) if m[5] else None
                log.final["exact" if m[2] else "plain"] = (m[1], _float(m[3], path, lineno), _float(m[4], path, lineno), eval_ms)
        elif line.startswith("artifact: "):
            m = RE_ARTIFACT.match(line)
            if m:
                log.artifact = (m[1], int(m[2]), int(m[3]), int(m[4]))
    return log


def read_curves(path):
    """A log for plotting: its train and val step lines; LogError when it has none."""
    log = read_log(path)
    if not log.train and not log.val:
        raise LogError(f"{path}: no 'step:N/M train_loss:...' or 'step:N/M val_loss:...' lines: not a train log")
    return log


# ------------------------------------------------------------------------------------------------------------------
# train_gpt.py: the submission's code, one file (dev/train_gpt_stub.py with the record's config and golf's sources)


def record_config(log):
    """The config a record's train_gpt.py passes to train_golf, NAME -> value: the log's command line (its NAME=value
    settings, then the program and its --flag value arguments) without RECORD_SKIP. LogError naming the log when there
    is none, it does not parse, or it sets one of RECORD_REFUSE."""
    if not log.command:
        raise LogError(f"{log.path}: no 'command:' line: the config to carry in {COUNTED} is unknown")
    try:
        words = shlex.split(log.command)
    except ValueError as e:
        raise LogError(f"{log.path}: the 'command:' line does not parse ({e})") from None
    cfg, i = {}, 0
    while i < len(words) and "=" in words[i] and words[i].split("=", 1)[0] in log.config:
        k, v = words[i].split("=", 1)
        cfg[k] = v
        i += 1
    args = words[i + 1:]
    while args:
        a = args.pop(0)
        flag, eq, v = a.partition("=")
        name = flag[2:].upper().replace("-", "_")
        if not flag.startswith("--") or name not in log.config or (not eq and not args):
            raise LogError(f"{log.path}: the 'command:' line's argument '{a}' is not a train_golf flag with a value")
        cfg[name] = v if eq else args.pop(0)
    bad = [f"{k}={cfg[k]}" for k in RECORD_REFUSE if cfg.get(k, "") not in ("", "0")]
    if bad:
        raise LogError(f"{log.path}: the run set {', '.join(bad)}: a record cannot reproduce it (a file it does not carry, or "
                       "not a training run)")
    return {k: cfg[k] for k in sorted(cfg) if k not in RECORD_SKIP}


def load_stub(code_dir):
    """dev/train_gpt_stub.py of code_dir as a module (its MARK and sources() define the packed format's reading side)"""
    import importlib.util
    path = Path(code_dir) / STUB
    if not path.is_file():
        raise LogError(f"{path}: missing (the stub of {COUNTED})")
    spec = importlib.util.spec_from_file_location("train_gpt_stub", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def train_gpt(code_dir, config):
    """train_gpt.py's bytes: code_dir's stub with CONFIG (NAME -> value) and SOURCES (characters, CRC-32 of the text)
    filled in, then its MARK line and the text: xz of every packed file (its path, a newline, its size, a newline, its
    bytes) in base85 (Python's standard library, as the records pack theirs). The same sources and config give the same
    bytes. LogError naming a missing source."""
    code_dir = Path(code_dir)
    names = list(PACKED) + sorted(f"dev/cpu/{p.name}" for p in (code_dir / "dev" / "cpu").glob("*.h"))
    raw = bytearray()
    for name in names:
        path = code_dir / name
        if not path.is_file():
            raise LogError(f"{path}: missing ({COUNTED} carries it)")
        data = path.read_bytes()
        raw += f"{name}\n{len(data)}\n".encode() + data
    text = base64.b85encode(lzma.compress(bytes(raw), preset=9 | lzma.PRESET_EXTREME))
    stub = load_stub(code_dir)
    src = (code_dir / STUB).read_text()
    fills = {"CONFIG = {}\n": "CONFIG = {" + ", ".join(f"{k!r}: {v!r}" for k, v in config.items()) + "}\n",
             "SOURCES = (0, 0)": f"SOURCES = ({len(text)}, 0x{zlib.crc32(text):08x})"}
    for old, new in fills.items():
        if src.count(old) != 1:
            raise LogError(f"{code_dir / STUB}: expected one '{old.strip()}' line to fill in")
        src = src.replace(old, new)
    return src.encode() + stub.MARK + text + b"\n"


# ------------------------------------------------------------------------------------------------------------------
# submission: check the runs, then fill the folder


@dataclass
class Run:
    folder: Path
    log: Log
    blob: Path
    seed: str


def crc32_file(path):
    return f"{zlib.crc32(Path(path).read_bytes()) & 0xFFFFFFFF:08x}"


def blob_crc(path):
    """the CRC-32 a .golf blob closes with (of every byte before its last 4), as train_golf's Serialized line logs it;
    the CRC-32 of a whole blob would be CRC-32's residue, the same for every intact blob"""
    return f"{zlib.crc32(Path(path).read_bytes()[:-4]) & 0xFFFFFFFF:08x}"


BLOB_MAGIC, BLOB_VERSIONS, BLOB_HEADER_BYTES = 20261124, (2, 3, 4, 5), 256   # golf_infer.c's blob header (64 x uint32)


def blob_problem(path):
    """Why the file at path is not an intact .golf blob (magic, version, its header's size, the closing CRC-32), or None."""
    data = Path(path).read_bytes()
    if len(data) < BLOB_HEADER_BYTES + 4:
        return f"{len(data)} bytes, too short for a .golf blob"
    magic, version, total = struct.unpack("<3I", data[:12])
    if magic != BLOB_MAGIC:
        return f"not a .golf blob (magic {magic}, expected {BLOB_MAGIC})"
    if version not in BLOB_VERSIONS:
        return f"blob version {version}, expected one of {BLOB_VERSIONS} (golf_infer.c)"
    if total != len(data):
        return f"its header says {total} bytes but the file has {len(data)}: truncated or extended"
    if zlib.crc32(data[:-4]) & 0xFFFFFFFF != struct.unpack("<I", data[-4:])[0]:
        return "its CRC-32 does not match: the blob is damaged"
    return None


def check_runs(folders, code_dir):
    """The runs of one submission, or LogError listing every violation: each run folder holds train.log and
    final_model.golf; each log finished (final roundtrip and artifact lines), names its code (code: line) and seed;
    training <= 600 s and evaluation <= 600 s; the blob is the one the log wrote (size and CRC-32) and with
    train_gpt.py (made from code_dir and the first log's config: the counted code) fits in 16,000,000 bytes; the code
    in code_dir is the code the runs used, and a run's artifact line counted the golf_infer.c of code_dir (a run of
    train_golf itself) or this train_gpt.py (a run of it); the logs agree with each other (config apart from
    SEED/RUN_ID/OUT_DIR, code, hardware) and their seeds differ. Returns (runs, train_gpt.py's bytes)."""
    errors, runs = [], []
    code = {}
    for name in CODE_FILES:
        p = Path(code_dir) / name
        if p.is_file():
            code[name] = (p.stat().st_size, crc32_file(p))
        else:
            errors.append(f"{p}: missing (the code to package)")
    for folder in map(Path, folders):
        logp, blob = folder / "train.log", folder / "final_model.golf"
        missing = [str(p) for p in (logp, blob) if not p.is_file()]
        if missing:
            errors.append(f"{folder}: no {' and no '.join(missing)} (a run folder is train_golf's OUT_DIR: it writes train.log "
                          "and final_model.golf there)")
            continue
        try:
            log = read_log(logp)
        except LogError as e:
            errors.append(str(e))
            continue
        errs = []
        if not log.final:
            errs.append("did not finish: no final_..._roundtrip line")
        if not log.artifact:
            errs.append("did not finish: no 'artifact:' line")
        if "SEED" not in log.config:
            errs.append("no 'config SEED=' line (not a train_golf log?)")
        if not log.code:
            errs.append("no 'code:' line with golf_infer.c and train_golf.cu sizes and CRC-32s: it cannot show which code ran")
        train_ms = log.train_time_ms()
        if train_ms > TRAIN_LIMIT_MS:
            errs.append(f"training took {train_ms:.0f} ms, over the 600 s budget ({TRAIN_LIMIT_MS} ms)\n"
                        "  hint: train_golf stops after the step that crosses MAX_WALLCLOCK_SECONDS: leave room for it (e.g. 590)")
        for kind, f in log.final.items():
            if f[3] is not None and f[3] > EVAL_LIMIT_MS:
                errs.append(f"evaluation took {f[3]:.0f} ms, over the 600 s budget ({EVAL_LIMIT_MS} ms)")
            if "QUANT" in log.config and f[0] != log.config["QUANT"]:
                errs.append(f"final roundtrip line is for {f[0]} but QUANT={log.config['QUANT']}")
        if log.final.get("plain") and log.final["plain"][3] is None:
            errs.append("the final roundtrip line has no eval_time: the evaluation time cannot be checked")
        if "plain" in log.final and "exact" in log.final:
            (_, l4, b4, _), (_, l8, b8, _) = log.final["plain"], log.final["exact"]
            if abs(l4 - l8) > 5.1e-5 or abs(b4 - b8) > 5.1e-5:   # the plain line is the exact one rounded to 4 decimals
                errs.append(f"final roundtrip lines disagree: val_loss {l4} / {l8}, val_bpb {b4} / {b8}")
        size = blob.stat().st_size
        problem = blob_problem(blob)
        if problem:
            errs.append(f"{blob}: {problem}")
        if log.artifact:
            _, cb, mb, tot = log.artifact
            if mb != size:
                errs.append(f"says the model is {mb} bytes but {blob} has {size} bytes: not this run's blob")
            if cb + mb != tot:
                errs.append(f"artifact line does not add up: {cb} + {mb} != {tot}")
        if log.serialized:
            if log.serialized[1] != size:
                errs.append(f"serialized {log.serialized[1]} bytes but {blob} has {size} bytes: not this run's blob")
            elif log.serialized[2] and log.serialized[2] != blob_crc(blob):
                errs.append(f"wrote a blob with crc32 {log.serialized[2]} but {blob} has crc32 {blob_crc(blob)}: not this run's blob")
        for name, (nb, crc) in code.items():
            if log.code and log.code.get(name) != (nb, crc):
                got = log.code.get(name)
                errs.append(f"ran {name} " + (f"of {got[0]} bytes crc32 {got[1]}" if got else "(not recorded)")
                            + f", but {Path(code_dir) / name} is {nb} bytes crc32 {crc}: package the code that ran (--code DIR)")
        errors += [f"{logp}: {e}" for e in errs]
        runs.append(Run(folder, log, blob, log.config.get("SEED", "?")))
    # the counted code: train_gpt.py of code_dir's sources and the first run's config
    packed = None
    if runs and len(code) == len(CODE_FILES):
        try:
            packed = train_gpt(code_dir, record_config(runs[0].log))
        except LogError as e:
            errors.append(str(e))
    for r in runs if packed else []:
        logp, size = r.log.path, r.blob.stat().st_size
        if r.log.artifact:
            name, cb = r.log.artifact[:2]
            if name not in ("golf_infer.c", COUNTED):
                errors.append(f"{logp}: counted {name} as the code: expected golf_infer.c (train_golf run itself) or {COUNTED}")
            elif name == "golf_infer.c" and cb != code["golf_infer.c"][0]:
                errors.append(f"{logp}: counted golf_infer.c as {cb} bytes but {Path(code_dir) / 'golf_infer.c'} has {code['golf_infer.c'][0]}")
            elif name == COUNTED and cb != len(packed):
                errors.append(f"{logp}: ran a {COUNTED} of {cb} bytes, but the one made from {code_dir} and the config of "
                              f"{runs[0].log.path} has {len(packed)} bytes: package the code and config that ran")
        if len(packed) + size > ARTIFACT_LIMIT:
            errors.append(f"{logp}: artifact too large: {COUNTED} {len(packed)} + model {size} ({r.blob}) = {len(packed) + size} bytes, "
                          f"over the limit of {ARTIFACT_LIMIT:,}")
    # the seeds of one submission: same config, code and hardware; different seeds
    if len(runs) > 1:
        first = runs[0]
        for r in runs[1:]:
            keys = sorted(set(first.log.config) | set(r.log.config))
            diff = [f"{k}={first.log.config.get(k, '(none)')} vs {k}={r.log.config.get(k, '(none)')}" for k in keys
                    if k not in PER_SEED_KEYS and first.log.config.get(k) != r.log.config.get(k)]
            if diff:
                errors.append(f"logs disagree: {first.log.path} and {r.log.path} have different configs: " + ", ".join(diff[:6]))
            if first.log.code != r.log.code:
                errors.append(f"logs disagree: {first.log.path} and {r.log.path} ran different code: {first.log.code} vs {r.log.code}")
            hw = lambda h: h[:3] if h else None
            if hw(first.log.hardware) != hw(r.log.hardware):
                errors.append(f"logs disagree: {first.log.path} ran on {hw(first.log.hardware)}, {r.log.path} on {hw(r.log.hardware)}")
        seen = {}
        for r in runs:
            if r.seed in seen:
                errors.append(f"logs disagree: {seen[r.seed]} and {r.log.path} both have SEED={r.seed}: give each run its own seed")
            seen.setdefault(r.seed, r.log.path)
    if errors:
        raise LogError("\n".join(errors))
    return runs, packed


def seed_result(r, code_bytes):
    """The numbers of one seed, for submission.json and the README."""
    val_loss, val_bpb = r.log.final_result()
    last_val = max(r.log.val) if r.log.val else None
    steps = r.log.last_step()
    train_ms = r.log.train_time_ms()
    model = r.blob.stat().st_size
    return {"val_loss": val_loss, "val_bpb": val_bpb,
            "pre_quant_val_loss": last_val[1] if last_val else None, "pre_quant_val_bpb": last_val[2] if last_val else None,
            "steps": steps, "iterations": r.log.iterations, "stopped_early": r.log.stopped_early,
            "train_time_ms": round(train_ms), "ms_per_step": round(train_ms / steps, 2) if steps else None,
            "eval_time_ms": round(r.log.final["plain"][3]) if r.log.final.get("plain") else None,
            "bytes_model": model, "bytes_total": code_bytes + model}


def mean(xs):
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def write_submission(out, runs, packed, name, date, code_dir, baseline=None, author=None, github_id=None, blurb=None):
    """Fill folder out (which exists and is empty) with the checked runs' submission; packed: train_gpt.py's bytes."""
    out, code_dir = Path(out), Path(code_dir)
    code_bytes = len(packed)
    res = {r.seed: seed_result(r, code_bytes) for r in runs}
    seeds = [r.seed for r in runs]
    sub = {"name": name, "date": date, "track": "10min_16mb"}
    for k, v in (("author", author), ("github_id", github_id), ("blurb", blurb)):
        if v:
            sub[k] = v
    sub.update({"val_loss": round(mean(s["val_loss"] for s in res.values()), 8),
                "val_bpb": round(mean(s["val_bpb"] for s in res.values()), 8),
                "bytes_total": max(s["bytes_total"] for s in res.values()),
                "bytes_model": max(s["bytes_model"] for s in res.values()),
                "bytes_code": code_bytes,
                "seeds": [int(s) if s.lstrip("-").isdigit() else s for s in seeds]})
    pq = mean(s["pre_quant_val_bpb"] for s in res.values())
    if pq is not None:
        sub["pre_quant_val_loss"] = round(mean(s["pre_quant_val_loss"] for s in res.values()), 8)
        sub["pre_quant_val_bpb"] = round(pq, 8)
    hw = runs[0].log.hardware
    if hw:
        sub["hardware"] = f"{hw[0]} x {hw[1]}"
    sub["quant"] = runs[0].log.config.get("QUANT")
    if baseline is not None and len(runs) > 1:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import significance
        sig = significance.analyse([s["val_loss"] for s in res.values()], baseline)
        sub["baseline_val_loss"] = baseline
        sub["p_value"] = sig["p"]
    sub["seed_results"] = res

    files = []
    for r in runs:
        shutil.copyfile(r.log.path, out / f"train_seed{r.seed}.log")
        shutil.copyfile(r.blob, out / f"final_model_seed{r.seed}.golf")
        files += [f"train_seed{r.seed}.log", f"final_model_seed{r.seed}.golf"]
    (out / COUNTED).write_bytes(packed)
    shutil.copyfile(code_dir / "golf_infer.c", out / "golf_infer.c")
    (out / "submission.json").write_text(json.dumps(sub, indent=2) + "\n")
    (out / "README.md").write_text(render_readme(sub, runs, res, code_bytes))


def launched(runs):
    """how the runs were started, from their artifact lines"""
    counted = {r.log.artifact[0] for r in runs if r.log.artifact}
    if counted == {COUNTED}:
        return f"by this {COUNTED}"
    return f"by train_golf itself (the same sources; {COUNTED} made from them and the runs' config)" + \
        (f", some by {COUNTED}" if COUNTED in counted else "")


def render_readme(sub, runs, res, code_bytes):
    """README.md of the records folder, every number from the logs."""
    log0 = runs[0].log
    cfg = log0.config
    pick = lambda names: " ".join(f"{k}={cfg[k]}" for k in names if k in cfg)
    hw = log0.hardware
    largest = max(res.values(), key=lambda s: s["bytes_total"])
    fmt = lambda x, d=4: "-" if x is None else f"{x:.{d}f}"
    lines = [f"# {sub['name']}", ""]
    if sub.get("blurb"):
        lines += [sub["blurb"], ""]
    lines += [f"golf (C/CUDA) submission, packaged by `dev/submit.sh` on {sub['date']} from {len(runs)} run(s) of `train_golf`. "
              "Every number below comes from the runs' logs (included).", "",
              "## Results", "",
              "| seed | steps | train time | step avg | pre-quant val_loss | pre-quant val_bpb | roundtrip val_loss | roundtrip val_bpb "
              "| eval time | model bytes | artifact bytes |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for seed, s in res.items():
        lines.append(f"| {seed} | {s['steps']}/{s['iterations']}{' (wallclock cap)' if s['stopped_early'] else ''} | "
                     f"{s['train_time_ms'] / 1000:.1f} s | {fmt(s['ms_per_step'], 2)} ms | {fmt(s['pre_quant_val_loss'])} | "
                     f"{fmt(s['pre_quant_val_bpb'])} | {fmt(s['val_loss'], 8)} | {fmt(s['val_bpb'], 8)} | "
                     f"{s['eval_time_ms'] / 1000:.1f} s | {s['bytes_model']:,} | {s['bytes_total']:,} |")
    if len(res) > 1:
        lines.append(f"| **mean** | | | | {fmt(sub.get('pre_quant_val_loss'))} | {fmt(sub.get('pre_quant_val_bpb'))} | "
                     f"**{sub['val_loss']:.8f}** | **{sub['val_bpb']:.8f}** | | | |")
    lines += ["", f"- Score: val_bpb **{sub['val_bpb']:.8f}** (final {sub['quant']} roundtrip: the decoded blob scored on the full val "
              f"split{', mean over seeds ' + ', '.join(map(str, sub['seeds'])) if len(runs) > 1 else ''}), val_loss {sub['val_loss']:.8f}."]
    if "p_value" in sub:
        lines.append(f"- Significance: one-sided t test of an improvement of at least 0.005 nats over the baseline val_loss "
                     f"{sub['baseline_val_loss']}: p = {sub['p_value']:.3g} (`dev/significance.py`).")
    lines += [f"- Artifact: {COUNTED} {code_bytes:,} + model {largest['bytes_model']:,} = **{largest['bytes_total']:,} bytes** "
              f"(largest seed; limit {ARTIFACT_LIMIT:,}). The tokenizer is not counted.",
              f"- Hardware: {f'{hw[0]} x {hw[1]} ({hw[2]:,} MiB each), launch: {hw[4]}' if hw else 'not recorded'}.",
              f"- Time: training at most {max(s['train_time_ms'] for s in res.values()) / 1000:.1f} s, evaluation at most "
              f"{max(s['eval_time_ms'] for s in res.values()) / 1000:.1f} s (budgets 600 s each).", "",
              "## Configuration", "",
              f"- Model: `{pick(['VOCAB_SIZE', 'NUM_LAYERS', 'MODEL_DIM', 'NUM_HEADS', 'NUM_KV_HEADS', 'MLP_MULT', 'TIE_EMBEDDINGS'])}`",
              f"- Training: `{pick(['TRAIN_BATCH_TOKENS', 'TRAIN_SEQ_LEN', 'ITERATIONS', 'WARMDOWN_ITERS', 'MAX_WALLCLOCK_SECONDS'])}`",
              f"- Optimizer: `{pick(['MATRIX_LR', 'SCALAR_LR', 'TIED_EMBED_LR', 'EMBED_LR', 'HEAD_LR', 'MUON_MOMENTUM', 'GRAD_CLIP_NORM'])}`",
              f"- Export: `{pick(['QUANT', 'QUANT_CLIP', 'SDCLIP_K'])}`", "",
              f"<details><summary>Every resolved value (from train_seed{runs[0].seed}.log; the seeds differ only in "
              f"{', '.join(PER_SEED_KEYS)})</summary>", "", "```"]
    lines += [f"{k}={v}" for k, v in cfg.items()]
    lines += ["```", "", "</details>", "", "## Command", "",
              f"As logged by train_golf for seed {runs[0].seed} (the environment settings of its hyperparameters, then its "
              f"arguments){'; started by mpirun with ' + str(hw[0]) + ' ranks' if hw and hw[4] == 'mpirun' else ''}"
              f"{'; started torchrun-style with ' + str(hw[0]) + ' ranks (RANK/WORLD_SIZE/LOCAL_RANK)' if hw and hw[4] == 'env' else ''}:", "",
              "```bash", log0.command or "(not recorded)", "```", "",
              "## Run", "",
              "```bash",
              "torchrun --standalone --nproc_per_node=8 train_gpt.py   # DATA_PATH, TOKENIZER_PATH, SEED: train_golf's defaults, or set them",
              "```", "",
              f"`{COUNTED}` carries golf's sources (train_golf.cu, golf_infer.c, dev/golf_export.c, the Makefile and the CPU "
              "build's dev/cuda_cpu.h) xz-compressed in base85. Each node's local rank 0 unpacks and builds `train_golf` "
              "(make, nvcc, cuBLAS; NCCL for several ranks) in `golf_build/` while the other local ranks wait, before "
              "train_golf's timer starts; every rank then runs it with torchrun's environment and the config above "
              f"(the environment wins). The runs above were started {launched(runs)}. `GOLF_UNPACK=DIR python3 {COUNTED}` "
              "writes the sources out; `GOLF_CPU=1` builds the CPU build instead (CUDA emulated on the CPU, for tests).", "",
              "## Included files", "",
              f"- `{COUNTED}` — all the code, counted ({code_bytes:,} bytes): the trainer, its export and its evaluation.",
              "- `golf_infer.c` — the blob's decoder and CPU scorer (C99, libc and libm only; the same file is inside "
              f"`{COUNTED}`, counted there). Build: `cc -O3 -std=c99 -fopenmp -o golf_infer golf_infer.c -lm`; score a blob: "
              "`./golf_infer final_model_seedS.golf --val 'fineweb_val_*.bin' --tokenizer fineweb_1024_bpe.model` (prints "
              "val_bpb and the artifact line).",
              "- " + ", ".join(f"`train_seed{r.seed}.log`" for r in runs) + " — the training logs.",
              "- " + ", ".join(f"`final_model_seed{r.seed}.golf`" for r in runs) + " — the model blobs the logs describe.",
              "- `submission.json` — the numbers above, machine-readable.", ""]
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description="dev/submit.sh's back end: check train_golf runs and fill a records folder")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("submission", help="check run folders and fill a records folder (see dev/submit.sh)")
    p.add_argument("--out", required=True, help="empty folder to fill")
    p.add_argument("--name", required=True)
    p.add_argument("--date", required=True)
    p.add_argument("--code", required=True, help="folder holding golf's sources (golf_infer.c, train_golf.cu, ...)")
    p.add_argument("--baseline", type=float, help="baseline val_loss: adds the p-value of the 0.005-nat rule (2+ seeds)")
    p.add_argument("--author")
    p.add_argument("--github-id")
    p.add_argument("--blurb")
    p.add_argument("runs", nargs="+", help="run folders (train_golf's OUT_DIR)")
    p = sub.add_parser("pack", help=f"write the {COUNTED} of a folder's sources and a config (no runs)")
    p.add_argument("--code", required=True, help="folder holding golf's sources")
    p.add_argument("--out", required=True, help=f"the file to write (e.g. {COUNTED})")
    p.add_argument("config", nargs="*", help="NAME=value settings it passes to train_golf")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "pack":
            bad = [c for c in args.config if not re.match(r"^[A-Z][A-Z0-9_]*=", c)]
            if bad:
                print(f"pack: '{bad[0]}' is not a NAME=value setting", file=sys.stderr)
                return 2
            data = train_gpt(args.code, dict(sorted(c.split("=", 1) for c in args.config)))
            tmp = Path(args.out).with_name(Path(args.out).name + ".tmp")
            tmp.write_bytes(data)
            tmp.replace(args.out)
            print(f"pack: wrote {args.out} ({len(data)} bytes)")
            return 0
        runs, packed = check_runs(args.runs, args.code)
        write_submission(args.out, runs, packed, args.name, args.date, args.code, args.baseline, args.author, args.github_id, args.blurb)
    except LogError as e:
        print(f"pack: error: {e}" if args.cmd == "pack" else f"submit: refused: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
