"""Snapshot manifests and their Merkle root.

An entry is a list ``[type, mode, size, mtime_ns, ino, ctime_ns, data, uid, gid]``:
``type`` is ``f`` (regular file), ``l`` (symlink) or ``d`` (directory); ``mode`` the
permission bits; ``data`` the SHA-256 of a file's content, a symlink's target (never
followed), or ``""`` for a directory. Paths are absolute; names that are not UTF-8
are kept through ``os.fsdecode`` (surrogate escapes) and hashed as their raw bytes.

Merkle tree (RFC 6962 style domain separation): leaves sorted by path bytes,
``leaf = SHA256(0x00 || path || 0x00 || type || mode(4, big-endian) || content digest)``
where the content digest is the file hash, SHA-256 of the symlink target, or 32 zero
bytes for a directory; ``node = SHA256(0x01 || left || right)``; an odd node is
promoted unchanged; the empty tree is ``SHA256("")``.
"""

import hashlib
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

FIELDS = ("type", "mode", "size", "mtime_ns", "ino", "ctime_ns", "data", "uid", "gid")
TYPE, MODE, SIZE, MTIME, INO, CTIME, DATA, UID, GID = range(9)
VERSION = 1
_ZERO32 = bytes(32)

Entry = list  # [type, mode, size, mtime_ns, ino, ctime_ns, data, uid, gid]


def same_content(a: 'list[Any] | None', b: 'list[Any] | None') -> bool:
    """Equal as far as a restore cares: type, permission bits and content (or target)."""
    if a is None or b is None:
        return a is b
    return bool(a[TYPE] == b[TYPE] and a[MODE] == b[MODE] and a[DATA] == b[DATA])


def _pbytes(path: str) -> bytes:
    return path.encode("utf-8", "surrogateescape")


def leaf(path: str, e: 'list[Any]') -> bytes:
    """The Merkle leaf of one entry."""
    kind = e[TYPE]
    if kind == "f":
        digest = bytes.fromhex(e[DATA])
    elif kind == "l":
        digest = hashlib.sha256(_pbytes(e[DATA])).digest()
    else:
        digest = _ZERO32
    return hashlib.sha256(b"\x00" + _pbytes(path) + b"\x00" + kind.encode() + (e[MODE] & 0xFFFFFFFF).to_bytes(4, "big")
                          + digest).digest()


Leaves = dict  # path -> (type, mode, data, leaf digest): reused by the next snapshot


def merkle_root(entries: 'dict[str, list[Any]]', prev: 'Leaves[str, tuple[Any, ...]] | None' = None,
                out: 'Leaves[str, tuple[Any, ...]] | None' = None, order: 'list[str] | None' = None,
                prev_levels: 'list[list[bytes]] | None' = None, levels_out: 'list[list[bytes]] | None' = None) -> str:
    """The hex Merkle root over ``entries`` (see the module docstring).

    For speed between snapshots: ``prev`` holds an earlier snapshot's leaves (reused when
    type, mode and data match) and ``out`` receives this tree's; ``order`` is the sorted path
    list, and with ``prev_levels`` (the earlier tree, same paths in the same order) only the
    nodes above changed leaves are recomputed; ``levels_out`` receives this tree.
    """
    if not entries:
        return hashlib.sha256(b"").hexdigest()
    paths = order if order is not None else sort_paths(entries)
    level: list[bytes] = []
    changed: list[int] = []
    for i, p in enumerate(paths):
        e = entries[p]
        c = prev.get(p) if prev else None
        if c is None or c[0] != e[TYPE] or c[1] != e[MODE] or c[2] != e[DATA]:
            c = (e[TYPE], e[MODE], e[DATA], leaf(p, e))
            changed.append(i)
        if out is not None:
            out[p] = c
        level.append(c[3])
    if prev_levels is None or len(prev_levels[0]) != len(level):
        levels = _full_tree(level)
    else:
        levels = _update_tree(level, prev_levels, changed)
    if levels_out is not None:
        levels_out[:] = levels
    return str(levels[-1][0].hex())


def _full_tree(level: list[bytes]) -> list[list[bytes]]:
    sha = hashlib.sha256
    levels = [level]
    while len(level) > 1:
        nxt = [sha(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        levels.append(nxt)
        level = nxt
    return levels


def _update_tree(level: list[bytes], prev_levels: list[list[bytes]], changed: list[int]) -> list[list[bytes]]:
    """The tree of ``level`` from an earlier tree of the same shape: only changed paths are rehashed."""
    sha = hashlib.sha256
    levels = [level]
    cur, dirty = level, changed
    for depth in range(1, len(prev_levels)):
        nxt = list(prev_levels[depth])
        parents = sorted({i >> 1 for i in dirty})
        for j in parents:
            a = 2 * j
            nxt[j] = sha(b"\x01" + cur[a] + cur[a + 1]).digest() if a + 1 < len(cur) else cur[a]
        levels.append(nxt)
        cur, dirty = nxt, parents
    return levels


def sort_paths(entries: 'dict[str, Any]') -> list[str]:
    """Paths in byte order (``str`` order equals it for ASCII; otherwise sort by the encoded bytes)."""
    paths = sorted(entries)
    if not all(p.isascii() for p in paths):
        paths.sort(key=_pbytes)
    return paths


class Manifest:
    """One snapshot: number, parent, tracked roots, entries and Merkle root."""

    def __init__(self, number: int, roots: list[str], entries: 'dict[str, list[Any]]', *, parent: 'int | None' = None,
                 started_ns: int = 0, timestamp: str = "", merkle: str = "", stats: 'dict[str, Any] | None' = None,
                 prev: 'Manifest | None' = None) -> None:
        self.number, self.roots, self.entries, self.parent = number, roots, entries, parent
        self.started_ns = started_ns or time.time_ns()
        self.timestamp = timestamp or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started_ns / 1e9))
        self.leaves: Leaves[str, tuple[Any, ...]] = {}
        self.order: list[str] | None = None
        self.levels: list[list[bytes]] = []
        if not merkle:
            same = prev is not None and prev.order is not None and len(prev.entries) == len(entries) \
                and prev.entries.keys() == entries.keys()
            self.order = prev.order if same and prev is not None else sort_paths(entries)
            merkle = merkle_root(entries, prev.leaves if prev is not None else None, self.leaves, self.order,
                                 prev.levels if same and prev is not None and prev.levels else None, self.levels)
        self.merkle = merkle
        self.stats = stats or {}

    def to_doc(self) -> 'dict[str, Any]':
        return {"version": VERSION, "number": self.number, "parent": self.parent, "timestamp": self.timestamp,
                "started_ns": self.started_ns, "roots": self.roots, "fields": list(FIELDS),
                "merkle_root": self.merkle, "stats": self.stats, "entries": self.entries}

    @classmethod
    def from_doc(cls, doc: 'dict[str, Any]') -> 'Manifest':
        if doc.get("version") != VERSION or list(doc.get("fields", ())) != list(FIELDS):
            raise ValueError(f"unsupported manifest format (version {doc.get('version')!r})")
        return cls(int(doc["number"]), list(doc["roots"]), dict(doc["entries"]), parent=doc.get("parent"),
                   started_ns=int(doc["started_ns"]), timestamp=str(doc["timestamp"]), merkle=str(doc["merkle_root"]),
                   stats=dict(doc.get("stats") or {}))

    def file_bytes(self) -> int:
        return sum(e[SIZE] for e in self.entries.values() if e[TYPE] == "f")

    def file_count(self) -> int:
        return sum(1 for e in self.entries.values() if e[TYPE] == "f")
