"""Retention: at most :data:`MAX_SESSIONS` sessions and :data:`MAX_BYTES` bytes; the oldest go first."""

import os

from .store import SessionStore, StoreError, list_session_ids

MAX_SESSIONS = 10
MAX_BYTES = 5 << 30


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def in_progress(meta: 'dict[str, object]') -> bool:
    """A session whose recording process is still running (never pruned)."""
    return meta.get("ended") is None and _alive(meta.get("pid"))


def session_bytes(store: SessionStore, meta: 'dict[str, object]') -> int:
    size = meta.get("store_bytes")
    return size if isinstance(size, int) and meta.get("ended") is not None else store.size_bytes()


def prune(root: 'str | None' = None, *, keep: int = MAX_SESSIONS, max_bytes: int = MAX_BYTES, protect: 'tuple[str, ...]' = (),
          dry_run: bool = False) -> list[tuple[str, int]]:
    """Remove the oldest sessions until at most ``keep`` remain and they hold at most ``max_bytes``.

    Sessions still being recorded and those in ``protect`` are never removed. Returns
    ``(session id, bytes)`` of each session removed (or, ``dry_run``, that would be).
    """
    sessions = []
    for sid in list_session_ids(root):
        store = SessionStore(sid, root)
        try:
            meta = store.read_meta()
        except StoreError:
            meta = {}
        sessions.append((sid, store, session_bytes(store, meta), sid in protect or in_progress(meta)))
    count, total = len(sessions), sum(s[2] for s in sessions)
    removed = []
    for sid, store, size, pinned in sessions:  # oldest first
        if count <= keep and total <= max_bytes:
            break
        if pinned:
            continue
        if not dry_run:
            remove_session(store)
        removed.append((sid, size))
        count -= 1
        total -= size
    return removed


def remove_session(store: SessionStore) -> None:
    """Delete a session: first renamed out of the listing (atomic), then removed."""
    import shutil

    trash = os.path.join(store.root, f".trash-{store.session_id}-{os.getpid()}")
    os.rename(store.dir, trash)
    shutil.rmtree(trash, ignore_errors=True)
