"""Message parsing: start line, header section, framing, limits and errors
(RFC 3261 §7, §7.3, §7.4, §7.5, §18.3, §20, §25)."""

import pytest
from conftest import INVITE, sip

import sipfast
from sipfast import SipError, frame, parse

RESPONSE = sip("""\
SIP/2.0 180 Ringing
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds;received=192.0.2.1
To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774
Call-ID: a84b4c76e66710
CSeq: 314159 INVITE
Content-Length: 0

""")


def req(start_line: str = "OPTIONS sip:bob@example.com SIP/2.0", method: str | None = None,
        extra: str = "", body: str = "", cl: bool = True) -> bytes:
    """A small valid request whose start line and extra headers can be varied."""
    method = method or start_line.split(" ", 1)[0]
    text = (f"{start_line}\n"
            "Via: SIP/2.0/UDP h.example.com;branch=z9hG4bKabc\n"
            "To: <sip:bob@example.com>\n"
            "From: <sip:alice@example.com>;tag=1\n"
            "Call-ID: cid-1\n"
            f"CSeq: 7 {method}\n"
            f"{extra}")
    if cl:
        text += f"Content-Length: {len(body.encode())}\n"
    return sip(text + "\n") + body.encode()


def raises(raw: bytes, status: int = 400, **kwargs) -> SipError:
    with pytest.raises(SipError) as info:
        parse(raw, **kwargs)
    assert info.value.status == status, info.value
    return info.value


# ---------------------------------------------------------------------------
# Start line


def test_request_line_fields(invite_msg):
    m = invite_msg
    assert m.is_request
    assert m.method == "INVITE"
    assert m.uri_text == "sip:bob@biloxi.example.com"
    assert m.uri.host == "biloxi.example.com"
    assert m.version == "SIP/2.0"
    assert m.status == 0
    assert m.reason == ""


def test_status_line_fields():
    m = parse(RESPONSE)
    assert not m.is_request
    assert m.status == 180
    assert m.reason == "Ringing"
    assert m.version == "SIP/2.0"
    assert m.method == "INVITE"  # from CSeq
    assert m.uri is None
    assert m.uri_text == ""


@pytest.mark.parametrize("method", [
    "INVITE", "FOO", "NEWMETHOD", "X-MY.METHOD", "a!%*_+`'~-.b", "PUBLISH", "UPDATE"])
def test_method_is_any_token(method):
    assert parse(req(f"{method} sip:bob@example.com SIP/2.0")).method == method


def test_method_is_case_sensitive():
    # "invite" is a different (extension) method: CSeq must say "invite" too.
    assert parse(req("invite sip:bob@example.com SIP/2.0")).method == "invite"
    err = raises(req("invite sip:bob@example.com SIP/2.0", method="INVITE"))
    assert err.reason == "CSeq method does not match request method"


@pytest.mark.parametrize("version", ["SIP/2.0", "sip/2.0", "Sip/2.0"])
def test_sip_version_literal_is_case_insensitive(version):
    # RFC 3261 §7.1: the SIP-Version string is case-insensitive.
    assert parse(req(f"OPTIONS sip:bob@example.com {version}")).version == "SIP/2.0"


@pytest.mark.parametrize("version", ["SIP/3.0", "SIP/1.0", "SIP/2.1", "SIP/20.0", "SIP/7.0"])
def test_other_sip_versions_are_505(version):
    err = raises(req(f"OPTIONS sip:bob@example.com {version}"), 505)
    assert not err.is_response
    assert "version" in err.reason.lower()


@pytest.mark.parametrize("version", ["HTTP/1.1", "SIP/2", "SIP/2.", "SIP/.0", "SIP/a.b", "SIP2.0",
                                     "SIP/2.0x"])
def test_garbage_version_is_400(version):
    line = f"OPTIONS sip:bob@example.com {version}"
    err = raises(req(line), 400)
    assert err.offset == line.index(version[0], len("OPTIONS sip:bob@example.com"))


def test_response_with_bad_version():
    err = raises(RESPONSE.replace(b"SIP/2.0 180", b"SIP/3.0 180"), 505)
    assert err.is_response
    err = raises(RESPONSE.replace(b"SIP/2.0 180", b"SIP/2.x 180"), 400)
    assert err.is_response


@pytest.mark.parametrize("code", [100, 199, 200, 302, 404, 487, 500, 606, 699])
def test_status_codes_in_range(code):
    assert parse(RESPONSE.replace(b"180 Ringing", f"{code} Whatever".encode())).status == code


@pytest.mark.parametrize("status_line", [
    "SIP/2.0 099 Low", "SIP/2.0 700 High", "SIP/2.0 999 High", "SIP/2.0 2000 Long",
    "SIP/2.0 20 Short", "SIP/2.0 2x0 Alpha", "SIP/2.0 -20 Neg", "SIP/2.0  200 TwoSpaces",
    "SIP/2.0 200OK", "SIP/2.0"])
def test_bad_status_codes(status_line):
    err = raises(RESPONSE.replace(b"SIP/2.0 180 Ringing", status_line.encode()), 400)
    assert err.is_response
    assert 0 <= err.offset <= len(status_line)


def test_reason_phrase_may_be_empty_or_utf8():
    m = parse(RESPONSE.replace(b"180 Ringing", b"180 "))
    assert m.reason == ""
    m = parse(RESPONSE.replace(b"180 Ringing", "200 Très bien – 好".encode()))
    assert m.reason == "Très bien – 好"
    m = parse(RESPONSE.replace(b"180 Ringing", b"404 Not %46ound  here"))
    assert m.reason == "Not %46ound  here"  # raw text, two spaces kept


def test_reason_phrase_with_control_character_is_rejected():
    raw = RESPONSE.replace(b"180 Ringing", b"180 Ring\x00ing")
    err = raises(raw)
    assert err.is_response
    assert err.offset == raw.index(b"\x00")


@pytest.mark.parametrize("line", [
    "OPTIONS  sip:bob@example.com SIP/2.0",      # two spaces after method
    "OPTIONS sip:bob@example.com  SIP/2.0",      # two spaces before version
    "OPTIONS sip:bob@example.com SIP/2.0 ",      # trailing space
    " OPTIONS sip:bob@example.com SIP/2.0",      # leading space
    "OPTIONS\tsip:bob@example.com SIP/2.0",      # tab instead of SP
    "OPTIONS sip:bob@example.com",               # no version
    "OPTIONS",                                   # method only
    "OPTIONS  SIP/2.0",                          # no R-URI
    "OPTI(ONS sip:bob@example.com SIP/2.0",     # non-token method
    "OPTIONS <sip:bob@example.com> SIP/2.0",     # R-URI in <> (RFC 4475 ltgtruri)
    "OPTIONS bob@example.com SIP/2.0",           # no scheme
    "OPTIONS 1sip:bob@example.com SIP/2.0",      # scheme must start with ALPHA
])
def test_malformed_request_lines(line):
    err = raises(req(line, method="OPTIONS"))
    assert not err.is_response
    assert 0 <= err.offset <= len(line)


def test_nul_in_request_line():
    raw = req("OPTIONS sip:bob@exa\x00mple.com SIP/2.0")
    err = raises(raw)
    assert err.offset == raw.index(b"\x00")
    raw = req("OPT\x00IONS sip:bob@example.com SIP/2.0", method="OPTIONS")
    err = raises(raw)
    assert err.offset == raw.index(b"\x00")


def test_leading_crlf_before_start_line_is_ignored():
    # RFC 3261 §7.5: CRLFs before the start line are skipped.
    m = parse(b"\r\n\r\n" + INVITE)
    assert m.method == "INVITE"
    assert m.body == b"abcd"


def test_bare_lf_line_ends_are_accepted():
    raw = INVITE.replace(b"\r\n", b"\n")
    m = parse(raw)
    assert m.call_id == "a84b4c76e66710@pc33.atlanta.example.com"
    assert m.body == b"abcd"


def test_request_uri_kinds():
    for uri in ("sips:bob@example.com", "tel:+1-201-555-0123", "urn:service:sos",
                "http://www.example.com/x?y=z", "sip:[2001:db8::1]:5070"):
        m = parse(req(f"OPTIONS {uri} SIP/2.0"))
        m.validate()
        assert m.uri_text == uri
        assert m.uri.text == uri


# ---------------------------------------------------------------------------
# Header section


def test_header_names_are_case_insensitive(invite_msg):
    m = invite_msg
    for name in ("call-id", "CALL-ID", "Call-Id", "cAlL-iD", "i", "I"):
        assert m.get(name) == "a84b4c76e66710@pc33.atlanta.example.com"
        assert name in m
    assert m.get(b"call-id") == "a84b4c76e66710@pc33.atlanta.example.com"
    assert "Subject" not in m
    assert 42 not in m
    assert m.get("Subject") is None
    assert m.get("Subject", "dflt") == "dflt"


COMPACT = {
    "i": ("Call-ID", "cid-1"),
    "m": ("Contact", "<sip:a@h1>"),
    "e": ("Content-Encoding", "gzip"),
    "l": ("Content-Length", "0"),
    "c": ("Content-Type", "text/plain"),
    "f": ("From", "<sip:alice@example.com>;tag=1"),
    "s": ("Subject", "lunch"),
    "k": ("Supported", "100rel"),
    "t": ("To", "<sip:bob@example.com>"),
    "v": ("Via", "SIP/2.0/UDP h.example.com;branch=z9hG4bKabc"),
    "o": ("Event", "presence"),
    "r": ("Refer-To", "<sip:carol@example.com>"),
    "b": ("Referred-By", "<sip:dave@example.com>"),
    "u": ("Allow-Events", "dialog"),
    "x": ("Session-Expires", "1800"),
    "y": ("Identity", "c2lnbmF0dXJl"),
    "a": ("Accept-Contact", "*;audio"),
    "j": ("Reject-Contact", "*;video"),
    "d": ("Request-Disposition", "proxy"),
    "n": ("Identity-Info", "<https://example.com/cert>"),
}


@pytest.mark.parametrize("letter", sorted(COMPACT))
@pytest.mark.parametrize("upper", [False, True])
def test_every_compact_form(letter, upper):
    long_name, value = COMPACT[letter]
    written = letter.upper() if upper else letter
    text = ("OPTIONS sip:bob@example.com SIP/2.0\n"
            "Via: SIP/2.0/UDP h.example.com;branch=z9hG4bKabc\n"
            "To: <sip:bob@example.com>\n"
            "From: <sip:alice@example.com>;tag=1\n"
            "Call-ID: cid-1\n"
            "CSeq: 7 OPTIONS\n")
    # Replace the long form if the message already carries it, else add it.
    lines = [ln for ln in text.splitlines() if not ln.lower().startswith(long_name.lower() + ":")]
    lines.append(f"{written}: {value}")
    m = parse(sip("\n".join(lines) + "\n\n"))
    m.validate()
    for name in (long_name, long_name.upper(), long_name.lower(), letter, letter.upper()):
        assert m.get(name) == value, name
        assert name in m
    assert m.get_all(long_name) == [value]
    assert (written, value) in m.headers


def test_compact_and_long_forms_mix_in_order():
    m = parse(req(extra="v: SIP/2.0/TCP second.example.com;branch=z9hG4bK2\n"
                        "VIA: SIP/2.0/UDP third.example.com;branch=z9hG4bK3\n"))
    assert [v.host for v in m.vias] == ["h.example.com", "second.example.com",
                                        "third.example.com"]
    assert m.get_all("v") == m.get_all("Via")


def test_line_folding():
    raw = req(extra="Subject: I know you're there,\n pick up the phone\n\tand talk to me!\n")
    m = parse(raw)
    assert m.get("Subject") == "I know you're there, pick up the phone and talk to me!"
    assert m.get_all("subject") == ["I know you're there, pick up the phone and talk to me!"]
    assert m.header_count == 7


def test_folded_structured_headers():
    raw = sip("""\
REGISTER sip:example.com SIP/2.0
Via:
 SIP/2.0/UDP
  h.example.com
 ;branch=z9hG4bKfold
To:
 <sip:bob@example.com>
From: <sip:bob@example.com>
 ;tag=abc
Call-ID: fold
CSeq: 1
\tREGISTER
Max-Forwards:
 69
Content-Length:
 0

""")
    m = parse(raw)
    m.validate()
    assert m.via.host == "h.example.com"
    assert m.branch == "z9hG4bKfold"
    assert m.from_tag == "abc"
    assert m.cseq == 1 and m.cseq_method == "REGISTER"
    assert m.max_forwards == 69
    assert m.content_length == 0


def test_space_before_colon_is_allowed():
    m = parse(req(extra="Subject \t : hi\nMax-Forwards   :  7\n"))
    assert m.get("Subject") == "hi"
    assert m.max_forwards == 7


def test_list_values_split_on_commas_outside_quotes_and_brackets():
    m = parse(req(extra=(
        'Contact: "Doe, John" <sip:j@h1;p=a,b>;q=0.5, <sip:k@h2>,sip:l@h3\n'
        "Allow: INVITE, ACK ,BYE,\tCANCEL\n"
        "Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\n"
        "Route: <sip:p3.example.com;lr>\n")))
    assert m.get_all("Contact") == ['"Doe, John" <sip:j@h1;p=a,b>;q=0.5', "<sip:k@h2>",
                                    "sip:l@h3"]
    assert m.get("Contact") == '"Doe, John" <sip:j@h1;p=a,b>;q=0.5'
    assert m.get_all("Allow") == ["INVITE", "ACK", "BYE", "CANCEL"]
    assert m.get("allow") == "INVITE"
    assert m.get_all("route") == ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>",
                                  "<sip:p3.example.com;lr>"]
    assert [c.display for c in m.contacts] == ["Doe, John", None, None]


def test_empty_list_header_has_no_values():
    # RFC 3261 §20.5: Allow = "Allow" HCOLON [Method *(COMMA Method)]; an
    # empty Allow means "no methods", not one method named "".
    m = parse(req(extra="Allow:\n"))
    assert "Allow" in m
    assert m.get_all("Allow") == []


def test_repeated_header_lines_keep_order():
    m = parse(req(extra="X-Hop: 1\nSubject: s\nx-hop: 2, 3\nX-HOP: 4\n"))
    # An unknown header is never split on commas.
    assert m.get_all("X-Hop") == ["1", "2, 3", "4"]
    assert m.get("x-hop") == "1"
    names = [n for n, _ in m.headers]
    assert names[-5:] == ["X-Hop", "Subject", "x-hop", "X-HOP", "Content-Length"]


def test_unknown_headers_are_opaque(invite_msg):
    m = invite_msg
    assert m.get("X-Opaque") == ';;,,<weird "value'
    assert m.get_all("x-opaque") == [';;,,<weird "value']
    assert ("X-Opaque", ';;,,<weird "value') in m.headers
    m.validate()  # an unknown header is never parsed


def test_headers_list_order_and_names_as_written(invite_msg):
    names = [n for n, _ in invite_msg.headers]
    assert names == ["Via", "Max-Forwards", "To", "From", "Call-ID", "CSeq", "Contact",
                     "X-Opaque", "Content-Type", "Content-Length"]
    assert invite_msg.header_count == 10


def test_empty_header_value():
    m = parse(req(extra="Subject:\nX-Empty:   \n"))
    assert m.get("Subject") == ""
    assert m.get("X-Empty") == ""


def test_unusual_but_valid_header_names():
    m = parse(req(extra="X-!%*_+`'~.Name: v\n"))
    assert m.get("x-!%*_+`'~.name") == "v"


@pytest.mark.parametrize("line", [
    "Max-Forwards 70",          # no colon
    "Max Forwards: 70",         # space inside the name
    "Max(Forwards): 70",        # non-token character
    ": 70",                     # empty name
    "Max-Forwards\x00: 70",     # NUL in the name
    "Ma\x7fx: 1",               # DEL in the name
    "Caf\xe9: 1",               # non-ASCII byte in the name
])
def test_malformed_header_lines(line):
    raw = req(extra="Subject: s\n").replace(b"Subject: s", line.encode("latin-1"))
    err = raises(raw)
    start = raw.index(line.encode("latin-1"))
    assert start <= err.offset <= start + len(line)


def test_header_line_starting_with_whitespace_after_start_line():
    raw = INVITE.replace(b"\r\nVia:", b"\r\n Via:", 1)
    err = raises(raw)
    assert err.offset == raw.index(b" Via:")


@pytest.mark.parametrize("value", [b"a\x00b", b"a\rb"])
def test_control_characters_in_header_values_are_rejected(value):
    # RFC 3261 §25.1: header values are TEXT-UTF8 / LWS; NUL and a CR that
    # is not part of CRLF can only appear inside a quoted-pair of a known
    # structured header (RFC 4475 §3.1.1.2), never in an extension header.
    raw = req(extra="X-Ctl: " + value.decode("latin-1") + "\n")
    err = raises(raw)
    assert err.offset == raw.index(value) + 1


def test_nul_in_structured_header_is_rejected():
    # A raw NUL is no TEXT-UTF8char (§25.1): refused while parsing already.
    raw = req().replace(b"To: <sip:bob@example.com>", b"To: <sip:bob@exa\x00mple.com>")
    err = raises(raw)
    assert err.status == 400
    assert err.offset == raw.index(b"\x00")
    assert err.reason == "Control character in header value"


def test_nul_in_call_id_is_rejected():
    raw = req().replace(b"Call-ID: cid-1", b"Call-ID: cid\x00-1")
    err = raises(raw)
    assert err.offset == raw.index(b"\x00")
    assert err.reason == "Control character in header value"


# ---------------------------------------------------------------------------
# Mandatory and singleton headers


@pytest.mark.parametrize("name", ["Via", "To", "From", "Call-ID", "CSeq"])
def test_missing_mandatory_header(name):
    lines = [ln for ln in req().decode().split("\r\n") if not ln.startswith(name + ":")]
    raw = "\r\n".join(lines).encode()
    err = raises(raw)
    assert err.reason == f"Missing {name} header"


def test_missing_header_in_response_is_flagged_as_response():
    raw = RESPONSE.replace(b"Call-ID: a84b4c76e66710\r\n", b"")
    err = raises(raw)
    assert err.reason == "Missing Call-ID header"
    assert err.is_response


@pytest.mark.parametrize("name,line", [
    ("Call-ID", "Call-ID: other"),
    ("Call-ID", "i: other"),
    ("CSeq", "CSeq: 7 OPTIONS"),
    ("From", "f: <sip:x@example.com>;tag=2"),
    ("To", "To: <sip:y@example.com>"),
    ("Max-Forwards", "Max-Forwards: 70\nMax-Forwards: 69"),
    ("Content-Length", "l: 0"),
    ("Content-Type", "Content-Type: a/b\nc: c/d"),
    ("Expires", "Expires: 1\nExpires: 2"),
])
def test_duplicate_singleton_headers(name, line):
    raw = req(extra=line + "\n")
    err = raises(raw)
    assert err.reason == f"Duplicate {name} header"
    # The offset points at the start of the second line of that header.
    forms = {name.lower(), {"Call-ID": "i", "From": "f", "To": "t", "Content-Length": "l",
                            "Content-Type": "c"}.get(name, name).lower()}
    starts, pos = [], 0
    for ln in raw.split(b"\r\n"):
        if ln.split(b":")[0].strip().decode().lower() in forms:
            starts.append(pos)
        pos += len(ln) + 2
    assert err.offset == starts[1]


def test_call_id_must_not_be_empty_or_spaced():
    err = raises(req().replace(b"Call-ID: cid-1", b"Call-ID:"))
    assert err.reason == "Malformed Call-ID header"
    raw = req().replace(b"Call-ID: cid-1", b"Call-ID: cid 1")
    err = raises(raw)
    assert err.offset == raw.index(b"cid 1") + 3


def test_call_id_word_characters():
    cid = "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert parse(req().replace(b"cid-1", cid.encode())).call_id == cid


# ---------------------------------------------------------------------------
# CSeq, Max-Forwards, Content-Length, Expires


@pytest.mark.parametrize("value,num", [("1 OPTIONS", 1), ("0009 OPTIONS", 9),
                                       ("0 OPTIONS", 0), ("2147483647 OPTIONS", 2 ** 31 - 1),
                                       ("42\t OPTIONS", 42), ("42\n  OPTIONS", 42)])
def test_cseq_values(value, num):
    m = parse(req().replace(b"CSeq: 7 OPTIONS", sip("CSeq: " + value)))
    assert m.cseq == num
    assert m.cseq_method == "OPTIONS"


@pytest.mark.parametrize("value", [
    "2147483648 OPTIONS",             # RFC 3261 §8.1.1.5: < 2**31
    "4294967296 OPTIONS",
    "36893488147419103232 OPTIONS",   # RFC 4475 scalar02
    "-1 OPTIONS", "x OPTIONS", "OPTIONS", "7", "7OPTIONS", "7 OPTIONS extra", "7 OPT;IONS", ""])
def test_malformed_cseq(value):
    raw = req().replace(b"CSeq: 7 OPTIONS", ("CSeq: " + value).encode())
    err = raises(raw)
    assert err.reason in ("Malformed CSeq header", "CSeq method does not match request method")
    line = raw.index(b"CSeq:")
    assert line <= err.offset <= raw.index(b"\r\n", line)


def test_cseq_method_mismatch():
    raw = req().replace(b"CSeq: 7 OPTIONS", b"CSeq: 7 INVITE")
    err = raises(raw)
    assert err.reason == "CSeq method does not match request method"
    assert err.offset == raw.index(b"INVITE")


def test_response_cseq_method_is_free():
    m = parse(RESPONSE.replace(b"314159 INVITE", b"1 FOOBAR"))
    assert m.method == m.cseq_method == "FOOBAR"


@pytest.mark.parametrize("value,num", [("70", 70), ("0", 0), ("0068", 68), ("255", 255)])
def test_max_forwards(value, num):
    assert parse(req(extra=f"Max-Forwards: {value}\n")).max_forwards == num


def test_max_forwards_absent():
    assert parse(req()).max_forwards is None


@pytest.mark.parametrize("value", ["", "x", "-1", "7 0", "7a", "0x10"])
def test_malformed_max_forwards(value):
    raw = req(extra=f"Max-Forwards: {value}\n")
    err = raises(raw)
    assert err.reason == "Malformed Max-Forwards header"


@pytest.mark.parametrize("value", ["-4", "four", "4 4", "+4", "4.0", "0x4", ""])
def test_malformed_content_length(value):
    raw = INVITE.replace(b"Content-Length: 4", f"Content-Length: {value}".encode())
    err = raises(raw)
    assert err.reason == "Malformed Content-Length header"
    assert err.offset == raw.index(b"Content-Length:") + len("Content-Length: ")


def test_content_length_leading_zeros_and_compact():
    m = parse(INVITE.replace(b"Content-Length: 4", b"l:  0004"))
    assert m.content_length == 4
    assert m.body == b"abcd"


@pytest.mark.parametrize("value,num", [("0", 0), ("3600", 3600), ("4294967295", 2 ** 32 - 1),
                                       ("4294967296", 2 ** 32 - 1),
                                       ("1" + "0" * 100, 2 ** 32 - 1)])
def test_expires_capped(value, num):
    m = parse(req(extra=f"Expires: {value}\n"))
    assert m.expires == num
    m.validate()


def test_expires_absent_and_malformed():
    assert parse(req()).expires is None
    m = parse(req(extra="Expires: Thu, 01 Dec 1994 16:00:00 GMT\n"))
    with pytest.raises(SipError) as info:
        m.expires  # noqa: B018
    assert info.value.status == 400
    with pytest.raises(SipError):
        m.validate()


def test_content_type(invite_msg):
    assert invite_msg.content_type == "application/sdp"
    assert parse(req()).content_type is None
    m = parse(req(extra="c: multipart/mixed;boundary=7a9cbec02ceef655\n"))
    assert m.content_type == "multipart/mixed;boundary=7a9cbec02ceef655"


# ---------------------------------------------------------------------------
# Framing (RFC 3261 §18.3)


def test_datagram_body_is_content_length(invite):
    m = parse(invite)
    assert m.body == b"abcd"
    assert m.content_length == 4
    assert m.size == len(invite)
    assert m.body_offset == len(invite) - 4
    assert m.raw() == invite


def test_datagram_extra_bytes_are_ignored(invite):
    m = parse(invite + b"trailing junk\r\n")
    assert m.body == b"abcd"
    assert m.size == len(invite)
    assert m.raw() == invite


def test_datagram_body_shorter_than_content_length(invite):
    raw = invite.replace(b"Content-Length: 4", b"Content-Length: 5")
    err = raises(raw)
    assert err.reason == "Body shorter than Content-Length"
    assert err.offset == len(raw)


def test_datagram_without_content_length_takes_the_rest(invite):
    raw = invite.replace(b"Content-Length: 4\r\n", b"")
    m = parse(raw)
    assert m.body == b"abcd"
    assert m.content_length == 4
    assert m.size == len(raw)


def test_datagram_missing_blank_line():
    raw = req().rstrip(b"\r\n") + b"\r\n"
    err = raises(raw)
    assert err.status == 400
    raw = req()[:-2]  # no final CRLF at all
    assert raises(raw).status == 400


def test_stream_frames_by_content_length(invite):
    m = parse(invite + b"INVITE sip:next", stream=True)
    assert m.size == len(invite)
    assert m.body == b"abcd"


def test_stream_without_content_length_has_empty_body(invite):
    raw = invite.replace(b"Content-Length: 4\r\n", b"")
    m = parse(raw, stream=True)
    assert m.body == b""
    assert m.size == len(raw) - 4


def test_parse_accepts_buffer_types(invite):
    for buf in (bytearray(invite), memoryview(invite), memoryview(bytearray(invite))):
        m = parse(buf)
        assert m.call_id == "a84b4c76e66710@pc33.atlanta.example.com"
        assert m.body == b"abcd"
    # A slice of a larger buffer.
    big = b"xxxx" + invite + b"yyyy"
    m = parse(memoryview(big)[4:4 + len(invite)])
    assert m.raw() == invite


def test_frame_complete_message(invite):
    assert frame(invite) == len(invite)
    assert frame(bytearray(invite)) == len(invite)
    assert frame(memoryview(invite)) == len(invite)


def test_frame_incomplete_returns_zero(invite):
    assert frame(b"") == 0
    for cut in (1, 10, invite.index(b"\r\n\r\n"), invite.index(b"\r\n\r\n") + 3,
                len(invite) - 1):
        assert frame(invite[:cut]) == 0, cut


def test_frame_keep_alive_run():
    # RFC 5626 §3.5.1: a CRLF run between messages is a keep-alive; it is
    # framed on its own so that a CRLFCRLF ping can be answered at once.
    assert frame(b"\r\n\r\n") == 4
    assert frame(b"\r\n") == 2
    assert frame(b"\n") == 1


def test_frame_keep_alive_then_message(invite):
    buf = b"\r\n\r\n" + invite
    units = []
    while buf:
        n = frame(buf)
        assert n > 0
        units.append(buf[:n])
        buf = buf[n:]
    assert units == [b"\r\n\r\n", invite]


def test_frame_two_pipelined_messages(invite):
    other = req(body="hello")
    buf = invite + other
    n = frame(buf)
    assert n == len(invite)
    assert parse(buf[:n], stream=True).call_id == "a84b4c76e66710@pc33.atlanta.example.com"
    rest = buf[n:]
    assert frame(rest) == len(other)
    m = parse(rest, stream=True)
    assert m.body == b"hello"
    # parse(stream=True) on the whole buffer frames the first one only.
    assert parse(buf, stream=True).size == len(invite)


def test_frame_without_content_length_means_empty_body(invite):
    raw = invite.replace(b"Content-Length: 4\r\n", b"")
    assert frame(raw) == len(raw) - 4


def test_frame_compact_and_spaced_content_length(invite):
    raw = invite.replace(b"Content-Length: 4", b"l :  4")
    assert frame(raw) == len(raw)


def test_frame_folded_content_length(invite):
    # RFC 3261 §7.3.1: LWS (including a line fold) may follow the colon.
    raw = invite.replace(b"Content-Length: 4", b"Content-Length:\r\n 4")
    assert parse(raw, stream=True).size == len(raw)
    assert frame(raw) == len(raw)


@pytest.mark.parametrize("value", [b"-1", b"x", b"", b"1 2"])
def test_frame_malformed_content_length(invite, value):
    with pytest.raises(SipError) as info:
        frame(invite.replace(b"Content-Length: 4", b"Content-Length: " + value))
    assert info.value.status == 400


def test_frame_limits(invite):
    with pytest.raises(SipError) as info:
        frame(invite.replace(b"Content-Length: 4", b"Content-Length: 70000"))
    assert info.value.status == 413
    with pytest.raises(SipError) as info:
        frame(b"A" * 70000)
    assert info.value.status == 513
    with pytest.raises(SipError) as info:
        frame(invite[:300], max_size=200)
    assert info.value.status == 513


# ---------------------------------------------------------------------------
# Limits


def test_max_size(invite):
    assert parse(invite, max_size=len(invite)).size == len(invite)
    err = raises(invite, 513, max_size=len(invite) - 1)
    assert err.reason == "Message too large"


def test_max_size_stream(invite):
    err = raises(invite + invite, 513, stream=True, max_size=len(invite) - 1)
    assert err.status == 513
    assert parse(invite + invite, stream=True, max_size=len(invite)).size == len(invite)


def test_default_max_size():
    big = req(extra="X-Big: " + "a" * 8000 + "\n", body="b" * 60000)
    assert len(big) > sipfast.DEFAULT_MAX_SIZE
    raises(big, 513)


def test_max_headers(invite):
    n = parse(invite).header_count
    assert parse(invite, max_headers=n).header_count == n
    err = raises(invite, 513, max_headers=n - 1)
    assert err.reason == "Too many headers"
    raw = req(extra="".join(f"X-H{i}: {i}\n" for i in range(sipfast.DEFAULT_MAX_HEADERS)))
    assert raises(raw, 513).reason == "Too many headers"


def test_max_line(invite):
    raw = req(extra="X-Long: " + "a" * 200 + "\n")
    assert parse(raw, max_line=300).get("X-Long") == "a" * 200
    err = raises(raw, 513, max_line=100)
    assert err.reason == "Line too long"
    assert err.offset == raw.index(b"X-Long")
    err = raises(invite, 513, max_line=20)
    assert err.offset == 0  # the start line
    raw = req(extra="X-Long: " + "a" * (sipfast.DEFAULT_MAX_LINE + 10) + "\n")
    assert raises(raw, 513).reason == "Line too long"


def test_content_length_over_max_size_is_413(invite):
    raw = invite.replace(b"Content-Length: 4", b"Content-Length: 70000")
    err = raises(raw, 413)
    assert err.offset == raw.index(b"70000")
    raw = invite.replace(b"Content-Length: 4", b"Content-Length: 1000")
    raises(raw, 413, max_size=900)


# ---------------------------------------------------------------------------
# Degenerate input


@pytest.mark.parametrize("raw", [b"", b"\r\n", b"\r\n\r\n\r\n", b"\n\n"])
def test_empty_input(raw):
    err = raises(raw)
    assert err.reason == "Empty message"


@pytest.mark.parametrize("raw", [b"INVITE", b"INVITE sip:a@b SIP/2.0", b"\x00\x00\x00\x00",
                                 b"SIP/2.0 200 OK", b"\xff\xfe\xfd\r\n\r\n",
                                 b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"])
def test_garbage_input(raw):
    with pytest.raises(SipError) as info:
        parse(raw)
    assert info.value.status == 400


def test_sip_error_str():
    err = raises(req("OPTIONS sip:bob@example.com SIP/3.0"), 505)
    assert str(err).startswith("505 ")
    assert f"at byte {err.offset}" in str(err)


def test_message_repr(invite_msg):
    assert "INVITE" in repr(invite_msg)
    assert "180" in repr(parse(RESPONSE))


def test_to_dict(invite_msg):
    d = invite_msg.to_dict()
    assert d["type"] == "request"
    assert d["method"] == "INVITE"
    assert d["uri"]["host"] == "biloxi.example.com"
    assert d["via"][0]["branch"] == "z9hG4bK776asdhds"
    assert d["via"][0]["rport"] is True
    assert d["from"]["params"] == {"tag": "1928301774"}
    assert d["cseq"] == {"seq": 314159, "method": "INVITE"}
    assert d["content_length"] == 4
    assert d["body"] == "abcd"
    import json
    json.dumps(d)
