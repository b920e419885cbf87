# Character classes, header ids and error codes of the message core.

# ---------------------------------------------------------------------------
# Character classes (RFC 3261 §25.1).  Filled once at import.
cdef enum:                     # compile-time constants, not module globals
    C_TOKEN = 1                # token chars: alphanum -.!%*_+`'~
    C_WS = 2                   # SP / HTAB
    C_DIGIT = 4
    C_HOST = 8                 # hostname / IPv4 chars: alphanum - . _
    C_URIC = 16                # unreserved / escaped / reserved, minus <>" etc.
    C_ALPHA = 32
    C_SCHEME = 64              # alphanum + - .
    C_HEX = 128

cdef uint8_t CCLASS[256]
cdef uint8_t LOWER[256]

cdef void _init_tables() noexcept:
    cdef int c
    memset(CCLASS, 0, 256)
    for c in range(256):
        LOWER[c] = c + 32 if 65 <= c <= 90 else c
    for c in range(256):
        if 48 <= c <= 57:
            CCLASS[c] |= C_TOKEN | C_DIGIT | C_HOST | C_URIC | C_SCHEME | C_HEX
        elif 65 <= c <= 90 or 97 <= c <= 122:
            CCLASS[c] |= C_TOKEN | C_HOST | C_URIC | C_ALPHA | C_SCHEME
            if c <= 70 or 97 <= c <= 102:
                CCLASS[c] |= C_HEX
    for c in b"-.!%*_+`'~":
        CCLASS[c] |= C_TOKEN
    for c in b"-._":
        CCLASS[c] |= C_HOST
    for c in b"+-.":
        CCLASS[c] |= C_SCHEME
    # Characters that may appear in a URI (RFC 3261 §25.1 / RFC 2396
    # unreserved, reserved, escaped, plus [] for IPv6 and the user chars).
    for c in b"-_.!~*'()%;/?:@&=+$,[]#":
        CCLASS[c] |= C_URIC
    CCLASS[32] |= C_WS
    CCLASS[9] |= C_WS

_init_tables()

cdef inline bint is_token(uint8_t c) noexcept nogil:
    return CCLASS[c] & C_TOKEN

cdef inline bint is_ws(uint8_t c) noexcept nogil:
    return c == 32 or c == 9

cdef inline bint is_digit(uint8_t c) noexcept nogil:
    return 48 <= c <= 57

cdef inline int hexval(uint8_t c) noexcept nogil:
    if 48 <= c <= 57:
        return c - 48
    c = LOWER[c]
    if 97 <= c <= 102:
        return c - 87
    return -1

# ---------------------------------------------------------------------------
# Header ids.  Known headers get a small id so the parser can index them;
# every other header is H_OTHER and kept opaque.  The order of this table is
# the id.  Flags: HF_LIST  the value may be a comma-separated list (§7.3.1),
#                 HF_SINGLE at most one line (a duplicate is a 400).
cdef enum:
    HF_LIST = 1
    HF_SINGLE = 2

cdef enum:
    H_OTHER = 0
    H_VIA
    H_FROM
    H_TO
    H_CALL_ID
    H_CSEQ
    H_MAX_FORWARDS
    H_CONTACT
    H_CONTENT_LENGTH
    H_CONTENT_TYPE
    H_ROUTE
    H_RECORD_ROUTE
    H_EXPIRES
    H_TIMESTAMP
    H_COUNT_FIXED    # ids below are looked up but have no dedicated accessor

_HEADERS = [
    # canonical name, compact form, flags
    ("", b"", 0),
    ("Via", b"v", HF_LIST),
    ("From", b"f", HF_SINGLE),
    ("To", b"t", HF_SINGLE),
    ("Call-ID", b"i", HF_SINGLE),
    ("CSeq", b"", HF_SINGLE),
    ("Max-Forwards", b"", HF_SINGLE),
    ("Contact", b"m", HF_LIST),
    ("Content-Length", b"l", HF_SINGLE),
    ("Content-Type", b"c", HF_SINGLE),
    ("Route", b"", HF_LIST),
    ("Record-Route", b"", HF_LIST),
    ("Expires", b"", HF_SINGLE),
    ("Timestamp", b"", 0),
    ("-", b"", 0),  # H_COUNT_FIXED placeholder, never matched
    ("Content-Encoding", b"e", HF_LIST),
    ("Subject", b"s", 0),
    ("Supported", b"k", HF_LIST),
    ("Event", b"o", 0),
    ("Refer-To", b"r", 0),
    ("Referred-By", b"b", 0),
    ("Allow-Events", b"u", HF_LIST),
    ("Session-Expires", b"x", 0),
    ("Identity", b"y", 0),
    ("Accept-Contact", b"a", HF_LIST),
    ("Reject-Contact", b"j", HF_LIST),
    ("Request-Disposition", b"d", HF_LIST),
    ("Identity-Info", b"n", 0),
    ("Allow", b"", HF_LIST),
    ("Require", b"", HF_LIST),
    ("Proxy-Require", b"", HF_LIST),
    ("Unsupported", b"", HF_LIST),
    ("Accept", b"", HF_LIST),
    ("Accept-Encoding", b"", HF_LIST),
    ("Accept-Language", b"", HF_LIST),
    ("Alert-Info", b"", HF_LIST),
    ("Call-Info", b"", HF_LIST),
    ("Error-Info", b"", HF_LIST),
    ("In-Reply-To", b"", HF_LIST),
    ("Warning", b"", HF_LIST),
    ("Path", b"", HF_LIST),
    ("Service-Route", b"", HF_LIST),
    ("Reason", b"", HF_LIST),
    ("P-Asserted-Identity", b"", HF_LIST),
    ("P-Preferred-Identity", b"", HF_LIST),
    ("Security-Client", b"", HF_LIST),
    ("Security-Server", b"", HF_LIST),
    ("Security-Verify", b"", HF_LIST),
    ("Content-Language", b"", HF_LIST),
    ("Min-Expires", b"", HF_SINGLE),
    ("Retry-After", b"", 0),
    ("User-Agent", b"", 0),
    ("Server", b"", 0),
    ("Authorization", b"", 0),
    ("Proxy-Authorization", b"", 0),
    ("WWW-Authenticate", b"", 0),
    ("Proxy-Authenticate", b"", 0),
    ("Authentication-Info", b"", 0),
    ("Content-Disposition", b"", 0),
    ("MIME-Version", b"", 0),
    ("Organization", b"", 0),
    ("Priority", b"", 0),
    ("Reply-To", b"", 0),
    ("Date", b"", 0),
]

cdef enum:
    MAX_HIDS = 64
    HASH_SLOTS = 512
    MAX_KNOWN_NAME = 24

cdef int N_HIDS = len(_HEADERS)
cdef uint8_t HFLAGS[MAX_HIDS]
cdef uint8_t HNAME_LEN[MAX_HIDS]
cdef char HNAME_LOWER[MAX_HIDS][MAX_KNOWN_NAME]
cdef char HNAME_CANON[MAX_HIDS][MAX_KNOWN_NAME]    # as written by most peers
cdef uint8_t HASH_TABLE[HASH_SLOTS]     # slot -> hid (0 = empty)
cdef uint8_t COMPACT[256]               # compact letter -> hid
HEADER_NAMES = [h[0] for h in _HEADERS]
HEADER_NAMES_B = [h[0].encode() for h in _HEADERS]

cdef inline uint32_t name_hash(const uint8_t* p, Py_ssize_t n) noexcept nogil:
    cdef uint32_t h = 2166136261u
    cdef Py_ssize_t i
    for i in range(n):
        h = (h ^ LOWER[p[i]]) * 16777619u
    return h

cdef void _init_headers() except *:
    cdef int hid, slot
    cdef bytes lname, cname
    assert N_HIDS <= MAX_HIDS
    memset(HASH_TABLE, 0, HASH_SLOTS)
    memset(COMPACT, 0, 256)
    for hid in range(1, N_HIDS):
        name, compact, flags = _HEADERS[hid]
        HFLAGS[hid] = flags
        lname = name.lower().encode()
        assert len(lname) < MAX_KNOWN_NAME
        HNAME_LEN[hid] = len(lname)
        memcpy(HNAME_LOWER[hid], <char*>lname, len(lname))
        cname = name.encode()
        memcpy(HNAME_CANON[hid], <char*>cname, len(lname))
        if hid == H_COUNT_FIXED:
            continue
        slot = name_hash(<const uint8_t*><char*>lname, len(lname)) % HASH_SLOTS
        while HASH_TABLE[slot]:
            slot = (slot + 1) % HASH_SLOTS
        HASH_TABLE[slot] = hid
        if compact:
            COMPACT[compact[0]] = hid
            COMPACT[compact.upper()[0]] = hid

_init_headers()

cdef inline int header_id(const uint8_t* p, Py_ssize_t n) noexcept nogil:
    """Header id of the name at p (any case, compact forms), 0 if unknown."""
    return header_id_hashed(p, n, name_hash(p, n))

cdef inline int header_id_hashed(const uint8_t* p, Py_ssize_t n, uint32_t h) noexcept nogil:
    """header_id() when the caller computed name_hash() while scanning."""
    cdef uint32_t slot
    cdef int hid
    cdef Py_ssize_t i
    if n == 1:
        return COMPACT[p[0]]
    if n >= MAX_KNOWN_NAME:
        return 0
    slot = h % HASH_SLOTS
    while True:
        hid = HASH_TABLE[slot]
        if hid == 0:
            return 0
        if HNAME_LEN[hid] == n:
            if memcmp(p, HNAME_CANON[hid], n) == 0:
                return hid
            i = 0
            while i < n and LOWER[p[i]] == <uint8_t>HNAME_LOWER[hid][i]:
                i += 1
            if i == n:
                return hid
        slot = (slot + 1) % HASH_SLOTS

cdef inline bint names_equal(const uint8_t* a, Py_ssize_t an,
                             const uint8_t* b, Py_ssize_t bn) noexcept nogil:
    cdef Py_ssize_t i
    if an != bn:
        return False
    for i in range(an):
        if LOWER[a[i]] != LOWER[b[i]]:
            return False
    return True

# ---------------------------------------------------------------------------
# Errors.  C code fills a perr_t; sip_error() maps it to a SipError.
cdef enum:
    E_OK = 0
    E_EMPTY
    E_START_LINE
    E_METHOD
    E_RURI
    E_VERSION
    E_VERSION_UNSUPPORTED
    E_STATUS
    E_HEADER_LINE
    E_HEADER_NAME
    E_INCOMPLETE
    E_TOO_MANY_HEADERS
    E_LINE_TOO_LONG
    E_TOO_LARGE
    E_BODY_TOO_LARGE
    E_BODY_SHORT
    E_MISSING
    E_DUPLICATE
    E_MALFORMED
    E_CSEQ_METHOD
    E_ESCAPE
    E_MAX_FORWARDS_ZERO
    E_CONTROL

_REASONS = {
    E_EMPTY: "Empty message",
    E_START_LINE: "Malformed start line",
    E_METHOD: "Malformed method",
    E_RURI: "Malformed Request-URI",
    E_VERSION: "Malformed SIP version",
    E_VERSION_UNSUPPORTED: "SIP version not supported",
    E_STATUS: "Malformed status code",
    E_HEADER_LINE: "Malformed header line",
    E_HEADER_NAME: "Malformed header name",
    E_INCOMPLETE: "Incomplete header section",
    E_TOO_MANY_HEADERS: "Too many headers",
    E_LINE_TOO_LONG: "Line too long",
    E_TOO_LARGE: "Message too large",
    E_BODY_TOO_LARGE: "Body too large",
    E_BODY_SHORT: "Body shorter than Content-Length",
    E_CSEQ_METHOD: "CSeq method does not match request method",
    E_ESCAPE: "Bad %-escape in URI",
    E_MAX_FORWARDS_ZERO: "Too Many Hops",
    E_CONTROL: "Control character in header value",
}


class SipError(ValueError):
    """A malformed message or field; carries the SIP answer to give.

    ``status`` and ``reason`` are what a server answers to a request that
    fails this way; ``offset`` is the byte at fault (-1 when unknown);
    ``is_response`` tells callers to drop the message instead.
    """

    def __init__(self, status, reason, offset=-1, is_response=False):
        super().__init__(status, reason, offset)
        self.status = status
        self.reason = reason
        self.offset = offset
        self.is_response = is_response

    def __str__(self):
        where = f" at byte {self.offset}" if self.offset >= 0 else ""
        return f"{self.status} {self.reason}{where}"


cdef inline int fail(perr_t* err, int status, int code, Py_ssize_t offset,
                     int hid=0) noexcept nogil:
    err.status = status
    err.code = code
    err.offset = <int32_t>offset
    err.hid = hid
    return -1

cdef object sip_error(perr_t* err, bint is_response=False):
    """The SipError for a filled perr_t."""
    cdef str name = HEADER_NAMES[err.hid] if 0 < err.hid < N_HIDS else "header"
    if err.code == E_MISSING:
        reason = f"Missing {name} header"
    elif err.code == E_DUPLICATE:
        reason = f"Duplicate {name} header"
    elif err.code == E_MALFORMED:
        reason = f"Malformed {name} header" if err.hid else "Malformed header value"
    elif err.code == E_ESCAPE and err.hid:
        reason = f"Bad %-escape in {name} header"
    else:
        reason = _REASONS.get(err.code, "Bad Request")
    return SipError(err.status, reason, err.offset, is_response)

# ---------------------------------------------------------------------------
# Small scanners shared by every parser.  All take the buffer and an end
# offset and never read at or past it.

cdef inline Py_ssize_t skip_lws(const uint8_t* b, Py_ssize_t p, Py_ssize_t end) noexcept nogil:
    """Skip linear white space: SP/HT and line folds (CRLF or LF + WSP)."""
    while p < end:
        if b[p] == 32 or b[p] == 9:
            p += 1
        elif b[p] == 13 and p + 2 < end and b[p + 1] == 10 and is_ws(b[p + 2]):
            p += 3
        elif b[p] == 10 and p + 1 < end and is_ws(b[p + 1]):
            p += 2
        else:
            break
    return p

cdef inline Py_ssize_t rtrim_lws(const uint8_t* b, Py_ssize_t start, Py_ssize_t end) noexcept nogil:
    while end > start and (b[end - 1] == 32 or b[end - 1] == 9 or b[end - 1] == 13
                           or b[end - 1] == 10):
        end -= 1
    return end

cdef inline Py_ssize_t skip_quoted(const uint8_t* b, Py_ssize_t p, Py_ssize_t end) noexcept nogil:
    """p at an opening quote: offset after the closing quote, -1 if none."""
    p += 1
    while p < end:
        if b[p] == 92:       # backslash: quoted-pair
            p += 2
            continue
        if b[p] == 34:
            return p + 1
        p += 1
    return -1

cdef inline Py_ssize_t list_element_end(const uint8_t* b, Py_ssize_t p,
                                        Py_ssize_t end) noexcept nogil:
    """End of one comma-separated element starting at p: the offset of the
    comma (or end) outside quotes and angle brackets; -1 if a quote or
    bracket is unterminated.  A value without any comma is one element
    (the common case, found with memchr); its quotes and brackets are then
    checked by the field scanners."""
    cdef bint in_angle = False
    if p >= end or memchr(b + p, 44, end - p) == NULL:
        return end
    while p < end:
        c = b[p]
        if c == 34:
            p = skip_quoted(b, p, end)
            if p < 0:
                return -1
            continue
        if c == 60:
            in_angle = True
        elif c == 62:
            in_angle = False
        elif c == 44 and not in_angle:
            return p
        p += 1
    return -1 if in_angle else end

cdef inline Py_ssize_t find_ctl(const uint8_t* b, Py_ssize_t p, Py_ssize_t end) noexcept nogil:
    """Offset of the first control character in [p, end) that is not HT or
    part of a line fold (CRLF/LF + WSP), or -1.  RFC 3261 §25.1 TEXT-UTF8char
    admits no other CTL in a header value; NUL and bare CR are what breaks
    peers.  A CTL right after a backslash is a quoted-pair (§25.1, as in
    RFC 4475 intmeth) and allowed.  Eight bytes at a time: a byte < 0x20
    sets its top bit in (x - 0x20..20) & ~x."""
    cdef uint64_t x
    cdef Py_ssize_t start = p
    while p < end:
        if end - p >= 8:
            memcpy(&x, b + p, 8)
            if ((x - 0x2020202020202020ULL) & ~x & 0x8080808080808080ULL) == 0:
                p += 8
                continue
        elif end - start >= 8:
            # The tail: one read of the last 8 bytes (overlapping what was
            # checked already) instead of a byte loop.
            memcpy(&x, b + end - 8, 8)
            if ((x - 0x2020202020202020ULL) & ~x & 0x8080808080808080ULL) == 0:
                return -1
        if b[p] < 32 and b[p] != 9:
            if b[p] == 13 and p + 2 < end and b[p + 1] == 10 and is_ws(b[p + 2]):
                p += 3
                continue
            if b[p] == 10 and p + 1 < end and is_ws(b[p + 1]):
                p += 2
                continue
            if not (p > start and b[p - 1] == 92 and b[p] != 13 and b[p] != 10):
                return p
        p += 1
    return -1


cdef inline int parse_uint(const uint8_t* b, Py_ssize_t p, Py_ssize_t end,
                           int64_t limit, int64_t* out) noexcept nogil:
    """Decimal digits filling exactly [p, end), value <= limit (larger values
    are capped at limit when limit < 0 is not asked); -1 if not digits."""
    cdef int64_t v = 0
    if p >= end:
        return -1
    while p < end:
        if not is_digit(b[p]):
            return -1
        v = v * 10 + (b[p] - 48)
        if v > limit:
            v = limit + 1
        p += 1
    out[0] = v
    return 0

cdef inline str decode(const uint8_t* b, Py_ssize_t off, Py_ssize_t n):
    return PyUnicode_DecodeUTF8(<const char*>b + off, n, "surrogateescape")

cdef inline object span_str(const uint8_t* b, span_t s):
    if s.off < 0:
        return None
    return PyUnicode_DecodeUTF8(<const char*>b + s.off, s.len, "surrogateescape")

cdef inline object to_bytes(object value, str what):
    """str/bytes argument -> bytes, refusing CR, LF and NUL."""
    cdef bytes out
    if isinstance(value, str):
        out = (<str>value).encode("utf-8", "surrogateescape")
    elif isinstance(value, bytes):
        out = <bytes>value
    else:
        raise TypeError(f"{what} must be str or bytes, not {type(value).__name__}")
    if b"\r" in out or b"\n" in out or b"\0" in out:
        raise ValueError(f"{what} must not contain CR, LF or NUL")
    return out
