"""Shared test setup: make `from tests.speech import speak` work however pytest is started."""

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def hark():
    """One real Hark server (packaged models, real WebRTC) shared by the end-to-end tests."""
    from tests.server_process import running_server

    with running_server({"HARK_JWT_SECRET": "test-signing-secret-0123456789abcdef"}) as server:
        yield server


@pytest.fixture(scope="session")
def redis_url():
    """A real redis-server on a loopback port, shared by the tests that need one."""
    from tests.redis_process import running_redis

    with running_redis() as url:
        yield url
