"""Putting the tracked paths back as a snapshot recorded them.

The plan comes from the recorded change sets (snapshot ``N`` -> the latest one),
so a restore touches only what the session changed and needs no walk of the tree:

* a path recorded in the target snapshot and changed or deleted since is written back
  (temp file in the same directory, fsync, rename; mode, times and - as root - owner);
* a path absent from the target but recorded later was created after it: it is removed,
  but only while it is still what was recorded (a file changed since is kept, with a warning);
* nothing else is touched: every path must lie inside a tracked root, and directories are
  opened component by component with ``O_NOFOLLOW``, so a symlink planted inside a tracked
  directory can never redirect a write elsewhere.

Progress goes to ``restore.journal`` in the session directory; a restore killed part-way
(even with SIGKILL) is finished by running it again: done steps are skipped and every
other step first checks whether the file is already right.
"""

import hashlib
import os
import stat
import time

from .. import _jsonlite
from . import _fs
from .changes import printable
from .manifest import CTIME, DATA, GID, INO, MODE, MTIME, SIZE, TYPE, UID, Manifest, same_content
from .store import SessionStore, StoreError, resolve_session

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

JOURNAL = "restore.journal"
_DELAY_ENV = "NONO_TEST_ROLLBACK_RESTORE_DELAY"  # test hook: seconds to pause after each step


class RestoreError(Exception):
    """A restore that cannot start (no such snapshot, another restore running)."""


class Action:
    """One step: ``op`` is unlink, rmdir, mkdir, write or chmod; ``target``/``current`` are entries."""

    __slots__ = ("current", "op", "path", "target")

    def __init__(self, op: str, path: str, target: 'list[Any] | None', current: 'list[Any] | None') -> None:
        self.op, self.path, self.target, self.current = op, path, target, current

    def describe(self) -> str:
        t = self.target
        what = {"unlink": "delete", "rmdir": "remove directory", "mkdir": "create directory",
                "chmod": f"chmod {t[MODE]:o}" if t else "chmod"}.get(self.op, "")
        if self.op == "write" and t is not None:
            what = f"restore symlink -> {printable(t[DATA])}" if t[TYPE] == "l" else f"restore ({t[SIZE]} bytes)"
        return f"{what} {printable(self.path)}"


class RestoreResult:
    """What a restore did (or, dry-run, would do)."""

    def __init__(self, session_id: str, snapshot: int, actions: list[Action], dry_run: bool) -> None:
        self.session_id, self.snapshot, self.actions, self.dry_run = session_id, snapshot, actions, dry_run
        self.applied: list[str] = []
        self.already: list[str] = []
        self.kept: list[str] = []
        self.errors: list[str] = []
        self.resumed = 0

    @property
    def ok(self) -> bool:
        return not self.errors

    def text(self) -> str:
        head = f"[nono] rollback: session {self.session_id} -> snapshot {self.snapshot}: "
        if self.dry_run:
            lines = [head + f"{len(self.actions)} action(s) (dry run, nothing changed)"]
            lines += [f"  {a.describe()}" for a in self.actions]
            return "\n".join(lines)
        lines = [head + f"{len(self.applied)} applied, {len(self.already)} already in place, {len(self.kept)} kept, "
                 f"{len(self.errors)} error(s)" + (f" (resumed an interrupted restore: {self.resumed} step(s) done before)"
                                                  if self.resumed else "")]
        lines += [f"  kept: {k}" for k in self.kept] + [f"  error: {e}" for e in self.errors]
        return "\n".join(lines)

    def to_doc(self) -> 'dict[str, Any]':
        return {"session_id": self.session_id, "snapshot": self.snapshot, "dry_run": self.dry_run,
                "actions": [a.describe() for a in self.actions], "applied": self.applied, "already": self.already,
                "kept": self.kept, "errors": self.errors, "resumed": self.resumed}


# -- planning ---------------------------------------------------------------------------
def transitions(store: SessionStore, target: int, latest: int) -> 'dict[str, tuple[list[Any] | None, list[Any] | None]]':
    """For every path that differs: (entry at ``target``, entry at ``latest``)."""
    span: dict[str, list[Any]] = {}
    paths = [store.changes_path(k) for k in range(target + 1, latest + 1)]
    if all(os.path.isfile(p) for p in paths):
        for p in paths:
            for ch in store.read_doc(p)["changes"]:
                cur = span.get(ch["path"])
                if cur is None:
                    span[ch["path"]] = [ch.get("old"), ch.get("new")]
                else:
                    cur[1] = ch.get("new")
    else:  # a change set is missing: compare the two manifests
        a = Manifest.from_doc(store.read_doc(store.snapshot_path(target))).entries
        b = Manifest.from_doc(store.read_doc(store.snapshot_path(latest))).entries
        span = {p: [a.get(p), b.get(p)] for p in a.keys() | b.keys()}
    return {p: (t, c) for p, (t, c) in span.items() if not same_content(t, c)}


def _depth(path: str) -> int:
    return path.count("/")


def plan(trans: 'dict[str, tuple[list[Any] | None, list[Any] | None]]') -> list[Action]:
    """Ordered steps: removals (deepest first), directories (writable ones get their mode now),
    contents, then the modes of read-only directories (deepest first)."""
    unlink: list[Action] = []
    rmdir: list[Action] = []
    mkdir: list[Action] = []
    write: list[Action] = []
    early: list[Action] = []
    dirmode: list[Action] = []
    for path, (t, c) in trans.items():
        if c is not None and (t is None or t[TYPE] != c[TYPE]):
            (rmdir if c[TYPE] == "d" else unlink).append(Action("rmdir" if c[TYPE] == "d" else "unlink", path, t, c))
            c = None
        if t is None:
            continue
        if t[TYPE] == "d":
            if c is None:
                mkdir.append(Action("mkdir", path, t, c))
            # writable again before its files are written; read-only only once they are
            (early if t[MODE] & 0o200 else dirmode).append(Action("chmod", path, t, c))
        elif c is not None and t[DATA] == c[DATA] and t[TYPE] == c[TYPE]:
            if t[TYPE] == "f":
                write.append(Action("chmod", path, t, c))
        else:
            write.append(Action("write", path, t, c))
    unlink.sort(key=lambda a: (-_depth(a.path), a.path))
    rmdir.sort(key=lambda a: (-_depth(a.path), a.path))
    mkdir.sort(key=lambda a: (_depth(a.path), a.path))
    write.sort(key=lambda a: a.path)
    early.sort(key=lambda a: (_depth(a.path), a.path))
    dirmode.sort(key=lambda a: (-_depth(a.path), a.path))
    return unlink + rmdir + mkdir + early + write + dirmode


def _plan_digest(actions: list[Action]) -> str:
    h = hashlib.sha256()
    for a in actions:
        h.update(f"{a.op}\0{a.path}\0{a.target and a.target[DATA]}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


# -- safe filesystem access ----------------------------------------------------------
class _Dirs:
    """Directory fds inside the tracked roots, opened one component at a time without following symlinks."""

    def __init__(self, roots: list[str]) -> None:
        self.roots = sorted(roots, key=len, reverse=True)
        self.fds: dict[str, int] = {}
        self.touched: set[int] = set()

    def root_of(self, path: str) -> 'str | None':
        for r in self.roots:
            if path == r or path.startswith(r.rstrip("/") + "/"):
                return r
        return None

    def parent(self, path: str, *, create: bool) -> 'tuple[int, str]':
        """(fd of the parent directory, final name) for ``path``; raises OSError."""
        root = self.root_of(path)
        if root is None:
            raise PermissionError(1, "outside the tracked paths", path)
        parent, name = os.path.split(path)
        if path == root:
            return self._open_plain(parent), name
        return self._open_inside(root, parent, create=create), name

    def _open_plain(self, d: str) -> int:
        fd = self.fds.get(d)
        if fd is None:
            fd = self.fds[d] = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        return fd

    def _open_inside(self, root: str, d: str, *, create: bool) -> int:
        fd = self.fds.get(d)
        if fd is not None:
            return fd
        if d == root:
            return self._root_fd(root, create)
        up, name = os.path.split(d)
        pfd = self._open_inside(root, up, create=create)
        flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW
        try:
            fd = os.open(name, flags, dir_fd=pfd)
        except FileNotFoundError:
            if not create:
                raise
            os.mkdir(name, 0o777, dir_fd=pfd)
            self.touched.add(pfd)
            fd = os.open(name, flags, dir_fd=pfd)
        self.fds[d] = fd
        return fd

    def _root_fd(self, root: str, create: bool) -> int:
        fd = self.fds.get(root)
        if fd is None:
            if create and not os.path.lexists(root):
                os.makedirs(root, exist_ok=True)
            fd = self.fds[root] = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW)
        return fd

    def forget(self, path: str) -> None:
        for p in [p for p in self.fds if p == path or p.startswith(path + "/")]:
            os.close(self.fds.pop(p))

    def close(self) -> None:
        for fd in self.touched:
            try:
                os.fsync(fd)
            except OSError:
                pass
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()


def _lstat(pfd: int, name: str) -> 'os.stat_result | None':
    try:
        return os.stat(name, dir_fd=pfd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _file_digest(pfd: int, name: str) -> 'str | None':
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=pfd)
    except OSError:
        return None
    try:
        h = hashlib.sha256()
        while chunk := os.read(fd, _fs.CHUNK):
            h.update(chunk)
        return h.hexdigest()
    finally:
        os.close(fd)


def _matches(pfd: int, name: str, st: 'os.stat_result', e: 'list[Any]', *, exact_mode: bool = True) -> bool:
    """Is what lies at ``name`` (already lstat'ed) the recorded entry ``e``?"""
    if e[TYPE] == "d":
        return stat.S_ISDIR(st.st_mode)
    if e[TYPE] == "l":
        return stat.S_ISLNK(st.st_mode) and os.readlink(name, dir_fd=pfd) == str(e[DATA])
    if not stat.S_ISREG(st.st_mode) or st.st_size != e[SIZE]:
        return False
    if exact_mode and stat.S_IMODE(st.st_mode) != e[MODE]:
        return False
    if (st.st_mtime_ns, st.st_ino, st.st_ctime_ns) == (e[MTIME], e[INO], e[CTIME]):
        return True
    return _file_digest(pfd, name) == str(e[DATA])


# -- the steps ------------------------------------------------------------------------
class _Runner:
    def __init__(self, store: SessionStore, dirs: _Dirs, result: RestoreResult, journal: int) -> None:
        self.store, self.dirs, self.result, self.journal = store, dirs, result, journal
        self.root = os.geteuid() == 0

    def note_temp(self, path: str) -> None:
        """Journal a temporary file before creating it, so a re-run after a crash removes it."""
        os.write(self.journal, (_jsonlite.dumps_compact({"tmp": path}) + "\n").encode())

    def remove_temps(self, paths: list[str]) -> None:
        for path in paths:
            try:
                pfd, name = self.dirs.parent(path, create=False)
                st = _lstat(pfd, name)
                if st is not None and not stat.S_ISDIR(st.st_mode) and name.endswith(".tmp"):
                    os.unlink(name, dir_fd=pfd)
            except OSError:
                pass

    def step(self, a: Action) -> None:
        getattr(self, "_" + a.op)(a)

    def _existing(self, path: str) -> 'tuple[int, str, os.stat_result | None]':
        """(parent fd, name, lstat or None) without creating anything; a missing parent means absent."""
        try:
            pfd, name = self.dirs.parent(path, create=False)
        except FileNotFoundError:
            return -1, "", None
        return pfd, name, _lstat(pfd, name)

    def _unlink(self, a: Action) -> None:
        pfd, name, st = self._existing(a.path)
        if st is None:
            self.result.already.append(a.path)
            return
        assert a.current is not None
        if not _matches(pfd, name, st, a.current, exact_mode=False):
            self.result.kept.append(f"{printable(a.path)} (changed after it was recorded; not deleted)")
            return
        os.unlink(name, dir_fd=pfd)
        self.dirs.touched.add(pfd)
        self.result.applied.append(a.path)

    def _rmdir(self, a: Action) -> None:
        pfd, name, st = self._existing(a.path)
        if st is None:
            self.result.already.append(a.path)
            return
        if not stat.S_ISDIR(st.st_mode):
            self.result.kept.append(f"{printable(a.path)} (no longer a directory; not removed)")
            return
        self.dirs.forget(a.path)
        try:
            os.rmdir(name, dir_fd=pfd)
        except OSError:
            self.result.kept.append(f"{printable(a.path)}/ (holds files nono did not record; not removed)")
            return
        self.dirs.touched.add(pfd)
        self.result.applied.append(a.path)

    def _mkdir(self, a: Action) -> None:
        assert a.target is not None
        pfd, name = self.dirs.parent(a.path, create=True)
        st = _lstat(pfd, name)
        if st is not None and stat.S_ISDIR(st.st_mode):
            self.result.already.append(a.path)
            return
        os.mkdir(name, 0o700, dir_fd=pfd)
        self.dirs.touched.add(pfd)
        self.result.applied.append(a.path)

    def _chmod(self, a: Action) -> None:
        t = a.target
        assert t is not None
        pfd, name, st = self._existing(a.path)
        kind_ok = st is not None and (stat.S_ISDIR(st.st_mode) if t[TYPE] == "d" else stat.S_ISREG(st.st_mode))
        if st is None or not kind_ok:
            self.result.kept.append(f"{printable(a.path)} (missing or not a {'directory' if t[TYPE] == 'd' else 'file'}; mode not restored)")
            return
        if stat.S_IMODE(st.st_mode) == t[MODE]:
            self.result.already.append(a.path)
            return
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
                     | (os.O_DIRECTORY if t[TYPE] == "d" else 0), dir_fd=pfd)
        try:
            os.fchmod(fd, t[MODE])
        finally:
            os.close(fd)
        self.result.applied.append(a.path)

    def _write(self, a: Action) -> None:
        t = a.target
        assert t is not None
        pfd, name = self.dirs.parent(a.path, create=True)
        st = _lstat(pfd, name)
        if st is not None:
            if _matches(pfd, name, st, t):
                self.result.already.append(a.path)
                return
            if stat.S_ISDIR(st.st_mode):
                self.result.errors.append(f"{printable(a.path)}: a directory is in the way")
                return
            cur = a.current
            if stat.S_ISREG(st.st_mode) and (cur is None or not _matches(pfd, name, st, cur, exact_mode=False)):
                self._save_unrecorded(pfd, name, a.path)
        tmp = _fs.tmp_name(name if len(name) < 100 else "restore")
        self.note_temp(os.path.join(os.path.dirname(a.path), tmp))
        if t[TYPE] == "l":
            os.symlink(t[DATA], tmp, dir_fd=pfd)
            if self.root:
                os.chown(tmp, t[UID], t[GID], dir_fd=pfd, follow_symlinks=False)
        elif not self._write_file(pfd, tmp, t, a.path):
            return
        try:
            os.rename(tmp, name, src_dir_fd=pfd, dst_dir_fd=pfd)
        except OSError:
            os.unlink(tmp, dir_fd=pfd)
            raise
        self.dirs.touched.add(pfd)
        self.result.applied.append(a.path)

    def _write_file(self, pfd: int, tmp: str, t: 'list[Any]', path: str) -> bool:
        try:
            src = self.store.open_object(t[DATA])
        except OSError as exc:
            self.result.errors.append(f"{printable(path)}: object {t[DATA][:12]} is missing ({exc.strerror})")
            return False
        try:
            out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600, dir_fd=pfd)
            try:
                h = hashlib.sha256()
                while chunk := os.read(src, _fs.CHUNK):
                    h.update(chunk)
                    _fs.write_all(out, chunk)
                if h.hexdigest() != t[DATA]:
                    raise ValueError
                if self.root:
                    os.fchown(out, t[UID], t[GID])
                os.fchmod(out, t[MODE])
                os.utime(out, ns=(t[MTIME], t[MTIME]))
                os.fsync(out)
            except BaseException as exc:
                os.close(out)
                os.unlink(tmp, dir_fd=pfd)
                if isinstance(exc, ValueError):
                    self.result.errors.append(f"{printable(path)}: object {t[DATA][:12]} is corrupt "
                                              f"(run: nono rollback verify {self.store.session_id}); file left as is")
                    return False
                raise
            os.close(out)
        finally:
            os.close(src)
        return True

    def _save_unrecorded(self, pfd: int, name: str, path: str) -> None:
        """Keep a copy of content nono never recorded before overwriting it."""
        from .scan import hash_file

        fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY, dir_fd=pfd)
        try:
            got = hash_file(f"/proc/self/fd/{fd}/{name}", self.store)
        finally:
            os.close(fd)
        if got is not None:
            self.result.kept.append(f"{printable(path)} had changed after the session; its content was saved as "
                                    f"object {got[0]} before being restored")


# -- entry point ------------------------------------------------------------------------
def restore(session_id: 'str | None' = None, snapshot: int = 0, *, dry_run: bool = False,
            out: 'Callable[[str], None] | None' = None, root: 'str | None' = None) -> RestoreResult:
    """Put the tracked paths of ``session_id`` (default: the last session) back to ``snapshot``."""
    try:
        sid = resolve_session(session_id, root)
    except StoreError as exc:
        raise RestoreError(str(exc)) from None
    store = SessionStore(sid, root)
    numbers = store.snapshot_numbers()
    if snapshot not in numbers:
        raise RestoreError(f"session {sid} has no snapshot {snapshot} (it has: {', '.join(map(str, numbers)) or 'none'})")
    meta = store.read_meta()
    roots = list(meta.get("tracked_paths") or [])
    latest = numbers[-1]
    actions = plan(transitions(store, snapshot, latest))
    result = RestoreResult(sid, snapshot, actions, dry_run)
    if dry_run or not actions:
        return result
    import fcntl

    lock = os.open(os.path.join(store.dir, ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise RestoreError(f"another restore of session {sid} is running") from None
        _run(store, roots, actions, result, snapshot, latest, out)
    finally:
        os.close(lock)
    return result


def _run(store: SessionStore, roots: list[str], actions: list[Action], result: RestoreResult, snapshot: int,
         latest: int, out: 'Callable[[str], None] | None') -> None:
    digest = _plan_digest(actions)
    jpath = os.path.join(store.dir, JOURNAL)
    done: set[int] = set()
    temps: list[str] = []
    try:
        with open(jpath, encoding="utf-8") as f:
            lines = f.read().splitlines()
        head = _jsonlite.loads(lines[0]) if lines else {}
        temps = [str(_jsonlite.loads(x)["tmp"]) for x in lines[1:] if x.startswith("{")]
        if head.get("plan") == digest:
            done = {int(x) for x in lines[1:] if x.isdigit()}
            result.resumed = len(done)
            if out is not None:
                out(f"[nono] rollback: resuming an interrupted restore ({len(done)} of {len(actions)} steps done)")
    except (OSError, ValueError):
        pass
    if not done:
        head = {"target": snapshot, "from": latest, "actions": len(actions), "plan": digest, "started": time.time()}
        _fs.atomic_write(jpath, (_jsonlite.dumps_compact(head) + "\n").encode())
    delay = float(os.environ.get(_DELAY_ENV) or 0)
    dirs = _Dirs(roots)
    jfd = os.open(jpath, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
    runner = _Runner(store, dirs, result, jfd)
    try:
        runner.remove_temps(temps)
        for i, a in enumerate(actions):
            if i in done:
                continue
            try:
                runner.step(a)
            except OSError as exc:
                result.errors.append(f"{printable(a.path)}: {exc.strerror or exc}")
                continue
            os.write(jfd, f"{i}\n".encode())  # page cache survives SIGKILL; a re-run re-checks anyway
            if delay:
                time.sleep(delay)
    finally:
        os.close(jfd)
        dirs.close()
    if result.ok:
        os.unlink(jpath)
        meta = store.read_meta()
        meta.setdefault("restores", []).append({"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                                "snapshot": snapshot, "from": latest, "applied": len(result.applied)})
        store.write_meta(meta)
