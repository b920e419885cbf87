"""The loopback demo topology: SIPp caller -> sipfast proxy -> SIPp callee.

Started by ``sipfast demo``; every process is ours, started here and ended
by PID; every run is bounded in calls and time.
"""

from __future__ import annotations

import csv
import os
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
class Result:
    """What one demo run measured."""

    calls: int
    successful: int
    failed: int
    unexpected: int
    seconds: float
    proxy_cpu_ms_per_call: float
    proxy_stats: str


def run_calls(calls: int = 2000, rate: int = 400, workers: int = 1,
              out: TextIO = sys.stdout) -> Result:
    """Place ``calls`` calls at ``rate`` calls/s through a stateless sipfast
    proxy between a SIPp caller and callee on 127.0.0.1."""
    sipp = shutil.which("sipp")
    if sipp is None:
        raise RuntimeError("sipp not found: install Debian's sip-tester (./dev.sh does)")
    sipfast_cmd = [sys.executable, "-m", "sipfast"]
    uas_port, proxy_port, uac_port = free_udp_port(), free_udp_port(), free_udp_port()
    with tempfile.TemporaryDirectory(prefix="sipfast-demo-") as tmp:
        uas = subprocess.Popen(
            [sipp, "-sn", "uas", "-i", "127.0.0.1", "-p", str(uas_port), "-mp", "0",
             "-nostdin", "-timeout", str(calls // rate + 60)],
            cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        prx = subprocess.Popen(
            [*sipfast_cmd, "proxy", "--listen", f"udp:127.0.0.1:{proxy_port}", "--stateless",
             "--route", f"sip:127.0.0.1:{uas_port}", "--workers", str(workers),
             "--log-level", "warning"],
            cwd=tmp, stderr=subprocess.PIPE, text=True)
        try:
            assert prx.stderr is not None
            line = prx.stderr.readline()
            if "ready" not in line:
                raise RuntimeError(f"proxy did not start: {line.strip()}")
            out.write(f"callee: sipp uas on 127.0.0.1:{uas_port} (pid {uas.pid})\n"
                      f"proxy:  sipfast proxy --stateless on 127.0.0.1:{proxy_port} "
                      f"(pid {prx.pid}, {workers} worker(s))\n"
                      f"caller: sipp uac, {calls} calls at {rate} calls/s ...\n")
            out.flush()
            cpu0 = tree_cpu_seconds(prx.pid)
            t0 = time.monotonic()
            uac = subprocess.run(
                [sipp, "-sn", "uac", f"127.0.0.1:{proxy_port}", "-i", "127.0.0.1",
                 "-p", str(uac_port), "-m", str(calls), "-r", str(rate), "-l", str(rate),
                 "-timeout", str(calls // rate + 30), "-nostdin",
                 "-trace_stat", "-stf", "stat.csv"],
                cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                timeout=calls // rate + 60, check=False)
            seconds = time.monotonic() - t0
            cpu1 = tree_cpu_seconds(prx.pid)
            rows = list(csv.reader(Path(tmp, "stat.csv").open(), delimiter=";"))
            head, last = rows[0], rows[-1]
            get = lambda k: int(last[head.index(k)])  # noqa: E731
            prx.send_signal(signal.SIGTERM)
            _, err = prx.communicate(timeout=10)
            stats = " ".join(line for line in err.splitlines() if "stopped" in line)
        finally:
            end(prx)
            end(uas)
    del uac
    return Result(calls, get("SuccessfulCall(C)"), get("FailedCall(C)"),
                  get("OutOfCallMsgs(C)"), seconds, (cpu1 - cpu0) * 1000 / calls, stats)
