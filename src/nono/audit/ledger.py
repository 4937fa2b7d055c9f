"""The global ledger: one hash-chained line per finished session (``ledger.ndjson``).

Each entry records a session's digest (see :func:`nono.audit.session.session_digest`), its
event count and chain head. Appends take an exclusive ``flock`` on ``ledger.lock``, read the
last entry for ``seq``/``prev``, write the new line with one ``write`` (``O_APPEND``) and fsync:
concurrent sessions never interleave or lose entries. Changing, removing or reordering any
entry but the last breaks the chain; tail truncation is the one thing a local chain cannot
show (anchor ``ledger_head()`` elsewhere, e.g. in a signed attestation, if that matters).
"""

import os

from .. import _jsonlite
from . import chain, store

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

LEDGER_LABEL = "ledger"


def _last_line(fd: int, size: int) -> 'tuple[bytes, int]':
    """(last complete line without newline, offset just after the last newline) of the file open as ``fd``."""
    chunk = 4096
    while True:
        start = max(0, size - chunk)
        data = os.pread(fd, size - start, start)
        end = data.rfind(b"\n")
        if end < 0:
            if start == 0:
                return b"", 0
            chunk *= 4
            continue
        begin = data.rfind(b"\n", 0, end)
        if begin >= 0 or start == 0:
            return data[begin + 1:end], start + end + 1
        chunk *= 4


_SYS_FLOCK = {"x86_64": 73, "aarch64": 32}.get(os.uname().machine, -1)


def _lock_exclusive(fd: int) -> None:
    """``flock(fd, LOCK_EX)``: through ``nono._ffi`` (already loaded by ``nono run``), else ``fcntl``."""
    if _SYS_FLOCK < 0:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX)
        return
    from .. import _ffi

    while True:
        try:
            _ffi.syscall(_SYS_FLOCK, fd, 2)  # LOCK_EX
            return
        except InterruptedError:
            continue


def append(fields: 'dict[str, Any]', root: 'str | None' = None) -> 'dict[str, Any]':
    """Append one entry (``fields`` + seq, prev, hash) under the ledger lock; return it."""
    root = root or store.audit_root()
    lock = os.open(os.path.join(root, store.LEDGER_LOCK), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        _lock_exclusive(lock)
        fd = os.open(os.path.join(root, store.LEDGER_FILE), os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            size = os.fstat(fd).st_size
            last, good_end = _last_line(fd, size) if size else (b"", 0)
            if good_end != size:
                os.ftruncate(fd, good_end)  # a torn append (a crash mid-write): drop the partial line
            seq, prev = 0, chain.genesis(LEDGER_LABEL)
            if last:
                try:
                    rec = _jsonlite.loads(last.decode("utf-8"))
                    seq, prev = int(rec["seq"]) + 1, str(rec["hash"])
                except (ValueError, KeyError, TypeError, UnicodeDecodeError):
                    # A damaged last entry: chain onto its bytes so verify still points at it.
                    from ._hash import hexdigest

                    seq, prev = os.pread(fd, good_end, 0).count(b"\n"), hexdigest(last)
            entry: 'dict[str, Any]' = {"seq": seq}
            entry.update(fields)
            entry["prev"] = prev
            line, h = chain.seal(_jsonlite.dumps_compact(entry))
            data = line.encode("utf-8")
            written = os.write(fd, data)
            if written != len(data):  # pragma: no cover - a full disk
                os.ftruncate(fd, size if good_end == size else good_end)
                raise OSError("short write to the audit ledger")
            os.fsync(fd)
            entry["hash"] = h
            return entry
        finally:
            os.close(fd)
    finally:
        os.close(lock)  # closing the descriptor releases the flock


def read(root: 'str | None' = None) -> 'tuple[list[dict[str, Any]], list[str]]':
    """Every ledger entry, and the chain problems found (empty when intact)."""
    root = root or store.audit_root()
    try:
        with open(os.path.join(root, store.LEDGER_FILE), "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return [], []
    entries: 'list[dict[str, Any]]' = []
    problems: list[str] = []
    prev = chain.genesis(LEDGER_LABEL)
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    elif lines:
        problems.append(f"ledger line {len(lines)}: incomplete (no newline at the end)")
    for n, bline in enumerate(lines):
        try:
            text = bline.decode("utf-8")
            rec, prev = chain.check_line(text, n + 1, n, prev, label="ledger entry")
        except UnicodeDecodeError:
            problems.append(f"ledger entry {n} (line {n + 1}): not UTF-8: hash mismatch")
            prev = ""
            continue
        except chain.ChainError as exc:
            problems.append(str(exc))
            try:
                prev = str(_jsonlite.loads(bline.decode("utf-8")).get("hash", ""))
            except (ValueError, UnicodeDecodeError, AttributeError):
                prev = ""
            continue
        entries.append(rec)
    return entries, problems


def head(root: 'str | None' = None) -> 'str | None':
    """The hash of the last ledger entry (to anchor elsewhere), or None if the ledger is empty."""
    entries, _ = read(root)
    return str(entries[-1]["hash"]) if entries else None
