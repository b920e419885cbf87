"""The `sipfast` console script, run as a newcomer would run it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import sipfast

SIPFAST = Path(sys.executable).with_name("sipfast")

GOOD = (
    b"OPTIONS sip:carol@chicago.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP [2001:db8::9]:5070;branch=z9hG4bKhjhs8ass877;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: <sip:carol@chicago.example.com>\r\n"
    b'From: "Alice \\"A\\"" <sip:alice@atlanta.example.com>;tag=1928301774\r\n'
    b"Call-ID: a84b4c76e66710\r\n"
    b"CSeq: 63104 OPTIONS\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def run(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [str(SIPFAST), *args], input=stdin, capture_output=True, timeout=60, check=False
    )


def test_console_script_is_installed_beside_the_interpreter() -> None:
    assert SIPFAST.exists(), f"{SIPFAST} missing: the package is not installed"


def test_version() -> None:
    res = run("--version")
    assert res.returncode == 0
    assert res.stdout.decode().strip() == f"sipfast {sipfast.__version__}"


def test_parse_prints_json(tmp_path: Path) -> None:
    f = tmp_path / "options.sip"
    f.write_bytes(GOOD)
    res = run("parse", str(f))
    assert res.returncode == 0, res.stderr
    d = json.loads(res.stdout)
    assert d["type"] == "request"
    assert d["method"] == "OPTIONS"
    assert d["uri"]["user"] == "carol"
    assert d["via"][0]["host"] == "[2001:db8::9]"
    assert d["via"][0]["port"] == 5070
    assert d["via"][0]["rport"] is True
    assert d["from"]["display"] == 'Alice "A"'
    assert d["from"]["params"] == {"tag": "1928301774"}
    assert d["cseq"] == {"seq": 63104, "method": "OPTIONS"}


def test_parse_stdin_with_bare_lf() -> None:
    res = run("parse", "--crlf", "-", stdin=GOOD.replace(b"\r\n", b"\n"))
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["call_id"] == "a84b4c76e66710"


def test_parse_error_gives_the_sip_answer(tmp_path: Path) -> None:
    f = tmp_path / "bad.sip"
    bad = GOOD.replace(b"CSeq: 63104 OPTIONS", b"CSeq: 63104 INVITE")
    f.write_bytes(bad)
    res = run("parse", str(f))
    assert res.returncode == 1
    err = json.loads(res.stdout)["error"]
    assert err["status"] == 400
    assert err["reason"] == "CSeq method does not match request method"
    assert bad[err["offset"] :].startswith(b"INVITE")


def test_parse_bad_version_is_505(tmp_path: Path) -> None:
    f = tmp_path / "v.sip"
    f.write_bytes(GOOD.replace(b"SIP/2.0\r\n", b"SIP/7.0\r\n", 1))
    res = run("parse", str(f))
    assert res.returncode == 1
    assert json.loads(res.stdout)["error"]["status"] == 505


def test_parse_missing_file() -> None:
    res = run("parse", os.devnull + "-does-not-exist")
    assert res.returncode == 2
    assert b"No such file" in res.stderr


def test_bad_flag_is_a_usage_error() -> None:
    res = run("parse", "--max-size", "lots", "-")
    assert res.returncode == 2
    assert b"invalid int value" in res.stderr


def test_demo_runs_the_core_and_the_topology() -> None:
    res = run("demo", "--seconds", "0.05", "--calls", "300", "--rate", "300")
    assert res.returncode == 0, res.stderr
    out = res.stdout.decode()
    assert "calls: 300 of 300 completed, 0 failed, 0 unexpected messages" in out
    assert "probes sent: 900 (3.0 per call)" in out     # every member probed per call
    wins = re.search(r"wins per pool member: \[(\d+), (\d+), (\d+)\]", out)
    assert wins and sum(map(int, wins.groups())) == 300
    assert "SIP/2.0 100 Trying" in out
    assert "Max-Forwards: 69" in out
    assert "Record-Route: <sip:192.0.2.10:5060;lr>" in out
    assert "SIP/2.0 400 CSeq method does not match request method" in out
    assert "messages/s" in out


def test_proxy_and_lb_refuse_bad_flags_with_a_message() -> None:
    cases = [
        (("proxy", "--listen", "udp:127.0.0.1:5999", "--t1", "0"), b"--t1 must be positive"),
        (("proxy", "--listen", "udp:127.0.0.1:5999", "--t1", "900", "--t2", "500"),
         b"--t2 must be at least --t1"),
        (("proxy", "--listen", "tcp:127.0.0.1:5999"), b"needs a udp listener on the same host"),
        (("proxy", "--listen", "udp:127.0.0.1:5999", "--fork", "--route", "sip:127.0.0.1:1"),
         b"--fork needs two or more --route next hops"),
        (("proxy", "--listen", "udp:127.0.0.1:5999", "--route", "sip:example.com"),
         b"the host must be an IP address"),
        (("proxy", "--listen", "udp:127.0.0.1:5999", "--route", "sip:127.0.0.1;transport=sctp"),
         b"transport must be udp or tcp"),
        (("lb", "--listen", "udp:127.0.0.1:5999"), b"the pool is empty"),
        (("lb", "--listen", "udp:127.0.0.1:5999", "--pool-file", "/nonexistent/pool"),
         b"No such file"),
        (("lb", "--listen", "udp:127.0.0.1:5999", "--pool", "sip:127.0.0.1:1",
          "--probe-timeout", "0"), b"--probe-timeout must be positive"),
    ]
    for args, message in cases:
        res = run(*args)
        assert res.returncode == 2, (args, res.stderr)
        assert message in res.stderr, (args, res.stderr)
