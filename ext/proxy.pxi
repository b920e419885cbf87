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
    cdef char tmp[24]
    cdef int i = 24
    while True:
        i -= 1
        tmp[i] = <char>(48 + v % 10)
        v //= 10
        if v == 0:
            break
    return fe_put(e, tmp + i, 24 - i)

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
# The loop.

@cython.final
cdef class UdpProxy:
    """Stateless UDP proxy on one bound, non-blocking socket.

    Requests: the top Via gets received/rport (RFC 3581), a Route naming
    this proxy is popped, Max-Forwards is decremented (483 at zero), a Via
    with a branch derived from the request's own (§16.11: retransmissions
    and the CANCEL get the same one) is pushed, a Record-Route is added on
    request (dialog-creating methods), and the request goes to the next
    Route, else the static next hop, else the Request-URI's IP literal.
    Responses: the top Via must be ours; it is popped and the response
    goes to the next Via's received/rport or sent-by.  Malformed requests
    are answered 400 with the reason; malformed responses are dropped.
    """
    cdef int fd
    cdef Message m
    cdef char* rxbuf
    cdef char* txbuf
    cdef mmsghdr rx[BATCH]
    cdef iovec rxv[BATCH]
    cdef sockaddr_storage rxa[BATCH]
    cdef mmsghdr tx[BATCH]
    cdef iovec txv[BATCH]
    cdef sockaddr_storage txa[BATCH]
    cdef int ntx
    cdef char host[ADDR_TEXT]
    cdef int host_len
    cdef int port
    cdef bint record_route
    cdef bint have_next
    cdef sockaddr_storage next_hop
    cdef fedit_t ed
    cdef readonly uint64_t received, sent, forwarded_requests, forwarded_responses
    cdef readonly uint64_t replied, dropped, malformed, send_errors

    def __cinit__(self):
        self.rxbuf = <char*>malloc(BATCH * SLOT)
        self.txbuf = <char*>malloc(BATCH * SLOT)
        if self.rxbuf == NULL or self.txbuf == NULL:
            raise MemoryError()

    def __dealloc__(self):
        free(self.rxbuf)
        free(self.txbuf)

    def __init__(self, int fd, str host, int port, next_hop=None, bint record_route=False):
        """fd: a bound non-blocking UDP socket; host/port: the address this
        proxy puts in its Via and Record-Route and recognises in Route;
        next_hop: (ip, port) of the static next hop or None."""
        cdef bytes h = host.encode()
        cdef int i
        if len(h) >= ADDR_TEXT - 2:
            raise ValueError("host too long")
        self.fd = fd
        if b":" in h and not h.startswith(b"["):
            h = b"[" + h + b"]"      # an IPv6 reference in Via/Record-Route
        memcpy(self.host, <char*>h, len(h))
        self.host_len = len(h)
        self.port = port
        self.record_route = record_route
        if next_hop is not None:
            nh = next_hop[0].encode()
            if addr_from_host(<const uint8_t*><char*>nh, len(nh), next_hop[1],
                              &self.next_hop) < 0:
                raise ValueError(f"next hop must be an IP address: {next_hop[0]!r}")
            self.have_next = True
        self.m = Message.__new__(Message)
        self.m.hdrs = self.m.inline_hdrs
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
        """Drain the socket (called by the event loop's add_reader)."""
        self._drain()

    def stats(self):
        """Counters since start, as a dict."""
        return {"received": self.received, "sent": self.sent,
                "forwarded_requests": self.forwarded_requests,
                "forwarded_responses": self.forwarded_responses,
                "replied": self.replied, "dropped": self.dropped,
                "malformed": self.malformed, "send_errors": self.send_errors}

    cdef void _drain(self) noexcept:
        cdef int n, i, rounds = 0
        while rounds < 64:          # bounded: let the event loop breathe
            rounds += 1
            for i in range(BATCH):
                self.rx[i].msg_hdr.msg_namelen = sizeof(sockaddr_storage)
                self.rx[i].msg_hdr.msg_flags = 0
            n = recvmmsg(self.fd, self.rx, BATCH, MSG_DONTWAIT, NULL)
            if n <= 0:
                break
            self.received += n
            for i in range(n):
                self._one(i, self.rx[i].msg_len)
            self._flush()
            if n < BATCH:
                break

    cdef void _flush(self) noexcept:
        cdef int done = 0, r
        while done < self.ntx:
            r = sendmmsg(self.fd, self.tx + done, self.ntx - done, MSG_DONTWAIT)
            if r <= 0:
                self.send_errors += self.ntx - done
                break
            done += r
            self.sent += r
        self.ntx = 0

    cdef char* _slot(self) noexcept:
        return self.txbuf + self.ntx * SLOT

    cdef void _queue(self, Py_ssize_t n, const sockaddr_storage* dst) noexcept:
        memcpy(&self.txa[self.ntx], dst, sizeof(sockaddr_storage))
        self.tx[self.ntx].msg_hdr.msg_namelen = addr_len(dst)
        self.txv[self.ntx].iov_len = n
        self.ntx += 1

    cdef void _one(self, int i, Py_ssize_t n) noexcept:
        cdef Message m = self.m
        cdef perr_t err
        cdef char* pkt = self.rxbuf + i * SLOT
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
                self._reply(m, err.status, &err, &self.rxa[i])
            return
        if m.is_req:
            self._request(m, &self.rxa[i])
        else:
            self._response(m)

    cdef bint _names_us(self, Message m, uri_t* u) noexcept:
        cdef int port = u.port if u.port > 0 else 5060
        return (port == self.port and u.host.len == self.host_len
                and memcmp(m.b + u.host.off, self.host, self.host_len) == 0)

    cdef void _request(self, Message m, sockaddr_storage* src) noexcept:
        cdef fedit_t* e = &self.ed
        cdef perr_t err
        cdef hdr_t* h
        cdef Py_ssize_t x, at, total
        cdef naddr_t route
        cdef sockaddr_storage dst
        cdef char srctext[ADDR_TEXT]
        cdef int srcport, srclen, start, i
        cdef bint routed = False
        cdef uint64_t hv
        e.n = 0
        e.an = 0
        # Top Via: RFC 3581 received / rport.
        if m._scan_top_via(&err) < 0:
            self._reply(m, 400, &err, src)
            return
        if m.mf == 0:
            if span_ieq(m.b, m.sl_method, "ack", 3):
                self.dropped += 1
            else:
                fail(&err, 483, E_MAX_FORWARDS_ZERO, -1)
                self._reply(m, 483, &err, src)
            return
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
        # Route: pop the top entry if it names us; the next one is the target.
        if m.first[H_ROUTE] >= 0:
            h = &m.hdrs[m.first[H_ROUTE]]
            x = list_element_end(m.b, h.value_off, h.value_off + h.value_len)
            if x < 0 or scan_naddr(m.b, h.value_off, x, &route, &err, H_ROUTE) < 0:
                fail(&err, 400, E_MALFORMED, h.value_off, H_ROUTE)
                self._reply(m, 400, &err, src)
                return
            if self._names_us(m, &route.uri):
                if fe_pop_element(e, m, H_ROUTE) < 0:
                    self.dropped += 1
                    return
                # the next Route: the rest of this line, or the next line
                if x < h.value_off + h.value_len:
                    at = skip_lws(m.b, x + 1, h.value_off + h.value_len)
                    routed = self._route_target(m, at, h.value_off + h.value_len, &dst)
                else:
                    for i in range(m.first[H_ROUTE] + 1, m.nhdr):
                        if m.hdrs[i].hid == H_ROUTE:
                            routed = self._route_target(
                                m, m.hdrs[i].value_off,
                                m.hdrs[i].value_off + m.hdrs[i].value_len, &dst)
                            break
            else:
                routed = self._route_target(m, h.value_off, x, &dst)
        if not routed:
            if self.have_next:
                memcpy(&dst, &self.next_hop, sizeof(sockaddr_storage))
            elif scan_uri(m.b, m.sl_uri.off, m.sl_uri.off + m.sl_uri.len, &m.ruri, &err, 0) < 0 \
                    or m.ruri.kind == 0 or self._names_us(m, &m.ruri) \
                    or addr_from_host(m.b + m.ruri.host.off, m.ruri.host.len,
                                      m.ruri.port if m.ruri.port > 0 else 5060, &dst) < 0:
                fail(&err, 404, E_OK, -1)
                self._reply(m, 404, &err, src)
                return
        # Max-Forwards minus one (70 when absent, §16.6 step 3).
        start = e.an
        if m.mf < 0:
            fe_put(e, "Max-Forwards: 70\r\n", 18)
            fe_lump(e, m.hdr_end, m.hdr_end, start)
        else:
            h = &m.hdrs[m.first[H_MAX_FORWARDS]]
            fe_int(e, m.mf - 1)
            fe_lump(e, h.value_off, h.value_off + h.value_len, start)
        # Our Via, with a branch derived from the request's own (§16.11).
        start = e.an
        fe_put(e, "Via: SIP/2.0/UDP ", 17)
        fe_put(e, self.host, self.host_len)
        fe_put(e, ":", 1)
        fe_int(e, self.port)
        fe_put(e, ";branch=z9hG4bK", 15)
        if m.top_via.branch.off >= 0 and m.top_via.branch.len > 7:
            hv = fnv64(m.b + m.top_via.branch.off, m.top_via.branch.len, 14695981039346656037ULL)
        else:
            hv = fnv64(m.b + m.top_via.text.off, m.top_via.text.len, 14695981039346656037ULL)
            h = &m.hdrs[m.first[H_CALL_ID]]
            hv = fnv64(m.b + h.value_off, h.value_len, hv)
            hv = fnv64(m.b + m.sl_uri.off, m.sl_uri.len, hv)
            hv ^= <uint64_t>m.cseq_num
        fe_hex64(e, mix64(hv))
        fe_put(e, ";rport\r\n", 8)
        at = m.hdrs[m.first[H_VIA]].name_off
        fe_lump(e, at, at, start)
        if self.record_route and (span_ieq(m.b, m.sl_method, "invite", 6)
                                  or span_ieq(m.b, m.sl_method, "subscribe", 9)
                                  or span_ieq(m.b, m.sl_method, "refer", 5)):
            start = e.an
            fe_put(e, "Record-Route: <sip:", 19)
            fe_put(e, self.host, self.host_len)
            fe_put(e, ":", 1)
            fe_int(e, self.port)
            fe_put(e, ";lr>\r\n", 6)
            at = m.hdrs[m.first[H_RECORD_ROUTE]].name_off if m.first[H_RECORD_ROUTE] >= 0 \
                else m.hdrs[m.first[H_VIA]].name_off
            fe_lump(e, at, at, start)
        if e.n == FE_LUMPS or e.an >= FE_ARENA - 1:
            self.dropped += 1
            return
        total = lumps_sort(e.lumps, e.n, m.size)
        if total < 0 or total > SLOT:
            self.dropped += 1
            return
        lumps_apply(m.b, m.size, e.lumps, e.n, e.arena, self._slot())
        self._queue(total, &dst)
        self.forwarded_requests += 1
        if self.ntx == BATCH:
            self._flush()

    cdef bint _route_target(self, Message m, Py_ssize_t s, Py_ssize_t end,
                            sockaddr_storage* dst) noexcept:
        """Destination of the Route value starting at s (an IP literal)."""
        cdef naddr_t na
        cdef perr_t err
        cdef Py_ssize_t x = list_element_end(m.b, s, end)
        if x < 0 or scan_naddr(m.b, s, x, &na, &err, H_ROUTE) < 0 or na.uri.kind == 0:
            return False
        return addr_from_host(m.b + na.uri.host.off, na.uri.host.len,
                              na.uri.port if na.uri.port > 0 else 5060, dst) == 0

    cdef void _response(self, Message m) noexcept:
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
        if x < 0 or scan_via(m.b, h.value_off, x, &m.top_via, &err) < 0 \
                or m.top_via.host.len != self.host_len \
                or memcmp(m.b + m.top_via.host.off, self.host, self.host_len) != 0 \
                or (m.top_via.port if m.top_via.port > 0 else 5060) != self.port:
            self.dropped += 1           # not ours (§16.7 step 1 / §18.1.2)
            return
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
        x = lumps_sort(e.lumps, e.n, m.size)
        if x < 0 or x > SLOT:
            self.dropped += 1
            return
        lumps_apply(m.b, m.size, e.lumps, e.n, e.arena, self._slot())
        self._queue(x, &dst)
        self.forwarded_responses += 1
        if self.ntx == BATCH:
            self._flush()

    cdef void _reply(self, Message m, int status, perr_t* err,
                     sockaddr_storage* src) noexcept:
        """Answer a request ourselves (400 with the reason, 483, 404): its
        Via, From, To (tag added), Call-ID and CSeq lines copied, sent back
        to where it came from (RFC 3581 symmetric response)."""
        cdef fedit_t* e = &self.ed
        cdef char* out = self._slot()
        cdef Py_ssize_t w = 0, n
        cdef int i
        cdef hdr_t* h
        cdef bint have_via = False
        cdef char reason[128]
        cdef int rl = format_reason(err, reason, 128)
        e.n = 0
        e.an = 0
        if m.sl_method.len == 3 and memcmp(m.b + m.sl_method.off, b"ACK", 3) == 0:
            self.dropped += 1               # an ACK is never answered
            return
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
            if h.hid < H_VIA or h.hid > H_CSEQ:
                continue
            n = h.line_end - h.name_off
            if w + n + 64 > SLOT:
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
                n = h.line_end - (h.value_off + h.value_len)
                memcpy(out + w, m.b + h.value_off + h.value_len, n)
                w += n
                continue
            memcpy(out + w, m.b + h.name_off, n)
            w += n
        if not have_via:
            self.dropped += 1
            return
        memcpy(out + w, b"Content-Length: 0\r\n\r\n", 21)
        w += 21
        self._queue(w, src)
        self.replied += 1
        if self.ntx == BATCH:
            self._flush()

    cdef bint _has_tag(self, Message m, hdr_t* h) noexcept:
        cdef naddr_t na
        cdef perr_t err
        if scan_naddr(m.b, h.value_off, h.value_off + h.value_len, &na, &err, H_TO, False) < 0:
            return False
        return na.tag.off >= 0


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
