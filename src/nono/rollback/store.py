"""The on-disk store: where sessions live, their ids, objects, manifests and metadata.

Layout of one session (``$XDG_STATE_HOME/nono/rollbacks/<session-id>/``)::

    session.json          metadata (pretty JSON)
    objects/ab/<62 hex>   file contents, named by SHA-256 (deduplicated)
    snapshots/NNN.json    one manifest per snapshot (000 = baseline)
    changes/NNN.json      what changed from snapshot NNN-1 to NNN
    restore.journal       only while a restore runs (progress, for re-runs)
"""

import os
import time

from .. import _jsonlite
from . import _fs

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

SESSION_FILE = "session.json"


class StoreError(Exception):
    """A session that does not exist, is ambiguous, or cannot be read."""


def state_root() -> str:
    """``$XDG_STATE_HOME/nono`` (default ``~/.local/state/nono``)."""
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(os.path.abspath(state), "nono")


def rollbacks_root() -> str:
    """Where every rollback session is stored (``NONO_ROLLBACK_DIR`` overrides, for tests)."""
    return os.environ.get("NONO_ROLLBACK_DIR") or os.path.join(state_root(), "rollbacks")


def new_session_id(now: 'float | None' = None) -> str:
    """``YYYYMMDD-HHMMSS-<6 hex>`` in UTC: sorting the names sorts the sessions by start time.

    The hex part is the millisecond (3 hex digits) then 3 random ones, so sessions
    started within the same second still sort in order.
    """
    t = time.time() if now is None else now
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(t))
    return f"{stamp}-{int(t * 1000) % 1000:03x}{os.urandom(2).hex()[:3]}"


def _is_session_id(name: str) -> bool:
    parts = name.split("-")
    return (len(parts) == 3 and len(parts[0]) == 8 and len(parts[1]) == 6 and parts[0].isdigit()
            and parts[1].isdigit() and len(parts[2]) >= 6 and all(c in "0123456789abcdef" for c in parts[2]))


def list_session_ids(root: 'str | None' = None) -> list[str]:
    """Every session id in the store, oldest first."""
    root = root or rollbacks_root()
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if _is_session_id(n) and os.path.isfile(os.path.join(root, n, SESSION_FILE)))


def resolve_session(ref: 'str | None', root: 'str | None' = None) -> str:
    """A session id from ``ref``: None/``last``/``latest``, an exact id, or a unique prefix."""
    ids = list_session_ids(root)
    if not ids:
        raise StoreError(f"no rollback sessions in {root or rollbacks_root()} (record one with: nono run --rollback ...)")
    if ref in (None, "", "last", "latest"):
        return ids[-1]
    assert ref is not None
    if ref in ids:
        return ref
    matches = [i for i in ids if i.startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise StoreError(f"session '{ref}' is ambiguous: {', '.join(matches[:5])}")
    raise StoreError(f"no rollback session '{ref}' (see: nono rollback list)")


def makedirs_private(path: str) -> None:
    """Create ``path`` and missing parents with mode 0700."""
    os.makedirs(path, mode=0o700, exist_ok=True)


def read_json(path: str) -> 'Any':
    with open(path, encoding="utf-8") as f:
        return _jsonlite.loads(f.read())


class SessionStore:
    """One session directory: objects, manifests, change sets and metadata."""

    def __init__(self, session_id: str, root: 'str | None' = None) -> None:
        self.session_id = session_id
        self.root = root or rollbacks_root()
        self.dir = os.path.join(self.root, session_id)
        self.objects = os.path.join(self.dir, "objects")
        self._known: set[str] = set()
        self._made: set[str] = set()
        self.written = 0  # objects this process added to the store
        self._authoritative = False  # True when this process created the store: _known is then complete
        self._pending: list[str] = []  # objects renamed into place since the last sync()

    # -- creation ---------------------------------------------------------------
    def create(self) -> None:
        makedirs_private(self.root)
        os.mkdir(self.dir, 0o700)
        for sub in ("objects", "snapshots", "changes"):
            os.mkdir(os.path.join(self.dir, sub), 0o700)
        self._authoritative = True

    def exists(self) -> bool:
        return os.path.isfile(os.path.join(self.dir, SESSION_FILE))

    # -- metadata ---------------------------------------------------------------
    def read_meta(self) -> 'dict[str, Any]':
        try:
            meta = read_json(os.path.join(self.dir, SESSION_FILE))
        except (OSError, ValueError) as exc:
            raise StoreError(f"cannot read {self.dir}/{SESSION_FILE}: {exc}") from None
        if not isinstance(meta, dict):
            raise StoreError(f"{self.dir}/{SESSION_FILE} is not a JSON object")
        return meta

    def write_meta(self, meta: 'dict[str, Any]') -> None:
        _fs.atomic_write(os.path.join(self.dir, SESSION_FILE), (_jsonlite.dumps(meta) + "\n").encode())

    # -- manifests and change sets -------------------------------------------------
    def snapshot_path(self, number: int) -> str:
        return os.path.join(self.dir, "snapshots", f"{number:03d}.json")

    def changes_path(self, number: int) -> str:
        return os.path.join(self.dir, "changes", f"{number:03d}.json")

    def snapshot_numbers(self) -> list[int]:
        try:
            names = os.listdir(os.path.join(self.dir, "snapshots"))
        except FileNotFoundError:
            return []
        return sorted(int(n[:-5]) for n in names if n.endswith(".json") and n[:-5].isdigit())

    def write_doc(self, path: str, doc: 'dict[str, Any]') -> None:
        """A manifest or change set: compact JSON, atomic and durable."""
        _fs.atomic_write(path, _jsonlite.dumps_compact(doc).encode())

    def read_doc(self, path: str) -> 'dict[str, Any]':
        try:
            doc = read_json(path)
        except (OSError, ValueError) as exc:
            raise StoreError(f"cannot read {path}: {exc}") from None
        if not isinstance(doc, dict):
            raise StoreError(f"{path} is not a JSON object")
        return doc

    # -- objects ------------------------------------------------------------------
    def object_path(self, digest: str) -> str:
        return f"{self.objects}/{digest[:2]}/{digest[2:]}"

    def has_object(self, digest: str, size: int) -> bool:
        """Is ``digest`` stored, whole? (A size mismatch means a torn write: store it again.)"""
        if digest in self._known:
            return True
        if self._authoritative:
            return False
        try:
            ok = os.stat(self.object_path(digest)).st_size == size
        except OSError:
            return False
        if ok:
            self._known.add(digest)
        return ok

    def _subdir(self, digest: str) -> str:
        sub = f"{self.objects}/{digest[:2]}"
        if sub not in self._made:
            try:
                os.mkdir(sub, 0o700)
            except FileExistsError:
                pass
            self._made.add(sub)
        return sub

    def new_temp(self) -> 'tuple[str, int]':
        """An open temporary file inside objects/ (commit it with :meth:`commit_temp`)."""
        path = f"{self.objects}/{_fs.tmp_name('obj')}"
        return path, os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o400)

    def commit_temp(self, tmp: str, digest: str, size: int) -> None:
        """Give a finished temporary object its content name (or drop it if already stored)."""
        if self.has_object(digest, size):
            os.unlink(tmp)
            return
        sub = self._subdir(digest)
        os.rename(tmp, f"{sub}/{digest[2:]}")
        self._pending.append(digest)
        self._known.add(digest)
        self.written += 1

    def put_bytes(self, digest: str, data: bytes) -> bool:
        """Store ``data`` (already hashed to ``digest``); False if it was already there."""
        if self.has_object(digest, len(data)):
            return False
        tmp, fd = self.new_temp()
        try:
            _fs.write_all(fd, data)
        finally:
            os.close(fd)
        self.commit_temp(tmp, digest, len(data))
        return True

    def open_object(self, digest: str) -> int:
        return os.open(self.object_path(digest), os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)

    def read_object(self, digest: str) -> bytes:
        fd = self.open_object(digest)
        try:
            chunks = []
            while True:
                chunk = os.read(fd, _fs.CHUNK)
                if not chunk:
                    break
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)

    def iter_objects(self) -> 'list[tuple[str, str]]':
        """(digest, path) of every stored object."""
        found = []
        try:
            subs = sorted(os.listdir(self.objects))
        except FileNotFoundError:
            return []
        for sub in subs:
            d = os.path.join(self.objects, sub)
            if len(sub) != 2 or not os.path.isdir(d):
                continue
            for name in sorted(os.listdir(d)):
                if not name.startswith("."):
                    found.append((sub + name, os.path.join(d, name)))
        return found

    def sync(self) -> None:
        """Make every object written so far durable, before a manifest refers to them.

        A few objects are fsynced one by one (with their directories); many at once
        take one ``syncfs`` instead of thousands of fsyncs.
        """
        pending, self._pending = self._pending, []
        if len(pending) > 64:
            _fs.syncfs(self.objects)
            return
        for digest in pending:
            fd = os.open(self.object_path(digest), os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        for sub in sorted({d[:2] for d in pending}):
            _fs.fsync_dir(f"{self.objects}/{sub}")

    def remove_stale_temps(self) -> None:
        """Temporary objects left by a crashed writer."""
        try:
            names = os.listdir(self.objects)
        except FileNotFoundError:
            return
        for name in names:
            if name.startswith(".") and name.endswith(".tmp"):
                try:
                    os.unlink(os.path.join(self.objects, name))
                except OSError:
                    pass

    def size_bytes(self) -> int:
        """Bytes the session occupies on disk (allocated blocks)."""
        total = 0
        for dirpath, _dirs, files in os.walk(self.dir):
            for name in files:
                try:
                    total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
                except OSError:
                    pass
        return total
