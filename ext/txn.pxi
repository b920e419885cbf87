# The transaction layer (RFC 3261 §17, §16.7-§16.10, RFC 6026) as a state
# machine without I/O.  The caller feeds events (a request arrived, a response
# arrived on client branch i, the clock moved) and reads back actions (small C
# structs: send the stored request on branch i, send CANCEL/ACK on branch i,
# forward the response of branch k upstream, resend the last response, answer
# upstream with a local status, transaction terminated).  Message bytes stay
# with the caller; this file holds only states, timers and keys.
#
# One cell = one server transaction and the client transactions (branches) a
# stateful proxy created for it (Kamailio's "cell" with its uas and uac[]):
# the branch set is a bitmap, one decision function (tx_decide) runs per final
# reply, cancelling is two-phase (mark the branch, send the CANCEL once the
# branch has seen a provisional, §9.1), once a final response went upstream
# only INVITE 2xx pass (§16.7 step 5 and RFC 6026), the first 6xx cancels the
# rest, and when every branch is final the best response wins (§16.7 step 6).
#
# Storage: a pool of fixed-size cells with a free list, an open-addressing
# index (linear probing, backward-shift deletion) from the key hash to the
# cell, and a timer wheel whose nodes are preallocated per cell (no Python
# object, no malloc per transaction or per timer).  All core functions are
# `noexcept nogil` and take the C table; TxnTable is a thin Python wrapper for
# tests and the control plane.

cdef enum:
    TX_MAX_BRANCHES = 16        # branches per cell (bitmap in a uint32)
    TX_KEY_MAX = 160            # branch + sent-by bytes stored for matching
    TX_TPB = 3                  # timers per branch: retransmit, final, C
    TX_TPC = 2 + TX_TPB * TX_MAX_BRANCHES   # timers per cell (server: 2)
    TX_WHEEL = 4096             # wheel slots (a power of two)

# Method classes of the key (§17.2.3: the method must match, except that an
# ACK matches the INVITE).  Other methods are passed as TXM_OTHER + n.
cdef enum:
    TXM_INVITE = 1
    TXM_ACK = 2
    TXM_CANCEL = 3
    TXM_OTHER = 4

# Action kinds.
cdef enum:
    TXA_NEW = 1         # a new server transaction (txn): route and fork it
    TXA_SEND_REQ = 2    # send (or resend) the stored request on branch
    TXA_SEND_CANCEL = 3  # send (or resend) CANCEL on branch
    TXA_SEND_ACK = 4    # send ACK for the non-2xx final response of branch
    TXA_FORWARD = 5     # forward branch's last response (status) upstream
    TXA_RESEND = 6      # send the last response sent upstream (status) again
    TXA_REPLY = 7       # build and send a local response (status) upstream
    TXA_REJECT = 8      # table full: answer statelessly with status (503)
    TXA_UNMATCHED = 9   # no transaction: the caller handles it statelessly
    TXA_TERMINATED = 10  # txn's cell is freed; its id is no longer valid
    TXA_PROBE = 11      # a probe branch got a response (status): the TU decides

# Server states (§17.2.1, §17.2.2, RFC 6026 §7.1).
cdef enum:
    TXS_FREE = 0
    TXS_TRYING = 1
    TXS_PROCEEDING = 2
    TXS_COMPLETED = 3
    TXS_CONFIRMED = 4
    TXS_ACCEPTED = 5
    TXS_TERMINATED = 6

# Client (branch) states (§17.1.1, §17.1.2, RFC 6026 §8.4).
cdef enum:
    TXB_NONE = 0
    TXB_CALLING = 1     # INVITE Calling / non-INVITE Trying
    TXB_PROCEEDING = 2
    TXB_COMPLETED = 3
    TXB_ACCEPTED = 4
    TXB_TERMINATED = 5

# Cancel phases of a branch (two-phase cancel).
cdef enum:
    TXC_NONE = 0
    TXC_WANTED = 1      # marked; sent when the branch gets a provisional
    TXC_SENT = 2        # CANCEL sent, retransmitted until answered

# Timer kinds inside a cell.
cdef enum:
    TXT_S_RETR = 0      # G
    TXT_S_FINAL = 1     # H, I, J, L
    TXT_B_RETR = 0      # A, E, or the CANCEL's own E
    TXT_B_FINAL = 1     # B, F, D, K, M, or 64*T1 after CANCEL (§9.1)
    TXT_B_C = 2         # Timer C (§16.6 step 11, §16.8)

ctypedef struct tx_action_t:
    int32_t kind
    int32_t branch
    int32_t status
    int32_t pad
    int64_t txn
    int64_t at          # the event time, or the deadline of the timer that fired

ctypedef struct tx_timer_t:
    int64_t deadline
    int32_t next        # node ids in the wheel slot list, -1 at the ends
    int32_t prev
    int32_t slot        # -1 when not armed

ctypedef struct tx_branch_t:
    uint8_t state
    uint8_t cancel      # TXC_*
    uint8_t local       # the final status was generated here (408/487)
    uint8_t got_prov
    uint8_t reliable    # sent over a reliable transport (TCP): no A/E, D/K zero
    int32_t status      # last status received (the final once final)
    int32_t pad
    int32_t retr_ms     # the current A/E interval (or the CANCEL's E)

ctypedef struct tx_cell_t:
    uint64_t hash
    int64_t id          # handle: generation << 32 | index
    uint32_t gen
    int32_t next_free
    uint8_t sstate
    uint8_t method      # TXM_* (TXM_INVITE for INVITE cells)
    uint8_t canceled    # an upstream CANCEL arrived (§16.10)
    uint8_t got6xx
    uint8_t nbr
    uint8_t prov_branch  # branch of the last provisional forwarded (0xff: local)
    uint8_t reliable    # the request came over a reliable transport: no G, I/J zero
    int32_t last_status  # last response sent upstream, 0 when none
    int32_t g_ms        # the current G interval
    uint32_t br_mask    # branches created
    uint32_t final_mask  # branches with a final response (received or local)
    uint32_t probe_mask  # probe branches: answers go to the TU (TXA_PROBE) only
    int32_t klen
    uint8_t key[TX_KEY_MAX]
    tx_branch_t br[TX_MAX_BRANCHES]

ctypedef struct tx_table_t:
    # parameters (ms)
    int32_t t1, t2, t4, td, tc
    int32_t tw          # the wait after a final response: L, J, M (and caps D)
    int32_t tick
    uint64_t hash_mask  # all ones normally; tests narrow it to force collisions
    # cells
    int32_t cap
    tx_cell_t* cells
    int32_t free_head
    # open-addressing index: cell index or -1
    int32_t* idx
    uint32_t idx_mask
    # timers
    tx_timer_t* timers
    int32_t wheel[TX_WHEEL]
    int64_t wtick       # the tick being processed / last processed
    int64_t now
    # actions
    tx_action_t* acts
    int32_t nacts
    int32_t acts_cap
    int32_t acts_overflow
    # counters
    int64_t live, live_servers, live_branches, armed
    int64_t created, rejected, high_water


# ---------------------------------------------------------------------------
# Actions.

cdef inline void tx_emit(tx_table_t* t, int kind, int64_t txn, int branch, int status,
                         int64_t at) noexcept nogil:
    cdef tx_action_t* a
    cdef tx_action_t* grown
    cdef int32_t ncap
    if t.nacts == t.acts_cap:
        ncap = t.acts_cap * 2
        grown = <tx_action_t*>realloc(t.acts, ncap * sizeof(tx_action_t))
        if grown == NULL:
            t.acts_overflow += 1        # out of memory: the action is lost
            return
        t.acts = grown
        t.acts_cap = ncap
    a = &t.acts[t.nacts]
    a.kind = kind
    a.branch = branch
    a.status = status
    a.pad = 0
    a.txn = txn
    a.at = at
    t.nacts += 1


# ---------------------------------------------------------------------------
# Timer wheel: one wheel of TX_WHEEL slots of `tick` ms; a slot's list is kept
# sorted by deadline so that timers fire in deadline order and a slot scan
# stops at the first timer not yet due (timers more than one revolution away
# sit behind the due ones).

cdef inline int64_t tx_tick_of(tx_table_t* t, int64_t ms) noexcept nogil:
    return ms // t.tick

cdef void tx_timer_stop(tx_table_t* t, int32_t n) noexcept nogil:
    cdef tx_timer_t* x = &t.timers[n]
    if x.slot < 0:
        return
    if x.prev >= 0:
        t.timers[x.prev].next = x.next
    else:
        t.wheel[x.slot] = x.next
    if x.next >= 0:
        t.timers[x.next].prev = x.prev
    x.slot = -1
    x.next = -1
    x.prev = -1
    t.armed -= 1

cdef void tx_timer_start(tx_table_t* t, int32_t n, int64_t deadline) noexcept nogil:
    cdef tx_timer_t* x = &t.timers[n]
    cdef int64_t tk = tx_tick_of(t, deadline)
    cdef int32_t slot, p, q = -1
    tx_timer_stop(t, n)
    if tk < t.wtick:
        tk = t.wtick                # already due: the slot being processed
    slot = <int32_t>(tk & (TX_WHEEL - 1))
    x.deadline = deadline
    x.slot = slot
    p = t.wheel[slot]
    while p >= 0 and t.timers[p].deadline <= deadline:
        q = p
        p = t.timers[p].next
    x.prev = q
    x.next = p
    if q >= 0:
        t.timers[q].next = n
    else:
        t.wheel[slot] = n
    if p >= 0:
        t.timers[p].prev = n
    t.armed += 1

cdef inline int32_t tx_tnode(int32_t ci, int k) noexcept nogil:
    return ci * TX_TPC + k

cdef inline int32_t tx_bnode(int32_t ci, int b, int k) noexcept nogil:
    return ci * TX_TPC + 2 + b * TX_TPB + k


# ---------------------------------------------------------------------------
# Keys and the index.

cdef inline uint64_t tx_hash(const uint8_t* p, Py_ssize_t n, uint64_t h) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        h = (h ^ p[i]) * 1099511628211ULL
    return h

cdef int tx_make_key(const uint8_t* branch, int blen, const uint8_t* sentby, int slen,
                     int method, uint8_t* key, uint64_t* h) noexcept nogil:
    """The key bytes: method class, branch, a NUL, sent-by (lower-cased:
    host names compare case-insensitively).  -1 when too long."""
    cdef int i, n
    if blen + slen + 2 > TX_KEY_MAX or blen <= 0:
        return -1
    key[0] = <uint8_t>(TXM_INVITE if method == TXM_ACK else method)
    memcpy(key + 1, branch, blen)
    key[1 + blen] = 0
    n = 2 + blen
    for i in range(slen):
        key[n + i] = LOWER[sentby[i]]
    n += slen
    h[0] = tx_hash(key, n, 14695981039346656037ULL)
    return n

cdef int32_t tx_find(tx_table_t* t, const uint8_t* key, int klen, uint64_t h) noexcept nogil:
    cdef uint32_t i = <uint32_t>((h & t.hash_mask) & t.idx_mask)
    cdef int32_t ci
    cdef tx_cell_t* c
    while True:
        ci = t.idx[i]
        if ci < 0:
            return -1
        c = &t.cells[ci]
        if c.hash == h and c.klen == klen and memcmp(c.key, key, klen) == 0:
            return ci
        i = (i + 1) & t.idx_mask

cdef void tx_index_put(tx_table_t* t, int32_t ci) noexcept nogil:
    cdef uint32_t i = <uint32_t>((t.cells[ci].hash & t.hash_mask) & t.idx_mask)
    while t.idx[i] >= 0:
        i = (i + 1) & t.idx_mask
    t.idx[i] = ci

cdef void tx_index_del(tx_table_t* t, int32_t ci) noexcept nogil:
    """Remove ci; backward-shift the run after it so lookups need no
    tombstones (linear probing)."""
    cdef uint32_t i = <uint32_t>((t.cells[ci].hash & t.hash_mask) & t.idx_mask)
    cdef uint32_t j, home
    while t.idx[i] != ci:
        i = (i + 1) & t.idx_mask
    j = i
    while True:
        j = (j + 1) & t.idx_mask
        if t.idx[j] < 0:
            break
        home = <uint32_t>((t.cells[t.idx[j]].hash & t.hash_mask) & t.idx_mask)
        # move idx[j] into the hole i unless its home lies cyclically in (i, j]
        if (j > i and (home <= i or home > j)) or (j < i and (home <= i and home > j)):
            t.idx[i] = t.idx[j]
            i = j
    t.idx[i] = -1


# ---------------------------------------------------------------------------
# Cells.

cdef int32_t tx_cell_of(tx_table_t* t, int64_t txn) noexcept nogil:
    cdef int64_t ci = txn & <int64_t>0xffffffffLL
    if txn < 0 or ci >= t.cap or t.cells[ci].sstate == TXS_FREE or t.cells[ci].id != txn:
        return -1
    return <int32_t>ci

cdef void tx_free(tx_table_t* t, int32_t ci, int64_t at) noexcept nogil:
    cdef tx_cell_t* c = &t.cells[ci]
    cdef int k
    for k in range(TX_TPC):
        tx_timer_stop(t, ci * TX_TPC + k)
    tx_index_del(t, ci)
    tx_emit(t, TXA_TERMINATED, c.id, -1, 0, at)
    c.sstate = TXS_FREE
    c.next_free = t.free_head
    t.free_head = ci
    t.live -= 1

cdef void tx_maybe_free(tx_table_t* t, int32_t ci, int64_t at) noexcept nogil:
    """Free the cell once the server transaction and every branch ended."""
    cdef tx_cell_t* c = &t.cells[ci]
    cdef int b
    if c.sstate != TXS_TERMINATED:
        return
    for b in range(c.nbr):
        if c.br[b].state != TXB_TERMINATED:
            return
    tx_free(t, ci, at)

cdef inline void tx_server_end(tx_table_t* t, int32_t ci) noexcept nogil:
    cdef tx_cell_t* c = &t.cells[ci]
    if c.sstate != TXS_TERMINATED:
        c.sstate = TXS_TERMINATED
        t.live_servers -= 1
        tx_timer_stop(t, tx_tnode(ci, TXT_S_RETR))
        tx_timer_stop(t, tx_tnode(ci, TXT_S_FINAL))

cdef inline void tx_branch_end(tx_table_t* t, int32_t ci, int b) noexcept nogil:
    cdef tx_branch_t* r = &t.cells[ci].br[b]
    if r.state != TXB_TERMINATED:
        r.state = TXB_TERMINATED
        t.live_branches -= 1
        tx_timer_stop(t, tx_bnode(ci, b, TXT_B_RETR))
        tx_timer_stop(t, tx_bnode(ci, b, TXT_B_FINAL))
        tx_timer_stop(t, tx_bnode(ci, b, TXT_B_C))

cdef int32_t tx_alloc(tx_table_t* t, const uint8_t* key, int klen, uint64_t h,
                      int method) noexcept nogil:
    cdef int32_t ci = t.free_head
    cdef tx_cell_t* c
    if ci < 0:
        return -1
    c = &t.cells[ci]
    t.free_head = c.next_free
    c.gen += 1
    c.id = (<int64_t>c.gen << 32) | ci
    c.hash = h
    c.klen = klen
    memcpy(c.key, key, klen)
    c.method = <uint8_t>method
    c.sstate = TXS_TRYING if method != TXM_INVITE else TXS_PROCEEDING
    c.canceled = 0
    c.got6xx = 0
    c.nbr = 0
    c.prov_branch = 0xff
    c.last_status = 0
    c.reliable = 0
    c.g_ms = 0
    c.br_mask = 0
    c.final_mask = 0
    c.probe_mask = 0
    tx_index_put(t, ci)
    t.live += 1
    t.live_servers += 1
    t.created += 1
    if t.live > t.high_water:
        t.high_water = t.live
    return ci


# ---------------------------------------------------------------------------
# Sending upstream (the server transaction).

cdef void tx_server_final(tx_table_t* t, int32_t ci, int kind, int branch, int status,
                          int64_t now) noexcept nogil:
    """A final response goes upstream (forwarded or local).  INVITE: 2xx ->
    Accepted with Timer L (RFC 6026 §7.1), else Completed with G and H
    (§17.2.1).  Non-INVITE: Completed with Timer J (§17.2.2)."""
    cdef tx_cell_t* c = &t.cells[ci]
    tx_emit(t, kind, c.id, branch, status, now)
    c.last_status = <int32_t>status
    tx_timer_stop(t, tx_tnode(ci, TXT_S_RETR))
    if c.method == TXM_INVITE:
        if status < 300:
            c.sstate = TXS_ACCEPTED
            tx_timer_start(t, tx_tnode(ci, TXT_S_FINAL), now + t.tw)        # L
        else:
            c.sstate = TXS_COMPLETED
            c.g_ms = t.t1
            if not c.reliable:
                tx_timer_start(t, tx_tnode(ci, TXT_S_RETR), now + t.t1)     # G
            tx_timer_start(t, tx_tnode(ci, TXT_S_FINAL), now + 64 * t.t1)   # H
    else:
        c.sstate = TXS_COMPLETED
        # J: 64*T1 for unreliable transports, zero for reliable (§17.2.2)
        tx_timer_start(t, tx_tnode(ci, TXT_S_FINAL), now + (0 if c.reliable else t.tw))

cdef inline bint tx_server_open(tx_cell_t* c) noexcept nogil:
    return c.sstate == TXS_TRYING or c.sstate == TXS_PROCEEDING


# ---------------------------------------------------------------------------
# Client branches.

cdef void tx_send_cancel(tx_table_t* t, int32_t ci, int b, int64_t now) noexcept nogil:
    """Phase two: the CANCEL goes out (the branch has had a provisional).
    Its retransmissions use the non-INVITE rule (E, capped at T2); the branch
    gives up 64*T1 later if no final response came (§9.1)."""
    cdef tx_cell_t* c = &t.cells[ci]
    cdef tx_branch_t* r = &c.br[b]
    r.cancel = TXC_SENT
    tx_emit(t, TXA_SEND_CANCEL, c.id, b, 0, now)
    r.retr_ms = t.t1
    if not r.reliable:
        tx_timer_start(t, tx_bnode(ci, b, TXT_B_RETR), now + t.t1)
    tx_timer_start(t, tx_bnode(ci, b, TXT_B_FINAL), now + 64 * t.t1)
    tx_timer_stop(t, tx_bnode(ci, b, TXT_B_C))

cdef void tx_cancel_branches(tx_table_t* t, int32_t ci, int64_t now) noexcept nogil:
    """Phase one for every pending INVITE branch; phase two at once for
    those that have seen a provisional (§16.10, §9.1)."""
    cdef tx_cell_t* c = &t.cells[ci]
    cdef tx_branch_t* r
    cdef int b
    if c.method != TXM_INVITE:
        return                      # a non-INVITE is not cancelled (§9.1)
    for b in range(c.nbr):
        r = &c.br[b]
        if (r.state == TXB_CALLING or r.state == TXB_PROCEEDING) and r.cancel == TXC_NONE:
            r.cancel = TXC_WANTED
            if r.state == TXB_PROCEEDING:
                tx_send_cancel(t, ci, b, now)

cdef inline int tx_rank(int status) noexcept nogil:
    """Order for §16.7 step 6: 6xx first, then the lowest class; inside a
    class the responses that help a resubmission (401, 407, 415, 420, 484)
    first, then the lowest code."""
    cdef int cls = status // 100
    cdef int pref = 1
    if cls == 6:
        cls = 0
    if status == 401 or status == 407 or status == 415 or status == 420 or status == 484:
        pref = 0
    return cls * 10000 + pref * 1000 + status

cdef void tx_pick_best(tx_table_t* t, int32_t ci, int64_t now) noexcept nogil:
    """Every branch is final and nothing went upstream yet: send the best
    (§16.7 step 6); a 503 becomes a 500, a local 408/487 is generated."""
    cdef tx_cell_t* c = &t.cells[ci]
    cdef int b, best = -1, status
    for b in range(c.nbr):
        if c.probe_mask & (1u << b):
            continue
        if best < 0 or tx_rank(c.br[b].status) < tx_rank(c.br[best].status):
            best = b
    if best < 0:
        return
    status = c.br[best].status
    if status == 503:
        tx_server_final(t, ci, TXA_REPLY, best, 500, now)
    elif c.br[best].local:
        tx_server_final(t, ci, TXA_REPLY, best, status, now)
    else:
        tx_server_final(t, ci, TXA_FORWARD, best, status, now)

cdef void tx_decide(tx_table_t* t, int32_t ci, int b, int status, int64_t now) noexcept nogil:
    """The one decision per final reply of branch b (received or local),
    after the branch's own state machine moved (§16.7 steps 3-10)."""
    cdef tx_cell_t* c = &t.cells[ci]
    c.final_mask |= 1u << b
    if c.probe_mask & (1u << b):
        tx_emit(t, TXA_PROBE, c.id, b, status, now)     # the TU's to judge
        return
    if not tx_server_open(c):
        # a final response went upstream: only INVITE 2xx pass (§16.7 step 5)
        if c.method == TXM_INVITE and status < 300 and not c.br[b].local \
                and c.sstate == TXS_ACCEPTED:
            tx_emit(t, TXA_FORWARD, c.id, b, status, now)
        return
    if status < 300:
        tx_server_final(t, ci, TXA_FORWARD, b, status, now)
        tx_cancel_branches(t, ci, now)              # §16.7 step 10
        return
    if status >= 600 and not c.got6xx:
        c.got6xx = 1                                # §16.7 step 5: not forwarded yet
        tx_cancel_branches(t, ci, now)
    if (c.final_mask | c.probe_mask) == c.br_mask:  # probes take no part (TXA_PROBE)
        tx_pick_best(t, ci, now)

cdef void tx_branch_local_final(tx_table_t* t, int32_t ci, int b, int64_t now) noexcept nogil:
    """A branch that timed out behaves as if it received 408 (§16.7 step 2,
    §16.8); one cancelled by an upstream CANCEL counts as 487."""
    cdef tx_cell_t* c = &t.cells[ci]
    cdef tx_branch_t* r = &c.br[b]
    cdef int status = 487 if c.canceled else 408
    r.status = <int32_t>status
    r.local = 1
    tx_branch_end(t, ci, b)
    tx_decide(t, ci, b, status, now)


# ---------------------------------------------------------------------------
# Events.

cdef int64_t tx_on_request(tx_table_t* t, const uint8_t* branch, int blen,
                           const uint8_t* sentby, int slen, int method,
                           int64_t now) noexcept nogil:
    """A request from upstream.  Returns the cell id it matched or created
    (-1 when none); the actions say what to do."""
    cdef uint8_t key[TX_KEY_MAX]
    cdef uint64_t h
    cdef int klen
    cdef int32_t ci, ii
    cdef tx_cell_t* c
    t.now = now
    klen = tx_make_key(branch, blen, sentby, slen, method, key, &h)
    if klen < 0 or blen < 7 or memcmp(branch, b"z9hG4bK", 7) != 0:
        # no RFC 3261 branch (or too long a key): not matched here
        tx_emit(t, TXA_UNMATCHED, -1, -1, 0, now)
        return -1
    ci = tx_find(t, key, klen, h)
    if ci >= 0:
        c = &t.cells[ci]
        if method == TXM_ACK:
            # §17.2.1: an ACK for a non-2xx final: Confirmed, Timer I
            if c.sstate == TXS_COMPLETED:
                c.sstate = TXS_CONFIRMED
                tx_timer_stop(t, tx_tnode(ci, TXT_S_RETR))
                tx_timer_start(t, tx_tnode(ci, TXT_S_FINAL),
                               now + (0 if c.reliable else t.t4))          # I
            elif c.sstate != TXS_CONFIRMED:
                # Accepted (RFC 6026 §7.1): the ACK goes to the TU
                tx_emit(t, TXA_UNMATCHED, c.id, -1, 0, now)
            return c.id
        # a retransmission (§17.2.1, §17.2.2)
        if c.sstate == TXS_PROCEEDING or c.sstate == TXS_COMPLETED:
            if c.last_status > 0:
                tx_emit(t, TXA_RESEND, c.id, -1, c.last_status, now)
        return c.id                 # Trying, Confirmed, Accepted: absorbed
    if method == TXM_ACK:
        # no INVITE transaction (an ACK for a 2xx, §17.2.3): the TU's
        tx_emit(t, TXA_UNMATCHED, -1, -1, 0, now)
        return -1
    if method == TXM_CANCEL:
        # §16.10: a CANCEL with no INVITE transaction is forwarded statelessly
        key[0] = TXM_INVITE
        ii = tx_find(t, key, klen, tx_hash(key, klen, 14695981039346656037ULL))
        key[0] = TXM_CANCEL
        if ii < 0:
            tx_emit(t, TXA_UNMATCHED, -1, -1, 0, now)
            return -1
        ci = tx_alloc(t, key, klen, h, method)
        if ci < 0:
            t.rejected += 1
            tx_emit(t, TXA_REJECT, -1, -1, 503, now)
            return -1
        c = &t.cells[ci]
        tx_emit(t, TXA_NEW, c.id, -1, 0, now)
        tx_server_final(t, ci, TXA_REPLY, -1, 200, now)    # §9.2: 200 to the CANCEL
        tx_cancel_invite(t, ii, now)
        return c.id
    ci = tx_alloc(t, key, klen, h, method)
    if ci < 0:
        t.rejected += 1
        tx_emit(t, TXA_REJECT, -1, -1, 503, now)
        return -1
    c = &t.cells[ci]
    tx_emit(t, TXA_NEW, c.id, -1, 0, now)
    if method == TXM_INVITE:
        # §17.2.1 / §16.2: a proxy answers an INVITE with 100 at once
        c.last_status = 100
        tx_emit(t, TXA_REPLY, c.id, -1, 100, now)
    return c.id

cdef int32_t tx_lookup(tx_table_t* t, const uint8_t* branch, int blen,
                       const uint8_t* sentby, int slen, int method) noexcept nogil:
    """The cell a request of this branch/sent-by/method would match, or -1
    (no state change; for callers that handle some matches themselves)."""
    cdef uint8_t key[TX_KEY_MAX]
    cdef uint64_t h
    cdef int klen = tx_make_key(branch, blen, sentby, slen, method, key, &h)
    if klen < 0:
        return -1
    return tx_find(t, key, klen, h)

cdef int tx_detach(tx_table_t* t, int64_t txn, int64_t now) noexcept nogil:
    """The TU relays this INVITE itself and will not answer (a forwarder
    that leaves its Via out, so the next hop answers the client directly):
    the server transaction sends nothing more, absorbs what still matches
    and is freed 64*T1 later.  -1 on an unknown or answered txn."""
    cdef int32_t ci = tx_cell_of(t, txn)
    cdef tx_cell_t* c
    if ci < 0:
        return -1
    c = &t.cells[ci]
    if not tx_server_open(c) or c.nbr > 0:
        return -1
    c.sstate = TXS_CONFIRMED
    tx_timer_stop(t, tx_tnode(ci, TXT_S_RETR))
    tx_timer_start(t, tx_tnode(ci, TXT_S_FINAL), now + 64 * t.t1)
    return 0

cdef void tx_cancel_invite(tx_table_t* t, int32_t ci, int64_t now) noexcept nogil:
    """An upstream CANCEL for the INVITE in cell ci (§16.10)."""
    cdef tx_cell_t* c = &t.cells[ci]
    if not tx_server_open(c):
        return                      # a final response already went upstream
    c.canceled = 1
    if c.nbr == 0:
        # not forked yet: the request ends here (§9.2)
        tx_server_final(t, ci, TXA_REPLY, -1, 487, now)
        return
    tx_cancel_branches(t, ci, now)

cdef int tx_set_reliable(tx_table_t* t, int64_t txn) noexcept nogil:
    """The server transaction's request came over a reliable transport."""
    cdef int32_t ci = tx_cell_of(t, txn)
    if ci < 0:
        return -1
    t.cells[ci].reliable = 1
    return 0

cdef int tx_fork(tx_table_t* t, int64_t txn, int n, int64_t now,
                 uint32_t reliable_mask=0, uint32_t probe_mask=0) noexcept nogil:
    """Create n client branches of txn and send the request on each (A/E and
    B/F, plus Timer C for an INVITE); bit i of reliable_mask marks the i-th
    new branch as sent over a reliable transport (no A/E retransmissions,
    D and K zero, §17.1).  Returns the first new branch index, -1 on a bad
    txn or too many branches."""
    cdef int32_t ci = tx_cell_of(t, txn)
    cdef tx_cell_t* c
    cdef tx_branch_t* r
    cdef int b, first
    t.now = now
    if ci < 0 or n <= 0:
        return -1
    c = &t.cells[ci]
    if not tx_server_open(c) or c.nbr + n > TX_MAX_BRANCHES or c.canceled:
        return -1
    first = c.nbr
    for b in range(first, first + n):
        r = &c.br[b]
        r.state = TXB_CALLING
        r.cancel = TXC_NONE
        r.local = 0
        r.got_prov = 0
        r.status = 0
        r.retr_ms = t.t1
        r.reliable = (reliable_mask >> (b - first)) & 1
        if (probe_mask >> (b - first)) & 1:
            c.probe_mask |= 1u << b
        c.br_mask |= 1u << b
        c.nbr += 1
        t.live_branches += 1
        tx_emit(t, TXA_SEND_REQ, c.id, b, 0, now)
        if not r.reliable:
            tx_timer_start(t, tx_bnode(ci, b, TXT_B_RETR), now + t.t1)     # A / E
        tx_timer_start(t, tx_bnode(ci, b, TXT_B_FINAL), now + 64 * t.t1)   # B / F
        if c.method == TXM_INVITE:
            tx_timer_start(t, tx_bnode(ci, b, TXT_B_C), now + t.tc)        # C
    return first

cdef int tx_abandon(tx_table_t* t, int64_t txn, int64_t now) noexcept nogil:
    """The TU needs no more answers on the pending branches: INVITE
    branches are cancelled (§9.1), non-INVITE ones stop retransmitting and
    end (a non-INVITE cannot be cancelled)."""
    cdef int32_t ci = tx_cell_of(t, txn)
    cdef tx_cell_t* c
    cdef int b
    if ci < 0:
        return -1
    c = &t.cells[ci]
    if c.method == TXM_INVITE:
        tx_cancel_branches(t, ci, now)
        return 0
    for b in range(c.nbr):
        if c.br[b].state == TXB_CALLING or c.br[b].state == TXB_PROCEEDING:
            c.final_mask |= 1u << b
            tx_branch_end(t, ci, b)
    tx_maybe_free(t, ci, now)
    return 0

cdef int tx_reply(tx_table_t* t, int64_t txn, int status, int64_t now) noexcept nogil:
    """The TU answers upstream itself (a redirect, a local error).  A final
    answer cancels the pending branches (§16.7 step 10)."""
    cdef int32_t ci = tx_cell_of(t, txn)
    cdef tx_cell_t* c
    t.now = now
    if ci < 0:
        return -1
    c = &t.cells[ci]
    if status < 200:
        if not tx_server_open(c):
            return -1
        c.sstate = TXS_PROCEEDING
        c.last_status = <int32_t>status
        c.prov_branch = 0xff
        tx_emit(t, TXA_REPLY, c.id, -1, status, now)
        return 0
    if not tx_server_open(c):
        if c.method == TXM_INVITE and status < 300 and c.sstate == TXS_ACCEPTED:
            tx_emit(t, TXA_REPLY, c.id, -1, status, now)
            return 0
        return -1
    tx_server_final(t, ci, TXA_REPLY, -1, status, now)
    tx_cancel_branches(t, ci, now)
    tx_maybe_free(t, ci, now)
    return 0

cdef int tx_on_response(tx_table_t* t, int64_t txn, int b, int status,
                        int64_t now) noexcept nogil:
    """A response to the request sent on branch b of txn (§17.1.1, §17.1.2,
    then §16.7).  -1 when it matches nothing (the caller may forward a
    stray INVITE 2xx statelessly, §16.7)."""
    cdef int32_t ci = tx_cell_of(t, txn)
    cdef tx_cell_t* c
    cdef tx_branch_t* r
    cdef bint inv
    t.now = now
    if ci < 0 or b < 0 or status < 100 or status > 699:
        tx_emit(t, TXA_UNMATCHED, txn, b, status, now)
        return -1
    c = &t.cells[ci]
    if b >= c.nbr:
        tx_emit(t, TXA_UNMATCHED, txn, b, status, now)
        return -1
    r = &c.br[b]
    inv = c.method == TXM_INVITE
    if r.state == TXB_COMPLETED:
        if inv and status >= 300:
            tx_emit(t, TXA_SEND_ACK, c.id, b, status, now)  # §17.1.1.2: ACK again
        return 0
    if r.state == TXB_ACCEPTED:
        if status >= 200 and status < 300:
            # RFC 6026 §8.4: 2xx retransmissions go to the TU, which passes them
            tx_decide_2xx_again(t, ci, b, status, now)
        return 0
    if r.state != TXB_CALLING and r.state != TXB_PROCEEDING:
        tx_emit(t, TXA_UNMATCHED, c.id, b, status, now)
        return -1
    if status < 200:
        if r.state == TXB_CALLING:
            r.state = TXB_PROCEEDING
            if inv:
                # §17.1.1.2: Proceeding stops A; B only runs in Calling
                tx_timer_stop(t, tx_bnode(ci, b, TXT_B_RETR))
                tx_timer_stop(t, tx_bnode(ci, b, TXT_B_FINAL))
        r.got_prov = 1
        r.status = <int32_t>status
        if c.probe_mask & (1u << b):
            if r.cancel == TXC_WANTED:
                tx_send_cancel(t, ci, b, now)            # phase two (§9.1)
            tx_emit(t, TXA_PROBE, c.id, b, status, now)
            return 0
        if inv and status > 100 and r.cancel == TXC_NONE:
            tx_timer_start(t, tx_bnode(ci, b, TXT_B_C), now + t.tc)   # §16.7 step 2
        if r.cancel == TXC_WANTED:
            tx_send_cancel(t, ci, b, now)                # phase two (§9.1)
        if status > 100 and tx_server_open(c):
            # §16.7 step 5: provisionals except 100 go upstream at once
            c.sstate = TXS_PROCEEDING
            c.last_status = <int32_t>status
            c.prov_branch = <uint8_t>b
            tx_emit(t, TXA_FORWARD, c.id, b, status, now)
        return 0
    # a final response
    r.status = <int32_t>status
    tx_timer_stop(t, tx_bnode(ci, b, TXT_B_RETR))
    tx_timer_stop(t, tx_bnode(ci, b, TXT_B_C))
    r.cancel = TXC_NONE if r.cancel == TXC_WANTED else r.cancel
    if inv and status >= 300:
        tx_emit(t, TXA_SEND_ACK, c.id, b, status, now)      # §17.1.1.3
        r.state = TXB_COMPLETED
        tx_timer_start(t, tx_bnode(ci, b, TXT_B_FINAL),
                       now + (0 if r.reliable else min(t.td, t.tw)))       # D
    elif inv:
        r.state = TXB_ACCEPTED
        tx_timer_start(t, tx_bnode(ci, b, TXT_B_FINAL), now + t.tw)       # M
    else:
        r.state = TXB_COMPLETED
        tx_timer_start(t, tx_bnode(ci, b, TXT_B_FINAL),
                       now + (0 if r.reliable else t.t4))       # K
    tx_decide(t, ci, b, status, now)
    return 0

cdef void tx_decide_2xx_again(tx_table_t* t, int32_t ci, int b, int status,
                              int64_t now) noexcept nogil:
    cdef tx_cell_t* c = &t.cells[ci]
    if c.sstate == TXS_ACCEPTED:
        tx_emit(t, TXA_FORWARD, c.id, b, status, now)

cdef int tx_on_cancel_response(tx_table_t* t, int64_t txn, int b, int status,
                               int64_t now) noexcept nogil:
    """A response to our CANCEL on branch b: its retransmissions stop; the
    INVITE branch keeps waiting for its final response (§9.1)."""
    cdef int32_t ci = tx_cell_of(t, txn)
    t.now = now
    if ci < 0 or b < 0 or b >= t.cells[ci].nbr or t.cells[ci].br[b].cancel != TXC_SENT:
        return -1
    if status >= 200 and t.cells[ci].br[b].state == TXB_PROCEEDING:
        tx_timer_stop(t, tx_bnode(ci, b, TXT_B_RETR))
    return 0

cdef void tx_fire(tx_table_t* t, int32_t n, int64_t at) noexcept nogil:
    """A timer of cell n // TX_TPC fired at its deadline `at`."""
    cdef int32_t ci = n // TX_TPC
    cdef int k = n % TX_TPC, b
    cdef tx_cell_t* c = &t.cells[ci]
    cdef tx_branch_t* r
    cdef bint inv = c.method == TXM_INVITE
    if k == TXT_S_RETR:
        # G: resend the final response, doubling up to T2 (§17.2.1)
        if c.sstate == TXS_COMPLETED:
            tx_emit(t, TXA_RESEND, c.id, -1, c.last_status, at)
            c.g_ms = c.g_ms * 2 if c.g_ms * 2 < t.t2 else t.t2
            tx_timer_start(t, n, at + c.g_ms)
        return
    if k == TXT_S_FINAL:
        # H (no ACK), I, J, L: the server transaction ends
        tx_server_end(t, ci)
        if c.nbr > 0 and inv:
            tx_cancel_branches(t, ci, at)
        tx_maybe_free(t, ci, at)
        return
    b = (k - 2) // TX_TPB
    k = (k - 2) % TX_TPB
    r = &c.br[b]
    if k == TXT_B_RETR:
        if r.cancel == TXC_SENT:
            # the CANCEL's own E: doubling, capped at T2
            tx_emit(t, TXA_SEND_CANCEL, c.id, b, 0, at)
            r.retr_ms = r.retr_ms * 2 if r.retr_ms * 2 < t.t2 else t.t2
        elif inv:
            # A: doubling without cap (§17.1.1.2), only in Calling
            tx_emit(t, TXA_SEND_REQ, c.id, b, 0, at)
            r.retr_ms = r.retr_ms * 2
        else:
            # E: doubling up to T2 in Trying, T2 in Proceeding (§17.1.2.2)
            tx_emit(t, TXA_SEND_REQ, c.id, b, 0, at)
            if r.state == TXB_PROCEEDING:
                r.retr_ms = t.t2
            else:
                r.retr_ms = r.retr_ms * 2 if r.retr_ms * 2 < t.t2 else t.t2
        tx_timer_start(t, n, at + r.retr_ms)
        return
    if k == TXT_B_FINAL:
        if r.state == TXB_COMPLETED or r.state == TXB_ACCEPTED:
            tx_branch_end(t, ci, b)                     # D, K, M
            tx_maybe_free(t, ci, at)
            return
        # B, F, or 64*T1 after our CANCEL (§9.1): as if 408 (or 487) came
        tx_branch_local_final(t, ci, b, at)
        tx_maybe_free(t, ci, at)
        return
    # Timer C (§16.8): CANCEL after a provisional, else as if 408
    if r.state == TXB_PROCEEDING:
        if r.cancel == TXC_NONE:
            r.cancel = TXC_WANTED
            tx_send_cancel(t, ci, b, at)
    elif r.state == TXB_CALLING:
        tx_branch_local_final(t, ci, b, at)
        tx_maybe_free(t, ci, at)

cdef int64_t tx_next_deadline(tx_table_t* t) noexcept nogil:
    """The earliest armed deadline (each slot's head is its earliest), or -1."""
    cdef int64_t m = -1
    cdef int32_t i, n
    for i in range(TX_WHEEL):
        n = t.wheel[i]
        if n >= 0 and (m < 0 or t.timers[n].deadline < m):
            m = t.timers[n].deadline
    return m

cdef inline bint tx_timer_lazy(int32_t n) noexcept nogil:
    """A FINAL-kind timer (H, I, J, L; B, F, D, K, M): it ends a
    transaction or gives up on it after a long wait, and may fire a little
    late; retransmissions and Timer C may not."""
    cdef int k = n % TX_TPC
    if k < 2:
        return k == TXT_S_FINAL
    return (k - 2) % TX_TPB == TXT_B_FINAL

cdef int64_t tx_next_wake(tx_table_t* t, int64_t horizon, int64_t slack) noexcept nogil:
    """When tx_advance should next run, at most `horizon` (ms, on the
    clock tx_advance was given): the earliest deadline of a retransmission
    or Timer C, or `slack` after the earliest FINAL-kind deadline.  Scans
    the wheel's slots from the last processed tick up to the horizon only
    (timers of later revolutions sit behind a slot's due ones)."""
    cdef int64_t best = horizon, tk = t.wtick, last = tx_tick_of(t, horizon), end, d
    cdef int32_t n
    while tk <= last and tk * t.tick <= best:
        end = (tk + 1) * t.tick
        n = t.wheel[<int32_t>(tk & (TX_WHEEL - 1))]
        while n >= 0 and t.timers[n].deadline < end:
            d = t.timers[n].deadline
            if tx_timer_lazy(n):
                d += slack
            if d < best:
                best = d
            n = t.timers[n].next
        tk += 1
    return best

cdef void tx_advance(tx_table_t* t, int64_t now) noexcept nogil:
    """Fire every timer due at `now`, in deadline order: ticks are visited in
    order and a tick fires only the timers of its own tick (those of later
    revolutions wait), and a long idle stretch is skipped by jumping to the
    earliest deadline (one slot scan per revolution's worth of ticks)."""
    cdef int64_t last = tx_tick_of(t, now), tk = t.wtick, m, limit
    cdef int32_t slot, n, budget = 0
    t.now = now
    while tk <= last:
        if budget == 0:
            budget = TX_WHEEL
            if last - tk > TX_WHEEL:
                m = tx_next_deadline(t)
                m = last if m < 0 else tx_tick_of(t, m)
                if m > tk:
                    tk = m if m < last else last
        t.wtick = tk
        limit = (tk + 1) * t.tick - 1
        if limit > now:
            limit = now
        slot = <int32_t>(tk & (TX_WHEEL - 1))
        while True:
            n = t.wheel[slot]
            if n < 0 or t.timers[n].deadline > limit:
                break
            tx_timer_stop(t, n)
            tx_fire(t, n, t.timers[n].deadline)
        tk += 1
        budget -= 1
    t.wtick = last


# ---------------------------------------------------------------------------
# Construction.

cdef int tx_table_init(tx_table_t* t, int32_t cap, int32_t t1, int32_t t2, int32_t t4,
                       int32_t td, int32_t tc, int32_t tick, uint64_t hash_mask,
                       int32_t tw=0) noexcept nogil:
    """tw: how long a transaction lingers after its final response to absorb
    retransmissions (Timers L, J, M; it also caps D); 0: RFC 3261's 64*T1."""
    cdef int32_t i
    cdef uint32_t isz = 16
    memset(t, 0, sizeof(tx_table_t))
    while isz < <uint32_t>cap * 2:
        isz <<= 1
    t.t1 = t1
    t.t2 = t2
    t.t4 = t4
    t.td = td
    t.tw = tw if tw > 0 else 64 * t1
    t.tc = tc
    t.tick = tick
    t.hash_mask = hash_mask
    t.cap = cap
    t.cells = <tx_cell_t*>malloc(cap * sizeof(tx_cell_t))
    t.idx = <int32_t*>malloc(isz * sizeof(int32_t))
    t.timers = <tx_timer_t*>malloc(<size_t>cap * TX_TPC * sizeof(tx_timer_t))
    t.acts_cap = 64
    t.acts = <tx_action_t*>malloc(t.acts_cap * sizeof(tx_action_t))
    if t.cells == NULL or t.idx == NULL or t.timers == NULL or t.acts == NULL:
        return -1
    memset(t.cells, 0, cap * sizeof(tx_cell_t))
    t.idx_mask = isz - 1
    for i in range(<int32_t>isz):
        t.idx[i] = -1
    for i in range(cap):
        t.cells[i].next_free = i + 1 if i + 1 < cap else -1
    t.free_head = 0
    for i in range(cap * TX_TPC):
        t.timers[i].slot = -1
        t.timers[i].next = -1
        t.timers[i].prev = -1
    for i in range(TX_WHEEL):
        t.wheel[i] = -1
    return 0

cdef void tx_table_free(tx_table_t* t) noexcept nogil:
    free(t.cells)
    free(t.idx)
    free(t.timers)
    free(t.acts)
    t.cells = NULL
    t.idx = NULL
    t.timers = NULL
    t.acts = NULL


# ---------------------------------------------------------------------------
# The Python wrapper (tests, control plane).

cdef tuple _TXA_NAMES = (None, "new", "send_request", "send_cancel", "send_ack", "forward",
                         "resend", "reply", "reject", "unmatched", "terminated", "probe")

cdef dict _TX_METHODS = {"INVITE": TXM_INVITE, "ACK": TXM_ACK, "CANCEL": TXM_CANCEL,
                         "BYE": TXM_OTHER, "OPTIONS": TXM_OTHER + 1,
                         "REGISTER": TXM_OTHER + 2, "PRACK": TXM_OTHER + 3,
                         "SUBSCRIBE": TXM_OTHER + 4, "NOTIFY": TXM_OTHER + 5,
                         "REFER": TXM_OTHER + 6, "INFO": TXM_OTHER + 7,
                         "UPDATE": TXM_OTHER + 8, "MESSAGE": TXM_OTHER + 9,
                         "PUBLISH": TXM_OTHER + 10}


@cython.final
cdef class TxnTable:
    """The transaction table of a stateful proxy (RFC 3261 §16-17), driven by
    the caller's clock.  Every method returns the actions it produced, as
    tuples ``(at_ms, kind, txn, branch, status)``; ``branch`` and
    ``status`` are -1 / 0 when they do not apply."""
    cdef tx_table_t t

    def __cinit__(self):
        self.t.cells = NULL

    def __init__(self, int max_txns=4096, *, int t1=500, int t2=4000, int t4=5000,
                 int timer_d=32000, int timer_c=181000, int tick_ms=10,
                 int hash_bits=64):
        if max_txns <= 0 or max_txns > (1 << 24):
            raise ValueError("max_txns must be in 1..2**24")
        if t1 <= 0 or t2 < t1 or t4 <= 0 or timer_d < 0 or timer_c <= 0 or tick_ms <= 0:
            raise ValueError("timer values must be positive (and T2 >= T1)")
        if hash_bits < 0 or hash_bits > 64:
            raise ValueError("hash_bits must be in 0..64")
        tx_table_free(&self.t)
        if tx_table_init(&self.t, max_txns, t1, t2, t4, timer_d, timer_c, tick_ms,
                         0xffffffffffffffffULL if hash_bits == 64
                         else (1ULL << hash_bits) - 1) < 0:
            tx_table_free(&self.t)
            raise MemoryError()

    def __dealloc__(self):
        tx_table_free(&self.t)

    cdef list _drain(self):
        cdef list out = []
        cdef tx_action_t* a
        cdef int i
        for i in range(self.t.nacts):
            a = &self.t.acts[i]
            out.append((a.at, _TXA_NAMES[a.kind], a.txn, a.branch, a.status))
        self.t.nacts = 0
        return out

    def on_request(self, branch, sent_by, str method, int64_t now):
        """A request from upstream: its top Via branch and sent-by
        (host[:port]) and method."""
        cdef bytes b = to_bytes(branch, "branch")
        cdef bytes s = to_bytes(sent_by, "sent_by")
        cdef int m = _TX_METHODS.get(method.upper(), TXM_OTHER + 15)
        tx_on_request(&self.t, <const uint8_t*>PyBytes_AS_STRING(b), <int>len(b),
                      <const uint8_t*>PyBytes_AS_STRING(s), <int>len(s), m, now)
        return self._drain()

    def set_reliable(self, int64_t txn):
        """The server transaction's request came over a reliable transport."""
        if tx_set_reliable(&self.t, txn) < 0:
            raise ValueError("unknown transaction")

    def on_cancel(self, branch, sent_by, int64_t now):
        """An upstream CANCEL (the same as on_request(..., "CANCEL", now))."""
        return self.on_request(branch, sent_by, "CANCEL", now)

    def fork(self, int64_t txn, int n, int64_t now, *, bint reliable=False, bint probe=False):
        """Create n client branches and send the request on each (over a
        reliable transport when told: no retransmission timers; as probes
        when told: their responses come back as "probe" actions)."""
        if tx_fork(&self.t, txn, n, now, 0xffffffffu if reliable else 0,
                   0xffffffffu if probe else 0) < 0:
            self.t.nacts = 0
            raise ValueError("cannot fork: unknown or closed transaction, or too many branches")
        return self._drain()

    def on_response(self, int64_t txn, int branch, int status, int64_t now):
        """A response from downstream on a branch of txn."""
        tx_on_response(&self.t, txn, branch, status, now)
        return self._drain()

    def on_cancel_response(self, int64_t txn, int branch, int status, int64_t now):
        """A response to the CANCEL sent on a branch."""
        tx_on_cancel_response(&self.t, txn, branch, status, now)
        return self._drain()

    def reply(self, int64_t txn, int status, int64_t now):
        """The TU answers upstream with a local response."""
        if tx_reply(&self.t, txn, status, now) < 0:
            self.t.nacts = 0
            raise ValueError("cannot reply: unknown transaction or final already sent")
        return self._drain()

    def abandon(self, int64_t txn, int64_t now):
        """Stop waiting on the pending branches (cancel INVITE ones)."""
        if tx_abandon(&self.t, txn, now) < 0:
            raise ValueError("unknown transaction")
        return self._drain()

    def advance(self, int64_t now):
        """Move the clock to now (ms) and fire the timers due."""
        tx_advance(&self.t, now)
        return self._drain()

    def state(self, int64_t txn):
        """(server_state, [branch_state, ...]) names, or None when unknown."""
        cdef int32_t ci = tx_cell_of(&self.t, txn)
        cdef tx_cell_t* c
        if ci < 0:
            return None
        c = &self.t.cells[ci]
        sn = ("free", "trying", "proceeding", "completed", "confirmed", "accepted",
              "terminated")
        bn = ("none", "calling", "proceeding", "completed", "accepted", "terminated")
        return sn[c.sstate], [bn[c.br[i].state] for i in range(c.nbr)]

    def stats(self):
        """Counters: live cells, server and client transactions, armed timers."""
        return {"live": self.t.live, "servers": self.t.live_servers,
                "branches": self.t.live_branches, "timers": self.t.armed,
                "created": self.t.created, "rejected": self.t.rejected,
                "high_water": self.t.high_water, "capacity": self.t.cap,
                "lost_actions": self.t.acts_overflow}

    @property
    def max_branches(self):
        return TX_MAX_BRANCHES
