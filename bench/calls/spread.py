#!/usr/bin/env python3
"""Load-spread benchmark: 4 proxies of unequal capacity, sipfast delegation vs Kamailio alg 10.

The pool: N (default 4) ``sipfast proxy`` members on 5081.., member i with
capacity C_i (``--capacities``, default 40,80,120,160 active calls), each
routing to its own SIPp callee (5071..) and record-routing.  One SIPp
caller (5061) places ``--rate`` calls/s for ``--duration`` s, each call held
``--hold`` s between ACK and BYE, so active calls accumulate to about
rate x hold (default 70 x 4 = 280, 70 % of the pool's 400).

Implementations, each on fresh processes, one after the other in one run of
this script, with the same caller:

* ``sipfast`` variants (``--variant NAME=FLAGS``; default ``push`` and
  ``continuous``): every call goes to one primary member (``--primary``,
  default member 1, the smallest); the members are delegating peers
  (``--peers`` = the others, ``--capacity C_i --threshold T``, FLAGS added)
  and decide where each call goes;
* ``kamailio``: Kamailio 5.6 (``kamailio/dispatcher_alg10.cfg``) on 5060 in
  front of the same pool, ``ds_select_dst("1", "10")`` over a list file
  giving member i ``duid=mi;maxload=C_i``; the members are the same sipfast
  proxies, not delegating (``--threshold 1 --capacity 1000000``: they only
  run the load machinery so that they can be sampled the same way).

Measurement, the same instrument for every implementation: every
``--sample`` s the script asks each member for its figures over its control
socket (``--control``; ``show`` gives ``load.calls`` = the compiled loop's
active calls: INVITEs without a final answer + record-routed dialogs until
BYE).  A member's share at a sample = active calls / C_i; over the steady
state (from ``hold`` + 2 s after the caller starts until its last call is
placed) the script reports each member's mean share, the ratio of the
largest mean share to the smallest and their difference.  Target: ratio
<= 1.10.  Cross-checks: each SIPp callee's own count of calls in progress
(its ``CurrentCall``, which also holds each call for its 2 s linger), the
calls each callee completed (which member the calls went through, seen on
the wire), the members' stop-line counters (delegations, 503s) and the
caller's failed calls.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import run  # noqa: E402

from sipfast.load.control import request as control_request  # noqa: E402
from sipfast.ops.topology import stopped_counters  # noqa: E402

DEFAULT_VARIANTS = {
    "push": "--share push",
    "continuous": "--share continuous",
}
KAMAILIO_CFG = HERE / "kamailio" / "dispatcher_alg10.cfg"


def hold_scenario(workdir: Path) -> Path:
    """scenarios/uac.xml with a <pause/> between ACK and BYE (SIPp takes a
    pause without milliseconds from -d: the hold time)."""
    text = (run.SCENARIOS / "uac.xml").read_text()
    anchor = '  <send retrans="500" start_txn="bye">'
    if text.count(anchor) != 1:
        raise run.BenchError("scenarios/uac.xml changed: no unique BYE send")
    text = text.replace(anchor, "  <pause/>\n\n" + anchor)
    text = text.replace('name="sipfast bench uac"', 'name="sipfast bench uac hold"')
    path = workdir / "uac_hold.xml"
    path.write_text(text)
    return path


def read_stat_rows(path: Path) -> list[dict[str, str]]:
    """Every row of a SIPp -trace_stat CSV as {column: value}."""
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return []
    if len(lines) < 2:
        return []
    head = lines[0].split(";")
    return [dict(zip(head, ln.split(";"), strict=False)) for ln in lines[1:]]


def _epoch(row: dict[str, str]) -> float | None:
    """SIPp's CurrentTime column ends with the epoch seconds."""
    try:
        return float(row.get("CurrentTime", "").split()[-1])
    except (IndexError, ValueError):
        return None


class Pool:
    """The members, their callees and (for Kamailio) the front, for one
    implementation; started and stopped by PID."""

    def __init__(self, args: argparse.Namespace, impl: str, flags: str | None):
        self.args, self.impl, self.flags = args, impl, flags
        self.workdir = Path(tempfile.mkdtemp(prefix=f"sipfast-spread-{impl}-",
                                             dir=args.workdir))
        shutil.copy(run.SCENARIOS / "uas.xml", self.workdir / "uas.xml")
        self.uac = hold_scenario(self.workdir)
        n = len(args.capacities)
        h = run.HOST
        self.member_ports = [args.member_port + i for i in range(n)]
        self.callee_ports = [args.callee_port + i for i in range(n)]
        self.uris = [f"sip:{h}:{p}" for p in self.member_ports]
        self.controls = [self.workdir / f"m{i + 1}.ctl" for i in range(n)]
        self.callees: list[run.Proc] = []
        self.members: list[run.Proc] = []
        self.front: run.Proc | None = None
        self.member_cmds = [self._member_cmd(i) for i in range(n)]
        self.front_cmd = self._kamailio_cmd() if impl == "kamailio" else None

    def _member_cmd(self, i: int) -> list[str]:
        a, h = self.args, run.HOST
        if a.mesh == "full" or i == a.primary - 1 or self.impl == "kamailio":
            others = [u for j, u in enumerate(self.uris) if j != i]
        else:                       # star: a member knows the primary only
            others = [self.uris[a.primary - 1]]
        prog = a.variant_sipfast.get(self.impl, a.sipfast)
        cmd = [prog, "proxy", "--listen", f"udp:{h}:{self.member_ports[i]}",
               "--route", f"sip:{h}:{self.callee_ports[i]}", "--record-route",
               "--workers", "1", "--peers", ",".join(others),
               "--control", str(self.controls[i])]
        if self.impl == "kamailio":
            return cmd + ["--threshold", "1", "--capacity", "1000000"]
        cmd += ["--capacity", str(a.capacities[i]), "--threshold", str(a.threshold)]
        return cmd + shlex.split(a.sipfast_flags) + shlex.split(self.flags or "")

    def _kamailio_cmd(self) -> list[str]:
        ds = self.workdir / "dispatcher.list"
        ds.write_text("".join(
            f"1 {u} 0 0 duid=m{i + 1};maxload={c}\n"
            for i, (u, c) in enumerate(zip(self.uris, self.args.capacities, strict=True))))
        return ["kamailio", "-f", str(KAMAILIO_CFG), "-DD", "-E", "-x", "tlsf", "-X", "tlsf",
                "-m", "256", "-M", "16", "-l", f"udp:{run.HOST}:{self.args.listen_port}",
                "-Y", str(self.workdir), "-w", str(self.workdir),
                "-A", f'DS_LIST="{ds}"']

    @property
    def target_port(self) -> int:
        return (self.args.listen_port if self.impl == "kamailio"
                else self.member_ports[self.args.primary - 1])

    def start(self) -> None:
        ports = [self.args.caller_port, *self.member_ports, *self.callee_ports]
        if self.front_cmd:
            ports.append(self.args.listen_port)
        busy = [p for p in ports if run.udp_port_bound(p)]
        if busy:
            raise run.BenchError(f"UDP port(s) {busy} already in use")
        for i, port in enumerate(self.callee_ports, 1):
            cmd = ["sipp", "-sf", "uas.xml", "-i", run.HOST, "-p", str(port),
                   "-nostdin", "-rtcheck", "loose", "-buff_size", str(4 << 20),
                   "-trace_stat", "-stf", f"callee{i}_stat.csv", "-fd", "1",
                   "-trace_err", "-error_file", f"callee{i}_errors.log"]
            proc = run.Proc(f"callee{i}", cmd, self.workdir)
            self.callees.append(proc)
            run.wait_bound(proc, port, f"SIPp callee {i}")
        for i, cmd in enumerate(self.member_cmds):
            run.log(f"member {i + 1}: {shlex.join(cmd)}")
            proc = run.Proc(f"member{i + 1}", cmd, self.workdir)
            self.members.append(proc)
            run.wait_bound(proc, self.member_ports[i], f"member {i + 1}", timeout=15)
        if self.front_cmd:
            run.log(f"front: {shlex.join(self.front_cmd)}")
            self.front = run.Proc("kamailio", self.front_cmd, self.workdir)
            run.wait_bound(self.front, self.args.listen_port, "kamailio", timeout=15)

    def show(self, i: int) -> dict:
        return control_request(str(self.controls[i]), {"command": "show"}, timeout=2.0)

    def stop(self) -> dict[str, dict[str, int]]:
        """Stop everything; each member's stop-line counters."""
        out = {}
        for err in run.stop_all([self.front, *self.members, *self.callees]):
            run.log(f"warning: {err}")
        for i, m in enumerate(self.members):
            try:
                out[f"m{i + 1}"] = stopped_counters(m.log_path.read_text(errors="replace"))
            except OSError:
                out[f"m{i + 1}"] = {}
        return out


def sampler(pool: Pool, interval: float, stop: threading.Event, rows: list) -> None:
    """Every interval: each member's active calls (None if it did not answer)."""
    t_next = time.monotonic()
    while not stop.is_set():
        row: dict = {"t": time.time(), "calls": [], "load": []}
        for i in range(len(pool.members)):
            try:
                s = pool.show(i)
                row["calls"].append(s["load"]["calls"])
                row["load"].append(s["load"]["load"])
            except (OSError, ValueError, KeyError):
                row["calls"].append(None)
                row["load"].append(None)
                continue
            if i == pool.args.primary - 1 and pool.impl != "kamailio":
                # what the deciding proxy believes of each peer: last
                # reported calls, calls it sent since, age of the report
                row["view"] = {p["peer"]: [p.get("calls"), p.get("assigned"), p.get("age")]
                               for p in s.get("peers", [])}
        rows.append(row)
        t_next += interval
        stop.wait(max(0.0, t_next - time.monotonic()))


def run_impl(args: argparse.Namespace, impl: str, flags: str | None) -> dict:
    pool = Pool(args, impl, flags)
    run.log(f"=== {impl}: work dir {pool.workdir}")
    caps = args.capacities
    calls = int(round(args.rate * args.duration))
    res: dict = {"impl": impl, "flags": flags, "workdir": str(pool.workdir),
                 "member_cmds": [shlex.join(c) for c in pool.member_cmds],
                 "front_cmd": shlex.join(pool.front_cmd) if pool.front_cmd else None,
                 "capacities": caps, "uris": pool.uris, "calls_planned": calls,
                 "ok": False}
    rows: list = []
    try:
        pool.start()
        time.sleep(args.settle)         # first load reports between the peers
        res["before"] = [pool.show(i) for i in range(len(caps))]
        stat = "caller_stat.csv"
        cmd = ["sipp", f"{run.HOST}:{pool.target_port}", "-sf", pool.uac.name,
               "-i", run.HOST, "-p", str(args.caller_port), "-s", "bench",
               "-r", str(args.rate), "-rp", "1000", "-m", str(calls),
               "-d", str(int(args.hold * 1000)), "-l", str(max(100, sum(caps) * 2)),
               "-nostdin", "-rtcheck", "loose", "-buff_size", str(4 << 20),
               "-recv_timeout", "8000",
               "-trace_stat", "-stf", stat, "-fd", "1",
               "-trace_err", "-error_file", "caller_errors.log"]
        res["caller_cmd"] = shlex.join(cmd)
        stop = threading.Event()
        th = threading.Thread(target=sampler, args=(pool, args.sample, stop, rows), daemon=True)
        t0 = time.time()
        th.start()
        caller = run.Proc("caller", cmd, pool.workdir)
        limit = args.duration + args.hold + args.grace
        killed = False
        try:
            caller.popen.wait(limit)
        except subprocess.TimeoutExpired:
            killed = True
            run.log(f"  caller still running {limit:.0f} s after start: killing it")
        finally:
            caller.stop()
        stop.set()
        th.join(5)
        time.sleep(3.0)   # the callees keep each call 2 s after its BYE, then count it
        res["after"] = [pool.show(i) for i in range(len(caps))]
        st = run.read_stat_last(pool.workdir / stat)
        res.update({
            "t0": t0, "killed": killed, "sipp_exit": caller.popen.returncode,
            "successful": run._int(st, "SuccessfulCall(C)"),
            "failed": run._int(st, "FailedCall(C)"),
            "retransmissions": run._int(st, "Retransmissions(C)"),
        })
        res["ok"] = True
    except run.BenchError as e:
        run.log(f"ERROR ({impl}): {e}")
        res["error"] = str(e)
    finally:
        res["counters"] = pool.stop()
    res["samples"] = rows
    res["callees"] = []
    for i in range(len(caps)):
        crow = read_stat_rows(pool.workdir / f"callee{i + 1}_stat.csv")
        last = crow[-1] if crow else {}
        res["callees"].append({
            "successful": run._int(last, "SuccessfulCall(C)"),
            "failed": run._int(last, "FailedCall(C)"),
            "current": [(_epoch(r), run._int(r, "CurrentCall")) for r in crow],
        })
    summarise(res, args)
    return res


def summarise(res: dict, args: argparse.Namespace) -> None:
    """Mean share per member over the steady state, and the spread."""
    caps = res["capacities"]
    t0 = res.get("t0")
    if t0 is None:
        return
    lo, hi = t0 + args.hold + 2.0, t0 + res["calls_planned"] / args.rate
    res["window"] = [round(lo - t0, 2), round(hi - t0, 2)]
    win = [r for r in res["samples"] if lo <= r["t"] <= hi
           and all(c is not None for c in r["calls"])]
    res["n_samples"] = len(win)
    if not win:
        return
    shares = [statistics.fmean(r["calls"][i] / caps[i] for r in win) for i in range(len(caps))]
    res["mean_share"] = [round(s, 4) for s in shares]
    res["mean_calls"] = [round(statistics.fmean(r["calls"][i] for r in win), 2)
                         for i in range(len(caps))]
    res["ratio"] = round(max(shares) / min(shares), 4) if min(shares) > 0 else None
    res["diff"] = round(max(shares) - min(shares), 4)
    # the per-sample spread (how far apart the members are at one moment)
    per = [max(r["calls"][i] / caps[i] for i in range(len(caps)))
           - min(r["calls"][i] / caps[i] for i in range(len(caps))) for r in win]
    res["sample_diff_mean"] = round(statistics.fmean(per), 4)
    # cross-check: the callees' own count of calls in progress (incl. 2 s linger)
    cur = []
    for i, c in enumerate(res["callees"]):
        vals = [v for t, v in c["current"] if t is not None and lo <= t <= hi]
        cur.append(statistics.fmean(vals) / caps[i] if vals else None)
    if all(v for v in cur):
        res["callee_share"] = [round(v, 4) for v in cur]
        res["callee_ratio"] = round(max(cur) / min(cur), 4)
    # staleness: the primary's estimate of each peer (reported calls + calls
    # it sent since) minus the peer's own count at the same sample, in shares
    bias, ages = [], []
    for i, (u, c) in enumerate(zip(res["uris"], caps, strict=True)):
        d = [(r["view"][u][0] + r["view"][u][1] - r["calls"][i]) / c for r in win
             if u in r.get("view", {}) and r["view"][u][0] is not None]
        a = [r["view"][u][2] for r in win
             if u in r.get("view", {}) and r["view"][u][2] is not None]
        bias.append(round(statistics.fmean(d), 4) if d else None)
        ages.append(round(statistics.fmean(a), 3) if a else None)
    if any(b is not None for b in bias):
        res["view_bias"], res["view_age"] = bias, ages
    tot = sum(c["successful"] for c in res["callees"])
    res["callee_calls_fraction"] = [round(c["successful"] / tot, 4) if tot else None
                                    for c in res["callees"]]
    res["callee_failed"] = sum(c["failed"] for c in res["callees"])
    res["delegated"] = [res["counters"].get(f"m{i + 1}", {}).get("delegated")
                        for i in range(len(caps))]
    res["rejected_503"] = [res["counters"].get(f"m{i + 1}", {}).get("rejected")
                           for i in range(len(caps))]


def markdown(results: list[dict], caps: list[int]) -> str:
    n = len(caps)
    out = ["| implementation | " + " | ".join(f"m{i + 1} (cap {c})" for i, c in enumerate(caps))
           + " | max/min share | max − min | callee-count max/min "
           "| calls ok / failed | calls per member (callees) |",
           "|---|" + "---|" * (n + 5)]
    for r in results:
        if "mean_share" not in r:
            out.append(f"| {r['impl']} | " + " | ".join("–" for _ in caps)
                       + f" | – | – | – | error: {r.get('error', 'no samples')} | – |")
            continue
        cells = [f"{s:.3f} ({c:g})" for s, c in zip(r["mean_share"], r["mean_calls"],
                                                   strict=True)]
        met = "**" if r["ratio"] is not None and r["ratio"] <= 1.10 else ""
        per = ", ".join(str(c["successful"]) for c in r["callees"])
        out.append(f"| {r['impl']} | " + " | ".join(cells)
                   + f" | {met}{run._fmt(r['ratio'])}{met} | {r['diff']:.3f}"
                   f" | {run._fmt(r.get('callee_ratio'))}"
                   f" | {r['successful']} / {r['failed']} | {per} |")
    return "\n".join(out)


def plot(results: list[dict], caps: list[int], png: str) -> None:
    """Mean share per member and implementation (bars), then each
    implementation's shares over time, three panels a row."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ok = [r for r in results if "mean_share" in r]
    if not ok:
        return
    cols = 3
    rows = 1 + (len(ok) + cols - 1) // cols
    fig = plt.figure(figsize=(13, 3.6 * rows))
    grid = fig.add_gridspec(rows, cols)
    ax = fig.add_subplot(grid[0, :])
    w = 0.8 / len(ok)
    for k, r in enumerate(ok):
        xs = [i + (k - (len(ok) - 1) / 2) * w for i in range(len(caps))]
        ax.bar(xs, r["mean_share"], w, label=f"{r['impl']} (max/min {r['ratio']:.2f})")
    ax.axhline(0.7, color="grey", lw=0.8, ls="--")
    ax.set_xticks(range(len(caps)))
    ax.set_xticklabels([f"m{i + 1}, capacity {c}" for i, c in enumerate(caps)])
    ax.set_ylabel("active calls / capacity")
    ax.set_ylim(0, 1.05)
    ax.set_title("mean share of capacity over the steady state, per member "
                 "(dashed: offered load / pool capacity)")
    ax.legend(fontsize=8, loc="upper right", ncol=2)
    ax.grid(alpha=0.3, axis="y")
    for k, r in enumerate(ok):
        ax = fig.add_subplot(grid[1 + k // cols, k % cols])
        t0 = r["t0"]
        for i, c in enumerate(caps):
            pts = [(s["t"] - t0, s["calls"][i] / c) for s in r["samples"]
                   if s["calls"][i] is not None]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], lw=1,
                    label=f"m{i + 1} (cap {c})")
        ax.axvspan(*r["window"], color="grey", alpha=0.12)
        ax.set_ylim(0, 1.05)
        ax.set_title(f"{r['impl']}: share over time", fontsize=10)
        ax.set_xlabel("s since the caller started (grey: steady state)", fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower center", ncol=2)
    fig.tight_layout()
    fig.savefig(png, dpi=90)


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")   # stop() every process by PID


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _interrupt)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--impl", default="push,continuous,kamailio",
                   help="comma list: kamailio and/or --variant names")
    p.add_argument("--variant", action="append", default=[], metavar="NAME=FLAGS",
                   help="a sipfast variant: extra `sipfast proxy` flags of its members "
                        f"(built in: {DEFAULT_VARIANTS})")
    p.add_argument("--variant-sipfast", action="append", default=[],
                   dest="variant_sipfast_list", metavar="NAME=PROGRAM",
                   help="the sipfast program of variant NAME (default --sipfast)")
    p.add_argument("--capacities", default="40,80,120,160")
    p.add_argument("--threshold", type=float, default=0.0,
                   help="every member's --threshold (sipfast variants)")
    p.add_argument("--sipfast-flags", default="",
                   help="flags added to every sipfast variant's members")
    p.add_argument("--mesh", choices=["full", "star"], default="full",
                   help="full: every member's --peers are all the others; star: "
                        "only the primary knows them all, the others know the primary")
    p.add_argument("--primary", type=int, default=1,
                   help="the member (1-based) the caller sends every call to (sipfast)")
    p.add_argument("--rate", type=int, default=70)
    p.add_argument("--hold", type=float, default=4.0, help="s between ACK and BYE")
    p.add_argument("--duration", type=float, default=60.0, help="s of placing calls")
    p.add_argument("--sample", type=float, default=0.5, help="s between samples")
    p.add_argument("--settle", type=float, default=3.0,
                   help="s between start and the caller (first load reports)")
    p.add_argument("--grace", type=float, default=15.0)
    p.add_argument("--listen-port", type=int, default=5060, help="Kamailio")
    p.add_argument("--member-port", type=int, default=5081)
    p.add_argument("--callee-port", type=int, default=5071)
    p.add_argument("--caller-port", type=int, default=5061)
    p.add_argument("--sipfast", default="sipfast")
    p.add_argument("--workdir")
    p.add_argument("--json")
    p.add_argument("--png")
    p.add_argument("--replot", metavar="JSON",
                   help="run nothing: print the table and draw --png from a JSON this wrote")
    argv = argv if argv is not None else sys.argv[1:]
    args = p.parse_args(argv)
    if args.replot:
        with open(args.replot) as f:
            data = json.load(f)
        caps = data["results"][0]["capacities"]
        print(markdown(data["results"], caps))
        if args.png:
            plot(data["results"], caps, args.png)
        return 0
    args.capacities = [int(x) for x in args.capacities.split(",")]
    args.sipfast = run.resolve_program(args.sipfast)
    variants = dict(DEFAULT_VARIANTS)
    for v in args.variant:
        name, sep, flags = v.partition("=")
        if not sep or not name:
            p.error(f"--variant {v!r}: expected NAME=FLAGS")
        variants[name] = flags
    args.variant_sipfast = {}
    for v in args.variant_sipfast_list:
        name, sep, prog = v.partition("=")
        if not sep or not name or not prog:
            p.error(f"--variant-sipfast {v!r}: expected NAME=PROGRAM")
        args.variant_sipfast[name] = run.resolve_program(prog)
    impls = [x for x in args.impl.split(",") if x]
    bad = [x for x in impls if x != "kamailio" and x not in variants]
    if bad:
        p.error(f"unknown --impl {bad}: give them with --variant NAME=FLAGS")
    if not 1 <= args.primary <= len(args.capacities):
        p.error("--primary out of range")
    ns = argparse.Namespace(proxy_cmds={}, png=args.png)
    meta = run.check_requirements(ns, ["kamailio"] if "kamailio" in impls else [])
    meta.update({"command": "python " + shlex.join(["bench/calls/spread.py", *argv]),
                 "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
                 "options": {k: v for k, v in vars(args).items()
                             if k not in ("variant", "variant_sipfast_list")},
                 "variants": {k: variants[k] for k in impls if k != "kamailio"}})
    results = []
    for impl in impls:
        results.append(run_impl(args, impl, variants.get(impl)))
        r = results[-1]
        run.log(f"  {impl}: shares {r.get('mean_share')} max/min {r.get('ratio')} "
                f"ok {r.get('successful')} failed {r.get('failed')} "
                f"callees {[c['successful'] for c in r['callees']]} "
                f"delegated {r.get('delegated')} 503 {r.get('rejected_503')}")
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"meta": meta, "results": results}, f, indent=1)
    print(markdown(results, args.capacities))
    if args.png:
        plot(results, args.capacities, args.png)
        run.log(f"wrote {args.png}")
    return 0 if all(r["ok"] and r.get("failed") == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
