"""The tests must run against the compiled extension, installed in the venv.

There is no pure-Python fallback; these checks make sure nothing in the
source tree (or a stray .py module) shadows the built ``sipfast._core``.
"""

import importlib.machinery
import inspect
import sys
import types
from pathlib import Path

import pytest

import sipfast
import sipfast._core as core

SOURCE_TREE = Path(__file__).resolve().parent.parent


def test_core_is_an_extension_module_file():
    origin = Path(core.__file__)
    assert origin.suffix == ".so"
    assert origin.name.startswith("_core.")
    assert any(origin.name.endswith(sfx) for sfx in importlib.machinery.EXTENSION_SUFFIXES)
    assert isinstance(core.__loader__, importlib.machinery.ExtensionFileLoader)
    assert core.__spec__.origin == core.__file__


def test_core_is_installed_not_imported_from_the_source_tree():
    origin = Path(core.__file__).resolve()
    assert "site-packages" in origin.parts
    assert SOURCE_TREE / "sipfast" not in origin.parents
    assert SOURCE_TREE / "build" not in origin.parents
    # The package itself comes from the same installed directory.
    assert Path(sipfast.__file__).resolve().parent == origin.parent
    assert sys.modules["sipfast._core"] is core


def test_package_reexports_the_compiled_objects():
    for name in ("parse", "frame", "make_response", "parse_uri", "parse_name_addr",
                 "new_branch", "reason_phrase", "Message", "Editor", "URI", "NameAddr",
                 "Via", "SipError"):
        assert getattr(sipfast, name) is getattr(core, name), name


@pytest.mark.parametrize("cls", [core.Message, core.Editor, core.URI, core.NameAddr, core.Via])
def test_classes_are_extension_types(cls):
    assert cls.__module__ == "sipfast._core"
    # Extension types have no per-instance __dict__ and C-level descriptors.
    assert cls.__dictoffset__ == 0
    props = [v for v in vars(cls).values() if isinstance(v, types.GetSetDescriptorType)]
    if cls is not core.Editor:
        assert props, f"{cls.__name__} has no C getset descriptors"
    assert not any(isinstance(v, property) for v in vars(cls).values())
    assert not any(inspect.isfunction(v) for v in vars(cls).values())


def test_functions_are_compiled():
    for fn in (core.parse, core.frame, core.make_response, core.parse_uri,
               core.parse_name_addr, core.new_branch, core.reason_phrase):
        assert not inspect.isfunction(fn), fn  # not a Python `def`
        assert type(fn).__name__ in ("cython_function_or_method", "builtin_function_or_method")


def test_final_types_cannot_be_subclassed_or_built_directly():
    with pytest.raises(TypeError):
        type("Sub", (core.Message,), {})
    with pytest.raises(TypeError):
        core.Message()
    with pytest.raises(TypeError):
        core.URI()


def test_sip_error_is_a_value_error():
    assert issubclass(core.SipError, ValueError)
    err = core.SipError(400, "Bad", 3, True)
    assert (err.status, err.reason, err.offset, err.is_response) == (400, "Bad", 3, True)
    assert core.SipError(505, "x").offset == -1
    assert core.SipError(505, "x").is_response is False


def test_limits_constants():
    assert core.DEFAULT_MAX_SIZE == 65535
    assert core.DEFAULT_MAX_HEADERS == 128
    assert core.DEFAULT_MAX_LINE == 8192
