"""Durable history over HTTP, in OpenAI's Conversations API shapes, and each user's memory.

POST   /v1/conversations                       API key: {items?, metadata?} → conversation
GET    /v1/conversations                       newest first, ?limit=&after= (Hark extension)
GET    /v1/conversations/{id}                  the conversation
POST   /v1/conversations/{id}                  {metadata} → the conversation updated
DELETE /v1/conversations/{id}                  with its items and recordings (files erased)
GET    /v1/conversations/{id}/items            ?limit=&after=&order=asc|desc (default desc)
POST   /v1/conversations/{id}/items            {items: [...]} → the items added
GET    /v1/conversations/{id}/items/{item_id}  one item
DELETE /v1/conversations/{id}/items/{item_id}  → the conversation
GET|PUT|DELETE /hark/users/{user}/memory       API key: a user's profile, goals and notes

Who sees what: an API key, its own tenant's conversations (another tenant's id is a 404);
an operator token or the admin key, every tenant's, read only; a realtime client secret
minted for a conversation (`session.conversation`), that conversation, read only.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from server.calls.runtime import NodeRuntime
from server.protocol.tenancy import tenant_of
from server.store.memory import MemoryService
from server.store.user_memory import check_user_memory
from signaling.auth import Authenticator, Caller, forbidden
from signaling.errors import ApiError

JsonBody = Callable[[web.Request], Awaitable[dict[str, Any]]]
MAX_USER_CHARS = 256


@dataclass(frozen=True)
class Access:
    tenant: str | None  # None: every tenant (operators)
    writable: bool
    only: str | None = None  # a client secret sees one conversation

    def check(self, conversation_id: str) -> None:
        if self.only is not None and conversation_id != self.only:
            raise ApiError(
                404, "conversation_not_found", f"No conversation with id '{conversation_id[:64]}'"
            )


def check_query(request: web.Request, allowed: tuple[str, ...]) -> None:
    """Unknown query parameters are refused (a typo'd `limit` would silently page by 20)."""
    for name in request.query:
        if name not in allowed:
            raise ApiError(
                400,
                "unknown_parameter",
                f"Unknown query parameter '{name[:64]}' (known: {', '.join(allowed)})",
                param=name[:64],
            )


def page(data: list[Any], has_more: bool, key: Callable[[Any], str]) -> dict[str, Any]:
    return {
        "object": "list",
        "data": data,
        "first_id": key(data[0]) if data else None,
        "last_id": key(data[-1]) if data else None,
        "has_more": has_more,
    }


class ConversationsApi:
    def __init__(self, auth: Authenticator, runtime: NodeRuntime, json_body: JsonBody) -> None:
        self.auth = auth
        self.runtime = runtime
        self._json_body = json_body

    def register(self, app: web.Application) -> None:
        r = app.router
        r.add_post("/v1/conversations", self.create)
        r.add_get("/v1/conversations", self.list)
        r.add_get("/v1/conversations/{conversation_id}", self.get)
        r.add_post("/v1/conversations/{conversation_id}", self.update)
        r.add_delete("/v1/conversations/{conversation_id}", self.delete)
        r.add_get("/v1/conversations/{conversation_id}/items", self.items)
        r.add_post("/v1/conversations/{conversation_id}/items", self.add_items)
        r.add_get("/v1/conversations/{conversation_id}/items/{item_id}", self.item)
        r.add_delete("/v1/conversations/{conversation_id}/items/{item_id}", self.delete_item)
        r.add_get("/hark/users/{user}/memory", self.get_memory)
        r.add_put("/hark/users/{user}/memory", self.put_memory)
        r.add_delete("/hark/users/{user}/memory", self.delete_memory)

    # ---- who ---------------------------------------------------------------------------

    def _access(self, request: web.Request) -> Access:
        caller: Caller = self.auth.identify(request)
        if caller.kind == "api_key":
            return Access(tenant_of(caller.key), writable=True)
        if "operator" in caller.scopes or "admin" in caller.scopes:
            return Access(None, writable=False)
        conversation = caller.session.get("conversation")
        if isinstance(conversation, str):
            return Access(tenant_of(caller.key), writable=False, only=conversation)
        raise forbidden(
            "conversation_scope_required",
            "This client secret was not minted for a conversation (session.conversation)",
        )

    def _writer(self, request: web.Request) -> str:
        access = self._access(request)
        if not access.writable or access.tenant is None:
            raise forbidden(
                "api_key_required", "Only an API key may change its tenant's conversations"
            )
        return access.tenant

    def _memory(self) -> MemoryService:
        return self.runtime.require_memory()

    # ---- conversations -------------------------------------------------------------------

    async def create(self, request: web.Request) -> web.Response:
        tenant = self._writer(request)
        body = await self._json_body(request)
        record = await self._memory().conversations.create(
            tenant, metadata=body.get("metadata"), items=body.get("items")
        )
        return web.json_response(record.to_dict())

    async def list(self, request: web.Request) -> web.Response:
        check_query(request, ("limit", "after"))
        access = self._access(request)
        if access.only is not None:
            raise forbidden("api_key_required", "A client secret cannot list conversations")
        result = await self._memory().conversations.list(
            access.tenant, limit=request.query.get("limit"), after=request.query.get("after")
        )
        operator = access.tenant is None
        data = [record.to_dict(operator=operator) for record in result.data]
        return web.json_response(page(data, result.has_more, lambda c: c["id"]))

    async def get(self, request: web.Request) -> web.Response:
        access = self._access(request)
        conversation_id = request.match_info["conversation_id"]
        access.check(conversation_id)
        record = await self._memory().conversations.get(access.tenant, conversation_id)
        return web.json_response(record.to_dict(operator=access.tenant is None))

    async def update(self, request: web.Request) -> web.Response:
        tenant = self._writer(request)
        body = await self._json_body(request)
        if "metadata" not in body:
            raise ApiError(400, "missing_metadata", 'Send {"metadata": {...}}', param="metadata")
        record = await self._memory().conversations.update_metadata(
            tenant, request.match_info["conversation_id"], body["metadata"]
        )
        return web.json_response(record.to_dict())

    async def delete(self, request: web.Request) -> web.Response:
        tenant = self._writer(request)
        conversation_id = request.match_info["conversation_id"]
        memory = self._memory()
        await memory.conversations.get(tenant, conversation_id)  # 404 before anything stops
        if memory.recordings is not None:
            await memory.recordings.stop_conversation(conversation_id)
        files = await memory.conversations.delete(tenant, conversation_id)
        if memory.recordings is not None:
            await memory.recordings.erase_files(files)
        return web.json_response(
            {"id": conversation_id, "object": "conversation.deleted", "deleted": True}
        )

    # ---- items ---------------------------------------------------------------------------

    async def items(self, request: web.Request) -> web.Response:
        check_query(request, ("limit", "after", "order"))
        access = self._access(request)
        conversation_id = request.match_info["conversation_id"]
        access.check(conversation_id)
        query = request.query
        result = await self._memory().conversations.items(
            access.tenant,
            conversation_id,
            limit=query.get("limit"),
            after=query.get("after"),
            order=query.get("order"),
        )
        return web.json_response(page(result.data, result.has_more, lambda i: i["id"]))

    async def add_items(self, request: web.Request) -> web.Response:
        tenant = self._writer(request)
        body = await self._json_body(request)
        added = await self._memory().conversations.add_items(
            tenant, request.match_info["conversation_id"], body.get("items")
        )
        return web.json_response(page(added, False, lambda i: i["id"]))

    async def item(self, request: web.Request) -> web.Response:
        access = self._access(request)
        conversation_id = request.match_info["conversation_id"]
        access.check(conversation_id)
        item = await self._memory().conversations.item(
            access.tenant, conversation_id, request.match_info["item_id"]
        )
        return web.json_response(item)

    async def delete_item(self, request: web.Request) -> web.Response:
        tenant = self._writer(request)
        conversation_id = request.match_info["conversation_id"]
        store = self._memory().conversations
        await store.item(tenant, conversation_id, request.match_info["item_id"])  # 404 if none
        await store.delete_item(conversation_id, request.match_info["item_id"])
        return web.json_response((await store.get(tenant, conversation_id)).to_dict())

    # ---- a user's memory -----------------------------------------------------------------

    def _user(self, request: web.Request) -> tuple[str, str]:
        tenant = self._writer(request)
        user = request.match_info["user"]
        if not 0 < len(user) <= MAX_USER_CHARS:
            raise ApiError(400, "invalid_user", f"user must be 1-{MAX_USER_CHARS} characters")
        return tenant, user

    async def get_memory(self, request: web.Request) -> web.Response:
        tenant, user = self._user(request)
        memory = await self._memory().users.get(tenant, user)
        return web.json_response({"object": "hark.user_memory", "user": user, **memory.to_dict()})

    async def put_memory(self, request: web.Request) -> web.Response:
        tenant, user = self._user(request)
        memory = check_user_memory(await self._json_body(request))
        await self._memory().users.put(tenant, user, memory)
        return web.json_response({"object": "hark.user_memory", "user": user, **memory.to_dict()})

    async def delete_memory(self, request: web.Request) -> web.Response:
        tenant, user = self._user(request)
        await self._memory().users.delete(tenant, user)
        return web.Response(status=204)
