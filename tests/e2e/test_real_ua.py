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

import re
import struct

import pytest

from .baresip import (
    IP,
    MIN_PACKETS,
    Baresip,
    require_baresip,
    rtp_stats,
    sdp_media,
    write_sine,
)
from .proxyproc import free_udp_port, proxy, stop
from .wire import capture


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
                closed = caller.call(callee, target)
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
