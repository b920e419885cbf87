"""`sipfast proxy`: the control plane around the compiled proxy loop.

Python opens and binds the sockets, registers the compiled loop
(:class:`sipfast._core.UdpProxy`) on the asyncio event loop with
``add_reader`` and handles signals; every datagram is handled in C.  This
version forwards statelessly over UDP (RFC 3261 §16.11); transactions,
TCP and the registrar come next.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import sys
from dataclasses import dataclass

from sipfast._core import UdpProxy, parse_uri

log = logging.getLogger("sipfast.proxy")


@dataclass(frozen=True)
class Listen:
    """One ``--listen transport:host:port``."""

    transport: str
    host: str
    port: int

    @property
    def family(self) -> int:
        return socket.AF_INET6 if ":" in self.host else socket.AF_INET


def parse_listen(spec: str) -> Listen:
    """``udp:127.0.0.1:5060`` or ``udp:[::1]:5060`` -> Listen; ValueError
    with a message a user can act on."""
    transport, sep, rest = spec.partition(":")
    if not sep or transport.lower() not in ("udp", "tcp"):
        raise ValueError(f"--listen {spec!r}: expected udp:HOST:PORT or tcp:HOST:PORT")
    if rest.startswith("["):
        host, sep, port = rest[1:].partition("]:")
    else:
        host, sep, port = rest.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--listen {spec!r}: expected a host and a port 1-65535")
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    except OSError:
        raise ValueError(f"--listen {spec!r}: the host must be an IP address") from None
    return Listen(transport.lower(), host, int(port))


def parse_next_hop(uri: str) -> tuple[str, int]:
    """``sip:HOST[:PORT]`` -> (ip, port), port 5060 by default."""
    try:
        u = parse_uri(uri)
    except ValueError as exc:
        raise ValueError(f"--route {uri!r}: not a SIP URI ({exc})") from None
    if not u.is_sip or not u.host:
        raise ValueError(f"--route {uri!r}: expected sip:HOST[:PORT]")
    host = u.host.strip("[]")
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    except OSError:
        raise ValueError(f"--route {uri!r}: the host must be an IP address") from None
    return host, u.port or 5060


def open_udp(listen: Listen, reuse_port: bool) -> socket.socket:
    """A bound non-blocking UDP socket with large buffers."""
    sock = socket.socket(listen.family, socket.SOCK_DGRAM)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, opt, 4 << 20)
        except OSError:
            pass
    sock.bind((listen.host, listen.port))
    sock.setblocking(False)
    return sock


async def serve(listens: list[Listen], next_hop: tuple[str, int] | None,
                record_route: bool, reuse_port: bool = False) -> dict[str, int]:
    """Run the stateless proxy until SIGTERM/SIGINT; returns the counters."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    socks, proxies = [], []
    try:
        for lst in listens:
            sock = open_udp(lst, reuse_port)
            socks.append(sock)
            proxy = UdpProxy(sock.fileno(), lst.host, lst.port, next_hop, record_route)
            proxies.append(proxy)
            loop.add_reader(sock.fileno(), proxy.on_readable)
            log.info("listening on udp:%s:%d (pid %d)", lst.host, lst.port, os.getpid())
        print("sipfast proxy ready", file=sys.stderr, flush=True)
        await stop.wait()
    finally:
        for sock in socks:
            loop.remove_reader(sock.fileno())
            sock.close()
    totals: dict[str, int] = {}
    for proxy in proxies:
        for k, v in proxy.stats().items():
            totals[k] = totals.get(k, 0) + v
    return totals


def run(listens: list[Listen], next_hop: tuple[str, int] | None, record_route: bool,
        workers: int) -> int:
    """Run in this process, or fork ``workers`` processes sharing the port
    with SO_REUSEPORT; returns the exit code."""
    if workers <= 1:
        stats = asyncio.run(serve(listens, next_hop, record_route))
        print(f"sipfast proxy stopped: {json.dumps(stats)}", file=sys.stderr, flush=True)
        return 0
    children = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:
            try:
                stats = asyncio.run(serve(listens, next_hop, record_route, reuse_port=True))
                print(f"sipfast proxy worker {os.getpid()} stopped: {json.dumps(stats)}",
                      file=sys.stderr, flush=True)
            finally:
                os._exit(0)
        children.append(pid)

    def forward(signum: int, _frame: object) -> None:
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    code = 0
    for pid in children:
        _, status = os.waitpid(pid, 0)
        code = code or os.waitstatus_to_exitcode(status)
    return code
