"""Rollback: snapshots, change sets, restore round-trips, exclusions, verify, retention."""

from __future__ import annotations

import hashlib
import os
import stat
import time
from pathlib import Path

import pytest

from nono.rollback import manifest as M
from nono.rollback import restore as R
from nono.rollback import retention, scan
from nono.rollback import session as S
from nono.rollback.exclude import Filter, GitIgnore
from nono.rollback.store import SessionStore, new_session_id, resolve_session
from nono.rollback.verify import verify


def settle() -> None:
    """Let fresh files age past the racy-timestamp window so hashes may be reused."""
    time.sleep(scan.RACY_NS / 1e9 + 0.02)


def state(root: Path) -> dict[bytes, tuple[object, ...]]:
    """Everything a restore must reproduce: type, permission bits, content or target, per path."""
    out: dict[bytes, tuple[object, ...]] = {}
    rb = os.fsencode(str(root))
    for dirpath, dirs, files in os.walk(rb):
        for name in dirs + files:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            rel = p[len(rb):]
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("l", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("d", stat.S_IMODE(st.st_mode))
            else:
                out[rel] = ("f", stat.S_IMODE(st.st_mode), Path(os.fsdecode(p)).read_bytes())
    return out


@pytest.fixture
def store_root(tmp_path: Path) -> str:
    return str(tmp_path / "store")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    t = tmp_path / "work"
    (t / "src" / "pkg").mkdir(parents=True)
    (t / "docs").mkdir()
    (t / "src" / "main.py").write_text("print('hello')\n")
    (t / "src" / "pkg" / "util.py").write_text("X = 1\n")
    (t / "docs" / "readme.md").write_text("# title\n\nbody\n")
    (t / "empty").write_bytes(b"")
    (t / "blob.bin").write_bytes(bytes(range(256)) * 40)
    (t / "script.sh").write_text("#!/bin/sh\necho hi\n")
    (t / "script.sh").chmod(0o755)
    (t / "link").symlink_to("src/main.py")
    (t / "dangling").symlink_to("/nonexistent/target")
    return t


def record(tree: Path, store_root: str, **kw: object) -> S.RollbackSession:
    lines: list[str] = []
    s = S.begin([str(tree)], command=["agent"], out=lines.append, root=store_root, **kw)  # type: ignore[arg-type]
    s.lines = lines  # type: ignore[attr-defined]
    return s


# -- round trips ----------------------------------------------------------------------
def test_round_trip_create_modify_delete_rename_chmod_symlink(tree: Path, store_root: str) -> None:
    before = state(tree)
    s = record(tree, store_root)
    assert s.enabled and "baseline of" in s.lines[0]  # type: ignore[attr-defined]
    (tree / "src" / "main.py").write_text("print('changed')\n")          # modify
    (tree / "docs" / "readme.md").unlink()                               # delete
    (tree / "new.txt").write_text("created\n")                            # create
    (tree / "src" / "pkg" / "util.py").rename(tree / "src" / "util2.py")  # rename
    (tree / "script.sh").chmod(0o600)                                     # chmod
    (tree / "link").unlink()
    (tree / "link").symlink_to("elsewhere")                               # retarget a symlink
    (tree / "blob.bin").write_bytes(b"\x00\xff" * 10)                     # binary
    (tree / "empty").write_bytes(b"now full")                             # empty -> content
    (tree / "newdir" / "deep").mkdir(parents=True)
    (tree / "newdir" / "deep" / "x").write_text("x")
    summary = s.finish(0)
    assert set(summary.created) >= {str(tree / "new.txt"), str(tree / "src" / "util2.py"), str(tree / "newdir") + "/",
                                    str(tree / "newdir" / "deep" / "x")}
    assert set(summary.deleted) == {str(tree / "docs" / "readme.md"), str(tree / "src" / "pkg" / "util.py")}
    assert set(summary.modified) == {str(tree / p) for p in ("src/main.py", "script.sh", "link", "blob.bin", "empty")}
    text = summary.text()
    assert "created" in text and "~ script.sh  (mode 755->600)" in text
    diff = summary.unified()
    assert "-print('hello')" in diff and "+print('changed')" in diff
    assert "Binary file blob.bin" in diff

    result = R.restore(s.session_id, 0, root=store_root)
    assert result.ok, result.errors
    assert state(tree) == before
    again = R.restore(s.session_id, 0, root=store_root)  # idempotent
    assert again.ok and not again.applied


def test_restore_keeps_mtime_and_recreates_removed_parent(tree: Path, store_root: str) -> None:
    mtime = os.stat(tree / "src" / "pkg" / "util.py").st_mtime_ns
    s = record(tree, store_root)
    import shutil

    shutil.rmtree(tree / "src")
    s.finish(0)
    assert R.restore(s.session_id, 0, root=store_root).ok
    assert (tree / "src" / "pkg" / "util.py").read_text() == "X = 1\n"
    assert os.stat(tree / "src" / "pkg" / "util.py").st_mtime_ns == mtime


def test_odd_names_unicode_newline_spaces_and_non_utf8(tmp_path: Path, store_root: str) -> None:
    t = tmp_path / "odd"
    t.mkdir()
    names = ["with space.txt", "new\nline.txt", "ünïcödé ✓.md", "-dash", "tab\there"]
    for n in names:
        (t / n).write_text(n)
    raw = os.path.join(os.fsencode(str(t)), b"bad-\xff\xfe.bin")
    with open(raw, "wb") as f:
        f.write(b"latin1")
    before = state(t)
    s = record(t, store_root)
    for n in names:
        (t / n).write_text("clobbered")
    os.unlink(raw)
    with open(os.path.join(os.fsencode(str(t)), b"created-\xe9"), "wb") as f:
        f.write(b"x")
    summary = s.finish(0)
    assert len(summary.modified) == len(names) and len(summary.deleted) == 1 and len(summary.created) == 1
    assert "\\n" in summary.text() or "new\\nline" in summary.text()  # printed on one line
    assert R.restore(s.session_id, 0, root=store_root).ok
    assert state(t) == before
    v = verify(SessionStore(s.session_id, store_root))
    assert v["ok"], v["problems"]


def test_type_changes_file_to_dir_and_dir_to_symlink(tree: Path, store_root: str, tmp_path: Path) -> None:
    before = state(tree)
    s = record(tree, store_root)
    (tree / "empty").unlink()
    (tree / "empty").mkdir()
    (tree / "empty" / "inner").write_text("i")
    import shutil

    shutil.rmtree(tree / "docs")
    (tree / "docs").symlink_to(tmp_path)
    s.finish(0)
    assert R.restore(s.session_id, 0, root=store_root).ok
    assert state(tree) == before


# -- safety ---------------------------------------------------------------------------
def test_planted_symlink_cannot_redirect_a_restore(tree: Path, store_root: str, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    s = record(tree, store_root)
    import shutil

    shutil.rmtree(tree / "src" / "pkg")
    (tree / "src" / "pkg").symlink_to(outside)  # a later write to src/pkg/util.py must not land here
    s.finish(0)
    assert R.restore(s.session_id, 0, root=store_root).ok
    assert list(outside.iterdir()) == []
    assert (tree / "src" / "pkg").is_dir() and not (tree / "src" / "pkg").is_symlink()
    assert (tree / "src" / "pkg" / "util.py").read_text() == "X = 1\n"


def test_restore_never_deletes_what_the_session_did_not_create(tree: Path, store_root: str) -> None:
    s = record(tree, store_root)
    (tree / "agent.txt").write_text("by the agent")
    (tree / "agent2.txt").write_text("by the agent")
    s.finish(0)
    (tree / "after.txt").write_text("created after the session")  # never recorded
    (tree / "agent2.txt").write_text("the user edited this one")   # changed since it was recorded
    result = R.restore(s.session_id, 0, root=store_root)
    assert not (tree / "agent.txt").exists()
    assert (tree / "after.txt").read_text() == "created after the session"
    assert (tree / "agent2.txt").read_text() == "the user edited this one"
    assert any("agent2.txt" in k for k in result.kept)


def test_modified_after_session_is_saved_before_overwrite(tree: Path, store_root: str) -> None:
    s = record(tree, store_root)
    (tree / "src" / "main.py").write_text("agent\n")
    s.finish(0)
    (tree / "src" / "main.py").write_text("user edit after the session\n")
    result = R.restore(s.session_id, 0, root=store_root)
    assert (tree / "src" / "main.py").read_text() == "print('hello')\n"
    digest = hashlib.sha256(b"user edit after the session\n").hexdigest()
    assert any(digest in k for k in result.kept)
    assert SessionStore(s.session_id, store_root).read_object(digest) == b"user edit after the session\n"


def test_dry_run_lists_actions_and_changes_nothing(tree: Path, store_root: str) -> None:
    s = record(tree, store_root)
    (tree / "new.txt").write_text("n")
    (tree / "src" / "main.py").write_text("m")
    s.finish(0)
    snap = state(tree)
    result = R.restore(s.session_id, 0, dry_run=True, root=store_root)
    assert {a.op for a in result.actions} == {"unlink", "write"}
    assert "dry run" in result.text() and "new.txt" in result.text()
    assert state(tree) == snap


def test_corrupt_object_is_named_by_verify_and_not_restored(tree: Path, store_root: str) -> None:
    s = record(tree, store_root)
    (tree / "src" / "main.py").write_text("changed\n")
    s.finish(0)
    store = SessionStore(s.session_id, store_root)
    assert verify(store)["ok"]
    digest = hashlib.sha256(b"print('hello')\n").hexdigest()
    path = store.object_path(digest)
    os.chmod(path, 0o600)
    Path(path).write_bytes(b"tampered")
    report = verify(store)
    assert not report["ok"] and report["corrupt"] == [digest]
    assert any(digest in p for p in report["problems"]) and any("main.py" in p for p in report["problems"])
    result = R.restore(s.session_id, 0, root=store_root)
    assert not result.ok and "corrupt" in result.errors[0]
    assert (tree / "src" / "main.py").read_text() == "changed\n"  # left as is


def test_verify_detects_a_tampered_manifest(tree: Path, store_root: str) -> None:
    s = record(tree, store_root)
    s.finish(0)
    store = SessionStore(s.session_id, store_root)
    doc = store.read_doc(store.snapshot_path(1))
    doc["entries"][str(tree / "script.sh")][M.MODE] = 0o777
    store.write_doc(store.snapshot_path(1), doc)
    report = verify(store)
    assert not report["ok"] and "Merkle root mismatch" in " ".join(report["problems"])


# -- the session record -----------------------------------------------------------------
def test_session_json_layout_and_ids(tree: Path, store_root: str) -> None:
    s = record(tree, store_root)
    (tree / "x").write_text("x")
    s.finish(3)
    store = SessionStore(s.session_id, store_root)
    meta = store.read_meta()
    assert meta["exit_code"] == 3 and meta["ended"] and meta["snapshot_count"] == 2
    assert meta["command"] == ["agent"] and meta["tracked_paths"] == [str(tree)]
    assert len(meta["merkle_roots"]) == 2 and meta["changes"] == {"created": 1, "modified": 0, "deleted": 0}
    for sub in ("snapshots/000.json", "snapshots/001.json", "changes/001.json"):
        assert os.path.isfile(os.path.join(store.dir, sub))
    objs = store.iter_objects()
    assert objs and all(len(d) == 64 and p.endswith("/" + d[:2] + "/" + d[2:]) for d, p in objs)
    assert oct(os.stat(store.dir).st_mode & 0o777) == "0o700"
    ids = [new_session_id(t) for t in (1_700_000_000, 1_700_000_001, 1_800_000_000)]
    assert ids == sorted(ids) and resolve_session(s.session_id[:10], store_root) == s.session_id
    assert new_session_id(1_700_000_000.001) < new_session_id(1_700_000_000.5)  # same second, still in order


def test_objects_are_deduplicated(tmp_path: Path, store_root: str) -> None:
    t = tmp_path / "dup"
    t.mkdir()
    for i in range(5):
        (t / f"copy{i}").write_text("same content\n")
    s = record(t, store_root)
    s.finish(0)
    assert len(SessionStore(s.session_id, store_root).iter_objects()) == 1


def test_incremental_snapshot_rehashes_only_changed_files(tmp_path: Path, store_root: str) -> None:
    t = tmp_path / "many"
    t.mkdir()
    for i in range(200):
        (t / f"f{i:03d}.txt").write_text(f"file {i}\n")
    settle()
    s = record(t, store_root)
    assert s.baseline is not None and s.baseline.stats["hashed"] == 200
    settle()
    for i in (3, 50, 199):
        (t / f"f{i:03d}.txt").write_text("changed\n")
    (t / "f010.txt").chmod(0o600)  # stat changes, content does not: re-hashed, no new object
    settle()  # (a file changed just before a snapshot is re-hashed once more by the next one)
    m = s.snapshot()
    assert m.stats["hashed"] == 4 and m.stats["reused"] == 196 and m.stats["new_objects"] == 1
    settle()
    m2 = s.snapshot()
    assert m2.stats["hashed"] == 0 and m2.stats["new_objects"] == 0 and m2.merkle == m.merkle


def test_racy_files_are_rehashed(tmp_path: Path, store_root: str) -> None:
    t = tmp_path / "racy"
    t.mkdir()
    (t / "a").write_text("a")
    s = record(t, store_root)  # no settle: the file is younger than the racy window
    m = s.snapshot()
    assert m.stats["hashed"] == 1


# -- exclusions and budgets ---------------------------------------------------------------
def test_excluded_dirs_are_untouched(tree: Path, store_root: str) -> None:
    (tree / "node_modules" / "lib").mkdir(parents=True)
    (tree / "node_modules" / "lib" / "index.js").write_text("js")
    (tree / ".git" / "objects" / "ab").mkdir(parents=True)
    (tree / ".git" / "objects" / "ab" / "cdef").write_text("obj")
    (tree / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (tree / ".gitignore").write_text("*.log\nbuild/\n!keep.log\n")
    (tree / "debug.log").write_text("log")
    (tree / "keep.log").write_text("kept")
    (tree / "build").mkdir()
    (tree / "build" / "out.o").write_text("o")
    (tree / "secret.tmp").write_text("t")
    s = record(tree, store_root, exclude=["*.tmp"])
    assert s.baseline is not None
    recorded = set(s.baseline.entries)
    assert str(tree / ".git" / "HEAD") in recorded and str(tree / "keep.log") in recorded
    for p in ("node_modules", ".git/objects", "debug.log", "build", "secret.tmp"):
        assert not any(r == str(tree / p) or r.startswith(str(tree / p) + "/") for r in recorded), p
    (tree / "node_modules" / "lib" / "index.js").write_text("changed by agent")
    (tree / "node_modules" / "new.js").write_text("new")
    (tree / "debug.log").write_text("more log")
    (tree / ".git" / "HEAD").write_text("ref: refs/heads/agent\n")
    summary = s.finish(0)
    assert summary.modified == [str(tree / ".git" / "HEAD")] and not summary.created
    assert R.restore(s.session_id, 0, root=store_root).ok
    assert (tree / ".git" / "HEAD").read_text() == "ref: refs/heads/main\n"
    assert (tree / "node_modules" / "lib" / "index.js").read_text() == "changed by agent"
    assert (tree / "node_modules" / "new.js").exists() and (tree / "debug.log").read_text() == "more log"


def test_include_and_all_override_the_defaults(tree: Path, store_root: str) -> None:
    (tree / "node_modules").mkdir()
    (tree / "node_modules" / "a.js").write_text("a")
    (tree / ".venv").mkdir()
    (tree / ".venv" / "x").write_text("x")
    s = record(tree, store_root, include=["node_modules"])
    assert s.baseline is not None
    assert str(tree / "node_modules" / "a.js") in s.baseline.entries
    assert str(tree / ".venv" / "x") not in s.baseline.entries
    s2 = record(tree, store_root, all_files=True)
    assert s2.baseline is not None and str(tree / ".venv" / "x") in s2.baseline.entries


def test_store_inside_a_tracked_path_is_never_recorded(tmp_path: Path) -> None:
    store = tmp_path / "home" / ".local" / "state" / "nono" / "rollbacks"
    (tmp_path / "home" / "f").parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / "home" / "f").write_text("f")
    s = S.begin([str(tmp_path / "home")], command=["x"], out=lambda _m: None, root=str(store))
    s.finish(0)
    s2 = S.begin([str(tmp_path / "home")], command=["x"], out=lambda _m: None, root=str(store))
    assert s2.baseline is not None and not any("rollbacks" in p for p in s2.baseline.entries)


def test_gitignore_subset() -> None:
    gi = GitIgnore("/r", ["# comment", "", "*.pyc", "/top.txt", "logs/", "a/**/b", "**/deep", "!important.pyc",
                          "x?z", "[ab]c", "doc/*.md", "\\#hash"])
    v = gi.verdict
    assert v("/r/m.pyc", False) and v("/r/sub/m.pyc", False) and v("/r/important.pyc", False) is False
    assert v("/r/top.txt", False) and not v("/r/sub/top.txt", False)
    assert v("/r/logs", True) and not v("/r/logs", False)
    assert v("/r/a/b", True) and v("/r/a/x/y/b", False) and v("/r/q/deep", True)
    assert v("/r/xyz", False) and v("/r/ac", False) and not v("/r/cc", False)
    assert v("/r/doc/a.md", False) and not v("/r/doc/sub/a.md", False) and v("/r/#hash", False)


def test_exclude_pattern_forms() -> None:
    f = Filter(exclude=["*.tmp", "cache", "/data/big"])
    assert f.excluded("/w/x.tmp", "x.tmp", False, "w", ())
    assert f.excluded("/w/cache", "cache", True, "w", ())
    assert f.excluded("/w/data/big/file", "file", False, "big", ())
    assert not f.excluded("/w/data/small", "small", False, "data", ())
    assert f.excluded("/w/.git/objects", "objects", True, ".git", ())
    assert not f.excluded("/w/.git/refs", "refs", True, ".git", ())


def test_budget_exceeded_disables_rollback_loudly(tmp_path: Path, store_root: str) -> None:
    t = tmp_path / "big"
    t.mkdir()
    for i in range(20):
        (t / f"f{i}").write_text("x")
    s = record(t, store_root, max_files=10)
    assert not s.enabled
    msg = "\n".join(s.lines)  # type: ignore[attr-defined]
    assert "WARNING" in msg and "rollback is OFF" in msg and "--rollback-exclude" in msg
    assert not os.listdir(store_root) or all(n.startswith(".") for n in os.listdir(store_root))
    summary = s.finish(0)
    assert not summary and "off" in summary.text()
    with pytest.raises(scan.BudgetExceeded):
        S.begin([str(t)], command=["x"], out=lambda _m: None, root=store_root, max_bytes=5, strict=True)


# -- Merkle -----------------------------------------------------------------------------
def test_merkle_domain_separation_and_sensitivity() -> None:
    h = "ab" * 32
    e = {"/a": ["f", 0o644, 1, 0, 0, 0, h, 0, 0], "/b": ["l", 0o777, 0, 0, 0, 0, "t", 0, 0]}
    root = M.merkle_root(e)
    leaf_a, leaf_b = M.leaf("/a", e["/a"]), M.leaf("/b", e["/b"])
    assert root == hashlib.sha256(b"\x01" + leaf_a + leaf_b).hexdigest()
    assert leaf_a == hashlib.sha256(b"\x00/a\x00f" + (0o644).to_bytes(4, "big") + bytes.fromhex(h)).digest()
    assert M.merkle_root({}) == hashlib.sha256(b"").hexdigest()
    changed = {"/a": ["f", 0o600, 1, 0, 0, 0, h, 0, 0], "/b": e["/b"]}
    assert M.merkle_root(changed) != root
    cache: dict[str, tuple[object, ...]] = {}
    M.merkle_root(e, None, cache)
    assert M.merkle_root(changed, cache) == M.merkle_root(changed)


# -- retention --------------------------------------------------------------------------
def test_retention_prunes_oldest_sessions(tmp_path: Path, store_root: str) -> None:
    t = tmp_path / "t"
    t.mkdir()
    (t / "f").write_text("f")
    ids = []
    for _ in range(12):
        s = record(t, store_root)
        s.finish(0)
        ids.append(s.session_id)
    kept = sorted(n for n in os.listdir(store_root) if not n.startswith("."))
    assert len(kept) == retention.MAX_SESSIONS and kept == sorted(ids)[-10:]
    removed = retention.prune(store_root, keep=3, dry_run=True)
    assert len(removed) == 7 and len(os.listdir(store_root)) == 10
    retention.prune(store_root, keep=100, max_bytes=1)
    assert os.listdir(store_root) == []


def test_a_running_session_is_never_pruned(tmp_path: Path, store_root: str) -> None:
    t = tmp_path / "t"
    t.mkdir()
    (t / "f").write_text("f")
    running = record(t, store_root)  # not finished: our pid is alive
    done = record(t, store_root)
    done.finish(0)
    retention.prune(store_root, keep=0)
    assert os.listdir(store_root) == [running.session_id]


# -- light import ---------------------------------------------------------------------------
def test_importing_the_session_module_is_light() -> None:
    import subprocess
    import sys

    code = ("import sys; import nono.rollback.session; "
            "print(sorted(m for m in ('hashlib', 'json', 're', 'shutil', 'fcntl') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(Path(M.__file__).parents[2])!r}); {code}"],
                       capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "[]"


def test_incremental_merkle_equals_a_full_recompute() -> None:
    import random

    rng = random.Random(5)
    for n in (1, 2, 3, 7, 8, 33, 100):
        entries = {f"/p/{i:04d}": ["f", 0o644, 1, 0, 0, 0, f"{i:064x}", 0, 0] for i in range(n)}
        prev = M.Manifest(0, ["/p"], {k: list(v) for k, v in entries.items()})
        for round_no in range(6):
            for k in rng.sample(sorted(entries), rng.randint(1, min(n, 5))):
                entries[k] = ["f", rng.choice([0o644, 0o600]), 1, 0, 0, 0, f"{rng.getrandbits(256):064x}", 0, 0]
            if round_no == 3:  # a changed set of paths falls back to a full build
                entries[f"/p/new{n}"] = ["d", 0o755, 0, 0, 0, 0, "", 0, 0]
            cur = M.Manifest(round_no + 1, ["/p"], {k: list(v) for k, v in entries.items()}, prev=prev)
            assert cur.merkle == M.merkle_root(cur.entries), (n, round_no)
            prev = cur


def test_a_tracked_root_that_was_removed_is_recreated(tmp_path: Path, store_root: str) -> None:
    import shutil

    t = tmp_path / "gone"
    (t / "sub").mkdir(parents=True)
    (t / "sub" / "f").write_text("f")
    (t / "g").write_text("g")
    before = state(t)
    s = record(t, store_root)
    shutil.rmtree(t)
    s.finish(0)
    assert R.restore(s.session_id, 0, root=store_root).ok
    assert state(t) == before


def test_single_file_grant(tmp_path: Path, store_root: str) -> None:
    f = tmp_path / "config.toml"
    f.write_text("a = 1\n")
    (tmp_path / "neighbour").write_text("untracked")
    s = record(f, store_root)
    f.write_text("a = 2\n")
    (tmp_path / "neighbour").write_text("changed")
    summary = s.finish(0)
    assert summary.modified == [str(f)]
    assert R.restore(s.session_id, 0, root=store_root).ok
    assert f.read_text() == "a = 1\n" and (tmp_path / "neighbour").read_text() == "changed"


def test_nested_gitignore_applies_below_its_directory(tree: Path, store_root: str) -> None:
    (tree / "src" / ".gitignore").write_text("*.gen\n")
    (tree / "src" / "x.gen").write_text("generated")
    (tree / "y.gen").write_text("not ignored here")
    s = record(tree, store_root)
    assert s.baseline is not None
    assert str(tree / "y.gen") in s.baseline.entries and str(tree / "src" / "x.gen") not in s.baseline.entries


def test_directory_modes_do_not_block_the_restore(tree: Path, store_root: str) -> None:
    (tree / "ro").mkdir()
    (tree / "ro" / "f").write_text("f")
    (tree / "ro").chmod(0o555)
    before = state(tree)
    s = record(tree, store_root)
    (tree / "ro").chmod(0o755)
    (tree / "ro" / "f").write_text("changed")
    (tree / "ro" / "new").write_text("new")
    (tree / "docs").chmod(0o500)  # the agent locked a directory whose file it changed before
    s.finish(0)
    assert R.restore(s.session_id, 0, root=store_root).ok
    assert state(tree) == before
    (tree / "ro").chmod(0o755)  # let pytest clean up
