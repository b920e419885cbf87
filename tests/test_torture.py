"""RFC 4475 (SIP torture test messages) and RFC 5118 (IPv6 torture tests).

The messages are retyped from the RFCs into ``tests/data/<name>.sip`` as
exact wire bytes (CRLF line ends).  Two liberties, both harmless to what is
tested: longreq's long strings are built with the same repetitions, and
mpart01's binary part is a short made-up blob holding NUL, CR, LF and 8-bit
bytes instead of the RFC's certificate (its Content-Length matches).

A proxy parses a message with parse() and checks what it routes on with
validate(); a message is "rejected" here when either raises SipError.
"""

import pytest
from conftest import data, parse_all

from sipfast import SipError, frame, parse


def rejected(name: str, **kwargs) -> SipError:
    raw = data(name)
    with pytest.raises(SipError) as info:
        parse_all(raw, **kwargs)
    err = info.value
    assert -1 <= err.offset <= len(raw)
    return err


# ---------------------------------------------------------------------------
# RFC 4475 §3.1.1 Valid messages


def test_wsinv():
    """§3.1.1.1 A Short Tortuous INVITE."""
    m = parse_all(data("wsinv"))
    assert m.method == "INVITE"
    assert m.uri.user == "vivekg"
    assert m.uri.host == "chair-dnrc.example.com"
    assert m.uri.params == {"unknownparam": None}
    assert m.to.uri.text == "sip:vivekg@chair-dnrc.example.com"
    assert m.to_tag == "1918181833n"
    assert m.from_.display == 'J Rosenberg \\"'
    assert m.from_.uri.text == "sip:jdrosen@example.com"
    assert m.from_tag == "98asjd8"
    assert m.max_forwards == 68                     # 0068: leading zeros
    assert m.call_id == "wsinv.ndaksdj@192.0.2.1"
    assert m.cseq == 9                              # 0009, folded before INVITE
    assert m.cseq_method == "INVITE"
    assert m.content_length == 150
    assert len(m.body) == 150
    assert m.body.startswith(b"v=0\r\n")
    assert m.get("Subject") == ""                   # "s :" with an empty value
    assert m.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert m.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    assert m.content_type == "application/sdp"
    assert [str(r.uri) for r in m.routes] == [
        "sip:services.example.com;lr;unknownwith=value;unknown-no-value"]
    assert m.route.uri.params == {"lr": None, "unknownwith": "value", "unknown-no-value": None}
    vias = m.vias
    assert [(v.protocol, v.transport, v.host, v.port, v.branch) for v in vias] == [
        ("SIP/2.0", "UDP", "192.0.2.2", None, "390skdjuw"),
        ("SIP/2.0", "TCP", "spindle.example.com", None, "z9hG4bK9ikj8"),
        ("SIP/2.0", "UDP", "192.168.255.111", None, "z9hG4bK30239"),
    ]
    c = m.contact
    assert c.display == 'Quoted string ""'
    assert c.uri.text == "sip:jdrosen@example.com"
    assert c.params == {"newparam": "newvalue", "secondparam": None, "q": "0.33"}


def test_intmeth():
    """§3.1.1.2 Wide Range of Valid Characters."""
    m = parse_all(data("intmeth"))
    method = "!interesting-Method0123456789_*+`.%indeed'~"
    assert m.method == method
    assert m.cseq_method == method
    assert m.cseq == 139122385
    u = m.uri
    assert u.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert u.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert u.host == "example.com"
    assert m.via.transport == "TCP"
    assert m.branch == "z9hG4bK-.!%66*_+`'~"
    assert m.to.display == "BEL:\x07 NUL:\x00 DEL:\x7f"   # quoted-pairs resolved
    assert m.to.uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert m.from_.display == "token1~` token2'+_ token3*%!.-"
    assert m.from_.uri.text == "sip:mundane@example.com"
    assert m.from_tag == "_token~1'+`*%!-."
    assert m.from_.param("fromParam''~+*_!.-%") == "\u0440\u0430\u0431\u043e\u0442\u0430\u044e" \
                                                  "\u0449\u0438\u0439"
    assert m.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert m.max_forwards == 255
    assert m.get("extensionHeader-!.%*+_`'~") == "\ufeff\u5927\u505c\u96fb"
    assert m.content_length == 0


def test_esc01():
    """§3.1.1.3 Valid Use of the % Escaping Mechanism."""
    m = parse_all(data("esc01"))
    assert m.uri.user == "sips:user@example.com"
    assert m.uri.host == "example.net"
    assert m.to.uri.user == "user"
    assert m.from_.uri.user == "I have spaces"
    assert m.from_tag == "938"
    assert m.call_id == "esc01.239409asdfakjkn23onasd0-3234"    # i: compact form
    assert m.content_type == "application/sdp"                 # C: compact form
    c = m.contact.uri
    assert c.user == "caller"
    assert c.params == {"lr": None, "name": "value%41"}          # not "valueA"
    assert m.max_forwards == 87
    assert len(m.body) == m.content_length == 150


def test_escnull():
    """§3.1.1.4 Escaped Nulls in URIs."""
    m = parse_all(data("escnull"))
    assert m.method == "REGISTER"
    assert m.to.uri.user == "null-\x00-null"
    assert m.from_.uri.user == "null-\x00-null"
    assert len(m.to.uri.user) == 11                 # not shortened at the NUL
    assert [c.uri.user for c in m.contacts] == ["\x00", "\x00\x00"]   # two distinct contacts
    assert m.content_length == 0                    # "L:0"


def test_esc02():
    """§3.1.1.5 Use of % When It Is Not an Escape."""
    m = parse_all(data("esc02"))
    assert m.method == "RE%47IST%45R"               # not REGISTER
    assert m.cseq_method == "RE%47IST%45R"
    assert m.to.display == "%Z%45"
    assert m.from_.display == "%Z%45"
    assert m.branch == "z9hG4bK209%fzsnel234"
    assert [c.uri.user for c in m.contacts] == ["alias1", "alias3"]   # two, not three
    assert m.get("C%6Fntact") == "<sip:alias2@host2.example.com>"
    assert ("C%6Fntact", "<sip:alias2@host2.example.com>") in m.headers


def test_lwsdisp():
    """§3.1.1.6 Message with No LWS between Display Name and <."""
    m = parse_all(data("lwsdisp"))
    assert m.from_.display == "caller"
    assert m.from_.uri.text == "sip:caller@example.com"
    assert m.from_tag == "323"


def test_longreq():
    """§3.1.1.7 Long Values in Header Fields."""
    m = parse_all(data("longreq"))
    assert m.to.display == "I have a user name of " + "extreme" * 10 + " proportion"
    assert m.to.uri.port == 6000
    tp = m.to.uri.params
    assert tp["unknownparam1"] == "very" + "long" * 20 + "value"
    assert tp["longparam" + "name" * 25] == "shortvalue"
    assert tp["very" + "long" * 25 + "parameternamewithnovalue"] is None
    assert m.from_tag == "12" + "982" * 50 + "424"
    assert m.from_.uri.user == "amazinglylongcallername" * 5
    assert m.from_.params["unknownvaluelessparamnameparamnameparamnameparamnameparamname"
                          "paramnameparamnameparamnameparamnameparamname"] is None
    assert m.call_id == "longreq.one" + "really" * 20 + "longcallid"
    vias = m.vias
    assert len(vias) == 34
    assert [v.host for v in vias[:33]] == [f"sip{i}.example.com" for i in range(33, 0, -1)]
    assert vias[33].received == "192.0.2.5"
    assert vias[33].branch == "very" + "long" * 50 + "branchvalue"
    assert m.get("Unknown-" + "Long" * 20 + "-Name").startswith("unknown-longlong")
    assert m.content_length == 150


def test_dblreq_datagram():
    """§3.1.1.8 Extra Trailing Octets in a UDP Datagram: only the REGISTER."""
    raw = data("dblreq")
    m = parse_all(raw)
    assert m.method == "REGISTER"
    assert m.call_id == "dblreq.0ha0isndaksdj99sdfafnl3lk233412"
    assert m.body == b""
    assert m.size == raw.index(b"INVITE sip:joe")
    assert b"INVITE" not in m.raw()
    assert m.contact.uri.text == "sip:j.user@host.example.com"


def test_dblreq_stream():
    # Over a stream the same bytes are two messages, framed by Content-Length.
    raw = data("dblreq")
    n = frame(raw)
    assert n == raw.index(b"INVITE sip:joe")
    second = parse(raw[n:], stream=True)
    assert second.method == "INVITE"
    assert second.to.uri.user == "joe"             # "t:" compact form
    assert second.content_length == 150
    assert frame(raw[n:]) == second.size == second.body_offset + 150


def test_semiuri():
    """§3.1.1.9 Semicolon-Separated Parameters in URI User Part."""
    m = parse_all(data("semiuri"))
    assert m.uri.user == "user;par=u@example.net"
    assert m.uri.host == "example.com"
    assert m.uri.params == {}
    assert m.get_all("Accept") == ["application/sdp", "application/pkcs7-mime",
                                   "multipart/mixed", "multipart/signed", "message/sip",
                                   "message/sipfrag"]


def test_transports():
    """§3.1.1.10 Varied and Unknown Transport Types."""
    m = parse_all(data("transports"))
    assert [(v.transport, v.host) for v in m.vias] == [
        ("UDP", "t1.example.com"), ("SCTP", "t2.example.com"), ("TLS", "t3.example.com"),
        ("UNKNOWN", "t4.example.com"), ("TCP", "t5.example.com")]
    assert m.call_id == "transports.kijh4akdnaqjkwendsasfdj"   # two spaces after colon


def test_mpart01():
    """§3.1.1.11 Multipart MIME Message (binary part with NUL bytes)."""
    raw = data("mpart01")
    m = parse_all(raw)
    assert m.method == "MESSAGE"
    assert m.via.port == 5070
    assert m.via.has_rport and m.via.rport is None
    assert m.branch == "z9hG4bK-d87543-4dade06d0bdb11ee-1--d87543-"
    assert m.route.uri.host == "127.0.0.1"
    assert m.route.uri.port == 5080
    assert m.content_type == "multipart/mixed;boundary=7a9cbec02ceef655"
    assert len(m.body) == m.content_length
    assert b"\x00" in m.body
    assert m.body.endswith(b"--7a9cbec02ceef655--\r\n")
    assert m.body_offset + m.content_length == len(raw)
    assert m.get("User-Agent") == "SIPimp.org/0.2.5 (curses)"
    assert frame(raw) == len(raw)


def test_unreason():
    """§3.1.1.12 Unusual Reason Phrase."""
    m = parse_all(data("unreason"))
    assert m.status == 200
    assert m.reason == ("= 2**3 * 5**2 \u043d\u043e \u0441\u0442\u043e \u0434\u0435\u0432"
                        "\u044f\u043d\u043e\u0441\u0442\u043e \u0434\u0435\u0432\u044f\u0442"
                        "\u044c - \u043f\u0440\u043e\u0441\u0442\u043e\u0435")
    assert m.to_tag == "2229"
    assert len(m.body) == m.content_length == 154


def test_noreason():
    """§3.1.1.13 Empty Reason Phrase."""
    m = parse_all(data("noreason"))
    assert m.status == 100
    assert m.reason == ""
    assert m.branch == "z9hG4bK2398ndaoe"


# ---------------------------------------------------------------------------
# RFC 4475 §3.1.2 Invalid messages


def test_badinv01():
    """§3.1.2.1 Extraneous Header Field Separators: 400."""
    raw = data("badinv01")
    m = parse(raw)             # the header section itself frames fine
    with pytest.raises(SipError) as info:
        m.validate()
    assert info.value.status == 400
    assert info.value.reason == "Malformed Via header"
    assert raw.index(b"Via:") < info.value.offset < raw.index(b"Contact:")
    with pytest.raises(SipError) as info:
        m.contacts  # noqa: B018  (";;;;" after the Contact)
    assert info.value.status == 400


def test_clerr():
    """§3.1.2.2 Content Length Larger Than Message: 400 over UDP; over a
    stream the receiver just waits for more bytes."""
    raw = data("clerr")
    err = rejected("clerr")
    assert err.status == 400
    assert err.reason == "Body shorter than Content-Length"
    assert frame(raw) == 0


def test_ncl():
    """§3.1.2.3 Negative Content-Length."""
    err = rejected("ncl")
    assert err.status == 400
    assert err.reason == "Malformed Content-Length header"
    with pytest.raises(SipError):
        frame(data("ncl"))


def test_scalar02():
    """§3.1.2.4 Request Scalar Fields with Overlarge Values: 400 for CSeq."""
    err = rejected("scalar02")
    assert err.status == 400
    assert err.reason == "Malformed CSeq header"
    assert not err.is_response


def test_scalar02_expires_alone_is_capped():
    # "If only the expiry values were in error, the element could treat them
    # as ...": with a valid CSeq the huge Expires is capped at 2**32-1.
    raw = data("scalar02").replace(b"36893488147419103232", b"3")
    m = parse_all(raw)
    assert m.expires == 2 ** 32 - 1
    assert m.contact.param("expires") == "280297596632815"


def test_scalarlg():
    """§3.1.2.5 Response Scalar Fields with Overlarge Values: dropped."""
    err = rejected("scalarlg")
    assert err.status == 400
    assert err.is_response


def test_quotbal():
    """§3.1.2.6 Unterminated Quoted String in Display Name."""
    raw = data("quotbal")
    err = rejected("quotbal")
    assert err.status == 400
    assert err.reason == "Malformed To header"
    assert err.offset == raw.index(b'"Mr. J. User')


def test_ltgtruri():
    """§3.1.2.7 <> Enclosing Request-URI: rejected at the start line."""
    err = rejected("ltgtruri")
    assert err.status == 400
    assert err.offset == len("INVITE ")


def test_lwsruri():
    """§3.1.2.8 Malformed SIP Request-URI (embedded LWS)."""
    err = rejected("lwsruri")
    assert err.status == 400


def test_lwsstart():
    """§3.1.2.9 Multiple SP Separating Request-Line Elements.  The RFC lets
    an element either reject or ignore the extra SP; our parser is strict
    (RFC 3261 §7.1: exactly one SP) and rejects with 400."""
    err = rejected("lwsstart")
    assert err.status == 400
    assert err.offset == len("INVITE ")


def test_trws():
    """§3.1.2.10 SP Characters at End of Request-Line.  Rejecting is
    acceptable per the RFC; our strict start-line grammar does, with 400
    (it never forwards the extra SP either way)."""
    err = rejected("trws")
    assert err.status == 400
    assert err.offset == len("OPTIONS sip:remote-target@example.com ")


def test_escruri():
    """§3.1.2.11 Escaped Headers in SIP Request-URI.  The RFC allows either
    a 400 or ignoring the headers.  The parser accepts the message and
    exposes the headers, decoded, so that the proxy can strip them before
    forwarding (they must never become real header fields)."""
    m = parse_all(data("escruri"))
    assert m.uri.headers == {"Route": "<sip:example.com>"}
    assert m.uri.host == "example.com"
    assert "Route" not in m


def test_baddate():
    """§3.1.2.12 Invalid Time Zone in Date Header Field.  The RFC says not
    to reject unless the Date matters to the element; a proxy core does not
    read Date, so the message is accepted and Date kept opaque."""
    m = parse_all(data("baddate"))
    assert m.get("Date") == "Fri, 01 Jan 2010 16:00:00 EST"


def test_regbadct():
    """§3.1.2.13 Failure to Enclose name-addr URI in <>.  The RFC allows a
    400 or inferring the brackets when unambiguous, as here; the parser takes
    the bare addr-spec up to the first ';' or LWS, so the escaped URI header
    stays part of the URI."""
    m = parse_all(data("regbadct"))
    c = m.contact
    assert c.uri.host == "example.com"
    assert c.uri.headers == {"Route": "<sip:sip.example.com>"}
    assert c.params == {}


def test_badaspec():
    """§3.1.2.14 Spaces within addr-spec: 400."""
    raw = data("badaspec")
    err = rejected("badaspec")
    assert err.status == 400
    assert err.reason == "Malformed To header"
    to_line = raw.index(b"To:")
    assert to_line < err.offset < raw.index(b"\r\n", to_line)


def test_baddn():
    """§3.1.2.15 Non-token Characters in Display Name: 400."""
    raw = data("baddn")
    err = rejected("baddn")
    assert err.status == 400
    assert err.reason in ("Malformed From header", "Malformed To header")
    assert raw.index(b"From:") < err.offset < raw.index(b"Call-ID:")


def test_badvers():
    """§3.1.2.16 Unknown Protocol Version: 505."""
    err = rejected("badvers")
    assert err.status == 505
    assert err.offset == len("OPTIONS sip:t.watson@example.org ")
    assert not err.is_response


def test_mismatch01():
    """§3.1.2.17 Start Line and CSeq Method Mismatch: 400."""
    raw = data("mismatch01")
    err = rejected("mismatch01")
    assert (err.status, err.reason) == (400, "CSeq method does not match request method")
    assert err.offset == raw.index(b"INVITE")


def test_mismatch02():
    """§3.1.2.18 Unknown Method with CSeq Method Mismatch.  501 is preferred
    but 400 is acceptable; the parser cannot know which methods the
    application implements, so it answers the mismatch with 400."""
    err = rejected("mismatch02")
    assert (err.status, err.reason) == (400, "CSeq method does not match request method")


def test_bigcode():
    """§3.1.2.19 Overlarge Response Code: dropped (is_response)."""
    err = rejected("bigcode")
    assert err.status == 400
    assert err.is_response
    assert err.offset == len("SIP/2.0 ")


# ---------------------------------------------------------------------------
# RFC 4475 §3.2 / §3.3: transaction and application layer (parser view)


def test_badbranch():
    """§3.2.1 Missing Transaction Identifier: parses; the branch is just the
    magic cookie."""
    m = parse_all(data("badbranch"))
    assert m.branch == "z9hG4bK"


def test_insuf():
    """§3.3.1 Missing Required Header Fields: 400."""
    err = rejected("insuf")
    assert err.status == 400
    assert err.reason.startswith("Missing ")
    assert err.reason.endswith(" header")


@pytest.mark.parametrize("name,scheme", [("unkscm", "nobodyknowsthisscheme"),
                                         ("novelsc", "soap.beep")])
def test_unknown_request_uri_schemes(name, scheme):
    """§3.3.2 / §3.3.3: the parser accepts; the application answers 416."""
    m = parse_all(data(name))
    assert m.uri.scheme == scheme
    assert not m.uri.is_sip


def test_unksm2():
    """§3.3.4 REGISTER with a URI Scheme Other Than sip."""
    m = parse_all(data("unksm2"))
    assert m.to.uri.scheme == "isbn"
    assert m.from_.uri.text == "http://www.example.com"
    assert m.from_tag == "3234233"
    assert m.contact.uri.text == "name:John_Smith"


def test_bext01():
    """§3.3.5 Unknown option tags (answered with 420 by the application)."""
    m = parse_all(data("bext01"))
    assert m.get_all("Require") == ["nothingSupportsThis", "nothingSupportsThisEither"]
    assert m.get_all("Proxy-Require") == ["noProxiesSupportThis", "norDoAnyProxiesSupportThis"]
    assert m.via.transport == "TLS"


def test_multi01():
    """§3.3.8 Multiple Values in Single Value Required Fields: 400."""
    raw = data("multi01")
    err = rejected("multi01")
    assert err.status == 400
    assert err.reason.startswith("Duplicate ")
    assert err.offset == raw.index(b"CSeq: 59")


def test_mcl01():
    """§3.3.9 Multiple Content-Length Values: 400."""
    raw = data("mcl01")
    err = rejected("mcl01")
    assert (err.status, err.reason) == (400, "Duplicate Content-Length header")
    assert err.offset == raw.index(b"Content-Length: 5")


def test_bcast():
    """§3.3.10 200 OK Response with Broadcast Via Header Field Value: well
    formed; parsers must not fail."""
    m = parse_all(data("bcast"))
    assert m.status == 200
    assert [v.host for v in m.vias] == ["192.0.2.198", "255.255.255.255"]


def test_zeromf():
    """§3.3.11 Max-Forwards of Zero: parses; a proxy answers 483."""
    m = parse_all(data("zeromf"))
    assert m.max_forwards == 0
    with pytest.raises(SipError) as info:
        m.edit().decrement_max_forwards()
    assert info.value.status == 483


def test_cparam01_cparam02():
    """§3.3.12 / §3.3.13: where ';unknownparam' belongs."""
    m = parse_all(data("cparam01"))
    assert m.contact.params == {"unknownparam": None}    # header param (addr-spec)
    assert m.contact.uri.params == {}
    m = parse_all(data("cparam02"))
    assert m.contact.params == {}
    assert m.contact.uri.params == {"unknownparam": None}  # URI param (inside <>)


def test_regescrt():
    """§3.3.14 REGISTER with a Contact Header Parameter (escaped Route)."""
    m = parse_all(data("regescrt"))
    assert m.contact.uri.headers == {"Route": "<sip:sip.example.com>"}
    assert m.content_length == 0


def test_inv2543():
    """§3.3.16 INVITE with RFC 2543 Syntax: no Max-Forwards, no branch, no
    From tag, no Content-Length (the datagram's end frames the body)."""
    raw = data("inv2543")
    m = parse_all(raw)
    assert m.max_forwards is None
    assert m.branch is None
    assert m.from_tag is None
    assert m.to.params == {"user": "phone"}      # addr-spec: ;user is a header param
    assert m.from_.uri.params == {"user": "phone"}
    assert m.record_routes[0].uri.params == {"maddr": "ss1.example.com"}
    assert m.body == raw[raw.index(b"\r\n\r\n") + 4:]
    assert m.content_length == len(m.body)


# ---------------------------------------------------------------------------
# RFC 5118 IPv6


def test_ipv6_good():
    """RFC 5118 §4.1 Valid SIP Message with an IPv6 Reference."""
    m = parse_all(data("rfc5118_ipv6_good"))
    assert m.uri.host == "[2001:db8::10]"
    assert m.uri.port is None
    assert m.via.host == "[2001:db8::9:1]"
    assert m.contact.uri.host == "[2001:db8::1]"
    assert m.contact.display == "Caller"


def test_ipv6_bad():
    """RFC 5118 §4.2 Invalid SIP Message with an IPv6 Reference (no [])."""
    raw = data("rfc5118_ipv6_bad")
    err = rejected("rfc5118_ipv6_bad")
    assert err.status == 400
    assert len("REGISTER ") <= err.offset <= raw.index(b" SIP/2.0")


def test_port_ambiguous():
    """RFC 5118 §4.3 Port Ambiguous in a SIP URI: 5070 is part of the address."""
    m = parse_all(data("rfc5118_port_ambiguous"))
    assert m.uri.host == "[2001:db8::10:5070]"
    assert m.uri.port is None


def test_port_unambiguous():
    """RFC 5118 §4.4 Port Unambiguous in a SIP URI."""
    m = parse_all(data("rfc5118_port_unambiguous"))
    assert m.uri.host == "[2001:db8::10]"
    assert m.uri.port == 5070


@pytest.mark.parametrize("name,received", [
    ("rfc5118_via_received_delim", "[2001:db8::9:255]"),
    ("rfc5118_via_received_nodelim", "2001:db8::9:255"),
])
def test_via_received_delimiters(name, received):
    """RFC 5118 §4.5 IPv6 Reference Delimiters in Via Header: both forms."""
    m = parse_all(data(name))
    assert m.via.host == "[2001:db8::9:1]"
    assert m.via.received == received


def test_mixed_ip_versions_in_vias():
    """RFC 5118 §4.7 Multiple IP Addresses in SIP Headers."""
    m = parse_all(data("rfc5118_mixed_via"))
    assert [(v.transport, v.host, v.received) for v in m.vias] == [
        ("UDP", "[2001:db8::9:1]", None),
        ("UDP", "192.0.2.1", None),
        ("TCP", "[2001:db8::9:255]", "192.0.2.200")]


def test_ipv4_mapped():
    """RFC 5118 §4.9 IPv4-Mapped IPv6 Addresses."""
    m = parse_all(data("rfc5118_ipv4_mapped"))
    assert [(v.host, v.port) for v in m.vias] == [("[::ffff:192.0.2.10]", 19823),
                                                  ("[::ffff:192.0.2.2]", 10820)]
    assert m.contact.uri.host == "[::ffff:192.0.2.2]"
    assert m.contact.uri.port == 10820
    assert m.contact.display == "T. desk phone"
    assert b"IN IP6 2001:db8::20" in m.body
    assert len(m.body) == m.content_length


# ---------------------------------------------------------------------------
# Every valid torture message survives a no-op edit and frames on a stream.

VALID = ["wsinv", "intmeth", "esc01", "escnull", "esc02", "lwsdisp", "longreq", "semiuri",
         "transports", "mpart01", "unreason", "noreason", "badbranch", "unkscm", "novelsc",
         "unksm2", "bext01", "bcast", "zeromf", "cparam01", "cparam02", "regescrt",
         "rfc5118_ipv6_good", "rfc5118_port_ambiguous", "rfc5118_port_unambiguous",
         "rfc5118_via_received_delim", "rfc5118_via_received_nodelim", "rfc5118_mixed_via",
         "rfc5118_ipv4_mapped"]


@pytest.mark.parametrize("name", VALID)
def test_valid_messages_round_trip(name):
    raw = data(name)
    m = parse_all(raw)
    assert m.raw() == raw
    assert m.edit().build() == raw
    assert frame(raw) == len(raw)
    assert parse(raw, stream=True).size == len(raw)
    m.to_dict()


@pytest.mark.parametrize("name", [n for n in VALID if not n.startswith("rfc5118")
                                  and parse(data(n)).is_request])
def test_valid_requests_take_a_proxy_hop(name):
    m = parse(data(name))
    e = m.edit()
    branch = e.push_via("proxy.example.com")
    if m.max_forwards != 0:
        e.decrement_max_forwards()
    e.add_record_route("sip:proxy.example.com")
    out = parse_all(e.build())
    assert out.branch == branch
    assert len(out.vias) == len(m.vias) + 1
    assert out.body == m.body
    assert out.call_id == m.call_id
