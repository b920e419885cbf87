"""The load-sharing headers and their strict parsers.

``X-Sipfast-Load`` carries one proxy's workload (README "Delegating peers",
DESIGN.md §3); it rides on OPTIONS requests (pushes and queries) and on
their 200 answers::

    X-Sipfast-Load: 0.420;calls=12;pending=3;capacity=100;limit=500;cpu=0.120;seq=17

- the first element is the load, a decimal in 0..1 with at most three
  decimals (``0``, ``0.5``, ``1.000``);
- ``calls``, ``pending``, ``capacity`` and ``seq`` are required, ``limit``
  (the pending limit) and ``cpu`` (same syntax as the load) optional;
  integers are 1-19 decimal digits, ``capacity`` and ``limit`` at least 1;
- parameter names are case-insensitive, each at most once; optional white
  space around ``;`` and ``=`` (RFC 3261 §25.1 SWS); unknown parameters
  with token names and values are ignored (later versions may add some);
- the load may not be below what its own counters imply (calls/capacity,
  pending/limit, cpu; 0.0005 of rounding allowed);
- ``seq`` grows with every report of one sender; it starts from the
  sender's wall clock in milliseconds, so it still grows across restarts,
  and a receiver drops a pushed report older than one it has.

``X-Sipfast-Visited`` marks a delegated INVITE with the proxies it went
through, each as the ``sip:IP:PORT`` identity peers know it by::

    X-Sipfast-Visited: sip:127.0.0.1:5070, sip:[::1]:5071

Each delegating proxy adds a line with itself (RFC 3261 §7.3.1: repeated
lines are one comma-separated list).  A proxy never delegates to one in the
list; a list it cannot parse is taken to name every peer (no further
delegation), so junk can stop a chain but never loop it.

The parsers return None for anything else; they never raise.
"""

from __future__ import annotations

import math
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass

LOAD_HEADER = "X-Sipfast-Load"
VISITED_HEADER = "X-Sipfast-Visited"

MAX_VALUE = 256          # characters of an X-Sipfast-Load value
MAX_VISITED = 64         # identities in one INVITE's visited list
_FRACTION = re.compile(r"(?:0(?:\.[0-9]{1,3})?|1(?:\.0{1,3})?)\Z")
_INT = re.compile(r"[0-9]{1,19}\Z")
_TOKEN = re.compile(r"[A-Za-z0-9.!%*_+`'~-]+\Z")      # RFC 3261 §25.1 token
_SWS = " \t"
_REQUIRED = ("calls", "pending", "capacity", "seq")
_TOLERANCE = 0.0005


@dataclass(frozen=True)
class LoadReport:
    """One proxy's load as carried in ``X-Sipfast-Load``."""

    load: float
    calls: int
    pending: int
    capacity: int
    seq: int
    pending_limit: int | None = None
    cpu: float | None = None


def _fraction(x: float) -> str:
    return f"{min(1.0, max(0.0, x)):.3f}"


def format_load(r: LoadReport) -> str:
    """The header value for ``r`` (load and cpu rounded up to three
    decimals, so a formatted report is never below its own counters)."""
    load = max(r.load, min(1.0, r.calls / r.capacity))
    if r.pending_limit:
        load = max(load, min(1.0, r.pending / r.pending_limit))
    if r.cpu is not None:
        load = max(load, r.cpu)
    parts = [_fraction(_ceil3(load)), f"calls={r.calls}", f"pending={r.pending}",
             f"capacity={r.capacity}"]
    if r.pending_limit is not None:
        parts.append(f"limit={r.pending_limit}")
    if r.cpu is not None:
        parts.append(f"cpu={_fraction(r.cpu)}")
    parts.append(f"seq={r.seq}")
    return ";".join(parts)


def _ceil3(x: float) -> float:
    # Round up to 0.001 (less a hair, so 0.42 stays 0.420), so that the
    # receiver's consistency check always holds.
    return math.ceil(x * 1000 - 1e-6) / 1000


def parse_load(value: str | bytes | None) -> LoadReport | None:
    """Strict parse of an ``X-Sipfast-Load`` value; None when malformed."""
    try:
        return _parse_load(value)
    except Exception:       # noqa: BLE001 - junk of any shape is "no report"
        return None


def _parse_load(value: str | bytes | None) -> LoadReport | None:
    if value is None:
        return None
    if isinstance(value, bytes | bytearray | memoryview):
        value = bytes(value).decode("ascii")
    if not isinstance(value, str) or len(value) > MAX_VALUE or not value.isascii():
        return None
    first, *params = value.split(";")
    first = first.strip(_SWS)
    if not _FRACTION.match(first):
        return None
    seen: dict[str, str] = {}
    for p in params:
        name, eq, val = p.partition("=")
        name, val = name.strip(_SWS).lower(), val.strip(_SWS)
        if not eq or not _TOKEN.match(name) or not _TOKEN.match(val) or name in seen:
            return None
        seen[name] = val
    if any(k not in seen for k in _REQUIRED):
        return None
    ints: dict[str, int] = {}
    for k in ("calls", "pending", "capacity", "seq", "limit"):
        if k in seen:
            if not _INT.match(seen[k]) or int(seen[k]) >= 1 << 63:
                return None
            ints[k] = int(seen[k])
    if ints["capacity"] < 1 or ints.get("limit", 1) < 1:
        return None
    cpu = None
    if "cpu" in seen:
        if not _FRACTION.match(seen["cpu"]):
            return None
        cpu = float(seen["cpu"])
    load = float(first)
    implied = [min(1.0, ints["calls"] / ints["capacity"]), cpu or 0.0]
    if "limit" in ints:
        implied.append(min(1.0, ints["pending"] / ints["limit"]))
    if load + _TOLERANCE < max(implied):
        return None
    return LoadReport(load, ints["calls"], ints["pending"], ints["capacity"], ints["seq"],
                      ints.get("limit"), cpu)


# -- identities and the visited list ------------------------------------------


def identity(ip: str, port: int) -> str:
    """The canonical ``sip:IP:PORT`` of an address (IPv6 compressed and
    bracketed), the form used in --peers and in X-Sipfast-Visited."""
    fam = socket.AF_INET6 if ":" in ip else socket.AF_INET
    host = socket.inet_ntop(fam, socket.inet_pton(fam, ip))
    return f"sip:[{host}]:{port}" if fam == socket.AF_INET6 else f"sip:{host}:{port}"


def parse_identity(text: str, default_port: int | None = None) -> tuple[str, int] | None:
    """``sip:IP:PORT`` (IPv4 or bracketed IPv6) -> (ip, port), None when
    malformed.  The port may be left out only when ``default_port`` is
    given (the command line's --peers allows it; the wire does not)."""
    try:
        if not isinstance(text, str) or not text[:4].lower() == "sip:" or len(text) > 64:
            return None
        rest = text[4:]
        if rest.startswith("["):
            host, sep, tail = rest[1:].partition("]")
            if not sep:
                return None
            family = socket.AF_INET6
        else:
            host, sep, tail = rest.partition(":")
            tail = sep + tail
            family = socket.AF_INET
        if tail == "" and default_port is not None:
            port = default_port
        elif tail.startswith(":") and tail[1:].isdigit() and tail[1:].isascii() \
                and len(tail) <= 6:
            port = int(tail[1:])
        else:
            return None
        if not 0 < port < 65536:
            return None
        packed = socket.inet_pton(family, host)
        return socket.inet_ntop(family, packed), port
    except (OSError, ValueError, TypeError):
        return None


def format_visited(identities: Iterable[str]) -> str:
    return ", ".join(identities)


def parse_visited(values: Iterable[str]) -> list[str] | None:
    """The identities of every X-Sipfast-Visited value (repeated lines and
    comma lists), canonical; [] when there is none; None when any element
    is malformed or the list is longer than MAX_VISITED."""
    out: list[str] = []
    try:
        for value in values:
            for element in value.split(","):
                addr = parse_identity(element.strip(_SWS))
                if addr is None:
                    return None
                out.append(identity(*addr))
                if len(out) > MAX_VISITED:
                    return None
    except (AttributeError, TypeError):
        return None
    return out
