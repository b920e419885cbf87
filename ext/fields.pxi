# C parsers for the structured fields: URI, name-addr, Via, parameter lists
# (RFC 3261 §19.1, §20, §25.1; RFC 5118 for IPv6 references), and the Python
# view classes over them.  Parsers validate as they go and record spans;
# views decode text only when a field is read.

cdef inline void span_clear(span_t* s) noexcept nogil:
    s.off = -1
    s.len = 0

cdef inline void span_set(span_t* s, Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    s.off = <int32_t>a
    s.len = <int32_t>(b - a)

cdef inline bint span_ieq(const uint8_t* b, span_t s, const char* lit, int n) noexcept nogil:
    cdef int i
    if s.len != n:
        return False
    for i in range(n):
        if LOWER[b[s.off + i]] != <uint8_t>lit[i]:
            return False
    return True

cdef int check_uri_chars(const uint8_t* b, Py_ssize_t p, Py_ssize_t end,
                         perr_t* err, int hid) noexcept nogil:
    """Every byte is a URI character and every '%' starts a valid escape."""
    while p < end:
        if not (CCLASS[b[p]] & C_URIC):
            return fail(err, 400, E_MALFORMED if hid else E_RURI, p, hid)
        if b[p] == 37:
            if p + 2 >= end or hexval(b[p + 1]) < 0 or hexval(b[p + 2]) < 0:
                return fail(err, 400, E_ESCAPE, p, hid)
            p += 3
            continue
        p += 1
    return 0

cdef int parse_host_port(const uint8_t* b, Py_ssize_t* pos, Py_ssize_t end,
                         span_t* host, int32_t* port, bint lws,
                         perr_t* err, int hid, int code) noexcept nogil:
    """host [":" port] at *pos: hostname, IPv4 or "[" IPv6 "]" (RFC 5118).
    With lws, LWS is allowed around the colon (Via sent-by)."""
    cdef Py_ssize_t p = pos[0], q, start = p
    cdef int64_t v
    if p < end and b[p] == 91:            # '['
        q = p + 1
        while q < end and (CCLASS[b[q]] & C_HEX or b[q] == 58 or b[q] == 46):
            q += 1
        if q >= end or b[q] != 93 or q == p + 1:
            return fail(err, 400, code, q, hid)
        p = q + 1
    else:
        while p < end and CCLASS[b[p]] & C_HOST:
            p += 1
        if p == start:
            return fail(err, 400, code, p, hid)
    span_set(host, start, p)
    port[0] = -1
    q = skip_lws(b, p, end) if lws else p
    if q < end and b[q] == 58:             # ':'
        q = skip_lws(b, q + 1, end) if lws else q + 1
        p = q
        while q < end and is_digit(b[q]):
            q += 1
        if q == p or q - p > 5 or parse_uint(b, p, q, 65535, &v) < 0 or v > 65535:
            return fail(err, 400, code, p, hid)
        port[0] = <int32_t>v
        p = q
    pos[0] = p
    return 0

cdef int scan_uri(const uint8_t* b, Py_ssize_t start, Py_ssize_t end, uri_t* u,
                  perr_t* err, int hid) noexcept nogil:
    """Parse a URI filling exactly [start, end).  hid names the header it
    came from for error reasons (0: the Request-URI)."""
    cdef Py_ssize_t p = start, q, at
    cdef const uint8_t* found
    cdef int code = E_MALFORMED if hid else E_RURI
    span_set(&u.text, start, end)
    span_clear(&u.user)
    span_clear(&u.password)
    span_clear(&u.host)
    span_clear(&u.params)
    span_clear(&u.headers)
    u.port = -1
    u.kind = 0
    if p >= end or not (CCLASS[b[p]] & C_ALPHA):
        return fail(err, 400, code, p, hid)
    while p < end and CCLASS[b[p]] & C_SCHEME:
        p += 1
    if p >= end or b[p] != 58:
        return fail(err, 400, code, p, hid)
    span_set(&u.scheme, start, p)
    if span_ieq(b, u.scheme, "sip", 3):
        u.kind = 1
    elif span_ieq(b, u.scheme, "sips", 4):
        u.kind = 2
    p += 1
    if u.kind == 0:
        # Unknown scheme: opaque, but it must still be one token of URI chars.
        if p >= end:
            return fail(err, 400, code, p, hid)
        while p < end:
            if b[p] <= 32 or b[p] >= 127 or b[p] == 60 or b[p] == 62 or b[p] == 34:
                return fail(err, 400, code, p, hid)
            p += 1
        return 0
    if check_uri_chars(b, p, end, err, hid) < 0:
        return -1
    found = <const uint8_t*>memchr(b + p, 64, end - p)
    at = found - b if found != NULL else -1
    if at >= 0:
        q = p
        while q < at and b[q] != 58:
            q += 1
        if q == p:
            return fail(err, 400, code, p, hid)     # empty user
        span_set(&u.user, p, q)
        if q < at:
            span_set(&u.password, q + 1, at)
        p = at + 1
    if parse_host_port(b, &p, end, &u.host, &u.port, False, err, hid, code) < 0:
        return -1
    if p < end and b[p] == 59:              # ';' uri-parameters
        found = <const uint8_t*>memchr(b + p + 1, 63, end - p - 1)
        q = found - b if found != NULL else end
        span_set(&u.params, p + 1, q)
        p = q
    if p < end and b[p] == 63:              # '?' headers
        span_set(&u.headers, p + 1, end)
        p = end
    if p != end:
        return fail(err, 400, code, p, hid)
    return 0

cdef int next_uri_param(const uint8_t* b, Py_ssize_t* pos, Py_ssize_t end, uint8_t sep,
                        span_t* name, span_t* value) noexcept nogil:
    """Next name[=value] of a URI's params (sep ';') or headers (sep '&').
    1 when one was read, 0 at the end."""
    cdef Py_ssize_t p = pos[0], q
    if p >= end:
        return 0
    q = p
    while q < end and b[q] != sep and b[q] != 61:
        q += 1
    span_set(name, p, q)
    if q < end and b[q] == 61:
        p = q + 1
        q = p
        while q < end and b[q] != sep:
            q += 1
        span_set(value, p, q)
    else:
        span_clear(value)
    pos[0] = q + 1 if q < end else end
    return 1

cdef int next_param(const uint8_t* b, Py_ssize_t* pos, Py_ssize_t end,
                    span_t* name, span_t* value) noexcept nogil:
    """Next ';' name [= value] of a header's generic-params (LWS allowed
    around ';' and '=', values are tokens, hosts or quoted strings).  1 when
    one was read, 0 at the end, -1 when malformed (*pos is the offset)."""
    cdef Py_ssize_t p = skip_lws(b, pos[0], end), q
    if p >= end:
        pos[0] = p
        return 0
    if b[p] != 59:
        pos[0] = p
        return -1
    p = skip_lws(b, p + 1, end)
    q = p
    while q < end and is_token(b[q]):
        q += 1
    if q == p:
        pos[0] = p
        return -1
    span_set(name, p, q)
    p = skip_lws(b, q, end)
    if p < end and b[p] == 61:
        p = skip_lws(b, p + 1, end)
        if p < end and b[p] == 34:
            q = skip_quoted(b, p, end)
            if q < 0:
                pos[0] = p
                return -1
        else:
            q = p
            while q < end and (is_token(b[q]) or b[q] == 58 or b[q] == 91 or b[q] == 93):
                q += 1
            if q == p:
                pos[0] = p
                return -1
        span_set(value, p, q)
        pos[0] = q
    else:
        span_clear(value)
        pos[0] = q
    return 1

cdef int scan_naddr(const uint8_t* b, Py_ssize_t start, Py_ssize_t end, naddr_t* na,
                    perr_t* err, int hid, bint check_uri=True) noexcept nogil:
    """name-addr or addr-spec with header params (From, To, Contact, Route,
    Record-Route): RFC 3261 §20.10, §25.1.  Without check_uri the URI is only
    delimited (scanned when first read: a proxy reading a tag needs no URI)."""
    cdef Py_ssize_t p, q, uend, ustart
    cdef const uint8_t* found
    cdef span_t name, value
    cdef int r
    p = skip_lws(b, start, end)
    end = rtrim_lws(b, p, end)
    span_set(&na.text, p, end)
    span_clear(&na.display)
    span_clear(&na.params)
    span_clear(&na.tag)
    na.quoted = 0
    if p >= end:
        return fail(err, 400, E_MALFORMED, p, hid)
    if b[p] == 34:                          # quoted display-name
        q = skip_quoted(b, p, end)
        if q < 0:
            return fail(err, 400, E_MALFORMED, p, hid)
        span_set(&na.display, p, q)
        na.quoted = 1
        p = skip_lws(b, q, end)
        if p >= end or b[p] != 60:
            return fail(err, 400, E_MALFORMED, p, hid)
    elif b[p] != 60:
        q = p
        while q < end and (is_token(b[q]) or is_ws(b[q]) or b[q] == 13 or b[q] == 10):
            q += 1
        if q < end and b[q] == 60:          # token display-name
            span_set(&na.display, p, rtrim_lws(b, p, q))
            p = q
    if b[p] == 60:                          # '<' addr-spec '>'
        ustart = p + 1
        found = <const uint8_t*>memchr(b + ustart, 62, end - ustart)
        q = found - b if found != NULL else end
        if q >= end:
            return fail(err, 400, E_MALFORMED, q, hid)
        uend = q
        p = q + 1
    else:                                   # bare addr-spec: ends at ';' or LWS
        ustart = p
        q = p
        while q < end and b[q] != 59 and not is_ws(b[q]) and b[q] != 13 and b[q] != 10:
            q += 1
        uend = q
        p = q
    if check_uri:
        if scan_uri(b, ustart, uend, &na.uri, err, hid) < 0:
            return -1
        na.uri_done = 1
    else:
        if uend <= ustart:
            return fail(err, 400, E_MALFORMED, ustart, hid)
        span_set(&na.uri.text, ustart, uend)
        na.uri_done = 0
    q = skip_lws(b, p, end)
    if q < end:
        span_set(&na.params, q, end)
    while True:
        r = next_param(b, &p, end, &name, &value)
        if r == 0:
            break
        if r < 0:
            return fail(err, 400, E_MALFORMED, p, hid)
        if span_ieq(b, name, "tag", 3):
            if value.off < 0 or b[value.off] == 34:
                return fail(err, 400, E_MALFORMED, name.off, hid)
            na.tag = value
    return 0

cdef int scan_via(const uint8_t* b, Py_ssize_t start, Py_ssize_t end, via_t* v,
                  perr_t* err) noexcept nogil:
    """One Via value: sent-protocol LWS sent-by *(SEMI via-params)
    (RFC 3261 §20.42, RFC 3581 rport)."""
    cdef Py_ssize_t p, q, pstart
    cdef span_t name, value
    cdef int r
    cdef int64_t num
    p = skip_lws(b, start, end)
    end = rtrim_lws(b, p, end)
    span_set(&v.text, p, end)
    span_clear(&v.params)
    span_clear(&v.branch)
    span_clear(&v.received)
    span_clear(&v.rport)
    span_clear(&v.maddr)
    span_clear(&v.ttl)
    pstart = p
    # protocol-name SLASH protocol-version SLASH transport
    for r in range(3):
        q = p
        while q < end and is_token(b[q]):
            q += 1
        if q == p:
            return fail(err, 400, E_MALFORMED, p, H_VIA)
        if r == 1:
            span_set(&v.protocol, pstart, q)
        if r == 2:
            span_set(&v.transport, p, q)
            p = q
            break
        p = skip_lws(b, q, end)
        if p >= end or b[p] != 47:
            return fail(err, 400, E_MALFORMED, p, H_VIA)
        p = skip_lws(b, p + 1, end)
    q = skip_lws(b, p, end)
    if q == p:
        return fail(err, 400, E_MALFORMED, p, H_VIA)
    p = q
    if parse_host_port(b, &p, end, &v.host, &v.port, True, err, H_VIA, E_MALFORMED) < 0:
        return -1
    q = skip_lws(b, p, end)
    if q < end:
        span_set(&v.params, q, end)
    while True:
        r = next_param(b, &p, end, &name, &value)
        if r == 0:
            break
        if r < 0:
            return fail(err, 400, E_MALFORMED, p, H_VIA)
        if span_ieq(b, name, "branch", 6):
            if value.off < 0:
                return fail(err, 400, E_MALFORMED, name.off, H_VIA)
            v.branch = value
        elif span_ieq(b, name, "received", 8):
            if value.off < 0:
                return fail(err, 400, E_MALFORMED, name.off, H_VIA)
            v.received = value
        elif span_ieq(b, name, "rport", 5):
            if value.off < 0:
                span_set(&v.rport, name.off + 5, name.off + 5)
            else:
                # RFC 3581 §3: response-port = "rport" [EQUAL 1*DIGIT]
                if parse_uint(b, value.off, value.off + value.len, 65535, &num) < 0 \
                        or num > 65535:
                    return fail(err, 400, E_MALFORMED, value.off, H_VIA)
                v.rport = value
        elif span_ieq(b, name, "maddr", 5):
            v.maddr = value
        elif span_ieq(b, name, "ttl", 3):
            # §25.1: via-ttl = "ttl" EQUAL ttl, ttl = 1*3DIGIT ; 0 to 255
            if value.off < 0 or value.len > 3 or parse_uint(
                    b, value.off, value.off + value.len, 255, &num) < 0 or num > 255:
                return fail(err, 400, E_MALFORMED, name.off, H_VIA)
            v.ttl = value
    return 0

# ---------------------------------------------------------------------------
# Text helpers for the views.

cdef object unescape(const uint8_t* b, span_t s):
    """Text of a URI part with its %-escapes decoded (exactly once)."""
    cdef Py_ssize_t i, j
    cdef bytearray out
    if s.off < 0:
        return None
    if memchr(b + s.off, 37, s.len) == NULL:
        return decode(b, s.off, s.len)
    out = bytearray(s.len)
    i = s.off
    j = 0
    while i < s.off + s.len:
        if b[i] == 37 and i + 2 < s.off + s.len and hexval(b[i + 1]) >= 0 \
                and hexval(b[i + 2]) >= 0:
            out[j] = hexval(b[i + 1]) * 16 + hexval(b[i + 2])
            i += 3
        else:
            out[j] = b[i]
            i += 1
        j += 1
    return bytes(out[:j]).decode("utf-8", "surrogateescape")

cdef object unquote(const uint8_t* b, span_t s):
    """A quoted-string's content with quoted-pairs resolved."""
    cdef Py_ssize_t i, e
    cdef bytearray out
    if s.off < 0:
        return None
    out = bytearray()
    i = s.off + 1
    e = s.off + s.len - 1
    while i < e:
        if b[i] == 92 and i + 1 < e:
            i += 1
        elif b[i] == 13 or b[i] == 10:      # a line fold inside the quotes
            i = skip_lws(b, i, e)
            out.append(32)
            continue
        out.append(b[i])
        i += 1
    return bytes(out).decode("utf-8", "surrogateescape")

cdef object unfold(const uint8_t* b, Py_ssize_t off, Py_ssize_t n):
    """Header text with each line fold (CRLF/LF + WSP) turned into one SP."""
    cdef bytes raw = PyBytes_FromStringAndSize(<const char*>b + off, n)
    if b"\n" not in raw:
        return raw.decode("utf-8", "surrogateescape")
    import re
    return re.sub(rb"[ \t]*\r?\n[ \t]+", b" ", raw).decode("utf-8", "surrogateescape")

cdef object param_value(const uint8_t* b, span_t v):
    if v.off < 0:
        return None
    if v.len and b[v.off] == 34:
        return unquote(b, v)
    return decode(b, v.off, v.len)

cdef dict header_params(const uint8_t* b, span_t params):
    """generic-params as a dict: names lower-cased, flags map to None."""
    cdef dict out = {}
    cdef Py_ssize_t p
    cdef span_t name, value
    if params.off < 0:
        return out
    p = params.off
    while next_param(b, &p, params.off + params.len, &name, &value) == 1:
        out[decode(b, name.off, name.len).lower()] = param_value(b, value)
    return out

cdef object find_header_param(const uint8_t* b, span_t params, str key):
    cdef bytes k = key.lower().encode()
    cdef Py_ssize_t p
    cdef span_t name, value
    if params.off < 0:
        return None
    p = params.off
    while next_param(b, &p, params.off + params.len, &name, &value) == 1:
        if span_ieq(b, name, <const char*>k, len(k)):
            return "" if value.off < 0 else param_value(b, value)
    return None

# ---------------------------------------------------------------------------
# Views.  Each holds the object that owns the buffer (a Message or a bytes
# object) so the pointer stays valid for the view's life.


@cython.final
@cython.freelist(32)
cdef class URI:
    """A parsed URI (sip/sips split into parts, other schemes opaque)."""
    cdef object owner
    cdef const uint8_t* b
    cdef uri_t u

    def __init__(self, *args, **kwargs):
        raise TypeError("use sipfast.parse_uri() or a Message field")

    @property
    def text(self):
        return decode(self.b, self.u.text.off, self.u.text.len)

    @property
    def scheme(self):
        return decode(self.b, self.u.scheme.off, self.u.scheme.len).lower()

    @property
    def is_sip(self):
        return self.u.kind != 0

    @property
    def user(self):
        return unescape(self.b, self.u.user)

    @property
    def password(self):
        return unescape(self.b, self.u.password)

    @property
    def host(self):
        return span_str(self.b, self.u.host)

    @property
    def port(self):
        return None if self.u.port < 0 else self.u.port

    @property
    def params(self):
        cdef dict out = {}
        cdef Py_ssize_t p
        cdef span_t name, value
        if self.u.params.off < 0:
            return out
        p = self.u.params.off
        while next_uri_param(self.b, &p, self.u.params.off + self.u.params.len, 59,
                             &name, &value):
            if name.len:
                out[unescape(self.b, name).lower()] = unescape(self.b, value)
        return out

    def param(self, str name):
        """One uri-parameter by case-insensitive name ('' for a flag)."""
        v = self.params.get(name.lower(), 0)
        if v == 0:
            return None
        return "" if v is None else v

    @property
    def headers(self):
        cdef dict out = {}
        cdef Py_ssize_t p
        cdef span_t name, value
        if self.u.headers.off < 0:
            return out
        p = self.u.headers.off
        while next_uri_param(self.b, &p, self.u.headers.off + self.u.headers.len, 38,
                             &name, &value):
            if name.len:
                out[unescape(self.b, name)] = unescape(self.b, value) or ""
        return out

    def __str__(self):
        return self.text

    def __repr__(self):
        return f"<URI {self.text!r}>"

    def __eq__(self, other):
        if isinstance(other, URI):
            return self.text == other.text
        return NotImplemented

    def __hash__(self):
        return hash(self.text)

cdef URI make_uri(object owner, const uint8_t* b, uri_t* u):
    cdef URI o = URI.__new__(URI)
    o.owner = owner
    o.b = b
    o.u = u[0]
    return o


@cython.final
@cython.freelist(32)
cdef class NameAddr:
    """``[display] <uri>;params`` of From, To, Contact, Route, Record-Route."""
    cdef object owner
    cdef const uint8_t* b
    cdef int hid
    cdef naddr_t na

    def __init__(self, *args, **kwargs):
        raise TypeError("use sipfast.parse_name_addr() or a Message field")

    @property
    def text(self):
        return unfold(self.b, self.na.text.off, self.na.text.len)

    @property
    def display(self):
        if self.na.display.off < 0:
            return None
        if self.na.quoted:
            return unquote(self.b, self.na.display)
        return unfold(self.b, self.na.display.off, self.na.display.len)

    @property
    def uri(self):
        cdef perr_t err
        if not self.na.uri_done:
            if scan_uri(self.b, self.na.uri.text.off, self.na.uri.text.off + self.na.uri.text.len,
                        &self.na.uri, &err, self.hid) < 0:
                raise sip_error(&err)
            self.na.uri_done = 1
        return make_uri(self.owner, self.b, &self.na.uri)

    @property
    def params(self):
        return header_params(self.b, self.na.params)

    def param(self, str name):
        """One header parameter by case-insensitive name ('' for a flag)."""
        return find_header_param(self.b, self.na.params, name)

    @property
    def tag(self):
        return span_str(self.b, self.na.tag)

    def __str__(self):
        return self.text

    def __repr__(self):
        return f"<NameAddr {self.text!r}>"

cdef NameAddr make_naddr(object owner, const uint8_t* b, naddr_t* na, int hid=H_CONTACT):
    cdef NameAddr o = NameAddr.__new__(NameAddr)
    o.owner = owner
    o.b = b
    o.hid = hid
    o.na = na[0]
    return o


@cython.final
@cython.freelist(16)
cdef class Via:
    """One Via value (RFC 3261 §20.42; rport and received of RFC 3581)."""
    cdef object owner
    cdef const uint8_t* b
    cdef via_t v

    def __init__(self, *args, **kwargs):
        raise TypeError("use a Message's via/vias")

    @property
    def text(self):
        return unfold(self.b, self.v.text.off, self.v.text.len)

    @property
    def protocol(self):
        s = unfold(self.b, self.v.protocol.off, self.v.protocol.len)
        return "".join(s.split()).upper()

    @property
    def transport(self):
        return decode(self.b, self.v.transport.off, self.v.transport.len).upper()

    @property
    def host(self):
        return span_str(self.b, self.v.host)

    @property
    def port(self):
        return None if self.v.port < 0 else self.v.port

    @property
    def branch(self):
        return span_str(self.b, self.v.branch)

    @property
    def received(self):
        return param_value(self.b, self.v.received)

    @property
    def has_rport(self):
        return self.v.rport.off >= 0

    @property
    def rport(self):
        cdef int64_t n
        if self.v.rport.off < 0 or self.v.rport.len == 0:
            return None
        if parse_uint(self.b, self.v.rport.off, self.v.rport.off + self.v.rport.len,
                      65535, &n) < 0 or n > 65535:
            return None
        return n

    @property
    def maddr(self):
        return param_value(self.b, self.v.maddr)

    @property
    def ttl(self):
        cdef int64_t n
        if self.v.ttl.off < 0 or parse_uint(self.b, self.v.ttl.off,
                                            self.v.ttl.off + self.v.ttl.len, 255, &n) < 0:
            return None
        return n if n <= 255 else None

    @property
    def params(self):
        return header_params(self.b, self.v.params)

    def param(self, str name):
        """One Via parameter by case-insensitive name ('' for a flag)."""
        return find_header_param(self.b, self.v.params, name)

    def __str__(self):
        return self.text

    def __repr__(self):
        return f"<Via {self.text!r}>"

cdef Via make_via(object owner, const uint8_t* b, via_t* v):
    cdef Via o = Via.__new__(Via)
    o.owner = owner
    o.b = b
    o.v = v[0]
    return o


def parse_uri(text):
    """Parse a URI from str or bytes; raises SipError when malformed."""
    cdef bytes data = (text.encode("utf-8", "surrogateescape") if isinstance(text, str)
                       else bytes(text))
    cdef uri_t u
    cdef perr_t err
    cdef const uint8_t* b = <const uint8_t*>PyBytes_AS_STRING(data)
    if scan_uri(b, 0, len(data), &u, &err, 0) < 0:
        raise sip_error(&err)
    return make_uri(data, b, &u)


def parse_name_addr(text):
    """Parse a name-addr / addr-spec with params; raises SipError."""
    cdef bytes data = (text.encode("utf-8", "surrogateescape") if isinstance(text, str)
                       else bytes(text))
    cdef naddr_t na
    cdef perr_t err
    cdef const uint8_t* b = <const uint8_t*>PyBytes_AS_STRING(data)
    if scan_naddr(b, 0, len(data), &na, &err, H_CONTACT) < 0:
        raise sip_error(&err)
    return make_naddr(data, b, &na)
