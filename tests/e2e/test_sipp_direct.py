"""The SIPp harness proven without a proxy: SIPp caller -> SIPp callee directly.

What the proxy tests will rely on is checked here first: the scenarios complete with
zero failed and zero unexpected calls over UDP and TCP, the wire trace parses, ACK and BYE
follow the dialog's remote target, CANCEL and error calls are ACKed with the INVITE's
branch, the caller tolerates a 180 after the 200 and the callee a BYE before the ACK
(reorderings a proxy with several workers produces), and a hung SIPp is killed.
"""

import socket
import threading
from collections import Counter

import pytest

from . import sipp

IP = "127.0.0.1"


def run_pair(
    logdir, uas_scenario, uac_scenario, calls, *, transport="u1", uas_sets=None, **uac_kwargs
):
    """Callee with -m calls (exits by itself), caller placing calls to it directly."""
    with sipp.start_uas(
        uas_scenario, transport=transport, calls=calls, sets=uas_sets, timeout_s=40, workdir=logdir
    ) as callee:
        caller = sipp.run_uac(
            (IP, callee.port),
            uac_scenario,
            calls=calls,
            transport=transport,
            workdir=logdir,
            **uac_kwargs,
        )
        callee_result = callee.wait(timeout_s=10)
    return caller, callee_result


def check_basic_calls(caller, callee, calls, transport, mode="u1"):
    caller.assert_clean(calls)
    callee.assert_clean(calls)
    assert not caller.killed and not callee.killed  # both stopped by themselves (-m)
    assert caller.retransmissions == 0 or transport == "UDP", caller.summary()

    # Caller's view: one INVITE, one 200 with a To tag, an ACK and a BYE per call,
    # ACK and BYE addressed to the callee's Contact (the remote target).  (With -t tn
    # SIPp does not trace an INVITE it had to buffer while its connection was opening.)
    if mode != "tn":
        assert len(caller.sent(method="INVITE")) == calls
    ok = caller.received(status=200, method="INVITE")
    assert len({m.call_id for m in ok}) == calls
    assert all(m.to_tag for m in ok)
    assert all(m.transport == transport for m in caller.messages)
    for call_id, msgs in caller.by_call().items():
        ok200 = [
            m
            for m in msgs
            if m.direction == "received" and m.status == 200 and m.cseq_method == "INVITE"
        ][0]
        contact = ok200.header("Contact").strip("<>")
        for method in ("ACK", "BYE"):
            (req,) = [m for m in msgs if m.direction == "sent" and m.method == method]
            assert req.request_uri == contact, (call_id, req.first_line)
            assert req.to_tag == ok200.to_tag and req.from_tag == ok200.from_tag
            assert req.header_values("Route") == []  # no Record-Route: no route set
            assert req.top_branch != ok200.top_branch  # not the INVITE's transaction
        assert any(
            m.direction == "received" and m.status == 200 and m.cseq_method == "BYE" for m in msgs
        )

    # Callee's view: INVITE, ACK and BYE received for every call.
    per_call = {
        cid: Counter(m.method for m in msgs if m.direction == "received")
        for cid, msgs in callee.by_call().items()
    }
    assert len(per_call) == calls
    for cid, seen in per_call.items():
        assert seen["INVITE"] >= 1 and seen["ACK"] == 1 and seen["BYE"] >= 1, (cid, seen)
    assert set(per_call) == set(caller.by_call())
    sent_200 = callee.sent(status=200, method="INVITE")
    assert all(
        m.header("Content-Type") == "application/sdp" and "m=audio" in m.body for m in sent_200
    )


def test_basic_calls_udp(logdir):
    caller, callee = run_pair(logdir, "uas.xml", "uac.xml", 500, rate=500, max_concurrent=200)
    check_basic_calls(caller, callee, 500, "UDP")


def test_basic_calls_tcp(logdir):
    caller, callee = run_pair(
        logdir, "uas.xml", "uac.xml", 200, transport="t1", rate=400, max_concurrent=100
    )
    check_basic_calls(caller, callee, 200, "TCP")


def test_basic_calls_tcp_connection_per_call(logdir):
    caller, callee = run_pair(logdir, "uas.xml", "uac.xml", 30, transport="tn", rate=100)
    check_basic_calls(caller, callee, 30, "TCP", "tn")


def test_basic_calls_udp_ipv6(logdir):
    with sipp.start_uas(ip="::1", calls=20, timeout_s=30, workdir=logdir) as callee:
        caller = sipp.run_uac(("::1", callee.port), ip="::1", calls=20, rate=200, workdir=logdir)
        callee_result = callee.wait(timeout_s=10)
    check_basic_calls(caller, callee_result, 20, "UDP")
    assert all(m.request_uri.startswith("sip:callee@[::1]:") for m in caller.sent(method="BYE"))


def test_hold_time_between_ack_and_bye(logdir):
    caller, callee = run_pair(logdir, "uas.xml", "uac.xml", 5, rate=50, hold_ms=200)
    check_basic_calls(caller, callee, 5, "UDP")
    assert "-d" in caller.command and caller.command[caller.command.index("-d") + 1] == "200"


def test_cancel_after_ringing(logdir):
    calls = 5
    caller, callee = run_pair(logdir, "uas_ring_noanswer.xml", "uac_cancel.xml", calls, rate=50)
    caller.assert_clean(calls)
    callee.assert_clean(calls)
    for call_id, msgs in caller.by_call().items():
        invite = next(m for m in msgs if m.method == "INVITE")
        cancel = next(m for m in msgs if m.method == "CANCEL")
        ack = next(m for m in msgs if m.method == "ACK")
        final = next(m for m in msgs if m.status == 487)
        assert cancel.top_branch == invite.top_branch == ack.top_branch, call_id
        assert cancel.header("CSeq") == "1 CANCEL" and ack.header("CSeq") == "1 ACK"
        assert ack.to_tag == final.to_tag and final.cseq_method == "INVITE"
        assert any(m.status == 200 and m.cseq_method == "CANCEL" for m in msgs)
        assert not any(m.status == 200 and m.cseq_method == "INVITE" for m in msgs)
    seen = Counter(m.method for m in callee.messages if m.direction == "received")
    assert seen == {"INVITE": calls, "CANCEL": calls, "ACK": calls}
    # 487 answers the INVITE with the INVITE's Via and CSeq, saved before the CANCEL.
    for m in callee.sent(status=487):
        assert m.header("CSeq") == "1 INVITE" and m.top_branch


@pytest.mark.parametrize("code", [486, 503, 603])
def test_error_response_is_acked(logdir, code):
    calls = 3
    caller, callee = run_pair(
        logdir, "uas_error.xml", "uac_error.xml", calls, uas_sets={"code": code}, rate=50
    )
    caller.assert_clean(calls)
    callee.assert_clean(calls)
    finals = [m for m in caller.received() if m.status and m.status >= 200]
    assert [m.status for m in finals] == [code] * calls
    for call_id, msgs in caller.by_call().items():
        invite = next(m for m in msgs if m.method == "INVITE")
        ack = next(m for m in msgs if m.method == "ACK")
        error = next(m for m in msgs if m.status == code)
        assert ack.top_branch == invite.top_branch, call_id  # RFC 3261 17.1.1.3
        assert ack.to_tag == error.to_tag and ack.request_uri == invite.request_uri
    assert len(callee.received(method="ACK")) == calls


def test_error_codes_are_those_of_the_scenario():
    text = (sipp.SCENARIOS / "uas_error.xml").read_text()
    for code in sipp.ERROR_CODES:
        assert f"SIP/2.0 {code} " in text
        assert f'<recv response="{code}"' in (sipp.SCENARIOS / "uac_error.xml").read_text()


# --- reorderings a multi-worker proxy produces, played by a scripted peer -------------


def _headers(msg: str, *names: str) -> list[str]:
    return [ln for ln in msg.split("\r\n")[1:] if ln.split(":", 1)[0].strip().lower() in names]


def _scripted_uas(sock: socket.socket, stop: threading.Event) -> None:
    """Answers an INVITE with 200 *then* 180 (the 180 overtaken), a BYE with 200."""
    while not stop.is_set():
        try:
            data, addr = sock.recvfrom(65535)
        except TimeoutError:
            continue
        msg = data.decode()
        method = msg.split(" ", 1)[0]
        if method == "INVITE":
            base = _headers(msg, "via", "from", "call-id", "cseq")
            to = _headers(msg, "to")[0] + ";tag=scripted"
            contact = f"Contact: <sip:scripted@{sipp.hostport(*sock.getsockname()[:2])}>"
            for line in ("SIP/2.0 200 OK", "SIP/2.0 180 Ringing"):
                out = [line, *base, to, contact, "Content-Length: 0", "", ""]
                sock.sendto("\r\n".join(out).encode(), addr)
        elif method == "BYE":
            base = _headers(msg, "via", "from", "to", "call-id", "cseq")
            sock.sendto(
                "\r\n".join(["SIP/2.0 200 OK", *base, "Content-Length: 0", "", ""]).encode(), addr
            )


def test_caller_ignores_180_after_200(logdir):
    calls = 10
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((IP, 0))
        sock.settimeout(0.1)
        stop = threading.Event()
        peer = threading.Thread(target=_scripted_uas, args=(sock, stop), daemon=True)
        peer.start()
        try:
            caller = sipp.run_uac(sock.getsockname(), calls=calls, rate=50, workdir=logdir)
        finally:
            stop.set()
            peer.join()
    caller.assert_clean(calls)
    late = [m for m in caller.messages if m.direction == "ignored"]
    assert len(late) == calls and all(m.status == 180 for m in late)
    assert len(caller.sent(method="BYE")) == calls


def test_callee_answers_bye_overtaking_ack(logdir):
    with sipp.start_uas(calls=1, timeout_s=20, workdir=logdir) as callee:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((IP, 0))
            sock.settimeout(5)
            me = sipp.hostport(*sock.getsockname())

            def request(method, cseq, branch, to_tag=""):
                return "\r\n".join(
                    [
                        f"{method} sip:callee@{callee.address} SIP/2.0",
                        f"Via: SIP/2.0/UDP {me};branch=z9hG4bK{branch}",
                        "Max-Forwards: 70",
                        f"From: <sip:caller@{me}>;tag=scripted",
                        f"To: <sip:callee@{callee.address}>{to_tag}",
                        "Call-ID: reorder-1@127.0.0.1",
                        f"CSeq: {cseq} {method}",
                        f"Contact: <sip:caller@{me}>",
                        "Content-Length: 0",
                        "",
                        "",
                    ]
                ).encode()

            dest = (callee.ip, callee.port)
            sock.sendto(request("INVITE", 1, "inv"), dest)
            while True:
                reply = sock.recv(65535).decode()
                if reply.startswith("SIP/2.0 200"):
                    break
            to = _headers(reply, "to")[0]
            tag = ";tag=" + to.split(";tag=")[1]
            sock.sendto(request("BYE", 2, "bye", tag), dest)
            sock.sendto(request("ACK", 1, "ack", tag), dest)
            replies = []
            while not any("BYE" in r for r in replies):
                replies.append(sock.recv(65535).decode())
        result = callee.wait(timeout_s=10)
    assert any(r.startswith("SIP/2.0 200") and "CSeq: 2 BYE" in r for r in replies)
    result.assert_clean(1)


# --- the harness itself --------------------------------------------------------------


def test_hung_caller_is_killed(logdir):
    """A call that never gets an answer: -timeout is ignored once -m calls are started,
    so the harness ends SIPp itself after the grace period."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as black_hole:
        black_hole.bind((IP, 0))
        caller = sipp.run_uac(
            black_hole.getsockname(),
            calls=1,
            rate=10,
            timeout_s=1,
            grace_s=1,
            recv_timeout_ms=None,
            workdir=logdir,
        )
        assert black_hole.recv(65535).startswith(b"INVITE ")
    assert caller.killed
    assert not caller.successful
    assert caller.sent(method="INVITE")


def test_missing_sipp_fails_not_skips(tmp_path):
    with pytest.raises(pytest.fail.Exception, match="sipp not found"):
        sipp.require_sipp(str(tmp_path / "no-such-sipp"))


def test_free_ports_are_distinct_and_bindable():
    ports = {sipp.free_port(IP) for _ in range(20)}
    assert len(ports) == 20
    for port in ports:
        for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
            with socket.socket(socket.AF_INET, kind) as s:
                s.bind((IP, port))
