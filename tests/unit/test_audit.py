"""Audit records: round trip, hash chain, tampering, ledger, faults, concurrency, redaction, signing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nono.audit import chain, ledger, redact, store
from nono.audit import session as audit_session
from nono.audit.verify import verify

SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    r = tmp_path / "audit"
    monkeypatch.setenv("NONO_AUDIT_DIR", str(r))
    return r


def _begin(**kw: object) -> audit_session.AuditSession:
    args: dict[str, object] = dict(command=["python", "agent.py"], cwd="/work", profile="default",
                                   policy_digest="9f" * 32, grants=[{"path": "/work", "access": "readwrite",
                                                                     "source": "cwd"}],
                                   protections={"landlock_abi": 7, "enforced": ["filesystem", "tcp"], "missing": []},
                                   network={"mode": "proxy", "hosts": ["api.openai.com"]},
                                   denials="not observable (test)")
    args.update(kw)
    return audit_session.begin(**args)  # type: ignore[arg-type]


def _events_path(root: Path, sid: str) -> Path:
    return root / sid / store.EVENTS_FILE


def _finished(root: Path, n_events: int = 10) -> str:
    s = _begin()
    for i in range(n_events):
        s.event("note", i=i, text=f"event {i}")
    s.finish(0, network_events=[{"time": time.time(), "action": "deny", "host": "evil.example", "port": 443,
                                 "reason": "not in allowlist", "bytes": 0}])
    return s.session_id


# -- round trip ---------------------------------------------------------------------------
def test_round_trip(root: Path) -> None:
    s = _begin()
    sid = s.session_id
    meta = json.loads((root / sid / "session.json").read_text())
    assert meta["status"] == "running" and meta["ended"] is None and meta["exit_code"] is None
    assert meta["pid"] == os.getpid() and meta["command"] == ["python", "agent.py"]
    for key in ("session_id", "started", "ended", "command", "exit_code", "tracked_paths", "snapshot_count",
                "merkle_roots", "network_events"):
        assert key in meta
    assert (root / store.RUNNING_DIR / sid).exists()
    s.event("credential_use", service="openai")
    result = s.finish(42, network_events=[
        {"time": 1.5, "action": "allow", "host": "api.openai.com", "port": 443, "reason": "", "bytes_up": 10},
        {"time": 2.5, "action": "deny", "host": "evil.example", "port": 443, "reason": "not allowed"}],
        rollback={"session_id": "rb1", "tracked_paths": ["/work"], "snapshot_count": 2, "merkle_roots": ["aa", "bb"]})
    assert result["status"] == "failed" and result["event_count"] == 6
    meta = json.loads((root / sid / "session.json").read_text())
    assert meta["exit_code"] == 42 and meta["status"] == "failed" and meta["ended"]
    assert meta["tracked_paths"] == ["/work"] and meta["snapshot_count"] == 2 and meta["merkle_roots"] == ["aa", "bb"]
    assert [e["host"] for e in meta["network_events"]] == ["api.openai.com", "evil.example"]
    assert meta["audit_integrity"]["event_count"] == 6
    assert not (root / store.RUNNING_DIR / sid).exists()
    kinds = [json.loads(ln)["kind"] for ln in _events_path(root, sid).read_text().splitlines()]
    assert kinds == ["session_start", "credential_use", "network", "network", "rollback", "session_end"]
    report = verify(sid)
    assert report["status"] == "ok" and report["ok"], report
    assert report["ledger"].startswith("included")


def test_event_format_and_chain(root: Path) -> None:
    s = _begin()
    for i in range(5):
        s.event("x", n=i, f=0.5, ok=True, none=None, nested={"a": [1, "b"]})
    s.finish(0)
    lines = _events_path(root, s.session_id).read_text().splitlines()
    prev = chain.genesis(s.session_id)
    for n, line in enumerate(lines):
        rec = json.loads(line)
        assert list(rec)[:3] == ["seq", "time", "kind"] and list(rec)[-2:] == ["prev", "hash"]
        assert rec["seq"] == n and rec["prev"] == prev
        prev = rec["hash"]
    with pytest.raises(ValueError):
        _begin().event("x", seq=3)


# -- tampering ----------------------------------------------------------------------------------
def test_tampered_byte_in_any_event_is_located(root: Path) -> None:
    sid = _finished(root, 10)
    path = _events_path(root, sid)
    original = path.read_bytes()
    lines = original.split(b"\n")[:-1]
    assert verify(sid)["ok"]
    for idx, line in enumerate(lines):
        for pos in sorted({1, len(line) // 3, len(line) // 2, len(line) - 20, len(line) - 3}):
            data = bytearray(original)
            offset = sum(len(x) + 1 for x in lines[:idx]) + pos
            data[offset] = data[offset] ^ 0x01 if data[offset] not in (ord('"'), ord("\\")) else ord("x")
            path.write_bytes(bytes(data))
            report = verify(sid)
            assert not report["ok"] and report["status"] == "corrupt"
            assert f"event {idx} (line {idx + 1})" in report["problems"][0], (idx, pos, report["problems"])
    path.write_bytes(original)
    assert verify(sid)["ok"]


def test_cli_verify_message(root: Path) -> None:
    sid = _finished(root, 10)
    path = _events_path(root, sid)
    lines = path.read_text().splitlines(keepends=True)
    lines[7] = lines[7].replace("event 6", "event X")
    path.write_text("".join(lines))
    r = _cli("audit", "verify", sid)
    assert r.returncode == 1
    assert "event 7 (line 8): hash mismatch" in r.stdout and "CORRUPT" in r.stdout


@pytest.mark.parametrize("attack", ["delete", "swap", "truncate", "append", "meta_exit", "reseal"])
def test_structural_tampering(root: Path, attack: str) -> None:
    sid = _finished(root, 6)
    path = _events_path(root, sid)
    lines = path.read_text().splitlines(keepends=True)
    if attack == "delete":
        del lines[3]
    elif attack == "swap":
        lines[2], lines[3] = lines[3], lines[2]
    elif attack == "truncate":
        lines = lines[:-2]
    elif attack == "append":
        lines.append(lines[-1])
    elif attack == "meta_exit":
        meta = json.loads((root / sid / "session.json").read_text())
        meta["exit_code"] = 0 if meta["exit_code"] else 1
        (root / sid / "session.json").write_text(json.dumps(meta, indent=2))
    elif attack == "reseal":
        # Rewrite an event and recompute the whole chain: the ledger and the recorded head still catch it.
        recs = [json.loads(x) for x in lines]
        recs[2]["text"] = "forged"
        prev = chain.genesis(sid)
        lines = []
        for r in recs:
            r.pop("hash")
            r["prev"] = prev
            line, prev = chain.seal(json.dumps(r, separators=(",", ":")))
            lines.append(line)
    path.write_text("".join(lines))
    report = verify(sid)
    assert not report["ok"], report


def test_torn_last_line_of_a_finished_session_is_corrupt(root: Path) -> None:
    sid = _finished(root, 3)
    with open(_events_path(root, sid), "ab") as f:
        f.write(b'{"seq":5,"ti')
    assert not verify(sid)["ok"]


# -- ledger -------------------------------------------------------------------------------------
def test_ledger_inclusion_and_tampering(root: Path) -> None:
    ids = [_finished(root, 2) for _ in range(3)]
    entries, problems = ledger.read()
    assert not problems and [e["session_id"] for e in entries] == ids
    assert [e["seq"] for e in entries] == [0, 1, 2]
    for sid in ids:
        assert verify(sid)["ledger"].startswith("included")
    lpath = root / store.LEDGER_FILE
    text = lpath.read_text()
    lpath.write_text(text.replace('"event_count":5', '"event_count":6', 1))
    entries, problems = ledger.read()
    assert problems and "ledger entry 0 (line 1): hash mismatch" in problems[0]
    assert not verify(ids[0])["ok"]
    # Removing a middle entry breaks the chain at the next one.
    lines = text.splitlines(keepends=True)
    lpath.write_text(lines[0] + lines[2])
    _entries, problems = ledger.read()
    assert problems and "line 2" in problems[0]
    # A session missing from an intact ledger is not verified.
    lpath.write_text(lines[0] + lines[1])
    report = verify(ids[2])
    assert not report["ok"] and report["ledger"] == "missing"


def test_ledger_repairs_a_torn_append(root: Path) -> None:
    _finished(root, 1)
    with open(root / store.LEDGER_FILE, "ab") as f:
        f.write(b'{"seq":1,"time":"x"')  # a crash mid-append
    sid = _finished(root, 1)
    entries, problems = ledger.read()
    assert not problems and len(entries) == 2 and entries[1]["session_id"] == sid


# -- faults ---------------------------------------------------------------------------------------
_DUMMY = r"""
import os, signal, sys, time
sys.path.insert(0, {src!r})
from nono.audit import session
s = session.begin(command=["sleepy", "--token", "hunter2"], cwd="/", profile=None, policy_digest="ab" * 32,
                  grants=[], protections={{}}, network={{}}, denials="not observable (test)")
def stop(signo, frame):
    s.event("signal", signo=signo)
    s.finish(128 + signo, status="stopped")
    os._exit(0)
signal.signal(signal.SIGTERM, stop)
if {ignore_term}:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
print(s.session_id, flush=True)
for i in range(10 ** 6):
    s.event("tick", i=i)
    time.sleep({tick})
"""


def start_dummy(*, tick: float = 0.05, ignore_term: bool = False) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-c", _DUMMY.format(src=str(SRC), tick=tick, ignore_term=ignore_term)],
                            stdout=subprocess.PIPE, text=True, env=os.environ.copy())
    assert proc.stdout is not None
    sid = proc.stdout.readline().strip()
    assert sid, "the dummy session did not start"
    return proc, sid


def test_sigkilled_supervisor_ends_abnormally(root: Path) -> None:
    proc, sid = start_dummy(tick=0.001)
    time.sleep(0.2)
    proc.kill()
    proc.wait(timeout=10)
    report = verify(sid)
    assert report["status"] == "ended abnormally" and report["ok"], report
    assert report["events"] > 1 and not report["problems"]
    assert store.running_sessions() == []
    r = _cli("audit", "verify", sid)
    assert r.returncode == 0 and "ended abnormally" in r.stdout and "CORRUPT" not in r.stdout
    assert sid not in _cli("ps").stdout
    assert sid in _cli("ps", "--all").stdout
    listing = json.loads(_cli("audit", "list", "--json").stdout)
    assert [r["status"] for r in listing if r["session_id"] == sid] == ["ended abnormally"]


def test_abnormal_with_a_torn_last_line_is_not_corrupt(root: Path) -> None:
    proc, sid = start_dummy()
    proc.kill()
    proc.wait(timeout=10)
    with open(_events_path(root, sid), "ab") as f:
        f.write(b'{"seq":99,"time":"2026')
    report = verify(sid)
    assert report["status"] == "ended abnormally" and report["ok"], report
    assert any("incomplete" in n for n in report["notes"])


def test_abnormal_session_listed_in_ledger_is_corrupt(root: Path) -> None:
    sid = _finished(root, 2)
    meta = json.loads((root / sid / "session.json").read_text())
    meta.update(ended=None, status="running", pid=2 ** 22 + 12345)  # pretend it never finished
    (root / sid / "session.json").write_text(json.dumps(meta))
    assert verify(sid)["status"] == "corrupt"


_WRITER = r"""
import sys
sys.path.insert(0, {src!r})
from nono.audit import session
for _ in range({per}):
    s = session.begin(command=["w", sys.argv[1]], cwd="/", profile=None, policy_digest="cd" * 32, grants=[],
                      protections={{}}, network={{}}, denials="not observable (test)")
    for i in range(50):
        s.event("e", i=i, who=sys.argv[1])
    s.finish(0)
"""


def test_twenty_concurrent_sessions(root: Path) -> None:
    per = 3
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER.format(src=str(SRC), per=per), str(n)])
             for n in range(20)]
    for p in procs:
        assert p.wait(timeout=120) == 0
    ids = store.list_session_ids()
    assert len(ids) == 20 * per
    entries, problems = ledger.read()
    assert not problems
    assert sorted(e["session_id"] for e in entries) == sorted(ids)
    assert [e["seq"] for e in entries] == list(range(20 * per))
    raw = (root / store.LEDGER_FILE).read_bytes()
    assert raw.count(b"\n") == 20 * per and raw.endswith(b"\n")
    for sid in ids:
        report = verify(sid)
        assert report["ok"] and report["status"] == "ok" and report["events"] == 52, report


# -- redaction ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("raw, expect", [
    (["curl", "--token", "s3cr3t"], ["curl", "--token", "[REDACTED]"]),
    (["tool", "--token=s3cr3t", "--api-key=abc"], ["tool", "--token=[REDACTED]", "--api-key=[REDACTED]"]),
    (["curl", "-H", "Authorization: Bearer abcdef123"], ["curl", "-H", "Authorization: Bearer [REDACTED]"]),
    (["curl", "https://u:pw@example.com/x?key=AAA&page=2"], ["curl", "https://u:[REDACTED]@example.com/x?key=[REDACTED]&page=2"]),
    (["env", "OPENAI_API_KEY=sk-abcdefghijklmnopqrstuvwx", "run"], ["env", "OPENAI_API_KEY=[REDACTED]", "run"]),
    (["echo", "sk-ant-api03-abcdefghijklmnopqrstuvwxyz"], ["echo", "sk-[REDACTED]"]),
    (["git", "push", "https://ghp_abcdefghijklmnopqrstuvwxyz0123@github.com/o/r"],
     ["git", "push", "https://[REDACTED]@github.com/o/r"]),
    (["echo", "token is ghp_abcdefghijklmnopqrstuvwxyz0123!"], ["echo", "token is ghp_[REDACTED]!"]),
    (["aws", "AKIAABCDEFGHIJKLMNOP"], ["aws", "AKIA[REDACTED]"]),
    (["sh", "-c", "curl -H 'Authorization: token abc' --password hunter2 x"],
     ["sh", "-c", "curl -H 'Authorization: token [REDACTED]' --password [REDACTED] x"]),
])
def test_redaction(raw: list[str], expect: list[str]) -> None:
    assert redact.argv(raw) == expect


@pytest.mark.parametrize("keep", [
    ["sha256sum", "9f" * 32], ["git", "checkout", "a" * 40], ["ls", "--author", "me"], ["sort", "--key=2"],
    ["python", "task-runner.py", "--no-auth", "http://example.com/?page=2"], ["scikit", "sk-learn"],
    ["ssh-keygen", "-t", "ed25519"], ["echo", "policy_digest=" + "ab" * 32],
])
def test_redaction_keeps_ordinary_values(keep: list[str]) -> None:
    assert redact.argv(keep) == keep


def test_redaction_in_events_and_metadata(root: Path) -> None:
    s = _begin(command=["agent", "--api-key", "hunter2hunter2"])
    s.event("http", url="https://api.example.com/v1?access_token=zzz&q=1", headers={"Authorization": "Bearer X",
                                                                                    "Accept": "json"},
            token="abc", token_count=12, secret_ref="keyring://nono/openai", policy_digest="ef" * 32)
    s.finish(0, network_events=[{"action": "allow", "host": "h", "port": 1, "url": "http://h/?key=K1234"}])
    text = _events_path(root, s.session_id).read_text() + (root / s.session_id / "session.json").read_text()
    for secret in ("hunter2hunter2", "zzz", "Bearer X", '"abc"', "K1234"):
        assert secret not in text
    assert "ef" * 32 in text and '"token_count":12' in text and "keyring://nono/openai" in text
    assert verify(s.session_id)["ok"]


# -- signing ------------------------------------------------------------------------------------------
def test_signed_session_verifies_and_wrong_key_fails(root: Path, tmp_path: Path) -> None:
    from nono.audit import signing

    keyfile = tmp_path / "key"
    key = signing.generate_key(f"file://{keyfile}")
    assert keyfile.stat().st_mode & 0o777 == 0o600
    s = _begin(sign_key=f"file://{keyfile}")
    s.event("x", a=1)
    result = s.finish(0)
    assert result["signed"] and not result["warnings"]
    assert (root / s.session_id / store.BUNDLE_FILE).exists()
    bundle = json.loads((root / s.session_id / store.BUNDLE_FILE).read_text())
    env = bundle["dsseEnvelope"]
    assert env["payloadType"] == "application/vnd.in-toto+json"
    stmt = json.loads(signing.verify_envelope(env, signing.load_public_key(key.public_key_b64)))
    assert stmt["_type"] == "https://in-toto.io/Statement/v1"
    assert stmt["subject"][0]["digest"]["sha256"] == result["digest"]
    report = verify(s.session_id, public_key=(tmp_path / "key.pub").read_text())
    assert report["ok"] and report["signature"].startswith("valid"), report
    other = signing.generate_key(f"file://{tmp_path / 'other'}")
    report = verify(s.session_id, public_key=other.public_key_b64)
    assert not report["ok"] and "signature" in report["problems"][0]
    r = _cli("audit", "verify", s.session_id, "--public-key-file", str(tmp_path / "other.pub"))
    assert r.returncode == 1 and "does not verify" in r.stdout
    # Tampering with the bundle's payload is caught even with the embedded key.
    env["payload"] = env["payload"][:-4] + ("AAAA" if not env["payload"].endswith("AAAA") else "BBBB")
    (root / s.session_id / store.BUNDLE_FILE).write_text(json.dumps(bundle))
    assert not verify(s.session_id)["ok"]


def test_signing_key_checks(root: Path, tmp_path: Path) -> None:
    from nono.audit import signing

    keyfile = tmp_path / "k"
    signing.generate_key(f"file://{keyfile}")
    os.chmod(keyfile, 0o644)
    with pytest.raises(signing.SigningError, match="chmod 600|accessible to group or others"):
        _begin(sign_key=f"file://{keyfile}")
    with pytest.raises(signing.SigningError, match="absolute path"):
        signing.load_key("file://relative/key")
    with pytest.raises(signing.SigningError):
        signing.load_key(f"file://{tmp_path / 'missing'}")
    bad = tmp_path / "bad"
    bad.write_text("not a key")
    os.chmod(bad, 0o600)
    with pytest.raises(signing.SigningError, match="not a readable private key"):
        signing.load_key(f"file://{bad}")
    assert not os.listdir(root) if root.exists() else True  # nothing recorded when the key is unusable


def test_headless_keyring_gives_a_clear_message(root: Path) -> None:
    import keyring
    from keyring.backends import fail

    from nono.audit import signing

    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())  # what a headless machine has
    try:
        with pytest.raises(signing.SigningError) as exc:
            _begin(sign_key="default")
    finally:
        keyring.set_keyring(previous)
    assert "no system keyring" in exc.value.message and "file://" in exc.value.hint
    assert not root.exists() or store.list_session_ids() == []


def test_pem_key_file_is_accepted(root: Path, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from nono.audit import signing

    key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "k.pem"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    os.chmod(path, 0o600)
    assert signing.load_key(f"file://{path}").key_id


# -- list / show / cleanup -------------------------------------------------------------------------
def _cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = os.environ.copy()
    env["PYTHONPATH"] = str(SRC)
    return subprocess.run([sys.executable, "-m", "nono.cli.audit", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_list_filters_and_show(root: Path) -> None:
    a = _begin(command=["python", "a.py"])
    a.finish(0)
    b = _begin(command=["/usr/bin/node", "b.js"], cwd="/srv/app")
    b.finish(1)
    rows = json.loads(_cli("audit", "list", "--json").stdout)
    assert [r["session_id"] for r in rows] == [a.session_id, b.session_id]
    assert [r["session_id"] for r in json.loads(_cli("audit", "list", "--command", "node", "--json").stdout)] \
        == [b.session_id]
    assert [r["session_id"] for r in json.loads(_cli("audit", "list", "--recent", "1", "--json").stdout)] \
        == [b.session_id]
    assert [r["session_id"] for r in json.loads(_cli("audit", "list", "--path", "/srv", "--json").stdout)] \
        == [b.session_id]
    assert len(json.loads(_cli("audit", "list", "--today", "--json").stdout)) == 2
    assert json.loads(_cli("audit", "list", "--since", "2999-01-01", "--json").stdout) == []
    assert len(json.loads(_cli("audit", "list", "--until", "2999-01-01", "--json").stdout)) == 2
    assert _cli("audit", "list", "--since", "yesterday").returncode == 2
    text = _cli("audit", "list").stdout
    assert "nono 2 command(s)" in text and "python a.py" in text
    shown = _cli("audit", "show", "last").stdout
    assert b.session_id in shown and "/usr/bin/node b.js" in shown and "exit code 1" in shown
    assert "9f" * 32 in shown and "readwrite" in shown
    doc = json.loads(_cli("audit", "show", a.session_id[:-2], "--json").stdout)
    assert doc["session_id"] == a.session_id and doc["policy_digest"] == "9f" * 32
    assert doc["protections"]["landlock_abi"] == 7
    assert _cli("audit", "show", "nope").returncode == 1
    assert _cli("audit", "bogus").returncode == 2


def test_cleanup(root: Path) -> None:
    ids = [_finished(root, 1) for _ in range(5)]
    proc, live = start_dummy()
    try:
        r = _cli("audit", "cleanup", "--keep", "2", "--dry-run")
        assert r.returncode == 0 and r.stdout.count("would remove") == 4
        assert len(store.list_session_ids()) == 6
        r = _cli("audit", "cleanup", "--keep", "2", "--json")
        assert json.loads(r.stdout)["removed"] == ids[:3]
        assert store.list_session_ids() == ids[3:] + [live]
        r = _cli("audit", "cleanup", "--older-than", "0")
        assert store.list_session_ids() == [live]  # the running session is never removed
        entries, problems = ledger.read()
        assert len(entries) == 5 and not problems  # the ledger keeps its entries
    finally:
        proc.terminate()
        proc.wait(timeout=10)
