"""Type stub for the compiled SIP message core (built from ext/core.pyx).

Everything here is implemented in Cython; this file only tells type checkers
what the extension exposes.  Text values are ``str`` (decoded as UTF-8 with
``surrogateescape`` so that no byte is lost); offsets are byte offsets into
the buffer that was parsed.
"""

from collections.abc import Callable, Iterable, Sequence

DEFAULT_MAX_SIZE: int
"""Largest message accepted by :func:`parse` unless told otherwise (65535)."""
DEFAULT_MAX_HEADERS: int
"""Most header lines accepted (128)."""
DEFAULT_MAX_LINE: int
"""Longest start or header line accepted, in bytes (8192)."""

class SipError(ValueError):
    """A message that cannot be parsed or a field that is malformed.

    ``status`` and ``reason`` are the SIP answer a server gives to a request
    that fails this way (400 with the reason, 505 for a bad SIP version,
    513 for a message over the size limits, 413 for a body over them).
    ``offset`` is the byte offset of the offending byte, or -1 when unknown.
    ``is_response`` is True when the bad message looked like a response;
    callers drop such messages and never answer them.
    """

    status: int
    reason: str
    offset: int
    is_response: bool
    def __init__(
        self, status: int, reason: str, offset: int = -1, is_response: bool = False
    ) -> None: ...

class URI:
    """A parsed URI.  sip/sips URIs are split into parts; any other scheme
    (tel, http, urn, ...) is kept as opaque text with only ``scheme`` set.

    ``user``, ``password``, parameter names and values and header names and
    values have their %-escapes decoded exactly once; ``host`` is returned as
    written (IPv6 references keep their brackets, RFC 5118)."""

    @property
    def text(self) -> str: ...
    @property
    def scheme(self) -> str:
        """Lower-cased scheme, e.g. ``"sip"``."""
    @property
    def is_sip(self) -> bool:
        """True for sip: and sips: URIs."""
    @property
    def user(self) -> str | None: ...
    @property
    def password(self) -> str | None: ...
    @property
    def host(self) -> str | None: ...
    @property
    def port(self) -> int | None: ...
    @property
    def params(self) -> dict[str, str | None]:
        """uri-parameters; names lower-cased, a flag parameter maps to None."""
    def param(self, name: str) -> str | None:
        """One uri-parameter by (case-insensitive) name; '' for a flag."""
    @property
    def headers(self) -> dict[str, str]: ...
    def __str__(self) -> str: ...

class NameAddr:
    """From, To, Contact, Route, Record-Route: ``[display] <uri>;params``."""

    @property
    def text(self) -> str: ...
    @property
    def display(self) -> str | None:
        """Display name, quotes removed and quoted-pairs resolved."""
    @property
    def uri(self) -> URI:
        """The URI.  From and To are scanned without their URI (a proxy
        reading a tag needs none), so for those the URI is checked here and
        a malformed one raises :class:`SipError`."""
    @property
    def params(self) -> dict[str, str | None]:
        """Header parameters (not the URI's); names lower-cased."""
    def param(self, name: str) -> str | None: ...
    @property
    def tag(self) -> str | None: ...
    def __str__(self) -> str: ...

class Via:
    """One Via value (RFC 3261 §20.42, RFC 3581 rport)."""

    @property
    def text(self) -> str: ...
    @property
    def protocol(self) -> str:
        """``"SIP/2.0"``."""
    @property
    def transport(self) -> str:
        """Upper-cased transport, e.g. ``"UDP"``."""
    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int | None: ...
    @property
    def branch(self) -> str | None: ...
    @property
    def received(self) -> str | None: ...
    @property
    def has_rport(self) -> bool: ...
    @property
    def rport(self) -> int | None:
        """The rport value; None when absent or empty (a request's ``;rport``)."""
    @property
    def maddr(self) -> str | None: ...
    @property
    def ttl(self) -> int | None: ...
    @property
    def params(self) -> dict[str, str | None]: ...
    def param(self, name: str) -> str | None: ...
    def __str__(self) -> str: ...

class Message:
    """A parsed SIP request or response.  Holds a reference to the buffer
    it was parsed from; nothing is copied until a field is read."""

    @property
    def is_request(self) -> bool: ...
    @property
    def method(self) -> str:
        """Request method; for a response, the method of its CSeq."""
    @property
    def uri_text(self) -> str:
        """Request-URI as written ('' for a response)."""
    @property
    def uri(self) -> URI | None:
        """Parsed Request-URI (None for a response)."""
    @property
    def version(self) -> str: ...
    @property
    def status(self) -> int:
        """Status code of a response; 0 for a request."""
    @property
    def reason(self) -> str:
        """Reason phrase of a response (may be empty); '' for a request."""
    # -- headers ------------------------------------------------------------
    def get(self, name: str, default: str | None = None) -> str | None:
        """First value of header ``name`` (any case, long or compact form),
        line folding replaced by one space; for headers that may carry a
        comma-separated list, the first element of the list."""
    def get_all(self, name: str) -> list[str]:
        """Every value of ``name`` in order, over repeated lines; list-valued
        headers (Via, Route, Contact, Allow, ...) are split on commas outside
        quotes and angle brackets."""
    def __contains__(self, name: object) -> bool: ...
    @property
    def headers(self) -> list[tuple[str, str]]:
        """Every header line in order: (name as written, raw value)."""
    @property
    def header_count(self) -> int: ...
    # -- structured access ----------------------------------------------------
    @property
    def via(self) -> Via:
        """Top Via."""
    @property
    def vias(self) -> list[Via]: ...
    @property
    def branch(self) -> str | None:
        """Branch of the top Via."""
    @property
    def from_(self) -> NameAddr: ...
    @property
    def to(self) -> NameAddr: ...
    @property
    def from_tag(self) -> str | None: ...
    @property
    def to_tag(self) -> str | None: ...
    @property
    def call_id(self) -> str: ...
    @property
    def cseq(self) -> int: ...
    @property
    def cseq_method(self) -> str: ...
    @property
    def max_forwards(self) -> int | None: ...
    @property
    def contact(self) -> NameAddr | None:
        """First Contact, None when absent or ``*``."""
    @property
    def contacts(self) -> list[NameAddr]: ...
    @property
    def contact_star(self) -> bool:
        """True for ``Contact: *`` (REGISTER removing all bindings)."""
    @property
    def route(self) -> NameAddr | None:
        """Top Route, None when absent."""
    @property
    def routes(self) -> list[NameAddr]: ...
    @property
    def record_routes(self) -> list[NameAddr]: ...
    @property
    def content_length(self) -> int:
        """Declared Content-Length, or the body length when absent."""
    @property
    def content_type(self) -> str | None: ...
    @property
    def expires(self) -> int | None:
        """Expires delta-seconds, capped at 2**32-1 (RFC 3261 §20.19)."""
    @property
    def body(self) -> bytes: ...
    @property
    def body_offset(self) -> int: ...
    @property
    def size(self) -> int:
        """Bytes taken by this message in the buffer (headers + body)."""
    def raw(self) -> bytes:
        """The message bytes (a copy of ``size`` bytes)."""
    def validate(self) -> None:
        """Parse every structured field a proxy uses (R-URI, all Via, From,
        To, Contact, Route, Record-Route, Expires); raise :class:`SipError`
        on the first malformed one."""
    def to_dict(self) -> dict[str, object]:
        """Everything parsed, as JSON-ready Python data."""
    def edit(self) -> Editor:
        """Start a set of edits to be applied in one pass by
        :meth:`Editor.build`."""

class Editor:
    """Edits collected against a :class:`Message`, applied in one pass into a
    new buffer; bytes no edit touches are copied unchanged.  Every text
    argument is refused (ValueError) if it holds CR, LF or NUL."""

    def __init__(self, msg: Message) -> None: ...
    def push_via(
        self,
        sent_by: str,
        transport: str = "UDP",
        branch: str | None = None,
        rport: bool = False,
        params: str = "",
    ) -> str:
        """Insert a new top Via line; returns its branch (a fresh
        ``z9hG4bK`` branch when ``branch`` is None)."""
    def pop_via(self) -> None:
        """Remove the top Via value (its whole line if it was alone).  Once
        per editor; edits that touch the same bytes make build() raise
        ValueError("overlapping edits")."""
    def set_received(self, received: str | None, rport: int | None = None) -> None:
        """Set ``received`` and fill ``rport`` on the top Via (RFC 3581 §4:
        rport is filled only when the Via carries an ``rport`` parameter)."""
    def decrement_max_forwards(self) -> int:
        """Max-Forwards minus one (added as 70 when absent, RFC 3261 §16.6
        step 3); returns the new value.  Raises SipError(483) when it is
        already 0.  Once per editor."""
    def pop_route(self) -> None:
        """Remove the top Route value."""
    def add_record_route(self, uri: str, lr: bool = True) -> None:
        """Add ``Record-Route: <uri;lr>`` above any existing Record-Route."""
    def set_uri(self, uri: str) -> None:
        """Replace the Request-URI."""
    def add_header(self, name: str, value: str, top: bool = False) -> None:
        """Add a header line (after the last header, or before the first
        header line when ``top``)."""
    def set_header(self, name: str, value: str) -> None:
        """Replace every line of ``name`` by one line with ``value``."""
    def remove_header(self, name: str) -> None:
        """Remove every line of ``name``."""
    def set_body(self, body: bytes, content_type: str | None = None) -> None:
        """Replace the body; Content-Length is fixed (and Content-Type set
        when given)."""
    def build(self) -> bytes:
        """Apply the edits in one pass and return the new message."""

DEFER: int
"""An on_invite decision: the decision comes later through UdpProxy.resume()."""

Decision = (
    None | int | tuple[str, int] | tuple[str, str, int]
    | tuple[None | int | tuple[str, int] | tuple[str, str, int], bytes]
)

class PeerMirror:
    """The compiled copy of a delegating proxy's peer table and own figures
    (fed by sipfast.load.sharing.Delegation) and the delegation decision
    for a new INVITE (sipfast/load/decide.py's rules, in C)."""

    local: int
    delegated: int
    rejected: int
    asked: int
    def __init__(
        self,
        peers: Sequence[tuple[str, int]],
        own: Sequence[tuple[str, int]],
        me: str,
        *,
        threshold: float,
        capacity: int,
        pending_limit: int,
        max_age: float,
        poll: bool = False,
        direct: bool = False,
    ) -> None: ...
    def set_threshold(self, value: float) -> None:
        """The threshold the next decisions use."""
    def set_cpu(self, share: float) -> None:
        """The CPU share of the last sampling interval."""
    def set_part(self, i: int, calls: int, pending: int) -> None:
        """Listener i's active calls and pending transactions."""
    def set_report(self, i: int, calls: int, pending: int, capacity: int, limit: int,
                   load: float, cpu: float = ..., age: float = 0.0) -> None:
        """Peer i reported age seconds ago (limit 0: none; cpu NaN: none):
        up, assigned 0; its drift learnt from this report and the last."""
    def set_down(self, i: int) -> None:
        """Peer i did not answer: no candidate until it reports again."""
    def note_delegated(self, i: int) -> None:
        """A call the control plane delegated to peer i."""
    def assigned(self, i: int) -> int:
        """Calls delegated to peer i since its last report."""
    def decide_request(self, data: bytes, calls: int, pending: int) -> tuple[str, int | None]:
        """The decision for INVITE data with the process at (calls, pending)."""
    def counters(self) -> dict[str, int]:
        """Decisions taken here: local, delegated, rejected, asked."""

class UdpProxy:
    """The compiled UDP proxy loop on one bound non-blocking socket (plus,
    with workers, a private socket its forwarded requests leave from):
    recvmmsg/sendmmsg batches, every datagram handled in C.  Stateless
    (RFC 3261 §16.11) or transaction stateful (§16-17: 100 Trying,
    retransmissions, forking, CANCEL, Timer C, §16.7 selection).  Register
    :meth:`on_readable` (and :meth:`on_send_readable`) with the event loop's
    ``add_reader`` and, when stateful, call :meth:`on_timer` again after the
    wait it returns."""

    received: int
    sent: int
    forwarded_requests: int
    forwarded_responses: int
    replied: int
    dropped: int
    malformed: int
    send_errors: int
    pending_count: int
    pending_invites: int
    def __init__(
        self,
        fd: int,
        host: str,
        port: int,
        next_hops: Sequence[tuple[str, int]] | tuple[str, int] | None = (),
        record_route: bool = False,
        *,
        stateful: bool = False,
        fork: bool = False,
        send_fd: int = -1,
        send_port: int = 0,
        max_transactions: int = 65536,
        t1: int = 500,
        t2: int = 4000,
        t4: int = 5000,
        timer_c: int = 180000,
        timer_d: int = 32000,
        on_register: Callable[[bytes, tuple[str, int]], bytes] | None = None,
        on_lookup: Callable[[bytes], list[tuple[bytes, str, int]]] | None = None,
        on_options: Callable[[bytes, tuple[str, int]], bytes] | None = None,
        on_invite: Callable[[bytes, tuple[str, int], int], Decision] | None = None,
        max_call_duration: int = 7200,
        defer_timeout: int = 2000,
        balance: str | None = None,
        first: str = "final",
        probe_timeout: int = 2000,
        retry_after: int = 5,
        wait_timer: int = 0,
    ) -> None: ...
    def on_readable(self) -> None:
        """Drain the listening socket: receive, handle and send in batches."""
    def on_send_readable(self) -> None:
        """Drain this worker's own socket (responses to forwarded requests)."""
    def on_timer(self) -> float:
        """Fire due transaction timers, overdue deferrals, dialog expiry;
        returns how long (s, 0.01 to 0.1) the caller may wait before the
        next call."""
    def set_hooks(
        self,
        *,
        on_register: Callable[[bytes, tuple[str, int]], bytes] | None = None,
        on_lookup: Callable[[bytes], list[tuple[bytes, str, int]]] | None = None,
        on_options: Callable[[bytes, tuple[str, int]], bytes] | None = None,
        on_invite: Callable[[bytes, tuple[str, int], int], Decision] | None = None,
    ) -> None:
        """Set the control plane's callbacks named (others are kept)."""
    def set_delegation(self, mirror: PeerMirror | None, slot: int = 0) -> None:
        """Decide new INVITEs in C with mirror, before any transaction: a
        delegated one is relayed statelessly and only a relay entry is held
        (stats()["relays_held"]); on_invite only when the mirror asks."""
    def resume(self, txn: int, decision: Decision) -> bool:
        """Carry out the decision for a deferred INVITE."""
    def drain(self) -> None:
        """Graceful stop: new out-of-dialog requests get 503."""
    def set_pool(self, next_hops: Sequence[tuple[str, int] | tuple[str, int, str]]) -> None:
        """Replace the pool / static next hops at run time."""
    def set_member_up(self, i: int, up: bool) -> None:
        """Take pool member i out or put it back."""
    def pool(self) -> list[dict[str, object]]:
        """Each member's address, state, wins and failures."""
    def add_tcp_listener(
        self,
        fd: int,
        port: int,
        watch: Callable[[int, int], None],
        *,
        max_connections: int = 4096,
        idle_timeout: int = 600,
    ) -> None:
        """Serve TCP on a listening socket; watch(fd, mode) registers fds."""
    def on_tcp_accept(self) -> None: ...
    def on_conn_readable(self, fd: int) -> None: ...
    def on_conn_writable(self, fd: int) -> None: ...
    def tcp_stats(self) -> dict[str, int]: ...
    @property
    def idle(self) -> bool:
        """Nothing in flight: the timer may tick slowly."""
    def pending(self) -> int:
        """Server transactions still waiting for a final response."""
    @property
    def active_calls(self) -> int: ...
    @property
    def live_transactions(self) -> int: ...
    def stats(self) -> dict[str, int]: ...

def bench_parse_loop(data: bytes, n: int) -> int:
    """Benchmark helper: parse ``data`` n times into one reused Message and
    scan the proxy's fields in C; returns how many parsed."""

def parse(
    data: bytes | bytearray | memoryview,
    *,
    stream: bool = False,
    max_size: int = ...,
    max_headers: int = ...,
    max_line: int = ...,
) -> Message:
    """Parse one SIP message from ``data`` without copying it.

    Datagram framing (the default): the body is what follows the headers,
    cut to Content-Length when that is shorter; a body shorter than
    Content-Length is an error.  With ``stream=True`` the message is framed
    by Content-Length (0 when absent) and trailing bytes are left alone
    (see :attr:`Message.size`).  Raises :class:`SipError`."""

def frame(data: bytes | bytearray | memoryview, *, max_size: int = ...) -> int:
    """Stream framing: the length of the first unit in ``data``, or 0 if more
    bytes are needed.  A unit is a whole message (headers and Content-Length
    bytes of body) or, when ``data`` starts with CR or LF, the run of CR/LF
    bytes: a keep-alive (RFC 5626 §3.5.1) that the caller answers or drops.
    Raises :class:`SipError` when the headers exceed ``max_size`` or the
    Content-Length is malformed."""

def make_response(
    request: Message,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    content_type: str | None = None,
    copy_record_route: bool = False,
) -> bytes:
    """Build a response to ``request`` (RFC 3261 §8.2.6): Via lines, From,
    To (with ``to_tag`` added if it has none and status > 100), Call-ID,
    CSeq and, for 100, Timestamp copied; Record-Route lines too when
    ``copy_record_route`` (§12.1.1); ``headers`` appended; Content-Length
    set."""

def error_response(data: bytes | bytearray | memoryview, exc: SipError) -> bytes | None:
    """The answer to a request that failed to parse: status and reason from
    ``exc``, with the Via, From, To (tag added if missing), Call-ID and
    CSeq lines found in the raw bytes.  None when the message looked like a
    response or has no Via line to send the answer along."""

def parse_uri(text: str | bytes) -> URI:
    """Parse a standalone URI; raises :class:`SipError`."""

def parse_name_addr(text: str | bytes) -> NameAddr:
    """Parse a standalone name-addr or addr-spec with header params."""

def new_branch() -> str:
    """A fresh RFC 3261 branch (``z9hG4bK`` + 16 hex digits, unique in this
    process and random across processes)."""

def reason_phrase(status: int) -> str:
    """The default reason phrase for a status code ('' when unknown)."""

# The transaction layer (ext/txn.pxi).  Actions are tuples
# (at_ms, kind, txn, branch, status); kind is one of "new", "send_request",
# "send_cancel", "send_ack", "forward", "resend", "reply", "reject",
# "unmatched", "terminated".  branch is -1 and status 0 when they do not apply.
TxnAction = tuple[int, str, int, int, int]

class TxnTable:
    """The transaction table of a stateful proxy (RFC 3261 §16-17, RFC 6026)
    driven by the caller's clock (milliseconds); no I/O."""

    def __init__(
        self,
        max_txns: int = 4096,
        *,
        t1: int = 500,
        t2: int = 4000,
        t4: int = 5000,
        timer_d: int = 32000,
        timer_c: int = 181000,
        tick_ms: int = 10,
        hash_bits: int = 64,
    ) -> None: ...
    @property
    def max_branches(self) -> int: ...
    def on_request(
        self, branch: str | bytes, sent_by: str | bytes, method: str, now: int
    ) -> list[TxnAction]:
        """A request from upstream (top Via branch and sent-by, method)."""
    def on_cancel(self, branch: str | bytes, sent_by: str | bytes, now: int) -> list[TxnAction]:
        """An upstream CANCEL."""
    def set_reliable(self, txn: int) -> None:
        """The server transaction's request came over a reliable transport."""
    def abandon(self, txn: int, now: int) -> list[TxnAction]:
        """Stop waiting on the pending branches (INVITE ones are cancelled)."""
    def fork(self, txn: int, n: int, now: int, *, reliable: bool = False,
             probe: bool = False) -> list[TxnAction]:
        """Create n client branches and send the request on each; ValueError
        on an unknown or closed transaction or too many branches."""
    def on_response(self, txn: int, branch: int, status: int, now: int) -> list[TxnAction]:
        """A response from downstream on a branch."""
    def on_cancel_response(
        self, txn: int, branch: int, status: int, now: int
    ) -> list[TxnAction]:
        """A response to the CANCEL sent on a branch."""
    def reply(self, txn: int, status: int, now: int) -> list[TxnAction]:
        """A local response from the TU; ValueError when not allowed."""
    def advance(self, now: int) -> list[TxnAction]:
        """Fire the timers due at now."""
    def state(self, txn: int) -> tuple[str, list[str]] | None:
        """Server state and branch states, None for an unknown txn."""
    def stats(self) -> dict[str, int]:
        """Counters: live, servers, branches, timers, created, rejected,
        high_water, capacity, lost_actions."""
