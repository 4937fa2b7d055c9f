"""The package data file (``data/policy.json``): groups, built-in profiles, environment rules.

Also home of environment sanitisation, which is driven by that file.
"""

import os

from .. import _jsonlite

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

_DATA_FILE = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "policy.json")
_cache: dict[str, object] | None = None


def data() -> dict:  # type: ignore[type-arg]
    """The parsed ``policy.json`` (read once per process)."""
    global _cache
    if _cache is None:
        with open(_DATA_FILE, encoding="utf-8") as f:
            _cache = _jsonlite.loads(f.read())
    return _cache


def group(name: str) -> dict:  # type: ignore[type-arg]
    from ..errors import PolicyError

    groups = data()["groups"]
    if name not in groups:
        raise PolicyError(f"unknown policy group '{name}'", hint=f"known groups: {', '.join(sorted(groups))}")
    return groups[name]  # type: ignore[no-any-return]


def default_group_names() -> list[str]:
    return list(data()["profiles"]["default"]["groups"]["include"])


def sanitize_env(environ: 'Mapping[str, str]', set_vars: 'Iterable[tuple[str, str]]' = ()) -> dict[str, str]:
    """A copy of ``environ`` without dangerous variables, plus ``set_vars``."""
    rules = data()["environment"]
    deny = set(rules["deny_vars"])
    prefixes = tuple(rules["deny_prefixes"])
    out = {k: v for k, v in environ.items() if k not in deny and not k.startswith(prefixes)}
    out.update(set_vars)
    return out
