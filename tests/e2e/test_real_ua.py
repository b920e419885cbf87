"""A real user agent calls through sipfast: baresip -> `sipfast proxy` -> baresip.

Both baresip 1.0 instances run headless: the audio source is ``aufile`` playing an
8 kHz sine wave written by the test, there is no audio player module (received audio
is decoded and dropped), G.711 PCMU.  The callee auto-answers (account parameter
``answermode=auto``); the caller has sipfast as its outbound proxy (a Route to it on
every request) and dials the callee's own address, since sipfast has no registrar yet.
The test drives the caller over baresip's ``ctrl_tcp`` interface (JSON in netstrings):
dial, wait for the call to be established, let audio flow, hang up.

Judged on a loopback capture (``wire.capture``) and by baresip itself: every SIP message
went through sipfast (INVITE, 180, 200, ACK, BYE, 200, none directly between the user
agents), RTP flowed both ways between the ports and SSRCs each side announced in its
SDP, each baresip reports RTP packets sent and received, and the call ended with BYE
answered 200.  (Media goes user agent to user agent: sipfast does not anchor it yet.)
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

import pytest

from . import sipp
from .proxyproc import free_udp_port, proxy, stop
from .wire import capture, require

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


@pytest.mark.parametrize("mode", ["stateless", "stateful-registered"])
def test_baresip_calls_baresip_through_sipfast(tmp_path, mode):
    """stateless: the caller dials the callee's own address via sipfast as
    outbound proxy.  stateful-registered: both register with the stateful
    sipfast (its registrar) and the caller dials bob's address of record
    at sipfast, which finds bob's contact in its location service."""
    require_baresip()
    wav = tmp_path / "sine-8k.wav"
    write_sine(wav)
    pport = free_udp_port(IP)
    registered = mode == "stateful-registered"
    domain = f"{IP}:{pport}" if registered else IP
    regint = 600 if registered else 0
    agents: list[Baresip] = []
    try:
        with proxy("--record-route", "--workers", "1", port=pport, cwd=tmp_path,
                   stateless=not registered) as (_, sf_proc):
            callee = Baresip("callee", tmp_path,
                             f'<sip:bob@{domain}>;regint={regint};answermode=auto'
                             + (f';outbound="sip:{IP}:{pport}"' if registered else ""), wav)
            agents.append(callee)
            caller = Baresip("caller", tmp_path,
                             f'<sip:alice@{domain}>;regint={regint};outbound="sip:{IP}:{pport}"',
                             wav)
            agents.append(caller)
            if registered:
                callee.wait_registered()
                caller.wait_registered()
            with capture([pport, *caller.ports, *callee.ports],
                         workdir=tmp_path / "wire") as wire:
                target = f"sip:bob@{domain}" if registered else f"sip:bob@{IP}:{callee.sip_port}"
                assert caller.command("dial", target)["ok"]
                caller.event("CALL_ESTABLISHED")
                caller.event("CALL_RTPESTAB")  # baresip saw the callee's RTP arrive
                callee.event("CALL_ESTABLISHED")
                time.sleep(HOLD_S)
                assert caller.command("hangup")["ok"]
                closed = caller.event("CALL_CLOSED")
                callee.event("CALL_CLOSED")
            counters = stop(sf_proc)
    finally:
        outputs = {a.name: a.stop() for a in agents}
    print(f"sipfast {counters}; caller closed: {closed.get('param')}")

    s, c, e = pport, caller.sip_port, callee.sip_port
    to_proxy_invite = wire.sip_between(c, s, "INVITE")[0]
    # No SIP went directly between the user agents: all of it through sipfast.
    assert not wire.sip_between(c, e) and not wire.sip_between(e, c)
    for method in ("INVITE", "ACK", "BYE"):
        to_proxy = wire.sip_between(c, s, method)
        to_callee = wire.sip_between(s, e, method)
        assert len(to_proxy) == len(to_callee) == 1, (method, to_proxy, to_callee)
        # The caller's outbound proxy Route, popped by sipfast, which adds its Via.
        assert to_proxy[0].header("Route").startswith(f"<sip:{IP}:{s};lr")
        assert not to_callee[0].header_values("Route")
        assert to_callee[0].header("Via").startswith(f"SIP/2.0/UDP {IP}:{s};branch=z9hG4bK")
        assert to_callee[0].request_uri.startswith("sip:bob")
    assert f"<sip:{IP}:{s};lr>" in wire.sip_between(s, e, "INVITE")[0].header("Record-Route")
    statuses = [(m.status, m.cseq_method) for m in wire.sip_between(s, c)]
    relayed = [(180, "INVITE"), (200, "INVITE"), (200, "BYE")]
    # the stateful proxy answers the INVITE with its own 100 Trying first
    assert statuses == ([(100, "INVITE")] if registered else []) + relayed, statuses
    assert [(m.status, m.cseq_method) for m in wire.sip_between(e, s)] == relayed
    if registered:
        # the INVITE for bob's address of record went to bob's registered contact
        assert to_proxy_invite.request_uri == f"sip:bob@{domain}"
        assert re.match(rf"sip:bob[^@]*@{IP}:{e}\b",
                        wire.sip_between(s, e, "INVITE")[0].request_uri)
        assert counters["lookups"] == 1
    assert closed["param"] == "Connection reset by user"  # our hangup: BYE sent, 200 back

    # RTP both ways between the ports and SSRCs the two SDPs announced.
    caller_rtp, caller_ssrc = sdp_media(wire.sip_between(c, s, "INVITE")[0])
    ok = next(m for m in wire.sip_between(s, c) if m.status == 200)
    callee_rtp, callee_ssrc = sdp_media(ok)
    forward = [d for d in wire.between(caller_rtp, callee_rtp) if d.is_rtp]
    backward = [d for d in wire.between(callee_rtp, caller_rtp) if d.is_rtp]
    print(f"RTP on the wire: caller->callee {len(forward)}, callee->caller {len(backward)}")
    assert len(forward) >= MIN_PACKETS and len(backward) >= MIN_PACKETS
    assert {struct.unpack("!I", d.payload[8:12])[0] for d in forward} == {caller_ssrc}
    assert {struct.unpack("!I", d.payload[8:12])[0] for d in backward} == {callee_ssrc}
    assert {d.payload[1] & 0x7F for d in forward + backward} == {0}  # PCMU

    # baresip's own count of the call's RTP, each side sent and received.
    for name, out in outputs.items():
        sent, received = rtp_stats(out)
        print(f"baresip {name}: RTP sent {sent}, received {received}")
        assert sent >= MIN_PACKETS and received >= MIN_PACKETS, (name, sent, received)
    c_sent, c_received = rtp_stats(outputs["caller"])
    assert c_sent <= len(forward) and c_received <= len(backward)

    assert counters["forwarded_requests"] == 3  # INVITE, ACK, BYE
    assert counters["forwarded_responses"] == 3  # 180, 200, 200
    assert counters["dropped"] == counters["malformed"] == counters["send_errors"] == 0
