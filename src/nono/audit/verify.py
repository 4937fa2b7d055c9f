"""``nono audit verify``: the hash chain, the metadata, ledger inclusion and the signature."""

import os

from .. import _jsonlite
from . import chain, ledger, store
from ._hash import merkle_push, merkle_root

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

MAX_PROBLEMS = 50


def read_events(session_id: str, root: 'str | None' = None) -> 'tuple[list[dict[str, Any]], bool]':
    """The session's events as parsed (no verification), and whether a torn last line was dropped."""
    path = os.path.join(store.session_dir(session_id, root), store.EVENTS_FILE)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return [], False
    lines = raw.split(b"\n")
    torn = lines[-1] != b""
    out = []
    for bline in lines[:-1]:
        try:
            rec = _jsonlite.loads(bline.decode("utf-8", "replace"))
        except ValueError:
            rec = {"kind": "unreadable", "raw": bline[:200].decode("utf-8", "replace")}
        if isinstance(rec, dict):
            out.append(rec)
    return out, torn


def verify(session_id: str, root: 'str | None' = None, *, public_key: 'str | None' = None) -> 'dict[str, Any]':
    """Verify one session. ``public_key``: base64 SPKI or PEM text the signature must verify with.

    Returns ``{"session_id", "status", "ok", "events", "problems", "notes", "ledger", "signature"}``;
    status is ``ok``, ``running``, ``ended abnormally`` (the supervisor died; not corrupt) or ``corrupt``.
    """
    root = root or store.audit_root()
    problems: list[str] = []
    notes: list[str] = []
    result: 'dict[str, Any]' = {"session_id": session_id, "status": "corrupt", "ok": False, "events": 0,
                                "problems": problems, "notes": notes, "ledger": None, "signature": None}
    try:
        meta = store.read_session(session_id, root)
    except store.AuditError as exc:
        problems.append(str(exc))
        return result
    if meta.get("session_id") != session_id:
        problems.append(f"session.json names session {meta.get('session_id')!r}, not {session_id!r}")
    path = os.path.join(store.session_dir(session_id, root), store.EVENTS_FILE)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        problems.append(f"{store.EVENTS_FILE}: {exc.strerror}")
        return result
    state = store.state_of(meta)
    lines = raw.split(b"\n")
    torn = lines.pop()
    prev = chain.genesis(session_id)
    records: 'list[dict[str, Any] | None]' = []
    stack: 'list[tuple[int, bytes]]' = []
    for n, bline in enumerate(lines):
        rec: 'dict[str, Any] | None' = None
        try:
            rec, prev = chain.check_line(bline.decode("utf-8"), n + 1, n, prev)
        except (chain.ChainError, UnicodeDecodeError) as exc:
            if len(problems) < MAX_PROBLEMS:
                problems.append(str(exc) if isinstance(exc, chain.ChainError)
                                else f"event {n} (line {n + 1}): not UTF-8: hash mismatch")
            try:  # go on from the hash the line claims, so one damaged line is reported once
                prev = str(_jsonlite.loads(bline.decode("utf-8", "replace")).get("hash", ""))
            except (ValueError, AttributeError):
                prev = ""
        records.append(rec)
        try:
            merkle_push(stack, bytes.fromhex(str(rec["hash"] if rec else "")))
        except ValueError:
            merkle_push(stack, b"")
    count = len(lines)
    result["events"] = count
    if torn:
        if state == "finished":
            problems.append(f"line {count + 1}: {len(torn)} bytes after the last complete event (no newline)")
        else:
            notes.append(f"the last event (line {count + 1}) is incomplete: the supervisor died while writing it")
    if not lines:
        problems.append("no events recorded (not even session_start)")
    elif records[0] is not None and records[0].get("kind") != "session_start":
        problems.append("event 0 (line 1): is not session_start")
    last = records[-1] if records else None
    entries, ledger_problems = ledger.read(root)
    mine = [e for e in entries if e.get("session_id") == session_id]
    problems.extend(ledger_problems[:10])
    if state == "finished":
        _check_finished(meta, records, last, count, prev, merkle_root(stack), mine, result, problems)
        _check_signature(meta, session_id, root, public_key, result, problems, notes)
    else:
        if mine:
            problems.append("the ledger lists this session as finished, but its record says it never finished "
                            "(session.json or the events were replaced)")
        if last is not None and last.get("kind") == "session_end":
            notes.append("the end event was recorded but session.json was not updated (the supervisor died "
                         "while finishing)")
        result["ledger"] = "not in the ledger (the session did not finish)"
        if meta.get("audit_attestation"):
            notes.append("unfinished sessions are not signed")
    if problems:
        result["status"] = "corrupt"
    else:
        result["status"] = "ok" if state == "finished" else state
        result["ok"] = True
    return result


def _check_finished(meta: 'dict[str, Any]', records: 'list[dict[str, Any] | None]', last: 'dict[str, Any] | None',
                    count: int, head: str, root_hash: str, mine: 'list[dict[str, Any]]', result: 'dict[str, Any]',
                    problems: list[str]) -> None:
    from .session import session_digest

    if last is None or last.get("kind") != "session_end":
        problems.append(f"the session finished but its last event (line {count}) is not session_end "
                        "(events were removed from the end, or added after it)")
    else:
        if last.get("exit_code") != meta.get("exit_code"):
            problems.append(f"session.json says exit code {meta.get('exit_code')!r}, the end event says "
                            f"{last.get('exit_code')!r}")
        if last.get("status") != meta.get("status"):
            problems.append(f"session.json says status {meta.get('status')!r}, the end event says {last.get('status')!r}")
    ends = [i for i, r in enumerate(records) if r is not None and r.get("kind") == "session_end"]
    if len(ends) > 1:
        problems.append(f"{len(ends)} session_end events (line {ends[0] + 1} and later)")
    integ = meta.get("audit_integrity") or {}
    if not isinstance(integ, dict) or not integ:
        problems.append("session.json has no audit_integrity (event count, chain head, Merkle root)")
        return
    if integ.get("event_count") != count or meta.get("audit_event_count") != count:
        problems.append(f"session.json records {integ.get('event_count')!r} events, the file has {count} "
                        "(events were removed or added)")
    if integ.get("chain_head") != head:
        problems.append("the chain head in session.json does not match the last event")
    if integ.get("merkle_root") != root_hash:
        problems.append("the Merkle root over the events does not match session.json")
    digest = session_digest(meta)
    if integ.get("session_digest") != digest:
        problems.append("session.json was changed after the session finished (its digest does not match)")
    if not mine:
        problems.append("the session is not in the ledger (the supervisor died while finishing, or the ledger "
                        "was truncated)")
        result["ledger"] = "missing"
        return
    entry = mine[-1]
    if len(mine) > 1:
        problems.append(f"the ledger lists this session {len(mine)} times")
    if entry.get("digest") != digest:
        problems.append(f"ledger entry {entry.get('seq')}: the session digest does not match the record "
                        "(session.json or the events changed after the session was recorded)")
    elif entry.get("event_count") != count or entry.get("chain_head") != head:
        problems.append(f"ledger entry {entry.get('seq')}: event count or chain head differ from the record")
    else:
        result["ledger"] = f"included (ledger entry {entry.get('seq')})"


def _check_signature(meta: 'dict[str, Any]', session_id: str, root: str, public_key: 'str | None',
                     result: 'dict[str, Any]', problems: list[str], notes: list[str]) -> None:
    att = meta.get("audit_attestation")
    bundle_path = os.path.join(store.session_dir(session_id, root), store.BUNDLE_FILE)
    if not att:
        if os.path.exists(bundle_path):
            problems.append(f"{store.BUNDLE_FILE} exists but session.json does not mention a signature")
        result["signature"] = "not signed"
        if public_key:
            problems.append("a public key was given but the session is not signed")
        return
    if not isinstance(att, dict) or att.get("error"):
        result["signature"] = f"signing failed when the session ended: {att.get('error') if isinstance(att, dict) else att}"
        problems.append(result["signature"])
        return
    from . import signing
    from .session import PREDICATE_TYPE

    try:
        with open(bundle_path, encoding="utf-8") as f:
            bundle = _jsonlite.loads(f.read())
        envelope = bundle["dsseEnvelope"]
        key = signing.load_public_key(public_key or str(att.get("public_key", "")))
        payload = signing.verify_envelope(envelope, key)
        stmt = _jsonlite.loads(payload.decode("utf-8"))
    except FileNotFoundError:
        problems.append(f"session.json says the session is signed, but {store.BUNDLE_FILE} is missing")
        result["signature"] = "missing"
        return
    except (signing.SigningError, KeyError, TypeError, ValueError) as exc:
        msg = exc.message if isinstance(exc, signing.SigningError) else f"unreadable bundle ({exc})"
        problems.append(f"signature: {msg}")
        result["signature"] = f"invalid: {msg}"
        return
    digest = (meta.get("audit_integrity") or {}).get("session_digest")
    subjects = stmt.get("subject") if isinstance(stmt, dict) else None
    if not isinstance(stmt, dict) or stmt.get("predicateType") != PREDICATE_TYPE or not subjects \
            or subjects[0].get("digest", {}).get("sha256") != digest \
            or subjects[0].get("name") != f"nono-audit-session:{session_id}":
        problems.append("signature: the signed statement is for a different session record")
        result["signature"] = "invalid: signs a different record"
        return
    kid = signing.public_key_id(key)
    if public_key:
        result["signature"] = f"valid (key {kid[:16]}, the key you gave)"
    else:
        result["signature"] = f"valid (key {kid[:16]}, embedded in the record)"
        notes.append("the signature was checked with the public key stored in the record, which proves the record "
                     "is intact but not who signed it: pass --public-key-file to check the signer")
