"""The build refuses to go on without a C compiler, and says why."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_build_without_a_compiler_fails_loudly(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for name in ("setup.py", "pyproject.toml"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "ext", src / "ext", ignore=shutil.ignore_patterns("*.c", "*.html"))
    shutil.copytree(
        ROOT / "sipfast", src / "sipfast", ignore=shutil.ignore_patterns("*.so", "*.c")
    )
    env = dict(os.environ, CC="/bin/false", LDSHARED="/bin/false")
    res = subprocess.run(
        [sys.executable, "setup.py", "-q", "build_ext", "--build-temp", "t", "--build-lib", "l"],
        cwd=src,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert res.returncode != 0
    assert "building the compiled extension sipfast._core failed" in res.stderr
    assert "needs a working C compiler (gcc)" in res.stderr
    assert not list((src / "l").rglob("_core*.so")), "no extension may be produced"
