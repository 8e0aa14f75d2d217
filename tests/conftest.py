"""Shared test setup: make `from tests.speech import speak` work however pytest is started,
and give engines loaded in the test process the server's OpenMP setting (server/__main__.py)."""

import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

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


@pytest.fixture(scope="session")
def hark_cluster(redis_url):
    """Two real Hark nodes sharing one redis-server, with short limits for the trust tests.

    Node A: idle 3 s, ICE 3 s (the leak and hostile tests use it too); node B: at most
    2 calls of at most 8 s. Both: 2 calls per sub, the same signing and admin keys.
    """
    from tests.server_process import running_server
    from tests.trust_cluster import Cluster, node_env

    with (
        running_server(node_env(redis_url, "node-a")) as a,
        running_server(
            node_env(redis_url, "node-b", HARK_MAX_CALLS="2", HARK_MAX_CALL_DURATION="8")
        ) as b,
    ):
        yield Cluster(a, b, redis_url)


@pytest.fixture(scope="session")
def postgres_url():
    """A real PostgreSQL server (Debian's package) in a temp dir, shared by the store tests."""
    from tests.postgres_process import running_postgres

    with running_postgres() as url:
        yield url


# The shared server's log is a file of its own, so a failed end-to-end test would show
# only the client's side: its lines from the test's start are added to the failure report
# (CI keeps nothing else of a run; a rare failure is then read, not guessed).
_LOG_FROM = pytest.StashKey[int]()
SERVER_LOG_TAIL_CHARS = 15_000


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    server = getattr(item, "funcargs", {}).get("hark")
    if server is not None:
        item.stash[_LOG_FROM] = server.log_path.stat().st_size
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    server = getattr(item, "funcargs", {}).get("hark")
    if report.when != "call" or not report.failed or server is None:
        return
    start = item.stash.get(_LOG_FROM, 0)
    with open(server.log_path, "rb") as log:
        log.seek(start)
        text = log.read().decode(errors="replace")
    report.sections.append(("hark server log during the test", text[-SERVER_LOG_TAIL_CHARS:]))
