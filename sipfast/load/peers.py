"""What this proxy knows of its peers: last load report, its age, a state.

States (README "Delegating peers"):

- ``unknown``: never heard from, and the proxy started less than
  ``max_age`` ago (no figure yet, no reason to think it is gone);
- ``up``: a report arrived less than ``max_age`` ago and no request sent to
  the peer since then went unanswered;
- ``down``: otherwise (its figure aged out, a request to it got no answer in
  time, or it was never heard from in ``max_age``), until a report arrives.

Only ``up`` peers are candidates for a delegation.  Every figure handed to
the decision is *projected*: the load the peer would have with one more
call, counting the calls this proxy delegated to it since its last report
(so a burst does not all go to the peer that looked idle a moment ago).

The projection also counts the calls the peer gained or lost since its
report *not* through this proxy (calls ended, calls from other proxies):
their rate ("drift") is learnt from successive reports (the change in the
peer's count minus the calls this proxy sent it meanwhile, per second,
smoothed) and ``drift x age`` is added.  Without it a figure only grows between two
reports while the peer's calls keep ending, so every peer looks busier
than it is by about (share x age / mean hold time), and the deciding
proxy, which knows its own count exactly, keeps more calls than its share.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum

from sipfast.load.wire import LoadReport, identity, parse_identity

DRIFT_MIN_DT = 0.05      # s: reports closer than this do not update the drift
DRIFT_WEIGHT = 0.3       # smoothing of the drift estimate


class PeerState(StrEnum):
    UP = "up"
    DOWN = "down"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Candidate:
    """A peer as the decision sees it."""

    uri: str
    addr: tuple[str, int]
    load: float            # projected: with one more call
    full: bool             # one more call would exceed its capacity or pending limit


@dataclass
class Peer:
    uri: str
    addr: tuple[str, int]
    report: LoadReport | None = None
    heard: float | None = None          # clock time of the last report
    unanswered: float | None = None     # clock time a request to it timed out
    assigned: int = 0                   # calls delegated to it since its report
    drift: float | None = None          # calls/s it gains not through us


class PeerTable:
    """The peers of this proxy, by canonical ``sip:IP:PORT`` identity.
    ``clock`` is injectable (tests); ``max_age`` in seconds."""

    def __init__(self, peers: Iterable[str], max_age: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if max_age <= 0:
            raise ValueError("max_age must be positive")
        self.max_age = max_age
        self.clock = clock
        self.started = clock()
        self.peers: dict[str, Peer] = {}
        # called with the peer after a report was taken or it went unanswered
        # (the compiled loop's copy of the table follows it)
        self.on_change: Callable[[Peer], None] | None = None
        for text in peers:
            addr = parse_identity(text, default_port=5060)
            if addr is None:
                raise ValueError(f"peer {text!r}: expected sip:IP[:PORT]")
            uri = identity(*addr)
            self.peers.setdefault(uri, Peer(uri, addr))

    def __contains__(self, uri: object) -> bool:
        return uri in self.peers

    def __len__(self) -> int:
        return len(self.peers)

    def get(self, uri: str) -> Peer | None:
        return self.peers.get(uri)

    def state(self, peer: Peer) -> PeerState:
        now = self.clock()
        if peer.heard is None:
            if peer.unanswered is None and now - self.started <= self.max_age:
                return PeerState.UNKNOWN
            return PeerState.DOWN
        if now - peer.heard > self.max_age:
            return PeerState.DOWN
        if peer.unanswered is not None and peer.unanswered >= peer.heard:
            return PeerState.DOWN
        return PeerState.UP

    def ingest(self, uri: str, report: LoadReport, *, pushed: bool = False) -> bool:
        """Take a report from peer ``uri``; False when it is not a peer or
        (a push) it is not newer than the one held and that one is fresh."""
        peer = self.peers.get(uri)
        if peer is None:
            return False
        if (pushed and peer.report is not None and report.seq <= peer.report.seq
                and self.state(peer) is PeerState.UP):
            return False        # a reordered or replayed push
        now = self.clock()
        if peer.report is not None and peer.heard is not None:
            dt = now - peer.heard
            if dt >= DRIFT_MIN_DT:
                rate = (report.calls - peer.report.calls - peer.assigned) / dt
                peer.drift = rate if peer.drift is None else (
                    DRIFT_WEIGHT * rate + (1.0 - DRIFT_WEIGHT) * peer.drift)
        peer.report = report
        peer.heard = now
        peer.unanswered = None
        peer.assigned = 0
        if self.on_change is not None:
            self.on_change(peer)
        return True

    def mark_unanswered(self, uri: str) -> None:
        """A request to ``uri`` got no answer in time: down until it answers."""
        peer = self.peers.get(uri)
        if peer is not None:
            peer.unanswered = self.clock()
            if self.on_change is not None:
                self.on_change(peer)

    def note_delegated(self, uri: str) -> None:
        peer = self.peers.get(uri)
        if peer is not None:
            peer.assigned += 1

    def projected(self, peer: Peer) -> tuple[float, bool]:
        """(load with one more call, whether that call exceeds its capacity)."""
        r = peer.report
        assert r is not None
        calls = r.calls + peer.assigned + 1
        pending = r.pending + peer.assigned + 1
        if peer.drift is not None and peer.heard is not None and r.cpu is not None:
            # the calls the peer gained or lost since its report without
            # us; the reported load's other terms are cpu and pending
            age = max(0.0, self.clock() - peer.heard)
            calls = max(peer.assigned + 1.0, calls + peer.drift * age)
            load = max(r.cpu, min(1.0, calls / r.capacity))
        else:
            load = max(r.load, min(1.0, calls / r.capacity))
        full = calls > r.capacity
        if r.pending_limit:
            load = max(load, min(1.0, pending / r.pending_limit))
            full = full or pending > r.pending_limit
        return load, full

    def candidates(self) -> list[Candidate]:
        """The peers that are up, with projected figures."""
        out = []
        for peer in self.peers.values():
            if peer.report is not None and self.state(peer) is PeerState.UP:
                load, full = self.projected(peer)
                out.append(Candidate(peer.uri, peer.addr, load, full))
        return out

    def snapshot(self) -> list[dict[str, object]]:
        """Each peer's last known figures, their age and its state (for the
        control endpoint)."""
        now = self.clock()
        out: list[dict[str, object]] = []
        for peer in self.peers.values():
            r = peer.report
            row: dict[str, object] = {
                "peer": peer.uri, "state": self.state(peer).value,
                "age": None if peer.heard is None else round(now - peer.heard, 3),
                "load": None if r is None else r.load, "assigned": peer.assigned}
            if r is not None:
                row.update(calls=r.calls, pending=r.pending, capacity=r.capacity,
                           pending_limit=r.pending_limit, cpu=r.cpu, seq=r.seq)
            out.append(row)
        return out
