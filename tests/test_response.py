"""make_response (RFC 3261 §8.2.6, §12.1.1), reason_phrase and new_branch."""

import re

import pytest
from conftest import INVITE, parse_all, sip

from sipfast import SipError, make_response, new_branch, parse, reason_phrase

REQUEST = sip("""\
INVITE sip:bob@biloxi.example.com SIP/2.0
v: SIP/2.0/UDP proxy2.example.com;branch=z9hG4bK721e4.1, SIP/2.0/UDP proxy1.example.com;\
branch=z9hG4bKnashds8;received=192.0.2.2
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnashds8;received=192.0.2.1;rport=5066
Max-Forwards: 68
Record-Route: <sip:proxy2.example.com;lr>
Record-Route: <sip:proxy1.example.com;lr>
t: Bob <sip:bob@biloxi.example.com>
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774
i: a84b4c76e66710
CSeq: 314159 INVITE
Timestamp: 54.23 0.5
Contact: <sip:alice@pc33.atlanta.example.com>
Route: <sip:proxy3.example.com;lr>
X-Secret: do-not-copy
Content-Type: text/plain
Content-Length: 5

hello""")

VIA_LINES = [
    b"v: SIP/2.0/UDP proxy2.example.com;branch=z9hG4bK721e4.1, SIP/2.0/UDP proxy1.example.com;"
    b"branch=z9hG4bKnashds8;received=192.0.2.2",
    b"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnashds8;received=192.0.2.1;"
    b"rport=5066",
]


def lines(resp: bytes) -> list[bytes]:
    head, _, _ = resp.partition(b"\r\n\r\n")
    return head.split(b"\r\n")


def test_copies_via_from_to_call_id_cseq():
    req = parse(REQUEST)
    resp = make_response(req, 180, to_tag="a6c85cf")
    ls = lines(resp)
    assert ls[0] == b"SIP/2.0 180 Ringing"
    assert ls[1:3] == VIA_LINES            # every Via line, as written, in order
    assert b"From: Alice <sip:alice@atlanta.example.com>;tag=1928301774" in ls
    assert b"t: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf" in ls
    assert b"i: a84b4c76e66710" in ls
    assert b"CSeq: 314159 INVITE" in ls
    assert ls[-1] == b"Content-Length: 0"
    # Nothing else of the request leaks into the response.
    for absent in (b"Max-Forwards", b"Record-Route", b"Contact", b"Route", b"X-Secret",
                   b"Content-Type", b"Timestamp"):
        assert not any(ln.startswith(absent) for ln in ls), absent
    m = parse_all(resp)
    assert not m.is_request
    assert m.status == 180
    assert m.reason == "Ringing"
    assert [v.host for v in m.vias] == ["proxy2.example.com", "proxy1.example.com",
                                        "pc33.atlanta.example.com"]
    assert m.call_id == req.call_id
    assert (m.cseq, m.cseq_method, m.method) == (314159, "INVITE", "INVITE")
    assert m.from_tag == "1928301774"
    assert m.to_tag == "a6c85cf"
    assert m.body == b""
    assert m.content_length == 0


def test_existing_to_tag_is_kept():
    raw = REQUEST.replace(b"t: Bob <sip:bob@biloxi.example.com>",
                          b"t: Bob <sip:bob@biloxi.example.com>;tag=old")
    m = parse(make_response(parse(raw), 200, to_tag="new"))
    assert m.to_tag == "old"
    assert m.get_all("To") == ["Bob <sip:bob@biloxi.example.com>;tag=old"]


def test_no_to_tag_when_not_given():
    m = parse(make_response(parse(REQUEST), 404))
    assert m.to_tag is None
    assert m.reason == "Not Found"


def test_100_trying_copies_timestamp_and_has_no_to_tag():
    resp = make_response(parse(REQUEST), 100, to_tag="ignored")
    m = parse_all(resp)
    assert m.status == 100
    assert m.reason == "Trying"
    assert m.get("Timestamp") == "54.23 0.5"
    assert m.to_tag is None  # RFC 3261 §8.2.6.1 / §16.2: no tag on a 100
    assert lines(resp)[1:3] == VIA_LINES


@pytest.mark.parametrize("status", [180, 200, 486])
def test_timestamp_only_for_100(status):
    assert "Timestamp" not in parse(make_response(parse(REQUEST), status, to_tag="x"))


def test_record_route_copied_when_asked():
    resp = make_response(parse(REQUEST), 200, to_tag="x", copy_record_route=True)
    m = parse_all(resp)
    assert [r.uri.host for r in m.record_routes] == ["proxy2.example.com", "proxy1.example.com"]
    assert b"Record-Route: <sip:proxy2.example.com;lr>\r\nRecord-Route: <sip:proxy1" in resp
    assert "Record-Route" not in parse(make_response(parse(REQUEST), 200, to_tag="x"))


def test_extra_headers_body_and_content_type():
    resp = make_response(parse(REQUEST), 200, "OK", to_tag="x",
                         headers=[("Contact", "<sip:bob@192.0.2.4>"), ("Server", "sipfast")],
                         body=b"v=0\r\n", content_type="application/sdp")
    m = parse_all(resp)
    assert m.contact.uri.host == "192.0.2.4"
    assert m.get("Server") == "sipfast"
    assert m.content_type == "application/sdp"
    assert m.content_length == 5
    assert m.body == b"v=0\r\n"
    assert resp.endswith(b"Content-Length: 5\r\n\r\nv=0\r\n")
    assert m.size == len(resp)


def test_headers_accept_any_iterable():
    resp = make_response(parse(REQUEST), 200, headers=iter([("X-A", "1")]))
    assert parse(resp).get("X-A") == "1"


def test_reason_default_custom_empty_and_utf8():
    req = parse(REQUEST)
    assert parse(make_response(req, 503)).reason == "Service Unavailable"
    assert parse(make_response(req, 200, "Fine")).reason == "Fine"
    assert parse(make_response(req, 200, "")).reason == ""
    assert parse(make_response(req, 200, "Très bien")).reason == "Très bien"
    assert parse(make_response(req, 299)).status == 299


def test_response_to_compact_and_minimal_request():
    raw = sip("OPTIONS sip:a@b SIP/2.0\nv: SIP/2.0/TCP h;branch=z9hG4bKq\nt: <sip:a@b>\n"
              "f: <sip:c@d>;tag=9\ni: x\nCSeq: 1 OPTIONS\n\n")
    m = parse_all(make_response(parse(raw), 200, to_tag="t"))
    assert m.to_tag == "t"
    assert m.branch == "z9hG4bKq"
    assert m.cseq_method == "OPTIONS"


@pytest.mark.parametrize("kwargs", [
    dict(reason="OK\r\nX-Injected: 1"), dict(reason="O\nK"), dict(reason="O\x00K"),
    dict(to_tag="t\r\n"), dict(to_tag="t\x00"),
    dict(headers=[("X", "a\r\nb")]), dict(headers=[("X\r\n", "a")]), dict(headers=[("X", "\x00")]),
    dict(headers=[("X Y", "a")]), dict(headers=[("", "a")]),
    dict(content_type="text/plain\r\nX: y"), dict(content_type="\n"),
])
def test_refuses_cr_lf_nul_and_bad_names(kwargs):
    kwargs.setdefault("to_tag", "t")
    with pytest.raises(ValueError):
        make_response(parse(REQUEST), 200, **kwargs)


@pytest.mark.parametrize("status", [0, 99, 700, 1000, -200])
def test_refuses_bad_status(status):
    with pytest.raises(ValueError):
        make_response(parse(REQUEST), status)


def test_refuses_a_response():
    resp = parse(make_response(parse(REQUEST), 200))
    with pytest.raises(ValueError):
        make_response(resp, 200)


def test_response_to_invalid_request_error():
    # The use made of SipError.status/reason: answer a bad request.
    raw = INVITE.replace(b"CSeq: 314159 INVITE", b"CSeq: 314159 BYE")
    with pytest.raises(SipError) as info:
        parse(raw)
    err = info.value
    assert (err.status, err.reason) == (400, "CSeq method does not match request method")


# ---------------------------------------------------------------------------


@pytest.mark.parametrize("status,phrase", [
    (100, "Trying"), (180, "Ringing"), (183, "Session Progress"), (200, "OK"),
    (302, "Moved Temporarily"), (400, "Bad Request"), (401, "Unauthorized"),
    (404, "Not Found"), (407, "Proxy Authentication Required"), (408, "Request Timeout"),
    (413, "Request Entity Too Large"), (416, "Unsupported URI Scheme"),
    (420, "Bad Extension"), (481, "Call/Transaction Does Not Exist"), (482, "Loop Detected"),
    (483, "Too Many Hops"), (486, "Busy Here"), (487, "Request Terminated"),
    (500, "Server Internal Error"), (503, "Service Unavailable"),
    (505, "Version Not Supported"), (513, "Message Too Large"), (603, "Decline"),
])
def test_reason_phrase(status, phrase):
    assert reason_phrase(status) == phrase


@pytest.mark.parametrize("status", [0, 99, 299, 499, 700, -1])
def test_reason_phrase_unknown(status):
    assert reason_phrase(status) == ""


def test_new_branch_format_and_uniqueness():
    seen = set()
    for _ in range(2000):
        b = new_branch()
        assert re.fullmatch(r"z9hG4bK[0-9a-f]{16}", b), b
        seen.add(b)
    assert len(seen) == 2000
