"""Where audit records live, how they are named, read, listed, and whether a supervisor is alive.

Layout (``$XDG_STATE_HOME/nono/audit``, default ``~/.local/state/nono/audit``; the whole
``$XDG_STATE_HOME/nono`` tree is denied to every sandbox)::

    <session-id>/session.json          metadata, pretty JSON (upstream's SessionMetadata names)
    <session-id>/audit-events.ndjson   the hash-chained events, one JSON object per line
    <session-id>/audit-attestation.bundle   the DSSE attestation (signed sessions only)
    ledger.ndjson + ledger.lock        one hash-chained entry per finished session
    .running/<session-id>              running sessions (for ``nono ps``); removed at finish

``NONO_AUDIT_DIR`` overrides the root (tests, benchmarks).
"""

import os
import time

from .. import _jsonlite

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

SESSION_FILE = "session.json"
EVENTS_FILE = "audit-events.ndjson"
BUNDLE_FILE = "audit-attestation.bundle"
LEDGER_FILE = "ledger.ndjson"
LEDGER_LOCK = "ledger.lock"
RUNNING_DIR = ".running"


class AuditError(Exception):
    """A session that does not exist, is ambiguous, or cannot be read."""


def audit_root() -> str:
    """``$XDG_STATE_HOME/nono/audit`` (``NONO_AUDIT_DIR`` overrides)."""
    override = os.environ.get("NONO_AUDIT_DIR")
    if override:
        return os.path.abspath(override)
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(os.path.abspath(state), "nono", "audit")


def new_session_id(now: 'float | None' = None) -> str:
    """``YYYYMMDD-HHMMSS-<6 hex>`` (UTC), the rollback store's format: names sort by start time."""
    t = time.time() if now is None else now
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(t))
    return f"{stamp}-{int(t * 1000) % 1000:03x}{os.urandom(2).hex()[:3]}"


def is_session_id(name: str) -> bool:
    if not name or name.startswith(".") or "/" in name or len(name) > 64:
        return False
    return all(c.isalnum() or c in "-_" for c in name)


_iso_cache: 'list[Any]' = [-1, ""]


def iso(t: float) -> str:
    """RFC 3339 UTC with milliseconds: ``2026-11-23T18:35:12.123Z`` (the second is cached)."""
    sec = int(t)
    if sec != _iso_cache[0]:
        _iso_cache[0] = sec
        _iso_cache[1] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
    return f"{_iso_cache[1]}.{int((t - sec) * 1000):03d}Z"


def parse_iso(stamp: str) -> float:
    """Seconds since the epoch for a time written by :func:`iso` (0.0 if unreadable)."""
    import calendar

    try:
        main, _dot, frac = stamp.rstrip("Z").partition(".")
        base = calendar.timegm(time.strptime(main, "%Y-%m-%dT%H:%M:%S"))
        return base + (int(frac[:3].ljust(3, "0")) / 1000 if frac else 0.0)
    except (ValueError, TypeError):
        return 0.0


# -- process liveness (no pidfd: a pid plus its start time, from /proc) ---------------------
def proc_start(pid: int) -> int:
    """Field 22 of ``/proc/PID/stat`` (start time in clock ticks since boot); -1 if unreadable."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return -1
    fields = data[data.rfind(b")") + 2:].split()
    try:
        if fields[0] in (b"Z", b"X"):
            return -2  # a zombie: dead, not yet reaped
        return int(fields[19])
    except (IndexError, ValueError):
        return -1


def alive(pid: 'int | None', start: 'int | None' = None) -> bool:
    """Whether ``pid`` runs and is the same process that started at ``start`` (pid reuse safe)."""
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process: it exists
    now = proc_start(pid)
    if now == -2:
        return False
    if start is not None and start >= 0 and now >= 0 and now != start:
        return False  # the pid was reused by another process
    return True


# -- files --------------------------------------------------------------------------------
def write_atomic(path: str, data: bytes, *, sync: bool) -> None:
    """Temp file in the same directory, (fsync), rename, (fsync the directory): the rollback store's writer."""
    from ..rollback._fs import atomic_write

    atomic_write(path, data, mode=0o600, sync=sync)


def session_dir(session_id: str, root: 'str | None' = None) -> str:
    return os.path.join(root or audit_root(), session_id)


def read_session(session_id: str, root: 'str | None' = None) -> 'dict[str, Any]':
    path = os.path.join(session_dir(session_id, root), SESSION_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            data = _jsonlite.loads(f.read())
    except FileNotFoundError:
        raise AuditError(f"audit session '{session_id}' not found") from None
    except (OSError, ValueError) as exc:
        raise AuditError(f"audit session '{session_id}': cannot read {SESSION_FILE}: {exc}") from None
    if not isinstance(data, dict):
        raise AuditError(f"audit session '{session_id}': {SESSION_FILE} is not a JSON object")
    return data


def list_session_ids(root: 'str | None' = None) -> list[str]:
    """Every session directory, oldest first (ids sort by start time)."""
    root = root or audit_root()
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if is_session_id(n) and os.path.isfile(os.path.join(root, n, SESSION_FILE)))


def resolve(ref: str, root: 'str | None' = None, ids: 'list[str] | None' = None) -> str:
    """A session id from an id, a unique prefix of one, or ``last``."""
    ids = list_session_ids(root) if ids is None else ids
    if not ids:
        raise AuditError("no audit sessions recorded yet (nono run records one per run; --no-audit turns it off)")
    if ref in ("last", "latest"):
        return ids[-1]
    if ref in ids:
        return ref
    hits = [i for i in ids if i.startswith(ref)]
    if len(hits) == 1:
        return hits[0]
    if hits:
        raise AuditError(f"'{ref}' matches {len(hits)} sessions: " + ", ".join(hits[:5]) + (" ..." if len(hits) > 5 else ""))
    raise AuditError(f"audit session '{ref}' not found (nono audit list shows them)")


def state_of(meta: 'dict[str, Any]') -> str:
    """``finished`` (ended is set), ``running`` (its supervisor is alive) or ``ended abnormally``."""
    if meta.get("ended"):
        return "finished"
    pid = meta.get("pid")
    start = meta.get("pid_start")
    if alive(pid if isinstance(pid, int) else None, start if isinstance(start, int) else None):
        return "running"
    return "ended abnormally"


def running_sessions(root: 'str | None' = None) -> 'list[dict[str, Any]]':
    """The registered sessions whose supervisor is alive (stale registrations are skipped)."""
    directory = os.path.join(root or audit_root(), RUNNING_DIR)
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return []
    out = []
    for name in names:
        if not is_session_id(name):
            continue
        try:
            with open(os.path.join(directory, name), encoding="utf-8") as f:
                entry = _jsonlite.loads(f.read())
        except (OSError, ValueError):
            continue
        if isinstance(entry, dict) and alive(entry.get("pid"), entry.get("pid_start")):
            out.append(entry)
    return out
