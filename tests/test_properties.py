"""Property tests (hypothesis) for the compiled SIP message core.

* build -> parse round trips: messages are generated from parts (with the
  expected value of every field computed here, from RFC 3261 / 5118 / 3581,
  never from the implementation) and serialized; parse() must give every
  part back.
* edits: a random subset of Editor operations is applied; the result must
  parse, hold the new values, and keep every byte no edit touched.
* make_response of a generated request.
* robustness: mutated real messages give a Message or a SipError, nothing
  else, and every accessor of a Message gives a value or a SipError.
"""

from __future__ import annotations

import ipaddress
import json
import re
import signal
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import strategies as st

import sipfast
from sipfast import SipError, frame, make_response, parse

CORPUS = Path(__file__).parent / "fuzz" / "corpus"

# Generated messages are costly to shrink (minutes per failing test); the
# failing example's bytes are printed through note() instead.
SETTINGS = settings(
    max_examples=100,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SMALL = settings(SETTINGS, phases=list(Phase))

# --------------------------------------------------------------------------
# Character classes (RFC 3261 §25.1)

ALNUM = string.ascii_letters + string.digits
TOKEN = ALNUM + "-.!%*_+`'~"
UNRESERVED = ALNUM + "-_.!~*'()"
USER_CHARS = UNRESERVED + "&=+$,;?/"
PASSWORD_CHARS = UNRESERVED + "&=+$,"
PARAM_CHARS = UNRESERVED + "[]/:&+$"
HNV_CHARS = UNRESERVED + "[]/?:+$"
CALLID_CHARS = ALNUM + "-.!%*_+`'~()<>:\\\"/[]?{}"
NON_ASCII = "éüßñ日本語€"
# qdtext minus LWS: %x21 / %x23-5B / %x5D-7E / UTF8-NONASCII
QDTEXT = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '"\\') + NON_ASCII
TEXT_CHARS = "".join(chr(c) for c in range(0x21, 0x7F)) + NON_ASCII
FOLD_RE = re.compile(r"[ \t]*\r?\n[ \t]+")


def unfolded(wire: str) -> str:
    """RFC 3261 §7.3.1: a line fold is equivalent to one SP."""
    return FOLD_RE.sub(" ", wire)


def mixed_case(draw, text: str) -> str:
    flips = draw(st.integers(0, 2 ** len(text) - 1))
    return "".join(c.upper() if flips >> i & 1 else c.lower() for i, c in enumerate(text))


def lws(draw, allow_fold: bool = True) -> str:
    """LWS that unfolds to a single SP."""
    choices = [" ", " ", " "] + (["\r\n ", "\r\n\t"] if allow_fold else [])
    return draw(st.sampled_from(choices))


def sws(draw) -> str:
    return draw(st.sampled_from(["", "", "", " ", "  "]))


def token_st(min_size: int = 1, max_size: int = 10, alphabet: str = TOKEN):
    return st.text(alphabet=alphabet, min_size=min_size, max_size=max_size)


@st.composite
def escaped(draw, allowed: str, min_size: int = 1, max_size: int = 8):
    """(wire text, value after %-decoding) of a URI part."""
    pieces = draw(st.lists(
        st.one_of(st.sampled_from(allowed).map(lambda c: (c, c.encode())),
                  st.integers(0, 255).flatmap(lambda b: st.sampled_from(
                      [f"%{b:02X}", f"%{b:02x}"]).map(lambda w, b=b: (w, bytes([b]))))),
        min_size=min_size, max_size=max_size))
    wire = "".join(p[0] for p in pieces)
    raw = b"".join(p[1] for p in pieces)
    return wire, raw.decode("utf-8", "surrogateescape")


# --------------------------------------------------------------------------
# Hosts and URIs

def _label(draw, first: str) -> str:
    inner = draw(st.text(alphabet=ALNUM + "-", max_size=6))
    return draw(st.sampled_from(first)) + (inner + draw(st.sampled_from(ALNUM))
                                            if inner else "")


@st.composite
def hostname(draw) -> str:
    labels = [_label(draw, ALNUM) for _ in range(draw(st.integers(0, 3)))]
    top = _label(draw, string.ascii_letters)
    name = ".".join([*labels, top])
    if draw(st.integers(0, 9)) == 0:
        name += "."
    return name


ipv4 = st.integers(0, 2**32 - 1).map(lambda n: str(ipaddress.IPv4Address(n)))


@st.composite
def ipv6(draw) -> str:
    addr = ipaddress.IPv6Address(draw(st.integers(0, 2**128 - 1)))
    form = draw(st.integers(0, 4))
    if form == 0:
        return addr.exploded
    if form == 1:
        return addr.compressed.upper()
    if form == 2:  # IPv4-mapped, written with a dotted quad
        return "::ffff:" + draw(ipv4)
    if form == 3:
        return draw(st.sampled_from(["::1", "::", "2001:db8::1", "fe80::1:2"]))
    return addr.compressed


@st.composite
def host(draw) -> str:
    kind = draw(st.integers(0, 2))
    if kind == 0:
        return draw(hostname())
    if kind == 1:
        return draw(ipv4)
    return "[" + draw(ipv6()) + "]"


port_st = st.one_of(st.none(), st.integers(0, 65535))


@dataclass
class UriSpec:
    text: str
    scheme: str
    is_sip: bool
    user: str | None = None
    password: str | None = None
    host: str | None = None
    port: int | None = None
    params: dict = field(default_factory=dict)
    headers: dict = field(default_factory=dict)


@st.composite
def sip_uri(draw, with_headers: bool = False, with_user: bool | None = None) -> UriSpec:
    scheme = draw(st.sampled_from(["sip", "sip", "sips"]))
    wire_scheme = mixed_case(draw, scheme) if draw(st.integers(0, 5)) == 0 else scheme
    parts = [wire_scheme, ":"]
    user = password = None
    if with_user if with_user is not None else draw(st.booleans()):
        uw, user = draw(escaped(USER_CHARS))
        parts.append(uw)
        if draw(st.integers(0, 5)) == 0:
            pw, password = draw(escaped(PASSWORD_CHARS, min_size=0))
            parts += [":", pw]
        parts.append("@")
    h = draw(host())
    parts.append(h)
    port = draw(port_st)
    if port is not None:
        parts.append(f":{port}")
    params: dict = {}
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.integers(0, 3))
        if kind == 0:
            nw, name = "lr", "lr"
            vw = value = None
        elif kind == 1:
            nw, name = mixed_case(draw, "transport"), "transport"
            vw = value = draw(st.sampled_from(["udp", "tcp", "tls", "sctp", "ws"]))
        else:
            nw, name = draw(escaped(PARAM_CHARS, max_size=6))
            vw = value = None
            if draw(st.booleans()):
                vw, value = draw(escaped(PARAM_CHARS, max_size=6))
        key = name.lower()
        if key in params:
            continue
        params[key] = value
        parts.append(f";{nw}" + ("" if vw is None else f"={vw}"))
    headers: dict = {}
    if with_headers and draw(st.booleans()):
        hparts = []
        for _ in range(draw(st.integers(1, 3))):
            nw, name = draw(escaped(HNV_CHARS, max_size=6))
            vw, value = draw(escaped(HNV_CHARS, min_size=0, max_size=6))
            if name in headers:
                continue
            headers[name] = value
            hparts.append(f"{nw}={vw}")
        parts.append("?" + "&".join(hparts))
    return UriSpec("".join(parts), scheme, True, user, password, h, port, params, headers)


@st.composite
def any_uri(draw, with_headers: bool = False) -> UriSpec:
    if draw(st.integers(0, 9)) == 0:
        number = "+" + draw(st.text(alphabet=string.digits, min_size=4, max_size=12))
        return UriSpec(f"tel:{number}", "tel", False)
    return draw(sip_uri(with_headers=with_headers))


def check_uri(u, spec: UriSpec) -> None:
    assert u is not None
    assert u.text == spec.text == str(u)
    assert u.scheme == spec.scheme
    assert u.is_sip == spec.is_sip
    if not spec.is_sip:
        assert u.user is None and u.host is None and u.port is None
        return
    assert u.user == spec.user
    assert u.password == spec.password
    assert u.host == spec.host
    assert u.port == spec.port
    assert u.params == spec.params
    for name, value in spec.params.items():
        assert u.param(name.upper()) == ("" if value is None else value)
    assert u.headers == spec.headers


# --------------------------------------------------------------------------
# Via (RFC 3261 §20.42, RFC 3581)

@dataclass
class ViaSpec:
    wire: str
    transport: str
    host: str
    port: int | None
    branch: str | None
    received: str | None
    has_rport: bool
    rport: int | None
    maddr: str | None
    ttl: int | None
    params: dict

    @property
    def text(self) -> str:
        return unfolded(self.wire)


@st.composite
def via_value(draw) -> ViaSpec:
    def slash():
        return sws(draw) + "/" + sws(draw)

    transport = draw(st.one_of(
        st.sampled_from(["UDP", "TCP", "TLS", "SCTP", "WS", "WSS", "udp", "tcp", "Tls"]),
        token_st(1, 6)))
    h = draw(host())
    port = draw(port_st)
    wire = f"SIP{slash()}2.0{slash()}{transport}{lws(draw)}{h}"
    if port is not None:
        wire += f"{sws(draw)}:{sws(draw)}{port}"
    params: dict = {}
    branch = received = maddr = None
    ttl = rport = None
    has_rport = False
    items = []
    if draw(st.integers(0, 9)):
        branch = "z9hG4bK" + draw(token_st(1, 12))
        items.append(("branch", branch))
    if draw(st.booleans()):
        has_rport = True
        if draw(st.booleans()):
            rport = draw(st.integers(1, 65535))
            items.append(("rport", str(rport)))
        else:
            items.append(("rport", None))
    if draw(st.booleans()):
        received = draw(st.one_of(ipv4, ipv6()))
        items.append(("received", received))
    if draw(st.integers(0, 4)) == 0:
        maddr = draw(st.one_of(hostname(), ipv4))
        items.append(("maddr", maddr))
    if draw(st.integers(0, 4)) == 0:
        ttl = draw(st.integers(0, 255))
        items.append(("ttl", str(ttl)))
    for _ in range(draw(st.integers(0, 2))):
        name = draw(token_st(1, 6)).lower()
        if name in ("branch", "rport", "received", "maddr", "ttl"):
            continue
        items.append((name, draw(st.one_of(st.none(), token_st(1, 8)))))
    items = draw(st.permutations(items))
    for name, value in items:
        key = name.lower()
        if key in params:
            continue
        params[key] = value
        wire += f"{sws(draw)};{sws(draw)}{mixed_case(draw, name)}"
        if value is not None:
            wire += f"{sws(draw)}={sws(draw)}{value}"
    return ViaSpec(wire, transport.upper(), h, port, branch, received, has_rport, rport,
                   maddr, ttl, params)


def check_via(v, spec: ViaSpec) -> None:
    assert v.text == spec.text == str(v)
    assert v.protocol == "SIP/2.0"
    assert v.transport == spec.transport
    assert v.host == spec.host
    assert v.port == spec.port
    assert v.branch == spec.branch
    assert v.received == spec.received
    assert v.has_rport == spec.has_rport
    assert v.rport == spec.rport
    assert v.maddr == spec.maddr
    assert v.ttl == spec.ttl
    assert v.params == spec.params


# --------------------------------------------------------------------------
# name-addr (From, To, Contact, Route, Record-Route)

@dataclass
class NaSpec:
    wire: str
    display: str | None
    uri: UriSpec
    params: dict
    tag: str | None

    @property
    def text(self) -> str:
        return unfolded(self.wire)


@st.composite
def quoted_string(draw, fold: bool = True) -> tuple[str, str]:
    """(wire incl. quotes, content with quoted-pairs resolved)."""
    pieces = draw(st.lists(st.one_of(
        st.sampled_from(QDTEXT).map(lambda c: (c, c)),
        st.just((" ", " ")),
        st.sampled_from(string.printable[:94] + " ").map(lambda c: ("\\" + c, c)),
        st.sampled_from(['"', "\\"]).map(lambda c: ("\\" + c, c)),
    ), max_size=10))
    wire = "".join(p[0] for p in pieces)
    value = "".join(p[1] for p in pieces)
    # a fold inside the quotes (at a single SP between two non-blanks) is one SP
    m = re.search(r"(?<=[^ \\]) (?=[^ ])", wire)
    if m and fold and draw(st.integers(0, 3)) == 0:
        wire = wire[: m.start()] + draw(st.sampled_from(["\r\n ", "\r\n\t"])) + wire[m.end():]
    return f'"{wire}"', value


@st.composite
def name_addr(draw, kind: str) -> NaSpec:
    """kind: 'from', 'to', 'contact' or 'route'."""
    uri = draw(any_uri(with_headers=kind == "contact") if kind in ("from", "to", "contact")
               else sip_uri(with_user=draw(st.booleans())))
    if kind == "route":
        uri = UriSpec(uri.text + ";lr", uri.scheme, True, uri.user, uri.password, uri.host,
                      uri.port, {**uri.params, "lr": None}, {}) if "lr" not in uri.params else uri
    display = None
    dkind = draw(st.integers(0, 2))
    if dkind == 1:
        dwire, display = draw(quoted_string())
        sep = sws(draw) if draw(st.booleans()) else lws(draw)
        wire = f"{dwire}{sep}<{uri.text}>"
    elif dkind == 2:
        words = draw(st.lists(token_st(1, 8), min_size=1, max_size=3))
        display = " ".join(words)
        wire = "".join(w + lws(draw) for w in words) + f"<{uri.text}>"
    else:
        bare = kind != "route" and not re.search(r"[;?,]", uri.text) and draw(st.booleans())
        wire = uri.text if bare else f"<{uri.text}>"
    params: dict = {}
    tag = None
    items = []
    if kind in ("from", "to") and draw(st.integers(0, 3)):
        tag = draw(token_st(1, 16))
        items.append(("tag", tag, tag))
    if kind == "contact":
        if draw(st.booleans()):
            n = draw(st.integers(0, 2**32 + 5))
            items.append(("expires", str(n), str(n)))
        if draw(st.booleans()):
            q = draw(st.sampled_from(["0", "0.5", "0.75", "1", "1.0", "0.001"]))
            items.append(("q", q, q))
    for _ in range(draw(st.integers(0, 2))):
        name = draw(token_st(1, 6)).lower()
        if name in ("tag", "expires", "q"):
            continue
        vkind = draw(st.integers(0, 2))
        if vkind == 0:
            items.append((name, None, None))
        elif vkind == 1:
            v = draw(token_st(1, 8))
            items.append((name, v, v))
        else:
            qw, qv = draw(quoted_string(fold=False))
            items.append((name, qw, qv))
    for name, vwire, value in draw(st.permutations(items)):
        if name in params:
            continue
        params[name] = value
        wire += f"{sws(draw)};{sws(draw)}{mixed_case(draw, name)}"
        if vwire is not None:
            wire += f"{sws(draw)}={sws(draw)}{vwire}"
    return NaSpec(wire, display, uri, params, tag)


def check_na(na, spec: NaSpec) -> None:
    assert na is not None
    assert na.text == spec.text == str(na)
    assert na.display == spec.display
    check_uri(na.uri, spec.uri)
    assert na.params == spec.params
    assert na.tag == spec.tag
    for name, value in spec.params.items():
        assert na.param(name.upper()) == ("" if value is None else value)


# --------------------------------------------------------------------------
# Whole messages

@dataclass
class Line:
    """One header line: prefix (name, HCOLON and the SWS after it), the value
    as written, and the line end.  ``elements`` and ``seps`` are the list
    elements of a list-valued line and the separators between them."""

    key: str              # canonical lower-case header name
    name: str             # as written
    prefix: str
    value: str
    eol: str
    elements: list = field(default_factory=list)
    seps: list = field(default_factory=list)

    @property
    def wire(self) -> str:
        return self.prefix + self.value + self.eol

    @property
    def unfolded_value(self) -> str:
        return unfolded(self.value)


@dataclass
class MsgSpec:
    is_request: bool
    method: str
    start: str
    lines: list[Line]
    body: bytes
    eol: str
    ruri: UriSpec | None = None
    status: int = 0
    reason: str = ""
    version: str = "SIP/2.0"
    vias: list = field(default_factory=list)
    from_: NaSpec | None = None
    to: NaSpec | None = None
    call_id: str = ""
    cseq: int = 0
    max_forwards: int | None = None
    contacts: list = field(default_factory=list)
    contact_star: bool = False
    routes: list = field(default_factory=list)
    record_routes: list = field(default_factory=list)
    expires: int | None = None
    content_type: str | None = None
    has_cl: bool = False
    unknown: dict = field(default_factory=dict)   # lower name -> [values]
    lists: dict = field(default_factory=dict)     # lower name -> [elements]
    trailing: bytes = b""

    def head(self) -> bytes:
        return (self.start + self.eol + "".join(ln.wire for ln in self.lines)
                + self.eol).encode("utf-8", "surrogateescape")

    def data(self) -> bytes:
        return self.head() + self.body

    def lines_of(self, key: str) -> list[Line]:
        return [ln for ln in self.lines if ln.key == key]


NAMES = {
    # canonical, compact
    "via": ("Via", "v"), "from": ("From", "f"), "to": ("To", "t"),
    "call-id": ("Call-ID", "i"), "cseq": ("CSeq", None),
    "max-forwards": ("Max-Forwards", None), "contact": ("Contact", "m"),
    "route": ("Route", None), "record-route": ("Record-Route", None),
    "content-length": ("Content-Length", "l"), "content-type": ("Content-Type", "c"),
    "expires": ("Expires", None), "allow": ("Allow", None),
    "supported": ("Supported", "k"), "subject": ("Subject", "s"),
}
METHODS = ["INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "PRACK", "SUBSCRIBE",
           "NOTIFY", "PUBLISH", "INFO", "REFER", "MESSAGE", "UPDATE"]


def header_name(draw, key: str) -> str:
    long, compact = NAMES[key]
    forms = [long, long, long.lower(), long.upper(), mixed_case(draw, long)]
    if compact:
        forms += [compact, compact.upper()]
    return draw(st.sampled_from(forms))


def make_line(draw, key: str, value: str, eol: str, name: str | None = None,
              elements: list | None = None, seps: list | None = None) -> Line:
    name = name or header_name(draw, key)
    before = draw(st.sampled_from(["", "", "", " ", "\t"]))
    after = draw(st.sampled_from([" ", " ", " ", "", "  ", "\t", " \r\n ", "\r\n\t"]))
    after = after.replace("\r\n", eol)
    value = value.replace("\r\n", eol)
    return Line(key, name, f"{name}{before}:{after}", value, eol,
                [e.replace("\r\n", eol) for e in elements or []],
                [s.replace("\r\n", eol) for s in seps or []])


def list_lines(draw, key: str, wires: list[str], eol: str) -> list[Line]:
    """Spread list elements over one or more lines, comma-separated."""
    out = []
    i = 0
    while i < len(wires):
        n = draw(st.integers(1, len(wires) - i))
        elems = wires[i: i + n]
        seps = [draw(st.sampled_from([",", ", ", " , ", ",\r\n ", ", \r\n\t"]))
                for _ in range(n - 1)]
        value = elems[0] + "".join(s + e for s, e in zip(seps, elems[1:], strict=True))
        out.append(make_line(draw, key, value, eol, elements=elems, seps=seps))
        i += n
    return out


@st.composite
def sip_message(draw, kind: str = "any", lf_ok: bool = True) -> MsgSpec:
    is_request = {"any": draw(st.booleans()), "request": True, "response": False}[kind]
    eol = "\n" if lf_ok and draw(st.integers(0, 9)) == 0 else "\r\n"
    method = draw(st.one_of(st.sampled_from(METHODS), token_st(1, 10)))
    version = draw(st.sampled_from(["SIP/2.0"] * 5 + ["sip/2.0", "Sip/2.0"]))
    spec = MsgSpec(is_request, method, "", [], b"", eol)
    if is_request:
        spec.ruri = draw(any_uri())
        spec.start = f"{method} {spec.ruri.text} {version}"
    else:
        spec.status = draw(st.integers(100, 699))
        spec.reason = draw(st.text(alphabet=TEXT_CHARS + " \t", max_size=20))
        spec.start = f"{version} {spec.status} {spec.reason}"
    lines: list[Line] = []
    # Via
    spec.vias = draw(st.lists(via_value(), min_size=1, max_size=4))
    lines += list_lines(draw, "via", [v.wire for v in spec.vias], eol)
    # From / To
    spec.from_ = draw(name_addr("from"))
    spec.to = draw(name_addr("to"))
    lines.append(make_line(draw, "from", spec.from_.wire, eol))
    lines.append(make_line(draw, "to", spec.to.wire, eol))
    # Call-ID, CSeq
    word = st.text(alphabet=CALLID_CHARS, min_size=1, max_size=16)
    spec.call_id = draw(word) + (("@" + draw(word)) if draw(st.booleans()) else "")
    lines.append(make_line(draw, "call-id", spec.call_id, eol))
    spec.cseq = draw(st.one_of(st.integers(0, 2**31 - 1), st.just(2**31 - 1)))
    zeros = "0" * draw(st.integers(0, 2))
    cseq_value = f"{zeros}{spec.cseq}{draw(st.sampled_from([' ', '  ', chr(9), ' ' + eol + ' ']))}"
    lines.append(make_line(draw, "cseq", cseq_value + method, eol))
    # optional headers
    if draw(st.booleans()):
        spec.max_forwards = draw(st.integers(0, 255))
        lines.append(make_line(draw, "max-forwards", str(spec.max_forwards), eol))
    if draw(st.integers(0, 5)) == 0:
        spec.contact_star = True
        lines.append(make_line(draw, "contact", "*", eol))
    elif draw(st.booleans()):
        spec.contacts = draw(st.lists(name_addr("contact"), min_size=1, max_size=3))
        lines += list_lines(draw, "contact", [c.wire for c in spec.contacts], eol)
    if is_request and draw(st.booleans()):
        spec.routes = draw(st.lists(name_addr("route"), min_size=1, max_size=3))
        lines += list_lines(draw, "route", [r.wire for r in spec.routes], eol)
    if draw(st.booleans()):
        spec.record_routes = draw(st.lists(name_addr("route"), min_size=1, max_size=3))
        lines += list_lines(draw, "record-route", [r.wire for r in spec.record_routes], eol)
    if draw(st.integers(0, 3)) == 0:
        n = draw(st.one_of(st.integers(0, 7200), st.integers(0, 2**40)))
        spec.expires = min(n, 2**32 - 1)
        lines.append(make_line(draw, "expires", str(n), eol))
    if draw(st.integers(0, 3)) == 0:
        elems = draw(st.lists(st.sampled_from(METHODS), min_size=1, max_size=5))
        spec.lists["allow"] = elems
        lines += list_lines(draw, "allow", elems, eol)
    if draw(st.integers(0, 3)) == 0:
        elems = draw(st.lists(token_st(1, 8), min_size=1, max_size=3))
        spec.lists["supported"] = elems
        lines += list_lines(draw, "supported", elems, eol)
    # unknown headers (X- prefix: never a known name), maybe repeated, maybe folded
    for _ in range(draw(st.integers(0, 4))):
        lname = "x-" + draw(token_st(1, 8, ALNUM + "-")).lower()
        name = draw(st.sampled_from([lname, lname.upper(), "X-" + lname[2:]]))
        words = draw(st.lists(st.text(alphabet=TEXT_CHARS, min_size=1, max_size=8),
                              min_size=0, max_size=4))
        value = "".join(w + lws(draw) for w in words[:-1]) + (words[-1] if words else "")
        spec.unknown.setdefault(lname, []).append(unfolded(value))
        lines.append(Line(lname, name, f"{name}: ", value.replace("\r\n", eol), eol))
    # body
    body = b""
    if draw(st.booleans()):
        body = draw(st.binary(min_size=1, max_size=120))
        ct = draw(st.sampled_from(["application/sdp", "text/plain", "application/pidf+xml"]))
        spec.content_type = ct
        lines.append(make_line(draw, "content-type", ct, eol))
    spec.body = body
    if draw(st.integers(0, 4)) or body == b"":
        spec.has_cl = draw(st.integers(0, 5)) != 0
    else:
        spec.has_cl = True
    if spec.has_cl:
        cl = str(len(body)).rjust(draw(st.integers(1, 3)), "0")
        lines.append(make_line(draw, "content-length", cl, eol))
        if draw(st.integers(0, 4)) == 0:
            spec.trailing = draw(st.binary(min_size=1, max_size=10))
    # shuffle, keeping the relative order of lines with the same name
    order = draw(st.permutations(range(len(lines))))
    shuffled = [lines[i] for i in order]
    by_key: dict[str, list[Line]] = {}
    for ln in lines:
        by_key.setdefault(ln.key, []).append(ln)
    spec.lines = [by_key[ln.key].pop(0) for ln in shuffled]
    return spec


def check_message(m, spec: MsgSpec, data: bytes) -> None:
    assert m.is_request == spec.is_request
    assert m.version == "SIP/2.0"
    assert m.method == spec.method
    assert m.cseq_method == spec.method
    if spec.is_request:
        assert m.uri_text == spec.ruri.text
        check_uri(m.uri, spec.ruri)
        assert m.status == 0 and m.reason == ""
    else:
        assert m.uri is None and m.uri_text == ""
        assert m.status == spec.status
        assert m.reason == spec.reason
    # header table
    assert m.header_count == len(spec.lines)
    got = m.headers
    assert [n for n, _ in got] == [ln.name for ln in spec.lines]
    for (_, value), ln in zip(got, spec.lines, strict=True):
        assert unfolded(value) == ln.unfolded_value
    # Via
    assert len(m.vias) == len(spec.vias)
    for v, vs in zip(m.vias, spec.vias, strict=True):
        check_via(v, vs)
    check_via(m.via, spec.vias[0])
    assert m.branch == spec.vias[0].branch
    texts = [v.text for v in spec.vias]
    assert m.get_all("Via") == texts
    assert m.get_all("v") == texts
    assert m.get("VIA") == texts[0]
    # From / To
    check_na(m.from_, spec.from_)
    check_na(m.to, spec.to)
    assert m.from_tag == spec.from_.tag
    assert m.to_tag == spec.to.tag
    assert m.get("f") == spec.from_.text
    assert m.get("To") == spec.to.text
    # scalars
    assert m.call_id == spec.call_id
    assert m.get("i") == spec.call_id
    assert m.cseq == spec.cseq
    assert m.max_forwards == spec.max_forwards
    assert m.expires == spec.expires
    # Contact
    assert m.contact_star == spec.contact_star
    assert len(m.contacts) == len(spec.contacts)
    for c, cs in zip(m.contacts, spec.contacts, strict=True):
        check_na(c, cs)
    if spec.contacts:
        check_na(m.contact, spec.contacts[0])
        assert m.get_all("m") == [c.text for c in spec.contacts]
    else:
        assert m.contact is None
    # Route / Record-Route
    assert len(m.routes) == len(spec.routes)
    for r, rs in zip(m.routes, spec.routes, strict=True):
        check_na(r, rs)
    if spec.routes:
        check_na(m.route, spec.routes[0])
    else:
        assert m.route is None and "Route" not in m
    assert len(m.record_routes) == len(spec.record_routes)
    for r, rs in zip(m.record_routes, spec.record_routes, strict=True):
        check_na(r, rs)
    assert m.get_all("record-route") == [r.text for r in spec.record_routes]
    # other list headers, unknown headers
    for name, elems in spec.lists.items():
        assert m.get_all(name) == elems
        assert m.get(name.upper()) == elems[0]
    for name, values in spec.unknown.items():
        assert name in m and name.upper() in m
        assert m.get(name) == values[0]
        assert m.get_all(name.upper()) == values
    assert m.get("X-Not-There") is None
    assert m.get("X-Not-There", "dflt") == "dflt"
    assert m.get_all("X-Not-There") == []
    assert "X-Not-There" not in m
    # body and framing
    assert m.content_type == spec.content_type
    assert m.body == spec.body
    assert m.content_length == len(spec.body)
    head = spec.head()
    assert m.body_offset == len(head)
    assert m.size == len(head) + len(spec.body)
    assert m.raw() == data[: m.size]
    m.validate()
    d = m.to_dict()
    json.dumps(d)
    assert d["call_id"] == spec.call_id
    assert d["cseq"] == {"seq": spec.cseq, "method": spec.method}
    assert [v["branch"] for v in d["via"]] == [v.branch for v in spec.vias]


@SETTINGS
@given(sip_message())
def test_build_parse_round_trip(spec):
    data = spec.data() + spec.trailing
    note(f"message: {data!r}")
    check_message(parse(data), spec, data)
    check_message(parse(bytearray(data)), spec, data)
    check_message(parse(memoryview(data)), spec, data)


@SETTINGS
@given(sip_message(), st.binary(max_size=40))
def test_stream_framing(spec, tail):
    """Stream framing: the message ends after Content-Length bytes of body
    (0 when absent); frame() and parse(stream=True) agree."""
    head = spec.head()
    body = spec.body if spec.has_cl else b""
    msg = head + body
    data = msg + tail
    note(f"stream: {data!r}")
    m = parse(data, stream=True)
    assert m.size == len(msg)
    assert m.body == body
    assert m.raw() == msg
    assert m.call_id == spec.call_id
    assert frame(data) == len(msg)
    assert frame(msg[:-1]) == 0


@SETTINGS
@given(st.lists(sip_message(lf_ok=False), min_size=1, max_size=3),
       st.lists(st.sampled_from([b"", b"\r\n", b"\r\n\r\n"]), min_size=3, max_size=3))
def test_stream_of_messages_and_keepalives(specs, pings):
    """A TCP byte stream of messages and CRLF keep-alives (RFC 5626 §3.5.1)
    splits exactly at message boundaries, whatever the chunking."""
    msgs = [s.head() + (s.body if s.has_cl else b"") for s in specs]
    stream = b""
    ends = []
    for ping, msg in zip(pings, msgs, strict=False):
        stream += ping + msg
        ends.append(len(stream))
    note(f"stream: {stream!r}")
    pos = 0
    cuts = []
    while pos < len(stream):
        n = frame(stream[pos:])
        assert n > 0
        unit = stream[pos: pos + n]
        if unit.strip(b"\r\n"):
            assert parse(unit, stream=True).size == len(unit)
        pos += n
        cuts.append(pos)
    assert pos == len(stream)
    assert set(ends) <= set(cuts)


# --------------------------------------------------------------------------
# Edits

@dataclass
class NewLine:
    """An inserted header line, checked by name and value."""

    names: tuple
    check: Callable[[str], bool]
    what: str


def split_header_lines(data: bytes) -> tuple[bytes, list[bytes], bytes]:
    """Start line, logical header lines (folds joined, line ends kept) and
    body, split here without the library."""
    phys = data.split(b"\n")
    rebuilt = [p + b"\n" for p in phys[:-1]] + [phys[-1]]
    start = rebuilt[0]
    lines: list[bytes] = []
    i = 1
    while i < len(rebuilt):
        p = rebuilt[i]
        if p in (b"\r\n", b"\n"):
            i += 1
            break
        if p[:1] in (b" ", b"\t") and lines:
            lines[-1] += p
        else:
            lines.append(p)
        i += 1
    return start, lines, b"".join(rebuilt[i:])


def line_name_value(line: bytes) -> tuple[str, str]:
    name, _, value = line.decode("utf-8", "surrogateescape").partition(":")
    return name.strip(), unfolded(value).strip()


EDIT_OPS = ["push_via", "pop_via", "decrement_max_forwards", "pop_route", "add_record_route",
            "set_uri", "add_header", "add_header_top", "set_header", "remove_header",
            "set_body"]


@SETTINGS
@given(sip_message(), st.data())
def test_edits_touch_only_their_bytes(spec, data):
    raw = spec.data()
    note(f"message: {raw!r}")
    m = parse(raw)
    ops = data.draw(st.lists(st.sampled_from(EDIT_OPS), unique=True, max_size=len(EDIT_OPS)),
                    label="ops")
    ops = data.draw(st.permutations(ops), label="order")
    unknown_names = sorted(spec.unknown)
    # Model: for each original line index, what replaces it (None: removed)
    # and what is inserted before it; index len(lines) is the blank line.
    n = len(spec.lines)
    replaced: dict[int, str | None] = {}
    before: dict[int, list] = {i: [] for i in range(n + 1)}
    floating: list[NewLine] = []   # new lines whose place the API leaves open
    start_line = spec.start + spec.eol
    body = spec.body
    expect: dict[str, object] = {}
    first_via = next(i for i, ln in enumerate(spec.lines) if ln.key == "via")
    e = m.edit()
    for op in ops:
        if op == "push_via":
            sent_by = data.draw(host(), label="sent_by")
            transport = data.draw(st.sampled_from(["UDP", "TCP", "TLS"]), label="transport")
            branch = data.draw(st.one_of(st.none(), st.just("z9hG4bK" + "x" * 8)), label="br")
            rport = data.draw(st.booleans(), label="rport")
            got = e.push_via(sent_by, transport, branch=branch, rport=rport)
            if branch is None:
                assert re.fullmatch(r"z9hG4bK[0-9a-f]{16}", got)
            else:
                assert got == branch
            expect["push_via"] = (sent_by, transport, got, rport)
            before[first_via].append(NewLine(("via", "v"), lambda v: True, "Via"))
        elif op == "pop_via":
            if len(spec.vias) == 1 and "push_via" not in ops:
                continue   # a message needs a Via
            e.pop_via()
            ln = spec.lines[first_via]
            if len(ln.elements) > 1:
                rest = ln.elements[1] + "".join(
                    s + x for s, x in zip(ln.seps[1:], ln.elements[2:], strict=True))
                replaced[first_via] = ln.prefix + rest + ln.eol
            else:
                replaced[first_via] = None
            expect["pop_via"] = True
        elif op == "decrement_max_forwards":
            if spec.max_forwards == 0:
                with pytest.raises(SipError) as exc:
                    e.decrement_max_forwards()
                assert exc.value.status == 483
                continue
            got = e.decrement_max_forwards()
            if spec.max_forwards is None:
                assert got == 70
                floating.append(NewLine(("max-forwards",), lambda v: v == "70",
                                        "Max-Forwards: 70"))
            else:
                assert got == spec.max_forwards - 1
                i = next(i for i, ln in enumerate(spec.lines) if ln.key == "max-forwards")
                ln = spec.lines[i]
                replaced[i] = ln.prefix + str(got) + ln.eol
            expect["max_forwards"] = got
        elif op == "pop_route":
            if not spec.routes:
                continue
            e.pop_route()
            i = next(i for i, ln in enumerate(spec.lines) if ln.key == "route")
            ln = spec.lines[i]
            if len(ln.elements) > 1:
                rest = ln.elements[1] + "".join(
                    s + x for s, x in zip(ln.seps[1:], ln.elements[2:], strict=True))
                replaced[i] = ln.prefix + rest + ln.eol
            else:
                replaced[i] = None
            expect["routes"] = spec.routes[1:]
        elif op == "add_record_route":
            uri = data.draw(sip_uri(), label="rr_uri")
            lr = data.draw(st.booleans(), label="lr")
            e.add_record_route(uri.text, lr=lr)
            want = f"<{uri.text}{';lr' if lr else ''}>"
            new_rr = NewLine(("record-route",), lambda v, w=want: v == w, want)
            at = next((i for i, ln in enumerate(spec.lines) if ln.key == "record-route"), None)
            if at is None:
                floating.append(new_rr)
            else:   # "above any existing Record-Route"
                before[at].append(new_rr)
            expect["rr"] = uri.text + (";lr" if lr else "")
        elif op == "set_uri":
            if not spec.is_request:
                with pytest.raises(ValueError):
                    e.set_uri("sip:x@example.com")
                continue
            uri = data.draw(any_uri(), label="new_uri")
            e.set_uri(uri.text)
            method, _, rest = spec.start.partition(" ")
            start_line = f"{method} {uri.text} {rest.rpartition(' ')[2]}{spec.eol}"
            expect["uri"] = uri
        elif op in ("add_header", "add_header_top"):
            name = ("X-Top." if op == "add_header_top" else "X-Added.") + data.draw(
                token_st(1, 6, ALNUM), label="hname")
            value = data.draw(st.text(alphabet=TEXT_CHARS, min_size=1, max_size=12), label="hv")
            top = op == "add_header_top"
            e.add_header(name, value, top=top)
            before[0 if top else n].append(
                NewLine((name.lower(),), lambda v, w=value: v == w, f"{name}: {value}"))
            expect.setdefault("added", []).append((name, value))
        elif op == "set_header":
            # (absent names: test_remove_and_set_absent_header)
            candidates = [x for x in unknown_names if x != expect.get("removed")]
            if not candidates:
                continue
            name = data.draw(st.sampled_from(candidates), label="set_name")
            value = data.draw(st.text(alphabet=TEXT_CHARS, min_size=1, max_size=12), label="sv")
            e.set_header(name, value)
            idx = [i for i, ln in enumerate(spec.lines) if ln.key == name]
            for i in idx:
                replaced[i] = None
            before[idx[0] if idx else n].append(
                NewLine((name,), lambda v, w=value: v == w, f"{name}: {value}"))
            expect["set"] = (name, value)
        elif op == "remove_header":
            taken = expect.get("set", ("",))[0]
            candidates = [x for x in unknown_names if x != taken]
            if not candidates:
                continue
            name = data.draw(st.sampled_from(candidates), label="rm_name")
            e.remove_header(name)
            for i, ln in enumerate(spec.lines):
                if ln.key == name:
                    replaced[i] = None
            expect["removed"] = name
        elif op == "set_body":
            body = data.draw(st.binary(max_size=60), label="new_body")
            ct = data.draw(st.one_of(st.none(), st.just("text/plain")), label="ct")
            e.set_body(body, ct)
            cl = [i for i, ln in enumerate(spec.lines) if ln.key == "content-length"]
            if cl:
                ln = spec.lines[cl[0]]
                replaced[cl[0]] = ln.prefix + str(len(body)) + ln.eol
            else:
                want_cl = str(len(body))
                floating.append(NewLine(("content-length", "l"),
                                        lambda v, w=want_cl: v == w, "Content-Length"))
            if ct is not None:
                cts = [i for i, ln in enumerate(spec.lines) if ln.key == "content-type"]
                if cts:
                    ln = spec.lines[cts[0]]
                    replaced[cts[0]] = ln.prefix + ct + ln.eol
                else:
                    floating.append(NewLine(("content-type", "c"), lambda v: v == "text/plain",
                                            "Content-Type"))
            expect["body"] = (body, ct)
    out = e.build()

    # Every byte outside the edits: start line, lines and body, in order.
    out_start, out_lines, out_body = split_header_lines(out)
    assert out_start == start_line.encode("utf-8", "surrogateescape")
    assert out_body == body
    for new_line in floating:   # anywhere among the headers, exactly once
        hits = [i for i, got in enumerate(out_lines)
                if line_name_value(got)[0].lower() in new_line.names]
        assert len(hits) == 1, (out, new_line.what)
        assert new_line.check(line_name_value(out_lines[hits[0]])[1]), (out, new_line.what)
        del out_lines[hits[0]]
    expected: list = []
    for i in range(n + 1):
        expected += before[i]
        if i < n:
            if i in replaced:
                if replaced[i] is not None:
                    expected.append(replaced[i].encode("utf-8", "surrogateescape"))
            else:
                expected.append(spec.lines[i].wire.encode("utf-8", "surrogateescape"))
    assert len(out_lines) == len(expected), (out, expected)
    for got, want in zip(out_lines, expected, strict=True):
        if isinstance(want, bytes):
            assert got == want
        else:
            name, value = line_name_value(got)
            assert name.lower() in want.names, (got, want.what)
            assert want.check(value), (got, want.what)
            assert got.endswith(b"\n")

    # The result parses, with the new values.
    new = parse(out)
    assert new.call_id == spec.call_id and new.cseq == spec.cseq
    old_vias = [v.text for v in spec.vias]
    if "pop_via" in expect:
        old_vias = old_vias[1:]
    if "push_via" in expect:
        sent_by, transport, branch, rport = expect["push_via"]
        top = new.vias[0]
        assert top.transport == transport and top.host == sent_by and top.branch == branch
        assert top.has_rport == rport
        assert [v.text for v in new.vias[1:]] == old_vias
    else:
        assert [v.text for v in new.vias] == old_vias
    if "max_forwards" in expect:
        assert new.max_forwards == expect["max_forwards"]
    if "routes" in expect:
        assert [r.text for r in new.routes] == [r.text for r in expect["routes"]]
    if "rr" in expect:
        assert new.record_routes[0].uri.text == expect["rr"]
        assert [r.text for r in new.record_routes[1:]] == [r.text for r in spec.record_routes]
    if "uri" in expect:
        check_uri(new.uri, expect["uri"])
    for name, value in expect.get("added", []):
        assert new.get(name) == value
    if "set" in expect:
        name, value = expect["set"]
        assert new.get_all(name) == [value]
    if "removed" in expect:
        assert expect["removed"] not in new
    if "body" in expect:
        body_, ct = expect["body"]
        assert new.body == body_ and new.content_length == len(body_)
        if ct is not None:
            assert new.content_type == ct
    else:
        assert new.body == spec.body


def _sample_message() -> sipfast.Message:
    return parse((CORPUS / "invite_sdp.sip").read_bytes())


def test_editor_refuses_repeated_and_bad_edits():
    m = _sample_message()
    e = m.edit()
    e.pop_via()
    with pytest.raises(ValueError):
        e.pop_via()
    for bad in ("a\r\nb", "a\nb", "a\0b"):
        with pytest.raises(ValueError):
            m.edit().add_header("X-Bad", bad)
        with pytest.raises(ValueError):
            m.edit().push_via(bad)
    e = m.edit()
    e.set_header("User-Agent", "x")
    e.remove_header("User-Agent")
    with pytest.raises(ValueError):
        e.build()


def test_remove_and_set_absent_header():
    """set_header / remove_header of a header the message does not have:
    remove is a no-op, set adds the line (documented: 'every line of name')."""
    m = _sample_message()
    e = m.edit()
    e.remove_header("X-Absent")
    assert e.build() == m.raw()
    e = m.edit()
    e.set_header("X-Absent", "v")
    new = parse(e.build())
    assert new.get("X-Absent") == "v"


# --------------------------------------------------------------------------
# Responses

@SETTINGS
@given(sip_message(kind="request"), st.integers(100, 699), st.data())
def test_make_response(spec, status, data):
    note(f"request: {spec.data()!r}")
    m = parse(spec.data())
    to_tag = data.draw(st.one_of(st.none(), token_st(1, 12)), label="to_tag")
    extra = data.draw(st.lists(st.tuples(
        st.just("X-Extra"), st.text(alphabet=TEXT_CHARS, min_size=1, max_size=8)),
        max_size=2), label="extra")
    body = data.draw(st.binary(max_size=40), label="body")
    rr = data.draw(st.booleans(), label="copy_rr")
    reason = data.draw(st.one_of(st.none(), st.text(alphabet=TEXT_CHARS + " ", max_size=12)),
                       label="reason")
    out = make_response(m, status, reason, to_tag=to_tag, headers=extra, body=body,
                        content_type="text/plain" if body else None, copy_record_route=rr)
    r = parse(out)
    assert not r.is_request
    assert r.status == status
    if reason is not None:
        assert r.reason == reason
    else:
        assert r.reason == (sipfast.reason_phrase(status) or r.reason)
    assert [v.text for v in r.vias] == [v.text for v in spec.vias]
    assert r.call_id == spec.call_id
    assert r.cseq == spec.cseq and r.cseq_method == spec.method and r.method == spec.method
    assert r.from_tag == spec.from_.tag
    assert r.from_.text == spec.from_.text
    if spec.to.tag is not None:
        assert r.to_tag == spec.to.tag
    elif to_tag is not None and status > 100:
        assert r.to_tag == to_tag
        assert r.to.uri.text == spec.to.uri.text
    else:
        assert r.to_tag is None
    assert r.body == body and r.content_length == len(body)
    if rr:
        assert [x.text for x in r.record_routes] == [x.text for x in spec.record_routes]
    else:
        assert r.record_routes == []
    assert r.get_all("X-Extra") == [v for _, v in extra]
    assert "Route" not in r and "Max-Forwards" not in r


# --------------------------------------------------------------------------
# Robustness: mutated real messages

SEEDS = sorted(p.read_bytes() for p in CORPUS.glob("*.sip"))


class Hang(Exception):
    pass


def _alarm(signum, frame_):
    raise Hang("parser did not return within 20 s")


def exercise(data: bytes) -> None:
    """parse() in every mode, then every accessor: SipError or a value."""
    for kwargs in ({}, {"stream": True}, {"max_size": 300, "max_headers": 6, "max_line": 60}):
        try:
            m = parse(data, **kwargs)
        except SipError as exc:
            assert 100 <= exc.status <= 699
            assert isinstance(exc.reason, str) and exc.reason
            assert -1 <= exc.offset <= len(data) + 1
            continue
        assert 0 < m.size <= len(data)
        assert m.raw() == data[: m.size]
        for name in ("is_request", "method", "uri_text", "uri", "version", "status", "reason",
                     "headers", "header_count", "via", "vias", "branch", "from_", "to",
                     "from_tag", "to_tag", "call_id", "cseq", "cseq_method", "max_forwards",
                     "contact", "contacts", "contact_star", "route", "routes",
                     "record_routes", "content_length", "content_type", "expires", "body",
                     "body_offset", "size"):
            try:
                value = getattr(m, name)
            except SipError:
                continue
            items = value if isinstance(value, list) else [value]
            for item in items:
                if isinstance(item, sipfast.NameAddr):
                    _ = (item.text, item.display, item.params, item.tag, item.param("tag"))
                    try:
                        # From/To URIs are scanned when first read: may raise.
                        item = item.uri
                    except SipError:
                        continue
                if isinstance(item, sipfast.URI):
                    _ = (item.text, item.scheme, item.is_sip, item.user, item.password,
                         item.host, item.port, item.params, item.headers, item.param("lr"))
                if isinstance(item, sipfast.Via):
                    _ = (item.text, item.protocol, item.transport, item.host, item.port,
                         item.branch, item.received, item.has_rport, item.rport, item.maddr,
                         item.ttl, item.params, item.param("branch"))
        for name in ("Via", "v", "From", "To", "Contact", "Route", "Record-Route", "Allow",
                     "Call-ID", "CSeq", "X-Unknown"):
            try:
                m.get(name)
                m.get_all(name)
            except SipError:
                pass
        for name, _value in m.headers:
            assert name in m
            try:
                m.get_all(name)
            except SipError:
                pass
        try:
            m.validate()
        except SipError:
            pass
        try:
            json.dumps(m.to_dict())
        except SipError:
            pass
    try:
        n = frame(data)
        assert 0 <= n <= len(data)
    except SipError:
        pass


@st.composite
def mutated(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.integers(0, 9))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == 0 and data:                                     # bit flip
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == 1:                                            # insert bytes
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == 2:                                            # delete bytes
            del data[pos: pos + draw(st.integers(1, 16))]
        elif op == 3:                                            # truncate
            del data[pos:]
        elif op == 4:                                            # duplicate a line
            lines = bytes(data).split(b"\n")
            i = draw(st.integers(0, len(lines) - 1))
            lines.insert(i, lines[i])
            data = bytearray(b"\n".join(lines))
        elif op == 5:                                            # CRLF <-> LF
            data = bytearray(bytes(data).replace(b"\r\n", b"\n") if draw(st.booleans())
                             else bytes(data).replace(b"\n", b"\r\n"))
        elif op == 6:                                            # huge numbers
            big = draw(st.sampled_from([b"4294967296", b"2147483648", b"99999999999999999999",
                                        b"65536", b"-1", b"0" * 30 + b"1"]))
            data = bytearray(re.sub(rb"\d+", big.replace(b"\\", b""), bytes(data),
                                    count=draw(st.integers(1, 6))))
        elif op == 7:                                            # special bytes
            data[pos:pos] = draw(st.sampled_from(
                [b"\0", b"\r", b"\n", b" ", b"\t", b",", b";", b'"', b"\\", b"<", b">", b"%",
                 b"[", b"]", b":", b"\r\n ", b"\xff", b"\xc3"]))
        elif op == 8:                                            # overwrite with random
            chunk = draw(st.binary(min_size=1, max_size=16))
            data[pos: pos + len(chunk)] = chunk
        else:                                                    # random bytes outright
            data = bytearray(draw(st.binary(max_size=200)))
    return bytes(data)


@settings(max_examples=400, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mutated())
def test_mutated_messages_never_escape_sip_error(data):
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(20)
    try:
        exercise(data)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def test_seed_corpus_parses_and_validates():
    assert len(SEEDS) >= 15
    for data in SEEDS:
        m = parse(data)
        m.validate()
        assert m.size == len(data) == frame(data)
        exercise(data)


@SMALL
@given(st.text(max_size=8), st.characters(min_codepoint=128), st.text(max_size=8))
def test_header_lookup_accepts_any_name(a, c, b):
    """get / get_all / in take any str name; a name with a non-ASCII
    character cannot be a header's name (names are ASCII tokens) and is
    simply absent."""
    m = _sample_message()
    name = a + c + b
    assert m.get(name, "dflt") == "dflt"
    assert m.get_all(name) == []
    assert name not in m


@SMALL
@given(st.lists(st.sampled_from([b"Via", b"X-Many", b"Contact"]), min_size=1, max_size=5))
def test_empty_list_elements(names):
    """RFC 3261 §7.3.1 lists may hold empty elements (', ,'): reading them
    gives values or a SipError, never another exception."""
    base = (CORPUS / "options.sip").read_bytes()
    head, _, _ = base.partition(b"\r\n\r\n")
    extra = b"".join(n + b": a, ,b,  ,\r\n" for n in names)
    data = head + b"\r\n" + extra + b"\r\n"
    m = parse(data)
    for n in names:
        try:
            values = m.get_all(n.decode())
        except SipError:
            continue
        assert all(isinstance(v, str) for v in values)


# --------------------------------------------------------------------------
# Minimal reproducers of what the properties above found (exact bytes).

OPTIONS_HEAD = (b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
                b"From: <sip:a@b>;tag=1\r\nTo: <sip:b@c>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n")


def test_frame_accepts_folded_content_length():
    """RFC 3261 §7.3.1: a fold may follow the colon of any header;
    parse(stream=True) accepts it, so must frame()."""
    data = OPTIONS_HEAD + b"Content-Length:\r\n 4\r\n\r\nbodyNEXT"
    assert parse(data, stream=True).size == len(data) - 4
    assert frame(data) == len(data) - 4


def test_frame_does_not_read_the_start_line_as_a_header():
    """'L' is a valid extension method (token) and also the compact form of
    Content-Length; the start line is not a header line."""
    data = (b"L sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
            b"From: <sip:a@b>;tag=1\r\nTo: <sip:b@c>\r\nCall-ID: x\r\nCSeq: 1 L\r\n\r\n")
    assert parse(data, stream=True).size == len(data)
    assert frame(data) == len(data)


def test_folded_quoted_display_name_is_one_space():
    """RFC 3261 §7.3.1: a line fold is one SP, inside a quoted-string too."""
    data = OPTIONS_HEAD.replace(b"From: <sip:a@b>", b'From: "Alice\r\n Smith" <sip:a@b>')
    assert parse(data + b"\r\n").from_.display == "Alice Smith"


def test_get_all_with_blank_list_element():
    m = parse(OPTIONS_HEAD + b"Allow: INVITE, , ACK\r\n\r\n")
    try:
        values = m.get_all("Allow")
    except SipError:
        return
    assert [v for v in values if v] == ["INVITE", "ACK"]


def test_get_with_non_latin1_name():
    m = parse(OPTIONS_HEAD + b"\r\n")
    assert m.get("\u20ac") is None
    assert "\u20ac" not in m


def test_header_index_beyond_32767_lines():
    """With raised limits a valid message with many header lines parses and
    its Via (after 33000 other lines) is found."""
    data = (b"OPTIONS sip:a@b SIP/2.0\r\n" + b"X:\r\n" * 33000
            + OPTIONS_HEAD.split(b"\r\n", 1)[1] + b"\r\n")
    m = parse(data, max_size=len(data), max_headers=65535)
    assert m.header_count == 33005   # 33000 X lines + Via, From, To, Call-ID, CSeq
    assert m.via.branch == "z9hG4bK1"
