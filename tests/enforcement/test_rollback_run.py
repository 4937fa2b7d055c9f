"""`nono run --rollback` end to end, as root and nobody: snapshot, change summary, `session diff`, `session rollback`."""

from __future__ import annotations


def test_run_rollback_then_session_rollback(world):
    proj = world.work / "proj"
    proj.mkdir()
    (proj / "a.txt").write_text("one\n")
    (proj / "b.txt").write_text("keep\n")
    import os

    for p in (proj, proj / "a.txt", proj / "b.txt"):
        os.chown(p, world.user.uid, world.user.uid)
    r = world.nono("run", "--allow", str(proj), "--rollback", "--no-rollback-prompt", "--",
                   "/bin/sh", "-c", f"cd {proj} && echo two > a.txt && rm b.txt && echo new > c.txt")
    assert r.returncode == 0, r.stderr
    assert "baseline of 2 files" in r.stderr and "1 created, 1 modified, 1 deleted" in r.stderr, r.stderr
    assert "nono rollback restore" in r.stderr
    d = world.nono("session", "diff")
    assert d.returncode == 0 and "-one" in d.stdout and "+two" in d.stdout, d.stdout + d.stderr
    rb = world.nono("session", "rollback")
    assert rb.returncode == 0, rb.stderr
    assert (proj / "a.txt").read_text() == "one\n" and (proj / "b.txt").read_text() == "keep\n"
    assert not (proj / "c.txt").exists()
    lst = world.nono("rollback", "list", "--json")
    assert lst.returncode == 0 and "tracked_paths" in lst.stdout or lst.stdout.strip().startswith("["), lst.stdout


def test_wrap_refuses_rollback(world):
    r = world.nono("wrap", "--rollback", "--", "true")
    assert r.returncode == 2 and "nono run" in r.stderr
