"""One node's view from several workers: operator call listings and Prometheus text.

Listings are concatenated (each call marked with its `worker`) and sorted worst first,
as one process sorts them. Prometheus text keeps every family once (its HELP and TYPE
from the first worker) with every worker's samples under it, told apart by a
`worker="N"` label, so sums over the label give the node's totals.
"""

from __future__ import annotations

from typing import Any

from server.ops.monitor import worst_first


def merge_listings(listings: dict[int, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    calls = [{**call, "worker": index} for index, data in listings.items() for call in data]
    return sorted(calls, key=worst_first)


def _labelled(sample: str, label: str) -> str:
    """`name{a="b"} 1` → `name{worker="0",a="b"} 1`; `name 1` → `name{worker="0"} 1`."""
    brace, space = sample.find("{"), sample.find(" ")
    if brace != -1 and (space == -1 or brace < space):
        rest = sample[brace + 1 :]
        return f"{sample[: brace + 1]}{label}{'' if rest.startswith('}') else ','}{rest}"
    return f"{sample[:space]}{{{label}}}{sample[space:]}"


def merge_metrics(texts: dict[int, str]) -> str:
    """Several processes' Prometheus exposition as one, each sample labelled by worker."""
    families: dict[str, tuple[list[str], list[str]]] = {}
    for index, text in texts.items():
        label = f'worker="{index}"'
        family = ""
        for line in text.splitlines():
            if not line.strip():
                continue
            if line.startswith("#"):
                parts = line.split(None, 3)
                if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                    family = parts[2]
                    meta, _ = families.setdefault(family, ([], []))
                    if not any(m.split(None, 2)[1] == parts[1] for m in meta):
                        meta.append(line)
                continue
            families.setdefault(family, ([], []))[1].append(_labelled(line, label))
    lines = [line for meta, samples in families.values() for line in (*meta, *samples)]
    return "\n".join(lines) + "\n"
