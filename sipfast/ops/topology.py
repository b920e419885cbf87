"""The loopback demo topologies of ``sipfast demo``.

* the balancer: SIPp callers -> ``sipfast lb`` (first responder, redirect)
  over a pool of three stateful ``sipfast proxy`` -> SIPp callee; each call
  is probed to every member, the caller is sent to the winner and completes
  its call through it;
Every process is ours, started here and ended by PID; every run is bounded
in calls and time.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

CLK_TCK = os.sysconf("SC_CLK_TCK")
SCENARIOS = Path(__file__).with_name("scenarios")


def free_udp_port(host: str = "127.0.0.1") -> int:
    """A UDP port nobody holds right now on host."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process and its waited-for children (/proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # fields[11:15] = utime stime cutime cstime (after the state field)
    return sum(int(x) for x in fields[11:15]) / CLK_TCK


def tree_cpu_seconds(pid: int) -> float:
    """cpu_seconds of pid and of its live children (proxy workers)."""
    total = cpu_seconds(pid)
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        for child in children.read_text().split():
            try:
                total += cpu_seconds(int(child))
            except (FileNotFoundError, ProcessLookupError):
                pass
    return total


def end(proc: subprocess.Popen[bytes] | subprocess.Popen[str], timeout: float = 10) -> None:
    """Terminate a process we started, by its PID; kill it if it lingers."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class LbResult:
    """What one balancer demo run measured."""

    calls: int
    successful: int
    failed: int
    unexpected: int
    seconds: float
    lb_cpu_ms_per_call: float
    wins: list[int]
    probes: int
    cancels: int


def _start(cmd: list[str], cwd: str) -> subprocess.Popen[str]:
    """Start a sipfast process and wait for its "ready" line."""
    proc = subprocess.Popen(cmd, cwd=cwd, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    line = proc.stderr.readline()
    if "ready" not in line:
        end(proc)
        raise RuntimeError(f"{' '.join(cmd[:4])} did not start: {line.strip()}")
    return proc


def stopped_counters(stderr: str) -> dict[str, int]:
    """The counters a sipfast process printed when it stopped ("... stopped:
    {json}"), summed over its workers (whose lines may run together on a
    shared stderr pipe)."""
    totals: dict[str, int] = {}
    for found in re.findall(r"stopped: (\{[^{}]*\})", stderr):
        for k, v in json.loads(found).items():
            totals[k] = totals.get(k, 0) + v
    return totals


def _counters(proc: subprocess.Popen[str]) -> dict[str, int]:
    """SIGTERM a sipfast process; the counters it printed when it stopped."""
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=15)
    return stopped_counters(err)


def run_balancer(calls: int = 2000, rate: int = 200, members: int = 3,
                 out: TextIO = sys.stdout) -> LbResult:
    """Place ``calls`` calls through ``sipfast lb`` over ``members`` sipfast
    proxies: SIPp follows each 302 to the winner ([next_url] / setdest)."""
    sipp = shutil.which("sipp")
    if sipp is None:
        raise RuntimeError("sipp not found: install Debian's sip-tester (./dev.sh does)")
    sf = [sys.executable, "-m", "sipfast"]
    ip = "127.0.0.1"
    uas_port, lb_port, uac_port = free_udp_port(), free_udp_port(), free_udp_port()
    procs: list[subprocess.Popen[str]] = []
    with tempfile.TemporaryDirectory(prefix="sipfast-demo-") as tmp:
        uas = subprocess.Popen(
            [sipp, "-sf", str(SCENARIOS / "uas.xml"), "-i", ip, "-p", str(uas_port),
             "-mp", "0", "-nostdin", "-timeout", str(calls // rate + 60)],
            cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            ports = []
            for _ in range(members):
                port = free_udp_port()
                procs.append(_start([*sf, "proxy", "--listen", f"udp:{ip}:{port}", "--route",
                                     f"sip:{ip}:{uas_port}", "--record-route", "--workers", "1",
                                     "--log-level", "warning"], tmp))
                ports.append(port)
            lb = _start([*sf, "lb", "--listen", f"udp:{ip}:{lb_port}", "--workers", "1",
                         "--log-level", "warning",
                         *[a for p in ports for a in ("--pool", f"sip:{ip}:{p}")]], tmp)
            procs.append(lb)
            out.write(f"callee:   sipp on {ip}:{uas_port}\n"
                      f"pool:     {members} x sipfast proxy (stateful, record-route) on "
                      f"{', '.join(str(p) for p in ports)}\n"
                      f"balancer: sipfast lb (first responder, redirect) on {ip}:{lb_port}\n"
                      f"caller:   sipp, {calls} calls at {rate} calls/s, following each 302 "
                      "to the winner ...\n")
            out.flush()
            cpu0 = tree_cpu_seconds(lb.pid)
            t0 = time.monotonic()
            subprocess.run(
                [sipp, "-sf", str(SCENARIOS / "uac_redirect.xml"), f"{ip}:{lb_port}",
                 "-i", ip, "-p", str(uac_port), "-m", str(calls), "-r", str(rate),
                 "-l", str(rate), "-timeout", str(calls // rate + 30), "-nostdin",
                 "-trace_stat", "-stf", "stat.csv"],
                cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                timeout=calls // rate + 60, check=False)
            seconds = time.monotonic() - t0
            cpu1 = tree_cpu_seconds(lb.pid)
            rows = list(csv.reader(Path(tmp, "stat.csv").open(), delimiter=";"))
            head, last = rows[0], rows[-1]
            get = lambda k: int(last[head.index(k)])  # noqa: E731
            lbc = _counters(lb)
        finally:
            for proc in procs:
                end(proc)
            end(uas)
    return LbResult(calls, get("SuccessfulCall(C)"), get("FailedCall(C)"),
                    get("OutOfCallMsgs(C)"), seconds, (cpu1 - cpu0) * 1000 / calls,
                    [lbc.get(f"member{i}_wins", 0) for i in range(members)],
                    lbc.get("probes_sent", 0), lbc.get("cancels_sent", 0))
