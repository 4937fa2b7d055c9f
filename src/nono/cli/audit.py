"""``nono audit list|show|verify|cleanup``, ``nono ps``, ``nono stop``, ``nono logs``.

Entry points (argv without the command word): :func:`cmd_audit`, :func:`cmd_ps`,
:func:`cmd_stop`, :func:`cmd_logs`. Also runnable as ``python -m nono.cli.audit audit list``.
"""

import os
import sys
import time

from . import args as A

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

HELP = """\
Usage: nono audit COMMAND [OPTIONS]

Every 'nono run' is recorded (unless --no-audit) in $XDG_STATE_HOME/nono/audit, out of
every sandbox's reach: the command, the policy and grants, the protections the kernel
enforced, network decisions, denials (where observable) and the exit code, as a
hash-chained event log plus a global ledger of finished sessions.
SESSION is a session id, a unique prefix of one, or 'last'.

Commands:
  list [--today] [--since DATE] [--until DATE] [--command CMD] [--path P] [--recent N] [--json]
                                   the recorded sessions, oldest first
  show SESSION [--json]            what a session ran, with which policy, and what happened
  verify SESSION [--public-key-file FILE] [--json]
                                   check the hash chain, ledger inclusion and signature
  cleanup [--keep N] [--older-than DAYS] [--dry-run] [--json]
                                   delete old records (running sessions are kept; the
                                   ledger keeps its entries)

Related: nono ps, nono stop SESSION, nono logs SESSION [-f]

Examples:
  nono audit list --today --command python
  nono audit show last
  nono audit verify 20261123-183512
"""

PS_HELP = """\
Usage: nono ps [--json]

The running sessions (their supervisor is alive), oldest first.
"""

STOP_HELP = """\
Usage: nono stop SESSION [--force] [--timeout SECONDS]

Ask a running session's supervisor to stop (SIGTERM, which it forwards to the program);
if it is still running after the timeout (default 10 s), kill it (SIGKILL). --force kills
at once. A killed supervisor leaves a record 'nono audit verify' reports as ended abnormally.
"""

LOGS_HELP = """\
Usage: nono logs SESSION [-f] [--tail N] [--json]

Print a session's audit events; -f keeps following them until the session ends.
"""

_O = "Options"
_JSON = A.Flag("json", ("--json",), "bool", "print JSON", section=_O)
_DRY = A.Flag("dry_run", ("--dry-run",), "bool", "list what would be removed, remove nothing", section=_O)
_FLAGS: 'dict[str, tuple[A.Flag, ...]]' = {
    "list": (A.Flag("today", ("--today",), "bool", "only sessions started today (local time)", section=_O),
             A.Flag("since", ("--since",), "str", "only sessions started on or after DATE", metavar="YYYY-MM-DD",
                    section=_O),
             A.Flag("until", ("--until",), "str", "only sessions started on or before DATE", metavar="YYYY-MM-DD",
                    section=_O),
             A.Flag("command", ("--command",), "str", "only sessions whose program is CMD (name or path)",
                    metavar="CMD", section=_O),
             A.Flag("path", ("--path",), "str", "only sessions whose working directory or grants are under P",
                    metavar="P", section=_O),
             A.Flag("recent", ("--recent",), "int", "only the N most recent (after the other filters)",
                    metavar="N", section=_O),
             _JSON),
    "show": (_JSON,),
    "verify": (A.Flag("public_key_file", ("--public-key-file",), "str",
                      "the signature must verify with this public key (base64 SPKI or PEM)", metavar="FILE",
                      section=_O), _JSON),
    "cleanup": (A.Flag("keep", ("--keep",), "int", "finished sessions to keep (default 100)", metavar="N", section=_O),
                A.Flag("older_than", ("--older-than",), "int", "remove sessions started more than DAYS ago",
                       metavar="DAYS", section=_O), _DRY, _JSON),
}
_MAX_ARGS = {"list": 0, "show": 1, "verify": 1, "cleanup": 0}
_PS_FLAGS = (_JSON, A.Flag("all", ("--all", "-a"), "bool", "also list sessions that ended abnormally", section=_O))
_STOP_FLAGS = (A.Flag("force", ("--force", "-f"), "bool", "SIGKILL at once", section=_O),
               A.Flag("timeout", ("--timeout", "-t"), "str", "seconds between SIGTERM and SIGKILL (default 10)",
                      metavar="SECONDS", section=_O), _JSON)
_LOGS_FLAGS = (A.Flag("follow", ("-f", "--follow"), "bool", "keep printing new events until the session ends", section=_O),
               A.Flag("tail", ("--tail", "-n"), "int", "only the last N events (then follow)", metavar="N", section=_O),
               A.Flag("interval", ("--interval",), "str", "seconds between polls with -f (default 0.2)", metavar="S",
                      section=_O),
               _JSON)
DEFAULT_KEEP = 100


def _out(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


def _dump(value: 'Any') -> None:
    import json

    _out(json.dumps(value, indent=2))


def _guard(fn: 'Any', *a: 'Any') -> int:
    from ..audit.signing import SigningError
    from ..audit.store import AuditError

    try:
        return int(fn(*a))
    except AuditError as exc:
        sys.stderr.write(f"nono: {exc}\n")
        return 1
    except SigningError as exc:
        sys.stderr.write(f"nono: {exc.diagnostics()}\n")
        return 1
    except BrokenPipeError:
        return 0


def _parse(name: str, flags: 'tuple[A.Flag, ...]', argv: list[str], usage: str, max_args: int
           ) -> 'tuple[dict[str, object], list[str]] | int':
    try:
        opts, pos = A.parse(name, flags, [a for a in argv if a != "--silent"], trailing=False)
    except A.HelpRequested:
        sys.stdout.write(usage + A.format_flags(flags) + "\n")
        return 0
    if len(pos) > max_args:
        raise A.UsageError(f"unexpected argument '{pos[max_args]}' for 'nono {name}'")
    return opts, pos


def cmd_audit(argv: list[str]) -> int:
    """Dispatch ``nono audit SUB ...``."""
    if not argv or argv[0] in ("-h", "--help", "help"):
        sys.stdout.write(HELP)
        return 0 if argv else 2
    sub, rest = argv[0], argv[1:]
    if sub not in _FLAGS:
        import difflib

        close = difflib.get_close_matches(sub, list(_FLAGS), n=1)
        raise A.UsageError(f"unknown command 'nono audit {sub}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
    parsed = _parse(f"audit {sub}", _FLAGS[sub], rest, f"Usage: nono audit {sub} ...\n", _MAX_ARGS[sub])
    if isinstance(parsed, int):
        return parsed
    opts, pos = parsed
    if sub in ("show", "verify") and not pos:
        raise A.UsageError(f"'nono audit {sub}' needs a SESSION (an id, a prefix of one, or 'last')")
    handler = {"list": _list, "show": _show, "verify": _verify, "cleanup": _cleanup}[sub]
    return _guard(handler, opts, pos)


# -- rows -----------------------------------------------------------------------------------
def _row(sid: str, root: str) -> 'dict[str, Any]':
    from ..audit import store

    try:
        meta = store.read_session(sid, root)
    except store.AuditError as exc:
        return {"session_id": sid, "state": "unreadable", "error": str(exc), "command": [], "started": None}
    state = store.state_of(meta)
    return {"session_id": sid, "started": meta.get("started"), "ended": meta.get("ended"), "state": state,
            "status": meta.get("status") if state == "finished" else state, "exit_code": meta.get("exit_code"),
            "command": meta.get("command") or [], "cwd": meta.get("cwd"), "profile": meta.get("profile"),
            "pid": meta.get("pid"), "events": meta.get("audit_event_count") if state == "finished" else None, "signed": bool(meta.get("signed")),
            "grants": meta.get("grants") or []}


def _local_date(stamp: 'str | None') -> str:
    from ..audit.store import parse_iso

    t = parse_iso(stamp or "")
    return time.strftime("%Y-%m-%d", time.localtime(t)) if t else ""


def _local_time(stamp: 'str | None') -> str:
    from ..audit.store import parse_iso

    t = parse_iso(stamp or "")
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "-"


def _check_date(flag: str, value: str) -> str:
    try:
        time.strptime(value, "%Y-%m-%d")
    except ValueError:
        raise A.UsageError(f"{flag} expects a date YYYY-MM-DD, not {value!r}") from None
    return value


def _under(path: str, root: str) -> bool:
    root = root.rstrip("/") or "/"
    return path == root or path.startswith(root + "/") or root == "/"


def _list(opts: 'dict[str, object]', _pos: list[str]) -> int:
    from ..audit import store

    root = store.audit_root()
    rows = [_row(sid, root) for sid in store.list_session_ids(root)]
    since = _check_date("--since", str(opts["since"])) if opts.get("since") else ""
    until = _check_date("--until", str(opts["until"])) if opts.get("until") else ""
    if opts.get("today"):
        since = until = time.strftime("%Y-%m-%d")
    if since or until:
        rows = [r for r in rows if (not since or _local_date(r["started"]) >= since)
                and (not until or _local_date(r["started"]) <= until)]
    if opts.get("command"):
        want = str(opts["command"])
        rows = [r for r in rows if r["command"] and (r["command"][0] == want or os.path.basename(r["command"][0]) == want
                                                     or os.path.basename(r["command"][0]) == os.path.basename(want))]
    if opts.get("path"):
        p = os.path.abspath(os.path.expanduser(str(opts["path"])))
        rows = [r for r in rows if _under(str(r.get("cwd") or ""), p) or any(
            isinstance(g, dict) and _under(str(g.get("path", "")), p) for g in r.get("grants") or ())]
    if opts.get("recent") is not None:
        n = int(opts["recent"])  # type: ignore[call-overload]
        if n < 0:
            raise A.UsageError("--recent must be 0 or more")
        rows = rows[-n:] if n else []
    if opts["json"]:
        _dump([{k: v for k, v in r.items() if k != "grants"} for r in rows])
        return 0
    if not rows:
        _out(f"No audit sessions match (store: {root}).")
        return 0
    _out(f"nono {len(rows)} command(s)")
    _out(f"{'SESSION':<24} {'STARTED':<19} {'STATUS':<17} {'EXIT':>4} {'EVENTS':>7}  COMMAND")
    for r in rows:
        code = "-" if r.get("exit_code") is None else str(r["exit_code"])
        events = "-" if r.get("events") is None else str(r["events"])
        cmd = " ".join(str(c) for c in r["command"])
        _out(f"{r['session_id']:<24} {_local_time(r['started']):<19} {str(r['status']):<17} {code:>4} {events:>7}  "
             f"{_printable(cmd)[:100]}")
    return 0


def _printable(s: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in s)


# -- show -------------------------------------------------------------------------------------
def _show(opts: 'dict[str, object]', pos: list[str]) -> int:
    from ..audit import store
    from ..audit.verify import read_events

    root = store.audit_root()
    sid = store.resolve(pos[0], root)
    meta = store.read_session(sid, root)
    events, torn = read_events(sid, root)
    state = store.state_of(meta)
    denials = [e for e in events if e.get("kind") == "denial"]
    network = [e for e in events if e.get("kind") == "network"]
    kinds: 'dict[str, int]' = {}
    for e in events:
        kinds[str(e.get("kind"))] = kinds.get(str(e.get("kind")), 0) + 1
    if opts["json"]:
        doc = dict(meta)
        doc["state"] = state
        doc["event_kinds"] = kinds
        doc["denial_events"] = [_strip(e) for e in denials]
        doc["network_decisions"] = [_strip(e) for e in network]
        doc["other_events"] = [_strip(e) for e in events if e.get("kind") not in ("denial", "network")]
        _dump(doc)
        return 0
    status = f"{meta.get('status')} (exit code {meta.get('exit_code')})" if state == "finished" else state
    lines = [f"Session {sid}",
             f"  command:     {_printable(' '.join(str(c) for c in meta.get('command') or []))}",
             f"  status:      {status}",
             f"  started:     {_local_time(meta.get('started'))}   ended: {_local_time(meta.get('ended'))}"
             + (f"   ({_duration(meta)})" if meta.get("ended") else ""),
             f"  supervisor:  pid {meta.get('pid')}, uid {meta.get('uid')}",
             f"  cwd:         {meta.get('cwd')}",
             f"  profile:     {meta.get('profile') or '-'}",
             f"  policy:      {meta.get('policy_digest') or '-'}"]
    grants = meta.get("grants") or []
    lines.append(f"  grants:      {len(grants)}")
    for g in grants[:50]:
        if isinstance(g, dict):
            lines.append(f"    {str(g.get('access', '?')):<10} {g.get('path')}" + (f"  [{g['source']}]" if g.get("source") else ""))
        else:
            lines.append(f"    {g}")
    if len(grants) > 50:
        lines.append(f"    ... and {len(grants) - 50} more (--json shows all)")
    prot = meta.get("protections") or {}
    lines.append("  protections:")
    for k, v in (prot.items() if isinstance(prot, dict) else ()):
        lines.append(f"    {k}: {_short(v)}")
    net = meta.get("network") or {}
    lines.append("  network:     " + (", ".join(f"{k}={_short(v)}" for k, v in net.items()) if isinstance(net, dict) and net else "-"))
    allowed = sum(1 for e in network if e.get("action") == "allow")
    denied = [e for e in network if e.get("action") == "deny"]
    lines.append(f"  network decisions: {allowed} allowed, {len(denied)} denied")
    for e in denied[:20]:
        lines.append(f"    deny  {e.get('host')}:{e.get('port')}  ({e.get('reason')})")
    if len(denied) > 20:
        lines.append(f"    ... and {len(denied) - 20} more")
    lines.append(f"  denials:     {meta.get('denials')}" if not denials else f"  denials:     {len(denials)}")
    for e in denials[:20]:
        obj = e.get("path") or e.get("opid") or e.get("daddr") or ""
        lines.append(f"    {','.join(str(b) for b in e.get('blockers') or [])}  {obj}")
    lines.append(f"  events:      {len(events)} (" + ", ".join(f"{k} {n}" for k, n in kinds.items()) + ")"
                 + ("  [last line incomplete]" if torn else ""))
    if meta.get("rollback_session") or meta.get("snapshot_count"):
        lines.append(f"  rollback:    session {meta.get('rollback_session')}, {meta.get('snapshot_count')} snapshot(s)")
    att = meta.get("audit_attestation")
    lines.append("  signed:      " + (f"yes (key {att.get('key_id', '')[:16]}, {store.BUNDLE_FILE})"
                                      if isinstance(att, dict) and att.get("key_id") else "no"))
    lines.append(f"  verify with: nono audit verify {sid}")
    _out("\n".join(lines))
    return 0


def _strip(e: 'dict[str, Any]') -> 'dict[str, Any]':
    return {k: v for k, v in e.items() if k not in ("prev", "hash")}


def _short(v: 'Any') -> str:
    if isinstance(v, (list, tuple)):
        s = ", ".join(str(x) for x in v[:8]) + (f", +{len(v) - 8} more" if len(v) > 8 else "")
        return s or "none"
    return str(v)


def _duration(meta: 'dict[str, Any]') -> str:
    from ..audit.store import parse_iso

    d = parse_iso(str(meta.get("ended"))) - parse_iso(str(meta.get("started")))
    return f"{d:.1f} s" if d < 120 else f"{d / 60:.1f} min"


# -- verify ---------------------------------------------------------------------------------
def _verify(opts: 'dict[str, object]', pos: list[str]) -> int:
    from ..audit import store
    from ..audit.verify import verify

    root = store.audit_root()
    sid = store.resolve(pos[0], root)
    key = None
    if opts.get("public_key_file"):
        try:
            with open(str(opts["public_key_file"]), encoding="ascii") as f:
                key = f.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise store.AuditError(f"--public-key-file: {exc}") from None
    report = verify(sid, root, public_key=key)
    if opts["json"]:
        _dump(report)
        return 0 if report["ok"] else 1
    _out(f"session {sid}: {report['events']} event(s)")
    _out("  chain:     " + ("intact" if not any(p.startswith(("event", "line")) for p in report["problems"]) else "BROKEN"))
    _out(f"  ledger:    {report['ledger'] or '-'}")
    if report["signature"]:
        _out(f"  signature: {report['signature']}")
    for p in report["problems"]:
        _out(f"  problem: {p}")
    for n in report["notes"]:
        _out(f"  note: {n}")
    verdict = {"ok": "OK", "running": "OK so far (still running)",
               "ended abnormally": "ended abnormally (the supervisor died before finishing; the record is intact)",
               "corrupt": "CORRUPT"}.get(report["status"], report["status"])
    _out(f"session {sid}: {verdict}")
    return 0 if report["ok"] else 1


# -- cleanup --------------------------------------------------------------------------------
def _cleanup(opts: 'dict[str, object]', _pos: list[str]) -> int:
    import shutil

    from ..audit import store

    root = store.audit_root()
    keep = opts.get("keep")
    older = opts.get("older_than")
    if keep is not None and int(keep) < 0:  # type: ignore[call-overload]
        raise A.UsageError("--keep must be 0 or more")
    if older is not None and int(older) < 0:  # type: ignore[call-overload]
        raise A.UsageError("--older-than must be 0 or more")
    if keep is None and older is None:
        keep = DEFAULT_KEEP
    rows = [_row(sid, root) for sid in store.list_session_ids(root)]
    done = [r for r in rows if r["state"] != "running"]
    remove: list[str] = []
    if older is not None:
        from ..audit.store import parse_iso

        cutoff = time.time() - int(older) * 86400  # type: ignore[call-overload]
        remove += [r["session_id"] for r in done if parse_iso(str(r.get("started") or "")) < cutoff]
    if keep is not None:
        extra = len(done) - int(keep)  # type: ignore[call-overload]
        remove += [r["session_id"] for r in done[:max(0, extra)] if r["session_id"] not in remove]
    remove.sort()
    dry = bool(opts["dry_run"])
    if not dry:
        for sid in remove:
            shutil.rmtree(store.session_dir(sid, root), ignore_errors=True)
        _prune_running(root)
    if opts["json"]:
        _dump({"removed": remove, "dry_run": dry, "kept": len(rows) - len(remove)})
        return 0
    verb = "would remove" if dry else "removed"
    for sid in remove:
        _out(f"{verb} {sid}")
    _out(f"{verb} {len(remove)} session(s); {len(rows) - len(remove)} kept (running sessions are never removed; "
         "the ledger keeps its entries)")
    return 0


def _prune_running(root: str) -> None:
    from ..audit import store

    directory = os.path.join(root, store.RUNNING_DIR)
    live = {e.get("session_id") for e in store.running_sessions(root)}
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return
    for name in names:
        if name not in live:
            try:
                os.unlink(os.path.join(directory, name))
            except OSError:
                pass


# -- ps ---------------------------------------------------------------------------------------
def cmd_ps(argv: list[str]) -> int:
    """``nono ps [--json]``: the running sessions."""
    parsed = _parse("ps", _PS_FLAGS, argv, PS_HELP, 0)
    if isinstance(parsed, int):
        return parsed
    opts, _pos = parsed
    return _guard(_ps, opts)


def _ps(opts: 'dict[str, object]') -> int:
    from ..audit import store

    root = store.audit_root()
    rows = store.running_sessions(root)
    if opts.get("all"):
        live = {r.get("session_id") for r in rows}
        for sid in store.list_session_ids(root):
            if sid in live:
                continue
            r = _row(sid, root)
            if r["state"] == "ended abnormally":
                rows.append({"session_id": sid, "pid": r["pid"], "started": r["started"], "command": r["command"],
                             "cwd": r["cwd"], "state": "ended abnormally"})
    for r in rows:
        r.setdefault("state", "running")
    if opts["json"]:
        _dump(rows)
        return 0
    if not rows:
        _out("No running sessions.")
        return 0
    _out(f"{'SESSION':<24} {'PID':>7} {'STARTED':<19} {'UPTIME':>8}  {'STATE':<8} COMMAND")
    from ..audit.store import parse_iso

    for r in rows:
        up = time.time() - parse_iso(str(r.get("started") or ""))
        uptime = f"{up:.0f}s" if up < 120 else (f"{up / 60:.0f}m" if up < 7200 else f"{up / 3600:.1f}h")
        cmd = " ".join(str(c) for c in r.get("command") or [])
        _out(f"{r['session_id']:<24} {r.get('pid')!s:>7} {_local_time(r.get('started')):<19} {uptime:>8}  "
             f"{str(r['state']):<8} {_printable(cmd)[:80]}")
    return 0


# -- stop -------------------------------------------------------------------------------------
def cmd_stop(argv: list[str]) -> int:
    """``nono stop SESSION [--force] [--timeout 10]``: SIGTERM, then SIGKILL after the grace period."""
    parsed = _parse("stop", _STOP_FLAGS, argv, STOP_HELP, 1)
    if isinstance(parsed, int):
        return parsed
    opts, pos = parsed
    if not pos:
        raise A.UsageError("'nono stop' needs a SESSION (see nono ps)")
    try:
        timeout = float(str(opts["timeout"])) if opts.get("timeout") is not None else 10.0
    except ValueError:
        raise A.UsageError(f"--timeout expects seconds, not {opts['timeout']!r}") from None
    if timeout < 0:
        raise A.UsageError("--timeout must be 0 or more")
    return _guard(_stop, opts, pos[0], timeout)


def _stop(opts: 'dict[str, object]', ref: str, timeout: float) -> int:
    from ..audit import store

    root = store.audit_root()
    running = store.running_sessions(root)
    ids = [str(r["session_id"]) for r in running]
    try:
        sid = store.resolve(ref, root, ids=ids) if ids else ""
    except store.AuditError:
        sid = ""
    if not sid:
        try:
            known = store.resolve(ref, root)
        except store.AuditError:
            raise store.AuditError(f"no running session '{ref}' (nono ps lists them)") from None
        raise store.AuditError(f"session {known} is not running ({store.state_of(store.read_session(known, root))})")
    entry = running[ids.index(sid)]
    pid, start = int(entry["pid"]), entry.get("pid_start")
    result = {"session_id": sid, "pid": pid, "signal": "SIGKILL" if opts["force"] else "SIGTERM", "stopped": False}
    if opts["force"]:
        _kill(pid, 9)
    else:
        _kill(pid, 15)
        if not _wait_dead(pid, start, timeout):
            _kill(pid, 9)
            result["signal"] = "SIGKILL"
            sys.stderr.write(f"nono: session {sid} did not stop within {timeout:g}s after SIGTERM; sent SIGKILL\n")
    result["stopped"] = _wait_dead(pid, start, 5.0)
    if opts["json"]:
        _dump(result)
    elif result["stopped"]:
        _out(f"stopped {sid} (pid {pid}, {result['signal']})")
    else:
        _out(f"session {sid} (pid {pid}) is still running after {result['signal']}")
    return 0 if result["stopped"] else 1


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        from ..audit.store import AuditError

        raise AuditError(f"not allowed to signal pid {pid} (another user's session?)") from None


def _wait_dead(pid: int, start: 'Any', timeout: float) -> bool:
    from ..audit.store import alive

    deadline = time.monotonic() + timeout
    delay = 0.01
    while alive(pid, start if isinstance(start, int) else None):
        if time.monotonic() >= deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.1)
    return True


# -- logs -------------------------------------------------------------------------------------
def cmd_logs(argv: list[str]) -> int:
    """``nono logs SESSION [-f] [--tail N] [--json]``."""
    parsed = _parse("logs", _LOGS_FLAGS, argv, LOGS_HELP, 1)
    if isinstance(parsed, int):
        return parsed
    opts, pos = parsed
    if not pos:
        raise A.UsageError("'nono logs' needs a SESSION (an id, a prefix of one, or 'last')")
    try:
        interval = float(str(opts["interval"])) if opts.get("interval") else 0.2
    except ValueError:
        raise A.UsageError(f"--interval expects seconds, not {opts['interval']!r}") from None
    if opts.get("tail") is not None and int(opts["tail"]) < 0:  # type: ignore[call-overload]
        raise A.UsageError("--tail must be 0 or more")
    try:
        return _guard(_logs, opts, pos[0], max(0.01, min(interval, 5.0)))
    except KeyboardInterrupt:
        return 130


def _format_event(line: str, as_json: bool) -> str:
    if as_json:
        return line
    from .. import _jsonlite

    try:
        e = _jsonlite.loads(line)
    except ValueError:
        return f"(unreadable line) {line[:200]}"
    if not isinstance(e, dict):
        return line
    fields = " ".join(f"{k}={_field(v)}" for k, v in e.items() if k not in ("seq", "time", "kind", "prev", "hash"))
    return f"{e.get('time', '')}  {str(e.get('kind', '?')):<14} {fields}"


def _field(v: 'Any') -> str:
    if isinstance(v, str):
        return _printable(v) if v and " " not in v else repr(v)
    from .. import _jsonlite

    try:
        return _jsonlite.dumps_compact(v)
    except TypeError:
        return str(v)


def _logs(opts: 'dict[str, object]', ref: str, interval: float) -> int:
    from ..audit import store

    root = store.audit_root()
    sid = store.resolve(ref, root)
    path = os.path.join(store.session_dir(sid, root), store.EVENTS_FILE)
    as_json = bool(opts["json"])
    try:
        f = open(path, "rb")
    except OSError as exc:
        raise store.AuditError(f"session {sid}: {exc.strerror}") from None
    with f:
        data = f.read()
        end = data.rfind(b"\n") + 1
        lines = data[:end].decode("utf-8", "replace").splitlines()
        if opts.get("tail") is not None:
            n = int(opts["tail"])  # type: ignore[call-overload]
            lines = lines[-n:] if n else []
        ended = any('"kind":"session_end"' in ln for ln in lines[-1:]) or _ended_in(data[:end])
        for ln in lines:
            _out(_format_event(ln, as_json))
        sys.stdout.flush()
        if not opts["follow"] or ended:
            return 0
        pos = end
        pending = b""
        meta = store.read_session(sid, root)
        pid, start = meta.get("pid"), meta.get("pid_start")
        while True:
            f.seek(pos)
            chunk = f.read()
            pos += len(chunk)
            pending += chunk
            cut = pending.rfind(b"\n") + 1
            if cut:
                for ln in pending[:cut].decode("utf-8", "replace").splitlines():
                    _out(_format_event(ln, as_json))
                    if '"kind":"session_end"' in ln:
                        ended = True
                pending = pending[cut:]
                sys.stdout.flush()
            if ended:
                return 0
            if not store.alive(pid if isinstance(pid, int) else None, start if isinstance(start, int) else None):
                # One last read: the supervisor may have written its end just before exiting.
                f.seek(pos)
                tail = pending + f.read()
                for ln in tail[:tail.rfind(b"\n") + 1].decode("utf-8", "replace").splitlines():
                    _out(_format_event(ln, as_json))
                    ended = ended or '"kind":"session_end"' in ln
                if not ended:
                    sys.stderr.write(f"nono: session {sid} ended abnormally (its supervisor is gone)\n")
                return 0
            time.sleep(interval)


def _ended_in(data: bytes) -> bool:
    last = data.rstrip(b"\n").rsplit(b"\n", 1)[-1]
    return b'"kind":"session_end"' in last


def main(argv: 'list[str] | None' = None) -> int:
    """``python -m nono.cli.audit audit|ps|stop|logs ...`` (until ``nono`` dispatches these itself)."""
    a = list(sys.argv[1:] if argv is None else argv)
    cmds = {"audit": cmd_audit, "ps": cmd_ps, "stop": cmd_stop, "logs": cmd_logs}
    if not a or a[0] not in cmds:
        sys.stderr.write("usage: python -m nono.cli.audit audit|ps|stop|logs ...\n")
        return 2
    try:
        return cmds[a[0]](a[1:])
    except A.UsageError as exc:
        sys.stderr.write(f"nono: error: {exc.message}\n  run 'nono {a[0]} --help' for usage\n")
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
