#!/usr/bin/env python3
"""Balancer benchmark: SIPp caller -> balancer over a pool of N members -> SIPp callee.

Reuses run.py's machinery (process start/stop by PID, SIPp caller runs,
CPU from /proc of the process tree, pass/fail criteria); only the topology
differs:

* ``sipfast-redirect``: ``sipfast lb --mode redirect --workers 1`` over N
  ``sipfast proxy --route sip:CALLEE --record-route --workers 1`` members;
  the caller (``sipfast/ops/scenarios/uac_redirect.xml``) follows the 302
  to the winner and completes the call through it;
* ``sipfast-proxy``: the same with ``--mode proxy`` and the record-route
  honouring caller (``scenarios/uac.xml``); the call is relayed through the
  balancer to the winner, which record-routes (ACK/BYE bypass the balancer);
* ``kamailio``: Kamailio tm parallel forking (``kamailio/lb_fork.cfg``):
  every INVITE marked as a probe and t_relay()ed to all N members (the same
  sipfast proxies) at once; tm relays the best final answer (a member's
  302) and ACKs the others; same caller as ``sipfast-redirect``.

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
IMPLS = ("kamailio", "sipfast-redirect", "sipfast-proxy")


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
        for m in self.members:
            try:
                m.stop()
            except Exception as e:   # keep stopping the others
                run.log(f"warning: {m.name}: {e}")

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
        if impl != "sipfast-proxy":
            shutil.copy(REDIRECT_UAC, self.workdir / "uac.xml")
        callee = f"sip:{run.HOST}:{self.callee_ports[0]}"
        for i, p in enumerate(self.member_ports, 1):
            self.member_cmds.append((f"member{i}", [
                self.sipfast, "proxy", "--listen", f"udp:{run.HOST}:{p}",
                "--route", callee, "--record-route", "--workers", "1"], p))

    def command(self) -> list[str]:
        a = self.args
        if self.impl == "kamailio":
            cmd = ["kamailio", "-f", str(run.KAMAILIO_CFG / "lb_fork.cfg"),
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


def markdown(rows: list[dict], rate: int) -> str:
    ns = sorted({r["n"] for r in rows})
    by = {(r["impl"], r["n"]): r for r in rows}
    out = [f"balancer CPU ms/call at {rate} calls/s, median (all runs); "
           "members' CPU ms/call (all N together) in brackets", "",
           "| N | " + " | ".join(IMPLS) + " | sipfast-redirect / Kamailio"
           " | sipfast-proxy / Kamailio |",
           "|---|" + "---|" * (len(IMPLS) + 2)]
    for n in ns:
        cells = []
        for impl in IMPLS:
            r = by.get((impl, n))
            if not r or r["cpu_median"] is None:
                cells.append("–" if not r else "error (no run)" if not r["runs"]
                             else f"fail ({r['failed_calls']} failed calls)")
                continue
            allr = ", ".join(run._fmt(c, "{:.3f}") for c in r["cpu_all"])
            fails = (f", {r['runs'] - r['passed']} run(s) failed"
                     if r["passed"] < r["runs"] else "")
            cells.append(f"**{r['cpu_median']:.3f}** ({allr}){fails} "
                         f"[{run._fmt(r['members_median'], '{:.3f}')}]")
        k = by.get(("kamailio", n), {}).get("cpu_median")
        for impl in ("sipfast-redirect", "sipfast-proxy"):
            s = by.get((impl, n), {}).get("cpu_median")
            cells.append(f"{s / k:.2f}" if s and k else "–")
        out.append(f"| {n} | " + " | ".join(cells) + " |")
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
        ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", capsize=3, label=impl)
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
    meta = run.check_requirements(args, ["kamailio"] if "kamailio" in impls
                                  else [])
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
