"""The `sipfast` command line.

Subcommands today: ``parse FILE`` (print a parsed SIP message as JSON, or the
SIP error it would be answered with) and ``demo``.  Later roles add
``proxy``, ``lb`` and ``gateway``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence

import sipfast


def _read(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    with open(path, "rb") as fh:
        return fh.read()


def cmd_parse(args: argparse.Namespace) -> int:
    """Parse one message; JSON on stdout, exit 1 with the SIP error."""
    try:
        data = _read(args.file)
    except OSError as exc:
        print(f"sipfast parse: {exc}", file=sys.stderr)
        return 2
    if args.crlf:
        data = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    try:
        msg = sipfast.parse(
            data,
            stream=args.stream,
            max_size=args.max_size,
            max_headers=args.max_headers,
            max_line=args.max_line,
        )
        msg.validate()
        out = msg.to_dict()
        code = 0
    except sipfast.SipError as exc:
        out = {
            "error": {
                "status": exc.status,
                "reason": exc.reason,
                "offset": exc.offset,
                "is_response": exc.is_response,
            }
        }
        code = 1
    json.dump(out, sys.stdout, indent=2 if args.pretty else None, ensure_ascii=False)
    sys.stdout.write("\n")
    return code


def cmd_demo(args: argparse.Namespace) -> int:
    """Show what sipfast does today (see sipfast.ops.demo)."""
    from sipfast.ops import demo

    return demo.run(seconds=args.seconds, calls=args.calls, rate=args.rate)


def cmd_proxy(args: argparse.Namespace) -> int:
    """Run the proxy (UDP; transaction stateful unless --stateless)."""
    from sipfast.roles import proxy

    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s %(message)s")
    try:
        listens = [proxy.parse_listen(spec) for spec in args.listen]
        next_hops = [proxy.parse_next_hop(uri) for uri in args.route or ()]
    except ValueError as exc:
        print(f"sipfast proxy: {exc}", file=sys.stderr)
        return 2
    problems = []
    udp_hosts = {lst.host for lst in listens if lst.transport == "udp"}
    for lst in listens:
        if lst.transport == "tcp" and lst.host not in udp_hosts:
            problems.append(f"--listen tcp:{lst.host}:{lst.port} needs a udp listener on "
                            f"the same host (add --listen udp:{lst.host}:{lst.port})")
    load_opts, load_problems = _load_options(args, listens)
    problems += load_problems
    workers = args.workers if args.workers is not None else (
        1 if load_opts is not None else (os.cpu_count() or 1))
    if workers < 1:
        problems.append("--workers must be at least 1")
    if len(next_hops) > 16:
        problems.append("at most 16 --route next hops")
    if args.fork and args.stateless:
        problems.append("--fork needs transaction state: drop --stateless")
    if args.fork and len(next_hops) < 2:
        problems.append("--fork needs two or more --route next hops")
    problems += _positive(args, "max_connections", "tcp_idle_timeout")
    if problems:
        for p in problems:
            print(f"sipfast proxy: {p}", file=sys.stderr)
        return 2
    opts = proxy.Options(
        listens=listens, next_hops=next_hops, record_route=args.record_route,
        stateless=args.stateless, fork=args.fork, workers=workers,
        max_transactions=args.max_transactions, t1=args.t1, t2=args.t2, t4=args.t4,
        timer_c=args.timer_c, timer_d=args.timer_d, drain_timeout=args.drain_timeout,
        wait_timer=args.wait_timer, registrar=not args.no_registrar,
        max_connections=args.max_connections, tcp_idle_timeout=args.tcp_idle_timeout,
        load=load_opts)
    return proxy.run(opts)


def _positive(args: argparse.Namespace, *extra: str) -> list[str]:
    """Problems with the timer and table options shared by proxy and lb."""
    problems = [f"--{name.replace('_', '-')} must be positive"
                for name in ("t1", "t2", "t4", "timer_c", "timer_d", "max_transactions",
                             "wait_timer", *extra)
                if getattr(args, name) is not None and getattr(args, name) <= 0]
    if args.t2 < args.t1:
        problems.append("--t2 must be at least --t1")
    return problems


def cmd_lb(args: argparse.Namespace) -> int:
    """Run the first-responder balancer (DESIGN.md §1 scheme A)."""
    from sipfast.roles import lb, proxy

    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s %(message)s")
    try:
        listens = [proxy.parse_listen(spec) for spec in args.listen]
        uris = list(args.pool or ())
        if args.pool_file:
            uris += lb.read_pool_file(args.pool_file)
        pool = [proxy.parse_next_hop(uri) for uri in uris]
    except (OSError, ValueError) as exc:
        print(f"sipfast lb: {exc}", file=sys.stderr)
        return 2
    problems = _positive(args, "probe_timeout")
    if any(lst.transport != "udp" for lst in listens):
        problems.append("the balancer listens on udp only")
    if not pool:
        problems.append("the pool is empty: give --pool sip:HOST:PORT (repeatable) or --pool-file")
    limit = 15 if args.mode == "proxy" else 16
    if len(pool) > limit:
        problems.append(f"at most {limit} pool members in --mode {args.mode}")
    workers = args.workers if args.workers is not None else (os.cpu_count() or 1)
    if workers < 1:
        problems.append("--workers must be at least 1")
    if args.keepalive < 0:
        problems.append("--keepalive must not be negative")
    if problems:
        for p in problems:
            print(f"sipfast lb: {p}", file=sys.stderr)
        return 2
    opts = proxy.Options(
        listens=listens, next_hops=pool, workers=workers,
        max_transactions=args.max_transactions, t1=args.t1, t2=args.t2, t4=args.t4,
        timer_c=args.timer_c, timer_d=args.timer_d, drain_timeout=args.drain_timeout,
        wait_timer=args.wait_timer, registrar=False, balance=args.mode, first=args.first,
        probe_timeout=args.probe_timeout, keepalive=args.keepalive, pool_file=args.pool_file)
    return proxy.run(opts)


def _workers_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="processes sharing the port with SO_REUSEPORT (default: one per core)")


def _timer_options(p: argparse.ArgumentParser) -> None:
    """The transaction table, RFC 3261 timer and log options (proxy and lb)."""
    p.add_argument("--max-transactions", type=int, default=65536, metavar="N",
                   help="transaction table size per worker; beyond it new requests get "
                        "503 (default 65536)")
    p.add_argument("--t1", type=int, default=500, metavar="MS",
                   help="RFC 3261 T1, the round-trip estimate (default 500)")
    p.add_argument("--t2", type=int, default=4000, metavar="MS",
                   help="T2, the cap of non-INVITE retransmission intervals (default 4000)")
    p.add_argument("--t4", type=int, default=5000, metavar="MS",
                   help="T4, how long a message may stay in the network (default 5000)")
    p.add_argument("--timer-c", type=int, default=180000, metavar="MS",
                   help="Timer C, the INVITE proceeding timeout (default 180000)")
    p.add_argument("--timer-d", type=int, default=32000, metavar="MS",
                   help="Timer D, the wait for response retransmissions (default 32000)")
    p.add_argument("--wait-timer", type=int, default=None, metavar="MS",
                   help="how long a finished transaction lingers to absorb retransmissions "
                        "(Timers L, J, M; caps D). RFC 3261 says 64*T1 (32000 at the default "
                        "T1); the default, 10*T1 (5000, as Kamailio's wt_timer), still covers "
                        "three retransmissions and keeps the table small at high call rates")
    p.add_argument("--drain-timeout", type=float, default=5.0, metavar="S",
                   help="on SIGTERM, how long at most to let transactions in flight get "
                        "their final answer, new calls getting 503 meanwhile (default 5)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])


def _load_options(args: argparse.Namespace, listens: list) -> tuple[object | None, list[str]]:
    """The delegating-peer options (sipfast.load.LoadOptions), or None
    without --peers; and the problems with them."""
    peers = [p.strip() for spec in (args.peers or ()) for p in spec.split(",") if p.strip()]
    peers += list(args.peer or ())
    if not peers:
        return None, []
    from sipfast._core import UdpProxy
    from sipfast.load import LoadOptions, identity

    opts = LoadOptions(
        identities=[identity(lst.host, lst.port) for lst in listens], peers=peers,
        share=args.share, threshold=args.threshold, capacity=args.capacity,
        pending_limit=args.pending_limit, share_interval=args.share_interval,
        reply_path=args.reply_path, control=args.control,
        poll_timeout=args.poll_timeout / 1000.0, max_age=args.peer_max_age,
        push_step=args.push_step)
    problems = opts.check()
    if args.stateless:
        problems.append("--peers needs transaction state: drop --stateless")
    if args.workers is not None and args.workers != 1:
        problems.append("--peers shares one process's load: use --workers 1")
    if not hasattr(UdpProxy, "set_hooks"):
        problems.append("this build of sipfast._core has no delegation hooks "
                        "(UdpProxy.set_hooks): --peers is not available yet")
    return opts, problems


def cmd_control(args: argparse.Namespace) -> int:
    """Talk to a running proxy's --control endpoint."""
    from sipfast.load import control

    if args.action == "show" and args.value is None:
        req: dict[str, object] = {"command": "show"}
    elif args.action == "threshold" and args.value is not None:
        try:
            req = {"command": "set", "threshold": float(args.value)}
        except ValueError:
            print("sipfast control: threshold needs a number in 0..1", file=sys.stderr)
            return 2
    else:
        print("sipfast control: use `show` or `threshold VALUE`", file=sys.stderr)
        return 2
    try:
        answer = control.request(args.path, req)
    except (OSError, ValueError) as exc:
        print(f"sipfast control: {args.path}: {exc}", file=sys.stderr)
        return 1
    json.dump(answer, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 1 if "error" in answer else 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `sipfast` command."""
    p = argparse.ArgumentParser(prog="sipfast", description="SIP router for VoIP carriers")
    p.add_argument("--version", action="version", version=f"sipfast {sipfast.__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    pp = sub.add_parser("parse", help="parse a SIP message file and print it as JSON")
    pp.add_argument("file", help="message file, or - for standard input")
    pp.add_argument("--stream", action="store_true", help="frame by Content-Length (TCP)")
    pp.add_argument("--crlf", action="store_true", help="turn bare LF line ends into CRLF first")
    pp.add_argument("--pretty", action="store_true", help="indent the JSON")
    pp.add_argument("--max-size", type=int, default=sipfast.DEFAULT_MAX_SIZE, metavar="BYTES")
    pp.add_argument("--max-headers", type=int, default=sipfast.DEFAULT_MAX_HEADERS, metavar="N")
    pp.add_argument("--max-line", type=int, default=sipfast.DEFAULT_MAX_LINE, metavar="BYTES")
    pp.set_defaults(func=cmd_parse)

    px = sub.add_parser("proxy", help="run a SIP proxy")
    px.add_argument("--listen", action="append", required=True, metavar="udp:HOST:PORT",
                    help="address to serve (repeatable; IPv6 as udp:[::1]:5060; "
                         "tcp:HOST:PORT beside a udp listener on the same host)")
    px.add_argument("--route", action="append", metavar="sip:HOST:PORT",
                    help="static next hop for requests without a Route to follow "
                         "(repeatable: round robin, or all at once with --fork)")
    px.add_argument("--fork", action="store_true",
                    help="fork each new request to every --route next hop in parallel "
                         "(RFC 3261 §16.7: best answer wins, a 2xx cancels the rest)")
    px.add_argument("--stateless", action="store_true",
                    help="forward statelessly (RFC 3261 §16.11); default: transaction stateful")
    px.add_argument("--record-route", action="store_true",
                    help="add Record-Route to dialog-creating requests")
    _workers_option(px)
    _timer_options(px)
    px.add_argument("--no-registrar", action="store_true",
                    help="do not answer REGISTER (405) nor look up registered users")
    px.add_argument("--max-connections", type=int, default=4096, metavar="N",
                    help="TCP connections per worker (default 4096)")
    px.add_argument("--tcp-idle-timeout", type=int, default=600, metavar="S",
                    help="close TCP connections idle this long (default 600)")
    dg = px.add_argument_group("delegating peers (README \"Delegating peers\")")
    dg.add_argument("--peers", action="append", metavar="sip:IP:PORT,...",
                    help="peer proxies to share load with and delegate calls to "
                         "(comma list, repeatable; this proxy's own address is skipped)")
    dg.add_argument("--peer", action="append", metavar="sip:IP:PORT",
                    help="one peer (repeatable), same as --peers")
    dg.add_argument("--share", choices=["push", "poll", "continuous"], default="push",
                    help="push: send own load periodically and on changes; poll: ask the "
                         "peers when a decision needs it; continuous: ask every peer at "
                         "each interval (default push)")
    dg.add_argument("--threshold", type=float, default=0.8, metavar="0..1",
                    help="complete calls locally up to this load, delegate above (default 0.8)")
    dg.add_argument("--capacity", type=int, default=1000, metavar="CALLS",
                    help="active calls that make load 1 (default 1000)")
    dg.add_argument("--pending-limit", type=int, default=500, metavar="N",
                    help="server transactions awaiting a final answer that make load 1 "
                         "(default 500)")
    dg.add_argument("--share-interval", type=float, default=1.0, metavar="S",
                    help="push period (push) or query period (continuous) (default 1)")
    dg.add_argument("--poll-timeout", type=float, default=200, metavar="MS",
                    help="how long to wait for a peer's answer to a load OPTIONS; an "
                         "unanswered peer is down until it answers (default 200)")
    dg.add_argument("--peer-max-age", type=float, default=None, metavar="S",
                    help="a peer's figures age out after this; then it is down "
                         "(default 3 share intervals + the poll timeout)")
    dg.add_argument("--push-step", type=float, default=0.1, metavar="0..1",
                    help="push at once when the load moved by more than this (default 0.1)")
    dg.add_argument("--reply-path", choices=["via", "direct"], default="via",
                    help="via: delegating proxies stay in the Via path; direct: they do "
                         "not, so the delegate answers the caller itself (default via)")
    dg.add_argument("--control", metavar="PATH",
                    help="UNIX socket of the JSON control endpoint (see `sipfast control`)")
    px.set_defaults(func=cmd_proxy)

    pl = sub.add_parser("lb", help="run the first-responder balancer over a pool of proxies")
    pl.add_argument("--listen", action="append", required=True, metavar="udp:HOST:PORT",
                    help="address to serve (repeatable; IPv6 as udp:[::1]:5060)")
    _workers_option(pl)
    pl.add_argument("--pool", action="append", metavar="sip:HOST:PORT",
                    help="a pool member (repeatable; ;transport=tcp allowed)")
    pl.add_argument("--pool-file", metavar="FILE",
                    help="pool members, one SIP URI per line; read again on SIGHUP")
    pl.add_argument("--mode", choices=["redirect", "proxy"], default="redirect",
                    help="redirect: answer the caller 302 naming the winner; proxy: relay "
                         "the call through the winner, which record-routes (default redirect)")
    pl.add_argument("--first", choices=["final", "provisional"], default="final",
                    help="what wins: the first final 2xx/3xx answer to the probe, or the first "
                         "provisional (100 Trying) (default final)")
    pl.add_argument("--probe-timeout", type=int, default=2000, metavar="MS",
                    help="no winner in this time: 503 with Retry-After (default 2000)")
    pl.add_argument("--keepalive", type=float, default=5.0, metavar="S",
                    help="OPTIONS keep-alive period of the pool members; 0 turns it off "
                         "(default 5)")
    _timer_options(pl)
    pl.set_defaults(func=cmd_lb)

    pc = sub.add_parser("control", help="show or change a delegating proxy's load sharing")
    pc.add_argument("path", help="the proxy's --control socket")
    pc.add_argument("action", choices=["show", "threshold"])
    pc.add_argument("value", nargs="?", help="the new threshold (0..1)")
    pc.set_defaults(func=cmd_control)

    pd = sub.add_parser("demo", help="run the demo topology on loopback")
    pd.add_argument("--seconds", type=float, default=1.0, help="length of the speed check")
    pd.add_argument("--calls", type=int, default=2000,
                    help="calls through the demo topology (0: skip it)")
    pd.add_argument("--rate", type=int, default=200, help="calls per second")
    pd.set_defaults(func=cmd_demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `sipfast` console script."""
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
