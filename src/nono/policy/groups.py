"""The package data file: groups, built-in profiles, environment rules."""

from __future__ import annotations

import os

from .. import _jsonlite

_DATA_FILE = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "policy.json")
_cache: dict[str, object] | None = None


def data() -> dict:  # type: ignore[type-arg]
    """The parsed ``policy.json`` (read once per process)."""
    global _cache
    if _cache is None:
        with open(_DATA_FILE, encoding="utf-8") as f:
            _cache = _jsonlite.loads(f.read())
    return _cache  # type: ignore[return-value]


def group(name: str) -> dict:  # type: ignore[type-arg]
    from ..errors import PolicyError

    groups = data()["groups"]
    if name not in groups:
        raise PolicyError(f"unknown policy group '{name}'", hint=f"known groups: {', '.join(sorted(groups))}")
    return groups[name]  # type: ignore[no-any-return]


def default_group_names() -> list[str]:
    return list(data()["profiles"]["default"]["groups"]["include"])
