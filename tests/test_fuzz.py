"""A bounded atheris/libFuzzer run of tests/fuzz/fuzz_parse.py.

The harness runs in a subprocess for a fixed number of inputs, on a copy of
the seed corpus (libFuzzer adds the inputs it finds to its corpus
directory, and the repository must not change).  A crash, a sanitizer
report or any exception other than SipError makes libFuzzer exit non-zero
and this test fail with the harness's report.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

FUZZ_DIR = Path(__file__).parent / "fuzz"
HARNESS = FUZZ_DIR / "fuzz_parse.py"
RUNS = 250_000          # about 20-40 s uninstrumented on a developer machine
BACKSTOP_SECONDS = 300  # -max_total_time: stops a pathologically slow run


@pytest.mark.fuzz
def test_bounded_fuzz_run(tmp_path):
    import atheris  # noqa: F401  - a missing fuzzer is a failure, not a skip

    corpus = tmp_path / "corpus"
    shutil.copytree(FUZZ_DIR / "corpus", corpus)
    seeds = sorted(p.name for p in corpus.iterdir())
    assert len(seeds) >= 15
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    cmd = [
        sys.executable, str(HARNESS), str(corpus),
        f"-runs={RUNS}",
        f"-max_total_time={BACKSTOP_SECONDS}",
        "-seed=1",
        f"-dict={FUZZ_DIR / 'sip.dict'}",
        f"-artifact_prefix={artifacts}/",
        "-print_final_stats=1",
    ]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True,
                          errors="replace", timeout=BACKSTOP_SECONDS + 120)
    report = proc.stdout[-4000:] + proc.stderr[-4000:]   # Python tracebacks go to stdout
    assert proc.returncode == 0, f"fuzzer exited {proc.returncode}:\n{report}"
    assert not list(artifacts.iterdir()), report
    done = re.findall(r"^Done (\d+) runs in \d+ second", proc.stderr, re.MULTILINE)
    assert done, f"no 'Done N runs' line:\n{report}"
    assert int(done[-1]) == RUNS, f"the backstop stopped the run early:\n{report}"
    # the seed corpus itself is untouched
    assert sorted(p.name for p in (FUZZ_DIR / "corpus").iterdir()) == seeds
