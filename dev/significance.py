#!/usr/bin/env python3
"""dev/significance.py — is a new result significantly better than a baseline? (the challenge's acceptance rule)

  python3 dev/significance.py --baseline B LOG [LOG ...]     (or --values X Y Z instead of logs)

Each LOG is a train_golf or train_gpt.py log; its last `final_..._roundtrip_exact val_loss:X` line (else the last
`final_..._roundtrip val_loss:X`) is one seed's result. With n seeds of mean m and sample standard deviation s,
the improvement over the baseline loss B must be at least DELTA = 0.005 nats:
  H0: m >= B - DELTA,  t = (B - DELTA - m) / (s / sqrt(n)),  p = P(T_{n-1} >= t)   (one-sided Student t)
Prints a table (n, mean, standard error, improvement, t, p) and exits 0; non-finite numbers, fewer than two
seeds or seeds that all agree (no spread: the test is undefined) are refused. Needs only the Python standard library.
"""

import argparse
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import golf_log  # noqa: E402  (the log reader shared with dev/plot.py and dev/submit.sh)

DELTA = 0.005


def betainc(a, b, x):
    """The regularized incomplete beta function I_x(a, b) (continued fraction, modified Lentz)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    if x > (a + 1) / (a + b + 2):   # the fraction converges fast on this side only
        return 1.0 - betainc(b, a, 1.0 - x)
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)) / a
    tiny, f, c, d = 1e-300, 1.0, 1.0, 0.0
    for i in range(400):
        m = i // 2
        if i == 0:
            num = 1.0
        elif i % 2 == 0:
            num = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
        else:
            num = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
        d = 1.0 + num * d
        d = tiny if abs(d) < tiny else d
        d = 1.0 / d
        c = 1.0 + num / c
        c = tiny if abs(c) < tiny else c
        f *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return front * (f - 1.0)


def t_sf(t, nu):
    """P(T >= t) for Student's t with nu degrees of freedom."""
    tail = 0.5 * betainc(nu / 2.0, 0.5, nu / (nu + t * t))
    return tail if t >= 0 else 1.0 - tail


def final_loss(path):
    """The final roundtrip val_loss of one log (its exact line when there is one)."""
    try:
        return golf_log.read_log(path).final_result()[0]
    except golf_log.LogError as e:
        raise SystemExit(f"significance: {e}") from None


def analyse(values, baseline, delta=DELTA):
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else float("nan")
    se = sd / math.sqrt(n) if n > 1 else float("nan")
    t = (baseline - delta - mean) / se if n > 1 and se > 0 else float("nan")
    p = t_sf(t, n - 1) if t == t else float("nan")
    return {"n": n, "mean": mean, "sd": sd, "se": se, "improvement": baseline - mean, "t": t, "p": p}


def main(argv=None):
    ap = argparse.ArgumentParser(description="one-sided test that runs beat a baseline val_loss by >= 0.005 nats")
    ap.add_argument("--baseline", type=float, required=True, help="the baseline's val_loss (nats)")
    ap.add_argument("--delta", type=float, default=DELTA, help="required improvement in nats (default 0.005)")
    ap.add_argument("--values", type=float, nargs="+", help="final val_loss values instead of logs")
    ap.add_argument("logs", nargs="*", help="train logs, one per seed")
    args = ap.parse_args(argv)
    values = list(args.values or []) + [final_loss(p) for p in args.logs]
    if len(values) < 2:
        ap.error("need at least two seeds (logs or --values)")
    bad = [f"{name} {v}" for name, v in [("--baseline", args.baseline), ("--delta", args.delta)] + [("value", v) for v in values]
           if not math.isfinite(v)]
    if bad:
        ap.error(f"not a finite number: {', '.join(bad)}")
    if args.delta < 0:
        ap.error(f"--delta {args.delta}: the required improvement cannot be negative")
    if len(set(values)) == 1:
        raise SystemExit(f"significance: all {len(values)} values are {values[0]}: with no spread between seeds the test is "
                         "undefined (the same seed twice?)")
    r = analyse(values, args.baseline, args.delta)
    print("| seeds | mean val_loss | std error | improvement | t | p (one-sided) |")
    print("|---|---|---|---|---|---|")
    print(f"| {r['n']} | {r['mean']:.6f} | {r['se']:.6f} | {r['improvement']:.6f} | {r['t']:.3f} | {r['p']:.3g} |")
    print(f"H0: improvement < {args.delta} nats; " + ("rejected at p < 0.01" if r["p"] < 0.01 else "not rejected at p < 0.01"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
