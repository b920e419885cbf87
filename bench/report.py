"""Turn a pytest-benchmark JSON file into a markdown table.

    python bench/report.py /tmp/b.json [> table.md]

One row per benchmark: group, implementation, mean and median time per
message, messages/s from each, how many times slower than sipfast in the
same group (by mean) and, for sipfast in a group with a target, whether the
target was met.  Times are per *message*: a benchmark that handles several
messages per call (the mixed corpus) records ``messages_per_call`` in its
``extra_info``.
"""

from __future__ import annotations

import json
import os
import sys
from collections import defaultdict


def _fmt_rate(x: float) -> str:
    return f"{x:,.0f}"


def _fmt_us(seconds: float) -> str:
    return f"{seconds * 1e6:.3f}" if seconds < 1e-5 else f"{seconds * 1e6:.1f}"


def _impl(bench: dict) -> str:
    return bench.get("extra_info", {}).get("impl") or bench["param"] or bench["name"]


def rows(data: dict) -> list[dict]:
    groups: dict[str, list[dict]] = defaultdict(list)
    for b in data["benchmarks"]:
        groups[b["group"] or ""].append(b)
    out = []
    # "a", "a'", "b", "c": order by the label before the colon.
    for group in sorted(groups, key=lambda g: (g.split(":")[0], g)):
        benches = groups[group]
        per_msg = {}
        for b in benches:
            n = b.get("extra_info", {}).get("messages_per_call", 1) or 1
            per_msg[b["fullname"]] = (b["stats"]["mean"] / n, b["stats"]["median"] / n)
        ref = next((b for b in benches if _impl(b).startswith("sipfast")), None)
        ref_mean = per_msg[ref["fullname"]][0] if ref else None
        # sipfast first (in run order, the first one is the reference),
        # then the peers fastest first.
        benches.sort(
            key=lambda b: (
                not _impl(b).startswith("sipfast"),
                0 if _impl(b).startswith("sipfast") else per_msg[b["fullname"]][0],
            )
        )
        for b in benches:
            mean, median = per_msg[b["fullname"]]
            extra = b.get("extra_info", {})
            target = extra.get("target_msgs_per_s")
            if target:
                ok_mean, ok_median = 1 / mean >= target, 1 / median >= target
                verdict = "yes" if ok_mean and ok_median else "no"
                target_txt = f"{verdict} (≥ {_fmt_rate(target)}/s; {100 / mean / target:.0f} %)"
            else:
                target_txt = ""
            out.append(
                {
                    "group": group,
                    "impl": _impl(b),
                    "mean": mean,
                    "median": median,
                    "rate_mean": 1 / mean,
                    "rate_median": 1 / median,
                    "ratio": mean / ref_mean if ref_mean else None,
                    "rounds": b["stats"]["rounds"],
                    "target": target_txt,
                    "note": extra.get("note", ""),
                }
            )
    return out


def markdown(data: dict) -> str:
    lines = [
        "| group | implementation | mean µs/msg | median µs/msg | msgs/s (mean) "
        "| msgs/s (median) | × slower than sipfast | sipfast target met | rounds | notes |",
        "|---|---|---:|---:|---:|---:|---:|---|---:|---|",
    ]
    for r in rows(data):
        ratio = f"{r['ratio']:.1f}" if r["ratio"] is not None else "n/a"
        if r["impl"].startswith("sipfast"):
            ratio = f"{r['ratio']:.2f}" if r["ratio"] is not None else "1.00"
        lines.append(
            f"| {r['group']} | {r['impl']} | {_fmt_us(r['mean'])} | {_fmt_us(r['median'])} "
            f"| {_fmt_rate(r['rate_mean'])} | {_fmt_rate(r['rate_median'])} | {ratio} "
            f"| {r['target']} | {r['rounds']} | {r['note']} |"
        )
    mi = data.get("machine_info", {})
    cpu = mi.get("cpu", {})
    lines += [
        "",
        f"Machine: {cpu.get('brand_raw', '?')}, {cpu.get('count', '?')} logical CPUs, "
        f"Python {mi.get('python_version', '?')} ({mi.get('python_implementation', '?')}), "
        f"run {data.get('datetime', '?')}, pytest-benchmark {data.get('version', '?')}.",
    ]
    shas = {b.get("extra_info", {}).get("sipfast_core_sha256") for b in data["benchmarks"]}
    shas.discard(None)
    if shas:
        lines.append(f"sipfast build (sha256 of _core .so): {', '.join(sorted(shas))}.")
    loads = [b.get("extra_info", {}).get("loadavg_1m") for b in data["benchmarks"]]
    loads = [x for x in loads if x is not None]
    ncpu = cpu.get("count") or os.cpu_count() or 1
    if loads:
        worst = max(loads)
        lines.append(
            f"1-minute load average during the run: up to {worst:.2f} on {ncpu} CPUs"
            + (
                " -- WARNING: other work was running, timings are pessimistic."
                if worst > 0.5 * ncpu + 0.5
                else "."
            )
        )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    with open(argv[1], encoding="utf-8") as f:
        data = json.load(f)
    print(markdown(data))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
