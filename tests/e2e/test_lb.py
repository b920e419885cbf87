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

from . import sipp
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
