"""The registrar on the wire: SIPp registers against :class:`Location` served by a
test-only asyncio UDP server, and SIPp's own trace shows the 200s it got."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import cast

from sipfast.core import Location

from . import sipp

IP = "127.0.0.1"


class RegistrarProtocol(asyncio.DatagramProtocol):
    """Answer every datagram with what :meth:`Location.register` returns,
    sent back to its source address (RFC 3581 symmetric response)."""

    def __init__(self, location: Location) -> None:
        self.location = location
        self.transport: asyncio.DatagramTransport | None = None
        self.received = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # asyncio's selector datagram transport does not subclass DatagramTransport.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received += 1
        reply = self.location.register(data, addr)
        if reply and self.transport is not None:
            self.transport.sendto(reply, addr)


def _sip_port(result: sipp.SippResult) -> int:
    """The SIP port SIPp was told to use (``-p``)."""
    return int(result.command[result.command.index("-p") + 1])


def _contacts(message: sipp.SipMessage) -> list[tuple[str, int]]:
    """(URI, expires) of each Contact value of a SIPp-traced response."""
    out = []
    for value in message.header_values("Contact"):
        match = re.fullmatch(r"<([^>]+)>;expires=(\d+)", value)
        assert match, value
        out.append((match.group(1), int(match.group(2))))
    return out


async def _register_twice(location: Location, logdir: Path) -> tuple[int, list[sipp.SippResult]]:
    """Two SIPp user agents on different ports, three REGISTERs each."""
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: RegistrarProtocol(location), local_addr=(IP, 0)
    )
    port = transport.get_extra_info("sockname")[1]
    results = []
    try:
        for n in range(2):
            with sipp.start_uac(
                (IP, port),
                "uac_register.xml",
                calls=3,
                rate=20,
                role=f"ua{n}",
                workdir=logdir / f"ua{n}",
                timeout_s=20,
            ) as uac:
                results.append(await loop.run_in_executor(None, uac.wait))
    finally:
        transport.close()
    assert protocol.received >= 6
    return port, results


def test_sipp_registers_and_gets_every_binding_back(logdir: Path) -> None:
    location = Location()
    port, (first, second) = asyncio.run(_register_twice(location, logdir))
    first.assert_clean(3)
    second.assert_clean(3)
    aor = f"sip:service@{IP}:{port}"
    port_1, port_2 = _sip_port(first), _sip_port(second)
    contact_1 = f"sip:service@{IP}:{port_1};transport=UDP"
    contact_2 = f"sip:service@{IP}:{port_2};transport=UDP"

    # Three REGISTERs (new Call-ID each) from one UA refresh one binding.
    oks = first.received(status=200)
    assert len(oks) == 3
    assert all(_contacts(ok) == [(contact_1, 3600)] for ok in oks)
    assert all(ok.to_tag and ok.header("Date") for ok in oks)
    # The second UA's 200s list both bindings, its own (most recent) first.
    oks = second.received(status=200)
    assert len(oks) == 3
    for ok in oks:
        [(uri_2, expires_2), (uri_1, expires_1)] = _contacts(ok)
        assert (uri_2, expires_2) == (contact_2, 3600)
        assert uri_1 == contact_1 and 3580 <= expires_1 <= 3600

    assert location.lookup(aor) == [contact_2, contact_1]
    # SIPp sent straight to us (one Via), so its source is the next hop.
    assert location.targets(aor) == [(contact_2, (IP, port_2)), (contact_1, (IP, port_1))]
    snapshot = location.snapshot()[aor]
    assert [b["contact"] for b in snapshot] == [contact_2, contact_1]
    assert snapshot[0]["cseq"] == 1
