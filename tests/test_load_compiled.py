"""The compiled delegation decision (ext/deleg.pxi's PeerMirror) against
sipfast/load/decide.py: the same generated cases (own load, peers' reports
and assigned counts, down peers, visited lists, Max-Forwards, ties, full
peers) go through the Python path (Delegation._chain + decide, fed a
PeerTable) and through the C one, decision after decision, so the round
robin and the assigned counts evolve on both sides; every decision and
every assigned count must be equal.  Then a real UdpProxy on loopback
shows the decision is taken in C (on_invite not called) and carried out
on the wire."""

from __future__ import annotations

import random
import socket

import pytest

import sipfast
from sipfast._core import PeerMirror, UdpProxy
from sipfast.load import Delegation, LoadOptions, LoadReport, Workload

ME = "sip:127.0.0.1:5060"
LOADS = (0.0, 0.1, 0.2, 0.2005, 0.201, 0.5, 0.7999, 0.8, 0.8005, 0.9, 1.0)


class NoHooks:
    """A proxy without set_delegation: Delegation keeps deciding in Python."""

    active_calls = live_transactions = 0

    def stats(self) -> dict[str, int]:
        return {}

    def pending(self) -> int:
        return 0


def udp() -> socket.socket:
    """A UDP socket on a free loopback port, 2 s receive timeout."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(2.0)
    return s


def response(status: int, reason: str, req, to_tag: str = "") -> bytes:
    """A response to parsed request req (its Vias, From, To with to_tag
    added, Call-ID, CSeq), as the next hop sends it back."""
    vias = "".join(f"Via: {v}\r\n" for v in req.vias)
    tag = f";tag={to_tag}" if to_tag else ""
    return (f"SIP/2.0 {status} {reason}\r\n{vias}From: {req.get('From')}\r\n"
            f"To: {req.get('To')}{tag}\r\nCall-ID: {req.call_id}\r\n"
            f"CSeq: {req.cseq} {req.cseq_method}\r\nContent-Length: 0\r\n\r\n").encode()


def invite(visited_lines, max_forwards) -> bytes:
    extra = "".join(f"X-Sipfast-Visited: {v}\r\n" for v in visited_lines)
    mf = "" if max_forwards is None else f"Max-Forwards: {max_forwards}\r\n"
    return ("INVITE sip:bob@127.0.0.1:5090 SIP/2.0\r\n"
            "Via: SIP/2.0/UDP 127.0.0.1:6000;branch=z9hG4bKgen;rport\r\n" + mf +
            "From: <sip:alice@127.0.0.1>;tag=a\r\nTo: <sip:bob@127.0.0.1>\r\n"
            "Call-ID: gen-1\r\nCSeq: 1 INVITE\r\n" + extra +
            "Content-Length: 0\r\n\r\n").encode()


def gen_visited(rng: random.Random, peers: list[str]) -> list[str]:
    pool = peers + [ME, "sip:127.0.0.1:5999", "sip:[::1]:5071"]
    shape = rng.random()
    if shape < 0.3:
        return []
    elements = rng.sample(pool, rng.randint(1, min(4, len(pool))))
    if shape < 0.38:
        elements.append(rng.choice(["junk", "sip:127.0.0.1", "sip:127.0.0.1:0",
                                    "sip:127.0.0.1:70000", "sip:::1:5071", "", "sip:1.2.3:5"]))
    elif shape < 0.42:
        elements = [f"sip:10.0.0.{i % 250 + 1}:{5000 + i}" for i in range(rng.choice((64, 65)))]
    elif shape < 0.5:
        elements = [e.upper().replace("SIP:", rng.choice(["SIP:", "sip:", "Sip:"]))
                    for e in elements]
    sep = [", ", ",", " ,\t", "\t, "]
    if len(elements) > 1 and rng.random() < 0.5:      # two header lines
        k = rng.randint(1, len(elements) - 1)
        return [rng.choice(sep).join(elements[:k]), rng.choice(sep).join(elements[k:])]
    return [rng.choice(sep).join(elements)]


def run_case(seed: int) -> None:
    rng = random.Random(seed)
    n = rng.randint(1, 6)
    ports = rng.sample(range(5061, 5100), n)
    peers = [f"sip:127.0.0.1:{p}" for p in ports]
    if rng.random() < 0.2:
        peers[0] = "sip:[::1]:5071"
    capacity = rng.randint(1, 10)
    limit = rng.randint(1, 10)
    threshold = rng.choice((0.0, 0.2, 0.5, 0.8, 0.8005, 1.0))
    cpu = rng.choice((0.0, 0.0, 0.3, 0.8, 0.95, 1.0))
    opts = LoadOptions(identities=[ME], peers=peers, threshold=threshold, capacity=capacity,
                       pending_limit=limit)
    d = Delegation([NoHooks()], opts, None, workload=Workload(  # type: ignore[arg-type]
        capacity, limit, cpu_sampler=lambda: cpu))
    assert d.mirror is None
    m = PeerMirror([d.table.peers[u].addr for u in d.order], [("127.0.0.1", 5060)], ME,
                   threshold=threshold, capacity=capacity, pending_limit=limit, max_age=60.0)
    m.set_cpu(cpu)
    for i, uri in enumerate(d.order):
        if rng.random() < 0.15:
            continue                        # never heard: not a candidate
        pcap = rng.randint(1, 12)
        plimit = rng.choice((None, rng.randint(1, 12)))
        calls, pending = rng.randint(0, pcap + 1), rng.randint(0, 14)
        load = max(rng.choice(LOADS), min(1.0, calls / pcap))
        if plimit:
            load = max(load, min(1.0, pending / plimit))
        d.table.ingest(uri, LoadReport(load, calls, pending, pcap, 1, plimit, None))
        m.set_report(i, calls, pending, pcap, plimit or 0, load)
        if rng.random() < 0.15:
            d.table.mark_unanswered(uri)
            m.set_down(i)
        for _ in range(rng.choice((0, 0, 1, 3))):
            d.table.note_delegated(uri)
            m.note_delegated(i)
    for step in range(6):
        calls, pending = rng.randint(0, capacity + 1), rng.randint(0, limit + 1)
        d.workload.update(calls, pending)
        data = invite(gen_visited(rng, peers), rng.choice((None, 0, 1, 2, 70)))
        visited, can_forward = d._chain(sipfast.parse(data))
        want = d._decide(visited, can_forward)
        kind, target = m.decide_request(data, calls, pending)
        what = f"seed {seed} step {step}: {data!r}, own ({calls}, {pending}), py {want}"
        assert kind == want.kind, what
        if kind == "delegate":
            assert want.target is not None
            assert d.order[target] == want.target.uri, what
        for i, uri in enumerate(d.order):
            assert m.assigned(i) == d.table.peers[uri].assigned, what


@pytest.mark.parametrize("block", range(8))
def test_compiled_decision_matches_decide_py(block):
    for seed in range(block * 500, block * 500 + 500):
        run_case(seed)


def test_the_generated_cases_cover_every_outcome():
    """The cases above reach each rule (else the comparison proves little)."""
    kinds: dict[str, int] = {}
    whys: set[str] = set()
    original = Delegation._decide

    def spy(self, visited, can_forward):
        dec = original(self, visited, can_forward)
        kinds[dec.kind] = kinds.get(dec.kind, 0) + 1
        whys.add(dec.why)
        return dec
    Delegation._decide = spy        # type: ignore[method-assign]
    try:
        for seed in range(600):
            run_case(seed)
    finally:
        Delegation._decide = original    # type: ignore[method-assign]
    assert set(kinds) == {"local", "delegate", "reject"}
    assert whys == {"under threshold", "peer under threshold", "least loaded",
                    "no peer to take it", "least loaded peer", "every proxy at capacity"}


def test_mirror_threshold_and_counters():
    m = PeerMirror([("127.0.0.1", 5071)], [("127.0.0.1", 5060)], ME, threshold=0.5,
                   capacity=10, pending_limit=100, max_age=5.0)
    data = invite([], 70)
    m.set_report(0, 0, 0, 10, 0, 0.0)
    assert m.decide_request(data, 6, 6) == ("delegate", 0)
    m.set_threshold(0.7)
    assert m.decide_request(data, 6, 6) == ("local", None)
    m.set_down(0)
    assert m.decide_request(data, 11, 6) == ("reject", None)
    m.set_report(0, 0, 0, 10, 0, 0.0)          # a report: up again, assigned 0
    assert m.assigned(0) == 0
    assert m.counters() == {"local": 1, "delegated": 1, "rejected": 1, "asked": 0}
    with pytest.raises(ValueError):
        m.set_threshold(1.5)
    poll = PeerMirror([("127.0.0.1", 5071)], [("127.0.0.1", 5060)], ME, threshold=0.5,
                      capacity=10, pending_limit=100, max_age=5.0, poll=True)
    assert poll.decide_request(data, 1, 1) == ("local", None)
    assert poll.decide_request(data, 9, 1) == ("ask", None)   # the peers must be asked


def test_mirror_projects_the_drift_as_peers_table_does():
    """Two peers; A reported 50 of 100 calls two seconds ago and 30 one
    second ago (20 of its calls ended a second, none through us), B 25 of
    100 once.  Without the drift A looks at 31 and B at 26, so B would be
    taken; with it A is projected at 11 by now: the C mirror and the
    PeerTable both delegate to A, and after a third report of A that shows
    the drift stopped they both go back to B."""
    from sipfast.load import PeerTable, RoundRobin, decide

    class Clock:
        t = 100.0

        def __call__(self) -> float:
            return self.t

    clock = Clock()
    a, b = "sip:127.0.0.1:5071", "sip:127.0.0.1:5072"
    table = PeerTable([a, b], 10.0, clock)
    m = PeerMirror([("127.0.0.1", 5071), ("127.0.0.1", 5072)], [("127.0.0.1", 5060)], ME,
                   threshold=0.0, capacity=100, pending_limit=500, max_age=10.0)
    data = invite([], 70)

    def report(uri: str, i: int, calls: int, seq: int, age: float) -> None:
        table.ingest(uri, LoadReport(calls / 100, calls, 0, 100, seq, None, 0.01))
        m.set_report(i, calls, 0, 100, 0, calls / 100, 0.01, age)

    clock.t -= 2.0
    report(a, 0, 50, 1, 2.0)
    clock.t += 1.0
    report(a, 0, 30, 2, 1.0)
    report(b, 1, 25, 1, 1.0)
    clock.t += 1.0
    py = decide(0.5, False, 0.0, table.candidates(), [], RoundRobin())
    assert py.kind == "delegate" and py.target is not None and py.target.uri == a
    loads = {c.uri: c.load for c in table.candidates()}
    assert loads[a] == pytest.approx(0.11) and loads[b] == pytest.approx(0.26)
    assert m.decide_request(data, 50, 0) == ("delegate", 0)
    # A's count held still for a second: its drift is smoothed towards 0
    # (0.3 * (30 + 1 - 30 - 1) + 0.7 * -20 = -14/s) and its age is 0 now
    table.note_delegated(a)
    report(a, 0, 31, 3, 0.0)
    py = decide(0.5, False, 0.0, table.candidates(), [], RoundRobin())
    assert py.target is not None and py.target.uri == b
    assert m.decide_request(data, 50, 0) == ("delegate", 1)


def test_the_proxy_decides_in_c_and_delegates_on_the_wire():
    """A stateful UdpProxy with a mirror: the INVITE goes to the peer with
    our visited line and no on_invite call; under the threshold it goes to
    the next hop, and the hook is never entered."""
    front, peer, callee, caller = udp(), udp(), udp(), udp()
    front.setblocking(False)
    fport, pport, cport = (s.getsockname()[1] for s in (front, peer, callee))
    me = f"sip:127.0.0.1:{fport}"
    px = UdpProxy(front.fileno(), "127.0.0.1", fport, [("127.0.0.1", cport)], stateful=True)
    calls = []
    px.set_hooks(on_invite=lambda *a: calls.append(a))
    m = PeerMirror([("127.0.0.1", pport)], [("127.0.0.1", fport)], me, threshold=0.4,
                   capacity=2, pending_limit=500, max_age=5.0)
    px.set_delegation(m, 0)
    m.set_report(0, 0, 0, 100, 0, 0.0)

    def send(call_id: str) -> None:
        data = invite([], 70).replace(b"gen", call_id.encode()).replace(
            b"127.0.0.1:6000", f"127.0.0.1:{caller.getsockname()[1]}".encode())
        caller.sendto(data, ("127.0.0.1", fport))
        px.on_readable()
    send("c1")                                    # own load 1/2 > 0.4: delegate
    got = sipfast.parse(peer.recv(65535))
    assert got.method == "INVITE" and got.get("X-Sipfast-Visited") == me
    assert len(got.vias) == 2                     # --reply-path via: ours on top
    assert px.stats()["transactions"] == 0        # relayed before any transaction
    m.set_threshold(1.0)                          # 2/2: a threshold change reaches C
    send("c2")
    assert sipfast.parse(caller.recv(65535)).status == 100     # completed here
    got = sipfast.parse(callee.recv(65535))
    assert got.call_id == "c2-1" and got.get("X-Sipfast-Visited") is None
    assert calls == []
    assert m.counters()["delegated"] == 1 and m.counters()["local"] == 1
    assert m.assigned(0) == 1 and px.stats()["delegated"] == 1
    for s in (front, peer, callee, caller):
        s.close()


def test_a_delegated_invite_is_relayed_statelessly_with_a_derived_branch():
    """--reply-path via, decided in C: relayed as a stateless proxy does
    (§16.11), before any transaction: our Via with a branch derived from
    the caller's, no 100 of ours; a retransmission and the CANCEL reach the
    same delegate with the same branch (so the delegate matches them to its
    transaction) without a second decision, the delegate's 100, 180 and
    487 go to the caller with our Via popped, the ACK of the 487 follows
    the INVITE; nothing is counted as this proxy's load."""
    front, peer, callee, caller = udp(), udp(), udp(), udp()
    front.setblocking(False)
    fport, pport, cport, uport = (s.getsockname()[1] for s in (front, peer, callee, caller))
    px = UdpProxy(front.fileno(), "127.0.0.1", fport, [("127.0.0.1", cport)], stateful=True)
    px.set_hooks(on_invite=lambda *a: pytest.fail("on_invite called"))
    m = PeerMirror([("127.0.0.1", pport)], [("127.0.0.1", fport)], f"sip:127.0.0.1:{fport}",
                   threshold=0.0, capacity=1, pending_limit=500, max_age=5.0)
    px.set_delegation(m, 0)
    m.set_report(0, 0, 0, 100, 0, 0.0)
    data = invite([], 70).replace(b"127.0.0.1:6000", f"127.0.0.1:{uport}".encode())

    def to_front(msg: bytes, src: socket.socket) -> None:
        src.sendto(msg, ("127.0.0.1", fport))
        px.on_readable()

    def silent(s: socket.socket) -> bool:
        s.settimeout(0.2)
        try:
            s.recv(65535)
        except TimeoutError:
            return True
        finally:
            s.settimeout(2.0)
        return False
    to_front(data, caller)
    first = sipfast.parse(peer.recv(65535))
    assert silent(caller)                                           # no 100 of ours
    to_front(data, caller)                                          # a retransmission
    again = sipfast.parse(peer.recv(65535))
    b = first.vias[0].branch
    assert b.startswith("z9hG4bK") and not b.startswith("z9hG4bKsf") and again.vias[0].branch == b
    assert [v.branch for v in first.vias[1:]] == ["z9hG4bKgen"]
    assert first.get("X-Sipfast-Visited") == f"sip:127.0.0.1:{fport}"
    peer.sendto(response(100, "Trying", first), ("127.0.0.1", fport))
    peer.sendto(response(180, "Ringing", first, "d1"), ("127.0.0.1", fport))
    px.on_readable()
    trying = sipfast.parse(caller.recv(65535))
    assert trying.status == 100 and [v.branch for v in trying.vias] == ["z9hG4bKgen"]
    ringing = sipfast.parse(caller.recv(65535))
    assert ringing.status == 180 and [v.branch for v in ringing.vias] == ["z9hG4bKgen"]
    cancel = data.replace(b"INVITE sip:bob@127.0.0.1:5090 SIP/2.0",
                          b"CANCEL sip:bob@127.0.0.1:5090 SIP/2.0").replace(
                              b"CSeq: 1 INVITE", b"CSeq: 1 CANCEL")
    to_front(cancel, caller)
    relayed = sipfast.parse(peer.recv(65535))
    assert relayed.method == "CANCEL" and relayed.vias[0].branch == b
    assert silent(caller)                   # the delegate answers the CANCEL, not us
    peer.sendto(response(487, "Request Terminated", first, "d1"), ("127.0.0.1", fport))
    px.on_readable()
    assert sipfast.parse(caller.recv(65535)).status == 487
    ack = cancel.replace(b"CANCEL sip:", b"ACK sip:").replace(b"CSeq: 1 CANCEL", b"CSeq: 1 ACK")
    to_front(ack, caller)
    got = sipfast.parse(peer.recv(65535))
    assert got.method == "ACK" and got.vias[0].branch == b
    assert silent(callee)
    st = px.stats()
    assert st["relayed_stateless"] == 4 and st["relays_held"] == 1
    assert st["delegated"] == 1 and st["transactions"] == 0
    assert st["pending"] == 0 and st["active_calls"] == 0
    assert m.counters()["delegated"] == 1 and m.assigned(0) == 1
    for s in (front, peer, callee, caller):
        s.close()


def test_a_cancel_after_a_long_ringing_still_reaches_the_delegate():
    """The relay of a statelessly relayed INVITE is held while the
    delegate's 180 says the call rings (not only 64*T1 from the INVITE):
    with T1 = 10 ms, a CANCEL 1 s after the INVITE (64*T1 = 0.64 s) still
    goes to the delegate with the INVITE's branch, not to the next hop;
    64*T1 after the 487 the relay is gone."""
    import time

    socks = [udp() for _ in range(4)]
    front, peer, callee, caller = socks
    front.setblocking(False)
    fport, pport, cport, uport = (s.getsockname()[1] for s in socks)
    px = UdpProxy(front.fileno(), "127.0.0.1", fport, [("127.0.0.1", cport)], stateful=True,
                  t1=10, t2=40, t4=50, max_transactions=64)    # a small table: swept at once
    m = PeerMirror([("127.0.0.1", pport)], [("127.0.0.1", fport)], f"sip:127.0.0.1:{fport}",
                   threshold=0.0, capacity=1, pending_limit=500, max_age=30.0)
    px.set_delegation(m, 0)
    m.set_report(0, 0, 0, 100, 0, 0.0)
    data = invite([], 70).replace(b"127.0.0.1:6000", f"127.0.0.1:{uport}".encode())
    caller.sendto(data, ("127.0.0.1", fport))
    px.on_readable()
    first = sipfast.parse(peer.recv(65535))

    def answer(status: int, reason: str) -> None:
        peer.sendto(response(status, reason, first, "d1"), ("127.0.0.1", fport))
        px.on_readable()
        assert sipfast.parse(caller.recv(65535)).status == status

    def wait(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:           # the wheel runs past 64*T1
            px.on_timer()
            time.sleep(0.02)
    answer(180, "Ringing")
    wait(1.0)
    cancel = data.replace(b"INVITE sip:bob@127.0.0.1:5090 SIP/2.0",
                          b"CANCEL sip:bob@127.0.0.1:5090 SIP/2.0").replace(
                              b"CSeq: 1 INVITE", b"CSeq: 1 CANCEL")
    caller.sendto(cancel, ("127.0.0.1", fport))
    px.on_readable()
    got = sipfast.parse(peer.recv(65535))
    assert got.method == "CANCEL" and got.vias[0].branch == first.vias[0].branch
    answer(487, "Request Terminated")
    assert px.stats()["relays_held"] == 1
    wait(1.0)
    assert px.stats()["relays_held"] == 0           # swept 64*T1 after the final
    for s in socks:
        s.close()


def test_reply_path_direct_relays_without_our_via_and_holds_the_delegate():
    """--reply-path direct, decided in C: no Via of ours and no transaction;
    the retransmission and the CANCEL go to the same delegate (a second
    peer, as loaded, is not chosen again), nothing goes to the caller."""
    socks = [udp() for _ in range(4)]
    front, p1, p2, caller = socks
    front.setblocking(False)
    fport, port1, port2, uport = (s.getsockname()[1] for s in socks)
    px = UdpProxy(front.fileno(), "127.0.0.1", fport, [("127.0.0.1", 9)], stateful=True)
    m = PeerMirror([("127.0.0.1", port1), ("127.0.0.1", port2)], [("127.0.0.1", fport)],
                   f"sip:127.0.0.1:{fport}", threshold=0.0, capacity=1, pending_limit=500,
                   max_age=5.0, direct=True)
    px.set_delegation(m, 0)
    m.set_report(0, 0, 0, 100, 0, 0.0)
    m.set_report(1, 0, 0, 100, 0, 0.0)
    data = invite([], 70).replace(b"127.0.0.1:6000", f"127.0.0.1:{uport}".encode())
    cancel = data.replace(b"INVITE sip:", b"CANCEL sip:").replace(b"1 INVITE", b"1 CANCEL")
    for msg in (data, data, cancel):
        caller.sendto(msg, ("127.0.0.1", fport))
        px.on_readable()
    got = [sipfast.parse(p1.recv(65535)) for _ in range(3)]
    assert [g.method for g in got] == ["INVITE", "INVITE", "CANCEL"]
    assert all([v.branch for v in g.vias] == ["z9hG4bKgen"] for g in got)
    assert got[0].vias[0].params.get("rport") == str(uport)    # the delegate answers there
    st = px.stats()
    assert st["relayed_direct"] == 3 and st["transactions"] == 0 and st["sent"] == 3
    assert m.counters()["delegated"] == 1
    for s in socks:
        s.close()


def test_with_as_many_relays_held_as_transactions_a_delegation_gets_503():
    """The relays held are bounded by the transaction table's size: a new
    INVITE to delegate beyond it gets 503 with Retry-After and is not
    counted as delegated; a retransmission of one held still goes on."""
    socks = [udp() for _ in range(3)]
    front, peer, caller = socks
    front.setblocking(False)
    fport, pport, uport = (s.getsockname()[1] for s in socks)
    px = UdpProxy(front.fileno(), "127.0.0.1", fport, [("127.0.0.1", 9)], stateful=True,
                  max_transactions=2)
    m = PeerMirror([("127.0.0.1", pport)], [("127.0.0.1", fport)], f"sip:127.0.0.1:{fport}",
                   threshold=0.0, capacity=1, pending_limit=500, max_age=5.0)
    px.set_delegation(m, 0)
    m.set_report(0, 0, 0, 100, 0, 0.0)
    base = invite([], 70).replace(b"127.0.0.1:6000", f"127.0.0.1:{uport}".encode())

    def send(n: int) -> None:
        caller.sendto(base.replace(b"gen", f"c{n}".encode()), ("127.0.0.1", fport))
        px.on_readable()
    for n in (1, 2):
        send(n)
        assert sipfast.parse(peer.recv(65535)).call_id == f"c{n}-1"
    assert px.stats()["relays_held"] == 2
    send(3)
    full = sipfast.parse(caller.recv(65535))
    assert full.status == 503 and full.get("Retry-After") is not None
    assert full.call_id == "c3-1"
    send(1)
    assert sipfast.parse(peer.recv(65535)).call_id == "c1-1"
    assert m.counters()["delegated"] == 2 and m.assigned(0) == 2
    assert px.stats()["rejected"] == 1 and px.stats()["transactions"] == 0
    for s in socks:
        s.close()


@pytest.mark.parametrize("delegating", [True, False])
def test_a_dialog_request_for_another_proxy_is_forwarded_statelessly(delegating):
    """A BYE whose first Route names the delegate (the caller sent it to us
    anyway, as SIPp does): a delegating peer forwards it once, statelessly
    (derived branch, no transaction, its 200 relayed); a plain stateful
    proxy keeps its transaction (our cell's branch)."""
    front, peer, caller = udp(), udp(), udp()
    front.setblocking(False)
    fport, pport, uport = (s.getsockname()[1] for s in (front, peer, caller))
    px = UdpProxy(front.fileno(), "127.0.0.1", fport, [("127.0.0.1", 9)], stateful=True)
    if delegating:
        px.set_delegation(PeerMirror([("127.0.0.1", pport)], [("127.0.0.1", fport)],
                                     f"sip:127.0.0.1:{fport}", threshold=0.5, capacity=10,
                                     pending_limit=500, max_age=5.0), 0)
    bye = (f"BYE sip:bob@127.0.0.1:5090 SIP/2.0\r\n"
           f"Via: SIP/2.0/UDP 127.0.0.1:{uport};branch=z9hG4bKbye1;rport\r\n"
           f"Route: <sip:127.0.0.1:{pport};lr>\r\nMax-Forwards: 70\r\n"
           "From: <sip:alice@127.0.0.1>;tag=a\r\nTo: <sip:bob@127.0.0.1>;tag=b\r\n"
           "Call-ID: dlg-1\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n").encode()
    caller.sendto(bye, ("127.0.0.1", fport))
    px.on_readable()
    got = sipfast.parse(peer.recv(65535))
    assert got.method == "BYE" and got.get("Route") == f"<sip:127.0.0.1:{pport};lr>"
    b = got.vias[0].branch
    assert b.startswith("z9hG4bKsf") != delegating
    assert px.stats()["transactions"] == (0 if delegating else 1)
    peer.sendto(response(200, "OK", got), ("127.0.0.1", fport))
    px.on_readable()
    ok = sipfast.parse(caller.recv(65535))
    assert ok.status == 200 and [v.branch for v in ok.vias] == ["z9hG4bKbye1"]
    for s in (front, peer, caller):
        s.close()
