"""``nono ps``, ``nono stop`` and ``nono logs -f`` against live dummy sessions (bounded waits)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_audit import SRC, _cli, start_dummy  # tests/unit is on sys.path (rootdir-less "prepend" import mode)

from nono.audit import store
from nono.audit.verify import verify


@pytest.fixture(autouse=True)
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    r = tmp_path / "audit"
    monkeypatch.setenv("NONO_AUDIT_DIR", str(r))
    return r


def test_ps_lists_live_sessions_only() -> None:
    assert "No running sessions" in _cli("ps").stdout
    proc, sid = start_dummy()
    try:
        rows = json.loads(_cli("ps", "--json").stdout)
        assert [r["session_id"] for r in rows] == [sid] and rows[0]["pid"] == proc.pid
        assert rows[0]["command"] == ["sleepy", "--token", "[REDACTED]"]
        text = _cli("ps").stdout
        assert sid in text and str(proc.pid) in text and "hunter2" not in text
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert json.loads(_cli("ps", "--json").stdout) == []


def test_stop_sends_sigterm_and_the_session_finishes() -> None:
    proc, sid = start_dummy()
    t0 = time.monotonic()
    r = _cli("stop", sid[:12])
    assert r.returncode == 0, r.stderr
    assert f"stopped {sid}" in r.stdout and "SIGTERM" in r.stdout
    assert proc.wait(timeout=10) == 0 and time.monotonic() - t0 < 10
    meta = store.read_session(sid)
    assert meta["status"] == "stopped" and meta["exit_code"] == 143
    assert verify(sid)["status"] == "ok"
    r = _cli("stop", sid)
    assert r.returncode == 1 and "not running" in r.stderr


def test_stop_escalates_to_sigkill_after_the_timeout() -> None:
    proc, sid = start_dummy(ignore_term=True)
    t0 = time.monotonic()
    r = _cli("stop", sid, "--timeout", "0.5", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["signal"] == "SIGKILL" and doc["stopped"]
    assert "did not stop within 0.5s" in r.stderr
    assert proc.wait(timeout=10) == -9 and time.monotonic() - t0 < 8
    assert verify(sid)["status"] == "ended abnormally"


def test_stop_force() -> None:
    proc, sid = start_dummy()
    r = _cli("stop", sid, "--force")
    assert r.returncode == 0 and "SIGKILL" in r.stdout
    assert proc.wait(timeout=10) == -9
    assert _cli("stop", "nosuch").returncode == 1


def test_logs_tail_json_and_follow() -> None:
    proc, sid = start_dummy(tick=0.02)
    try:
        time.sleep(0.3)
        r = _cli("logs", sid, "--tail", "2", "--json")
        lines = [json.loads(x) for x in r.stdout.splitlines()]
        assert len(lines) == 2 and all(e["kind"] == "tick" for e in lines)
        assert "session_start" in _cli("logs", sid).stdout
        env = dict(os.environ, PYTHONPATH=str(SRC))
        follower = subprocess.Popen([sys.executable, "-m", "nono.cli.audit", "logs", sid, "-f", "--tail", "0",
                                     "--interval", "0.05", "--json"], stdout=subprocess.PIPE, text=True, env=env)
        time.sleep(0.5)
        proc.terminate()  # the dummy finishes its record on SIGTERM
        out, _ = follower.communicate(timeout=15)
        assert follower.returncode == 0
        events = [json.loads(x) for x in out.splitlines()]
        assert len(events) >= 3
        assert events[-1]["kind"] == "session_end" and events[-2]["kind"] == "signal"
        seqs = [e["seq"] for e in events]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # nothing lost or repeated
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_logs_follow_stops_when_the_supervisor_dies() -> None:
    proc, sid = start_dummy(tick=0.05)
    env = dict(os.environ, PYTHONPATH=str(SRC))
    follower = subprocess.Popen([sys.executable, "-m", "nono.cli.audit", "logs", sid, "-f", "--interval", "0.05"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    time.sleep(0.4)
    proc.kill()
    proc.wait(timeout=10)
    out, err = follower.communicate(timeout=15)
    assert follower.returncode == 0 and "ended abnormally" in err and "tick" in out


def test_usage_errors() -> None:
    assert _cli("stop").returncode == 2
    assert _cli("logs").returncode == 2
    assert _cli("stop", "x", "--timeout", "soon").returncode == 2
    assert _cli("ps", "--help").returncode == 0
    assert _cli("audit", "--help").returncode == 0
