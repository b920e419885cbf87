"""Workload measurement and sharing for delegating peer proxies (DESIGN.md
§1 scheme B, §3; README "Delegating peers").

- :mod:`~sipfast.load.workload`: this process's load in 0..1 and its counters;
- :mod:`~sipfast.load.wire`: the ``X-Sipfast-Load`` and ``X-Sipfast-Visited``
  headers;
- :mod:`~sipfast.load.peers`: what is known of each peer (load, age, state);
- :mod:`~sipfast.load.decide`: the decision for a new INVITE;
- :mod:`~sipfast.load.sharing`: push/poll/continuous over SIP and the two
  hooks of the compiled loop;
- :mod:`~sipfast.load.control`: the operators' endpoint.

:func:`attach` is the one call `sipfast proxy` makes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from sipfast.load.decide import Decision, RoundRobin, decide
from sipfast.load.peers import Candidate, Peer, PeerState, PeerTable
from sipfast.load.sharing import DEFER, REPLY_PATHS, SHARE_MODES, Delegation, LoadOptions
from sipfast.load.wire import (
    LOAD_HEADER,
    VISITED_HEADER,
    LoadReport,
    format_load,
    format_visited,
    identity,
    parse_identity,
    parse_load,
    parse_visited,
)
from sipfast.load.workload import CpuSampler, LoadFigures, Workload, compute_load

__all__ = [
    "DEFER", "LOAD_HEADER", "REPLY_PATHS", "SHARE_MODES", "VISITED_HEADER", "Candidate",
    "CpuSampler", "Decision", "Delegation", "LoadFigures", "LoadOptions", "LoadReport", "Peer",
    "PeerState", "PeerTable", "RoundRobin", "Workload", "attach", "compute_load", "decide",
    "format_load", "format_visited", "identity", "parse_identity", "parse_load",
    "parse_visited",
]


class HooksMissing(RuntimeError):
    """The compiled loop has no ``set_hooks`` (a build without delegation)."""


def attach(proxy_objects: Sequence[Any], options: LoadOptions,
           loop: asyncio.AbstractEventLoop) -> Delegation:
    """Make the compiled proxies of this process delegating peers: set their
    ``on_options``/``on_invite`` hooks and start sharing load (and the
    control endpoint).  Call :meth:`Delegation.close` on the way out."""
    missing = [p for p in proxy_objects if not hasattr(p, "set_hooks")]
    if missing:
        raise HooksMissing("this build of sipfast._core has no UdpProxy.set_hooks "
                           "(the on_options/on_invite hooks delegation needs)")
    d = Delegation(proxy_objects, options, loop)
    for p in proxy_objects:
        p.set_hooks(**d.hooks_for(p))
    d.bind_compiled()
    d.start()
    return d
