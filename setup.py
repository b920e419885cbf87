"""Build sipfast and its one compiled extension, sipfast._core.

The root source is ext/core.pyx, which includes the other ext/*.pxi files
(one extension, many source files, as uvloop and asyncpg do).  There is no
pure-Python fallback: without a working C compiler the build fails loudly.
"""

import os
import sys

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

VERSION = "0.1.0"


class BuildExt(build_ext):
    """build_ext that turns a compiler failure into one clear message."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001 - re-raised with context
            sys.stderr.write(
                "\nsipfast: building the compiled extension sipfast._core failed: "
                f"{exc}\nsipfast needs a working C compiler (gcc) and the Python "
                "headers (Debian: apt-get install gcc python3-dev).\n\n"
            )
            raise SystemExit(1) from exc


def extensions() -> list:
    from Cython.Build import cythonize

    debug = os.environ.get("SIPFAST_DEBUG") == "1"
    ext = Extension(
        "sipfast._core",
        sources=["ext/core.pyx"],
        extra_compile_args=["-O2"] + (["-O0", "-g"] if debug else []),
    )
    return cythonize(
        [ext],
        include_path=[".", "ext", "sipfast"],
        language_level=3,
        annotate=os.environ.get("SIPFAST_ANNOTATE") == "1",
        compiler_directives={
            "embedsignature": True,
            "cdivision": True,
            "initializedcheck": False,
        },
    )


setup(
    name="sipfast",
    version=VERSION,
    description="SIP router for VoIP carriers with a compiled Cython hot path",
    python_requires=">=3.11",
    packages=find_packages(include=["sipfast", "sipfast.*"]),
    package_data={"sipfast": ["py.typed", "_core.pyi"], "sipfast.ops": ["scenarios/*.xml"]},
    ext_modules=extensions(),
    cmdclass={"build_ext": BuildExt},
    entry_points={"console_scripts": ["sipfast = sipfast.cli:main"]},
    zip_safe=False,
)
