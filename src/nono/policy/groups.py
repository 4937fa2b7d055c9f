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


_DEFAULT_PROFILE = os.path.join(os.path.dirname(_DATA_FILE), "profiles", "default.json")
_default_groups: list[str] | None = None


def default_group_names() -> list[str]:
    """The groups of the built-in ``default`` profile (``data/profiles/default.json``)."""
    global _default_groups
    if _default_groups is None:
        with open(_DEFAULT_PROFILE, encoding="utf-8") as f:
            _default_groups = list(_jsonlite.loads(f.read())["groups"]["include"])
    return list(_default_groups)


ESSENTIAL_ENV = ("PATH", "HOME", "USER", "LOGNAME", "SHELL", "TERM", "LANG", "LC_*", "TZ", "TMPDIR")


def sanitize_env(environ: 'Mapping[str, str]', set_vars: 'Iterable[tuple[str, str]]' = (),
                 allow: 'Iterable[str] | None' = None, deny: 'Iterable[str]' = ()) -> dict[str, str]:
    """A copy of ``environ`` without dangerous variables, plus ``set_vars``.

    ``allow`` (names or ``PREFIX*`` patterns), when given, is an allowlist on
    top of :data:`ESSENTIAL_ENV`; ``deny`` adds names or patterns to remove.
    """
    rules = data()["environment"]
    deny_names = set(rules["deny_vars"])
    prefixes = tuple(rules["deny_prefixes"])
    out = {k: v for k, v in environ.items() if k not in deny_names and not k.startswith(prefixes)}
    extra = list(deny)
    if extra:
        out = {k: v for k, v in out.items() if not _matches(k, extra)}
    if allow is not None:
        keep = list(allow) + list(ESSENTIAL_ENV)
        out = {k: v for k, v in out.items() if _matches(k, keep)}
    out.update((k, v) for k, v in set_vars if k not in deny_names and not k.startswith(prefixes))
    return out


def is_dangerous_env(name: str) -> bool:
    """Is ``name`` a variable nono always removes (it makes programs load code)?"""
    rules = data()["environment"]
    return name in rules["deny_vars"] or name.startswith(tuple(rules["deny_prefixes"]))


def _matches(name: str, patterns: 'Iterable[str]') -> bool:
    return any(name == p or (p.endswith("*") and name.startswith(p[:-1])) for p in patterns)
