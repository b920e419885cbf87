#!/usr/bin/env python3
"""Draw the delegation benchmark's PNG from the JSON that deleg.py writes.

    python bench/calls/plot_deleg.py results/deleg.json results/deleg.png

One bar per topology: FRONT's CPU milliseconds per call (median of the
passing fixed-rate runs of every round, each run a dot), with the members' (P2, P3) CPU
stacked above in a lighter shade; a dashed line at stateless1's FRONT
figure, the issue's target for a delegation hop.
"""

from __future__ import annotations

import json
import statistics
import sys


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        sys.exit(__doc__)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(argv[0]) as f:
        data = json.load(f)
    names, front, members, dots = [], [], [], []
    by_topo: dict[str, list[dict]] = {}
    for res in data["results"]:      # every round of a topology together
        by_topo.setdefault(res["topo"], []).extend(
            r for r in res["runs"] if r["phase"] == "fixed" and r["passed"])
    for topo, runs in by_topo.items():
        if not runs:
            continue
        names.append(topo)
        front.append(statistics.median(r["cpu_ms_per_call"] for r in runs))
        members.append(statistics.median(
            sum(v for v in r["member_cpu_ms_per_call"].values() if v is not None)
            for r in runs))
        dots.append([r["cpu_ms_per_call"] for r in runs])
    fig, ax = plt.subplots(figsize=(7.5, 4))
    x = range(len(names))
    ax.bar(x, front, color="#1f77b4", label="FRONT")
    ax.bar(x, members, bottom=front, color="#aec7e8", label="P2 (+ P3)")
    for i, ds in enumerate(dots):
        ax.plot([i] * len(ds), ds, "k.", markersize=4)
        ax.text(i, front[i] / 2, f"{front[i]:.3f}", ha="center", color="white", fontsize=9)
    if "stateless1" in names:
        ax.axhline(front[names.index("stateless1")], color="k", linestyle="--", linewidth=0.8,
                   label="stateless1 FRONT (target)")
    ax.set_xticks(list(x), names)
    ax.set_ylabel("CPU ms per call")
    rate = data.get("meta", {}).get("rate")
    ax.set_title(f"Delegation: CPU per call at {rate} calls/s" if rate else "Delegation")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(argv[1], dpi=110)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
