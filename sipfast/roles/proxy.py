"""`sipfast proxy`: the control plane around the compiled proxy loop.

Python opens and binds the sockets, registers the compiled loop
(:class:`sipfast._core.UdpProxy`) on the asyncio event loop with
``add_reader``, drives the transaction timers, answers REGISTER and
location look-ups (the only calls from C into Python, once per
registration and once per call to a registered user) and handles signals
and the graceful stop.  Every other datagram is handled in C: stateful
(RFC 3261 §16-17, the default) or stateless (§16.11, ``--stateless``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from sipfast._core import UdpProxy, parse_uri
from sipfast.core.location import Location

log = logging.getLogger("sipfast.proxy")
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


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


def parse_next_hop(uri: str) -> tuple[str, int, str]:
    """``sip:HOST[:PORT][;transport=tcp]`` -> (ip, port, transport), port
    5060 and UDP by default."""
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
    transport = (u.params.get("transport") or "udp").lower()
    if transport not in ("udp", "tcp"):
        raise ValueError(f"--route {uri!r}: transport must be udp or tcp")
    return host, u.port or 5060, transport


def open_tcp(listen: Listen, reuse_port: bool) -> socket.socket:
    """A bound, listening, non-blocking TCP socket."""
    sock = socket.socket(listen.family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((listen.host, listen.port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def open_udp(listen: Listen, reuse_port: bool, port: int | None = None) -> socket.socket:
    """A bound non-blocking UDP socket with large buffers (on ``port``
    instead of the listener's when given; 0 picks a free one)."""
    sock = socket.socket(listen.family, socket.SOCK_DGRAM)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, opt, 4 << 20)
        except OSError:
            pass
    sock.bind((listen.host, listen.port if port is None else port))
    sock.setblocking(False)
    return sock


@dataclass
class Options:
    """What `sipfast proxy` was asked to do (the command line, parsed)."""

    listens: list[Listen]
    next_hops: list[tuple[str, int, str]] = field(default_factory=list)
    record_route: bool = False
    stateless: bool = False
    fork: bool = False
    workers: int = 1
    max_transactions: int = 65536
    t1: int = 500
    t2: int = 4000
    t4: int = 5000
    timer_c: int = 180000
    timer_d: int = 32000
    wait_timer: int | None = None   # None: 10*T1
    drain_timeout: float = 5.0
    registrar: bool = True
    max_connections: int = 4096
    tcp_idle_timeout: int = 600
    balance: str | None = None      # sipfast lb: "redirect" or "proxy"
    first: str = "final"
    probe_timeout: int = 2000
    keepalive: float = 5.0
    pool_file: str | None = None
    load: Any = None        # sipfast.load.LoadOptions: delegating peers (--peers)


def contact_targets(found: list[tuple[str, tuple[str, int] | None]]
                    ) -> list[tuple[bytes, str, int, str]]:
    """Registered contacts -> (uri, ip, port) targets the compiled loop can
    send to: the address the REGISTER came from when the location service
    gives one (a user agent behind NAT, RFC 3581), else the contact URI's
    own host, which must then be an IP literal (no DNS in the hot path)."""
    out: list[tuple[bytes, str, int, str]] = []
    for uri, next_hop in found:
        try:
            u = parse_uri(uri)
        except ValueError:
            continue
        transport = (u.params.get("transport") or "udp").lower()
        if next_hop is not None:
            out.append((uri.encode(), next_hop[0], next_hop[1], transport))
            continue
        host = (u.host or "").strip("[]")
        try:
            socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
        except OSError:
            continue
        out.append((uri.encode(), host, u.port or 5060, transport))
    return out


def make_location() -> tuple[Callable[[bytes, tuple[str, int]], bytes],
                             Callable[[bytes], list[tuple[bytes, str, int, str]]],
                             Location]:
    """The location service and its two callbacks for the compiled loop:
    REGISTER -> response bytes, and Request-URI -> targets."""
    loc = Location()

    def lookup(ruri: bytes) -> list[tuple[bytes, str, int, str]]:
        return contact_targets(loc.targets(ruri.decode("utf-8", "replace")))

    return loc.register, lookup, loc


def make_watch(loop: asyncio.AbstractEventLoop, proxy: UdpProxy) -> Callable[[int, int], None]:
    """The watch callback of a proxy's TCP connections: mode 1 read, 3
    read and write, 0 nothing (the compiled loop calls it on changes only)."""
    def watch(fd: int, mode: int) -> None:
        if mode & 1:
            loop.add_reader(fd, proxy.on_conn_readable, fd)
        else:
            loop.remove_reader(fd)
        if mode & 2:
            loop.add_writer(fd, proxy.on_conn_writable, fd)
        else:
            loop.remove_writer(fd)
    return watch


async def serve(opts: Options, reuse_port: bool = False) -> dict[str, int]:
    """Run the proxy until SIGTERM/SIGINT, then stop taking new calls and
    let the transactions in flight finish (``drain_timeout`` at most);
    returns the counters."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # run() blocks these around fork() so that a worker cannot be killed by
    # a stop signal that arrives before its handlers are in place.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    on_register = on_lookup = location = None
    proxies: list[UdpProxy] = []

    def lookups_while_registered() -> None:
        # a look-up crosses into Python only while someone is registered
        if location is not None:
            for p in proxies:
                p.set_hooks(on_lookup=on_lookup if len(location) else None)

    if not opts.stateless and opts.registrar:
        on_register, on_lookup, location = make_location()
        register = on_register

        def on_register(data: bytes, source: tuple[str, int]) -> bytes:
            answer = register(data, source)
            lookups_while_registered()
            return answer
    socks: list[socket.socket] = []
    wait = opts.wait_timer if opts.wait_timer is not None else 10 * opts.t1
    timer: asyncio.TimerHandle | None = None
    delegation = None
    keeper = None
    try:
        for lst in opts.listens:
            if lst.transport != "udp":
                continue
            sock = open_udp(lst, reuse_port)
            socks.append(sock)
            send_fd, send_port = -1, 0
            if reuse_port:
                # This worker's own socket: forwarded requests leave from it
                # and name it in their Via, so responses come back here.
                own = open_udp(lst, False, port=0)
                socks.append(own)
                send_fd, send_port = own.fileno(), own.getsockname()[1]
            proxy = UdpProxy(
                sock.fileno(), lst.host, lst.port, opts.next_hops, opts.record_route,
                stateful=not opts.stateless, fork=opts.fork, send_fd=send_fd,
                send_port=send_port, max_transactions=opts.max_transactions,
                t1=opts.t1, t2=opts.t2, t4=opts.t4, timer_c=opts.timer_c,
                timer_d=opts.timer_d, wait_timer=wait, on_register=on_register,
                on_lookup=None,             # set once someone registers
                balance=opts.balance, first=opts.first, probe_timeout=opts.probe_timeout)
            proxies.append(proxy)
            loop.add_reader(sock.fileno(), proxy.on_readable)
            if send_fd >= 0:
                loop.add_reader(send_fd, proxy.on_send_readable)
            log.info("listening on udp:%s:%d (pid %d)", lst.host, lst.port, os.getpid())
        by_host = {lst.host: p for lst, p in zip(
            [x for x in opts.listens if x.transport == "udp"], proxies, strict=True)}
        for lst in opts.listens:
            if lst.transport != "tcp":
                continue
            tsock = open_tcp(lst, reuse_port)
            socks.append(tsock)
            owner = by_host[lst.host]
            owner.add_tcp_listener(tsock.fileno(), lst.port, make_watch(loop, owner),
                                   max_connections=opts.max_connections,
                                   idle_timeout=opts.tcp_idle_timeout)
            loop.add_reader(tsock.fileno(), owner.on_tcp_accept)
            log.info("listening on tcp:%s:%d (pid %d)", lst.host, lst.port, os.getpid())
        if opts.load is not None:
            from sipfast.load import attach
            delegation = attach(proxies, opts.load, loop)
        if opts.balance is not None and opts.keepalive > 0:
            from sipfast.roles.lb import PoolKeeper, install_reload
            keeper = PoolKeeper(proxies, list(opts.next_hops), opts.listens[0].host,
                                opts.keepalive, min(opts.keepalive, 1.0))
            await keeper.start()
            if opts.pool_file:
                install_reload(loop, proxies, keeper, opts.pool_file, parse_next_hop)
        if not opts.stateless:
            expire_at = loop.time()

            def tick() -> None:
                # each loop says how long it may wait: 10 ms while a timer
                # that must be on time is near, up to 100 ms otherwise (an
                # idle worker, or one holding only transactions that wait
                # to end, wakes about 10 times a second)
                nonlocal timer, expire_at
                wait = 0.1
                for p in proxies:
                    w = p.on_timer()
                    if w < wait:
                        wait = w
                if location is not None and loop.time() >= expire_at:
                    expire_at = loop.time() + 2.0
                    location.expire()       # drop lapsed bindings
                    lookups_while_registered()
                timer = loop.call_later(wait, tick)
            tick()
        print("sipfast proxy ready", file=sys.stderr, flush=True)
        await stop.wait()
        if not opts.stateless:
            for p in proxies:
                p.drain()
            deadline = loop.time() + opts.drain_timeout
            while loop.time() < deadline and any(p.pending() for p in proxies):
                await asyncio.sleep(0.05)
    finally:
        if delegation is not None:
            delegation.close()
        if keeper is not None:
            keeper.close()
        if timer is not None:
            timer.cancel()
        for sock in socks:
            loop.remove_reader(sock.fileno())
            sock.close()
    totals: dict[str, int] = {}
    for proxy in proxies:
        stats = proxy.stats()
        if opts.balance is not None:
            for i, member in enumerate(proxy.pool()):
                stats[f"member{i}_wins"] = member["wins"]
                stats[f"member{i}_up"] = int(member["up"])
        if any(lst.transport == "tcp" for lst in opts.listens):
            stats.update({f"tcp_{k}": v for k, v in proxy.tcp_stats().items()})
        for k, v in stats.items():
            totals[k] = totals.get(k, 0) + v
    return totals


def run_loop(coro: Coroutine[Any, Any, dict[str, int]]) -> dict[str, int]:
    """Run on uvloop where it is installed (its loop is C: a wake-up costs a
    fraction of asyncio's), else on asyncio's own loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def run(opts: Options) -> int:
    """Run in this process, or fork ``opts.workers`` processes sharing the
    port with SO_REUSEPORT; returns the exit code."""
    if opts.workers <= 1:
        stats = run_loop(serve(opts))
        print(f"sipfast proxy stopped: {json.dumps(stats)}", file=sys.stderr, flush=True)
        return 0
    children = []
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    for _ in range(opts.workers):
        pid = os.fork()
        if pid == 0:
            try:
                stats = run_loop(serve(opts, reuse_port=True))
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
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    code = 0
    for pid in children:
        _, status = os.waitpid(pid, 0)
        code = code or os.waitstatus_to_exitcode(status)
    return code
