#!/usr/bin/python3
"""dev/plot.py — loss curves of training runs: train loss and val_bpb against step and against wallclock training time,
several runs overlaid, saved as a PNG.

  /usr/bin/python3 dev/plot.py [-o OUT.png] [--label NAME ...] [--title TEXT] LOG [LOG ...]

Each LOG is a train_golf, test/reference.py or train_gpt.py log (their `step:N/M train_loss:x train_time:Tms ...` and
`step:N/M val_loss:x val_bpb:y train_time:Tms ...` lines, read by dev/golf_log.py); wallclock is train_time in seconds
(validation excluded, as in the logs). The legend shows each file's name, or the --label given for it (one per LOG).
A log that cannot be read, has malformed step lines or none at all is an error naming it; nothing is written then.
Needs matplotlib (Debian: python3-matplotlib).
"""

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import golf_log  # noqa: E402


def plot(logs, labels, out, title=None):
    """Draw the 2 x 2 panels of the parsed logs and save them to out (written to out.tmp, then renamed)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(2, 2, figsize=(12, 8), constrained_layout=True)
    for log, label in zip(logs, labels):
        color = None
        if log.train:
            (line,) = ax[0][0].plot([s for s, _, _ in log.train], [l for _, l, _ in log.train], label=label, lw=1)
            color = line.get_color()
            timed = [(t / 1000.0, l) for _, l, t in log.train if t is not None]
            if timed:
                ax[0][1].plot(*zip(*timed), color=color, label=label, lw=1)
        if log.val:
            kw = {"color": color} if color else {}
            (line,) = ax[1][0].plot([s for s, _, _, _ in log.val], [b for _, _, b, _ in log.val], marker="o", ms=3, label=label, **kw)
            timed = [(t / 1000.0, b) for _, _, b, t in log.val if t is not None]
            if timed:
                ax[1][1].plot(*zip(*timed), marker="o", ms=3, color=line.get_color(), label=label)
    names = [("train loss (nats)", "step"), ("train loss (nats)", "wallclock training time (s)"),
             ("val_bpb", "step"), ("val_bpb", "wallclock training time (s)")]
    for a, (y, x) in zip([ax[0][0], ax[0][1], ax[1][0], ax[1][1]], names):
        a.set_xlabel(x)
        a.set_ylabel(y)
        a.grid(alpha=0.3)
        if a.lines:
            a.legend(fontsize=8)
        else:
            a.text(0.5, 0.5, f"no {y.split(' (')[0]} lines" + (" with train_time" if "wallclock" in x else ""),
                   ha="center", va="center", transform=a.transAxes, color="gray")
    if title:
        fig.suptitle(title)
    tmp = f"{out}.tmp.png"
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, out)


def main(argv=None):
    ap = argparse.ArgumentParser(description="train loss and val_bpb against step and wallclock, several runs overlaid, as a PNG")
    ap.add_argument("logs", nargs="+", metavar="LOG", help="train logs (train_golf, test/reference.py, train_gpt.py)")
    ap.add_argument("-o", "--out", default="loss.png", help="PNG to write (default loss.png)")
    ap.add_argument("--label", action="append", help="legend name of a LOG, once per LOG in order (default: file names)")
    ap.add_argument("--title", help="figure title")
    args = ap.parse_args(argv)
    if args.label and len(args.label) != len(args.logs):
        ap.error(f"{len(args.label)} --label for {len(args.logs)} logs: give one per log, or none")
    if not args.out.lower().endswith(".png"):
        ap.error(f"--out '{args.out}': the output is a PNG, name it *.png")
    if not Path(args.out).parent.is_dir():
        ap.error(f"--out '{args.out}': folder {Path(args.out).parent} does not exist")
    try:
        logs = [golf_log.read_curves(p) for p in args.logs]
    except golf_log.LogError as e:
        print(f"plot: error: {e}", file=sys.stderr)
        return 1
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("plot: error: matplotlib is missing (Debian: apt-get install python3-matplotlib)", file=sys.stderr)
        return 1
    plot(logs, args.label or [Path(p).name for p in args.logs], args.out, args.title)
    print(f"plot: wrote {args.out} ({len(logs)} run{'s' if len(logs) > 1 else ''})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
