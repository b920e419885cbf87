"""SIPp caller -> `sipfast proxy --stateless --record-route` -> SIPp callee.

Real calls through the compiled proxy, judged by SIPp's counters and by the
messages each side saw on the wire.
"""

from __future__ import annotations

from . import sipp
from .proxyproc import proxy, stop

IP = "127.0.0.1"


def through_proxy(logdir, calls, uas_scenario="uas.xml", uac_scenario="uac.xml",
                  uas_sets=None, workers="1", **uac_kwargs):
    with sipp.start_uas(uas_scenario, calls=calls, sets=uas_sets, timeout_s=60,
                        workdir=logdir) as callee:
        with proxy("--route", f"sip:{IP}:{callee.port}", "--record-route",
                   "--workers", workers, cwd=logdir) as (pport, proc):
            caller = sipp.run_uac((IP, pport), uac_scenario, calls=calls, workdir=logdir,
                                  **uac_kwargs)
            callee_result = callee.wait(timeout_s=15)
            counters = stop(proc)
    return pport, caller, callee_result, counters


def test_calls_complete_and_the_dialog_follows_record_route(logdir):
    calls = 1000
    pport, caller, callee, counters = through_proxy(logdir, calls, rate=300,
                                                    max_concurrent=200)
    caller.assert_clean(calls)
    callee.assert_clean(calls)
    rr = f"<sip:{IP}:{pport};lr>"
    invites = callee.received(method="INVITE")
    assert len(invites) == calls
    for inv in invites:
        # our Via on top, with a branch of our own, and our Record-Route
        assert inv.header_values("Via")[0].startswith(f"SIP/2.0/UDP {IP}:{pport};branch=z9hG4bK")
        assert rr in inv.header("Record-Route")
    # The caller honoured Record-Route: ACK and BYE carry a Route to the proxy
    # (loose routing), and the proxy popped it before the callee saw them.
    for method in ("ACK", "BYE"):
        sent = caller.sent(method=method)
        assert len(sent) == calls
        assert all(m.header("Route") == rr for m in sent)
        seen = callee.received(method=method)
        assert len(seen) == calls
        assert all(m.header("Route") is None for m in seen)
    # Every message went through the proxy exactly once.
    assert counters["forwarded_requests"] == 3 * calls
    assert counters["forwarded_responses"] == 3 * calls
    assert counters["dropped"] == counters["malformed"] == counters["send_errors"] == 0


def test_two_workers_on_one_port(logdir):
    calls = 500
    _, caller, callee, counters = through_proxy(logdir, calls, workers="2", rate=300,
                                                max_concurrent=100)
    caller.assert_clean(calls)
    callee.assert_clean(calls)
    assert counters["forwarded_requests"] == 3 * calls


def test_cancel_before_answer(logdir):
    calls = 5
    _, caller, callee, counters = through_proxy(
        logdir, calls, uas_scenario="uas_ring_noanswer.xml", uac_scenario="uac_cancel.xml",
        rate=5)
    caller.assert_clean(calls)
    callee.assert_clean(calls)
    assert len(caller.received(status=487)) == calls
    cancels = callee.received(method="CANCEL")
    assert len(cancels) == calls
    # RFC 3261 §16.11: the CANCEL leaves the proxy with the INVITE's branch.
    invite_branch = {m.call_id: m.top_branch for m in callee.received(method="INVITE")}
    assert all(c.top_branch == invite_branch[c.call_id] for c in cancels)
    assert counters["dropped"] == 0


def test_callee_errors_are_relayed_and_acked(logdir):
    for code in (486, 503, 603):
        calls = 3
        _, caller, callee, _ = through_proxy(
            logdir / str(code), calls, uas_scenario="uas_error.xml",
            uac_scenario="uac_error.xml", uas_sets={"code": code}, rate=10)
        caller.assert_clean(calls)
        callee.assert_clean(calls)
        assert len(caller.received(status=code)) == calls
        assert len(callee.received(method="ACK")) == calls
