"""Fixtures of the SIPp end-to-end tests: the sipp binary (a missing one fails, never
skips) and a per-test directory for SIPp's logs."""

import pytest

from . import sipp


@pytest.fixture(scope="session")
def sipp_path() -> str:
    return sipp.require_sipp()


@pytest.fixture
def logdir(tmp_path, sipp_path):
    """Working directory of the test's SIPp processes (statistics, traces, errors)."""
    return tmp_path
