#!/usr/bin/python3
"""Conformance tests for tokenize, the C reimplementation of SentencePiece BPE encoding.

Every check runs the tokenize binary and compares what it prints or writes with the sentencepiece
Python package (the reference), token for token and byte for byte:

  cli       usage errors exit 2, info mentions the vocab size
  lut       val_bpb tables against sp.is_control/is_unknown/is_unused/is_byte/id_to_piece
  corpus    encode --format jsonl on every document of every shared text file, every shared model
  adversarial  NFKC-sensitive text, combining marks, emoji, scripts, controls, odd whitespace,
            long runs, piece look-alikes, seeded random unicode, mutated corpus documents
  invalid-utf8 malformed byte strings with --invalid-utf8 replace (against sp.encode(bytes)),
            and the default refusal
  formats   lines / paragraphs / auto / stdin / JSON escapes and JSON layout variants
  decode    decode --jsonl and plain decode against sp.decode, hand-made and random id sequences,
            rejection of bad ids
  models    models trained here to cover options the shared models lack (dummy prefix, kept
            whitespace, whitespace suffix, user-defined symbols, identity/nfkc/case-folding rules,
            byte fallback off, digits split or not, pieces across whitespace and scripts, other
            special ids) and one with pieces marked unused: encode, invalid UTF-8, decode and lut
  scale     800,000 distinct words; a 20 MB one-line document (encode, shards, decode)
  shards    byte-identical shard files against a numpy writer, --byte260, the official sample
            shards, refusal to overwrite, unwritable output, empty documents, invalid UTF-8,
            malformed JSON, broken and non-BPE models, a vocab > 65536
  caseops   the CaseOps transform against the 2026-05-01 record's lossless_caps.py on every shared
            document and an adversarial set (the operators themselves in the text), --decode back to
            the text and its refusals; shards --caseops against the record's prepare_caseops_data.py
            (val and train shards and the val byte sidecars, byte for byte; sp8192 on every text file but
            wikipedia.jsonl,
            sp1024, sp4096 and the no-byte-fallback model on smaller sets); the sidecar's bytes against
            the plain text's (UTF-8 bytes and plain val_bpb bytes of the val documents, the span the
            plain tokens cover everywhere); flags, help and refusals

Usage: /usr/bin/python3 test/test_tokenize.py [--tokenize PATH] [--shared DIR] [--quick]

The shared models and texts are looked for in ../shared (tokenizers/, text/, data/sample_sp1024/)
beside the repository, then in the official layout data/tokenizers/ + data/; --shared DIR names the
folder instead. Whatever is missing is reported as skipped. --quick uses only the first 200
documents of each text file, 100,000 distinct words and a 2 MB long document.
The last line printed is "N passed, M failed, K skipped"; the exit status is 1 if anything failed.
"""

import argparse
import io
import json
import multiprocessing
import os
import random
import re
import shlex
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import unicodedata
from pathlib import Path

import numpy as np
import sentencepiece as spm

ROOT = Path(__file__).resolve().parent.parent
SHARED_MODELS = {
    "sp1024": "fineweb_1024_bpe.model",
    "sp4096": "fineweb_4096_bpe.model",
    "sp8192": "fineweb_8192_bpe.model",
    "sp1024_nobf": "variant_1024_nobytefallback_bpe.model",
}
TEXT_FILES = ["fineweb_docs.jsonl", "fineweb_val_docs.jsonl", "wikipedia.jsonl", "debian_prose.jsonl"]
SHARD_MAGIC = 20240520
RUN_TIMEOUT = 600
QUICK_DOCS = 200


# --------------------------------------------------------------------------------------------------
# results and running the binary


class Results:
    def __init__(self):
        self.passed = 0
        self.failed = 0
        self.skipped = 0
        self.failed_names = []

    def record(self, name, ok, detail=""):
        if ok:
            self.passed += 1
            print(f"PASS {name}" + (f"  [{detail}]" if detail else ""), flush=True)
        else:
            self.failed += 1
            self.failed_names.append(name)
            print(f"FAIL {name}", flush=True)
            for line in str(detail).rstrip("\n").split("\n"):
                print("     " + line, flush=True)
        return ok

    def skip(self, name, why):
        self.skipped += 1
        print(f"SKIP {name}: {why}", flush=True)


class Run:
    def __init__(self, cmd, rc, out, err, seconds):
        self.cmd, self.rc, self.out, self.err, self.seconds = cmd, rc, out, err, seconds

    def errtext(self):
        return self.err.decode("utf-8", "replace")

    def describe(self):
        status = "timed out" if self.rc is None else f"exit status {self.rc}"
        err = self.errtext().strip()
        if len(err) > 800:
            err = err[:800] + " ..."
        return f"$ {shlex.join(self.cmd)}\n{status}; stderr: {err!r}"


class Tokenize:
    """Runs the binary, either to completion or in the background (output into files)."""

    def __init__(self, path, tmp):
        self.path = str(path)
        self.tmp = tmp
        self.jobs = 0

    def cmd(self, args):
        return [self.path] + [str(a) for a in args]

    def run(self, args, stdin=None, timeout=RUN_TIMEOUT):
        cmd = self.cmd(args)
        t0 = time.time()
        try:
            p = subprocess.run(cmd, input=stdin if stdin is not None else b"", stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            return Run(cmd, None, e.stdout or b"", e.stderr or b"", time.time() - t0)
        return Run(cmd, p.returncode, p.stdout, p.stderr, time.time() - t0)

    def start(self, args):
        self.jobs += 1
        out = self.tmp / f"job{self.jobs}.out"
        err = self.tmp / f"job{self.jobs}.err"
        cmd = self.cmd(args)
        with open(out, "wb") as fo, open(err, "wb") as fe:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=fo, stderr=fe)
        return Job(cmd, proc, out, err)


class Job:
    def __init__(self, cmd, proc, out, err):
        self.cmd, self.proc, self.out, self.err, self.t0 = cmd, proc, out, err, time.time()

    def wait(self, timeout=RUN_TIMEOUT):
        """Waits for the process; Run.seconds is its CPU time (it ran beside other work)."""
        rc, seconds = None, 0.0
        while True:
            pid, status, usage = os.wait4(self.proc.pid, os.WNOHANG)
            if pid:
                rc = os.waitstatus_to_exitcode(status)
                self.proc.returncode = rc
                seconds = usage.ru_utime + usage.ru_stime
                break
            if time.time() - self.t0 > timeout:
                self.proc.kill()
                self.proc.wait()
                break
            time.sleep(0.02)
        run = Run(self.cmd, rc, self.out.read_bytes(), self.err.read_bytes(), seconds)
        self.out.unlink()
        self.err.unlink()
        return run


# --------------------------------------------------------------------------------------------------
# comparing ids


def piece_str(sp, i):
    if 0 <= i < sp.get_piece_size():
        return f"{i}:{sp.id_to_piece(i)!r}"
    return f"{i}:<out of range>"


def output_lines(out):
    """Splits the binary's stdout into one string per document (the final newline ends the last)."""
    lines = out.decode("utf-8", "replace").split("\n")
    if lines[-1] == "":
        lines.pop()
    return lines


def parse_ids(line):
    try:
        return [int(x) for x in line.split()]
    except ValueError:
        return None


def snippet(doc, centre=None, width=70):
    if centre is None or len(doc) <= 2 * width:
        s = doc if len(doc) <= 2 * width else doc[: 2 * width]
        more = "" if len(s) == len(doc) else " ..."
        return repr(s) + more
    lo = max(0, centre - width)
    return ("... " if lo else "") + repr(doc[lo:centre + width]) + (" ..." if centre + width < len(doc) else "")


def describe_mismatch(sp, idx, doc, exp, got):
    if got is None:
        return f"document #{idx}: output line is not a list of integers\n  text: {snippet(doc)}"
    pos = next((k for k in range(min(len(exp), len(got))) if exp[k] != got[k]), min(len(exp), len(got)))
    centre = None
    if isinstance(doc, str):
        try:
            centre = len(sp.decode(exp[:pos]))
        except Exception:
            centre = None
    size = f"{len(doc)} {'chars' if isinstance(doc, str) else 'bytes'}"
    lo, hi = max(0, pos - 3), pos + 6
    lines = [
        f"document #{idx} ({size}, {len(exp)} expected / {len(got)} got tokens), first difference at token {pos}",
        f"  text near it: {snippet(doc, centre)}",
        f"  expected[{lo}:{hi}]: " + " ".join(piece_str(sp, i) for i in exp[lo:hi]),
        f"  got     [{lo}:{hi}]: " + " ".join(piece_str(sp, i) for i in got[lo:hi]),
    ]
    if len(doc) <= 200:
        lines.append(f"  whole document: {doc!r}")
        lines.append(f"  expected ids: {exp}")
        lines.append(f"  got ids:      {got}")
    return "\n".join(lines)


class Reporter:
    """Saves failing inputs so that they can be rerun by hand."""

    def __init__(self, tmp):
        self.dir = tmp / "failures"
        self.count = 0

    def save(self, label, docs):
        self.dir.mkdir(exist_ok=True)
        self.count += 1
        path = self.dir / f"{self.count:03d}_{re.sub(r'[^A-Za-z0-9_.-]+', '_', label)[:80]}.jsonl"
        with open(path, "w", encoding="utf-8") as f:
            for d in docs:
                if isinstance(d, bytes):
                    f.write(json.dumps({"bytes_hex": d.hex()}) + "\n")
                else:
                    f.write(json.dumps({"text": d}, ensure_ascii=True) + "\n")
        return path


REPORT = None


def compare_encoded(R, name, sp, docs, expected, run, extra=""):
    """docs: the documents (str or bytes); expected: sentencepiece's ids for each."""
    if run.rc != 0:
        return R.record(name, False, run.describe())
    lines = output_lines(run.out)
    bad = []
    for i in range(min(len(lines), len(expected))):
        exp = expected[i]
        if lines[i] == " ".join(map(str, exp)):
            continue
        got = parse_ids(lines[i])
        if got != exp:
            bad.append((i, got))
    problems = []
    if len(lines) != len(expected):
        problems.append(f"expected {len(expected)} output lines (one per document), got {len(lines)}")
    if bad:
        problems.append(f"{len(bad)} of {len(expected)} documents differ; first:")
        i, got = bad[0]
        problems.append(describe_mismatch(sp, i, docs[i], expected[i], got))
        if len(bad) > 1:
            problems.append("  other differing documents: " + ", ".join(f"#{i}" for i, _ in bad[1:12])
                            + (" ..." if len(bad) > 12 else ""))
        path = REPORT.save(name, [docs[i] for i, _ in bad[:50]])
        problems.append(f"  failing documents saved to {path}")
    ntok = sum(len(e) for e in expected)
    info = f"{len(expected)} docs, {ntok} tokens, tokenize {run.seconds:.2f}s" + (f", {extra}" if extra else "")
    if problems:
        problems.insert(0, f"$ {shlex.join(run.cmd)}")
        return R.record(name, False, "\n".join(problems))
    return R.record(name, True, info)


def expect_error(R, name, run, rc=1, mention=(), line=None):
    """The run must exit with rc; its stderr must contain each string of mention (and the line number)."""
    problems = []
    if run.rc != rc:
        problems.append(f"expected exit status {rc}, got {run.rc}")
    err = run.errtext()
    for m in mention:
        if m not in err:
            problems.append(f"stderr does not mention {m!r}")
    if line is not None and not re.search(rf"(?<![0-9]){line}(?![0-9])", err):
        problems.append(f"stderr does not mention line {line}")
    if rc != 0 and not err.strip():
        problems.append("no message on stderr")
    if problems:
        return R.record(name, False, "; ".join(problems) + "\n" + run.describe())
    return R.record(name, True, f"exit {run.rc}: {err.strip().splitlines()[0][:100] if err.strip() else ''}")


def write_jsonl(path, docs, ensure_ascii=False):
    with open(path, "w", encoding="utf-8", newline="") as f:
        for d in docs:
            f.write(json.dumps({"text": d}, ensure_ascii=ensure_ascii) + "\n")


# --------------------------------------------------------------------------------------------------
# data location


class Data:
    def __init__(self):
        self.models = {}  # short name -> Path
        self.texts = {}  # file name -> Path
        self.sample = None  # folder holding the official sample shards
        self.caseops = None  # the 2026-05-01 record's folder (its lossless_caps.py and prepare_caseops_data.py)
        self.notes = []


def locate_data(shared):
    """Models from the first of the candidate folders that has tokenizers/; texts and sample shards
    from the first candidate that has them."""
    d = Data()
    if shared:
        bases = [Path(shared)]
    else:
        bases = [ROOT.parent / "shared", ROOT / "data"]
    for base in bases:
        tok = base / "tokenizers"
        if tok.is_dir() and any((tok / f).is_file() for f in SHARED_MODELS.values()):
            for short, f in SHARED_MODELS.items():
                if (tok / f).is_file():
                    d.models[short] = tok / f
            d.notes.append(f"models from {tok}")
            break
    for name in TEXT_FILES:
        for base in bases:
            for folder in (base / "text", base):
                if (folder / name).is_file():
                    d.texts[name] = folder / name
                    break
            if name in d.texts:
                break
    if d.texts:
        d.notes.append("texts from " + ", ".join(sorted({str(p.parent) for p in d.texts.values()})))
    for base in bases:
        for folder in (base / "data" / "sample_sp1024", base / "sample_sp1024"):
            if (folder / "fineweb_train_000000.bin").is_file():
                d.sample = folder
                break
        if d.sample:
            break
    for base in bases:
        if (base / "records" / CASEOPS_RECORD / "prepare_caseops_data.py").is_file():
            d.caseops = base / "records" / CASEOPS_RECORD
            break
    return d


def load_jsonl(path, limit=None):
    docs = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                docs.append(json.loads(line)["text"])
                if limit is not None and len(docs) >= limit:
                    break
    return docs


# --------------------------------------------------------------------------------------------------
# test inputs


def random_unicode_strings(rng, count):
    blocks = [
        (0x20, 0x7E), (0xA0, 0xFF), (0x100, 0x24F), (0x250, 0x2FF), (0x300, 0x36F), (0x370, 0x3FF),
        (0x400, 0x4FF), (0x530, 0x58F), (0x590, 0x5FF), (0x600, 0x6FF), (0x700, 0x74F), (0x900, 0x97F),
        (0x980, 0x9FF), (0xB80, 0xBFF), (0xE00, 0xE7F), (0xF00, 0xFFF), (0x10A0, 0x10FF),
        (0x1100, 0x11FF), (0x1680, 0x169F), (0x1E00, 0x1EFF), (0x1F00, 0x1FFF), (0x2000, 0x206F),
        (0x2070, 0x209F), (0x20A0, 0x20CF), (0x20D0, 0x20FF), (0x2100, 0x214F), (0x2150, 0x218F),
        (0x2190, 0x21FF), (0x2200, 0x22FF), (0x2460, 0x24FF), (0x2500, 0x257F), (0x2600, 0x26FF),
        (0x2E80, 0x2EFF), (0x2F00, 0x2FDF), (0x3000, 0x303F), (0x3040, 0x309F), (0x30A0, 0x30FF),
        (0x3130, 0x318F), (0x3200, 0x32FF), (0x3300, 0x33FF), (0x4E00, 0x9FFF), (0xA000, 0xA4CF),
        (0xAC00, 0xD7A3), (0xE000, 0xF8FF), (0xF900, 0xFAFF), (0xFB00, 0xFB4F), (0xFB50, 0xFDFF),
        (0xFE00, 0xFE0F), (0xFE10, 0xFE1F), (0xFE30, 0xFE6F), (0xFE70, 0xFEFF), (0xFF00, 0xFFEF),
        (0xFFF0, 0xFFFF), (0x10000, 0x1007F), (0x10300, 0x1032F), (0x1D400, 0x1D7FF),
        (0x1F000, 0x1F0FF), (0x1F100, 0x1F1FF), (0x1F300, 0x1F64F), (0x1F680, 0x1F6FF),
        (0x1F900, 0x1F9FF), (0x20000, 0x2A6DF), (0x2F800, 0x2FA1F), (0xE0000, 0xE007F),
        (0xF0000, 0xF00FF), (0x10FFF0, 0x10FFFF), (0x0, 0x1F), (0x7F, 0x9F),
    ]
    spaces = [" ", "  ", "\t", "\n", "\u00a0", "\u3000", "\u2003", "\u200b", "\r\n"]
    out = []
    for _ in range(count):
        chosen = rng.sample(blocks, rng.randint(1, 4))
        n = rng.randint(1, 60)
        chars = []
        for _ in range(n):
            r = rng.random()
            if r < 0.12:
                chars.append(rng.choice(spaces))
            elif r < 0.2:
                chars.append(rng.choice(["the", "and", "of", "a", "1", "42", "é", "ing"]))
            else:
                lo, hi = rng.choice(chosen)
                chars.append(chr(rng.randint(lo, hi)))
        out.append("".join(chars))
    return out


def mutate(rng, doc, pool):
    """A corpus document with random characters inserted, replaced, doubled or removed."""
    doc = list(doc[:3000])
    for _ in range(rng.randint(1, 25)):
        if not doc:
            doc.append(rng.choice(pool))
            continue
        k = rng.randrange(len(doc))
        op = rng.random()
        if op < 0.4:
            doc.insert(k, rng.choice(pool))
        elif op < 0.6:
            doc[k] = rng.choice(pool)
        elif op < 0.8:
            doc.insert(k, doc[k] * rng.randint(2, 5))
        else:
            del doc[k]
    return "".join(doc)


def adversarial_docs(corpus_sample):
    rng = random.Random(20240520)
    docs = [
        # NFKC-sensitive
        "ＡＢＣ ａｂｃ １２３ ！？（）［］｛｝＠＃＄％＾＆＊",
        "Ｈｅｌｌｏ，　ｗｏｒｌｄ！ｈｔｔｐｓ：／／ｅｘａｍｐｌｅ．ｃｏｍ",
        "ﬁ ﬂ ﬃ ﬄ ﬀ ﬅ ﬆ oﬃce ﬁnd ﬂow eﬀort",
        "① ② ⑩ ⑳ ㉑ ㊿ ² ³ ¹ ⁰ ⁵ ⁹ ₀ ₃ ₁₀ ½ ¼ ¾ ⅓ ⅞ ⅟",
        "Ⅰ Ⅱ Ⅳ Ⅻ ⅰ ⅷ ⅿ Ⅿ Chapter Ⅻ",
        "Ⓐ Ⓑ ⓐ ⓩ ⒜ ⒵ 🅐 🄰 ㋐ ㉠",
        "㎏ ㎞ ㏄ ㍱ ㌀ ㍻ ℃ ℉ № ™ ℡ ㏍ ㎡ ㍉",
        "ｱｲｳｴｵ ｶﾞｷﾞ ﾊﾟﾋﾟ ｰ ｯ ﾞ ﾟ ｶﾞ",
        "ᄀ ᅡ ᆨ 한국어 ㄱㄴㄷ \u1100\u1161\u11a8 ᄒᆞᆫ",
        "µ Å Ω K ſ ﬅ ǅ ǈ ǋ ǲ ŉ ẛ",
        "x²+y²=z² … ‥ ‼ ⁇ ⁈ ⁉ ︵ ﹏ ＿ ﹍ ﹉",
        "ℌ ℍ ℝ ℤ 𝐀𝐁𝐂 𝔸𝔹 𝕏 𝒜 𝓩 𝟘𝟙𝟚 𝖆𝖇",
        "\ufdfa \ufdfb \ufb01 \ufef7 \ufe8d \ufb50 ﷽",
        "ǆ Ǆ ĳ Ĳ ŀ Ŀ ʼn ϐ ϑ ϒ ϕ ϖ ϰ ϱ ϲ",
        "\u2460\u0301 e\u0301\u0301 ﬁ\u0301 Å\u030a",
        # combining marks
        "e\u0301 cafe\u0301 re\u0301sume\u0301 nai\u0308ve",
        "a\u0300\u0301\u0302\u0303\u0304\u0305\u0306\u0307\u0308\u0309\u030a",
        "Z\u0334\u0321\u0322\u031b\u0317\u0318\u0319\u031c\u031d\u031e\u031f\u0320\u0300\u0301\u0302a\u0363\u0364lgo",
        "\u0301 leading combining mark",
        "\u0301",
        "A\u030a \u212b \u00c5 n\u0303 \u00f1 o\u0308\u0304 \u022b",
        "ก\u0e34\u0e49 क\u094d\u0937 \u05e9\u05c1\u05b8",
        # emoji
        "😀 😃 😄 🙂 🙃",
        "👍🏽 👋🏿 🧑🏻‍💻 🧑🏿‍🚀",
        "👨‍👩‍👧‍👦 family and 🏳️‍🌈 flag and 🏴‍☠️",
        "🇺🇸🇫🇷🇯🇵🇩🇪 flags 🇬🇧",
        "❤️ ❤ ☺️ ✔️ 1️⃣ #️⃣ *️⃣ ©️ ®️",
        "🐍🐍🐍 snake emoji everywhere 🐍",
        # scripts
        "日本語のテキストです。漢字、ひらがな、カタカナ。",
        "中文分词测试，标点符号。“引号”和《书名号》！",
        "مرحبا بالعالم، هذا نص عربي. ١٢٣ ٤٥٦",
        "שלום עולם, זה טקסט בעברית.",
        "नमस्ते दुनिया। यह हिंदी पाठ है। १२३",
        "สวัสดีชาวโลก นี่คือข้อความภาษาไทย",
        "Привет, мир! Ελληνικά κείμενα. Ծանոթություն. ქართული",
        "mixed: English العربية עברית 中文 日本語 한국어 हिन्दी ไทย",
        "ⴰⵣⵓⵍ ᐃᓄᒃᑎᑐᑦ ᏣᎳᎩ ꦗꦮ ᠮᠣᠩᠭᠣᠯ",
        # controls
        "".join(chr(c) for c in range(0x00, 0x20)),
        "".join(chr(c) for c in range(0x7F, 0xA0)),
        "a\x00b\x01c\x02d\x1fe\x7ff\x80g\x85h\x9fi",
        "\x00",
        "\x00\x00\x00 nul nul",
        "bell\x07 backspace\x08 escape\x1b[31m red \x1b[0m",
        "form\x0cfeed vertical\x0btab",
        # zero width and other spaces
        "\u200b", "a\u200bb\u200cc\u200dd\u2060e\ufefff\u00adg",
        "\ufeffbyte order mark at start",
        "nbsp\u00a0nbsp\u00a0\u00a0double",
        "\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u202f\u205f\u3000\u1680end",
        "line\u2028separator\u2029paragraph\u0085nel",
        "\u3000ideographic space start",
        # whitespace runs
        "tab\tseparated\tvalues\t\t\tend",
        "windows\r\nline\r\nendings\r\n",
        "\r", "\r\r\r", "\n", "\n\n\n", "\t", " ", "  ", "   ", " \t \n \r ", "\u00a0", "\u3000\u3000",
        " leading space", "  two leading", "trailing space ", "trailing two  ",
        "multiple    internal     spaces", "   all   sides   ",
        "a\n\nb\n\n\nc", "a \n b \n\n c", "\n\nleading newlines", "trailing newlines\n\n",
        "x" + " " * 1000 + "y", " " * 500, "\n" * 300 + "z",
        # digits
        "1234567890" * 10,
        "3.14159265358979 2.71828 1,000,000 1 000 000 1'000'000 1_000_000",
        "12:30:45 2024-05-20 +1-555-0100 192.168.0.1 v1.2.3 0x1F 1e10 -42 ½",
        "١٢٣٤٥ ۱۲۳ १२३ ০১২ ௧௨௩ ๑๒๓ ０１２３ 𝟎𝟏𝟐",
        "9" * 3000,
        "12345678901234567890123456789012345678901234567890a1b2c3d4",
        # long words
        "Pneumonoultramicroscopicsilicovolcanoconiosis and Llanfairpwllgwyngyllgogerychwyrndrobwllllantysiliogogogoch",
        "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(5000)),
        "supercalifragilistic" * 50,
        "https://example.com/a/very/long/path?with=query&and=parameters#fragment" * 20,
        "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/") for _ in range(4000)),
        # repetition
        "a" * 10000, "aaaa " * 1000, "ab" * 3000, "." * 2000, "-=" * 500, "😀" * 500, "日" * 1000,
        "the " * 2000, "é" * 1000, "e\u0301" * 500, "ﬁ" * 500, "\u200b" * 100, "<0x41>" * 100,
        # U+2581 itself
        "▁", "▁▁▁", "a▁b", "▁hello", "hello▁", "▁ ▁", " ▁ ", "▁▁ double ▁▁", "▁the▁cat",
        # piece look-alikes
        "<unk>", "<s>", "</s>", "<pad>", "<0x41>", "<0xFF>", "<0x00>", "<s>hello</s>", "<sep>",
        "foo bar foobar ▁bar barfoo <sep> foo<sep>bar", "⁇", " ⁇ ",
        # empty
        "",
        # mixed big one
        "Le café ﬁnal coûte ½ € — “quoted” ‘single’ «guillemets» 😀👍🏽 日本 ①②③ ＡＢＣ\tend\u00a0.",
    ]
    n_hand = len(docs)
    pool = list("aeé \t\n\u00a0\u3000ﬁ①ＡＢ😀👍🏽日本\u0301\u200b▁.,!?0123456789") + ["\r\n", "  ", "<s>", "\x00"]
    docs += random_unicode_strings(rng, 600)
    for d in rng.sample(corpus_sample, min(100, len(corpus_sample))):
        docs.append(mutate(rng, d, pool))
    # a few normalization forms of corpus-looking text
    for d in corpus_sample[:10]:
        for form in ("NFD", "NFKD"):
            docs.append(unicodedata.normalize(form, d[:1500]))
    return docs, n_hand


def invalid_utf8_lines():
    rng = random.Random(7)
    lines = [
        b"\x80", b"abc\x80def", b"\xbf\xbf\xbf", b"\xc3", b"abc\xc3", b"\xc3(", b"\xc3 x",
        b"\xe2\x82", b"\xe2\x82abc", b"\xe2\x82\xe2\x82\xac", b"\xf0\x9f\x98", b"\xf0\x9f\x98 x",
        b"\xf0\x9f", b"\xf0", b"\xc0\xaf", b"\xc1\xbf", b"\xc0\x80", b"\xe0\x80\xaf", b"\xe0\x9f\xbf",
        b"\xf0\x80\x80\xaf", b"\xf0\x8f\xbf\xbf", b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xed\xa0\xbd\xed\xb8\x80",
        b"\xf5\x80\x80\x80", b"\xf8\x88\x80\x80\x80", b"\xfc\x84\x80\x80\x80\x80", b"\xfe", b"\xff", b"\xfe\xff",
        b"\xf4\x90\x80\x80", b"\xf7\xbf\xbf\xbf", b"\xf4\x8f\xbf\xbf ok (U+10FFFF)",
        "héllo".encode() + b"\xff" + "wörld".encode(), b" \xff ", b"  \x80  \x80  ", b"e\x80\xcc\x81",
        "ＡＢ".encode() + b"\x80" + "ﬁ".encode(), b"\xef\xbf\xbd literal replacement char", b"\xef\xbf",
        b"\xe0\xa0", b"x\xed\xa0", b"\x80" * 100, b"\xc3\xa9\xc3", b"\xe6\x97\xa5\xe6\x9c",
        b"\xe2\x96\x81\xe2\x96", b"\xe2\x96 after truncated U+2581", b"\xf0\x9f\x98\x80\xf0\x9f\x98",
        b"ok valid line", b"", b"<0x80>\x80", b"\x00\x80\x00", b"\xa0\xa1", b"\xc2\xa0\xc2",
    ]
    for _ in range(120):
        parts = []
        for _ in range(rng.randint(1, 12)):
            r = rng.random()
            if r < 0.35:
                parts.append(bytes([rng.randint(0x80, 0xFF)]))
            elif r < 0.55:
                parts.append(rng.choice([b"a", b"the ", b" ", b"1", b"  ", b"\t"]))
            elif r < 0.8:
                c = chr(rng.choice([rng.randint(0xA0, 0x7FF), rng.randint(0x800, 0xD7FF), rng.randint(0x10000, 0x1FFFF)]))
                enc = c.encode("utf-8")
                parts.append(enc if rng.random() < 0.5 else enc[: rng.randint(1, len(enc))])
            else:
                parts.append(bytes(rng.choice([0xC0, 0xC1, 0xE0, 0xED, 0xF0, 0xF4, 0xF5, 0xFF]) for _ in range(rng.randint(1, 3))))
        lines.append(b"".join(parts).replace(b"\n", b""))
    return lines


def sp_style_replace(b):
    """The bytes sentencepiece reads for b: each byte that does not start a valid UTF-8 character
    becomes U+FFFD, and reading goes on at the next byte."""
    out = bytearray()
    i = 0
    while i < len(b):
        c = b[i]
        n = 1 if c < 0x80 else 2 if 0xC2 <= c <= 0xDF else 3 if 0xE0 <= c <= 0xEF else 4 if 0xF0 <= c <= 0xF4 else 0
        if n:
            try:
                b[i:i + n].decode("utf-8")
                out += b[i:i + n]
                i += n
                continue
            except UnicodeDecodeError:
                pass
        out += "\ufffd".encode()
        i += 1
    return bytes(out)


JSON_VARIANTS = [
    '{"text": "plain"}',
    '{"id": 7, "text": "after id", "meta": {"text": "nested decoy", "list": [1, 2, {"text": "x"}]}}',
    '{"meta": {"text": "decoy first"}, "text": "real text after a nested object"}',
    '   {  "text"  :  "spaced out"  }   ',
    '\t{"text":"no spaces","x":null,"y":true,"z":false,"w":-1.5e3,"v":0}\t',
    r'{"text": "escapes \" \\ \/ \b \f \n \r \t \u00e9 \u00E9 \u4e2d \ud83d\ude00 \u0000 end"}',
    r'{"source": "s \"text\": \"fake\"", "text": "real, after a string holding \"text\":"}',
    '{"text": "crlf line"}\r',
    '',
    '   ',
    '{"text": ""}',
    '{"text": "raw unicode é 中 😀 \u2028 \u2029"}',
    '{"arr": [[[]], {}, [{"text": "deep decoy"}]], "obj": {}, "text": "after empty containers"}',
    r'{"text": "{\"text\": \"inner\"}"}',
    '{"text": "last field", "after": "the text field"}',
    '{"n": 1e400, "text": "after a huge number"}',
    r'{"text": "\u0041\u0042\u0043 and \\u0041 literally"}',
]
# valid JSON that a hand-written parser may miss: each runs on its own so that it masks nothing
JSON_UNUSUAL = [
    r'{"te\u0078t": "the key spelled with an escape"}',
]


# --------------------------------------------------------------------------------------------------
# checks


def python_lut(sp, vocab_size=0):
    rows = []
    for i in range(sp.get_piece_size()):
        if sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i):
            rows.append((0, 0, 1))
        elif sp.is_byte(i):
            rows.append((1, 0, 0))
        else:
            p = sp.id_to_piece(i)
            space = p.startswith("\u2581")
            rows.append((len(p[1:].encode() if space else p.encode()), int(space), 0))
    rows += [(0, 0, 1)] * max(0, vocab_size - len(rows))
    return rows


def check_lut(R, name, tok, args, expected):
    run = tok.run(["lut"] + args)
    if run.rc != 0:
        return R.record(name, False, run.describe())
    got, bad = [], []
    for line in run.out.decode("utf-8", "replace").split("\n"):
        if not line.strip() or line.startswith("#"):
            continue
        got.append(line)
    for i in range(min(len(got), len(expected))):
        want = f"{i} {expected[i][0]} {expected[i][1]} {expected[i][2]}"
        if got[i].split() != want.split():
            bad.append(f"line for id {i}: got {got[i]!r}, expected {want!r}")
    if len(got) != len(expected):
        bad.insert(0, f"expected {len(expected)} table lines, got {len(got)}")
    if bad:
        return R.record(name, False, "\n".join(bad[:8]) + f"\n$ {shlex.join(run.cmd)}")
    return R.record(name, True, f"{len(expected)} ids")


def check_cli(R, tok, model):
    cases = [
        ("no arguments", []),
        ("unknown command", ["frobnicate"]),
        ("encode unknown flag", ["encode", "--model", model, "--bogus", "-"]),
        ("encode without --model", ["encode", "-"]),
        ("encode --model without value", ["encode", "--model"]),
        ("encode bad --format", ["encode", "--model", model, "--format", "xml", "-"]),
        ("encode bad --invalid-utf8", ["encode", "--model", model, "--invalid-utf8", "ignore", "-"]),
        ("decode unknown flag", ["decode", "--model", model, "--pretty", "-"]),
        ("decode without --model", ["decode", "-"]),
        ("shards without --out", ["shards", "--model", model, "in.jsonl"]),
        ("shards without files", ["shards", "--model", model, "--out", "nowhere"]),
        ("shards bad --empty", ["shards", "--model", model, "--out", "nowhere", "--empty", "maybe", "in.jsonl"]),
        ("shards without model", ["shards", "--out", "nowhere", "in.jsonl"]),
        ("lut without model", ["lut"]),
        ("info without --model", ["info"]),
        ("info unknown flag", ["info", "--model", model, "--verbose"]),
    ]
    for label, args in cases:
        run = tok.run(args)
        ok = run.rc == 2 and run.err.strip() != b""
        R.record(f"cli: {label} -> exit 2 with usage", ok, "" if ok else run.describe())


def quick_copy(src, dst):
    """dst holding the first QUICK_DOCS non-empty lines of src (--quick); returns dst"""
    with open(src, encoding="utf-8") as f, open(dst, "w", encoding="utf-8") as g:
        n = 0
        for line in f:
            if line.strip():
                g.write(line)
                n += 1
                if n >= QUICK_DOCS:
                    break
    return dst


def check_corpus(R, tok, data, tmp, quick, models):
    """Check 1: every document of every shared text file, every shared model."""
    if not data.texts:
        R.skip("corpus encode", "no shared text files found")
        return
    files = {}
    for name in TEXT_FILES:
        if name not in data.texts:
            R.skip(f"corpus encode {name}", "file not found")
            continue
        if quick:
            files[name] = quick_copy(data.texts[name], tmp / f"quick_{name}")
        else:
            files[name] = data.texts[name]
    for mname, (sp, mpath) in models.items():
        for fname, fpath in files.items():
            docs = load_jsonl(fpath)
            job = tok.start(["encode", "--model", mpath, "--format", "jsonl", fpath])
            t0 = time.time()
            expected = sp.encode(docs)
            t_sp = time.time() - t0
            run = job.wait()
            compare_encoded(R, f"corpus encode {mname} {fname}", sp, docs, expected, run,
                            f"sentencepiece {t_sp:.2f}s wall on 2 threads")


def check_encode_set(R, tok, tmp, label, sp, mpath, docs):
    """Encodes docs (jsonl) and compares; returns sentencepiece's ids."""
    path = tmp / f"set_{re.sub(r'[^A-Za-z0-9]+', '_', label)}.jsonl"
    write_jsonl(path, docs)
    expected = sp.encode(docs)
    run = tok.run(["encode", "--model", mpath, "--format", "jsonl", path])
    compare_encoded(R, f"encode {label}", sp, docs, expected, run)
    path.unlink()
    return expected


def check_invalid_utf8(R, tok, tmp, label, sp, mpath, lines):
    path = tmp / "invalid_utf8.txt"
    path.write_bytes(b"".join(l + b"\n" for l in lines))
    expected = sp.encode(lines)
    run = tok.run(["encode", "--model", mpath, "--format", "lines", "--invalid-utf8", "replace", path])
    compare_encoded(R, f"invalid-utf8 replace {label}", sp, lines, expected, run)


def check_decode(R, tok, tmp, label, sp, mpath, id_lists, plain=True):
    path = tmp / "decode_in.txt"
    path.write_text("".join(" ".join(map(str, ids)) + "\n" for ids in id_lists))
    expected = [sp.decode(ids) for ids in id_lists]
    run = tok.run(["decode", "--model", mpath, "--jsonl", path])
    if run.rc != 0:
        R.record(f"decode --jsonl {label}", False, run.describe())
    else:
        raw = run.out.split(b"\n")
        if raw and raw[-1] == b"":
            raw.pop()
        bad = []
        for i in range(min(len(raw), len(expected))):
            try:
                got = json.loads(raw[i].decode("utf-8"))["text"]
            except Exception as e:
                got = f"<unparsable output line {raw[i][:200]!r}: {e}>"
            if got != expected[i]:
                bad.append((i, got))
        problems = []
        if len(raw) != len(expected):
            problems.append(f"expected {len(expected)} output lines, got {len(raw)}")
        if bad:
            i, got = bad[0]
            ids = id_lists[i]
            problems.append(f"{len(bad)} of {len(expected)} sequences decode differently; first: #{i}")
            problems.append(f"  ids: {ids[:40]}{' ...' if len(ids) > 40 else ''}")
            problems.append("  pieces: " + " ".join(piece_str(sp, t) for t in ids[:20]))
            problems.append(f"  expected: {snippet(expected[i])}")
            problems.append(f"  got:      {snippet(got)}")
        if problems:
            R.record(f"decode --jsonl {label}", False, "\n".join(problems) + f"\n$ {shlex.join(run.cmd)}")
        else:
            R.record(f"decode --jsonl {label}", True, f"{len(expected)} sequences")
    if not plain:
        return
    keep = [i for i, t in enumerate(expected) if "\n" not in t]
    path.write_text("".join(" ".join(map(str, id_lists[i])) + "\n" for i in keep))
    run = tok.run(["decode", "--model", mpath, path])
    if run.rc != 0:
        R.record(f"decode plain {label}", False, run.describe())
        return
    raw = run.out.split(b"\n")
    if raw and raw[-1] == b"":
        raw.pop()
    bad = [k for k in range(min(len(raw), len(keep))) if raw[k] != expected[keep[k]].encode("utf-8")]
    if len(raw) != len(keep) or bad:
        detail = f"expected {len(keep)} lines, got {len(raw)}; {len(bad)} differ"
        if bad:
            k = bad[0]
            detail += (f"\n  first: ids {id_lists[keep[k]][:30]}\n  expected {expected[keep[k]].encode('utf-8')[:200]!r}"
                       f"\n  got      {raw[k][:200]!r}")
        R.record(f"decode plain {label}", False, detail)
    else:
        R.record(f"decode plain {label}", True, f"{len(keep)} sequences without newlines")


def handmade_id_lists(sp, rng):
    V = sp.get_piece_size()
    byte_id = {}
    for i in range(V):
        if sp.is_byte(i):
            byte_id[int(sp.id_to_piece(i)[3:5], 16)] = i
    special = [i for i in range(V) if sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i)]
    space_pieces = [i for i in range(V) if sp.id_to_piece(i).startswith("\u2581") and not sp.is_byte(i)][:30]
    normal = [i for i in range(V) if not (sp.is_control(i) or sp.is_unknown(i) or sp.is_byte(i))]
    lists = [[], list(range(V))]
    lists += [[i] for i in special] + [special, special * 3]
    lists += [[i] for i in space_pieces[:10]] + [space_pieces, space_pieces[:3] * 4]
    if normal:
        a, b = normal[len(normal) // 2], normal[-1]
        for s in special:
            lists += [[s, a], [a, s, b], [a, s, s, b]]
        lists += [space_pieces[:1] + [a] + space_pieces[1:2], [a] + space_pieces[:2] + [b]]
    if byte_id:
        lists += [[byte_id[b]] for b in sorted(byte_id)]
        seqs = [b"\xe2\x82", b"\xe2\x82A", b"\xc3", b"\xff", b"\xfe\xff", b"\xed\xa0\x80", b"\xc0\xaf",
                b"\xf0\x9f\x98\x80", b"\xf0\x9f\x98", b"\xf4\x90\x80\x80", b"\xe2\x96\x81", b"\xe2\x96\x81\xe2\x96\x81x",
                b" ", b"  a", b"\x00", b"\xef\xbf\xbd", b"\xc3\xa9", b"\x80\x80\x80", b"a\xe2\x82\xacb"]
        for s in seqs:
            if all(c in byte_id for c in s):
                ids = [byte_id[c] for c in s]
                lists += [ids]
                if normal:
                    lists += [[normal[5]] + ids + [normal[7]], space_pieces[:1] + ids]
    for _ in range(200):
        lists.append([rng.randrange(V) for _ in range(rng.randint(1, 40))])
    for _ in range(50):
        pool = special + space_pieces + list(byte_id.values())[:40]
        if pool:
            lists.append([rng.choice(pool) for _ in range(rng.randint(1, 20))])
    return lists


def check_decode_rejects(R, tok, tmp, label, mpath, V):
    for text in (f"{V}", f"5 {V + 7} 6", "-1", "99999999999999999999999999", "abc", "12x", "1.5", "7 seven"):
        path = tmp / "bad_ids.txt"
        path.write_text("3 4\n" + text + "\n")
        run = tok.run(["decode", "--model", mpath, path])
        ok = run.rc == 1 and run.err.strip() != b""
        R.record(f"decode rejects {text!r} ({label})", ok, "" if ok else run.describe())


def check_formats(R, tok, tmp, sp, mpath, adv, corpus):
    """lines, paragraphs, auto, stdin, JSON escapes and layout variants."""
    single = [d for d in adv if "\n" not in d]
    # lines, trailing newline and without
    body = "".join(d + "\n" for d in single).encode()
    p = tmp / "adv_lines.txt"
    p.write_bytes(body)
    exp = sp.encode(single)
    compare_encoded(R, "format lines (adversarial, no newlines)", sp, single, exp,
                    tok.run(["encode", "--model", mpath, "--format", "lines", p]))
    compare_encoded(R, "format auto on .txt = lines", sp, single, exp, tok.run(["encode", "--model", mpath, p]))
    compare_encoded(R, "stdin ('-') = lines", sp, single, exp, tok.run(["encode", "--model", mpath, "-"], stdin=body))
    compare_encoded(R, "stdin (no FILE) = lines", sp, single, exp, tok.run(["encode", "--model", mpath], stdin=body))
    p.write_bytes(body[:-1])
    compare_encoded(R, "format lines, last line without newline", sp, single, exp,
                    tok.run(["encode", "--model", mpath, "--format", "lines", p]))
    p.write_bytes(b"")
    run = tok.run(["encode", "--model", mpath, "--format", "lines", p])
    ok = run.rc == 0 and run.out == b""
    R.record("format lines, empty file -> no output", ok, "" if ok else run.describe())
    # auto on .jsonl and .json
    docs = adv[:150]
    for suffix in (".jsonl", ".json"):
        q = tmp / f"adv_auto{suffix}"
        write_jsonl(q, docs)
        compare_encoded(R, f"format auto on {suffix} = jsonl", sp, docs, sp.encode(docs), tok.run(["encode", "--model", mpath, q]))
    # JSON with every non-ASCII character escaped (surrogate pairs for astral characters)
    q = tmp / "adv_ascii.jsonl"
    write_jsonl(q, adv, ensure_ascii=True)
    compare_encoded(R, "jsonl with \\u escapes (ensure_ascii)", sp, adv, sp.encode(adv),
                    tok.run(["encode", "--model", mpath, "--format", "jsonl", q]))
    # JSON layout variants
    q = tmp / "json_variants.jsonl"
    q.write_text("\n".join(JSON_VARIANTS) + "\n", encoding="utf-8")
    vdocs = [json.loads(l)["text"] for l in JSON_VARIANTS if l.strip()]
    compare_encoded(R, "jsonl layout variants (extra keys, decoys, escapes, spacing, CR, blank lines)", sp,
                    vdocs, sp.encode(vdocs), tok.run(["encode", "--model", mpath, "--format", "jsonl", q]))
    for line in JSON_UNUSUAL:
        q.write_text(line + "\n", encoding="utf-8")
        vdocs = [json.loads(line)["text"]]
        compare_encoded(R, f"jsonl unusual but valid: {line}", sp, vdocs, sp.encode(vdocs),
                        tok.run(["encode", "--model", mpath, "--format", "jsonl", q]))
    q.write_text("\n\n   \n")
    run = tok.run(["encode", "--model", mpath, "--format", "jsonl", q])
    ok = run.rc == 0 and run.out == b""
    R.record("jsonl with only blank lines -> no output", ok, "" if ok else run.describe())
    # paragraphs
    rng = random.Random(3)
    paras = []
    for d in (corpus[:150] if corpus else []) + [d for d in adv if d.strip()][:150]:
        lines = [l for l in d.split("\n") if l.strip()]
        if lines:
            paras.append("\n".join(lines))
    body = ""
    for k, d in enumerate(paras):
        body += d + ("\n" if k == len(paras) - 1 else rng.choice(["\n\n", "\n\n", "\n\n\n", "\n\n\n\n"]))
    q = tmp / "paras.txt"
    q.write_text(body, encoding="utf-8")
    exp = sp.encode(paras)
    compare_encoded(R, "format paragraphs", sp, paras, exp, tok.run(["encode", "--model", mpath, "--format", "paragraphs", q]))
    q.write_text(body.rstrip("\n"), encoding="utf-8")
    compare_encoded(R, "format paragraphs, no final newline", sp, paras, exp,
                    tok.run(["encode", "--model", mpath, "--format", "paragraphs", q]))
    # jsonl whose strings hold raw invalid UTF-8, with replace
    bad = [b"caf\xe9 latin-1", b"\xe2\x82 truncated", b"ok", b"\xed\xa0\x80 surrogate", b"\xff\xfe"]
    q = tmp / "bad_raw.jsonl"
    q.write_bytes(b"".join(b'{"text": "' + b + b'"}\n' for b in bad))
    compare_encoded(R, "jsonl with raw invalid UTF-8, --invalid-utf8 replace", sp, bad, sp.encode(bad),
                    tok.run(["encode", "--model", mpath, "--format", "jsonl", "--invalid-utf8", "replace", q]))
    expect_error(R, "jsonl with raw invalid UTF-8, default -> exit 1 naming the file",
                 tok.run(["encode", "--model", mpath, "--format", "jsonl", q]), mention=[q.name])
    # decode from stdin
    ids = sp.encode(single[:100])
    text = "".join(" ".join(map(str, x)) + "\n" for x in ids).encode()
    want = "".join(sp.decode(x) + "\n" for x in ids).encode("utf-8")
    for label, a in (("'-'", ["-"]), ("no FILE", [])):
        run = tok.run(["decode", "--model", mpath] + a, stdin=text)
        ok = run.rc == 0 and run.out == want
        R.record(f"decode from stdin ({label})", ok, "" if ok else "output differs from sp.decode\n" + run.describe())
    # errors on encode
    q = tmp / "malformed.jsonl"
    q.write_text('{"text": "ok"}\n{"text": "unterminated}\n')
    expect_error(R, "encode malformed JSON -> exit 1 naming file and line", tok.run(["encode", "--model", mpath, q]),
                 mention=[q.name], line=2)
    missing = tmp / "does_not_exist.txt"
    expect_error(R, "encode missing input file -> exit 1 naming it", tok.run(["encode", "--model", mpath, missing]),
                 mention=[missing.name])


# --------------------------------------------------------------------------------------------------
# model files


def pb_varint(b, i):
    r = s = 0
    while True:
        c = b[i]
        i += 1
        r |= (c & 0x7F) << s
        s += 7
        if c < 0x80:
            return r, i


def pb_fields(b):
    """Top-level (field number, raw bytes) of a protobuf message."""
    i, out = 0, []
    while i < len(b):
        start = i
        tag, i = pb_varint(b, i)
        wire = tag & 7
        if wire == 0:
            _, i = pb_varint(b, i)
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        elif wire == 2:
            n, i = pb_varint(b, i)
            i += n
        else:
            raise ValueError(f"wire type {wire}")
        out.append((tag >> 3, b[start:i]))
    return out


def pb_len_field(field, payload):
    def varint(n):
        o = bytearray()
        while n >= 0x80:
            o.append(n & 0x7F | 0x80)
            n >>= 7
        o.append(n)
        return bytes(o)
    return varint(field << 3 | 2) + varint(len(payload)) + payload


def big_vocab_model(model_bytes, extra):
    """The model with `extra` more normal pieces (very low scores), pieces kept before the specs."""
    fields = pb_fields(model_bytes)
    pieces = b"".join(raw for f, raw in fields if f == 1)
    rest = b"".join(raw for f, raw in fields if f != 1)
    added = b"".join(pb_len_field(1, pb_len_field(1, f"\u2581qz{i}q".encode()) + b"\x15" + struct.pack("<f", -1e6 - i))
                     for i in range(extra))
    return pieces + added + rest


def mark_unused(model_bytes, ids):
    """The model with the pieces of the given ids turned into UNUSED pieces (type 5)."""
    out, k = [], 0
    for f, raw in pb_fields(model_bytes):
        if f == 1:
            if k in ids:
                _, i = pb_varint(raw, 0)
                n, i = pb_varint(raw, i)
                raw = pb_len_field(1, raw[i:i + n] + b"\x18\x05")
            k += 1
        out.append(raw)
    return b"".join(out)


def train_model(lines, **kw):
    cfg = dict(model_type="bpe", vocab_size=1200, byte_fallback=True, split_digits=True, add_dummy_prefix=False,
               minloglevel=2, hard_vocab_limit=False, num_threads=2, character_coverage=0.9995)
    cfg.update(kw)
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=buf, **cfg)
    return buf.getvalue()


TRAINED = [
    ("dummy_prefix", dict(add_dummy_prefix=True)),
    ("keep_whitespace", dict(remove_extra_whitespaces=False)),
    ("ws_suffix", dict(treat_whitespace_as_suffix=True)),
    ("ws_suffix_dummy_keep", dict(treat_whitespace_as_suffix=True, add_dummy_prefix=True, remove_extra_whitespaces=False)),
    ("user_symbols", dict(user_defined_symbols=["<sep>", "foo", "\u2581bar", "ab", "abc", "\u2581x\u2581y", "\u00a7"])),
    ("identity", dict(normalization_rule_name="identity")),
    ("identity_keep_ws", dict(normalization_rule_name="identity", remove_extra_whitespaces=False, add_dummy_prefix=True)),
    ("nfkc", dict(normalization_rule_name="nfkc")),
    ("nfkc_cf", dict(normalization_rule_name="nmt_nfkc_cf")),
    ("no_byte_fallback", dict(byte_fallback=False, unk_surface="<UNK>")),
    ("no_split_digits", dict(split_digits=False, vocab_size=2000)),
    ("cross_whitespace", dict(split_by_whitespace=False, add_dummy_prefix=True)),
    ("cross_script_number", dict(split_by_unicode_script=False, split_by_number=False, split_digits=False)),
    ("whitespace_pieces", dict(allow_whitespace_only_pieces=True, remove_extra_whitespaces=False)),
    ("other_special_ids", dict(unk_id=0, bos_id=3, eos_id=-1, pad_id=-1, control_symbols=["<ctl>"],
                               user_defined_symbols=["<sep>"])),
]


def training_lines(data, adv_hand):
    lines = []
    budget = {"wikipedia.jsonl": 2500, "debian_prose.jsonl": 1500, "fineweb_docs.jsonl": 800}
    for name, n in budget.items():
        if name not in data.texts:
            continue
        got = 0
        for d in load_jsonl(data.texts[name], limit=400):
            for l in d.split("\n"):
                if l.strip() and got < n:
                    lines.append(l)
                    got += 1
    if len(lines) < 1000:
        src = Path(__file__).read_text(encoding="utf-8").split("\n")
        lines += [l for l in src if l.strip()] * 2
    for d in adv_hand:
        lines += [l[:2000] for l in d.split("\n") if l.strip()]
    return lines


# --------------------------------------------------------------------------------------------------
# shards


def reference_shards(id_lists, bos, val_docs, shard_tokens):
    """The expected shard files: {file name: bytes}."""
    files = {}
    for kind, lists in (("val", id_lists[:val_docs]), ("train", id_lists[val_docs:])):
        if not lists:
            continue
        n = sum(len(ids) + 1 for ids in lists)
        stream = np.empty(n, dtype="<u2")
        k = 0
        for ids in lists:
            stream[k] = bos
            stream[k + 1:k + 1 + len(ids)] = ids
            k += len(ids) + 1
        for j, start in enumerate(range(0, n, shard_tokens)):
            chunk = stream[start:start + shard_tokens]
            header = np.zeros(256, dtype="<i4")
            header[0], header[1], header[2] = SHARD_MAGIC, 1, len(chunk)
            files[f"fineweb_{kind}_{j:06d}.bin"] = header.tobytes() + chunk.tobytes()
    return files


def shard_names(folder):
    return sorted(p.name for p in Path(folder).iterdir() if re.fullmatch(r"fineweb_(val|train)_\d{6}\.bin", p.name))


def compare_shards(R, name, folder, expected, run, others=()):
    if run.rc != 0:
        return R.record(name, False, run.describe())
    folder = Path(folder)
    present = sorted(p.name for p in folder.iterdir())
    problems = []
    missing = sorted(set(expected) - set(present))
    extra = sorted(set(present) - set(expected) - set(others))
    if missing:
        problems.append(f"missing files: {missing}")
    if extra:
        problems.append(f"unexpected files: {extra}")
    for fname in sorted(set(expected) & set(present)):
        got = (folder / fname).read_bytes()
        want = expected[fname]
        if got == want:
            continue
        gh = np.frombuffer(got[:1024], dtype="<i4") if len(got) >= 1024 else None
        wh = np.frombuffer(want[:1024], dtype="<i4")
        msg = f"{fname}: {len(got)} bytes, expected {len(want)}"
        if gh is not None and not np.array_equal(gh, wh):
            msg += f"; header {gh[:4].tolist()} (nonzero rest: {int(np.count_nonzero(gh[3:]))}), expected {wh[:4].tolist()}"
        elif gh is not None:
            gt = np.frombuffer(got[1024:len(got) - (len(got) % 2)], dtype="<u2")
            wt = np.frombuffer(want[1024:], dtype="<u2")
            m = min(len(gt), len(wt))
            diff = np.nonzero(gt[:m] != wt[:m])[0]
            k = int(diff[0]) if len(diff) else m
            msg += f"; first differing token {k}: got {gt[k:k + 8].tolist()}, expected {wt[k:k + 8].tolist()}"
        problems.append(msg)
    if problems:
        return R.record(name, False, "\n".join(problems[:10]) + f"\n$ {shlex.join(run.cmd)}")
    ntok = sum((len(b) - 1024) // 2 for b in expected.values())
    return R.record(name, True, f"{len(expected)} files, {ntok} tokens, {run.seconds:.2f}s")


def no_final_shards(R, name, folder, run, mention=(), line=None):
    """An error run: exit 1, a message, and no fineweb_*.bin under a final name in folder."""
    left = shard_names(folder) if Path(folder).is_dir() else []
    if left:
        return R.record(name, False, f"shard files left under final names after the error: {left[:6]}\n{run.describe()}")
    return expect_error(R, name, run, mention=mention, line=line)


def check_shards(R, tok, tmp, data, quick, sp, mpath, mlabel, adv, trained):
    """Check 5."""
    root = tmp / "shards"
    root.mkdir()
    counter = [0]

    def outdir():
        counter[0] += 1
        return root / f"out{counter[0]}"

    bos = sp.bos_id()
    # 1. a jsonl file across several shards
    if "fineweb_docs.jsonl" in data.texts:
        src = data.texts["fineweb_docs.jsonl"]
        docs = load_jsonl(src)
        ids = sp.encode(docs)
        exp = reference_shards(ids, bos, 50, 100000)
        d = outdir()
        run = tok.run(["shards", "--model", mpath, "--out", d, "--val-docs", 50, "--shard-tokens", 100000, src])
        compare_shards(R, f"shards {mlabel} fineweb_docs.jsonl --val-docs 50 --shard-tokens 100000", d, exp, run)
        # a shard size that divides the train stream exactly: no empty trailing file
        n_train = sum(len(x) + 1 for x in ids[50:])
        div = next((k for k in range(n_train // 3, 0, -1) if n_train % k == 0), n_train)
        exp = reference_shards(ids, bos, 50, div)
        d = outdir()
        run = tok.run(["shards", "--model", mpath, "--out", d, "--val-docs", 50, "--shard-tokens", div, "--quiet", src])
        compare_shards(R, f"shards with --shard-tokens {div} dividing the train stream ({n_train} tokens)", d, exp, run)
        # defaults: no val file, one train file; --val-docs beyond the end: no train file
        d = outdir()
        compare_shards(R, "shards defaults (one train file, no val)", d, reference_shards(ids, bos, 0, 10 ** 8),
                       tok.run(["shards", "--model", mpath, "--out", d, "--quiet", src]))
        d = outdir()
        compare_shards(R, "shards --val-docs larger than the document count (no train file)", d,
                       reference_shards(ids, bos, 10 ** 6, 100000),
                       tok.run(["shards", "--model", mpath, "--out", d, "--val-docs", 10 ** 6, "--shard-tokens", 100000, "--quiet", src]))
        corpus = docs
    else:
        R.skip("shards on fineweb_docs.jsonl", "text file not found")
        corpus = adv
    corpus = [d for d in corpus if sp.encode(d)][:200]   # documents with at least one token
    # 2. a plain lines file, two inputs in order, a paragraphs file
    single = [l for d in corpus[:120] for l in d.split("\n") if sp.encode(l)][:600]
    p1, p2 = tmp / "shard_a.txt", tmp / "shard_b.txt"
    p1.write_text("".join(l + "\n" for l in single[:400]), encoding="utf-8")
    p2.write_text("".join(l + "\n" for l in single[400:]), encoding="utf-8")
    ids = sp.encode(single)
    d = outdir()
    compare_shards(R, "shards lines files (two inputs, in order) --val-docs 37 --shard-tokens 3000", d,
                   reference_shards(ids, bos, 37, 3000),
                   tok.run(["shards", "--model", mpath, "--out", d, "--val-docs", 37, "--shard-tokens", 3000, "--quiet", p1, p2]))
    pj = tmp / "shard_c.jsonl"
    write_jsonl(pj, corpus[:40])
    d = outdir()
    compare_shards(R, "shards --format auto per file (.jsonl then .txt) --val-docs 45 --shard-tokens 4000", d,
                   reference_shards(sp.encode(corpus[:40]) + sp.encode(single[:400]), bos, 45, 4000),
                   tok.run(["shards", "--model", mpath, "--out", d, "--val-docs", 45, "--shard-tokens", 4000, "--quiet", pj, p1]))
    paras = ["\n".join(l for l in doc.split("\n") if l.strip()) for doc in corpus[:150]]
    paras = [x for x in paras if x and sp.encode(x)]
    q = tmp / "shard_paras.txt"
    q.write_text("\n\n".join(paras) + "\n", encoding="utf-8")
    d = outdir()
    compare_shards(R, "shards paragraphs file --val-docs 5 --shard-tokens 7777", d,
                   reference_shards(sp.encode(paras), bos, 5, 7777),
                   tok.run(["shards", "--model", mpath, "--out", d, "--format", "paragraphs", "--val-docs", 5, "--shard-tokens", 7777, "--quiet", q]))
    # 3. --byte260
    for label, docs_ in (("corpus", corpus), ("adversarial", adv)):
        q = tmp / f"byte260_{label}.jsonl"
        write_jsonl(q, docs_)
        ids = [[b + 4 for b in x.encode("utf-8")] for x in docs_]
        d = outdir()
        compare_shards(R, f"shards --byte260 {label} --val-docs 20 --shard-tokens 50000 --empty keep", d,
                       reference_shards(ids, 1, 20, 50000),
                       tok.run(["shards", "--byte260", "--out", d, "--val-docs", 20, "--shard-tokens", 50000,
                                "--empty", "keep", "--quiet", q]))
    lines = [l for l in invalid_utf8_lines() if l]
    q = tmp / "byte260_bad.txt"
    q.write_bytes(b"".join(l + b"\n" for l in lines))
    d = outdir()
    compare_shards(R, "shards --byte260 --invalid-utf8 replace (each bad byte -> EF BF BD)", d,
                   reference_shards([[b + 4 for b in sp_style_replace(l)] for l in lines], 1, 0, 3000),
                   tok.run(["shards", "--byte260", "--out", d, "--shard-tokens", 3000, "--invalid-utf8", "replace", "--quiet", q]))
    # 4. a model whose bos id is not 1
    if "other_special_ids" in trained:
        tsp, tpath = trained["other_special_ids"]
        q = tmp / "bos3.jsonl"
        docs_ = [x for x in corpus[:60] if tsp.encode(x)]
        write_jsonl(q, docs_)
        d = outdir()
        compare_shards(R, f"shards with a model whose bos id is {tsp.bos_id()}", d,
                       reference_shards(tsp.encode(docs_), tsp.bos_id(), 10, 5000),
                       tok.run(["shards", "--model", tpath, "--out", d, "--val-docs", 10, "--shard-tokens", 5000, "--quiet", q]))
    # 5. refusing to overwrite, --force, unrelated files
    src = tmp / "small.jsonl"
    small = corpus[:30]
    write_jsonl(src, small)
    sids = sp.encode(small)
    d = outdir()
    run = tok.run(["shards", "--model", mpath, "--out", d, "--val-docs", 3, "--shard-tokens", 2000, "--quiet", src])
    compare_shards(R, "shards small set", d, reference_shards(sids, bos, 3, 2000), run)
    before = {n: (d / n).read_bytes() for n in shard_names(d)} if d.is_dir() else {}
    run = tok.run(["shards", "--model", mpath, "--out", d, "--val-docs", 5, "--shard-tokens", 1500, "--quiet", src])
    after = {n: (d / n).read_bytes() for n in shard_names(d)} if d.is_dir() else {}
    if before and after != before:
        R.record("shards refuses existing shards without --force", False, "existing shard files were changed\n" + run.describe())
    else:
        expect_error(R, "shards refuses existing shards without --force (old files untouched)", run, mention=[d.name])
    run = tok.run(["shards", "--model", mpath, "--out", d, "--val-docs", 5, "--shard-tokens", 1500, "--force", "--quiet", src])
    exp = reference_shards(sids, bos, 5, 1500)
    if run.rc == 0:
        stale = [n for n in shard_names(d) if n not in exp]
        for n in stale:  # files of the earlier run that the new one did not rewrite are not judged here
            (d / n).unlink()
    compare_shards(R, "shards --force overwrites", d, exp, run)
    d = outdir()
    d.mkdir()
    (d / "README.txt").write_text("unrelated\n")
    (d / "fineweb_train_notes.bin.txt").write_text("unrelated\n")
    compare_shards(R, "shards into a folder holding only unrelated files", d, reference_shards(sids, bos, 0, 10 ** 8),
                   tok.run(["shards", "--model", mpath, "--out", d, "--quiet", src]),
                   others=["README.txt", "fineweb_train_notes.bin.txt"])
    tiny = [x for x in ["Hello world.", "a", "The end of the test."] if sp.encode(x)]
    q = tmp / "tiny.jsonl"
    write_jsonl(q, tiny)
    d = outdir()
    compare_shards(R, "shards --shard-tokens 1 (one token per file)", d, reference_shards(sp.encode(tiny), bos, 1, 1),
                   tok.run(["shards", "--model", mpath, "--out", d, "--val-docs", 1, "--shard-tokens", 1, "--quiet", q]))
    d = outdir()
    compare_shards(R, f"shards --val-docs {len(small)} = the document count (no train file)", d,
                   reference_shards(sids, bos, len(small), 2000),
                   tok.run(["shards", "--model", mpath, "--out", d, "--val-docs", len(small), "--shard-tokens", 2000, "--quiet", src]))
    q = tmp / "no_final_newline.jsonl"
    q.write_text("\n".join(json.dumps({"text": x}) for x in small), encoding="utf-8")
    d = outdir()
    compare_shards(R, "shards jsonl without a final newline", d, reference_shards(sids, bos, 0, 10 ** 8),
                   tok.run(["shards", "--model", mpath, "--out", d, "--quiet", q]))
    # 6. unwritable output
    blocker = tmp / "a_regular_file"
    blocker.write_text("x")
    run = tok.run(["shards", "--model", mpath, "--out", blocker / "sub", "--quiet", src])
    expect_error(R, "shards --out under a regular file -> exit 1", run, mention=[blocker.name])
    run = tok.run(["shards", "--model", mpath, "--out", blocker, "--quiet", src])
    expect_error(R, "shards --out naming a regular file -> exit 1", run, mention=[blocker.name])
    # 7. empty documents
    late = corpus[:80]
    late_ids = sp.encode(late)
    for label, empty in (("''", ""), ("whitespace only", "  \t  ")):
        if sp.encode(empty):
            continue
        docs_ = late[:70] + [empty] + late[70:]
        q = tmp / "with_empty.jsonl"
        write_jsonl(q, docs_)
        for where, dd in (("late, after full shards", docs_), ("first", [empty] + late)):
            write_jsonl(q, dd)
            d = outdir()
            run = tok.run(["shards", "--model", mpath, "--out", d, "--shard-tokens", 2000, "--quiet", q])
            no_final_shards(R, f"shards empty document {label} ({where}) -> exit 1, no shard files", d, run, mention=[q.name])
        write_jsonl(q, docs_)
        d = outdir()
        compare_shards(R, f"shards --empty skip ({label})", d, reference_shards(late_ids, bos, 5, 2000),
                       tok.run(["shards", "--model", mpath, "--out", d, "--val-docs", 5, "--shard-tokens", 2000, "--empty", "skip", "--quiet", q]))
        d = outdir()
        compare_shards(R, f"shards --empty keep ({label}) = BOS alone", d,
                       reference_shards(late_ids[:70] + [[]] + late_ids[70:], bos, 5, 2000),
                       tok.run(["shards", "--model", mpath, "--out", d, "--val-docs", 5, "--shard-tokens", 2000, "--empty", "keep", "--quiet", q]))
    # 8. invalid UTF-8
    good = [l.encode() for d in corpus[:60] for l in d.split("\n") if sp.encode(l)][:300]
    badline = b"valid start \xe2\x82 then a truncated character"
    q = tmp / "bad_utf8.txt"
    q.write_bytes(b"".join(l + b"\n" for l in good + [badline]))
    d = outdir()
    run = tok.run(["shards", "--model", mpath, "--out", d, "--shard-tokens", 2000, "--quiet", q])
    no_final_shards(R, "shards invalid UTF-8 (last line) -> exit 1, no shard files", d, run, mention=[q.name])
    d = outdir()
    compare_shards(R, "shards --invalid-utf8 replace", d,
                   reference_shards([x for x in sp.encode(good + [badline])], bos, 0, 2000),
                   tok.run(["shards", "--model", mpath, "--out", d, "--shard-tokens", 2000, "--invalid-utf8", "replace", "--quiet", q]))
    # 9. malformed JSON
    cases = [
        ("malformed line", '{"text": "unterminated', 7),
        ("missing \"text\"", '{"txt": "wrong key"}', 5),
        ("\"text\" not a string", '{"text": 42}', 9),
        ("not an object", '["text", "in an array"]', 4),
        ("trailing garbage", '{"text": "ok"} trailing', 6),
        ("bad escape", r'{"text": "bad \q escape"}', 3),
    ]
    for label, bad, lineno in cases:
        lines_ = [json.dumps({"text": x}) for x in corpus[:12]]
        lines_.insert(lineno - 1, bad)
        q = tmp / "bad_json.jsonl"
        q.write_text("\n".join(lines_) + "\n", encoding="utf-8")
        d = outdir()
        run = tok.run(["shards", "--model", mpath, "--out", d, "--quiet", q])
        no_final_shards(R, f"shards jsonl {label} at line {lineno} -> exit 1 naming file and line", d, run,
                        mention=[q.name], line=lineno)
    # 10. broken and non-BPE models (shards and encode)
    raw = Path(mpath).read_bytes()
    broken = {
        "truncated.model": raw[: len(raw) // 2],
        "truncated_in_pieces.model": raw[: len(raw) // 10],
        "garbage.model": random.Random(5).randbytes(5000),
        "empty.model": b"",
        "text.model": b"this is not a sentencepiece model\n" * 50,
    }
    for n, b in broken.items():
        (tmp / n).write_bytes(b)
    for n in list(broken) + ["unigram.model", "char.model", "word.model", "nonexistent.model"]:
        mp = tmp / n
        if n in ("unigram.model", "char.model", "word.model") and not mp.exists():
            continue
        d = outdir()
        run = tok.run(["shards", "--model", mp, "--out", d, "--quiet", src])
        no_final_shards(R, f"shards --model {n} -> exit 1 naming the model", d, run, mention=[n])
        run = tok.run(["encode", "--model", mp, src])
        expect_error(R, f"encode --model {n} -> exit 1 naming the model", run, mention=[n])
    # 11. vocab > 65536
    big = tmp / "big_vocab.model"
    try:
        big.write_bytes(big_vocab_model(raw, 66000))
        bsp = spm.SentencePieceProcessor(model_file=str(big))
    except Exception as e:
        R.skip("shards vocab > 65536", f"could not craft the model: {e}")
    else:
        d = outdir()
        run = tok.run(["shards", "--model", big, "--out", d, "--quiet", src])
        no_final_shards(R, f"shards --model with vocab {bsp.get_piece_size()} -> exit 1", d, run, mention=[big.name])
        probe = corpus[:20] + [" ".join(f"qz{i}q" for i in range(0, 66000, 997))]
        check_encode_set(R, tok, tmp, f"crafted {bsp.get_piece_size()}-piece model", bsp, big, probe)
    # 12. the official sample shards
    if quick:
        R.skip("shards official sample", "not run with --quick")
    elif data.sample is None or "sp1024" not in data.models:
        R.skip("shards official sample", "sample_sp1024 folder or fineweb_1024_bpe.model not found")
    elif any(f not in data.texts for f in TEXT_FILES):
        R.skip("shards official sample", "a text file is missing")
    else:
        d = outdir()
        run = tok.run(["shards", "--model", data.models["sp1024"], "--out", d, "--val-docs", 451, "--quiet"]
                      + [data.texts[f] for f in ("fineweb_val_docs.jsonl", "fineweb_docs.jsonl", "wikipedia.jsonl", "debian_prose.jsonl")])
        exp = {}
        for n in ("fineweb_val_000000.bin", "fineweb_train_000000.bin"):
            if (data.sample / n).is_file():
                exp[n] = (data.sample / n).read_bytes()
        compare_shards(R, "shards reproduce the official sample_sp1024 val and train files", d, exp, run)
        shutil.rmtree(d, ignore_errors=True)


def long_document_worker(model_path, text_path, ids_path, decoded_path):
    sp = spm.SentencePieceProcessor(model_file=str(model_path))
    text = Path(text_path).read_bytes().rstrip(b"\n").decode("utf-8")
    ids = sp.encode(text)
    np.save(ids_path, np.array(ids, dtype=np.int32))
    Path(decoded_path).write_bytes(sp.decode(ids).encode("utf-8"))


def make_long_document(path, corpus, adv, size):
    parts, n = [], 0
    src = [d.replace("\n", " ") for d in corpus] or [d.replace("\n", " ") for d in adv if "\n" not in d]
    k = 0
    while n < size:
        d = src[k % len(src)]
        parts.append(d)
        n += len(d.encode()) + 1
        k += 1
    Path(path).write_bytes(" ".join(parts).encode() + b"\n")


def check_long_document(R, tok, tmp, sp, mpath, worker, text_path, ids_path, decoded_path, size):
    worker.join()
    if worker.exitcode != 0:
        return R.record("long document reference", False, f"the sentencepiece worker failed (exit {worker.exitcode})")
    exp = np.load(ids_path).tolist()
    mb = size / 1e6
    doc = Path(text_path).read_bytes().rstrip(b"\n").decode("utf-8")
    run = tok.run(["encode", "--model", mpath, "--format", "lines", text_path])
    compare_encoded(R, f"encode a single {mb:.0f} MB document (one line)", sp, [doc], [exp], run)
    d = tmp / "shards_long"
    run = tok.run(["shards", "--model", mpath, "--out", d, "--shard-tokens", 1000000, "--quiet", text_path])
    compare_shards(R, f"shards a single {mb:.0f} MB document (one line)", d, reference_shards([exp], sp.bos_id(), 0, 1000000), run)
    shutil.rmtree(d, ignore_errors=True)
    q = tmp / "long_ids.txt"
    q.write_text(" ".join(map(str, exp)) + "\n")
    run = tok.run(["decode", "--model", mpath, q])
    want = Path(decoded_path).read_bytes() + b"\n"
    ok = run.rc == 0 and run.out == want
    detail = f"{len(exp)} ids, {run.seconds:.2f}s"
    if not ok:
        k = next((i for i in range(min(len(run.out), len(want))) if run.out[i] != want[i]), min(len(run.out), len(want)))
        detail = (f"{len(run.out)} bytes out, {len(want)} expected, first difference at byte {k}: "
                  f"got {run.out[k:k + 60]!r}, expected {want[k:k + 60]!r}\n{run.describe()}")
    R.record(f"decode the ids of the {mb:.0f} MB document (one line)", ok, detail)


def check_many_words(R, tok, tmp, sp, mpath, count):
    """Documents of distinct random words: more words than any word cache of a few hundred thousand holds."""
    rng = random.Random(99)
    letters = "abcdefghijklmnopqrstuvwxyzéü"
    words = set()
    while len(words) < count:
        words.add("".join(rng.choice(letters) for _ in range(rng.randint(4, 10))))
    words = sorted(words)
    rng.shuffle(words)
    docs = [" ".join(words[k:k + 2000]) for k in range(0, len(words), 2000)]
    path = tmp / "many_words.jsonl"
    write_jsonl(path, docs)
    job = tok.start(["encode", "--model", mpath, "--format", "jsonl", path])
    expected = sp.encode(docs)
    compare_encoded(R, f"encode {count} distinct words", sp, docs, expected, job.wait())
    path.unlink()


# --------------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------------
# CaseOps: the 2026-05-01 record's case transform and val byte sidecar, against the record's own code


CASEOPS_RECORD = "2026-05-01_SP8192_PR2130Base_Calib32"
CASE_OPS = "\ue001\ue002\ue003\ue004"   # TITLE, ALLCAPS, CAPNEXT, ESC
# runs the record's prepare_caseops_data.main() with its SHARD_TOKENS set (argv: folder, shard tokens, its flags)
ORACLE = ("import sys; sys.path.insert(0, sys.argv[1]); import prepare_caseops_data as p; "
          "p.SHARD_TOKENS = int(sys.argv[2]); sys.argv = ['prepare_caseops_data.py'] + sys.argv[3:]; p.main()")
ORACLE_LEAF = Path("datasets") / "fineweb10B_sp8192_lossless_caps_caseops_v1_reserved"


def load_record_module(folder, name):
    import importlib.util
    spec = importlib.util.spec_from_file_location(f"record_{name}", folder / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def corpus_files(data, tmp, quick):
    """{name: path} of the shared text files, cut to QUICK_DOCS documents under --quick."""
    files = {}
    for name in TEXT_FILES:
        if name not in data.texts:
            continue
        if not quick:
            files[name] = data.texts[name]
            continue
        p = tmp / f"quick_{name}"
        files[name] = p if p.exists() else quick_copy(data.texts[name], p)
    return files


def caseops_docs(corpus_sample):
    """Text for the transform: capitalization of every kind, the operators and U+E000 in the text, non-ASCII
    capitals, NFKC-sensitive capitals, whitespace at the edges, corpus documents with operators put in."""
    T, A, C, E = CASE_OPS
    rng = random.Random(26)
    docs = [
        "The NASA Launch", "iPhone McDonald's eBay ABc aBC AbC ABCd abcD", "A I a i Z z", "X", "x", "ALL CAPS HERE",
        "OK", "Ok", "oK", "NaN", "HTTPS://EXAMPLE.COM/Path?Q=Yes&r=NO", "ABC123DEF abc_DEF A1b2C3 x2Y",
        "Don't STOP-Believing O'Neil MacArthur's", "I.B.M. U.S.A. e.g. Ph.D.", "aAaAaA AaAaAa aaaA AAAa",
        T, A, C, E, E + E, T + A + C + E, "Hello" + T + "World", "ab" + C + "cd", "AB" + E + "CD", E + "x", "x" + E,
        "\ue000", "\ue000Word\ue000", "\ue005\ue0ff\uf8ff", T * 5 + "A" + E * 3, "Word" + A, A + "Word", C + C + "A",
        "ÉCOLE École école Σίσυφος ΣΊΣΥΦΟΣ straße STRASSE İstanbul ǅemal ǄEMAL",
        "ＡＢＣ ＡＢＣdef Ａbc ｱﾙﾌｧ ＮＡＳＡ", "ﬁle ﬂow ＦＩＬＥ ﬃ Ⅻ ⅻ ℌello ™ TM ℡", "Å\u030a A\u030a E\u0301 É e\u0301 Ｅ\u0301",
        "  Leading and trailing  ", "\tTabs\tAnd\nNewlines\n", " \u00a0Mixed\u00a0NBSP\u3000Ideographic \u3000",
        "emoji 😀 Caps 🎉 END 👍🏽OK", "日本語 ABC 中文Def", "\x00A\x00b\x1fC\x7fD", "A\u200bB\u200cC\ufeffD",
        "▁The ▁NASA", "<s>Hello</s> <unk>WORLD", "MiXeD " * 200, "A" * 3000, "Ab" * 1500, "aB" * 1500,
        "", " ", "\n",
    ]
    pool = list(CASE_OPS) + ["\ue000", "A", "Z", "a", " ", "É", "Ｗ", "ﬁ", "\u0301", "\t", "1"]
    for d in rng.sample(corpus_sample, min(80, len(corpus_sample))):
        docs.append(mutate(rng, d, pool))
    alphabet = ["a", "b", "A", "B", " ", "-", "é", "É", "1", "\ue000"] + list(CASE_OPS)
    for _ in range(300):
        docs.append("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12))))
    return docs


def caseops_text_run(R, tok, tmp, name, args, want, docs=None):
    """tokenize caseops [args] writes one {"text": ...} line per document: compare with want."""
    run = tok.run(["caseops"] + args)
    if run.rc != 0:
        return R.record(name, False, run.describe()), None
    lines = run.out.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    got = [json.loads(l)["text"] for l in lines]
    bad = [i for i in range(min(len(got), len(want))) if got[i] != want[i]]
    problems = []
    if len(got) != len(want):
        problems.append(f"expected {len(want)} lines, got {len(got)}")
    if bad:
        i = bad[0]
        k = next((j for j in range(min(len(got[i]), len(want[i]))) if got[i][j] != want[i][j]), min(len(got[i]), len(want[i])))
        problems.append(f"{len(bad)} documents differ; first #{i} at character {k}: got {got[i][max(0, k - 20):k + 20]!r}, "
                        f"expected {want[i][max(0, k - 20):k + 20]!r}")
        if docs is not None:
            problems.append(f"  failing documents saved to {REPORT.save(name, [docs[j] for j in bad[:50]])}")
    if problems:
        return R.record(name, False, "\n".join(problems) + f"\n$ {shlex.join(run.cmd)}"), None
    R.record(name, True, f"{len(want)} documents, {sum(len(w) for w in want)} characters, {run.seconds:.2f}s")
    return True, run.out


def check_caseops_transform(R, tok, tmp, lc, files, extra_docs):
    """tokenize caseops against the record's encode_lossless_caps_v2 (caseops_v1), its --decode back to the text."""
    sets = [(name, path, load_jsonl(path)) for name, path in files.items()]
    extra = tmp / "caseops_extra.jsonl"
    write_jsonl(extra, extra_docs)
    sets.append(("adversarial", extra, extra_docs))
    for name, path, docs in sets:
        want = [lc.encode_lossless_caps_v2(d) for d in docs]
        ok, out = caseops_text_run(R, tok, tmp, f"caseops transform {name} (the record's encode_lossless_caps_v2)", [path], want, docs)
        if not ok:
            continue
        enc = tmp / "caseops_encoded.jsonl"
        enc.write_bytes(out)
        caseops_text_run(R, tok, tmp, f"caseops --decode {name}: decode(encode(x)) == x", ["--decode", enc], docs, docs)
    ops = sum(any(c in d for c in CASE_OPS) for d in extra_docs)
    R.record("caseops: the adversarial set holds the operators themselves", ops >= 50, f"{ops} documents")


def check_caseops_decode(R, tok, tmp, lc):
    """--decode on random operator strings: the text the record's decoder gives, or an error where it raises."""
    rng = random.Random(7)
    alphabet = ["a", "B", " ", "é", "1"] + list(CASE_OPS)
    good, good_out, bad = [], [], []
    for _ in range(4000):
        s = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 7)))
        try:
            good_out.append(lc.decode_lossless_caps_v2(s))
            good.append(s)
        except lc.LosslessCapsError:
            bad.append(s)
    path = tmp / "caseops_decodable.jsonl"
    write_jsonl(path, good)
    caseops_text_run(R, tok, tmp, "caseops --decode: random operator strings the record decodes", ["--decode", path], good_out)
    bad = sorted(set(bad), key=lambda s: (len(s), s))[:150]
    wrong = []
    for s in bad:
        p = tmp / "caseops_bad.jsonl"
        write_jsonl(p, ["fine", s])
        run = tok.run(["caseops", "--decode", p])
        if run.rc != 1 or f"{p}:2" not in run.errtext() or "not CaseOps text" not in run.errtext() or run.out:
            wrong.append(f"{s!r}: {run.describe()}")
    R.record(f"caseops --decode refuses what the record's decoder refuses (exit 1, file:line, no output): {len(bad)} strings",
             not wrong, "\n".join(wrong[:5]))


def run_oracle(rec_dir, out, model, docs_path, val_docs, shard_tokens):
    cmd = [sys.executable, "-c", ORACLE, str(rec_dir), str(shard_tokens), "--docs", str(docs_path), "--out", str(out),
           "--sp", str(model), "--val-docs", str(val_docs)]
    return subprocess.run(cmd, capture_output=True, timeout=RUN_TIMEOUT * 2)


def check_caseops_shards(R, tok, tmp, rec_dir, files, models, extra_docs):
    """tokenize shards --caseops against the record's prepare_caseops_data.py on the same model and text: the val and
    train shards and the val byte sidecars byte for byte. Returns {(model, text): folder} of the tokenize runs."""
    from concurrent.futures import ThreadPoolExecutor
    extra = tmp / "caseops_extra.jsonl"
    write_jsonl(extra, extra_docs)
    jobs = []   # (model short name, text name, text path, val docs, shard tokens)
    for short in ("sp8192", "sp1024"):
        if short not in models:
            continue
        for name, path in files.items():
            # sp8192 (the record's vocabulary) on every text but the 30 MB wikipedia.jsonl (make test's time: the
            # transform itself is checked on all of it above)
            if (short == "sp8192" and name != "wikipedia.jsonl") or name in ("fineweb_val_docs.jsonl", "fineweb_docs.jsonl"):
                jobs.append((short, name, path, 10**9, 1_000_000))   # every document in val: sidecars everywhere
        jobs.append((short, "adversarial", extra, 10**9, 1_000_000))
        if "fineweb_docs.jsonl" in files:
            jobs.append((short, "fineweb_docs.jsonl, 120 val docs", files["fineweb_docs.jsonl"], 120, 100_000))
    for short in ("sp4096", "sp1024_nobf"):   # <unk> (no byte fallback): a run of unknown characters is one token
        if short in models:
            jobs += [(short, "adversarial", extra, 10**9, 1_000_000)]
            if "fineweb_docs.jsonl" in files:
                jobs.append((short, "fineweb_docs.jsonl", files["fineweb_docs.jsonl"], 10**9, 1_000_000))
    pool = ThreadPoolExecutor(max_workers=1)   # the record's Python runs beside tokenize
    futures = []
    for k, (short, name, path, val_docs, shard_tokens) in enumerate(jobs):
        out = tmp / f"caseops_oracle_{k}"
        futures.append((out, pool.submit(run_oracle, rec_dir, out, models[short][1], path, val_docs, shard_tokens)))
    folders = {}
    try:
        for (short, name, path, val_docs, shard_tokens), (oracle_out, fut) in zip(jobs, futures):
            label = f"shards --caseops {short} {name} (vs the record's prepare_caseops_data.py)"
            d = tmp / f"caseops_{short}_{len(folders)}"
            run = tok.run(["shards", "--caseops", "--model", models[short][1], "--out", d, "--val-docs", val_docs,
                           "--shard-tokens", shard_tokens, "--empty", "keep", "--quiet", path])
            o = fut.result()
            if o.returncode != 0:
                R.record(label, False, f"the record's script failed: {o.stderr.decode('utf-8', 'replace')[-1500:]}")
                continue
            leaf = oracle_out / ORACLE_LEAF
            expected = {p.name: p.read_bytes() for p in sorted(leaf.iterdir())}
            shutil.rmtree(oracle_out)
            nbytes = sum(1 for f in expected if "_bytes_" in f)
            if compare_shards(R, label + f": {nbytes} sidecar files", d, expected, run) and val_docs > 10**8:
                folders[(short, name)] = d
    finally:
        pool.shutdown(wait=True)
    return folders


def read_shard_stream(folder, prefix):
    """the uint16 values of folder/prefix*.bin in order, after checking each file's header."""
    parts = []
    for p in sorted(Path(folder).glob(f"{prefix}[0-9]*.bin")):
        b = p.read_bytes()
        h = np.frombuffer(b[:1024], dtype="<i4")
        assert h[0] == SHARD_MAGIC and h[1] == 1 and len(b) == 1024 + 2 * int(h[2]), f"{p}: bad header or size"
        parts.append(np.frombuffer(b[1024:], dtype="<u2"))
    return np.concatenate(parts) if parts else np.zeros(0, dtype="<u2")


def check_caseops_bytes(R, tok, tmp, files, models, folders, extra_docs):
    """The sidecar counts the bytes plain val_bpb counts. On the val documents (normalized text): its total is their
    UTF-8 byte count and the plain tables' count (tokenize lut) over the plain shards, document by document. On
    every text: per document, the bytes of the text sentencepiece's plain tokens cover (the document less the
    whitespace the normalizer drops at its ends; raw text may differ from the plain count by its NFKC rewrites)."""
    sp8192 = models.get("sp8192")
    spans = {}
    for (short, name), folder in sorted(folders.items()):
        sp, mpath = models[short]
        docs = extra_docs if name == "adversarial" else load_jsonl(files[name])
        tokens = read_shard_stream(folder, "fineweb_val_").astype(np.int64)
        sidecar = read_shard_stream(folder, "fineweb_val_bytes_").astype(np.int64)
        starts = np.nonzero(tokens == sp.bos_id())[0]
        if len(tokens) != len(sidecar) or len(starts) != len(docs) or (len(sidecar) and sidecar[starts].any()):
            R.record(f"caseops bytes {short} {name}", False, f"{len(tokens)} tokens, {len(sidecar)} sidecar entries, {len(starts)} BOS for {len(docs)} docs")
            continue
        per_doc = np.add.reduceat(sidecar, starts) if len(starts) else np.zeros(0, dtype=np.int64)
        utf8 = np.array([len(d.encode("utf-8")) for d in docs], dtype=np.int64)
        if name not in spans and sp8192:   # the covered span does not depend on the model (one normalizer)
            cover = []
            for d in docs:
                pieces = sp8192[0].encode_as_immutable_proto(d).pieces
                cover.append(len(d[pieces[0].begin:pieces[-1].end].encode("utf-8")) if len(pieces) else 0)
            spans[name] = np.array(cover, dtype=np.int64)
        plain = tmp / f"caseops_plain_{short}_{len(spans)}_{len(docs)}"
        src = tmp / "caseops_extra.jsonl" if name == "adversarial" else files[name]
        run = tok.run(["shards", "--model", mpath, "--out", plain, "--val-docs", 10**9, "--empty", "keep", "--quiet", src])
        if run.rc != 0:
            R.record(f"caseops bytes {short} {name}: plain shards", False, run.describe())
            continue
        lut = np.array(python_lut(sp), dtype=np.int64)
        ptok = read_shard_stream(plain, "fineweb_val_").astype(np.int64)
        shutil.rmtree(plain)
        pbytes = np.concatenate([[0], lut[ptok[1:], 0] + (lut[ptok[1:], 1] & (1 - lut[ptok[:-1], 2]))])
        plain_doc = np.add.reduceat(pbytes, np.nonzero(ptok == sp.bos_id())[0]) if len(ptok) else np.zeros(0, dtype=np.int64)
        info = f"sidecar {int(per_doc.sum())}, UTF-8 {int(utf8.sum())}, plain val_bpb bytes {int(plain_doc.sum())}"
        if name in spans:
            diff = np.nonzero(per_doc != spans[name])[0]
            R.record(f"caseops bytes {short} {name}: each document's sidecar sum == the bytes its plain tokens cover",
                     len(diff) == 0, info + f", covered {int(spans[name].sum())}" +
                     (f"; {len(diff)} documents differ, first #{diff[0]}: {per_doc[diff[0]]} vs {spans[name][diff[0]]}" if len(diff) else ""))
        if name == "fineweb_val_docs.jsonl":
            ok = np.array_equal(per_doc, utf8) and np.array_equal(per_doc, plain_doc)
            R.record(f"caseops bytes {short} {name}: sidecar total == UTF-8 bytes == plain val_bpb bytes, document by document", ok,
                     f"{int(per_doc.sum())} / {int(utf8.sum())} / {int(plain_doc.sum())} bytes over {len(docs)} documents")


def check_caseops_cli(R, tok, tmp, lc, sp, mpath, extra_docs):
    """Flags, help, refusals and --force around the sidecar; encode --caseops ids."""
    src = tmp / "caseops_cli.jsonl"
    write_jsonl(src, ["Hello World", "ABC def"])
    for label, args in [("shards --caseops --byte260", ["shards", "--caseops", "--byte260", "--out", tmp / "x", src]),
                        ("shards --caseops --invalid-utf8 replace", ["shards", "--caseops", "--model", mpath, "--invalid-utf8", "replace", "--out", tmp / "x", src]),
                        ("encode --caseops --invalid-utf8 replace", ["encode", "--caseops", "--model", mpath, "--invalid-utf8", "replace", src]),
                        ("caseops with two files", ["caseops", src, src]), ("caseops --model", ["caseops", "--model", mpath, src]),
                        ("decode --caseops", ["decode", "--caseops", "--model", mpath, src])]:
        expect_error(R, f"caseops cli: {label} -> exit 2", tok.run(args), rc=2)
    for cmd, words in (("shards", [b"--caseops", b"fineweb_val_bytes_NNNNNN.bin"]), ("encode", [b"--caseops"]), ("caseops", [b"--decode", b"U+E004"])):
        run = tok.run([cmd, "--help"])
        R.record(f"caseops cli: {cmd} --help documents " + ", ".join(w.decode() for w in words), run.rc == 0 and all(w in run.out for w in words))
    run = tok.run(["help"])
    R.record("caseops cli: help lists the caseops command", run.rc == 0 and b"tokenize caseops" in run.out)
    badutf = tmp / "caseops_bad_utf8.txt"
    badutf.write_bytes(b"fine\nA\xffB\n")
    expect_error(R, "caseops: invalid UTF-8 -> exit 1 naming file and line", tok.run(["caseops", badutf]), mention=[str(badutf)], line=2)
    # a folder holding only a sidecar is not overwritten; a plain --force run names a sidecar it did not write
    d = tmp / "caseops_sidecar_only"
    d.mkdir()
    (d / "fineweb_val_bytes_000000.bin").write_bytes(b"x")
    expect_error(R, "shards refuses a folder holding a byte sidecar (no --force)",
                 tok.run(["shards", "--model", mpath, "--out", d, "--val-docs", 1, src]), mention=["fineweb_val_bytes_000000.bin"])
    run = tok.run(["shards", "--model", mpath, "--out", d, "--val-docs", 1, "--force", src])
    ok = run.rc == 0 and b"fineweb_val_bytes_000000.bin" in run.err and (d / "fineweb_val_bytes_000000.bin").read_bytes() == b"x"
    R.record("shards --force without --caseops warns of the older byte sidecar (and keeps it)", ok, "" if ok else run.describe())
    run = tok.run(["shards", "--caseops", "--model", mpath, "--out", d, "--val-docs", 1, "--force", src])
    ok = run.rc == 0 and (d / "fineweb_val_bytes_000000.bin").stat().st_size == 1024 + 2 * len(read_shard_stream(d, "fineweb_val_"))
    R.record("shards --caseops --force replaces it", ok, "" if ok else run.describe())
    # the interrupted or failed run leaves no sidecar under its final name
    bad = tmp / "caseops_bad_later.jsonl"
    with open(bad, "wb") as f:
        f.write(b'{"text": "Fine Doc"}\n{"text": "Another"}\n{"text": \n')
    d2 = tmp / "caseops_failed"
    no_final_shards(R, "shards --caseops failing on line 3 leaves no shard or sidecar", d2,
                    tok.run(["shards", "--caseops", "--model", mpath, "--out", d2, "--val-docs", 1, bad]), mention=[str(bad)], line=3)
    left = [p.name for p in d2.iterdir() if "bytes" in p.name] if d2.is_dir() else []
    R.record("shards --caseops failing leaves no sidecar", not left, str(left))
    docs = [d for d in extra_docs if d]
    path = tmp / "caseops_encode.jsonl"
    write_jsonl(path, docs)
    expected = sp.encode([lc.encode_lossless_caps_v2(d) for d in docs])
    compare_encoded(R, "encode --caseops == sentencepiece on the record's transform (adversarial set)", sp, docs, expected,
                    tok.run(["encode", "--caseops", "--model", mpath, path]))


def check_caseops(R, tok, tmp, data, quick, models, corpus_sample):
    if data.caseops is None:
        R.skip("caseops", f"the record folder records/{CASEOPS_RECORD} was not found beside the shared data")
        return
    lc = load_record_module(data.caseops, "lossless_caps")
    files = corpus_files(data, tmp, quick)
    extra_docs = caseops_docs(corpus_sample)
    check_caseops_transform(R, tok, tmp, lc, files, extra_docs)
    check_caseops_decode(R, tok, tmp, lc)
    if not models:
        R.skip("caseops shards", "no shared model found")
        return
    main_model = models.get("sp8192") or next(iter(models.values()))
    check_caseops_cli(R, tok, tmp, lc, main_model[0], main_model[1], extra_docs)
    folders = check_caseops_shards(R, tok, tmp, data.caseops, files, models, extra_docs)
    check_caseops_bytes(R, tok, tmp, files, models, folders, extra_docs)


def main():
    ap = argparse.ArgumentParser(description="tokenize conformance tests against sentencepiece")
    ap.add_argument("--tokenize", default=str(ROOT / "tokenize"), help="the binary (default: ./tokenize)")
    ap.add_argument("--shared", default=None, help="folder with tokenizers/ and text/ (default ../shared, then data/)")
    ap.add_argument("--quick", action="store_true", help=f"first {QUICK_DOCS} documents per text file, 2 MB long document")
    args = ap.parse_args()
    t_start = time.time()
    R = Results()
    binary = Path(args.tokenize)
    if not binary.is_file() or not os.access(binary, os.X_OK):
        R.record("tokenize binary", False, f"{binary} is not an executable file (build it with 'make tokenize')")
        print(f"{R.passed} passed, {R.failed} failed")
        return 1
    binary = binary.resolve()
    data = locate_data(args.shared)
    for note in data.notes:
        print(f"data: {note}")
    for short, f in SHARED_MODELS.items():
        if short not in data.models:
            R.skip(f"shared model {f}", "not found: checks that use it are skipped")
    for f in TEXT_FILES:
        if f not in data.texts:
            R.skip(f"shared text {f}", "not found: corpus checks on it are skipped")
    if data.sample is None:
        print("data: official sample shards not found (sample_sp1024)")

    tmp = Path(tempfile.mkdtemp(prefix="test_tokenize_"))
    global REPORT
    REPORT = Reporter(tmp)
    tok = Tokenize(binary, tmp)
    worker = None
    try:
        models = {k: (spm.SentencePieceProcessor(model_file=str(p)), p) for k, p in data.models.items()}
        corpus_sample = []
        for name in TEXT_FILES:
            if name in data.texts:
                corpus_sample += load_jsonl(data.texts[name], limit=150)
        rng = random.Random(1)
        decode_corpus = rng.sample(corpus_sample, min(500, len(corpus_sample)))
        adv, n_hand = adversarial_docs(corpus_sample)
        bad_lines = invalid_utf8_lines()
        print(f"adversarial set: {len(adv)} documents; invalid UTF-8 set: {len(bad_lines)} lines")

        # the reference ids of the long document take a while: computed in another process meanwhile
        long_size = 2_000_000 if args.quick else 20_000_000
        long_model = models.get("sp1024")
        if long_model:
            long_path = tmp / "long_document.txt"
            long_ids = tmp / "long_document_ids.npy"
            long_decoded = tmp / "long_document_decoded.txt"
            make_long_document(long_path, corpus_sample, adv, long_size)
            worker = multiprocessing.get_context("fork").Process(
                target=long_document_worker, args=(long_model[1], long_path, long_ids, long_decoded))
            worker.start()
        else:
            R.skip("long document", "fineweb_1024_bpe.model not found")

        # training the extra models first: the unigram/char/word ones are needed by the shard checks
        lines = training_lines(data, adv[:n_hand])
        trained = {}
        for name, kw in TRAINED:
            try:
                b = train_model(lines, **kw)
            except Exception as e:
                R.record(f"train model {name}", False, f"sentencepiece training failed: {e}")
                continue
            p = tmp / f"trained_{name}.model"
            p.write_bytes(b)
            trained[name] = (spm.SentencePieceProcessor(model_file=str(p)), p)
        for kind in ("unigram", "char", "word"):
            try:
                (tmp / f"{kind}.model").write_bytes(train_model(lines, model_type=kind, vocab_size=800))
            except Exception as e:
                R.skip(f"non-BPE model {kind}", f"training failed: {e}")
        print(f"trained {len(trained)} BPE models on {len(lines)} lines")
        # sentencepiece splits merged pieces marked unused back into the pair they were made from
        base = models.get("sp1024") or trained.get("dummy_prefix")
        if base:
            bsp = base[0]
            names = ["\u2581the", "in", "er", "\u2581a", "on", "\u2581th", "ing", "\u2581and", "ed", "ou", "an", "at",
                     "\u2581s", "\u2581of", "x", "\u2581", "es", "\u2581to", "or"]
            ids = {bsp.piece_to_id(n) for n in names} - {bsp.unk_id()}
            p = tmp / "unused_pieces.model"
            p.write_bytes(mark_unused(Path(base[1]).read_bytes(), ids))
            trained["unused_pieces"] = (spm.SentencePieceProcessor(model_file=str(p)), p)

        any_model = next(iter(models.values()), None) or next(iter(trained.values()))
        check_cli(R, tok, any_model[1])
        for short, (sp, p) in list(models.items()) + [(f"model {k}", v) for k, v in trained.items()]:
            run = tok.run(["info", "--model", p])
            ok = run.rc == 0 and str(sp.get_piece_size()) in run.out.decode("utf-8", "replace")
            R.record(f"info {short} (exit 0, mentions {sp.get_piece_size()})", ok, "" if ok else run.describe())

        # check 6: lut
        for short, (sp, p) in list(models.items()) + [(f"model {k}", v) for k, v in trained.items()]:
            check_lut(R, f"lut {short}", tok, ["--model", p], python_lut(sp))
        if "sp1024" in models:
            sp, p = models["sp1024"]
            check_lut(R, "lut sp1024 --vocab-size 1100 (padding)", tok, ["--model", p, "--vocab-size", 1100], python_lut(sp, 1100))
            check_lut(R, "lut sp1024 --vocab-size 512 (smaller than the vocab)", tok, ["--model", p, "--vocab-size", 512], python_lut(sp))
        byte_rows = [(0, 0, 1)] * 4 + [(1, 0, 0)] * 256
        check_lut(R, "lut --byte260", tok, ["--byte260"], byte_rows)
        check_lut(R, "lut --byte260 --vocab-size 300", tok, ["--byte260", "--vocab-size", 300], byte_rows + [(0, 0, 1)] * 40)

        # check 1: the corpus
        check_corpus(R, tok, data, tmp, args.quick, models)

        # check 2: adversarial text and invalid UTF-8 (shared models)
        for short, (sp, p) in models.items():
            check_encode_set(R, tok, tmp, f"adversarial {short}", sp, p, adv)
            check_invalid_utf8(R, tok, tmp, short, sp, p, bad_lines)
        q = tmp / "bad_lines.txt"
        q.write_bytes(b"".join(l + b"\n" for l in bad_lines))
        if any_model:
            expect_error(R, "invalid UTF-8 without --invalid-utf8 replace -> exit 1 naming the file",
                         tok.run(["encode", "--model", any_model[1], "--format", "lines", q]), mention=[q.name])
        fmt_model = models.get("sp1024") or any_model
        check_formats(R, tok, tmp, fmt_model[0], fmt_model[1], adv, corpus_sample)

        # check 4: decode (shared models)
        drng = random.Random(11)
        for short, (sp, p) in models.items():
            ids = sp.encode(adv) + sp.encode(decode_corpus) + handmade_id_lists(sp, drng)
            check_decode(R, tok, tmp, short, sp, p, ids)
            check_decode_rejects(R, tok, tmp, short, p, sp.get_piece_size())

        # check 3: trained models
        trained_corpus = corpus_sample[::3][:300]
        for name, (sp, p) in trained.items():
            check_encode_set(R, tok, tmp, f"model {name}: corpus + adversarial", sp, p, trained_corpus + adv)
            check_invalid_utf8(R, tok, tmp, f"model {name}", sp, p, bad_lines)
            ids = sp.encode(adv) + sp.encode(trained_corpus) + handmade_id_lists(sp, drng)
            check_decode(R, tok, tmp, f"model {name}", sp, p, ids, plain=False)

        check_many_words(R, tok, tmp, fmt_model[0], fmt_model[1], 100_000 if args.quick else 800_000)

        # check 5: shards
        shard_model = models.get("sp1024") or any_model
        check_shards(R, tok, tmp, data, args.quick, shard_model[0], shard_model[1],
                     "sp1024" if "sp1024" in models else "trained", adv, trained)
        if worker is not None:
            check_long_document(R, tok, tmp, long_model[0], long_model[1], worker, long_path, long_ids, long_decoded, long_size)
            worker = None

        # check 7: CaseOps
        check_caseops(R, tok, tmp, data, args.quick, models, corpus_sample)
    finally:
        if worker is not None:
            worker.terminate()
            worker.join()
        if R.failed:
            print(f"temporary files kept in {tmp} (failing inputs under {REPORT.dir})")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"runtime {time.time() - t_start:.1f}s")
    if R.failed:
        print("failed: " + "; ".join(R.failed_names[:20]) + (" ..." if len(R.failed_names) > 20 else ""))
    print(f"{R.passed} passed, {R.failed} failed, {R.skipped} skipped")
    return 1 if R.failed else 0


if __name__ == "__main__":
    sys.exit(main())
