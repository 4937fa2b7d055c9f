"""Environment sanitisation for the sandboxed program."""

from __future__ import annotations

from . import groups as _groups

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping


def is_dangerous(name: str) -> bool:
    """True for variables that make a program load code or reach secrets (``LD_PRELOAD``, ``PYTHONPATH``...)."""
    rules = _groups.data()["environment"]
    return name in rules["deny_vars"] or any(name.startswith(p) for p in rules["deny_prefixes"])


def sanitize(environ: Mapping[str, str], set_vars: Iterable[tuple[str, str]] = ()) -> dict[str, str]:
    """A copy of ``environ`` without dangerous variables, plus ``set_vars``."""
    rules = _groups.data()["environment"]
    deny = set(rules["deny_vars"])
    prefixes = tuple(rules["deny_prefixes"])
    out = {k: v for k, v in environ.items() if k not in deny and not k.startswith(prefixes)}
    out.update(set_vars)
    return out
