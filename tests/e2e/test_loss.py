"""Retransmissions through the transaction-stateful `sipfast proxy` under real packet
loss (RFC 3261 §17): a SIPp caller and a SIPp callee each in a network namespace of its
own, the proxy in the root namespace between them (see netns.py), the kernel dropping a
share of the packets on the links.

    caller ns  --veth (lossy)--  root ns: sipfast proxy  --veth (lossy)--  callee ns
    10.77.X.2                    10.77.X.1 (listens) / .5                  10.77.X.6

Why these numbers make every call complete (``p`` = loss on each link in each
direction, so a message crossing the proxy is lost with about 2p; ``q = 1-(1-p)^2`` =
a request or its answer lost on one link; with p = 5 %, q = 0.0975):

- Caller INVITE: SIPp sends it up to 6 times (``-max_invite_retrans`` 5, 0.5 s doubling,
  31 s), until any answer; the proxy answers each copy (100 Trying, or its last
  response): lost only if all six are, q^6 = 9e-7 per call.
- Proxy -> callee INVITE (Timer A, --t1 200 ms: sent at 0, .2, .6, 1.4, 3, 6.2, 12.6 s
  until Timer B at 12.8 s) and the callee's own 200 retransmissions (0.5 s doubling to
  4 s, 8 sends over 19.5 s, until the ACK or the BYE comes): q^7 = 8e-8.
- BYE, caller side: SIPp sends it up to 8 times (0.5 s doubling to 4 s); the proxy
  absorbs the copies and answers them with the 200 once it has it, for Timer J (64*T1
  = 12.8 s), which covers 6 of the caller's sends: p*q^5 = 4e-7.
- BYE, callee side (Timer E, sent at 0, .2, .6, 1.4, 3, 6.2 s...): the callee lingers
  7 s after its 200 (uas_loss.xml) so that each of those six copies is answered:
  q^6 = 9e-7 per call.  (It also takes an ACK arriving after the BYE then: a lost
  first ACK is sent again by the caller on the next 200 retransmission, which can
  cross the BYE.)
The caller's receive timeout is 30 s, so that it is these timers, not SIPp's patience
(5 s by default), that decide.  Summed, 2.2e-6 per call: for 300 calls, a run fails by
bad luck about once in 1,500.  (10 % per link would give q = 0.19 and about 4 % of runs
failing; hence 5 %.)  The drop is real: netem where the kernel has it, else nftables
in the kernel (netns.py); the kernel's drop counters are asserted non-zero.

Nothing is timed: the assertions are on counts (SIPp's statistics and message traces,
the proxy's counters, the kernel's drop counters).
"""

from __future__ import annotations

import subprocess
from collections import Counter

import pytest

from . import netns, sipp
from .proxyproc import proxy, stop

LOSS = 5            # % on each lossy link, in each direction
PROXY_T1 = 200      # ms; T2 stays 4 s
HOLD_MS = 1000      # caller: ACK, then the BYE a second later


@pytest.fixture
def net():
    """A caller and a callee namespace, removed afterwards whatever happened."""
    try:
        with netns.network("caller", "callee") as n:
            yield n
    except netns.NetnsError as e:
        pytest.fail(f"network namespaces: {e}", pytrace=False)


def run_calls(net, logdir, calls, *, rate=50, t1=PROXY_T1):
    """Callee in its namespace, the stateful proxy (one worker) on the root side of the
    caller's link routing to it, then the caller; returns (caller result, callee
    result, proxy counters, kernel drops per direction)."""
    caller, callee = net["caller"], net["callee"]
    with sipp.start_uas("uas_loss.xml", ip=callee.ip, netns=callee.netns, calls=calls,
                        timeout_s=60, workdir=logdir / "uas") as uas:
        # Timer J as RFC 3261 §17.2.2 has it for UDP (64*T1), which the
        # numbers above assume: the default --wait-timer (10*T1, 2 s here)
        # ends the BYE's server transaction before the caller's later
        # copies (T1 500 ms, doubling to 4 s) come
        with proxy("--route", f"sip:{callee.ip}:{uas.port}", "--workers", "1",
                   "--t1", str(t1), "--wait-timer", str(64 * t1), host=caller.gateway,
                   stateless=False, cwd=logdir) as (pport, proc):
            uac = sipp.run_uac((caller.gateway, pport), "uac.xml", ip=caller.ip,
                               netns=caller.netns, calls=calls, rate=rate,
                               hold_ms=HOLD_MS, recv_timeout_ms=30000,
                               timeout_s=calls / rate + 30, workdir=logdir / "uac")
            uas_result = uas.wait(timeout_s=40)
            counters = stop(proc)
    drops = net.drops()
    print(f"loss by {sorted(net.backends)}; kernel drops {drops}\n"
          f"caller: {uac.successful} ok, {uac.failed} failed, "
          f"{uac.retransmissions} retransmissions; callee: {uas_result.successful} ok, "
          f"{uas_result.failed} failed, {uas_result.retransmissions} retransmissions\n"
          f"proxy: {counters}")
    return uac, uas_result, counters, drops


def copies(result, method):
    """Call-ID -> how many copies of ``method`` requests the side sent/received."""
    seen = result.sent(method=method) if result.role == "uac" else result.received(
        method=method)
    return Counter(m.call_id for m in seen)


def branches(result, method):
    """Call-ID -> set of top Via branches of the ``method`` requests received."""
    out: dict[str, set[str]] = {}
    for m in result.received(method=method):
        out.setdefault(m.call_id, set()).add(m.top_branch)
    return out


def assert_proxy_healthy(counters, calls):
    # No transaction ran out of time (no 408 from Timer B/F), nothing refused or lost.
    for key in ("timeouts", "rejected", "send_errors", "lost_actions", "malformed"):
        assert counters[key] == 0, (key, counters)
    # One INVITE and one BYE transaction per call (the 2xx ACK is none): no
    # retransmission started another one.
    assert counters["transactions"] == 2 * calls, counters


def assert_one_branch_per_call(callee, calls):
    """The callee saw each call's INVITE and BYE, every copy of each with one proxy
    branch: no caller retransmission was forwarded as a new transaction."""
    for method in ("INVITE", "BYE"):
        per_call = branches(callee, method)
        assert len(per_call) == calls, method
        several = {cid: b for cid, b in per_call.items() if len(b) != 1}
        assert not several, (method, several)


def test_loss_on_both_links_every_call_completes(net, logdir):
    calls = 300
    net.loss(net["caller"], LOSS)
    net.loss(net["callee"], LOSS)
    caller, callee, counters, drops = run_calls(net, logdir, calls)
    caller.assert_clean(calls)
    callee.assert_clean(calls)
    # The kernel did drop packets, each way on each link.
    assert set(drops) == {"to caller", "from caller", "to callee", "from callee"}
    assert all(n > 0 for n in drops.values()), drops
    # SIPp retransmitted (INVITE/BYE from the caller, 200s from the callee) ...
    assert caller.retransmissions > 0 and callee.retransmissions > 0
    # ... the proxy absorbed request retransmissions and answered them again.
    assert counters["request_retransmissions"] > 0, counters
    assert counters["resent"] > 0, counters
    assert_proxy_healthy(counters, calls)
    assert_one_branch_per_call(callee, calls)


def test_loss_towards_the_callee_shows_timers_a_and_e(net, logdir):
    """Only the proxy's own link to the callee is lossy (both ways: a lost answer of
    the callee is what leaves the proxy retransmitting to a callee that has the
    request already).  The caller's link is clean."""
    calls = 200
    net.loss(net["callee"], LOSS)
    caller, callee, counters, drops = run_calls(net, logdir, calls)
    caller.assert_clean(calls)
    callee.assert_clean(calls)
    assert set(drops) == {"to callee", "from callee"} and all(drops.values()), drops
    assert_proxy_healthy(counters, calls)
    assert_one_branch_per_call(callee, calls)
    # Calls for which the callee received more copies of a request, all with the same
    # branch, than the caller ever sent: only the proxy's own retransmissions (Timer A
    # for the INVITE, Timer E for the BYE) can make those.  (A lost 200 of the callee
    # gives one with probability p, so about 10 of 200 calls each; none at all has a
    # probability of 0.95^200 = 4e-5.)
    for method in ("INVITE", "BYE"):
        sent, got = copies(caller, method), copies(callee, method)
        more = [cid for cid, n in got.items() if n > sent[cid]]
        assert more, (method, sum(sent.values()), sum(got.values()))
    assert counters["forwarded_requests"] > 3 * calls, counters   # INVITE, ACK, BYE + A/E


def test_loss_towards_the_caller_is_absorbed_by_the_proxy(net, logdir):
    """Only the caller's link is lossy: the caller retransmits, the proxy absorbs and
    answers; the callee, on a clean link, gets each INVITE and BYE exactly once.
    (T1 is 2 s here, so Timer A/E would fire only if the callee took that long.)"""
    calls = 200
    net.loss(net["caller"], LOSS)
    caller, callee, counters, drops = run_calls(net, logdir, calls, t1=2000)
    caller.assert_clean(calls)
    callee.assert_clean(calls)
    assert set(drops) == {"to caller", "from caller"} and all(drops.values()), drops
    assert caller.retransmissions > 0
    assert counters["request_retransmissions"] > 0 and counters["resent"] > 0, counters
    assert_proxy_healthy(counters, calls)
    assert_one_branch_per_call(callee, calls)
    for method in ("INVITE", "BYE"):
        sent, got = copies(caller, method), copies(callee, method)
        assert sum(sent.values()) > calls, method      # the caller did retransmit
        assert set(got.values()) == {1}, (method, Counter(got.values()))


def test_loss_network_is_built_and_removed_even_when_the_body_fails():
    with pytest.raises(RuntimeError, match="body"):
        with netns.network("a", "b") as n:
            a, b = n["a"], n["b"]
            assert a.ip != b.ip and a.netns != b.netns
            # a command in a's namespace sees only its own link (and lo) ...
            links = a.run("ip", "-o", "link", "show").stdout
            assert " eth0@" in links and b.peer not in links
            # ... and reaches b through the root namespace
            assert a.run("ip", "route", "get", b.ip).stdout.startswith(f"{b.ip} via {a.gateway}")
            n.loss(a, 50)
            assert n.drops() == {"to a": 0, "from a": 0}
            raise RuntimeError("body")
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert n.token not in left
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert f"sfl{n.token}" not in links
    if "nft" in n.backends:
        tables = subprocess.run(["nft", "list", "tables"], capture_output=True,
                                text=True).stdout
        assert n.token not in tables


def test_loss_setup_fails_loudly_without_ip_or_tc(monkeypatch):
    monkeypatch.setattr(netns.shutil, "which", lambda name: None)
    monkeypatch.setattr(netns.os, "access", lambda path, mode: False)
    with pytest.raises(netns.NetnsError, match="apt-get install iproute2"):
        with netns.network("a"):
            pass
