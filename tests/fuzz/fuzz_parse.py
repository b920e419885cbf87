"""atheris fuzz target for the SIP message core (sipfast._core).

Every input is fed to parse() (datagram and stream framing, default and tiny
limits) and frame(); each Message that comes out has every accessor read,
validate() and to_dict() called, an edit built and (for a request) a response
made, and the results re-parsed.  SipError is the only exception allowed from
the core; anything else (another exception, a failed invariant below, a
crash or a sanitizer report) is a bug.

    python tests/fuzz/fuzz_parse.py tests/fuzz/corpus -runs=100000

See tests/fuzz/README.md for long runs with an instrumented (clang + ASan)
build of the extension.
"""

import json
import sys

import atheris

with atheris.instrument_imports():
    import sipfast
    from sipfast import SipError, frame, make_response, parse

MSG_PROPS = (
    "is_request", "method", "uri_text", "uri", "version", "status", "reason", "headers",
    "header_count", "via", "vias", "branch", "from_", "to", "from_tag", "to_tag",
    "call_id", "cseq", "cseq_method", "max_forwards", "contact", "contacts",
    "contact_star", "route", "routes", "record_routes", "content_length",
    "content_type", "expires", "body", "body_offset", "size",
)
URI_PROPS = ("text", "scheme", "is_sip", "user", "password", "host", "port", "params",
             "headers")
NADDR_PROPS = ("text", "display", "params", "tag")
VIA_PROPS = ("text", "protocol", "transport", "host", "port", "branch", "received",
             "has_rport", "rport", "maddr", "ttl", "params")
HEADER_NAMES = ("Via", "v", "From", "f", "To", "t", "Call-ID", "i", "CSeq", "Contact", "m",
                "Route", "Record-Route", "Content-Length", "l", "Content-Type", "c",
                "Max-Forwards", "Expires", "Allow", "Supported", "k", "X-Unknown", "")


@atheris.instrument_func
def _touch_uri(u):
    if u is None:
        return
    for p in URI_PROPS:
        getattr(u, p)
    if u.is_sip:
        u.param("lr")
        u.param("transport")
    str(u)
    repr(u)
    hash(u)


@atheris.instrument_func
def _touch_naddr(na):
    if na is None:
        return
    for p in NADDR_PROPS:
        getattr(na, p)
    _touch_uri(na.uri)
    if na.tag is not None:
        na.param("tag")
    na.param("expires")
    str(na)
    repr(na)


@atheris.instrument_func
def _touch_via(v):
    for p in VIA_PROPS:
        getattr(v, p)
    if v.has_rport:
        v.param("rport")
    if v.branch is not None:
        v.param("branch")
    str(v)
    repr(v)


@atheris.instrument_func
def touch_message(m, data):
    """Read everything a Message offers; only SipError may come out.  One
    try block per structured field so that each outcome is its own edge for
    the fuzzer's Python coverage."""
    assert 0 < m.size <= len(data)
    assert m.raw() == bytes(data[: m.size])
    body = m.body
    assert bytes(data[m.body_offset: m.body_offset + len(body)]) == body
    assert m.body_offset + len(body) == m.size
    for p in MSG_PROPS:
        try:
            getattr(m, p)
        except SipError:
            pass
    try:
        _touch_uri(m.uri)
    except SipError:
        pass
    try:
        _touch_via(m.via)
    except SipError:
        pass
    try:
        for v in m.vias:
            _touch_via(v)
    except SipError:
        pass
    try:
        _touch_naddr(m.from_)
    except SipError:
        pass
    try:
        _touch_naddr(m.to)
    except SipError:
        pass
    try:
        _touch_naddr(m.contact)
    except SipError:
        pass
    try:
        for na in m.contacts:
            _touch_naddr(na)
    except SipError:
        pass
    try:
        _touch_naddr(m.route)
    except SipError:
        pass
    try:
        for na in m.routes:
            _touch_naddr(na)
    except SipError:
        pass
    try:
        for na in m.record_routes:
            _touch_naddr(na)
    except SipError:
        pass
    try:
        _ = m.expires
    except SipError:
        pass
    for name in HEADER_NAMES:
        try:
            m.get(name)
            m.get_all(name)
        except SipError:
            pass
        assert isinstance(name in m, bool)
    for name, _value in m.headers:
        assert name in m
        try:
            m.get(name)
            m.get_all(name)
        except SipError:
            pass
    repr(m)
    try:
        m.validate()
        valid = True
    except SipError:
        valid = False
    try:
        d = m.to_dict()
    except SipError:
        d = None
    if valid:
        # validate() covers every field to_dict() reads
        assert d is not None
    if d is not None:
        json.dumps(d)
    # The message bytes alone parse again to the same headers.
    again = parse(m.raw(), max_size=m.size + 1, max_headers=m.header_count + 1,
                  max_line=m.size + 1)
    assert again.headers == m.headers
    assert again.body == body


@atheris.instrument_func
def _guard(fn, *args):
    """Call fn; SipError is a normal answer and gives None."""
    try:
        return fn(*args)
    except SipError:
        return None


@atheris.instrument_func
def edit_message(m):
    """A proxy's edit set: must build, and the result must parse."""
    e = m.edit()
    branch = e.push_via("fuzz.example.com:5060", "TCP", branch="z9hG4bKfuzz", rport=True)
    assert branch == "z9hG4bKfuzz"
    mf = _guard(e.decrement_max_forwards)
    if m.is_request and "Route" in m:
        _guard(e.pop_route)
    e.add_record_route("sip:rr.example.com")
    if m.is_request:
        e.set_uri("sip:next@[2001:db8::99]:5080;transport=tcp")
    e.add_header("X-Fuzz", "1")
    e.remove_header("X-Gone")
    e.set_body(b"fuzz", "text/plain")
    out = e.build()
    new = parse(out, max_size=len(out) + 1, max_headers=m.header_count + 16,
                max_line=len(out) + 1)
    assert new.via.branch == "z9hG4bKfuzz", out
    assert new.body == b"fuzz", out
    assert new.get("X-Fuzz") == "1", out
    if mf is not None:
        assert new.max_forwards == mf, out
    if m.is_request:
        assert new.uri_text == "sip:next@[2001:db8::99]:5080;transport=tcp", out


@atheris.instrument_func
def respond(m):
    if not m.is_request:
        return
    for status in (100, 200):
        r = _guard(lambda s=status: make_response(
            m, s, to_tag="fz1", headers=[("Server", "fuzz")], body=b"x",
            content_type="text/plain", copy_record_route=True))
        if r is None:
            continue
        resp = parse(r, max_size=len(r) + 1, max_headers=m.header_count + 8,
                     max_line=len(r) + 1)
        assert resp.status == status and not resp.is_request
        assert resp.call_id == m.call_id and resp.cseq == m.cseq
        assert resp.body == b"x"


@atheris.instrument_func
def check(data):
    """One input through everything; raises on a bug."""
    for kwargs in ({}, {"stream": True},
                   {"max_size": 512, "max_headers": 8, "max_line": 80}):
        try:
            m = parse(data, **kwargs)
        except SipError:
            continue
        touch_message(m, data)
        edit_message(m)
        respond(m)
    try:
        n = frame(data)
    except SipError:
        return
    assert 0 <= n <= len(data)
    if n and data[:1] not in (b"\r", b"\n"):
        try:
            m = parse(data, stream=True)
        except SipError:
            return
        assert m.size == n, (m.size, n)


@atheris.instrument_func
def TestOneInput(data):
    check(data)
    check(bytearray(data))


def main():
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    assert sipfast.DEFAULT_MAX_SIZE > 0
    main()
