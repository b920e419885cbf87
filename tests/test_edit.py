"""The one-pass Editor: proxy edits of RFC 3261 §16.6 / §16.7 and RFC 3581,
applied so that every byte no edit touches is copied unchanged."""

import re

import pytest
from conftest import INVITE, parse_all, sip

from sipfast import Editor, SipError, parse

TOP_VIA = b"Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds;rport"

PROXIED = sip("""\
INVITE sip:bob@biloxi.example.com SIP/2.0
Via: SIP/2.0/UDP p1.example.com;branch=z9hG4bKp1, SIP/2.0/UDP pc33.example.com;branch=z9hG4bKc
v: SIP/2.0/TCP old.example.com;branch=z9hG4bKold
Max-Forwards: 10
Route: <sip:p2.example.com;lr>, <sip:p3.example.com;lr>
Route: <sip:p4.example.com;lr>
Record-Route: <sip:p1.example.com;lr>
To: Bob <sip:bob@biloxi.example.com>
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774
Call-ID: proxied@pc33
CSeq: 2 INVITE
X-Unknown: ;;,,<"odd
Content-Length: 5

hello""")


def build(raw: bytes, edit) -> bytes:
    e = parse(raw).edit()
    edit(e)
    out = e.build()
    parse_all(out)  # the output is always a valid message
    return out


def test_editor_without_edits_copies_the_message():
    assert parse(INVITE).edit().build() == INVITE
    assert Editor(parse(INVITE)).build() == INVITE


def test_editor_on_stream_message_excludes_trailing_bytes():
    m = parse(INVITE + b"OPTIONS sip:next", stream=True)
    assert m.edit().build() == INVITE


# ---------------------------------------------------------------------------
# push_via / pop_via


def test_push_via_generates_branch():
    e = parse(INVITE).edit()
    branch = e.push_via("10.0.0.1:5060")
    out = e.build()
    assert re.fullmatch(r"z9hG4bK[0-9a-f]{16}", branch)
    new_line = f"Via: SIP/2.0/UDP 10.0.0.1:5060;branch={branch}\r\n".encode()
    start = INVITE.index(b"Via:")
    assert out == INVITE[:start] + new_line + INVITE[start:]
    m = parse_all(out)
    assert m.via.host == "10.0.0.1"
    assert m.via.port == 5060
    assert m.branch == branch
    assert [v.host for v in m.vias] == ["10.0.0.1", "pc33.atlanta.example.com"]


def test_push_via_branches_are_unique():
    branches = {parse(INVITE).edit().push_via("h") for _ in range(200)}
    assert len(branches) == 200


def test_push_via_options():
    e = parse(INVITE).edit()
    assert e.push_via("[2001:db8::1]:5061", "TLS", branch="z9hG4bKmine", rport=True,
                      params="alias;x=1") == "z9hG4bKmine"
    out = e.build()
    assert b"Via: SIP/2.0/TLS [2001:db8::1]:5061;branch=z9hG4bKmine;rport;alias;x=1\r\n" \
        + TOP_VIA in out
    v = parse_all(out).via
    assert v.transport == "TLS"
    assert v.host == "[2001:db8::1]"
    assert v.has_rport and v.rport is None
    assert v.params["alias"] is None
    e = parse(INVITE).edit()
    e.push_via("h", params=";y=2")
    assert b";y=2\r\n" in e.build() and b";;y=2" not in e.build()


@pytest.mark.parametrize("kwargs", [
    dict(sent_by="h\r\nX-Injected: 1"), dict(sent_by="h\n"), dict(sent_by="h\x00"),
    dict(sent_by="h", transport="UDP\r\n"), dict(sent_by="h", transport="U\x00DP"),
    dict(sent_by="h", branch="z9hG4bK\r\nX: y"), dict(sent_by="h", branch="z9hG4bK\x00"),
    dict(sent_by="h", params="x=1\r\nX: y"), dict(sent_by="h", params="\n"),
    dict(sent_by="h", params="\x00"),
    dict(sent_by=b"h\r\n"),
])
def test_push_via_refuses_cr_lf_nul(kwargs):
    with pytest.raises(ValueError):
        parse(INVITE).edit().push_via(**kwargs)


@pytest.mark.parametrize("transport", ["", "U DP", "UDP;x", "UDP/2"])
def test_push_via_transport_must_be_token(transport):
    with pytest.raises(ValueError):
        parse(INVITE).edit().push_via("h", transport)


def test_pop_via_alone_on_its_line():
    second = b"Via: SIP/2.0/TCP second.example.com;branch=z9hG4bK2\r\n"
    raw = INVITE.replace(TOP_VIA + b"\r\n", TOP_VIA + b"\r\n" + second)
    out = build(raw, lambda e: e.pop_via())
    assert out == INVITE.replace(TOP_VIA + b"\r\n", second)
    assert [v.host for v in parse(out).vias] == ["second.example.com"]


def test_pop_via_first_of_a_comma_list():
    out = build(PROXIED, lambda e: e.pop_via())
    assert out == PROXIED.replace(b"SIP/2.0/UDP p1.example.com;branch=z9hG4bKp1, ", b"")
    assert [v.host for v in parse(out).vias] == ["pc33.example.com", "old.example.com"]


def test_pop_via_once_per_editor():
    e = parse(PROXIED).edit()
    e.pop_via()
    with pytest.raises(ValueError):
        e.pop_via()


def test_push_and_pop_via_together():
    # A proxy forwarding a response upstream pops; forwarding a request pushes.
    e = parse(INVITE).edit()
    e.pop_via()
    branch = e.push_via("proxy.example.com")
    out = e.build()
    assert [v.branch for v in parse_all(out).vias] == [branch]


# ---------------------------------------------------------------------------
# set_received (RFC 3581 §4)


def test_set_received_appends_received_and_fills_rport():
    raw = INVITE.replace(b";rport", b";rport;x=1")
    out = build(raw, lambda e: e.set_received("192.0.2.7", 40000))
    v = parse(out).via
    assert v.received == "192.0.2.7"
    assert v.rport == 40000
    assert v.params["x"] == "1"
    assert out == raw.replace(b";rport;x=1", b";rport=40000;x=1;received=192.0.2.7")


def test_set_received_with_rport_as_last_param():
    # The common case: the client sent ";rport" at the end of its Via.
    out = build(INVITE, lambda e: e.set_received("192.0.2.7", 40000))
    v = parse(out).via
    assert v.received == "192.0.2.7"
    assert v.rport == 40000
    assert v.branch == "z9hG4bK776asdhds"


def test_set_received_without_rport_request_leaves_rport_out():
    raw = INVITE.replace(b";rport", b"")
    out = build(raw, lambda e: e.set_received("192.0.2.7", 40000))
    v = parse(out).via
    assert v.received == "192.0.2.7"
    assert not v.has_rport
    assert out == raw.replace(b"z9hG4bK776asdhds", b"z9hG4bK776asdhds;received=192.0.2.7")


def test_set_received_replaces_existing_values():
    raw = INVITE.replace(b";rport", b";received=10.0.0.1;rport=1")
    out = build(raw, lambda e: e.set_received("192.0.2.7", 5062))
    assert out == raw.replace(b";received=10.0.0.1;rport=1", b";received=192.0.2.7;rport=5062")


def test_set_received_only_rport():
    raw = INVITE.replace(b";rport", b";rport;x=1")
    out = build(raw, lambda e: e.set_received(None, 5070))
    assert out == raw.replace(b";rport;x=1", b";rport=5070;x=1")


def test_set_received_ipv6():
    out = build(INVITE, lambda e: e.set_received("[2001:db8::9:255]"))
    assert parse(out).via.received == "[2001:db8::9:255]"


@pytest.mark.parametrize("args", [("1.2.3.4\r\n",), ("1.2.3.4\x00",), ("\n",)])
def test_set_received_refuses_cr_lf_nul(args):
    with pytest.raises(ValueError):
        parse(INVITE).edit().set_received(*args)


@pytest.mark.parametrize("port", [0, -1, 65536])
def test_set_received_refuses_bad_port(port):
    with pytest.raises(ValueError):
        parse(INVITE).edit().set_received("1.2.3.4", port)


# ---------------------------------------------------------------------------
# Max-Forwards (RFC 3261 §16.6 step 3)


def test_decrement_max_forwards():
    e = parse(INVITE).edit()
    assert e.decrement_max_forwards() == 69
    out = e.build()
    assert out == INVITE.replace(b"Max-Forwards: 70", b"Max-Forwards: 69")


def test_decrement_max_forwards_to_zero():
    raw = INVITE.replace(b"Max-Forwards: 70", b"Max-Forwards: 01")
    e = parse(raw).edit()
    assert e.decrement_max_forwards() == 0
    assert parse(e.build()).max_forwards == 0


def test_max_forwards_added_when_absent():
    raw = INVITE.replace(b"Max-Forwards: 70\r\n", b"")
    e = parse(raw).edit()
    assert e.decrement_max_forwards() == 70
    out = e.build()
    m = parse_all(out)
    assert m.max_forwards == 70
    assert m.get_all("Max-Forwards") == ["70"]
    assert out.replace(b"Max-Forwards: 70\r\n", b"") == raw


def test_max_forwards_zero_is_483():
    raw = INVITE.replace(b"Max-Forwards: 70", b"Max-Forwards: 0")
    with pytest.raises(SipError) as info:
        parse(raw).edit().decrement_max_forwards()
    assert info.value.status == 483


def test_decrement_once_per_editor():
    e = parse(INVITE).edit()
    e.decrement_max_forwards()
    with pytest.raises(ValueError):
        e.decrement_max_forwards()


# ---------------------------------------------------------------------------
# Route / Record-Route / Request-URI


def test_pop_route_first_of_list():
    out = build(PROXIED, lambda e: e.pop_route())
    assert out == PROXIED.replace(b"<sip:p2.example.com;lr>, ", b"")
    assert [r.uri.host for r in parse(out).routes] == ["p3.example.com", "p4.example.com"]


def test_pop_route_alone_on_its_line():
    raw = PROXIED.replace(b"Route: <sip:p2.example.com;lr>, <sip:p3.example.com;lr>\r\n", b"")
    out = build(raw, lambda e: e.pop_route())
    assert out == raw.replace(b"Route: <sip:p4.example.com;lr>\r\n", b"")
    assert parse(out).routes == []
    assert "Route" not in parse(out)


def test_pop_route_without_route():
    with pytest.raises(ValueError):
        parse(INVITE).edit().pop_route()


def test_pop_route_once_per_editor():
    e = parse(PROXIED).edit()
    e.pop_route()
    with pytest.raises(ValueError):
        e.pop_route()


def test_add_record_route_above_existing():
    out = build(PROXIED, lambda e: e.add_record_route("sip:me.example.com"))
    assert out == PROXIED.replace(b"Record-Route: <sip:p1",
                                  b"Record-Route: <sip:me.example.com;lr>\r\nRecord-Route: <sip:p1")
    assert [r.uri.host for r in parse(out).record_routes] == ["me.example.com", "p1.example.com"]


def test_add_record_route_when_none_and_without_lr():
    out = build(INVITE, lambda e: e.add_record_route("sip:me.example.com;transport=tcp", lr=False))
    m = parse(out)
    assert [str(r.uri) for r in m.record_routes] == ["sip:me.example.com;transport=tcp"]
    assert out.replace(b"Record-Route: <sip:me.example.com;transport=tcp>\r\n", b"") == INVITE


def test_add_record_route_refuses_cr_lf_nul():
    for bad in ("sip:a\r\nX: y", "sip:a\n", "sip:a\x00"):
        with pytest.raises(ValueError):
            parse(INVITE).edit().add_record_route(bad)


def test_set_uri():
    out = build(INVITE, lambda e: e.set_uri("sip:bob@192.0.2.4:5080;transport=tcp"))
    assert out == INVITE.replace(b"INVITE sip:bob@biloxi.example.com SIP/2.0",
                                 b"INVITE sip:bob@192.0.2.4:5080;transport=tcp SIP/2.0")
    assert parse(out).uri.port == 5080


@pytest.mark.parametrize("uri", ["", "sip:a b", "sip:a\tb", "sip:a\r\n", "sip:\x00"])
def test_set_uri_refuses_bad_uri(uri):
    with pytest.raises(ValueError):
        parse(INVITE).edit().set_uri(uri)


def test_set_uri_on_response():
    resp = sip("SIP/2.0 200 OK\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\nTo: <sip:a@b>;tag=2\n"
               "From: <sip:a@b>;tag=1\nCall-ID: c\nCSeq: 1 OPTIONS\nContent-Length: 0\n\n")
    with pytest.raises(ValueError):
        parse(resp).edit().set_uri("sip:x@y")


# ---------------------------------------------------------------------------
# Generic header edits


def test_add_header_at_end_and_top():
    e = parse(INVITE).edit()
    e.add_header("X-End", "1")
    e.add_header("X-Top", "2", top=True)
    out = e.build()
    m = parse_all(out)
    assert m.headers[0] == ("X-Top", "2")
    assert m.headers[-1] == ("X-End", "1")
    assert out.replace(b"X-Top: 2\r\n", b"").replace(b"X-End: 1\r\n", b"") == INVITE
    assert m.body == b"abcd"


def test_set_header_replaces_every_line():
    out = build(PROXIED, lambda e: e.set_header("route", "<sip:only.example.com;lr>"))
    m = parse(out)
    assert m.get_all("Route") == ["<sip:only.example.com;lr>"]
    assert out.count(b"oute: ") == 2  # one Route and one Record-Route line
    assert out.index(b"route: <sip:only") == PROXIED.index(b"Route: <sip:p2")


def test_set_header_adds_when_absent():
    out = build(INVITE, lambda e: e.set_header("Subject", "hi"))
    assert parse(out).get("Subject") == "hi"
    assert out.replace(b"Subject: hi\r\n", b"") == INVITE


def test_remove_header_compact_and_long_forms():
    out = build(PROXIED, lambda e: e.remove_header("Route"))
    assert "Route" not in parse(out)
    assert out == PROXIED.replace(
        b"Route: <sip:p2.example.com;lr>, <sip:p3.example.com;lr>\r\n"
        b"Route: <sip:p4.example.com;lr>\r\n", b"")
    # "v" names Via too: both the long and the compact lines go.
    e = parse(PROXIED).edit()
    e.remove_header("v")
    out = e.build()
    assert b"Via:" not in out and b"\r\nv:" not in out
    e = parse(PROXIED).edit()
    e.remove_header("x-unknown")
    assert e.build() == PROXIED.replace(b'X-Unknown: ;;,,<"odd\r\n', b"")


def test_remove_absent_header_is_a_no_op():
    assert build(INVITE, lambda e: e.remove_header("Subject")) == INVITE


@pytest.mark.parametrize("name,value", [
    ("X\r\nY", "v"), ("X", "v\r\nInjected: 1"), ("X", "a\nb"), ("X", "a\x00"), ("X\x00", "v"),
    ("X Y", "v"), ("", "v"), ("X:", "v")])
def test_add_header_refuses_bad_arguments(name, value):
    with pytest.raises(ValueError):
        parse(INVITE).edit().add_header(name, value)


@pytest.mark.parametrize("name,value", [
    ("X-Opaque", "v\r\nInjected: 1"), ("X-Opaque", "a\nb"), ("x-opaque", "a\x00"),
    ("Content-Type", "a\r")])
def test_set_header_refuses_bad_values(name, value):
    with pytest.raises(ValueError):
        parse(INVITE).edit().set_header(name, value)


@pytest.mark.parametrize("name,value", [("X\r\nY", "v"), ("X\x00", "v"), ("X Y", "v"), ("", "v")])
def test_set_header_refuses_bad_names(name, value):
    with pytest.raises(ValueError):
        parse(INVITE).edit().set_header(name, value)


def test_unknown_headers_untouched_by_other_edits():
    e = parse(PROXIED).edit()
    e.pop_via()
    e.decrement_max_forwards()
    e.pop_route()
    e.add_record_route("sip:me.example.com")
    out = e.build()
    assert b'\r\nX-Unknown: ;;,,<"odd\r\n' in out
    assert parse(out).get("X-Unknown") == ';;,,<"odd'


# ---------------------------------------------------------------------------
# Body


def test_set_body_fixes_content_length():
    out = build(INVITE, lambda e: e.set_body(b"hello world"))
    assert out == INVITE.replace(b"Content-Length: 4\r\n\r\nabcd",
                                 b"Content-Length: 11\r\n\r\nhello world")


def test_set_body_with_content_type():
    out = build(INVITE, lambda e: e.set_body(b"x", "text/plain"))
    m = parse(out)
    assert m.content_type == "text/plain"
    assert m.body == b"x"
    assert m.get_all("Content-Type") == ["text/plain"]


def test_set_body_adds_content_length_and_type_when_absent():
    raw = INVITE.replace(b"Content-Length: 4\r\n", b"").replace(
        b"Content-Type: application/sdp\r\n", b"")
    out = build(raw, lambda e: e.set_body(b"\x00binary\r\n\r\n", "application/octet-stream"))
    m = parse(out)
    assert m.content_length == 11
    assert m.body == b"\x00binary\r\n\r\n"
    assert m.content_type == "application/octet-stream"


def test_set_body_empty_and_buffer_types():
    assert parse(build(INVITE, lambda e: e.set_body(b""))).body == b""
    assert parse(build(INVITE, lambda e: e.set_body(bytearray(b"ab")))).body == b"ab"
    assert parse(build(INVITE, lambda e: e.set_body(memoryview(b"abc")))).body == b"abc"


def test_set_body_once_per_editor():
    e = parse(INVITE).edit()
    e.set_body(b"a")
    with pytest.raises(ValueError):
        e.set_body(b"b")


def test_set_body_refuses_bad_content_type():
    with pytest.raises(ValueError):
        parse(INVITE).edit().set_body(b"x", "text/plain\r\nX: y")


# ---------------------------------------------------------------------------
# Combining edits


def test_many_edits_in_one_pass_and_untouched_bytes():
    e = parse(PROXIED).edit()
    branch = e.push_via("proxy.example.com:5060", "TCP")
    e.decrement_max_forwards()
    e.pop_route()
    e.add_record_route("sip:proxy.example.com")
    e.set_uri("sip:bob@192.0.2.4")
    e.add_header("X-Proxy", "yes")
    out = e.build()
    m = parse_all(out)
    assert m.branch == branch
    assert len(m.vias) == 4
    assert m.max_forwards == 9
    assert [r.uri.host for r in m.routes] == ["p3.example.com", "p4.example.com"]
    assert m.record_routes[0].uri.host == "proxy.example.com"
    assert m.uri_text == "sip:bob@192.0.2.4"
    assert m.get("X-Proxy") == "yes"
    assert m.body == b"hello"
    # Every line no edit touched is byte-identical and in the same order.
    kept = [ln for ln in PROXIED.split(b"\r\n")
            if not ln.startswith((b"INVITE", b"Max-Forwards", b"Route: <sip:p2"))]
    out_lines = out.split(b"\r\n")
    positions = [out_lines.index(ln) for ln in kept if ln]
    assert positions == sorted(positions)


@pytest.mark.parametrize("first,second", [
    (lambda e: e.pop_via(), lambda e: e.set_received("1.2.3.4")),
    (lambda e: e.set_header("Max-Forwards", "5"), lambda e: e.decrement_max_forwards()),
    (lambda e: e.remove_header("Route"), lambda e: e.pop_route()),
    (lambda e: e.remove_header("Content-Length"), lambda e: e.set_body(b"x")),
])
def test_overlapping_edits_raise(first, second):
    e = parse(PROXIED).edit()
    first(e)
    second(e)
    with pytest.raises(ValueError, match="overlapping"):
        e.build()


def test_build_twice_gives_same_result():
    e = parse(INVITE).edit()
    e.decrement_max_forwards()
    assert e.build() == e.build()


def test_editor_keeps_the_buffer_alive():
    raw = bytearray(INVITE)
    e = parse(raw).edit()
    e.decrement_max_forwards()
    del raw
    assert b"Max-Forwards: 69" in e.build()
