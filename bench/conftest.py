"""Make the benchmarks import the *installed* sipfast build.

``python -m pytest`` run from the repository root puts the root on sys.path,
and the source-tree ``sipfast/`` package there has no compiled extension.
Remove the root before anything imports sipfast, then check that the
extension really comes from site-packages.
"""

from __future__ import annotations

import hashlib
import os
import sys

_BENCH = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(_BENCH)


def _shadows(entry: str) -> bool:
    path = os.path.abspath(entry or os.getcwd())
    return path == _ROOT


sys.path[:] = [p for p in sys.path if not _shadows(p)]
for _name in [n for n in sys.modules if n == "sipfast" or n.startswith("sipfast.")]:
    del sys.modules[_name]  # imported from the source tree by someone earlier
if _BENCH not in sys.path:
    sys.path.insert(0, _BENCH)  # for ``import messages``

import sipfast._core  # noqa: E402

_CORE = os.path.abspath(sipfast._core.__file__)
assert "site-packages" in _CORE.split(os.sep), (
    f"benchmark would use {_CORE}, not the installed build; run ./dev.sh setup"
)
assert not _CORE.startswith(_ROOT + os.sep + "sipfast" + os.sep), _CORE


with open(_CORE, "rb") as _f:
    CORE_SHA256 = hashlib.sha256(_f.read()).hexdigest()


def pytest_report_header(config):
    return f"sipfast core: {_CORE} (sha256 {CORE_SHA256[:16]})"
