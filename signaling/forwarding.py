"""Requests about a call reach the node that holds it, whichever node the balancer picked.

Behind a load balancer a hang-up, a sideband join or an operator's look at a call can land
on any node. This middleware asks the call registry which node holds the call and the node
directory where that node listens, then forwards the request there (HTTP as is, the
sideband as a WebSocket relayed both ways); a call this node holds or that no live node
claims is answered here as before. `GET /v1/operator/calls` gathers every node's calls.

Why forward at the nodes rather than route at the balancer: any balancer (or none, or a
client that talks to one node directly) works unchanged, call ids stay opaque, and the
registry is already the one place that knows where each call lives.

Trust: the caller's own `Authorization` (and WebSocket subprotocols) travel with the
request, so the owner checks the same credentials it would check first hand. The node
that forwards adds `Hark-Forwarded-By: <node>`; a request that carries it is always
answered where it lands, so forwarding never loops (the shipped HAProxy config strips the
header from clients; a client that sends it only loses the forwarding).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web

from server.calls.runtime import NodeRuntime
from server.cluster.nodes import NodeDirectory
from server.cluster.registry import CallRegistry
from server.ops.monitor import worst_first
from signaling.errors import ApiError
from signaling.relay import (
    HOP_BY_HOP,
    WEBSOCKET_HANDSHAKE,
    accept_like,
    end_to_end,
    handshake_refusal,
    offered_protocols,
    relay_websocket,
)

log = logging.getLogger("hark.forwarding")

FORWARDED_BY = "Hark-Forwarded-By"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Routes whose `{call_id}` names a call that may live on another node.
CALL_ROUTES = frozenset(
    {
        "/v1/realtime/calls/{call_id}",
        "/v1/realtime/calls/{call_id}/hangup",
        "/v1/operator/calls/{call_id}",
    }
)
# Not copied between the hops: the client's Host, and an encoding this side's client
# session has already undone (it decompresses).
DROPPED = HOP_BY_HOP | WEBSOCKET_HANDSHAKE | {"host", "content-encoding"}
FORWARD_TIMEOUT_S = 10.0
LIST_TIMEOUT_S = 3.0


def _copy_headers(headers: Any) -> dict[str, str]:
    return dict(end_to_end(headers.items(), DROPPED))


def _unreachable(node: str) -> ApiError:
    return ApiError(
        502,
        "call_node_unreachable",
        f"The call's node '{node[:64]}' did not answer; retry shortly",
        type="server_error",
        headers={"Retry-After": "2"},
    )


class CallRouter:
    def __init__(
        self,
        node_id: str,
        runtime: NodeRuntime,
        registry: CallRegistry,
        directory: NodeDirectory,
    ) -> None:
        self.node_id = node_id
        self.runtime = runtime
        self.registry = registry
        self.directory = directory
        self._http: aiohttp.ClientSession | None = None
        self._relays: set[web.WebSocketResponse] = set()

    def _client(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=FORWARD_TIMEOUT_S),
                auto_decompress=True,
            )
        return self._http

    async def close(self) -> None:
        """Server shutdown: end the relayed sidebands, close the client."""
        for socket in list(self._relays):
            with contextlib.suppress(Exception):
                await socket.close(code=aiohttp.WSCloseCode.GOING_AWAY, message=b"node shutdown")
        if self._http is not None:
            await self._http.close()

    # ---- which requests go where -----------------------------------------------------------

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if FORWARDED_BY in request.headers:
            return await handler(request)
        route = request.match_info.route.resource
        canonical = route.canonical if route is not None else ""
        if canonical == "/v1/operator/calls" and request.method == "GET":
            return await self._cluster_list(request, handler)
        call_id = None
        if canonical in CALL_ROUTES and request.method != "OPTIONS":
            call_id = request.match_info.get("call_id")
        elif canonical == "/v1/realtime" and request.method == "GET":
            # Not an upgrade: this node answers (426) without bothering the owner.
            if web.WebSocketResponse().can_prepare(request).ok:
                call_id = request.query.get("call_id")
        if call_id:
            target = await self._owner_url(call_id)
            if target is not None:
                node, url = target
                if canonical == "/v1/realtime":
                    return await self._relay_websocket(request, node, url)
                return await self._forward_http(request, node, url)
        return await handler(request)

    async def _owner_url(self, call_id: str) -> tuple[str, str] | None:
        """(node, URL) of the other node holding `call_id`; None: answer here."""
        calls = self.runtime.calls
        if calls is not None and calls.is_known(call_id):
            return None
        try:
            node = await self.registry.owner_of(call_id)
            if not node or node == self.node_id:
                return None
            url = await self.directory.url_of(node)
        except Exception as exc:  # shared state down: this node cannot tell
            log.warning("locating call %s failed: %s", call_id[:64], exc)
            return None
        return (node, url) if url else None

    # ---- HTTP ------------------------------------------------------------------------------

    def _headers_for(self, request: web.Request) -> dict[str, str]:
        headers = _copy_headers(request.headers)
        headers[FORWARDED_BY] = self.node_id
        return headers

    async def _forward_http(self, request: web.Request, node: str, url: str) -> web.Response:
        body = await request.read()
        try:
            async with self._client().request(
                request.method,
                url + request.rel_url.path_qs,
                headers=self._headers_for(request),
                data=body or None,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=FORWARD_TIMEOUT_S),
            ) as resp:
                payload = await resp.read()
                headers = {
                    k: v
                    for k, v in _copy_headers(resp.headers).items()
                    if not k.lower().startswith("access-control-")
                }
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning(
                "forwarding %s %s to %s failed: %s", request.method, request.path, node, exc
            )
            raise _unreachable(node) from exc
        headers[FORWARDED_BY] = node
        log.info("forwarded %s %s to node %s: %d", request.method, request.path, node, resp.status)
        return web.Response(status=resp.status, body=payload, headers=headers)

    # ---- the sideband ----------------------------------------------------------------------

    async def _relay_websocket(
        self, request: web.Request, node: str, url: str
    ) -> web.StreamResponse:
        """Joins the owner's sideband first; its refusal (status and body) is passed on as
        is, so the client sees exactly what the owner said."""
        headers = self._headers_for(request)
        target = url.replace("http", "ws", 1) + request.rel_url.path_qs
        try:
            upstream = await self._client().ws_connect(
                target,
                headers=headers,
                protocols=offered_protocols(request),
                autoping=True,
                heartbeat=20.0,
                max_msg_size=0,
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=5.0),
            )
        except aiohttp.WSServerHandshakeError as exc:
            return await self._refusal(request, node, url, exc.status)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _unreachable(node) from exc
        socket = await accept_like(request, upstream)
        self._relays.add(socket)
        log.info("sideband for %s relayed to node %s", request.query.get("call_id"), node)
        try:
            await relay_websocket(socket, upstream)
        finally:
            self._relays.discard(socket)
        return socket

    async def _refusal(
        self, request: web.Request, node: str, url: str, status: int
    ) -> web.Response:
        """The owner's HTTP answer to the refused join, read again without the upgrade
        (aiohttp's client drops the body of a failed handshake)."""
        try:
            refused = await handshake_refusal(
                self._client(),
                url + request.rel_url.path_qs,
                self._headers_for(request).items(),
                aiohttp.ClientTimeout(total=FORWARD_TIMEOUT_S),
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _unreachable(node) from exc
        if refused.status == status:
            content_type = dict(refused.headers).get("Content-Type", "application/json")
            return web.Response(
                status=status,
                body=refused.body,
                headers={FORWARDED_BY: node, "Content-Type": content_type},
            )
        raise ApiError(status, "sideband_refused", f"Node '{node[:64]}' refused the sideband")

    # ---- the whole cluster's calls ---------------------------------------------------------

    async def _cluster_list(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """This node's list (its handler checks the operator's credentials), then every
        other live node's, each call tagged with its node; `nodes` says each node's state."""
        local = await handler(request)
        if local.status != 200 or not isinstance(local, web.Response) or local.body is None:
            return local
        assert isinstance(local.body, bytes)
        payload = json.loads(local.body)
        calls = [{**c, "node": self.node_id} for c in payload.get("data", [])]
        nodes = [
            {
                "node": self.node_id,
                "url": self.directory.url,
                "state": self.runtime.readiness.status,
                "calls": len(calls),
            }
        ]
        try:
            members = [m for m in await self.directory.members() if m["node"] != self.node_id]
        except Exception as exc:
            log.warning("listing the cluster's nodes failed: %s", exc)
            members = []
        answers = await asyncio.gather(
            *(self._node_calls(request, m) for m in members), return_exceptions=True
        )
        for member, answer in zip(members, answers, strict=True):
            entry = {"node": member["node"], "url": member.get("url", ""), "state": member["state"]}
            if isinstance(answer, BaseException):
                entry["state"] = "unreachable"
                log.warning("node %s did not list its calls: %s", member["node"], answer)
                answer = await self._registered_calls(member["node"])
            entry["calls"] = len(answer)
            nodes.append(entry)
            calls.extend({**c, "node": member["node"]} for c in answer)
        calls.sort(key=worst_first)
        return web.json_response({"object": "list", "data": calls, "nodes": nodes})

    async def _node_calls(self, request: web.Request, member: dict[str, str]) -> list[Any]:
        async with self._client().get(
            member["url"] + "/v1/operator/calls",
            headers=self._headers_for(request),
            timeout=aiohttp.ClientTimeout(total=LIST_TIMEOUT_S),
        ) as resp:
            resp.raise_for_status()
            body = await resp.json()
        return list(body["data"])

    async def _registered_calls(self, node: str) -> list[dict[str, Any]]:
        """What the registry knows of an unreachable node's calls (no quality)."""
        with contextlib.suppress(Exception):
            return [
                {
                    "id": r["call_id"],
                    "state": r.get("state"),
                    "started_at": float(r.get("started_at") or 0),
                    "grade": "unknown",
                    "quality": {},
                }
                for r in await self.registry.all_calls()
                if r.get("node") == node
            ]
        return []
