"""Recording one supervised run: a baseline before the program starts, a final snapshot after.

Kept light to import (``nono run --rollback`` pays for it): hashing, walking and the
store are loaded only when :func:`begin` is called.
"""

import os
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any

    from .changes import ChangeSummary
    from .exclude import Filter
    from .manifest import Manifest
    from .scan import Budget
    from .store import SessionStore


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class RollbackSession:
    """A session being recorded. ``enabled`` is False when the baseline could not be taken."""

    def __init__(self, store: 'SessionStore | None', roots: list[str], filt: 'Filter | None', budget: 'Budget | None',
                 out: 'Callable[[str], None]', *, reason: str = "") -> None:
        self.store, self.roots, self.filter, self.budget, self.out = store, roots, filt, budget, out
        self.reason = reason
        self.baseline: Manifest | None = None
        self.last: Manifest | None = None
        self.finished = False

    @property
    def enabled(self) -> bool:
        return self.store is not None and self.baseline is not None

    @property
    def session_id(self) -> str:
        return self.store.session_id if self.store is not None else ""

    def snapshot(self) -> 'Manifest':
        """Take and record the next snapshot (and the change set since the previous one)."""
        from .changes import compute
        from .scan import take

        assert self.store is not None and self.filter is not None and self.budget is not None and self.last is not None
        prev = self.last
        m = take(self.roots, self.filter, self.budget.scaled(2), number=prev.number + 1, prev=prev, store=self.store)
        self.store.write_doc(self.store.snapshot_path(m.number), m.to_doc())
        changes = compute(prev.entries, m.entries)
        self.store.write_doc(self.store.changes_path(m.number),
                             {"number": m.number, "parent": prev.number, "changes": [c.to_doc() for c in changes]})
        self.last = m
        self._update_meta()
        return m

    def _update_meta(self, **extra: 'Any') -> None:
        assert self.store is not None
        meta = self.store.read_meta()
        numbers = self.store.snapshot_numbers()
        roots = meta.setdefault("merkle_roots", [])
        if self.last is not None:
            del roots[self.last.number:]
            roots.append(self.last.merkle)
        meta["snapshot_count"] = len(numbers)
        meta.update(extra)
        self.store.write_meta(meta)

    def finish(self, exit_code: int) -> 'ChangeSummary':
        """Take the final snapshot; return what changed since the baseline."""
        from .changes import ChangeSummary, compute

        if not self.enabled:
            return ChangeSummary([], note=self.reason or "rollback was not recorded for this session")
        assert self.store is not None and self.baseline is not None
        if self.finished:
            assert self.last is not None
            return ChangeSummary(compute(self.baseline.entries, self.last.entries), session_id=self.session_id,
                                 roots=self.roots, to_snapshot=self.last.number)
        self.finished = True
        try:
            m = self.snapshot()
        except Exception as exc:  # the run is over: report, never crash here
            note = f"the final snapshot failed ({exc}); 'nono rollback restore {self.session_id}' can still " \
                   "restore files that existed before the run, but will not delete files it created"
            self.out(f"[nono] WARNING: rollback: {note}")
            try:
                self._update_meta(ended=_now(), exit_code=exit_code, final_snapshot_error=str(exc))
            except OSError:
                pass
            return ChangeSummary([], session_id=self.session_id, roots=self.roots, note=note)
        summary = ChangeSummary(compute(self.baseline.entries, m.entries), session_id=self.session_id,
                                roots=self.roots, to_snapshot=m.number)
        counts = {"created": len(summary.created), "modified": len(summary.modified), "deleted": len(summary.deleted)}
        self._update_meta(ended=_now(), exit_code=exit_code, changes=counts, store_bytes=self.store.size_bytes())
        summary.attach(self.store)
        return summary


def begin(tracked: 'list[str]', *, command: 'list[str]', exclude: 'Iterable[str]' = (), include: 'Iterable[str]' = (),
          all_files: bool = False, out: 'Callable[[str], None]', kind: str = "run", strict: bool = False,
          max_files: 'int | None' = None, max_bytes: 'int | None' = None, root: 'str | None' = None) -> RollbackSession:
    """Take the baseline snapshot of ``tracked`` (the writable grants) before the program starts.

    Prints one summary line through ``out``. When a walk budget is exceeded or the store
    cannot be written, prints a loud warning and returns a disabled session (the run goes
    on without rollback), or raises with ``strict``.
    """
    from .changes import human_bytes
    from .exclude import Filter
    from .retention import MAX_SESSIONS, prune
    from .scan import Budget, BudgetExceeded, normalize_roots, take
    from .store import SessionStore, new_session_id, rollbacks_root, state_root

    roots = normalize_roots(list(tracked))
    store_root = root or rollbacks_root()
    filt = Filter(exclude=exclude, include=include, all_files=all_files, never=(state_root(), store_root))
    budget = Budget(max_files, max_bytes)
    roots = [r for r in roots if not filt.inside_never(r)]  # nono's own state is never tracked
    if not roots:
        return RollbackSession(None, [], None, None, out, reason="no writable paths to track; nothing was recorded")
    store = SessionStore(new_session_id(), store_root)
    try:
        try:
            prune(store_root, keep=MAX_SESSIONS - 1)
        except OSError as exc:
            out(f"[nono] warning: rollback: could not prune old sessions: {exc}")
        store.create()
        store.write_meta({"session_id": store.session_id, "kind": kind, "started": _now(), "ended": None,
                          "command": list(command), "tracked_paths": roots, "exclusions": filt.describe(),
                          "pid": os.getpid(), "uid": os.getuid(), "snapshot_count": 0, "exit_code": None,
                          "merkle_roots": []})
        m = take(roots, filt, budget, number=0, prev=None, store=store)
        store.write_doc(store.snapshot_path(0), m.to_doc())
    except (BudgetExceeded, OSError) as exc:
        _discard(store)
        if strict:
            raise
        reason = _budget_message(exc, budget) if isinstance(exc, BudgetExceeded) else f"the store could not be written ({exc})"
        out(f"[nono] WARNING: rollback is OFF for this run: {reason}")
        return RollbackSession(None, roots, filt, budget, out, reason=f"rollback was off for this run: {reason}")
    session = RollbackSession(store, roots, filt, budget, out)
    session.baseline = session.last = m
    session._update_meta(baseline={k: m.stats[k] for k in ("files", "bytes", "ms", "unreadable")})
    note = f", {m.stats['unreadable']} unreadable file(s) not recorded" if m.stats["unreadable"] else ""
    out(f"[nono] rollback: baseline of {m.stats['files']:,} files ({human_bytes(m.stats['bytes'])}) in "
        f"{m.stats['ms']:.0f} ms{note}; session {store.session_id}")
    return session


def _budget_message(exc: 'Exception', budget: 'Budget') -> str:
    from .changes import human_bytes

    what = getattr(exc, "what", "")
    size = f"{budget.max_files:,} files" if what == "files" else f"{human_bytes(budget.max_bytes)}"
    return (f"the tracked paths hold more than {size} (the walk stopped in {getattr(exc, 'where', '?')}). "
            "Leave big directories out with --rollback-exclude PATTERN (or grant fewer writable paths); "
            "raise the limit with NONO_ROLLBACK_MAX_FILES / NONO_ROLLBACK_MAX_BYTES")


def _discard(store: 'SessionStore') -> None:
    if os.path.isdir(store.dir):
        from .retention import remove_session

        try:
            remove_session(store)
        except OSError:
            pass
