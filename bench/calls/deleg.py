#!/usr/bin/env python3
"""Delegation benchmark: CPU per call of a delegating hop vs one extra stateless forward.

Topologies (SIPp caller -> FRONT -> ... -> SIPp callee on 5071; every
sipfast runs ``--workers 1``; the proxy completing the call record-routes,
so ACK and BYE go from the caller to it directly):

* ``local``: FRONT = ``sipfast proxy --peers P2 --record-route`` under its
  threshold (default capacity 1000): it completes every call itself; P2
  idle beside it;
* ``deleg1``: FRONT = the same with ``--capacity 1 --threshold 0.5``: the
  load with the new call is 1, so every call is delegated to P2
  (``--capacity 1000000``), which completes it;
* ``deleg1-direct``: the same with ``--reply-path direct`` on FRONT: it
  relays the INVITE without its Via, so P2's answers go to the caller
  directly and FRONT sees only the INVITE (and its retransmissions);
* ``deleg2``: FRONT = ``--capacity 1 --threshold 0.5 --share poll --peers
  P2`` (asks P2 for its load at each decision, so it sees P2 at 1/4); P2 =
  ``--capacity 4 --threshold 0.1 --peers P3`` (its load with the call is at
  least 0.25: it delegates again); P3 = ``--capacity 1000000`` completes
  the call (its load is its CPU share, under 0.1 at these rates);
* ``stateless1``: FRONT = ``sipfast proxy --stateless --route P2`` in front
  of P2 (``--record-route``): one extra stateless forward.

The measured figure is FRONT's CPU per call (its process tree); P2's CPU
is recorded beside it (``member_cpu_ms_per_call``).  lb.py's MemberBench
does the process handling.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import lb  # noqa: E402
import run  # noqa: E402

TOPOS = ("local", "deleg1", "deleg1-direct", "deleg2", "stateless1")


class ChainBench(lb.MemberBench):
    def __init__(self, args, topo: str):
        super().__init__(args, topo, "stateless")   # one callee
        self.topo = topo
        self.setup = "delegation"
        self.label = topo
        h = run.HOST
        self.front = f"sip:{h}:{args.listen_port}"
        self.p2 = f"sip:{h}:{args.member_port}"
        callee = f"sip:{h}:{self.callee_ports[0]}"
        p2 = [self.sipfast, "proxy", "--listen", f"udp:{h}:{args.member_port}",
              "--route", callee, "--record-route", "--workers", "1"]
        if topo == "deleg2":
            self.p3 = f"sip:{h}:{args.member_port + 1}"
            p3 = [self.sipfast, "proxy", "--listen",
                  f"udp:{h}:{args.member_port + 1}", "--route", callee,
                  "--record-route", "--workers", "1",
                  "--peers", self.p2, "--capacity", "1000000"]
            p2 += ["--peers", self.p3, "--capacity", "4", "--threshold", "0.1"]
        elif topo != "stateless1":
            p2 += ["--peers", self.front, "--capacity", "1000000"]
        self.member_cmds.append(("p2", p2, args.member_port))
        if topo == "deleg2":
            self.member_cmds.append(("p3", p3, args.member_port + 1))
        self.callee_uri = callee

    def command(self) -> list[str]:
        h, a = run.HOST, self.args
        cmd = [self.sipfast, "proxy", "--listen", f"udp:{h}:{a.listen_port}",
               "--workers", "1"]
        if self.topo == "stateless1":
            return cmd + ["--stateless", "--route", self.p2]
        cmd += ["--route", self.callee_uri, "--record-route",
                "--peers", self.p2]
        if self.topo in ("deleg1", "deleg1-direct", "deleg2"):
            cmd += ["--capacity", "1", "--threshold", "0.5"]
        if self.topo == "deleg1-direct":
            cmd += ["--reply-path", "direct"]
        if self.topo == "deleg2":
            cmd += ["--share", "poll"]
        return cmd


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--topo", default=",".join(TOPOS))
    p.add_argument("--rate", type=int, default=500)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--rounds", type=int, default=1,
                   help="run the topology list this many times, every other "
                        "round in reverse order (a drift of the machine then "
                        "weighs on every topology alike); ratios per round")
    p.add_argument("--member-port", type=int, default=5081)
    p.add_argument("--sipfast", default="sipfast")
    p.add_argument("--json")
    own, rest = p.parse_known_args(argv if argv is not None else sys.argv[1:])
    args = run.parse_args(rest)
    args.member_port, args.sipfast = own.member_port, own.sipfast
    meta = run.check_requirements(args, [])
    meta.update({"command": "python " + " ".join(
        ["bench/calls/deleg.py", *(argv if argv is not None else sys.argv[1:])]),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"), "rate": own.rate})
    results, code = [], 0
    topos = [x for x in own.topo.split(",") if x]
    for rnd in range(own.rounds):
        for topo in (topos if rnd % 2 == 0 else topos[::-1]):
            b = ChainBench(args, topo)
            res, ok = lb.measure(b, f"{topo} (round {rnd + 1})", own.rate, args.duration,
                                 own.repeats)
            code = code or (0 if ok else 1)
            res["topo"], res["round"] = topo, rnd + 1
            results.append(res)
            if own.json:
                with open(own.json, "w") as f:
                    json.dump({"meta": meta, "results": results}, f, indent=1)
    print_tables(results, topos, own.rounds)
    return code


def _passed(res: dict) -> list[dict]:
    return [r for r in res["runs"] if r["phase"] == "fixed" and r["passed"]]


def _median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def print_tables(results: list[dict], topos: list[str], rounds: int) -> None:
    """Per topology: FRONT's median over every passing run (the runs),
    P2's and P3's; then, with stateless1 measured, FRONT's median per round
    over stateless1's in the same round, and the median of those ratios."""
    print("| topology | FRONT CPU ms/call, median (runs) "
          "| P2 CPU ms/call, median | P3 | failed calls |")
    print("|---|---|---|---|---|")
    for topo in topos:
        mine = [res for res in results if res["topo"] == topo]
        runs = [r for res in mine for r in res["runs"] if r["phase"] == "fixed"]
        ok = [r for res in mine for r in _passed(res)]
        m3 = [r["member_cpu_ms_per_call"]["p3"] for r in ok
              if "p3" in r["member_cpu_ms_per_call"]]
        print(f"| {topo} | {run._fmt(_median([r['cpu_ms_per_call'] for r in ok]))} "
              f"({', '.join(run._fmt(r['cpu_ms_per_call']) for r in runs)}) | "
              f"{run._fmt(_median([r['member_cpu_ms_per_call']['p2'] for r in ok]))} | "
              f"{run._fmt(_median(m3))} | {sum(r['failed'] for r in runs)} |")
    if "stateless1" not in topos:
        return
    front = {(res["topo"], res["round"]): _median(
        [r["cpu_ms_per_call"] for r in _passed(res)]) for res in results}
    others = [t for t in topos if t != "stateless1"]
    print()
    print("| topology | FRONT / stateless1 per round | median |")
    print("|---|---|---|")
    for topo in others:
        ratios = [front[(topo, k)] / front[("stateless1", k)] for k in range(1, rounds + 1)
                  if front.get((topo, k)) and front.get(("stateless1", k))]
        print(f"| {topo} | {', '.join(f'{x:.2f}' for x in ratios)} | "
              f"{_median(ratios) and f'{_median(ratios):.2f}'} |")


if __name__ == "__main__":
    sys.exit(main())
