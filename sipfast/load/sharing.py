"""The control-plane object of a delegating proxy: it measures this
process's load, shares it with the peers over SIP (push, poll, continuous),
answers their OPTIONS through the compiled loop's ``on_options`` hook and
feeds the compiled copy of the peer table (``PeerMirror``), which decides
each new INVITE in C; ``on_invite`` decides only what C hands over
(``--share poll`` over the threshold) and, with proxies that have no
``set_delegation`` (tests' fakes), every INVITE (README "Delegating peers").

Its own UDP socket (an ephemeral port on the proxy's first listen address,
so peers see the IP they know it by) sends the OPTIONS requests: pushes and
queries alike carry ``X-Sipfast-Load`` with this proxy's load, and their
200 answers carry the peer's.  Requests are not retransmitted: the next
interval (push, continuous) or the next decision (poll) sends a new one,
and a request unanswered within ``answer_timeout`` marks its peer down
until it answers again.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sipfast
from sipfast.load.decide import Decision, RoundRobin, decide
from sipfast.load.peers import PeerState, PeerTable
from sipfast.load.wire import (
    LOAD_HEADER,
    VISITED_HEADER,
    LoadReport,
    format_load,
    identity,
    parse_identity,
    parse_load,
    parse_visited,
)
from sipfast.load.workload import CpuSampler, Workload

log = logging.getLogger("sipfast.load")

try:
    from sipfast._core import DEFER  # type: ignore[attr-defined]
except ImportError:                     # the hooks' build is not in this tree yet
    DEFER = -1
try:
    from sipfast._core import PeerMirror  # type: ignore[attr-defined]
except ImportError:                     # a build without the compiled decision
    PeerMirror = None

SHARE_MODES = ("push", "poll", "continuous")
REPLY_PATHS = ("via", "direct")


@dataclass
class LoadOptions:
    """The load-sharing part of `sipfast proxy`'s command line."""

    identities: list[str]                 # this proxy's own sip:IP:PORT (one per --listen)
    peers: list[str] = field(default_factory=list)
    share: str = "push"
    threshold: float = 0.8
    capacity: int = 1000
    pending_limit: int = 500
    share_interval: float = 1.0           # s: push period, continuous query period
    reply_path: str = "via"
    control: str | None = None            # UNIX socket path of the control endpoint
    poll_timeout: float = 0.2             # s: wait for answers (poll) / any answer
    max_age: float | None = None          # s: figures age out (default 3 intervals)
    push_step: float = 0.1                # push early when the load moved more
    watch_interval: float = 0.1           # s: how often the step is checked

    def check(self) -> list[str]:
        """Problems a user can act on (empty when fine)."""
        p = []
        if self.share not in SHARE_MODES:
            p.append(f"--share must be one of {', '.join(SHARE_MODES)}")
        if self.reply_path not in REPLY_PATHS:
            p.append(f"--reply-path must be one of {', '.join(REPLY_PATHS)}")
        if not 0.0 <= self.threshold <= 1.0:
            p.append("--threshold must be in 0..1")
        if self.capacity < 1 or self.pending_limit < 1:
            p.append("--capacity and --pending-limit must be at least 1")
        if self.share_interval <= 0 or self.poll_timeout <= 0:
            p.append("--share-interval and --poll-timeout must be positive")
        if self.max_age is not None and self.max_age <= 0:
            p.append("--peer-max-age must be positive")
        if not 0.0 < self.push_step <= 1.0:
            p.append("--push-step must be in (0, 1]")
        for uri in self.peers:
            if parse_identity(uri, default_port=5060) is None:
                p.append(f"--peers {uri!r}: expected sip:IP[:PORT] with an IP address")
        return p


class Delegation:
    """Workload, peer table, sharing and decisions of one proxy process.

    ``proxies`` are the compiled loops (or fakes with ``active_calls``,
    ``pending()``, ``live_transactions``, ``resume(txn, decision)``);
    :meth:`hooks_for` gives the two callbacks of one of them.
    :meth:`start` opens the socket and starts the timers; :meth:`close`
    stops everything (deferred decisions are resumed locally)."""

    def __init__(self, proxies: Sequence[Any], opts: LoadOptions,
                 loop: asyncio.AbstractEventLoop, *,
                 clock: Callable[[], float] = time.monotonic,
                 workload: Workload | None = None) -> None:
        problems = opts.check()
        if problems:
            raise ValueError("; ".join(problems))
        self.proxies = list(proxies)
        self.opts = opts
        self.loop = loop
        self.clock = clock
        self.threshold = opts.threshold
        self.own: list[str] = []
        for text in opts.identities:
            addr = parse_identity(text, default_port=5060)
            if addr is None:
                raise ValueError(f"own identity {text!r}: expected sip:IP:PORT")
            self.own.append(identity(*addr))
        if not self.own:
            raise ValueError("at least one own identity (the --listen address) is needed")
        self.me = self.own[0]
        self.table = PeerTable([p for p in opts.peers if _canon(p) not in self.own],
                               opts.max_age or 3 * opts.share_interval + opts.poll_timeout,
                               clock)
        self.workload = workload or Workload(opts.capacity, opts.pending_limit,
                                             CpuSampler(min(1.0, opts.share_interval)))
        self.rr = RoundRobin()
        self.seq = time.time_ns() // 1_000_000      # grows across restarts (wire.py)
        self.counters = dict.fromkeys(
            ("local", "delegated", "rejected", "deferred", "resumed", "resume_errors",
             "hook_errors", "pushes_sent", "queries_sent", "answers", "unanswered",
             "reports_received", "bad_reports", "send_errors"), 0)
        self.sock: socket.socket | None = None
        self._queries: dict[str, tuple[str, asyncio.TimerHandle]] = {}
        self._round: asyncio.Future[None] | None = None
        self._round_waiting: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._deferred: dict[tuple[int, int], tuple[asyncio.Task[None], Any, int]] = {}
        self._last_pushed = -1.0
        self._last_push_at = -1e9
        self._tag = os.urandom(6).hex()
        self._n = 0
        self.control_server: Any = None
        self._control_sock: socket.socket | None = None
        # The compiled copy of the peer table, when every proxy can decide
        # in C (set_delegation): peers in the order of their identities,
        # the order decide.RoundRobin walks equals in.
        self.order = sorted(self.table.peers)
        self.index = {uri: i for i, uri in enumerate(self.order)}
        self.mirror: Any = None
        if PeerMirror is not None and self.proxies and all(
                hasattr(p, "set_delegation") for p in self.proxies):
            self.mirror = PeerMirror(
                [self.table.peers[u].addr for u in self.order],
                [parse_identity(u) for u in self.own], self.me,
                threshold=self.threshold, capacity=opts.capacity,
                pending_limit=opts.pending_limit, max_age=self.table.max_age,
                poll=opts.share == "poll", direct=opts.reply_path == "direct")
            self.table.on_change = self._mirror_peer

    # -- own load ------------------------------------------------------------

    def sample(self) -> float:
        """Read the compiled loops' counters into the workload; the load
        (the compiled copy gets each listener's counters and the CPU share)."""
        # the three counters, not stats(): this runs every watch interval
        counts = [(p.active_calls, p.pending(), p.live_transactions) for p in self.proxies]
        self.workload.read(counts)
        if self.mirror is not None:
            self.mirror.set_cpu(self.workload.cpu)
            for i, (calls, pending, _) in enumerate(counts):
                self.mirror.set_part(i, calls, pending)
        return self.workload.load

    # -- the compiled copy ---------------------------------------------------

    def bind_compiled(self) -> None:
        """Let the compiled loops decide new INVITEs with the mirror; their
        on_invite hook is then called only when the mirror asks (poll)."""
        if self.mirror is not None:
            for i, p in enumerate(self.proxies):
                p.set_delegation(self.mirror, i)

    def _mirror_peer(self, peer: Any) -> None:
        """A peer's report or state changed: tell the compiled copy."""
        i = self.index[peer.uri]
        if peer.unanswered is not None:
            self.mirror.set_down(i)
        elif peer.report is not None:
            r = peer.report
            self.mirror.set_report(i, r.calls, r.pending, r.capacity, r.pending_limit or 0,
                                   r.load, math.nan if r.cpu is None else r.cpu)

    def _pull_assigned(self) -> None:
        """The calls assigned since each report, as the compiled copy
        counts them (it takes most decisions)."""
        if self.mirror is not None:
            for uri, i in self.index.items():
                self.table.peers[uri].assigned = self.mirror.assigned(i)

    def report(self) -> LoadReport:
        f = self.workload.figures()
        self.seq += 1
        return LoadReport(f.load, f.calls, f.pending, f.capacity, self.seq,
                          f.pending_limit, round(f.cpu, 3))

    # -- hooks -----------------------------------------------------------------

    def hooks_for(self, proxy: Any) -> dict[str, Callable[..., Any]]:
        """``on_options`` and ``on_invite`` for ``proxy.set_hooks(**...)``."""
        def on_invite(data: bytes, source: tuple[str, int], txn: int) -> Any:
            return self.on_invite(proxy, data, source, txn)
        return {"on_options": self.on_options, "on_invite": on_invite}

    def on_options(self, data: bytes, source: tuple[str, int]) -> bytes:
        """An OPTIONS to this proxy: ingest a peer's pushed load, answer 200
        with ours.  Never raises (the compiled loop calls it)."""
        try:
            msg = sipfast.parse(data)
        except Exception:           # noqa: BLE001 - C parsed it already; be safe
            self.counters["hook_errors"] += 1
            return b""
        try:
            self._ingest_request(msg, source)
        except Exception:           # noqa: BLE001
            self.counters["bad_reports"] += 1
        try:
            self.sample()
            return sipfast.make_response(msg, 200, to_tag=self._next_tag(),
                                         headers=[(LOAD_HEADER, format_load(self.report()))])
        except Exception:           # noqa: BLE001
            log.exception("answering an OPTIONS")
            self.counters["hook_errors"] += 1
            try:
                return sipfast.make_response(msg, 200, to_tag=self._next_tag())
            except Exception:       # noqa: BLE001
                return b""

    def _ingest_request(self, msg: Any, source: tuple[str, int]) -> None:
        values = msg.get_all(LOAD_HEADER)
        if not values:
            return
        self.counters["reports_received"] += 1
        report = parse_load(values[0]) if len(values) == 1 else None
        sender = _canon(str(msg.from_.uri))
        peer = self.table.get(sender) if sender else None
        if report is None or peer is None or not _same_ip(peer.addr[0], source[0]):
            self.counters["bad_reports"] += 1
            return
        self.table.ingest(peer.uri, report, pushed=True)

    def on_invite(self, proxy: Any, data: bytes, source: tuple[str, int], txn: int) -> Any:
        """A new out-of-dialog INVITE: the decision for the compiled loop
        (None, a target, 503, or DEFER then ``proxy.resume``).  Never
        raises: on any error the call is completed locally."""
        try:
            msg = sipfast.parse(data)
            visited, can_forward = self._chain(msg)
            load = self.sample()
            if (self.opts.share == "poll" and (load > self.threshold or self.workload.full)
                    and can_forward and visited is not None and len(self.table)):
                self.counters["deferred"] += 1
                key = (id(proxy), txn)
                task = self.loop.create_task(self._decide_later(key, visited, can_forward))
                self._deferred[key] = (task, proxy, txn)
                return DEFER
            return self._hook_value(self._decide(visited, can_forward))
        except Exception:           # noqa: BLE001
            log.exception("deciding an INVITE")
            self.counters["hook_errors"] += 1
            return None

    def _chain(self, msg: Any) -> tuple[list[str] | None, bool]:
        visited = parse_visited(msg.get_all(VISITED_HEADER))
        mf = msg.max_forwards
        # Two hops must remain: to the delegate, and from it onwards (§16.6 step 3).
        can_forward = (mf is None or mf >= 2) and not (
            visited is not None and any(u in self.own for u in visited))
        return visited, can_forward

    def _decide(self, visited: list[str] | None, can_forward: bool) -> Decision:
        self._pull_assigned()
        d = decide(self.workload.load, self.workload.full, self.threshold,
                   self.table.candidates(), visited, self.rr, can_forward=can_forward)
        if d.kind == "delegate":
            assert d.target is not None
            self.table.note_delegated(d.target.uri)
            if self.mirror is not None:
                self.mirror.note_delegated(self.index[d.target.uri])
            self.counters["delegated"] += 1
        elif d.kind == "reject":
            self.counters["rejected"] += 1
        else:
            self.counters["local"] += 1
        log.debug("decision %s %s (own %.3f)", d.kind, d.why, self.workload.load)
        return d

    def _hook_value(self, d: Decision) -> Any:
        if d.kind == "local":
            return None
        if d.kind == "reject":
            return d.status
        assert d.target is not None
        ip, port = d.target.addr
        target: tuple[Any, ...] = ("direct", ip, port) if self.opts.reply_path == "direct" \
            else (ip, port)
        return target, f"{VISITED_HEADER}: {self.me}\r\n".encode()

    async def _decide_later(self, key: tuple[int, int], visited: list[str],
                            can_forward: bool) -> None:
        value: Any = None
        try:
            await self.poll([u for u in self.table.peers if u not in visited])
            self.sample()
            value = self._hook_value(self._decide(visited, can_forward))
        except Exception:           # noqa: BLE001
            log.exception("deferred decision")
            self.counters["hook_errors"] += 1
        finally:
            self._resume(key, value)

    def _resume(self, key: tuple[int, int], value: Any) -> None:
        """Hand a deferred decision to the compiled loop, once."""
        found = self._deferred.pop(key, None)
        if found is None:
            return
        _, proxy, txn = found
        try:
            proxy.resume(txn, value)
            self.counters["resumed"] += 1
        except Exception:           # noqa: BLE001 - e.g. the caller CANCELed meanwhile
            self.counters["resume_errors"] += 1

    # -- the sharing socket --------------------------------------------------

    def start(self) -> None:
        """Open the socket, start the mode's timers and the control endpoint."""
        host, _ = parse_identity(self.me) or ("127.0.0.1", 0)
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(fam, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.setblocking(False)
        self.loop.add_reader(self.sock.fileno(), self._on_readable)
        if self.opts.share == "push":
            self._tasks.append(self.loop.create_task(self._every(
                self.opts.share_interval, lambda: self.send_all(query=False))))
            self._tasks.append(self.loop.create_task(self._every(
                self.opts.watch_interval, self._watch_step)))
        elif self.opts.share == "continuous":
            self._tasks.append(self.loop.create_task(self._every(
                self.opts.share_interval, lambda: self.send_all(query=True))))
        if self.mirror is not None and self.opts.share != "push":
            # the compiled decision reads the CPU share sampled here (push
            # mode's step watch samples every watch_interval already)
            self._tasks.append(self.loop.create_task(self._every(
                min(1.0, self.opts.share_interval), self.sample)))
        if self.opts.control:
            from sipfast.load.control import open_control_socket, serve_control
            # bound now, so the endpoint answers once `sipfast proxy` says ready
            self._control_sock = open_control_socket(self.opts.control)
            self._tasks.append(self.loop.create_task(serve_control(self, self._control_sock)))

    @property
    def port(self) -> int:
        assert self.sock is not None
        return int(self.sock.getsockname()[1])

    async def _every(self, interval: float, fn: Callable[[], None]) -> None:
        while True:
            try:
                fn()
            except Exception:       # noqa: BLE001 - a timer must keep going
                log.exception("load sharing timer")
            await asyncio.sleep(interval)

    def _watch_step(self) -> None:
        load = self.sample()
        now = self.clock()
        if abs(load - self._last_pushed) > self.opts.push_step and now - self._last_push_at > 0.05:
            self.send_all(query=False)

    def send_all(self, query: bool) -> None:
        """An OPTIONS with our load to every peer (a push or a query; both
        are answered with the peer's load)."""
        self.sample()
        if not query:
            self._last_pushed = self.workload.load
            self._last_push_at = self.clock()
        for uri in self.table.peers:
            self.send(uri, query=query)

    def send(self, uri: str, query: bool = True) -> str | None:
        """Send one OPTIONS to peer ``uri``; its Call-ID, None on failure."""
        if self.sock is None:
            return None
        peer = self.table.peers[uri]
        self._n += 1
        call_id = f"{self._tag}-{self._n}@sipfast-load"
        host, lport = self.sock.getsockname()[:2]
        via_host = f"[{host}]" if ":" in host else host
        target = f"{peer.uri}"
        msg = (f"OPTIONS {target} SIP/2.0\r\n"
               f"Via: SIP/2.0/UDP {via_host}:{lport};branch={sipfast.new_branch()};rport\r\n"
               f"Max-Forwards: 70\r\n"
               f"From: <{self.me}>;tag={self._tag}\r\n"
               f"To: <{target}>\r\n"
               f"Call-ID: {call_id}\r\n"
               f"CSeq: {self._n} OPTIONS\r\n"
               f"{LOAD_HEADER}: {format_load(self.report())}\r\n"
               f"Content-Length: 0\r\n\r\n").encode()
        try:
            self.sock.sendto(msg, peer.addr)
        except OSError:
            self.counters["send_errors"] += 1
            self.table.mark_unanswered(uri)
            return None
        self.counters["queries_sent" if query else "pushes_sent"] += 1
        timer = self.loop.call_later(self.opts.poll_timeout, self._expire, call_id)
        self._queries[call_id] = (uri, timer)
        return call_id

    def _expire(self, call_id: str) -> None:
        found = self._queries.pop(call_id, None)
        if found is not None:
            self.counters["unanswered"] += 1
            self.table.mark_unanswered(found[0])
            self._answered(found[0])

    def _on_readable(self) -> None:
        assert self.sock is not None
        for _ in range(256):
            try:
                data, source = self.sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return      # e.g. ICMP port unreachable reported on the socket
            try:
                self._on_answer(data, source)
            except Exception:       # noqa: BLE001 - one bad datagram is dropped
                self.counters["bad_reports"] += 1

    def _on_answer(self, data: bytes, source: tuple[str, int]) -> None:
        msg = sipfast.parse(data)
        if msg.is_request:
            return
        found = self._queries.get(msg.call_id)
        if found is None or msg.status < 200:
            return
        uri, timer = found
        peer = self.table.peers[uri]
        if not _same_ip(peer.addr[0], source[0]):
            return
        del self._queries[msg.call_id]
        timer.cancel()
        self.counters["answers"] += 1
        values = msg.get_all(LOAD_HEADER)
        report = parse_load(values[0]) if msg.status == 200 and len(values) == 1 else None
        if report is None:
            self.counters["bad_reports"] += 1
        else:
            self.table.ingest(uri, report)
        self._answered(uri)

    # -- poll rounds ---------------------------------------------------------

    def poll(self, uris: Sequence[str]) -> asyncio.Future[None]:
        """Ask ``uris`` for their load; the future is done when all answered
        or ``poll_timeout`` passed.  A round already in flight is shared by
        the decisions that arrive meanwhile (one query per peer at a time)."""
        if self._round is not None and not self._round.done():
            return self._round
        self._round = self.loop.create_future()
        self._round_waiting = set()
        for uri in uris:
            if self.send(uri, query=True) is not None:
                self._round_waiting.add(uri)
        if not self._round_waiting:
            self._round.set_result(None)
        return self._round

    def _answered(self, uri: str) -> None:
        self._round_waiting.discard(uri)
        if self._round is not None and not self._round.done() and not self._round_waiting:
            self._round.set_result(None)

    # -- operators -------------------------------------------------------------

    def show(self) -> dict[str, Any]:
        """What the control endpoint shows."""
        self.sample()
        self._pull_assigned()
        f = self.workload.figures()
        counters = dict(self.counters)
        if self.mirror is not None:
            in_c = self.mirror.counters()
            for k in ("local", "delegated", "rejected"):
                counters[k] += in_c[k]
            counters["decided_in_c"] = in_c["local"] + in_c["delegated"] + in_c["rejected"]
        return {"self": self.me, "share": self.opts.share, "reply_path": self.opts.reply_path,
                "threshold": self.threshold,
                "load": {"load": round(f.load, 3), "calls": f.calls, "pending": f.pending,
                         "capacity": f.capacity, "pending_limit": f.pending_limit,
                         "cpu": round(f.cpu, 3), "full": self.workload.full},
                "peers": self.table.snapshot(), "counters": counters}

    def set_threshold(self, value: float) -> None:
        if not isinstance(value, int | float) or isinstance(value, bool) \
                or not 0.0 <= float(value) <= 1.0:
            raise ValueError("threshold must be a number in 0..1")
        self.threshold = float(value)
        if self.mirror is not None:
            self.mirror.set_threshold(self.threshold)
        log.info("threshold set to %.3f", self.threshold)

    def peer_state(self, uri: str) -> PeerState:
        return self.table.state(self.table.peers[_canon(uri) or uri])

    def close(self) -> None:
        """Stop timers and the socket; deferred decisions complete locally."""
        for task in self._tasks:
            task.cancel()
        self._tasks.clear()
        for key, (task, _, _) in list(self._deferred.items()):
            task.cancel()
            self._resume(key, None)
        for _, timer in self._queries.values():
            timer.cancel()
        self._queries.clear()
        if self._round is not None and not self._round.done():
            self._round.set_result(None)
        if self.control_server is not None:
            self.control_server.close()
        if self._control_sock is not None:
            self._control_sock.close()      # also when the server task never ran
            self._control_sock = None
            if self.opts.control:
                try:
                    os.unlink(self.opts.control)
                except OSError:
                    pass
        if self.sock is not None:
            self.loop.remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None

    def _next_tag(self) -> str:
        self._n += 1
        return f"{self._tag}{self._n:x}"


def _canon(text: str) -> str | None:
    addr = parse_identity(text, default_port=5060)
    return identity(*addr) if addr else None


def _same_ip(a: str, b: str) -> bool:
    try:
        fa = socket.AF_INET6 if ":" in a else socket.AF_INET
        fb = socket.AF_INET6 if ":" in b else socket.AF_INET
        return fa == fb and socket.inet_pton(fa, a) == socket.inet_pton(fb, b)
    except OSError:
        return False
