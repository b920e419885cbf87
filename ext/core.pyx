# cython: language_level=3
"""sipfast._core: the compiled SIP message core.

This root module includes the other sources of ext/ (one extension, many
files).  Layers, innermost first:

* scan.pxi     character classes, header ids, error codes
* fields.pxi   C parsers for URI, name-addr, Via and parameter lists
* message.pxi  the message parser (start line, header table, framing) and
               the Python view classes over it
* edit.pxi     one-pass editor ("lumps") and response builder
* proxy.pxi    the stateless UDP proxy loop (recvmmsg/sendmmsg batches)
* txn.pxi      RFC 3261 §17 transactions and §16.7 response selection as a
               state machine that emits actions, on a timer wheel (no I/O)

Nothing here knows about sockets or asyncio.  The C functions work on
(pointer, offset, length) and report failures as a perr_t; one mapper turns
a perr_t into a SipError for Python.
"""

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, malloc, realloc, free
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC
from libc.string cimport memchr, memcmp, memcpy, memmove, memset

include "scan.pxi"
include "fields.pxi"
include "message.pxi"
include "edit.pxi"
include "txn.pxi"
include "proxy.pxi"
