"""``nono rollback list|show|restore|verify|cleanup`` and ``nono session diff|rollback``."""

import sys

from . import args as A

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ..rollback.changes import ChangeSummary
    from ..rollback.store import SessionStore

HELP = """\
Usage: nono rollback COMMAND [OPTIONS]

Sessions recorded with 'nono run --rollback' (or nono.Snapshots) keep the tracked
files' contents in $XDG_STATE_HOME/nono/rollbacks, out of every sandbox's reach.
SESSION is a session id, a unique prefix of one, or 'last' (the default).

Commands:
  list [--json]                          the recorded sessions, newest last
  show [SESSION] [--diff] [--json]       what a session changed (--diff: unified diffs)
  restore [SESSION] [--snapshot N] [--dry-run]
                                         put the files back as snapshot N (default 0,
                                         before the run) recorded them
  verify [SESSION] [--json]              recompute object hashes and Merkle roots
  cleanup [--keep N] [--max-bytes SIZE] [--dry-run]
                                         delete the oldest sessions beyond the limits

Examples:
  nono run --allow-cwd --rollback -- python my_agent.py
  nono rollback show --diff
  nono rollback restore 20261123-183512 --dry-run
"""

SESSION_HELP = """\
Usage: nono session COMMAND [SESSION] [OPTIONS]

Commands:
  diff [SESSION] [--stat] [--json]       what the session changed (default: the last one)
  rollback [SESSION] [--snapshot N] [--dry-run]
                                         undo it: put everything back as before the run
"""

_O = "Options"
_JSON = A.Flag("json", ("--json",), "bool", "print JSON", section=_O)
_SNAP = A.Flag("snapshot", ("--snapshot",), "int", "snapshot number (0 = the baseline, before the run)",
               metavar="N", section=_O)
_DRY = A.Flag("dry_run", ("--dry-run",), "bool", "list the actions, change nothing", section=_O)
_FLAGS: 'dict[str, tuple[A.Flag, ...]]' = {
    "list": (_JSON,),
    "show": (_JSON, _SNAP, A.Flag("diff", ("--diff",), "bool", "unified diffs of text files", section=_O)),
    "restore": (_JSON, _SNAP, _DRY),
    "verify": (_JSON,),
    "cleanup": (A.Flag("keep", ("--keep",), "int", "sessions to keep (default 10)", metavar="N", section=_O),
                A.Flag("max_bytes", ("--max-bytes",), "str", "total size to keep (e.g. 5G, 500M; default 5G)",
                       metavar="SIZE", section=_O),
                _DRY, _JSON),
}
_SESSION_FLAGS: 'dict[str, tuple[A.Flag, ...]]' = {
    "diff": (_JSON, _SNAP, A.Flag("stat", ("--stat",), "bool", "only the summary, no diffs", section=_O)),
    "rollback": (_JSON, _SNAP, _DRY),
}
_MAX_ARGS = {"list": 0, "show": 1, "restore": 1, "verify": 1, "cleanup": 0, "diff": 1, "rollback": 1}


def _out(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")


def _dump(value: 'Any') -> None:
    import json

    _out(json.dumps(value, indent=2))


def _parse(group: str, table: 'dict[str, tuple[A.Flag, ...]]', argv: list[str],
           usage: str) -> 'tuple[str, dict[str, object], list[str]] | int':
    if not argv or argv[0] in ("-h", "--help", "help"):
        sys.stdout.write(usage)
        return 0 if argv else 2
    sub, rest = argv[0], argv[1:]
    if sub not in table:
        import difflib

        close = difflib.get_close_matches(sub, list(table), n=1)
        raise A.UsageError(f"unknown command 'nono {group} {sub}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
    try:
        opts, pos = A.parse(f"{group} {sub}", table[sub], [a for a in rest if a != "--silent"], trailing=False)
    except A.HelpRequested:
        sys.stdout.write(f"Usage: nono {group} {sub} ...\n{A.format_flags(table[sub])}\n\n" + usage)
        return 0
    if len(pos) > _MAX_ARGS[sub]:
        raise A.UsageError(f"unexpected argument '{pos[_MAX_ARGS[sub]]}' for 'nono {group} {sub}'")
    return sub, opts, pos


def cmd_rollback(argv: list[str]) -> int:
    """Dispatch ``nono rollback SUB ...``."""
    parsed = _parse("rollback", _FLAGS, argv, HELP)
    if isinstance(parsed, int):
        return parsed
    sub, opts, pos = parsed
    handler = {"list": _list, "show": _show, "restore": _restore, "verify": _verify, "cleanup": _cleanup}[sub]
    return _guard(handler, opts, pos)


def cmd_session(argv: list[str]) -> int:
    """Dispatch ``nono session diff|rollback [SESSION]`` (the last session by default)."""
    parsed = _parse("session", _SESSION_FLAGS, argv, SESSION_HELP)
    if isinstance(parsed, int):
        return parsed
    sub, opts, pos = parsed
    if sub == "diff":
        opts["diff"] = not opts["stat"]
        return _guard(_show, opts, pos)
    return _guard(_restore, opts, pos)


def _guard(handler: 'Any', opts: 'dict[str, object]', pos: list[str]) -> int:
    from ..rollback.restore import RestoreError
    from ..rollback.store import StoreError

    try:
        return int(handler(opts, pos))
    except (StoreError, RestoreError) as exc:
        sys.stderr.write(f"nono: {exc}\n")
        return 1


def _store(pos: list[str]) -> 'SessionStore':
    from ..rollback.store import SessionStore, resolve_session

    return SessionStore(resolve_session(pos[0] if pos else None))


# -- list -------------------------------------------------------------------------------
def _row(store: 'SessionStore') -> 'dict[str, Any]':
    from ..rollback.retention import in_progress, session_bytes
    from ..rollback.store import StoreError

    try:
        meta = store.read_meta()
    except StoreError:
        meta = {"session_id": store.session_id, "error": "unreadable session.json"}
    status = "running" if in_progress(meta) else ("ended" if meta.get("ended") else "incomplete")
    return {"session_id": store.session_id, "started": meta.get("started"), "ended": meta.get("ended"), "status": status,
            "exit_code": meta.get("exit_code"), "command": meta.get("command") or [],
            "tracked_paths": meta.get("tracked_paths") or [], "snapshot_count": meta.get("snapshot_count", 0),
            "changes": meta.get("changes"), "bytes": session_bytes(store, meta), "kind": meta.get("kind", "run")}


def _list(opts: 'dict[str, object]', _pos: list[str]) -> int:
    from ..rollback.changes import human_bytes, printable
    from ..rollback.store import SessionStore, list_session_ids, rollbacks_root

    rows = [_row(SessionStore(sid)) for sid in list_session_ids()]
    if opts["json"]:
        _dump(rows)
        return 0
    if not rows:
        _out(f"No rollback sessions in {rollbacks_root()}.\nRecord one with: nono run --allow-cwd --rollback -- PROGRAM")
        return 0
    _out(f"{'SESSION':<22} {'STARTED (UTC)':<20} {'STATUS':<10} {'EXIT':>4} {'SNAPS':>5} {'CHANGES':>8} {'SIZE':>10}  TRACKED / COMMAND")
    for r in rows:
        ch = r["changes"]
        n = str(sum(ch.values())) if isinstance(ch, dict) else "-"
        started = str(r["started"] or "").replace("T", " ").rstrip("Z")
        code = "-" if r["exit_code"] is None else str(r["exit_code"])
        tracked = ", ".join(printable(p) for p in r["tracked_paths"][:3]) + (" ..." if len(r["tracked_paths"]) > 3 else "")
        _out(f"{r['session_id']:<22} {started:<20} {r['status']:<10} {code:>4} {r['snapshot_count']:>5} {n:>8} "
             f"{human_bytes(r['bytes']):>10}  {tracked}")
        _out(f"{'':<22} $ {printable(' '.join(r['command']))[:100]}")
    _out(f"\nStore: {rollbacks_root()}   undo the last one: nono session rollback")
    return 0


# -- show / diff ------------------------------------------------------------------------
def summary_of(store: 'SessionStore', since: int = 0) -> 'ChangeSummary':
    """Changes from snapshot ``since`` to the session's latest snapshot."""
    from ..rollback.changes import Change, ChangeSummary
    from ..rollback.restore import transitions
    from ..rollback.store import StoreError

    numbers = store.snapshot_numbers()
    if since not in numbers:
        raise StoreError(f"session {store.session_id} has no snapshot {since} (it has: {', '.join(map(str, numbers)) or 'none'})")
    meta = store.read_meta()
    latest = numbers[-1]
    changes = []
    for path, (old, new) in sorted(transitions(store, since, latest).items()):
        kind = "created" if old is None else ("deleted" if new is None else "modified")
        changes.append(Change(path, kind, old, new))
    note = "" if latest > since else "only the baseline was recorded (the run did not finish?)"
    if meta.get("final_snapshot_error"):
        note = f"the final snapshot failed: {meta['final_snapshot_error']}"
    s = ChangeSummary(changes, session_id=store.session_id, roots=list(meta.get("tracked_paths") or []),
                      from_snapshot=since, to_snapshot=latest, note=note)
    s.attach(store)
    return s


def _show(opts: 'dict[str, object]', pos: list[str]) -> int:
    from ..rollback.changes import printable

    store = _store(pos)
    since = int(opts["snapshot"]) if opts.get("snapshot") is not None else 0  # type: ignore[call-overload]
    summary = summary_of(store, since)
    if opts["json"]:
        doc = _row(store) | {"summary": summary.to_doc()}
        if opts.get("diff"):
            doc["diff"] = summary.unified()
        _dump(doc)
        return 0
    meta = store.read_meta()
    _out(f"Session {store.session_id} ({meta.get('kind', 'run')}), started {meta.get('started')}, "
         f"ended {meta.get('ended') or '-'}, exit code {meta.get('exit_code')}")
    _out(f"$ {printable(' '.join(meta.get('command') or []))}")
    _out("Tracked: " + ", ".join(printable(p) for p in meta.get("tracked_paths") or []))
    _out(summary.text(limit=200).replace("[nono] rollback: ", "", 1))
    if opts.get("diff") and summary:
        _out("")
        sys.stdout.write(summary.unified())
    return 0


# -- restore ----------------------------------------------------------------------------
def _restore(opts: 'dict[str, object]', pos: list[str]) -> int:
    from ..rollback.restore import restore

    store = _store(pos)
    snap = int(opts["snapshot"]) if opts.get("snapshot") is not None else 0  # type: ignore[call-overload]
    result = restore(store.session_id, snap, dry_run=bool(opts["dry_run"]), out=_err)
    if opts["json"]:
        _dump(result.to_doc())
    elif not result.actions:
        _out(f"Nothing to do: the tracked paths already match snapshot {snap} of session {store.session_id}.")
    else:
        _out(result.text().replace("[nono] rollback: ", "", 1))
    return 0 if result.ok else 1


# -- verify -----------------------------------------------------------------------------
def _verify(opts: 'dict[str, object]', pos: list[str]) -> int:
    from ..rollback.verify import verify

    store = _store(pos)
    report = verify(store)
    if opts["json"]:
        _dump(report)
    else:
        for s in report["snapshots"]:
            _out(f"snapshot {s['number']:>3}: {s['entries']:>7} entries  merkle {s['merkle_root'][:16]}  "
                 f"{'ok' if s['ok'] else 'MISMATCH'}")
        _out(f"{report['objects_checked']} object(s) checked")
        for p in report["problems"]:
            _out(f"problem: {p}")
        _out(f"session {store.session_id}: " + ("OK" if report["ok"] else "CORRUPT"))
    return 0 if report["ok"] else 1


# -- cleanup ----------------------------------------------------------------------------
def parse_size(text: str) -> int:
    """``5G``, ``500M``, ``10k``, ``1024`` -> bytes (binary units)."""
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}.get(t[-1:], 1)
    try:
        return int(float(t[:-1] if mult > 1 else t) * mult)
    except ValueError:
        raise A.UsageError(f"invalid size {text!r} (use e.g. 5G, 500M, 1024)") from None


def _cleanup(opts: 'dict[str, object]', _pos: list[str]) -> int:
    from ..rollback.changes import human_bytes
    from ..rollback.retention import MAX_BYTES, MAX_SESSIONS, prune

    keep = MAX_SESSIONS if opts.get("keep") is None else int(opts["keep"])  # type: ignore[call-overload]
    if keep < 0:
        raise A.UsageError("--keep must be 0 or more")
    max_bytes = parse_size(str(opts["max_bytes"])) if opts.get("max_bytes") else MAX_BYTES
    removed = prune(keep=keep, max_bytes=max_bytes, dry_run=bool(opts["dry_run"]))
    if opts["json"]:
        _dump({"removed": [{"session_id": s, "bytes": b} for s, b in removed], "dry_run": bool(opts["dry_run"])})
        return 0
    verb = "would remove" if opts["dry_run"] else "removed"
    for sid, size in removed:
        _out(f"{verb} {sid} ({human_bytes(size)})")
    _out(f"{verb} {len(removed)} session(s), {human_bytes(sum(b for _s, b in removed))}"
         + ("" if removed else f" (limits: {keep} sessions, {human_bytes(max_bytes)})"))
    return 0


if __name__ == "__main__":  # pragma: no cover - `python -m nono.cli.rollback rollback ...` for manual use
    a = sys.argv[1:]
    sys.exit(cmd_session(a[1:]) if a[:1] == ["session"] else cmd_rollback(a[1:] if a[:1] == ["rollback"] else a))
