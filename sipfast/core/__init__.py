"""The proxy's control plane in Python: decisions made once per call or less
often (DESIGN.md §2).  :mod:`sipfast.core.location` is the registrar and
location service of RFC 3261 §10."""

from sipfast.core.location import Binding, Location

__all__ = ["Binding", "Location"]
