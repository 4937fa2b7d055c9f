"""`nono run` records every session (root and nobody): list, show, verify; --no-audit opts out."""

from __future__ import annotations

import json


def test_run_is_audited_and_verifies(world):
    r = world.nono("run", "-s", "--allow-cwd", "--", "/bin/sh", "-c", "exit 3")
    assert r.returncode == 3, r.stderr
    lst = world.nono("audit", "list", "--json")
    assert lst.returncode == 0, lst.stderr
    sessions = json.loads(lst.stdout)
    assert sessions and sessions[-1]["exit_code"] == 3, sessions
    sid = sessions[-1]["session_id"]
    v = world.nono("audit", "verify", sid)
    assert v.returncode == 0 and "intact" in v.stdout, v.stdout + v.stderr
    show = world.nono("audit", "show", sid, "--json")
    data = json.loads(show.stdout)
    assert data["command"][0] == "/bin/sh" and data["exit_code"] == 3
    n = len(sessions)
    r = world.nono("run", "-s", "--no-audit", "--allow-cwd", "--", "true")
    assert r.returncode == 0
    assert len(json.loads(world.nono("audit", "list", "--json").stdout)) == n
