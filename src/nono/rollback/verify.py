"""``verify``: recompute every object's hash and every snapshot's Merkle root."""

import hashlib
import os

from . import _fs
from .manifest import DATA, TYPE, Manifest, merkle_root
from .store import SessionStore, StoreError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def _digest(path: str) -> str:
    h = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    try:
        while chunk := os.read(fd, _fs.CHUNK):
            h.update(chunk)
    finally:
        os.close(fd)
    return h.hexdigest()


def verify(store: SessionStore) -> 'dict[str, Any]':
    """Check a session; ``ok`` is False if any object or manifest is corrupt or missing."""
    problems: list[str] = []
    corrupt: list[str] = []
    missing: list[str] = []
    checked = 0
    for digest, path in store.iter_objects():
        checked += 1
        try:
            if _digest(path) != digest:
                corrupt.append(digest)
                problems.append(f"corrupt object {digest} ({path})")
        except OSError as exc:
            corrupt.append(digest)
            problems.append(f"unreadable object {digest}: {exc.strerror}")
    try:
        meta = store.read_meta()
    except StoreError as exc:
        meta = {}
        problems.append(str(exc))
    recorded = meta.get("merkle_roots") or []
    snapshots = []
    stored = {d for d, _p in store.iter_objects()}
    for n in store.snapshot_numbers():
        try:
            m = Manifest.from_doc(store.read_doc(store.snapshot_path(n)))
        except (StoreError, ValueError, KeyError) as exc:
            problems.append(f"snapshot {n}: unreadable manifest ({exc})")
            continue
        root = merkle_root(m.entries)
        ok = root == m.merkle and (n >= len(recorded) or recorded[n] == root)
        if not ok:
            problems.append(f"snapshot {n}: Merkle root mismatch (recorded {m.merkle[:16]}, recomputed {root[:16]})")
        used_corrupt = sorted({p for p, e in m.entries.items() if e[TYPE] == "f" and e[DATA] in corrupt})
        for p, e in m.entries.items():
            if e[TYPE] == "f" and e[DATA] not in stored:
                missing.append(e[DATA])
                problems.append(f"snapshot {n}: object {e[DATA]} of {p!r} is missing")
        for p in used_corrupt:
            problems.append(f"snapshot {n}: {p!r} cannot be restored from a corrupt object")
        snapshots.append({"number": n, "merkle_root": root, "ok": ok, "entries": len(m.entries)})
    return {"session_id": store.session_id, "ok": not problems, "objects_checked": checked, "corrupt": corrupt,
            "missing": sorted(set(missing)), "snapshots": snapshots, "problems": problems}
