# The delegation decision in the compiled loop (README "Delegating peers").
#
# A PeerMirror is the C copy of what sipfast.load.sharing.Delegation knows:
# each peer's last report (calls, pending, capacity, pending limit, load),
# when it was heard, whether it is up, and the calls assigned to it since
# that report; this process's capacity, pending limit, CPU share and
# threshold.  Python feeds it whenever a report arrives or a peer's state
# changes; one mirror serves every listener (UdpProxy) of the process, so
# the assigned counts and the round robin are shared as in Python.
#
# PeerMirror.decide applies the rules of sipfast/load/decide.py to a new
# INVITE (same formula, same order of tests, same tie spread, same round
# robin over the peers in the order of their identities), the visited list
# (X-Sipfast-Visited) parsed here.  It answers DG_ASK when Python must
# decide (--share poll over the threshold: the peers must be asked).

cdef enum:
    DG_LOCAL = 0        # complete the call here
    DG_DELEGATE = 1     # forward it to the peer named by *target
    DG_REJECT = 2       # 503 with Retry-After
    DG_ASK = 3          # the control plane decides (on_invite)
    DG_MAX_PEERS = 64
    DG_MAX_VISITED = 64     # identities in one visited list (wire.MAX_VISITED)
    DG_MAX_PARTS = 64       # listeners of one process
    DG_MAX_ID = 64          # characters of one sip:IP:PORT identity
    DG_LINE = 128           # our "X-Sipfast-Visited: sip:IP:PORT\r\n"

cdef double DG_TIE = 0.001          # decide.TIE
cdef int64_t DG_DRIFT_MIN_MS = 50   # peers.DRIFT_MIN_DT
cdef double DG_DRIFT_WEIGHT = 0.3   # peers.DRIFT_WEIGHT
cdef const char* DG_VISITED_NAME = b"x-sipfast-visited"

ctypedef struct dpeer_t:
    sockaddr_storage addr
    uint8_t has_report
    uint8_t up              # Python's view apart from age (not marked unanswered)
    int64_t heard_ms        # now_ms() of the report
    int64_t calls, pending, capacity, limit     # limit 0: none reported
    double load
    int64_t assigned        # calls delegated to it since that report
    double cpu              # its reported CPU share (NaN: not reported)
    double drift            # calls/s it gains or loses not through us
    uint8_t has_drift       # learnt from two reports at least DG_DRIFT_MIN_MS apart


cdef bint dg_parse_identity(const uint8_t* p, Py_ssize_t n,
                            sockaddr_storage* out) noexcept nogil:
    """sip:IPv4:PORT or sip:[IPv6]:PORT (the port required, as on the wire)
    into *out; wire.parse_identity's rules."""
    cdef char tmp[ADDR_TEXT]
    cdef Py_ssize_t i, hs, he, ps
    cdef int port = 0, fam
    cdef sockaddr_in* a4 = <sockaddr_in*>out
    cdef sockaddr_in6* a6 = <sockaddr_in6*>out
    if n < 4 or n > DG_MAX_ID or LOWER[p[0]] != 115 or LOWER[p[1]] != 105 \
            or LOWER[p[2]] != 112 or p[3] != 58:
        return False
    if n > 4 and p[4] == 91:            # [
        hs = 5
        he = hs
        while he < n and p[he] != 93:
            he += 1
        if he >= n:
            return False
        ps = he + 1
        fam = AF_INET6
    else:
        hs = 4
        he = hs
        while he < n and p[he] != 58:
            he += 1
        ps = he
        fam = AF_INET
    # the tail: ":" and 1..5 digits
    if ps >= n or p[ps] != 58 or n - ps < 2 or n - ps > 6:
        return False
    for i in range(ps + 1, n):
        if p[i] < 48 or p[i] > 57:
            return False
        port = port * 10 + (p[i] - 48)
    if port <= 0 or port > 65535 or he - hs <= 0 or he - hs >= ADDR_TEXT:
        return False
    memcpy(tmp, p + hs, he - hs)
    tmp[he - hs] = 0
    memset(out, 0, sizeof(sockaddr_storage))
    if fam == AF_INET:
        if inet_pton(AF_INET, tmp, &a4.sin_addr) != 1:
            return False
        a4.sin_family = AF_INET
        a4.sin_port = htons(<uint16_t>port)
    else:
        if inet_pton(AF_INET6, tmp, &a6.sin6_addr) != 1:
            return False
        a6.sin6_family = AF_INET6
        a6.sin6_port = htons(<uint16_t>port)
    return True


cdef inline bint dg_sws(uint8_t c) noexcept nogil:
    return c == 32 or c == 9


cdef int dg_visited(Message m, sockaddr_storage* out) noexcept nogil:
    """The identities of every X-Sipfast-Visited line (comma lists) into
    out[]; how many, or -1 when any element is malformed or there are more
    than DG_MAX_VISITED (wire.parse_visited's None)."""
    cdef int i, k, n = 0
    cdef hdr_t* h
    cdef Py_ssize_t p, end, s, e
    for i in range(m.nhdr):
        h = &m.hdrs[i]
        if h.name_len != 17:
            continue
        k = 0
        while k < 17 and LOWER[m.b[h.name_off + k]] == <uint8_t>DG_VISITED_NAME[k]:
            k += 1
        if k != 17:
            continue
        p = h.value_off
        end = h.value_off + h.value_len
        while True:
            e = p
            while e < end and m.b[e] != 44:      # ,
                e += 1
            s = p
            while s < e and dg_sws(m.b[s]):
                s += 1
            while e > s and dg_sws(m.b[e - 1]):
                e -= 1
            if n == DG_MAX_VISITED or not dg_parse_identity(m.b + s, e - s, &out[n]):
                return -1
            n += 1
            while e < end and m.b[e] != 44:
                e += 1
            if e >= end:
                break
            p = e + 1
    return n


@cython.final
cdef class PeerMirror:
    """The compiled copy of a delegating proxy's peer table and own
    figures (fed by sipfast.load.sharing.Delegation), and the decision
    for a new INVITE (sipfast/load/decide.py's rules)."""
    cdef dpeer_t peers[DG_MAX_PEERS]
    cdef int npeers
    cdef sockaddr_storage own[DG_MAX_PARTS]
    cdef int nown
    cdef int64_t part_calls[DG_MAX_PARTS]
    cdef int64_t part_pending[DG_MAX_PARTS]
    cdef int nparts
    cdef double threshold, cpu
    cdef int64_t capacity, pending_limit, max_age_ms
    cdef bint poll, direct
    cdef uint64_t rr
    cdef char vline[DG_LINE]
    cdef int vlen
    cdef readonly uint64_t local, delegated, rejected, asked

    def __init__(self, peers, own, str me, *, double threshold, int64_t capacity,
                 int64_t pending_limit, double max_age, bint poll=False, bint direct=False):
        """peers: (ip, port) of each peer, in the order of their identities
        (the round robin walks them in that order); own: this proxy's
        (ip, port) addresses; me: its identity for the visited list;
        max_age (s): a report older than that makes its peer down; poll:
        over the threshold, ask the control plane (it must query the
        peers); direct: delegate with --reply-path direct."""
        cdef bytes hb, line
        cdef int i = 0
        if len(peers) > DG_MAX_PEERS or len(own) > DG_MAX_PARTS or len(own) == 0:
            raise ValueError(f"at most {DG_MAX_PEERS} peers and 1..{DG_MAX_PARTS} own addresses")
        if capacity < 1 or pending_limit < 1 or max_age <= 0:
            raise ValueError("capacity, pending_limit and max_age must be positive")
        memset(self.peers, 0, sizeof(self.peers))
        for ip, port in peers:
            hb = ip.encode()
            if addr_from_host(<const uint8_t*>PyBytes_AS_STRING(hb), len(hb), port,
                              &self.peers[i].addr) < 0:
                raise ValueError(f"peer must be an IP address and port: {ip!r}")
            i += 1
        self.npeers = i
        i = 0
        for ip, port in own:
            hb = ip.encode()
            if addr_from_host(<const uint8_t*>PyBytes_AS_STRING(hb), len(hb), port,
                              &self.own[i]) < 0:
                raise ValueError(f"own address must be an IP address and port: {ip!r}")
            i += 1
        self.nown = i
        line = f"X-Sipfast-Visited: {me}\r\n".encode()
        if len(line) > DG_LINE:
            raise ValueError("identity too long")
        memcpy(self.vline, PyBytes_AS_STRING(line), len(line))
        self.vlen = len(line)
        self.capacity = capacity
        self.pending_limit = pending_limit
        self.max_age_ms = <int64_t>(max_age * 1000)
        self.poll = poll
        self.direct = direct
        self.set_threshold(threshold)

    def set_threshold(self, double value):
        """The threshold the next decisions use (the control endpoint's)."""
        if not 0.0 <= value <= 1.0:
            raise ValueError("threshold must be in 0..1")
        self.threshold = value

    def set_cpu(self, double share):
        """The CPU share of the last sampling interval (Workload.cpu)."""
        self.cpu = share

    def set_part(self, int i, int64_t calls, int64_t pending):
        """Listener i's active calls and pending transactions (as read from
        its stats(); the listener deciding refreshes its own slot)."""
        if not 0 <= i < DG_MAX_PARTS:
            raise IndexError("no such listener slot")
        self.part_calls[i] = calls if calls > 0 else 0
        self.part_pending[i] = pending if pending > 0 else 0
        if i >= self.nparts:
            self.nparts = i + 1

    def set_report(self, int i, int64_t calls, int64_t pending, int64_t capacity,
                   int64_t limit, double load, double cpu=float("nan"), double age=0.0):
        """Peer i reported, `age` seconds ago (0: now): it is up, its
        assigned count 0.  cpu: its reported CPU share (NaN: none).  The
        peer's drift (PeerTable.ingest) is learnt from this report and the
        previous one: the calls it gained or lost between them other than
        those delegated to it from here, per second, smoothed."""
        cdef dpeer_t* p = self._peer(i)
        cdef int64_t heard = now_ms() - <int64_t>(age * 1000.0)
        cdef double rate
        if capacity < 1 or limit < 0:
            raise ValueError("capacity must be positive, limit not negative")
        if p.has_report and heard - p.heard_ms >= DG_DRIFT_MIN_MS:
            rate = <double>(calls - p.calls - p.assigned) * 1000.0 / <double>(heard - p.heard_ms)
            if p.has_drift:
                rate = DG_DRIFT_WEIGHT * rate + (1.0 - DG_DRIFT_WEIGHT) * p.drift
            p.drift = rate
            p.has_drift = 1
        p.calls, p.pending, p.capacity, p.limit, p.load = calls, pending, capacity, limit, load
        p.cpu = cpu
        p.has_report = 1
        p.up = 1
        p.heard_ms = heard
        p.assigned = 0

    def set_down(self, int i):
        """Peer i did not answer: not a candidate until it reports again."""
        self._peer(i).up = 0

    def note_delegated(self, int i):
        """A call the control plane delegated to peer i."""
        self._peer(i).assigned += 1

    def assigned(self, int i):
        """Calls delegated to peer i since its last report."""
        return self._peer(i).assigned

    cdef void undo_delegation(self, int i) noexcept:
        """The delegation to peer i that decide() just counted did not
        happen (the INVITE could not be relayed)."""
        self.peers[i].assigned -= 1
        self.delegated -= 1

    cdef dpeer_t* _peer(self, int i) except NULL:
        if not 0 <= i < self.npeers:
            raise IndexError("no such peer")
        return &self.peers[i]

    def decide_request(self, data, int64_t calls, int64_t pending):
        """The decision for INVITE `data` with this process's counters at
        (calls, pending) (listener slot 0): ("local" | "reject" | "ask",
        None) or ("delegate", peer index).  For tests: the loop calls
        decide() itself."""
        cdef Message m = parse(data)
        cdef int target = -1, k
        self.part_calls[0] = calls
        self.part_pending[0] = pending
        if self.nparts < 1:
            self.nparts = 1
        k = self.decide(m, now_ms(), &target)
        return (("local", "delegate", "reject", "ask")[k], target if k == DG_DELEGATE else None)

    def counters(self):
        """Decisions taken here: local, delegated, rejected, asked (handed
        to the control plane)."""
        return {"local": self.local, "delegated": self.delegated, "rejected": self.rejected,
                "asked": self.asked}

    cdef int _lowest(self, const double* load, const uint8_t* ok) noexcept:
        """decide._lowest: among ok peers, those within DG_TIE of the
        lowest load, the round robin's next one."""
        cdef double low = 2.0
        cdef int i, n = 0, k
        for i in range(self.npeers):
            if ok[i] and load[i] < low:
                low = load[i]
        for i in range(self.npeers):
            if ok[i] and load[i] <= low + DG_TIE:
                n += 1
        k = <int>(self.rr % <uint64_t>n)
        self.rr += 1
        for i in range(self.npeers):
            if ok[i] and load[i] <= low + DG_TIE:
                if k == 0:
                    return i
                k -= 1
        return -1

    cdef int decide(self, Message m, int64_t now, int* target) noexcept:
        """decide.decide for INVITE m; DG_* (the peer in *target)."""
        cdef int64_t calls = 0, pending = 0, p
        cdef double own, x, cf, base, least = 2.0
        cdef bint own_full, can_forward, any_eligible = False, any_under = False
        cdef int i, j, nvis
        cdef double load[DG_MAX_PEERS]
        cdef uint8_t eligible[DG_MAX_PEERS]
        cdef uint8_t under[DG_MAX_PEERS]
        cdef sockaddr_storage vis[DG_MAX_VISITED]
        cdef dpeer_t* q
        for i in range(self.nparts):
            calls += self.part_calls[i]
            pending += self.part_pending[i]
        # workload.compute_load and Workload.full
        if self.cpu != self.cpu:
            own = 1.0
        else:
            own = <double>calls / <double>self.capacity
            x = <double>pending / <double>self.pending_limit
            if x > own:
                own = x
            if self.cpu > own:
                own = self.cpu
            if own > 1.0:
                own = 1.0
            if own < 0.0:
                own = 0.0
        own_full = calls > self.capacity or pending > self.pending_limit
        if own <= self.threshold and not own_full:
            self.local += 1
            return DG_LOCAL
        if self.poll:
            self.asked += 1
            return DG_ASK
        # the visited list and Max-Forwards (Delegation._chain): two hops
        # must remain, to the delegate and from it onwards (§16.6 step 3)
        nvis = dg_visited(m, vis)
        can_forward = nvis >= 0 and (m.mf < 0 or m.mf >= 2)
        for j in range(nvis if nvis > 0 else 0):
            for i in range(self.nown):
                if same_addr(&vis[j], &self.own[i]):
                    can_forward = False
        for i in range(self.npeers):
            q = &self.peers[i]
            eligible[i] = 0
            under[i] = 0
            if not can_forward or not q.has_report or not q.up \
                    or now - q.heard_ms > self.max_age_ms:
                continue
            # PeerTable.projected: the load with one more call, the calls
            # moved on by the peer's drift since its report when it is known
            cf = <double>(q.calls + q.assigned + 1)
            p = q.pending + q.assigned + 1
            base = q.load
            if q.has_drift and q.cpu == q.cpu:
                cf += q.drift * <double>(now - q.heard_ms) / 1000.0
                if cf < <double>(q.assigned + 1):
                    cf = <double>(q.assigned + 1)
                base = q.cpu
            x = cf / <double>q.capacity
            if x > 1.0:
                x = 1.0
            load[i] = base if base >= x else x
            if cf > <double>q.capacity:
                continue
            if q.limit:
                x = <double>p / <double>q.limit
                if x > 1.0:
                    x = 1.0
                if x > load[i]:
                    load[i] = x
                if p > q.limit:
                    continue
            for j in range(nvis):
                if same_addr(&vis[j], &q.addr):
                    break
            else:
                eligible[i] = 1
                any_eligible = True
                if load[i] < least:
                    least = load[i]
                if load[i] <= self.threshold:
                    under[i] = 1
                    any_under = True
        if any_under:
            i = self._lowest(load, under)
        elif not own_full and (not any_eligible or own <= least + DG_TIE):
            self.local += 1
            return DG_LOCAL
        elif any_eligible:
            i = self._lowest(load, eligible)
        else:
            self.rejected += 1
            return DG_REJECT
        self.peers[i].assigned += 1
        self.delegated += 1
        target[0] = i
        return DG_DELEGATE
