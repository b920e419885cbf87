"""sipfast next to a real neighbouring proxy, Kamailio 5.6, both record-routing.

(a) Kamailio in front:  SIPp caller -> Kamailio -> sipfast -> SIPp callee
(b) Kamailio behind:    SIPp caller -> sipfast -> Kamailio -> SIPp callee

Each topology places a few hundred calls with zero failures, and is judged on the
wire by a capture of every hop (``wire.capture``): the INVITE gains one Via and one
Record-Route per proxy, in path order; the 2xx carries both Record-Routes back and
loses one Via per proxy; the caller's ACK and BYE carry Routes to both proxies, and
each proxy pops its own Route (the next hop sees only the Routes still ahead of it,
the callee none).

The sipfast side runs in every mode of ``MODES``; adding ``"stateful"`` there
(``sipfast proxy`` without ``--stateless``) runs the same checks against it.
"""

from __future__ import annotations

import re

import pytest

from . import sipp
from .kamailioproc import kamailio, log_errors, require_kamailio
from .proxyproc import free_udp_port, proxy, stop
from .wire import capture

MODES = ["stateless", "stateful"]

IP = "127.0.0.1"
CALLS = 300

_SENT_BY = re.compile(r"SIP/2\.0/UDP\s+([^;,\s]+)", re.I)
_URI_HOSTPORT = re.compile(r"<sip:(?:[^@>]*@)?([^;>]+)")


def via_ports(msg: sipp.SipMessage) -> list[int]:
    """Ports of the Via sent-bys, top first (header lines and comma lists alike)."""
    return [int(hp.rsplit(":", 1)[1]) for v in msg.header_values("Via")
            for hp in _SENT_BY.findall(v)]


def uri_ports(msg: sipp.SipMessage, header: str) -> list[int]:
    """Ports of the URIs of every ``header`` entry (Route, Record-Route), in order."""
    out = []
    for value in msg.header_values(header):
        for hp in _URI_HOSTPORT.findall(value):
            assert hp.startswith(f"{IP}:"), f"{header} entry {hp!r} is not on {IP}"
            out.append(int(hp.rsplit(":", 1)[1]))
    return out


def by_call(messages: list[sipp.SipMessage]) -> dict[str, sipp.SipMessage]:
    out: dict[str, sipp.SipMessage] = {}
    for m in messages:
        out.setdefault(m.call_id or "", m)  # the first; retransmissions are identical
    return out


def run_topology(logdir, mode: str, kamailio_first: bool):
    """Place CALLS calls through both proxies; return what every party saw."""
    require_kamailio()
    caller_port, callee_port = sipp.free_port(IP), sipp.free_port(IP)
    sf_port, kam_port = free_udp_port(IP), sipp.free_port(IP)
    first, second = (kam_port, sf_port) if kamailio_first else (sf_port, kam_port)
    path = [caller_port, first, second, callee_port]
    # Each proxy sends new dialogs to the hop after it; in-dialog requests follow Routes.
    kam_next = path[path.index(kam_port) + 1]
    sf_next = path[path.index(sf_port) + 1]
    with sipp.start_uas(port=callee_port, calls=CALLS, timeout_s=50,
                        workdir=logdir / "callee") as callee, \
            proxy("--route", f"sip:{IP}:{sf_next}", "--record-route", "--workers", "1",
                  port=sf_port,
                  cwd=logdir, stateless=(mode == "stateless")) as (_, sf_proc), \
            kamailio(f"sip:{IP}:{kam_next}", port=kam_port,
                     workdir=logdir / "kamailio") as _:
        with capture(path, workdir=logdir / "wire") as wire:
            caller = sipp.run_uac((IP, first), calls=CALLS, rate=150, max_concurrent=100,
                                  port=caller_port, workdir=logdir / "caller")
            callee_result = callee.wait(timeout_s=15)
        counters = stop(sf_proc)
    return path, caller, callee_result, wire, counters


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kamailio_first", [True, False], ids=["kamailio-front",
                                                               "kamailio-behind"])
def test_calls_through_kamailio_and_sipfast(logdir, mode, kamailio_first):
    path, caller, callee, wire, counters = run_topology(logdir, mode, kamailio_first)
    caller_port, first, second, callee_port = path
    print(f"path {path}: {caller.summary()}\n{callee.summary()}\nsipfast {counters}")

    # Zero failures on both ends.
    caller.assert_clean(CALLS)
    callee.assert_clean(CALLS)
    assert caller.successful == callee.successful == CALLS
    assert not log_errors(logdir / "kamailio"), log_errors(logdir / "kamailio")
    assert counters["dropped"] == counters["malformed"] == counters["send_errors"] == 0

    hops = list(zip(path, path[1:], strict=False))  # caller->first->second->callee
    for i, (a, b) in enumerate(hops):
        invites = by_call(wire.sip_between(a, b, "INVITE"))
        assert len(invites) == CALLS, f"hop {a}->{b}: {len(invites)} INVITEs"
        for inv in invites.values():
            # One Via per hop so far, the sender's on top; one Record-Route per proxy
            # passed, the latest on top.
            assert via_ports(inv) == path[i::-1], inv.headers
            assert uri_ports(inv, "Record-Route") == path[1 : i + 1][::-1], inv.headers
            assert not inv.header_values("Route")
        # The 2xx on the way back: each proxy popped its own Via; both Record-Routes.
        oks = [m for m in wire.sip_between(b, a) if m.status == 200
               and m.cseq_method == "INVITE"]
        assert len(by_call(oks)) == CALLS
        for ok in oks:
            assert via_ports(ok) == path[i::-1], ok.headers
            assert uri_ports(ok, "Record-Route") == [second, first], ok.headers
        # ACK and BYE: the caller's carry Routes to both proxies (reversed
        # Record-Route), and each proxy popped its own before passing them on.
        for method in ("ACK", "BYE"):
            requests = by_call(wire.sip_between(a, b, method))
            assert len(requests) == CALLS, f"hop {a}->{b}: {len(requests)} {method}s"
            for req in requests.values():
                assert uri_ports(req, "Route") == path[i + 1 : 3], req.headers
                assert req.request_uri.startswith("sip:callee@"), req.first_line
                assert via_ports(req) == path[i::-1], req.headers
        bye_oks = [m for m in wire.sip_between(b, a) if m.status == 200
                   and m.cseq_method == "BYE"]
        assert len(by_call(bye_oks)) == CALLS

    # The same facts as the end points themselves recorded them.
    for inv in callee.received(method="INVITE"):
        assert via_ports(inv)[:3] == [second, first, caller_port]
        assert uri_ports(inv, "Record-Route") == [second, first]
    for method in ("ACK", "BYE"):
        assert len(caller.sent(method=method)) == CALLS
        assert all(uri_ports(m, "Route") == [first, second]
                   for m in caller.sent(method=method))
        assert all(not m.header_values("Route") for m in callee.received(method=method))

    # sipfast relayed each call's INVITE, ACK and BYE once, and no response went astray.
    assert counters["forwarded_requests"] == 3 * CALLS
