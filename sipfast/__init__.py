"""sipfast: a SIP router for VoIP carriers with a compiled Cython hot path.

The message core lives in the compiled extension :mod:`sipfast._core`; this
package re-exports its public API.  There is no pure-Python fallback: if the
extension is missing, importing sipfast fails.
"""

from sipfast._core import (
    DEFAULT_MAX_HEADERS,
    DEFAULT_MAX_LINE,
    DEFAULT_MAX_SIZE,
    DEFER,
    URI,
    Editor,
    Message,
    NameAddr,
    SipError,
    UdpProxy,
    Via,
    error_response,
    frame,
    make_response,
    new_branch,
    parse,
    parse_name_addr,
    parse_uri,
    reason_phrase,
)

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_MAX_HEADERS",
    "DEFAULT_MAX_LINE",
    "DEFAULT_MAX_SIZE",
    "Editor",
    "Message",
    "NameAddr",
    "SipError",
    "URI",
    "UdpProxy",
    "DEFER",
    "Via",
    "__version__",
    "error_response",
    "frame",
    "make_response",
    "new_branch",
    "parse",
    "parse_name_addr",
    "parse_uri",
    "reason_phrase",
]
