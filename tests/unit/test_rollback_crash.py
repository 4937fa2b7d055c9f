"""A restore killed with SIGKILL part-way is finished by running it again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from nono.rollback import restore as R
from nono.rollback import session as S
from nono.rollback.store import SessionStore

SRC = str(Path(R.__file__).resolve().parents[2])


def test_kill_9_during_restore_then_rerun_completes(tmp_path: Path) -> None:
    tree, store_root = tmp_path / "work", str(tmp_path / "store")
    tree.mkdir()
    for i in range(12):
        (tree / f"f{i:02d}.txt").write_text(f"original {i}\n")
    s = S.begin([str(tree)], command=["agent"], out=lambda _m: None, root=store_root)
    for i in range(12):
        (tree / f"f{i:02d}.txt").write_text(f"clobbered {i}\n" * 100)
    for i in range(5):
        (tree / f"new{i}.txt").write_text("agent output")
    s.finish(0)
    journal = Path(SessionStore(s.session_id, store_root).dir) / R.JOURNAL
    code = (f"import sys; sys.path.insert(0, {SRC!r}); from nono.rollback.restore import restore; "
            f"restore({s.session_id!r}, 0, root={store_root!r})")
    env = dict(os.environ, **{R._DELAY_ENV: "0.3"})
    proc = subprocess.Popen([sys.executable, "-c", code], env=env)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if journal.exists() and sum(1 for x in journal.read_text().splitlines() if x.isdigit()) >= 4:
                break
            assert proc.poll() is None, "the restore finished before it could be killed"
            time.sleep(0.02)
        else:
            raise AssertionError("the restore made no progress within 30 s")
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert journal.exists()
    contents = [(tree / f"f{i:02d}.txt").read_text() for i in range(12)]
    leftovers = [p for p in (tree / f"new{i}.txt" for i in range(5)) if p.exists()]
    assert leftovers or any(c.startswith("clobbered") for c in contents), "nothing was left to finish"

    messages: list[str] = []
    result = R.restore(s.session_id, 0, root=store_root, out=messages.append)
    assert result.ok, result.errors
    assert result.resumed >= 4 and "resuming an interrupted restore" in messages[0]
    assert [(tree / f"f{i:02d}.txt").read_text() for i in range(12)] == [f"original {i}\n" for i in range(12)]
    assert sorted(p.name for p in tree.iterdir()) == [f"f{i:02d}.txt" for i in range(12)]  # no temp files left
    assert not journal.exists()
    assert R.restore(s.session_id, 0, root=store_root).applied == []
