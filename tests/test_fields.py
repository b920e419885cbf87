"""Structured fields: URIs (RFC 3261 §19.1, §25.1; RFC 5118), name-addr
headers (§20.10, §20.20, §20.39), Via (§20.42, RFC 3581) and the rest of
what a proxy reads."""

import pytest
from conftest import parse_all, sip

from sipfast import SipError, parse, parse_name_addr, parse_uri


def req(extra: str = "", via: str = "SIP/2.0/UDP h.example.com;branch=z9hG4bKabc",
        to: str = "<sip:bob@example.com>", frm: str = "<sip:alice@example.com>;tag=1",
        ruri: str = "sip:bob@example.com", method: str = "OPTIONS") -> bytes:
    return sip(f"{method} {ruri} SIP/2.0\n"
               f"Via: {via}\n"
               f"To: {to}\n"
               f"From: {frm}\n"
               "Call-ID: cid-1\n"
               f"CSeq: 7 {method}\n"
               f"{extra}"
               "Content-Length: 0\n\n")


def validate_error(raw: bytes) -> SipError:
    msg = parse(raw)
    with pytest.raises(SipError) as info:
        msg.validate()
    assert info.value.status == 400
    return info.value


# ---------------------------------------------------------------------------
# URIs


def test_sip_uri_all_parts():
    u = parse_uri("sip:alice:secr%65t@atlanta.example.com:5061;transport=TCP;Lr;maddr=239.255.255.1"
                  "?Subject=project%20x&priority=urgent")
    assert u.scheme == "sip"
    assert u.is_sip
    assert u.user == "alice"
    assert u.password == "secret"
    assert u.host == "atlanta.example.com"
    assert u.port == 5061
    assert u.params == {"transport": "TCP", "lr": None, "maddr": "239.255.255.1"}
    assert u.param("LR") == ""
    assert u.param("Transport") == "TCP"
    assert u.param("ttl") is None
    assert u.headers == {"Subject": "project x", "priority": "urgent"}
    assert str(u) == u.text


def test_sips_and_scheme_case():
    u = parse_uri("SIPS:Bob@Biloxi.Example.COM")
    assert u.scheme == "sips"
    assert u.is_sip
    assert u.user == "Bob"
    assert u.host == "Biloxi.Example.COM"  # as written
    assert u.port is None
    assert u.user is not None and u.password is None


def test_uri_without_user():
    u = parse_uri("sip:registrar.example.com")
    assert u.user is None
    assert u.host == "registrar.example.com"
    assert u.params == {}
    assert u.headers == {}


def test_uri_bytes_argument():
    assert parse_uri(b"sip:a@b.example.com").host == "b.example.com"


@pytest.mark.parametrize("text,user", [
    ("sip:%75se%72@example.com", "user"),
    ("sip:I%20have%20spaces@example.net", "I have spaces"),
    ("sip:sips%3Auser%40example.com@example.net", "sips:user@example.com"),
    ("sip:%2541@example.com", "%41"),              # decoded exactly once
    ("sip:%25%32%35@example.com", "%25"),
    ("sip:null-%00-null@example.com", "null-\x00-null"),
    ("sip:user;par=u%40example.net@example.com", "user;par=u@example.net"),
    ("sip:%E4%BD%A0@example.com", "\u4f60"),        # UTF-8 after decoding
])
def test_user_escapes_decoded_once(text, user):
    assert parse_uri(text).user == user


def test_param_escapes_decoded_once():
    # RFC 4475 esc01: "value%41" is NOT "valueA" (RFC 3986 §2.4).
    u = parse_uri("sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31")
    assert u.user == "caller"
    assert u.params == {"lr": None, "name": "value%41"}
    assert u.param("name") == "value%41"


def test_password_and_header_escapes():
    u = parse_uri("sip:u:p%3Aw@h?h%31=%3Cv%3E&x=%2541")
    assert u.password == "p:w"
    assert u.headers == {"h1": "<v>", "x": "%41"}


@pytest.mark.parametrize("text,host,port", [
    ("sip:[2001:db8::10]", "[2001:db8::10]", None),
    ("sip:[2001:db8::10]:5070", "[2001:db8::10]", 5070),
    ("sip:[2001:db8::10:5070]", "[2001:db8::10:5070]", None),   # RFC 5118 §4.3
    ("sip:user@[::ffff:192.0.2.10]:19823", "[::ffff:192.0.2.10]", 19823),
    ("sip:user@[::1];transport=tcp", "[::1]", None),
    ("sip:192.0.2.4:0", "192.0.2.4", 0),
    ("sip:h:65535", "h", 65535),
    ("sip:h_1-x.example.com", "h_1-x.example.com", None),
])
def test_hosts_and_ports(text, host, port):
    u = parse_uri(text)
    assert u.host == host
    assert u.port == port


@pytest.mark.parametrize("text", [
    "sip:2001:db8::10",            # RFC 5118 §4.2: IPv6 without brackets
    "sip:user@2001:db8::10",
    "sip:[2001:db8::10",           # unterminated reference
    "sip:[]",
    "sip:[2001:db8::g]",
    "sip:[2001:db8::1]x",
    "sip:h:65536",                 # port > 65535
    "sip:h:99999",
    "sip:h:123456",
    "sip:h:",
    "sip:h:5o60",
    "sip:",
    "sip:@h",                      # empty user
    "sip:u@",
    "sip:u@h h",
    "sip:u@h>",
    'sip:u"@h',
    "sip:u@h;p=%zz",               # bad escapes
    "sip:%4@h",
    "sip:u@h;p=%4",
    "sip:u%@h",
    "sip:u@h\x00",
    "nocolon",
    "1sip:x",
    ":x",
    "",
])
def test_malformed_uris(text):
    with pytest.raises(SipError) as info:
        parse_uri(text)
    assert info.value.status == 400
    assert 0 <= info.value.offset <= len(text.encode())


def test_bad_escape_offset_and_reason():
    with pytest.raises(SipError) as info:
        parse_uri("sip:ab%4gcd@h")
    assert info.value.offset == 6
    assert "escape" in info.value.reason.lower()


@pytest.mark.parametrize("text,scheme", [
    ("tel:+1-201-555-0123;phone-context=example.com", "tel"),
    ("http://www.example.com/path?q=1", "http"),
    ("urn:service:sos", "urn"),
    ("soap.beep://192.0.2.103:3002", "soap.beep"),
    ("nobodyKnowsThisScheme:totallyopaquecontent", "nobodyknowsthisscheme"),
    ("isbn:2983792873", "isbn"),
])
def test_unknown_schemes_are_opaque(text, scheme):
    u = parse_uri(text)
    assert u.scheme == scheme
    assert not u.is_sip
    assert u.text == text
    assert u.user is None and u.host is None and u.port is None
    assert u.params == {} and u.headers == {}


@pytest.mark.parametrize("text", ["tel:", "tel:a b", "http://x/<y>", 'urn:a"b'])
def test_malformed_opaque_uris(text):
    with pytest.raises(SipError):
        parse_uri(text)


def test_uri_equality_and_hash():
    a, b = parse_uri("sip:a@h"), parse_uri(b"sip:a@h")
    assert a == b
    assert hash(a) == hash(b)
    assert a != parse_uri("sip:b@h")


def test_request_uri_errors_surface_on_access_and_validate():
    raw = req(ruri="sip:b%4gob@example.com")
    err = validate_error(raw)
    assert err.offset == raw.index(b"%4g")
    assert "escape" in err.reason.lower()
    msg = parse(raw)
    with pytest.raises(SipError):
        msg.uri  # noqa: B018


# ---------------------------------------------------------------------------
# name-addr: From, To, Contact, Route, Record-Route


def test_from_to_fields():
    m = parse_all(req(to='"Bob \\"B\\" Biloxi" <sip:bob@biloxi.example.com>;tag=a6c85cf;x=1',
                      frm="Alice <sip:alice@atlanta.example.com;transport=tcp>;tag=1928301774"))
    assert m.to.display == 'Bob "B" Biloxi'
    assert m.to.uri.user == "bob"
    assert m.to.tag == m.to_tag == "a6c85cf"
    assert m.to.params == {"tag": "a6c85cf", "x": "1"}
    assert m.from_.display == "Alice"
    assert m.from_.uri.params == {"transport": "tcp"}
    assert m.from_.params == {"tag": "1928301774"}  # URI params are not header params
    assert m.from_tag == "1928301774"


def test_display_name_quoted_pairs():
    na = parse_name_addr('"A \\"B\\" \\\\ C\\d" <sip:x@y>')
    assert na.display == 'A "B" \\ Cd'
    na = parse_name_addr('"J Rosenberg \\\\\\"" <sip:jdrosen@example.com>')
    assert na.display == 'J Rosenberg \\"'
    na = parse_name_addr('"Tr\u00e8s \u00e9l\u00e8ve" <sip:x@y>')
    assert na.display == "Tr\u00e8s \u00e9l\u00e8ve"
    na = parse_name_addr('"" <sip:x@y>')
    assert na.display == ""


def test_token_display_names():
    assert parse_name_addr("Alice Liddell <sip:a@w>").display == "Alice Liddell"
    # RFC 4475 lwsdisp: no LWS between the token and "<" is accepted.
    assert parse_name_addr("caller<sip:caller@example.com>;tag=323").display == "caller"
    assert parse_name_addr("<sip:a@w>").display is None
    assert parse_name_addr("sip:a@w").display is None


def test_addr_spec_params_are_header_params():
    na = parse_name_addr("sip:+19725552222@gw1.example.net;unknownparam;tag=5")
    assert na.uri.text == "sip:+19725552222@gw1.example.net"
    assert na.uri.params == {}
    assert na.params == {"unknownparam": None, "tag": "5"}
    assert na.tag == "5"
    na = parse_name_addr("<sip:+19725552222@gw1.example.net;unknownparam>")
    assert na.uri.params == {"unknownparam": None}
    assert na.params == {}


def test_header_params_lws_case_and_quoted_values():
    na = parse_name_addr('<sip:x@y> ; Expires = 60 ;FLAG; q=0.5 ;+sip.instance="<urn:uuid:1>"')
    assert na.params == {"expires": "60", "flag": None, "q": "0.5",
                         "+sip.instance": "<urn:uuid:1>"}
    assert na.param("EXPIRES") == "60"
    assert na.param("flag") == ""
    assert na.param("nope") is None
    assert na.tag is None


def test_name_addr_text_and_str():
    na = parse_name_addr('  "A" <sip:a@b>;tag=1  ')
    assert na.text == '"A" <sip:a@b>;tag=1'
    assert str(na) == na.text


@pytest.mark.parametrize("text", [
    '"unterminated <sip:x@y>',       # RFC 4475 quotbal
    "<sip:x@y",                      # unterminated angle bracket
    "Bob sip:bob@x",                 # display name without <>
    "Bell, Alexander <sip:a@b>",     # RFC 4475 baddn
    '"Watson" < sip:t@example.org >',  # RFC 4475 badaspec
    "<sip:x@y>;tag",                 # tag needs a value
    '<sip:x@y>;tag="q"',             # tag is a token
    "sip:x@y;;",
    "<sip:x@y>;;;;",                 # RFC 4475 badinv01
    "<sip:x@y> junk",
    "<sip:x@y>;=v",
    "<>",
    "<sip:@y>",
    "",
    "   ",
])
def test_malformed_name_addr(text):
    with pytest.raises(SipError) as info:
        parse_name_addr(text)
    assert info.value.status == 400
    assert 0 <= info.value.offset <= len(text.encode())


@pytest.mark.parametrize("hdr", ["To", "From"])
def test_malformed_from_to_found_by_validate(hdr):
    bad = '"Mr. J. User <sip:j.user@example.com>'
    raw = req(to=bad) if hdr == "To" else req(frm=bad)
    err = validate_error(raw)
    assert err.reason == f"Malformed {hdr} header"
    assert err.offset == raw.index(bad.encode())


def test_contacts():
    m = parse_all(req(extra='m: "Mr. Watson" <sip:watson@worcester.example.com>;q=0.7;'
                            'expires=3600, "Mr. Watson" <mailto:watson@bell.example.com>;q=0.1\n'
                            "Contact: sip:third@h3.example.com;expires=60\n"))
    cs = m.contacts
    assert len(cs) == 3
    assert cs[0].display == "Mr. Watson"
    assert cs[0].params == {"q": "0.7", "expires": "3600"}
    assert cs[1].uri.scheme == "mailto"
    assert not cs[1].uri.is_sip
    assert cs[2].uri.host == "h3.example.com"
    assert cs[2].params == {"expires": "60"}
    assert m.contact.uri.user == "watson"
    assert not m.contact_star


def test_contact_star():
    m = parse_all(req(method="REGISTER", extra="Contact: *\nExpires: 0\n"))
    assert m.contact_star
    assert m.contact is None
    assert m.contacts == []
    assert m.expires == 0


def test_no_contact():
    m = parse_all(req())
    assert m.contact is None
    assert m.contacts == []
    assert not m.contact_star


def test_route_and_record_route():
    m = parse_all(req(extra="Route: <sip:p1.example.com;lr>,\n <sip:p2.example.com;lr>\n"
                            "Record-Route: <sip:rr1.example.com;lr>, <sip:rr2.example.com;lr>\n"
                            "Route: <sip:[2001:db8::1]:5070;lr>\n"))
    assert m.route.uri.host == "p1.example.com"
    assert m.route.uri.param("lr") == ""
    assert [r.uri.host for r in m.routes] == ["p1.example.com", "p2.example.com",
                                              "[2001:db8::1]"]
    assert m.routes[2].uri.port == 5070
    assert [r.uri.host for r in m.record_routes] == ["rr1.example.com", "rr2.example.com"]


def test_absent_route():
    m = parse_all(req())
    assert m.route is None
    assert m.routes == []
    assert m.record_routes == []


@pytest.mark.parametrize("extra,reason", [
    ('Contact: "Joe" <sip:joe@example.org>;;;;\n', "Malformed Contact header"),
    ("Contact: <sip:a@b>, <sip:c@d\n", "Malformed Contact header"),
    ("Route: <sip:p1.example.com;lr\n", "Malformed Route header"),
    ("Route: <sip:p1.example.com;lr>,,\n", "Malformed Route header"),
    ("Record-Route: sip:%zz@x\n", None),
    ("Contact: sip:user@2001:db8::1\n", "Malformed Contact header"),
])
def test_malformed_list_headers_found_by_validate(extra, reason):
    err = validate_error(req(extra=extra))
    if reason:
        assert err.reason == reason


def test_unknown_scheme_in_from_to_contact():
    # RFC 4475 §3.3.4 unksm2: syntactically valid, opaque URIs.
    m = parse_all(req(to="isbn:2983792873", frm="<http://www.example.com>;tag=3234233",
                      extra="Contact: <name:John_Smith>\n"))
    assert m.to.uri.scheme == "isbn"
    assert m.to.uri.text == "isbn:2983792873"
    assert m.from_.uri.scheme == "http"
    assert m.from_tag == "3234233"
    assert m.contact.uri.text == "name:John_Smith"


def test_escaped_headers_in_contact_uri():
    m = parse_all(req(extra="M: <sip:user@example.com?Route=%3Csip:sip.example.com%3E>\n"))
    assert m.contact.uri.headers == {"Route": "<sip:sip.example.com>"}


# ---------------------------------------------------------------------------
# Via


def test_via_fields():
    m = parse_all(req(via="SIP/2.0/udp pc33.atlanta.example.com:5066;branch=z9hG4bK776;"
                          "received=192.0.2.101;rport=5060;maddr=224.2.0.1;ttl=16;"
                          "x-param=val;flag"))
    v = m.via
    assert v.protocol == "SIP/2.0"
    assert v.transport == "UDP"
    assert v.host == "pc33.atlanta.example.com"
    assert v.port == 5066
    assert v.branch == m.branch == "z9hG4bK776"
    assert v.received == "192.0.2.101"
    assert v.has_rport
    assert v.rport == 5060
    assert v.maddr == "224.2.0.1"
    assert v.ttl == 16
    assert v.params == {"branch": "z9hG4bK776", "received": "192.0.2.101", "rport": "5060",
                        "maddr": "224.2.0.1", "ttl": "16", "x-param": "val", "flag": None}
    assert v.param("X-PARAM") == "val"
    assert v.param("flag") == ""
    assert v.param("none") is None
    assert str(v) == v.text


def test_via_minimal():
    v = parse_all(req(via="SIP/2.0/TCP host.example.com")).via
    assert v.port is None
    assert v.branch is None
    assert v.received is None
    assert not v.has_rport
    assert v.rport is None
    assert v.maddr is None
    assert v.ttl is None
    assert v.params == {}


def test_via_empty_rport():
    v = parse_all(req(via="SIP/2.0/UDP h;rport;branch=z9hG4bKx")).via
    assert v.has_rport
    assert v.rport is None
    assert v.params["rport"] is None


@pytest.mark.parametrize("via,host,port", [
    ("SIP/2.0/UDP [2001:db8::9:1];branch=z9hG4bKa", "[2001:db8::9:1]", None),
    ("SIP/2.0/UDP [2001:db8::9:1]:6050;branch=z9hG4bKa", "[2001:db8::9:1]", 6050),
    ("SIP/2.0/UDP [::ffff:192.0.2.10]:19823;branch=z9hG4bKa", "[::ffff:192.0.2.10]", 19823),
    ("SIP/2.0/UDP 255.255.255.255;branch=z9hG4bKa", "255.255.255.255", None),
    ("SIP/2.0/TCP host : 5061 ;branch=z9hG4bKa", "host", 5061),
])
def test_via_hosts(via, host, port):
    v = parse_all(req(via=via)).via
    assert v.host == host
    assert v.port == port


@pytest.mark.parametrize("received", ["[2001:db8::9:255]", "2001:db8::9:255"])
def test_via_received_ipv6_with_and_without_brackets(received):
    # RFC 5118 §4.5: both forms are to be accepted in received.
    v = parse_all(req(via=f"SIP/2.0/UDP [2001:db8::9:1];received={received};branch=z9hG4bKa")).via
    assert v.received == received
    assert v.branch == "z9hG4bKa"


def test_via_lws_everywhere():
    m = parse_all(sip(
        "OPTIONS sip:b@example.com SIP/2.0\n"
        "Via  : SIP  /   2.0\n /UDP\n    192.0.2.2;branch=390skdjuw\n"
        "v:  SIP  / 2.0  / TCP     spindle.example.com   ;\n  branch  =   z9hG4bK9ikj8  ,\n"
        " SIP  /    2.0   / UDP  192.168.255.111   ; branch=\n z9hG4bK30239\n"
        "To: <sip:b@example.com>\nFrom: <sip:a@example.com>;tag=1\nCall-ID: c\n"
        "CSeq: 1 OPTIONS\n\n"))
    assert [(v.protocol, v.transport, v.host, v.branch) for v in m.vias] == [
        ("SIP/2.0", "UDP", "192.0.2.2", "390skdjuw"),
        ("SIP/2.0", "TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("SIP/2.0", "UDP", "192.168.255.111", "z9hG4bK30239"),
    ]


def test_vias_over_lines_and_commas():
    m = parse_all(req(extra="Via: SIP/2.0/SCTP b.example.com;branch=z9hG4bK2, "
                            "SIP/2.0/TLS c.example.com:5061;branch=z9hG4bK3\n"
                            "v: SIP/2.0/WS d.invalid;branch=z9hG4bK4\n"))
    assert [(v.transport, v.host) for v in m.vias] == [
        ("UDP", "h.example.com"), ("SCTP", "b.example.com"), ("TLS", "c.example.com"),
        ("WS", "d.invalid")]
    assert m.via.host == "h.example.com"


@pytest.mark.parametrize("via", [
    "SIP/2.0/UDP 2001:db8::1;branch=z9hG4bKa",     # RFC 5118 §4.2: no brackets
    "SIP/2.0/UDP [2001:db8::1;branch=z9hG4bKa",
    "SIP/2.0/UDP h:65536;branch=z9hG4bKa",
    "SIP/2.0/UDP h:;branch=z9hG4bKa",
    "SIP/2.0/UDP;branch=z9hG4bKa",                  # no sent-by
    "SIP/2.0 h;branch=z9hG4bKa",                    # no transport
    "SIP/2.0/UDPh",                                 # no LWS before sent-by
    "SIP//UDP h",
    "SIP/2.0/UDP h;branch",                         # branch needs a value
    "SIP/2.0/UDP h;received",
    "SIP/2.0/UDP h;;branch=z9hG4bKa",
    "SIP/2.0/UDP 192.0.2.15;;,;,,",                 # RFC 4475 badinv01
    "SIP/2.0/UDP h;branch=z9hG4bKa junk",
    "SIP/2.0/UDP h;branch=z9hG4bKa,",
    "",
])
def test_malformed_via(via):
    raw = req(via=via)
    msg = parse(raw)
    with pytest.raises(SipError) as info:
        msg.validate()
    assert info.value.status == 400
    assert info.value.reason == "Malformed Via header"
    start = raw.index(b"Via:")
    assert start <= info.value.offset <= raw.index(b"\r\n", start)


@pytest.mark.parametrize("param", ["rport=abc", "rport=70000", "ttl=256", "ttl=abc"])
def test_malformed_via_numeric_params(param):
    # RFC 3581 §3: response-port = "rport" [EQUAL 1*DIGIT] (a port);
    # RFC 3261 §25.1: ttl = 1*3DIGIT ; 0 to 255.
    err = validate_error(req(via=f"SIP/2.0/UDP h;branch=z9hG4bKa;{param}"))
    assert err.reason == "Malformed Via header"


def test_malformed_top_via_surfaces_on_access():
    raw = req(via="SIP/2.0/UDP 2001:db8::1;branch=z9hG4bKa")
    m = parse(raw)
    for attr in ("via", "branch", "vias"):
        with pytest.raises(SipError):
            getattr(m, attr)


def test_malformed_via_in_response_is_flagged():
    raw = sip("SIP/2.0 200 OK\nVia: SIP/2.0/UDP h;branch\nTo: <sip:a@b>;tag=2\n"
              "From: <sip:a@b>;tag=1\nCall-ID: c\nCSeq: 1 OPTIONS\n\n")
    m = parse(raw)
    with pytest.raises(SipError) as info:
        m.validate()
    assert info.value.is_response


# ---------------------------------------------------------------------------
# Lazy validation: a proxy only pays for what it reads, validate() reads all.


def test_validate_checks_second_via_and_later_contacts():
    raw = req(extra="Via: SIP/2.0/UDP ok.example.com;branch=z9hG4bK2, bad via\n")
    m = parse(raw)
    assert m.via.host == "h.example.com"   # top Via is fine
    with pytest.raises(SipError):
        m.validate()
    raw = req(extra="Contact: <sip:a@b>, <sip:c@d\n")
    m = parse(raw)
    with pytest.raises(SipError):
        m.validate()
