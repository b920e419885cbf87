# C-level declarations of the compiled core (sipfast._core, built from
# ext/core.pyx).  Kept beside the module in the package: Cython 3.3 ignores a
# .pxd in ext/ for an extension named sipfast._core (see STYLE.md).
from libc.stdint cimport int32_t, uint8_t, uint16_t, uint32_t, uint64_t

cdef extern from *:
    """
    #define SF_INLINE_HEADERS 40
    """
    enum: SF_INLINE_HEADERS

# A byte range in a message buffer; off < 0 means "absent".
ctypedef struct span_t:
    int32_t off
    int32_t len

# One header line: offsets into the message buffer.
ctypedef struct hdr_t:
    uint32_t name_off     # start of the line (the header name)
    uint32_t value_off    # first byte of the value (leading LWS skipped)
    uint32_t value_len    # value length (trailing LWS trimmed; folds included)
    uint32_t line_end     # offset just after the line's LF (folds included)
    uint16_t name_len
    uint8_t hid           # header id (H_* constants), 0 for unknown names
    uint8_t folded        # the value spans several physical lines

# A parse failure: the SIP status to answer, an error code (E_* constants),
# the byte offset at fault and, for header errors, the header id.
ctypedef struct perr_t:
    int status
    int code
    int32_t offset
    int hid

ctypedef struct uri_t:
    span_t text
    uint8_t kind          # URI_OTHER, URI_SIP, URI_SIPS
    span_t scheme
    span_t user
    span_t password
    span_t host
    int32_t port          # -1 when absent
    span_t params         # after the first ';' of the params, up to '?'/end
    span_t headers        # after '?'

ctypedef struct naddr_t:
    span_t text
    span_t display        # raw display-name (quotes included when quoted)
    uint8_t quoted
    uint8_t uri_done      # uri scanned (else only uri.text is set)
    uri_t uri
    span_t params         # header params, from the first ';' after the URI
    span_t tag            # value of the tag param

ctypedef struct via_t:
    span_t text
    span_t protocol       # "SIP/2.0" (name/version, may hold LWS)
    span_t transport
    span_t host
    int32_t port
    span_t params
    span_t branch
    span_t received
    span_t rport          # off >= 0 when present; len 0 for a bare ;rport
    span_t maddr
    span_t ttl
