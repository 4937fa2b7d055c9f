"""Walking the tracked paths and taking a snapshot.

A snapshot reuses the previous manifest's hash for every file whose
``(size, mtime_ns, inode, ctime_ns)`` is unchanged, so only changed files are
read. File contents are read once: hashed while being copied into the store
(or cloned with ``FICLONE`` and hashed from the clone, which cannot change under us).
"""

import hashlib
import os
import stat
import time

from . import _fs
from .exclude import Filter, GitIgnore
from .manifest import CTIME, INO, MTIME, SIZE, TYPE, Manifest

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .store import SessionStore

DEFAULT_MAX_FILES = 100_000
DEFAULT_MAX_BYTES = 2 << 30
SMALL = 4 << 20  # read whole into memory below this
# A file changed this close to (or after) the start of the snapshot that recorded it is
# "racy": a second change within the same clock tick could keep size and times, so its
# cached hash is not trusted next time (git's racy-clean problem; ticks are <= 10 ms).
RACY_NS = 30_000_000


class BudgetExceeded(Exception):
    """The tracked paths hold more than a walk budget allows."""

    def __init__(self, what: str, limit: int, where: str) -> None:
        super().__init__(f"more than {limit:,} {what} (the walk stopped in {where})")
        self.what, self.limit, self.where = what, limit, where


class Budget:
    """Walk limits: files (entries that are not directories) and file bytes."""

    def __init__(self, max_files: 'int | None' = None, max_bytes: 'int | None' = None) -> None:
        env_files, env_bytes = os.environ.get("NONO_ROLLBACK_MAX_FILES"), os.environ.get("NONO_ROLLBACK_MAX_BYTES")
        self.max_files = max_files or (int(env_files) if env_files else DEFAULT_MAX_FILES)
        self.max_bytes = max_bytes or (int(env_bytes) if env_bytes else DEFAULT_MAX_BYTES)

    def scaled(self, factor: int) -> 'Budget':
        return Budget(self.max_files * factor, self.max_bytes * factor)


def normalize_roots(paths: 'list[str]') -> list[str]:
    """Absolute, existing, de-duplicated roots; a root inside another root is dropped."""
    out: list[str] = []
    for p in sorted({os.path.realpath(os.path.abspath(p)) for p in paths}):
        try:
            st = os.lstat(p)
        except OSError:
            continue
        if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
            continue  # devices (a terminal grant), sockets, fifos
        if any(p == r or p.startswith(r.rstrip("/") + "/") for r in out):
            continue
        out.append(p)
    return out


def _entry(kind: str, st: 'os.stat_result', data: str) -> 'list[Any]':
    return [kind, stat.S_IMODE(st.st_mode), st.st_size if kind != "d" else 0, st.st_mtime_ns, st.st_ino,
            st.st_ctime_ns, data, st.st_uid, st.st_gid]


def walk(roots: list[str], filt: Filter, budget: Budget) -> 'tuple[list[tuple[str, os.stat_result, str]], int]':
    """Every kept entry as ``(path, lstat, type)``; also the number of unreadable directories."""
    found: list[tuple[str, os.stat_result, str]] = []
    files = total = unreadable = 0
    check_files = filt.checks_files
    for root in roots:
        try:
            st = os.lstat(root)
        except OSError:
            continue
        if not stat.S_ISDIR(st.st_mode):
            kind = "f" if stat.S_ISREG(st.st_mode) else "l"
            found.append((root, st, kind))
            files += 1
            total += st.st_size if kind == "f" else 0
            continue
        found.append((root, st, "d"))
        gi = None if filt.all_files else GitIgnore.load(root)
        stack: list[tuple[str, tuple[GitIgnore, ...]]] = [(root, (gi,) if gi else ())]
        while stack:
            directory, ignores = stack.pop()
            parent_name = os.path.basename(directory)
            try:
                it = os.scandir(directory)
            except OSError:
                unreadable += 1
                continue
            with it:
                for de in it:
                    try:
                        st = de.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    mode = st.st_mode
                    is_dir = stat.S_ISDIR(mode)
                    if (is_dir or check_files or ignores) and filt.excluded(de.path, de.name, is_dir, parent_name, ignores):
                        continue
                    if is_dir:
                        found.append((de.path, st, "d"))
                        sub = None if filt.all_files else GitIgnore.load(de.path)
                        stack.append((de.path, ignores + (sub,) if sub else ignores))
                        continue
                    if stat.S_ISREG(mode):
                        kind = "f"
                        total += st.st_size
                    elif stat.S_ISLNK(mode):
                        kind = "l"
                    else:
                        continue  # fifos, sockets, devices are not recorded
                    files += 1
                    if files > budget.max_files:
                        raise BudgetExceeded("files", budget.max_files, directory)
                    if total > budget.max_bytes:
                        raise BudgetExceeded("bytes", budget.max_bytes, directory)
                    found.append((de.path, st, kind))
    return found, unreadable


def hash_file(path: str, store: 'SessionStore | None') -> 'tuple[str, os.stat_result] | None':
    """SHA-256 of a regular file (and its content stored); None if it vanished or is no longer a file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None
        if st.st_size <= SMALL:
            chunks = []
            while True:
                chunk = os.read(fd, max(st.st_size, 65536))
                if not chunk:
                    break
                chunks.append(chunk)
            data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            digest = hashlib.sha256(data).hexdigest()
            if store is not None:
                store.put_bytes(digest, data)
            return digest, st
        return _hash_large(fd, st, store), st
    finally:
        os.close(fd)


def _hash_large(fd: int, st: 'os.stat_result', store: 'SessionStore | None') -> str:
    h = hashlib.sha256()
    if store is None:
        while chunk := os.read(fd, _fs.CHUNK):
            h.update(chunk)
        return h.hexdigest()
    tmp, out = store.new_temp()
    size = 0
    try:
        if _fs.try_clone(fd, out, st.st_dev):
            src = out  # the clone is ours: hash what was stored, not a file that may still change
        else:
            src = -1
        while True:
            chunk = os.pread(out, _fs.CHUNK, size) if src == out else os.read(fd, _fs.CHUNK)
            if not chunk:
                break
            h.update(chunk)
            if src != out:
                _fs.write_all(out, chunk)
            size += len(chunk)
    except BaseException:
        os.close(out)
        os.unlink(tmp)
        raise
    os.close(out)
    digest = h.hexdigest()
    store.commit_temp(tmp, digest, size)
    return digest


def take(roots: list[str], filt: Filter, budget: Budget, *, number: int, prev: 'Manifest | None',
         store: 'SessionStore | None') -> Manifest:
    """Snapshot ``roots``: walk, hash what changed since ``prev``, store new contents (when ``store``)."""
    t0 = time.perf_counter()
    started_ns = time.time_ns()
    found, unreadable_dirs = walk(roots, filt, budget)
    old = prev.entries if prev is not None else {}
    trust_before = (prev.started_ns - RACY_NS) if prev is not None else 0
    written_before = store.written if store is not None else 0
    entries: dict[str, list[Any]] = {}
    hashed = reused = unreadable = 0
    hashed_bytes = total_bytes = 0
    for path, st, kind in found:
        if kind == "d":
            entries[path] = _entry("d", st, "")
        elif kind == "l":
            try:
                entries[path] = _entry("l", st, os.readlink(path))
            except OSError:
                unreadable += 1
        else:
            p = old.get(path)
            if (p is not None and p[TYPE] == "f" and p[SIZE] == st.st_size and p[MTIME] == st.st_mtime_ns
                    and p[INO] == st.st_ino and p[CTIME] == st.st_ctime_ns and p[CTIME] < trust_before):
                entries[path] = p  # same ctime: same mode and owner too, so the very same entry
                reused += 1
                total_bytes += p[SIZE]
                continue
            try:
                got = hash_file(path, store)
            except PermissionError:
                got = None
            if got is None:
                unreadable += 1
                continue
            digest, fst = got
            entries[path] = _entry("f", fst, digest)
            hashed += 1
            hashed_bytes += fst.st_size
            total_bytes += fst.st_size
    new_objects = (store.written - written_before) if store is not None else 0
    if store is not None:
        store.sync()
    files = len(entries) - sum(1 for _p, _s, k in found if k == "d")
    stats: dict[str, Any] = {"files": files, "bytes": total_bytes, "hashed": hashed,
             "hashed_bytes": hashed_bytes, "reused": reused, "new_objects": new_objects, "unreadable": unreadable,
             "unreadable_dirs": unreadable_dirs, "ms": 0}
    m = Manifest(number, list(roots), entries, parent=prev.number if prev is not None else None,
                 started_ns=started_ns, stats=stats, prev=prev)
    stats["ms"] = round((time.perf_counter() - t0) * 1000, 1)
    return m
