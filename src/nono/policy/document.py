"""Reading profile documents: JSON with comments (and trailing commas), or YAML.

Errors name the file, line and column. ``//`` and ``/* */`` comments and
trailing commas are blanked out (replaced by spaces, newlines kept) so that
positions reported by the JSON parser still match the file the user wrote.
YAML goes through PyYAML's safe loader, imported only when a YAML file is read.
"""

from ..errors import PolicyError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class ProfileError(PolicyError):
    """A profile cannot be read, validated or resolved.

    ``file``, ``line``, ``column`` and ``key`` (a dotted path such as
    ``filesystem.read``) are set where known; the message already names them.
    """

    def __init__(self, message: str, *, file: str = "", line: int = 0, column: int = 0, key: str = "",
                 hint: str = "") -> None:
        where = file
        if file and line:
            where += f":{line}" + (f":{column}" if column else "")
        super().__init__(f"{where}: {message}" if where else message, hint=hint)
        self.file, self.line, self.column, self.key = file, line, column, key


def strip_jsonc(text: str) -> str:
    """``text`` with comments and trailing commas replaced by blanks (same length, same lines)."""
    out = list(text)
    i, n = 0, len(text)
    last_comma = -1  # index of a comma that may turn out to be trailing
    prev = ""  # the last significant character before the current one
    while i < n:
        c = text[i]
        if c == '"':
            last_comma = -1
            prev = '"'
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            i += 1
            continue
        if c == "/" and i + 1 < n and text[i + 1] == "/":
            while i < n and text[i] != "\n":
                out[i] = " "
                i += 1
            continue
        if c == "/" and i + 1 < n and text[i + 1] == "*":
            end = text.find("*/", i + 2)
            stop = n if end < 0 else end + 2
            for j in range(i, stop):
                if out[j] != "\n":
                    out[j] = " "
            i = stop
            continue
        if c == ",":
            # Trailing only if it follows a value: "[,]" and "[1,,]" stay errors.
            last_comma = i if prev not in ("", "[", "{", ",") else -1
        elif c in "]}":
            if last_comma >= 0:
                out[last_comma] = " "
            last_comma = -1
        elif c not in " \t\r\n":
            last_comma = -1
        if c not in " \t\r\n":
            prev = c
        i += 1
    return "".join(out)


def parse(text: str, file: str) -> 'Any':
    """Parse a profile document; YAML if ``file`` ends in ``.yaml``/``.yml``, else JSON(C)."""
    if file.endswith((".yaml", ".yml")):
        return _parse_yaml(text, file)
    cleaned = strip_jsonc(text)
    from .. import _jsonlite

    try:
        return check_structure(_jsonlite.loads(cleaned), file)
    except ProfileError:
        raise
    except Exception:  # the C scanner raises odd things (SystemError) on bad input
        pass
    import json  # only on the error path: it gives line and column

    try:
        value = json.loads(cleaned)
    except json.JSONDecodeError as exc:
        raise ProfileError(f"malformed JSON: {exc.msg}", file=file, line=exc.lineno, column=exc.colno) from None
    except RecursionError:
        raise ProfileError("malformed JSON: nested too deeply", file=file) from None
    except ValueError as exc:  # e.g. an integer literal too long to convert
        raise ProfileError(f"malformed JSON: {exc}", file=file) from None
    return check_structure(value, file)


MAX_NESTING = 32


def check_structure(value: 'Any', file: str) -> 'Any':
    """Refuse documents nested deeper than :data:`MAX_NESTING` (also catches YAML alias cycles)
    and strings that are not valid Unicode (lone surrogates)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    seen = 0
    while stack:
        node, depth = stack.pop()
        seen += 1
        if depth > MAX_NESTING or seen > 1_000_000:
            raise ProfileError(f"nested more than {MAX_NESTING} levels deep (or self-referencing)", file=file)
        if isinstance(node, dict):
            for k, v in node.items():
                if isinstance(k, str):
                    _check_text(k, file)
                stack.append((v, depth + 1))
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)
        elif isinstance(node, str):
            _check_text(node, file)
    return value


def _check_text(text: str, file: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ProfileError(f"invalid text {text[:40]!r}: not valid Unicode (a lone surrogate escape?)", file=file) from None


def _parse_yaml(text: str, file: str) -> 'Any':
    try:
        import yaml
    except ImportError:  # pragma: no cover - pyyaml is a dependency
        raise ProfileError("YAML profiles need PyYAML (pip install pyyaml)", file=file) from None
    try:
        return check_structure(yaml.safe_load(text), file)
    except ProfileError:
        raise
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark is not None else (0, 0)
        what = exc.problem or exc.context or "syntax error"
        raise ProfileError(f"malformed YAML: {what}", file=file, line=line, column=col) from None
    except yaml.YAMLError as exc:
        raise ProfileError(f"malformed YAML: {exc}", file=file) from None
    except RecursionError:
        raise ProfileError("malformed YAML: nested too deeply", file=file) from None
    except Exception as exc:  # PyYAML's constructors raise ValueError, KeyError, ... on bad scalars
        raise ProfileError(f"malformed YAML: cannot read a value ({type(exc).__name__}: {exc})", file=file) from None


def locate_key(text: str, keypath: str) -> int:
    """Best-effort line number (1-based, 0 if unknown) where ``keypath``'s last key is written.

    Walks the dotted path, finding each key after the previous one, in JSON
    (``"key"``) or YAML (``key:``) spelling. Used to point at unknown or
    invalid keys, which the parsers do not report positions for.
    """
    pos = 0
    found = -1
    for part in keypath.split("."):
        if part.isdigit() or not part:
            continue
        best = -1
        for needle in (f'"{part}"', f"'{part}'", f"{part}:"):
            j = text.find(needle, pos)
            if j >= 0 and (best < 0 or j < best):
                best = j
        if best < 0:
            break
        found = pos = best
    return text.count("\n", 0, found) + 1 if found >= 0 else 0
