"""The delegation decision for one new INVITE (README "Delegating peers").

With ``own`` the load of this proxy with the call and each candidate's
projected load with it:

1. own load <= threshold (and not at hard capacity): complete locally;
2. else, among the candidates that are up, not in the INVITE's visited
   list and not at hard capacity, the ones at or under the threshold: the
   lowest takes it (delegate);
3. else (every such peer is over the threshold too) the least loaded of
   this proxy and those peers takes it, this proxy winning a tie (a
   delegation costs a hop);
4. else (this proxy and every such peer at hard capacity): 503, which the
   compiled loop sends with Retry-After.

Loads within ``TIE`` of the lowest are equal; a round robin among equals
spreads the load.  The delegate chosen always has a lower load than this
proxy (or this proxy is at hard capacity and it is not), so it is lower than
at least one other member of the pool.  ``visited`` None means the INVITE's
visited list could not be parsed: no delegation then.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from sipfast.load.peers import Candidate

TIE = 0.001


@dataclass(frozen=True)
class Decision:
    kind: str                         # "local", "delegate" or "reject"
    target: Candidate | None = None
    status: int = 0
    why: str = ""


class RoundRobin:
    """Tie breaker: successive picks among equals go round the set (sorted,
    so every proxy walks its equals in the same order from its own
    counter)."""

    def __init__(self) -> None:
        self.n = 0

    def pick(self, equals: Sequence[Candidate]) -> Candidate:
        ordered = sorted(equals, key=lambda c: c.uri)
        choice = ordered[self.n % len(ordered)]
        self.n += 1
        return choice


def _lowest(cands: Sequence[Candidate], rr: RoundRobin) -> Candidate:
    low = min(c.load for c in cands)
    return rr.pick([c for c in cands if c.load <= low + TIE])


def decide(own_load: float, own_full: bool, threshold: float,
           candidates: Sequence[Candidate], visited: Collection[str] | None,
           rr: RoundRobin, *, can_forward: bool = True) -> Decision:
    if own_load <= threshold and not own_full:
        return Decision("local", why="under threshold")
    if visited is None or not can_forward:
        eligible: list[Candidate] = []
    else:
        eligible = [c for c in candidates if c.uri not in visited and not c.full]
    under = [c for c in eligible if c.load <= threshold]
    if under:
        return Decision("delegate", _lowest(under, rr), why="peer under threshold")
    least = min((c.load for c in eligible), default=None)
    if not own_full and (least is None or own_load <= least + TIE):
        return Decision("local", why="least loaded" if eligible else "no peer to take it")
    if eligible:
        return Decision("delegate", _lowest(eligible, rr), why="least loaded peer")
    return Decision("reject", status=503, why="every proxy at capacity")
