"""JSON without ``import json``.

``json`` imports ``re`` and compiles several patterns; on our reference machine
that is ~15 ms, about the whole start-up budget of ``nono run``. The C
accelerator ``_json`` parses and escapes on its own, so reading our data file
and writing the capability file need only these few lines. Anything else in
nono (profiles, ``--json`` output of other commands) uses the real ``json``.
"""

import _json

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_WS = " \t\n\r"


class _Ctx:
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = float
    memo: dict[str, str] = {}


def loads(text: str) -> 'Any':
    """Parse a JSON document (no comments)."""
    scan = _json.make_scanner(_Ctx())  # type: ignore[arg-type]  # the C scanner only reads _Ctx's attributes
    i = len(text) - len(text.lstrip(_WS))
    value, end = scan(text, i)
    if text[end:].strip(_WS):
        raise ValueError(f"extra data at offset {end}")
    return value


_compact: 'Any' = None


def dumps_compact(value: 'Any') -> str:
    """Serialise with the C encoder, no whitespace (fast path for machine-read files)."""
    global _compact
    if _compact is None:
        def _fail(o: 'Any') -> 'Any':
            raise TypeError(f"cannot serialise {type(o).__name__}")

        _compact = _json.make_encoder(None, _fail, _json.encode_basestring_ascii, None, ":", ",", False, False, True)
    return "".join(_compact(value, 0))


def dumps(value: 'Any', indent: int = 2, _level: int = 0) -> str:
    """Serialise dicts, lists, str, int, float, bool and None, pretty-printed."""
    if isinstance(value, str):
        return _json.encode_basestring_ascii(value)
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return repr(value)
    pad = "\n" + " " * (indent * (_level + 1))
    end = "\n" + " " * (indent * _level)
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = (f"{dumps(str(k))}: {dumps(v, indent, _level + 1)}" for k, v in value.items())
        return "{" + pad + ("," + pad).join(items) + end + "}"
    if isinstance(value, (list, tuple)):
        if not value:
            return "[]"
        return "[" + pad + ("," + pad).join(dumps(v, indent, _level + 1) for v in value) + end + "]"
    raise TypeError(f"cannot serialise {type(value).__name__}")
