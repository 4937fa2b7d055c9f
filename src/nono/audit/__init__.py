"""Tamper-evident audit records of sandboxed sessions (``nono audit``, ``nono ps|stop|logs``).

API (for the supervisor; import ``nono.audit.session``, nothing heavy is loaded)::

    from nono.audit import session as audit_session

    rec = audit_session.begin(
        command=program,                 # argv; secrets are redacted before anything is written
        cwd=os.getcwd(), profile=name_or_None,
        policy_digest="sha256 hex of the resolved policy",
        grants=[{"path": ..., "access": "read", "source": "user"}, ...],
        protections={"landlock_abi": 7, "enforced": [...], "missing": [...]},
        network={"mode": "proxy", "hosts": [...]},
        sign_key=None,                   # "file:///abs/key" (mode 0600) or a keyring key name
    )                                    # -> AuditSession
    rec.event("credential_use", service="openai")      # any kind, JSON-able fields, redacted
    rec.events("denial", collector.drain())            # many events, one write
    rec.finish(exit_code, network_events=proxy_events, rollback={"session_id": ..., "tracked_paths": [...],
               "snapshot_count": 2, "merkle_roots": [...]})   # -> {"session_id", "status", "digest", ...}

``begin`` creates ``$XDG_STATE_HOME/nono/audit/<session-id>/`` (default
``~/.local/state/nono``; every sandbox is denied that tree), writes ``session.json`` (status
``running``, ``ended`` null, pid + start time of the supervisor), registers the session for
``nono ps`` (``.running/<id>``) and appends ``session_start``. Each event in
``audit-events.ndjson`` carries ``seq``, ``time``, ``kind``, its fields, ``prev`` (the previous
event's hash) and ``hash`` (SHA-256 of the line as written without the hash field); see
:mod:`nono.audit.chain`. ``finish`` appends the network decisions and ``session_end``, fsyncs,
rewrites ``session.json`` atomically (ended, exit_code, status, integrity data), signs it when a
key was given (DSSE + in-toto statement, ECDSA P-256: :mod:`nono.audit.signing`, reusable by
``trust``) and appends the session digest to ``ledger.ndjson`` under an ``flock``.

A supervisor killed with SIGKILL leaves status ``running`` and a dead pid: ``verify`` reports
"ended abnormally" (intact, not corrupt) and ``ps`` does not list it.

Modules: ``session`` (recording), ``chain`` (line format), ``ledger``, ``verify``, ``store``
(paths, listing, liveness), ``redact``, ``signing``, ``denials`` (Landlock ABI 7 denials from
the kernel audit log, when the host has auditing enabled). The CLI is :mod:`nono.cli.audit`.
"""
