# The stateless UDP proxy loop (RFC 3261 §16.11, RFC 3581): datagrams are
# received in batches with recvmmsg into preallocated buffers, parsed into
# one reused Message, edited with C lumps and sent in batches with sendmmsg.
# No Python object is created per packet; Python sees counters only.

cdef extern from "<string.h>" nogil:
    size_t strlen(const char*)

cdef extern from "<sys/socket.h>" nogil:
    ctypedef unsigned int socklen_t
    ctypedef unsigned short sa_family_t
    struct sockaddr:
        sa_family_t sa_family
    struct sockaddr_storage:
        sa_family_t ss_family
    struct iovec:
        void* iov_base
        size_t iov_len
    struct msghdr:
        void* msg_name
        socklen_t msg_namelen
        iovec* msg_iov
        size_t msg_iovlen
        void* msg_control
        size_t msg_controllen
        int msg_flags
    struct mmsghdr:
        msghdr msg_hdr
        unsigned int msg_len
    int recvmmsg(int fd, mmsghdr* vec, unsigned int vlen, int flags, void* timeout)
    int sendmmsg(int fd, mmsghdr* vec, unsigned int vlen, int flags)
    int MSG_DONTWAIT
    int AF_INET
    int AF_INET6

cdef extern from "<netinet/in.h>" nogil:
    struct in_addr:
        uint32_t s_addr
    struct in6_addr:
        pass
    struct sockaddr_in:
        sa_family_t sin_family
        uint16_t sin_port
        in_addr sin_addr
    struct sockaddr_in6:
        sa_family_t sin6_family
        uint16_t sin6_port
        in6_addr sin6_addr
    uint16_t htons(uint16_t)
    uint16_t ntohs(uint16_t)

cdef extern from "<sys/socket.h>" nogil:
    int socket(int domain, int type, int protocol)
    int connect(int fd, const sockaddr* addr, socklen_t len)
    int accept4(int fd, sockaddr* addr, socklen_t* len, int flags)
    int getsockopt(int fd, int level, int name, void* val, socklen_t* len)
    int setsockopt(int fd, int level, int name, const void* val, socklen_t len)
    int SOCK_STREAM
    int SOCK_NONBLOCK
    int SOCK_CLOEXEC
    int SOL_SOCKET
    int SO_ERROR

cdef extern from "<netinet/tcp.h>" nogil:
    int IPPROTO_TCP
    int TCP_NODELAY

cdef extern from "<unistd.h>" nogil:
    ssize_t read(int fd, void* buf, size_t n)
    ssize_t write(int fd, const void* buf, size_t n)
    int close(int fd)

cdef extern from "<errno.h>" nogil:
    int errno
    int EAGAIN
    int EWOULDBLOCK
    int EINPROGRESS
    int EINTR

cdef extern from "<arpa/inet.h>" nogil:
    const char* inet_ntop(int af, const void* src, char* dst, socklen_t size)
    int inet_pton(int af, const char* src, void* dst)

cdef enum:
    BATCH = 32                  # datagrams per recvmmsg / sendmmsg
    SLOT = 65536                # bytes per datagram slot (the UDP maximum)
    FE_LUMPS = 16
    FE_ARENA = 2048
    ADDR_TEXT = 48              # INET6_ADDRSTRLEN + brackets


cdef const char* HEXDIGITS = "0123456789abcdef"
cdef const char* ALLOW_LINE = (b"Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, PRACK, "
                               b"UPDATE, INFO, SUBSCRIBE, NOTIFY, REFER, MESSAGE\r\n")

# ---------------------------------------------------------------------------
# Addresses.

cdef int addr_from_host(const uint8_t* host, Py_ssize_t n, int port,
                        sockaddr_storage* out) noexcept nogil:
    """An IP literal (IPv6 with or without brackets) and port into *out;
    -1 when host is not an IP literal (a name needs RFC 3263 resolution,
    which is not done in the hot path)."""
    cdef char tmp[ADDR_TEXT]
    cdef sockaddr_in* a4 = <sockaddr_in*>out
    cdef sockaddr_in6* a6 = <sockaddr_in6*>out
    if n >= 2 and host[0] == 91 and host[n - 1] == 93:
        host += 1
        n -= 2
    if n <= 0 or n >= ADDR_TEXT or port <= 0 or port > 65535:
        return -1
    memcpy(tmp, host, n)
    tmp[n] = 0
    memset(out, 0, sizeof(sockaddr_storage))
    if inet_pton(AF_INET, tmp, &a4.sin_addr) == 1:
        a4.sin_family = AF_INET
        a4.sin_port = htons(<uint16_t>port)
        return 0
    if inet_pton(AF_INET6, tmp, &a6.sin6_addr) == 1:
        a6.sin6_family = AF_INET6
        a6.sin6_port = htons(<uint16_t>port)
        return 0
    return -1

cdef inline socklen_t addr_len(const sockaddr_storage* a) noexcept nogil:
    return sizeof(sockaddr_in6) if a.ss_family == AF_INET6 else sizeof(sockaddr_in)

cdef int addr_text(const sockaddr_storage* a, char* out, int* port) noexcept nogil:
    """The address as text (no brackets) and its port; the text length."""
    if a.ss_family == AF_INET6:
        inet_ntop(AF_INET6, &(<sockaddr_in6*>a).sin6_addr, out, ADDR_TEXT)
        port[0] = ntohs((<sockaddr_in6*>a).sin6_port)
    else:
        inet_ntop(AF_INET, &(<sockaddr_in*>a).sin_addr, out, ADDR_TEXT)
        port[0] = ntohs((<sockaddr_in*>a).sin_port)
    return <int>strlen(out)

# ---------------------------------------------------------------------------
# Edits in C: the same lumps as Editor, in fixed storage, failing with -1.

ctypedef struct fedit_t:
    lump_t lumps[FE_LUMPS]
    int n
    int an
    char arena[FE_ARENA]

cdef inline int fe_put(fedit_t* e, const void* s, Py_ssize_t n) noexcept nogil:
    if e.an + n > FE_ARENA:
        return -1
    memcpy(e.arena + e.an, s, n)
    e.an += <int>n
    return 0

cdef inline int fe_lump(fedit_t* e, Py_ssize_t start, Py_ssize_t end, int data_off) noexcept nogil:
    if e.n == FE_LUMPS:
        return -1
    e.lumps[e.n].start = <int32_t>start
    e.lumps[e.n].end = <int32_t>end
    e.lumps[e.n].data_off = data_off
    e.lumps[e.n].data_len = e.an - data_off
    e.lumps[e.n].seq = e.n
    e.n += 1
    return 0

cdef inline int fe_int(fedit_t* e, int64_t v) noexcept nogil:
    if e.an + 24 > FE_ARENA:
        return -1
    e.an += fmt_int(e.arena + e.an, v)
    return 0

cdef inline int fe_hex64(fedit_t* e, uint64_t v) noexcept nogil:
    cdef char tmp[16]
    cdef int i
    for i in range(16):
        tmp[i] = HEXDIGITS[(v >> (60 - 4 * i)) & 15]
    return fe_put(e, tmp, 16)

cdef inline uint64_t fnv64(const uint8_t* p, Py_ssize_t n, uint64_t h) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        h = (h ^ p[i]) * 1099511628211ULL
    return h

cdef int fe_pop_element(fedit_t* e, Message m, int hid) noexcept nogil:
    """Lump removing the first element of the first `hid` header."""
    cdef hdr_t* h = &m.hdrs[m.first[hid]]
    cdef Py_ssize_t vend = h.value_off + h.value_len
    cdef Py_ssize_t x = list_element_end(m.b, h.value_off, vend)
    if x < 0:
        return -1
    if x >= vend:
        return fe_lump(e, h.name_off, h.line_end, e.an)
    return fe_lump(e, h.value_off, skip_lws(m.b, x + 1, vend), e.an)


# ---------------------------------------------------------------------------
# Stored bytes of a transaction (reused across the cells' lifetimes, so a
# steady load allocates nothing).

ctypedef struct buf_t:
    char* p
    int32_t len
    int32_t cap

cdef int buf_set(buf_t* b, const char* s, Py_ssize_t n) noexcept nogil:
    cdef char* q
    cdef Py_ssize_t cap
    if n > b.cap:
        cap = n if n > 1024 else 1024
        q = <char*>realloc(b.p, cap)
        if q == NULL:
            return -1
        b.p = q
        b.cap = <int32_t>cap
    memcpy(b.p, s, n)
    b.len = <int32_t>n
    return 0

ctypedef struct bstore_t:
    sockaddr_storage dst    # where this branch's request goes
    int tcp                 # over TCP (a connection to dst), else UDP
    int member              # the pool member a probe went to
    buf_t req               # the request as forwarded on this branch
    buf_t resp              # its last response, our Via popped

ctypedef struct cstore_t:
    sockaddr_storage up     # where upstream responses go (§18.2.2, RFC 3581)
    int upfd                # the socket (or TCP connection) the request came in on
    uint8_t uptcp           # it came over TCP
    uint8_t custom          # `last` holds a response made by the control plane
    uint8_t cancel          # the cell is a CANCEL's
    uint8_t invite          # the cell is an INVITE's
    uint8_t counted         # counted in `pending` (no final answer yet)
    uint8_t direct          # relayed to bs[0].dst without our Via, detached (_direct)
    uint8_t deferred        # waiting for the control plane's resume()
    uint8_t rr              # we record-routed it
    uint8_t lb              # a balancer fan-out (probe branches)
    int32_t winner          # the probe branch that won, -1 while none
    int64_t lb_deadline     # no winner by then: 503
    uint64_t dkey           # dialog key (Call-ID hash)
    sockaddr_storage src    # where the request came from
    int32_t nbs             # bstore_t entries allocated
    perr_t err              # reason of a local error answer
    buf_t req               # the request as received
    buf_t last              # the last response sent upstream
    buf_t own               # a final answer made beforehand, sent by TXA_REPLY
    bstore_t* bs

cdef void cstore_free(cstore_t* c) noexcept nogil:
    cdef int i
    free(c.req.p)
    free(c.last.p)
    free(c.own.p)
    for i in range(c.nbs):
        free(c.bs[i].req.p)
        free(c.bs[i].resp.p)
    free(c.bs)

# TCP connections (RFC 3261 §18: Content-Length framing, answers on the
# connection the request came in on, requests to a TCP next hop over a
# connection opened on demand and reused).  The event loop watches their
# descriptors; everything read or written is handled here.

cdef enum:
    CONN_FREE = 0
    CONN_CONNECTING = 1
    CONN_OPEN = 2
    FD_MAP = 65536          # descriptors we can map to a connection
    CONN_RX_MAX = 2 * 65536 + 4096
    CONN_TX_MAX = 4 << 20   # a peer this far behind is closed

ctypedef struct conn_t:
    int fd
    int state
    sockaddr_storage peer
    buf_t rx
    buf_t tx
    int64_t last
    uint8_t watching        # 1 read, 2 write, 3 both (what the loop watches)
    uint8_t dead            # close when the current batch is done

cdef bint same_addr(const sockaddr_storage* a, const sockaddr_storage* b) noexcept nogil:
    if a.ss_family != b.ss_family:
        return False
    if a.ss_family == AF_INET6:
        return (<sockaddr_in6*>a).sin6_port == (<sockaddr_in6*>b).sin6_port and memcmp(
            &(<sockaddr_in6*>a).sin6_addr, &(<sockaddr_in6*>b).sin6_addr, 16) == 0
    return ((<sockaddr_in*>a).sin_port == (<sockaddr_in*>b).sin_port
            and (<sockaddr_in*>a).sin_addr.s_addr == (<sockaddr_in*>b).sin_addr.s_addr)

cdef int buf_append(buf_t* b, const char* s, Py_ssize_t n) noexcept nogil:
    cdef char* q
    cdef Py_ssize_t cap
    if b.len + n > b.cap:
        cap = b.cap * 2 if b.cap > 0 else 4096
        while cap < b.len + n:
            cap *= 2
        q = <char*>realloc(b.p, cap)
        if q == NULL:
            return -1
        b.p = q
        b.cap = <int32_t>cap
    memcpy(b.p + b.len, s, n)
    b.len += <int32_t>n
    return 0

cdef int buf_grow(buf_t* b, Py_ssize_t cap) noexcept nogil:
    cdef char* q
    if cap <= b.cap:
        return 0
    q = <char*>realloc(b.p, cap)
    if q == NULL:
        return -1
    b.p = q
    b.cap = <int32_t>cap
    return 0

cdef bint uri_param_is(const uint8_t* b, uri_t* u, const char* name, int nl,
                       const char* val, int vl) noexcept nogil:
    """Whether the URI has the parameter name=val (both case-insensitive);
    with val NULL, whether it has the parameter at all (any value or none)."""
    cdef Py_ssize_t p, end, q, k
    if u.params.off < 0:
        return False
    p = u.params.off
    end = u.params.off + u.params.len
    while p < end:
        q = p
        while q < end and b[q] != 59:
            q += 1
        if (q - p == nl or (q - p > nl and b[p + nl] == 61)) if val == NULL else (
                q - p == nl + 1 + vl and b[p + nl] == 61):
            k = 0
            while k < nl and LOWER[b[p + k]] == <uint8_t>name[k]:
                k += 1
            if k == nl:
                if val == NULL:
                    return True
                k = 0
                while k < vl and LOWER[b[p + nl + 1 + k]] == <uint8_t>val[k]:
                    k += 1
                if k == vl:
                    return True
        p = q + 1
    return False

cdef inline int64_t now_ms() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <int64_t>ts.tv_sec * 1000 + ts.tv_nsec // 1000000

# Dialogs this proxy record-routed and saw confirmed (a 2xx to an INVITE
# went upstream) and not yet ended (BYE): the calls it carries.  Keyed by
# the Call-ID's hash; open addressing with backward-shift deletion; every
# entry expires after the longest call allowed, so a lost BYE cannot leave
# a call counted forever.

ctypedef struct dlg_t:
    uint64_t key            # 0: empty
    int64_t expires
    int32_t val             # what the table's user keeps with the key

ctypedef struct dlg_table_t:
    dlg_t* e
    uint32_t mask
    int64_t n, cap
    uint32_t cursor         # the sweep's position

cdef int dlg_init(dlg_table_t* d, int64_t cap) noexcept nogil:
    cdef uint32_t size = 16
    while size < cap * 2:
        size <<= 1
    d.e = <dlg_t*>calloc(size, sizeof(dlg_t))
    d.mask = size - 1
    d.n = 0
    d.cap = cap
    d.cursor = 0
    return -1 if d.e == NULL else 0

cdef int dlg_put(dlg_table_t* d, uint64_t key, int64_t expires, int32_t val=0) noexcept nogil:
    """1 when added, 0 when it was there (refreshed), -1 when full."""
    cdef uint32_t i
    if key == 0:
        key = 1
    i = <uint32_t>(key & d.mask)
    while d.e[i].key != 0:
        if d.e[i].key == key:
            d.e[i].expires = expires
            d.e[i].val = val
            return 0
        i = (i + 1) & d.mask
    if d.n >= d.cap:
        return -1
    d.e[i].key = key
    d.e[i].expires = expires
    d.e[i].val = val
    d.n += 1
    return 1

cdef int64_t dlg_slot(dlg_table_t* d, uint64_t key) noexcept nogil:
    """The slot of key's entry, or -1."""
    cdef uint32_t i
    if d.e == NULL:
        return -1
    if key == 0:
        key = 1
    i = <uint32_t>(key & d.mask)
    while d.e[i].key != 0:
        if d.e[i].key == key:
            return i
        i = (i + 1) & d.mask
    return -1

cdef int64_t dlg_find(dlg_table_t* d, uint64_t key, int64_t now) noexcept nogil:
    """The slot of an entry there and not expired (the sweep may not have
    reached it yet), or -1."""
    cdef int64_t i = dlg_slot(d, key)
    return i if i >= 0 and d.e[i].expires > now else -1

cdef void dlg_del_at(dlg_table_t* d, uint32_t i) noexcept nogil:
    cdef uint32_t j = i, home
    d.e[i].key = 0
    d.n -= 1
    while True:
        j = (j + 1) & d.mask
        if d.e[j].key == 0:
            return
        home = <uint32_t>(d.e[j].key & d.mask)
        # move e[j] back into the hole unless its home lies in (i, j]
        if (j > i and (home <= i or home > j)) or (j < i and (home <= i and home > j)):
            d.e[i] = d.e[j]
            d.e[j].key = 0
            i = j

cdef int dlg_del(dlg_table_t* d, uint64_t key) noexcept nogil:
    """1 when the dialog was there."""
    cdef int64_t i = dlg_slot(d, key)
    if i < 0:
        return 0
    dlg_del_at(d, <uint32_t>i)
    return 1

cdef int dlg_touch(dlg_table_t* d, uint64_t key, int64_t expires) noexcept nogil:
    """Set the expiry of a dialog that is there (never adds one); 1 when it was."""
    cdef int64_t i = dlg_slot(d, key)
    if i < 0:
        return 0
    d.e[i].expires = expires
    return 1

cdef int64_t dlg_sweep(dlg_table_t* d, int64_t now, uint32_t budget) noexcept nogil:
    """Drop expired dialogs among the next `budget` slots; how many."""
    cdef int64_t dropped = 0
    cdef uint32_t k
    for k in range(budget):
        if d.e[d.cursor].key != 0 and d.e[d.cursor].expires <= now:
            dlg_del_at(d, d.cursor)
            dropped += 1
            continue            # a shifted entry may now sit here
        d.cursor = (d.cursor + 1) & d.mask
    return dropped

include "deleg.pxi"

DEFER = -1                  # an on_invite decision: resume(txn, ...) comes later

cdef enum:
    MAX_DEFERRED = 4096     # INVITEs waiting for the control plane at once

# How _prepare routed a request.
cdef enum:
    RT_DST = 0          # to the address it filled in (Route or Request-URI)
    RT_STATIC = 1       # to the static next hop(s)
    RT_LOCAL = 2        # the Request-URI names this proxy: registrar / location

cdef int H_PROXY_REQUIRE = header_id(<const uint8_t*>b"proxy-require", 13)

cdef enum:
    NOT_FOUND = -2      # _local: no registered contact
    MAX_HOPS = 16       # static next hops (--route)
    SF_BRANCH_LEN = 36  # z9hG4bK + sf + 8 hex boot + 16 hex cell + . + 2 hex

# Our stateful branch: z9hG4bK + "sf" + 8 hex digits drawn at start-up +
# the cell id in hex + "." + the branch index in hex.  A response's branch
# names its cell and client branch directly (no look-up); the cell id's
# generation makes a stale branch miss (§17.1.3), and the start-up digits
# keep branches unique across restarts on the same address (§8.1.1.7).

cdef int parse_sf_branch(const uint8_t* p, Py_ssize_t n, const char* boot, int64_t* txn,
                         int* b) noexcept nogil:
    cdef uint64_t v = 0
    cdef int i, d, bb = 0
    if n != SF_BRANCH_LEN or memcmp(p, b"z9hG4bKsf", 9) != 0 or p[33] != 46 \
            or memcmp(p + 9, boot, 8) != 0:
        return -1
    for i in range(17, 33):
        d = hexval(p[i])
        if d < 0:
            return -1
        v = (v << 4) | <uint64_t>d
    for i in range(34, 36):
        d = hexval(p[i])
        if d < 0:
            return -1
        bb = bb * 16 + d
    txn[0] = <int64_t>v
    b[0] = bb
    return 0


# ---------------------------------------------------------------------------
# The loop.

@cython.final
cdef class UdpProxy:
    """UDP proxy on one bound, non-blocking socket (plus, with workers, a
    private socket of this worker's own that forwarded requests leave from,
    so their responses come back to the worker holding the transaction).

    Requests: the top Via gets received/rport (RFC 3581), a Route naming
    this proxy is popped, Max-Forwards is decremented (483 at zero), a Via
    is pushed, a Record-Route is added on request (dialog-creating
    methods), and the request goes to the next Route, else the static next
    hop(s), else (Request-URI naming this proxy) the location service, else
    the Request-URI's IP literal.  Malformed requests are answered 400 with
    the reason; malformed responses are dropped.

    Stateless (§16.11): the Via branch is derived from the request's own, so
    retransmissions and the CANCEL get the same one; responses go to the
    next Via.  Stateful (§16, §17): every request other than an ACK for a
    2xx gets a server transaction (txn.pxi) that answers INVITE with 100
    Trying, absorbs retransmissions, forks to the targets, retransmits on
    the client side, sends CANCEL and hop-by-hop ACKs, runs Timer C and
    picks the best response (§16.7).  Python is entered only for REGISTER
    and location look-ups (the control plane's callbacks).
    """
    cdef int fd, sfd
    cdef Message m, m2
    cdef char* rxbuf
    cdef char* txbuf
    cdef mmsghdr rx[BATCH]
    cdef iovec rxv[BATCH]
    cdef sockaddr_storage rxa[BATCH]
    cdef mmsghdr tx[BATCH]
    cdef iovec txv[BATCH]
    cdef sockaddr_storage txa[BATCH]
    cdef int txfd[BATCH]
    cdef int ntx
    cdef char host[ADDR_TEXT]
    cdef int host_len
    cdef int port, sport
    cdef bint record_route, stateful, fork, draining
    cdef sockaddr_storage hops[MAX_HOPS]
    cdef int nhops, rr
    cdef fedit_t ed
    cdef lump_t saved[FE_LUMPS]
    cdef tx_table_t t
    cdef cstore_t* cs
    cdef uint64_t tag_salt
    cdef char boot[8]
    cdef object on_register, on_lookup, on_options, on_invite
    cdef PeerMirror pm          # the compiled delegation decision (set_delegation)
    cdef int pm_slot
    # INVITEs relayed to a delegate before any transaction (_relay_new), by
    # the hash of their branch and sent-by: val = the peer's index in pm * 2
    # + 1 when relayed without our Via; for their retransmissions, CANCEL
    # and the ACK of a non-2xx
    cdef dlg_table_t st
    cdef int pre_k              # _relay_new's decision, when it did not relay, for _delegate
    cdef Message m3
    cdef dlg_table_t dl
    cdef int64_t max_call_ms, defer_ms
    cdef int64_t deferred_txn[MAX_DEFERRED]
    cdef int64_t deferred_until[MAX_DEFERRED]
    cdef int ndeferred
    cdef int64_t lb_txn[MAX_DEFERRED]
    cdef int nlb
    cdef bint any_direct
    cdef bint in_tcp, out_tcp, want_rr
    cdef int tcp_lfd, tcp_port, max_conns, nconns, conn_hw
    cdef conn_t* conns
    cdef int32_t* conn_of_fd
    cdef int64_t idle_ms, last_sweep, last_timer
    cdef uint8_t hop_tcp[MAX_HOPS]
    cdef object watch
    cdef readonly uint64_t tcp_accepted, tcp_connected, tcp_closed, tcp_errors
    cdef readonly int64_t pending_count, pending_invites
    cdef readonly uint64_t delegated, relayed_direct, relayed_stateless
    cdef readonly uint64_t calls_ended, calls_expired
    cdef int lb_mode, lb_first, retry_after
    cdef int64_t probe_ms
    cdef uint8_t hop_up[MAX_HOPS]
    cdef int hop_fail[MAX_HOPS]
    cdef readonly uint64_t probes_sent, redirects, lb_relayed, lb_no_winner, probes_answered
    cdef uint64_t hop_wins[MAX_HOPS]
    cdef readonly uint64_t received, sent, forwarded_requests, forwarded_responses
    cdef readonly uint64_t replied, dropped, malformed, send_errors
    cdef readonly uint64_t resent, acks_absorbed, local_replies, timeouts, cancels_sent, acks_sent
    # CANCELs due while a receive batch is handled wait for its end: a
    # branch whose final answer came later in the same batch needs none
    cdef int64_t dc_txn[BATCH * MAX_HOPS]
    cdef int dc_branch[BATCH * MAX_HOPS]
    cdef int ndc
    cdef bint in_batch
    cdef readonly uint64_t cancels_spared
    cdef readonly uint64_t request_retransmissions, rejected, lookups

    def __cinit__(self):
        self.rxbuf = <char*>malloc(BATCH * SLOT)
        self.txbuf = <char*>malloc(BATCH * SLOT)
        self.tcp_lfd = -1
        self.conns = NULL
        self.conn_of_fd = NULL
        self.cs = NULL
        self.t.cells = NULL
        if self.rxbuf == NULL or self.txbuf == NULL:
            raise MemoryError()

    def __dealloc__(self):
        cdef int i
        free(self.rxbuf)
        free(self.txbuf)
        free(self.dl.e)
        free(self.st.e)
        if self.conns != NULL:
            for i in range(self.max_conns):
                if self.conns[i].state != CONN_FREE:
                    close(self.conns[i].fd)
                free(self.conns[i].rx.p)
                free(self.conns[i].tx.p)
            free(self.conns)
        free(self.conn_of_fd)
        if self.cs != NULL:
            for i in range(self.t.cap):
                cstore_free(&self.cs[i])
            free(self.cs)
        tx_table_free(&self.t)

    def __init__(self, int fd, str host, int port, next_hops=(), bint record_route=False,
                 *, bint stateful=False, bint fork=False, int send_fd=-1, int send_port=0,
                 int max_transactions=65536, int t1=500, int t2=4000, int t4=5000,
                 int timer_c=180000, int timer_d=32000, on_register=None, on_lookup=None,
                 on_options=None, on_invite=None, int max_call_duration=7200,
                 int defer_timeout=2000, str balance=None, str first="final",
                 int probe_timeout=2000, int retry_after=5, int wait_timer=0):
        """fd: a bound non-blocking UDP socket; host/port: the address this
        proxy puts in its Via and Record-Route and recognises in Route;
        next_hops: (ip, port) pairs of the static next hops (round robin,
        or all at once with fork=True when stateful); send_fd/send_port:
        this worker's own socket for forwarded requests (default: fd).
        Stateful: the transaction table's size and timers (ms; wait_timer:
        how long a finished transaction lingers to absorb retransmissions,
        Timers L/J/M, 0 for RFC 3261's 64*T1); the hooks
        (see set_hooks); max_call_duration (s): how long a confirmed
        dialog counts as a call without BYE; defer_timeout (ms): how long a
        deferred INVITE waits for resume() before it is answered 500.

        balance ("redirect" or "proxy"): be the first-responder balancer
        over next_hops (the pool): a new INVITE goes as a probe to every
        member up, the first to answer wins (first="final": the first 2xx/3xx;
        "provisional": the first 1xx), the rest are cancelled, and the
        caller gets a 302 naming the winner (redirect) or the call is
        relayed through it (proxy); an OPTIONS to the balancer itself is
        answered 200 naming the winner; no winner within probe_timeout ms:
        503 with Retry-After (retry_after s)."""
        cdef bytes h = host.encode()
        cdef int i
        if len(h) >= ADDR_TEXT - 2:
            raise ValueError("host too long")
        self.fd = fd
        self.sfd = send_fd if send_fd >= 0 else fd
        if b":" in h and not h.startswith(b"["):
            h = b"[" + h + b"]"      # an IPv6 reference in Via/Record-Route
        memcpy(self.host, <char*>h, len(h))
        self.host_len = len(h)
        self.port = port
        self.sport = send_port if send_fd >= 0 else port
        self.record_route = record_route
        self.stateful = stateful
        self.fork = fork
        if isinstance(next_hops, tuple) and len(next_hops) == 2 and isinstance(next_hops[0], str):
            next_hops = [next_hops]
        if next_hops is None:
            next_hops = ()
        if len(next_hops) > MAX_HOPS:
            raise ValueError(f"at most {MAX_HOPS} next hops")
        self.nhops = 0
        for hop in next_hops:
            ip, hport = hop[0], hop[1]
            nh = ip.encode()
            if addr_from_host(<const uint8_t*><char*>nh, len(nh), hport,
                              &self.hops[self.nhops]) < 0:
                raise ValueError(f"next hop must be an IP address: {ip!r}")
            self.hop_tcp[self.nhops] = len(hop) > 2 and hop[2] == "tcp"
            self.nhops += 1
        self.set_hooks(on_register=on_register, on_lookup=on_lookup, on_options=on_options,
                       on_invite=on_invite)
        self.max_call_ms = <int64_t>max_call_duration * 1000
        self.defer_ms = defer_timeout
        if balance not in (None, "redirect", "proxy"):
            raise ValueError("balance must be None, 'redirect' or 'proxy'")
        if first not in ("final", "provisional"):
            raise ValueError("first must be 'final' or 'provisional'")
        if balance is not None and (not stateful or self.nhops == 0):
            raise ValueError("a balancer needs stateful=True and a pool (next_hops)")
        if balance == "proxy" and self.nhops >= TX_MAX_BRANCHES:
            raise ValueError(f"a proxy-mode pool has at most {TX_MAX_BRANCHES - 1} members")
        if probe_timeout <= 0 or retry_after < 0:
            raise ValueError("probe_timeout must be positive, retry_after not negative")
        self.lb_mode = 0 if balance is None else (1 if balance == "redirect" else 2)
        self.lb_first = first == "provisional"
        self.probe_ms = probe_timeout
        self.retry_after = retry_after
        for i in range(self.nhops):
            self.hop_up[i] = 1
        self.tag_salt = _branch_salt
        boot = _os.urandom(4).hex().encode()
        memcpy(self.boot, <char*>boot, 8)
        if stateful:
            if self.fork and self.nhops > TX_MAX_BRANCHES:
                raise ValueError(f"at most {TX_MAX_BRANCHES} branches per request")
            if max_transactions <= 0 or max_transactions > (1 << 24):
                raise ValueError("max_transactions must be in 1..2**24")
            if t1 <= 0 or t2 < t1 or t4 <= 0 or timer_c <= 0 or timer_d < 0:
                raise ValueError("timer values must be positive (and T2 >= T1)")
            if wait_timer < 0:
                raise ValueError("wait_timer must not be negative")
            if tx_table_init(&self.t, max_transactions, t1, t2, t4, timer_d, timer_c, 10,
                             0xffffffffffffffffULL, wait_timer) < 0:
                raise MemoryError()
            self.t.wtick = now_ms() // 10
            self.cs = <cstore_t*>calloc(max_transactions, sizeof(cstore_t))
            if self.cs == NULL or dlg_init(&self.dl, max_transactions) < 0:
                raise MemoryError()
        self.m = Message.__new__(Message)
        self.m.hdrs = self.m.inline_hdrs
        self.m2 = Message.__new__(Message)
        self.m2.hdrs = self.m2.inline_hdrs
        self.m3 = Message.__new__(Message)
        self.m3.hdrs = self.m3.inline_hdrs
        for i in range(BATCH):
            self.rxv[i].iov_base = self.rxbuf + i * SLOT
            self.rxv[i].iov_len = SLOT
            memset(&self.rx[i], 0, sizeof(mmsghdr))
            self.rx[i].msg_hdr.msg_iov = &self.rxv[i]
            self.rx[i].msg_hdr.msg_iovlen = 1
            self.rx[i].msg_hdr.msg_name = &self.rxa[i]
            self.txv[i].iov_base = self.txbuf + i * SLOT
            memset(&self.tx[i], 0, sizeof(mmsghdr))
            self.tx[i].msg_hdr.msg_iov = &self.txv[i]
            self.tx[i].msg_hdr.msg_iovlen = 1
            self.tx[i].msg_hdr.msg_name = &self.txa[i]

    def on_readable(self):
        """Drain the listening socket (called by the event loop's add_reader)."""
        self._drain(self.fd)

    def add_tcp_listener(self, int fd, int port, watch, *, int max_connections=4096,
                         int idle_timeout=600):
        """Serve TCP too: fd is a bound, listening, non-blocking TCP socket
        on this proxy's host (register on_tcp_accept for it);
        watch(fd, mode) is called whenever a connection's descriptor must
        be watched for reading (mode 1), reading and writing (3), or no
        more (0): it registers on_conn_readable(fd) / on_conn_writable(fd).
        Connections idle for idle_timeout s are closed."""
        if max_connections <= 0 or max_connections > FD_MAP:
            raise ValueError(f"max_connections must be in 1..{FD_MAP}")
        self.conns = <conn_t*>calloc(max_connections, sizeof(conn_t))
        self.conn_of_fd = <int32_t*>malloc(FD_MAP * sizeof(int32_t))
        if self.conns == NULL or self.conn_of_fd == NULL:
            raise MemoryError()
        memset(self.conn_of_fd, 0xff, FD_MAP * sizeof(int32_t))
        self.max_conns = max_connections
        self.tcp_lfd = fd
        self.tcp_port = port
        self.watch = watch
        self.idle_ms = <int64_t>idle_timeout * 1000

    def on_tcp_accept(self):
        """Accept the pending connections (the listener is readable)."""
        cdef sockaddr_storage a
        cdef socklen_t al
        cdef int fd, ci, one = 1
        while True:
            al = sizeof(sockaddr_storage)
            fd = accept4(self.tcp_lfd, <sockaddr*>&a, &al, SOCK_NONBLOCK | SOCK_CLOEXEC)
            if fd < 0:
                return
            ci = self._conn_new(fd, &a, CONN_OPEN)
            if ci < 0:
                close(fd)
                self.tcp_errors += 1
                continue
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(int))
            self.tcp_accepted += 1
            self._watch(ci, 1)

    def on_conn_readable(self, int fd):
        """Read what a connection has, frame it and handle every message."""
        cdef int ci = self._conn_index(fd)
        if ci >= 0:
            self._conn_read(ci)
            self._flush()

    def on_conn_writable(self, int fd):
        """A connection can take more bytes (or finished connecting)."""
        cdef int ci = self._conn_index(fd)
        cdef int err = 0
        cdef socklen_t el = sizeof(int)
        cdef conn_t* k
        if ci < 0:
            return
        k = &self.conns[ci]
        if k.state == CONN_CONNECTING:
            if getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0 or err != 0:
                self.tcp_errors += 1
                self._conn_close(ci)
                return
            k.state = CONN_OPEN
            self.tcp_connected += 1
        self._conn_flush(ci)

    def tcp_stats(self):
        """Open TCP connections and their counters."""
        return {"connections": self.nconns, "accepted": self.tcp_accepted,
                "connected": self.tcp_connected, "closed": self.tcp_closed,
                "errors": self.tcp_errors}

    def on_send_readable(self):
        """Drain this worker's own socket (responses to forwarded requests)."""
        self._drain(self.sfd)

    def set_hooks(self, **hooks):
        """The control plane's callbacks (each optional, None to clear):

        on_register(data, (ip, port)) -> response bytes, for a REGISTER
        whose Request-URI names this proxy; on_lookup(request_uri) ->
        [(uri, ip, port), ...] for other requests naming it;
        on_options(data, (ip, port)) -> response bytes, for an OPTIONS
        naming the proxy itself (no user part; default: 200 with Allow);
        on_invite(data, (ip, port), txn) -> decision, once per new
        out-of-dialog INVITE, after the 100 Trying: None (route as usual),
        (ip, port) (forward to that proxy, statefully), ("direct", ip, port)
        (relay without our Via: its answers go to the caller directly), a
        status int (answered with it; 503 gets Retry-After), or DEFER (the
        decision comes later through resume()).  Any decision may be a pair
        (decision, header_lines: bytes) to add header lines to the copy
        that is sent on.  Only the hooks named are changed."""
        for name, hook in hooks.items():
            if hook is not None and not callable(hook):
                raise TypeError(f"{name} must be callable or None")
            if name == "on_register":
                self.on_register = hook
            elif name == "on_lookup":
                self.on_lookup = hook
            elif name == "on_options":
                self.on_options = hook
            elif name == "on_invite":
                self.on_invite = hook
            else:
                raise TypeError(f"unknown hook {name!r}")

    def set_delegation(self, mirror, int slot=0):
        """Decide new out-of-dialog INVITEs here, with the compiled copy of
        the peer table (a PeerMirror, or None to stop); slot: this
        listener's place in it (its counters are part of the process's
        load).  on_invite is then called only when the mirror cannot decide
        (--share poll over the threshold)."""
        if mirror is not None and not isinstance(mirror, PeerMirror):
            raise TypeError("mirror must be a PeerMirror or None")
        if not 0 <= slot < DG_MAX_PARTS:
            raise ValueError("no such listener slot")
        if mirror is not None and self.stateful and self.st.e == NULL \
                and dlg_init(&self.st, self.t.cap) < 0:
            raise MemoryError()
        if mirror is not self.pm and self.st.e != NULL:
            # the relays held name peers of the mirror replaced
            memset(self.st.e, 0, (self.st.mask + 1) * sizeof(dlg_t))
            self.st.n = 0
        self.pm = mirror
        self.pre_k = -1
        self.pm_slot = slot
        if mirror is not None and slot >= self.pm.nparts:
            self.pm.nparts = slot + 1

    def set_pool(self, next_hops):
        """Replace the pool (or static next hops) at run time: (ip, port[,
        transport]) entries; every member starts up.  Transactions in flight
        keep the addresses they were sent to."""
        cdef sockaddr_storage tmp[MAX_HOPS]
        cdef uint8_t tcp[MAX_HOPS]
        cdef int n = 0, i
        if len(next_hops) > MAX_HOPS or (self.lb_mode == 2 and len(next_hops) >= TX_MAX_BRANCHES):
            raise ValueError("too many pool members")
        if self.lb_mode and len(next_hops) == 0:
            raise ValueError("a balancer needs at least one pool member")
        for hop in next_hops:
            nh = hop[0].encode()
            if addr_from_host(<const uint8_t*><char*>nh, len(nh), hop[1], &tmp[n]) < 0:
                raise ValueError(f"pool member must be an IP address: {hop[0]!r}")
            tcp[n] = len(hop) > 2 and hop[2] == "tcp"
            n += 1
        for i in range(n):
            memcpy(&self.hops[i], &tmp[i], sizeof(sockaddr_storage))
            self.hop_tcp[i] = tcp[i]
            self.hop_up[i] = 1
            self.hop_fail[i] = 0
            self.hop_wins[i] = 0
        self.nhops = n

    def set_member_up(self, int i, bint up):
        """Take pool member i out (up=False) or put it back (keep-alive)."""
        if not 0 <= i < self.nhops:
            raise IndexError("no such pool member")
        self.hop_up[i] = up
        self.hop_fail[i] = 0

    def pool(self):
        """The pool: [{"addr": "ip:port", "up": bool, "wins": n}, ...]."""
        cdef char text[ADDR_TEXT]
        cdef int port, i
        out = []
        for i in range(self.nhops):
            addr_text(&self.hops[i], text, &port)
            out.append({"addr": f"{text.decode()}:{port}", "up": bool(self.hop_up[i]),
                        "wins": self.hop_wins[i], "failures": self.hop_fail[i]})
        return out

    def resume(self, int64_t txn, decision):
        """The decision for an INVITE that on_invite deferred; False when
        the transaction is gone (cancelled, timed out) or was not deferred."""
        cdef int32_t ci
        cdef cstore_t* c
        cdef perr_t err
        if not self.stateful:
            return False
        ci = tx_cell_of(&self.t, txn)
        if ci < 0 or not self.cs[ci].deferred:
            return False
        c = &self.cs[ci]
        c.deferred = 0
        self.m3.b = <const uint8_t*>c.req.p
        self.m3.buflen = c.req.len
        self.m3._reset()
        if self.m3._parse(&err, False, SLOT, DEFAULT_MAX_HEADERS_C, DEFAULT_MAX_LINE_C) < 0 \
                or self.m3._scan_top_via(&err) < 0:
            tx_reply(&self.t, txn, 500, now_ms())
        elif tx_server_open(&self.t.cells[ci]):
            self._decided(self.m3, txn, c, &c.src, decision)
        self._run(None, NULL, -1)
        self._flush()
        return True

    def on_timer(self):
        """Fire the transaction timers that are due, answer deferred INVITEs
        whose decision is overdue, and expire dialogs; returns how long (s)
        the caller may wait before the next call.  That is 10 ms (the
        wheel's tick) while a deferral or fan-out is in flight or a
        retransmission or Timer C is due within it; else until the next
        retransmission or Timer C, or a little after (min(T1, 90 ms)) the
        next timer that only ends or gives up on a transaction; at most
        min(100 ms, T1, Timer C), so that a timer armed between two calls
        is still seen before it is due (so too the deferral and fan-out
        timeouts)."""
        cdef int64_t now, horizon, wake, slack, budget
        cdef int i = 0
        cdef int32_t k
        cdef int64_t cap = 100
        if self.stateful:
            now = now_ms()
            tx_advance(&self.t, now)
            while i < self.ndeferred:
                if self.deferred_until[i] <= now:
                    self._defer_expired(self.deferred_txn[i])
                    self.ndeferred -= 1
                    self.deferred_txn[i] = self.deferred_txn[self.ndeferred]
                    self.deferred_until[i] = self.deferred_until[self.ndeferred]
                else:
                    i += 1
            i = 0
            while i < self.nlb:
                k = tx_cell_of(&self.t, self.lb_txn[i])
                if k < 0 or self.cs[k].winner >= 0 or not self.cs[k].lb:
                    self.nlb -= 1
                    self.lb_txn[i] = self.lb_txn[self.nlb]
                elif self.cs[k].lb_deadline <= now:
                    self._no_winner(self.lb_txn[i], &self.cs[k])
                    self.nlb -= 1
                    self.lb_txn[i] = self.lb_txn[self.nlb]
                else:
                    i += 1
            # 512 dialog slots per 10 ms elapsed: the sweep keeps its pace
            # however long the wait between calls
            budget = (now - self.last_timer) // 10 if self.last_timer > 0 else 1
            budget = 512 * (budget if 1 <= budget <= 64 else (1 if budget < 1 else 64))
            self.last_timer = now
            if self.dl.n > 0:
                self.calls_expired += dlg_sweep(&self.dl, now, <uint32_t>budget)
            if self.st.n > 0:
                dlg_sweep(&self.st, now, <uint32_t>budget)
            self._run(None, NULL, -1)
            self._flush()
            if self.t.t1 < cap:
                cap = self.t.t1
            if self.t.tc < cap:
                cap = self.t.tc
            if self.defer_ms < cap:         # a deferral or fan-out that
                cap = self.defer_ms         # starts while we wait
            if self.lb_mode != 0 and self.probe_ms < cap:
                cap = self.probe_ms
            if self.ndeferred > 0 or self.nlb > 0:
                cap = 10
            slack = self.t.t1 if self.t.t1 < 90 else 90
            horizon = now + cap
            wake = tx_next_wake(&self.t, horizon, slack) - now
            if wake < 10:
                wake = 10
            if wake > cap:
                wake = cap
        else:
            wake = cap
        if self.conns != NULL and now_ms() // 1000 != self.last_sweep:
            self.last_sweep = now_ms() // 1000
            self._conn_sweep()
        return wake / 1000.0

    cdef void _defer_expired(self, int64_t txn) noexcept:
        cdef int32_t ci = tx_cell_of(&self.t, txn)
        if ci >= 0 and self.cs[ci].deferred:
            self.cs[ci].deferred = 0
            fail(&self.cs[ci].err, 500, E_OK, -1)
            tx_reply(&self.t, txn, 500, now_ms())

    def drain(self):
        """Stop taking new calls (graceful stop): new out-of-dialog
        requests are answered 503 with Retry-After; in-dialog requests and
        the transactions in flight go on."""
        self.draining = True

    def pending(self):
        """Server transactions still waiting for a final response."""
        return self.pending_count

    @property
    def active_calls(self):
        """INVITEs without a final answer yet, plus the confirmed dialogs
        this proxy record-routed and has not seen end."""
        return self.pending_invites + self.dl.n if self.stateful else 0

    @property
    def idle(self):
        """No transaction, deferral or fan-out in flight (the timer may
        then tick slowly)."""
        return not self.stateful or (
            self.t.live == 0 and self.ndeferred == 0 and self.nlb == 0)

    @property
    def live_transactions(self):
        """Transactions (cells) in the table now."""
        return self.t.live if self.stateful else 0

    def stats(self):
        """Counters since start, as a dict."""
        d = {"received": self.received, "sent": self.sent,
             "forwarded_requests": self.forwarded_requests,
             "forwarded_responses": self.forwarded_responses,
             "replied": self.replied, "dropped": self.dropped,
             "malformed": self.malformed, "send_errors": self.send_errors}
        if self.stateful:
            d.update({"transactions": self.t.created, "live_transactions": self.t.live,
                      "live_branches": self.t.live_branches,
                      "armed_timers": self.t.armed,
                      "high_water": self.t.high_water, "rejected": self.rejected,
                      "resent": self.resent, "acks_absorbed": self.acks_absorbed,
                      "request_retransmissions": self.request_retransmissions,
                      "local_replies": self.local_replies, "timeouts": self.timeouts,
                      "cancels_sent": self.cancels_sent,
                      "cancels_spared": self.cancels_spared, "acks_sent": self.acks_sent,
                      "lookups": self.lookups, "lost_actions": self.t.acts_overflow,
                      "pending": self.pending_count, "pending_invites": self.pending_invites,
                      "dialogs": self.dl.n, "active_calls": self.pending_invites + self.dl.n,
                      "calls_ended": self.calls_ended, "calls_expired": self.calls_expired,
                      "delegated": self.delegated, "relayed_direct": self.relayed_direct,
                      "relayed_stateless": self.relayed_stateless,
                      "relays_held": self.st.n,
                      "probes_sent": self.probes_sent, "probes_answered": self.probes_answered,
                      "redirects": self.redirects, "lb_relayed": self.lb_relayed,
                      "lb_no_winner": self.lb_no_winner})
        return d

    # -- TCP connections ----------------------------------------------------

    cdef int _conn_index(self, int fd) noexcept:
        if self.conn_of_fd == NULL or fd < 0 or fd >= FD_MAP:
            return -1
        return self.conn_of_fd[fd]

    cdef int _conn_new(self, int fd, const sockaddr_storage* peer, int state) noexcept:
        cdef int i
        cdef conn_t* k
        if fd >= FD_MAP or self.nconns >= self.max_conns:
            return -1
        # slots above the high-water mark are free: scans stop there
        for i in range(self.conn_hw + 1 if self.conn_hw < self.max_conns else self.max_conns):
            if self.conns[i].state == CONN_FREE:
                if i == self.conn_hw:
                    self.conn_hw += 1
                k = &self.conns[i]
                k.fd = fd
                k.state = state
                memcpy(&k.peer, peer, sizeof(sockaddr_storage))
                k.rx.len = 0
                k.tx.len = 0
                k.last = now_ms()
                k.watching = 0
                k.dead = 0
                self.conn_of_fd[fd] = i
                self.nconns += 1
                return i
        return -1

    cdef void _watch(self, int ci, int mode) noexcept:
        cdef conn_t* k = &self.conns[ci]
        if k.watching == mode:
            return
        k.watching = <uint8_t>mode
        try:
            self.watch(k.fd, mode)
        except BaseException:
            self.tcp_errors += 1

    cdef void _conn_close(self, int ci) noexcept:
        cdef conn_t* k = &self.conns[ci]
        if k.state == CONN_FREE:
            return
        self._watch(ci, 0)
        self.conn_of_fd[k.fd] = -1
        close(k.fd)
        k.state = CONN_FREE
        k.rx.len = 0
        k.tx.len = 0
        self.nconns -= 1
        self.tcp_closed += 1

    cdef void _conn_flush(self, int ci) noexcept:
        """Write what the connection has waiting; watch for writability
        while something is left."""
        cdef conn_t* k = &self.conns[ci]
        cdef ssize_t w
        cdef int32_t done = 0
        while done < k.tx.len:
            w = write(k.fd, k.tx.p + done, k.tx.len - done)
            if w < 0:
                if errno == EAGAIN or errno == EWOULDBLOCK:
                    break
                if errno == EINTR:
                    continue
                self.tcp_errors += 1
                self._conn_close(ci)
                return
            done += <int32_t>w
        if done > 0:
            memmove(k.tx.p, k.tx.p + done, k.tx.len - done)
            k.tx.len -= done
        self._watch(ci, 3 if k.tx.len > 0 else 1)

    cdef void _conn_write(self, int ci, const char* p, Py_ssize_t n) noexcept:
        """One message onto a connection: written at once when nothing is
        waiting, else queued behind."""
        cdef conn_t* k = &self.conns[ci]
        cdef ssize_t w = 0
        k.last = now_ms()
        if k.state == CONN_OPEN and k.tx.len == 0:
            w = write(k.fd, p, n)
            if w == n:
                self.sent += 1
                return
            if w < 0:
                if errno != EAGAIN and errno != EWOULDBLOCK and errno != EINTR:
                    self.tcp_errors += 1
                    self._conn_close(ci)
                    self.send_errors += 1
                    return
                w = 0
        if k.tx.len + n - w > CONN_TX_MAX or buf_append(&k.tx, p + w, n - w) < 0:
            self.tcp_errors += 1
            self._conn_close(ci)           # too slow a peer
            self.send_errors += 1
            return
        self.sent += 1
        self._watch(ci, 3)

    cdef void _tcp_send(self, const sockaddr_storage* dst, const char* p,
                        Py_ssize_t n) noexcept:
        """Send over the open connection to dst, or a new one (RFC 3261
        §18.1.1 reuse, §18.2.2 for answers whose connection is gone)."""
        cdef int i, fd, ci, r, one = 1
        if self.conns == NULL:
            self.send_errors += 1
            return
        for i in range(self.conn_hw):
            if self.conns[i].state != CONN_FREE and not self.conns[i].dead \
                    and same_addr(&self.conns[i].peer, dst):
                self._conn_write(i, p, n)
                return
        fd = socket(dst.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)
        if fd < 0:
            self.send_errors += 1
            return
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(int))
        r = connect(fd, <const sockaddr*>dst, addr_len(dst))
        if r < 0 and errno != EINPROGRESS:
            close(fd)
            self.tcp_errors += 1
            self.send_errors += 1
            return
        ci = self._conn_new(fd, dst, CONN_OPEN if r == 0 else CONN_CONNECTING)
        if ci < 0:
            close(fd)
            self.send_errors += 1
            return
        if r == 0:
            self.tcp_connected += 1
        self._conn_write(ci, p, n)
        self._watch(ci, 3)

    cdef void _conn_read(self, int ci) noexcept:
        """Read, frame by Content-Length (§18.3) and handle each message; a
        stream that cannot be framed is answered (when it can be) and closed."""
        cdef conn_t* k = &self.conns[ci]
        cdef ssize_t r
        cdef Py_ssize_t off = 0, unit
        cdef perr_t err
        cdef int fd = k.fd
        while True:
            if k.rx.cap - k.rx.len < 16384:
                if k.rx.cap >= CONN_RX_MAX \
                        or buf_grow(&k.rx, k.rx.cap * 2 if k.rx.cap > 0 else 32768) < 0:
                    break           # full: framing below answers 513 and closes
            r = read(fd, k.rx.p + k.rx.len, k.rx.cap - k.rx.len)
            if r > 0:
                k.rx.len += <int32_t>r
                continue
            if r == 0:
                k.dead = 1              # the peer closed: handle what is there, then close
            elif errno != EAGAIN and errno != EWOULDBLOCK and errno != EINTR:
                k.dead = 1
            break
        k.last = now_ms()
        self.in_tcp = True
        while off < k.rx.len:
            unit = frame_c(<const uint8_t*>k.rx.p + off, k.rx.len - off, SLOT, &err)
            if unit == 0:
                if k.rx.len - off >= SLOT:
                    unit = -1           # no end of headers within the limit
                    fail(&err, 513, E_TOO_LARGE, off)
                else:
                    break
            if unit < 0:
                self.malformed += 1
                self._stream_error(ci, k.rx.p + off, k.rx.len - off, &err)
                k.dead = 1
                off = k.rx.len
                break
            if (<uint8_t>k.rx.p[off] == 13 or <uint8_t>k.rx.p[off] == 10):
                if unit >= 4:
                    self._conn_write(ci, "\r\n", 2)    # RFC 5626 §3.5.1 pong
            else:
                self.received += 1
                self._handle(k.rx.p + off, unit, &k.peer, fd)
            off += unit
            if self.conns[ci].state == CONN_FREE:
                break
        self.in_tcp = False
        if self.conns[ci].state == CONN_FREE:
            return
        if off > 0:
            memmove(k.rx.p, k.rx.p + off, k.rx.len - off)
            k.rx.len -= <int32_t>off
        if k.dead:
            self._conn_close(ci)

    cdef void _stream_error(self, int ci, const char* p, Py_ssize_t n, perr_t* err) noexcept:
        """A request the stream could not frame gets its error answer when
        its headers can be read (before the connection closes)."""
        cdef Message m = self.m
        cdef perr_t e2
        m.b = <const uint8_t*>p
        m.buflen = n if n < SLOT else SLOT
        m._reset()
        if m._parse(&e2, True, SLOT, DEFAULT_MAX_HEADERS_C, DEFAULT_MAX_LINE_C) < 0 \
                and (m.looks_response or m.sl_method.len == 0):
            return
        if m.is_req or (not m.looks_response and m.sl_method.len > 0):
            self._reply(m, err.status, err, &self.conns[ci].peer, self.conns[ci].fd, 0)

    cdef void _conn_sweep(self) noexcept:
        """Close connections idle for longer than the idle timeout."""
        cdef int i
        cdef int64_t limit
        if self.conns == NULL or self.nconns == 0:
            return
        limit = now_ms() - self.idle_ms
        for i in range(self.conn_hw):
            if self.conns[i].state != CONN_FREE and self.conns[i].last < limit \
                    and self.conns[i].tx.len == 0:
                self._conn_close(i)

    # -- I/O -------------------------------------------------------------

    cdef void _drain(self, int fd) noexcept:
        cdef int n, i, rounds = 0
        while rounds < 64:          # bounded: let the event loop breathe
            rounds += 1
            for i in range(BATCH):
                self.rx[i].msg_hdr.msg_namelen = sizeof(sockaddr_storage)
                self.rx[i].msg_hdr.msg_flags = 0
            n = recvmmsg(fd, self.rx, BATCH, MSG_DONTWAIT, NULL)
            if n <= 0:
                break
            self.received += n
            self.in_batch = True
            for i in range(n):
                self._handle(self.rxbuf + i * SLOT, self.rx[i].msg_len, &self.rxa[i], fd)
            self.in_batch = False
            self._batch_cancels()
            self._flush()
            if n < BATCH:
                break

    cdef void _batch_cancels(self) noexcept:
        """Send the CANCELs the batch just handled made due, but only on
        branches still waiting for their final answer: one that came in the
        same batch (a loser's 302 right behind its 100) ended the branch,
        and a CANCEL would be a wasted message (and a wasted 200 back)."""
        cdef int k, b
        cdef int32_t ci
        cdef int st
        for k in range(self.ndc):
            ci = tx_cell_of(&self.t, self.dc_txn[k])
            b = self.dc_branch[k]
            if ci >= 0 and b < self.t.cells[ci].nbr:
                st = self.t.cells[ci].br[b].state
                if st == TXB_CALLING or st == TXB_PROCEEDING:
                    self._send_cancel_or_ack(&self.cs[ci], b, None)
                    self.cancels_sent += 1
                    continue
            self.cancels_spared += 1
        self.ndc = 0

    cdef void _flush(self) noexcept:
        cdef int done = 0, r, run
        while done < self.ntx:
            run = 1             # one sendmmsg per run of the same socket
            while done + run < self.ntx and self.txfd[done + run] == self.txfd[done]:
                run += 1
            r = sendmmsg(self.txfd[done], self.tx + done, run, MSG_DONTWAIT)
            if r <= 0:
                self.send_errors += run
                r = run
            else:
                self.sent += r
                if r < run:
                    self.send_errors += run - r
            done += run
        self.ntx = 0

    cdef char* _slot(self) noexcept:
        return self.txbuf + self.ntx * SLOT

    cdef void _queue(self, Py_ssize_t n, const sockaddr_storage* dst, int fd) noexcept:
        """Send the n bytes built in the current slot: on fd's TCP
        connection when fd is one, else queued for sendmmsg on fd."""
        cdef int ci = self._conn_index(fd)
        if ci >= 0:
            self._conn_write(ci, self._slot(), n)
            return
        memcpy(&self.txa[self.ntx], dst, sizeof(sockaddr_storage))
        self.tx[self.ntx].msg_hdr.msg_namelen = addr_len(dst)
        self.txv[self.ntx].iov_len = n
        self.txfd[self.ntx] = fd
        self.ntx += 1
        if self.ntx == BATCH:
            self._flush()

    cdef void _send(self, const char* p, Py_ssize_t n, const sockaddr_storage* dst,
                    int fd) noexcept:
        cdef int ci = self._conn_index(fd)
        if n <= 0 or n > SLOT:
            self.dropped += 1
            return
        if ci >= 0:
            self._conn_write(ci, p, n)
            return
        memcpy(self._slot(), p, n)
        self._queue(n, dst, fd)

    cdef void _send_up(self, cstore_t* c, const char* p, Py_ssize_t n) noexcept:
        """To upstream: on the connection the request came on, or (TCP,
        that connection gone) a new one to the same address (§18.2.2)."""
        if c.uptcp and self._conn_index(c.upfd) < 0:
            self._tcp_send(&c.up, p, n)
        else:
            self._send(p, n, &c.up, c.upfd)

    cdef void _send_down(self, bstore_t* b, const char* p, Py_ssize_t n) noexcept:
        """To a branch's next hop, over its transport."""
        if b.tcp:
            self._tcp_send(&b.dst, p, n)
        else:
            self._send(p, n, &b.dst, self.sfd)

    cdef void _handle(self, char* pkt, Py_ssize_t n, sockaddr_storage* src, int fd) noexcept:
        """One message (a datagram, or a unit framed off a TCP stream)."""
        cdef Message m = self.m
        cdef perr_t err
        # A lone CRLF (keep-alive) or runt: nothing to do.
        if n < 12:
            self.dropped += 1
            return
        m.b = <const uint8_t*>pkt
        m.buflen = n
        m._reset()
        if m._parse(&err, False, SLOT, DEFAULT_MAX_HEADERS_C, DEFAULT_MAX_LINE_C) < 0:
            self.malformed += 1
            if m.looks_response or m.sl_method.len == 0:
                self.dropped += 1
            else:
                self._reply(m, err.status, &err, src, fd, 0)
            return
        if m.is_req:
            self._request(m, src, fd)
        else:
            self._response(m, fd)

    # -- routing (both modes) -------------------------------------------------

    cdef bint _names_us(self, Message m, uri_t* u) noexcept:
        cdef int port = u.port if u.port > 0 else 5060
        return ((port == self.port or port == self.sport) and u.host.len == self.host_len
                and memcmp(m.b + u.host.off, self.host, self.host_len) == 0)

    cdef int _prepare(self, Message m, sockaddr_storage* src, sockaddr_storage* dst,
                      perr_t* err, bint rr) noexcept:
        """The edits every forwarded copy of request m gets (into self.ed):
        received/rport on the top Via, our Route popped, Max-Forwards minus
        one, our Record-Route; and where it goes: RT_DST with *dst filled,
        RT_STATIC, RT_LOCAL, or minus the SIP status to answer with (err
        filled).  The top Via is scanned already."""
        cdef fedit_t* e = &self.ed
        cdef hdr_t* h
        cdef Py_ssize_t x, at, vend
        cdef naddr_t route
        cdef char srctext[ADDR_TEXT]
        cdef int srcport, srclen, start, i, strict
        cdef bint routed = False
        e.n = 0
        e.an = 0
        srclen = addr_text(src, srctext, &srcport)
        x = m.top_via.text.off + m.top_via.text.len
        if m.top_via.rport.off >= 0 and m.top_via.rport.len == 0:
            start = e.an
            fe_put(e, "=", 1)
            fe_int(e, srcport)
            fe_lump(e, m.top_via.rport.off, m.top_via.rport.off, start)
        if m.top_via.received.off < 0 and not (
                m.top_via.host.len == srclen
                and memcmp(m.b + m.top_via.host.off, srctext, srclen) == 0):
            start = e.an
            fe_put(e, ";received=", 10)
            fe_put(e, srctext, srclen)
            fe_lump(e, x, x, start)
        # §16.4: a strict router before us put our Record-Route URI in the
        # Request-URI; the real one is the last Route value, which goes.
        strict = self._strict_route(m, err)
        if strict < 0:
            return -400
        # Route (§16.4, §16.6 step 6): pop the leading entries naming us
        # (two after a transport change, RFC 5658); the first other one is
        # the target.
        self.out_tcp = False
        if m.first[H_ROUTE] >= 0:
            for i in range(m.first[H_ROUTE], m.nhdr):
                h = &m.hdrs[i]
                if h.hid != H_ROUTE:
                    continue
                vend = h.value_off + h.value_len
                at = h.value_off
                while at < vend:
                    x = list_element_end(m.b, at, vend)
                    if x < 0 or scan_naddr(m.b, at, x, &route, err, H_ROUTE) < 0:
                        fail(err, 400, E_MALFORMED, h.value_off, H_ROUTE)
                        return -400
                    if not self._names_us(m, &route.uri):
                        break
                    at = skip_lws(m.b, x + 1, vend) if x < vend else vend
                if at >= vend:
                    fe_lump(e, h.name_off, h.line_end, e.an)     # all ours: the line goes
                    continue
                if at > h.value_off:
                    fe_lump(e, h.value_off, at, e.an)            # ours at its start go
                routed = route.uri.kind != 0 and self._target(m, &route.uri, dst)
                break
        # Max-Forwards minus one (70 when absent, §16.6 step 3).
        start = e.an
        if m.mf < 0:
            fe_put(e, "Max-Forwards: 70\r\n", 18)
            fe_lump(e, m.hdr_end, m.hdr_end, start)
        else:
            h = &m.hdrs[m.first[H_MAX_FORWARDS]]
            fe_int(e, m.mf - 1)
            fe_lump(e, h.value_off, h.value_off + h.value_len, start)
        self.want_rr = rr and self.record_route and (
            span_ieq(m.b, m.sl_method, "invite", 6) or span_ieq(m.b, m.sl_method, "subscribe", 9)
            or span_ieq(m.b, m.sl_method, "refer", 5))
        if routed:
            return RT_DST
        if not strict and (scan_uri(m.b, m.sl_uri.off, m.sl_uri.off + m.sl_uri.len, &m.ruri,
                                    err, 0) < 0 or m.ruri.kind == 0):
            fail(err, 416, E_OK, -1)
            return -416
        if self._names_us(m, &m.ruri):
            return RT_LOCAL
        # An in-dialog request (To tag) goes to its remote target, the
        # Request-URI (§16.12 loose routing); the static next hops are for
        # the requests that start something.
        if self.nhops > 0 and not (m.first[H_TO] >= 0 and self._has_tag(m, &m.hdrs[m.first[H_TO]])
                                   and self._target(m, &m.ruri, dst)):
            return RT_STATIC
        if not self._target(m, &m.ruri, dst):
            fail(err, 404, E_OK, -1)
            return -404
        return RT_DST

    cdef int _strict_route(self, Message m, perr_t* err) noexcept:
        """§16.4 strict-routing compatibility: when the Request-URI is one of
        our Record-Route URIs (names us, no user part, lr) and Routes
        follow, lumps make the last Route value the Request-URI and drop it
        from Route; m.ruri then holds it.  1 when done, 0 when not strict,
        -1 on a malformed Route."""
        cdef fedit_t* e = &self.ed
        cdef hdr_t* h
        cdef hdr_t* lh = NULL
        cdef naddr_t na, last
        cdef Py_ssize_t at, x, vend, last_at = -1, prev_end = -1, last_prev_end = -1
        cdef int i, start
        if m.first[H_ROUTE] < 0:
            return 0
        if scan_uri(m.b, m.sl_uri.off, m.sl_uri.off + m.sl_uri.len, &m.ruri, err, 0) < 0 \
                or m.ruri.kind == 0 or m.ruri.user.len > 0 or not self._names_us(m, &m.ruri) \
                or not uri_param_is(m.b, &m.ruri, "lr", 2, NULL, 0):
            return 0
        for i in range(m.first[H_ROUTE], m.nhdr):
            h = &m.hdrs[i]
            if h.hid != H_ROUTE:
                continue
            at = h.value_off
            vend = h.value_off + h.value_len
            prev_end = -1
            while at < vend:
                x = list_element_end(m.b, at, vend)
                if x < 0 or scan_naddr(m.b, at, x, &na, err, H_ROUTE) < 0:
                    fail(err, 400, E_MALFORMED, h.value_off, H_ROUTE)
                    return -1
                lh = h
                last = na
                last_at = at
                last_prev_end = prev_end
                prev_end = x
                at = skip_lws(m.b, x + 1, vend) if x < vend else vend
        if lh == NULL or last.uri.kind == 0:
            return 0
        start = e.an
        fe_put(e, <const char*>m.b + last.uri.text.off, last.uri.text.len)
        fe_lump(e, m.sl_uri.off, m.sl_uri.off + m.sl_uri.len, start)
        if last_prev_end < 0:
            fe_lump(e, lh.name_off, lh.line_end, e.an)      # the line held it alone
        else:
            fe_lump(e, last_prev_end, lh.value_off + lh.value_len, e.an)
        m.ruri = last.uri
        return 1

    cdef bint _target(self, Message m, uri_t* u, sockaddr_storage* dst) noexcept:
        """The address of a SIP URI with an IP literal host, and (into
        out_tcp) whether it asks for TCP (transport=tcp)."""
        self.out_tcp = self.tcp_lfd >= 0 and uri_param_is(m.b, u, "transport", 9, "tcp", 3)
        return addr_from_host(m.b + u.host.off, u.host.len, u.port if u.port > 0 else 5060,
                              dst) == 0

    cdef void _add_rr(self, Message m) noexcept:
        """Our Record-Route (after _prepare set want_rr and the transport
        of the way out is known): one entry, or two when the request
        changes transport, the top one for the side it leaves on (RFC 5658)."""
        cdef fedit_t* e = &self.ed
        cdef int start
        cdef Py_ssize_t at
        if not self.want_rr:
            return
        start = e.an
        fe_put(e, "Record-Route: <sip:", 19)
        fe_put(e, self.host, self.host_len)
        fe_put(e, ":", 1)
        fe_int(e, self.port)
        if self.out_tcp:
            fe_put(e, ";transport=tcp", 14)
        fe_put(e, ";lr>", 4)
        if self.out_tcp != self.in_tcp:
            fe_put(e, ", <sip:", 7)
            fe_put(e, self.host, self.host_len)
            fe_put(e, ":", 1)
            fe_int(e, self.port)
            if self.in_tcp:
                fe_put(e, ";transport=tcp", 14)
            fe_put(e, ";lr>", 4)
        fe_put(e, "\r\n", 2)
        at = m.hdrs[m.first[H_RECORD_ROUTE]].name_off if m.first[H_RECORD_ROUTE] >= 0 \
            else m.hdrs[m.first[H_VIA]].name_off
        fe_lump(e, at, at, start)

    cdef int _push_via(self, Message m, const char* branch, int blen, bint tcp) noexcept:
        """Lump: our Via (UDP: naming the send socket; TCP: the listener,
        the answers come back on the connection anyway) above the top one."""
        cdef fedit_t* e = &self.ed
        cdef int start = e.an
        cdef Py_ssize_t at
        fe_put(e, "Via: SIP/2.0/TCP " if tcp else "Via: SIP/2.0/UDP ", 17)
        fe_put(e, self.host, self.host_len)
        fe_put(e, ":", 1)
        fe_int(e, self.tcp_port if tcp else self.sport)
        fe_put(e, ";branch=", 8)
        fe_put(e, branch, blen)
        fe_put(e, ";rport\r\n", 8)
        at = m.hdrs[m.first[H_VIA]].name_off
        return fe_lump(e, at, at, start)

    cdef Py_ssize_t _apply(self, Message m, char* out) noexcept:
        """Apply self.ed to m into out (SLOT bytes); the size, -1 on overflow."""
        cdef fedit_t* e = &self.ed
        cdef Py_ssize_t total
        if e.n == FE_LUMPS or e.an >= FE_ARENA - 1:
            return -1
        total = lumps_sort(e.lumps, e.n, m.size)
        if total < 0 or total > SLOT:
            return -1
        lumps_apply(m.b, m.size, e.lumps, e.n, e.arena, out)
        return total

    cdef bint _check(self, Message m, sockaddr_storage* src, int fd) noexcept:
        """§16.3 checks common to both modes; False when answered/dropped."""
        cdef perr_t err
        if m._scan_top_via(&err) < 0:
            self._reply(m, 400, &err, src, fd, 0)
            return False
        if m.mf == 0:
            if span_ieq(m.b, m.sl_method, "ack", 3):
                self.dropped += 1
            else:
                fail(&err, 483, E_MAX_FORWARDS_ZERO, -1)
                self._reply(m, 483, &err, src, fd, 0)
            return False
        if self._our_vias(m) >= 3:
            # §16.3 step 4: this request has been through us twice already
            if span_ieq(m.b, m.sl_method, "ack", 3):
                self.dropped += 1
            else:
                fail(&err, 482, E_OK, -1)
                self._reply(m, 482, &err, src, fd, 0)
            return False
        if H_PROXY_REQUIRE > 0 and m.first[H_PROXY_REQUIRE] >= 0 \
                and not span_ieq(m.b, m.sl_method, "ack", 3) \
                and not span_ieq(m.b, m.sl_method, "cancel", 6):
            # §16.3 step 5: no proxy extension is supported here
            fail(&err, 420, E_OK, -1)
            self._reply(m, 420, &err, src, fd, 0)
            return False
        return True

    cdef int _our_vias(self, Message m) noexcept:
        """How many Via values name this proxy (a loop leaves several)."""
        cdef int i, n = 0, port
        cdef hdr_t* h
        cdef Py_ssize_t at, x, vend
        cdef via_t v
        cdef perr_t err
        for i in range(m.first[H_VIA], m.nhdr):
            h = &m.hdrs[i]
            if h.hid != H_VIA:
                continue
            at = h.value_off
            vend = h.value_off + h.value_len
            while at < vend:
                x = list_element_end(m.b, at, vend)
                if x < 0 or scan_via(m.b, at, x, &v, &err) < 0:
                    return n
                port = v.port if v.port > 0 else 5060
                if v.host.len == self.host_len and memcmp(m.b + v.host.off, self.host,
                                                          self.host_len) == 0 \
                        and (port == self.port or port == self.sport):
                    n += 1
                at = skip_lws(m.b, x + 1, vend) if x < vend else vend
        return n

    cdef void _request(self, Message m, sockaddr_storage* src, int fd) noexcept:
        if not self._check(m, src, fd):
            return
        if self.stateful:
            self._request_stateful(m, src, fd)
        else:
            self._forward_stateless(m, src, fd)

    cdef void _forward_stateless(self, Message m, sockaddr_storage* src, int fd) noexcept:
        """§16.11: one copy, a branch derived from the request's own."""
        cdef perr_t err
        cdef sockaddr_storage dst
        cdef char br[23]
        cdef uint64_t hv
        cdef hdr_t* h
        cdef Py_ssize_t total
        cdef int i, kind = self._prepare(m, src, &dst, &err, True)
        if kind == RT_LOCAL and self.lb_mode:
            self.dropped += 1       # the balancer forwards nothing for itself
            return
        if kind == RT_LOCAL:
            if self.nhops > 0:
                kind = RT_STATIC    # no registrar here: the default route
            else:
                fail(&err, 404, E_OK, -1)
                kind = -404
        if kind < 0:
            self._reply(m, -kind, &err, src, fd, 0)
            return
        if kind == RT_STATIC:
            # no state to remember the choice: pick the hop by Call-ID, so a
            # retransmission, the CANCEL and the ACK follow the INVITE
            h = &m.hdrs[m.first[H_CALL_ID]]
            hv = fnv64(m.b + h.value_off, h.value_len, 14695981039346656037ULL)
            memcpy(&dst, &self.hops[hv % <uint64_t>self.nhops], sizeof(sockaddr_storage))
            self.out_tcp = self.hop_tcp[hv % <uint64_t>self.nhops]
        derived_branch(m, br)
        self._push_via(m, br, 23, self.out_tcp)
        self._add_rr(m)
        total = self._apply(m, self._slot())
        if total < 0:
            self.dropped += 1
            return
        if self.out_tcp:
            self._tcp_send(&dst, self._slot(), total)
        else:
            self._queue(total, &dst, self.sfd)
        self.forwarded_requests += 1

    # -- the stateful path ----------------------------------------------------

    cdef void _request_stateful(self, Message m, sockaddr_storage* src, int fd) noexcept:
        cdef char sentby[ADDR_TEXT + 8]
        cdef int sl, meth, k
        cdef span_t br = m.top_via.branch
        cdef int64_t before = self.t.created, txn
        if br.off < 0:
            br.off = 0
            br.len = 0
        sl = sent_by(m, &m.top_via, sentby)
        if span_ieq(m.b, m.sl_method, "invite", 6):
            meth = TXM_INVITE
        elif span_ieq(m.b, m.sl_method, "ack", 3):
            meth = TXM_ACK
        elif span_ieq(m.b, m.sl_method, "cancel", 6):
            meth = TXM_CANCEL
        else:
            # other methods: a small hash of the name keeps BYE and OPTIONS
            # of the same branch apart (§17.2.3 matches the method too)
            meth = TXM_OTHER + <int>(fnv64(m.b + m.sl_method.off, m.sl_method.len,
                                           14695981039346656037ULL) & 63)
        if meth == TXM_INVITE or meth == TXM_CANCEL or meth == TXM_ACK:
            # an INVITE relayed to a delegate: its retransmissions, its
            # CANCEL and its ACK go to the same delegate, unanswered here
            if self.st.n > 0:
                k = <int>dlg_find(&self.st, relay_key(m.b + br.off, br.len, sentby, sl),
                                  now_ms())
                if k >= 0:
                    self._relay_direct(m, src, &self.pm.peers[self.st.e[k].val >> 1].addr,
                                       1 if self.st.e[k].val & 1 else 2)
                    return
            if self.any_direct:
                k = tx_lookup(&self.t, m.b + br.off, br.len, <const uint8_t*>sentby, sl,
                              TXM_INVITE)
                if k >= 0 and self.cs[k].direct:
                    self._relay_direct(m, src, &self.cs[k].bs[0].dst, 1)
                    return
        if self.pm is not None and meth != TXM_ACK and self._not_on_route(m):
            # a delegating peer: a request of a dialog another proxy
            # record-routed, sent to us anyway (SIPp sends the ACK and BYE
            # to the address it called): one stateless forward, §16.11
            self._forward_stateless(m, src, fd)
            return
        if meth == TXM_INVITE and self.pm is not None \
                and self._relay_new(m, src, fd, br, sentby, sl):
            return
        self.t.nacts = 0
        txn = tx_on_request(&self.t, m.b + br.off, br.len, <const uint8_t*>sentby, sl, meth,
                            now_ms())
        if txn >= 0 and self.t.created == before:
            # matched: a retransmission, or the hop-by-hop ACK of a non-2xx
            if meth == TXM_ACK:
                self.acks_absorbed += 1
            else:
                self.request_retransmissions += 1
        self._run(m, src, fd)

    cdef bint _relay_new(self, Message m, sockaddr_storage* src, int fd, span_t br,
                         const char* sentby, int sl) noexcept:
        """A delegating peer's decision for a new INVITE, taken before any
        transaction: delegated, the INVITE is relayed as a stateless proxy
        relays it (§16.11: --reply-path via, our Via with a branch derived
        from the caller's; direct, no Via of ours) with our visited line,
        and only its entry in self.st remains (True).  Else (False) the
        decision waits in pre_k for _delegate, after the server transaction
        (a call completed here, 503, a decision for the control plane), or
        there is none to take here: a retransmission of an INVITE with a
        transaction, a request _on_new answers otherwise (draining, a
        probe), a pre-3261 branch (forwarded statelessly, as every request
        without a transaction)."""
        cdef int k, target = -1, mode
        cdef int64_t now
        cdef perr_t err
        cdef sockaddr_storage ignored
        cdef uint64_t key
        self.pre_k = -1
        if self.draining or self.lb_mode or br.len <= 7 \
                or memcmp(m.b + br.off, b"z9hG4bK", 7) != 0 or m.first[H_TO] < 0 \
                or self._has_tag(m, &m.hdrs[m.first[H_TO]]) \
                or find_header(m, "x-sipfast-probe", 15) >= 0 \
                or tx_lookup(&self.t, m.b + br.off, br.len, <const uint8_t*>sentby, sl,
                             TXM_INVITE) >= 0:
            return False
        # the load with this call, as if its transaction were there (README "Load")
        self.pm.part_calls[self.pm_slot] = self.pending_invites + self.dl.n + 1
        self.pm.part_pending[self.pm_slot] = self.pending_count + 1
        now = now_ms()
        k = self.pm.decide(m, now, &target)
        if k != DG_DELEGATE:
            self.pre_k = k
            return False
        mode = 1 if self.pm.direct else 2
        key = relay_key(m.b + br.off, br.len, sentby, sl)
        if self._prepare(m, src, &ignored, &err, False) < 0:
            self.pm.undo_delegation(target)
            self._reply(m, err.status, &err, src, fd, 0)
            return True
        if dlg_put(&self.st, key, now + 64 * <int64_t>self.t.t1,
                   target * 2 + (1 if mode == 1 else 0)) < 0:
            self.pm.undo_delegation(target)     # as many relays held as transactions
            self.rejected += 1
            self._reply(m, 503, NULL, src, fd, 0)
            return True
        if not self._relay(m, &self.pm.peers[target].addr, mode, self.pm.vline,
                           self.pm.vlen):
            dlg_del(&self.st, key)
            self.pm.undo_delegation(target)
            return True
        if mode == 2:
            self.delegated += 1
        return True

    cdef bint _not_on_route(self, Message m) noexcept:
        """An in-dialog request (To tag) whose first Route names another
        proxy: a dialog this proxy is not on the route set of."""
        cdef perr_t err
        cdef naddr_t route
        cdef hdr_t* h
        cdef Py_ssize_t x
        if m.first[H_ROUTE] < 0 or m.first[H_TO] < 0 \
                or not self._has_tag(m, &m.hdrs[m.first[H_TO]]):
            return False
        h = &m.hdrs[m.first[H_ROUTE]]
        x = list_element_end(m.b, h.value_off, h.value_off + h.value_len)
        if x < 0 or scan_naddr(m.b, h.value_off, x, &route, &err, H_ROUTE) < 0:
            return False        # the stateful path answers 400
        return route.uri.kind != 0 and not self._names_us(m, &route.uri)

    cdef void _run(self, Message m, sockaddr_storage* src, int fd) noexcept:
        """Carry out the transaction layer's actions (they may add more)."""
        cdef int i = 0
        cdef tx_action_t a
        cdef cstore_t* c
        cdef bstore_t* b
        cdef int32_t ci
        while i < self.t.nacts:
            a = self.t.acts[i]
            i += 1
            ci = <int32_t>(a.txn & 0xffffffffLL) if a.txn >= 0 else -1
            c = &self.cs[ci] if ci >= 0 else NULL
            if a.kind == TXA_NEW:
                self._on_new(m, a.txn, c, src, fd)
            elif a.kind == TXA_SEND_REQ:
                b = &c.bs[a.branch]
                self._send_down(b, b.req.p, b.req.len)
                self.forwarded_requests += 1
            elif a.kind == TXA_SEND_CANCEL:
                if self.in_batch and self.ndc < BATCH * MAX_HOPS:
                    self.dc_txn[self.ndc] = a.txn      # at the batch's end
                    self.dc_branch[self.ndc] = a.branch
                    self.ndc += 1
                    continue
                self._send_cancel_or_ack(c, a.branch, None)
                self.cancels_sent += 1
            elif a.kind == TXA_SEND_ACK:
                self._send_cancel_or_ack(c, a.branch, m)
                self.acks_sent += 1
            elif a.kind == TXA_FORWARD:
                b = &c.bs[a.branch]
                if a.status >= 200:
                    self._answered(c, a.status)
                if buf_set(&c.last, b.resp.p, b.resp.len) < 0:
                    self.dropped += 1
                    continue
                self._send_up(c, b.resp.p, b.resp.len)
                self.forwarded_responses += 1
            elif a.kind == TXA_RESEND:
                self._send_up(c, c.last.p, c.last.len)
                self.resent += 1
            elif a.kind == TXA_REPLY:
                if a.status >= 200:
                    self._answered(c, 0)
                self._local_reply(a.txn, c, a.status, a.branch)
            elif a.kind == TXA_PROBE:
                self._on_probe(a.txn, c, a.branch, a.status, m)
            elif a.kind == TXA_TERMINATED:
                self._answered(c, 0)
                c.direct = 0
                c.deferred = 0
            elif a.kind == TXA_REJECT:
                self.rejected += 1
                if m is not None and src != NULL:
                    self._reply(m, 503, NULL, src, fd, 0)
            elif a.kind == TXA_UNMATCHED:
                if m is not None and m.is_req and src != NULL:
                    if span_ieq(m.b, m.sl_method, "ack", 3):
                        if self._our_to_tag(m):
                            # the ACK of a final answer we gave without a
                            # transaction (a 503 with the table full): ours
                            self.acks_absorbed += 1
                            continue
                        self._acked(m)      # the ACK for a 2xx
                    self._forward_stateless(m, src, fd)
                elif m is not None and not m.is_req and 200 <= m.status_code < 300 \
                        and span_ieq(m.b, m.cseq_meth, "invite", 6):
                    self._response_stateless(m)     # a stray 2xx (§16.7 step 1)
                elif m is not None:
                    self.dropped += 1
        self.t.nacts = 0

    # -- the first-responder balancer (DESIGN.md §1 scheme A) ----------------

    cdef bint _ruri_is_us(self, Message m) noexcept:
        cdef perr_t err
        if scan_uri(m.b, m.sl_uri.off, m.sl_uri.off + m.sl_uri.len, &m.ruri, &err, 0) < 0:
            return False
        return m.ruri.kind != 0 and m.ruri.user.len <= 0 and self._names_us(m, &m.ruri)

    cdef void _fanout(self, Message m, int64_t txn, cstore_t* c, sockaddr_storage* src) noexcept:
        """Send the request as a probe to every pool member up: an INVITE
        marked X-Sipfast-Probe, or (a query) an OPTIONS to each member."""
        cdef perr_t err
        cdef sockaddr_storage ignored
        cdef int i, n = 0, port
        cdef uint32_t mask = 0
        cdef char text[ADDR_TEXT + 16]
        cdef char uri[ADDR_TEXT + 16]
        cdef int ul
        cdef bint query = not c.invite
        if self._prepare(m, src, &ignored, &err, False) < 0:
            memcpy(&c.err, &err, sizeof(perr_t))
            tx_reply(&self.t, txn, err.status, now_ms())
            return
        cdef int j, start = self.rr % self.nhops
        self.rr += 1
        for j in range(self.nhops):
            # rotate the order so that no member gets a head start every time
            i = (start + j) % self.nhops
            if not self.hop_up[i]:
                continue
            self.out_tcp = self.hop_tcp[i]
            if query:
                # the member itself is asked: OPTIONS sip:member
                ul = fmt_sip_uri(uri, &self.hops[i], NULL, 0)
                if self._branch(m, txn, c, n, &self.hops[i], uri, ul, NULL, 0, True) < 0:
                    n = -1
                    break
            elif self._branch(m, txn, c, n, &self.hops[i], NULL, 0,
                              "X-Sipfast-Probe: call\r\n", 23, True) < 0:
                n = -1
                break
            c.bs[n].member = i
            if self.hop_tcp[i]:
                mask |= 1u << n
            n += 1
        if n <= 0:
            self._no_winner(txn, c)
            return
        c.lb = 1
        c.lb_deadline = now_ms() + self.probe_ms
        if self.nlb < MAX_DEFERRED:
            self.lb_txn[self.nlb] = txn
            self.nlb += 1
        self.probes_sent += n
        if tx_fork(&self.t, txn, n, now_ms(), mask, 0xffffffffu) < 0:
            fail(&c.err, 500, E_OK, -1)
            tx_reply(&self.t, txn, 500, now_ms())

    cdef void _on_probe(self, int64_t txn, cstore_t* c, int b, int status,
                        Message resp) noexcept:
        """A probe branch answered: the first good answer wins (§1 step 3)."""
        cdef int32_t ci = <int32_t>(txn & 0xffffffffLL)
        cdef tx_cell_t* cell = &self.t.cells[ci]
        cdef int member = c.bs[b].member
        cdef bint good
        cdef uint32_t probes
        if c.winner >= 0:
            return                          # decided: late answers are ACKed/ignored
        if status < 200:
            good = self.lb_first == 1
        else:
            good = status < 400 and not cell.canceled
            if not good and 0 <= member < self.nhops and (status == 408 or status == 503):
                self.hop_fail[member] += 1  # three in a row take it out
                if self.hop_fail[member] >= 3:
                    self.hop_up[member] = 0
        if good and tx_server_open(cell) and not cell.canceled:
            c.winner = b
            self.probes_answered += 1
            if 0 <= member < self.nhops:
                self.hop_fail[member] = 0
                self.hop_wins[member] += 1
            self._won(txn, c, b)
            return
        probes = cell.probe_mask
        if (cell.final_mask & probes) == probes and tx_server_open(cell):
            if cell.canceled:
                tx_reply(&self.t, txn, 487, now_ms())
            else:
                self._no_winner(txn, c)

    cdef void _won(self, int64_t txn, cstore_t* c, int b) noexcept:
        """Tell the caller who won (302 / 200 naming it), or relay the call
        through the winner (proxy mode); cancel the others."""
        cdef Message m3 = self.m3
        cdef perr_t err
        cdef sockaddr_storage ignored
        cdef char line[ADDR_TEXT + 160]
        cdef int w, nb
        cdef Py_ssize_t n
        cdef sockaddr_storage winner
        cdef int32_t ci = <int32_t>(txn & 0xffffffffLL)
        m3.b = <const uint8_t*>c.req.p
        m3.buflen = c.req.len
        m3._reset()
        if m3._parse(&err, False, SLOT, DEFAULT_MAX_HEADERS_C, DEFAULT_MAX_LINE_C) < 0 \
                or m3._scan_top_via(&err) < 0 or scan_uri(
                    m3.b, m3.sl_uri.off, m3.sl_uri.off + m3.sl_uri.len, &m3.ruri, &err, 0) < 0:
            tx_abandon(&self.t, txn, now_ms())
            tx_reply(&self.t, txn, 500, now_ms())
            return
        tx_abandon(&self.t, txn, now_ms())      # CANCEL the rest (after their 1xx)
        if self.lb_mode == 2 and c.invite:
            # relay the call itself through the winner, which record-routes
            self._prepare(m3, &c.src, &ignored, &err, False)
            self.out_tcp = c.bs[b].tcp
            nb = self.t.cells[ci].nbr
            memcpy(&winner, &c.bs[b].dst, sizeof(sockaddr_storage))   # c.bs may move
            if self._branch(m3, txn, c, nb, &winner, NULL, 0, NULL, 0, True) < 0 \
                    or tx_fork(&self.t, txn, 1, now_ms(),
                               1u if c.bs[nb].tcp else 0u, 0u) < 0:
                tx_reply(&self.t, txn, 500, now_ms())
                return
            c.bs[nb].member = c.bs[b].member
            self.lb_relayed += 1
            return
        # Contact: the winner, for the same user (§1 step 4)
        memcpy(line, b"Contact: <", 10)
        w = 10
        w += fmt_sip_uri(line + w, &c.bs[b].dst,
                         <const char*>m3.b + m3.ruri.user.off if m3.ruri.user.len > 0 and c.invite
                         else NULL, m3.ruri.user.len if c.invite else 0)
        if c.bs[b].tcp:
            memcpy(line + w, b";transport=tcp", 14)
            w += 14
        memcpy(line + w, b">\r\n", 3)
        w += 3
        fail(&err, 302 if c.invite else 200, E_OK, -1)
        n = self._build_reply(m3, 302 if c.invite else 200, &err, self._slot(), txn, line, w)
        if n <= 0 or buf_set(&c.own, self._slot(), n) < 0:
            tx_reply(&self.t, txn, 500, now_ms())
            return
        c.custom = 1
        self.redirects += c.invite
        tx_reply(&self.t, txn, 302 if c.invite else 200, now_ms())

    cdef void _no_winner(self, int64_t txn, cstore_t* c) noexcept:
        """No member answered well in time: 503 with Retry-After (never
        silence, §1)."""
        cdef int32_t ci = tx_cell_of(&self.t, txn)
        if ci < 0 or not tx_server_open(&self.t.cells[ci]):
            return
        c.winner = 127
        self.lb_no_winner += 1
        tx_abandon(&self.t, txn, now_ms())
        fail(&c.err, 503, E_OK, -1)
        tx_reply(&self.t, txn, 503, now_ms())

    cdef void _answer_probe(self, Message m, int64_t txn, cstore_t* c) noexcept:
        """A balancer's probe INVITE (X-Sipfast-Probe): answer at once with
        our identity, a 302 whose Contact is this proxy for the same user;
        503 while draining (a member that cannot take calls never wins)."""
        cdef perr_t err
        cdef char line[ADDR_TEXT + 160]
        cdef int w
        cdef Py_ssize_t n
        cdef sockaddr_storage me
        if self.draining:
            fail(&c.err, 503, E_OK, -1)
            tx_reply(&self.t, txn, 503, now_ms())
            return
        if scan_uri(m.b, m.sl_uri.off, m.sl_uri.off + m.sl_uri.len, &m.ruri, &err, 0) < 0 \
                or m.ruri.kind == 0 \
                or addr_from_host(<const uint8_t*>self.host, self.host_len, self.port, &me) < 0:
            fail(&c.err, 400, E_RURI, -1)
            tx_reply(&self.t, txn, 400, now_ms())
            return
        memcpy(line, b"Contact: <", 10)
        w = 10
        w += fmt_sip_uri(line + w, &me, <const char*>m.b + m.ruri.user.off if m.ruri.user.len > 0
                         else NULL, m.ruri.user.len if m.ruri.user.len > 0 else 0)
        memcpy(line + w, b">\r\n", 3)
        w += 3
        fail(&err, 302, E_OK, -1)
        n = self._build_reply(m, 302, &err, self._slot(), txn, line, w)
        if n <= 0 or buf_set(&c.own, self._slot(), n) < 0:
            tx_reply(&self.t, txn, 500, now_ms())
            return
        c.custom = 1
        self.probes_answered += 1
        tx_reply(&self.t, txn, 302, now_ms())

    cdef void _answered(self, cstore_t* c, int status) noexcept:
        """The server transaction of c got its final answer (or ended): it
        leaves the pending counts, and a 2xx to an INVITE we record-route
        makes a dialog (a call we carry until BYE)."""
        if c.counted:
            c.counted = 0
            self.pending_count -= 1
            if c.invite:
                self.pending_invites -= 1
        if 200 <= status < 300 and c.invite and c.rr:
            # a call until its ACK is due: the UAS gives up on a 2xx not
            # ACKed in 64*T1 (§13.3.1.4); the ACK makes it one for the
            # longest call allowed
            dlg_put(&self.dl, c.dkey, now_ms() + 64 * <int64_t>self.t.t1)

    cdef void _acked(self, Message m) noexcept:
        """An ACK for a 2xx: its dialog, if we count it, is a confirmed call."""
        cdef hdr_t* h
        if m.first[H_CALL_ID] >= 0:
            h = &m.hdrs[m.first[H_CALL_ID]]
            dlg_touch(&self.dl, fnv64(m.b + h.value_off, h.value_len, 14695981039346656037ULL),
                      now_ms() + self.max_call_ms)

    cdef void _on_new(self, Message m, int64_t txn, cstore_t* c, sockaddr_storage* src,
                      int fd) noexcept:
        """A new server transaction for request m: remember where answers
        go and the request itself, then route it and fork (or answer)."""
        cdef int port
        cdef hdr_t* h
        cdef char ip[ADDR_TEXT]
        cdef bint initial
        c.upfd = fd
        c.custom = 0
        c.direct = 0
        c.deferred = 0
        c.rr = 0
        c.err.status = 0
        c.err.code = E_OK
        c.err.hid = 0
        memcpy(&c.src, src, sizeof(sockaddr_storage))
        c.uptcp = self.in_tcp
        if self.in_tcp:
            tx_set_reliable(&self.t, txn)       # no G; I, J zero (§17.2)
        c.counted = 1
        c.invite = span_ieq(m.b, m.sl_method, "invite", 6)
        self.pending_count += 1
        if c.invite:
            self.pending_invites += 1
        h = &m.hdrs[m.first[H_CALL_ID]]
        c.dkey = fnv64(m.b + h.value_off, h.value_len, 14695981039346656037ULL)
        # §18.2.2 / RFC 3581: the source address when rport was asked for,
        # else the source IP with the Via's port.
        memcpy(&c.up, src, sizeof(sockaddr_storage))
        if m.top_via.rport.off < 0 and not self.in_tcp:
            port = m.top_via.port if m.top_via.port > 0 else 5060
            if c.up.ss_family == AF_INET6:
                (<sockaddr_in6*>&c.up).sin6_port = htons(<uint16_t>port)
            else:
                (<sockaddr_in*>&c.up).sin_port = htons(<uint16_t>port)
        if buf_set(&c.req, <const char*>m.b, m.size) < 0:
            fail(&c.err, 500, E_OK, -1)
            tx_reply(&self.t, txn, 500, now_ms())
            return
        c.cancel = span_ieq(m.b, m.sl_method, "cancel", 6)
        if c.cancel:
            return                  # the 200 (§9.2) follows from the table
        initial = m.first[H_TO] >= 0 and not self._has_tag(m, &m.hdrs[m.first[H_TO]])
        if not initial and span_ieq(m.b, m.sl_method, "bye", 3):
            self.calls_ended += dlg_del(&self.dl, c.dkey)   # the call ends here
        if self.draining and initial:
            fail(&c.err, 503, E_OK, -1)
            tx_reply(&self.t, txn, 503, now_ms())
            return
        c.lb = 0
        c.winner = -1
        if self.lb_mode and initial and (c.invite or (
                span_ieq(m.b, m.sl_method, "options", 7) and self._ruri_is_us(m))):
            self._fanout(m, txn, c, src)
            return
        if c.invite and initial and find_header(m, "x-sipfast-probe", 15) >= 0:
            self._answer_probe(m, txn, c)
            return
        if c.invite and initial and self.pm is not None and self._delegate(m, txn, c, src):
            return
        if c.invite and initial and self.on_invite is not None:
            addr_text(src, ip, &port)
            try:
                decision = self.on_invite(
                    PyBytes_FromStringAndSize(<const char*>m.b, m.size),
                    (ip.decode(), port), txn)
            except BaseException:
                decision = 500
            self._decided(m, txn, c, src, decision)
            return
        self._route(m, txn, c, src, NULL, NULL, 0)

    cdef bint _delegate(self, Message m, int64_t txn, cstore_t* c,
                        sockaddr_storage* src) noexcept:
        """Carry out the compiled decision _relay_new took for this new
        INVITE when it did not delegate it; False when the control plane
        must decide it."""
        cdef int k = self.pre_k
        self.pre_k = -1
        if k == DG_LOCAL:
            self._route(m, txn, c, src, NULL, NULL, 0)
        elif k == DG_REJECT:
            fail(&c.err, 503, E_OK, -1)
            tx_reply(&self.t, txn, 503, now_ms())
        else:
            return False        # DG_ASK (or, never, no decision): the control plane's
        return True

    cdef void _decided(self, Message m, int64_t txn, cstore_t* c, sockaddr_storage* src,
                       object decision) noexcept:
        """Carry out an on_invite decision (see set_hooks)."""
        cdef sockaddr_storage dst
        cdef bytes extra = b"", hb
        cdef int status
        try:
            if isinstance(decision, tuple) and len(decision) == 2 \
                    and isinstance(decision[1], bytes):
                decision, extra = decision
                check_header_lines(extra)
            if decision is None:
                self._route(m, txn, c, src, NULL, PyBytes_AS_STRING(extra), len(extra))
            elif isinstance(decision, int):
                status = decision
                if status == DEFER:
                    if self.ndeferred == MAX_DEFERRED:
                        raise OverflowError("too many deferred INVITEs")
                    c.deferred = 1
                    self.deferred_txn[self.ndeferred] = txn
                    self.deferred_until[self.ndeferred] = now_ms() + self.defer_ms
                    self.ndeferred += 1
                    return
                if not 300 <= status <= 699:
                    raise ValueError("a decision status must be 300..699")
                fail(&c.err, status, E_OK, -1)
                tx_reply(&self.t, txn, status, now_ms())
            else:
                direct = len(decision) == 3 and decision[0] == "direct"
                ip, port = decision[1:] if direct else decision
                hb = ip.encode()
                if addr_from_host(<const uint8_t*>PyBytes_AS_STRING(hb), len(hb), port,
                                  &dst) < 0:
                    raise ValueError("a delegate must be an IP address and port")
                if direct:
                    self._direct(m, txn, c, src, &dst, PyBytes_AS_STRING(extra), len(extra))
                else:
                    self.delegated += 1
                    self._route(m, txn, c, src, &dst, PyBytes_AS_STRING(extra), len(extra))
        except BaseException:
            fail(&c.err, 500, E_OK, -1)
            tx_reply(&self.t, txn, 500, now_ms())

    cdef void _direct(self, Message m, int64_t txn, cstore_t* c, sockaddr_storage* src,
                      sockaddr_storage* dst, const char* extra, int extra_len) noexcept:
        """Relay the INVITE of server transaction txn to a delegate without
        our Via (--reply-path direct decided by the control plane), nor a
        client transaction or Record-Route:
        the delegate answers the caller directly; the cell, detached, only
        remembers where the INVITE went, for its retransmissions, CANCEL
        and ACK."""
        cdef perr_t err
        cdef sockaddr_storage ignored
        if self._prepare(m, src, &ignored, &err, False) < 0:
            memcpy(&c.err, &err, sizeof(perr_t))
            tx_reply(&self.t, txn, err.status, now_ms())
            return
        self.out_tcp = False
        if self._branch(m, txn, c, 0, dst, NULL, 0, extra, extra_len, False) < 0 \
                or tx_detach(&self.t, txn, now_ms()) < 0:
            fail(&c.err, 500, E_OK, -1)
            tx_reply(&self.t, txn, 500, now_ms())
            return
        c.direct = 1
        self.any_direct = True
        self._answered(c, 0)        # not ours to answer any more
        self._send_down(&c.bs[0], c.bs[0].req.p, c.bs[0].req.len)
        self._count_relayed(1)

    cdef inline void _count_relayed(self, int mode) noexcept:
        """One more request relayed to a delegate: mode 1 without our Via,
        2 statelessly with it."""
        if mode == 1:
            self.relayed_direct += 1
        else:
            self.relayed_stateless += 1

    cdef void _relay_direct(self, Message m, sockaddr_storage* src,
                            sockaddr_storage* dst, int mode) noexcept:
        """A later request of an INVITE relayed to a delegate (_relay_new,
        _direct), sent on the same way (mode: _count_relayed's)."""
        cdef perr_t err
        cdef sockaddr_storage ignored
        self._prepare(m, src, &ignored, &err, False)   # our edits; the target is known
        self._relay(m, dst, mode, NULL, 0)

    cdef bint _relay(self, Message m, sockaddr_storage* dst, int mode, const char* extra,
                     int extra_len) noexcept:
        """Send m, with _prepare's edits, to the delegate at dst (over UDP)
        as mode says (_count_relayed's; 2: our Via with the branch derived
        from m's, §16.11) and the extra header lines; False when it does
        not fit (dropped)."""
        cdef Py_ssize_t total
        cdef char br[23]
        cdef int start
        cdef fedit_t* e = &self.ed
        if mode == 2:
            derived_branch(m, br)
            self._push_via(m, br, 23, False)
        if extra_len > 0:
            start = e.an
            fe_put(e, extra, extra_len)     # an overflow fails _apply
            fe_lump(e, m.hdr_end, m.hdr_end, start)
        total = self._apply(m, self._slot())
        if total < 0:
            self.dropped += 1
            return False
        self._queue(total, dst, self.sfd)
        self._count_relayed(mode)
        return True

    cdef void _route(self, Message m, int64_t txn, cstore_t* c, sockaddr_storage* src,
                     sockaddr_storage* forced, const char* extra, int extra_len) noexcept:
        """Route the request of a new server transaction (to `forced` when
        given) and fork, or answer it."""
        cdef perr_t err
        cdef sockaddr_storage dst
        cdef int kind, n = 0, i
        cdef uint32_t mask
        # a delegating forwarder does not record-route: the dialog's later
        # requests go between the caller and the proxy completing the call
        kind = self._prepare(m, src, &dst, &err, forced == NULL)
        c.rr = forced == NULL and self.record_route
        if forced != NULL and kind >= 0:
            memcpy(&dst, forced, sizeof(sockaddr_storage))
            self.out_tcp = False            # peers are reached over UDP
            kind = RT_DST
        if kind == RT_LOCAL:
            n = self._local(m, txn, c, src, extra, extra_len)
            if n == 0:
                return              # answered here or by the control plane
            if n == NOT_FOUND:
                n = 0
                if self.nhops > 0:
                    kind = RT_STATIC   # nobody registered: the default route
        if kind == RT_DST:
            n = self._branch(m, txn, c, 0, &dst, NULL, 0, extra, extra_len, True)
        elif kind == RT_STATIC:
            if self.fork:
                for i in range(self.nhops):
                    self.out_tcp = self.hop_tcp[i]
                    if self._branch(m, txn, c, i, &self.hops[i], NULL, 0, extra, extra_len,
                                    True) < 0:
                        n = -1
                        break
                    n += 1
            else:
                self.out_tcp = self.hop_tcp[self.rr % self.nhops]
                n = self._branch(m, txn, c, 0, &self.hops[self.rr % self.nhops], NULL, 0,
                                 extra, extra_len, True)
                self.rr += 1
        elif kind < 0:
            memcpy(&c.err, &err, sizeof(perr_t))
            tx_reply(&self.t, txn, -kind, now_ms())
            return
        if n < 0:
            fail(&c.err, 500, E_OK, -1)
            tx_reply(&self.t, txn, 500, now_ms())
            return
        if n == 0:
            fail(&c.err, 404, E_OK, -1)
            tx_reply(&self.t, txn, 404, now_ms())
            return
        mask = 0
        for i in range(n):
            if c.bs[i].tcp:
                mask |= 1u << i
        if tx_fork(&self.t, txn, n, now_ms(), mask) < 0:
            fail(&c.err, 500, E_OK, -1)
            tx_reply(&self.t, txn, 500, now_ms())

    cdef int _branch(self, Message m, int64_t txn, cstore_t* c, int b,
                     const sockaddr_storage* dst, const char* ruri, int ruri_len,
                     const char* extra, int extra_len, bint via) noexcept:
        """Build the copy of m for client branch b into its store: the common
        edits of _prepare, our Via with the cell's branch (unless not via)
        and Record-Route, for a location target the new Request-URI, and
        the extra header lines.
        1, or -1 on failure."""
        cdef fedit_t* e = &self.ed
        cdef int n0 = e.n, an0 = e.an, i, start, nb
        cdef char br[SF_BRANCH_LEN]
        cdef bstore_t* grown
        cdef Py_ssize_t total
        cdef char* out = self._slot()
        if b >= c.nbs:
            # grow to what this cell needs (2 at least), not to the maximum:
            # most calls have one branch, and the stores outlive the cells
            nb = b + 1 if b + 1 > 2 else 2
            if nb > TX_MAX_BRANCHES:
                return -1
            grown = <bstore_t*>realloc(c.bs, nb * sizeof(bstore_t))
            if grown == NULL:
                return -1
            memset(grown + c.nbs, 0, (nb - c.nbs) * sizeof(bstore_t))
            c.bs = grown
            c.nbs = nb
        memcpy(self.saved, e.lumps, n0 * sizeof(lump_t))
        memcpy(br, b"z9hG4bKsf", 9)
        memcpy(br + 9, self.boot, 8)
        for i in range(16):
            br[17 + i] = HEXDIGITS[(<uint64_t>txn >> (60 - 4 * i)) & 15]
        br[33] = 46
        br[34] = HEXDIGITS[(b >> 4) & 15]
        br[35] = HEXDIGITS[b & 15]
        if via:
            self._push_via(m, br, SF_BRANCH_LEN, self.out_tcp)
            self._add_rr(m)
        if extra_len > 0:
            start = e.an
            fe_put(e, extra, extra_len)     # an overflow fails _apply below
            fe_lump(e, m.hdr_end, m.hdr_end, start)
        if ruri != NULL:
            start = e.an
            fe_put(e, ruri, ruri_len)
            fe_lump(e, m.sl_uri.off, m.sl_uri.off + m.sl_uri.len, start)
        total = self._apply(m, out)
        memcpy(e.lumps, self.saved, n0 * sizeof(lump_t))
        e.n = n0
        e.an = an0
        if total < 0 or buf_set(&c.bs[b].req, out, total) < 0:
            return -1
        memcpy(&c.bs[b].dst, dst, sizeof(sockaddr_storage))
        c.bs[b].tcp = self.out_tcp
        return 1

    cdef int _local(self, Message m, int64_t txn, cstore_t* c, sockaddr_storage* src,
                    const char* extra, int extra_len) noexcept:
        """A request for this proxy itself: REGISTER to the registrar,
        OPTIONS answered, others to the location service.  0 when answered
        here, NOT_FOUND when nobody is registered, else the number of
        branches built (one per contact), -1 on failure."""
        cdef sockaddr_storage dst
        cdef char ip[ADDR_TEXT]
        cdef int port, n = 0
        cdef bytes data, resp, uri
        cdef object hook = None
        if span_ieq(m.b, m.sl_method, "options", 7) and m.ruri.user.len <= 0:
            if self.on_options is None:
                tx_reply(&self.t, txn, 200, now_ms())
                return 0
            hook = self.on_options
        elif span_ieq(m.b, m.sl_method, "register", 8):
            if self.on_register is None:
                tx_reply(&self.t, txn, 405, now_ms())
                return 0
            hook = self.on_register
        if hook is not None:
            addr_text(src, ip, &port)
            try:
                data = PyBytes_FromStringAndSize(<const char*>m.b, m.size)
                resp = hook(data, (ip.decode(), port))
                if not resp:
                    raise ValueError("the registrar gave no answer")
                if buf_set(&c.own, PyBytes_AS_STRING(resp), PyBytes_GET_SIZE(resp)) < 0:
                    raise MemoryError()
                c.custom = 1
                tx_reply(&self.t, txn, resp_status(resp), now_ms())
            except BaseException:
                c.custom = 0
                tx_reply(&self.t, txn, 500, now_ms())
            return 0
        if self.on_lookup is None:
            return NOT_FOUND
        self.lookups += 1
        try:
            targets = self.on_lookup(PyBytes_FromStringAndSize(
                <const char*>m.b + m.sl_uri.off, m.sl_uri.len))
            for target in targets[:TX_MAX_BRANCHES]:
                uri, tip, tport = target[0], target[1], target[2]
                self.out_tcp = self.tcp_lfd >= 0 and len(target) > 3 and target[3] == "tcp"
                hb = tip.encode()
                if addr_from_host(<const uint8_t*>PyBytes_AS_STRING(hb), len(hb), tport,
                                  &dst) < 0:
                    continue
                if self._branch(m, txn, c, n, &dst, PyBytes_AS_STRING(uri), len(uri), extra,
                                extra_len, True) < 0:
                    return -1
                n += 1
        except BaseException:
            return -1
        return n if n > 0 else NOT_FOUND

    cdef void _local_reply(self, int64_t txn, cstore_t* c, int status, int branch) noexcept:
        """TXA_REPLY: a response made here, from the stored request (or the
        control plane's bytes), remembered for retransmissions."""
        cdef Message m2 = self.m2
        cdef perr_t err
        cdef char* out
        cdef Py_ssize_t n
        if c.custom and status >= 200:
            # the final answer made beforehand (control plane, probe, redirect)
            if buf_set(&c.last, c.own.p, c.own.len) < 0:
                self.dropped += 1
                return
            self._send_up(c, c.last.p, c.last.len)
            self.local_replies += 1
            return
        m2.b = <const uint8_t*>c.req.p
        m2.buflen = c.req.len
        m2._reset()
        if m2._parse(&err, False, SLOT, DEFAULT_MAX_HEADERS_C, DEFAULT_MAX_LINE_C) < 0:
            self.dropped += 1
            return
        if status == 408 or status == 487:
            if branch >= 0:
                self.timeouts += status == 408
        if c.err.status == status:
            memcpy(&err, &c.err, sizeof(perr_t))
        else:
            fail(&err, status, E_OK, -1)
        out = self._slot()
        n = self._build_reply(m2, status, &err, out, txn)
        if n <= 0:
            self.dropped += 1
            return
        if buf_set(&c.last, out, n) < 0:
            self.dropped += 1
            return
        if c.uptcp and self._conn_index(c.upfd) < 0:
            self._tcp_send(&c.up, out, n)
        else:
            self._queue(n, &c.up, c.upfd)
        self.local_replies += 1
        self.replied += 1

    cdef void _send_cancel_or_ack(self, cstore_t* c, int b, Message resp) noexcept:
        """CANCEL (resp None, §9.1) or the ACK of a non-2xx final response
        (§17.1.1.3) for client branch b, built from the request as sent on
        that branch: its Request-URI, our Via (same branch), Route, From,
        Call-ID, CSeq number; To from the response for the ACK."""
        cdef Message m2 = self.m2
        cdef perr_t err
        cdef char* out = self._slot()
        cdef Py_ssize_t w = 0, n
        cdef int i
        cdef hdr_t* h
        cdef bint ack = resp is not None
        cdef bint via_done = False
        m2.b = <const uint8_t*>c.bs[b].req.p
        m2.buflen = c.bs[b].req.len
        m2._reset()
        if m2._parse(&err, False, SLOT, DEFAULT_MAX_HEADERS_C, DEFAULT_MAX_LINE_C) < 0:
            self.dropped += 1
            return
        if ack:
            memcpy(out, b"ACK ", 4)
            w = 4
        else:
            memcpy(out, b"CANCEL ", 7)
            w = 7
        memcpy(out + w, m2.b + m2.sl_uri.off, m2.sl_uri.len)
        w += m2.sl_uri.len
        memcpy(out + w, b" SIP/2.0\r\n", 10)
        w += 10
        for i in range(m2.nhdr):
            h = &m2.hdrs[i]
            if h.hid == H_VIA:
                if via_done:
                    continue
                via_done = True
            elif h.hid == H_TO and ack:
                h = &resp.hdrs[resp.first[H_TO]]
                n = h.line_end - h.name_off
                if w + n + 128 > SLOT:
                    return
                memcpy(out + w, resp.b + h.name_off, n)
                w += n
                continue
            elif h.hid == H_CSEQ:
                memcpy(out + w, b"CSeq: ", 6)
                w += 6
                w += fmt_int(out + w, m2.cseq_num)
                if ack:
                    memcpy(out + w, b" ACK\r\n", 6)
                    w += 6
                else:
                    memcpy(out + w, b" CANCEL\r\n", 9)
                    w += 9
                continue
            elif h.hid != H_ROUTE and h.hid != H_FROM and h.hid != H_TO \
                    and h.hid != H_CALL_ID:
                continue
            n = h.line_end - h.name_off
            if w + n + 128 > SLOT:
                return
            memcpy(out + w, m2.b + h.name_off, n)
            w += n
        memcpy(out + w, b"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n", 39)
        w += 39
        if c.bs[b].tcp:
            self._tcp_send(&c.bs[b].dst, out, w)
        else:
            self._queue(w, &c.bs[b].dst, self.sfd)

    # -- responses ---------------------------------------------------------------

    cdef bint _via_is_ours(self, Message m, Py_ssize_t* x) noexcept:
        cdef perr_t err
        cdef hdr_t* h = &m.hdrs[m.first[H_VIA]]
        cdef Py_ssize_t vend = h.value_off + h.value_len
        cdef int port
        x[0] = list_element_end(m.b, h.value_off, vend)
        if x[0] < 0 or scan_via(m.b, h.value_off, x[0], &m.top_via, &err) < 0:
            return False
        port = m.top_via.port if m.top_via.port > 0 else 5060
        return (m.top_via.host.len == self.host_len
                and memcmp(m.b + m.top_via.host.off, self.host, self.host_len) == 0
                and (port == self.port or port == self.sport))

    cdef void _response(self, Message m, int fd) noexcept:
        cdef Py_ssize_t x
        cdef int64_t txn
        cdef int b
        cdef int32_t ci
        cdef cstore_t* c
        cdef fedit_t* e = &self.ed
        cdef Py_ssize_t total
        if not self._via_is_ours(m, &x):
            self.dropped += 1           # not ours (§16.7 step 1 / §18.1.2)
            return
        if not self.stateful or m.top_via.branch.off < 0 or parse_sf_branch(
                m.b + m.top_via.branch.off, m.top_via.branch.len, self.boot, &txn, &b) < 0:
            self._response_stateless(m)
            return
        ci = tx_cell_of(&self.t, txn)
        if ci < 0 or b >= self.cs[ci].nbs:
            if 200 <= m.status_code < 300 and span_ieq(m.b, m.cseq_meth, "invite", 6):
                self._response_stateless(m)     # a late 2xx retransmission
            else:
                self.dropped += 1
            return
        c = &self.cs[ci]
        self.t.nacts = 0
        if span_ieq(m.b, m.cseq_meth, "cancel", 6):
            tx_on_cancel_response(&self.t, txn, b, m.status_code, now_ms())
            self._run(m, NULL, fd)
            return
        # Keep this branch's response (our Via popped) for the decision.
        e.n = 0
        e.an = 0
        if fe_pop_element(e, m, H_VIA) < 0:
            self.dropped += 1
            return
        total = self._apply(m, self._slot())
        if total < 0 or buf_set(&c.bs[b].resp, self._slot(), total) < 0:
            self.dropped += 1
            return
        tx_on_response(&self.t, txn, b, m.status_code, now_ms())
        self._run(m, NULL, fd)

    cdef void _relayed_invite(self, Message m, via_t* nv) noexcept:
        """A response to an INVITE that _relay_new relayed with our Via (the
        Via under ours names it): hold the relay while the INVITE can still
        be CANCELled (a provisional: until the delegate's Timer C could end
        it, plus 64*T1) and 64*T1 after a final answer (its retransmissions
        and the ACK of a non-2xx)."""
        cdef char sentby[ADDR_TEXT + 8]
        cdef int sl
        cdef int64_t k, now
        if nv.branch.off < 0 or m.status_code < 101 \
                or not span_ieq(m.b, m.cseq_meth, "invite", 6):
            return
        sl = sent_by(m, nv, sentby)
        now = now_ms()
        k = dlg_find(&self.st, relay_key(m.b + nv.branch.off, nv.branch.len, sentby, sl), now)
        if k >= 0:
            self.st.e[k].expires = now + 64 * <int64_t>self.t.t1 + (
                self.t.tc if m.status_code < 200 else 0)

    cdef void _response_stateless(self, Message m) noexcept:
        """Pop our Via (top_via scanned) and send to the next Via's
        received/rport or sent-by (§16.11, §18.2.2)."""
        cdef fedit_t* e = &self.ed
        cdef perr_t err
        cdef hdr_t* h
        cdef Py_ssize_t x, vend, s
        cdef via_t nv
        cdef sockaddr_storage dst
        cdef int i, port
        cdef int64_t v
        cdef span_t host
        e.n = 0
        e.an = 0
        h = &m.hdrs[m.first[H_VIA]]
        vend = h.value_off + h.value_len
        x = list_element_end(m.b, h.value_off, vend)
        # The next Via: after a comma on this line, or the next Via line.
        s = -1
        if x < vend:
            s = skip_lws(m.b, x + 1, vend)
        else:
            for i in range(m.first[H_VIA] + 1, m.nhdr):
                if m.hdrs[i].hid == H_VIA:
                    h = &m.hdrs[i]
                    s = h.value_off
                    vend = h.value_off + h.value_len
                    break
        if s < 0:
            self.dropped += 1           # a response for us alone: stateless drops it
            return
        x = list_element_end(m.b, s, vend)
        if x < 0 or scan_via(m.b, s, x, &nv, &err) < 0:
            self.dropped += 1
            return
        if self.st.n > 0:
            self._relayed_invite(m, &nv)
        host = nv.received if nv.received.off >= 0 else nv.host
        port = nv.port if nv.port > 0 else 5060
        if nv.rport.off >= 0 and nv.rport.len > 0 and parse_uint(
                m.b, nv.rport.off, nv.rport.off + nv.rport.len, 65535, &v) == 0:
            port = <int>v
        if addr_from_host(m.b + host.off, host.len, port, &dst) < 0:
            self.dropped += 1
            return
        if fe_pop_element(e, m, H_VIA) < 0:
            self.dropped += 1
            return
        x = self._apply(m, self._slot())
        if x < 0:
            self.dropped += 1
            return
        if self.tcp_lfd >= 0 and nv.transport.len == 3 and span_ieq(m.b, nv.transport, "tcp", 3):
            # §18.2.2: over TCP, on the connection from that address (or a new one)
            self._tcp_send(&dst, self._slot(), x)
        else:
            self._queue(x, &dst, self.fd)
        self.forwarded_responses += 1

    # -- answers made here ------------------------------------------------------

    cdef void _reply(self, Message m, int status, perr_t* err,
                     sockaddr_storage* src, int fd, int64_t tagv) noexcept:
        """Answer request m statelessly (400 with the reason, 483, 404,
        503), sent back to where it came from (RFC 3581 symmetric
        response)."""
        cdef perr_t e2
        cdef Py_ssize_t n
        if m.sl_method.len == 3 and memcmp(m.b + m.sl_method.off, b"ACK", 3) == 0:
            self.dropped += 1               # an ACK is never answered
            return
        if err == NULL:
            fail(&e2, status, E_OK, -1)
            err = &e2
        n = self._build_reply(m, status, err, self._slot(), tagv)
        if n <= 0:
            self.dropped += 1
            return
        self._queue(n, src, fd)
        self.replied += 1

    cdef Py_ssize_t _build_reply(self, Message m, int status, perr_t* err, char* out,
                                 int64_t tagv, const char* extra=NULL,
                                 int extra_len=0) noexcept:
        """A response to m into out: its Via, From, To (our tag added to a
        final answer), Call-ID and CSeq lines (§8.2.6), the reason from err,
        Retry-After on a 503, then the extra header lines; 0 when m has no
        Via."""
        cdef Py_ssize_t w = 0, n
        cdef int i
        cdef hdr_t* h
        cdef bint have_via = False
        cdef char reason[128]
        cdef int rl = status_reason(err, status, reason, 128)
        cdef uint64_t tv = mix64(<uint64_t>tagv ^ self.tag_salt)
        memcpy(out, b"SIP/2.0 ", 8)
        w = 8
        out[w] = <char>(48 + status // 100)
        out[w + 1] = <char>(48 + status // 10 % 10)
        out[w + 2] = <char>(48 + status % 10)
        out[w + 3] = 32
        w += 4
        memcpy(out + w, reason, rl)
        w += rl
        memcpy(out + w, b"\r\n", 2)
        w += 2
        for i in range(m.nhdr):
            h = &m.hdrs[i]
            if status == 420 and h.hid == H_PROXY_REQUIRE and w + h.value_len + 160 < SLOT:
                # §20.40: the extensions not supported, as asked
                memcpy(out + w, b"Unsupported: ", 13)
                w += 13
                memcpy(out + w, m.b + h.value_off, h.value_len)
                w += h.value_len
                memcpy(out + w, b"\r\n", 2)
                w += 2
                continue
            if (h.hid < H_VIA or h.hid > H_CSEQ) and not (h.hid == H_TIMESTAMP and status == 100):
                continue
            n = h.line_end - h.name_off
            if w + n + 128 > SLOT:
                break
            if h.hid == H_VIA:
                have_via = True
            if h.hid == H_TO and status > 100 and not self._has_tag(m, h):
                # the To line without its line end, then our tag
                n = h.value_off + h.value_len - h.name_off
                memcpy(out + w, m.b + h.name_off, n)
                w += n
                memcpy(out + w, b";tag=sf", 7)
                w += 7
                for i in range(8):
                    out[w + i] = HEXDIGITS[(tv >> (60 - 4 * i)) & 15]
                w += 8
                n = h.line_end - (h.value_off + h.value_len)
                memcpy(out + w, m.b + h.value_off + h.value_len, n)
                w += n
                continue
            memcpy(out + w, m.b + h.name_off, n)
            w += n
        if not have_via:
            return 0
        if status == 503:
            memcpy(out + w, b"Retry-After: ", 13)
            w += 13
            w += fmt_int(out + w, self.retry_after)
            memcpy(out + w, b"\r\n", 2)
            w += 2
        elif status == 405 or (status == 200 and span_ieq(m.b, m.sl_method, "options", 7)):
            n = <Py_ssize_t>strlen(ALLOW_LINE)
            memcpy(out + w, ALLOW_LINE, n)
            w += n
        if extra_len > 0 and w + extra_len + 64 < SLOT:
            memcpy(out + w, extra, extra_len)
            w += extra_len
        memcpy(out + w, b"Server: sipfast\r\nContent-Length: 0\r\n\r\n", 38)
        w += 38
        return w

    cdef bint _our_to_tag(self, Message m) noexcept:
        """Whether the To tag is one this proxy gives its own answers
        ("sf" and 8 hex digits, _build_reply)."""
        cdef naddr_t na
        cdef perr_t err
        cdef hdr_t* h
        if m.first[H_TO] < 0:
            return False
        h = &m.hdrs[m.first[H_TO]]
        if scan_naddr(m.b, h.value_off, h.value_off + h.value_len, &na, &err, H_TO, False) < 0:
            return False
        return na.tag.len == 10 and m.b[na.tag.off] == 115 and m.b[na.tag.off + 1] == 102

    cdef bint _has_tag(self, Message m, hdr_t* h) noexcept:
        cdef naddr_t na
        cdef perr_t err
        if scan_naddr(m.b, h.value_off, h.value_off + h.value_len, &na, &err, H_TO, False) < 0:
            return False
        return na.tag.off >= 0


cdef void derived_branch(Message m, char* br) noexcept nogil:
    """§16.11: our branch (23 characters at br) derived from the request's
    own, so its retransmissions, its CANCEL and the ACK of a non-2xx get
    the same one (for a pre-3261 branch: from the Via, Call-ID,
    Request-URI and CSeq number, which those share)."""
    cdef uint64_t hv
    cdef hdr_t* h
    cdef int i
    if m.top_via.branch.off >= 0 and m.top_via.branch.len > 7:
        hv = fnv64(m.b + m.top_via.branch.off, m.top_via.branch.len, 14695981039346656037ULL)
    else:
        hv = fnv64(m.b + m.top_via.text.off, m.top_via.text.len, 14695981039346656037ULL)
        h = &m.hdrs[m.first[H_CALL_ID]]
        hv = fnv64(m.b + h.value_off, h.value_len, hv)
        hv = fnv64(m.b + m.sl_uri.off, m.sl_uri.len, hv)
        hv ^= <uint64_t>m.cseq_num
    hv = mix64(hv)
    memcpy(br, b"z9hG4bK", 7)
    for i in range(16):
        br[7 + i] = HEXDIGITS[(hv >> (60 - 4 * i)) & 15]


cdef inline int sent_by(Message m, via_t* v, char* out) noexcept nogil:
    """Via v's sent-by as "host:port" (the port 5060 when absent) at out
    (ADDR_TEXT + 8 bytes), the transaction key's part (§17.2.3); its length."""
    cdef int sl = v.host.len if v.host.len < ADDR_TEXT else ADDR_TEXT
    memcpy(out, m.b + v.host.off, sl)
    out[sl] = 58
    sl += 1
    return sl + fmt_int(out + sl, v.port if v.port > 0 else 5060)


cdef inline uint64_t relay_key(const uint8_t* branch, Py_ssize_t blen, const char* sentby,
                               int sl) noexcept nogil:
    """The key of a relay held in UdpProxy.st: the INVITE's branch and
    sent-by (§17.2.3), which its CANCEL and the ACK of a non-2xx share."""
    return fnv64(<const uint8_t*>sentby, sl, fnv64(branch, blen, 14695981039346656037ULL))


cdef inline int fmt_int(char* out, int64_t v) noexcept nogil:
    """v (>= 0) in decimal at out; the number of digits."""
    cdef char tmp[24]
    cdef int i = 24, n
    if v < 0:
        v = 0
    while True:
        i -= 1
        tmp[i] = <char>(48 + v % 10)
        v //= 10
        if v == 0:
            break
    n = 24 - i
    memcpy(out, tmp + i, n)
    return n


cdef int find_header(Message m, const char* lname, int n) noexcept nogil:
    """Index of the first header line named lname (given lower-case), or -1."""
    cdef int i, k
    cdef hdr_t* h
    for i in range(m.nhdr):
        h = &m.hdrs[i]
        if h.name_len != n:
            continue
        k = 0
        while k < n and LOWER[m.b[h.name_off + k]] == <uint8_t>lname[k]:
            k += 1
        if k == n:
            return i
    return -1


cdef int fmt_sip_uri(char* out, const sockaddr_storage* a, const char* user,
                     int ulen) noexcept nogil:
    """sip:[user@]host:port of an address (IPv6 in brackets); its length."""
    cdef char text[ADDR_TEXT]
    cdef int port, tl, w = 4
    tl = addr_text(a, text, &port)
    memcpy(out, b"sip:", 4)
    if user != NULL and 0 < ulen < 100:
        memcpy(out + w, user, ulen)
        w += ulen
        out[w] = 64
        w += 1
    if a.ss_family == AF_INET6:
        out[w] = 91
        w += 1
    memcpy(out + w, text, tl)
    w += tl
    if a.ss_family == AF_INET6:
        out[w] = 93
        w += 1
    out[w] = 58
    w += 1
    w += fmt_int(out + w, port)
    return w


cdef int check_header_lines(bytes lines) except -1:
    """Header lines the control plane adds: each 'Name: value' ending in
    CRLF, no other CR, LF or NUL (no way to break the message)."""
    if not lines:
        return 0
    if not lines.endswith(b"\r\n") or b"\x00" in lines:
        raise ValueError("header lines must end in CRLF and hold no NUL")
    for line in lines[:-2].split(b"\r\n"):
        if not line or b"\r" in line or b"\n" in line or b":" not in line \
                or line[:1] in (b" ", b"\t"):
            raise ValueError(f"not a header line: {line!r}")
    return 0


cdef int resp_status(bytes resp) except -1:
    """The status code of a response datagram built by the control plane."""
    if len(resp) < 12 or not resp.startswith(b"SIP/2.0 "):
        raise ValueError("not a response")
    return int(resp[8:11])


cdef int status_reason(perr_t* err, int status, char* out, int cap) noexcept nogil:
    """The reason phrase: the parse error's for a 400, else the status's."""
    cdef const char* fixed = NULL
    cdef int k
    if err != NULL and err.code != E_OK and err.code != E_MAX_FORWARDS_ZERO:
        return format_reason(err, out, cap)
    if status == 100:
        fixed = "Trying"
    elif status == 200:
        fixed = "OK"
    elif status == 302:
        fixed = "Moved Temporarily"
    elif status == 403:
        fixed = "Forbidden"
    elif status == 486:
        fixed = "Busy Here"
    elif status == 404:
        fixed = "Not Found"
    elif status == 405:
        fixed = "Method Not Allowed"
    elif status == 408:
        fixed = "Request Timeout"
    elif status == 416:
        fixed = "Unsupported URI Scheme"
    elif status == 420:
        fixed = "Bad Extension"
    elif status == 480:
        fixed = "Temporarily Unavailable"
    elif status == 482:
        fixed = "Loop Detected"
    elif status == 483:
        fixed = "Too Many Hops"
    elif status == 487:
        fixed = "Request Terminated"
    elif status == 500:
        fixed = "Server Internal Error"
    elif status == 503:
        fixed = "Service Unavailable"
    elif err != NULL:
        return format_reason(err, out, cap)
    else:
        fixed = "Unknown"
    k = <int>strlen(fixed)
    memcpy(out, fixed, min(k, cap))
    return min(k, cap)


cdef int format_reason(perr_t* err, char* out, int cap) noexcept nogil:
    """The reason phrase of a perr_t, in C (the text sip_error() gives)."""
    cdef const char* fixed = NULL
    cdef const char* pre = NULL
    cdef int n = 0, k
    if err.code == E_MISSING:
        pre = "Missing "
    elif err.code == E_DUPLICATE:
        pre = "Duplicate "
    elif err.code == E_MALFORMED:
        pre = "Malformed "
    if pre != NULL and 0 < err.hid < MAX_HIDS:
        k = <int>strlen(pre)
        memcpy(out, pre, k)
        n = k
        memcpy(out + n, HNAME_CANON[err.hid], HNAME_LEN[err.hid])
        n += HNAME_LEN[err.hid]
        memcpy(out + n, b" header", 7)
        return n + 7
    if err.status == 483:
        fixed = "Too Many Hops"
    elif err.status == 404:
        fixed = "Not Found"
    elif err.status == 505:
        fixed = "Version Not Supported"
    elif err.status == 513:
        fixed = "Message Too Large"
    elif err.status == 413:
        fixed = "Request Entity Too Large"
    elif err.code == E_CSEQ_METHOD:
        fixed = "CSeq method does not match request method"
    elif err.code == E_CONTROL:
        fixed = "Control character in header value"
    elif err.code == E_START_LINE or err.code == E_METHOD or err.code == E_RURI:
        fixed = "Malformed request line"
    else:
        fixed = "Bad Request"
    k = <int>strlen(fixed)
    memcpy(out, fixed, min(k, cap))
    return min(k, cap)
