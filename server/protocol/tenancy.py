"""Whose data a call or a request touches: the tenant, i.e. the accountable API key.

Conversations, recordings and voice profiles belong to a tenant; one API key never sees
another's. Calls opened with the local demo page's secrets (minted with no API key) share
one demo tenant.
"""

from __future__ import annotations

DEMO_TENANT = "demo"


def tenant_of(key: str | None) -> str:
    """The tenant of a credential whose accountable API key is `key` (None: the demo)."""
    return key or DEMO_TENANT
