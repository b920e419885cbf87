#!/usr/bin/env python3
"""Draw the call-rate benchmark's PNG from the JSON that run.py writes.

    python bench/calls/plot.py results.json calls.png

Two panels, one line per proxy/setup: the proxy's CPU milliseconds per call
against the call rate, and the mean call set-up time (INVITE sent to 200
received, at the caller; SIPp times each call with a 1 ms clock, so the
median is mostly 0 or 1 ms while the mean of many calls resolves finer)
against the call rate.  Each point is the mean of
the passing runs at that rate; runs that failed (any failed call) are drawn
as crosses; the confirmed maximum is a star.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict

RT_FLOOR_MS = 0.01


def _import_pyplot():
    try:
        import matplotlib
    except ImportError:
        sys.exit(
            "bench/calls: matplotlib is not installed in this Python "
            f"({sys.executable}); install it with "
            "`.venv/bin/pip install matplotlib` (see bench/calls/README.md)"
        )
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def check_matplotlib() -> None:
    """Exit with a clear message now if matplotlib cannot be imported."""
    _import_pyplot()


def _series(runs, key):
    ok = defaultdict(list)
    bad = []
    for r in runs:
        v = r.get(key)
        if r.get("phase") == "warmup" or v is None:
            continue
        if r["passed"]:
            ok[r["rate"]].append(v)
        else:
            bad.append((r["rate"], v))
    xs = sorted(ok)
    ys = [sum(ok[x]) / len(ok[x]) for x in xs]
    return xs, ys, bad


def plot(data: dict, png_path: str) -> None:
    plt = _import_pyplot()
    fig, (ax_cpu, ax_rt) = plt.subplots(1, 2, figsize=(13, 5.2), dpi=110)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, res in enumerate(data["results"]):
        colour = colours[i % len(colours)]
        label = res["label"]
        mx = (res.get("max") or {}).get("rate")
        for ax, key in ((ax_cpu, "cpu_ms_per_call"), (ax_rt, "rt_mean_ms")):
            xs, ys, bad = _series(res["runs"], key)
            if key == "rt_mean_ms":   # log axis: SIPp's 1 ms clock can give 0
                ys = [max(y, RT_FLOOR_MS) for y in ys]
                bad = [(x, max(y, RT_FLOOR_MS)) for x, y in bad]
            if not xs and not bad:
                continue
            ax.plot(xs, ys, "o-", color=colour, label=label, markersize=4)
            if bad:
                ax.plot([b[0] for b in bad], [b[1] for b in bad], "x",
                        color=colour, markersize=7, alpha=0.8)
            if mx in xs:
                ax.plot([mx], [ys[xs.index(mx)]], "*", color=colour,
                        markersize=14, markeredgecolor="black")
    ax_cpu.set_title("Proxy CPU per call (utime+stime, all its processes)")
    ax_cpu.set_xlabel("call rate (calls/s)")
    ax_cpu.set_ylabel("CPU ms per call")
    ax_cpu.set_ylim(bottom=0)
    ax_rt.set_title("Mean call set-up time (INVITE -> 200, at the caller)")
    ax_rt.set_xlabel("call rate (calls/s)")
    ax_rt.set_ylabel("mean response time (ms, SIPp 1 ms clock, log)")
    ax_rt.set_yscale("log")
    for ax in (ax_cpu, ax_rt):
        ax.set_xlim(left=0)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=9)
    fig.text(0.5, 0.005,
             "lines: mean of passing runs (0 failed calls); x: failed run; "
             "*: max rate that passed 3 times in a row. "
             f"{data.get('meta', {}).get('machine', '')}",
             ha="center", fontsize=8, color="dimgray")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(png_path)
    plt.close(fig)


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    with open(argv[1]) as f:
        data = json.load(f)
    plot(data, argv[2])
    print(f"wrote {argv[2]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
