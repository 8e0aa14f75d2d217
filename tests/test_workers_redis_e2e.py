"""A two-worker node on a real Redis (HARK_REDIS_URL): every worker uses Redis itself (no
state through the front), and the per-sub cap still holds across the workers."""

from __future__ import annotations

import pytest

from server.tools.call_client import CallClient, CallError, mint_client_secret
from tests.server_process import running_server
from tests.trust_cluster import bearer, request

pytestmark = pytest.mark.slow


async def test_workers_share_redis_and_its_limits(redis_url):
    env = {
        "HARK_WORKERS": "2",
        "HARK_REDIS_URL": redis_url,
        "HARK_NODE_ID": "node-workers",
        "HARK_MAX_CALLS_PER_SUB": "1",
    }
    with running_server(env) as node:
        status, _, body = await request(
            "GET", f"{node.url}/hark/diagnostics", headers=bearer(node.admin_key)
        )
        assert status == 200 and body["shared_state"] == "redis", body
        first = CallClient(node.url, await mint_client_secret(node.url, node.api_key, sub="zoe"))
        await first.connect()
        try:
            assert first.call_id.startswith("rtc_w0_"), first.call_id
            second = CallClient(
                node.url, await mint_client_secret(node.url, node.api_key, sub="zoe")
            )
            with pytest.raises(CallError, match="sub_call_limit"):
                await second.connect()  # to worker 1, which counts zoe's call on worker 0
            await second.close()
        finally:
            await first.hangup()
