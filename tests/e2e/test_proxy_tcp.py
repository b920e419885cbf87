"""SIPp over TCP through the stateful `sipfast proxy` (RFC 3261 §18:
Content-Length framing, answers on the connection the request came in on,
a connection to the next hop opened once and reused; RFC 5658 double
Record-Route where a call changes transport)."""

from __future__ import annotations

from . import sipp
from .proxyproc import proxy, stop

IP = "127.0.0.1"


def run(logdir, calls, caller_transport, callee_transport, rate=200, stateless=False):
    with sipp.start_uas(calls=calls, transport=callee_transport, timeout_s=60,
                        workdir=logdir / "uas") as callee:
        route = f"sip:{IP}:{callee.port}" + (";transport=tcp" if callee_transport == "t1" else "")
        pport = sipp.free_port(IP)
        with proxy("--listen", f"tcp:{IP}:{pport}", "--route", route, "--record-route",
                   "--workers", "1", port=pport, stateless=stateless, cwd=logdir) as (_, proc):
            caller = sipp.run_uac((IP, pport), calls=calls, rate=rate, max_concurrent=200,
                                  transport=caller_transport, workdir=logdir / "uac")
            result = callee.wait(timeout_s=15)
            counters = stop(proc)
    return pport, caller, result, counters


def test_tcp_end_to_end(logdir):
    calls = 1000
    pport, caller, callee, counters = run(logdir, calls, "t1", "t1")
    caller.assert_clean(calls)
    callee.assert_clean(calls)
    invites = callee.received(method="INVITE")
    assert len(invites) == calls
    assert all(m.header_values("Via")[0].startswith(f"SIP/2.0/TCP {IP}:{pport};branch=z9hG4bKsf")
               for m in invites)
    assert all(m.header("Record-Route").startswith(f"<sip:{IP}:{pport};transport=tcp;lr>")
               for m in invites)
    # one connection in from the caller, one out to the callee, reused by every call
    assert counters["tcp_accepted"] == 1 and counters["tcp_connected"] == 1
    # a reliable transport: the proxy never retransmits, nothing is dropped
    assert counters["dropped"] == counters["malformed"] == counters["send_errors"] == 0
    assert len(caller.received(status=100)) == calls


def test_tcp_caller_udp_callee_double_record_route(logdir):
    calls = 300
    pport, caller, callee, counters = run(logdir, calls, "t1", "u1", rate=100)
    caller.assert_clean(calls)
    callee.assert_clean(calls)
    rr = [v.strip() for line in callee.received(method="INVITE")[0].header_values("Record-Route")
          for v in line.split(",")]
    # RFC 5658: the entry the callee uses (top) says UDP, the caller's says TCP
    assert rr[:2] == [f"<sip:{IP}:{pport};lr>", f"<sip:{IP}:{pport};transport=tcp;lr>"]
    for method in ("ACK", "BYE"):
        seen = callee.received(method=method)
        assert len(seen) == calls and all(m.header("Route") is None for m in seen)
        assert all(m.header_values("Via")[0].startswith(f"SIP/2.0/UDP {IP}:") for m in seen)
    assert counters["tcp_accepted"] == 1 and counters["tcp_connected"] == 0


def test_udp_caller_tcp_callee(logdir):
    calls = 300
    pport, caller, callee, counters = run(logdir, calls, "u1", "t1", rate=100)
    caller.assert_clean(calls)
    callee.assert_clean(calls)
    assert counters["tcp_connected"] == 1 and counters["tcp_accepted"] == 0


def test_stateless_over_tcp(logdir):
    """§16.11 over TCP: requests forwarded on the connection to the callee,
    responses back on the caller's connection, no 100 Trying of our own."""
    calls = 1000
    pport, caller, callee, counters = run(logdir, calls, "t1", "t1", stateless=True)
    caller.assert_clean(calls)
    callee.assert_clean(calls)
    assert caller.received(status=100) == []
    assert counters["tcp_accepted"] == 1 and counters["tcp_connected"] == 1
    assert counters["dropped"] == counters["send_errors"] == 0
