"""Run Kamailio 5.6 (Debian package ``kamailio``) as a neighbouring proxy in the tests.

In the foreground (``-DD -E``, TLSF memory managers ``-x tlsf -X tlsf``), with a config
of ``kamailio/`` and its own free loopback port, no database; stopped by its PID
(SIGTERM, which ends its children, then SIGKILL).  Its stderr goes to ``kamailio.log``
in the working directory.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from . import sipp
from .wire import require

CONFIGS = Path(__file__).parent / "kamailio"
MODULES = Path("/usr/lib/x86_64-linux-gnu/kamailio/modules")
NEEDED_MODULES = ("tm", "sl", "rr", "maxfwd", "siputils", "pv", "textops", "xlog")


def require_kamailio() -> str:
    """Path of ``kamailio`` 5.x with the modules the configs load; fails, never skips."""
    path = require("kamailio", "kamailio")
    absent = [m for m in NEEDED_MODULES if not (MODULES / f"{m}.so").exists()]
    if absent:
        import pytest

        pytest.fail(f"Kamailio modules {absent} missing from {MODULES}: "
                    "`apt-get install kamailio`", pytrace=False)
    return path


@contextlib.contextmanager
def kamailio(next_hop: str, *, workdir: Path, config: str = "neighbour.cfg",
             ip: str = "127.0.0.1", port: int | None = None,
             ) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """A running Kamailio on ``ip:port`` relaying new dialogs to ``next_hop`` (a SIP URI)."""
    binary = require_kamailio()
    port = port or sipp.free_port(ip)
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "kamailio.log"
    cmd = [binary, "-f", str(CONFIGS / config), "-DD", "-E", "-x", "tlsf", "-X", "tlsf",
           "-m", "64", "-M", "8", "-l", f"udp:{ip}:{port}",
           "-A", f'NEXT_HOP="{next_hop}"', "-Y", str(workdir), "-w", str(workdir)]
    with open(log, "wb") as err:
        proc = subprocess.Popen(cmd, cwd=workdir, stdin=subprocess.DEVNULL, stdout=err,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        end = time.monotonic() + 15
        while True:
            assert proc.poll() is None, (
                f"kamailio exited ({proc.returncode}) at start:\n{log.read_text()[-3000:]}")
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                try:
                    s.bind((ip, port))
                except OSError:
                    break  # Kamailio holds its port
            assert time.monotonic() < end, f"kamailio did not bind {ip}:{port}"
            time.sleep(0.05)
        yield port, proc
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait()


def log_errors(workdir: Path) -> list[str]:
    """Lines of Kamailio's log at ERROR level or above (the config logs only those)."""
    try:
        text = (workdir / "kamailio.log").read_text(errors="replace")
    except FileNotFoundError:
        return []
    return [ln for ln in text.splitlines() if " ERROR: " in ln or "CRITICAL" in ln]
