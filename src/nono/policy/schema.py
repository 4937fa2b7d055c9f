"""Validate a profile against ``data/profile.schema.json`` (the schema ``nono profile schema`` prints).

Why not the ``jsonschema`` library: its errors do not say what a user needs
here (the dotted key, the closest valid key for a typo, every problem at
once), and importing it (with ``referencing``, ``attrs`` and ``rpds``) costs
more than the rest of ``nono run``. The schema file sticks to a small subset
of JSON Schema 2020-12, interpreted below: ``type``, ``properties``,
``additionalProperties``, ``required``, ``items``, ``minItems``,
``uniqueItems``, ``enum``, ``oneOf``/``anyOf``, ``minimum``/``maximum``,
``minLength`` and local ``$ref``. The test-suite checks that the schema is a
valid JSON Schema and that ``jsonschema`` agrees with this validator on every
built-in profile.
"""

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

SCHEMA_FILE = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "profile.schema.json")
_schema: 'dict[str, Any] | None' = None


def schema() -> 'dict[str, Any]':
    """The profile JSON Schema (parsed once per process)."""
    global _schema
    if _schema is None:
        from .. import _jsonlite

        with open(SCHEMA_FILE, encoding="utf-8") as f:
            _schema = _jsonlite.loads(f.read())
    return _schema


class Problem:
    """One validation failure: ``key`` (dotted path), ``message``, optional ``suggestion``."""

    __slots__ = ("key", "message", "suggestion")

    def __init__(self, key: str, message: str, suggestion: str = "") -> None:
        self.key, self.message, self.suggestion = key, message, suggestion

    def __str__(self) -> str:
        text = f"{self.key or '(top level)'}: {self.message}"
        return text + (f" (did you mean '{self.suggestion}'?)" if self.suggestion else "")


def validate(doc: 'Any') -> list[Problem]:
    """Every problem in ``doc``; an empty list means valid."""
    problems: list[Problem] = []
    _check(doc, schema(), "", problems)
    return problems


def deprecated_keys(doc: 'Any') -> list[tuple[str, str]]:
    """(dotted key, schema description) for every key the schema marks ``deprecated``."""
    out: list[tuple[str, str]] = []
    _walk_deprecated(doc, schema(), "", out)
    return out


def _resolve(node: 'dict[str, Any]') -> 'dict[str, Any]':
    while "$ref" in node:
        ref = node["$ref"]
        if not ref.startswith("#/$defs/"):
            raise ValueError(f"unsupported $ref {ref!r} in the profile schema")
        node = schema()["$defs"][ref[len("#/$defs/"):]]
    return node


_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer()),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def _type_name(v: 'Any') -> str:
    for name in ("null", "boolean", "integer", "number", "string", "array", "object"):
        if _TYPES[name](v):
            return name
    return type(v).__name__


def _check(v: 'Any', node: 'dict[str, Any]', key: str, out: list[Problem]) -> None:
    node = _resolve(node)
    for combinator in ("oneOf", "anyOf"):
        if combinator in node:
            options = node[combinator]
            results = []
            for opt in options:
                sub: list[Problem] = []
                _check(v, opt, key, sub)
                if not sub:
                    break
                results.append(sub)
            else:
                # Report the alternative that got furthest (fewest problems past the type check).
                typed = [r for r, o in zip(results, options) if not _type_mismatch(v, _resolve(o))]
                if len(typed) == 1:
                    out.extend(typed[0])
                else:
                    wanted = " or ".join(_describe(_resolve(o)) for o in options)
                    out.append(Problem(key, f"expected {wanted}, got {_type_name(v)} {_short(v)}"))
            return
    if _type_mismatch(v, node):
        out.append(Problem(key, f"expected {_describe(node)}, got {_type_name(v)} {_short(v)}"))
        return
    if "enum" in node and v not in node["enum"]:
        choices = ", ".join(_short(e) for e in node["enum"])
        out.append(Problem(key, f"{_short(v)} is not one of: {choices}", _closest(v, node["enum"])))
        return
    if isinstance(v, bool):
        return
    if isinstance(v, (int, float)):
        if "minimum" in node and v < node["minimum"]:
            out.append(Problem(key, f"{v} is below the minimum {node['minimum']}"))
        if "maximum" in node and v > node["maximum"]:
            out.append(Problem(key, f"{v} is above the maximum {node['maximum']}"))
    elif isinstance(v, str):
        if len(v) < node.get("minLength", 0):
            out.append(Problem(key, "must not be empty" if node["minLength"] == 1 else f"shorter than {node['minLength']}"))
    elif isinstance(v, list):
        if len(v) < node.get("minItems", 0):
            out.append(Problem(key, f"needs at least {node['minItems']} item(s)"))
        if node.get("uniqueItems"):
            keys = [_identity(x) for x in v]
            dupes = [x for i, x in enumerate(v) if keys[i] in keys[:i]]
            if dupes:
                out.append(Problem(key, f"duplicate item {_short(dupes[0])}"))
        if "items" in node:
            for i, item in enumerate(v):
                _check(item, node["items"], f"{key}.{i}" if key else str(i), out)
    elif isinstance(v, dict):
        props = node.get("properties", {})
        for name in node.get("required", ()):
            if name not in v:
                out.append(Problem(key, f"missing required key '{name}'"))
        extra = node.get("additionalProperties", True)
        for k, item in v.items():
            sub_key = f"{key}.{k}" if key else str(k)
            if not isinstance(k, str):
                out.append(Problem(sub_key, f"keys must be strings, not {_type_name(k)}"))
            elif k in props:
                _check(item, props[k], sub_key, out)
            elif extra is False:
                valid = sorted(n for n in props if not _resolve(props[n]).get("deprecated"))
                out.append(Problem(sub_key, f"unknown key '{k}' (valid here: {', '.join(valid)})", _closest(k, list(props))))
            elif isinstance(extra, dict):
                _check(item, extra, sub_key, out)


def _type_mismatch(v: 'Any', node: 'dict[str, Any]') -> bool:
    t = node.get("type")
    if t is None:
        return False
    names = [t] if isinstance(t, str) else t
    return not any(_TYPES[n](v) for n in names)


def _describe(node: 'dict[str, Any]') -> str:
    t = node.get("type")
    if t is None:
        return "a value" if "enum" not in node else "one of " + ", ".join(_short(e) for e in node["enum"])
    names = [t] if isinstance(t, str) else t
    return " or ".join({"object": "an object", "array": "a list", "string": "a string", "integer": "an integer",
                        "number": "a number", "boolean": "true/false", "null": "null"}[n] for n in names)


def _short(v: 'Any') -> str:
    text = repr(v) if not isinstance(v, str) else '"' + v + '"'
    return text if len(text) <= 40 else text[:37] + "..."


def _closest(word: 'Any', candidates: 'list[Any]') -> str:
    if not isinstance(word, str):
        return ""
    import difflib  # error path only

    match = difflib.get_close_matches(word, [c for c in candidates if isinstance(c, str)], n=1, cutoff=0.6)
    return match[0] if match else ""


def _walk_deprecated(v: 'Any', node: 'dict[str, Any]', key: str, out: list[tuple[str, str]]) -> None:
    node = _resolve(node)
    if not isinstance(v, dict):
        return
    props = node.get("properties", {})
    for k, item in v.items():
        if k not in props:
            continue
        sub = _resolve(props[k])
        sub_key = f"{key}.{k}" if key else str(k)
        if sub.get("deprecated"):
            out.append((sub_key, str(sub.get("description", ""))))
        _walk_deprecated(item, sub, sub_key, out)


def _identity(v: 'Any') -> 'Any':
    """A hashable key with JSON's notion of equality: ``true`` is not ``1``, ``1.0`` is ``1``."""
    if isinstance(v, bool) or v is None:
        return ("const", v)
    if isinstance(v, (int, float)):
        return ("num", int(v) if isinstance(v, float) and v.is_integer() else v)
    if isinstance(v, str):
        return ("str", v)
    if isinstance(v, list):
        return ("list", tuple(_identity(x) for x in v))
    if isinstance(v, dict):
        return ("obj", tuple(sorted((str(k), _identity(x)) for k, x in v.items())))
    return ("other", repr(v))
