"""Judge the end-to-end tests on the wire: a packet capture of the loopback interface.

``capture(ports)`` runs Wireshark's ``dumpcap`` (Debian package ``tshark``) on ``lo``
with a filter on the given UDP ports while the test runs, and gives back every UDP
datagram seen, in order, as :class:`Datagram` (source, destination, payload).  Start and
end of the capture are proven with probe datagrams (to a port of the filter that nobody
listens on): the capture is ready once the first probe is in its file, and complete once
the last one is, so no packet of the test is lost at either end.  dumpcap is ended by
PID (SIGINT, then SIGKILL).  SIP payloads are read with the SIPp trace parser of
``sipp.py``, not with sipfast's own parser (the code under test).

``require(tool, package)`` fails the test (never skips) when a program is missing, as
``sipp.require_sipp`` does.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from . import sipp

IP = "127.0.0.1"


def require(tool: str, package: str) -> str:
    """Path of ``tool``; fails the test loudly (never skips) when it is missing."""
    found = shutil.which(tool) or next(
        (p for p in (f"/usr/sbin/{tool}", f"/sbin/{tool}") if os.access(p, os.X_OK)), None)
    if found is None:
        import pytest

        pytest.fail(
            f"{tool} not found on $PATH: this end-to-end test needs it; install the "
            f"Debian package, e.g. `apt-get install {package}` (./dev.sh setup does)",
            pytrace=False,
        )
    return found


@dataclass(frozen=True)
class Datagram:
    src: tuple[str, int]
    dst: tuple[str, int]
    payload: bytes

    def sip(self) -> sipp.SipMessage:
        """The payload as a SIP message (raises ValueError if it is not one)."""
        text = self.payload.decode("utf-8", errors="replace").replace("\r\n", "\n")
        first, headers, body, _ = sipp._parse_sip(text)
        if not sipp._START_LINE.match(first):
            raise ValueError(f"not SIP: {first[:60]!r}")
        return sipp.SipMessage("wire", "UDP", "", first, headers, body)

    @property
    def is_rtp(self) -> bool:
        """RTP version 2 with an audio/video payload type (not RTCP's 200-204)."""
        p = self.payload
        return len(p) >= 12 and p[0] >> 6 == 2 and not 72 <= (p[1] & 0x7F) <= 76


# pcap link types we may meet on Linux loopback captures -> link-layer header length
_LINK_HEADER = {0: 4, 1: 14, 12: 0, 101: 0, 113: 16, 276: 20}


def read_pcap(path: str | os.PathLike) -> list[Datagram]:
    """The IPv4 UDP datagrams of a classic pcap file, in capture order."""
    data = Path(path).read_bytes()
    if len(data) < 24:
        return []
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:
        raise ValueError(f"{path}: not a pcap file (magic {magic.hex()})")
    linktype = struct.unpack(endian + "I", data[20:24])[0] & 0x0FFFFFFF
    if linktype not in _LINK_HEADER:
        raise ValueError(f"{path}: link type {linktype} not handled")
    skip = _LINK_HEADER[linktype]
    out: list[Datagram] = []
    pos = 24
    while pos + 16 <= len(data):
        incl = struct.unpack(endian + "I", data[pos + 8 : pos + 12])[0]
        frame = data[pos + 16 : pos + 16 + incl]
        pos += 16 + incl
        ip = frame[skip:]
        if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != 17:
            continue
        ihl = (ip[0] & 0x0F) * 4
        total = struct.unpack("!H", ip[2:4])[0]
        udp = ip[ihl:total]
        if len(udp) < 8:
            continue
        sport, dport, ulen = struct.unpack("!HHH", udp[:6])
        out.append(Datagram((socket.inet_ntoa(ip[12:16]), sport),
                            (socket.inet_ntoa(ip[16:20]), dport), bytes(udp[8:ulen])))
    return out


@dataclass
class Capture:
    """What dumpcap saw: the datagrams between the probes, and its own drop count."""

    pcap: Path
    datagrams: list[Datagram] = field(default_factory=list)
    dumpcap_report: str = ""

    def between(self, a: int, b: int) -> list[Datagram]:
        """Datagrams from port a to port b (loopback)."""
        return [d for d in self.datagrams if d.src[1] == a and d.dst[1] == b]

    def sip_between(self, a: int, b: int, method: str | None = None) -> list[sipp.SipMessage]:
        """SIP requests (of ``method``) and responses (method None) from port a to b."""
        out = []
        for d in self.between(a, b):
            try:
                m = d.sip()
            except ValueError:
                continue
            if method is None or m.method == method:
                out.append(m)
        return out


_PROBE = b"sipfast-capture-probe"


def _probe_seen(pcap: Path, token: bytes) -> bool:
    try:
        return any(d.payload == token for d in read_pcap(pcap))
    except (OSError, ValueError, struct.error):
        return False  # no file yet, or a record still being written


def _probe(sock: socket.socket, port: int, token: bytes, pcap: Path, proc, timeout_s: float):
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"dumpcap exited ({proc.returncode})")
        sock.sendto(token, (IP, port))
        deadline = time.monotonic() + 0.2
        while time.monotonic() < deadline:
            if _probe_seen(pcap, token):
                return
            time.sleep(0.02)
    raise RuntimeError(f"dumpcap did not capture its probe {token!r} in {timeout_s} s")


@contextlib.contextmanager
def capture(ports: Iterable[int], *, workdir: str | os.PathLike | None = None,
            timeout_s: float = 10.0) -> Iterator[Capture]:
    """Capture UDP on ``lo`` to/from ``ports`` for the duration of the ``with`` block."""
    dumpcap = require("dumpcap", "tshark")
    workdir = Path(workdir or tempfile.mkdtemp(prefix="capture-"))
    workdir.mkdir(parents=True, exist_ok=True)
    probe_port = sipp.free_port(IP)
    ports = sorted(set(ports) | {probe_port})
    bpf = "udp and host 127.0.0.1 and (" + " or ".join(f"port {p}" for p in ports) + ")"
    result = Capture(workdir / "wire.pcap")
    err_path = workdir / "dumpcap.err"
    with open(err_path, "wb") as err:
        proc = subprocess.Popen(
            [dumpcap, "-i", "lo", "-f", bpf, "-P", "-B", "64", "-s", "0",
             "-w", str(result.pcap)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
            start_new_session=True)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        _probe(sock, probe_port, _PROBE + b" start", result.pcap, proc, timeout_s)
        yield result
        _probe(sock, probe_port, _PROBE + b" end", result.pcap, proc, timeout_s)
    finally:
        sock.close()
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGINT)  # by PID: dumpcap closes its file
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        result.dumpcap_report = err_path.read_text(errors="replace")
    datagrams = read_pcap(result.pcap)
    starts = [i for i, d in enumerate(datagrams) if d.payload == _PROBE + b" start"]
    ends = [i for i, d in enumerate(datagrams) if d.payload == _PROBE + b" end"]
    lo, hi = starts[0] + 1, ends[-1]
    result.datagrams = [d for d in datagrams[lo:hi] if not d.payload.startswith(_PROBE)]
    dropped = re.search(r"received/dropped on interface '[^']*': \d+/(\d+)",
                        result.dumpcap_report)
    assert dropped is None or dropped.group(1) == "0", (
        f"dumpcap dropped packets, the capture is incomplete:\n{result.dumpcap_report}")
