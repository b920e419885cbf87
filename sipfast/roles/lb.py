"""`sipfast lb`: the first-responder balancer's control plane (DESIGN.md
§1 scheme A).

The fan-out, the first-answer decision, the CANCELs and the 302 (or the
relay through the winner) run in the compiled loop
(:class:`sipfast._core.UdpProxy` with ``balance=``).  Python keeps the
pool: it reads the pool file (again on SIGHUP), and probes every member
with an OPTIONS keep-alive so that a member taken out after failing comes
back in when it answers again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Sequence

from sipfast._core import UdpProxy, new_branch, parse

log = logging.getLogger("sipfast.lb")

Member = tuple[str, int, str]


def read_pool_file(path: str) -> list[str]:
    """SIP URIs of a pool file: one per line, '#' starts a comment."""
    with open(path, encoding="utf-8") as fh:
        lines = [line.split("#", 1)[0].strip() for line in fh]
    return [line for line in lines if line]


class _Replies(asyncio.DatagramProtocol):
    def __init__(self, keeper: PoolKeeper) -> None:
        self.keeper = keeper

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.keeper.answered(data)


class PoolKeeper:
    """OPTIONS keep-alive of the pool members (RFC 3261 §11): a member that
    answers (any status but 503) is up; one that stays silent for
    ``timeout`` or answers 503 is taken out, in every worker's loop."""

    def __init__(self, proxies: Sequence[UdpProxy], members: list[Member], host: str,
                 interval: float, timeout: float) -> None:
        self.proxies = list(proxies)
        self.members = members
        self.host = host
        self.interval = interval
        self.timeout = timeout
        self.waiting: dict[str, int] = {}
        self.seen: set[int] = set()
        self.down: set[int] = set()
        self.transport: asyncio.DatagramTransport | None = None
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self.transport, _ = await loop.create_datagram_endpoint(
            lambda: _Replies(self), local_addr=(self.host, 0), family=family)
        self.task = loop.create_task(self._run())

    def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
        if self.transport is not None:
            self.transport.close()

    def set_members(self, members: list[Member]) -> None:
        self.members = members
        self.down.clear()

    def answered(self, data: bytes) -> None:
        try:
            msg = parse(data)
            i = self.waiting.pop(msg.branch or "", None)
        except ValueError:
            return
        if i is not None and msg.status != 503:
            self.seen.add(i)

    def _options(self, member: Member, branch: str) -> bytes:
        ip, port, _ = member
        host = f"[{ip}]" if ":" in ip else ip
        me = f"[{self.host}]" if ":" in self.host else self.host
        lport = self.transport.get_extra_info("sockname")[1] if self.transport else 0
        return (f"OPTIONS sip:{host}:{port} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP {me}:{lport};branch={branch};rport\r\n"
                "Max-Forwards: 70\r\n"
                f"From: <sip:lb@{me}:{lport}>;tag={branch[-8:]}\r\n"
                f"To: <sip:{host}:{port}>\r\nCall-ID: {branch}@{me}\r\n"
                "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n").encode()

    async def _run(self) -> None:
        while True:
            members = list(self.members)
            self.seen.clear()
            self.waiting.clear()
            for i, member in enumerate(members):
                branch = new_branch()
                self.waiting[branch] = i
                assert self.transport is not None
                self.transport.sendto(self._options(member, branch), member[:2])
            await asyncio.sleep(self.timeout)
            if members != self.members:
                continue                    # reloaded meanwhile: start over
            for i, member in enumerate(members):
                up = i in self.seen
                if up == (i not in self.down):
                    continue
                (self.down.discard if up else self.down.add)(i)
                log.warning("pool member %s:%d %s", member[0], member[1],
                            "is back" if up else "does not answer: taken out")
                for p in self.proxies:
                    p.set_member_up(i, up)
            await asyncio.sleep(max(0.0, self.interval - self.timeout))


def install_reload(loop: asyncio.AbstractEventLoop, proxies: Sequence[UdpProxy],
                   keeper: PoolKeeper, pool_file: str,
                   parse_member: object) -> None:
    """SIGHUP: read the pool file again and swap the pool in every proxy."""
    import signal

    def reload() -> None:
        try:
            members = [parse_member(uri) for uri in read_pool_file(pool_file)]  # type: ignore[operator]
            for p in proxies:
                p.set_pool(members)
            keeper.set_members(members)
            log.warning("pool reloaded from %s: %d members (pid %d)", pool_file,
                        len(members), os.getpid())
        except (OSError, ValueError) as exc:
            log.error("pool reload from %s failed, the pool is unchanged: %s", pool_file, exc)

    loop.add_signal_handler(signal.SIGHUP, reload)
