"""A real user agent calls through `sipfast lb`: baresip -> balancer -> pool -> baresip.

Two baresip 1.0 user agents (headless, as in test_real_ua.py: ``aufile`` sine source,
G.711 PCMU, the callee auto-answers) and a pool of three stateful sipfast proxies that
record-route and route what they relay to the callee.  The caller has no outbound
proxy: it dials ``sip:bob@<balancer>`` and sends its INVITE straight to the balancer,
which probes every pool member (``X-Sipfast-Probe``; a member answers 100, then a 302
naming itself) and takes the first answer.

- redirect mode: the balancer answers the caller ``302 Moved Temporarily`` with the
  winner in Contact.  baresip follows it by itself, with no configuration: its SIP
  stack (libre 1.1.0, ``sipsess`` ``invite_resp_handler``) ACKs the 3xx, takes the
  first Contact as the new Request-URI and, having no outbound Route, as the new next
  hop, and sends a new INVITE of the same dialog (same Call-ID and From tag) there.
- proxy mode: the balancer relays the caller's INVITE to the winner, which relays it to
  the callee and record-routes; the balancer is not in the dialog, so ACK and BYE go
  from the caller to the winner directly.

Judged on a loopback capture (``wire.capture``) and by baresip's own statistics:
the SIP path hop by hop, RTP both ways between the ports and SSRCs the SDPs announced,
the balancer's and members' counters.  Nothing is asserted on timing.
"""

from __future__ import annotations

import re
import struct
from contextlib import ExitStack
from dataclasses import dataclass

from .baresip import (
    IP,
    MIN_PACKETS,
    Baresip,
    require_baresip,
    rtp_stats,
    sdp_media,
    write_sine,
)
from .proxyproc import balancer, members, stop
from .sipp import SipMessage
from .wire import Capture, capture

POOL = 3
CONTACT = re.compile(r"<sip:(?:([^@>]*)@)?([0-9.]+):(\d+)")


@dataclass
class Call:
    """What one call through the balancer left behind."""

    wire: Capture
    lb: int  # balancer port
    pool: list[int]  # member ports, in --pool order (member0, member1, ...)
    caller: int  # SIP ports of the user agents
    callee: int
    lbc: dict[str, int]  # counters of the balancer
    mc: list[dict[str, int]]  # counters of each member
    outputs: dict[str, str]  # baresip logs
    closed: dict

    def winner_index(self) -> int:
        """The member the balancer counted as the winner of the call (exactly one)."""
        won = [i for i in range(len(self.pool)) if self.lbc[f"member{i}_wins"]]
        assert len(won) == 1 and self.lbc[f"member{won[0]}_wins"] == 1, self.lbc
        return won[0]


def place_call(tmp_path, *lb_args: str) -> Call:
    """The caller dials bob at the balancer, talks for HOLD_S, and hangs up."""
    require_baresip()
    wav = tmp_path / "sine-8k.wav"
    write_sine(wav)
    agents: list[Baresip] = []
    try:
        callee = Baresip("callee", tmp_path, f"<sip:bob@{IP}>;regint=0;answermode=auto", wav)
        agents.append(callee)
        caller = Baresip("caller", tmp_path, f"<sip:alice@{IP}>;regint=0", wav)
        agents.append(caller)
        with ExitStack() as stack:
            pool = members(stack, POOL, callee.sip_port, tmp_path)
            ports = [p for p, _ in pool]
            with balancer(ports, *lb_args, cwd=tmp_path) as (lport, lb):
                with capture([lport, *ports, *caller.ports, *callee.ports],
                             workdir=tmp_path / "wire") as wire:
                    closed = caller.call(callee, f"sip:bob@{IP}:{lport}")
                lbc = stop(lb)
            mc = [stop(proc) for _, proc in pool]
    finally:
        outputs = {a.name: a.stop() for a in agents}
    print(f"balancer {lbc}")
    return Call(wire, lport, ports, caller.sip_port, callee.sip_port, lbc, mc, outputs,
                closed)


def contact_port(msg: SipMessage) -> int:
    found = CONTACT.search(msg.header("Contact") or "")
    assert found, msg.headers
    return int(found.group(3))


def vias(msg: SipMessage) -> list[str]:
    """The sent-by of every Via, top first."""
    return [re.match(r"SIP/2\.0/UDP (\S+?);", v.strip()).group(1)
            for h in msg.header_values("Via") for v in h.split(",")]


def check_probes(call: Call) -> SipMessage:
    """The caller's INVITE reached the balancer and every member got one probe of it,
    which it answered with a 302 naming itself; the caller's INVITE is returned."""
    w, lb = call.wire, call.lb
    invites = w.sip_between(call.caller, lb, "INVITE")
    assert invites, "the caller's INVITE never reached the balancer"
    assert len({m.top_branch for m in invites}) == 1  # one transaction (resends allowed)
    first = invites[0]
    assert first.request_uri == f"sip:bob@{IP}:{lb}"
    for i, port in enumerate(call.pool):
        probes = [m for m in w.sip_between(lb, port, "INVITE") if m.header("X-Sipfast-Probe")]
        assert len({m.top_branch for m in probes}) == 1, (port, probes)
        assert probes[0].call_id == first.call_id
        assert vias(probes[0]) == [f"{IP}:{lb}", f"{IP}:{call.caller}"]
        answers = [m for m in w.sip_between(port, lb) if m.status == 302]
        assert answers and contact_port(answers[0]) == port
        assert call.mc[i]["probes_answered"] == 1
    assert call.lbc["probes_sent"] == POOL
    assert call.lbc["lb_no_winner"] == call.lbc["dropped"] == call.lbc["malformed"] == 0
    return first


def answers(msgs: list[SipMessage], method: str = "INVITE") -> list[int]:
    """The distinct status codes of the responses to ``method``, in order (a
    retransmitted response counted once)."""
    return list(dict.fromkeys(m.status for m in msgs if m.status and m.cseq_method == method))


def check_dialog_via(call: Call, winner: int, first: SipMessage) -> None:
    """ACK and BYE of the call go from the caller to the winner and on to the callee,
    the BYE's 200 comes back the same way; none of them pass the balancer (only the
    hop-by-hop ACK of a 302 of its own, answering the caller's first INVITE), none the
    other members, and no SIP goes directly between the user agents."""
    w, c, e = call.wire, call.caller, call.callee
    for method in ("ACK", "BYE"):
        to_winner = w.sip_between(c, winner, method)
        assert len({m.top_branch for m in to_winner}) == 1, (method, to_winner)
        assert to_winner[0].header("Route") == f"<sip:{IP}:{winner};lr>"
        assert to_winner[0].request_uri.startswith("sip:bob")
        assert w.sip_between(winner, e, method), method
    assert not w.sip_between(c, call.lb, "BYE")
    assert all(m.top_branch == first.top_branch for m in w.sip_between(c, call.lb, "ACK"))
    assert answers(w.sip_between(winner, c), "BYE") == answers(w.sip_between(e, winner),
                                                               "BYE") == [200]
    assert not w.sip_between(c, e) and not w.sip_between(e, c)
    for port in call.pool:
        if port != winner:
            assert not w.sip_between(port, e) and not w.sip_between(c, port)
    assert not w.sip_between(call.lb, e) and not w.sip_between(e, call.lb)
    assert call.closed["param"] == "Connection reset by user"  # our BYE, answered 200


def check_audio(call: Call, offer: SipMessage, answer: SipMessage) -> None:
    """RTP both ways between the ports and SSRCs the two SDPs announced, PCMU, and
    baresip's own count of the call's RTP (sent and received on each side)."""
    caller_rtp, caller_ssrc = sdp_media(offer)
    callee_rtp, callee_ssrc = sdp_media(answer)
    forward = [d for d in call.wire.between(caller_rtp, callee_rtp) if d.is_rtp]
    backward = [d for d in call.wire.between(callee_rtp, caller_rtp) if d.is_rtp]
    print(f"RTP on the wire: caller->callee {len(forward)}, callee->caller {len(backward)}")
    assert len(forward) >= MIN_PACKETS and len(backward) >= MIN_PACKETS
    assert {struct.unpack("!I", d.payload[8:12])[0] for d in forward} == {caller_ssrc}
    assert {struct.unpack("!I", d.payload[8:12])[0] for d in backward} == {callee_ssrc}
    assert {d.payload[1] & 0x7F for d in forward + backward} == {0}  # PCMU
    for name, out in call.outputs.items():
        sent, received = rtp_stats(out)
        print(f"baresip {name}: RTP sent {sent}, received {received}")
        assert sent >= MIN_PACKETS and received >= MIN_PACKETS, (name, sent, received)
    c_sent, c_received = rtp_stats(call.outputs["caller"])
    assert c_sent <= len(forward) and c_received <= len(backward)


def test_baresip_follows_the_302_of_the_balancer_to_the_winner(tmp_path):
    call = place_call(tmp_path, "--mode", "redirect")
    w, lb, c, e = call.wire, call.lb, call.caller, call.callee
    first = check_probes(call)
    won = call.winner_index()
    winner = call.pool[won]
    print(f"pool {call.pool}, winner member{won} on port {winner}")

    # The caller got one 302 naming the winner (for bob), and ACKed it to the balancer.
    finals = [m for m in w.sip_between(lb, c) if (m.status or 0) >= 200]
    assert [m.status for m in finals] == [302], finals
    target = CONTACT.search(finals[0].header("Contact"))
    assert target.groups() == ("bob", IP, str(winner))
    assert w.sip_between(c, lb, "ACK")
    assert call.lbc["redirects"] == 1 and call.lbc["lb_relayed"] == 0

    # Its second INVITE, of the same dialog, went to the winner (and to no other
    # member, nor back to the balancer), for the Contact's URI.
    again = w.sip_between(c, winner, "INVITE")
    assert len({m.top_branch for m in again}) == 1, again
    second = again[0]
    assert second.request_uri == f"sip:bob@{IP}:{winner}"
    assert second.call_id == first.call_id and second.from_tag == first.from_tag
    assert second.top_branch != first.top_branch
    assert not second.header("Route") and not second.header("X-Sipfast-Probe")
    assert len({m.top_branch for m in w.sip_between(c, lb, "INVITE")}) == 1

    # The winner relayed it to the callee and record-routed: the call completed there.
    relayed = w.sip_between(winner, e, "INVITE")
    assert len({m.top_branch for m in relayed}) == 1
    assert relayed[0].header_values("Record-Route") == [f"<sip:{IP}:{winner};lr>"]
    assert vias(relayed[0]) == [f"{IP}:{winner}", f"{IP}:{c}"]  # the balancer not in it
    assert answers(w.sip_between(winner, c)) == [100, 180, 200]
    assert answers(w.sip_between(e, winner)) == [180, 200]
    ok = next(m for m in w.sip_between(winner, c) if m.status == 200)
    assert ok.header_values("Record-Route") == [f"<sip:{IP}:{winner};lr>"]
    check_dialog_via(call, winner, first)
    assert call.mc[won]["calls_ended"] == 1
    assert all(m["forwarded_requests"] == 0 for i, m in enumerate(call.mc) if i != won)
    check_audio(call, second, ok)


def test_baresip_calls_through_the_balancer_in_proxy_mode(tmp_path):
    call = place_call(tmp_path, "--mode", "proxy")
    w, lb, c, e = call.wire, call.lb, call.caller, call.callee
    first = check_probes(call)
    won = call.winner_index()
    winner = call.pool[won]
    print(f"pool {call.pool}, winner member{won} on port {winner}")
    assert call.lbc["lb_relayed"] == 1 and call.lbc["redirects"] == 0

    # caller -> balancer -> winner -> callee: the relayed INVITE (no probe mark) went to
    # the winner only, which relayed it to the callee with itself as the only
    # Record-Route; the Vias show the path.
    relays = {port: [m for m in w.sip_between(lb, port, "INVITE")
                     if not m.header("X-Sipfast-Probe")] for port in call.pool}
    assert {port for port, r in relays.items() if r} == {winner}
    assert len({m.top_branch for m in relays[winner]}) == 1
    assert relays[winner][0].call_id == first.call_id
    assert not relays[winner][0].header_values("Record-Route")
    to_callee = w.sip_between(winner, e, "INVITE")
    assert len({m.top_branch for m in to_callee}) == 1
    invite = to_callee[0]
    assert invite.call_id == first.call_id and not invite.header("X-Sipfast-Probe")
    assert vias(invite) == [f"{IP}:{winner}", f"{IP}:{lb}", f"{IP}:{c}"]
    assert invite.header_values("Record-Route") == [f"<sip:{IP}:{winner};lr>"]

    # The answers came back the same way; the caller's 200 names only the winner in
    # Record-Route, never the balancer.
    relay_branch = relays[winner][0].top_branch
    assert answers(w.sip_between(e, winner)) == [180, 200]
    assert answers([m for m in w.sip_between(winner, lb)
                    if m.top_branch == relay_branch]) == [100, 180, 200]
    assert answers(w.sip_between(lb, c)) == [100, 180, 200]  # its own 100, then relayed
    ok = next(m for m in w.sip_between(lb, c) if m.status == 200)
    assert ok.header_values("Record-Route") == [f"<sip:{IP}:{winner};lr>"]

    # ACK and BYE from the caller to the winner directly, not through the balancer.
    check_dialog_via(call, winner, first)
    assert len(w.sip_between(c, lb)) == len(w.sip_between(c, lb, "INVITE"))  # no ACK/BYE
    assert call.mc[won]["calls_ended"] == 1
    assert all(m["forwarded_requests"] == 0 for i, m in enumerate(call.mc) if i != won)
    check_audio(call, first, ok)
