"""Where sipfast's time goes, counted by callgrind (instructions, not time).

    python bench/profile_core.py a 100000       # run the (a) loop 100,000 times
    python bench/profile_core.py b 100000       # the (b) forward-edit loop
    python bench/profile_core.py --callgrind [N] [TOP]

The last form runs this script under ``valgrind --tool=callgrind`` for each
workload twice, with N iterations (default 100,000) and with 0, and reports
the difference: instructions per message and the TOP functions (default 15)
by exclusive instruction count per message.  Subtracting the 0-iteration run
removes interpreter start-up and imports exactly (PYTHONHASHSEED is fixed so
both runs do the same start-up work).  The workloads are the very functions
the benchmark times (test_message_core.sipfast_fields / sipfast_forward),
called in a plain ``for`` loop; that loop's cost is part of the figures.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile

_BENCH = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(_BENCH)
# Same guard as conftest.py: never import the source-tree sipfast.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.getcwd()) != _ROOT]
if _BENCH not in sys.path:
    sys.path.insert(0, _BENCH)


def _workload(name: str):
    import sipfast._core

    assert "site-packages" in sipfast._core.__file__, sipfast._core.__file__
    from messages import EXPECTED_FIELDS, INVITE
    from test_message_core import check_forwarded, sipfast_fields, sipfast_forward

    if name == "a":
        assert sipfast_fields(INVITE) == EXPECTED_FIELDS
        return sipfast_fields, INVITE
    if name == "b":
        check_forwarded(sipfast_forward(INVITE))
        return sipfast_forward, INVITE
    raise SystemExit(f"unknown workload {name!r} (a or b)")


def run(name: str, n: int) -> None:
    fn, buf = _workload(name)
    for _ in range(n):
        fn(buf)


_LINE = re.compile(r"^\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(.*)$")


def _callgrind(name: str, n: int, tmp: str) -> tuple[int, dict[str, int]]:
    out = os.path.join(tmp, f"cg.{name}.{n}")
    env = dict(os.environ, PYTHONHASHSEED="0")
    subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--quiet",
            f"--callgrind-out-file={out}",
            sys.executable,
            os.path.abspath(__file__),
            name,
            str(n),
        ],
        check=True,
        env=env,
        cwd=tmp,
    )
    ann = subprocess.run(
        ["callgrind_annotate", "--threshold=100", "--inclusive=no", "--auto=no", out],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    total = 0
    funcs: dict[str, int] = {}
    for line in ann.splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        count = int(m.group(1).replace(",", ""))
        what = m.group(2).strip()
        if what.startswith("PROGRAM TOTALS"):
            total = count
            continue
        # "file:function [object]" -> "function [object basename]"
        # (a trailing 'N is callgrind's recursion depth: merged here)
        fm = re.match(r"^(.*?):(\S+.*?)(?:\s+\[(.*)\])?$", what)
        if fm:
            func, obj = fm.group(2), os.path.basename(fm.group(3) or "")
            func = re.sub(r"'\d+$", "", func)
            key = f"{func} [{obj}]" if obj else func
        else:
            key = what
        funcs[key] = funcs.get(key, 0) + count
    if not total:
        total = sum(funcs.values())
    return total, funcs


def profile(n: int, top: int) -> None:
    import hashlib

    import sipfast._core

    with open(sipfast._core.__file__, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()[:16]
    print(f"sipfast build: {sipfast._core.__file__} (sha256 {sha})")
    with tempfile.TemporaryDirectory() as tmp:
        for name, what in (("a", "parse+fields"), ("b", "forward edit")):
            t0, f0 = _callgrind(name, 0, tmp)
            t1, f1 = _callgrind(name, n, tmp)
            per = (t1 - t0) / n
            print(
                f"\n## ({name}) {what}: {per:,.0f} instructions per message "
                f"({n:,} iterations; {t1:,} - {t0:,} baseline)\n"
            )
            diff = {k: f1.get(k, 0) - f0.get(k, 0) for k in set(f1) | set(f0)}
            ranked = sorted(diff.items(), key=lambda kv: -kv[1])[:top]
            print("| Ir/msg | % | function [object] |")
            print("|---:|---:|---|")
            for func, count in ranked:
                print(f"| {count / n:,.0f} | {100 * count / (t1 - t0):.1f} | `{func}` |")


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[1] == "--callgrind":
        n = int(argv[2]) if len(argv) > 2 else 100_000
        top = int(argv[3]) if len(argv) > 3 else 15
        profile(n, top)
        return 0
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    run(argv[1], int(argv[2]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
