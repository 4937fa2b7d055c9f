"""``nono rollback ...`` / ``nono session ...`` commands and the ``Snapshots`` Python API."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from nono.cli import args as A
from nono.cli.rollback import cmd_rollback, cmd_session, parse_size
from nono.rollback import session as S
from nono.rollback.api import Snapshots
from nono.rollback.store import SessionStore, rollbacks_root


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("NONO_ROLLBACK_DIR", raising=False)
    return tmp_path / "state"


@pytest.fixture
def recorded(tmp_path: Path, state: Path) -> tuple[str, Path]:
    tree = tmp_path / "proj"
    tree.mkdir()
    (tree / "a.txt").write_text("one\ntwo\n")
    (tree / "gone.txt").write_text("bye\n")
    (tree / "img.bin").write_bytes(b"\x89PNG\x00\x01")
    s = S.begin([str(tree)], command=["python", "agent.py"], out=lambda _m: None)
    (tree / "a.txt").write_text("one\n2\n")
    (tree / "gone.txt").unlink()
    (tree / "img.bin").write_bytes(b"\x89PNG\x00\x02\x03")
    (tree / "new.txt").write_text("hello\n")
    s.finish(0)
    return s.session_id, tree


def test_store_location_follows_xdg_state_home(state: Path) -> None:
    assert rollbacks_root() == str(state / "nono" / "rollbacks")


def test_list_text_and_json(recorded: tuple[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    sid, tree = recorded
    assert cmd_rollback(["list"]) == 0
    out = capsys.readouterr().out
    assert sid in out and str(tree) in out and "python agent.py" in out
    assert cmd_rollback(["list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["session_id"] == sid and rows[0]["tracked_paths"] == [str(tree)]
    assert rows[0]["changes"] == {"created": 1, "modified": 2, "deleted": 1} and rows[0]["status"] == "ended"


def test_show_diff_and_json(recorded: tuple[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    sid, tree = recorded
    assert cmd_rollback(["show", sid[:12], "--diff"]) == 0
    out = capsys.readouterr().out
    assert "-two" in out and "+2" in out and "+++ b/new.txt" in out and "--- a/gone.txt" in out
    assert "Binary file img.bin modified (6 -> 7 bytes" in out
    assert cmd_rollback(["show", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["summary"]["created"] == [str(tree / "new.txt")] and doc["summary"]["deleted"] == [str(tree / "gone.txt")]


def test_session_diff_and_rollback(recorded: tuple[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    _sid, tree = recorded
    assert cmd_session(["diff"]) == 0
    assert "+2" in capsys.readouterr().out
    assert cmd_session(["rollback", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "dry run" in out and "new.txt" in out and (tree / "new.txt").exists()
    assert cmd_session(["rollback"]) == 0
    assert (tree / "a.txt").read_text() == "one\ntwo\n" and (tree / "gone.txt").read_text() == "bye\n"
    assert not (tree / "new.txt").exists()
    capsys.readouterr()
    assert cmd_session(["rollback"]) == 0
    assert "already" in capsys.readouterr().out


def test_restore_json_and_snapshot_number(recorded: tuple[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    sid, tree = recorded
    assert cmd_rollback(["restore", sid, "--snapshot", "1", "--json"]) == 0  # already the latest: nothing to do
    assert json.loads(capsys.readouterr().out)["actions"] == []
    assert cmd_rollback(["restore", sid, "--snapshot", "7"]) == 1
    assert "no snapshot 7" in capsys.readouterr().err


def test_verify_ok_then_corrupt(recorded: tuple[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    sid, _tree = recorded
    assert cmd_rollback(["verify", sid]) == 0
    assert "OK" in capsys.readouterr().out
    store = SessionStore(sid)
    digest, path = store.iter_objects()[0]
    os.chmod(path, 0o600)
    Path(path).write_bytes(b"bitrot")
    assert cmd_rollback(["verify", sid]) == 1
    out = capsys.readouterr().out
    assert "CORRUPT" in out and digest in out
    assert cmd_rollback(["verify", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["corrupt"] == [digest]


def test_cleanup(recorded: tuple[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    sid, tree = recorded
    s2 = S.begin([str(tree)], command=["x"], out=lambda _m: None)
    s2.finish(0)
    assert cmd_rollback(["cleanup", "--keep", "1", "--dry-run"]) == 0
    assert f"would remove {sid}" in capsys.readouterr().out
    assert cmd_rollback(["cleanup", "--keep", "1"]) == 0
    assert f"removed {sid}" in capsys.readouterr().out
    assert cmd_rollback(["list", "--json"]) == 0
    assert [r["session_id"] for r in json.loads(capsys.readouterr().out)] == [s2.session_id]
    assert parse_size("5G") == 5 << 30 and parse_size("500MiB") == 500 << 20 and parse_size("1024") == 1024


def test_usage_errors_and_help(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(A.UsageError, match="did you mean 'restore'"):
        cmd_rollback(["restor"])
    with pytest.raises(A.UsageError):
        cmd_rollback(["list", "extra"])
    with pytest.raises(A.UsageError):
        cmd_rollback(["show", "--bogus"])
    assert cmd_rollback(["--help"]) == 0 and "nono rollback" in capsys.readouterr().out
    assert cmd_session(["diff", "--help"]) == 0 and "--stat" in capsys.readouterr().out
    assert cmd_rollback([]) == 2
    assert cmd_rollback(["show"]) == 1 and "no rollback sessions" in capsys.readouterr().err
    assert cmd_rollback(["list"]) == 0 and "No rollback sessions" in capsys.readouterr().out


# -- the Python API --------------------------------------------------------------------
def test_snapshots_api_create_diff_restore(tmp_path: Path, state: Path) -> None:
    d = tmp_path / "agent-session"
    d.mkdir()
    (d / "notes.md").write_text("v1\n")
    snap = Snapshots([str(d)])
    cp = snap.create()
    assert cp == 0 and snap.session_id
    (d / "notes.md").write_text("v2\n")
    (d / "scratch.txt").write_text("tmp")
    diff = snap.diff(cp)
    assert diff.modified == [str(d / "notes.md")] and diff.created == [str(d / "scratch.txt")]
    assert "-v1" in diff.unified() and "+v2" in diff.unified()
    dry = snap.restore(cp, dry_run=True)
    assert dry.dry_run and (d / "scratch.txt").exists()
    snap.restore(cp)
    assert (d / "notes.md").read_text() == "v1\n" and not (d / "scratch.txt").exists()
    assert not snap.diff(cp)
    # the state before the restore was recorded as checkpoint 1: the restore can be undone
    snap.restore(1)
    assert (d / "notes.md").read_text() == "v2\n" and (d / "scratch.txt").read_text() == "tmp"
    assert snap.create() == 3
    snap.close()
    assert SessionStore(snap.session_id).read_meta()["ended"]


def test_snapshots_api_errors(tmp_path: Path, state: Path) -> None:
    snap = Snapshots([str(tmp_path)])
    with pytest.raises(ValueError, match="create"):
        snap.diff(0)
    snap.create()
    from nono.rollback.store import StoreError

    with pytest.raises(StoreError):
        snap.restore(9)
