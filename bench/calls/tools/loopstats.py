#!/usr/bin/env python3
"""Run `sipfast proxy ...` (one process, ``--workers 1``) with counters on
its asyncio loop, without changing sipfast: how often the loop wakes up,
how many ready file descriptors each wake-up finds, how many 10 ms timer
ticks ran and the thread CPU time they took.

    LOOPSTATS_OUT=/tmp/ls.jsonl [LOOPSTATS_TICK=0.1] \
        .venv/bin/python bench/calls/tools/loopstats.py proxy --listen ... --workers 1

Every second one JSON line goes to LOOPSTATS_OUT: wall time, cumulative
counts (select calls, select calls that returned events, events, ticks,
tick CPU ns, on_timer CPU ns, thread CPU ns) and the proxy's counters.
LOOPSTATS_TICK replaces the 0.01 s delay of the proxy's timer tick (to
measure what the tick costs by changing only its period).  Use it as a
--proxy-cmd of bench/calls/run.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import selectors
import sys
import time

OUT = os.environ.get("LOOPSTATS_OUT", "/tmp/loopstats.jsonl")
TICK = float(os.environ.get("LOOPSTATS_TICK", "0.01"))
C = {"selects": 0, "wakeups": 0, "events": 0, "ticks": 0,
     "tick_cpu_ns": 0, "on_timer_cpu_ns": 0}
_tt = time.thread_time_ns

_orig_select = selectors.EpollSelector.select


def _select(self, timeout=None):
    ready = _orig_select(self, timeout)
    C["selects"] += 1
    if ready:
        C["wakeups"] += 1
        C["events"] += len(ready)
    return ready


selectors.EpollSelector.select = _select

_orig_call_later = asyncio.base_events.BaseEventLoop.call_later


def _call_later(self, delay, callback, *args, context=None):
    if getattr(callback, "__name__", "") == "tick" and delay == 0.01:
        orig = callback

        def timed_tick() -> None:
            t0 = _tt()
            orig()
            C["tick_cpu_ns"] += _tt() - t0
            C["ticks"] += 1

        timed_tick.__name__ = "timed_tick"
        return _orig_call_later(self, TICK, timed_tick, *args, context=context)
    return _orig_call_later(self, delay, callback, *args, context=context)


asyncio.base_events.BaseEventLoop.call_later = _call_later

from sipfast.roles import proxy as role  # noqa: E402

_Base = role.UdpProxy
PROXIES: list = []


class CountingProxy:
    """Delegates to the compiled UdpProxy (a final type: no subclass);
    only on_timer is wrapped, on_readable & co. are the real bound methods."""

    def __init__(self, *a, **kw):
        self._p = _Base(*a, **kw)
        PROXIES.append(self._p)

    def __getattr__(self, name):
        return getattr(self._p, name)

    def on_timer(self):
        t0 = _tt()
        self._p.on_timer()
        C["on_timer_cpu_ns"] += _tt() - t0


role.UdpProxy = CountingProxy
_orig_serve = role.serve


async def _serve(opts, reuse_port=False):
    loop = asyncio.get_running_loop()
    f = open(OUT, "a", buffering=1)

    def dump() -> None:
        rec = dict(C, t=time.time(), thread_cpu_ns=_tt(), tick_s=TICK)
        for p in PROXIES:
            s = p.stats()
            rec["received"] = s.get("received")
            rec["sent"] = s.get("sent")
        f.write(json.dumps(rec) + "\n")
        loop.call_at(loop.time() + 1.0, dump)

    loop.call_soon(dump)
    try:
        return await _orig_serve(opts, reuse_port)
    finally:
        f.close()


role.serve = _serve

from sipfast.cli import main  # noqa: E402

sys.exit(main(sys.argv[1:]))
