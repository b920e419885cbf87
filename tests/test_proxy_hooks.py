"""The compiled stateful proxy's control-plane hooks (on_invite decisions,
DEFER/resume, on_options) and its call counters, judged on the wire with
raw sockets; the proxy runs in this process, pumped by hand."""

from __future__ import annotations

import socket
import time

import pytest

import sipfast
from sipfast import UdpProxy, parse
from sipfast._core import DEFER

IP = "127.0.0.1"


def udp(blocking: bool = True) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((IP, 0))
    if blocking:
        s.settimeout(2)
    else:
        s.setblocking(False)
    return s


class Rig:
    """A proxy socket with its UdpProxy, a caller, a callee and a delegate."""

    def __init__(self, **hooks) -> None:
        self.psock = udp(blocking=False)
        self.port = self.psock.getsockname()[1]
        self.caller, self.callee, self.delegate = udp(), udp(), udp()
        self.eport = self.callee.getsockname()[1]
        self.dport = self.delegate.getsockname()[1]
        self.proxy = UdpProxy(self.psock.fileno(), IP, self.port, [(IP, self.eport)], True,
                              stateful=True, defer_timeout=100, **hooks)

    def pump(self, rounds: int = 3) -> None:
        for _ in range(rounds):
            time.sleep(0.01)
            self.proxy.on_readable()
            self.proxy.on_timer()

    def send(self, data: bytes) -> None:
        self.caller.sendto(data, (IP, self.port))
        self.pump()

    def answer(self, req: bytes, status: int, **kw) -> None:
        self.callee_or_delegate_send(sipfast.make_response(parse(req), status, **kw))

    def callee_or_delegate_send(self, data: bytes) -> None:
        self.callee.sendto(data, (IP, self.port))
        self.pump()

    def recv(self, s: socket.socket) -> bytes:
        return s.recv(65535)

    def close(self) -> None:
        for s in (self.psock, self.caller, self.callee, self.delegate):
            s.close()


@pytest.fixture
def rig_factory():
    rigs = []

    def make(**hooks):
        rigs.append(Rig(**hooks))
        return rigs[-1]

    yield make
    for r in rigs:
        r.close()


def invite(rig: Rig, branch: str = "z9hG4bKc1", method: str = "INVITE",
           to_tag: str = "", cseq: int = 1) -> bytes:
    cport = rig.caller.getsockname()[1]
    tag = f";tag={to_tag}" if to_tag else ""
    return (f"{method} sip:bob@example.com SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {IP}:{cport};branch={branch};rport\r\n"
            "Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a1\r\n"
            f"To: <sip:bob@example.com>{tag}\r\nCall-ID: hooks-1\r\n"
            f"CSeq: {cseq} {method}\r\nContact: <sip:alice@{IP}:{cport}>\r\n"
            "Content-Length: 0\r\n\r\n").encode()


def test_delegate_decision_forwards_to_the_peer_with_extra_headers(rig_factory):
    seen = []

    def on_invite(data, source, txn):
        seen.append((parse(data).method, source, txn))
        return (IP, rig.dport), b"X-Sipfast-Visited: sip:127.0.0.1:1\r\n"

    rig = rig_factory(on_invite=on_invite)
    rig.send(invite(rig))
    assert rig.recv(rig.caller).startswith(b"SIP/2.0 100 Trying")
    fwd = parse(rig.recv(rig.delegate))
    assert seen == [("INVITE", (IP, rig.caller.getsockname()[1]), seen[0][2])]
    assert fwd.get("X-Sipfast-Visited") == "sip:127.0.0.1:1"
    assert fwd.via.port == rig.port and fwd.via.branch.startswith("z9hG4bKsf")
    assert fwd.get("Record-Route") is None     # the completing proxy record-routes
    rig.delegate.sendto(sipfast.make_response(fwd, 200, to_tag="d1"), (IP, rig.port))
    rig.pump()
    assert rig.recv(rig.caller).startswith(b"SIP/2.0 200 OK")
    st = rig.proxy.stats()
    assert st["delegated"] == 1
    assert st["pending_invites"] == 0 and st["dialogs"] == 0 and st["active_calls"] == 0


def test_direct_decision_leaves_our_via_out_and_keeps_the_delegate(rig_factory):
    rig = rig_factory(on_invite=lambda d, s, t: ("direct", IP, rig.dport))
    rig.send(invite(rig))
    assert rig.recv(rig.caller).startswith(b"SIP/2.0 100 Trying")
    fwd = parse(rig.recv(rig.delegate))
    assert len(fwd.vias) == 1 and fwd.via.branch == "z9hG4bKc1"   # the caller's Via only
    assert fwd.via.received is None and fwd.via.rport == rig.caller.getsockname()[1]
    assert fwd.max_forwards == 69 and fwd.get("Record-Route") is None
    # the retransmission and the CANCEL go to the same delegate, unanswered here
    rig.send(invite(rig))
    assert parse(rig.recv(rig.delegate)).method == "INVITE"
    rig.send(invite(rig, method="CANCEL"))
    assert parse(rig.recv(rig.delegate)).method == "CANCEL"
    rig.caller.settimeout(0.2)
    with pytest.raises(TimeoutError):
        rig.recv(rig.caller)
    st = rig.proxy.stats()
    assert st["relayed_direct"] == 3 and st["pending"] == 0 and st["active_calls"] == 0


def test_status_decision_answers_with_retry_after(rig_factory):
    rig = rig_factory(on_invite=lambda d, s, t: 503)
    rig.send(invite(rig))
    assert rig.recv(rig.caller).startswith(b"SIP/2.0 100 Trying")
    resp = parse(rig.recv(rig.caller))
    assert resp.status == 503 and resp.get("Retry-After") == "5"
    assert rig.proxy.stats()["pending"] == 0


def test_defer_then_resume_routes_and_an_unresumed_defer_gets_500(rig_factory):
    txns = []

    def on_invite(data, source, txn):
        txns.append(txn)
        return DEFER

    rig = rig_factory(on_invite=on_invite)
    rig.send(invite(rig))
    assert rig.recv(rig.caller).startswith(b"SIP/2.0 100 Trying")
    assert rig.proxy.stats()["pending_invites"] == 1
    assert rig.proxy.resume(txns[0], None) is True
    assert parse(rig.recv(rig.callee)).method == "INVITE"
    assert rig.proxy.resume(txns[0], None) is False          # not deferred any more
    rig.send(invite(rig, branch="z9hG4bKc2"))
    assert rig.recv(rig.caller).startswith(b"SIP/2.0 100 Trying")
    time.sleep(0.15)
    rig.pump()
    assert parse(rig.recv(rig.caller)).status == 500           # defer_timeout passed
    assert rig.proxy.resume(txns[1], None) is False


def test_bad_decisions_get_500_and_the_proxy_goes_on(rig_factory):
    decisions = iter([("not-an-ip", 5), 42, ((IP, 1), b"bad header\r\n"), None])
    rig = rig_factory(on_invite=lambda d, s, t: next(decisions))
    for i in range(3):
        rig.send(invite(rig, branch=f"z9hG4bKbad{i}"))
        assert rig.recv(rig.caller).startswith(b"SIP/2.0 100 Trying")
        assert parse(rig.recv(rig.caller)).status == 500
    rig.send(invite(rig, branch="z9hG4bKgood"))
    assert rig.recv(rig.caller).startswith(b"SIP/2.0 100 Trying")
    assert parse(rig.recv(rig.callee)).method == "INVITE"


def test_calls_are_counted_exactly_through_answer_and_bye(rig_factory):
    rig = rig_factory()
    rig.send(invite(rig))
    rig.recv(rig.caller)
    req = rig.recv(rig.callee)
    assert rig.proxy.active_calls == 1                         # pending INVITE
    rig.answer(req, 200, to_tag="b1")
    rig.recv(rig.caller)
    assert rig.proxy.stats()["dialogs"] == 1 and rig.proxy.active_calls == 1
    rig.answer(req, 200, to_tag="b1")                          # a 2xx retransmission
    assert rig.proxy.active_calls == 1
    rig.send(invite(rig, branch="z9hG4bKbye", method="BYE", to_tag="b1", cseq=2)
             .replace(b"bob@example.com SIP", f"bob@{IP}:{rig.eport} SIP".encode()))
    assert parse(rig.recv(rig.callee)).method == "BYE"
    st = rig.proxy.stats()
    assert st["dialogs"] == 0 and st["calls_ended"] == 1
    # a CANCELled call and a failed one leave nothing counted
    rig.send(invite(rig, branch="z9hG4bKc3"))
    rig.recv(rig.caller)
    req = rig.recv(rig.callee)
    rig.answer(req, 486)
    rig.recv(rig.caller)
    assert rig.proxy.active_calls == 0 and rig.proxy.pending() == 1   # the BYE's own


def next_of(s: socket.socket, call_id: str, method: str) -> bytes:
    """The next request ``method`` of ``call_id`` on s, skipping others
    (e.g. Timer A copies of an INVITE with a short T1)."""
    while True:
        data = s.recv(65535)
        m = parse(data)
        if m.is_request and m.method == method and m.call_id == call_id:
            return data


def test_a_2xx_never_acked_stops_counting_after_64_t1(rig_factory):
    """A confirmed dialog whose 2xx gets no ACK (a caller that gave up, or
    SIPp aborting a call on the 200) is a call only until the UAS itself
    gives up, 64*T1 (RFC 3261 §13.3.1.4), not for max_call_duration; an
    ACKed one stays a call until its BYE."""
    # 64*T1 = 0.64 s; a small table, so that the sweep goes round it quickly
    rig = rig_factory(t1=10, t2=40, max_transactions=256)
    rig.send(invite(rig))
    rig.recv(rig.caller)
    req = rig.recv(rig.callee)
    rig.answer(req, 200, to_tag="b1")
    rig.recv(rig.caller)
    assert rig.proxy.stats()["dialogs"] == 1 and rig.proxy.active_calls == 1
    end = time.monotonic() + 2.0
    while rig.proxy.stats()["dialogs"] and time.monotonic() < end:
        rig.pump()
    st = rig.proxy.stats()
    assert st["dialogs"] == 0 and st["active_calls"] == 0 and st["calls_expired"] == 1
    # the same with its ACK: still a call after 64*T1, ended by the BYE
    rig.send(invite(rig, branch="z9hG4bKc2").replace(b"hooks-1", b"hooks-2"))
    rig.recv(rig.caller)
    req = next_of(rig.callee, "hooks-2", "INVITE")     # after call 1's Timer A copies
    rig.answer(req, 200, to_tag="b2")
    rig.recv(rig.caller)
    rig.send(invite(rig, branch="z9hG4bKack2", method="ACK", to_tag="b2")
             .replace(b"hooks-1", b"hooks-2")
             .replace(b"bob@example.com SIP", f"bob@{IP}:{rig.eport} SIP".encode()))
    assert next_of(rig.callee, "hooks-2", "ACK")
    end = time.monotonic() + 1.0
    while time.monotonic() < end:
        rig.pump()
    assert rig.proxy.stats()["dialogs"] == 1 and rig.proxy.active_calls == 1
    rig.send(invite(rig, branch="z9hG4bKbye2", method="BYE", to_tag="b2", cseq=2)
             .replace(b"hooks-1", b"hooks-2")
             .replace(b"bob@example.com SIP", f"bob@{IP}:{rig.eport} SIP".encode()))
    assert next_of(rig.callee, "hooks-2", "BYE")
    st = rig.proxy.stats()
    assert st["dialogs"] == 0 and st["calls_ended"] == 1 and st["calls_expired"] == 1


def test_options_hook_answers_queries_to_the_proxy_itself(rig_factory):
    def on_options(data, source):
        return sipfast.make_response(parse(data), 200, headers=[("X-Load", "0.5")])

    rig = rig_factory(on_options=on_options)
    cport = rig.caller.getsockname()[1]
    rig.send((f"OPTIONS sip:{IP}:{rig.port} SIP/2.0\r\n"
              f"Via: SIP/2.0/UDP {IP}:{cport};branch=z9hG4bKo1;rport\r\n"
              "Max-Forwards: 70\r\nFrom: <sip:lb@x>;tag=o\r\nTo: <sip:p@x>\r\n"
              "Call-ID: o1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n").encode())
    resp = parse(rig.recv(rig.caller))
    assert resp.status == 200 and resp.get("X-Load") == "0.5"


def test_branches_stay_unique_across_restarts_on_one_address(rig_factory):
    """RFC 3261 §8.1.1.7: the first transaction of a restarted proxy (same
    address, same cell) must not reuse the branch of its previous life."""
    branches = []
    for _ in range(2):
        rig = rig_factory()
        rig.send(invite(rig))
        rig.recv(rig.caller)
        branches.append(parse(rig.recv(rig.callee)).via.branch)
        rig.close()
    assert branches[0] != branches[1]
    assert all(len(b) == 36 and b.startswith("z9hG4bKsf") for b in branches)


def test_a_strict_router_before_us_is_undone(rig_factory):
    """RFC 3261 §16.4: the Request-URI is our Record-Route URI (a strict
    router put it there): the last Route value becomes the Request-URI."""
    rig = rig_factory()
    cport = rig.caller.getsockname()[1]
    req = (f"BYE sip:{IP}:{rig.port};lr SIP/2.0\r\n"
           f"Via: SIP/2.0/UDP {IP}:{cport};branch=z9hG4bKstrict;rport\r\n"
           "Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a1\r\n"
           "To: <sip:bob@example.com>;tag=b1\r\nCall-ID: strict-1\r\nCSeq: 2 BYE\r\n"
           f"Route: <sip:bob@{IP}:{rig.eport}>\r\nContent-Length: 0\r\n\r\n").encode()
    rig.send(req)
    fwd = parse(rig.recv(rig.callee))
    assert fwd.uri_text == f"sip:bob@{IP}:{rig.eport}"
    assert fwd.get("Route") is None


def test_stateful_over_ipv6():
    """RFC 5118: IPv6 references in our Via and Record-Route; 100 Trying,
    the INVITE forwarded, the 180 and 200 returned, on ::1."""
    def udp6(blocking: bool = True) -> socket.socket:
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        s.bind(("::1", 0))
        if blocking:
            s.settimeout(2)
        else:
            s.setblocking(False)
        return s

    psock, caller, callee = udp6(False), udp6(), udp6()
    try:
        pport, cport, eport = (x.getsockname()[1] for x in (psock, caller, callee))
        p = UdpProxy(psock.fileno(), "::1", pport, [("::1", eport)], True, stateful=True)
        req = (f"INVITE sip:bob@[::1]:{eport} SIP/2.0\r\n"
               f"Via: SIP/2.0/UDP [::1]:{cport};branch=z9hG4bK6a;rport\r\n"
               "Max-Forwards: 70\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@x>\r\n"
               "Call-ID: v6-1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n").encode()

        def pump() -> None:
            for _ in range(3):
                time.sleep(0.01)
                p.on_readable()

        caller.sendto(req, ("::1", pport))
        pump()
        assert caller.recv(65535).startswith(b"SIP/2.0 100 Trying")
        fwd = parse(callee.recv(65535))
        assert (fwd.via.host, fwd.via.port) == ("[::1]", pport)
        assert fwd.get("Record-Route") == f"<sip:[::1]:{pport};lr>"
        for status in (180, 200):
            callee.sendto(sipfast.make_response(fwd, status, to_tag="v6"), ("::1", pport))
            pump()
            assert parse(caller.recv(65535)).status == status
    finally:
        for s in (psock, caller, callee):
            s.close()


def drive(rig: Rig, until, limit: float = 3.0) -> list[tuple[float, float]]:
    """Call on_timer as proxy.py's tick does: again after the wait it
    returns (draining the socket meanwhile), until `until()` holds; the
    (time, wait) of each call."""
    calls = []
    end = time.monotonic() + limit
    while not until() and time.monotonic() < end:
        rig.proxy.on_readable()
        wait = rig.proxy.on_timer()
        calls.append((time.monotonic(), wait))
        time.sleep(wait)
    return calls


def test_the_timer_waits_100_ms_while_transactions_only_linger(rig_factory):
    rig = rig_factory(t1=500, wait_timer=5000)
    assert rig.proxy.on_timer() == pytest.approx(0.1)           # idle
    rig.send(invite(rig))
    assert rig.recv(rig.caller).startswith(b"SIP/2.0 100 Trying")
    rig.answer(rig.recv(rig.callee), 200, to_tag="b1")
    assert rig.recv(rig.caller).startswith(b"SIP/2.0 200 OK")
    # the transaction waits (Timer L, 64*T1 for the branch), nothing to resend
    assert not rig.proxy.idle and rig.proxy.live_transactions == 1
    assert rig.proxy.on_timer() == pytest.approx(0.1)


def test_the_timer_wait_never_passes_a_retransmission(rig_factory):
    rig = rig_factory(t1=500)
    rig.send(invite(rig))
    assert rig.recv(rig.caller).startswith(b"SIP/2.0 100 Trying")
    first = rig.recv(rig.callee)
    seen = time.monotonic()           # Timer A was armed before this: due by seen + T1
    rig.callee.setblocking(False)
    again = []

    def resent() -> bool:
        try:
            again.append(rig.callee.recv(65535))
        except BlockingIOError:
            pass
        return bool(again)

    calls = drive(rig, resent)
    assert again and again[0] == first                          # A fired: the same INVITE
    for at, wait in calls[:-1]:       # the last call fired it
        assert wait <= max(0.01, seen + 0.5 - at) + 0.002
    # slept through in steps of up to 100 ms, not the wheel's 10 ms tick
    assert len(calls) <= 15


def test_lingering_transactions_still_end_with_a_long_wait(rig_factory):
    rig = rig_factory(t1=20, wait_timer=200)
    rig.send(invite(rig))
    assert rig.recv(rig.caller).startswith(b"SIP/2.0 100 Trying")
    rig.answer(rig.recv(rig.callee), 200, to_tag="b1")
    assert rig.recv(rig.caller).startswith(b"SIP/2.0 200 OK")
    assert rig.proxy.live_transactions == 1
    drive(rig, lambda: rig.proxy.live_transactions == 0)
    assert rig.proxy.live_transactions == 0 and rig.proxy.idle
    assert rig.proxy.on_timer() == pytest.approx(0.02)          # at most T1
