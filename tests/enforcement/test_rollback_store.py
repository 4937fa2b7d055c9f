"""The rollback store is out of the agent's reach: nothing inside a sandbox can read or change it."""

from __future__ import annotations

import os

import pytest

DRIVER = r"""
import json, os, sys
from nono.rollback import session
home, work, outside = sys.argv[1:4]
with open(os.path.join(work, "project.txt"), "w") as f:
    f.write("ROLLBACK-STORE-CONTENT\n")
s = session.begin([work], command=["agent"], out=lambda m: None)
s.finish(0)
from nono.rollback.store import SessionStore
store = SessionStore(s.session_id)
obj = [p for d, p in store.iter_objects() if open(p).read() == "ROLLBACK-STORE-CONTENT\n"][0]
print(json.dumps({"sid": s.session_id, "dir": store.dir, "obj": obj}))
"""


@pytest.fixture
def store(world):  # type: ignore[no-untyped-def]
    info = world.drive(DRIVER)
    assert info["dir"].startswith(str(world.home / ".local" / "state" / "nono" / "rollbacks"))
    return info


@pytest.mark.parametrize("grant", ["work", "home"])
def test_sandbox_cannot_read_or_write_the_rollback_store(world, store, grant) -> None:  # type: ignore[no-untyped-def]
    granted = str(world.work if grant == "work" else world.home)
    meta = os.path.join(store["dir"], "session.json")
    script = (f"cat {store['obj']}; echo read=$?; ls {store['dir']}; echo list=$?; "
              f"echo x >> {meta}; echo write=$?; rm -f {store['obj']}; echo rm=$?; "
              f"cat {world.work / 'project.txt' if grant == 'work' else world.home / 'notes.txt'} > /dev/null; echo control=$?")
    r = world.nono("run", "-s", "--allow", granted, "--", "/bin/sh", "-c", script)
    assert "control=0" in r.stdout, r.stderr  # the grant works; only the store is out of reach
    assert "ROLLBACK-STORE-CONTENT" not in r.stdout
    for probe in ("read", "list", "write", "rm"):
        assert f"{probe}=0" not in r.stdout, (probe, r.stdout, r.stderr)
    assert os.path.exists(store["obj"])
    with open(meta) as f:
        assert f.read().rstrip().endswith("}")  # untouched
