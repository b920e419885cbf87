"""This proxy's own workload: one number in 0..1 and the raw counters.

The formula (README "Delegating peers"):

    load = min(1, max(active_calls / capacity,
                      pending / pending_limit,
                      cpu))

``active_calls`` and ``pending`` are the compiled loop's counters
(``UdpProxy.active_calls`` and ``pending()``, summed over this process's
listeners): INVITE server
transactions without a final answer plus confirmed dialogs this proxy
record-routed (until BYE; one whose 2xx got no ACK in 64*T1 drops out
then), and server transactions awaiting a final answer.  ``cpu`` is
the share of one core this process used (user + system time from
``/proc/self/stat``) over the last sampling interval.

The load compared with the threshold is the load this proxy has *with* the
call being decided: a decision taken here (the control plane's) is taken on
the INVITE's server transaction, so the counters read then include it; the
compiled decision, taken before any transaction, adds the call itself.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass


def _proc_cpu_seconds(path: str = "/proc/self/stat") -> float:
    """User + system CPU seconds of this process (fields 14 and 15 of
    proc(5)'s stat; the command name in field 2 may hold spaces and
    parentheses, so split after its last ')')."""
    with open(path, "rb") as fh:
        data = fh.read()
    fields = data[data.rindex(b")") + 2:].split()
    ticks = int(fields[11]) + int(fields[12])     # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


class CpuSampler:
    """Share of one core used by this process over the last ``interval``
    seconds.  Called as often as wanted: the share is recomputed only once
    an interval has passed since the previous sample (so a burst of calls
    sees one steady figure, not clock-tick noise); in between the last
    figure is returned.  ``clock`` and ``cpu_seconds`` are injectable."""

    def __init__(self, interval: float = 1.0,
                 clock: Callable[[], float] = time.monotonic,
                 cpu_seconds: Callable[[], float] = _proc_cpu_seconds) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.interval = interval
        self._clock = clock
        self._cpu_seconds = cpu_seconds
        self._t0 = clock()
        self._c0 = cpu_seconds()
        self.share = 0.0

    def __call__(self) -> float:
        now = self._clock()
        elapsed = now - self._t0
        if elapsed >= self.interval:
            used = self._cpu_seconds()
            self.share = min(1.0, max(0.0, (used - self._c0) / elapsed))
            self._t0, self._c0 = now, used
        return self.share


@dataclass(frozen=True)
class LoadFigures:
    """One reading: the load and the raw counters it was computed from."""

    load: float
    calls: int
    pending: int
    capacity: int
    pending_limit: int
    cpu: float


def compute_load(calls: int, pending: int, capacity: int, pending_limit: int,
                 cpu: float) -> float:
    """The formula of the module docstring, clamped to 0..1 (negative or
    absurd inputs cannot produce a figure outside it)."""
    if capacity < 1 or pending_limit < 1:
        raise ValueError("capacity and pending_limit must be at least 1")
    if cpu != cpu:      # NaN from a broken sampler: treat as fully loaded
        return 1.0
    x = max(calls / capacity, pending / pending_limit, cpu)
    return min(1.0, max(0.0, x))


class Workload:
    """This process's workload.  ``update()`` (or ``read()`` from the
    compiled loops' stats) stores the raw counters; ``load`` and ``full``
    are derived from them and the latest CPU share."""

    def __init__(self, capacity: int, pending_limit: int,
                 cpu_sampler: Callable[[], float] | None = None) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        if pending_limit < 1:
            raise ValueError("pending_limit must be at least 1")
        self.capacity = capacity
        self.pending_limit = pending_limit
        self.cpu_sampler = cpu_sampler if cpu_sampler is not None else CpuSampler()
        self.active_calls = 0
        self.pending = 0
        self.live_transactions = 0
        self.cpu = 0.0

    def update(self, active_calls: int, pending: int, live_transactions: int = 0) -> LoadFigures:
        """Store the counters (negative ones, which the C side promises
        never to report, are clamped to 0) and sample the CPU."""
        self.active_calls = max(0, int(active_calls))
        self.pending = max(0, int(pending))
        self.live_transactions = max(0, int(live_transactions))
        try:
            self.cpu = float(self.cpu_sampler())
        except (OSError, ValueError, IndexError):
            self.cpu = 0.0      # no /proc: the counters alone decide
        return self.figures()

    def read(self, counts: Iterable[tuple[int, int, int]]) -> LoadFigures:
        """Sum (active_calls, pending, live_transactions) over this
        process's proxies, then :meth:`update`."""
        calls = pending = live = 0
        for c, p, n in counts:
            calls += c
            pending += p
            live += n
        return self.update(calls, pending, live)

    @property
    def load(self) -> float:
        return compute_load(self.active_calls, self.pending, self.capacity,
                            self.pending_limit, self.cpu)

    @property
    def full(self) -> bool:
        """At hard capacity: the counters (which include the call being
        decided) exceed capacity or the pending limit."""
        return self.active_calls > self.capacity or self.pending > self.pending_limit

    def figures(self) -> LoadFigures:
        return LoadFigures(self.load, self.active_calls, self.pending, self.capacity,
                           self.pending_limit, self.cpu)
