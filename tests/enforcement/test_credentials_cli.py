"""`nono run --credential`: the program sees a phantom and a base URL, never the real secret (root and nobody)."""

from __future__ import annotations

import json

SECRET = "sk-test-REAL-SECRET-0123456789abcdef"

_DUMP = "import json, os; print(json.dumps(dict(os.environ)))"


def test_phantom_replaces_the_real_secret(world):
    env = dict(world.env(), MY_OPENAI=SECRET)
    r = world.nono("run", "-s", "--credential", "openai=env://MY_OPENAI", "--", world.user.python, "-c", _DUMP, env=env)
    assert r.returncode == 0, r.stderr
    assert SECRET not in r.stdout and SECRET not in r.stderr
    child = json.loads(r.stdout)
    assert "MY_OPENAI" not in child  # the variable the secret came from is removed
    phantom = child["OPENAI_API_KEY"]
    assert len(phantom) >= 32 and phantom != SECRET
    assert child["OPENAI_BASE_URL"].startswith("http://127.0.0.1:") and child["OPENAI_BASE_URL"].endswith("/openai")
    assert "HTTPS_PROXY" in child


def test_dry_run_and_errors_never_show_the_secret(world):
    env = dict(world.env(), MY_OPENAI=SECRET)
    r = world.nono("run", "--dry-run", "--credential", "openai=env://MY_OPENAI", "--", "true", env=env)
    assert r.returncode == 0 and SECRET not in r.stderr + r.stdout
    assert "credential openai" in r.stderr and "api.openai.com" in r.stderr
    r = world.nono("run", "--credential", "openai=env://NOT_SET_ANYWHERE", "--", "true")
    assert r.returncode == 1 and "NOT_SET_ANYWHERE" in r.stderr and "Traceback" not in r.stderr


def test_contradictions_are_usage_errors(world):
    r = world.nono("run", "--block-net", "--credential", "openai", "--", "true")
    assert r.returncode == 2 and "contradictory" in r.stderr
    r = world.nono("run", "--allow-endpoint", "github:GET:/repos/**", "--", "true")
    assert r.returncode == 2 and "--credential" in r.stderr


def test_profile_credentials_are_enforced(world, tmp_path):
    prof = world.work / "cred-profile.json"
    prof.write_text(json.dumps({"extends": "default", "network": {"credentials": ["anthropic=env://MY_ANTHROPIC"]}}))
    import os

    os.chown(prof, world.user.uid, world.user.uid)
    env = dict(world.env(), MY_ANTHROPIC=SECRET)
    r = world.nono("run", "-s", "--profile", str(prof), "--", world.user.python, "-c", _DUMP, env=env)
    assert r.returncode == 0, r.stderr
    child = json.loads(r.stdout)
    assert SECRET not in r.stdout
    assert child["ANTHROPIC_BASE_URL"].endswith("/anthropic") and child["ANTHROPIC_API_KEY"] != SECRET


def test_secret_never_reaches_the_audit_record(world):
    env = dict(world.env(), MY_OPENAI=SECRET)
    r = world.nono("run", "-s", "--credential", "openai=env://MY_OPENAI", "--", world.user.python, "-c",
                   "import os; print(len(os.environ['OPENAI_API_KEY']))", env=env)
    assert r.returncode == 0, r.stderr
    store = world.home / ".local" / "state" / "nono"
    seen = []
    for path in store.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert SECRET.encode() not in data, path
            seen.append(path.name)
    assert "audit-events.ndjson" in seen, seen  # the session was recorded, without the secret


def test_env_credential_alone_keeps_the_network_and_passes_the_real_value(world):
    """--env-credential is the weaker, explicit mode: the real secret in the environment, no proxy needed."""
    env = dict(world.env(), MY_TOOL_KEY=SECRET)
    r = world.nono("run", "-s", "--env-credential", "env://MY_TOOL_KEY", "--", world.user.python, "-c", _DUMP, env=env)
    assert r.returncode == 0, r.stderr
    child = json.loads(r.stdout)
    assert child["MY_TOOL_KEY"] == SECRET and "HTTPS_PROXY" not in child
