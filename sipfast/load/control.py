"""The operators' control endpoint of a delegating proxy: JSON lines over a
UNIX stream socket (``--control PATH``, mode 0600), served from the
proxy's event loop.  One request object per line, one answer per line:

    {"command": "show"}
        -> {"self": "sip:...", "threshold": 0.8, "load": {...},
            "peers": [{"peer": ..., "state": "up", "age": 0.4, "load": 0.2, ...}],
            "share": "push", "reply_path": "via", "counters": {...}}
    {"command": "set", "threshold": 0.6}
        -> {"ok": true, "threshold": 0.6}
    anything else
        -> {"error": "..."}

``sipfast control PATH show`` and ``sipfast control PATH threshold 0.6``
are the command-line client (:func:`request`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import stat
from typing import Any

MAX_LINE = 65536


def handle(delegation: Any, line: bytes) -> dict[str, Any]:
    """The answer to one request line (never raises)."""
    try:
        req = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return {"error": "expected one JSON object per line"}
    if not isinstance(req, dict):
        return {"error": "expected a JSON object"}
    cmd = req.get("command")
    if cmd == "show":
        return delegation.show()
    if cmd == "set":
        if "threshold" not in req:
            return {"error": "set: nothing to set (threshold)"}
        try:
            delegation.set_threshold(req["threshold"])
        except ValueError as exc:
            return {"error": str(exc)}
        return {"ok": True, "threshold": delegation.threshold}
    return {"error": f"unknown command {cmd!r} (show, set)"}


def open_control_socket(path: str) -> socket.socket:
    """The endpoint's listening socket at ``path``, bound and mode 0600
    before this returns (a stale socket of an earlier run is replaced).
    Bound under umask 0177, so it is never reachable by others, not even
    for the moment between bind() and chmod()."""
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)          # a stale socket of an earlier run
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        old = os.umask(0o177)
        try:
            sock.bind(path)
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        sock.listen(16)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


async def serve_control(delegation: Any, path_or_sock: str | socket.socket) -> None:
    """Serve the endpoint until cancelled, on a socket of
    :func:`open_control_socket` (or a path, opened here)."""
    sock = (open_control_socket(path_or_sock) if isinstance(path_or_sock, str)
            else path_or_sock)

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    line = await reader.readuntil(b"\n")
                except asyncio.IncompleteReadError as exc:
                    line = exc.partial
                    if not line.strip():
                        break
                except asyncio.LimitOverrunError:
                    writer.write(b'{"error": "line too long"}\n')
                    break
                if line.strip():
                    writer.write(json.dumps(handle(delegation, line)).encode() + b"\n")
                    await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_unix_server(client, sock=sock, limit=MAX_LINE)
    delegation.control_server = server
    try:
        await server.serve_forever()
    finally:
        server.close()


def request(path: str, obj: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
    """Send one request to the endpoint at ``path``; its answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(json.dumps(obj).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    answer = json.loads(buf)
    if not isinstance(answer, dict):
        raise ValueError("the control endpoint answered something other than an object")
    return answer
