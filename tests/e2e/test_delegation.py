"""Delegating peers end to end (issue 5; README "Delegating peers"): 3-4
`sipfast proxy --peers ...` on loopback ports, a SIPp caller pointed at
one primary, a SIPp callee behind every proxy, judged by SIPp's counters,
by each proxy's control endpoint and on the wire (a capture of `lo`).

These tests need the compiled loop's delegation hooks (UdpProxy.set_hooks,
on_options/on_invite, resume, the active_calls/pending counters); until
they land every test here fails at start-up with `sipfast proxy: this
build of sipfast._core has no delegation hooks`.  None is skipped.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import struct
import time

import pytest

from sipfast.load import control

from . import sipp, wire
from .baresip import (
    MIN_PACKETS,
    Baresip,
    require_baresip,
    rtp_stats,
    sdp_media,
    write_sine,
)
from .proxyproc import free_udp_port, proxy, stop

IP = "127.0.0.1"
MODES = ("push", "poll", "continuous")


class Pool:
    """Peers on loopback: ``ports[0]`` is the primary.  Every proxy is
    stateful, record-routes, routes completed calls to the callee and
    serves its control endpoint in the test's directory."""

    def __init__(self, stack, logdir, callee_port, n, *, mode="push", capacities=None,
                 threshold=0.5, reply_path="via", extra=()):
        self.ports = [free_udp_port() for _ in range(n)]
        self.controls = [str(logdir / f"ctl{i}.sock") for i in range(n)]
        self.procs = []
        peers = ",".join(f"sip:{IP}:{p}" for p in self.ports)
        for i, port in enumerate(self.ports):
            cap = (capacities or [100] * n)[i]
            _, proc = stack.enter_context(proxy(
                "--route", f"sip:{IP}:{callee_port}", "--record-route", "--workers", "1",
                "--peers", peers, "--share", mode, "--share-interval", "0.2",
                "--poll-timeout", "150", "--capacity", str(cap), "--pending-limit", "50",
                "--threshold", str(threshold), "--reply-path", reply_path,
                "--control", self.controls[i], *extra,
                port=port, stateless=False, cwd=logdir))
            self.procs.append(proc)

    def show(self, i):
        return control.request(self.controls[i], {"command": "show"})

    def wait_up(self, timeout_s=5.0):
        """Until every proxy sees every other one up (push, continuous)."""
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if all(all(r["state"] == "up" for r in self.show(i)["peers"])
                   for i in range(len(self.ports))):
                return
            time.sleep(0.1)
        raise AssertionError(f"peers not up: {[self.show(i)['peers'] for i in range(2)]}")

    def assert_cold(self):
        """poll: nothing is sent until a decision needs figures, so before the
        first call no proxy has heard from any peer (none can be "up"), and
        the calls must work from this cold start."""
        for i in range(len(self.ports)):
            shown = self.show(i)
            assert all(r["age"] is None and r["state"] != "up" for r in shown["peers"]), shown
            assert shown["counters"]["queries_sent"] == shown["counters"]["pushes_sent"] == 0

    def wait_idle(self, timeout_s=40.0):
        """Until every live proxy's calls and pending counters are zero."""
        end = time.monotonic() + timeout_s
        while True:
            loads = [self.show(i)["load"] for i, p in enumerate(self.procs) if p.poll() is None]
            if all(x["calls"] == 0 and x["pending"] == 0 for x in loads):
                return loads
            assert time.monotonic() < end, f"counters stuck: {loads}"
            time.sleep(0.2)


def via_elements(m):
    """The Via stack of a message, one entry per via-parm.  RFC 3261 §7.3.1
    lets any element combine header lines of a comma-separated list into
    one (Via is one, §20.42), and SIPp's [last_Via:] does: a callee answers
    three Vias on one line, and a proxy that removes its own leaves the rest
    on that line.  So the stack is counted by elements, not by lines
    (commas inside a quoted via-extension value do not separate)."""
    out = []
    for line in m.header_values("Via"):
        out += [v.strip() for v in re.split(r',(?=(?:[^"]*"[^"]*")*[^"]*$)', line)]
    return out


def invites_forwarded(cap, pool, callee_port):
    """INVITEs each proxy sent to the callee (the proxy that completed them)."""
    return [len({m.call_id for m in cap.sip_between(p, callee_port, "INVITE")})
            for p in pool.ports]


def run(logdir, *, mode="push", calls=60, rate=30, hold_ms=1500, n=4, capacities=None,
        threshold=0.5, reply_path="via", uac="uac.xml", uas="uas.xml", extra=(),
        during=None):
    callee_port, caller_port = sipp.free_port(), sipp.free_port()
    with contextlib.ExitStack() as stack:
        callee = stack.enter_context(sipp.uas(uas, port=callee_port, timeout_s=120,
                                              workdir=logdir / "uas"))
        pool = Pool(stack, logdir, callee_port, n, mode=mode, capacities=capacities,
                    threshold=threshold, reply_path=reply_path, extra=extra)
        if mode == "poll":
            pool.assert_cold()
        else:
            pool.wait_up()
        with wire.capture([*pool.ports, callee_port, caller_port],
                          workdir=logdir / "wire") as cap:
            uac_proc = stack.enter_context(sipp.start_uac(
                (IP, pool.ports[0]), uac, calls=calls, rate=rate, hold_ms=hold_ms,
                port=caller_port, workdir=logdir / "uac"))
            if during is not None:
                during(pool, cap)
            caller = uac_proc.wait()
            idle = pool.wait_idle()
        shows = [pool.show(i) if p.poll() is None else None for i, p in enumerate(pool.procs)]
        counters = [stop(p) if p.poll() is None else None for p in pool.procs]
        callee_result = callee.stop()
    return pool, cap, caller, callee_result, shows, counters, idle, callee_port, caller_port


@pytest.mark.parametrize("mode", MODES)
def test_small_primary_hands_calls_to_the_delegates(logdir, mode):
    calls = 60
    pool, cap, caller, callee, shows, counters, _, cport, _ = run(
        logdir, mode=mode, calls=calls, capacities=[2, 100, 100, 100])
    caller.assert_clean(calls)
    assert callee.successful == calls and callee.failed == 0
    done = invites_forwarded(cap, pool, cport)
    assert sum(done) == calls
    assert done[0] <= 2 * 3, done                     # the primary keeps very few
    assert all(x > 0 for x in done[1:]), done         # the load spreads over the delegates
    assert shows[0]["counters"]["delegated"] == calls - done[0]
    if mode == "poll":
        # from a cold start: the decisions over the threshold waited for a
        # round of queries, and every one was resumed
        c = shows[0]["counters"]
        assert c["deferred"] > 0 and c["queries_sent"] > 0, c
        assert c["resumed"] == c["deferred"] and c["resume_errors"] == 0, c
    # each delegated INVITE names the primary in its visited list
    for port in pool.ports[1:]:
        for m in cap.sip_between(pool.ports[0], port, "INVITE"):
            assert f"sip:{IP}:{pool.ports[0]}" in (m.header("X-Sipfast-Visited") or "")
    for c in counters:
        assert c["active_calls"] == 0 and c["pending"] == 0


@pytest.mark.parametrize("mode", MODES)
def test_idle_pool_the_primary_takes_every_call(logdir, mode):
    calls = 30
    pool, cap, caller, callee, shows, _, _, cport, _ = run(
        logdir, mode=mode, calls=calls, rate=10, hold_ms=200, n=3, capacities=[1000] * 3,
        threshold=0.8)
    caller.assert_clean(calls)
    assert invites_forwarded(cap, pool, cport) == [calls, 0, 0]
    assert shows[0]["counters"]["delegated"] == 0
    assert cap.sip_between(pool.ports[0], pool.ports[1], "INVITE") == []


@pytest.mark.parametrize("reply_path", ("via", "direct"))
def test_reply_path_on_the_wire(logdir, reply_path):
    """Which proxy saw which message, the Via stack of the final response,
    ACK and BYE going to the completing proxy directly.  The caller is
    uac_route.xml: SIPp on its own sends every request of a call to the
    address on its command line (the primary) whatever the route set says,
    which is not what RFC 3261 §12.2.1.1/§8.1.2 has a user agent do;
    uac_route.xml sends the ACK and BYE to the first Route, as a UA does
    (the baresip test below shows a real one doing the same)."""
    calls = 20
    pool, cap, caller, _, _, _, _, cport, caller_port = run(
        logdir, calls=calls, rate=20, hold_ms=1000, n=3, capacities=[1, 100, 100],
        threshold=0.5, reply_path=reply_path, uac="uac_route.xml")
    caller.assert_clean(calls)
    primary = pool.ports[0]
    delegated: dict[str, int] = {}
    for d in pool.ports[1:]:
        for m in cap.sip_between(primary, d, "INVITE"):
            delegated[m.call_id] = d
            vias = via_elements(m)
            if reply_path == "via":
                # the primary's Via on top of the caller's
                assert len(vias) == 2 and f"{IP}:{primary}" in vias[0], vias
            else:
                assert len(vias) == 1 and f":{caller_port}" in vias[0], vias
    assert delegated, "no call was delegated"
    for call_id, d in delegated.items():
        to_caller = [m for m in cap.sip_between(d, caller_port) if m.call_id == call_id
                     and m.status == 200 and m.cseq_method == "INVITE"]
        via_primary = [m for m in cap.sip_between(d, primary) if m.call_id == call_id
                       and m.status == 200 and m.cseq_method == "INVITE"]
        if reply_path == "via":
            assert not to_caller and via_primary
            vias = via_elements(via_primary[0])
            assert len(vias) == 2 and f"{IP}:{primary}" in vias[0], vias
            final = [m for m in cap.sip_between(primary, caller_port)
                     if m.call_id == call_id and m.status == 200]
            assert final
            vias = via_elements(final[0])
            assert len(vias) == 1 and f":{caller_port}" in vias[0], vias
        else:
            # the delegate answers the caller itself; its Via stack is the caller's alone
            assert to_caller and not via_primary
            vias = via_elements(to_caller[0])
            assert len(vias) == 1 and f":{caller_port}" in vias[0], vias
        # only the completing proxy record-routed, so ACK and BYE go to it directly
        assert to_caller[0].header_values("Record-Route") == [f"<sip:{IP}:{d};lr>"] \
            if reply_path == "direct" else \
            final[0].header_values("Record-Route") == [f"<sip:{IP}:{d};lr>"]
        for method in ("ACK", "BYE"):
            direct = [m for m in cap.sip_between(caller_port, d, method) if m.call_id == call_id]
            via_p = [m for m in cap.sip_between(caller_port, primary, method)
                     if m.call_id == call_id]
            assert direct and not via_p, (method, call_id)
        rr = [m for m in cap.sip_between(d, cport, "INVITE") if m.call_id == call_id]
        assert rr and f"{IP}:{d}" in (rr[0].header("Record-Route") or "")


def test_killed_peer_gets_no_more_delegations_in_bounded_time(logdir):
    calls = 150
    marker = {}

    def kill_one(pool, cap):
        time.sleep(2.0)                                   # calls flowing to every peer
        victim = pool.procs[1]
        os.kill(victim.pid, signal.SIGKILL)               # by PID
        marker["t"] = time.monotonic()
        # bound: one share interval + the answer timeout (+ slack)
        time.sleep(0.2 + 0.15 + 0.5)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"sipfast-delegation-marker", (IP, pool.ports[1]))

    # --t1 100: Timer B (64*T1) ends the INVITEs handed to the dead peer
    # after 6.4 s instead of 32 s, so the counters are back to zero sooner.
    pool, cap, caller, callee, _, _, idle, cport, _ = run(
        logdir, mode="continuous", calls=calls, rate=30, hold_ms=500, n=3,
        capacities=[1, 100, 100], during=kill_one, extra=("--t1", "100"))
    dead = pool.ports[1]
    seen = [d for d in cap.datagrams]
    cut = next(i for i, d in enumerate(seen) if d.payload == b"sipfast-delegation-marker")
    to_dead = [(i, d.sip()) for i, d in enumerate(seen) if d.dst[1] == dead
               and d.src[1] == pool.ports[0] and d.payload.startswith(b"INVITE ")]
    # An INVITE delegated before the peer was found dead is retransmitted to
    # it (Timer A, same branch) until Timer B: that is the same client
    # transaction, not a new delegation.  A delegation after the bound is an
    # INVITE with a Call-ID and branch not sent to the peer before it.
    before = {(m.call_id, m.top_branch) for i, m in to_dead if i < cut}
    after = [m.call_id for i, m in to_dead if i > cut and (m.call_id, m.top_branch) not in before]
    assert after == [], f"{len(after)} INVITEs delegated to the killed peer after the bound"
    lost = {m.call_id for _, m in to_dead}
    # only calls handed to the peer before it was found dead may fail
    assert caller.successful >= calls - len(lost)
    assert caller.successful > calls // 2
    later = [d for d in seen[cut:] if d.src[1] == pool.ports[2] and d.dst[1] == cport
             and d.payload.startswith(b"INVITE ")]
    assert later, "the surviving delegate took no calls after the kill"
    assert all(x["calls"] == 0 and x["pending"] == 0 for x in idle)


def test_counters_return_to_zero_after_cancels_timeouts_and_failures(logdir):
    """Cancelled, failed and timed-out calls, some delegated: afterwards every
    proxy's active_calls and pending are zero (Kamailio/OpenSIPS bug class).

    The timed-out calls: the callee never answers, so the completing proxy's
    Timer B (64*T1) answers 408, which reaches the caller through the chain.
    That must happen before SIPp's own -recv_timeout (5 s) gives up on the
    call (SIPp then CANCELs, and the call is a failure of the test rig, not
    a timeout of the proxy): T1 = 50 ms makes Timer B 3.2 s.

    The calls never ACKed: the caller vanishes after the 200.  The proxy
    that record-routed holds a confirmed dialog that no ACK or BYE will end;
    it counts as a call only until 64*T1 (when the callee gives up on its
    2xx, RFC 3261 §13.3.1.4), here 3.2 s, not until max_call_duration."""
    for uac, uas, extra, status in (("uac_cancel.xml", "uas_ring_noanswer.xml", (), 487),
                                    ("uac_error.xml", "uas_error.xml", (), 403),
                                    ("uac_error.xml", "uas_silent.xml", ("--t1", "50"), 408),
                                    ("uac_no_ack.xml", "uas.xml", ("--t1", "50"), 200)):
        sub = logdir / uas.removesuffix(".xml")
        sub.mkdir()
        calls = 20
        _, _, caller, _, shows, counters, idle, _, _ = run(
            sub, calls=calls, rate=20, hold_ms=0, n=3, capacities=[1, 100, 100],
            uac=uac, uas=uas, extra=extra)
        assert caller.successful == calls, caller.summary()
        answered = {m.call_id for m in caller.received(status=status, method="INVITE")}
        assert len(answered) == calls, (uas, status, len(answered))
        assert shows[0]["counters"]["delegated"] > 0
        assert all(x["calls"] == 0 and x["pending"] == 0 for x in idle)
        for c in counters:
            assert c["active_calls"] == 0 and c["pending"] == 0, c


def test_every_proxy_at_capacity_answers_503(logdir):
    """Three one-call proxies, ten calls at once held 3 s: the first calls
    complete (one per proxy), the rest are answered 503 with Retry-After.
    The caller takes either answer (uac_or_503.xml): a call that completes
    is ACKed and ended with BYE like any other, so the counters return to
    zero (a caller that refused the 200 would leave confirmed dialogs behind,
    counted as calls until they expire)."""
    calls = 10
    _, cap, caller, callee, shows, counters, _, _, caller_port = run(
        logdir, calls=calls, rate=50, hold_ms=3000, n=3, capacities=[1, 1, 1],
        uac="uac_or_503.xml", threshold=0.5)
    caller.assert_clean(calls)
    refused = {m.call_id for m in caller.received(status=503, method="INVITE")}
    completed = {m.call_id for m in caller.received(status=200, method="INVITE")}
    assert not refused & completed and len(refused | completed) == calls
    # with three one-call proxies and ten concurrent calls at most three complete
    assert len(completed) <= 3 and len(refused) >= calls - 3, (completed, refused)
    assert callee.successful == len(completed)
    assert sum(s["counters"]["rejected"] for s in shows if s) == len(refused)
    to_caller = [d.sip() for d in cap.datagrams if d.dst[1] == caller_port
                 and d.payload.startswith(b"SIP/2.0 503 ")]
    assert to_caller and all(m.header("Retry-After") for m in to_caller)
    for c in counters:
        assert c["active_calls"] == 0 and c["pending"] == 0


def test_baresip_call_completes_on_a_delegate_with_audio(tmp_path):
    """A real user agent through a primary that delegates: baresip (outbound
    proxy: the primary, whose capacity is one call, so the call is over its
    threshold) calls an auto-answering baresip; the primary hands the INVITE
    to the idle delegate, which completes the call.  Judged on the wire and
    by baresip: the INVITE went caller -> primary -> delegate -> callee; the
    200 names the delegate alone in Record-Route, so baresip sends ACK and
    BYE to the delegate directly (never to the primary); RTP flowed both
    ways between the ports and SSRCs of the two SDPs; both baresips count
    RTP sent and received; the BYE was answered 200 and every counter of
    both proxies is back to zero."""
    require_baresip()
    wav = tmp_path / "sine-8k.wav"
    write_sine(wav)
    agents: list[Baresip] = []
    try:
        with contextlib.ExitStack() as stack:
            callee = Baresip("callee", tmp_path, f"<sip:bob@{IP}>;regint=0;answermode=auto",
                             wav)
            agents.append(callee)
            pool = Pool(stack, tmp_path, callee.sip_port, 2, capacities=[1, 100])
            pool.wait_up()
            primary, delegate = pool.ports
            caller = Baresip("caller", tmp_path,
                             f'<sip:alice@{IP}>;regint=0;outbound="sip:{IP}:{primary}"', wav)
            agents.append(caller)
            with wire.capture([*pool.ports, *caller.ports, *callee.ports],
                              workdir=tmp_path / "wire") as cap:
                closed = caller.call(callee, f"sip:bob@{IP}:{callee.sip_port}")
                idle = pool.wait_idle(timeout_s=10)
            shows = [pool.show(i) for i in range(2)]
            counters = [stop(p) for p in pool.procs]
    finally:
        outputs = {a.name: a.stop() for a in agents}
    c, e = caller.sip_port, callee.sip_port
    assert closed["param"] == "Connection reset by user"  # our hangup: BYE sent, 200 back

    # The INVITE: caller -> primary -> delegate -> callee, once each.
    assert len(cap.sip_between(c, primary, "INVITE")) == 1
    handed = cap.sip_between(primary, delegate, "INVITE")
    assert len(handed) == 1
    assert f"sip:{IP}:{primary}" in (handed[0].header("X-Sipfast-Visited") or "")
    assert len(cap.sip_between(delegate, e, "INVITE")) == 1
    assert not cap.sip_between(primary, e)             # the primary never reached the callee
    assert not cap.sip_between(c, e) and not cap.sip_between(e, c)
    ok = [m for m in cap.sip_between(primary, c) if m.status == 200 and m.cseq_method == "INVITE"]
    assert ok and ok[0].header_values("Record-Route") == [f"<sip:{IP}:{delegate};lr>"]
    # ACK and BYE straight to the completing proxy, and on to the callee.
    for method in ("ACK", "BYE"):
        assert len(cap.sip_between(c, delegate, method)) == 1, method
        assert not cap.sip_between(c, primary, method), method
        assert len(cap.sip_between(delegate, e, method)) == 1, method
    assert [(m.status, m.cseq_method) for m in cap.sip_between(delegate, c)] == [(200, "BYE")]

    # RTP both ways between the ports and SSRCs the two SDPs announced.
    caller_rtp, caller_ssrc = sdp_media(cap.sip_between(c, primary, "INVITE")[0])
    callee_rtp, callee_ssrc = sdp_media(ok[0])
    forward = [d for d in cap.between(caller_rtp, callee_rtp) if d.is_rtp]
    backward = [d for d in cap.between(callee_rtp, caller_rtp) if d.is_rtp]
    assert len(forward) >= MIN_PACKETS and len(backward) >= MIN_PACKETS
    assert {struct.unpack("!I", d.payload[8:12])[0] for d in forward} == {caller_ssrc}
    assert {struct.unpack("!I", d.payload[8:12])[0] for d in backward} == {callee_ssrc}
    for name, out in outputs.items():
        sent, received = rtp_stats(out)
        assert sent >= MIN_PACKETS and received >= MIN_PACKETS, (name, sent, received)

    assert shows[0]["counters"]["delegated"] == 1 and shows[1]["counters"]["local"] == 1
    assert shows[1]["counters"]["delegated"] == 0
    assert all(x["calls"] == 0 and x["pending"] == 0 for x in idle)
    for n in counters:
        assert n["active_calls"] == 0 and n["pending"] == 0 and n["dialogs"] == 0, n
    assert counters[0]["delegated"] == 1 and counters[0]["dialogs"] == 0
    assert counters[1]["calls_ended"] == 1                # the delegate saw the BYE end it
