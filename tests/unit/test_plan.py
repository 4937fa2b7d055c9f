"""The planner against a real (temporary) filesystem: no kernel objects needed."""

from __future__ import annotations

import os

import pytest

import nono
from nono.errors import PolicyError
from nono.sandbox.plan import build_plan, which


@pytest.fixture
def home(tmp_path, monkeypatch):
    h = tmp_path / "home"
    for d in (".ssh", ".config/gcloud", ".config/app", "proj"):
        (h / d).mkdir(parents=True)
    (h / ".ssh" / "id_rsa").write_text("k")
    (h / ".bashrc").write_text("rc")
    (h / "notes.txt").write_text("n")
    os.symlink("/etc", h / "etclink")
    monkeypatch.setenv("HOME", str(h))
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    return h


def test_deny_inside_allow_is_decomposed(home):
    plan = build_plan(nono.Policy(defaults=True).allow(str(home)))
    granted = set(plan.rules)
    assert str(home) not in granted
    assert str(home / "notes.txt") in granted and str(home / "proj") in granted
    assert str(home / ".config" / "app") in granted
    assert str(home / ".config") not in granted and str(home / ".config" / "gcloud") not in granted
    assert not any(p.startswith(str(home / ".ssh")) for p in granted)
    assert str(home / ".bashrc") not in granted
    assert str(home / "etclink") not in granted  # symlinks are not granted through a decomposed dir
    assert any(d == str(home) for d, _ in plan.decomposed)


def test_grant_inside_deny_needs_bypass(home):
    with pytest.raises(PolicyError) as exc:
        build_plan(nono.Policy().allow(str(home / ".ssh")))
    assert "--bypass-protection" in exc.value.diagnostics()
    plan = build_plan(nono.Policy().allow(str(home / ".ssh")).bypass_protection(str(home / ".ssh")))
    assert str(home / ".ssh") in plan.rules


def test_bypass_without_grant_is_an_error(home):
    with pytest.raises(PolicyError, match="no matching grant"):
        build_plan(nono.Policy().bypass_protection(str(home / ".ssh")))


def test_protected_state_root_is_refused(home):
    state = home / ".local" / "state" / "nono"
    state.mkdir(parents=True)
    with pytest.raises(PolicyError, match="protected nono state root"):
        build_plan(nono.Policy().allow(str(state)))


def test_missing_paths_are_skipped_not_fatal(home):
    plan = build_plan(nono.Policy().allow_read(str(home / "nope")))
    assert (str(home / "nope"), "user", "does not exist") in plan.skipped


def test_file_and_dir_kinds_are_checked(home):
    from nono.policy.model import READ, Grant

    with pytest.raises(PolicyError, match="directory grant"):
        build_plan(nono.Policy().with_grant(Grant(str(home / "notes.txt"), READ, "dir")))
    with pytest.raises(PolicyError, match="single-file grant"):
        build_plan(nono.Policy().with_grant(Grant(str(home / "proj"), READ, "file")))


def test_symlinked_grants_are_canonical(home):
    plan = build_plan(nono.Policy(defaults=False).allow_read(str(home / "etclink")))
    assert "/etc" in plan.rules


def test_executable_and_venv_runtime_are_granted(home, tmp_path):
    import sys

    plan = build_plan(nono.Policy(defaults=False), argv0=sys.executable)
    assert os.path.realpath(sys.executable) in plan.rules
    if sys.prefix != sys.base_prefix:  # running from a venv: venv and base prefix are granted
        assert os.path.realpath(sys.prefix) in plan.rules or sys.prefix in plan.rules


def test_socket_creation_follows_make_sock(home):
    plan = build_plan(nono.Policy().allow(str(home / "proj")).allow_read(str(home / ".config" / "app")))
    assert plan.may_make_socket(str(home / "proj"), "s.sock")
    assert not plan.may_make_socket(str(home / ".config" / "app"), "s.sock")  # read-only grant
    assert not plan.may_make_socket(str(home), "s.sock")  # not granted


def test_explicit_unix_sockets_are_pinned(home):
    import socket

    path = home / "proj" / "srv.sock"
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(str(path))
    try:
        plan = build_plan(nono.Policy().allow_unix_socket(str(path)))
        st = os.stat(path)
        assert [u[:3] for u in plan.unix_sockets] == [(str(path), st.st_dev, st.st_ino)]
        assert plan.unix_sockets[0][3] > 0  # birth time pinned too
        with pytest.raises(PolicyError, match="not a unix socket"):
            build_plan(nono.Policy().allow_unix_socket(str(home / "notes.txt")))
    finally:
        srv.close()


def test_plan_roundtrip(home):
    plan = build_plan(nono.Policy().allow(str(home)).block_network().allow_connect_port(443))
    from nono.sandbox.plan import Plan

    back = Plan.from_dict(plan.to_dict())
    assert set(back.rules) == set(plan.rules) and back.denies == plan.denies
    assert back.connect_ports == (443,) and back.restrict_network


def test_which():
    assert which("sh") is not None
    assert which("definitely-not-a-program-xyz") is None
