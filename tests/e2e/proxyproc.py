"""Run `sipfast proxy` and `sipfast lb` as a user would, for the end-to-end tests."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from sipfast.ops.topology import stopped_counters

SIPFAST = Path(sys.executable).with_name("sipfast")
IP = "127.0.0.1"


def free_udp_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                       socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@contextmanager
def running(cmd: list[str], cwd: str | Path) -> Iterator[subprocess.Popen[str]]:
    """A sipfast process that has printed its "ready" line, started from
    cwd (never the source tree, so the installed build runs); stopped by
    its PID afterwards."""
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, cwd=cwd)
    try:
        assert proc.stderr is not None
        line = ""
        deadline = time.monotonic() + 20
        while "ready" not in line and time.monotonic() < deadline:
            line = proc.stderr.readline()
            assert line or proc.poll() is None, f"{cmd[1]} exited early"
        assert "ready" in line
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def proxy(*args: str, port: int | None = None, host: str = "127.0.0.1",
          cwd: str | Path = "/", stateless: bool = True,
          ) -> Iterator[tuple[int, subprocess.Popen[str]]]:
    """A running `sipfast proxy` (with ``--stateless`` unless told
    otherwise) on host (a free port unless given)."""
    port = port or free_udp_port(host)
    listen = f"udp:[{host}]:{port}" if ":" in host else f"udp:{host}:{port}"
    with running([str(SIPFAST), "proxy", "--listen", listen,
                  *(("--stateless",) if stateless else ()), *args], cwd) as proc:
        yield port, proc


def stop(proc: subprocess.Popen[str]) -> dict[str, int]:
    """SIGTERM the proxy; its counters summed over workers."""
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    return stopped_counters(err)


@contextmanager
def balancer(pool: list[int], *args: str, cwd: Path
             ) -> Iterator[tuple[int, subprocess.Popen[str]]]:
    """A running `sipfast lb` over the pool ports; stopped by its PID."""
    port = free_udp_port(IP)
    with running([str(SIPFAST), "lb", "--listen", f"udp:{IP}:{port}", "--workers", "1",
                  *[a for p in pool for a in ("--pool", f"sip:{IP}:{p}")], *args], cwd) as proc:
        yield port, proc


def members(stack: ExitStack, n: int, callee_port: int, cwd: Path) -> list[tuple[int, object]]:
    """n stateful, record-routing `sipfast proxy` pool members (in ``stack``), each
    routing what it relays to the callee on callee_port."""
    return [stack.enter_context(proxy("--route", f"sip:{IP}:{callee_port}", "--record-route",
                                      "--workers", "1", stateless=False, cwd=cwd))
            for _ in range(n)]
