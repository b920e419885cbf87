"""`sipfast proxy --stateless` over UDP, judged on the wire.

The test plays caller and callee with raw sockets (so every forwarded byte
can be checked), and SIPp places real calls through the proxy.
"""

from __future__ import annotations

import csv
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
from e2e.proxyproc import free_udp_port, proxy, stop

import sipfast
from sipfast import parse

SIPP = shutil.which("sipp")


def udp(port: int = 0) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", port))
    s.settimeout(5)
    return s


def invite(caller_port: int, proxy_port: int, branch: str = "z9hG4bKcaller1",
           extra: str = "", method: str = "INVITE", cseq_method: str | None = None,
           max_forwards: int = 70) -> bytes:
    return (
        f"{method} sip:bob@127.0.0.1:{proxy_port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{caller_port};branch={branch};rport\r\n"
        f"Max-Forwards: {max_forwards}\r\n"
        "From: <sip:alice@example.com>;tag=a1\r\n"
        "To: <sip:bob@example.com>\r\n"
        "Call-ID: call-1@127.0.0.1\r\n"
        f"CSeq: 1 {cseq_method or method}\r\n"
        f"{extra}"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def test_compiled_loop_is_in_use() -> None:
    assert sipfast.UdpProxy.__module__ == "sipfast._core"
    assert sipfast._core.__file__.endswith(".so")


def test_request_and_response_are_forwarded_with_rfc3261_edits() -> None:
    callee = udp()
    caller = udp()
    cport, eport = caller.getsockname()[1], callee.getsockname()[1]
    with proxy("--route", f"sip:127.0.0.1:{eport}", "--record-route",
               "--workers", "1") as (pport, proc):
        caller.sendto(invite(cport, pport), ("127.0.0.1", pport))
        data, addr = callee.recvfrom(65535)
        fwd = parse(data)
        vias = fwd.vias
        assert len(vias) == 2
        assert (vias[0].host, vias[0].port) == ("127.0.0.1", pport)
        assert vias[0].branch.startswith("z9hG4bK") and vias[0].branch != "z9hG4bKcaller1"
        assert vias[0].has_rport
        # RFC 3581: the caller's Via gets the port it was seen from.
        assert vias[1].branch == "z9hG4bKcaller1"
        assert vias[1].rport == cport
        assert fwd.max_forwards == 69
        assert [r.uri.text for r in fwd.record_routes] == [f"sip:127.0.0.1:{pport};lr"]
        assert fwd.body == b"" and fwd.call_id == "call-1@127.0.0.1"
        # The same request again (a retransmission) gets the same branch.
        caller.sendto(invite(cport, pport), ("127.0.0.1", pport))
        assert parse(callee.recvfrom(65535)[0]).branch == vias[0].branch
        # A CANCEL of it, too (RFC 3261 §16.11).
        caller.sendto(invite(cport, pport, method="CANCEL"), ("127.0.0.1", pport))
        cancel = parse(callee.recvfrom(65535)[0])
        assert cancel.method == "CANCEL" and cancel.branch == vias[0].branch
        assert not cancel.record_routes
        # The callee answers; the proxy pops its Via and returns it to rport.
        resp = sipfast.make_response(fwd, 180, to_tag="b1")
        callee.sendto(resp, addr)
        back = parse(caller.recvfrom(65535)[0])
        assert back.status == 180
        assert [v.branch for v in back.vias] == ["z9hG4bKcaller1"]
        assert back.to_tag == "b1"
        out = stop(proc)
    assert out["forwarded_requests"] == 3 and out["forwarded_responses"] == 1


def test_route_naming_the_proxy_is_popped_and_next_route_followed() -> None:
    callee = udp()
    caller = udp()
    cport, eport = caller.getsockname()[1], callee.getsockname()[1]
    with proxy() as (pport, _):
        routes = f"Route: <sip:127.0.0.1:{pport};lr>, <sip:127.0.0.1:{eport};lr>\r\n"
        caller.sendto(invite(cport, 9, extra=routes, method="BYE"), ("127.0.0.1", pport))
        fwd = parse(callee.recvfrom(65535)[0])
        assert fwd.method == "BYE"
        assert [r.uri.text for r in fwd.routes] == [f"sip:127.0.0.1:{eport};lr"]
        assert fwd.uri_text == "sip:bob@127.0.0.1:9"      # loose routing: R-URI kept


def test_malformed_request_gets_400_with_reason_and_loop_keeps_serving() -> None:
    callee = udp()
    caller = udp()
    cport, eport = caller.getsockname()[1], callee.getsockname()[1]
    with proxy("--route", f"sip:127.0.0.1:{eport}") as (pport, proc):
        bad = invite(cport, pport, cseq_method="BYE")
        caller.sendto(bad, ("127.0.0.1", pport))
        answer = parse(caller.recvfrom(65535)[0])
        assert (answer.status, answer.reason) == (
            400, "CSeq method does not match request method")
        assert answer.branch == "z9hG4bKcaller1" and answer.to_tag
        caller.sendto(b"\x00\xffgarbage\r\n\r\n" * 3, ("127.0.0.1", pport))
        caller.sendto(invite(cport, pport, max_forwards=0), ("127.0.0.1", pport))
        hops = parse(caller.recvfrom(65535)[0])
        assert (hops.status, hops.reason) == (483, "Too Many Hops")
        caller.sendto(invite(cport, pport, branch="z9hG4bKgood"), ("127.0.0.1", pport))
        assert parse(callee.recvfrom(65535)[0]).vias[1].branch == "z9hG4bKgood"
        # A response whose top Via is not ours is dropped, never forwarded.
        stray = sipfast.make_response(parse(invite(cport, pport)), 200, to_tag="x")
        caller.sendto(stray, ("127.0.0.1", pport))
        out = stop(proc)
    assert (out["malformed"], out["replied"], out["dropped"]) == (2, 2, 2)


def test_ipv6_request_and_response() -> None:
    callee = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    caller = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    for s in (callee, caller):
        s.bind(("::1", 0))
        s.settimeout(5)
    cport, eport = caller.getsockname()[1], callee.getsockname()[1]
    with proxy("--route", f"sip:[::1]:{eport}", "--record-route", "--workers", "1",
               host="::1") as (pport, _):
        req = invite(cport, pport).replace(b"127.0.0.1", b"[::1]")
        caller.sendto(req, ("::1", pport))
        data, addr = callee.recvfrom(65535)
        fwd = parse(data)
        assert (fwd.via.host, fwd.via.port) == ("[::1]", pport)   # RFC 5118 reference
        assert fwd.vias[1].rport == cport
        assert fwd.record_routes[0].uri.host == "[::1]"
        callee.sendto(sipfast.make_response(fwd, 200, to_tag="v6"), addr)
        back = parse(caller.recvfrom(65535)[0])
        assert back.status == 200 and [v.host for v in back.vias] == ["[::1]"]


def sipp_stats(path: Path) -> dict[str, int]:
    rows = list(csv.reader(path.open(), delimiter=";"))
    head, last = rows[0], rows[-1]
    return {k: int(last[head.index(k)]) for k in (
        "SuccessfulCall(C)", "FailedCall(C)", "OutOfCallMsgs(C)", "TotalCallCreated")}


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sipp_calls_through_the_stateless_proxy(tmp_path: Path, workers: str) -> None:
    assert SIPP, "sipp is required (Debian package sip-tester; ./dev.sh installs it)"
    uas_port, uac_port = free_udp_port(), free_udp_port()
    uas = subprocess.Popen(
        [SIPP, "-sn", "uas", "-i", "127.0.0.1", "-p", str(uas_port), "-mp", "0",
         "-nostdin", "-timeout", "120"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        with proxy("--route", f"sip:127.0.0.1:{uas_port}", "--workers", workers) as (pport, proc):
            calls = 1000
            uac = subprocess.run(
                [SIPP, "-sn", "uac", f"127.0.0.1:{pport}", "-i", "127.0.0.1",
                 "-p", str(uac_port), "-m", str(calls), "-r", "400", "-l", "200",
                 "-timeout", "60", "-nostdin", "-trace_stat", "-stf", "stat.csv"],
                cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                timeout=90, check=False,
            )
            stats = sipp_stats(tmp_path / "stat.csv")
            out = stop(proc)
    finally:
        uas.terminate()
        try:
            uas.wait(timeout=10)
        except subprocess.TimeoutExpired:
            uas.kill()
            uas.wait()
    assert uac.returncode == 0
    assert stats == {"SuccessfulCall(C)": calls, "FailedCall(C)": 0, "OutOfCallMsgs(C)": 0,
                     "TotalCallCreated": calls}
    # Every call is 6 datagrams each way through the proxy (INVITE, 180, 200,
    # ACK, BYE, 200), with no retransmission on loopback.
    assert out["forwarded_requests"] + out["forwarded_responses"] == 6 * calls
