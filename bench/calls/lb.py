#!/usr/bin/env python3
"""Balancer benchmark: SIPp caller -> balancer over a pool of N members -> SIPp callee.

Reuses run.py's machinery (process start/stop by PID, SIPp caller runs,
CPU from /proc of the process tree, pass/fail criteria); only the topology
differs:

* ``sipfast-redirect``: ``sipfast lb --mode redirect --workers 1`` over N
  ``sipfast proxy --route sip:CALLEE --record-route --workers 1`` members;
  the caller (``sipfast/ops/scenarios/uac_redirect.xml``) follows the 302
  to the winner and completes the call through it;
* ``sipfast-proxy``: the same with ``--mode proxy``; the call is relayed
  through the balancer to the winner, which record-routes; the caller
  (``scenarios/uac_route.xml``) sends ACK and BYE to the first Route (the
  winner), so the dialog bypasses the balancer as it does with a real UA;
* ``kamailio``: Kamailio tm parallel forking (``kamailio/lb_fork.cfg``):
  every INVITE marked as a probe and t_relay()ed to all N members (the same
  sipfast proxies) at once; tm relays the best final answer (a member's
  302) and ACKs the others; same caller as ``sipfast-redirect``;
* ``kamailio-proxy``: the like-for-like of ``sipfast-proxy``
  (``kamailio/lb_fork_proxy.cfg``): the same probe fan-out (the probe
  header added per branch), then failure_route relays the caller's INVITE
  to the member the best 302 names; same caller as ``sipfast-proxy``.

The table pairs each sipfast mode with its Kamailio equivalent:
sipfast-redirect / kamailio and sipfast-proxy / kamailio-proxy.

Only the balancer's CPU (utime+stime of its process tree) is the figure;
the members' CPU is recorded beside it.  Members listen on
``--member-port`` .. + N-1 (default 5081..), the callee on 5071.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import run  # noqa: E402

REDIRECT_UAC = HERE.parent.parent / "sipfast" / "ops" / "scenarios" / "uac_redirect.xml"
ROUTE_UAC = HERE / "scenarios" / "uac_route.xml"
IMPLS = ("kamailio", "sipfast-redirect", "kamailio-proxy", "sipfast-proxy")
# (sipfast impl, its Kamailio equivalent): the ratios of the table
PAIRS = (("sipfast-redirect", "kamailio"), ("sipfast-proxy", "kamailio-proxy"))
KAMAILIO_CFGS = {"kamailio": "lb_fork.cfg", "kamailio-proxy": "lb_fork_proxy.cfg"}


class MemberBench(run.Bench):
    """run.Bench plus back-end processes ("members") started before the
    proxy under test and stopped after it; only the proxy's process tree is
    the measured CPU, the members' CPU is recorded beside it per run.
    Subclasses fill ``self.member_cmds`` with (name, command, UDP port)."""

    def __init__(self, args, proxy: str, setup: str):
        super().__init__(args, proxy, setup, None)
        self.member_cmds: list[tuple[str, list[str], int]] = []
        self.members: list[run.Proc] = []
        self.sipfast = run.resolve_program(args.sipfast)

    def start(self) -> None:
        busy = [p for _, _, p in self.member_cmds if run.udp_port_bound(p)]
        if busy:
            raise run.BenchError(f"member UDP port(s) {busy} already in use")
        for name, cmd, port in self.member_cmds:
            proc = run.Proc(name, cmd, self.workdir)
            self.members.append(proc)
            run.wait_bound(proc, port, name, timeout=15)
        super().start()

    def stop(self) -> None:
        super().stop()
        for err in run.stop_all(self.members):
            run.log(f"warning: {err}")

    def run_rate(self, rate: int, duration: float, phase: str) -> dict:
        ticks0 = [run.tree_cpu_ticks([m.pid])[0] for m in self.members]
        r = super().run_rate(rate, duration, phase)
        ticks1 = [run.tree_cpu_ticks([m.pid])[0] for m in self.members]
        dead = [m.name for m in self.members if not m.alive()]
        if dead:
            raise run.BenchError(f"member(s) {dead} exited during the run")
        ok = r["successful"]
        per = [round((b - a) * 1000.0 / run.CLK_TCK / ok, 4) if ok else None
               for a, b in zip(ticks0, ticks1, strict=True)]
        r["member_cpu_ms_per_call"] = dict(
            zip((m.name for m in self.members), per, strict=True))
        r["members_cpu_ms_per_call"] = (round(sum(per), 4)
                                        if ok and per else None)
        return r


def measure(b: run.Bench, label: str, rate: int, duration: float, repeats: int
            ) -> tuple[dict, bool]:
    """Start b, warm it up, run `repeats` fixed-rate runs, stop it; its
    result and whether every step went through (lb.py and deleg.py)."""
    run.log(f"=== {label}: work dir {b.workdir}")
    ok = True
    try:
        b.start()
        b.warmup()
        for _ in range(repeats):
            b.run_rate(rate, duration, "fixed")
    except run.BenchError as e:
        run.log(f"ERROR ({label}): {e}")
        ok = False
    finally:
        b.stop()
    return b.result(None), ok


class LbBench(MemberBench):
    def __init__(self, args, impl: str, n: int):
        super().__init__(args, impl, "stateless")   # one callee
        self.impl, self.n = impl, n
        self.setup = f"lb-N{n}"
        self.label = f"{impl} N={n}"
        self.member_ports = [args.member_port + i for i in range(n)]
        # the caller: follows the 302 (redirect), or the route set (proxy)
        shutil.copy(ROUTE_UAC if impl.endswith("-proxy") else REDIRECT_UAC,
                    self.workdir / "uac.xml")
        callee = f"sip:{run.HOST}:{self.callee_ports[0]}"
        for i, p in enumerate(self.member_ports, 1):
            self.member_cmds.append((f"member{i}", [
                self.sipfast, "proxy", "--listen", f"udp:{run.HOST}:{p}",
                "--route", callee, "--record-route", "--workers", "1"], p))

    def command(self) -> list[str]:
        a = self.args
        if self.impl in KAMAILIO_CFGS:
            cmd = ["kamailio", "-f", str(run.KAMAILIO_CFG / KAMAILIO_CFGS[self.impl]),
                   "-DD", "-E", "-x", "tlsf", "-X", "tlsf",
                   "-m", str(a.kamailio_shm), "-M", "16",
                   "-l", f"udp:{run.HOST}:{a.listen_port}",
                   "-Y", str(self.workdir), "-w", str(self.workdir)]
            for i, p in enumerate(self.member_ports, 1):
                cmd += ["-A", f'M{i}="sip:bench@{run.HOST}:{p}"']
            return cmd
        mode = self.impl.split("-", 1)[1]
        cmd = [self.sipfast, "lb", "--listen", f"udp:{run.HOST}:{a.listen_port}",
               "--mode", mode, "--workers", "1"]
        for p in self.member_ports:
            cmd += ["--pool", f"sip:{run.HOST}:{p}"]
        return cmd


def summarise(results: list[dict], rate: int) -> list[dict]:
    rows = []
    for res in results:
        runs = [r for r in res["runs"] if r["phase"] == "fixed"
                and r["rate"] == rate]
        cpu = [r["cpu_ms_per_call"] for r in runs if r["passed"]]
        mem = [r["members_cpu_ms_per_call"] for r in runs if r["passed"]]
        rows.append({
            "impl": res["impl"], "n": res["n"],
            "runs": len(runs), "passed": sum(r["passed"] for r in runs),
            "failed_calls": sum(r["failed"] for r in runs),
            "cpu_all": [r["cpu_ms_per_call"] for r in runs],
            "cpu_median": statistics.median(cpu) if cpu else None,
            "members_median": statistics.median(mem) if mem else None,
        })
    return rows


def _cell(r: dict | None) -> str:
    if not r or r["cpu_median"] is None:
        return ("–" if not r else "error (no run)" if not r["runs"]
                else f"fail ({r['failed_calls']} failed calls)")
    allr = ", ".join(run._fmt(c, "{:.3f}") for c in r["cpu_all"])
    fails = (f", {r['runs'] - r['passed']} run(s) failed"
             if r["passed"] < r["runs"] else "")
    return (f"**{r['cpu_median']:.3f}** ({allr}){fails} "
            f"[{run._fmt(r['members_median'], '{:.3f}')}]")


def markdown(rows: list[dict], rate: int) -> str:
    """The table: per N, each sipfast mode beside its Kamailio equivalent
    and the ratio of their medians."""
    ns = sorted({r["n"] for r in rows})
    by = {(r["impl"], r["n"]): r for r in rows}
    head = ["N"]
    for s_impl, k_impl in PAIRS:
        head += [s_impl, k_impl, f"{s_impl} / {k_impl}"]
    out = [f"balancer CPU ms/call at {rate} calls/s, median (all runs); "
           "members' CPU ms/call (all N together) in brackets", "",
           "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for n in ns:
        cells = [str(n)]
        for s_impl, k_impl in PAIRS:
            cells += [_cell(by.get((s_impl, n))), _cell(by.get((k_impl, n)))]
            s = by.get((s_impl, n), {}).get("cpu_median")
            k = by.get((k_impl, n), {}).get("cpu_median")
            cells.append(f"{s / k:.2f}" if s and k else "–")
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def plot(rows: list[dict], rate: int, png: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for impl in IMPLS:
        pts = sorted((r["n"], r) for r in rows
                     if r["impl"] == impl and r["cpu_median"] is not None)
        if not pts:
            continue
        xs = [n for n, _ in pts]
        ys = [r["cpu_median"] for _, r in pts]
        lo = [y - min(c for c in r["cpu_all"] if c is not None)
              for y, (_, r) in zip(ys, pts, strict=True)]
        hi = [max(c for c in r["cpu_all"] if c is not None) - y
              for y, (_, r) in zip(ys, pts, strict=True)]
        # a pair shares a colour; Kamailio dashed, sipfast solid
        ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", capsize=3, label=impl,
                    color="tab:blue" if impl.endswith("-proxy") else "tab:orange",
                    linestyle="--" if impl.startswith("kamailio") else "-")
    ax.set_xlabel("pool members N")
    ax.set_ylabel("balancer CPU ms per call")
    ax.set_xticks(sorted({r["n"] for r in rows}))
    ax.set_ylim(bottom=0)
    ax.set_title(f"balancer CPU per call at {rate} calls/s "
                 "(median of runs, bars: min-max)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=110)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--impl", default=",".join(IMPLS),
                   help=f"comma list of {IMPLS}")
    p.add_argument("--pool-sizes", default="2,4,8")
    p.add_argument("--rate", type=int, default=300)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--member-port", type=int, default=5081)
    p.add_argument("--sipfast", default="sipfast",
                   help="sipfast program (bare name: beside this Python)")
    p.add_argument("--json")
    p.add_argument("--png")
    own, rest = p.parse_known_args(argv if argv is not None else sys.argv[1:])
    # run.py's options (--duration, --grace, ports, --workdir, ...)
    args = run.parse_args(rest)
    impls = [x for x in own.impl.split(",") if x]
    bad = [x for x in impls if x not in IMPLS]
    if bad:
        p.error(f"unknown --impl {bad}")
    args.member_port = own.member_port
    args.sipfast = own.sipfast
    meta = run.check_requirements(args, ["kamailio"] if any(
        x in KAMAILIO_CFGS for x in impls) else [])
    meta.update({"command": "python " + " ".join(
        ["bench/calls/lb.py", *(argv if argv is not None else sys.argv[1:])]),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"), "rate": own.rate,
        "repeats": own.repeats})
    results = []
    code = 0
    for n in [int(x) for x in own.pool_sizes.split(",")]:
        for impl in impls:
            b = LbBench(args, impl, n)
            res, ok = measure(b, b.label, own.rate, args.duration, own.repeats)
            code = code or (0 if ok else 1)
            res.update({"impl": impl, "n": n})
            results.append(res)
            if own.json:
                with open(own.json, "w") as f:
                    json.dump({"meta": meta, "results": results}, f, indent=1)
    rows = summarise(results, own.rate)
    print(markdown(rows, own.rate))
    if own.png:
        plot(rows, own.rate, own.png)
        run.log(f"wrote {own.png}")
    return code


if __name__ == "__main__":
    sys.exit(main())
