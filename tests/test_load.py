"""sipfast.load: the workload formula, the load and visited headers, the peer
table's ageing, each decision rule, and each sharing mode over real UDP
sockets on 127.0.0.1 against fake compiled proxies (the C hooks' Python
side; the e2e tests in e2e/test_delegation.py need the real hooks)."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

import sipfast
from sipfast import cli
from sipfast.load import (
    DEFER,
    LOAD_HEADER,
    VISITED_HEADER,
    Candidate,
    CpuSampler,
    Delegation,
    LoadOptions,
    LoadReport,
    PeerState,
    PeerTable,
    RoundRobin,
    Workload,
    attach,
    compute_load,
    decide,
    format_load,
    format_visited,
    identity,
    parse_identity,
    parse_load,
    parse_visited,
)
from sipfast.load import control as control_mod

IP = "127.0.0.1"


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


# -- the formula --------------------------------------------------------------


def test_load_is_the_largest_of_the_three_shares():
    assert compute_load(12, 3, 100, 500, 0.05) == pytest.approx(0.12)
    assert compute_load(12, 300, 100, 500, 0.05) == pytest.approx(0.6)
    assert compute_load(1, 0, 100, 500, 0.7) == pytest.approx(0.7)
    assert compute_load(0, 0, 100, 500, 0.0) == 0.0
    assert compute_load(250, 0, 100, 500, 0.0) == 1.0          # clamped
    assert compute_load(-5, -1, 100, 500, -0.2) == 0.0         # clamped
    assert compute_load(0, 0, 1, 1, float("nan")) == 1.0       # broken sampler: loaded
    with pytest.raises(ValueError):
        compute_load(0, 0, 0, 1, 0.0)


@given(st.integers(-10, 10_000), st.integers(-10, 10_000), st.integers(1, 5000),
       st.integers(1, 5000), st.floats(-1, 2, allow_nan=False))
def test_load_formula_property(calls, pending, cap, limit, cpu):
    x = compute_load(calls, pending, cap, limit, cpu)
    assert 0.0 <= x <= 1.0
    want = min(1.0, max(0.0, calls / cap, pending / limit, cpu))
    assert x == pytest.approx(want)
    # monotone in every counter
    assert compute_load(calls + 1, pending, cap, limit, cpu) >= x
    assert compute_load(calls, pending + 1, cap, limit, cpu) >= x


def test_cpu_sampler_uses_the_last_interval_only():
    clock, cpu = Clock(0.0), [10.0]
    s = CpuSampler(1.0, clock=clock, cpu_seconds=lambda: cpu[0])
    assert s() == 0.0
    clock.t, cpu[0] = 0.5, 10.4          # inside the interval: last figure kept
    assert s() == 0.0
    clock.t, cpu[0] = 2.0, 11.0          # 1 s CPU over 2 s
    assert s() == pytest.approx(0.5)
    clock.t, cpu[0] = 3.0, 11.1
    assert s() == pytest.approx(0.1)
    clock.t, cpu[0] = 4.0, 14.0          # 2 cores' worth: one core is the maximum
    assert s() == 1.0


def test_cpu_sampler_reads_this_process():
    s = CpuSampler(0.01)
    end = __import__("time").monotonic() + 0.05
    while __import__("time").monotonic() < end:
        pass
    assert 0.0 < s() <= 1.0


def test_workload_keeps_the_raw_counters_and_sums_listeners():
    w = Workload(100, 50, cpu_sampler=lambda: 0.1)
    f = w.read([(30, 5, 40), (10, 20, 0)])
    assert (f.calls, f.pending, f.capacity, f.pending_limit) == (40, 25, 100, 50)
    assert w.live_transactions == 40
    assert f.load == pytest.approx(0.5) and not w.full
    w.update(101, 0)
    assert w.full and w.load == 1.0
    w.update(100, 50)
    assert not w.full                        # at capacity with this call: still room
    w.update(-3, -1)
    assert (w.active_calls, w.pending) == (0, 0)
    broken = Workload(10, 10, cpu_sampler=lambda: (_ for _ in ()).throw(OSError()))
    assert broken.update(5, 0).load == 0.5
    with pytest.raises(ValueError):
        Workload(0, 1)


# -- the headers --------------------------------------------------------------


def test_load_header_format_and_parse():
    r = LoadReport(0.42, 12, 3, 100, 17, 500, 0.12)
    text = format_load(r)
    assert text == "0.420;calls=12;pending=3;capacity=100;limit=500;cpu=0.120;seq=17"
    assert parse_load(text) == r
    assert parse_load(text.encode()) == r
    assert parse_load("1;calls=5;pending=0;capacity=5;seq=1") == LoadReport(1.0, 5, 0, 5, 1)
    # SWS around ; and =, any case of names, unknown token params ignored
    assert parse_load("0.5 ; CALLS = 50;pending=0;capacity=100;seq=9;future=x") == \
        LoadReport(0.5, 50, 0, 100, 9)
    # rounding up keeps the report consistent with its own counters
    assert parse_load(format_load(LoadReport(1 / 3, 1, 0, 3, 1))) is not None


JUNK = [
    None, "", ";", "0.5", "0.5;calls=1;pending=0;capacity=10",
    "1.5;calls=1;pending=0;capacity=10;seq=1",
    "-0.1;calls=1;pending=0;capacity=10;seq=1", "0.1234;calls=1;pending=0;capacity=10;seq=1",
    ".5;calls=1;pending=0;capacity=10;seq=1", "0.5;calls=-1;pending=0;capacity=10;seq=1",
    "0.5;calls=1;pending=0;capacity=0;seq=1", "0.5;calls=1;calls=1;pending=0;capacity=10;seq=1",
    "0.5;calls;pending=0;capacity=10;seq=1", "0.5;calls=1;pending=0;capacity=10;seq=1;x=\"q\"",
    "0.5;calls=1;pending=0;capacity=10;seq=99999999999999999999",
    "0.1;calls=50;pending=0;capacity=100;seq=1",               # below its own counters
    "0.1;calls=0;pending=90;capacity=100;limit=100;seq=1",
    "0.1;calls=0;pending=0;capacity=100;cpu=0.9;seq=1",
    "0.5;calls=1;pending=0;capacity=10;seq=1;cpu=2", "0,5;calls=1;pending=0;capacity=10;seq=1",
    "0.5;calls=١;pending=0;capacity=10;seq=1",                 # non-ASCII digit
    "0.5;calls=1;pending=0;capacity=10;seq=1" + ";p=1" * 60,   # too long
    b"\xff\xfe", 42, ["0.5"],
]


@pytest.mark.parametrize("junk", JUNK)
def test_load_header_junk_is_rejected_without_exceptions(junk):
    assert parse_load(junk) is None


reports = st.builds(
    lambda cap, calls, pending, limit, cpu, seq, extra: LoadReport(
        min(1.0, max(calls / cap, (pending / limit) if limit else 0, cpu or 0) + extra),
        calls, pending, cap, seq, limit, cpu),
    st.integers(1, 10**6), st.integers(0, 10**6), st.integers(0, 10**6),
    st.none() | st.integers(1, 10**6), st.none() | st.integers(0, 1000).map(lambda x: x / 1000),
    st.integers(0, 2**63 - 1), st.floats(0, 1))


@given(reports)
def test_load_header_round_trip(r):
    back = parse_load(format_load(r))
    assert back is not None
    assert (back.calls, back.pending, back.capacity, back.seq, back.pending_limit, back.cpu) == \
        (r.calls, r.pending, r.capacity, r.seq, r.pending_limit, r.cpu)
    assert back.load >= min(1.0, r.load) - 0.0005 and back.load <= 1.0


@given(st.text(max_size=300) | st.binary(max_size=300))
def test_load_header_any_input_gives_a_report_or_none(value):
    r = parse_load(value)
    assert r is None or 0.0 <= r.load <= 1.0


def test_identities_and_visited_list():
    assert identity("127.0.0.1", 5070) == "sip:127.0.0.1:5070"
    assert identity("0:0::1", 5070) == "sip:[::1]:5070"
    assert parse_identity("sip:[::1]:5070") == ("::1", 5070)
    assert parse_identity("sip:127.0.0.1") is None
    assert parse_identity("sip:127.0.0.1", default_port=5060) == ("127.0.0.1", 5060)
    values = ["sip:127.0.0.1:5070, sip:[0::1]:5071", "SIP:10.0.0.1:5072"]
    assert parse_visited(values) == ["sip:127.0.0.1:5070", "sip:[::1]:5071",
                                     "sip:10.0.0.1:5072"]
    assert parse_visited([format_visited(["sip:127.0.0.1:1", "sip:127.0.0.1:2"])]) == \
        ["sip:127.0.0.1:1", "sip:127.0.0.1:2"]
    assert parse_visited([]) == []
    for junk in (["sip:host.example:5060"], ["sip:127.0.0.1:5060,"], ["sip:127.0.0.1:0"],
                 ["sip:127.0.0.1:99999"], ["<sip:127.0.0.1:5060>"], ["sip:127.0.0.1:5060;lr"],
                 [", ".join(["sip:127.0.0.1:5060"] * 65)], [None]):
        assert parse_visited(junk) is None, junk


@given(st.lists(st.text(max_size=80), max_size=4))
def test_visited_any_input_gives_a_list_or_none(values):
    out = parse_visited(values)
    assert out is None or all(parse_identity(u) is not None for u in out)


# -- the peer table -----------------------------------------------------------


def rep(load, calls=0, cap=100, seq=1, pending=0, limit=None):
    return LoadReport(load, calls, pending, cap, seq, limit)


def test_peer_table_states_and_ageing():
    clock = Clock()
    t = PeerTable(["sip:127.0.0.1:5071", "sip:127.0.0.1"], max_age=3.0, clock=clock)
    a, b = "sip:127.0.0.1:5071", "sip:127.0.0.1:5060"
    assert set(t.peers) == {a, b}
    assert t.state(t.peers[a]) is PeerState.UNKNOWN and t.candidates() == []
    assert t.ingest(a, rep(0.2, 20, seq=5))
    assert t.state(t.peers[a]) is PeerState.UP
    assert [c.uri for c in t.candidates()] == [a]
    clock.t += 3.0
    assert t.state(t.peers[a]) is PeerState.UP
    clock.t += 0.01                      # figure aged out: down, no candidate
    assert t.state(t.peers[a]) is PeerState.DOWN and t.candidates() == []
    assert t.state(t.peers[b]) is PeerState.DOWN        # never heard in max_age
    assert t.ingest(a, rep(0.3, 30, seq=6))           # answers again: up
    assert t.state(t.peers[a]) is PeerState.UP
    t.mark_unanswered(a)                               # a request went unanswered
    assert t.state(t.peers[a]) is PeerState.DOWN
    clock.t += 0.5
    assert t.ingest(a, rep(0.3, 30, seq=7), pushed=True)
    assert t.state(t.peers[a]) is PeerState.UP
    assert not t.ingest(a, rep(0.9, 90, seq=7), pushed=True)   # replay / reordered push
    assert t.peers[a].report.load == 0.3
    assert not t.ingest("sip:127.0.0.1:9", rep(0.1))            # not a peer
    snap = {row["peer"]: row for row in t.snapshot()}
    assert snap[a]["state"] == "up" and snap[a]["load"] == 0.3 and snap[a]["age"] == 0.0
    assert snap[b] == {"peer": b, "state": "down", "age": None, "load": None, "assigned": 0}
    with pytest.raises(ValueError):
        PeerTable(["sip:example.com"], 1.0)


def test_unanswered_peer_never_heard_is_down_at_once():
    clock = Clock()
    t = PeerTable(["sip:127.0.0.1:5071"], 10.0, clock)
    t.mark_unanswered("sip:127.0.0.1:5071")
    assert t.state(t.peers["sip:127.0.0.1:5071"]) is PeerState.DOWN


def test_projected_load_counts_calls_delegated_since_the_report():
    t = PeerTable(["sip:127.0.0.1:5071"], 10.0, Clock())
    u = "sip:127.0.0.1:5071"
    t.ingest(u, rep(0.0, 0, cap=4))
    assert t.candidates()[0].load == pytest.approx(0.25) and not t.candidates()[0].full
    for _ in range(3):
        t.note_delegated(u)
    c = t.candidates()[0]
    assert c.load == 1.0 and not c.full           # the 4th call fits exactly
    t.note_delegated(u)
    assert t.candidates()[0].full
    t.ingest(u, rep(0.25, 1, cap=4, seq=2))        # a new report resets the estimate
    assert t.peers[u].assigned == 0
    t.ingest(u, rep(0.5, 0, cap=4, seq=3, pending=1, limit=2))
    assert t.candidates()[0].load == 1.0 and not t.candidates()[0].full


# -- the decision rules -------------------------------------------------------


def cand(n, load, full=False):
    return Candidate(f"sip:127.0.0.1:{n}", (IP, n), load, full)


def test_decide_under_threshold_completes_locally():
    d = decide(0.5, False, 0.8, [cand(1, 0.0)], [], RoundRobin())
    assert d.kind == "local"
    assert decide(0.8, False, 0.8, [cand(1, 0.0)], [], RoundRobin()).kind == "local"


def test_decide_over_threshold_picks_the_lowest_peer():
    d = decide(0.9, False, 0.8, [cand(1, 0.5), cand(2, 0.2), cand(3, 0.7)], [], RoundRobin())
    assert d.kind == "delegate" and d.target.addr == (IP, 2)


def test_decide_never_a_visited_nor_full_peer():
    cands = [cand(1, 0.1), cand(2, 0.3, full=True), cand(3, 0.5)]
    d = decide(0.9, False, 0.8, cands, ["sip:127.0.0.1:1"], RoundRobin())
    assert d.target.addr == (IP, 3)
    # a visited list that could not be parsed: no delegation at all
    assert decide(0.9, False, 0.8, cands, None, RoundRobin()).kind == "local"
    assert decide(0.9, False, 0.8, cands, [], RoundRobin(), can_forward=False).kind == "local"


def test_decide_down_peers_are_never_candidates():
    clock = Clock()
    t = PeerTable(["sip:127.0.0.1:1", "sip:127.0.0.1:2"], 1.0, clock)
    t.ingest("sip:127.0.0.1:1", rep(0.0))
    clock.t += 0.5
    t.ingest("sip:127.0.0.1:2", rep(0.5, 50))
    clock.t += 0.6                                   # peer 1 aged out
    d = decide(0.9, False, 0.8, t.candidates(), [], RoundRobin())
    assert d.target.addr == (IP, 2)


def test_decide_ties_go_round_robin():
    rr = RoundRobin()
    cands = [cand(3, 0.2), cand(1, 0.2), cand(2, 0.2005), cand(4, 0.6)]
    picks = [decide(0.9, False, 0.8, cands, [], rr).target.addr[1] for _ in range(6)]
    assert picks == [1, 2, 3, 1, 2, 3]


def test_decide_everyone_over_threshold_the_least_loaded_takes_it():
    cands = [cand(1, 0.95), cand(2, 0.9)]
    assert decide(0.85, False, 0.8, cands, [], RoundRobin()).kind == "local"
    assert decide(0.9, False, 0.8, cands, [], RoundRobin()).kind == "local"    # self wins a tie
    d = decide(0.99, False, 0.8, cands, [], RoundRobin())
    assert d.kind == "delegate" and d.target.addr == (IP, 2)
    assert decide(0.9, False, 0.8, [], [], RoundRobin()).kind == "local"        # no peer known


def test_decide_everyone_at_capacity_gets_503():
    cands = [cand(1, 1.0, full=True), cand(2, 1.0, full=True)]
    d = decide(1.0, True, 0.8, cands, [], RoundRobin())
    assert (d.kind, d.status) == ("reject", 503)
    assert decide(1.0, True, 0.8, [], [], RoundRobin()).kind == "reject"
    # self full, a peer with room over the threshold: it takes the call
    d = decide(1.0, True, 0.8, [cand(1, 1.0, full=True), cand(2, 0.97)], [], RoundRobin())
    assert d.target.addr == (IP, 2)
    # self full at threshold 1: not local
    assert decide(1.0, True, 1.0, [], [], RoundRobin()).kind == "reject"


# -- the hooks, against fake compiled proxies ---------------------------------


class FakeProxy:
    """What Delegation uses of sipfast._core.UdpProxy once the hooks land."""

    def __init__(self, calls=0, pending=0):
        self.counters = {"active_calls": calls, "pending": pending, "live_transactions": 0}
        self.hooks = {}
        self.resumed = []
        self.resumed_event = None

    def stats(self):
        return dict(self.counters)

    @property
    def active_calls(self):
        return self.counters["active_calls"]

    def pending(self):
        return self.counters["pending"]

    @property
    def live_transactions(self):
        return self.counters["live_transactions"]

    def set_hooks(self, **kw):
        self.hooks.update(kw)

    def resume(self, txn, decision):
        self.resumed.append((txn, decision))
        if self.resumed_event is not None:
            self.resumed_event.set()


def invite(visited=(), max_forwards=70):
    lines = [f"{VISITED_HEADER}: {v}\r\n" for v in visited]
    return ("INVITE sip:service@127.0.0.1:5060 SIP/2.0\r\n"
            "Via: SIP/2.0/UDP 127.0.0.1:6000;branch=z9hG4bKabc;rport\r\n"
            f"Max-Forwards: {max_forwards}\r\n"
            "From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:service@127.0.0.1>\r\n"
            "Call-ID: call-1\r\nCSeq: 1 INVITE\r\n" + "".join(lines) +
            "Content-Length: 0\r\n\r\n").encode()


def options_from(sender, load_value=None):
    extra = f"{LOAD_HEADER}: {load_value}\r\n" if load_value is not None else ""
    return ("OPTIONS sip:127.0.0.1:5060 SIP/2.0\r\n"
            "Via: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bKopt;rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <{sender}>;tag=x\r\nTo: <sip:127.0.0.1:5060>\r\n"
            "Call-ID: opt-1\r\nCSeq: 1 OPTIONS\r\n" + extra +
            "Content-Length: 0\r\n\r\n").encode()


def make(loop, proxy, me="sip:127.0.0.1:5060", peers=("sip:127.0.0.1:5071",), **kw):
    opts = LoadOptions(identities=[me], peers=list(peers), **{"capacity": 10, **kw})
    return Delegation([proxy], opts, loop, workload=Workload(
        opts.capacity, opts.pending_limit, cpu_sampler=lambda: 0.0))


def test_on_invite_decisions_as_the_c_side_sees_them():
    async def main():
        loop = asyncio.get_running_loop()
        p = FakeProxy(calls=5)
        d = make(loop, p, peers=["sip:127.0.0.1:5071", "sip:127.0.0.1:5060"])
        assert list(d.table.peers) == ["sip:127.0.0.1:5071"]      # itself skipped
        hook = d.hooks_for(p)["on_invite"]
        assert hook(invite(), (IP, 6000), 1) is None              # 0.5 <= 0.8
        p.counters["active_calls"] = 9
        assert hook(invite(), (IP, 6000), 2) is None              # no peer heard yet
        d.table.ingest("sip:127.0.0.1:5071", rep(0.1, 1, cap=10))
        assert hook(invite(), (IP, 6000), 3) == (
            (IP, 5071), b"X-Sipfast-Visited: sip:127.0.0.1:5060\r\n")
        assert d.table.peers["sip:127.0.0.1:5071"].assigned == 1
        d.opts.reply_path = "direct"
        assert hook(invite(), (IP, 6000), 4)[0] == ("direct", IP, 5071)
        # never back to a proxy in the chain; Max-Forwards bounds it
        assert hook(invite(["sip:127.0.0.1:5071"]), (IP, 6000), 5) is None
        assert hook(invite(max_forwards=1), (IP, 6000), 6) is None
        assert hook(invite(["sip:127.0.0.1:5060"]), (IP, 6000), 7) is None  # self: a loop
        assert hook(invite(["junk"]), (IP, 6000), 8) is None
        p.counters["active_calls"] = 11
        assert hook(invite(["sip:127.0.0.1:5071"]), (IP, 6000), 9) == 503
        assert hook(b"garbage", (IP, 6000), 10) is None           # never raises
        assert d.counters["delegated"] == 2 and d.counters["rejected"] == 1
        assert d.counters["hook_errors"] == 1
    asyncio.run(main())


def test_on_options_answers_with_load_and_ingests_pushes():
    async def main():
        loop = asyncio.get_running_loop()
        p = FakeProxy(calls=3)
        d = make(loop, p)
        on_options = d.hooks_for(p)["on_options"]
        peer = "sip:127.0.0.1:5071"
        resp = on_options(options_from(peer, "0.300;calls=3;pending=0;capacity=10;seq=5"),
                          (IP, 40000))
        m = sipfast.parse(resp)
        assert m.status == 200 and m.call_id == "opt-1" and m.to_tag
        mine = parse_load(m.get(LOAD_HEADER))
        assert (mine.calls, mine.capacity, mine.load) == (3, 10, 0.3)
        assert d.peer_state(peer) is PeerState.UP
        assert d.table.peers[peer].report.seq == 5
        # a push from an address that is not the peer's IP, from a stranger, junk
        on_options(options_from(peer, "0.9;calls=9;pending=0;capacity=10;seq=6"), ("10.0.0.9", 1))
        on_options(options_from("sip:127.0.0.1:6666", "0.9;calls=9;pending=0;capacity=10;seq=6"),
                   (IP, 1))
        resp = on_options(options_from(peer, "bogus;;="), (IP, 40000))
        assert sipfast.parse(resp).status == 200
        assert d.table.peers[peer].report.seq == 5
        assert d.counters["bad_reports"] == 3
        # any SIP element may ask: no load header, still a 200 with ours
        assert parse_load(sipfast.parse(on_options(options_from("sip:x@example.com"),
                                                   (IP, 1))).get(LOAD_HEADER))
        assert on_options(b"junk", (IP, 1)) == b""
    asyncio.run(main())


def test_attach_sets_the_hooks_or_says_they_are_missing():
    async def main():
        loop = asyncio.get_running_loop()
        p = FakeProxy()
        d = attach([p], LoadOptions(identities=["sip:127.0.0.1:5060"],
                                    peers=["sip:127.0.0.1:5071"]), loop)
        try:
            assert set(p.hooks) == {"on_options", "on_invite"}
            assert d.sock is not None and d.port > 0
        finally:
            d.close()
        with pytest.raises(RuntimeError, match="set_hooks"):
            attach([object()], LoadOptions(identities=["sip:127.0.0.1:5060"]), loop)
        with pytest.raises(ValueError, match="--share"):
            Delegation([p], LoadOptions(identities=["sip:127.0.0.1:5060"], share="x"), loop)
    asyncio.run(main())


# -- the sharing modes over real UDP on 127.0.0.1 -------------------------------


class Node:
    """A fake compiled proxy on a real UDP port: OPTIONS to it go to the
    on_options hook and the answer goes back, as the C side will do."""

    def __init__(self, loop, calls=0, capacity=10):
        self.loop = loop
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((IP, 0))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.uri = identity(IP, self.port)
        self.proxy = FakeProxy(calls=calls)
        self.capacity = capacity
        self.d: Delegation | None = None
        self.options_seen = 0
        loop.add_reader(self.sock.fileno(), self._read)

    def start(self, peers, **kw):
        opts = LoadOptions(identities=[self.uri], peers=[p.uri for p in peers],
                           capacity=self.capacity, **kw)
        self.d = Delegation([self.proxy], opts, self.loop, workload=Workload(
            opts.capacity, opts.pending_limit, cpu_sampler=lambda: 0.0))
        self.proxy.set_hooks(**self.d.hooks_for(self.proxy))
        self.d.start()

    def _read(self):
        while True:
            try:
                data, src = self.sock.recvfrom(65535)
            except BlockingIOError:
                return
            if data.startswith(b"OPTIONS ") and "on_options" in self.proxy.hooks:
                self.options_seen += 1
                out = self.proxy.hooks["on_options"](data, src)
                if out:
                    self.sock.sendto(out, src)

    def close(self):
        if self.d is not None:
            self.d.close()
        if self.sock.fileno() >= 0:
            self.loop.remove_reader(self.sock.fileno())
            self.sock.close()


async def until(cond, timeout=3.0):
    end = asyncio.get_running_loop().time() + timeout
    while not cond():
        assert asyncio.get_running_loop().time() < end, "condition not met in time"
        await asyncio.sleep(0.01)


def run_nodes(n, body, calls=(), **kw):
    async def main():
        loop = asyncio.get_running_loop()
        nodes = [Node(loop, calls=(calls[i] if i < len(calls) else 0)) for i in range(n)]
        try:
            for node in nodes:
                node.start([o for o in nodes if o is not node], **kw)
            await body(nodes)
        finally:
            for node in nodes:
                node.close()
    asyncio.run(main())


def test_push_mode_sends_periodically_and_on_a_step():
    async def body(nodes):
        a, b, c = nodes
        await until(lambda: all(x.d.peer_state(y.uri) is PeerState.UP
                                for x in nodes for y in nodes if x is not y))
        assert b.d.table.peers[a.uri].report.calls == 2
        pushes = a.d.counters["pushes_sent"]
        assert a.d.counters["queries_sent"] == 0
        a.proxy.counters["active_calls"] = 8          # 0.2 -> 0.8: more than the step
        await until(lambda: b.d.table.peers[a.uri].report.calls == 8, timeout=1.0)
        assert a.d.counters["pushes_sent"] > pushes
        # the push's 200 carried B's load back to A as well
        assert a.d.table.peers[b.uri].report.calls == 5
    run_nodes(3, body, calls=(2, 5, 1), share="push", share_interval=5.0, watch_interval=0.02)


def test_continuous_mode_queries_every_peer_each_interval():
    async def body(nodes):
        a, b = nodes
        await until(lambda: a.d.peer_state(b.uri) is PeerState.UP)
        b.proxy.counters["active_calls"] = 7
        await until(lambda: a.d.table.peers[b.uri].report.calls == 7, timeout=1.0)
        assert a.d.counters["queries_sent"] >= 2 and a.d.counters["pushes_sent"] == 0
    run_nodes(2, body, calls=(0, 3), share="continuous", share_interval=0.1)


def test_poll_mode_defers_asks_the_peers_and_resumes():
    async def body(nodes):
        a, b, c = nodes
        a.proxy.resumed_event = asyncio.Event()
        hook = a.proxy.hooks["on_invite"]
        a.proxy.counters["active_calls"] = 2
        assert hook(invite(), (IP, 6000), 11) is None          # under threshold: no poll
        assert a.d.counters["queries_sent"] == 0
        a.proxy.counters["active_calls"] = 9
        assert hook(invite(), (IP, 6000), 12) == DEFER == -1
        assert hook(invite(), (IP, 6000), 13) == DEFER         # shares the round in flight
        await until(lambda: len(a.proxy.resumed) == 2)
        assert a.d.counters["queries_sent"] == 2               # one per peer, not per call
        (t1, v1), (t2, v2) = a.proxy.resumed
        assert {t1, t2} == {12, 13}
        assert v1 == ((IP, c.port), f"{VISITED_HEADER}: {a.uri}\r\n".encode())
        assert v2[0] in ((IP, c.port), (IP, b.port))          # C plus one assigned
    run_nodes(3, body, calls=(0, 6, 1), share="poll", poll_timeout=1.0)


def test_poll_mode_a_silent_peer_is_down_and_the_call_still_decided():
    async def main():
        loop = asyncio.get_running_loop()
        a, b = Node(loop, calls=10), Node(loop, calls=0)
        silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        silent.bind((IP, 0))                                  # nobody answers there
        try:
            b.start([a])
            a.start([b], share="poll", poll_timeout=0.15)
            a.d.table.peers.setdefault(  # a third peer that never answers
                identity(IP, silent.getsockname()[1]),
                type(a.d.table.peers[b.uri])(identity(IP, silent.getsockname()[1]),
                                             (IP, silent.getsockname()[1])))
            t0 = loop.time()
            assert a.proxy.hooks["on_invite"](invite(), (IP, 6000), 21) == DEFER
            await until(lambda: a.proxy.resumed, timeout=2.0)
            assert loop.time() - t0 < 0.5                     # bounded by poll_timeout
            assert a.proxy.resumed[0][1][0] == (IP, b.port)
            assert a.d.peer_state(identity(IP, silent.getsockname()[1])) is PeerState.DOWN
            assert a.d.counters["unanswered"] == 1
        finally:
            a.close()
            b.close()
            silent.close()
    asyncio.run(main())


def test_poll_mode_everyone_full_resumes_with_503_and_close_resumes_locally():
    async def main():
        loop = asyncio.get_running_loop()
        a, b = Node(loop, calls=11), Node(loop, calls=10)
        try:
            b.start([a])
            a.start([b], share="poll", poll_timeout=0.5)
            assert a.proxy.hooks["on_invite"](invite(), (IP, 6000), 31) == DEFER
            await until(lambda: a.proxy.resumed)
            assert a.proxy.resumed == [(31, 503)]
            b.close()                                          # B gone: next poll unanswered
            assert a.proxy.hooks["on_invite"](invite(), (IP, 6000), 32) == DEFER
            a.close()                                          # closing resumes at once
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            assert a.proxy.resumed[-1] == (32, None)
        finally:
            a.close()
    asyncio.run(main())


def test_a_killed_peer_stops_being_a_candidate_within_bounded_time():
    async def body(nodes):
        a, b, c = nodes
        await until(lambda: a.d.peer_state(b.uri) is PeerState.UP
                    and a.d.peer_state(c.uri) is PeerState.UP)
        loop = asyncio.get_running_loop()
        b.close()
        t0 = loop.time()
        await until(lambda: a.d.peer_state(b.uri) is PeerState.DOWN, timeout=2.0)
        # one interval (0.2) plus the answer timeout (0.1), with slack
        assert loop.time() - t0 < 0.6
        assert [x.uri for x in a.d.table.candidates()] == [c.uri]
    run_nodes(3, body, share="continuous", share_interval=0.2, poll_timeout=0.1)


# -- operators ----------------------------------------------------------------


def test_control_endpoint_shows_and_sets_the_threshold(tmp_path):
    path = str(tmp_path / "ctl.sock")

    async def body(nodes):
        a, b = nodes
        await until(lambda: a.d.peer_state(b.uri) is PeerState.UP)
        await until(lambda: a.d.control_server is not None)
        loop = asyncio.get_running_loop()
        show = await loop.run_in_executor(None, control_mod.request, path, {"command": "show"})
        assert show["self"] == a.uri and show["threshold"] == 0.8
        assert show["load"]["calls"] == 4 and show["load"]["capacity"] == 10
        (row,) = show["peers"]
        assert row["peer"] == b.uri and row["state"] == "up" and row["calls"] == 1
        assert row["age"] >= 0
        ok = await loop.run_in_executor(None, control_mod.request, path,
                                        {"command": "set", "threshold": 0.3})
        assert ok == {"ok": True, "threshold": 0.3} and a.d.threshold == 0.3
        # the new threshold is used by the next decision
        assert a.proxy.hooks["on_invite"](invite(), (IP, 6000), 1) is not None
        for bad in ({"command": "set", "threshold": 2}, {"command": "set", "threshold": "x"},
                    {"command": "nope"}, {"command": "set"}):
            err = await loop.run_in_executor(None, control_mod.request, path, bad)
            assert "error" in err, bad
        # a raw client sending junk gets an error line, not a dead endpoint
        r, w = await asyncio.open_unix_connection(path)
        w.write(b"not json\n[1]\n")
        assert "error" in json.loads(await r.readline())
        assert "error" in json.loads(await r.readline())
        w.close()
        assert a.d.threshold == 0.3

    async def main():
        loop = asyncio.get_running_loop()
        a, b = Node(loop, calls=4), Node(loop, calls=1)
        try:
            b.start([a], share="push", share_interval=0.1)
            a.start([b], share="push", share_interval=0.1, control=path)
            await body([a, b])
        finally:
            a.close()
            b.close()
    asyncio.run(main())
    import os
    assert not os.path.exists(path)           # removed on close


def test_control_endpoint_is_bound_0600_when_start_returns(tmp_path):
    """`sipfast proxy` prints "ready" right after attach(): the endpoint must
    accept a connection by then, before the event loop ran anything (a
    client that came at once got FileNotFoundError), and never be open to
    others; closed before its server task ran, it is still removed."""
    import os
    import stat
    path = str(tmp_path / "ctl.sock")

    async def main():
        loop = asyncio.get_running_loop()
        a = Node(loop)
        try:
            a.start([], share="push", control=path)
            st = os.lstat(path)
            assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
                c.connect(path)            # accepted by the backlog, no loop turn yet
        finally:
            a.close()
        assert not os.path.exists(path)
    asyncio.run(main())


# -- the command line ---------------------------------------------------------


def test_proxy_load_flags_parse_into_load_options():
    args = cli.build_parser().parse_args([
        "proxy", "--listen", "udp:127.0.0.1:5070", "--peers",
        "sip:127.0.0.1:5071,sip:127.0.0.1:5072", "--peer", "sip:127.0.0.1:5070",
        "--share", "poll", "--threshold", "0.6", "--capacity", "50", "--pending-limit", "20",
        "--share-interval", "0.5", "--reply-path", "direct", "--control", "/tmp/x.sock",
        "--poll-timeout", "150", "--peer-max-age", "2", "--push-step", "0.2"])
    from sipfast.roles import proxy
    opts, problems = cli._load_options(args, [proxy.parse_listen(args.listen[0])])
    assert opts.peers == ["sip:127.0.0.1:5071", "sip:127.0.0.1:5072", "sip:127.0.0.1:5070"]
    assert (opts.share, opts.threshold, opts.capacity, opts.pending_limit) == \
        ("poll", 0.6, 50, 20)
    assert (opts.share_interval, opts.reply_path, opts.control, opts.poll_timeout,
            opts.max_age, opts.push_step) == (0.5, "direct", "/tmp/x.sock", 0.15, 2.0, 0.2)
    assert opts.identities == ["sip:127.0.0.1:5070"]
    hooks = hasattr(sipfast._core.UdpProxy, "set_hooks")
    assert [p for p in problems if "hooks" not in p] == []
    assert any("hooks" in p for p in problems) is not hooks


def test_proxy_load_flags_problems_are_reported():
    cmd = [sys.executable, "-m", "sipfast", "proxy", "--listen", "udp:127.0.0.1:5999",
           "--peers", "sip:example.com", "--threshold", "3", "--workers", "2", "--stateless"]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd="/", timeout=30)
    assert out.returncode == 2
    for text in ("--threshold must be in 0..1", "sip:example.com", "--workers 1",
                 "drop --stateless"):
        assert text in out.stderr, out.stderr


def test_control_command_line_client(tmp_path):
    out = subprocess.run([sys.executable, "-m", "sipfast", "control", str(tmp_path / "none"),
                          "show"], capture_output=True, text=True, cwd="/", timeout=30)
    assert out.returncode == 1 and "none" in out.stderr
    out = subprocess.run([sys.executable, "-m", "sipfast", "control", str(tmp_path / "none"),
                          "threshold"], capture_output=True, text=True, cwd="/", timeout=30)
    assert out.returncode == 2


def test_projection_learns_the_drift_of_calls_not_sent_by_us():
    """A peer whose calls end between reports is
    projected lower as its report ages, not stuck at its last count."""
    clock = Clock()
    u = "sip:127.0.0.1:5071"
    t = PeerTable([u], 10.0, clock)
    t.ingest(u, LoadReport(0.5, 50, 0, 100, 1, None, 0.01))
    clock.t += 1.0
    for _ in range(5):
        t.note_delegated(u)
    t.ingest(u, LoadReport(0.45, 45, 0, 100, 2, None, 0.01))   # 50 + 5 sent - 10 ended
    assert t.peers[u].drift == pytest.approx(-10.0)
    assert t.candidates()[0].load == pytest.approx(0.46)        # fresh: 45 + this call
    clock.t += 0.5
    assert t.candidates()[0].load == pytest.approx(0.41)        # 5 more ended meanwhile
    t.note_delegated(u)
    assert t.candidates()[0].load == pytest.approx(0.42)
    # without a cpu figure the report's load is kept as the floor (no drift used)
    t2 = PeerTable([u], 10.0, clock)
    t2.ingest(u, rep(0.5, 50))
    clock.t += 1.0
    t2.ingest(u, rep(0.4, 40, seq=2))
    clock.t += 0.5
    assert t2.candidates()[0].load == pytest.approx(0.41)
