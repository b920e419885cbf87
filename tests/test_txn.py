"""The transaction layer (ext/txn.pxi): RFC 3261 §16.7-§17 and RFC 6026,
driven by a test clock.  Every test asserts the exact actions and their
times, and ends with the table empty: no live transaction, no armed timer."""

import random

import pytest

from sipfast._core import TxnTable

T1, T2, T4, TD = 500, 4000, 5000, 32000
SB = b"192.0.2.1:5060"
FAR = 10_000_000


def table(**kw):
    return TxnTable(64, **kw)


def acts(lst):
    """Actions without the txn id: (at, kind, branch, status)."""
    return [(at, kind, br, st) for at, kind, _txn, br, st in lst]


def invite(t, branch=b"z9hG4bKa", now=0, n=1):
    """A new INVITE server transaction forked to n branches."""
    out = t.on_request(branch, SB, "INVITE", now)
    txn = out[0][2]
    assert acts(out) == [(now, "new", -1, 0), (now, "reply", -1, 100)]
    assert acts(t.fork(txn, n, now)) == [(now, "send_request", b, 0) for b in range(n)]
    return txn


def finish(t, now=FAR):
    """Run the clock far ahead; the table must then be empty."""
    out = t.advance(now)
    s = t.stats()
    assert (s["live"], s["servers"], s["branches"], s["timers"]) == (0, 0, 0, 0), s
    assert s["lost_actions"] == 0
    return out


# ---------------------------------------------------------------------------
# INVITE server transaction (§17.2.1)

def test_invite_server_absorbs_retransmissions_and_resends_last_response():
    t = table()
    txn = invite(t)
    # the 100 Trying is resent on a retransmitted INVITE
    assert acts(t.on_request(b"z9hG4bKa", SB, "INVITE", 100)) == [(100, "resend", -1, 100)]
    assert acts(t.on_response(txn, 0, 100, 150)) == []        # 100 is not forwarded
    assert acts(t.on_response(txn, 0, 180, 200)) == [(200, "forward", 0, 180)]
    assert acts(t.on_request(b"z9hG4bKa", SB, "INVITE", 300)) == [(300, "resend", -1, 180)]
    assert acts(t.on_response(txn, 0, 486, 400)) == [
        (400, "send_ack", 0, 486), (400, "forward", 0, 486)]
    assert t.state(txn) == ("completed", ["completed"])
    assert acts(t.on_request(b"z9hG4bKa", SB, "INVITE", 500)) == [(500, "resend", -1, 486)]
    # a retransmitted final response is ACKed again, not forwarded (§17.1.1.2)
    assert acts(t.on_response(txn, 0, 486, 600)) == [(600, "send_ack", 0, 486)]
    # Timer G: T1, 2*T1, 4*T1 ... from the final response at 400
    assert acts(t.advance(5000)) == [(900, "resend", -1, 486), (1900, "resend", -1, 486),
                                     (3900, "resend", -1, 486)]
    # the ACK: Confirmed, G stops, retransmitted ACKs are absorbed, Timer I = T4
    assert acts(t.on_request(b"z9hG4bKa", SB, "ACK", 5000)) == []
    assert t.state(txn) == ("confirmed", ["completed"])
    assert acts(t.on_request(b"z9hG4bKa", SB, "ACK", 6000)) == []
    assert acts(t.on_request(b"z9hG4bKa", SB, "INVITE", 6000)) == []
    assert acts(t.advance(10_000)) == []                      # I fired: server ended
    assert t.state(txn) == ("terminated", ["completed"])
    # Timer D (32 s after the 486) ends the client branch and the cell
    assert t.advance(32_399) == []
    assert acts(finish(t)) == [(32_400, "terminated", -1, 0)]
    assert t.state(txn) is None


def test_timer_g_capped_at_t2_until_timer_h():
    t = table()
    txn = invite(t)
    t.on_response(txn, 0, 404, 400)
    out = acts(t.advance(40_000))
    g = [at for at, kind, _, _ in out if kind == "resend"]
    assert g == [900, 1900, 3900, 7900, 11900, 15900, 19900, 23900, 27900, 31900]
    # H at 64*T1 after the final response; the branch's D ends at the same time
    assert out[-1] == (32_400, "terminated", -1, 0)
    finish(t)


def test_tu_reply_without_branches_then_ack():
    t = table()
    out = t.on_request(b"z9hG4bKr", SB, "INVITE", 0)
    txn = out[0][2]
    assert acts(t.reply(txn, 302, 10)) == [(10, "reply", -1, 302)]
    assert acts(t.on_request(b"z9hG4bKr", SB, "ACK", 20)) == []
    assert acts(finish(t)) == [(5020, "terminated", -1, 0)]


# ---------------------------------------------------------------------------
# INVITE client transaction (§17.1.1)

def test_timer_a_doubles_until_timer_b_gives_408():
    t = table()
    txn = invite(t)
    out = acts(t.advance(32_000))
    assert out == [(500, "send_request", 0, 0), (1500, "send_request", 0, 0),
                   (3500, "send_request", 0, 0), (7500, "send_request", 0, 0),
                   (15500, "send_request", 0, 0), (31500, "send_request", 0, 0),
                   (32000, "reply", 0, 408)]
    assert t.state(txn) == ("completed", ["terminated"])
    assert acts(t.on_request(b"z9hG4bKa", SB, "ACK", 32_100)) == []
    assert acts(finish(t)) == [(37_100, "terminated", -1, 0)]


def test_provisional_stops_timer_a_and_b():
    t = table()
    txn = invite(t)
    assert acts(t.advance(600)) == [(500, "send_request", 0, 0)]
    assert acts(t.on_response(txn, 0, 100, 700)) == []
    assert acts(t.advance(100_000)) == []                     # no A, no B
    assert t.state(txn) == ("proceeding", ["proceeding"])
    # 2xx: forwarded at once; RFC 6026 Accepted on both sides (Timers L, M)
    assert acts(t.on_response(txn, 0, 200, 100_000)) == [(100_000, "forward", 0, 200)]
    assert t.state(txn) == ("accepted", ["accepted"])
    assert acts(t.on_request(b"z9hG4bKa", SB, "INVITE", 100_100)) == []   # absorbed
    # a 2xx retransmission still passes upstream
    assert acts(t.on_response(txn, 0, 200, 100_200)) == [(100_200, "forward", 0, 200)]
    # the ACK for a 2xx is end to end (another branch): not ours
    assert acts(t.on_request(b"z9hG4bKack", SB, "ACK", 100_300)) == [
        (100_300, "unmatched", -1, 0)]
    assert t.advance(131_999) == []
    assert acts(finish(t)) == [(132_000, "terminated", -1, 0)]


def test_timer_c_cancels_a_branch_with_a_provisional():
    t = table(timer_c=10_000)
    txn = invite(t)
    t.on_response(txn, 0, 100, 100)            # 100 does not reset C
    assert acts(t.advance(10_000)) == [(10_000, "send_cancel", 0, 0)]
    # the CANCEL is retransmitted (E) until it is answered
    assert acts(t.advance(10_500)) == [(10_500, "send_cancel", 0, 0)]
    assert acts(t.on_cancel_response(txn, 0, 200, 10_600)) == []
    # no final response 64*T1 after the CANCEL: as if 408 (§9.1, §16.8)
    assert acts(t.advance(42_000)) == [(42_000, "reply", 0, 408)]
    finish(t)


def test_timer_c_reset_by_provisional_and_408_without_one():
    t = table(timer_c=1200)
    txn = invite(t)
    assert acts(t.advance(1200)) == [(500, "send_request", 0, 0), (1200, "reply", 0, 408)]
    finish(t)
    t = table(timer_c=10_000)
    txn = invite(t)
    t.on_response(txn, 0, 180, 5000)            # C restarts: 15000
    assert acts(t.advance(14_999)) == []
    assert acts(t.advance(15_000)) == [(15_000, "send_cancel", 0, 0)]
    assert acts(t.on_response(txn, 0, 487, 15_100)) == [
        (15_100, "send_ack", 0, 487), (15_100, "forward", 0, 487)]
    finish(t)


# ---------------------------------------------------------------------------
# Non-INVITE (§17.1.2, §17.2.2)

def test_non_invite_timer_e_capped_at_t2_and_f_gives_408():
    t = table()
    out = t.on_request(b"z9hG4bKo", SB, "OPTIONS", 0)
    txn = out[0][2]
    assert acts(out) == [(0, "new", -1, 0)]                    # no 100 for non-INVITE
    assert acts(t.fork(txn, 1, 0)) == [(0, "send_request", 0, 0)]
    assert acts(t.on_request(b"z9hG4bKo", SB, "OPTIONS", 10)) == []   # Trying: absorbed
    out = acts(t.advance(32_000))
    assert [at for at, kind, _, _ in out if kind == "send_request"] == [
        500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]
    assert out[-1] == (32_000, "reply", 0, 408)
    assert acts(t.on_request(b"z9hG4bKo", SB, "OPTIONS", 33_000)) == [
        (33_000, "resend", -1, 408)]
    # Timer J: 64*T1 after the final response
    assert t.advance(63_999) == []
    assert acts(finish(t)) == [(64_000, "terminated", -1, 0)]


def test_non_invite_proceeding_retransmits_at_t2_then_timer_k():
    t = table()
    txn = t.on_request(b"z9hG4bKb", SB, "BYE", 0)[0][2]
    t.fork(txn, 1, 0)
    assert acts(t.advance(500)) == [(500, "send_request", 0, 0)]
    assert acts(t.on_response(txn, 0, 100, 600)) == []
    assert t.state(txn) == ("trying", ["proceeding"])
    assert acts(t.advance(10_000)) == [(1500, "send_request", 0, 0),
                                       (5500, "send_request", 0, 0),
                                       (9500, "send_request", 0, 0)]
    assert acts(t.on_response(txn, 0, 200, 10_000)) == [(10_000, "forward", 0, 200)]
    assert acts(t.on_response(txn, 0, 200, 10_100)) == []       # absorbed in Completed
    assert acts(t.advance(15_000)) == []                        # K: the branch ends
    assert t.state(txn) == ("completed", ["terminated"])
    assert acts(finish(t)) == [(42_000, "terminated", -1, 0)]


def test_non_invite_provisional_forwarded_and_resent():
    t = table()
    txn = t.on_request(b"z9hG4bKs", SB, "SUBSCRIBE", 0)[0][2]
    t.fork(txn, 1, 0)
    assert acts(t.on_response(txn, 0, 183, 100)) == [(100, "forward", 0, 183)]
    assert acts(t.on_request(b"z9hG4bKs", SB, "SUBSCRIBE", 200)) == [(200, "resend", -1, 183)]
    assert acts(t.on_response(txn, 0, 202, 300)) == [(300, "forward", 0, 202)]
    finish(t)


# ---------------------------------------------------------------------------
# CANCEL (§9.1, §9.2, §16.10)

def test_cancel_deferred_until_provisional():
    t = table()
    txn = invite(t)
    out = t.on_cancel(b"z9hG4bKa", SB, 100)
    assert acts(out) == [(100, "new", -1, 0), (100, "reply", -1, 200)]   # no CANCEL yet
    ctxn = out[0][2]
    assert ctxn != txn
    assert acts(t.on_cancel(b"z9hG4bKa", SB, 150)) == [(150, "resend", -1, 200)]
    # the INVITE is still retransmitted while the CANCEL waits
    assert acts(t.advance(600)) == [(500, "send_request", 0, 0)]
    assert acts(t.on_response(txn, 0, 180, 700)) == [
        (700, "send_cancel", 0, 0), (700, "forward", 0, 180)]
    assert acts(t.on_cancel_response(txn, 0, 200, 750)) == []
    assert acts(t.on_response(txn, 0, 487, 800)) == [
        (800, "send_ack", 0, 487), (800, "forward", 0, 487)]
    assert acts(t.on_request(b"z9hG4bKa", SB, "ACK", 900)) == []
    # the CANCEL's Timer J (32 s after 100), the INVITE's Timer D (after 800)
    assert [(at, kind, x) for at, kind, x, _, _ in finish(t)] == [
        (32_100, "terminated", ctxn), (32_800, "terminated", txn)]


def test_cancel_deferred_branch_times_out_with_487():
    t = table()
    txn = invite(t)
    t.on_cancel(b"z9hG4bKa", SB, 100)
    out = acts(t.advance(32_000))
    assert [at for at, kind, _, _ in out if kind == "send_request"] == [
        500, 1500, 3500, 7500, 15500, 31500]
    assert (32_000, "reply", 0, 487) in out
    assert "send_cancel" not in [kind for _, kind, _, _ in out]     # never had a 1xx
    assert t.state(txn) == ("completed", ["terminated"])
    finish(t)


def test_cancel_before_fork_answers_487():
    t = table()
    txn = t.on_request(b"z9hG4bKn", SB, "INVITE", 0)[0][2]
    out = acts(t.on_cancel(b"z9hG4bKn", SB, 10))
    assert out == [(10, "new", -1, 0), (10, "reply", -1, 200), (10, "reply", -1, 487)]
    with pytest.raises(ValueError):
        t.fork(txn, 1, 20)
    t.on_request(b"z9hG4bKn", SB, "ACK", 30)
    finish(t)


def test_cancel_after_final_does_nothing_to_the_invite():
    t = table()
    txn = invite(t)
    t.on_response(txn, 0, 603, 100)
    out = acts(t.on_cancel(b"z9hG4bKa", SB, 200))
    assert out == [(200, "new", -1, 0), (200, "reply", -1, 200)]
    finish(t)


def test_unmatched_requests():
    t = table()
    assert acts(t.on_cancel(b"z9hG4bKzz", SB, 0)) == [(0, "unmatched", -1, 0)]
    assert acts(t.on_request(b"z9hG4bKzz", SB, "ACK", 0)) == [(0, "unmatched", -1, 0)]
    # an RFC 2543 branch (no magic cookie) is not matched here
    assert acts(t.on_request(b"1234", SB, "INVITE", 0)) == [(0, "unmatched", -1, 0)]
    # a response for an unknown transaction or branch
    assert acts(t.on_response(12345, 0, 200, 0)) == [(0, "unmatched", 0, 200)]
    finish(t)


def test_matching_key_parts():
    t = table()
    a = t.on_request(b"z9hG4bKk", b"192.0.2.1:5060", "INVITE", 0)[0][2]
    # another sent-by, another method: other transactions (§17.2.3)
    b = t.on_request(b"z9hG4bKk", b"192.0.2.2:5060", "INVITE", 0)[0][2]
    c = t.on_request(b"z9hG4bKk", b"192.0.2.1:5060", "OPTIONS", 0)[0][2]
    assert len({a, b, c}) == 3
    # sent-by compares case-insensitively
    out = t.on_request(b"z9hG4bKk", b"Host.Example:5060", "BYE", 0)
    assert out[0][1] == "new"
    assert acts(t.on_request(b"z9hG4bKk", b"host.example:5060", "BYE", 1)) == []
    t.reply(out[0][2], 200, 10)
    for x in (a, b):
        t.reply(x, 404, 10)
        t.on_request(b"z9hG4bKk", b"192.0.2.%d:5060" % (1 if x == a else 2), "ACK", 20)
    t.reply(c, 200, 10)
    finish(t)


# ---------------------------------------------------------------------------
# Forking and response selection (§16.7)

def test_fork_first_2xx_forwarded_others_cancelled():
    t = table()
    txn = invite(t, n=3)
    assert acts(t.on_response(txn, 0, 180, 100)) == [(100, "forward", 0, 180)]
    assert acts(t.on_response(txn, 1, 183, 150)) == [(150, "forward", 1, 183)]
    # b0 answers: 200 upstream at once; b1 CANCELled, b2 marked (no 1xx yet)
    assert acts(t.on_response(txn, 0, 200, 200)) == [
        (200, "forward", 0, 200), (200, "send_cancel", 1, 0)]
    # b1 answered before its CANCEL landed: that 2xx passes too
    assert acts(t.on_response(txn, 1, 200, 250)) == [(250, "forward", 1, 200)]
    # b2's provisional releases its CANCEL and is not forwarded
    assert acts(t.on_response(txn, 2, 180, 300)) == [(300, "send_cancel", 2, 0)]
    assert acts(t.on_response(txn, 2, 487, 400)) == [(400, "send_ack", 2, 487)]
    # a late non-2xx after the final is not forwarded
    assert acts(t.on_response(txn, 2, 487, 450)) == [(450, "send_ack", 2, 487)]
    assert acts(finish(t)) == [(32_400, "terminated", -1, 0)]


def test_fork_6xx_cancels_the_rest_and_wins():
    t = table()
    txn = invite(t, n=3)
    t.on_response(txn, 0, 180, 100)
    t.on_response(txn, 1, 180, 100)
    # 603 on b0: ACKed, not forwarded yet, CANCEL to b1 (b2 waits for a 1xx)
    assert acts(t.on_response(txn, 0, 603, 200)) == [
        (200, "send_ack", 0, 603), (200, "send_cancel", 1, 0)]
    assert acts(t.on_response(txn, 1, 487, 300)) == [(300, "send_ack", 1, 487)]
    assert acts(t.on_response(txn, 2, 180, 400)) == [
        (400, "send_cancel", 2, 0), (400, "forward", 2, 180)]
    # all final: the 6xx is chosen although a 2xx-less 487 arrived later
    assert acts(t.on_response(txn, 2, 487, 500)) == [
        (500, "send_ack", 2, 487), (500, "forward", 0, 603)]
    finish(t)


@pytest.mark.parametrize("finals, best", [
    ((486, 404, 503), ("forward", 1, 404)),       # lowest class, lowest code
    ((503, 504), ("reply", 0, 500)),              # a chosen 503 becomes 500
    ((404, 407, 486), ("forward", 1, 407)),       # 407 helps resubmission
    ((486, 302, 500), ("forward", 1, 302)),       # 3xx before 4xx
    ((500, 600, 404), ("forward", 1, 600)),       # 6xx before anything
    ((480, 480), ("forward", 0, 480)),            # ties: the first branch
])
def test_fork_all_final_best_response(finals, best):
    t = table()
    txn = invite(t, n=len(finals))
    for b, st in enumerate(finals[:-1]):
        out = acts(t.on_response(txn, b, st, 100 + b))
        assert out[0] == (100 + b, "send_ack", b, st)
        assert "forward" not in [k for _, k, _, _ in out]
        assert "reply" not in [k for _, k, _, _ in out]
    last = len(finals) - 1
    out = acts(t.on_response(txn, last, finals[-1], 200))
    assert out[0] == (200, "send_ack", last, finals[-1])
    kind, br, st = best
    assert (200, kind, br, st) == out[-1]
    t.on_request(b"z9hG4bKa", SB, "ACK", 300)
    finish(t)


def test_fork_timeout_counts_as_408_in_selection():
    t = table()
    txn = invite(t, n=2)
    t.on_response(txn, 0, 100, 10)
    t.on_response(txn, 0, 500, 20)      # b0: 500; b1: silent until Timer B
    out = acts(t.advance(32_000))
    assert out[-1] == (32_000, "reply", 1, 408)                # 4xx beats 5xx
    finish(t)


def test_tu_final_reply_cancels_pending_branches():
    t = table()
    txn = invite(t, n=2)
    t.on_response(txn, 0, 180, 10)
    assert acts(t.reply(txn, 480, 20)) == [(20, "reply", -1, 480), (20, "send_cancel", 0, 0)]
    assert acts(t.on_response(txn, 0, 487, 30)) == [(30, "send_ack", 0, 487)]
    # b1 never answered: its CANCEL stays unsent and Timer B ends it quietly
    assert "reply" not in [k for _, k, _, _, _ in t.advance(40_000)]
    finish(t)


# ---------------------------------------------------------------------------
# Limits and the index

def test_table_full_rejects_with_503():
    t = TxnTable(2)
    a = t.on_request(b"z9hG4bK1", SB, "INVITE", 0)[0][2]
    b = t.on_request(b"z9hG4bK2", SB, "OPTIONS", 0)[0][2]
    assert acts(t.on_request(b"z9hG4bK3", SB, "INVITE", 0)) == [(0, "reject", -1, 503)]
    assert t.stats()["rejected"] == 1
    # retransmissions of the existing ones still match
    assert acts(t.on_request(b"z9hG4bK1", SB, "INVITE", 1)) == [(1, "resend", -1, 100)]
    t.reply(a, 486, 10)
    t.reply(b, 200, 10)
    t.on_request(b"z9hG4bK1", SB, "ACK", 20)
    finish(t, 100_000)
    # the freed cells are reused; old ids are stale
    c = t.on_request(b"z9hG4bK3", SB, "INVITE", 100_000)[0][2]
    assert c not in (a, b) and t.state(a) is None
    with pytest.raises(ValueError):
        t.reply(a, 500, 100_001)
    t.reply(c, 404, 100_001)
    t.on_request(b"z9hG4bK3", SB, "ACK", 100_002)
    finish(t)


def test_hash_collision_storm():
    """hash_bits=0 sends every key to the same home slot: one long probe
    run, with deletions in random order (backward shift) in between."""
    rng = random.Random(7)
    t = TxnTable(300, hash_bits=0)
    live = {}
    now = 0
    for round_ in range(6):
        for i in range(50):
            br = b"z9hG4bK%d-%d" % (round_, i)
            out = t.on_request(br, SB, "INVITE", now)
            assert out[0][1] == "new"
            live[br] = out[0][2]
        assert t.stats()["servers"] == len(live)
        # every live key still finds its own transaction
        for br, txn in live.items():
            out = t.on_request(br, SB, "INVITE", now)
            assert [(k, x, s) for _, k, x, _, s in out] == [("resend", txn, 100)]
        # end a random half: reply, ACK, Timer I
        for br in rng.sample(sorted(live), len(live) // 2):
            t.reply(live[br], 486, now)
            t.on_request(br, SB, "ACK", now)
            del live[br]
        now += T4
        ended = [x for _, k, x, _, _ in t.advance(now) if k == "terminated"]
        assert len(ended) == len(set(ended))
        assert t.stats()["servers"] == len(live)
    for br, txn in live.items():
        assert t.on_request(br, SB, "INVITE", now)[0][2] == txn
        t.reply(txn, 404, now)
        t.on_request(br, SB, "ACK", now)
    finish(t)
    assert t.stats()["high_water"] <= 300


def test_many_timers_in_one_advance_fire_in_order():
    t = TxnTable(64, tick_ms=1)
    for i in range(20):
        txn = t.on_request(b"z9hG4bKm%d" % i, SB, "INVITE", i)[0][2]
        t.fork(txn, 1, i)
    out = t.advance(40_000)
    times = [at for at, *_ in out]
    assert times == sorted(times)
    assert sum(1 for _, k, *_ in out if k == "reply") == 20
    finish(t)


def test_bad_arguments():
    with pytest.raises(ValueError):
        TxnTable(0)
    with pytest.raises(ValueError):
        TxnTable(8, t1=500, t2=100)
    t = table()
    txn = invite(t)
    with pytest.raises(ValueError):
        t.fork(txn, t.max_branches, 0)            # 1 + 16 > 16
    t.reply(txn, 500, 1)
    t.on_request(b"z9hG4bKa", SB, "ACK", 2)
    finish(t)


def test_timer_c_default_spans_wheel_revolutions_and_epoch_clock():
    """Timer C (> 3 min) lies several wheel revolutions ahead; the clock may
    start at epoch milliseconds (the idle stretch is skipped, not walked)."""
    base = 1_700_000_000_000
    t = table()
    txn = invite(t, now=base)
    t.on_response(txn, 0, 180, base + 100)
    assert acts(t.advance(base + 181_099)) == []
    assert acts(t.advance(base + 181_100)) == [(base + 181_100, "send_cancel", 0, 0)]
    t.on_cancel_response(txn, 0, 200, base + 181_200)
    assert acts(t.on_response(txn, 0, 487, base + 181_300)) == [
        (base + 181_300, "send_ack", 0, 487), (base + 181_300, "forward", 0, 487)]
    t.on_request(b"z9hG4bKa", SB, "ACK", base + 181_400)
    assert acts(finish(t, base + FAR)) == [(base + 213_300, "terminated", -1, 0)]


def test_random_event_storm_leaks_nothing():
    """Random requests, ACKs, CANCELs, forks, responses, TU replies and clock
    jumps; once the TU has answered every transaction and the clock ran on,
    the table is empty (no cell, branch or timer left behind)."""
    statuses = [100, 180, 183, 200, 302, 404, 486, 487, 503, 603]
    for seed in range(200):
        r = random.Random(seed)
        t = TxnTable(32, tick_ms=r.choice([1, 10, 50]), timer_c=r.choice([3000, 181000]))
        now, txns = 0, []
        for _ in range(200):
            now += r.randint(0, 3000)
            op = r.random()
            br = b"z9hG4bK%d" % r.randint(0, 40)
            if op < 0.2:
                out = t.on_request(br, b"h", r.choice(["INVITE", "OPTIONS"]), now)
                txns += [a[2] for a in out if a[1] == "new"]
            elif op < 0.3:
                t.on_request(br, b"h", "ACK", now)
            elif op < 0.35:
                t.on_cancel(br, b"h", now)
            elif op < 0.5 and txns:
                try:
                    t.fork(r.choice(txns), r.randint(1, 4), now)
                except ValueError:
                    pass
            elif op < 0.8 and txns:
                t.on_response(r.choice(txns), r.randint(0, 4), r.choice(statuses), now)
            elif op < 0.85 and txns:
                t.on_cancel_response(r.choice(txns), r.randint(0, 4), 200, now)
            elif op < 0.9 and txns:
                try:
                    t.reply(r.choice(txns), r.choice([180, 200, 404, 500]), now)
                except ValueError:
                    pass
            else:
                t.advance(now)
        for x in txns:
            try:
                t.reply(x, 500, now)
            except ValueError:
                pass
        finish(t, now + FAR)


# ---------------------------------------------------------------------------
# Reliable transports (TCP): no retransmission timers, D/I/J/K zero (§17)

def test_reliable_branch_has_no_timer_a_and_timer_d_is_zero():
    t = table()
    out = t.on_request(b"z9hG4bKr", SB, "INVITE", 0)
    txn = out[0][2]
    assert acts(t.fork(txn, 1, 0, reliable=True)) == [(0, "send_request", 0, 0)]
    # no Timer A: nothing is resent at T1, 2*T1...; Timer B still ends it
    assert acts(t.advance(64 * T1 - 1)) == []
    assert acts(t.advance(64 * T1)) == [(64 * T1, "reply", 0, 408)]
    finish(t)
    base = FAR + 1000                   # the clock only moves forward
    out = t.on_request(b"z9hG4bKr2", SB, "INVITE", base)
    txn = out[0][2]
    t.fork(txn, 1, base, reliable=True)
    assert acts(t.on_response(txn, 0, 486, base + 10)) == [
        (base + 10, "send_ack", 0, 486), (base + 10, "forward", 0, 486)]
    # Timer D is zero on a reliable branch: the branch ends at once
    t.advance(base + 10)
    assert t.state(txn)[1] == ["terminated"]
    finish(t, FAR * 2)


def test_reliable_server_has_no_timer_g_and_timer_j_is_zero():
    t = table()
    out = t.on_request(b"z9hG4bKs", SB, "INVITE", 0)
    txn = out[0][2]
    t.set_reliable(txn)
    t.fork(txn, 1, 0)
    t.on_response(txn, 0, 486, 10)
    # no Timer G retransmissions of the 486 upstream
    assert [a for a in acts(t.advance(10 * T1)) if a[1] == "resend"] == []
    finish(t)
    out = t.on_request(b"z9hG4bKs2", SB, "OPTIONS", 0 + FAR)
    txn = out[0][2]
    t.set_reliable(txn)
    t.fork(txn, 1, FAR)
    t.on_response(txn, 0, 200, FAR + 5)
    # Timer J is zero: the server transaction is gone on the next tick
    t.advance(FAR + 5 + T4 + 1)
    assert t.state(txn) is None
    finish(t, FAR * 2)


# ---------------------------------------------------------------------------
# Probe branches (the first-responder balancer): responses go to the TU only

def test_probe_branches_report_to_the_tu_and_never_go_upstream():
    t = table()
    out = t.on_request(b"z9hG4bKp", SB, "INVITE", 0)
    txn = out[0][2]
    assert acts(t.fork(txn, 3, 0, probe=True)) == [(0, "send_request", b, 0) for b in range(3)]
    assert acts(t.on_response(txn, 0, 100, 5)) == [(5, "probe", 0, 100)]
    assert acts(t.on_response(txn, 1, 302, 6)) == [(6, "send_ack", 1, 302), (6, "probe", 1, 302)]
    # the TU picked branch 1: the others are cancelled once they have had a
    # provisional (branch 0 now, branch 2 when it sends one, §9.1)
    assert acts(t.abandon(txn, 7)) == [(7, "send_cancel", 0, 0)]
    assert acts(t.on_response(txn, 2, 180, 8)) == [(8, "send_cancel", 2, 0), (8, "probe", 2, 180)]
    assert acts(t.on_response(txn, 0, 487, 9)) == [(9, "send_ack", 0, 487), (9, "probe", 0, 487)]
    assert acts(t.on_response(txn, 2, 487, 9)) == [(9, "send_ack", 2, 487), (9, "probe", 2, 487)]
    # every branch final and all were probes: nothing was sent upstream
    assert acts(t.reply(txn, 302, 10)) == [(10, "reply", -1, 302)]
    finish(t)


def test_abandoned_non_invite_probes_stop_retransmitting():
    t = table()
    out = t.on_request(b"z9hG4bKq", SB, "OPTIONS", 0)
    txn = out[0][2]
    t.fork(txn, 2, 0, probe=True)
    assert acts(t.on_response(txn, 0, 200, 5)) == [(5, "probe", 0, 200)]
    assert acts(t.reply(txn, 200, 6)) == [(6, "reply", -1, 200)]
    t.abandon(txn, 6)
    # branch 1 sends nothing more (no Timer E) and the table empties
    assert [a for a in acts(t.advance(5 * T1)) if a[1] == "send_request"] == []
    finish(t)
