"""What changed between two snapshots, and how to show it."""

import os

from .manifest import DATA, MODE, SIZE, TYPE

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .store import SessionStore

CREATED, MODIFIED, DELETED = "created", "modified", "deleted"


class Change:
    """One path: ``kind`` is created/modified/deleted; ``old``/``new`` are manifest entries (or None)."""

    __slots__ = ("kind", "new", "old", "path")

    def __init__(self, path: str, kind: str, old: 'list[Any] | None', new: 'list[Any] | None') -> None:
        self.path, self.kind, self.old, self.new = path, kind, old, new

    def what(self) -> str:
        """A short description: content, mode, type or target."""
        o, n = self.old, self.new
        if o is None or n is None:
            return ""
        if o[TYPE] != n[TYPE]:
            return f"type {o[TYPE]}->{n[TYPE]}"
        parts = []
        if o[DATA] != n[DATA]:
            parts.append("target" if n[TYPE] == "l" else "content")
        if o[MODE] != n[MODE]:
            parts.append(f"mode {o[MODE]:o}->{n[MODE]:o}")
        return ", ".join(parts)

    def to_doc(self) -> 'dict[str, Any]':
        return {"path": self.path, "kind": self.kind, "what": self.what(), "old": self.old, "new": self.new}

    @classmethod
    def from_doc(cls, d: 'dict[str, Any]') -> 'Change':
        return cls(str(d["path"]), str(d["kind"]), d.get("old"), d.get("new"))


def compute(old: 'dict[str, list[Any]]', new: 'dict[str, list[Any]]') -> list[Change]:
    """Changes from ``old`` to ``new`` entries, sorted by path."""
    out = []
    get = old.get
    for path, b in new.items():
        a = get(path)
        if a is None:
            out.append(Change(path, CREATED, None, b))
        elif a[DATA] != b[DATA] or a[MODE] != b[MODE] or a[TYPE] != b[TYPE]:
            out.append(Change(path, MODIFIED, a, b))
    created = sum(1 for c in out if c.kind == CREATED)
    if len(old) + created != len(new):  # some old paths are gone
        out.extend(Change(p, DELETED, a, None) for p, a in old.items() if p not in new)
    out.sort(key=lambda c: c.path)
    return out


def _size(e: 'list[Any] | None') -> int:
    return int(e[SIZE]) if e is not None and e[TYPE] == "f" else 0


class ChangeSummary:
    """What a session (or the span between two snapshots) changed.

    ``created``/``modified``/``deleted`` are path lists (directories end with ``/``);
    ``note`` explains an empty summary (rollback disabled, a failed snapshot).
    """

    def __init__(self, changes: 'list[Change]', *, session_id: str = "", roots: 'list[str] | None' = None,
                 from_snapshot: int = 0, to_snapshot: int = 0, note: str = "") -> None:
        self.changes = changes
        self.session_id, self.roots, self.note = session_id, roots or [], note
        self.from_snapshot, self.to_snapshot = from_snapshot, to_snapshot
        self._store: SessionStore | None = None
        self._live = False

    def attach(self, store: 'SessionStore', *, live: bool = False) -> None:
        """Where contents come from for :meth:`unified` (``live``: the new side is the files on disk now)."""
        self._store, self._live = store, live

    def unified(self) -> str:
        """Unified diffs for text files, one line for binary files, symlinks and directories."""
        if self._store is None:
            return ""
        store = self._store
        return "".join(render(store, c, printable(self.rel(c.path)), new_is_live=self._live) for c in self.changes)

    def _paths(self, kind: str) -> list[str]:
        return [c.path + ("/" if (c.new or c.old or ["f"])[TYPE] == "d" else "") for c in self.changes if c.kind == kind]

    @property
    def created(self) -> list[str]:
        return self._paths(CREATED)

    @property
    def modified(self) -> list[str]:
        return self._paths(MODIFIED)

    @property
    def deleted(self) -> list[str]:
        return self._paths(DELETED)

    @property
    def bytes_delta(self) -> int:
        return sum(_size(c.new) - _size(c.old) for c in self.changes)

    def __bool__(self) -> bool:
        return bool(self.changes)

    def __len__(self) -> int:
        return len(self.changes)

    def rel(self, path: str) -> str:
        """``path`` relative to the tracked root holding it (for display)."""
        for r in sorted(self.roots, key=len, reverse=True):
            if path == r:
                return os.path.basename(r) or r
            if path.startswith(r.rstrip("/") + "/"):
                return path[len(r.rstrip("/")) + 1:]
        return path

    def text(self, limit: int = 12) -> str:
        """A short summary for stderr: counts, then the first ``limit`` paths."""
        if self.note and not self.changes:
            return f"[nono] rollback: {self.note}"
        if not self.changes:
            return f"[nono] rollback: no changes in the tracked paths (session {self.session_id})"
        n_c, n_m, n_d = len(self.created), len(self.modified), len(self.deleted)
        delta = self.bytes_delta
        lines = [f"[nono] rollback: session {self.session_id} changed {len(self.changes)} path(s): {n_c} created, "
                 f"{n_m} modified, {n_d} deleted ({'+' if delta >= 0 else '-'}{human_bytes(abs(delta))})"]
        sign = {CREATED: "+", MODIFIED: "~", DELETED: "-"}
        for c in self.changes[:limit]:
            what = c.what()
            slash = "/" if (c.new or c.old or ["f"])[TYPE] == "d" else ""
            lines.append(f"  {sign[c.kind]} {printable(self.rel(c.path))}{slash}" + (f"  ({what})" if what else ""))
        if len(self.changes) > limit:
            lines.append(f"  ... and {len(self.changes) - limit} more (nono rollback show {self.session_id})")
        if self.note:
            lines.append(f"[nono] rollback: {self.note}")
        return "\n".join(lines)

    def to_doc(self) -> 'dict[str, Any]':
        return {"session_id": self.session_id, "from_snapshot": self.from_snapshot, "to_snapshot": self.to_snapshot,
                "created": self.created, "modified": self.modified, "deleted": self.deleted,
                "bytes_delta": self.bytes_delta, "note": self.note, "changes": [c.to_doc() for c in self.changes]}


def printable(path: str) -> str:
    """A path safe to print on one line (newlines, control and undecodable bytes escaped)."""
    if path.isprintable():
        return path
    return "".join(c if c.isprintable() else (f"\\x{ord(c) - 0xDC00:02x}" if 0xDC80 <= ord(c) <= 0xDCFF
                                              else repr(c)[1:-1]) for c in path)


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


# -- diffs ------------------------------------------------------------------------------
MAX_TEXT = 1 << 20


def _content(store: 'SessionStore', e: 'list[Any] | None', live: 'str | None') -> 'bytes | None':
    """The bytes behind an entry: from the store, or (``live``) the file now on disk."""
    if e is None or e[TYPE] != "f":
        return b"" if e is None else None
    if e[SIZE] > MAX_TEXT:
        return None
    try:
        if live is not None:
            with open(live, "rb") as f:
                return f.read(MAX_TEXT + 1)
        return store.read_object(e[DATA])
    except OSError:
        return None


def _text(data: 'bytes | None') -> 'list[str] | None':
    if data is None or b"\0" in data[:8192]:
        return None
    try:
        return data.decode("utf-8").splitlines(keepends=True)
    except UnicodeDecodeError:
        return None


def render(store: 'SessionStore', c: Change, label: str, *, new_is_live: bool = False) -> str:
    """A unified diff for a text file, one summary line for anything else."""
    import difflib

    o, n = c.old, c.new
    kinds = {(o or n or ["f"])[TYPE], (n or o or ["f"])[TYPE]}
    if kinds != {"f"}:
        def show(e: 'list[Any] | None') -> str:
            if e is None:
                return "(absent)"
            return {"l": f"symlink -> {printable(e[DATA])}", "d": "directory"}.get(e[TYPE], f"file ({e[SIZE]} bytes)")
        return f"{c.kind} {label}: {show(o)} => {show(n)}\n"
    a = _text(_content(store, o, None))
    b = _text(_content(store, n, c.path if new_is_live and n is not None else None))
    header = ""
    if o is not None and n is not None and o[MODE] != n[MODE]:
        header = f"mode {o[MODE]:o} => {n[MODE]:o}: {label}\n"
        if o[DATA] == n[DATA]:
            return header
    if a is None or b is None:
        return header + (f"Binary file {label} {c.kind} ({_size(o)} -> {_size(n)} bytes, "
                         f"sha256 {(o[DATA][:12] if o else '-')} -> {(n[DATA][:12] if n else '-')})\n")
    lines = difflib.unified_diff(a, b, "a/" + label if o is not None else "/dev/null",
                                 "b/" + label if n is not None else "/dev/null")
    return header + "".join(x if x.endswith("\n") else x + "\n\\ No newline at end of file\n" for x in lines)
