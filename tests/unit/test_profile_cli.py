"""``nono profile ...`` (and ``profiles``/``policy`` aliases) and the ``--profile`` flags of ``nono run``.

Most tests call ``nono.cli.main.main`` in-process (it returns the exit code);
``nono run`` is started as a subprocess, as a user would. ``HOME`` and
``XDG_CONFIG_HOME`` point into a temporary directory in both cases.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from nono.cli.main import main
from nono.policy import profiles, schema

REPO = Path(__file__).resolve().parents[2]
NONO = REPO / ".venv" / "bin" / "nono"
BUILTINS = sorted(p.stem for p in Path(profiles.BUILTIN_DIR).glob("*.json"))


@pytest.fixture(autouse=True)
def env(tmp_path, monkeypatch):
    home = tmp_path / "home"
    xdg = tmp_path / "xdg"
    work = tmp_path / "work"
    for d in (home, xdg, work):
        d.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(xdg))
    for var in ("XDG_STATE_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(work)
    return SimpleNamespace(home=home, xdg=xdg, work=work, tmp=tmp_path, user=xdg / "nono" / "profiles")


def write(path: Path, content) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content if isinstance(content, str) else json.dumps(content, indent=2), encoding="utf-8")
    return str(path)


def cli(capsys, *argv: str) -> SimpleNamespace:
    code = main(list(argv))
    out = capsys.readouterr()
    assert isinstance(code, int)
    assert "Traceback" not in out.err
    return SimpleNamespace(code=code, out=out.out, err=out.err)


def nono(env, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run the real ``nono`` executable with the test's HOME and XDG_CONFIG_HOME."""
    e = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "NONO_"))}
    e.update(HOME=str(env.home), XDG_CONFIG_HOME=str(env.xdg))
    exe = [str(NONO)] if NONO.exists() else [sys.executable, "-m", "nono"]
    res = subprocess.run(exe + list(argv), capture_output=True, text=True, env=e, cwd=str(env.work), timeout=timeout,
                         stdin=subprocess.DEVNULL)
    assert "Traceback" not in res.stderr, res.stderr
    return res


# ------------------------------------------------------------------------------------------
# list
# ------------------------------------------------------------------------------------------
def test_profile_list_shows_builtins(env, capsys):
    r = cli(capsys, "profile", "list")
    assert r.code == 0
    assert "Built-in profiles:" in r.out
    for name in BUILTINS:
        assert f"  {name} " in r.out
    assert "Your profiles" not in r.out


def test_profile_list_shows_user_profiles_first_and_shadowing(env, capsys):
    write(env.user / "codex.json", {"meta": {"description": "my codex"}})
    write(env.user / "zeta.yaml", "meta:\n  description: a yaml one\n")
    write(env.user / "broken.json", "{ not json")
    r = cli(capsys, "profile", "list")
    assert r.code == 0
    assert r.out.index("Your profiles") < r.out.index("Built-in profiles:")
    assert "my codex" in r.out and "a yaml one" in r.out
    assert "(overridden by yours)" in r.out
    assert "broken" in r.out and "unreadable" in r.out
    rows = json.loads(cli(capsys, "profile", "list", "--json").out)
    by_name = {(row["name"], row["builtin"]): row for row in rows}
    assert by_name[("codex", True)]["shadowed"] is True
    assert by_name[("codex", False)]["source"] == str(env.user / "codex.json")
    assert by_name[("default", True)]["shadowed"] is False
    assert {row["name"] for row in rows if row["builtin"]} == set(BUILTINS)


def test_profiles_list_alias(env, capsys):
    a = cli(capsys, "profile", "list")
    b = cli(capsys, "profiles", "list")
    c = cli(capsys, "profiles")
    assert a.code == b.code == c.code == 0
    assert a.out == b.out == c.out
    assert "deprecated" not in b.err


def test_policy_alias_warns_deprecation(env, capsys):
    a = cli(capsys, "profile", "list")
    p = cli(capsys, "policy", "profiles")
    assert p.code == 0 and p.out == a.out
    assert "deprecated" in p.err and "nono profile list" in p.err
    g = cli(capsys, "policy", "groups", "deny_credentials")
    assert g.code == 0 and "~/.ssh" in g.out and "deprecated" in g.err
    bad = cli(capsys, "policy", "frobnicate")
    assert bad.code == 2 and "frobnicate" in bad.err


# ------------------------------------------------------------------------------------------
# show
# ------------------------------------------------------------------------------------------
def test_profile_show_json(env, capsys):
    r = cli(capsys, "profile", "show", "claude-code", "--json")
    assert r.code == 0
    rep = json.loads(r.out)
    assert rep["name"] == "claude-code" and rep["source"] == "built-in:claude-code"
    assert rep["chain"] == ["built-in:default", "built-in:claude-code"]
    assert rep["workdir"] == "readwrite"
    assert rep["filesystem"] and rep["deny"]
    for e in rep["filesystem"] + rep["deny"]:
        assert e["from"], e
        assert e["path"].startswith("/"), e
    froms = {e["from"] for e in rep["filesystem"]}
    assert "group:claude_code_linux" in froms and "group:system_read_linux" in froms
    assert f"{env.home}/.claude" in {e["path"] for e in rep["filesystem"]}
    assert f"{env.home}/.ssh" in {e["path"] for e in rep["deny"]}
    assert "deny_credentials" in rep["groups"]
    assert rep["network"]["network_profile"] == "claude-code"


def test_profile_show_text_names_where_paths_come_from(env, capsys):
    f = write(env.tmp / "p" / "mine.json", {"extends": "codex", "filesystem": {"read": ["/opt/mine"], "deny": ["/opt/no"]},
                                            "environment": {"set_vars": {"K": "v"}}})
    r = cli(capsys, "profile", "show", f)
    assert r.code == 0
    assert "Inherits: built-in:default -> built-in:codex -> " + f in r.out
    assert "[group:codex_linux]" in r.out
    assert f"/opt/mine  [{f} (filesystem.read)]" in r.out
    assert "/opt/no" in r.out and "set: K=v" in r.out
    raw = json.loads(cli(capsys, "profile", "show", f, "--raw").out)
    assert raw["filesystem"]["read"] == ["/opt/mine"]


def test_profile_show_errors(env, capsys):
    r = cli(capsys, "profile", "show", "nonexistent")
    assert r.code == 1 and "Profile not found: nonexistent" in r.err
    bad = write(env.tmp / "bad.json", '{\n  "filesystem": {"read": ["/a" "/b"]}\n}\n')
    r = cli(capsys, "profile", "show", bad)
    assert r.code == 1 and f"{bad}:2:32" in r.err and "malformed JSON" in r.err
    r = cli(capsys, "profile", "show")
    assert r.code == 2


# ------------------------------------------------------------------------------------------
# init
# ------------------------------------------------------------------------------------------
def test_profile_init_writes_user_profile_that_resolves(env, capsys):
    r = cli(capsys, "profile", "init", "my-agent", "--extends", "claude-code")
    assert r.code == 0
    target = env.xdg / "nono" / "profiles" / "my-agent.json"
    assert target.is_file()
    assert str(target) in r.err
    doc = json.loads(target.read_text())
    assert doc["extends"] == "claude-code"
    assert schema.validate(doc) == []
    res = profiles.resolve("my-agent")
    assert res.label == str(target)
    assert res.chain == ["built-in:default", "built-in:claude-code", str(target)]
    assert "claude_code_linux" in res.groups
    v = cli(capsys, "profile", "validate", "my-agent", "--strict")
    assert v.code == 0
    assert "my-agent" in cli(capsys, "profile", "list").out


def test_profile_init_refuses_to_overwrite_without_force(env, capsys):
    assert cli(capsys, "profile", "init", "my-agent").code == 0
    target = env.user / "my-agent.json"
    target.write_text(target.read_text().replace('"1"', '"edited"'))
    before = target.read_text()
    r = cli(capsys, "profile", "init", "my-agent", "--extends", "codex")
    assert r.code == 1 and "already exists" in r.err and "--force" in r.err
    assert target.read_text() == before
    r = cli(capsys, "profile", "init", "my-agent", "--extends", "codex", "--force")
    assert r.code == 0
    assert json.loads(target.read_text())["extends"] == "codex"
    assert not [p for p in env.user.iterdir() if ".tmp." in p.name]


def test_profile_init_options(env, capsys):
    out = env.tmp / "elsewhere" / "x.json"
    r = cli(capsys, "profile", "init", "x", "--extends", "codex", "--extends", "python-dev",
            "--groups", "git_config,rust_runtime", "--description", "hello", "-o", str(out))
    assert r.code == 0
    doc = json.loads(out.read_text())
    assert doc["extends"] == ["codex", "python-dev"]
    assert doc["groups"]["include"] == ["git_config", "rust_runtime"]
    assert doc["meta"]["description"] == "hello"
    res = profiles.resolve(str(out))
    assert "rust_runtime" in res.groups and "python_runtime" in res.groups
    assert not (env.user / "x.json").exists()
    # default base
    assert cli(capsys, "profile", "init", "plain").code == 0
    assert json.loads((env.user / "plain.json").read_text())["extends"] == "default"


def test_profile_init_errors(env, capsys):
    r = cli(capsys, "profile", "init", "bad name")
    assert r.code == 2 and "invalid profile name" in r.err.lower()
    r = cli(capsys, "profile", "init", "ok", "--extends", "claude-cod")
    assert r.code == 1 and "Profile not found: claude-cod" in r.err
    r = cli(capsys, "profile", "init", "ok2", "--groups", "no_such_group")
    assert r.code == 1 and "no_such_group" in r.err
    assert not env.user.exists() or not any(env.user.iterdir())


# ------------------------------------------------------------------------------------------
# validate
# ------------------------------------------------------------------------------------------
def test_profile_validate_valid(env, capsys):
    f = write(env.tmp / "ok.json", {"extends": "codex", "filesystem": {"read": ["/x"]}})
    r = cli(capsys, "profile", "validate", f)
    assert r.code == 0 and "valid" in r.err
    assert cli(capsys, "profile", "validate", f, "--strict").code == 0


@pytest.mark.parametrize("name", BUILTINS)
def test_profile_validate_builtins(env, capsys, name):
    assert cli(capsys, "profile", "validate", name, "--strict").code == 0
    assert cli(capsys, "profile", "validate", os.path.join(profiles.BUILTIN_DIR, name + ".json")).code == 0


@pytest.mark.parametrize("content, needle", [
    ({"filesystem": {"alow": []}}, "filesystem.alow"),
    ({"network": {"open_port": [70000]}}, "70000"),
    ({"groups": {"include": ["node_runtim"]}}, "node_runtim"),
    ({"groups": {"exclude": ["deny_credentials"]}}, "required"),
    ({"extends": "nonexistent-base"}, "nonexistent-base"),
    ('{"meta": {', "malformed JSON"),
    ({"policy": {"add_allow_reed": []}}, "policy.add_allow_reed"),
])
def test_profile_validate_invalid_exits_1(env, capsys, content, needle):
    f = write(env.tmp / "bad.json", content)
    r = cli(capsys, "profile", "validate", f)
    assert r.code == 1
    assert needle in r.err and "error" in r.err
    j = cli(capsys, "profile", "validate", f, "--json")
    assert j.code == 1
    rep = json.loads(j.out)
    assert rep["valid"] is False and rep["exit_code"] == 1 and any(needle in p for p in rep["problems"])


def test_profile_validate_reports_every_problem(env, capsys):
    f = write(env.tmp / "bad.json", '{\n  "filesystem": {"alow": []},\n  "workdir": {"access": "x"}\n}\n')
    r = cli(capsys, "profile", "validate", f)
    assert r.code == 1
    assert f"{f}:2" in r.err and f"{f}:3" in r.err
    assert "filesystem.alow" in r.err and "workdir.access" in r.err


@pytest.mark.parametrize("content", [
    {"policy": {"add_allow_read": ["/x"]}},
    {"security": {"groups": ["node_runtime"]}},
    {"network": {"proxy_allow": ["example.com"]}},
    {"commands": {"deny": ["rm"]}},
])
def test_profile_validate_legacy_keys(env, capsys, content):
    f = write(env.tmp / "legacy.json", content)
    r = cli(capsys, "profile", "validate", f)
    assert r.code == 0
    assert "deprecated" in r.err and "warning" in r.err
    s = cli(capsys, "profile", "validate", f, "--strict")
    assert s.code == 2
    assert "deprecated" in s.err
    j = json.loads(cli(capsys, "profile", "validate", f, "--strict", "--json").out)
    assert j["exit_code"] == 2 and j["valid"] is True and j["deprecated"]


def test_profile_validate_legacy_names_the_new_key(env, capsys):
    f = write(env.tmp / "legacy.json", {"policy": {"add_deny_access": ["/x"]}})
    r = cli(capsys, "profile", "validate", f)
    assert "policy.add_deny_access" in r.err and "filesystem.deny" in r.err


def test_profile_validate_missing_file(env, capsys):
    r = cli(capsys, "profile", "validate", str(env.tmp / "nope.json"))
    assert r.code == 1 and "not found" in r.err
    r = cli(capsys, "profile", "validate", "no-such-profile")
    assert r.code == 1 and "Profile not found" in r.err


def test_profile_validate_yaml(env, capsys):
    ok = write(env.tmp / "ok.yaml", "extends: default\nfilesystem:\n  read: [/x]\n")
    bad = write(env.tmp / "bad.yml", "filesystem:\n  read: [/x\n")
    assert cli(capsys, "profile", "validate", ok).code == 0
    r = cli(capsys, "profile", "validate", bad)
    assert r.code == 1 and "malformed YAML" in r.err and bad in r.err


# ------------------------------------------------------------------------------------------
# diff
# ------------------------------------------------------------------------------------------
def test_profile_diff(env, capsys):
    r = cli(capsys, "profile", "diff", "claude-code", "codex")
    assert r.code == 0
    assert "--- claude-code" in r.out and "+++ codex" in r.out
    assert "  + codex_linux" in r.out
    assert "  - claude_code_linux" in r.out
    assert f"  + readwrite {env.home}/.codex" in r.out
    assert f"  - readwrite {env.home}/.claude" in r.out
    assert "node_runtime" not in r.out  # common to both


def test_profile_diff_json(env, capsys):
    d = json.loads(cli(capsys, "profile", "diff", "claude-code", "codex", "--json").out)
    assert d["a"] == "claude-code" and d["b"] == "codex"
    assert d["groups"] == {"only_in_a": ["claude_code_linux"], "only_in_b": ["codex_linux"]}
    assert f"readwrite {env.home}/.codex" in d["filesystem"]["only_in_b"]
    assert "network" in d["changed"]


def test_profile_diff_identical_and_scalar_changes(env, capsys):
    r = cli(capsys, "profile", "diff", "codex", "codex")
    assert r.code == 0 and "(no differences)" in r.out
    f = write(env.tmp / "ro.json", {"extends": "default", "workdir": {"access": "read"}, "network": {"block": True},
                                    "environment": {"deny_vars": ["AWS_*"]}})
    d = json.loads(cli(capsys, "profile", "diff", "default", f, "--json").out)
    assert d["changed"]["workdir"] == {"a": "readwrite", "b": "read"}
    assert d["changed"]["network"]["b"].startswith("blocked")
    assert d["environment"]["only_in_b"] == ["deny AWS_*"]


def test_profile_diff_errors(env, capsys):
    r = cli(capsys, "profile", "diff", "codex", "nope")
    assert r.code == 1 and "Profile not found: nope" in r.err
    assert cli(capsys, "profile", "diff", "codex").code == 2


# ------------------------------------------------------------------------------------------
# groups
# ------------------------------------------------------------------------------------------
def test_profile_groups_deny_credentials(env, capsys):
    r = cli(capsys, "profile", "groups", "deny_credentials")
    assert r.code == 0
    assert "~/.ssh" in r.out and "~/.aws" in r.out and "~/.gnupg" in r.out
    assert "required: yes" in r.out
    j = json.loads(cli(capsys, "profile", "groups", "deny_credentials", "--json").out)
    assert j["name"] == "deny_credentials" and j["required"] is True
    assert "~/.ssh" in j["deny"]["access"]


def test_profile_groups_non_required(env, capsys):
    r = cli(capsys, "profile", "groups", "node_runtime")
    assert r.code == 0 and "required: no" in r.out


def test_profile_groups_list(env, capsys):
    r = cli(capsys, "profile", "groups")
    assert r.code == 0
    from nono.policy.groups import data

    for name in data()["groups"]:
        assert name in r.out
    line = next(x for x in r.out.splitlines() if " deny_credentials " in x)
    assert "!" in line and "*" in line
    rows = json.loads(cli(capsys, "profile", "groups", "--json").out)
    req = {row["name"] for row in rows if row["required"]}
    assert {"deny_credentials", "deny_keychains_linux", "deny_shell_history"} <= req


def test_profile_groups_unknown(env, capsys):
    r = cli(capsys, "profile", "groups", "deny_credential")
    assert r.code == 1
    assert "unknown group 'deny_credential'" in r.err
    assert "deny_credentials" in r.err  # suggestion


# ------------------------------------------------------------------------------------------
# schema
# ------------------------------------------------------------------------------------------
def test_profile_schema_stdout_and_file(env, capsys):
    r = cli(capsys, "profile", "schema")
    assert r.code == 0
    printed = json.loads(r.out)
    assert printed["$schema"].startswith("https://json-schema.org/")
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.Draft202012Validator.check_schema(printed)
    out = env.tmp / "nono-profile.schema.json"
    r = cli(capsys, "profile", "schema", "-o", str(out))
    assert r.code == 0 and r.out == ""
    assert json.loads(out.read_text()) == printed
    assert str(out) in r.err


# ------------------------------------------------------------------------------------------
# usage errors
# ------------------------------------------------------------------------------------------
def test_profile_usage_errors(env, capsys):
    r = cli(capsys, "profile")
    assert r.code == 2 and "list" in r.out
    r = cli(capsys, "profile", "--help")
    assert r.code == 0 and "validate" in r.out
    r = cli(capsys, "profile", "lst")
    assert r.code == 2 and "did you mean 'list'" in r.err
    r = cli(capsys, "profile", "list", "extra")
    assert r.code == 2
    r = cli(capsys, "profile", "show", "codex", "--frobnicate")
    assert r.code == 2


# ------------------------------------------------------------------------------------------
# nono run --profile / --extends / --allow-net
# ------------------------------------------------------------------------------------------
def test_run_profile_not_found(env):
    r = nono(env, "run", "--profile", "nonexistent", "--", "true")
    assert r.returncode == 1
    assert "Profile not found: nonexistent" in r.stderr


def test_run_extends_without_profile_is_usage_error(env):
    r = nono(env, "run", "--extends", "x", "--", "true")
    assert r.returncode == 2
    assert "--extends" in r.stderr and "--profile" in r.stderr


def test_run_profile_with_network_profile_is_not_unrestricted(env):
    r = nono(env, "run", "--profile", "claude-code", "--dry-run", "--", "true")
    assert r.returncode == 0, r.stderr
    assert "    net  " in r.stderr
    assert "net  allowed" not in r.stderr  # filtered by the proxy, or blocked (fail closed) without one
    if "fail closed" in r.stderr:
        assert "--allow-net" in r.stderr  # says how to get the network back


def test_run_profile_allow_net(env):
    r = nono(env, "run", "--profile", "claude-code", "--allow-net", "--dry-run", "--", "true")
    assert r.returncode == 0, r.stderr
    assert "net  allowed" in r.stderr
    assert "fail closed" not in r.stderr


def test_run_extends_adds_bases(env):
    r = nono(env, "run", "--profile", "default", "--dry-run", "--", "true")
    assert r.returncode == 0 and "net  allowed" in r.stderr, r.stderr
    r = nono(env, "run", "--profile", "default", "--extends", "codex", "--dry-run", "--", "true")
    assert r.returncode == 0, r.stderr
    assert "net  allowed" not in r.stderr  # codex's network profile came in through --extends
    r = nono(env, "run", "--profile", "default", "--extends", "nope", "--dry-run", "--", "true")
    assert r.returncode == 1 and "Profile not found: nope" in r.stderr


def test_run_allow_net_contradicts_blocking_profile(env):
    f = write(env.tmp / "blocked.json", {"network": {"block": True}})
    r = nono(env, "run", "--profile", f, "--allow-net", "--dry-run", "--", "true")
    assert r.returncode == 2 and "--allow-net" in r.stderr


def test_run_profile_errors_are_one_line(env):
    f = write(env.tmp / "typo.json", '{\n  "filesystem": {\n    "alow": []\n  }\n}\n')
    r = nono(env, "run", "--profile", f, "--dry-run", "--", "true")
    assert r.returncode == 1
    assert f"{f}:3" in r.stderr and "filesystem.alow" in r.stderr
    g = write(env.tmp / "excl.json", {"groups": {"exclude": ["deny_credentials"]}})
    r = nono(env, "run", "--profile", g, "--dry-run", "--", "true")
    assert r.returncode == 1 and "required" in r.stderr


def test_run_legacy_profile_warns(env):
    f = write(env.tmp / "legacy.json", {"policy": {"add_allow_read": ["/usr"]}})
    r = nono(env, "run", "--profile", f, "--dry-run", "--", "true")
    assert r.returncode == 0, r.stderr
    assert "policy.add_allow_read" in r.stderr and "deprecated" in r.stderr


def test_run_user_profile_by_name(env):
    write(env.user / "mine.json", {"extends": "default", "network": {"block": True}})
    r = nono(env, "run", "--profile", "mine", "--dry-run", "--", "true")
    assert r.returncode == 0, r.stderr
    assert "net  blocked" in r.stderr


def test_fixed_run_with_malformed_json_profile(env):
    f = write(env.tmp / "bad.json", '{\n  "filesystem": {"read": ["/a" "/b"]}\n}\n')
    r = nono(env, "run", "--profile", f, "--dry-run", "--", "true")
    assert r.returncode == 1
    assert f"{f}:2:32" in r.stderr and "malformed JSON" in r.stderr


def test_empty_network_profile_is_a_usage_error_not_an_open_network(capsys):
    from nono.cli.main import main

    assert main(["run", "--dry-run", "--network-profile", "", "--", "true"]) == 2
    assert "empty value" in capsys.readouterr().err
