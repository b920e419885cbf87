"""baresip 1.0 (Debian baresip-core) as a real user agent for the end-to-end tests.

Each :class:`Baresip` runs headless with its own config directory: the audio source is
``aufile`` playing an 8 kHz sine wave (``write_sine``), no audio player module (received
audio is decoded and dropped), G.711 PCMU only.  It is driven over its ``ctrl_tcp``
interface (JSON in netstrings) and ended by PID.  ``rtp_stats`` reads baresip's own RTP
count of the call from its log, ``sdp_media`` the port and SSRC an SDP body announced.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import signal
import socket
import struct
import subprocess
import time
import wave
from pathlib import Path

from . import sipp
from .wire import require

IP = "127.0.0.1"
MODULES = Path("/usr/lib/baresip/modules")
HOLD_S = 2.0  # audio time of the call (not asserted on: packet counts are)
MIN_PACKETS = 25  # half a second of 20 ms packets, far below what HOLD_S gives


def require_baresip() -> str:
    path = require("baresip", "baresip-core")
    absent = [m for m in ("g711", "aufile", "account", "menu", "ctrl_tcp")
              if not (MODULES / f"{m}.so").exists()]
    if absent:
        import pytest

        pytest.fail(f"baresip modules {absent} missing from {MODULES}: "
                    "`apt-get install baresip-core`", pytrace=False)
    return path


def write_sine(path: Path, seconds: int = 10) -> None:
    """A 440 Hz sine, 8 kHz mono 16-bit: aufile needs the codec's sample rate."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i
                                                                       / 8000)))
                               for i in range(8000 * seconds)))


class Baresip:
    """One baresip process with its own config directory, ended by PID."""

    def __init__(self, name: str, workdir: Path, account: str, wav: Path):
        self.name = name
        self.dir = workdir / name
        self.dir.mkdir(parents=True)
        # baresip also listens on TCP (sip port) and TLS (sip port + 1).
        self.sip_port = sipp.free_port(IP, span=2)
        self.ctrl_port = sipp.free_port(IP)
        self.rtp_ports = sipp.free_port(IP, span=10)
        (self.dir / "config").write_text("\n".join([
            "poll_method epoll",
            f"sip_listen {IP}:{self.sip_port}",
            f"net_interface {IP}",
            f"audio_source aufile,{wav}",
            f"audio_alert aufile,{wav}",
            f"rtp_ports {self.rtp_ports}-{self.rtp_ports + 9}",
            "rtp_stats yes",
            f"module_path {MODULES}",
            "module g711.so",
            "module aufile.so",
            "module_app account.so",
            "module_app menu.so",
            "module_app ctrl_tcp.so",
            f"ctrl_tcp_listen {IP}:{self.ctrl_port}",
            "",
        ]))
        (self.dir / "accounts").write_text(account + "\n")
        (self.dir / "contacts").write_text("")
        self.log = self.dir / "baresip.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [require_baresip(), "-f", str(self.dir)], cwd=self.dir,
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)
        self.sock = self._connect()
        self.buf = b""
        self.events: list[dict] = []

    @property
    def ports(self) -> list[int]:
        return [self.sip_port, *range(self.rtp_ports, self.rtp_ports + 10)]

    def _connect(self, timeout_s: float = 15.0) -> socket.socket:
        end = time.monotonic() + timeout_s
        while True:
            assert self.proc.poll() is None, f"baresip {self.name} exited:\n{self.output()}"
            with contextlib.suppress(OSError):
                s = socket.create_connection((IP, self.ctrl_port), timeout=1)
                s.settimeout(0.2)
                return s
            assert time.monotonic() < end, f"baresip {self.name}: no ctrl_tcp\n{self.output()}"
            time.sleep(0.05)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_registered(self, timeout_s: float = 15.0) -> None:
        """Until baresip logs its registrar's 200 (the REGISTER_OK event may
        come before the control connection is up)."""
        end = time.monotonic() + timeout_s
        while "200 OK () [1 binding]" not in self.output():
            assert self.proc.poll() is None, f"baresip {self.name} exited:\n{self.output()}"
            assert time.monotonic() < end, f"baresip {self.name} not registered\n{self.output()}"
            time.sleep(0.05)

    def command(self, command: str, params: str = "") -> dict:
        body = json.dumps({"command": command, "params": params, "token": command}).encode()
        self.sock.sendall(str(len(body)).encode() + b":" + body + b",")
        return self.wait_for(lambda m: m.get("response") and m.get("token") == command,
                             f"response to {command}")

    def _read(self) -> None:
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return
        assert data, f"baresip {self.name} closed its control connection"
        self.buf += data
        while b":" in self.buf:
            size, rest = self.buf.split(b":", 1)
            if len(rest) < int(size) + 1:
                break
            self.events.append(json.loads(rest[: int(size)]))
            self.buf = rest[int(size) + 1 :]

    def wait_for(self, match, what: str, timeout_s: float = 15.0) -> dict:
        """The first message (event or response) ``match`` accepts, waiting if needed."""
        end = time.monotonic() + timeout_s
        seen = 0
        while True:
            for m in self.events[seen:]:
                if match(m):
                    return m
            seen = len(self.events)
            assert time.monotonic() < end, (
                f"baresip {self.name}: no {what} in {timeout_s} s; events "
                f"{[e.get('type') for e in self.events]}\n{self.output()[-3000:]}")
            self._read()

    def event(self, kind: str, timeout_s: float = 15.0) -> dict:
        return self.wait_for(lambda m: m.get("event") and m.get("type") == kind, kind,
                             timeout_s)

    def call(self, callee: Baresip, target: str, hold_s: float = HOLD_S) -> dict:
        """Dial `target` and talk to `callee`: both ends established and
        the callee's RTP arrived here (CALL_RTPESTAB), `hold_s` of audio,
        then hang up; this end's CALL_CLOSED event (both ends closed)."""
        assert self.command("dial", target)["ok"]
        self.event("CALL_ESTABLISHED")
        self.event("CALL_RTPESTAB")
        callee.event("CALL_ESTABLISHED")
        time.sleep(hold_s)
        assert self.command("hangup")["ok"]
        closed = self.event("CALL_CLOSED")
        callee.event("CALL_CLOSED")
        return closed

    def stop(self) -> str:
        with contextlib.suppress(OSError):
            self.sock.close()
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.output()


def rtp_stats(output: str) -> tuple[int, int]:
    """(sent, received) RTP packets of the call, from baresip's ``rtp_stats`` table."""
    found = re.findall(r"^packets:\s+(\d+)\s+(\d+)", output, re.M)
    assert len(found) == 1, f"expected one call's RTP statistics:\n{output[-3000:]}"
    return int(found[0][0]), int(found[0][1])


def sdp_media(msg: sipp.SipMessage) -> tuple[int, int]:
    """(audio port, SSRC) of an SDP body."""
    port = re.search(r"^m=audio (\d+) RTP/AVP", msg.body, re.M)
    ssrc = re.search(r"^a=ssrc:(\d+)", msg.body, re.M)
    assert port and ssrc, msg.body
    return int(port.group(1)), int(ssrc.group(1))
