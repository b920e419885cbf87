"""SIPp callers and callees through the transaction-stateful `sipfast proxy`
(RFC 3261 §16-17), judged by SIPp's counters and by the messages each side
saw on the wire.
"""

from __future__ import annotations

import re
import socket
import threading

from . import sipp
from .proxyproc import proxy, stop

IP = "127.0.0.1"
OUR_BRANCH = re.compile(
    r"^SIP/2\.0/UDP 127\.0\.0\.1:\d+;branch=z9hG4bKsf[0-9a-f]{24}\.[0-9a-f]{2};rport$")


def run_calls(logdir, calls, *proxy_args, callees=(("uas.xml", None),), uac="uac.xml",
              workers="1", **uac_kwargs):
    """Callee(s) up, the stateful proxy routing to them, then the caller;
    returns (proxy port, caller result, [callee results], proxy counters)."""
    uas = []
    try:
        for i, (scenario, sets) in enumerate(callees):
            uas.append(sipp.start_uas(scenario, calls=calls, sets=sets, timeout_s=60,
                                      workdir=logdir / f"uas{i}", role=f"uas{i}"))
        routes = [a for u in uas for a in ("--route", f"sip:{IP}:{u.port}")]
        with proxy(*routes, "--workers", workers, *proxy_args, stateless=False,
                   cwd=logdir) as (pport, proc):
            caller = sipp.run_uac((IP, pport), uac, calls=calls, workdir=logdir, **uac_kwargs)
            results = [u.wait(timeout_s=20) for u in uas]
            counters = stop(proc)
    finally:
        for u in uas:
            if u.running:
                u.stop()
    return pport, caller, results, counters


def test_thousands_of_calls_with_record_route_and_two_workers(logdir):
    calls = 2000
    pport, caller, (callee,), counters = run_calls(
        logdir, calls, "--record-route", workers="2", rate=400, max_concurrent=300)
    caller.assert_clean(calls)
    callee.assert_clean(calls)
    # §16.2 / §17.2.1: the proxy itself answers every INVITE with 100 Trying.
    trying = caller.received(status=100)
    assert len({m.call_id for m in trying}) == calls
    invites = callee.received(method="INVITE")
    assert len(invites) == calls
    for inv in invites:
        top = inv.header_values("Via")[0]
        assert OUR_BRANCH.match(top), top
        assert f"<sip:{IP}:{pport};lr>" in inv.header("Record-Route")
    # Two workers: each sends from its own port, named in its Via, so the
    # responses return to the worker holding the transaction.  (SO_REUSEPORT
    # picks the worker by the 4-tuple, so one caller socket lands on one
    # worker and its retransmissions and CANCELs follow it there.)
    ports = {int(inv.header_values("Via")[0].split(":")[1].split(";")[0]) for inv in invites}
    assert 1 <= len(ports) <= 2 and pport not in ports
    # The dialog's ACK and BYE came through the proxy (Route popped).
    for method in ("ACK", "BYE"):
        seen = callee.received(method=method)
        assert len(seen) == calls and all(m.header("Route") is None for m in seen)
    assert counters["transactions"] == 2 * calls      # INVITE and BYE; the 2xx ACK is not one
    # INVITE, ACK and BYE once per call; under load the callee resends some
    # 200s and the caller ACKs each again: those extra ACKs are forwarded too
    assert 3 * calls <= counters["forwarded_requests"] <= 3 * calls + (callee.retransmissions or 0)
    assert counters["dropped"] == counters["malformed"] == counters["send_errors"] == 0
    assert counters["rejected"] == counters["timeouts"] == counters["lost_actions"] == 0


def test_round_robin_over_two_callees(logdir):
    calls = 200
    # each callee expects exactly half of the calls (-m calls/2)
    uas = [sipp.start_uas("uas.xml", calls=calls // 2, timeout_s=60,
                          workdir=logdir / f"rr{i}", role=f"rr{i}") for i in range(2)]
    try:
        with proxy("--route", f"sip:{IP}:{uas[0].port}", "--route", f"sip:{IP}:{uas[1].port}",
                   "--record-route", "--workers", "1", stateless=False,
                   cwd=logdir) as (pport, proc):
            caller = sipp.run_uac((IP, pport), "uac.xml", calls=calls, workdir=logdir,
                                  rate=100)
            a, b = (u.wait(timeout_s=20) for u in uas)
            counters = stop(proc)
    finally:
        for u in uas:
            if u.running:
                u.stop()
    caller.assert_clean(calls)
    a.assert_clean(calls // 2)
    b.assert_clean(calls // 2)
    assert len(a.received(method="INVITE")) == len(b.received(method="INVITE")) == calls // 2
    assert counters["dropped"] == 0


def test_fork_the_2xx_wins_and_the_error_branch_is_acked_by_the_proxy(logdir):
    calls = 20
    _, caller, (busy, ok), counters = run_calls(
        logdir, calls, "--fork", "--record-route",
        callees=(("uas_error.xml", {"code": 486}), ("uas.xml", None)), rate=10)
    caller.assert_clean(calls)
    busy.assert_clean(calls)
    ok.assert_clean(calls)
    assert len(caller.received(status=200)) >= calls
    assert caller.received(status=486) == []          # §16.7: a 2xx beats a 486
    # The 486 is ACKed hop by hop by the proxy, with its branch's Via (§17.1.1.3).
    invite_branch = {m.call_id: m.top_branch for m in busy.received(method="INVITE")}
    acks = busy.received(method="ACK")
    assert len(acks) == calls
    assert all(a.top_branch == invite_branch[a.call_id] for a in acks)
    assert counters["acks_sent"] == calls


def test_fork_all_errors_the_best_response_goes_upstream(logdir):
    calls = 10
    _, caller, (c486, c404), counters = run_calls(
        logdir, calls, "--fork", uac="uac_error.xml",
        callees=(("uas_error.xml", {"code": 486}), ("uas_error.xml", {"code": 404})), rate=10)
    caller.assert_clean(calls)
    c486.assert_clean(calls)
    c404.assert_clean(calls)
    # §16.7 step 6: one final response per call, the lowest class and code: 404.
    finals = [m for m in caller.received() if m.status and m.status >= 200]
    assert sorted(m.status for m in finals) == [404] * calls
    assert counters["acks_absorbed"] == calls      # the caller's ACK stops at the proxy


def test_fork_a_6xx_cancels_the_ringing_branch(logdir):
    calls = 10
    _, caller, (decline, ringing), counters = run_calls(
        logdir, calls, "--fork", uac="uac_error.xml",
        callees=(("uas_error.xml", {"code": 603}), ("uas_ring_noanswer.xml", None)), rate=5)
    caller.assert_clean(calls)
    decline.assert_clean(calls)
    ringing.assert_clean(calls)
    assert len(ringing.received(method="CANCEL")) == calls
    assert [m.status for m in caller.received() if m.status and m.status >= 200] == [603] * calls


def test_cancel_before_answer(logdir):
    calls = 10
    _, caller, (callee,), counters = run_calls(
        logdir, calls, callees=(("uas_ring_noanswer.xml", None),), uac="uac_cancel.xml",
        rate=10)
    caller.assert_clean(calls)
    callee.assert_clean(calls)
    assert len(caller.received(status=487)) == calls
    cancels = callee.received(method="CANCEL")
    assert len(cancels) == calls
    # §9.1: the proxy's CANCEL carries the branch of the INVITE it sent.
    invite_branch = {m.call_id: m.top_branch for m in callee.received(method="INVITE")}
    assert all(c.top_branch == invite_branch[c.call_id] for c in cancels)
    assert counters["cancels_sent"] == calls
    assert counters["dropped"] == 0


def test_callee_errors_are_relayed_and_acked_hop_by_hop(logdir):
    # §16.7 step 6: a 503 from the only branch goes upstream as 500.
    for code, seen in ((486, 486), (503, 500), (603, 603)):
        calls = 5
        _, caller, (callee,), counters = run_calls(
            logdir / str(code), calls, uac="uac_error.xml",
            callees=(("uas_error.xml", {"code": code}),), rate=10)
        caller.assert_clean(calls)
        callee.assert_clean(calls)
        assert len(caller.received(status=seen)) == calls
        assert len(callee.received(method="ACK")) == calls
        assert counters["acks_sent"] == counters["acks_absorbed"] == calls


def test_silent_callee_times_out_with_408(logdir):
    calls = 5
    _, caller, (callee,), counters = run_calls(
        logdir, calls, "--t1", "50", uac="uac_error.xml",
        callees=(("uas_silent.xml", None),), rate=5)
    caller.assert_clean(calls)
    # Timer B (64*T1 = 3.2 s) ends each branch as if 408 had come (§16.7 step 2).
    assert len(caller.received(status=408)) == calls
    # Timer A retransmitted the INVITE to the callee before that.
    assert len(callee.received(method="INVITE")) > calls
    assert counters["timeouts"] == calls


def test_timer_c_cancels_a_call_that_rings_too_long(logdir):
    calls = 5
    _, caller, (callee,), counters = run_calls(
        logdir, calls, "--timer-c", "1500", uac="uac_error.xml",
        callees=(("uas_ring_noanswer.xml", None),), rate=5)
    caller.assert_clean(calls)
    callee.assert_clean(calls)
    assert len(callee.received(method="CANCEL")) == calls     # §16.8
    assert len(caller.received(status=487)) == calls


BAD = [
    (b"INVITE sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKbad1\r\n"
     b"From: <sip:a@x>;tag=1\r\nTo: <sip:b@x>\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
     b"Missing Call-ID header"),
    (b"INVITE sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKbad2\r\n"
     b"From: <sip:a@x>;tag=1\r\nTo: <sip:b@x>\r\nCall-ID: q\r\nCSeq: 1 BYE\r\n"
     b"Content-Length: 0\r\n\r\n", b"CSeq method does not match request method"),
    (b"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKbad3\r\n"
     b"From: <sip:a@x>;tag=1\r\nTo: <sip:b@x>\r\nCall-ID: q\r\nCSeq: 1 OPTIONS\r\n"
     b"Proxy-Require: foo\r\nContent-Length: 0\r\n\r\n", b"420 Bad Extension"),
    (b"\x00\xff garbage \r\n\r\n", None),
]


def test_malformed_requests_get_400_and_the_calls_go_on(logdir):
    calls = 600
    answers: list[bytes] = []
    with sipp.uas("uas.xml", calls=calls, timeout_s=60, workdir=logdir) as callee:
        with proxy("--route", f"sip:{IP}:{callee.port}", "--workers", "1",
                   stateless=False, cwd=logdir) as (pport, proc):
            bad = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            bad.bind((IP, 0))
            bad.settimeout(3)
            done = threading.Event()

            def pester() -> None:
                while not done.is_set():
                    for data, _ in BAD:
                        bad.sendto(data, (IP, pport))
                        if _ is not None:
                            answers.append(bad.recv(65535))
                    done.wait(0.05)

            t = threading.Thread(target=pester)
            t.start()
            try:
                caller = sipp.run_uac((IP, pport), "uac.xml", calls=calls, workdir=logdir,
                                      rate=200)
            finally:
                done.set()
                t.join()
            callee_result = callee.wait(timeout_s=15)
            counters = stop(proc)
    caller.assert_clean(calls)
    callee_result.assert_clean(calls)
    assert len(answers) >= 3 * 10
    texts = [a.split(b"\r\n", 1)[0] for a in answers]
    assert b"SIP/2.0 400 Missing Call-ID header" in texts
    assert b"SIP/2.0 400 CSeq method does not match request method" in texts
    assert b"SIP/2.0 420 Bad Extension" in texts
    assert all(b"Unsupported: foo\r\n" in a for a in answers if b" 420 " in a[:12])
    assert counters["malformed"] >= len(answers) * 2 // 3
