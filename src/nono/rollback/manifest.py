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
import os
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


def leaf(path: str, e: 'list[Any]') -> bytes:
    """The Merkle leaf of one entry."""
    kind = e[TYPE]
    if kind == "f":
        digest = bytes.fromhex(e[DATA])
    elif kind == "l":
        digest = hashlib.sha256(os.fsencode(e[DATA])).digest()
    else:
        digest = _ZERO32
    return hashlib.sha256(b"\x00" + os.fsencode(path) + b"\x00" + kind.encode() + (e[MODE] & 0xFFFFFFFF).to_bytes(4, "big")
                          + digest).digest()


def merkle_root(entries: 'dict[str, list[Any]]') -> str:
    """The hex Merkle root over ``entries`` (see the module docstring)."""
    if not entries:
        return hashlib.sha256(b"").hexdigest()
    keyed = sorted((os.fsencode(p), p) for p in entries)
    level = [leaf(p, entries[p]) for _b, p in keyed]
    sha = hashlib.sha256
    while len(level) > 1:
        nxt = [sha(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0].hex()


class Manifest:
    """One snapshot: number, parent, tracked roots, entries and Merkle root."""

    def __init__(self, number: int, roots: list[str], entries: 'dict[str, list[Any]]', *, parent: 'int | None' = None,
                 started_ns: int = 0, timestamp: str = "", merkle: str = "", stats: 'dict[str, Any] | None' = None) -> None:
        self.number, self.roots, self.entries, self.parent = number, roots, entries, parent
        self.started_ns = started_ns or time.time_ns()
        self.timestamp = timestamp or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started_ns / 1e9))
        self.merkle = merkle or merkle_root(entries)
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
