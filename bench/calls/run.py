#!/usr/bin/env python3
"""Call-rate benchmark: SIPp caller -> proxy under test -> SIPp callee(s).

Measures, for a proxy and a setup, in one run:
  * at fixed call rates (--rates): calls/s achieved, failed calls, the proxy's
    CPU milliseconds per call (utime+stime of the proxy and all its child
    processes, from /proc, before and after) and the median call set-up time;
  * with --search: the highest call rate held for --duration seconds with zero
    failed calls, quoted only if it passed three times in a row.

Proxies: "kamailio" (Debian's Kamailio 5.6 with kamailio/<setup>.cfg, started
with -x tlsf -X tlsf and two UDP children), "none" (caller straight to one
callee: the SIPp baseline) and any other name, which runs --proxy-cmd (e.g.
"--proxy sipfast --proxy-cmd 'sipfast proxy ...'") with placeholders filled.
Setups: "stateless" (forward to one callee) and "stateful" (transaction
stateful, record-route, two callees round robin).

Loopback only; every process is started and ended by this script by PID; every
run is bounded in time.  See bench/calls/README.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import shutil
import signal
import statistics
import string
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCENARIOS = HERE / "scenarios"
KAMAILIO_CFG = HERE / "kamailio"
CLK_TCK = os.sysconf("SC_CLK_TCK")
HOST = "127.0.0.1"
KAMAILIO_MODULES = Path("/usr/lib/x86_64-linux-gnu/kamailio/modules")
KAMAILIO_NEEDED_MODULES = ("tm", "sl", "rr", "maxfwd", "siputils", "pv",
                           "textops", "dispatcher", "corex", "tmx")
SETUPS = ("stateless", "stateful")
BUILTIN_PROXIES = ("kamailio", "none")
PLACEHOLDERS = ("listen_host", "listen_port", "listen", "callee1", "callee2",
                "callees", "setup", "workdir")


class BenchError(Exception):
    pass


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def template_fields(template: str | None) -> set[str]:
    """The placeholder names used in a --proxy-cmd template."""
    if not template:
        return set()
    try:
        return {name for _, name, _, _ in string.Formatter().parse(template)
                if name}
    except ValueError as e:
        raise BenchError(f"bad --proxy-cmd template {template!r}: {e}") from None


def parse_proxy_cmds(values: list[str], proxies: list[str]) -> dict[str, str]:
    """--proxy-cmd values ("[NAME=]COMMAND") as {proxy name: command}.

    A NAME= prefix (a proxy name from --proxy, no spaces) gives that proxy
    its own command; an unnamed command is used by every other --proxy name
    that is not built in (kamailio, none).  So one run can compare variants
    of the same program under different names, e.g.
    --proxy kamailio,sipfast,sipfast-w2 --proxy-cmd 'sipfast=...'
    --proxy-cmd 'sipfast-w2=... --workers 2'.
    """
    named: dict[str, str] = {}
    default = None
    for v in values:
        name, sep, rest = v.partition("=")
        if sep and name in proxies and name.strip() == name and name:
            if name in named:
                raise ValueError(f"two --proxy-cmd for proxy '{name}'")
            named[name] = rest
        else:
            if default is not None:
                raise ValueError("more than one --proxy-cmd without a NAME= "
                                 "prefix (a NAME must be listed in --proxy)")
            default = v
    out: dict[str, str] = {}
    for px in proxies:
        if px in named:
            out[px] = named[px]
        elif px not in BUILTIN_PROXIES:
            if default is None:
                raise ValueError(f"--proxy {px} needs a --proxy-cmd "
                                 f"('{px}=COMMAND' or an unnamed one)")
            out[px] = default
    if default is not None and not any(
            px not in BUILTIN_PROXIES and px not in named for px in proxies):
        raise ValueError("an unnamed --proxy-cmd is given but every --proxy "
                         "is built in or has its own NAME=COMMAND")
    return out


def resolve_program(prog: str) -> str:
    """The proxy's program as an absolute path where that is needed.

    The proxy runs in its work directory, so a relative path ("./x",
    ".venv/bin/sipfast") is taken relative to where run.py was started; a
    bare name not on PATH is looked up next to this Python (the venv's bin,
    so "sipfast" works under .venv/bin/python without activating it).
    """
    if "/" in prog:
        return str(Path(prog).absolute())
    if shutil.which(prog) is None:
        beside = Path(sys.executable).parent / prog
        if beside.is_file() and os.access(beside, os.X_OK):
            return str(beside)
    return prog


# --------------------------------------------------------------------------
# processes and /proc

def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    # the command name may hold spaces or parentheses: split after the last ')'
    return data[data.rindex(")") + 2:].split()


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        fields = _stat_fields(int(name))
        if fields is None:
            continue
        kids.setdefault(int(fields[1]), []).append(int(name))
    return kids


def process_tree(pid: int) -> list[int]:
    """pid and all its live descendants."""
    kids = _children_map()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, ()))
    return out


def tree_cpu_ticks(pids: list[int]) -> tuple[int, int]:
    """(utime+stime+cutime+cstime of the trees rooted at pids, process count).

    The reaped children's time (cutime+cstime) is included so that the sum
    does not drop when a child exits and is waited for by its parent.
    """
    total = nproc = 0
    for root in pids:
        for p in process_tree(root):
            fields = _stat_fields(p)
            if fields is None:
                continue
            nproc += 1
            total += sum(int(fields[i]) for i in (11, 12, 13, 14))
    return total, nproc


def udp_port_bound(port: int) -> bool:
    want = f":{port:04X}"
    for path in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    local = line.split()[1]
                    if local.endswith(want):
                        return True
        except OSError:
            pass
    return False


class Proc:
    """A child process in its own session, with its output in a log file."""

    def __init__(self, name: str, cmd: list[str], workdir: Path):
        self.name = name
        self.cmd = cmd
        self.log_path = workdir / f"{name}.log"
        self._log = open(self.log_path, "wb")
        self.popen = subprocess.Popen(
            cmd, cwd=workdir, stdin=subprocess.DEVNULL, stdout=self._log,
            stderr=subprocess.STDOUT, start_new_session=True)
        self.pid = self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, n: int = 15) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM the process, then SIGKILL it and any descendant left."""
        tree = process_tree(self.pid) if self.alive() else []
        if self.alive():
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        if self.alive():
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                log(f"warning: {self.name} (pid {self.pid}) survived SIGKILL")
        # children the process did not take with it (same session only)
        deadline = time.monotonic() + timeout
        for p in tree[1:]:
            while _stat_fields(p) is not None and time.monotonic() < deadline:
                time.sleep(0.05)
            if _stat_fields(p) is not None and _session_of(p) == self.pid:
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self._log.close()


def _session_of(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[3]) if fields else None


def wait_bound(proc: Proc, port: int, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise BenchError(
                f"{what} exited (code {proc.popen.returncode}) before binding "
                f"UDP {HOST}:{port}; command: {shlex.join(proc.cmd)}\n"
                f"--- {proc.log_path} ---\n{proc.log_tail()}")
        if udp_port_bound(port):
            time.sleep(0.3)   # let a multi-process server fork its workers
            return
        time.sleep(0.05)
    raise BenchError(f"{what} did not bind UDP {HOST}:{port} within "
                     f"{timeout:.0f} s; log: {proc.log_path}\n{proc.log_tail()}")


# --------------------------------------------------------------------------
# SIPp

def read_stat_last(path: Path) -> dict[str, str]:
    """Last row of a SIPp -trace_stat CSV as {column: value}."""
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines()
                 if ln.strip()]
    except OSError:
        return {}
    if len(lines) < 2:
        return {}
    head = lines[0].split(";")
    row = lines[-1].split(";")
    return dict(zip(head, row, strict=False))


def _int(stat: dict[str, str], key: str) -> int:
    try:
        return int(stat.get(key, "0") or 0)
    except ValueError:
        return 0


def stop_all(procs: list[Proc | None]) -> list[str]:
    """Stop every process given (None: never started), each even when one
    before it failed to stop; the failures, "name: error"."""
    errors = []
    for proc in procs:
        if proc is None:
            continue
        try:
            proc.stop()
        except Exception as e:      # keep stopping the others
            errors.append(f"{proc.name}: {e}")
    return errors


def read_rtt(workdir: Path, pid: int) -> list[float]:
    """Per-call response times (ms) of rtd 1 from SIPp's -trace_rtt file."""
    out: list[float] = []
    for path in workdir.glob(f"*_{pid}_rtt.csv"):
        for line in path.read_text(errors="replace").splitlines()[1:]:
            parts = line.split(";")
            if len(parts) >= 3 and parts[2].strip() == "1":
                try:
                    out.append(float(parts[1]))
                except ValueError:
                    pass
    return out


def _divisor_near(n: int, want: int) -> int:
    """The largest divisor of n that is <= want (SIPp's -rtt_freq)."""
    for d in range(max(1, min(want, n)), 0, -1):
        if n % d == 0:
            return d
    return 1


def sipp_time_ms(text: str | None) -> float | None:
    """SIPp's 'HH:MM:SS:uuuuuu' as milliseconds."""
    try:
        h, m, sec, us = (int(x) for x in text.split(":"))
    except (AttributeError, ValueError):
        return None
    return ((h * 60 + m) * 60 + sec) * 1000.0 + us / 1000.0


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    k = min(len(s) - 1, max(0, int(round(q * (len(s) - 1)))))
    return s[k]


class Bench:
    def __init__(self, args: argparse.Namespace, proxy: str, setup: str,
                 proxy_cmd: str | None):
        self.args = args
        self.proxy = proxy
        self.setup = setup if proxy != "none" else "direct"
        self.proxy_cmd_template = proxy_cmd
        self.label = (f"{proxy} {self.setup}" if proxy != "none"
                      else "no proxy (SIPp caller -> callee)")
        self.workdir = Path(tempfile.mkdtemp(
            prefix=f"sipfast-calls-{proxy}-{self.setup}-",
            dir=args.workdir))
        for name in ("uac.xml", "uas.xml"):
            shutil.copy(SCENARIOS / name, self.workdir / name)
        self.callee_ports = ([args.callee_port] if self.setup != "stateful"
                             else [args.callee_port, args.callee_port + 1])
        self.callees: list[Proc] = []
        self.proxy_proc: Proc | None = None
        self.runs: list[dict] = []
        self.proxy_cmdline: list[str] | None = None
        self.run_no = 0

    # -- set-up / tear-down -------------------------------------------------
    def _check_ports_free(self) -> None:
        ports = [self.args.caller_port, *self.callee_ports]
        if self.proxy != "none":
            ports.append(self.args.listen_port)
        busy = [p for p in ports if udp_port_bound(p)]
        if busy:
            raise BenchError(f"UDP port(s) {busy} already in use on this "
                             "machine: stop what holds them or pick others "
                             "(--listen-port/--callee-port/--caller-port)")

    def _kamailio_cmd(self) -> list[str]:
        cfg = KAMAILIO_CFG / f"{self.setup}.cfg"
        cmd = ["kamailio", "-f", str(cfg), "-DD", "-E",
               "-x", "tlsf", "-X", "tlsf",
               "-m", str(self.args.kamailio_shm), "-M", "16",
               "-l", f"udp:{HOST}:{self.args.listen_port}",
               "-Y", str(self.workdir), "-w", str(self.workdir)]
        if self.setup == "stateless":
            cmd += ["-A", f'CALLEE1="sip:{HOST}:{self.callee_ports[0]}"']
        else:
            ds = self.workdir / "dispatcher.list"
            ds.write_text("".join(f"1 sip:{HOST}:{p}\n"
                                  for p in self.callee_ports))
            cmd += ["-A", f'DS_LIST="{ds}"']
        return cmd

    def _custom_cmd(self) -> list[str]:
        used = template_fields(self.proxy_cmd_template)
        if self.setup != "stateful" and "callee2" in used:
            raise BenchError(
                f"the command for proxy '{self.proxy}' uses {{callee2}}, but "
                f"the {self.setup} setup has one callee ({{callee2}} would be "
                "empty): run it with --setup stateful, or give this setup "
                "its own variant")
        if self.setup == "stateful" and not used & {"callee2", "callees"}:
            log(f"warning: the command for proxy '{self.proxy}' names neither "
                "{callee2} nor {callees}: the stateful setup expects round "
                "robin over two callees")
        c = [f"{HOST}:{p}" for p in self.callee_ports]
        fields = {
            "listen_host": HOST, "listen_port": self.args.listen_port,
            "listen": f"{HOST}:{self.args.listen_port}",
            "callee1": c[0], "callee2": c[1] if len(c) > 1 else "",
            "callees": ",".join(c), "setup": self.setup,
            "workdir": str(self.workdir),
        }
        try:
            text = self.proxy_cmd_template.format(**fields)
        except (KeyError, IndexError) as e:
            raise BenchError(f"--proxy-cmd has an unknown placeholder {e}; "
                             f"known: {sorted(fields)}") from None
        cmd = shlex.split(text)
        if not cmd:
            raise BenchError(f"empty --proxy-cmd for proxy '{self.proxy}'")
        return [resolve_program(cmd[0]), *cmd[1:]]

    def command(self) -> list[str] | None:
        """The proxy's command line (None for the SIPp baseline)."""
        if self.proxy == "none":
            return None
        if self.proxy == "kamailio" and not self.proxy_cmd_template:
            return self._kamailio_cmd()
        return self._custom_cmd()

    def start(self) -> None:
        self._check_ports_free()
        self.proxy_cmdline = self.command()
        for i, port in enumerate(self.callee_ports, 1):
            cmd = ["sipp", "-sf", "uas.xml", "-i", HOST, "-p", str(port),
                   "-nostdin", "-rtcheck", "loose", "-buff_size", str(self.args.buff_size),
                   "-trace_stat", "-stf", f"callee{i}_stat.csv", "-fd", "1",
                   "-trace_err", "-error_file", f"callee{i}_errors.log"]
            proc = Proc(f"callee{i}", cmd, self.workdir)
            self.callees.append(proc)
            wait_bound(proc, port, f"SIPp callee {i}")
        if self.proxy_cmdline is None:
            return
        log(f"proxy: {shlex.join(self.proxy_cmdline)}")
        self.proxy_proc = Proc("proxy", self.proxy_cmdline, self.workdir)
        wait_bound(self.proxy_proc, self.args.listen_port,
                   f"proxy '{self.proxy}'", timeout=self.args.proxy_start_timeout)
        tree = process_tree(self.proxy_proc.pid)
        log(f"proxy pid {self.proxy_proc.pid}, {len(tree)} process(es)")

    def stop(self) -> None:
        errors = stop_all([self.proxy_proc, *self.callees])
        if errors:
            log("warning: " + "; ".join(errors))

    # -- one caller run ------------------------------------------------------
    def _callee_failed(self) -> int:
        return sum(_int(read_stat_last(self.workdir / f"callee{i}_stat.csv"),
                        "FailedCall(C)")
                   for i in range(1, len(self.callees) + 1))

    def run_rate(self, rate: int, duration: float, phase: str) -> dict:
        a = self.args
        self.run_no += 1
        tag = f"r{self.run_no:02d}_{phase}_{rate}"
        calls = max(1, int(round(rate * duration)))
        target_port = (self.callee_ports[0] if self.proxy == "none"
                       else a.listen_port)
        stat = f"{tag}_stat.csv"
        cmd = ["sipp", f"{HOST}:{target_port}", "-sf", "uac.xml",
               "-i", HOST, "-p", str(a.caller_port), "-s", "bench",
               "-r", str(rate), "-rp", "1000", "-m", str(calls),
               "-l", str(max(1000, rate * 4)),
               "-nostdin", "-rtcheck", "loose", "-buff_size", str(a.buff_size),
               "-recv_timeout", str(int(a.recv_timeout * 1000)),
               "-trace_stat", "-stf", stat, "-fd", "1",
               # SIPp writes rtt rows in blocks of -rtt_freq calls and drops
               # the last partial block at exit: make the blocks divide -m
               "-trace_rtt", "-rtt_freq", str(_divisor_near(calls, rate)),
               "-trace_err", "-error_file", f"{tag}_errors.log"]
        proxy_roots = [self.proxy_proc.pid] if self.proxy_proc else []
        sipp_roots = [c.pid for c in self.callees]
        callee_failed0 = self._callee_failed()
        cpu0, nproc = tree_cpu_ticks(proxy_roots)
        sipp0, _ = tree_cpu_ticks(sipp_roots)
        t0 = time.monotonic()
        caller = Proc(f"{tag}_caller", cmd, self.workdir)
        killed = False
        try:
            try:
                caller.popen.wait(duration + a.grace)
            except subprocess.TimeoutExpired:
                killed = True
                log(f"  caller still running {duration + a.grace:.0f} s "
                    f"after start: killing it (pid {caller.pid})")
            wall = time.monotonic() - t0
        finally:
            caller.stop()
        time.sleep(a.settle)
        cpu1, _ = tree_cpu_ticks(proxy_roots)
        sipp1, _ = tree_cpu_ticks(sipp_roots)
        callee_failed = self._callee_failed() - callee_failed0
        if self.proxy_proc and not self.proxy_proc.alive():
            raise BenchError(f"the proxy exited during the run at {rate} "
                             f"calls/s (code {self.proxy_proc.popen.returncode})"
                             f"\n{self.proxy_proc.log_tail()}")

        st = read_stat_last(self.workdir / stat)
        ok = _int(st, "SuccessfulCall(C)")
        failed = _int(st, "FailedCall(C)")
        created = _int(st, "TotalCallCreated")
        retrans = _int(st, "Retransmissions(C)")
        if killed:
            failed = max(failed, calls - ok)
        rtts = read_rtt(self.workdir, caller.pid)
        cpu_ms = (cpu1 - cpu0) * 1000.0 / CLK_TCK if proxy_roots else None
        # the rate was held if all calls were placed within the duration
        # (plus a little for start-up and the last calls to finish)
        held = wall <= duration * 1.05 + 1.5
        passed = (not killed and failed == 0 and ok == calls and held
                  and caller.popen.returncode == 0)
        run = {
            "phase": phase, "rate": rate, "duration_s": duration,
            "calls_planned": calls, "calls_created": created,
            "successful": ok, "failed": failed,
            "callee_failed": callee_failed, "retransmissions": retrans,
            "sipp_exit": caller.popen.returncode, "killed": killed,
            "wall_s": round(wall, 3),
            "achieved_cps": round(ok / wall, 1) if wall > 0 else None,
            "rate_held": held,
            "proxy_processes": nproc,
            "cpu_ms": round(cpu_ms, 1) if cpu_ms is not None else None,
            "cpu_ms_per_call": (round(cpu_ms / ok, 4)
                                if cpu_ms is not None and ok else None),
            "callee_cpu_ms_per_call": (round((sipp1 - sipp0) * 1000.0
                                             / CLK_TCK / ok, 4) if ok else None),
            # SIPp times calls with a 1 ms clock: the median is in whole ms;
            # the mean of the per-call values is finer (tick phase averages)
            "rt_mean_ms": (round(statistics.fmean(rtts), 4) if rtts
                           else sipp_time_ms(st.get("ResponseTime1(C)"))),
            "rt_median_ms": percentile(rtts, 0.5),
            "rt_p99_ms": percentile(rtts, 0.99),
            "rt_samples": len(rtts),
            "passed": passed,
            "files": {"stat": str(self.workdir / stat),
                      "errors": str(self.workdir / f"{tag}_errors.log")},
        }
        self.runs.append(run)
        cpu_txt = (f"{run['cpu_ms_per_call']:.4f} CPU-ms/call"
                   if run["cpu_ms_per_call"] is not None else "no proxy CPU")
        rt_txt = (f"RT median {_fmt(run['rt_median_ms'], '{:g}')} ms, "
                  f"mean {_fmt(run['rt_mean_ms'], '{:.3f}')} ms, "
                  f"p99 {_fmt(run['rt_p99_ms'], '{:g}')} ms")
        log(f"  {phase:8s} {rate:6d} calls/s x {duration:g} s: "
            f"{ok}/{calls} ok, {failed} failed, {retrans} retrans, "
            f"{run['achieved_cps']} calls/s achieved, {cpu_txt}, {rt_txt} "
            f"-> {'PASS' if passed else 'FAIL'}")
        if not passed:
            time.sleep(a.recover)   # let retransmissions and stuck calls die
        return run

    # -- modes ---------------------------------------------------------------
    def warmup(self) -> None:
        r = self.run_rate(self.args.warmup_rate, self.args.warmup_duration,
                          "warmup")
        if r["successful"] == 0:
            raise BenchError(
                f"warm-up: no call got through {self.label} "
                f"({r['failed']} failed). Errors: {r['files']['errors']}; "
                f"proxy log: {self.proxy_proc.log_path if self.proxy_proc else '-'}")

    def search(self, known_pass: list[int]) -> dict:
        a = self.args
        t_start = time.monotonic()
        gran = a.search_granularity
        lo = max(known_pass, default=0)
        hi = None
        rate = max(a.search_start, lo + a.search_step)
        rate = int(round(rate / gran) * gran)
        log(f"  search: stepping up by {a.search_step} calls/s from {rate}, "
            f"{a.probe_duration:g} s probes")
        while rate <= a.search_max:
            if self.run_rate(rate, a.probe_duration, "probe")["passed"]:
                lo = rate
                rate += a.search_step
            else:
                hi = rate
                break
        for _ in range(a.bisect):
            if hi is None:
                break
            mid = int(round((lo + hi) / 2 / gran) * gran)
            if mid <= lo or mid >= hi:
                break
            if self.run_rate(mid, a.probe_duration, "probe")["passed"]:
                lo = mid
            else:
                hi = mid
        cand = lo
        attempts = 0
        while cand > 0:
            if attempts >= 2 and time.monotonic() - t_start > a.search_budget:
                log(f"  search budget ({a.search_budget:.0f} s) used up: "
                    "no rate confirmed")
                return {"rate": None, "candidate": cand,
                        "note": "search budget used up before a rate passed "
                                f"{a.confirm} times in a row"}
            attempts += 1
            log(f"  confirm {cand} calls/s: {a.confirm} runs of "
                f"{a.duration:g} s in a row")
            runs = []
            for _ in range(a.confirm):
                runs.append(self.run_rate(cand, a.duration, "confirm"))
                if not runs[-1]["passed"]:
                    break
            if len(runs) == a.confirm and all(r["passed"] for r in runs):
                cpu = [r["cpu_ms_per_call"] for r in runs
                       if r["cpu_ms_per_call"] is not None]
                rt = [r["rt_median_ms"] for r in runs
                      if r["rt_median_ms"] is not None]
                rtm = [r["rt_mean_ms"] for r in runs
                       if r["rt_mean_ms"] is not None]
                return {
                    "rate": cand,
                    "lower_bound_only": hi is None,
                    "first_failing_probe": hi,
                    "achieved_cps": statistics.median(
                        r["achieved_cps"] for r in runs),
                    "cpu_ms_per_call": (round(statistics.median(cpu), 4)
                                        if cpu else None),
                    "rt_median_ms": statistics.median(rt) if rt else None,
                    "rt_mean_ms": (round(statistics.median(rtm), 4)
                                   if rtm else None),
                }
            hi = cand
            cand = int(round(cand * (1 - a.confirm_backoff / 100.0) / gran)
                       * gran)
        return {"rate": None, "note": "no rate passed"}

    def result(self, max_info: dict | None) -> dict:
        return {
            "proxy": self.proxy, "setup": self.setup, "label": self.label,
            "proxy_cmd": (shlex.join(self.proxy_cmdline)
                          if self.proxy_cmdline else None),
            "callees": [f"{HOST}:{p}" for p in self.callee_ports],
            "workdir": str(self.workdir),
            "max": max_info, "runs": self.runs,
        }


# --------------------------------------------------------------------------
# report

def _fmt(v, spec="{:.3f}", dash="–"):
    return dash if v is None else spec.format(v)


def _at(res: dict, rate: int, key: str):
    vals = [r[key] for r in res["runs"]
            if r["rate"] == rate and r["passed"] and r["phase"] == "fixed"
            and r.get(key) is not None]
    return statistics.median(vals) if vals else None


def _rt_cell(median, mean) -> str:
    if median is None and mean is None:
        return "–"
    return f"{_fmt(median, '{:g}')} / {_fmt(mean, '{:.3f}')}"


def markdown(data: dict, fixed_rates: list[int]) -> str:
    rates = sorted({r["rate"] for res in data["results"] for r in res["runs"]
                    if r["phase"] == "fixed"} | set(fixed_rates))
    head = ["proxy / setup", "max calls/s, 0 failed, 3 runs in a row",
            "CPU ms/call at max"]
    head += [f"CPU ms/call at {r}/s" for r in rates]
    head += ["RT ms median / mean at max"]
    head += [f"RT ms median / mean at {r}/s" for r in rates]
    lines = ["| " + " | ".join(head) + " |",
             "|" + "---|" * len(head)]
    for res in data["results"]:
        mx = res.get("max") or {}
        if mx.get("rate"):
            mx_txt = (("≥" if mx.get("lower_bound_only") else "")
                      + f"{mx['rate']:,}")
        else:
            mx_txt = "not searched" if not mx else "none confirmed"
        row = [res["label"], mx_txt, _fmt(mx.get("cpu_ms_per_call"))]
        for r in rates:
            ran = [x for x in res["runs"]
                   if x["rate"] == r and x["phase"] == "fixed"]
            v = _at(res, r, "cpu_ms_per_call")
            if ran and not any(x["passed"] for x in ran):
                row.append("failed")
            else:
                row.append(_fmt(v))
        row.append(_rt_cell(mx.get("rt_median_ms"), mx.get("rt_mean_ms")))
        row += [_rt_cell(_at(res, r, "rt_median_ms"), _at(res, r, "rt_mean_ms"))
                for r in rates]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def runs_markdown(data: dict) -> str:
    head = ["proxy / setup", "phase", "rate", "s", "ok", "failed",
            "retrans", "achieved/s", "CPU ms/call", "callee CPU ms/call",
            "RT ms median", "mean", "p99", "pass"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for res in data["results"]:
        for r in res["runs"]:
            lines.append("| " + " | ".join([
                res["label"], r["phase"], str(r["rate"]),
                f"{r['duration_s']:g}", str(r["successful"]), str(r["failed"]),
                str(r["retransmissions"]), _fmt(r["achieved_cps"], "{:.0f}"),
                _fmt(r["cpu_ms_per_call"], "{:.4f}"),
                _fmt(r["callee_cpu_ms_per_call"], "{:.4f}"),
                _fmt(r.get("rt_median_ms"), "{:g}"), _fmt(r.get("rt_mean_ms")),
                _fmt(r.get("rt_p99_ms"), "{:g}"),
                "yes" if r["passed"] else "NO"]) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------
# main

def tool_version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    for line in (out.stdout + out.stderr).splitlines():
        if line.strip():
            return line.strip()
    return "?"


def check_requirements(args, proxies: list[str]) -> dict:
    missing = []
    if not shutil.which("sipp"):
        missing.append("sipp (Debian package sip-tester: "
                       "`apt-get install -y sip-tester`)")
    if "kamailio" in proxies and "kamailio" not in args.proxy_cmds:
        if not shutil.which("kamailio"):
            missing.append("kamailio (Debian package kamailio, 5.6 on "
                           "Debian 12: `apt-get install -y kamailio`)")
        else:
            absent = [m for m in KAMAILIO_NEEDED_MODULES
                      if not (KAMAILIO_MODULES / f"{m}.so").exists()]
            if absent:
                missing.append(f"Kamailio modules {absent} in "
                               f"{KAMAILIO_MODULES} (Debian package kamailio)")
    if args.png:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            missing.append(f"matplotlib for this Python ({sys.executable}): "
                           "`.venv/bin/pip install matplotlib`")
    if missing:
        sys.exit("bench/calls/run.py: missing requirement(s):\n  - "
                 + "\n  - ".join(missing))
    meta = {"sipp": tool_version(["sipp", "-v"])}
    if shutil.which("kamailio"):
        meta["kamailio"] = tool_version(["kamailio", "-v"])
    return meta


def parse_args(argv):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--proxy", default="kamailio",
                   help="comma list: kamailio, none (caller -> callee "
                        "baseline), or any other name (a proxy or a variant "
                        "of one) run with --proxy-cmd; the names label the "
                        "results")
    p.add_argument("--setup", default="stateless",
                   help="comma list of stateless, stateful")
    p.add_argument("--proxy-cmd", action="append", default=[],
                   metavar="[NAME=]COMMAND",
                   help="command line of a proxy under test, with "
                        "placeholders {listen_host} {listen_port} {listen} "
                        "{callee1} {callee2} {callees} {setup} {workdir}; "
                        "repeatable: 'NAME=COMMAND' is for --proxy NAME only "
                        "(so variants get their own names), an unnamed one "
                        "for every other non-built-in --proxy name")
    p.add_argument("--show-cmd", action="store_true",
                   help="print the proxy command line of every proxy/setup "
                        "(placeholders filled, one argument per line) and "
                        "exit without starting anything")
    p.add_argument("--rates", default="500,2000",
                   help="fixed call rates (calls/s), each run once for "
                        "--duration s; '' for none")
    p.add_argument("--duration", type=float, default=20.0,
                   help="seconds per fixed-rate and per confirmation run")
    p.add_argument("--search", action="store_true",
                   help="find the highest rate with 0 failed calls, "
                        "confirmed --confirm times in a row")
    p.add_argument("--search-start", type=int, default=2000)
    p.add_argument("--search-step", type=int, default=2000)
    p.add_argument("--search-max", type=int, default=40000)
    p.add_argument("--search-granularity", type=int, default=250)
    p.add_argument("--probe-duration", type=float, default=5.0,
                   help="seconds per step-up/bisection probe")
    p.add_argument("--bisect", type=int, default=2,
                   help="bisection probes between last pass and first fail")
    p.add_argument("--confirm", type=int, default=3)
    p.add_argument("--confirm-backoff", type=float, default=10.0,
                   help="percent to step down when a confirmation fails")
    p.add_argument("--search-budget", type=float, default=300.0,
                   help="seconds after which no new confirmation is started")
    p.add_argument("--json", help="write results here (merged with the "
                   "file's other proxy/setup results unless --fresh)")
    p.add_argument("--png", help="draw rate vs CPU/call and vs response "
                   "time here (from everything in --json)")
    p.add_argument("--fresh", action="store_true",
                   help="do not keep other results already in --json")
    p.add_argument("--listen-port", type=int, default=5060)
    p.add_argument("--callee-port", type=int, default=5071,
                   help="first callee; the second is this + 1")
    p.add_argument("--caller-port", type=int, default=5061)
    p.add_argument("--grace", type=float, default=12.0,
                   help="seconds after --duration before the caller is "
                        "killed (SIPp's -timeout is not reliable)")
    p.add_argument("--recv-timeout", type=float, default=8.0,
                   help="caller's per-message receive timeout (s)")
    p.add_argument("--settle", type=float, default=1.0,
                   help="seconds after the caller ends before CPU is read")
    p.add_argument("--recover", type=float, default=3.0,
                   help="pause after a failed run")
    p.add_argument("--warmup-rate", type=int, default=200)
    p.add_argument("--warmup-duration", type=float, default=2.0)
    p.add_argument("--buff-size", type=int, default=4 * 1024 * 1024,
                   help="SIPp socket buffers (bytes)")
    p.add_argument("--kamailio-shm", type=int, default=1024,
                   help="Kamailio shared memory (MB)")
    p.add_argument("--proxy-start-timeout", type=float, default=15.0)
    p.add_argument("--workdir", default=None,
                   help="parent of the per-run working directories "
                        "(logs, SIPp stat files); default: system temp")
    args = p.parse_args(argv)
    args.proxies = [x for x in args.proxy.split(",") if x]
    args.setups = [x for x in args.setup.split(",") if x]
    bad = [s for s in args.setups if s not in SETUPS]
    if bad:
        p.error(f"unknown setup(s) {bad}; choose from {SETUPS}")
    try:
        args.proxy_cmds = parse_proxy_cmds(args.proxy_cmd, args.proxies)
    except ValueError as e:
        p.error(str(e))
    if len(set(args.proxies)) != len(args.proxies):
        p.error("--proxy lists a name twice")
    try:
        args.rate_list = [int(x) for x in args.rates.split(",") if x.strip()]
    except ValueError:
        p.error("--rates takes a comma list of integers")
    return args


def combinations(args) -> list[tuple[str, str]]:
    out = []
    for px in args.proxies:
        if px == "none":
            out.append((px, "direct"))
        else:
            out.extend((px, s) for s in args.setups)
    return out


def show_commands(args) -> int:
    """--show-cmd: print what would be started, start nothing."""
    code = 0
    for px, setup in combinations(args):
        bench = Bench(args, px, setup, args.proxy_cmds.get(px))
        try:
            cmd = bench.command()
        except BenchError as e:
            print(f"{bench.label}: ERROR: {e}")
            code = 1
            continue
        finally:
            shutil.rmtree(bench.workdir, ignore_errors=True)
        print(f"{bench.label}:")
        if cmd is None:
            print("  (no proxy: the caller talks to the callee)")
        else:
            print("  " + shlex.join(cmd))
            for i, a in enumerate(cmd):
                print(f"    argv[{i}] = {a!r}")
    return code


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv=None) -> int:
    # SIGTERM/SIGINT (also when started in the background, where SIGINT may
    # be ignored) end the run through the finally blocks that stop every
    # process by PID
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    args = parse_args(argv if argv is not None else sys.argv[1:])
    if args.show_cmd:
        return show_commands(args)
    meta = check_requirements(args, args.proxies)
    if args.png:
        sys.path.insert(0, str(HERE))
        import plot as plotmod
    meta.update({
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} CPUs, {platform.release()}",
        "command": "python " + shlex.join(["bench/calls/run.py",
                                           *(argv if argv is not None
                                             else sys.argv[1:])]),
        "clk_tck": CLK_TCK,
    })
    for path in (args.json, args.png):
        if path:
            Path(path).resolve().parent.mkdir(parents=True, exist_ok=True)
    data = {"meta": meta, "results": []}
    if args.json and not args.fresh and os.path.exists(args.json):
        with open(args.json) as f:
            old = json.load(f)
        data["results"] = old.get("results", [])
        data["meta_previous"] = old.get("meta")

    combos = combinations(args)

    t_all = time.monotonic()
    exit_code = 0
    for px, setup in combos:
        bench = Bench(args, px, setup, args.proxy_cmds.get(px))
        log(f"=== {bench.label}: work dir {bench.workdir}")
        max_info = None
        try:
            bench.start()
            bench.warmup()
            passed = []
            for rate in args.rate_list:
                if bench.run_rate(rate, args.duration, "fixed")["passed"]:
                    passed.append(rate)
            if args.search:
                max_info = bench.search(passed)
                log(f"  max: {max_info}")
        except BenchError as e:
            log(f"ERROR ({bench.label}): {e}")
            exit_code = 1
        except KeyboardInterrupt:
            log("interrupted")
            exit_code = 130
        finally:
            bench.stop()
        res = bench.result(max_info)
        data["results"] = [r for r in data["results"]
                           if (r["proxy"], r["setup"]) != (px, bench.setup)]
        data["results"].append(res)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(data, f, indent=1)
        if exit_code == 130:
            break

    print()
    print(markdown(data, args.rate_list))
    print()
    print(runs_markdown(data))
    print()
    log(f"total {time.monotonic() - t_all:.0f} s")
    if args.json:
        log(f"wrote {args.json}")
    if args.png:
        plotmod.plot(data, args.png)
        log(f"wrote {args.png}")
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
