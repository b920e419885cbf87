"""Drive SIPp (``sipp`` 3.6) as caller and callee for end-to-end tests.

Plain :mod:`subprocess`, no pysipp.  Each SIPp process runs in its own working directory
with a statistics file (``-trace_stat -stf``), a message trace (``-trace_msg
-message_file``), an error log (``-trace_err -error_file``) and its screen output, and is
bounded in calls and time: ``-m`` calls, ``-timeout`` seconds, and our own hard kill after
a grace period (SIPp ignores ``-timeout`` once ``-m`` calls were started while some hang).
Processes are always ended by PID (SIGTERM, then SIGKILL): use them as context managers.

Typical proxy test::

    with sipp.start_uas(port=callee_port) as callee:
        caller = sipp.run_uac(("127.0.0.1", proxy_port), calls=100, rate=50)
    callee_result = callee.result
    caller.assert_clean(100)
    assert callee_result.successful == 100

Scenarios live in ``scenarios/`` (see the comment at the top of each file).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import sipfast.ops as sipfast_ops

SCENARIOS = Path(__file__).parent / "scenarios"
PACKAGE_SCENARIOS = Path(sipfast_ops.__file__).with_name("scenarios")

# Status codes uas_error.xml can answer with (-set code N).
ERROR_CODES = (403, 404, 408, 480, 486, 488, 500, 503, 600, 603)

TRANSPORTS = {"u1": "UDP", "un": "UDP", "t1": "TCP", "tn": "TCP"}

# RFC 3261 §7.3.3 compact header names.
_COMPACT = {
    "v": "via",
    "f": "from",
    "t": "to",
    "i": "call-id",
    "m": "contact",
    "l": "content-length",
    "c": "content-type",
    "k": "supported",
    "s": "subject",
    "e": "content-encoding",
    "o": "event",
    "r": "refer-to",
    "u": "allow-events",
}


class SippError(RuntimeError):
    """SIPp could not be started or did not come up."""


def find_sipp(path: str | None = None) -> str | None:
    """Path of the ``sipp`` executable (``$SIPP`` or the PATH), or None."""
    candidate = path or os.environ.get("SIPP") or shutil.which("sipp")
    if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
        return candidate
    return None


def require_sipp(path: str | None = None) -> str:
    """Path of ``sipp``; fails the test (never skips) when it is missing."""
    found = find_sipp(path)
    if found is None:
        import pytest

        pytest.fail(
            "sipp not found (looked at "
            + (path or os.environ.get("SIPP") or "$PATH")
            + "): the end-to-end tests need SIPp >= 3.6; install it, e.g. "
            "`apt-get install sip-tester`, or point $SIPP at the binary",
            pytrace=False,
        )
    return found


# --------------------------------------------------------------------------- ports


def _family(ip: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in ip else socket.AF_INET


def _can_bind(ip: str, port: int, kinds: Iterable[int]) -> bool:
    socks = []
    try:
        for kind in kinds:
            s = socket.socket(_family(ip), kind)
            socks.append(s)
            s.bind((ip, port))
        return True
    except OSError:
        return False
    finally:
        for s in socks:
            s.close()


def _bound_in_netns(pid: int, ip: str, port: int, kind: int) -> bool:
    """Whether process ``pid``'s network namespace has a socket bound on IPv4
    ``ip:port`` (read from its /proc/PID/net table; binding ourselves is no test there)."""
    table = "udp" if kind == socket.SOCK_DGRAM else "tcp"
    raw = socket.inet_aton(ip)
    want = f"{(raw[::-1] if sys.byteorder == 'little' else raw).hex().upper()}:{port:04X}"
    try:
        with open(f"/proc/{pid}/net/{table}") as f:
            return any(line.split()[1] == want for line in list(f)[1:])
    except (OSError, IndexError):
        return False


_BOTH = (socket.SOCK_DGRAM, socket.SOCK_STREAM)
_issued: set[int] = set()


def free_port(ip: str = "127.0.0.1", span: int = 1) -> int:
    """A port P such that P .. P+span-1 are free for both UDP and TCP on ``ip``.

    Bind-then-close: another process could take it before SIPp does, which is unlikely
    on a test machine; ports handed out earlier in this process are never repeated.
    """
    for _ in range(200):
        with socket.socket(_family(ip), socket.SOCK_DGRAM) as s:
            s.bind((ip, 0))
            port = s.getsockname()[1]
        if port + span > 65535:
            continue
        block = range(port, port + span)
        if any(p in _issued for p in block):
            continue
        if all(_can_bind(ip, p, _BOTH) for p in block):
            _issued.update(block)
            return port
    raise SippError(f"no free port block of {span} on {ip}")


def hostport(ip: str, port: int) -> str:
    """``ip:port`` with IPv6 addresses in brackets."""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


# --------------------------------------------------------------------------- messages


@dataclass
class SipMessage:
    """One SIP message of SIPp's message trace."""

    direction: str  # "sent", "received", or "ignored" (a late 1xx SIPp dropped)
    transport: str  # "UDP" / "TCP"
    timestamp: str
    first_line: str
    headers: list[tuple[str, str]]
    body: str = ""

    @property
    def is_request(self) -> bool:
        return not self.first_line.startswith("SIP/2.0 ")

    @property
    def method(self) -> str | None:
        """Request method, or None for a response."""
        return self.first_line.split(" ", 1)[0] if self.is_request else None

    @property
    def request_uri(self) -> str | None:
        parts = self.first_line.split(" ")
        return parts[1] if self.is_request and len(parts) == 3 else None

    @property
    def status(self) -> int | None:
        """Status code, or None for a request."""
        if self.is_request:
            return None
        return int(self.first_line.split(" ", 2)[1])

    def header_values(self, name: str) -> list[str]:
        """Values of every header ``name`` (case-insensitive, compact forms included)."""
        want = _COMPACT.get(name.lower(), name.lower())
        return [v for n, v in self.headers if _COMPACT.get(n.lower(), n.lower()) == want]

    def header(self, name: str) -> str | None:
        """Value of the first header ``name``, or None."""
        values = self.header_values(name)
        return values[0] if values else None

    @property
    def call_id(self) -> str | None:
        return self.header("Call-ID")

    @property
    def cseq_method(self) -> str | None:
        cseq = self.header("CSeq")
        return cseq.split()[-1] if cseq else None

    @property
    def top_branch(self) -> str | None:
        """branch parameter of the topmost Via."""
        via = self.header("Via")
        if via is None:
            return None
        match = re.search(r";\s*branch=([^;,\s]+)", via.split(",")[0])
        return match.group(1) if match else None

    @property
    def to_tag(self) -> str | None:
        to = self.header("To")
        match = re.search(r";\s*tag=([^;,\s]+)", to or "")
        return match.group(1) if match else None

    @property
    def from_tag(self) -> str | None:
        frm = self.header("From")
        match = re.search(r";\s*tag=([^;,\s]+)", frm or "")
        return match.group(1) if match else None

    def describe(self) -> str:
        return f"{self.direction} {self.first_line} (Call-ID {self.call_id})"


_SEPARATOR = re.compile(r"^-{47}(?: (.*))?$", re.M)
_START_LINE = re.compile(r"SIP/2\.0 \d{3} |[A-Za-z!%*+.`'~_-]+ \S+ SIP/2\.0\s*$", re.M)
_DESCRIPTION = re.compile(
    r"^(?:(?P<t1>\w+) message (?P<dir>sent|received)"
    r"|Ignoring provisional (?P<t2>\w+) message for transaction \S+)"
)


def _parse_sip(text: str) -> tuple[str, list[tuple[str, str]], str, str]:
    """(first line, headers, body, rest of the text after this message)."""
    lines = text.split("\n")
    while lines and not lines[0].strip():
        lines.pop(0)
    if not lines:
        return "", [], "", ""
    first = lines[0].strip()
    headers: list[tuple[str, str]] = []
    i = 1
    while i < len(lines) and lines[i].strip():
        line = lines[i]
        if line[0] in " \t" and headers:  # folded line
            name, value = headers[-1]
            headers[-1] = (name, value + " " + line.strip())
        elif ":" in line:
            name, value = line.split(":", 1)
            headers.append((name.strip(), value.strip()))
        i += 1
    rest = "\n".join(lines[i + 1 :])
    length = None
    for name, value in headers:
        if name.lower() in ("content-length", "l"):
            with contextlib.suppress(ValueError):
                length = int(value)
    if length is None:
        return first, headers, rest.rstrip("\n"), ""
    # Content-Length counts CRLF line ends; the trace is read with LF ends.
    body_chars = 0
    consumed = 0
    for line in rest.split("\n"):
        if body_chars >= length:
            break
        body_chars += len(line.encode()) + 2
        consumed += len(line) + 1
    return first, headers, rest[:consumed].rstrip("\n"), rest[consumed:]


def parse_message_log(path: str | os.PathLike) -> list[SipMessage]:
    """SIP messages of a SIPp ``-trace_msg`` file, in order."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    text = text.replace("\r\n", "\n")
    messages: list[SipMessage] = []
    matches = list(_SEPARATOR.finditer(text))
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else len(text)
        block = text[match.end() : end].lstrip("\n")
        description, _, content = block.partition("\n")
        desc = _DESCRIPTION.match(description.strip())
        if desc is None:
            continue
        if desc.group("dir"):
            direction, transport = desc.group("dir"), desc.group("t1")
        else:
            direction, transport = "ignored", desc.group("t2")
        # A TCP read may hold several messages; SIPp also writes socket diagnostics
        # ("Problem EAGAIN on socket ...") between blocks, which are not messages.
        while _START_LINE.match(content.lstrip("\n")):
            first, headers, body, content = _parse_sip(content)
            messages.append(
                SipMessage(direction, transport, match.group(1) or "", first, headers, body)
            )
    return messages


# --------------------------------------------------------------------------- statistics


def parse_stat_file(path: str | os.PathLike) -> dict[str, str]:
    """Header -> value of the last line of a SIPp ``-trace_stat`` CSV (``;``-separated)."""
    try:
        lines = [ln for ln in Path(path).read_text(errors="replace").splitlines() if ln.strip()]
    except FileNotFoundError:
        return {}
    if len(lines) < 2:
        return {}
    names = lines[0].split(";")
    values = lines[-1].split(";")
    return {n: v for n, v in zip(names, values, strict=False) if n}


def _int(stats: Mapping[str, str], name: str) -> int | None:
    try:
        return int(stats[name])
    except (KeyError, ValueError):
        return None


@dataclass
class SippResult:
    """What one SIPp process did: statistics (cumulative columns), exit, logs, wire trace."""

    role: str
    command: list[str]
    returncode: int | None
    killed: bool  # we had to end it ourselves (hard kill or stop of a callee)
    workdir: Path
    stat_file: Path
    message_file: Path | None
    error_file: Path
    screen_file: Path
    stats: dict[str, str] = field(default_factory=dict)
    messages: list[SipMessage] = field(default_factory=list)

    def count(self, column: str) -> int | None:
        """A cumulative statistics column, e.g. ``count("FailedTimeoutOnRecv")``."""
        return _int(self.stats, f"{column}(C)")

    @property
    def successful(self) -> int | None:
        return self.count("SuccessfulCall")

    @property
    def failed(self) -> int | None:
        return self.count("FailedCall")

    @property
    def unexpected(self) -> int | None:
        return self.count("FailedUnexpectedMessage")

    @property
    def out_of_call(self) -> int | None:
        return self.count("OutOfCallMsgs")

    @property
    def dead_call(self) -> int | None:
        return self.count("DeadCallMsgs")

    @property
    def retransmissions(self) -> int | None:
        return self.count("Retransmissions")

    @property
    def created(self) -> int | None:
        return _int(self.stats, "TotalCallCreated")

    @property
    def failures(self) -> dict[str, int]:
        """Non-zero cumulative ``Failed*`` columns."""
        out = {}
        for name, value in self.stats.items():
            if name.startswith("Failed") and name.endswith("(C)") and value not in ("", "0"):
                with contextlib.suppress(ValueError):
                    out[name[:-3]] = int(value)
        return out

    def errors(self, limit: int = 3000) -> str:
        try:
            return self.error_file.read_text(errors="replace")[:limit]
        except FileNotFoundError:
            return ""

    def screen_tail(self, limit: int = 3000) -> str:
        try:
            return self.screen_file.read_text(errors="replace")[-limit:]
        except FileNotFoundError:
            return ""

    # --- wire trace helpers
    def sent(self, *, method: str | None = None, status: int | None = None) -> list[SipMessage]:
        return self._select("sent", method, status)

    def received(self, *, method: str | None = None, status: int | None = None) -> list[SipMessage]:
        return self._select("received", method, status)

    def _select(self, direction, method, status) -> list[SipMessage]:
        """All; requests of ``method``; or responses of ``status`` (to ``method`` if given)."""
        out = []
        for m in self.messages:
            if m.direction != direction:
                continue
            if method is None and status is None:
                out.append(m)
            elif status is None:
                if m.is_request and (method is None or m.method == method):
                    out.append(m)
            elif m.status == status and (method is None or m.cseq_method == method):
                out.append(m)
        return out

    def by_call(self) -> dict[str, list[SipMessage]]:
        calls: dict[str, list[SipMessage]] = {}
        for m in self.messages:
            calls.setdefault(m.call_id or "", []).append(m)
        return calls

    def summary(self) -> str:
        return (
            f"SIPp {self.role}: exit {self.returncode}{' (killed)' if self.killed else ''}, "
            f"created {self.created}, successful {self.successful}, failed {self.failed} "
            f"{self.failures}, unexpected {self.unexpected}, out-of-call {self.out_of_call}, "
            f"dead-call {self.dead_call}, retransmissions {self.retransmissions}; "
            f"logs in {self.workdir}\ncommand: {' '.join(self.command)}\n"
            f"errors:\n{self.errors()}\nscreen (tail):\n{self.screen_tail(1500)}"
        )

    def assert_clean(self, calls: int, *, exit_code: int | None = 0) -> None:
        """Every one of ``calls`` calls succeeded: none failed, nothing unexpected."""
        assert self.stats, f"no statistics written\n{self.summary()}"
        assert self.successful == calls, self.summary()
        assert self.failed == 0, self.summary()
        assert self.unexpected == 0, self.summary()
        assert self.out_of_call == 0, self.summary()
        if exit_code is not None:
            assert self.returncode == exit_code, self.summary()


# --------------------------------------------------------------------------- processes


class SippProcess:
    """One running SIPp; a context manager that always ends it (by PID)."""

    def __init__(
        self,
        role: str,
        args: Sequence[str],
        *,
        workdir: Path,
        ip: str,
        port: int,
        transport: str,
        deadline_s: float,
        trace: bool,
        sipp_path: str | None = None,
        netns: str | None = None,
    ) -> None:
        self.role = role
        self.netns = netns
        self.ip = ip
        self.port = port
        self.transport = transport
        self.workdir = workdir
        self.stat_file = workdir / f"{role}_stat.csv"
        self.message_file = workdir / f"{role}_messages.log" if trace else None
        self.error_file = workdir / f"{role}_errors.log"
        self.screen_file = workdir / f"{role}_screen.log"
        # In a network namespace: `ip netns exec` execs SIPp, so the PID stays SIPp's.
        self.command = [
            *(("ip", "netns", "exec", netns) if netns else ()),
            require_sipp(sipp_path),
            *args,
            "-nostdin",
            "-trace_stat",
            "-stf",
            str(self.stat_file),
            "-fd",
            "1",
            "-trace_err",
            "-error_file",
            str(self.error_file),
        ]
        if trace:
            self.command += ["-trace_msg", "-message_file", str(self.message_file)]
        self.deadline = time.monotonic() + deadline_s
        self.killed = False
        self.result: SippResult | None = None
        with open(self.screen_file, "wb") as screen:
            self.proc = subprocess.Popen(
                self.command,
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                stdout=screen,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def address(self) -> str:
        return hostport(self.ip, self.port)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def running(self) -> bool:
        return self.proc.poll() is None

    def wait_ready(self, timeout_s: float = 5.0) -> None:
        """Wait until SIPp holds its SIP port (our own bind fails) or raise."""
        kind = socket.SOCK_STREAM if TRANSPORTS.get(self.transport) == "TCP" else socket.SOCK_DGRAM
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if not self.running():
                self.finish()
                raise SippError(f"SIPp {self.role} exited at start\n{self.result.summary()}")
            if self.netns is not None:
                if _bound_in_netns(self.proc.pid, self.ip, self.port, kind):
                    return
            elif not _can_bind(self.ip, self.port, (kind,)):
                return
            time.sleep(0.02)
        self.stop()
        raise SippError(f"SIPp {self.role} did not bind {self.address} in {timeout_s} s")

    def _signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, sig)  # by PID, never by name

    def _end(self, grace_s: float) -> None:
        """SIGTERM, wait ``grace_s``, then SIGKILL."""
        if self.running():
            self.killed = True
            self._signal(signal.SIGTERM)
            try:
                self.proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.proc.wait()

    def wait(self, timeout_s: float | None = None) -> SippResult:
        """Wait for SIPp to stop by itself; past its deadline (or ``timeout_s``), end it."""
        end = self.deadline if timeout_s is None else time.monotonic() + timeout_s
        try:
            self.proc.wait(max(0.0, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            self._end(3.0)
        return self.finish()

    def stop(self, grace_s: float = 3.0) -> SippResult:
        """End SIPp now (SIGTERM writes the final statistics; SIGKILL if it hangs)."""
        self._end(grace_s)
        return self.finish()

    def finish(self) -> SippResult:
        if self.result is None:
            if self.running():
                self._end(3.0)
            self.result = SippResult(
                role=self.role,
                command=self.command,
                returncode=self.proc.returncode,
                killed=self.killed,
                workdir=self.workdir,
                stat_file=self.stat_file,
                message_file=self.message_file,
                error_file=self.error_file,
                screen_file=self.screen_file,
                stats=parse_stat_file(self.stat_file),
                messages=parse_message_log(self.message_file) if self.message_file else [],
            )
        return self.result

    def __enter__(self) -> SippProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _workdir(workdir: str | os.PathLike | None, role: str) -> Path:
    if workdir is None:
        return Path(tempfile.mkdtemp(prefix=f"sipp-{role}-"))
    path = Path(workdir)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _scenario(scenario: str | os.PathLike) -> str:
    """A scenario file: as given, else in tests/e2e/scenarios, else among
    the ones the installed package ships for `sipfast demo`."""
    path = Path(scenario)
    if not path.is_absolute() and not path.exists():
        path = SCENARIOS / path
        if not path.exists():
            path = PACKAGE_SCENARIOS / Path(scenario)
    if not path.exists():
        raise SippError(f"no scenario {scenario}")
    return str(path)


def _ports(ip: str, port: int | None, media_port: int | None,
           netns: str | None) -> tuple[int, int]:
    """SIP and media ports: free ones on ``ip``, or in a namespace of its own (where
    we cannot probe them) 5060 and 6000 unless given."""
    if netns is not None:
        return port or 5060, media_port or 6000
    return port or free_port(ip), media_port or free_port(ip, span=4)


def _common(ip, port, media_port, transport, sets, extra_args) -> list[str]:
    if transport not in TRANSPORTS:
        raise ValueError(f"transport {transport!r}: one of {sorted(TRANSPORTS)}")
    args = ["-i", ip, "-p", str(port), "-mp", str(media_port), "-bind_local", "-t", transport]
    if transport in ("un", "tn") and "-max_socket" not in extra_args:
        # SIPp refuses to start when its default (50000) exceeds the open-files limit.
        args += ["-max_socket", "4096"]
    for name, value in (sets or {}).items():
        args += ["-set", name, str(value)]
    return args + list(extra_args)


def start_uas(
    scenario: str | os.PathLike = "uas.xml",
    *,
    ip: str = "127.0.0.1",
    port: int | None = None,
    transport: str = "u1",
    calls: int | None = None,
    timeout_s: float = 60.0,
    sets: Mapping[str, object] | None = None,
    extra_args: Sequence[str] = (),
    workdir: str | os.PathLike | None = None,
    trace: bool = True,
    role: str = "uas",
    sipp_path: str | None = None,
    netns: str | None = None,
    media_port: int | None = None,
) -> SippProcess:
    """Start a SIPp callee on ``ip:port`` and wait until it listens.

    ``calls``: exit after that many calls (``-m``); without it the callee runs until
    ``stop()`` / the end of the ``with`` block.  ``timeout_s`` bounds it in any case
    (``-timeout`` plus our kill a few seconds later).  ``netns``: run it in that network
    namespace (``ip`` is then one of its addresses; ports default to 5060 and 6000).
    """
    port, media_port = _ports(ip, port, media_port, netns)
    args = ["-sf", _scenario(scenario)]
    args += _common(ip, port, media_port, transport, sets, extra_args)
    if calls is not None:
        args += ["-m", str(calls)]
    args += ["-timeout", f"{max(1, int(timeout_s))}s"]
    proc = SippProcess(
        role,
        args,
        workdir=_workdir(workdir, role),
        ip=ip,
        port=port,
        transport=transport,
        deadline_s=timeout_s + 5.0,
        trace=trace,
        sipp_path=sipp_path,
        netns=netns,
    )
    proc.wait_ready()
    return proc


def start_uac(
    target: tuple[str, int] | str,
    scenario: str | os.PathLike = "uac.xml",
    *,
    calls: int = 1,
    rate: float = 10.0,
    rate_period_ms: int = 1000,
    max_concurrent: int | None = None,
    hold_ms: int = 0,
    ip: str = "127.0.0.1",
    port: int | None = None,
    transport: str = "u1",
    service: str = "service",
    timeout_s: float | None = None,
    grace_s: float = 5.0,
    recv_timeout_ms: int | None = 5000,
    sets: Mapping[str, object] | None = None,
    extra_args: Sequence[str] = (),
    workdir: str | os.PathLike | None = None,
    trace: bool = True,
    role: str = "uac",
    sipp_path: str | None = None,
    netns: str | None = None,
    media_port: int | None = None,
) -> SippProcess:
    """Start a SIPp caller placing ``calls`` calls to ``target`` (``(ip, port)``).

    ``rate`` calls per ``rate_period_ms`` (``-r``/``-rp``), at most ``max_concurrent`` at
    once (``-l``), ``hold_ms`` between ACK and BYE (``-d``).  ``recv_timeout_ms`` fails a
    call stuck waiting for a message (``-recv_timeout``).  ``timeout_s`` (default: the
    time to place the calls plus 15 s) is passed as ``-timeout``; the process is killed
    ``grace_s`` later if it is still running.  ``netns``: as for :func:`start_uas`.
    """
    if isinstance(target, tuple):
        target = hostport(*target)
    if timeout_s is None:
        timeout_s = calls / rate * rate_period_ms / 1000.0 + hold_ms / 1000.0 + 15.0
    port, media_port = _ports(ip, port, media_port, netns)
    args = ["-sf", _scenario(scenario), target]
    args += _common(ip, port, media_port, transport, sets, extra_args)
    args += ["-s", service, "-m", str(calls), "-r", f"{rate:g}", "-rp", str(rate_period_ms)]
    args += ["-d", str(hold_ms), "-timeout", f"{max(1, int(timeout_s + 0.999))}s"]
    if max_concurrent is not None:
        args += ["-l", str(max_concurrent)]
    if recv_timeout_ms is not None:
        args += ["-recv_timeout", str(recv_timeout_ms)]
    return SippProcess(
        role,
        args,
        workdir=_workdir(workdir, role),
        ip=ip,
        port=port,
        transport=transport,
        deadline_s=timeout_s + grace_s,
        trace=trace,
        sipp_path=sipp_path,
        netns=netns,
    )


def run_uac(target: tuple[str, int] | str, scenario="uac.xml", **kwargs) -> SippResult:
    """Start a caller (arguments of :func:`start_uac`) and wait for it to finish."""
    with start_uac(target, scenario, **kwargs) as uac:
        return uac.wait()


@contextlib.contextmanager
def uas(scenario="uas.xml", **kwargs) -> Iterator[SippProcess]:
    """``with sipp.uas(port=p) as callee:`` - same as :func:`start_uas`."""
    with start_uas(scenario, **kwargs) as proc:
        yield proc
