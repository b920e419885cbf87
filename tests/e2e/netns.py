"""Hosts in network namespaces, joined to the root namespace by veth pairs, with
packet loss on chosen links, for end-to-end tests.

    with netns.network("caller", "callee") as net:
        caller, callee = net["caller"], net["callee"]
        net.loss(caller, 5)                 # 5 % each way on the caller's link
        subprocess.run(caller.cmd("sipp", ...))   # runs inside the namespace

Each host gets its own namespace (``sfl-<token>-<name>``, unique per run) and a veth
pair: ``eth0`` inside, ``sfl<token><i>`` in the root namespace.  Addresses come from one
private /24, ``10.77.X.0/24``, with X picked per run among the /24s no address or route
of the root namespace uses yet (under a lock file, so concurrent runs get different
ones); host i's link is the /30 ``10.77.X.4i/30``: ``.4i+1`` on the root side (its
``gateway``, also the address a process in the root namespace serves it on) and
``.4i+2`` inside (its ``ip``), with a default route via the gateway.  The root
namespace reaches every host directly; no forwarding is switched on.

Loss is applied on the egress of a link's devices, per direction: ``tc qdisc ... netem
loss N% [delay D]`` when the kernel has netem (sch_netem).  A kernel built without it
(``CONFIG_NET_SCH_NETEM`` unset, as the test machine's: tc answers "Specified qdisc kind
is unknown") gets the same random loss from nftables instead, in the kernel on the same
device's egress: a ``netdev`` table with an ``egress`` hook and ``numgen random`` drop
of IPv4 UDP (ARP is left alone).  That fallback cannot delay; asking for a delay then
fails.  Either way ``drops()`` reads the kernel's own counts of the packets dropped.

Nothing here skips: missing ``ip``/``tc`` (iproute2), missing ``nft`` when it is
needed (nftables), no root, or a namespace that cannot be made raise NetnsError.
Everything made is removed on exit, also when the body raised.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

NET_PREFIX = "10.77"  # the /24s used are 10.77.X.0/24
LOCK_FILE = "/run/lock/sipfast-netns.lock"
NETEM_UNKNOWN = "Specified qdisc kind is unknown"


class NetnsError(RuntimeError):
    """A namespace, link or loss could not be set up (or a tool is missing)."""


def _tool(name: str, package: str) -> str:
    path = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/sbin/{name}") if os.access(p, os.X_OK)), None)
    if path is None:
        raise NetnsError(f"`{name}` not found: the namespace tests need it "
                         f"(Debian package {package}: apt-get install {package})")
    return path


def require() -> None:
    """Fail (NetnsError) unless we are root and ``ip`` and ``tc`` exist."""
    _tool("ip", "iproute2")
    _tool("tc", "iproute2")
    if os.geteuid() != 0:
        raise NetnsError("network namespaces need root (CAP_NET_ADMIN); run the tests as root")


def run(argv: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command; with ``check``, a failure raises NetnsError with its stderr."""
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise NetnsError(f"`{' '.join(argv)}` failed ({done.returncode}): "
                         f"{done.stderr.strip() or done.stdout.strip()}")
    return done


@dataclass
class Host:
    """One namespace and its link to the root namespace."""

    name: str       # logical name ("caller")
    netns: str      # namespace name
    ip: str         # its address, inside the namespace
    gateway: str    # the root side of its link
    dev: str        # its veth inside the namespace
    peer: str       # the veth in the root namespace

    def cmd(self, *argv: str) -> list[str]:
        """``argv`` to run inside the namespace (``ip netns exec``, which execs it, so
        the PID of a Popen of this is the program's own)."""
        return ["ip", "netns", "exec", self.netns, *argv]

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside the namespace and wait for it (see :func:`run`)."""
        return run(self.cmd(*argv), check=check)


@dataclass
class _Loss:
    host: Host
    direction: str      # "to" (root -> host) or "from" (host -> root)
    backend: str        # "netem" or "nft"
    percent: float


@dataclass
class Network:
    """Namespaces made by :func:`network`; use through it."""

    token: str
    subnet: str
    hosts: dict[str, Host] = field(default_factory=dict)
    losses: list[_Loss] = field(default_factory=list)
    _root_nft: str | None = None
    _made_links: list[str] = field(default_factory=list)
    _made_ns: list[str] = field(default_factory=list)

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    # ----------------------------------------------------------------- building
    def _add(self, index: int, name: str) -> Host:
        base = 4 * index
        host = Host(name=name, netns=f"sfl-{self.token}-{name}",
                    ip=f"{self.subnet}.{base + 2}", gateway=f"{self.subnet}.{base + 1}",
                    dev="eth0", peer=f"sfl{self.token}{index}")
        run(["ip", "netns", "add", host.netns])
        self._made_ns.append(host.netns)
        run(["ip", "link", "add", host.peer, "type", "veth",
             "peer", "name", host.dev, "netns", host.netns])
        self._made_links.append(host.peer)
        run(["ip", "addr", "add", f"{host.gateway}/30", "dev", host.peer])
        run(["ip", "link", "set", host.peer, "up"])
        run(host.cmd("ip", "link", "set", "lo", "up"))
        run(host.cmd("ip", "addr", "add", f"{host.ip}/30", "dev", host.dev))
        run(host.cmd("ip", "link", "set", host.dev, "up"))
        run(host.cmd("ip", "route", "add", "default", "via", host.gateway))
        self.hosts[name] = host
        return host

    # ------------------------------------------------------------------- loss
    def loss(self, host: Host, percent: float, *, to_host: bool = True,
             from_host: bool = True, delay_ms: float | None = None) -> None:
        """Lose ``percent`` % of the packets on ``host``'s link, towards the host
        (egress of the root side) and/or from it (egress inside the namespace)."""
        if not 0 < percent < 100:
            raise ValueError(f"loss {percent}%: between 0 and 100")
        for direction, wanted in (("to", to_host), ("from", from_host)):
            if wanted:
                self._loss_one(host, direction, percent, delay_ms)

    def _loss_one(self, host: Host, direction: str, percent: float,
                  delay_ms: float | None) -> None:
        inside = direction == "from"
        dev = host.dev if inside else host.peer
        wrap = host.cmd if inside else (lambda *argv: list(argv))
        netem = ["tc", "qdisc", "add", "dev", dev, "root", "netem", "loss", f"{percent:g}%"]
        if delay_ms is not None:
            netem += ["delay", f"{delay_ms:g}ms"]
        done = run(wrap(*netem), check=False)
        if done.returncode == 0:
            self.losses.append(_Loss(host, direction, "netem", percent))
            return
        if NETEM_UNKNOWN not in done.stderr:
            raise NetnsError(f"`{' '.join(netem)}` failed: {done.stderr.strip()}")
        # No sch_netem in this kernel: the same loss from nftables, on the same egress.
        if delay_ms is not None:
            raise NetnsError("this kernel has no netem (tc: " + NETEM_UNKNOWN + "), and the "
                             "nftables fallback can drop packets but not delay them")
        _tool("nft", "nftables")
        table = f"sfl_{self.token}"
        if inside:
            # one table per namespace; it goes with the namespace
            exists = run(host.cmd("nft", "list", "table", "netdev", table), check=False)
            if exists.returncode != 0:
                run(host.cmd("nft", "add", "table", "netdev", table))
        elif self._root_nft is None:
            run(["nft", "add", "table", "netdev", table])
            self._root_nft = table
        chain = f"loss_{dev}".replace("-", "_")
        scale = 1_000_000
        below = round(percent / 100 * scale)
        rules = (f"add chain netdev {table} {chain} {{ type filter hook egress device "
                 f"\"{dev}\" priority 0; policy accept; }}\n"
                 f"add rule netdev {table} {chain} ip protocol udp "
                 f"numgen random mod {scale} < {below} counter drop\n")
        nft = ["nft", "-f", "-"]
        done = subprocess.run(wrap(*nft), input=rules, capture_output=True, text=True,
                              timeout=30)
        if done.returncode != 0:
            raise NetnsError(f"nft egress drop on {dev} failed: {done.stderr.strip()}")
        self.losses.append(_Loss(host, direction, "nft", percent))

    @property
    def backends(self) -> set[str]:
        """How the losses were made: {"netem"}, {"nft"} (no netem in the kernel)."""
        return {x.backend for x in self.losses}

    def drops(self) -> dict[str, int]:
        """Packets the kernel dropped so far, per lossy direction ("to caller", ...)."""
        out: dict[str, int] = {}
        for x in self.losses:
            inside = x.direction == "from"
            dev = x.host.dev if inside else x.host.peer
            wrap = x.host.cmd if inside else (lambda *argv: list(argv))
            if x.backend == "netem":
                text = run(wrap("tc", "-s", "qdisc", "show", "dev", dev)).stdout
                match = re.search(r"netem.*?dropped (\d+)", text, re.S)
            else:
                chain = f"loss_{dev}".replace("-", "_")
                text = run(wrap("nft", "list", "chain", "netdev", f"sfl_{self.token}",
                                chain)).stdout
                match = re.search(r"counter packets (\d+)", text)
            out[f"{x.direction} {x.host.name}"] = int(match.group(1)) if match else 0
        return out

    # ---------------------------------------------------------------- teardown
    def close(self) -> None:
        """Remove everything made (idempotent; errors are collected, then raised)."""
        problems = []
        if self._root_nft is not None:
            done = run(["nft", "delete", "table", "netdev", self._root_nft], check=False)
            if done.returncode != 0:
                problems.append(done.stderr.strip())
            self._root_nft = None
        while self._made_links:
            dev = self._made_links.pop()
            done = run(["ip", "link", "del", dev], check=False)
            if done.returncode != 0 and "Cannot find device" not in done.stderr:
                problems.append(done.stderr.strip())
        while self._made_ns:
            ns = self._made_ns.pop()
            done = run(["ip", "netns", "del", ns], check=False)
            if done.returncode != 0:
                problems.append(done.stderr.strip())
        if problems:
            raise NetnsError("cleanup: " + "; ".join(problems))


def _used_subnets() -> set[int]:
    text = run(["ip", "-4", "-o", "addr", "show"]).stdout
    text += run(["ip", "-4", "route", "show", "table", "all"]).stdout
    prefix = re.escape(NET_PREFIX)
    return {int(x) for x in re.findall(rf"\b{prefix}\.(\d+)\.", text)}


@contextlib.contextmanager
def network(*names: str) -> Iterator[Network]:
    """Namespaces for ``names``, each linked to the root namespace; removed on exit."""
    require()
    if not names or len(names) > 60 or len(set(names)) != len(names):
        raise ValueError("1 to 60 distinct host names")
    token = secrets.token_hex(4)
    os.makedirs(os.path.dirname(LOCK_FILE), exist_ok=True)
    net: Network | None = None
    with open(LOCK_FILE, "a") as lock:
        # Pick a /24 and put its addresses in place under the lock, so that two runs
        # at once never get the same one.
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            used = _used_subnets()
            start = os.getpid() % 250
            free = [x for x in ((start + i) % 250 + 1 for i in range(250)) if x not in used]
            if not free:
                raise NetnsError(f"no free /24 left in {NET_PREFIX}.0.0/16")
            net = Network(token=token, subnet=f"{NET_PREFIX}.{free[0]}")
            for index, name in enumerate(names):
                net._add(index, name)
        except BaseException:
            if net is not None:
                with contextlib.suppress(NetnsError):
                    net.close()
            raise
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    try:
        yield net
    finally:
        net.close()
