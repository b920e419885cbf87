"""Two user agents register with the stateful `sipfast proxy` and call each
other through it by address of record (RFC 3261 §10, §16.5: the location
service gives the target, the Request-URI is rewritten to the contact)."""

from __future__ import annotations

from . import sipp
from .proxyproc import proxy, stop

IP = "127.0.0.1"


def register(logdir, pport: int, user: str, port: int) -> None:
    reg = sipp.run_uac((IP, pport), "uac_register.xml", calls=1, port=port, service=user,
                       workdir=logdir / f"reg-{user}", role=f"reg-{user}")
    reg.assert_clean(1)
    ok = reg.received(status=200)[0]
    assert f"<sip:{user}@{IP}:{port};transport=UDP>;expires=" in ok.header("Contact")


def call(logdir, pport: int, user: str, port: int, calls: int) -> None:
    with sipp.uas("uas.xml", port=port, calls=calls, timeout_s=30,
                  workdir=logdir / f"uas-{user}", role=f"uas-{user}") as callee:
        caller = sipp.run_uac((IP, pport), "uac.xml", calls=calls, rate=20, service=user,
                              workdir=logdir / f"call-{user}", role=f"call-{user}")
        result = callee.wait(timeout_s=15)
    caller.assert_clean(calls)
    result.assert_clean(calls)
    invites = result.received(method="INVITE")
    assert len(invites) == calls
    # §16.5-16.6: the Request-URI is the registered contact now
    assert all(m.request_uri == f"sip:{user}@{IP}:{port};transport=UDP" for m in invites)


def test_two_registered_user_agents_call_each_other(logdir):
    alice_port, bob_port = sipp.free_port(IP), sipp.free_port(IP)
    with proxy("--workers", "1", "--record-route", stateless=False, cwd=logdir) as (pport, proc):
        register(logdir, pport, "alice", alice_port)
        register(logdir, pport, "bob", bob_port)
        call(logdir, pport, "bob", bob_port, 20)      # alice's side calls bob
        call(logdir, pport, "alice", alice_port, 20)  # and bob's side calls alice
        # nobody registered as carol: 404 from the proxy (no default route)
        miss = sipp.run_uac((IP, pport), "uac_error.xml", calls=1, service="carol",
                            workdir=logdir / "carol", role="carol")
        miss.assert_clean(1)
        assert [m.status for m in miss.received() if m.status and m.status >= 200] == [404]
        counters = stop(proc)
    assert counters["lookups"] == 41
    assert counters["dropped"] == counters["rejected"] == 0
