"""Shared helpers for the tests of the compiled SIP message core.

Messages in the tests are written with LF line ends for readability;
:func:`sip` turns them into wire bytes (CRLF).  The RFC 4475 / RFC 5118
messages live as exact wire bytes under ``tests/data``.
"""

from pathlib import Path

import pytest

import sipfast

DATA = Path(__file__).parent / "data"


def sip(text: str | bytes) -> bytes:
    """Message text with LF line ends -> bytes with CRLF line ends."""
    raw = text.encode("utf-8") if isinstance(text, str) else text
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def data(name: str) -> bytes:
    """The exact bytes of ``tests/data/<name>.sip``."""
    return (DATA / f"{name}.sip").read_bytes()


def parse_all(raw: bytes, **kwargs) -> sipfast.Message:
    """parse() then validate(): what a proxy does before routing."""
    msg = sipfast.parse(raw, **kwargs)
    msg.validate()
    return msg


# RFC 3261 §24.2 F1 style INVITE, used by many tests.
INVITE_TEXT = """\
INVITE sip:bob@biloxi.example.com SIP/2.0
Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds;rport
Max-Forwards: 70
To: Bob <sip:bob@biloxi.example.com>
From: "Alice" <sip:alice@atlanta.example.com>;tag=1928301774
Call-ID: a84b4c76e66710@pc33.atlanta.example.com
CSeq: 314159 INVITE
Contact: <sip:alice@pc33.atlanta.example.com>
X-Opaque: ;;,,<weird "value
Content-Type: application/sdp
Content-Length: 4

abcd"""

INVITE = sip(INVITE_TEXT)


@pytest.fixture
def invite() -> bytes:
    return INVITE


@pytest.fixture
def invite_msg() -> sipfast.Message:
    return sipfast.parse(INVITE)
