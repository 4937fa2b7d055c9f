"""``nono.Snapshots``: checkpoints of some directories from Python.

::

    snap = nono.Snapshots(["/tmp/agent-session"])
    cp = snap.create()          # 0: the first checkpoint
    ...                         # risky work
    print(snap.diff(cp).text()) # what changed since (snap.diff(cp).unified() for the diffs)
    snap.restore(cp)            # put it back

Checkpoints are snapshots of one rollback session in the usual store (so
``nono rollback list/show/verify`` see them too). ``restore`` first records the
current state as a new checkpoint, so a restore can itself be undone.
"""

from .changes import ChangeSummary, compute
from .manifest import Manifest
from .restore import RestoreResult
from .restore import restore as _restore
from .scan import take
from .session import RollbackSession, begin

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable


class Snapshots:
    """Content-addressed checkpoints of ``paths`` (files and directory trees)."""

    def __init__(self, paths: 'Iterable[str]', *, exclude: 'Iterable[str]' = (), include: 'Iterable[str]' = (),
                 all_files: bool = False, store_dir: 'str | None' = None) -> None:
        self.paths = [str(p) for p in paths]
        self._opts = {"exclude": tuple(exclude), "include": tuple(include), "all_files": all_files}
        self._root = store_dir
        self._session: RollbackSession | None = None

    @property
    def session_id(self) -> str:
        """The store session holding the checkpoints ('' before the first :meth:`create`)."""
        return self._session.session_id if self._session is not None else ""

    def create(self) -> int:
        """Record a checkpoint; returns its id (0, 1, 2, ...)."""
        if self._session is None:
            self._session = begin(self.paths, command=["nono.Snapshots"], out=lambda _s: None, kind="api", strict=True,
                                  root=self._root, **self._opts)  # type: ignore[arg-type]
            assert self._session.baseline is not None
            return self._session.baseline.number
        return self._session.snapshot().number

    def _need(self) -> RollbackSession:
        if self._session is None or not self._session.enabled:
            raise ValueError("no checkpoint yet: call create() first")
        return self._session

    def _manifest(self, cp: int) -> Manifest:
        s = self._need()
        assert s.store is not None
        if s.last is not None and s.last.number == cp:
            return s.last
        if s.baseline is not None and s.baseline.number == cp:
            return s.baseline
        return Manifest.from_doc(s.store.read_doc(s.store.snapshot_path(cp)))

    def diff(self, cp: int) -> ChangeSummary:
        """What changed in the files since checkpoint ``cp`` (nothing is recorded)."""
        s = self._need()
        assert s.filter is not None and s.budget is not None and s.store is not None
        live = take(s.roots, s.filter, s.budget.scaled(2), number=-1, prev=s.last, store=None)
        summary = ChangeSummary(compute(self._manifest(cp).entries, live.entries), session_id=s.session_id,
                                roots=s.roots, from_snapshot=cp, to_snapshot=-1)
        summary.attach(s.store, live=True)
        return summary

    def restore(self, cp: int, *, dry_run: bool = False) -> RestoreResult:
        """Put the files back as checkpoint ``cp`` recorded them (the current state is recorded first)."""
        s = self._need()
        self._manifest(cp)  # an unknown checkpoint fails here, before anything is recorded
        if dry_run:
            return self._dry(cp)
        s.snapshot()
        result = _restore(s.session_id, cp, root=self._root)
        if not result.ok:
            from ..errors import NonoError

            raise NonoError("restore incomplete: " + "; ".join(result.errors))
        return result

    def _dry(self, cp: int) -> RestoreResult:
        from .restore import plan

        s = self._need()
        assert s.filter is not None and s.budget is not None
        live = take(s.roots, s.filter, s.budget.scaled(2), number=-1, prev=s.last, store=None)
        target = self._manifest(cp).entries
        trans = {c.path: (c.old, c.new) for c in compute(target, live.entries)}
        return RestoreResult(s.session_id, cp, plan(trans), True)

    def close(self) -> None:
        """Mark the session ended (the checkpoints stay in the store until pruned)."""
        if self._session is not None and self._session.enabled and not self._session.finished:
            self._session.finished = True
            self._session._update_meta(ended=_now(), exit_code=0)


def _now() -> str:
    from .session import _now as now

    return now()
