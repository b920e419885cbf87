"""TCP framing of the compiled proxy on the wire (RFC 3261 §18.3, RFC 5626
§3.5.1): split and pipelined messages, keep-alive ping/pong, a stream that
cannot be framed answered and closed; the proxy keeps serving."""

from __future__ import annotations

import socket
import time

from e2e.proxyproc import free_udp_port, proxy, stop

from sipfast import parse

IP = "127.0.0.1"


def options(n: int, cport: int, extra: str = "", cl: str = "0") -> bytes:
    return (f"OPTIONS sip:bob@{IP}:9 SIP/2.0\r\n"
            f"Via: SIP/2.0/TCP {IP}:{cport};branch=z9hG4bKt{n}\r\n"
            "Max-Forwards: 70\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@x>\r\n"
            f"Call-ID: tcp-{n}\r\nCSeq: 1 OPTIONS\r\n{extra}Content-Length: {cl}\r\n\r\n").encode()


def read_messages(s: socket.socket, count: int, timeout: float = 3.0) -> list[bytes]:
    buf, out = b"", []
    end = time.monotonic() + timeout
    while len(out) < count and time.monotonic() < end:
        try:
            chunk = s.recv(65535)
        except TimeoutError:
            continue
        if not chunk:
            break
        buf += chunk
        while b"\r\n\r\n" in buf:
            head, buf = buf.split(b"\r\n\r\n", 1)
            out.append(head + b"\r\n\r\n")
    return out


def test_framing_keepalive_and_a_broken_stream():
    callee = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    callee.bind((IP, 0))
    callee.settimeout(3)
    pport = free_udp_port(IP)
    with proxy("--listen", f"tcp:{IP}:{pport}", "--route", f"sip:{IP}:{callee.getsockname()[1]}",
               "--workers", "1", port=pport, stateless=False, cwd="/") as (_, proc):
        c = socket.create_connection((IP, pport), timeout=3)
        cport = c.getsockname()[1]
        # a message split over three writes, then two in one write
        m1 = options(1, cport)
        for part in (m1[:10], m1[10:50], m1[50:]):
            c.sendall(part)
            time.sleep(0.05)
        c.sendall(options(2, cport) + options(3, cport))
        got = sorted(parse(callee.recv(65535)).call_id for _ in range(3))
        assert got == ["tcp-1", "tcp-2", "tcp-3"]
        # each forwarded over UDP with our Via; a keep-alive ping gets its pong
        c.sendall(b"\r\n\r\n")
        assert c.recv(2) == b"\r\n"
        # answers come back on this connection
        c2 = socket.create_connection((IP, pport), timeout=3)
        c2.sendall(options(4, c2.getsockname()[1], cl="abc"))
        (err,) = read_messages(c2, 1)
        assert err.startswith(b"SIP/2.0 400 Malformed Content-Length header\r\n")
        assert c2.recv(10) == b""             # the stream cannot be resynchronised
        # the proxy goes on serving the first connection
        c.sendall(options(5, cport))
        assert parse(callee.recv(65535)).call_id == "tcp-5"
        c.close()
        c2.close()
        counters = stop(proc)
    assert counters["tcp_accepted"] == 2 and counters["malformed"] == 1
