"""The hash chain shared by ``audit-events.ndjson`` and ``ledger.ndjson``.

One record per line, compact JSON, written as::

    {"seq":N,...fields...,"prev":"<hex>","hash":"<hex>"}

``hash`` is SHA-256 of the line's own text up to (not including) ``,"hash":...`` with the
closing ``}`` put back, i.e. of the exact bytes of the record without its hash field. ``prev``
is the previous record's ``hash`` (the first record's ``prev`` is :func:`genesis`). Because the
hash covers the line's bytes as written (no re-serialisation), any changed byte anywhere in a
line is a hash mismatch on that line, and removing, inserting or reordering lines breaks
``seq``/``prev`` on the next one.
"""

from .. import _jsonlite
from ._hash import hexdigest

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_HASH_KEY = ',"hash":"'
_SUFFIX_LEN = len(_HASH_KEY) + 64 + 2  # ,"hash":"<64 hex>"}


def genesis(label: str) -> str:
    """The ``prev`` of the first record: binds a chain to its session (or to the ledger)."""
    return hexdigest(b"nono-audit-v1\x00" + label.encode("utf-8"))


def seal(body: str) -> 'tuple[str, str]':
    """``body`` is a compact JSON object ending with ``"prev":"..."}``; returns (line with hash + newline, hash)."""
    h = hexdigest(body.encode("utf-8"))
    return body[:-1] + _HASH_KEY + h + '"}\n', h


class ChainError(Exception):
    def __init__(self, line: int, seq: 'int | None', problem: str, label: str = "event") -> None:
        self.line, self.seq, self.problem = line, seq, problem
        where = f"{label} {seq} (line {line})" if seq is not None else f"line {line}"
        super().__init__(f"{where}: {problem}")


def check_line(text: str, lineno: int, expect_seq: int, expect_prev: str,
               label: str = "event") -> 'tuple[dict[str, Any], str]':
    """Verify one line (without its newline); returns (record, its hash) or raises :class:`ChainError`."""
    pos = len(text) - _SUFFIX_LEN
    if pos < 1 or text[pos:pos + len(_HASH_KEY)] != _HASH_KEY or not text.endswith('"}'):
        raise ChainError(lineno, expect_seq, "hash mismatch (no intact hash field at the end of the line)", label)
    try:
        record = _jsonlite.loads(text)
    except ValueError as exc:
        raise ChainError(lineno, expect_seq, f"hash mismatch (not valid JSON: {exc})", label) from None
    if not isinstance(record, dict):
        raise ChainError(lineno, expect_seq, "hash mismatch (not a JSON object)", label)
    h = hexdigest((text[:pos] + "}").encode("utf-8"))
    if record.get("hash") != h:
        raise ChainError(lineno, expect_seq, "hash mismatch (the line was changed after it was written)", label)
    if record.get("seq") != expect_seq:
        raise ChainError(lineno, expect_seq, f"sequence number {record.get('seq')!r}, expected {expect_seq} "
                                             f"(a {label} was removed, inserted or reordered)", label)
    if record.get("prev") != expect_prev:
        raise ChainError(lineno, expect_seq, f"prev does not match the previous {label}'s hash "
                                             f"(a {label} before it was removed, inserted or replaced)", label)
    return record, h
