"""Test messages for the message-core benchmark.

``INVITE`` is a typical INVITE as a proxy receives it from another proxy:
two Via lines, a Route (this proxy, loose routing), a Record-Route set by
the previous hop, a Contact, Max-Forwards and an SDP body (about 700 bytes
in all).  ``EXPECTED_FIELDS`` holds the values a correct parser must return for it;
every benchmark checks them once, outside the timed loop.

``CORPUS`` is the mixed case: one call as a proxy sees it
(INVITE, 180, 200, ACK, BYE, 200 for the BYE).
"""

from __future__ import annotations

_SDP = (
    "v=0\r\n"
    "o=alice 2890844526 2890844526 IN IP4 198.51.100.10\r\n"
    "s=-\r\n"
    "c=IN IP4 198.51.100.10\r\n"
    "t=0 0\r\n"
    "m=audio 49170 RTP/AVP 0 8\r\n"
    "a=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:8 PCMA/8000\r\n"
    "a=sendrecv\r\n"
)

SDP = _SDP.encode()


def _invite(body: str) -> str:
    return (
        "INVITE sip:bob@biloxi.example.com;transport=udp SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 192.0.2.20:5060;branch=z9hG4bK74bf9.1;rport\r\n"
        "Via: SIP/2.0/UDP 198.51.100.10:5060;branch=z9hG4bKnashds8;received=198.51.100.10\r\n"
        "Route: <sip:192.0.2.30;lr>\r\n"
        "Record-Route: <sip:192.0.2.20;lr>\r\n"
        "Max-Forwards: 69\r\n"
        'From: "Alice" <sip:alice@atlanta.example.com>;tag=1928301774\r\n'
        "To: <sip:bob@biloxi.example.com>\r\n"
        "Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
        "CSeq: 314159 INVITE\r\n"
        "Contact: <sip:alice@198.51.100.10:5060;transport=udp>\r\n"
        "Content-Type: application/sdp\r\n"
        f"Content-Length: {len(body.encode())}\r\n"
        "\r\n" + body
    )


INVITE_TEXT = _invite(_SDP)
INVITE = INVITE_TEXT.encode()

# What this proxy puts on a forwarded request.
PROXY_SENT_BY = "192.0.2.30:5060"
PROXY_BRANCH = "z9hG4bKproxy0000000001"
PROXY_RR_URI = "sip:192.0.2.30"

# The fields benchmark (a) reads, in this order, and their values.
FIELD_NAMES = (
    "method",
    "ruri_user",
    "ruri_host",
    "via_host",
    "via_port",
    "branch",
    "call_id",
    "cseq",
    "cseq_method",
    "from_tag",
    "to_tag",
    "max_forwards",
    "route_host",
    "contact_host",
    "content_length",
)
EXPECTED_FIELDS = (
    "INVITE",
    "bob",
    "biloxi.example.com",
    "192.0.2.20",
    5060,
    "z9hG4bK74bf9.1",
    "a84b4c76e66710@pc33.atlanta.example.com",
    314159,
    "INVITE",
    "1928301774",
    None,
    69,
    "192.0.2.30",
    "198.51.100.10",
    len(SDP),
)

_COMMON_RESP = (
    "Via: SIP/2.0/UDP 192.0.2.20:5060;branch=z9hG4bK74bf9.1;rport=5060\r\n"
    "Via: SIP/2.0/UDP 198.51.100.10:5060;branch=z9hG4bKnashds8;received=198.51.100.10\r\n"
    "Record-Route: <sip:192.0.2.30;lr>\r\n"
    "Record-Route: <sip:192.0.2.20;lr>\r\n"
    'From: "Alice" <sip:alice@atlanta.example.com>;tag=1928301774\r\n'
    "To: <sip:bob@biloxi.example.com>;tag=a6c85cf\r\n"
    "Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
)

_RINGING = (
    "SIP/2.0 180 Ringing\r\n" + _COMMON_RESP + "CSeq: 314159 INVITE\r\n"
    "Contact: <sip:bob@203.0.113.4:5060>\r\n"
    "Content-Length: 0\r\n\r\n"
)

_OK_INVITE = (
    "SIP/2.0 200 OK\r\n" + _COMMON_RESP + "CSeq: 314159 INVITE\r\n"
    "Contact: <sip:bob@203.0.113.4:5060>\r\n"
    "Content-Type: application/sdp\r\n"
    f"Content-Length: {len(SDP)}\r\n\r\n" + _SDP
)

_IN_DIALOG = (
    "Via: SIP/2.0/UDP 192.0.2.20:5060;branch=z9hG4bK74bf9.{n};rport\r\n"
    "Via: SIP/2.0/UDP 198.51.100.10:5060;branch=z9hG4bKnashd{n};received=198.51.100.10\r\n"
    "Route: <sip:192.0.2.30;lr>\r\n"
    "Max-Forwards: 69\r\n"
    'From: "Alice" <sip:alice@atlanta.example.com>;tag=1928301774\r\n'
    "To: <sip:bob@biloxi.example.com>;tag=a6c85cf\r\n"
    "Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
)

_ACK = (
    "ACK sip:bob@203.0.113.4:5060 SIP/2.0\r\n" + _IN_DIALOG.format(n=2) + "CSeq: 314159 ACK\r\n"
    "Content-Length: 0\r\n\r\n"
)

_BYE = (
    "BYE sip:bob@203.0.113.4:5060 SIP/2.0\r\n" + _IN_DIALOG.format(n=3) + "CSeq: 314160 BYE\r\n"
    "Content-Length: 0\r\n\r\n"
)

_OK_BYE = (
    "SIP/2.0 200 OK\r\n"
    + _COMMON_RESP.replace("z9hG4bK74bf9.1", "z9hG4bK74bf9.3").replace(
        "z9hG4bKnashds8", "z9hG4bKnashd3"
    )
    + "CSeq: 314160 BYE\r\n"
    "Content-Length: 0\r\n\r\n"
)

CORPUS_TEXT = [INVITE_TEXT, _RINGING, _OK_INVITE, _ACK, _BYE, _OK_BYE]
CORPUS = [m.encode() for m in CORPUS_TEXT]
# Per corpus message: (CSeq method, top-Via branch, CSeq number, Call-ID,
# From tag, To tag, Content-Length, extra); extra is
# ("req", R-URI host, Max-Forwards, top Route host) for a request and
# ("resp", status) for a response.
_CID = "a84b4c76e66710@pc33.atlanta.example.com"
_FT = "1928301774"
CORPUS_EXPECTED = [
    (
        "INVITE",
        "z9hG4bK74bf9.1",
        314159,
        _CID,
        _FT,
        None,
        len(SDP),
        ("req", "biloxi.example.com", 69, "192.0.2.30"),
    ),
    ("INVITE", "z9hG4bK74bf9.1", 314159, _CID, _FT, "a6c85cf", 0, ("resp", 180)),
    ("INVITE", "z9hG4bK74bf9.1", 314159, _CID, _FT, "a6c85cf", len(SDP), ("resp", 200)),
    (
        "ACK",
        "z9hG4bK74bf9.2",
        314159,
        _CID,
        _FT,
        "a6c85cf",
        0,
        ("req", "203.0.113.4", 69, "192.0.2.30"),
    ),
    (
        "BYE",
        "z9hG4bK74bf9.3",
        314160,
        _CID,
        _FT,
        "a6c85cf",
        0,
        ("req", "203.0.113.4", 69, "192.0.2.30"),
    ),
    ("BYE", "z9hG4bK74bf9.3", 314160, _CID, _FT, "a6c85cf", 0, ("resp", 200)),
]
