"""Registrar and location service (RFC 3261 §10), in memory.

The proxy's control plane calls :meth:`Location.register` once per REGISTER
datagram and :meth:`Location.lookup` (or :meth:`Location.targets`) once per
new INVITE whose Request-URI names an address of record.  Everything here is
plain Python: it runs once per registration or call, never per packet of a
call (DESIGN.md §2).

How §10.3 is applied, step by step (numbers are the RFC's):

1. Domain responsibility, 3. authentication and 4. authorization are left to
   the caller (the access gateway, DESIGN.md §5): a REGISTER that reaches
   :meth:`Location.register` is one this registrar is meant to handle.
2. Any ``Require`` option is unsupported: ``420 Bad Extension`` listing them
   in ``Unsupported``.
5. The address of record is the To URI, canonicalised by
   :meth:`Location.aor_of`; a To URI that is not sip/sips is answered 404.
6. ``Contact: *`` needs ``Expires: 0`` and no other Contact (else 400).  Each
   contact's interval is its ``expires`` parameter, else the Expires header,
   else ``default_expires``; an interval above 0 and below both
   ``min_expires`` and one hour is refused with ``423 Interval Too Brief``
   and ``Min-Expires`` (the RFC forbids refusing one hour or more); one above
   ``max_expires`` is shortened to it.  Nothing is changed when any contact
   is refused: the whole request is checked before step 7.
7. Bindings are matched by the URI comparison of §19.1.4 (see
   :func:`binding_key`).  An existing binding with the same Call-ID and a
   CSeq not higher than the request's aborts the request: ``500`` and no
   update of that request is committed ("the update MUST be aborted and the
   request fails", and "all tentative binding updates MUST be removed").
   A contact listed twice in one request counts once, its last occurrence.
   More than ``max_contacts`` current bindings for one AOR is refused with
   ``403 Forbidden`` (a policy limit: retrying will not help until bindings
   are removed, so not 503).
8. The 200 lists every current binding, best q first, each
   ``<uri>;params;expires=N`` with the parameters as registered, and a
   ``Date``.  A REGISTER without Contact is a query answered the same way.

NAT (RFC 3581): the datagram's source address is stored with each binding.
:meth:`Location.lookup` returns the contact URIs unchanged (they become the
Request-URI); :meth:`Location.targets` pairs each with the address to send
to: the source of the REGISTER when it came straight from the user agent
(one Via), which is the NAT binding that reaches it, as RFC 5626 §5.3 does
with a flow; None when it came through another proxy (resolve the URI).

Retransmissions: the REGISTER's server transaction (§17.2.3) is not in the
compiled loop yet, so a retransmitted REGISTER (same branch, sent-by,
Call-ID, CSeq and From tag) within 32 s (Timer J, 64*T1) is answered with
the same bytes as the first instead of failing the CSeq rule of step 7.
"""

from __future__ import annotations

import math
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from email.utils import formatdate

import sipfast
from sipfast import URI, Message, NameAddr, SipError

MAX_DELTA = 2**32 - 1
"""Largest delta-seconds value (RFC 3261 §20.19); larger ones are capped."""

HOUR = 3600
"""§10.3 step 6: an interval of one hour or more must not be refused as too brief."""

TRANSACTION_S = 32.0
"""How long a response is kept for retransmissions of its REGISTER (64*T1)."""

MAX_REMEMBERED = 4096
"""Most responses kept for retransmissions at once."""

_QVALUE = re.compile(r"0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?")  # RFC 3261 §25.1 qvalue

# RFC 3261 §25.1: characters a user part may hold unescaped.
_USER_CHARS = frozenset(
    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.!~*'()&=+$,;?/"
)

# §19.1.4: these URI parameters must match when either URI has them.
_SIGNIFICANT_PARAMS = ("user", "ttl", "method", "maddr", "transport")

BindingKey = tuple[object, ...]


class _Reject(Exception):
    """A final non-2xx answer decided while processing a REGISTER."""

    def __init__(
        self, status: int, reason: str | None = None, headers: Iterable[tuple[str, str]] = ()
    ) -> None:
        super().__init__(status, reason)
        self.status = status
        self.reason = reason
        self.headers = list(headers)


@dataclass(slots=True)
class Binding:
    """One contact bound to an address of record (treat as read-only)."""

    contact: str
    """The contact URI as registered (the Request-URI to use)."""
    params: str
    """Contact header parameters as written, without ``expires`` (e.g. ``;q=0.5``)."""
    q: float
    """Preference, 0..1; 1.0 when the contact has no ``q``."""
    expires_at: float
    """Clock time at which the binding lapses."""
    call_id: str
    cseq: int
    source: tuple[str, int]
    """Address the REGISTER came from."""
    direct: bool
    """True when the REGISTER had one Via: ``source`` is the user agent's own
    (possibly NAT-mapped) address."""
    order: int
    """Registration order (higher is more recent); breaks ties in q."""

    def expires_in(self, now: float) -> int:
        """Whole seconds left at ``now`` (rounded up; 0 once lapsed)."""
        # Rounded first: (now + 3600) - now is not always exactly 3600.0 in
        # floating point, and a fresh binding must show the interval granted.
        return max(0, math.ceil(round(self.expires_at - now, 6)))

    @property
    def next_hop(self) -> tuple[str, int] | None:
        """Where to send requests for this contact: the REGISTER's source when
        it came straight from the user agent, else None (resolve the URI)."""
        return self.source if self.direct else None

    def header_value(self, now: float) -> str:
        """This binding as a Contact value of a 200 to REGISTER."""
        return f"<{self.contact}>{self.params};expires={self.expires_in(now)}"


def _escape_user(user: str) -> str:
    """The user part with every character outside RFC 3261's user set %-escaped,
    so that equal users (``%61lice`` and ``alice``) give equal keys."""
    out = []
    for byte in user.encode("utf-8", "surrogateescape"):
        out.append(chr(byte) if byte in _USER_CHARS else f"%{byte:02X}")
    return "".join(out)


def _aor_key(uri: URI) -> str:
    """``scheme:user@host[:port]`` of a sip/sips URI: host lower-cased, no
    password, parameters or headers."""
    user = f"{_escape_user(uri.user)}@" if uri.user else ""
    port = f":{uri.port}" if uri.port is not None else ""
    return f"{uri.scheme}:{user}{(uri.host or '').lower()}{port}"


def binding_key(uri: URI) -> BindingKey:
    """A key equal for contact URIs that RFC 3261 §19.1.4 calls equivalent.

    sip/sips: scheme, user and password (case-sensitive), host (case-
    insensitive), port (an absent port differs from an explicit one), the
    ``user``, ``ttl``, ``method``, ``maddr`` and ``transport`` parameters
    (absent differs from present) and the headers.  Other parameters are
    ignored; the RFC would also tell two URIs apart when both carry one with
    different values, which a key cannot express.  Other schemes: the text
    after the scheme, as written.
    """
    if not uri.is_sip:
        return (uri.scheme, uri.text.partition(":")[2])
    params = uri.params
    significant = tuple(
        (params[name] or "").lower() if name in params else None for name in _SIGNIFICANT_PARAMS
    )
    return (
        uri.scheme,
        uri.user,
        uri.password,
        (uri.host or "").lower(),
        uri.port,
        significant,
        tuple(sorted(uri.headers.items())),
    )


def _contact_params(contact: NameAddr) -> str:
    """The header parameters of a Contact value as written, minus ``expires``."""
    text = contact.text
    rest = ""
    quoted = escaped = False
    for i, ch in enumerate(text):
        if escaped:
            escaped = False
        elif quoted:
            escaped = ch == "\\"
            quoted = ch != '"'
        elif ch == '"':
            quoted = True
        elif ch == "<":  # name-addr: parameters follow the closing '>'
            rest = text[text.index(">", i) + 1 :]
            break
        elif ch == ";":  # addr-spec: everything after the URI is a parameter
            rest = text[i:]
            break
    kept = []
    for item in _split_params(rest):
        name = item.partition("=")[0].strip().lower()
        if name and name != "expires":
            kept.append(";" + item.strip())
    return "".join(kept)


def _split_params(text: str) -> list[str]:
    """``;a=1;b="x;y"`` -> ``['a=1', 'b="x;y"']`` (semicolons in quotes kept)."""
    items, current, quoted, escaped = [], [], False, False
    for ch in text:
        if escaped:
            escaped = False
        elif quoted and ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == ";" and not quoted:
            items.append("".join(current))
            current = []
            continue
        current.append(ch)
    items.append("".join(current))
    return [item for item in items if item.strip()]


def _delta_seconds(text: str) -> int:
    """A delta-seconds value, capped at 2**32-1; raises _Reject(400)."""
    if not text or not (text.isascii() and text.isdigit()):
        raise _Reject(400, "Malformed expires parameter")
    digits = text.lstrip("0") or "0"
    return MAX_DELTA if len(digits) > 10 else min(int(digits), MAX_DELTA)


def _qvalue(contact: NameAddr) -> float:
    """The contact's q (1.0 when absent); raises _Reject(400) when malformed."""
    text = contact.param("q")
    if text is None:
        return 1.0
    if not _QVALUE.fullmatch(text):
        raise _Reject(400, "Malformed q parameter")
    return float(text)


def _ordered(bindings: Iterable[Binding], now: float) -> list[Binding]:
    """Current bindings, best q first, then the most recently registered."""
    live = [b for b in bindings if b.expires_at > now]
    live.sort(key=lambda b: (-b.q, -b.order))
    return live


class Location:
    """In-memory registrar and location service (RFC 3261 §10).

    ``clock`` gives the time in seconds for expiry (monotonic by default;
    tests inject their own); ``wall_clock`` gives the time for the Date
    header of responses.
    """

    def __init__(
        self,
        *,
        min_expires: int = 60,
        max_expires: int = 3600,
        default_expires: int = 3600,
        max_contacts: int = 10,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if not 0 < min_expires <= max_expires:
            raise ValueError("need 0 < min_expires <= max_expires")
        if not min_expires <= default_expires <= max_expires:
            raise ValueError("need min_expires <= default_expires <= max_expires")
        if max_contacts < 1:
            raise ValueError("max_contacts must be at least 1")
        self.min_expires = min_expires
        self.max_expires = max_expires
        self.default_expires = default_expires
        self.max_contacts = max_contacts
        self._clock = clock
        self._wall_clock = wall_clock
        self._aors: dict[str, dict[BindingKey, Binding]] = {}
        self._recent: OrderedDict[tuple[object, ...], tuple[float, bytes]] = OrderedDict()
        self._order = 0
        self.internal_errors = 0
        """REGISTERs answered 500 because of an unexpected exception (a bug)."""

    # ------------------------------------------------------------------ API

    def register(self, data: bytes, source: tuple[str, int]) -> bytes:
        """One REGISTER datagram (already known to be a REGISTER request) ->
        the complete response datagram to send back (200 with every current
        Contact and its expires, 400 with a reason, 423 with Min-Expires,
        ...).

        Never raises: malformed input is answered 400 with the reason (or
        as :func:`sipfast.error_response` answers it); b"" means there is
        nothing to send (a response, or a message without a Via to answer
        along); an unexpected internal error is answered 500.
        """
        try:
            return self._register(data, source)
        except Exception:  # noqa: BLE001 - never unwind into the compiled loop
            self.internal_errors += 1
            try:
                return sipfast.make_response(sipfast.parse(data), 500, to_tag=self._tag())
            except Exception:  # noqa: BLE001
                return b""

    def lookup(self, aor: str) -> list[str]:
        """Current contact URIs for an address of record, best q first
        (ties: most recently registered first); [] when none/expired."""
        return [b.contact for b in self.bindings(aor)]

    def targets(self, aor: str) -> list[tuple[str, tuple[str, int] | None]]:
        """Like :meth:`lookup`, each URI paired with its next hop: the address
        the REGISTER came from when it came straight from the user agent (so
        a contact behind NAT is reached, RFC 3581), else None."""
        return [(b.contact, b.next_hop) for b in self.bindings(aor)]

    def bindings(self, aor: str) -> list[Binding]:
        """The current :class:`Binding` objects of ``aor`` in lookup order."""
        found = self._aors.get(aor)
        if found is None:
            try:
                found = self._aors.get(self.aor_of(aor))
            except (SipError, ValueError):
                return []
            if found is None:
                return []
        return _ordered(found.values(), self._clock())

    @staticmethod
    def aor_of(uri: str) -> str:
        """Canonical AOR key of a URI (or name-addr): ``sip:user@host`` with
        the port if any, scheme and host lower-case, user %-escapes
        normalised, no password, parameters or headers.  Raises
        :class:`sipfast.SipError` for a malformed or non-SIP URI."""
        text = uri.strip()
        parsed = sipfast.parse_name_addr(text).uri if "<" in text else sipfast.parse_uri(text)
        if not parsed.is_sip:
            raise SipError(400, "Address-of-record is not a sip or sips URI")
        return _aor_key(parsed)

    def expire(self) -> int:
        """Drop expired bindings; returns how many."""
        now = self._clock()
        dropped = 0
        for aor in list(self._aors):
            bindings = self._aors[aor]
            for key in [k for k, b in bindings.items() if b.expires_at <= now]:
                del bindings[key]
                dropped += 1
            if not bindings:
                del self._aors[aor]
        self._forget_old(now)
        return dropped

    def snapshot(self) -> dict[str, list[dict[str, object]]]:
        """For the control plane: ``{aor: [{contact, expires_in, q, call_id,
        cseq, source}]}``, current bindings only, in lookup order."""
        now = self._clock()
        out: dict[str, list[dict[str, object]]] = {}
        for aor, bindings in self._aors.items():
            live = _ordered(bindings.values(), now)
            if live:
                out[aor] = [
                    {
                        "contact": b.contact,
                        "expires_in": b.expires_in(now),
                        "q": b.q,
                        "call_id": b.call_id,
                        "cseq": b.cseq,
                        "source": b.source,
                    }
                    for b in live
                ]
        return out

    def __len__(self) -> int:
        """Bindings held, lapsed ones not yet dropped by :meth:`expire` included."""
        return sum(len(b) for b in self._aors.values())

    # ------------------------------------------------------------ internals

    def _tag(self) -> str:
        return secrets.token_hex(6)

    def _answer(
        self,
        msg: Message,
        data: bytes,
        status: int,
        reason: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
    ) -> bytes:
        """A response to ``msg`` via the message core (Via/From/To/Call-ID/
        CSeq copied, a To tag added)."""
        try:
            return sipfast.make_response(msg, status, reason, to_tag=self._tag(), headers=headers)
        except SipError as exc:
            return sipfast.error_response(data, exc) or b""

    def _register(self, data: bytes, source: tuple[str, int]) -> bytes:
        now = self._clock()
        try:
            msg = sipfast.parse(data)
            msg.validate()
        except SipError as exc:
            return sipfast.error_response(data, exc) or b""
        if not msg.is_request:
            return b""
        if msg.method != "REGISTER":
            return self._answer(msg, data, 405, headers=[("Allow", "REGISTER")])
        via = msg.via
        txn = (msg.branch, via.host.lower(), via.port, msg.call_id, msg.cseq, msg.from_tag)
        remembered = self._recent.get(txn)
        if remembered is not None and remembered[0] > now:
            return remembered[1]
        try:
            response = self._process(msg, data, (str(source[0]), int(source[1])), now)
        except _Reject as rej:
            response = self._answer(msg, data, rej.status, rej.reason, rej.headers)
        except SipError as exc:  # a field the core scans lazily
            response = self._answer(msg, data, exc.status, exc.reason)
        self._remember(txn, response, now)
        return response

    def _remember(self, txn: tuple[object, ...], response: bytes, now: float) -> None:
        self._forget_old(now)
        self._recent[txn] = (now + TRANSACTION_S, response)
        self._recent.move_to_end(txn)
        while len(self._recent) > MAX_REMEMBERED:
            self._recent.popitem(last=False)

    def _forget_old(self, now: float) -> None:
        while self._recent:
            txn, (until, _) = next(iter(self._recent.items()))
            if until > now:
                break
            del self._recent[txn]

    def _current(self, aor: str, now: float) -> dict[BindingKey, Binding]:
        """The AOR's bindings with lapsed ones dropped (a copy)."""
        return {k: b for k, b in self._aors.get(aor, {}).items() if b.expires_at > now}

    @staticmethod
    def _check_order(binding: Binding, msg: Message) -> None:
        """§10.3 step 7: same Call-ID needs a higher CSeq, else the request fails."""
        if binding.call_id == msg.call_id and msg.cseq <= binding.cseq:
            raise _Reject(500, "CSeq not higher than the binding's")

    def _interval(self, contact: NameAddr, header_expires: int | None) -> int:
        """§10.3 step 6: the granted interval of one contact (0 removes)."""
        raw = contact.param("expires")
        if raw is not None:
            requested = _delta_seconds(raw)
        elif header_expires is not None:
            requested = header_expires
        else:
            requested = self.default_expires
        if 0 < requested < min(self.min_expires, HOUR):
            raise _Reject(423, headers=[("Min-Expires", str(self.min_expires))])
        return min(requested, self.max_expires)

    def _process(self, msg: Message, data: bytes, source: tuple[str, int], now: float) -> bytes:
        """Steps 2 and 5-8 of RFC 3261 §10.3; raises _Reject for a non-2xx."""
        unsupported = [
            token.strip()
            for value in msg.get_all("Require")
            for token in value.split(",")
            if token.strip()
        ]
        if unsupported:
            raise _Reject(420, headers=[("Unsupported", ", ".join(unsupported))])

        to_uri = msg.to.uri
        if not to_uri.is_sip:
            raise _Reject(404, "Address-of-record is not a sip or sips URI")
        aor = _aor_key(to_uri)
        current = self._current(aor, now)
        values = [v.strip() for v in msg.get_all("Contact")]
        header_expires = msg.expires

        if "*" in values:
            if len(values) != 1:
                raise _Reject(400, "Contact * must be the only Contact")
            if header_expires != 0:
                raise _Reject(400, "Contact * requires Expires: 0")
            for binding in current.values():
                self._check_order(binding, msg)
            self._aors.pop(aor, None)
            return self._ok(msg, data, [], now)

        # Step 6 for every contact before anything changes.
        requested: dict[BindingKey, tuple[NameAddr, int, float]] = {}
        for contact in msg.contacts:
            interval = self._interval(contact, header_expires)
            key = binding_key(contact.uri)
            requested.pop(key, None)  # a repeated contact counts at its last place
            requested[key] = (contact, interval, _qvalue(contact))

        # Step 7 on a tentative copy, committed only when every update passes.
        tentative = dict(current)
        direct = len(msg.vias) == 1
        for key, (contact, interval, q) in requested.items():
            existing = tentative.get(key)
            if existing is not None:
                self._check_order(existing, msg)
            if interval == 0:
                tentative.pop(key, None)
                continue
            self._order += 1
            tentative[key] = Binding(
                contact=contact.uri.text,
                params=_contact_params(contact),
                q=q,
                expires_at=now + interval,
                call_id=msg.call_id,
                cseq=msg.cseq,
                source=source,
                direct=direct,
                order=self._order,
            )
        if len(tentative) > self.max_contacts:
            raise _Reject(403, f"Too many contacts (at most {self.max_contacts})")
        if requested:
            if tentative:
                self._aors[aor] = tentative
            else:
                self._aors.pop(aor, None)
        return self._ok(msg, data, _ordered(tentative.values(), now), now)

    def _ok(self, msg: Message, data: bytes, bindings: list[Binding], now: float) -> bytes:
        """§10.3 step 8: 200 with every current binding and a Date."""
        headers = [("Contact", b.header_value(now)) for b in bindings]
        headers.append(("Date", formatdate(self._wall_clock(), usegmt=True)))
        return self._answer(msg, data, 200, headers=headers)
