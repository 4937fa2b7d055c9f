"""Content-addressed rollback: snapshots of what an agent may write, diffs, and restore.

Entry points (each module is imported on demand; importing this package loads nothing):

``nono.rollback.session.begin(tracked, *, command, exclude=(), include=(), all_files=False, out) -> RollbackSession``
    Baseline snapshot of ``tracked`` (the run's writable grants), before the program
    starts. Prints one summary line through ``out`` (files, bytes, ms), or a loud warning
    naming ``--rollback-exclude`` when a walk budget is exceeded: the session is then
    disabled (``.enabled`` False) and the run goes on without rollback.

``RollbackSession.finish(exit_code) -> ChangeSummary``
    Final snapshot, change set, and ``session.json`` completed (ended, exit_code,
    snapshot_count, merkle_roots, store_bytes). Never raises for a store problem: the
    summary's ``note`` says what went wrong.

``ChangeSummary`` (``nono.rollback.changes``)
    ``.created`` / ``.modified`` / ``.deleted`` (path lists; directories end with ``/``),
    ``.session_id``, ``.text()`` (short summary for stderr), ``.unified()`` (diffs),
    ``bool(summary)`` (anything changed?).

``nono.rollback.restore.restore(session_id=None, snapshot=0, *, dry_run=False, out=None) -> RestoreResult``
    Put the tracked paths back as snapshot ``snapshot`` recorded them (None: the last
    session). ``.ok``, ``.text()``, ``.applied``, ``.kept``, ``.errors``. Raises
    ``RestoreError`` if it cannot start.

``nono.cli.rollback.cmd_rollback(argv) -> int`` / ``cmd_session(argv) -> int``
    ``nono rollback list|show|restore|verify|cleanup`` and ``nono session diff|rollback``.

``nono.rollback.api.Snapshots(paths)``
    ``.create() -> int``, ``.diff(cp) -> ChangeSummary``, ``.restore(cp)`` for Python code.

The store lives in ``$XDG_STATE_HOME/nono/rollbacks/<session-id>/`` (see
``nono.rollback.store``) and is never reachable from inside a sandbox. docs/rollback.md
describes the format, exclusions, budgets, retention and crash safety.
"""
