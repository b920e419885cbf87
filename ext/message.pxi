# The message parser: start line, header table and framing (RFC 3261 §7,
# §18.3, §20; RFC 5118), and the Message view over a parsed buffer.

cdef enum:
    DEFAULT_MAX_SIZE_C = 65535
    DEFAULT_MAX_HEADERS_C = 128
    DEFAULT_MAX_LINE_C = 8192

DEFAULT_MAX_SIZE = DEFAULT_MAX_SIZE_C
DEFAULT_MAX_HEADERS = DEFAULT_MAX_HEADERS_C
DEFAULT_MAX_LINE = DEFAULT_MAX_LINE_C

cdef int32_t CSEQ_LIMIT = 2147483647     # §8.1.1.5: less than 2**31
cdef int64_t EXPIRES_CAP = 4294967295    # §20.19: larger values mean 2**32-1

# Methods a proxy sees most often are returned as interned constants so that
# reading msg.method allocates nothing.
cdef tuple _METHODS = ("INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "PRACK",
                       "SUBSCRIBE", "NOTIFY", "PUBLISH", "INFO", "REFER", "MESSAGE",
                       "UPDATE")
cdef tuple _METHODS_B = tuple(m.encode() for m in _METHODS)

cdef inline str method_str(const uint8_t* b, span_t s):
    cdef Py_ssize_t i
    cdef bytes m
    for i in range(len(_METHODS_B)):
        m = <bytes>_METHODS_B[i]
        if PyBytes_GET_SIZE(m) == s.len and memcmp(PyBytes_AS_STRING(m), b + s.off, s.len) == 0:
            return <str>_METHODS[i]
    return decode(b, s.off, s.len)

cdef inline bint sip_version_2(const uint8_t* b, Py_ssize_t p, Py_ssize_t end) noexcept nogil:
    return (end - p == 7 and LOWER[b[p]] == 115 and LOWER[b[p + 1]] == 105
            and LOWER[b[p + 2]] == 112 and b[p + 3] == 47 and b[p + 4] == 50
            and b[p + 5] == 46 and b[p + 6] == 48)

cdef inline bint sip_version_like(const uint8_t* b, Py_ssize_t p, Py_ssize_t end) noexcept nogil:
    """SIP/1*DIGIT.1*DIGIT, any version."""
    cdef Py_ssize_t q
    if end - p < 7 or LOWER[b[p]] != 115 or LOWER[b[p + 1]] != 105 or LOWER[b[p + 2]] != 112 \
            or b[p + 3] != 47:
        return False
    q = p + 4
    while q < end and is_digit(b[q]):
        q += 1
    if q == p + 4 or q >= end or b[q] != 46:
        return False
    p = q + 1
    q = p
    while q < end and is_digit(b[q]):
        q += 1
    return q > p and q == end


@cython.final
@cython.freelist(64)
cdef class Message:
    """A parsed SIP request or response over the buffer it came from."""
    cdef object owner
    cdef Py_buffer view
    cdef bint has_view
    cdef const uint8_t* b
    cdef Py_ssize_t buflen
    cdef int32_t size
    cdef bint is_req
    cdef bint looks_response
    cdef int status_code
    cdef span_t sl_method, sl_uri, sl_version, sl_reason
    cdef hdr_t* hdrs
    cdef int nhdr, cap
    cdef int32_t first[MAX_HIDS]
    cdef int32_t hdr_end, body_off, body_len
    cdef int64_t cseq_num
    cdef span_t cseq_meth
    cdef int32_t cl, mf
    cdef uint8_t have_via, have_from, have_to, have_ruri
    cdef via_t top_via
    cdef naddr_t from_na, to_na
    cdef uri_t ruri
    cdef hdr_t inline_hdrs[SF_INLINE_HEADERS]

    def __init__(self, *args, **kwargs):
        raise TypeError("use sipfast.parse()")

    def __dealloc__(self):
        if self.hdrs != NULL and self.hdrs != self.inline_hdrs:
            free(self.hdrs)
        self.hdrs = NULL
        if self.has_view:
            PyBuffer_Release(&self.view)
            self.has_view = False

    # -- parsing -------------------------------------------------------------

    cdef void _reset(self) noexcept nogil:
        """Forget any earlier parse (the buffer stays attached)."""
        if self.hdrs != NULL and self.hdrs != self.inline_hdrs:
            free(self.hdrs)
        self.hdrs = self.inline_hdrs
        self.cap = SF_INLINE_HEADERS
        self.nhdr = 0
        self.cl = -1
        self.mf = -1
        self.size = 0
        self.status_code = 0
        self.is_req = False
        self.looks_response = False
        self.have_via = self.have_from = self.have_to = self.have_ruri = 0
        span_clear(&self.sl_method)
        span_clear(&self.sl_uri)
        memset(self.first, 0xff, sizeof(self.first))

    cdef int _grow(self) noexcept nogil:
        cdef hdr_t* nh
        cdef int ncap = self.cap * 2
        if self.hdrs == self.inline_hdrs:
            nh = <hdr_t*>malloc(ncap * sizeof(hdr_t))
            if nh != NULL:
                memcpy(nh, self.inline_hdrs, self.nhdr * sizeof(hdr_t))
        else:
            nh = <hdr_t*>realloc(self.hdrs, ncap * sizeof(hdr_t))
        if nh == NULL:
            return -1
        self.hdrs = nh
        self.cap = ncap
        return 0

    cdef int _start_line(self, Py_ssize_t p, Py_ssize_t lend, perr_t* err) noexcept nogil:
        cdef const uint8_t* b = self.b
        cdef Py_ssize_t q, r
        cdef int64_t code
        if lend - p >= 4 and LOWER[b[p]] == 115 and LOWER[b[p + 1]] == 105 \
                and LOWER[b[p + 2]] == 112 and b[p + 3] == 47:
            # Status-Line = SIP-Version SP Status-Code SP Reason-Phrase
            self.looks_response = True
            q = p
            while q < lend and b[q] != 32:
                q += 1
            if not sip_version_like(b, p, q):
                return fail(err, 400, E_VERSION, p)
            if not sip_version_2(b, p, q):
                return fail(err, 505, E_VERSION_UNSUPPORTED, p)
            span_set(&self.sl_version, p, q)
            if q >= lend or q + 4 > lend:
                return fail(err, 400, E_STATUS, q)
            r = q + 1
            if parse_uint(b, r, r + 3, 999, &code) < 0 or code < 100 or code > 699 \
                    or (r + 3 < lend and b[r + 3] != 32):
                return fail(err, 400, E_STATUS, r)
            self.status_code = <int>code
            r += 3
            if r < lend:
                r += 1
            span_set(&self.sl_reason, r, lend)
            for q in range(r, lend):
                if b[q] < 32 and b[q] != 9 or b[q] == 127:
                    return fail(err, 400, E_START_LINE, q)
            self.is_req = False
            return 0
        # Request-Line = Method SP Request-URI SP SIP-Version
        q = p
        while q < lend and is_token(b[q]):
            q += 1
        if q == p or q >= lend or b[q] != 32:
            return fail(err, 400, E_METHOD if q == p or b[q] != 32 else E_START_LINE, q)
        span_set(&self.sl_method, p, q)
        r = q + 1
        q = r
        while q < lend and b[q] > 32 and b[q] != 127:
            q += 1
        if q == r or q >= lend or b[q] != 32:
            return fail(err, 400, E_START_LINE if q == r or q >= lend else E_RURI, q)
        span_set(&self.sl_uri, r, q)
        # The R-URI must at least look like scheme ":" ...; parsed in full lazily.
        if not (CCLASS[b[r]] & C_ALPHA):
            return fail(err, 400, E_RURI, r)
        while r < q and CCLASS[b[r]] & C_SCHEME:
            r += 1
        if r >= q or b[r] != 58:
            return fail(err, 400, E_RURI, r)
        p = q + 1
        if not sip_version_2(b, p, lend):
            if sip_version_like(b, p, lend):
                return fail(err, 505, E_VERSION_UNSUPPORTED, p)
            return fail(err, 400, E_VERSION, p)
        span_set(&self.sl_version, p, lend)
        self.is_req = True
        return 0

    cdef int _parse(self, perr_t* err, bint stream, Py_ssize_t max_size, int max_headers,
                    Py_ssize_t max_line) noexcept nogil:
        cdef const uint8_t* b = self.b
        cdef Py_ssize_t n = self.buflen, p = 0, q, r, nl, line_end, vstart, vend
        cdef const uint8_t* f
        cdef int hid, i
        cdef hdr_t* h
        cdef int64_t v
        cdef Py_ssize_t avail
        cdef uint32_t hh
        if not stream and n > max_size:
            return fail(err, 513, E_TOO_LARGE, max_size)
        if n > max_size:
            n = max_size
        # §7.5: CRLFs before the start line are ignored.
        while p < n and (b[p] == 13 or b[p] == 10):
            p += 1
        if p >= n:
            return fail(err, 400, E_EMPTY, p)
        f = <const uint8_t*>memchr(b + p, 10, n - p)
        if f == NULL:
            if n - p > max_line:
                return fail(err, 513, E_LINE_TOO_LONG, p)
            return fail(err, 400, E_INCOMPLETE if n < self.buflen or n - p > 0 else E_EMPTY, n)
        nl = f - b
        if nl - p > max_line:
            return fail(err, 513, E_LINE_TOO_LONG, p)
        q = nl - 1 if nl > p and b[nl - 1] == 13 else nl
        if self._start_line(p, q, err) < 0:
            return -1
        p = nl + 1
        # Header lines.
        while True:
            if p >= n:
                return fail(err, 513 if n < self.buflen else 400,
                            E_TOO_LARGE if n < self.buflen else E_INCOMPLETE, p)
            if b[p] == 10:
                self.hdr_end = <int32_t>p
                self.body_off = <int32_t>(p + 1)
                break
            if b[p] == 13:
                if p + 1 < n and b[p + 1] == 10:
                    self.hdr_end = <int32_t>p
                    self.body_off = <int32_t>(p + 2)
                    break
                return fail(err, 400, E_HEADER_LINE, p)
            q = p
            hh = 2166136261u        # name_hash() computed during the scan
            while q < n and is_token(b[q]):
                hh = (hh ^ LOWER[b[q]]) * 16777619u
                q += 1
            if q == p or q - p > 65535:
                return fail(err, 400, E_HEADER_NAME, p)
            r = q
            while r < n and is_ws(b[r]):
                r += 1
            if r >= n or b[r] != 58:
                return fail(err, 400, E_HEADER_LINE, r)
            r += 1
            f = <const uint8_t*>memchr(b + r, 10, n - r)
            if f == NULL:
                return fail(err, 513 if n < self.buflen else 400,
                            E_TOO_LARGE if n < self.buflen else E_INCOMPLETE, n)
            nl = f - b
            if nl - p > max_line:
                return fail(err, 513, E_LINE_TOO_LONG, p)
            line_end = nl + 1
            folded = 0
            while line_end < n and is_ws(b[line_end]):     # §7.3.1 line folding
                folded = 1
                f = <const uint8_t*>memchr(b + line_end, 10, n - line_end)
                if f == NULL:
                    return fail(err, 400, E_INCOMPLETE, n)
                if f - b - line_end > max_line:
                    return fail(err, 513, E_LINE_TOO_LONG, line_end)
                line_end = f - b + 1
            vstart = skip_lws(b, r, line_end)
            vend = rtrim_lws(b, vstart, line_end)
            r = find_ctl(b, vstart, vend)
            if r >= 0:
                return fail(err, 400, E_CONTROL, r)
            hid = header_id_hashed(b + p, q - p, hh)
            if hid and self.first[hid] >= 0 and HFLAGS[hid] & HF_SINGLE:
                return fail(err, 400, E_DUPLICATE, p, hid)
            if self.nhdr >= max_headers:
                return fail(err, 513, E_TOO_MANY_HEADERS, p)
            if self.nhdr == self.cap and self._grow() < 0:
                return fail(err, 513, E_TOO_MANY_HEADERS, p)
            h = &self.hdrs[self.nhdr]
            h.name_off = <uint32_t>p
            h.name_len = <uint16_t>(q - p)
            h.value_off = <uint32_t>vstart
            h.value_len = <uint32_t>(vend - vstart)
            h.line_end = <uint32_t>line_end
            h.hid = <uint8_t>hid
            h.folded = folded
            if hid and self.first[hid] < 0:
                self.first[hid] = self.nhdr
            self.nhdr += 1
            p = line_end
        # Mandatory headers (§8.1.1) and their scalar values.
        for hid in range(H_VIA, H_CSEQ + 1):     # Via, From, To, Call-ID, CSeq
            if self.first[hid] < 0:
                return fail(err, 400, E_MISSING, self.hdr_end, hid)
        h = &self.hdrs[self.first[H_CALL_ID]]
        if h.value_len == 0:
            return fail(err, 400, E_MALFORMED, h.value_off, H_CALL_ID)
        # callid = word ["@" word]: no white space inside (CTLs are already
        # refused for every header value).
        f = <const uint8_t*>memchr(b + h.value_off, 32, h.value_len)
        if f == NULL:
            f = <const uint8_t*>memchr(b + h.value_off, 9, h.value_len)
        if f == NULL:
            f = <const uint8_t*>memchr(b + h.value_off, 127, h.value_len)
        if f != NULL:
            return fail(err, 400, E_MALFORMED, f - b, H_CALL_ID)
        # CSeq = 1*DIGIT LWS Method
        h = &self.hdrs[self.first[H_CSEQ]]
        p = h.value_off
        vend = h.value_off + h.value_len
        q = p
        while q < vend and is_digit(b[q]):
            q += 1
        if parse_uint(b, p, q, CSEQ_LIMIT, &v) < 0 or v > CSEQ_LIMIT:
            return fail(err, 400, E_MALFORMED, p, H_CSEQ)
        self.cseq_num = v
        r = skip_lws(b, q, vend)
        if r == q:
            return fail(err, 400, E_MALFORMED, q, H_CSEQ)
        q = r
        while q < vend and is_token(b[q]):
            q += 1
        if q == r or q != vend:
            return fail(err, 400, E_MALFORMED, q, H_CSEQ)
        span_set(&self.cseq_meth, r, q)
        if self.is_req and (self.cseq_meth.len != self.sl_method.len or memcmp(
                b + r, b + self.sl_method.off, self.sl_method.len) != 0):
            return fail(err, 400, E_CSEQ_METHOD, r, H_CSEQ)
        if self.first[H_MAX_FORWARDS] >= 0:
            h = &self.hdrs[self.first[H_MAX_FORWARDS]]
            if parse_uint(b, h.value_off, h.value_off + h.value_len, 2147483647, &v) < 0:
                return fail(err, 400, E_MALFORMED, h.value_off, H_MAX_FORWARDS)
            self.mf = <int32_t>min(v, 2147483647)
        # Framing (§18.3): Content-Length, or the datagram's end.
        avail = self.buflen - self.body_off
        if self.first[H_CONTENT_LENGTH] >= 0:
            h = &self.hdrs[self.first[H_CONTENT_LENGTH]]
            if parse_uint(b, h.value_off, h.value_off + h.value_len, 2147483647, &v) < 0:
                return fail(err, 400, E_MALFORMED, h.value_off, H_CONTENT_LENGTH)
            if v > max_size:
                return fail(err, 413, E_BODY_TOO_LARGE, h.value_off)
            if v > avail:
                return fail(err, 400, E_BODY_SHORT, self.buflen)
            self.cl = <int32_t>v
            self.body_len = <int32_t>v
        else:
            self.body_len = 0 if stream else <int32_t>avail
        self.size = self.body_off + self.body_len
        if self.size > max_size:
            return fail(err, 513, E_TOO_LARGE, max_size)
        return 0

    # -- header lookup ---------------------------------------------------------

    cdef int _find(self, bytes name, int hid, int start) noexcept:
        """Index of the next header line named `name` (id hid) from start."""
        cdef int i
        cdef hdr_t* h
        cdef const uint8_t* nb = <const uint8_t*>PyBytes_AS_STRING(name)
        cdef Py_ssize_t nn = PyBytes_GET_SIZE(name)
        if hid and start == 0:
            return self.first[hid]
        for i in range(start, self.nhdr):
            h = &self.hdrs[i]
            if hid:
                if h.hid == hid:
                    return i
            elif names_equal(self.b + h.name_off, h.name_len, nb, nn):
                return i
        return -1

    cdef str _value(self, int i):
        cdef hdr_t* h = &self.hdrs[i]
        if h.folded:
            return unfold(self.b, h.value_off, h.value_len)
        return decode(self.b, h.value_off, h.value_len)

    cdef list _elements(self, int hid, bytes name, bint strict=False):
        """(start, end) offsets of every element of a header, over repeated
        lines, split on commas for list headers.  Empty elements (an empty
        Allow:, or 'a, ,b') are skipped, or a SipError when strict (for the
        structured headers, whose grammar has no empty element)."""
        cdef list out = []
        cdef int i = self._find(name, hid, 0)
        cdef hdr_t* h
        cdef Py_ssize_t p, e, end, s
        while i >= 0:
            h = &self.hdrs[i]
            p = h.value_off
            end = h.value_off + h.value_len
            if hid and HFLAGS[hid] & HF_LIST:
                while True:
                    e = list_element_end(self.b, p, end)
                    s = skip_lws(self.b, p, e) if e >= 0 else p
                    if e < 0 or (strict and s >= e):
                        err_hid = hid
                        raise SipError(400, f"Malformed {HEADER_NAMES[err_hid]} header", s,
                                       not self.is_req)
                    if s < e:
                        out.append((s, rtrim_lws(self.b, s, e)))
                    if e >= end:
                        break
                    p = e + 1
            else:
                out.append((p, end))
            i = self._find(name, hid, i + 1)
        return out

    cdef inline bytes _key(self, object name, int* hid):
        cdef bytes k = (name.encode("utf-8", "surrogateescape") if isinstance(name, str)
                        else bytes(name))
        hid[0] = header_id(<const uint8_t*>PyBytes_AS_STRING(k), PyBytes_GET_SIZE(k))
        return k

    def get(self, name, default=None):
        """First value of header `name` (any case, long or compact form)."""
        cdef int hid
        cdef bytes k = self._key(name, &hid)
        cdef int i = self._find(k, hid, 0)
        cdef Py_ssize_t e
        cdef hdr_t* h
        if i < 0:
            return default
        h = &self.hdrs[i]
        if hid and HFLAGS[hid] & HF_LIST:
            e = list_element_end(self.b, h.value_off, h.value_off + h.value_len)
            if e >= 0 and e < h.value_off + h.value_len:
                e = rtrim_lws(self.b, h.value_off, e)
                return unfold(self.b, h.value_off, e - h.value_off)
        return self._value(i)

    def get_all(self, name):
        """Every value of `name` in order; list headers split on commas."""
        cdef int hid
        cdef bytes k = self._key(name, &hid)
        return [unfold(self.b, s, e - s) for s, e in self._elements(hid, k)]

    def __contains__(self, name):
        cdef int hid
        if not isinstance(name, (str, bytes)):
            return False
        cdef bytes k = self._key(name, &hid)
        return self._find(k, hid, 0) >= 0

    @property
    def headers(self):
        cdef int i
        cdef hdr_t* h
        return [(decode(self.b, self.hdrs[i].name_off, self.hdrs[i].name_len), self._value(i))
                for i in range(self.nhdr)]

    @property
    def header_count(self):
        return self.nhdr

    # -- start line --------------------------------------------------------------

    @property
    def is_request(self):
        return self.is_req

    @property
    def method(self):
        return method_str(self.b, self.sl_method if self.is_req else self.cseq_meth)

    @property
    def uri_text(self):
        return decode(self.b, self.sl_uri.off, self.sl_uri.len) if self.is_req else ""

    cdef int _need_ruri(self) except -1:
        cdef perr_t err
        if not self.have_ruri:
            if scan_uri(self.b, self.sl_uri.off, self.sl_uri.off + self.sl_uri.len,
                        &self.ruri, &err, 0) < 0:
                raise sip_error(&err)
            self.have_ruri = 1
        return 0

    @property
    def uri(self):
        if not self.is_req:
            return None
        self._need_ruri()
        return make_uri(self, self.b, &self.ruri)

    @property
    def version(self):
        return decode(self.b, self.sl_version.off, self.sl_version.len).upper()

    @property
    def status(self):
        return 0 if self.is_req else self.status_code

    @property
    def reason(self):
        return "" if self.is_req else decode(self.b, self.sl_reason.off, self.sl_reason.len)

    # -- structured fields -------------------------------------------------------

    cdef int _scan_top_via(self, perr_t* err) noexcept nogil:
        """Scan the first Via value into top_via (the Python accessors and
        the proxy loop share it); -1 with err filled when malformed."""
        cdef hdr_t* h = &self.hdrs[self.first[H_VIA]]
        cdef Py_ssize_t e = list_element_end(self.b, h.value_off, h.value_off + h.value_len)
        if e < 0:
            return fail(err, 400, E_MALFORMED, h.value_off, H_VIA)
        if scan_via(self.b, h.value_off, e, &self.top_via, err) < 0:
            return -1
        self.have_via = 1
        return 0

    cdef int _need_via(self) except -1:
        cdef perr_t err
        if not self.have_via and self._scan_top_via(&err) < 0:
            raise sip_error(&err, not self.is_req)
        return 0

    @property
    def via(self):
        self._need_via()
        return make_via(self, self.b, &self.top_via)

    @property
    def vias(self):
        cdef via_t v
        cdef perr_t err
        cdef list out = []
        for s, e in self._elements(H_VIA, b"via", True):
            if scan_via(self.b, s, e, &v, &err) < 0:
                raise sip_error(&err, not self.is_req)
            out.append(make_via(self, self.b, &v))
        return out

    @property
    def branch(self):
        self._need_via()
        return span_str(self.b, self.top_via.branch)

    cdef int _need_naddr(self, int hid) except -1:
        cdef perr_t err
        cdef hdr_t* h = &self.hdrs[self.first[hid]]
        cdef naddr_t* na = &self.from_na if hid == H_FROM else &self.to_na
        if scan_naddr(self.b, h.value_off, h.value_off + h.value_len, na, &err, hid,
                      False) < 0:
            raise sip_error(&err, not self.is_req)
        if hid == H_FROM:
            self.have_from = 1
        else:
            self.have_to = 1
        return 0

    @property
    def from_(self):
        if not self.have_from:
            self._need_naddr(H_FROM)
        return make_naddr(self, self.b, &self.from_na, H_FROM)

    @property
    def to(self):
        if not self.have_to:
            self._need_naddr(H_TO)
        return make_naddr(self, self.b, &self.to_na, H_TO)

    @property
    def from_tag(self):
        if not self.have_from:
            self._need_naddr(H_FROM)
        return span_str(self.b, self.from_na.tag)

    @property
    def to_tag(self):
        if not self.have_to:
            self._need_naddr(H_TO)
        return span_str(self.b, self.to_na.tag)

    @property
    def call_id(self):
        cdef hdr_t* h = &self.hdrs[self.first[H_CALL_ID]]
        return decode(self.b, h.value_off, h.value_len)

    @property
    def cseq(self):
        return self.cseq_num

    @property
    def cseq_method(self):
        return method_str(self.b, self.cseq_meth)

    @property
    def max_forwards(self):
        return None if self.mf < 0 else self.mf

    cdef list _naddrs(self, int hid, bytes name, bint star_ok):
        cdef naddr_t na
        cdef perr_t err
        cdef list out = []
        for s, e in self._elements(hid, name, True):
            if star_ok and e - s == 1 and self.b[s] == 42:
                continue
            if scan_naddr(self.b, s, e, &na, &err, hid) < 0:
                raise sip_error(&err, not self.is_req)
            out.append(make_naddr(self, self.b, &na, hid))
        return out

    cdef NameAddr _first_naddr(self, int hid):
        cdef naddr_t na
        cdef perr_t err
        cdef hdr_t* h
        cdef Py_ssize_t e
        if self.first[hid] < 0:
            return None
        h = &self.hdrs[self.first[hid]]
        e = list_element_end(self.b, h.value_off, h.value_off + h.value_len)
        if e < 0:
            fail(&err, 400, E_MALFORMED, h.value_off, hid)
            raise sip_error(&err, not self.is_req)
        if hid == H_CONTACT and e - h.value_off == 1 and self.b[h.value_off] == 42:
            return None
        if scan_naddr(self.b, h.value_off, e, &na, &err, hid) < 0:
            raise sip_error(&err, not self.is_req)
        return make_naddr(self, self.b, &na, hid)

    @property
    def contact(self):
        return self._first_naddr(H_CONTACT)

    @property
    def contacts(self):
        return self._naddrs(H_CONTACT, b"contact", True)

    @property
    def contact_star(self):
        cdef hdr_t* h
        if self.first[H_CONTACT] < 0:
            return False
        h = &self.hdrs[self.first[H_CONTACT]]
        return h.value_len == 1 and self.b[h.value_off] == 42

    @property
    def route(self):
        return self._first_naddr(H_ROUTE)

    @property
    def routes(self):
        return self._naddrs(H_ROUTE, b"route", False)

    @property
    def record_routes(self):
        return self._naddrs(H_RECORD_ROUTE, b"record-route", False)

    @property
    def content_length(self):
        return self.cl if self.cl >= 0 else self.body_len

    @property
    def content_type(self):
        return None if self.first[H_CONTENT_TYPE] < 0 else self._value(self.first[H_CONTENT_TYPE])

    @property
    def expires(self):
        cdef int64_t v
        cdef hdr_t* h
        if self.first[H_EXPIRES] < 0:
            return None
        h = &self.hdrs[self.first[H_EXPIRES]]
        if parse_uint(self.b, h.value_off, h.value_off + h.value_len, EXPIRES_CAP, &v) < 0:
            raise SipError(400, "Malformed Expires header", h.value_off, not self.is_req)
        return min(v, EXPIRES_CAP)

    @property
    def body(self):
        return PyBytes_FromStringAndSize(<const char*>self.b + self.body_off, self.body_len)

    @property
    def body_offset(self):
        return self.body_off

    @property
    def size(self):
        return self.size

    def raw(self):
        """The message bytes (a copy of `size` bytes)."""
        return PyBytes_FromStringAndSize(<const char*>self.b, self.size)

    def validate(self):
        """Parse every structured field a proxy uses; raise SipError on the
        first malformed one."""
        if self.is_req:
            self._need_ruri()
        self.vias
        self.from_.uri
        self.to.uri
        self.contacts
        self.routes
        self.record_routes
        self.expires

    def to_dict(self):
        """Everything parsed, as JSON-ready Python data."""
        def na(x):
            return None if x is None else {
                "display": x.display, "uri": uri(x.uri), "params": x.params}

        def uri(u):
            if u is None:
                return None
            if not u.is_sip:
                return {"text": u.text, "scheme": u.scheme}
            return {"text": u.text, "scheme": u.scheme, "user": u.user,
                    "password": u.password, "host": u.host, "port": u.port,
                    "params": u.params, "headers": u.headers}

        d = {"type": "request" if self.is_req else "response", "version": self.version}
        if self.is_req:
            d["method"] = self.method
            d["uri"] = uri(self.uri)
        else:
            d["status"] = self.status
            d["reason"] = self.reason
        d["headers"] = [list(h) for h in self.headers]
        d["via"] = [{"protocol": v.protocol, "transport": v.transport, "host": v.host,
                     "port": v.port, "branch": v.branch, "received": v.received,
                     "rport": v.rport if v.rport is not None else v.has_rport,
                     "maddr": v.maddr, "params": v.params} for v in self.vias]
        d["from"] = na(self.from_)
        d["to"] = na(self.to)
        d["call_id"] = self.call_id
        d["cseq"] = {"seq": self.cseq, "method": self.cseq_method}
        d["max_forwards"] = self.max_forwards
        d["contact"] = "*" if self.contact_star else [na(c) for c in self.contacts]
        d["route"] = [na(r) for r in self.routes]
        d["record_route"] = [na(r) for r in self.record_routes]
        d["content_length"] = self.content_length
        d["content_type"] = self.content_type
        d["expires"] = self.expires
        d["body"] = self.body.decode("utf-8", "replace")
        return d

    def edit(self):
        """Start a set of edits, applied in one pass by Editor.build()."""
        return Editor(self)

    def __repr__(self):
        if self.is_req:
            return f"<Message {self.method} {self.uri_text}>"
        return f"<Message {self.status} {self.reason}>"


cdef inline int _attach(Message m, object data) except -1:
    if type(data) is bytes:
        m.owner = data
        m.b = <const uint8_t*>PyBytes_AS_STRING(data)
        m.buflen = PyBytes_GET_SIZE(data)
    else:
        PyObject_GetBuffer(data, &m.view, PyBUF_SIMPLE)
        m.has_view = True
        m.owner = data
        m.b = <const uint8_t*>m.view.buf
        m.buflen = m.view.len
    return 0


def parse(data, *, bint stream=False, Py_ssize_t max_size=DEFAULT_MAX_SIZE,
          int max_headers=DEFAULT_MAX_HEADERS, Py_ssize_t max_line=DEFAULT_MAX_LINE):
    """Parse one SIP message from a bytes-like object without copying it.

    Datagram framing by default (body cut to Content-Length, a shorter body
    is an error); stream=True frames by Content-Length (0 when absent).
    Raises SipError with the status code to answer."""
    cdef Message m = Message.__new__(Message)
    cdef perr_t err
    _attach(m, data)
    m._reset()
    if max_headers > 65535:
        max_headers = 65535
    if m._parse(&err, stream, max_size, max_headers, max_line) < 0:
        raise sip_error(&err, m.looks_response)
    return m


cdef int proxy_fields(Message m, perr_t* err) noexcept nogil:
    """Scan, in C, every field a proxy routes on: Request-URI, top Via,
    From and To tags, top Route and first Contact (results cached in m or
    discarded).  What the compiled proxy loop does per request."""
    cdef hdr_t* h
    cdef naddr_t na
    cdef Py_ssize_t e
    if m.is_req and scan_uri(m.b, m.sl_uri.off, m.sl_uri.off + m.sl_uri.len, &m.ruri,
                             err, 0) < 0:
        return -1
    m.have_ruri = m.is_req
    if m._scan_top_via(err) < 0:
        return -1
    h = &m.hdrs[m.first[H_FROM]]
    if scan_naddr(m.b, h.value_off, h.value_off + h.value_len, &m.from_na, err, H_FROM,
                  False) < 0:
        return -1
    m.have_from = 1
    h = &m.hdrs[m.first[H_TO]]
    if scan_naddr(m.b, h.value_off, h.value_off + h.value_len, &m.to_na, err, H_TO,
                  False) < 0:
        return -1
    m.have_to = 1
    cdef int hids[2]
    cdef int k, hid
    hids[0] = H_ROUTE
    hids[1] = H_CONTACT
    for k in range(2):
        hid = hids[k]
        if m.first[hid] >= 0:
            h = &m.hdrs[m.first[hid]]
            e = list_element_end(m.b, h.value_off, h.value_off + h.value_len)
            if e < 0:
                return fail(err, 400, E_MALFORMED, h.value_off, hid)
            if not (hid == H_CONTACT and e - h.value_off == 1 and m.b[h.value_off] == 42) \
                    and scan_naddr(m.b, h.value_off, e, &na, err, hid) < 0:
                return -1
    return 0


def bench_parse_loop(data, int n):
    """Benchmark helper: parse `data` n times into one reused Message and
    scan the proxy's fields in C (proxy_fields), creating no Python object
    per message.  Returns how many parsed; the figure of what the compiled
    proxy loop pays, beside parse() + Python property reads."""
    cdef Message m = Message.__new__(Message)
    cdef perr_t err
    cdef int i, ok = 0
    _attach(m, data)
    with nogil:
        for i in range(n):
            m._reset()
            if m._parse(&err, False, DEFAULT_MAX_SIZE_C, DEFAULT_MAX_HEADERS_C,
                        DEFAULT_MAX_LINE_C) == 0 and proxy_fields(m, &err) == 0:
                ok += 1
    return ok


cdef Py_ssize_t frame_c(const uint8_t* b, Py_ssize_t n, Py_ssize_t max_size,
                        perr_t* err) noexcept nogil:
    """frame() in C: the unit's length, 0 when more bytes are needed, -1
    with err filled (513, 413, 400) when the stream cannot be framed."""
    cdef Py_ssize_t p = 0, q, r, body = -1, ln, lim
    cdef int64_t cl = 0, v
    cdef const uint8_t* f
    cdef int hid
    if n and (b[0] == 13 or b[0] == 10):
        while p < n and (b[p] == 13 or b[p] == 10):
            p += 1
        return p
    # Find the blank line that ends the headers, reading each line once.
    while True:
        lim = min(n, max_size)
        f = <const uint8_t*>memchr(b + p, 10, lim - p) if p < lim else NULL
        if f == NULL:
            if n >= max_size:
                return fail(err, 513, E_TOO_LARGE, max_size)
            return 0
        q = f - b
        ln = q - p - (1 if q > p and b[q - 1] == 13 else 0)
        if ln == 0 and p > 0:
            body = q + 1
            break
        if p == 0:          # the start line: a method may be named "L"
            p = q + 1
            continue
        # The whole header line, continuation lines (§7.3.1) included.
        while q + 1 < lim and is_ws(b[q + 1]):
            f = <const uint8_t*>memchr(b + q + 1, 10, lim - q - 1)
            if f == NULL:
                break
            q = f - b
        # Content-Length (or compact l) header?
        r = p
        while r < q and is_token(b[r]):
            r += 1
        hid = header_id(b + p, r - p) if r > p else 0
        if hid == H_CONTENT_LENGTH:
            while r < q and is_ws(b[r]):
                r += 1
            if r >= q or b[r] != 58:
                return fail(err, 400, E_MALFORMED, r, H_CONTENT_LENGTH)
            r = skip_lws(b, r + 1, q + 1)
            if parse_uint(b, r, rtrim_lws(b, r, q + 1), 2147483647, &v) < 0:
                return fail(err, 400, E_MALFORMED, r, H_CONTENT_LENGTH)
            cl = v
        p = q + 1
    if cl > max_size:
        return fail(err, 413, E_BODY_TOO_LARGE, body)
    if body + cl > n:
        return 0
    return body + cl


def frame(data, *, Py_ssize_t max_size=DEFAULT_MAX_SIZE):
    """Stream framing (RFC 3261 §18.3): the length of the first unit in
    `data`, or 0 when more bytes are needed.  A unit is a whole message
    (headers and Content-Length bytes of body) or, when data starts with CR
    or LF, the run of CR/LF bytes (a keep-alive, RFC 5626 §3.5.1)."""
    cdef Py_buffer view
    cdef perr_t err
    cdef Py_ssize_t r
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        r = frame_c(<const uint8_t*>view.buf, view.len, max_size, &err)
        if r < 0:
            raise sip_error(&err)
        return r
    finally:
        PyBuffer_Release(&view)
