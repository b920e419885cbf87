"""The registrar and location service (sipfast.core.location, RFC 3261 §10.3).

One group per rule, each with real REGISTER datagrams and the response the
registrar sends back parsed by the message core; expiry runs on an injected
clock.  A hypothesis property drives random register/expire sequences
against a small model of the rules.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sipfast
from sipfast.core import Location
from sipfast.core.location import binding_key

AOR = "sip:bob@biloxi.example.com"
SOURCE = ("198.51.100.7", 40123)
_branches = itertools.count(1)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def register(
    contacts: list[str] | tuple[str, ...] = ("<sip:bob@192.0.2.4>",),
    *,
    to: str = f"<{AOR}>",
    expires: int | str | None = None,
    call_id: str = "843817637684230@998sdasdh09",
    cseq: int = 1826,
    branch: str | None = None,
    vias: int = 1,
    extra: tuple[str, ...] = (),
    one_line: bool = False,
) -> bytes:
    """A REGISTER datagram with a fresh branch (a new request, not a retransmission)."""
    branch = branch or f"z9hG4bKreg{next(_branches)}"
    lines = ["REGISTER sip:registrar.biloxi.example.com SIP/2.0"]
    lines.append(f"Via: SIP/2.0/UDP bobspc.biloxi.example.com:5060;branch={branch};rport")
    for i in range(1, vias):
        lines.append(f"Via: SIP/2.0/UDP 10.1.1.{i}:5060;branch=z9hG4bKinner{i}")
    lines += [
        "Max-Forwards: 70",
        f"To: Bob {to}",
        f"From: Bob <{AOR}>;tag=456248",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} REGISTER",
    ]
    if one_line and contacts:
        lines.append("Contact: " + ", ".join(contacts))
    else:
        lines += [f"Contact: {c}" for c in contacts]
    if expires is not None:
        lines.append(f"Expires: {expires}")
    lines += list(extra)
    lines += ["Content-Length: 0", "", ""]
    return "\r\n".join(lines).encode()


@dataclass
class Reply:
    """A response datagram as the user agent would read it."""

    raw: bytes
    msg: sipfast.Message = field(init=False)

    def __post_init__(self) -> None:
        self.msg = sipfast.parse(self.raw)
        self.msg.validate()

    @property
    def status(self) -> int:
        return self.msg.status

    @property
    def reason(self) -> str:
        return self.msg.reason

    @property
    def contacts(self) -> list[tuple[str, int]]:
        """(URI, expires) of every Contact, in order."""
        return [(c.uri.text, int(c.param("expires") or -1)) for c in self.msg.contacts]


def send(loc: Location, data: bytes, source: tuple[str, int] = SOURCE) -> Reply:
    return Reply(loc.register(data, source))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def loc(clock: Clock) -> Location:
    return Location(clock=clock, wall_clock=lambda: 1_289_690_940.0)


# ----------------------------------------------------------------- step 8: the 200


def test_200_is_a_real_response_with_every_binding_and_a_date(loc: Location) -> None:
    data = register(expires=1800)
    reply = send(loc, data)
    request = sipfast.parse(data)
    assert reply.status == 200 and reply.reason == "OK"
    assert reply.msg.branch == request.branch
    assert reply.msg.call_id == request.call_id
    assert (reply.msg.cseq, reply.msg.cseq_method) == (1826, "REGISTER")
    assert reply.msg.from_tag == "456248"
    assert reply.msg.to_tag  # added by the registrar
    assert reply.contacts == [("sip:bob@192.0.2.4", 1800)]
    assert reply.msg.get("Date") == "Sat, 13 Nov 2010 23:29:00 GMT"
    assert loc.lookup(AOR) == ["sip:bob@192.0.2.4"]


def test_200_lists_bindings_of_earlier_registrations_too(loc: Location, clock: Clock) -> None:
    send(loc, register(["<sip:bob@192.0.2.4>"], expires=600, call_id="a"))
    clock.now += 100
    reply = send(loc, register(["<sip:bob@192.0.2.5>"], expires=600, call_id="b"))
    assert reply.contacts == [("sip:bob@192.0.2.5", 600), ("sip:bob@192.0.2.4", 500)]


def test_contact_params_are_kept_and_expires_rewritten(loc: Location) -> None:
    contact = (
        '<sip:bob@192.0.2.4;transport=udp>;expires=900;+sip.instance="<urn:uuid:1;a>";reg-id=1'
    )
    reply = send(loc, register([contact]))
    assert reply.msg.get("Contact") == (
        '<sip:bob@192.0.2.4;transport=udp>;+sip.instance="<urn:uuid:1;a>";reg-id=1;expires=900'
    )


def test_query_without_contact_lists_bindings_and_changes_nothing(
    loc: Location, clock: Clock
) -> None:
    send(loc, register(["<sip:bob@192.0.2.4>"], expires=600))
    clock.now += 60
    before = loc.snapshot()
    reply = send(loc, register([], cseq=1))  # even a lower CSeq: a query updates nothing
    assert reply.status == 200
    assert reply.contacts == [("sip:bob@192.0.2.4", 540)]
    assert loc.snapshot() == before


def test_query_of_an_unknown_aor_is_an_empty_200(loc: Location) -> None:
    reply = send(loc, register([]))
    assert reply.status == 200 and reply.contacts == []
    assert reply.msg.get("Date")


# ----------------------------------------------------------------- step 5: the AOR


def test_aor_is_taken_from_to_and_canonical(loc: Location) -> None:
    send(loc, register(to="<sip:bob@BILOXI.example.COM;transport=udp>", expires=600))
    assert loc.lookup("sip:bob@biloxi.example.com") == ["sip:bob@192.0.2.4"]
    assert loc.lookup("<sip:%62ob@Biloxi.Example.Com;user=phone>") == ["sip:bob@192.0.2.4"]
    assert loc.lookup("sip:Bob@biloxi.example.com") == []  # the user part is case-sensitive
    assert loc.lookup("sip:bob@biloxi.example.com:5060") == []  # a port is part of the AOR
    assert list(loc.snapshot()) == ["sip:bob@biloxi.example.com"]


@pytest.mark.parametrize(
    ("uri", "aor"),
    [
        ("sip:alice@Atlanta.COM", "sip:alice@atlanta.com"),
        ("SIP:alice@atlanta.com:5070;transport=tcp?x=y", "sip:alice@atlanta.com:5070"),
        ("sips:alice:secret@atlanta.com", "sips:alice@atlanta.com"),
        ('"Alice" <sip:%61lice@atlanta.com>;tag=1', "sip:alice@atlanta.com"),
        ("sip:a%20b@h", "sip:a%20b@h"),
        ("sip:+1-555;x@h", "sip:+1-555;x@h"),
        ("sip:atlanta.com", "sip:atlanta.com"),
        ("sip:bob@[2001:DB8::1]:5060", "sip:bob@[2001:db8::1]:5060"),
    ],
)
def test_aor_of(uri: str, aor: str) -> None:
    assert Location.aor_of(uri) == aor


@pytest.mark.parametrize("uri", ["tel:+15551234", "garbage", "sip:", ""])
def test_aor_of_refuses_non_sip_and_malformed(uri: str) -> None:
    with pytest.raises(sipfast.SipError):
        Location.aor_of(uri)


def test_lookup_of_a_malformed_aor_is_empty(loc: Location) -> None:
    assert loc.lookup("not a uri") == []
    assert loc.lookup("tel:+1555") == []


def test_to_that_is_not_a_sip_uri_is_404(loc: Location) -> None:
    reply = send(loc, register(to="<tel:+15551234>"))
    assert reply.status == 404
    assert loc.snapshot() == {}


# ----------------------------------------------------------------- step 6: intervals


def test_default_expires_when_neither_header_nor_param(clock: Clock) -> None:
    loc = Location(clock=clock, default_expires=1200)
    assert send(loc, register()).contacts == [("sip:bob@192.0.2.4", 1200)]


def test_expires_header_applies_to_contacts_without_param(loc: Location) -> None:
    reply = send(loc, register(["<sip:a@192.0.2.1>", "<sip:b@192.0.2.2>;expires=120"], expires=300))
    assert sorted(reply.contacts) == [("sip:a@192.0.2.1", 300), ("sip:b@192.0.2.2", 120)]


def test_expires_param_overrides_header_even_when_zero(loc: Location) -> None:
    send(loc, register(["<sip:a@192.0.2.1>"], expires=300, call_id="x"))
    reply = send(loc, register(["<sip:a@192.0.2.1>;expires=0"], expires=300, call_id="y"))
    assert reply.status == 200 and reply.contacts == []
    assert loc.lookup(AOR) == []


def test_above_max_expires_is_shortened(clock: Clock) -> None:
    loc = Location(clock=clock, max_expires=3600)
    reply = send(loc, register(["<sip:a@192.0.2.1>;expires=86400"], expires=7200))
    assert reply.contacts == [("sip:a@192.0.2.1", 3600)]
    huge = send(loc, register(["<sip:a@192.0.2.1>;expires=" + "9" * 5000], call_id="h"))
    assert huge.contacts == [("sip:a@192.0.2.1", 3600)]


def test_below_min_expires_is_423_with_min_expires(loc: Location) -> None:
    reply = send(loc, register(expires=30))
    assert (reply.status, reply.reason) == (423, "Interval Too Brief")
    assert reply.msg.get("Min-Expires") == "60"
    assert reply.msg.to_tag
    assert loc.lookup(AOR) == []


def test_one_brief_contact_refuses_the_whole_request(loc: Location) -> None:
    send(loc, register(["<sip:a@192.0.2.1>"], expires=600, call_id="x"))
    before = loc.snapshot()
    reply = send(
        loc,
        register(
            ["<sip:a@192.0.2.1>;expires=0", "<sip:b@192.0.2.2>", "<sip:c@192.0.2.3>;expires=1"],
            expires=600,
            call_id="y",
        ),
    )
    assert reply.status == 423
    assert loc.snapshot() == before


def test_min_expires_exactly_is_accepted(loc: Location) -> None:
    assert send(loc, register(expires=60)).contacts == [("sip:bob@192.0.2.4", 60)]


def test_an_hour_is_never_too_brief(clock: Clock) -> None:
    # §10.3 step 6: 423 only for an interval below one hour.
    loc = Location(clock=clock, min_expires=7200, max_expires=7200, default_expires=7200)
    assert send(loc, register(expires=3600)).contacts == [("sip:bob@192.0.2.4", 3600)]
    assert send(loc, register(expires=3599, call_id="z")).status == 423


def test_expires_zero_removes_only_that_binding(loc: Location) -> None:
    send(loc, register(["<sip:a@192.0.2.1>", "<sip:b@192.0.2.2>"], expires=600, call_id="x"))
    reply = send(loc, register(["<sip:a@192.0.2.1>"], expires=0, call_id="y"))
    assert reply.contacts == [("sip:b@192.0.2.2", 600)]
    assert loc.lookup(AOR) == ["sip:b@192.0.2.2"]


def test_removing_an_unknown_binding_is_a_200(loc: Location) -> None:
    reply = send(loc, register(["<sip:a@192.0.2.1>"], expires=0))
    assert reply.status == 200 and reply.contacts == []


# ----------------------------------------------------------------- step 6: Contact *


def test_star_with_expires_zero_removes_every_binding(loc: Location) -> None:
    send(loc, register(["<sip:a@192.0.2.1>", "<sip:b@192.0.2.2>"], expires=600, call_id="x"))
    send(loc, register(["<sip:c@192.0.2.3>"], expires=600, call_id="y"))
    reply = send(loc, register(["*"], expires=0, call_id="z"))
    assert reply.status == 200 and reply.contacts == []
    assert loc.lookup(AOR) == [] and loc.snapshot() == {} and len(loc) == 0


@pytest.mark.parametrize(
    ("contacts", "expires", "one_line", "reason"),
    [
        (["*"], None, False, "Contact * requires Expires: 0"),
        (["*"], 3600, False, "Contact * requires Expires: 0"),
        (["*", "<sip:a@192.0.2.1>"], 0, False, "Contact * must be the only Contact"),
        (["<sip:a@192.0.2.1>", "*"], 0, True, "Contact * must be the only Contact"),
        (["*", "*"], 0, True, "Contact * must be the only Contact"),
    ],
)
def test_star_misused_is_400(
    loc: Location, contacts: list[str], expires: int | None, one_line: bool, reason: str
) -> None:
    send(loc, register(["<sip:b@192.0.2.2>"], expires=600, call_id="x"))
    reply = send(loc, register(contacts, expires=expires, call_id="y", one_line=one_line))
    assert (reply.status, reply.reason) == (400, reason)
    assert loc.lookup(AOR) == ["sip:b@192.0.2.2"]


def test_star_with_stale_cseq_fails_and_keeps_bindings(loc: Location) -> None:
    send(loc, register(["<sip:a@192.0.2.1>"], expires=600, call_id="x", cseq=5))
    send(loc, register(["<sip:b@192.0.2.2>"], expires=600, call_id="y", cseq=1))
    reply = send(loc, register(["*"], expires=0, call_id="x", cseq=5))
    assert reply.status == 500
    assert sorted(loc.lookup(AOR)) == ["sip:a@192.0.2.1", "sip:b@192.0.2.2"]
    assert send(loc, register(["*"], expires=0, call_id="x", cseq=6)).status == 200
    assert loc.lookup(AOR) == []


# ----------------------------------------------------------------- step 7: Call-ID / CSeq


@pytest.mark.parametrize("cseq", [1826, 1825, 1])
def test_same_call_id_without_higher_cseq_fails_with_500(loc: Location, cseq: int) -> None:
    send(loc, register(["<sip:a@192.0.2.1>"], expires=600, cseq=1826))
    before = loc.snapshot()
    reply = send(loc, register(["<sip:a@192.0.2.1>"], expires=1200, cseq=cseq))
    assert reply.status == 500
    assert reply.msg.to_tag
    assert loc.snapshot() == before


def test_a_failed_update_commits_none_of_the_request(loc: Location) -> None:
    send(loc, register(["<sip:a@192.0.2.1>"], expires=600, cseq=10))
    before = loc.snapshot()
    reply = send(loc, register(["<sip:new@192.0.2.9>", "<sip:a@192.0.2.1>;expires=0"], cseq=10))
    assert reply.status == 500
    assert loc.snapshot() == before


def test_same_call_id_with_higher_cseq_updates(loc: Location, clock: Clock) -> None:
    send(loc, register(["<sip:a@192.0.2.1>;q=0.2"], expires=600, cseq=10))
    clock.now += 300
    reply = send(loc, register(["<sip:a@192.0.2.1>;q=0.9"], expires=600, cseq=11))
    assert reply.contacts == [("sip:a@192.0.2.1", 600)]
    [binding] = loc.snapshot()[AOR]
    assert (binding["cseq"], binding["q"], binding["expires_in"]) == (11, 0.9, 600)


def test_other_call_id_updates_whatever_its_cseq(loc: Location) -> None:
    send(loc, register(["<sip:a@192.0.2.1>"], expires=600, call_id="x", cseq=100))
    reply = send(loc, register(["<sip:a@192.0.2.1>"], expires=1200, call_id="y", cseq=1))
    assert reply.contacts == [("sip:a@192.0.2.1", 1200)]
    assert loc.snapshot()[AOR][0]["call_id"] == "y"


def test_cseq_rule_does_not_apply_to_new_contacts(loc: Location) -> None:
    send(loc, register(["<sip:a@192.0.2.1>"], expires=600, cseq=10))
    reply = send(loc, register(["<sip:b@192.0.2.2>"], expires=600, cseq=3))
    assert reply.status == 200 and len(reply.contacts) == 2


def test_retransmission_gets_the_same_answer(loc: Location, clock: Clock) -> None:
    data = register(expires=600)
    first = loc.register(data, SOURCE)
    clock.now += 1
    assert loc.register(data, SOURCE) == first  # not a 500 for the same CSeq
    clock.now += 40  # past Timer J: the same bytes are now a new, stale request
    assert send(loc, data).status == 500


def test_binding_match_follows_uri_comparison(loc: Location) -> None:
    send(loc, register(["<sip:bob@Host.Example.COM;foo=1>"], expires=600, call_id="x"))
    send(loc, register(["<sip:bob@host.example.com;bar>"], expires=900, call_id="y"))
    assert loc.lookup(AOR) == ["sip:bob@host.example.com;bar"]  # same binding, updated
    send(loc, register(["<sip:bob@host.example.com:5060>"], expires=900, call_id="z"))
    send(loc, register(["<sip:bob@host.example.com;transport=tcp>"], expires=900, call_id="w"))
    send(loc, register(["<sip:Bob@host.example.com>"], expires=900, call_id="v"))
    assert len(loc.lookup(AOR)) == 4


def test_binding_key() -> None:
    key = binding_key
    uri = sipfast.parse_uri
    assert key(uri("sip:a@H;Transport=UDP")) == key(uri("sip:a@h;transport=udp;x=1"))
    assert key(uri("sip:a@h")) != key(uri("sip:a@h;transport=udp"))
    assert key(uri("sip:a@h")) != key(uri("sip:a@h;lr;maddr=1.2.3.4"))
    assert key(uri("sip:a@h?subject=x")) != key(uri("sip:a@h"))
    assert key(uri("mailto:a@h")) == ("mailto", "a@h")


def test_repeated_contact_counts_once_at_its_last_place(loc: Location) -> None:
    reply = send(
        loc,
        register(
            ["<sip:a@192.0.2.1>;expires=100", "<sip:b@192.0.2.2>", "<sip:a@192.0.2.1>"], expires=600
        ),
    )
    assert reply.contacts == [("sip:a@192.0.2.1", 600), ("sip:b@192.0.2.2", 600)]


# ----------------------------------------------------------------- max_contacts


def test_more_than_max_contacts_is_403_and_changes_nothing(clock: Clock) -> None:
    loc = Location(clock=clock, max_contacts=2)
    send(loc, register(["<sip:a@192.0.2.1>", "<sip:b@192.0.2.2>"], expires=600, call_id="x"))
    before = loc.snapshot()
    reply = send(loc, register(["<sip:c@192.0.2.3>"], expires=600, call_id="y"))
    assert (reply.status, reply.reason) == (403, "Too many contacts (at most 2)")
    assert loc.snapshot() == before
    # Refreshing at the limit is fine, and so is swapping one for another.
    assert send(loc, register(["<sip:a@192.0.2.1>"], expires=900, call_id="z")).status == 200
    swap = send(loc, register(["<sip:a@192.0.2.1>;expires=0", "<sip:c@192.0.2.3>"], call_id="w"))
    assert swap.status == 200
    assert sorted(loc.lookup(AOR)) == ["sip:b@192.0.2.2", "sip:c@192.0.2.3"]


def test_lapsed_bindings_do_not_count_towards_max(clock: Clock) -> None:
    loc = Location(clock=clock, max_contacts=1)
    send(loc, register(["<sip:a@192.0.2.1>"], expires=60, call_id="x"))
    clock.now += 61
    assert send(loc, register(["<sip:b@192.0.2.2>"], expires=60, call_id="y")).status == 200
    assert loc.lookup(AOR) == ["sip:b@192.0.2.2"]


# ----------------------------------------------------------------- q and lookup order


def test_lookup_best_q_first_then_most_recent(loc: Location, clock: Clock) -> None:
    send(loc, register(["<sip:low@192.0.2.1>;q=0.1"], expires=600, call_id="1"))
    send(loc, register(["<sip:old@192.0.2.2>"], expires=600, call_id="2"))
    send(loc, register(["<sip:mid@192.0.2.3>;q=0.5"], expires=600, call_id="3"))
    send(loc, register(["<sip:new@192.0.2.4>;q=1.0"], expires=600, call_id="4"))
    assert loc.lookup(AOR) == [
        "sip:new@192.0.2.4",
        "sip:old@192.0.2.2",
        "sip:mid@192.0.2.3",
        "sip:low@192.0.2.1",
    ]
    send(loc, register(["<sip:old@192.0.2.2>"], expires=600, call_id="5"))  # refresh
    assert loc.lookup(AOR)[:2] == ["sip:old@192.0.2.2", "sip:new@192.0.2.4"]
    reply = send(loc, register([], call_id="6"))
    assert [uri for uri, _ in reply.contacts] == loc.lookup(AOR)


@pytest.mark.parametrize("q", ["q=1.5", "q=0.1234", "q=abc", "q", "q=-0", "q=2", "q=1.001"])
def test_malformed_q_is_400(loc: Location, q: str) -> None:
    reply = send(loc, register([f"<sip:a@192.0.2.1>;{q}"]))
    assert (reply.status, reply.reason) == (400, "Malformed q parameter")


@pytest.mark.parametrize("q", ["0", "0.", "0.5", "0.125", "1", "1.000"])
def test_valid_q(loc: Location, q: str) -> None:
    assert send(loc, register([f"<sip:a@192.0.2.1>;q={q}"])).status == 200
    assert loc.snapshot()[AOR][0]["q"] == float(q)


# ----------------------------------------------------------------- expiry


def test_bindings_lapse_on_the_clock(loc: Location, clock: Clock) -> None:
    send(loc, register(["<sip:a@192.0.2.1>"], expires=60, call_id="x"))
    send(loc, register(["<sip:b@192.0.2.2>"], expires=120, call_id="y"))
    clock.now += 59.5
    assert loc.snapshot()[AOR][1]["expires_in"] == 1
    clock.now += 0.5
    assert loc.lookup(AOR) == ["sip:b@192.0.2.2"]  # lapsed at exactly 60 s
    assert len(loc) == 2  # still held until expire()
    assert loc.expire() == 1
    assert len(loc) == 1 and loc.expire() == 0
    clock.now += 60
    assert loc.lookup(AOR) == [] and loc.snapshot() == {}
    assert loc.expire() == 1 and len(loc) == 0


def test_lapsed_binding_is_not_in_the_200(loc: Location, clock: Clock) -> None:
    send(loc, register(["<sip:a@192.0.2.1>"], expires=60, call_id="x"))
    clock.now += 61
    reply = send(loc, register(["<sip:b@192.0.2.2>"], expires=60, call_id="y"))
    assert reply.contacts == [("sip:b@192.0.2.2", 60)]


def test_lapsed_binding_ignores_the_cseq_rule(loc: Location, clock: Clock) -> None:
    send(loc, register(["<sip:a@192.0.2.1>"], expires=60, cseq=9))
    clock.now += 61
    assert send(loc, register(["<sip:a@192.0.2.1>"], expires=60, cseq=1)).status == 200


# ----------------------------------------------------------------- RFC 3581 source


def test_source_is_stored_and_direct_contacts_are_reached_through_it(loc: Location) -> None:
    send(
        loc, register(["<sip:bob@10.0.0.5:5060>"], expires=600, call_id="x"), ("203.0.113.9", 61000)
    )
    send(
        loc,
        register(["<sip:bob@192.0.2.8>"], expires=600, call_id="y", vias=2),
        ("192.0.2.1", 5060),
    )
    assert loc.snapshot()[AOR][1]["source"] == ("203.0.113.9", 61000)
    assert loc.targets(AOR) == [
        ("sip:bob@192.0.2.8", None),  # came through a proxy: route by the URI
        ("sip:bob@10.0.0.5:5060", ("203.0.113.9", 61000)),  # behind NAT: the REGISTER's source
    ]
    [first, second] = loc.bindings(AOR)
    assert (first.direct, second.direct) == (False, True)


def test_ipv6_source_tuple_is_reduced_to_host_and_port(loc: Location) -> None:
    loc.register(register(expires=600), ("2001:db8::7", 5062, 0, 0))  # type: ignore[arg-type]
    assert loc.snapshot()[AOR][0]["source"] == ("2001:db8::7", 5062)


# ----------------------------------------------------------------- malformed and other


def test_snapshot_shape(loc: Location) -> None:
    send(loc, register(["<sip:a@192.0.2.1>;q=0.7"], expires=600, call_id="c", cseq=4))
    assert loc.snapshot() == {
        AOR: [
            {
                "contact": "sip:a@192.0.2.1",
                "expires_in": 600,
                "q": 0.7,
                "call_id": "c",
                "cseq": 4,
                "source": SOURCE,
            }
        ]
    }


def _replace(data: bytes, old: bytes, new: bytes) -> bytes:
    assert old in data
    return data.replace(old, new)


@pytest.mark.parametrize(
    ("mutate", "status", "reason"),
    [
        (lambda d: _replace(d, b"Call-ID: ", b"X-Call-ID: "), 400, "Missing Call-ID header"),
        (lambda d: _replace(d, b"Expires: 600", b"Expires: soon"), 400, "Malformed Expires header"),
        (
            lambda d: _replace(d, b"<sip:bob@192.0.2.4>", b"<sip:bob@192.0.2.4>;expires=x"),
            400,
            "Malformed expires parameter",
        ),
        (
            lambda d: _replace(d, b"<sip:bob@192.0.2.4>", b"<sip:bob@192.0.2.4>;expires=-1"),
            400,
            "Malformed expires parameter",
        ),
        (
            lambda d: _replace(d, b"Contact: <sip:bob@192.0.2.4>", b"Contact: <sip:bob@"),
            400,
            "Malformed Contact header",
        ),
        (lambda d: _replace(d, b"To: Bob <sip:", b"To: Bob <"), 400, None),
        (
            lambda d: _replace(d, b"1826 REGISTER", b"1826 INVITE"),
            400,
            "CSeq method does not match request method",
        ),
        (lambda d: _replace(d, b"SIP/2.0\r\n", b"SIP/3.0\r\n"), 505, None),
    ],
)
def test_malformed_register_is_answered_with_the_reason(
    loc: Location, mutate: Callable[[bytes], bytes], status: int, reason: str | None
) -> None:
    raw = loc.register(mutate(register(expires=600)), SOURCE)
    # The answer copies what it can of the request (a missing Call-ID stays
    # missing), so read its status line rather than parse it.
    version, code, phrase = raw.split(b"\r\n", 1)[0].decode().split(" ", 2)
    assert (version, int(code)) == ("SIP/2.0", status)
    if reason is not None:
        assert phrase == reason
    assert b"\r\nVia: SIP/2.0/UDP bobspc.biloxi.example.com:5060;branch=" in raw
    assert loc.snapshot() == {}


@pytest.mark.parametrize(
    "data", [b"", b"\r\n", b"garbage\r\n\r\n", b"SIP/2.0 200 OK\r\n\r\n", b"\xff" * 100]
)
def test_unanswerable_input_gives_nothing_to_send(loc: Location, data: bytes) -> None:
    assert loc.register(data, SOURCE) == b""


def test_a_response_is_never_answered(loc: Location) -> None:
    response = sipfast.make_response(sipfast.parse(register()), 200, to_tag="x")
    assert loc.register(response, SOURCE) == b""


def test_require_is_420_with_unsupported(loc: Location) -> None:
    reply = send(loc, register(extra=("Require: path, gruu",)))
    assert (reply.status, reply.reason) == (420, "Bad Extension")
    assert reply.msg.get_all("Unsupported") == ["path", "gruu"]
    assert loc.snapshot() == {}


def test_other_methods_are_405(loc: Location) -> None:
    data = _replace(register(), b"REGISTER sip:", b"OPTIONS sip:")
    data = _replace(data, b"1826 REGISTER", b"1826 OPTIONS")
    reply = send(loc, data)
    assert reply.status == 405 and reply.msg.get("Allow") == "REGISTER"


def test_constructor_checks_its_limits() -> None:
    with pytest.raises(ValueError):
        Location(min_expires=0)
    with pytest.raises(ValueError):
        Location(min_expires=100, max_expires=50)
    with pytest.raises(ValueError):
        Location(default_expires=10)
    with pytest.raises(ValueError):
        Location(max_contacts=0)


# ----------------------------------------------------------------- property


MAX_CONTACTS = 3
EXPIRES_CHOICES = [None, 0, 10, 60, 500, 5000]  # 10 is too brief, 5000 is shortened


class Model:
    """The rules of §10.3 written as plainly as possible, for the property."""

    def __init__(self) -> None:
        self.now = 0
        self.order = 0
        # aor -> contact -> (expires_at, call_id, cseq, q, order)
        self.aors: dict[str, dict[str, tuple[int, str, int, float, int]]] = {}

    def current(self, aor: str) -> dict[str, tuple[int, str, int, float, int]]:
        return {c: b for c, b in self.aors.get(aor, {}).items() if b[0] > self.now}

    def lookup(self, aor: str) -> list[str]:
        items = sorted(self.current(aor).items(), key=lambda kv: (-kv[1][3], -kv[1][4]))
        return [c for c, _ in items]

    def register(
        self,
        aor: str,
        contacts: list[tuple[str, int | None, float]],
        header: int | None,
        call_id: str,
        cseq: int,
    ) -> int:
        granted = []
        for contact, param, q in contacts:
            e = param if param is not None else header if header is not None else 3600
            if 0 < e < 60:
                return 423
            granted = [g for g in granted if g[0] != contact]
            granted.append((contact, min(e, 3600), q))
        bindings = self.current(aor)
        for contact, e, q in granted:
            old = bindings.get(contact)
            if old is not None and old[1] == call_id and cseq <= old[2]:
                return 500
            if e == 0:
                bindings.pop(contact, None)
            else:
                self.order += 1
                bindings[contact] = (self.now + e, call_id, cseq, q, self.order)
        if len(bindings) > MAX_CONTACTS:
            return 403
        if granted:
            self.aors[aor] = bindings
        return 200

    def star(self, aor: str, call_id: str, cseq: int) -> int:
        for _, old_call_id, old_cseq, _, _ in self.current(aor).values():
            if old_call_id == call_id and cseq <= old_cseq:
                return 500
        self.aors.pop(aor, None)
        return 200


AORS = ["sip:alice@a.example", "sip:bob@b.example"]
contact_st = st.tuples(
    st.sampled_from([f"sip:u{i}@192.0.2.{i}" for i in range(5)]),
    st.sampled_from(EXPIRES_CHOICES),
    st.sampled_from([0.1, 0.5, 1.0]),
)
op_st = st.one_of(
    st.tuples(
        st.just("register"),
        st.sampled_from(AORS),
        st.lists(contact_st, max_size=4),
        st.sampled_from(EXPIRES_CHOICES),
        st.sampled_from(["c1", "c2"]),
        st.integers(1, 6),
    ),
    st.tuples(
        st.just("star"), st.sampled_from(AORS), st.sampled_from(["c1", "c2"]), st.integers(1, 6)
    ),
    st.tuples(st.just("advance"), st.integers(0, 4000)),
    st.tuples(st.just("expire")),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(op_st, max_size=25))
def test_property_matches_model(ops: list[tuple[Any, ...]]) -> None:
    model = Model()
    clock = Clock(0)
    loc = Location(clock=clock, max_contacts=MAX_CONTACTS)
    for op in ops:
        if op[0] == "register":
            _, aor, contacts, header, call_id, cseq = op
            texts = []
            for uri, param, q in contacts:
                text = f"<{uri}>;q={q}"
                texts.append(text if param is None else f"{text};expires={param}")
            reply = send(
                loc, register(texts, to=f"<{aor}>", expires=header, call_id=call_id, cseq=cseq)
            )
            assert reply.status == model.register(aor, contacts, header, call_id, cseq)
            if reply.status == 200:
                expect = [(c, model.current(aor)[c][0] - model.now) for c in model.lookup(aor)]
                assert reply.contacts == expect
        elif op[0] == "star":
            _, aor, call_id, cseq = op
            reply = send(loc, register(["*"], to=f"<{aor}>", expires=0, call_id=call_id, cseq=cseq))
            assert reply.status == model.star(aor, call_id, cseq)
        elif op[0] == "advance":
            clock.now += op[1]
            model.now += op[1]
        else:
            lapsed = sum(b[0] <= model.now for bs in model.aors.values() for b in bs.values())
            assert loc.expire() == lapsed
            model.aors = {a: model.current(a) for a in model.aors if model.current(a)}
        for aor in AORS:
            assert loc.lookup(aor) == model.lookup(aor)
            assert len(loc.lookup(aor)) <= MAX_CONTACTS
        for bindings in loc.snapshot().values():
            assert all(1 <= b["expires_in"] <= 3600 for b in bindings)


def test_granted_interval_is_exact_on_a_real_clock_value() -> None:
    # (now + 3600) - now is 3600.0000000009313 in floating point for this now.
    loc = Location(clock=lambda: 8385161.772947668)
    reply = send(loc, register(expires=3600))
    assert reply.contacts == [("sip:bob@192.0.2.4", 3600)]


@settings(max_examples=500, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 400), st.integers(0, 8), st.binary(max_size=12)),
        min_size=1,
        max_size=4,
    )
)
def test_property_mutated_register_gets_an_answer_never_an_error(
    edits: list[tuple[int, int, bytes]],
) -> None:
    data = bytearray(
        register(
            ['"B" <sip:bob@192.0.2.4;transport=udp>;q=0.5;expires=90', "sip:b@192.0.2.5"],
            expires=600,
            extra=("Supported: path",),
        )
    )
    for at, cut, insert in edits:
        at = min(at, len(data))
        data[at : at + cut] = insert
    loc = Location()
    raw = loc.register(bytes(data), SOURCE)
    assert isinstance(raw, bytes)
    assert loc.internal_errors == 0
    if raw:
        assert raw.startswith(b"SIP/2.0 ")
        assert not raw.startswith(b"SIP/2.0 500")  # no CSeq history: a 500 is a bug
