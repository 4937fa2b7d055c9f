"""Recording one sandboxed session: :func:`begin`, :meth:`AuditSession.event`, :meth:`AuditSession.finish`.

Runs in the supervisor on the ``nono run`` path, so it imports only ``os``, ``time``,
``nono._jsonlite`` and the builtin SHA-256 (see :mod:`nono.audit._hash`); ``fcntl`` is
loaded at finish, ``cryptography`` only when signing.

Durability: every event is one ``write()`` to ``audit-events.ndjson`` (``O_APPEND``), so a
SIGKILLed supervisor loses nothing it had recorded; the file is fsynced at finish, before
``session.json`` is rewritten atomically and the session enters the ledger.
"""

import os
import time
from _json import encode_basestring_ascii as _enc

from .. import _jsonlite
from . import chain, redact, store
from ._hash import hexdigest, merkle_root, sha256

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .signing import SigningKey

PREDICATE_TYPE = "https://nono.sh/attestation/audit-session/v1"
_RESERVED = frozenset(("seq", "time", "kind", "prev", "hash"))
_INF = float("inf")
_ms_cache: 'list[Any]' = [-1, ""]


def _now() -> str:
    """``store.iso`` of the current time, cached per millisecond (bursts of events share it)."""
    ms = time.time_ns() // 1_000_000
    if ms != _ms_cache[0]:
        _ms_cache[0] = ms
        _ms_cache[1] = store.iso(ms / 1000)
    return str(_ms_cache[1])


def _plain(v: 'Any') -> 'Any':
    """Non-finite floats as strings (JSON has no NaN); everything else unchanged."""
    if isinstance(v, float) and (v != v or v in (_INF, -_INF)):
        return str(v)
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v
MAX_NETWORK_IN_METADATA = 1000
# The session fields a digest (and so the ledger entry and the signature) covers.
DIGEST_FIELDS = ("session_id", "started", "ended", "command", "cwd", "exit_code", "status", "profile",
                 "policy_digest", "tracked_paths", "snapshot_count", "merkle_roots")


def _canonical(value: 'Any') -> str:
    """Compact JSON with sorted keys (the C encoder): the bytes a digest is taken over."""
    import _json

    def _fail(o: 'Any') -> 'Any':
        raise TypeError(f"cannot serialise {type(o).__name__}")

    enc = _json.make_encoder(None, _fail, _json.encode_basestring_ascii, None, ":", ",", True, False, True)
    return "".join(enc(value, 0))


def digest_of(value: 'Any') -> str:
    """SHA-256 hex of ``value``'s canonical JSON (sorted keys, compact): e.g. the resolved policy's digest
    for :func:`begin` (``digest_of({"rules": grants, "denies": denies, "network": network})``)."""
    return hexdigest(_canonical(value).encode("utf-8"))


def session_digest(meta: 'dict[str, Any]') -> str:
    """SHA-256 over the canonical JSON of a session's :data:`DIGEST_FIELDS` and its integrity data."""
    integ = meta.get("audit_integrity") or {}
    subject = {k: meta.get(k) for k in DIGEST_FIELDS}
    subject["audit_event_count"] = meta.get("audit_event_count")
    subject["chain_head"] = integ.get("chain_head")
    subject["events_merkle_root"] = integ.get("merkle_root")
    return hexdigest(_canonical(subject).encode("utf-8"))


def denials_status() -> str:
    """What ``begin`` records under ``denials`` unless the caller collects them (see :mod:`.denials`)."""
    from .denials import probe

    ok, why = probe()
    return "observable (collected from the kernel audit log)" if ok else f"not observable ({why})"


class AuditSession:
    """An open audit record. Single-threaded: call it from the supervisor's thread only."""

    def __init__(self, session_id: str, directory: str, root: str, meta: 'dict[str, Any]',
                 key: 'SigningKey | None') -> None:
        self.session_id = session_id
        self.dir = directory
        self.root = root
        self.meta = meta
        self._key = key
        self._seq = 0
        self._prev = chain.genesis(session_id)
        self._merkle: 'list[tuple[int, bytes]]' = []
        self._fd = os.open(os.path.join(directory, store.EVENTS_FILE),
                           os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        self.finished = False
        self.t0 = time.time()

    @property
    def event_count(self) -> int:
        return self._seq

    def event(self, kind: str, **fields: 'Any') -> str:
        """Append one event (fields redacted); returns its hash. One ``write`` per event."""
        if self.finished:
            raise RuntimeError("audit session already finished")
        self._write(self._line(kind, fields))
        return self._prev

    def _line(self, kind: str, fields: 'dict[str, Any]') -> bytes:
        # Hand-built compact JSON (the C string escaper for every string): ~3x faster than
        # serialising a dict, and the hash covers exactly these bytes anyway.
        parts = ['{"seq":', str(self._seq), ',"time":"', _now(), '","kind":', _enc(kind)]
        for k, v in fields.items():
            if k in _RESERVED:
                raise ValueError(f"audit event field '{k}' is reserved")
            parts.append("," + _enc(k) + ":")
            t = type(v)
            if t is str:
                parts.append(_enc(redact.MARK if (v and redact.sensitive_name(k)) else redact.text(v)))
            elif t is int:
                parts.append(_enc(redact.MARK) if redact.sensitive_name(k) else str(v))
            elif v is None:
                parts.append("null")
            elif v is True or v is False:
                parts.append("true" if v else "false")
            elif t is float and v == v and v not in (_INF, -_INF):
                parts.append(repr(v))
            else:
                parts.append(_jsonlite.dumps_compact(_plain(redact.value(v, k))))
        parts.append(',"prev":"' + self._prev + '"}')
        body = "".join(parts).encode("utf-8")
        raw: bytes = sha256(body).digest()
        h = raw.hex()
        self._seq += 1
        self._prev = h
        # Merkle leaves are the event hashes themselves; internal nodes SHA256(0x01 || left || right).
        node = (1, raw)
        stack = self._merkle
        while stack and stack[-1][0] == node[0]:
            size, left = stack.pop()
            node = (size * 2, sha256(b"\x01" + left + node[1]).digest())
        stack.append(node)
        return body[:-1] + b',"hash":"' + h.encode("ascii") + b'"}\n'

    def events(self, kind: str, items: 'list[dict[str, Any]] | tuple[dict[str, Any], ...]') -> None:
        """Append many events of one kind with a single ``write`` (e.g. the proxy's decisions)."""
        lines = [self._line(kind, dict(it)) for it in items]
        if lines:
            self._write(b"".join(lines))

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]

    def finish(self, exit_code: int, *, network_events: 'list[dict[str, Any]] | tuple[dict[str, Any], ...]' = (),
               rollback: 'dict[str, Any] | None' = None, status: 'str | None' = None) -> 'dict[str, Any]':
        """Close the record: network decisions, rollback summary, ``session_end``; fsync; rewrite
        ``session.json`` atomically; sign (when a key was given); append to the ledger.

        Returns ``{"session_id", "status", "event_count", "digest", "signed", "warnings"}``.
        """
        if self.finished:
            raise RuntimeError("audit session already finished")
        warnings: list[str] = []
        meta = self.meta
        net = [_net_event(e) for e in network_events]
        self.events("network", net)
        if rollback:
            self.event("rollback", **{k: v for k, v in rollback.items() if k not in _RESERVED})
            for key in ("tracked_paths", "snapshot_count", "merkle_roots"):
                if key in rollback:
                    meta[key] = redact.value(rollback[key])
            if rollback.get("session_id"):
                meta["rollback_session"] = rollback["session_id"]
        ended = time.time()
        status = status or ("completed" if exit_code == 0 else "failed")
        denied = sum(1 for e in net if e.get("action") == "deny")
        self.event("session_end", exit_code=exit_code, status=status, network_allowed=len(net) - denied,
                   network_denied=denied, duration_ms=round((ended - self.t0) * 1000, 1))
        os.fsync(self._fd)
        os.close(self._fd)
        self._fd = -1
        self.finished = True
        meta.update(ended=store.iso(ended), exit_code=exit_code, status=status,
                    network_events=net[:MAX_NETWORK_IN_METADATA], audit_event_count=self._seq)
        if len(net) > MAX_NETWORK_IN_METADATA:
            meta["network_events_omitted"] = len(net) - MAX_NETWORK_IN_METADATA
        meta["audit_integrity"] = {"algorithm": "sha256", "event_count": self._seq, "chain_head": self._prev,
                                   "merkle_root": merkle_root(self._merkle)}
        digest = session_digest(meta)
        meta["audit_integrity"]["session_digest"] = digest
        signed = False
        if self._key is not None:
            try:
                meta["audit_attestation"] = self._sign(digest)
                signed = True
            except Exception as exc:  # never lose the record over a signature
                meta["audit_attestation"] = {"error": f"{type(exc).__name__}: {exc}"}
                warnings.append(f"the audit record was not signed: {exc}")
        store.write_atomic(os.path.join(self.dir, store.SESSION_FILE), _jsonlite.dumps(meta).encode("utf-8") + b"\n",
                           sync=True)
        from . import ledger

        try:
            ledger.append({"time": store.iso(time.time()), "session_id": self.session_id, "digest": digest,
                           "event_count": self._seq, "chain_head": self._prev}, self.root)
        except OSError as exc:
            warnings.append(f"the session could not be added to the audit ledger: {exc}")
        try:
            os.unlink(os.path.join(self.root, store.RUNNING_DIR, self.session_id))
        except OSError:
            pass
        return {"session_id": self.session_id, "status": status, "event_count": self._seq, "digest": digest,
                "signed": signed, "warnings": warnings}

    def _sign(self, digest: str) -> 'dict[str, Any]':
        from . import signing

        key = self._key
        assert key is not None
        meta = self.meta
        integ = meta["audit_integrity"]
        predicate = {"session_id": self.session_id, "command": meta.get("command"), "started": meta.get("started"),
                     "ended": meta.get("ended"), "exit_code": meta.get("exit_code"), "status": meta.get("status"),
                     "policy_digest": meta.get("policy_digest"), "event_count": integ["event_count"],
                     "chain_head": integ["chain_head"], "events_merkle_root": integ["merkle_root"]}
        stmt = signing.statement([(f"nono-audit-session:{self.session_id}", digest)], PREDICATE_TYPE, predicate)
        envelope = signing.sign_envelope(key, _canonical(stmt).encode("utf-8"))
        path = os.path.join(self.dir, store.BUNDLE_FILE)
        store.write_atomic(path, _jsonlite.dumps(signing.bundle(envelope, key)).encode("utf-8") + b"\n", sync=True)
        return {"bundle": store.BUNDLE_FILE, "predicate_type": PREDICATE_TYPE, "key_id": key.key_id,
                "key_ref": key.ref, "public_key": key.public_key_b64}

    def abandon(self) -> None:
        """Close the events file without finishing (the record then reads as ended abnormally)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _net_event(e: 'dict[str, Any]') -> 'dict[str, Any]':
    """A proxy event (time/action/method/host/port/reason/bytes...) as recorded: known keys first, redacted."""
    out: 'dict[str, Any]' = {}
    for k in ("action", "method", "host", "port", "path", "url", "reason", "bytes", "bytes_up", "bytes_down",
              "duration_ms"):
        if k in e:
            out[k] = e[k]
    t = e.get("time")
    if isinstance(t, (int, float)) and not isinstance(t, bool):
        out["at"] = store.iso(float(t))
    elif t is not None:
        out["at"] = t
    for k, v in e.items():
        if k not in out and k != "time" and k not in _RESERVED:
            out[k] = v
    return redact.value(out)  # type: ignore[no-any-return]


def begin(*, command: 'list[str]', cwd: str, profile: 'str | None', policy_digest: str, grants: 'list[dict[str, Any]]',
          protections: 'dict[str, Any]', network: 'dict[str, Any]', sign_key: 'str | None' = None,
          session_id: 'str | None' = None, denials: 'str | None' = None, pid: 'int | None' = None) -> AuditSession:
    """Start the audit record of one session (see the package docstring).

    ``sign_key`` is loaded now (a missing key or a headless keyring fails before the program
    starts). ``session_id`` lets rollback and audit share one id. ``denials`` overrides the
    recorded denial-observability (default: probed, see :mod:`nono.audit.denials`). ``pid``
    is the supervisor (default: this process).
    """
    key = None
    if sign_key:
        from .signing import load_key

        key = load_key(sign_key)
    root = store.audit_root()
    os.makedirs(root, mode=0o700, exist_ok=True)
    t0 = time.time()
    sid = session_id or store.new_session_id(t0)
    if not store.is_session_id(sid):
        raise ValueError(f"invalid audit session id {sid!r}")
    directory = store.session_dir(sid, root)
    os.mkdir(directory, 0o700)
    pid = os.getpid() if pid is None else pid
    pid_start = store.proc_start(pid)
    argv = redact.argv([str(a) for a in command])
    meta: 'dict[str, Any]' = {
        "session_id": sid, "started": store.iso(t0), "ended": None, "command": argv,
        "executable_identity": None, "tracked_paths": [], "snapshot_count": 0, "exit_code": None,
        "merkle_roots": [], "network_events": [], "audit_event_count": 0, "audit_integrity": None,
        "audit_attestation": None,
        "status": "running", "pid": pid, "pid_start": pid_start, "uid": os.getuid(), "cwd": redact.text(cwd),
        "profile": profile, "policy_digest": policy_digest, "grants": redact.value(list(grants)),
        "protections": redact.value(dict(protections)), "network": redact.value(dict(network)),
        "denials": denials if denials is not None else denials_status(),
        "signed": bool(key), "nono_version": _version(),
    }
    session = AuditSession(sid, directory, root, meta, key)
    store.write_atomic(os.path.join(directory, store.SESSION_FILE), _jsonlite.dumps(meta).encode("utf-8") + b"\n",
                       sync=False)
    running = os.path.join(root, store.RUNNING_DIR)
    try:
        os.mkdir(running, 0o700)
    except FileExistsError:
        pass
    # Written in place (a fresh name): a reader that catches it half-written skips it, like a dead one.
    fd = os.open(os.path.join(running, sid), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, _jsonlite.dumps_compact(
            {"session_id": sid, "pid": pid, "pid_start": pid_start, "started": meta["started"], "command": argv,
             "cwd": meta["cwd"], "profile": profile}).encode("utf-8"))
    finally:
        os.close(fd)
    session.t0 = t0
    session.event("session_start", command=argv, cwd=meta["cwd"], profile=profile, policy_digest=policy_digest,
                  grants=meta["grants"], protections=meta["protections"], network=meta["network"],
                  denials=meta["denials"], pid=pid, uid=meta["uid"], signed=bool(key))
    return session


def _version() -> str:
    try:
        from .. import __version__

        return str(__version__)
    except ImportError:  # pragma: no cover
        return "unknown"
