# Building messages: a one-pass editor (edits are collected as "lumps" and
# applied into a new buffer; untouched bytes are copied as they were) and the
# response builder of RFC 3261 §8.2.6.

from cpython.unicode cimport PyUnicode_AsUTF8AndSize
import os as _os

# ---------------------------------------------------------------------------
# A growable C byte buffer.


ctypedef struct outbuf_t:
    char* p
    Py_ssize_t n
    Py_ssize_t cap


cdef int out_reserve(outbuf_t* o, Py_ssize_t extra) except -1:
    cdef Py_ssize_t cap
    cdef char* np
    if o.n + extra <= o.cap:
        return 0
    cap = max(o.cap * 2, o.n + extra, 256)
    np = <char*>realloc(o.p, cap)
    if np == NULL:
        raise MemoryError()
    o.p = np
    o.cap = cap
    return 0


cdef inline int out_put(outbuf_t* o, const char* s, Py_ssize_t n) except -1:
    if o.n + n > o.cap:
        out_reserve(o, n)
    memcpy(o.p + o.n, s, n)
    o.n += n
    return 0


cdef inline int out_int(outbuf_t* o, int64_t v) except -1:
    cdef char tmp[24]
    cdef int i = 24
    if v < 0:
        out_put(o, "-", 1)
        v = -v
    while True:
        i -= 1
        tmp[i] = <char>(48 + v % 10)
        v //= 10
        if v == 0:
            break
    return out_put(o, tmp + i, 24 - i)


cdef const char* arg_text(object value, Py_ssize_t* n, const char* what) except NULL:
    """UTF-8 pointer of a str/bytes argument, refusing CR, LF and NUL."""
    cdef const char* s
    cdef Py_ssize_t i
    if isinstance(value, str):
        s = PyUnicode_AsUTF8AndSize(value, n)
    elif isinstance(value, bytes):
        s = PyBytes_AS_STRING(value)
        n[0] = PyBytes_GET_SIZE(value)
    else:
        raise TypeError(f"{what.decode()} must be str or bytes, not {type(value).__name__}")
    for i in range(n[0]):
        if s[i] == 13 or s[i] == 10 or s[i] == 0:
            raise ValueError(f"{what.decode()} must not contain CR, LF or NUL")
    return s


cdef inline int out_arg(outbuf_t* o, object value, const char* what) except -1:
    cdef Py_ssize_t n
    cdef const char* s = arg_text(value, &n, what)
    return out_put(o, s, n)


cdef int out_token(outbuf_t* o, object value, const char* what) except -1:
    """A header name or transport: must be a non-empty token."""
    cdef Py_ssize_t n, i
    cdef const char* s = arg_text(value, &n, what)
    if n == 0:
        raise ValueError(f"{what.decode()} must not be empty")
    for i in range(n):
        if not is_token(<uint8_t>s[i]):
            raise ValueError(f"{what.decode()} must be a token: {value!r}")
    return out_put(o, s, n)

# ---------------------------------------------------------------------------
# Branches (RFC 3261 §8.1.1.7): the magic cookie and 64 bits that are unique
# in this process (a counter through a bijective mixer) and random across
# processes (a salt from the OS).


cdef uint64_t _branch_counter = 0
cdef uint64_t _branch_salt = int.from_bytes(_os.urandom(8), "little")


cdef inline uint64_t mix64(uint64_t z) noexcept nogil:
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL
    return z ^ (z >> 31)


cdef int out_branch(outbuf_t* o) except -1:
    global _branch_counter
    cdef char tmp[23]
    cdef uint64_t v
    cdef int i
    _branch_counter += 1
    v = mix64(_branch_counter + _branch_salt)
    memcpy(tmp, b"z9hG4bK", 7)
    for i in range(16):
        tmp[7 + i] = b"0123456789abcdef"[(v >> (60 - 4 * i)) & 15]
    return out_put(o, tmp, 23)


def new_branch():
    """A fresh RFC 3261 branch: z9hG4bK + 16 hex digits."""
    cdef outbuf_t o
    o.p = NULL
    o.n = o.cap = 0
    try:
        out_branch(&o)
        return o.p[:o.n].decode("ascii")
    finally:
        free(o.p)

# ---------------------------------------------------------------------------
# The editor.


ctypedef struct lump_t:
    int32_t start       # replaced range of the original message
    int32_t end
    int32_t data_off    # replacement bytes in the editor's arena
    int32_t data_len
    int32_t seq


cdef enum:
    INLINE_LUMPS = 12


@cython.final
@cython.freelist(16)
cdef class Editor:
    """Edits against a Message, applied in one pass by build()."""
    cdef Message m
    cdef lump_t inline_lumps[INLINE_LUMPS]
    cdef lump_t* lumps
    cdef int nlumps, caplumps
    cdef outbuf_t arena
    cdef uint8_t popped_via, popped_route, mf_done, body_done

    def __cinit__(self, Message msg):
        self.m = msg
        self.lumps = self.inline_lumps
        self.caplumps = INLINE_LUMPS

    def __dealloc__(self):
        if self.lumps != self.inline_lumps:
            free(self.lumps)
        free(self.arena.p)

    cdef int _lump(self, Py_ssize_t start, Py_ssize_t end, Py_ssize_t data_off) except -1:
        """Record a lump replacing [start, end) with the arena bytes written
        since data_off."""
        cdef lump_t* nl
        if self.nlumps == self.caplumps:
            if self.lumps == self.inline_lumps:
                nl = <lump_t*>malloc(2 * self.caplumps * sizeof(lump_t))
                if nl != NULL:
                    memcpy(nl, self.inline_lumps, self.nlumps * sizeof(lump_t))
            else:
                nl = <lump_t*>realloc(self.lumps, 2 * self.caplumps * sizeof(lump_t))
            if nl == NULL:
                raise MemoryError()
            self.lumps = nl
            self.caplumps *= 2
        self.lumps[self.nlumps].start = <int32_t>start
        self.lumps[self.nlumps].end = <int32_t>end
        self.lumps[self.nlumps].data_off = <int32_t>data_off
        self.lumps[self.nlumps].data_len = <int32_t>(self.arena.n - data_off)
        self.lumps[self.nlumps].seq = self.nlumps
        self.nlumps += 1
        return 0

    cdef Py_ssize_t _pop_element(self, int hid) except -1:
        """Remove the first element of the first `hid` header: the whole line
        when it is alone on its line, else the element and its comma."""
        cdef Message m = self.m
        cdef int i = m.first[hid]
        cdef hdr_t* h
        cdef Py_ssize_t e, vend
        if i < 0:
            raise ValueError(f"no {HEADER_NAMES[hid]} header to remove")
        h = &m.hdrs[i]
        vend = h.value_off + h.value_len
        e = list_element_end(m.b, h.value_off, vend)
        if e < 0:
            raise SipError(400, f"Malformed {HEADER_NAMES[hid]} header", h.value_off)
        if e >= vend:
            return self._lump(h.name_off, h.line_end, self.arena.n)
        return self._lump(h.value_off, skip_lws(m.b, e + 1, vend), self.arena.n)

    def push_via(self, sent_by, transport="UDP", branch=None, bint rport=False, params=""):
        """Insert a new top Via line; returns its branch."""
        cdef Message m = self.m
        cdef Py_ssize_t start = self.arena.n, boff
        cdef Py_ssize_t at = m.hdrs[m.first[H_VIA]].name_off if m.first[H_VIA] >= 0 \
            else m.hdrs[0].name_off
        out_put(&self.arena, "Via: SIP/2.0/", 13)
        out_token(&self.arena, transport, "transport")
        out_put(&self.arena, " ", 1)
        out_arg(&self.arena, sent_by, "sent_by")
        out_put(&self.arena, ";branch=", 8)
        boff = self.arena.n
        if branch is None:
            out_branch(&self.arena)
        else:
            out_arg(&self.arena, branch, "branch")
        branch_str = decode(<const uint8_t*>self.arena.p, boff, self.arena.n - boff)
        if rport:
            out_put(&self.arena, ";rport", 6)
        if params:
            if not (isinstance(params, str) and params.startswith(";")
                    or isinstance(params, bytes) and params.startswith(b";")):
                out_put(&self.arena, ";", 1)
            out_arg(&self.arena, params, "params")
        out_put(&self.arena, "\r\n", 2)
        self._lump(at, at, start)
        return branch_str

    def pop_via(self):
        """Remove the top Via value (its whole line if it was alone)."""
        if self.popped_via:
            raise ValueError("pop_via() may be applied once per edit")
        self._pop_element(H_VIA)
        self.popped_via = 1

    def set_received(self, received, rport=None):
        """Set received and fill rport on the top Via (RFC 3581 §4; rport is
        filled only when the Via asked for it)."""
        cdef Message m = self.m
        cdef Py_ssize_t start, tend
        m._need_via()
        tend = m.top_via.text.off + m.top_via.text.len
        # rport first: when ;rport ends the Via both edits land on its end.
        if rport is not None and m.top_via.rport.off >= 0:
            if not 0 < rport < 65536:
                raise ValueError("rport must be a port number")
            start = self.arena.n
            if m.top_via.rport.len == 0:
                out_put(&self.arena, "=", 1)
            out_int(&self.arena, rport)
            self._lump(m.top_via.rport.off, m.top_via.rport.off + m.top_via.rport.len, start)
        if received is not None:
            start = self.arena.n
            if m.top_via.received.off >= 0:
                out_arg(&self.arena, received, "received")
                self._lump(m.top_via.received.off,
                           m.top_via.received.off + m.top_via.received.len, start)
            else:
                out_put(&self.arena, ";received=", 10)
                out_arg(&self.arena, received, "received")
                self._lump(tend, tend, start)

    def decrement_max_forwards(self):
        """Max-Forwards minus one; added as 70 when absent (§16.6 step 3).
        Returns the new value; SipError(483) when it is already 0."""
        cdef Message m = self.m
        cdef Py_ssize_t start = self.arena.n
        cdef hdr_t* h
        if self.mf_done:
            raise ValueError("decrement_max_forwards() may be applied once per edit")
        self.mf_done = 1
        if m.mf < 0:
            out_put(&self.arena, "Max-Forwards: 70\r\n", 18)
            self._lump(m.hdr_end, m.hdr_end, start)
            return 70
        if m.mf == 0:
            raise SipError(483, "Too Many Hops", -1)
        h = &m.hdrs[m.first[H_MAX_FORWARDS]]
        out_int(&self.arena, m.mf - 1)
        self._lump(h.value_off, h.value_off + h.value_len, start)
        return m.mf - 1

    def pop_route(self):
        """Remove the top Route value."""
        if self.popped_route:
            raise ValueError("pop_route() may be applied once per edit")
        self._pop_element(H_ROUTE)
        self.popped_route = 1

    def add_record_route(self, uri, bint lr=True):
        """Add Record-Route: <uri;lr> above any existing Record-Route."""
        cdef Message m = self.m
        cdef Py_ssize_t start = self.arena.n
        cdef Py_ssize_t at
        cdef int i
        if m.first[H_RECORD_ROUTE] >= 0:
            at = m.hdrs[m.first[H_RECORD_ROUTE]].name_off
        else:
            # No Record-Route yet: right after the last Via line, so that a
            # pushed Via and the Via stack stay together.
            at = m.hdrs[0].name_off
            for i in range(m.nhdr):
                if m.hdrs[i].hid == H_VIA:
                    at = m.hdrs[i].line_end
        out_put(&self.arena, "Record-Route: <", 15)
        out_arg(&self.arena, uri, "uri")
        if lr:
            out_put(&self.arena, ";lr", 3)
        out_put(&self.arena, ">\r\n", 3)
        self._lump(at, at, start)

    def set_uri(self, uri):
        """Replace the Request-URI."""
        cdef Message m = self.m
        cdef Py_ssize_t start = self.arena.n, i
        if not m.is_req:
            raise ValueError("a response has no Request-URI")
        out_arg(&self.arena, uri, "uri")
        for i in range(start, self.arena.n):
            if self.arena.p[i] == 32 or self.arena.p[i] == 9:
                raise ValueError("uri must not contain white space")
        if self.arena.n == start:
            raise ValueError("uri must not be empty")
        self._lump(m.sl_uri.off, m.sl_uri.off + m.sl_uri.len, start)

    cdef int _header_line(self, object name, object value, Py_ssize_t at) except -1:
        cdef Py_ssize_t start = self.arena.n
        out_token(&self.arena, name, "header name")
        out_put(&self.arena, ": ", 2)
        out_arg(&self.arena, value, "header value")
        out_put(&self.arena, "\r\n", 2)
        return self._lump(at, at, start)

    def add_header(self, name, value, bint top=False):
        """Add a header line at the end of the headers (or first when top)."""
        cdef Message m = self.m
        self._header_line(name, value, m.hdrs[0].name_off if top else m.hdr_end)

    cdef int _remove_all(self, object name) except -2:
        """Remove every line of `name`; the index of the first or -1."""
        cdef Message m = self.m
        cdef int hid, i, first
        cdef bytes k = m._key(name, &hid)
        first = i = m._find(k, hid, 0)
        while i >= 0:
            self._lump(m.hdrs[i].name_off, m.hdrs[i].line_end, self.arena.n)
            i = m._find(k, hid, i + 1)
        return first

    def set_header(self, name, value):
        """Replace every line of `name` by one line with `value`."""
        cdef Message m = self.m
        cdef int first = self._remove_all(name)
        self._header_line(name, value, m.hdrs[first].name_off if first >= 0 else m.hdr_end)

    def remove_header(self, name):
        """Remove every line of `name`."""
        self._remove_all(name)

    def set_body(self, body, content_type=None):
        """Replace the body; Content-Length fixed, Content-Type set if given."""
        cdef Message m = self.m
        cdef Py_ssize_t start = self.arena.n
        cdef const uint8_t[::1] view
        cdef hdr_t* h
        if self.body_done:
            raise ValueError("set_body() may be applied once per edit")
        self.body_done = 1
        view = memoryview(body).cast("B")
        if view.shape[0]:
            out_put(&self.arena, <const char*>&view[0], view.shape[0])
        self._lump(m.body_off, m.body_off + m.body_len, start)
        start = self.arena.n
        if m.first[H_CONTENT_LENGTH] >= 0:
            h = &m.hdrs[m.first[H_CONTENT_LENGTH]]
            out_int(&self.arena, view.shape[0])
            self._lump(h.value_off, h.value_off + h.value_len, start)
        else:
            out_put(&self.arena, "Content-Length: ", 16)
            out_int(&self.arena, view.shape[0])
            out_put(&self.arena, "\r\n", 2)
            self._lump(m.hdr_end, m.hdr_end, start)
        if content_type is not None:
            start = self.arena.n
            if m.first[H_CONTENT_TYPE] >= 0:
                h = &m.hdrs[m.first[H_CONTENT_TYPE]]
                out_arg(&self.arena, content_type, "content_type")
                self._lump(h.value_off, h.value_off + h.value_len, start)
            else:
                self._header_line("Content-Type", content_type, m.hdr_end)

    def build(self):
        """Apply the edits in one pass; returns the new message bytes."""
        cdef Message m = self.m
        cdef Py_ssize_t total = lumps_sort(self.lumps, self.nlumps, m.size)
        cdef bytes out
        if total < 0:
            raise ValueError("overlapping edits")
        out = PyBytes_FromStringAndSize(NULL, total)
        lumps_apply(m.b, m.size, self.lumps, self.nlumps, self.arena.p, PyBytes_AS_STRING(out))
        return out


cdef Py_ssize_t lumps_sort(lump_t* L, int n, Py_ssize_t size) noexcept nogil:
    """Sort lumps by (start, end, seq); the size of the edited message, or -1
    when two lumps overlap."""
    cdef int i, j
    cdef lump_t t
    cdef Py_ssize_t total = size, pos = 0
    # Insertion sort: few lumps, mostly in order already.
    for i in range(1, n):
        t = L[i]
        j = i - 1
        while j >= 0 and (L[j].start > t.start or (L[j].start == t.start and (
                L[j].end > t.end or (L[j].end == t.end and L[j].seq > t.seq)))):
            L[j + 1] = L[j]
            j -= 1
        L[j + 1] = t
    for i in range(n):
        if L[i].start < pos:
            return -1
        pos = L[i].end
        total += L[i].data_len - (L[i].end - L[i].start)
    return total


cdef void lumps_apply(const uint8_t* src, Py_ssize_t size, const lump_t* L, int n,
                      const char* arena, char* dst) noexcept nogil:
    """Copy src into dst with the sorted lumps applied (one pass)."""
    cdef Py_ssize_t pos = 0, w = 0
    cdef int i
    for i in range(n):
        memcpy(dst + w, src + pos, L[i].start - pos)
        w += L[i].start - pos
        memcpy(dst + w, arena + L[i].data_off, L[i].data_len)
        w += L[i].data_len
        pos = L[i].end
    memcpy(dst + w, src + pos, size - pos)


# ---------------------------------------------------------------------------
# Responses.


_REASON_PHRASES = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued",
    183: "Session Progress", 199: "Early Dialog Terminated",
    200: "OK", 202: "Accepted", 204: "No Notification",
    300: "Multiple Choices", 301: "Moved Permanently", 302: "Moved Temporarily",
    305: "Use Proxy", 380: "Alternative Service",
    400: "Bad Request", 401: "Unauthorized", 402: "Payment Required", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 406: "Not Acceptable",
    407: "Proxy Authentication Required", 408: "Request Timeout", 410: "Gone",
    412: "Conditional Request Failed", 413: "Request Entity Too Large",
    414: "Request-URI Too Long", 415: "Unsupported Media Type",
    416: "Unsupported URI Scheme", 417: "Unknown Resource-Priority", 420: "Bad Extension",
    421: "Extension Required", 422: "Session Interval Too Small", 423: "Interval Too Brief",
    428: "Use Identity Header", 429: "Provide Referrer Identity", 430: "Flow Failed",
    433: "Anonymity Disallowed", 436: "Bad Identity-Info", 437: "Unsupported Certificate",
    438: "Invalid Identity Header", 439: "First Hop Lacks Outbound Support",
    440: "Max-Breadth Exceeded", 469: "Bad Info Package", 470: "Consent Needed",
    480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist",
    482: "Loop Detected", 483: "Too Many Hops", 484: "Address Incomplete",
    485: "Ambiguous", 486: "Busy Here", 487: "Request Terminated",
    488: "Not Acceptable Here", 489: "Bad Event", 491: "Request Pending",
    493: "Undecipherable", 494: "Security Agreement Required",
    500: "Server Internal Error", 501: "Not Implemented", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Server Time-out", 505: "Version Not Supported",
    513: "Message Too Large", 555: "Push Notification Service Not Supported",
    580: "Precondition Failure",
    600: "Busy Everywhere", 603: "Decline", 604: "Does Not Exist Anywhere",
    606: "Not Acceptable", 607: "Unwanted", 608: "Rejected",
}


def reason_phrase(int status):
    """The default reason phrase for a status code ('' when unknown)."""
    return _REASON_PHRASES.get(status, "")


cdef inline int out_line(outbuf_t* o, Message m, int i) except -1:
    cdef hdr_t* h = &m.hdrs[i]
    return out_put(o, <const char*>m.b + h.name_off, h.line_end - h.name_off)


def make_response(Message request, int status, reason=None, *, to_tag=None, headers=(),
                  body=b"", content_type=None, bint copy_record_route=False):
    """Build a response to `request` (RFC 3261 §8.2.6): Via lines, From, To
    (with to_tag added when it has none), Call-ID, CSeq and, for a 100,
    Timestamp are copied; Record-Route too when copy_record_route;
    `headers` are appended and Content-Length set."""
    cdef Message m = request
    cdef outbuf_t o
    cdef int i
    cdef hdr_t* h
    cdef const uint8_t[::1] view
    if not m.is_req:
        raise ValueError("make_response() needs a request")
    if not 100 <= status <= 699:
        raise ValueError("status must be 100..699")
    if reason is None:
        reason = _REASON_PHRASES.get(status, "Unknown")
    view = memoryview(body).cast("B")
    o.p = NULL
    o.n = o.cap = 0
    try:
        out_reserve(&o, 512 + view.shape[0])
        out_put(&o, "SIP/2.0 ", 8)
        out_int(&o, status)
        out_put(&o, " ", 1)
        out_arg(&o, reason, "reason")
        out_put(&o, "\r\n", 2)
        for i in range(m.nhdr):
            h = &m.hdrs[i]
            if h.hid == H_VIA or h.hid == H_FROM or h.hid == H_CALL_ID or h.hid == H_CSEQ \
                    or (h.hid == H_TIMESTAMP and status == 100) \
                    or (h.hid == H_RECORD_ROUTE and copy_record_route):
                out_line(&o, m, i)
            elif h.hid == H_TO:
                if to_tag is not None and status > 100:
                    if not m.have_to:
                        m._need_naddr(H_TO)
                    if m.to_na.tag.off < 0:
                        out_put(&o, <const char*>m.b + h.name_off,
                                h.value_off + h.value_len - h.name_off)
                        out_put(&o, ";tag=", 5)
                        out_arg(&o, to_tag, "to_tag")
                        out_put(&o, <const char*>m.b + h.value_off + h.value_len,
                                h.line_end - h.value_off - h.value_len)
                        continue
                out_line(&o, m, i)
        for name, value in headers:
            out_token(&o, name, "header name")
            out_put(&o, ": ", 2)
            out_arg(&o, value, "header value")
            out_put(&o, "\r\n", 2)
        if content_type is not None:
            out_put(&o, "Content-Type: ", 14)
            out_arg(&o, content_type, "content_type")
            out_put(&o, "\r\n", 2)
        out_put(&o, "Content-Length: ", 16)
        out_int(&o, view.shape[0])
        out_put(&o, "\r\n\r\n", 4)
        if view.shape[0]:
            out_put(&o, <const char*>&view[0], view.shape[0])
        return PyBytes_FromStringAndSize(o.p, o.n)
    finally:
        free(o.p)


def error_response(data, exc):
    """The answer to a request that failed to parse (exc a SipError), built
    from whatever Via, From, To, Call-ID and CSeq lines can be found in the
    raw bytes; None when it cannot be answered: the message looked like a
    response, or it has no Via line to send the answer along (RFC 3261
    §18.2.2).  A To without a tag gets one (§8.2.6.2)."""
    cdef bytes raw = bytes(data)
    cdef list keep = []
    cdef set seen = set()
    cdef bint have_via = False, to_tagged = True
    cdef int hid
    cdef bytes line, name
    if not isinstance(exc, SipError):
        raise TypeError("exc must be a SipError")
    if exc.is_response:
        return None
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    lines = head.split(b"\n")[1:]
    i = 0
    while i < len(lines):
        line = lines[i]
        # continuation lines (folding) belong to the line before them
        while i + 1 < len(lines) and lines[i + 1][:1] in (b" ", b"\t"):
            i += 1
            line += b"\n" + lines[i]
        i += 1
        name = line.split(b":", 1)[0].strip()
        if b":" not in line or not name or len(name) > 64:
            continue
        hid = header_id(<const uint8_t*>PyBytes_AS_STRING(name), len(name))
        if hid not in (H_VIA, H_FROM, H_TO, H_CALL_ID, H_CSEQ):
            continue
        if hid != H_VIA and hid in seen:
            continue
        if b"\0" in line:
            continue
        seen.add(hid)
        line = line.rstrip(b"\r")
        if hid == H_VIA:
            have_via = True
        if hid == H_TO and b";tag=" not in line.replace(b" ", b"").lower():
            line += b";tag=" + new_branch()[7:].encode()
        keep.append(line + b"\r\n")
    if not have_via:
        return None
    reason = str(exc.reason).replace("\r", " ").replace("\n", " ")
    return (f"SIP/2.0 {int(exc.status)} {reason}\r\n".encode()
            + b"".join(keep) + b"Content-Length: 0\r\n\r\n")
