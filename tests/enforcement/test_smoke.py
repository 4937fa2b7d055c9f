"""The smallest end-to-end checks; the attack suites live beside this file."""

from __future__ import annotations


def test_allowed_work_succeeds(world):
    r = world.nono("run", "-s", "--allow-cwd", "--", "/bin/cat", "input.txt")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "input\n"


def test_planted_ssh_key_is_denied(world):
    r = world.nono("run", "-s", "--allow", str(world.home), "--", "/bin/cat", str(world.home / ".ssh" / "id_rsa"))
    assert r.returncode == 1
    assert "PLANTED" not in r.stdout
    assert "Permission denied" in r.stderr
