"""`sipfast demo`: sipfast's main job, on loopback.

First the compiled message core walks an INVITE the way a proxy does
(parse, 100 Trying, forward with Via/Max-Forwards/Record-Route, 400 with
its reason for a malformed request) and is timed; then the demo topology
runs: SIPp callers place calls through the first-responder balancer
(`sipfast lb`) over a pool of three `sipfast proxy`, each call probed to
every member and completed through the first to answer; the calls,
failures, wins per member and the balancer's CPU per call are reported.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

import sipfast
from sipfast import SipError, error_response, make_response, parse

SAMPLE_INVITE = (
    b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b'From: "Alice" <sip:alice@atlanta.example.com>;tag=1928301774\r\n'
    b"To: Bob <sip:bob@biloxi.example.com>\r\n"
    b"Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:alice@pc33.atlanta.example.com>\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)

BAD_REQUEST = (
    b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bKbad1\r\n"
    b"From: <sip:eve@example.net>;tag=1\r\n"
    b"To: <sip:bob@biloxi.example.com>\r\n"
    b"Call-ID: bad-1@192.0.2.7\r\n"
    b"CSeq: 1 BYE\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def _section(out: TextIO, title: str) -> None:
    out.write(f"\n=== {title} ===\n")


def run(out: TextIO = sys.stdout, seconds: float = 1.0, calls: int = 2000,
        rate: int = 200) -> int:
    """Run the demo, writing to ``out``; returns the process exit code
    (1 if any call failed)."""
    out.write(f"sipfast {sipfast.__version__}, compiled core: {sipfast._core.__file__}\n")
    msg = parse(SAMPLE_INVITE)
    msg.validate()
    _section(out, "received")
    out.write(SAMPLE_INVITE.decode())
    out.write(
        f"method={msg.method} uri={msg.uri_text} branch={msg.branch} "
        f"call-id={msg.call_id} cseq={msg.cseq} from-tag={msg.from_tag} "
        f"max-forwards={msg.max_forwards}\n"
    )
    _section(out, "answered upstream: 100 Trying")
    out.write(make_response(msg, 100).decode())
    _section(out, "forwarded downstream")
    edit = msg.edit()
    edit.push_via("192.0.2.10:5060", rport=True)
    edit.decrement_max_forwards()
    edit.add_record_route("sip:192.0.2.10:5060")
    out.write(edit.build().decode())
    _section(out, "malformed request")
    try:
        parse(BAD_REQUEST)
    except SipError as exc:
        out.write(f"parse error: {exc}\n")
        answer = error_response(BAD_REQUEST, exc)
        out.write(answer.decode() if answer else "(no answer possible)\n")
    _section(out, f"message core speed ({seconds:.1f} s)")
    n = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(1000):
            m = parse(SAMPLE_INVITE)
            _ = (m.branch, m.call_id, m.cseq, m.from_tag, m.to_tag, m.max_forwards)
        n += 1000
    speed = n / (time.perf_counter() - t0)
    out.write(f"parse + read fields: {speed:,.0f} messages/s on one core\n")
    if calls <= 0:
        return 0
    _section(out, "demo topology: SIPp caller -> sipfast lb -> pool of 3 sipfast proxy "
                  "-> SIPp callee")
    from sipfast.ops.topology import run_balancer

    res = run_balancer(calls=calls, rate=rate, out=out)
    out.write(
        f"calls: {res.successful} of {res.calls} completed, {res.failed} failed, "
        f"{res.unexpected} unexpected messages, in {res.seconds:.1f} s\n"
        f"probes sent: {res.probes} ({res.probes / max(1, res.calls):.1f} per call), "
        f"losers cancelled: {res.cancels}\n"
        f"wins per pool member: {res.wins}\n"
        f"balancer CPU: {res.lb_cpu_ms_per_call:.3f} ms per call\n"
    )
    return 0 if res.successful == res.calls and res.failed == 0 else 1
