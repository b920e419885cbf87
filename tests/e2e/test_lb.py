"""`sipfast lb`, the first-responder balancer (DESIGN.md §1 scheme A), with a
pool of real sipfast proxies, SIPp callers and callees, judged on the wire:
every member gets the probe, the first answer wins, the rest are cancelled
(or had nothing left to cancel), the caller learns the winner and completes
its call through it."""

from __future__ import annotations

import re
import signal
import socket
import threading
import time
from contextlib import ExitStack

import sipfast
from sipfast import parse

from . import sipp, wire
from .proxyproc import SIPFAST, balancer, free_udp_port, members, running, stop

IP = "127.0.0.1"
CONTACT = re.compile(r"<sip:(?:[^@>]*@)?([0-9.]+):(\d+)")


def test_redirect_mode_every_member_probed_winner_named_call_completes(logdir):
    calls = 1000
    with sipp.start_uas(calls=calls, timeout_s=60, workdir=logdir / "uas") as callee, \
            ExitStack() as stack:
        pool = members(stack, 3, callee.port, logdir)
        ports = [p for p, _ in pool]
        with balancer(ports, cwd=logdir) as (lport, lb):
            caller = sipp.run_uac((IP, lport), "uac_redirect.xml", calls=calls, rate=200,
                                  max_concurrent=200, workdir=logdir / "uac")
            result = callee.wait(timeout_s=15)
            lbc = stop(lb)
        mc = [stop(proc) for _, proc in pool]
    caller.assert_clean(calls)
    result.assert_clean(calls)
    # The caller got one 302 per call, naming one of the members.
    redirects = caller.received(status=302)
    assert len(redirects) == calls
    winners = []
    for r in redirects:
        host, port = CONTACT.search(r.header("Contact")).groups()
        assert host == IP and int(port) in ports
        winners.append(int(port))
    # Its call then went to that member, which record-routed and relayed it.
    by_call = {r.call_id: w for r, w in zip(redirects, winners, strict=True)}
    for inv in result.received(method="INVITE"):
        assert inv.header("X-Sipfast-Probe") is None
        assert f"<sip:{IP}:{by_call[inv.call_id]};lr>" in inv.header("Record-Route")
    # Every member got every probe and answered it at once with its identity.
    assert [c["probes_answered"] for c in mc] == [calls] * 3
    assert lbc["probes_sent"] == 3 * calls and lbc["redirects"] == calls
    # Each probe's final answer was ACKed by the balancer; the losers still
    # pending when the winner answered were cancelled (after their 100).
    assert lbc["acks_sent"] == 3 * calls
    assert lbc["cancels_sent"] <= 2 * calls
    assert sum(lbc[f"member{i}_wins"] for i in range(3)) == calls
    assert lbc["lb_no_winner"] == 0 and lbc["dropped"] == 0
    # a rotating fan-out order: every member wins a fair share on an idle pool
    assert all(lbc[f"member{i}_wins"] > calls // 10 for i in range(3)), lbc


def test_proxy_mode_relays_through_the_winner_which_record_routes(logdir):
    calls = 300
    with sipp.start_uas(calls=calls, timeout_s=60, workdir=logdir / "uas") as callee, \
            ExitStack() as stack:
        pool = members(stack, 3, callee.port, logdir)
        ports = [p for p, _ in pool]
        with balancer(ports, "--mode", "proxy", cwd=logdir) as (lport, lb):
            caller = sipp.run_uac((IP, lport), "uac.xml", calls=calls, rate=100,
                                  workdir=logdir / "uac")
            result = callee.wait(timeout_s=15)
            lbc = stop(lb)
        for _, proc in pool:
            stop(proc)
    caller.assert_clean(calls)
    result.assert_clean(calls)
    assert lbc["lb_relayed"] == calls and caller.received(status=302) == []
    for inv in result.received(method="INVITE"):
        rr = inv.header("Record-Route")
        # only the winner record-routes: the balancer is not in the dialog
        assert rr.count("<sip:") == 1 and int(CONTACT.search(rr).group(2)) in ports
        assert f":{lport};" not in rr
    # ACK and BYE go from the caller to the winner directly (Route = winner)
    for method in ("ACK", "BYE"):
        sent = caller.sent(method=method)
        assert len(sent) == calls
        assert all(int(CONTACT.search(m.header("Route")).group(2)) in ports for m in sent)


class SlowMember:
    """A pool member that answers probes like sipfast (100, then 302 naming
    itself) but only after `delay` seconds: the slow proxy of the pool."""

    def __init__(self, delay: float) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((IP, 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.delay = delay
        self.probes = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def _run(self) -> None:
        while not self.done.is_set():
            try:
                data, addr = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            msg = parse(data)
            if msg.method == "INVITE" and msg.get("X-Sipfast-Probe"):
                self.probes += 1
                self.sock.sendto(sipfast.make_response(msg, 100), addr)
                # answered later, without holding up the other probes
                late = sipfast.make_response(
                    msg, 302, to_tag="slow",
                    headers=[("Contact", f"<sip:{msg.uri.user}@{IP}:{self.port}>")])
                threading.Timer(self.delay, self.sock.sendto, (late, addr)).start()
            elif msg.method == "OPTIONS":       # the balancer's keep-alive
                self.sock.sendto(sipfast.make_response(msg, 200, to_tag="slow"), addr)
            elif msg.method == "CANCEL":
                self.sock.sendto(sipfast.make_response(msg, 200, to_tag="slow"), addr)

    def close(self) -> None:
        self.done.set()
        self.thread.join()
        time.sleep(2 * self.delay)          # the last late answers go out
        self.sock.close()


def test_a_slow_member_wins_rarely(logdir):
    calls = 300
    slow = SlowMember(0.05)
    try:
        with sipp.start_uas(calls=calls, timeout_s=60, workdir=logdir / "uas") as callee, \
                ExitStack() as stack:
            pool = members(stack, 2, callee.port, logdir)
            with balancer([p for p, _ in pool] + [slow.port], cwd=logdir) as (lport, lb):
                caller = sipp.run_uac((IP, lport), "uac_redirect.xml", calls=calls, rate=50,
                                      workdir=logdir / "uac")
                result = callee.wait(timeout_s=15)
                lbc = stop(lb)
            for _, proc in pool:
                stop(proc)
    finally:
        slow.close()
    caller.assert_clean(calls)
    result.assert_clean(calls)
    assert slow.probes == calls                     # it was asked every time
    assert lbc["member2_wins"] <= calls // 20       # and almost never first
    assert lbc["member0_wins"] + lbc["member1_wins"] + lbc["member2_wins"] == calls


def test_a_member_stopped_mid_run_is_taken_out_and_comes_back(logdir):
    phase = 100
    with sipp.start_uas(calls=3 * phase, timeout_s=90, workdir=logdir / "uas") as callee, \
            ExitStack() as stack:
        pool = members(stack, 3, callee.port, logdir)
        ports = [p for p, _ in pool]
        gone = pool[2][1]
        with balancer(ports, "--keepalive", "0.5", "--probe-timeout", "500",
                      cwd=logdir) as (lport, lb):
            results = []
            for step in range(3):
                if step == 1:
                    gone.send_signal(signal.SIGSTOP)   # member 2 stops answering
                    time.sleep(2.0)                    # the keep-alive notices
                if step == 2:
                    gone.send_signal(signal.SIGCONT)   # and it is back
                    time.sleep(2.0)
                results.append(sipp.run_uac((IP, lport), "uac_redirect.xml", calls=phase,
                                            rate=50, workdir=logdir / f"uac{step}",
                                            role=f"uac{step}"))
            callee_result = callee.wait(timeout_s=20)
            lbc = stop(lb)
        counters = [stop(proc) for _, proc in pool]
    for r in results:
        r.assert_clean(phase)                          # no call lost meanwhile
    callee_result.assert_clean(3 * phase)
    won = [[int(CONTACT.search(m.header("Contact")).group(2)) for m in r.received(status=302)]
           for r in results]
    assert ports[2] not in won[1]                      # out while stopped
    assert ports[2] in won[2]                          # and winning again after
    assert lbc["member2_up"] == 1
    # while it was out it was not even probed: it answered fewer probes
    assert counters[2]["probes_answered"] < counters[0]["probes_answered"]


def test_query_mode_answers_a_plain_options_with_the_winner(logdir):
    queries = 50
    with sipp.start_uas(calls=1, timeout_s=30, workdir=logdir / "uas") as callee, \
            ExitStack() as stack:
        pool = members(stack, 3, callee.port, logdir)
        ports = [p for p, _ in pool]
        with balancer(ports, cwd=logdir) as (lport, lb):
            q = sipp.run_uac((IP, lport), "uac_options.xml", calls=queries, rate=25,
                             workdir=logdir / "uac")
            lbc = stop(lb)
        for _, proc in pool:
            stop(proc)
        callee.stop()
    q.assert_clean(queries)
    oks = q.received(status=200)
    assert len(oks) == queries
    assert all(int(CONTACT.search(m.header("Contact")).group(2)) in ports for m in oks)
    assert lbc["probes_sent"] == 3 * queries


def test_no_member_answers_the_caller_gets_503_with_retry_after(logdir):
    silent = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
    for s in silent:
        s.bind((IP, 0))
    try:
        with balancer([s.getsockname()[1] for s in silent], "--probe-timeout", "300",
                      "--keepalive", "0", cwd=logdir) as (lport, lb):
            caller = sipp.run_uac((IP, lport), "uac_error.xml", calls=5, rate=5,
                                  workdir=logdir / "uac")
            lbc = stop(lb)
    finally:
        for s in silent:
            s.close()
    caller.assert_clean(5)
    finals = [m for m in caller.received() if m.status and m.status >= 200]
    assert [m.status for m in finals] == [503] * 5
    assert all(m.header("Retry-After") == "5" for m in finals)
    assert lbc["lb_no_winner"] == 5


def test_the_pool_file_is_read_again_on_sighup(logdir):
    calls = 50
    with sipp.start_uas(calls=2 * calls, timeout_s=60, workdir=logdir / "uas") as callee, \
            ExitStack() as stack:
        pool = members(stack, 3, callee.port, logdir)
        ports = [p for p, _ in pool]
        pool_file = logdir / "pool.txt"
        pool_file.write_text("# the first two\n" + "".join(f"sip:{IP}:{p}\n" for p in ports[:2]))
        lport = free_udp_port(IP)
        with running([str(SIPFAST), "lb", "--listen", f"udp:{IP}:{lport}", "--workers", "1",
                      "--pool-file", str(pool_file)], logdir) as lb:
            first = sipp.run_uac((IP, lport), "uac_redirect.xml", calls=calls, rate=50,
                                 workdir=logdir / "uac1", role="uac1")
            pool_file.write_text("".join(f"sip:{IP}:{p}\n" for p in ports))
            lb.send_signal(signal.SIGHUP)
            line = ""
            assert lb.stderr is not None
            while "pool reloaded" not in line:
                line = lb.stderr.readline()
                assert line, "no reload message"
            assert "3 members" in line
            second = sipp.run_uac((IP, lport), "uac_redirect.xml", calls=calls, rate=50,
                                  workdir=logdir / "uac2", role="uac2")
            callee.wait(timeout_s=15)
            stop(lb)
        counters = [stop(proc) for _, proc in pool]
    first.assert_clean(calls)
    second.assert_clean(calls)
    # the third member was not in the pool, then it was: probed for each call
    assert counters[2]["probes_answered"] == calls
    assert counters[0]["probes_answered"] == counters[1]["probes_answered"] == 2 * calls


def _answer(probe: wire.Datagram, status: int, reason: str, tag: str,
            extra: str = "") -> bytes:
    """A member's response to the request in ``probe`` (Via, From, To + tag,
    Call-ID, CSeq copied, RFC 3261 §8.2.6.2)."""
    req = probe.sip()
    vias = "".join(f"Via: {v}\r\n" for v in req.header_values("Via"))
    return (f"SIP/2.0 {status} {reason}\r\n{vias}From: {req.header('From')}\r\n"
            f"To: {req.header('To')};tag={tag}\r\nCall-ID: {req.header('Call-ID')}\r\n"
            f"CSeq: {req.header('CSeq')}\r\n{extra}Content-Length: 0\r\n\r\n").encode()


def _via_dest(req: wire.Datagram) -> tuple[str, int]:
    """Where a response to req goes: its top Via's sent-by (§18.2.2)."""
    host, port = re.search(r"SIP/2.0/UDP ([0-9.]+):(\d+)", req.sip().header("Via")).groups()
    return host, int(port)


def _recv(sock: socket.socket, timeout_s: float = 5.0) -> wire.Datagram | None:
    sock.settimeout(timeout_s)
    try:
        data, src = sock.recvfrom(65535)
    except TimeoutError:
        return None
    return wire.Datagram(src, sock.getsockname(), data)


def test_a_loser_whose_final_answer_is_in_the_winners_batch_gets_no_cancel(logdir):
    """Deterministic batches: the balancer is stopped (SIGSTOP) while the two
    members answer its probes, so all their answers wait in its socket and
    are read in one receive batch.  Member A's 302 wins; member B's 100 asks
    for a CANCEL (§9.1), but B's 302 is in the same batch, so the CANCEL is
    not sent (it would be a wasted message: B's transaction is complete).
    Control: when B's final answer is NOT in the batch, B gets the CANCEL."""
    a, b, caller = (socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3))
    for s in (a, b, caller):
        s.bind((IP, 0))
    ap, bp = a.getsockname()[1], b.getsockname()[1]
    try:
        with balancer([ap, bp], "--keepalive", "0", cwd=logdir) as (lport, lb):
            for call, b_final_in_batch in (("spared", True), ("needed", False)):
                caller.sendto((
                    f"INVITE sip:bob@{IP}:{lport} SIP/2.0\r\n"
                    f"Via: SIP/2.0/UDP {IP}:{caller.getsockname()[1]};branch=z9hG4bK-{call}\r\n"
                    f"Max-Forwards: 70\r\nFrom: <sip:alice@{IP}>;tag=a-{call}\r\n"
                    f"To: <sip:bob@{IP}>\r\nCall-ID: {call}@test\r\nCSeq: 1 INVITE\r\n"
                    f"Contact: <sip:alice@{IP}:{caller.getsockname()[1]}>\r\n"
                    "Content-Length: 0\r\n\r\n").encode(), (IP, lport))
                pa, pb = _recv(a), _recv(b)
                assert pa is not None and pb is not None, "a member got no probe"
                assert pa.sip().header("X-Sipfast-Probe") == "call"
                lb.send_signal(signal.SIGSTOP)
                try:
                    a.sendto(_answer(pa, 100, "Trying", "ta"), _via_dest(pa))
                    a.sendto(_answer(pa, 302, "Moved Temporarily", "ta",
                                     f"Contact: <sip:bob@{IP}:{ap}>\r\n"), _via_dest(pa))
                    b.sendto(_answer(pb, 100, "Trying", "tb"), _via_dest(pb))
                    if b_final_in_batch:
                        b.sendto(_answer(pb, 302, "Moved Temporarily", "tb",
                                         f"Contact: <sip:bob@{IP}:{bp}>\r\n"), _via_dest(pb))
                    time.sleep(0.2)     # every answer is in the balancer's socket
                finally:
                    lb.send_signal(signal.SIGCONT)
                # the caller is told A won
                finals = []
                while not finals:
                    d = _recv(caller)
                    assert d is not None, "the caller got no final answer"
                    if d.sip().status >= 200:
                        finals.append(d.sip())
                assert finals[0].status == 302
                assert CONTACT.search(finals[0].header("Contact")).groups() == (IP, str(ap))
                # A's 302 is ACKed, and A is not cancelled
                got_a = _recv(a, 2.0)
                assert got_a is not None and got_a.sip().method == "ACK"
                got_b = _recv(b, 1.0)
                if b_final_in_batch:
                    # B: the ACK of its 302, and no CANCEL (nothing else at all)
                    assert got_b is not None and got_b.sip().method == "ACK"
                    assert _recv(b, 1.0) is None
                else:
                    # B's transaction is still pending: it is cancelled (§9.1)
                    assert got_b is not None and got_b.sip().method == "CANCEL"
                    assert got_b.sip().header("Via") == pb.sip().header("Via")
                    b.sendto(_answer(got_b, 200, "OK", "tb"), _via_dest(got_b))
                    b.sendto(_answer(pb, 487, "Request Terminated", "tb"), _via_dest(pb))
                    ack = _recv(b, 2.0)
                    assert ack is not None and ack.sip().method == "ACK"
                caller.sendto((
                    f"ACK sip:bob@{IP}:{lport} SIP/2.0\r\n"
                    f"Via: SIP/2.0/UDP {IP}:{caller.getsockname()[1]};branch=z9hG4bK-{call}\r\n"
                    f"Max-Forwards: 70\r\nFrom: <sip:alice@{IP}>;tag=a-{call}\r\n"
                    f"To: {finals[0].header('To')}\r\nCall-ID: {call}@test\r\nCSeq: 1 ACK\r\n"
                    "Content-Length: 0\r\n\r\n").encode(), (IP, lport))
            lbc = stop(lb)
    finally:
        for s in (a, b, caller):
            s.close()
    assert lbc["cancels_spared"] == 1 and lbc["cancels_sent"] == 1
    assert lbc["acks_sent"] == 4 and lbc["redirects"] == 2
