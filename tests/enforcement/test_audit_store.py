"""The audit store is out of the agent's reach: a sandbox cannot read, change or add to it."""

from __future__ import annotations

import os

import pytest

DRIVER = r"""
import json, os, sys
from nono.audit import session
from nono.audit.store import audit_root
s = session.begin(command=["agent", "--token", "AUDIT-STORE-SECRET"], cwd=sys.argv[2], profile=None,
                  policy_digest="ab" * 32, grants=[], protections={}, network={}, denials="not observable (test)")
s.event("note", text="AUDIT-STORE-CONTENT")
s.finish(0)
print(json.dumps({"sid": s.session_id, "root": audit_root(), "dir": os.path.join(audit_root(), s.session_id)}))
"""

VERIFY = r"""
import json, sys
from nono.audit.verify import verify
print(json.dumps(verify(sys.argv[4] if len(sys.argv) > 4 else open(sys.argv[2] + "/sid").read())))
"""


@pytest.fixture
def store(world):  # type: ignore[no-untyped-def]
    info = world.drive(DRIVER)
    assert info["root"] == str(world.home / ".local" / "state" / "nono" / "audit")
    (world.work / "sid").write_text(info["sid"])
    os.chown(world.work / "sid", world.user.uid, world.user.uid)
    return info


@pytest.mark.parametrize("grant", ["home", "work"])
def test_sandbox_cannot_read_or_write_the_audit_store(world, store, grant) -> None:  # type: ignore[no-untyped-def]
    granted = str(world.home if grant == "home" else world.work)
    d, root = store["dir"], store["root"]
    events = os.path.join(d, "audit-events.ndjson")
    meta = os.path.join(d, "session.json")
    ledger = os.path.join(root, "ledger.ndjson")
    script = (f"cat {events}; echo read=$?; cat {meta}; echo readmeta=$?; ls {d}; echo list=$?; "
              f"cat {ledger}; echo readledger=$?; "
              f"echo x >> {events}; echo write=$?; echo x >> {ledger}; echo writeledger=$?; "
              f"echo '{{}}' > {root}/.running/fake; echo register=$?; mkdir {root}/forged; echo mkdir=$?; "
              f"rm -f {meta}; echo rm=$?; "
              f"cat {world.home / 'notes.txt' if grant == 'home' else world.work / 'input.txt'} > /dev/null; "
              "echo control=$?")
    r = world.nono("run", "-s", "--allow", granted, "--", "/bin/sh", "-c", script)
    assert "control=0" in r.stdout, r.stderr  # the grant works; only the store is out of reach
    assert "AUDIT-STORE-CONTENT" not in r.stdout and "session_id" not in r.stdout
    for probe in ("read", "readmeta", "list", "readledger", "write", "writeledger", "register", "mkdir", "rm"):
        assert f"{probe}=0" not in r.stdout, (probe, r.stdout, r.stderr)
    assert not os.path.exists(os.path.join(root, "forged"))
    report = world.drive(VERIFY)
    assert report["ok"] and report["status"] == "ok", report


def test_audit_records_never_hold_the_secret(world, store) -> None:  # type: ignore[no-untyped-def]
    d = store["dir"]
    for name in os.listdir(d):
        with open(os.path.join(d, name)) as f:
            assert "AUDIT-STORE-SECRET" not in f.read()
    assert os.stat(d).st_mode & 0o777 == 0o700
    assert os.stat(os.path.join(d, "session.json")).st_mode & 0o777 == 0o600
