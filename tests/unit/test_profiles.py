"""Profiles: merge semantics, resolution order, every error path, to_policy, and the schema.

Everything runs against files written to a temporary directory; ``HOME`` and
``XDG_CONFIG_HOME`` point into it, so the real ``~/.config`` is never read.
Bugs found while writing these have regression tests named ``test_fixed_*``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from nono.errors import NonoError
from nono.policy import profiles, schema
from nono.policy.document import ProfileError, strip_jsonc

REPO = Path(__file__).resolve().parents[2]
BUILTIN_DIR = Path(profiles.BUILTIN_DIR)
BUILTINS = sorted(p.stem for p in BUILTIN_DIR.glob("*.json"))
DEFAULT_GROUPS = json.loads((BUILTIN_DIR / "default.json").read_text())["groups"]["include"]
REQUIRED_GROUPS = ["deny_credentials", "deny_keychains_linux", "deny_browser_data_linux", "deny_shell_history",
                   "deny_shell_configs"]


@pytest.fixture(autouse=True)
def env(tmp_path, monkeypatch):
    """An isolated HOME / XDG_CONFIG_HOME and working directory for every test."""
    home = tmp_path / "home"
    xdg = tmp_path / "xdg"
    work = tmp_path / "work"
    for d in (home, xdg, work):
        d.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(xdg))
    for var in ("XDG_STATE_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_RUNTIME_DIR", "NOPE_NOT_SET"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(work)
    user = xdg / "nono" / "profiles"
    return SimpleNamespace(home=home, xdg=xdg, work=work, tmp=tmp_path, user=user, dir=tmp_path / "p")


def write(path: Path, content) -> str:
    """Write a profile (a dict is dumped as JSON, a str written as is); return its path as str."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content if isinstance(content, str) else json.dumps(content, indent=2), encoding="utf-8")
    return str(path)


def only_nono_errors(fn, *args) -> None:
    """``fn(*args)`` raises a NonoError; anything else fails the test without a traceback.

    (Formatting a RecursionError's traceback costs pytest seconds per xfail.)
    """
    escaped = "no error at all"
    try:
        fn(*args)
    except NonoError:
        return
    except BaseException as exc:  # the point is to catch whatever escapes
        escaped = f"{type(exc).__name__} escaped: {str(exc)[:200]}"
    pytest.fail(escaped, pytrace=False)  # outside the handler: no chained traceback to format


def err(fn, *args, **kwargs) -> ProfileError:
    with pytest.raises(ProfileError) as exc:
        fn(*args, **kwargs)
    return exc.value


# ------------------------------------------------------------------------------------------
# 1. Merge semantics
# ------------------------------------------------------------------------------------------
def test_lists_are_dedup_appended_base_then_child(env):
    write(env.dir / "base.json", {"filesystem": {"read": ["/a", "/b"], "deny": ["/d1"]},
                                  "environment": {"allow_vars": ["A", "B"]}, "network": {"open_port": [80, 81]}})
    child = write(env.dir / "child.json", {"extends": "base", "filesystem": {"read": ["/b", "/c", "/a"], "deny": ["/d2"]},
                                           "environment": {"allow_vars": ["B", "C"]}, "network": {"open_port": [81, 82]}})
    r = profiles.resolve(child)
    assert r.data["filesystem"]["read"] == ["/a", "/b", "/c"]
    assert r.data["filesystem"]["deny"] == ["/d1", "/d2"]
    assert r.data["environment"]["allow_vars"] == ["A", "B", "C"]
    assert r.data["network"]["open_port"] == [80, 81, 82]


def test_scalars_are_overridden_by_the_child(env):
    write(env.dir / "base.json", {"meta": {"name": "base", "description": "the base"},
                                  "security": {"signal_mode": "isolated", "ipc_mode": "full"},
                                  "network": {"upstream_proxy": "http://base:3128"},
                                  "linux": {"af_unix_mediation": "off"}})
    child = write(env.dir / "child.json", {"extends": "base", "security": {"signal_mode": "allow_all"},
                                           "network": {"upstream_proxy": "http://child:3128"},
                                           "linux": {"af_unix_mediation": "pathname"}})
    r = profiles.resolve(child)
    assert r.data["security"]["signal_mode"] == "allow_all"
    assert r.data["network"]["upstream_proxy"] == "http://child:3128"
    assert r.data["linux"]["af_unix_mediation"] == "pathname"
    # meta is the child's, never the base's description
    assert r.data["meta"].get("description") != "the base"
    assert r.name == "child"


@pytest.mark.parametrize("base, child, expected", [
    (True, False, True), (False, True, True), (True, None, True), (None, True, True), (False, False, False),
])
def test_network_block_is_ored(env, base, child, expected):
    write(env.dir / "base.json", {"network": {} if base is None else {"block": base}})
    c = write(env.dir / "child.json", {"extends": "base", "network": {} if child is None else {"block": child}})
    assert bool(profiles.resolve(c).section("network").get("block")) is expected


def test_network_profile_null_in_child_clears_it(env):
    write(env.dir / "base.json", {"network": {"network_profile": "developer"}})
    keep = write(env.dir / "keep.json", {"extends": "base"})
    clear = write(env.dir / "clear.json", {"extends": "base", "network": {"network_profile": None}})
    assert profiles.resolve(keep).section("network")["network_profile"] == "developer"
    r = profiles.resolve(clear)
    assert r.section("network").get("network_profile") is None
    assert not r.needs_proxy()
    # the built-in claude-code asks for its network profile; a child may clear it
    cc = write(env.dir / "cc.json", {"extends": "claude-code", "network": {"network_profile": None}})
    assert not profiles.resolve(cc).needs_proxy()
    assert profiles.resolve("claude-code").needs_proxy()


def test_network_credentials_empty_list_clears_nonempty_merges(env):
    write(env.dir / "base.json", {"network": {"credentials": ["openai", "github"]}})
    merged = write(env.dir / "merge.json", {"extends": "base", "network": {"credentials": ["github", "anthropic"]}})
    cleared = write(env.dir / "clear.json", {"extends": "base", "network": {"credentials": []}})
    assert profiles.resolve(merged).section("network")["credentials"] == ["openai", "github", "anthropic"]
    assert profiles.resolve(cleared).section("network")["credentials"] == []


def test_set_vars_union_child_wins(env):
    write(env.dir / "base.json", {"environment": {"set_vars": {"A": "base", "B": "base"}}})
    c = write(env.dir / "child.json", {"extends": "base", "environment": {"set_vars": {"B": "child", "C": "child"}}})
    assert profiles.resolve(c).section("environment")["set_vars"] == {"A": "base", "B": "child", "C": "child"}


def test_fixed_environment_null_in_child_keeps_base_environment(env):
    write(env.dir / "base.json", {"environment": {"deny_vars": ["AWS_*"], "allow_vars": ["A"]}})
    c = write(env.dir / "child.json", {"extends": "base", "environment": None})
    pol = profiles.resolve(c).to_policy(str(env.work))
    assert pol.env_deny == ("AWS_*",)


@pytest.mark.parametrize("base, child, expected", [
    ("read", "readwrite", "readwrite"),
    ("readwrite", "read", "read"),
    ("write", "read", "read"),
    ("readwrite", "none", "readwrite"),   # none does not downgrade
    ("read", "none", "read"),
    (None, "none", "none"),
    (None, "write", "write"),
    ("write", None, "write"),
])
def test_workdir_access_child_wins_except_none(env, base, child, expected):
    write(env.dir / "base.json", {"workdir": {"access": base}} if base else {})
    c = write(env.dir / "child.json", {"extends": "base", **({"workdir": {"access": child}} if child else {})})
    assert profiles.resolve(c).workdir_access == expected


def test_workdir_defaults_to_none_without_any_setting(env):
    p = write(env.dir / "solo.json", {})
    assert profiles.resolve(p).workdir_access == "none"


def test_multiple_bases_merge_left_to_right(env):
    b1 = write(env.dir / "b1.json", {"filesystem": {"read": ["/1"]}, "security": {"signal_mode": "isolated"},
                                     "workdir": {"access": "read"}})
    b2 = write(env.dir / "b2.json", {"filesystem": {"read": ["/2"]}, "security": {"signal_mode": "allow_all"},
                                     "workdir": {"access": "write"}})
    c = write(env.dir / "c.json", {"extends": ["b1", "b2"], "filesystem": {"read": ["/3"]}})
    r = profiles.resolve(c)
    assert r.chain == [b1, b2, c]
    assert r.data["filesystem"]["read"] == ["/1", "/2", "/3"]
    assert r.data["security"]["signal_mode"] == "allow_all"
    assert r.workdir_access == "write"
    c2 = write(env.dir / "c2.json", {"extends": ["b2", "b1"]})
    r2 = profiles.resolve(c2)
    assert r2.data["filesystem"]["read"] == ["/2", "/1"]
    assert r2.data["security"]["signal_mode"] == "isolated"
    assert r2.workdir_access == "read"


def test_diamond_base_is_merged_once(env):
    d = write(env.dir / "d.json", {"filesystem": {"read": ["/d"]}})
    b = write(env.dir / "b.json", {"extends": "d", "filesystem": {"read": ["/b"]}})
    c = write(env.dir / "c.json", {"extends": "d", "filesystem": {"read": ["/c"]}})
    a = write(env.dir / "a.json", {"extends": ["b", "c"], "filesystem": {"read": ["/a"]}})
    r = profiles.resolve(a)
    assert r.chain == [d, b, c, a]
    assert r.data["filesystem"]["read"] == ["/d", "/b", "/c", "/a"]


def test_builtin_chain_contains_default_once(env):
    # extends claude-code and codex: both extend default, which must appear once, first
    p = write(env.dir / "both.json", {"extends": ["claude-code", "codex"]})
    r = profiles.resolve(p)
    assert r.chain == ["built-in:default", "built-in:claude-code", "built-in:codex", p]
    assert r.section("network")["network_profile"] == "codex"
    for g in ("claude_code_linux", "codex_linux", "node_runtime", "git_config"):
        assert g in r.groups


def test_cli_extends_puts_bases_first_in_order_given(env):
    e1 = write(env.dir / "e1.json", {"filesystem": {"read": ["/e1"]}, "workdir": {"access": "read"}})
    e2 = write(env.dir / "e2.json", {"filesystem": {"read": ["/e2"]}, "workdir": {"access": "write"}})
    c = write(env.dir / "c.json", {"filesystem": {"read": ["/c"]}})
    r = profiles.resolve(c, extends=[e1, e2])
    assert r.chain == [e1, e2, c]
    assert r.data["filesystem"]["read"] == ["/e1", "/e2", "/c"]
    assert r.workdir_access == "write"
    r = profiles.resolve(c, extends=[e2, e1])
    assert r.chain == [e2, e1, c]
    assert r.workdir_access == "read"
    # the profile's own bases come after the --extends ones; the profile itself stays last
    own = write(env.dir / "own.json", {"extends": "e1", "filesystem": {"read": ["/own"]}})
    r = profiles.resolve(own, extends=[e2])
    assert r.chain == [e2, e1, own]
    # a --extends base that the profile also extends is merged once, at the front
    r = profiles.resolve(own, extends=[e1])
    assert r.chain == [e1, own]
    # --extends accepts built-in names
    r = profiles.resolve(c, extends=["codex"])
    assert r.chain == ["built-in:default", "built-in:codex", c]
    assert "codex_linux" in r.groups


def test_default_groups_always_included(env):
    solo = write(env.dir / "solo.json", {"groups": {"include": ["node_runtime"]}})
    r = profiles.resolve(solo)
    assert r.chain == [solo]  # no extends: the default *profile* is not merged ...
    for g in DEFAULT_GROUPS:  # ... but its groups are
        assert g in r.groups
    assert r.groups[: len(DEFAULT_GROUPS)] == DEFAULT_GROUPS
    assert r.groups[-1] == "node_runtime"
    assert r.groups.count("node_runtime") == 1
    assert r.origin("groups.include", "deny_credentials") == "built-in:default"


def test_excluding_a_non_required_group_works(env):
    p = write(env.dir / "p.json", {"extends": "claude-code", "groups": {"exclude": ["user_tools", "git_config"]}})
    r = profiles.resolve(p)
    assert "user_tools" not in r.groups and "git_config" not in r.groups
    assert "claude_code_linux" in r.groups
    for g in REQUIRED_GROUPS:
        assert g in r.groups


@pytest.mark.parametrize("group", REQUIRED_GROUPS)
def test_excluding_a_required_group_errors(env, group):
    p = write(env.dir / "p.json", {"groups": {"exclude": ["user_tools", group]}})
    e = err(profiles.resolve, p)
    assert "required" in str(e)
    assert group in str(e)
    assert p in str(e)
    assert e.key == "groups.exclude"


def test_required_exclusion_in_a_base_is_also_an_error(env):
    write(env.dir / "base.json", {"groups": {"exclude": ["deny_credentials"]}})
    c = write(env.dir / "c.json", {"extends": "base"})
    e = err(profiles.resolve, c)
    assert "required" in str(e) and "deny_credentials" in str(e)
    assert str(env.dir / "base.json") in str(e)  # names the file that asked for it


def test_origins_name_the_contributing_file(env):
    base = write(env.dir / "base.json", {"filesystem": {"read": ["/x", "/shared"]}, "groups": {"include": ["go_runtime"]}})
    child = write(env.dir / "child.json", {"extends": "base", "filesystem": {"read": ["/y", "/shared"], "deny": ["/z"]},
                                           "environment": {"set_vars": {"K": "v"}}})
    r = profiles.resolve(child)
    assert r.origin("filesystem.read", "/x") == base
    assert r.origin("filesystem.read", "/y") == child
    assert r.origin("filesystem.read", "/shared") == base  # first contributor
    assert r.origin("filesystem.deny", "/z") == child
    assert r.origin("groups.include", "go_runtime") == base
    assert r.origin("environment.set_vars.K") == child
    cc = profiles.resolve("claude-code")
    assert cc.origin("groups.include", "claude_code_linux") == "built-in:claude-code"
    assert cc.origin("groups.include", "system_read_linux") == "built-in:default"


# ------------------------------------------------------------------------------------------
# 2. Resolution order
# ------------------------------------------------------------------------------------------
def test_user_profile_shadows_builtin(env):
    mine = write(env.user / "codex.json", {"meta": {"description": "mine"}, "filesystem": {"read": ["/mine"]}})
    r = profiles.resolve("codex")
    assert r.label == mine
    assert r.chain == [mine]
    assert r.data["filesystem"]["read"] == ["/mine"]
    assert "codex_linux" not in r.groups


@pytest.mark.parametrize("suffix", [".json", ".jsonc", ".yaml", ".yml"])
def test_user_profile_any_suffix_found_by_name(env, suffix):
    text = "filesystem:\n  read: [/u]\n" if suffix in (".yaml", ".yml") else '{"filesystem": {"read": ["/u"]}} // hi'
    f = write(env.user / f"mine{suffix}", text)
    r = profiles.resolve("mine")
    assert r.label == f and r.data["filesystem"]["read"] == ["/u"]


def test_user_profile_extending_builtin_of_same_name_gets_builtin(env):
    mine = write(env.user / "claude-code.json", {"extends": "claude-code", "filesystem": {"read": ["/extra"]}})
    r = profiles.resolve("claude-code")
    assert r.chain == ["built-in:default", "built-in:claude-code", mine]
    assert "claude_code_linux" in r.groups
    assert r.data["filesystem"]["read"] == ["/extra"]
    assert r.section("network")["network_profile"] == "claude-code"


def test_extends_finds_sibling_first(env):
    # a sibling named like a built-in and like a user profile wins over both
    write(env.user / "codex.json", {"filesystem": {"read": ["/user-codex"]}})
    sib = write(env.dir / "codex.json", {"filesystem": {"read": ["/sibling-codex"]}})
    child = write(env.dir / "child.json", {"extends": "codex"})
    r = profiles.resolve(child)
    assert r.chain == [sib, child]
    assert r.data["filesystem"]["read"] == ["/sibling-codex"]
    # without a sibling: the user dir, then the built-in
    other = write(env.tmp / "q" / "child.json", {"extends": "codex"})
    assert profiles.resolve(other).chain == [str(env.user / "codex.json"), other]
    (env.user / "codex.json").unlink()
    assert profiles.resolve(other).chain == ["built-in:default", "built-in:codex", other]


def test_sibling_yaml_base(env):
    base = write(env.dir / "base.yaml", "filesystem:\n  read:\n    - /from-yaml\n")
    child = write(env.dir / "child.jsonc", '{\n  // jsonc child\n  "extends": "base",\n}\n')
    r = profiles.resolve(child)
    assert r.chain == [base, child]
    assert r.data["filesystem"]["read"] == ["/from-yaml"]


@pytest.mark.parametrize("ref, is_path", [
    ("claude-code", False), ("my_agent-2", False), ("x/y", True), ("./p", True), ("/abs/p", True),
    ("p.json", True), ("p.jsonc", True), ("p.yaml", True), ("p.yml", True), ("p.txt", False),
])
def test_is_path_ref(ref, is_path):
    assert profiles.is_path_ref(ref) is is_path


def test_relative_file_refs_resolve_against_cwd(env):
    f = write(env.work / "local.json", {"filesystem": {"read": ["/l"]}})
    write(env.work / "sub" / "deep.yaml", "filesystem: {read: [/d]}\n")
    assert profiles.resolve("local.json").label == f
    assert profiles.resolve("./local.json").label == f
    assert profiles.resolve("sub/deep.yaml").data["filesystem"]["read"] == ["/d"]
    # a suffixed ref is a file, not a name: a user profile "local" is not consulted
    write(env.user / "other.json", {})
    e = err(profiles.resolve, "other.json")
    assert "not found" in str(e) and "other.json" in str(e)


def test_file_ref_not_found(env):
    e = err(profiles.resolve, str(env.tmp / "nope" / "x.json"))
    assert "not found" in str(e) and "x.json" in str(e)


@pytest.mark.parametrize("ref", ["bad name", "a.b", "semi;colon", "dollar$", "", "tab\tname", "é-ok-but-not?"])
def test_invalid_profile_names(env, ref):
    e = err(profiles.resolve, ref)
    assert "Invalid profile name" in str(e)


def test_profile_not_found_lists_candidates_and_close_match(env):
    write(env.user / "my-agent.json", {})
    e = err(profiles.resolve, "claude-cod")
    assert "Profile not found: claude-cod" in str(e)
    assert "claude-code" in e.hint
    for name in BUILTINS + ["my-agent"]:
        assert name in e.hint
    e = err(profiles.resolve, "zzzzzzzz")
    assert "Profile not found: zzzzzzzz" in str(e)
    assert "available" in e.hint and "default" in e.hint


def test_extends_not_found_names_file_and_line(env):
    p = write(env.dir / "p.json", '{\n  "meta": {},\n  "extends": "claude-cod"\n}\n')
    e = err(profiles.resolve, p)
    assert "Profile not found: claude-cod" in str(e)
    assert f"{p}:3" in str(e)
    assert e.key == "extends"
    assert "claude-code" in e.hint


def test_pack_like_reference_is_refused_clearly(env):
    e = err(profiles.resolve, "always-further/claude")
    assert "always-further/claude" in str(e)


# ------------------------------------------------------------------------------------------
# 3. Error paths: every message names what it should
# ------------------------------------------------------------------------------------------
BAD_JSON = '{\n  "meta": {"name": "x"},\n  "filesystem": {\n    "read": ["/a" "/b"]\n  }\n}\n'


def test_malformed_json_names_file_line_column(env):
    p = write(env.dir / "bad.json", BAD_JSON)
    e = err(profiles.resolve, p)
    assert (e.line, e.column) == (4, 19)  # the "/b" that should have been preceded by a comma
    assert f"{p}:4:19" in str(e)
    assert "malformed JSON" in str(e)
    e = err(profiles.validate_file, p)
    assert (e.line, e.column) == (4, 19)


def test_jsonc_comments_and_trailing_commas_keep_line_numbers(env):
    text = (
        '{\n'
        '  // a line comment with "quotes" and /* an opener\n'
        '  "meta": {"name": "x", "description": "http://x /* not a comment */ // nor this",},\n'
        '  /* a block\n'
        '     comment */ "filesystem": {\n'
        '    "read": ["/a",], "write": ["/a" "/b"]\n'
        '  },\n'
        '}\n'
    )
    p = write(env.dir / "c.json", text)
    e = err(profiles.resolve, p)
    assert (e.line, e.column) == (6, 37)
    assert f"{p}:6:37" in str(e)
    # strip_jsonc keeps length and newlines
    cleaned = strip_jsonc(text)
    assert len(cleaned) == len(text) and cleaned.count("\n") == text.count("\n")


def test_jsonc_valid_document_parses_and_keeps_strings(env):
    text = (
        '{\n'
        '  // comment\n'
        '  "meta": {"description": "see http://x /* kept */ and // kept", "name": "a\\"b//c",},\n'
        '  /* block */ "filesystem": {"read": ["/a", "/b",],},  // trailing\n'
        '  "workdir": {"access": "read"},\n'
        '}\n'
        '/* final comment */\n'
    )
    p = write(env.dir / "ok.jsonc", text)
    r = profiles.resolve(p)
    assert r.data["meta"]["description"] == "see http://x /* kept */ and // kept"
    assert r.data["meta"]["name"] == 'a"b//c'
    assert r.data["filesystem"]["read"] == ["/a", "/b"]
    assert r.workdir_access == "read"
    assert profiles.validate_file(p) == ([], [])


def test_malformed_yaml_names_file_line_column(env):
    p = write(env.dir / "bad.yaml", "meta:\n  name: x\nfilesystem:\n  read: [/a, /b\nworkdir: {access: read}\n")
    e = err(profiles.resolve, p)
    assert "malformed YAML" in str(e)
    assert (e.line, e.column) == (5, 8)
    assert f"{p}:5:8" in str(e)
    p2 = write(env.dir / "bad2.yml", "meta:\n  name: x\nfilesystem:\n  read:\n    - /a\n   - /b\n")
    e = err(profiles.validate_file, p2)
    assert (e.line, e.column) == (6, 4)
    assert f"{p2}:6:4" in str(e)


def test_yaml_profile_loads(env):
    p = write(env.dir / "ok.yaml", (
        "# a comment\n"
        "extends: claude-code\n"
        "filesystem:\n"
        "  read:\n"
        "    - /opt/y\n"
        "    - {path: /opt/mac, when: macos}\n"
        "network:\n"
        "  network_profile: null\n"
        "workdir: {access: read}\n"
    ))
    r = profiles.resolve(p)
    assert r.data["filesystem"]["read"] == ["/opt/y"]
    assert not r.needs_proxy()
    assert r.workdir_access == "read"


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_unknown_key_names_dotted_path_suggests_and_gives_line(env, suffix):
    if suffix == ".json":
        text = '{\n  "meta": {"name": "x"},\n  "filesystem": {\n    "read": [],\n    "alow": ["/a"]\n  }\n}\n'
    else:
        text = "meta:\n  name: x\nfilesystem:\n  read: []\n  alow: [/a]\n"
    p = write(env.dir / f"typo{suffix}", text)
    e = err(profiles.resolve, p)
    assert "filesystem.alow" in str(e)
    assert e.key == "filesystem.alow"
    assert e.line == 5
    assert f"{p}:5" in str(e)
    assert "did you mean 'allow'" in str(e) + " " + e.hint
    problems, legacy = profiles.validate_file(p)
    assert len(problems) == 1 and "filesystem.alow" in problems[0] and f"{p}:5" in problems[0]
    assert "allow" in problems[0]


def test_unknown_top_level_key_suggests(env):
    p = write(env.dir / "p.json", '{"filesystm": {}}')
    e = err(profiles.resolve, p)
    assert "filesystm" in str(e)
    assert "filesystem" in str(e) + e.hint


@pytest.mark.parametrize("doc, key, needle", [
    ({"filesystem": {"read": "/x"}}, "filesystem.read", "expected a list"),
    ({"filesystem": {"read": [5]}}, "filesystem.read.0", "expected"),
    ({"network": {"block": "yes"}}, "network.block", "true/false"),
    ({"workdir": {"access": "rw"}}, "workdir.access", "not one of"),
    ({"workdir": "readwrite"}, "workdir", "expected an object"),
    ({"extends": 3}, "extends", "expected"),
    ({"extends": []}, "extends", ""),
    ({"meta": {"name": 3}}, "meta.name", "expected a string"),
    ({"environment": {"set_vars": {"A": 1}}}, "environment.set_vars.A", "expected a string"),
    ({"groups": {"include": [{"when": "linux"}]}}, "groups.include.0", ""),
    ({"filesystem": {"read": [{"path": "/x", "when": "linux", "extra": 1}]}}, "filesystem.read.0.extra", "unknown key"),
    ({"security": {"signal_mode": "nope"}}, "security.signal_mode", ""),
])
def test_wrong_types_name_the_key(env, doc, key, needle):
    p = write(env.dir / "p.json", doc)
    e = err(profiles.resolve, p)
    assert e.key == key
    assert key in str(e) and needle in str(e)
    problems, _ = profiles.validate_file(p)
    assert problems and any(key in x for x in problems)


def test_enum_typo_suggests(env):
    p = write(env.dir / "p.json", {"workdir": {"access": "reed"}})
    e = err(profiles.resolve, p)
    assert "did you mean 'read'" in str(e) + e.hint


@pytest.mark.parametrize("port, needle", [(70000, "65535"), (0, "minimum"), (-1, "minimum"), ("80", "integer"),
                                          (True, "integer"), (8080.5, "integer")])
def test_bad_ports(env, port, needle):
    text = '{\n  "network": {\n    "open_port": [\n      8080, PORT]\n  }\n}\n'.replace("PORT", json.dumps(port))
    p = write(env.dir / "p.json", text)
    e = err(profiles.resolve, p)
    assert e.key == "network.open_port.1"
    assert needle in str(e)
    assert e.line == 3  # the line of the key


@pytest.mark.parametrize("key", ["listen_port", "connect_port", "open_port"])
def test_port_70000_in_every_port_list(env, key):
    p = write(env.dir / "p.json", {"network": {key: [70000]}})
    e = err(profiles.resolve, p)
    assert f"network.{key}.0" in str(e) and "70000" in str(e)


def test_validate_file_lists_every_problem(env):
    p = write(env.dir / "p.json", '{\n  "filesystem": {"alow": []},\n  "network": {"open_port": [70000]},\n'
                                  '  "workdir": {"access": "x"}\n}\n')
    problems, legacy = profiles.validate_file(p)
    assert len(problems) == 3
    joined = "\n".join(problems)
    for needle in ("filesystem.alow", "network.open_port.0", "workdir.access", f"{p}:2", f"{p}:3", f"{p}:4"):
        assert needle in joined
    e = err(profiles.resolve, p)
    assert "2 more" in str(e)


@pytest.mark.parametrize("section", ["include", "exclude"])
def test_unknown_group_names_it_and_suggests(env, section):
    p = write(env.dir / "p.json", {"groups": {section: ["node_runtim"]}})
    e = err(profiles.resolve, p)
    assert "node_runtim" in str(e) and f"groups.{section}" in str(e)
    assert p in str(e)
    assert "node_runtime" in e.hint


def test_unknown_group_in_base_names_the_base(env):
    base = write(env.dir / "base.json", {"groups": {"include": ["no_such_group"]}})
    c = write(env.dir / "c.json", {"extends": "base"})
    e = err(profiles.resolve, c)
    assert "no_such_group" in str(e) and base in str(e)


def test_cycle_names_the_chain(env):
    a = write(env.dir / "a.json", {"extends": "b"})
    write(env.dir / "b.json", {"extends": "a"})
    e = err(profiles.resolve, a)
    assert "cycle" in str(e)
    import re

    assert re.search(r"a\.json -> \S*b\.json -> \S*a\.json", str(e)), str(e)


def test_three_way_cycle_and_self_cycle(env):
    a = write(env.dir / "a.json", {"extends": "b"})
    write(env.dir / "b.json", {"extends": "c"})
    write(env.dir / "c.json", {"extends": ["default", "a"]})
    e = err(profiles.resolve, a)
    assert "a.json -> " in str(e) and "b.json -> " in str(e) and "c.json -> " in str(e)
    s = write(env.dir / "self.json", {"extends": str(env.dir / "self.json")})
    e = err(profiles.resolve, s)
    assert "cycle" in str(e) and "self.json -> " in str(e)


def test_fixed_relative_extends_path_is_relative_to_the_profile(env):
    write(env.tmp / "shared" / "base.json", {"filesystem": {"read": ["/shared"]}})
    write(env.dir / "sib.json", {"filesystem": {"read": ["/sib"]}})
    p = write(env.dir / "p.json", {"extends": ["./sib.json", "../shared/base.json"]})
    # cwd is env.work, not env.dir
    r = profiles.resolve(p)
    assert r.data["filesystem"]["read"] == ["/sib", "/shared"]


def _chain(d: Path, n: int) -> str:
    """p0 extends p1 extends ... p{n}: ``n`` levels of extends."""
    for i in range(n + 1):
        write(d / f"p{i}.json", {"extends": f"p{i + 1}"} if i < n else {"filesystem": {"read": ["/deepest"]}})
    return str(d / "p0.json")


def test_depth_ten_is_allowed(env):
    r = profiles.resolve(_chain(env.dir, 10))
    assert len(r.chain) == 11
    assert r.data["filesystem"]["read"] == ["/deepest"]


def test_depth_over_ten_errors(env):
    e = err(profiles.resolve, _chain(env.dir, 11))
    assert "deeper than 10" in str(e)
    assert "p0.json" in str(e) and "p11.json" in str(e)


def test_legacy_keys_load_and_map_to_canonical(env):
    p = write(env.dir / "legacy.json", {
        "filesystem": {"read": ["/canonical"]},
        "policy": {
            "add_allow_read": ["/lr", "/canonical"],
            "add_allow_write": ["/lw"],
            "add_allow_readwrite": ["/lrw"],
            "add_deny_access": ["/ld"],
            "exclude_groups": ["user_tools"],
            "override_deny": ["/lo"],
        },
        "security": {"groups": ["node_runtime"], "signal_mode": "isolated"},
    })
    r = profiles.resolve(p)
    fs = r.data["filesystem"]
    assert fs["read"] == ["/canonical", "/lr"]
    assert fs["write"] == ["/lw"] and fs["allow"] == ["/lrw"]
    assert fs["deny"] == ["/ld"] and fs["bypass_protection"] == ["/lo"]
    assert "node_runtime" in r.groups and "user_tools" not in r.groups
    assert "policy" not in r.data and "groups" not in r.data["security"]
    assert r.data["security"]["signal_mode"] == "isolated"
    got = {(old, new) for _label, old, new in r.legacy}
    assert {label for label, _o, _n in r.legacy} == {p}
    assert got == {("policy.add_allow_read", "filesystem.read"), ("policy.add_allow_write", "filesystem.write"),
                   ("policy.add_allow_readwrite", "filesystem.allow"), ("policy.add_deny_access", "filesystem.deny"),
                   ("policy.exclude_groups", "groups.exclude"), ("policy.override_deny", "filesystem.bypass_protection"),
                   ("security.groups", "groups.include")}
    problems, legacy = profiles.validate_file(p)
    assert problems == []
    assert ("policy.add_deny_access", "filesystem.deny") in legacy and ("security.groups", "groups.include") in legacy


def test_legacy_keys_in_a_base_are_reported_with_its_label(env):
    base = write(env.dir / "base.json", {"policy": {"add_deny_access": ["/x"]}})
    c = write(env.dir / "c.json", {"extends": "base"})
    r = profiles.resolve(c)
    assert r.legacy == [(base, "policy.add_deny_access", "filesystem.deny")]
    assert r.data["filesystem"]["deny"] == ["/x"]


def test_deprecated_aliases_move_to_canonical_and_are_reported(env):
    p = write(env.dir / "alias.json", {"network": {"proxy_allow": ["a.example"], "allow_domain": ["b.example"],
                                                   "port_allow": [8080]},
                                       "undo": {"exclude_patterns": ["*.log"]}})
    r = profiles.resolve(p)
    net = r.section("network")
    assert set(net["allow_domain"]) == {"a.example", "b.example"}
    assert net["open_port"] == [8080] and "proxy_allow" not in net and "port_allow" not in net
    assert r.section("rollback") == {"exclude_patterns": ["*.log"]}
    olds = {old for _l, old, _n in r.legacy}
    assert {"network.proxy_allow", "network.port_allow", "undo"} <= olds


def test_unknown_legacy_key_errors_and_suggests(env):
    p = write(env.dir / "p.json", '{\n  "policy": {\n    "add_allow_reed": ["/x"]\n  }\n}\n')
    e = err(profiles.resolve, p)
    assert "policy.add_allow_reed" in str(e)
    assert e.line == 3
    assert "add_allow_read" in e.hint
    e = err(profiles.validate_file, p)
    assert "policy.add_allow_reed" in str(e)


def test_legacy_policy_section_must_be_an_object(env):
    p = write(env.dir / "p.json", {"policy": ["add_allow_read"]})
    e = err(profiles.resolve, p)
    assert "policy" in str(e)


@pytest.mark.parametrize("when, kept", [
    ("linux", True), ("macos", False), ("!macos", True), ("!linux", False), ("macos:>=15", False),
    (["macos", "linux"], True), (["macos"], False), (["macos", "!linux"], False),
    ("linux:no-such-distro-xyz", False), ("!linux:no-such-distro-xyz", True), ("LINUX", True), (" linux ", True),
])
def test_conditional_paths(env, when, kept):
    p = write(env.dir / "p.json", {"filesystem": {"read": ["/always", {"path": "/cond", "when": when}],
                                                  "deny": [{"path": "/cond-deny", "when": when}]}})
    r = profiles.resolve(p)
    assert r.data["filesystem"]["read"] == (["/always", "/cond"] if kept else ["/always"])
    assert r.data["filesystem"]["deny"] == (["/cond-deny"] if kept else [])


def test_conditional_path_without_when_is_kept(env):
    p = write(env.dir / "p.json", {"filesystem": {"allow": [{"path": "/nowhen"}]}})
    assert profiles.resolve(p).data["filesystem"]["allow"] == ["/nowhen"]


def test_conditional_group_include(env):
    p = write(env.dir / "p.json", {"groups": {"include": [
        {"name": "node_runtime", "when": "linux"}, {"name": "python_runtime", "when": "macos"},
        {"name": "go_runtime", "when": ["macos", "!macos"]}, {"name": "rust_runtime"}]}})
    r = profiles.resolve(p)
    assert "node_runtime" in r.groups and "go_runtime" in r.groups and "rust_runtime" in r.groups
    assert "python_runtime" not in r.groups
    # a macOS-only conditional unknown group is dropped before the group check
    q = write(env.dir / "q.json", {"groups": {"include": [{"name": "deny_keychains_macos", "when": "macos"}]}})
    profiles.resolve(q)


def test_top_level_must_be_an_object(env):
    for i, text in enumerate(["[]", "3", '"x"', "true"]):
        p = write(env.dir / f"t{i}.json", text)
        e = err(profiles.resolve, p)
        assert "must be an object" in str(e) and p in str(e)
    y = write(env.dir / "t.yaml", "- a\n- b\n")
    assert "must be an object" in str(err(profiles.resolve, y))


def test_empty_files(env):
    e = err(profiles.resolve, write(env.dir / "e.json", ""))
    assert "malformed JSON" in str(e) and (e.line, e.column) == (1, 1)
    # an empty YAML document is an empty profile
    r = profiles.resolve(write(env.dir / "e.yaml", "# nothing\n"))
    assert r.groups == DEFAULT_GROUPS


def test_non_utf8_file(env):
    p = env.dir / "bin.json"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b'{"meta": {"name": "\xff\xfe"}}')
    e = err(profiles.resolve, str(p))
    assert "UTF-8" in str(e) and str(p) in str(e)


def test_unreadable_file_is_a_profile_error(env):
    d = env.dir / "dir.json"
    d.mkdir(parents=True)
    with pytest.raises(NonoError):
        profiles.resolve(str(d))


# ------------------------------------------------------------------------------------------
# Regressions: bugs found while writing these tests, now fixed
# ------------------------------------------------------------------------------------------
def test_fixed_deeply_nested_json_is_a_profile_error(env):
    p = write(env.dir / "deep.json", "[" * 100000)
    only_nono_errors(profiles.resolve, p)


def test_fixed_huge_integer_literal_is_a_profile_error(env):
    p = write(env.dir / "big.json", '{"network": {"open_port": [' + "9" * 5000 + "]}}")
    only_nono_errors(profiles.validate_file, p)


def test_fixed_huge_yaml_integer_is_a_profile_error(env):
    p = write(env.dir / "big.yaml", "network:\n  open_port: [" + "9" * 5000 + "]\n")
    only_nono_errors(profiles.resolve, p)


def test_fixed_recursive_yaml_alias_is_a_profile_error(env):
    p = write(env.dir / "r.yaml", "command_policies: &a {x: *a}\n")
    only_nono_errors(profiles.resolve, p)


def test_fixed_deep_but_parseable_open_map_is_a_profile_error(env):
    p = write(env.dir / "d.json", '{"command_policies": {"a": ' + "[" * 900 + "]" * 900 + "}}")
    only_nono_errors(profiles.resolve, p)


@pytest.mark.parametrize("text", [
    "meta:\n  version: 2020-02-30\n",          # an impossible date, plain scalar: ValueError
    "meta:\n  name: !!int\n",                  # IndexError
    "network:\n  open_port: [!!int 0x]\n",     # ValueError
    "meta:\n  name: !!float x\n",              # ValueError
    "meta:\n  name: !!bool x\n",               # KeyError
    "meta:\n  name: !!timestamp x\n",          # AttributeError
])
def test_fixed_yaml_constructor_errors_are_profile_errors(env, text):
    p = write(env.dir / "y.yaml", text)
    for fn in (profiles.resolve, profiles.validate_file):
        only_nono_errors(fn, p)


_FRESH = r"""
import os, sys
from nono.errors import NonoError
from nono.policy import profiles
try:
    profiles.resolve(sys.argv[1])
except NonoError as exc:
    print("NonoError", exc)
    sys.exit(0)
except BaseException as exc:
    print("ESCAPED", type(exc).__name__, exc)
    sys.exit(3)
print("no error")
sys.exit(4)
"""


def test_fixed_malformed_json_in_fresh_interpreter(env):
    p = write(env.dir / "bad.json", BAD_JSON)
    envv = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    out = subprocess.run([sys.executable, "-c", _FRESH, p], capture_output=True, text=True, env=envv, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "malformed JSON" in out.stdout and f"{p}:4:19" in out.stdout


def test_fixed_lone_comma_is_not_jsonc(env):
    p = write(env.dir / "c.json", '{"filesystem": {"read": [,]}}')
    with pytest.raises(ProfileError):
        profiles.resolve(p)


# ------------------------------------------------------------------------------------------
# 4. to_policy
# ------------------------------------------------------------------------------------------
def test_to_policy_grants_denies_bypass_env_network(env):
    p = write(env.dir / "p.json", {
        "filesystem": {"read": ["/r"], "write": ["/w"], "allow": ["/rw"], "read_file": ["/rf"], "write_file": ["/wf"],
                       "allow_file": ["/rwf"], "deny": ["/den"], "bypass_protection": ["~/.ssh/known_hosts"]},
        "environment": {"allow_vars": ["MY_*"], "deny_vars": ["AWS_*"], "set_vars": {"K": "v", "Z": "1"}},
        "network": {"block": True, "open_port": [8080], "connect_port": [443], "listen_port": [9000]},
    })
    pol = profiles.resolve(p).to_policy(str(env.work))
    grants = {(g.path, g.access, g.kind) for g in pol.grants}
    assert grants == {("/r", "read", "any"), ("/w", "write", "any"), ("/rw", "readwrite", "any"),
                      ("/rf", "read", "file"), ("/wf", "write", "file"), ("/rwf", "readwrite", "file")}
    for g in pol.grants:
        assert g.source == f"profile:{p}"  # a file profile: its path; a built-in: its name
    assert ("/den", f"profile:{p}") in pol.denies
    assert pol.bypass == (str(env.home / ".ssh/known_hosts"),)
    assert pol.env_allow == ("MY_*",) and pol.env_deny == ("AWS_*",)
    assert set(pol.env_set) == {("K", "v"), ("Z", "1")}
    assert pol.network == "block"
    assert pol.connect_ports == (443,) and pol.loopback_ports == (8080,) and set(pol.bind_ports) == {8080, 9000}
    assert set(pol.groups) == set(DEFAULT_GROUPS)


def test_to_policy_sources_name_the_contributing_profile(env):
    base = write(env.dir / "base.json", {"filesystem": {"read": ["/from-base"]}})
    c = write(env.dir / "c.json", {"extends": "base", "filesystem": {"read": ["/from-child"]}})
    pol = profiles.resolve(c).to_policy(str(env.work))
    src = {g.path: g.source for g in pol.grants}
    assert src == {"/from-base": f"profile:{base}", "/from-child": f"profile:{c}"}


def test_to_policy_ports_alone_restrict_network(env):
    p = write(env.dir / "p.json", {"network": {"connect_port": [443]}})
    pol = profiles.resolve(p).to_policy(str(env.work))
    assert pol.network == "block" and pol.connect_ports == (443,)
    assert profiles.resolve(write(env.dir / "q.json", {})).to_policy(str(env.work)).network == "allow"


def test_to_policy_network_profile_is_never_unrestricted(env):
    # a network profile means filtering (or, without the proxy, a blocked network: fail closed), never "allow"
    r = profiles.resolve("claude-code")
    assert r.to_policy(str(env.work)).network in ("block", "proxy")
    assert r.to_policy(str(env.work), allow_unfiltered_network=True).network == "allow"
    assert profiles.resolve("default").to_policy(str(env.work)).network == "allow"


def test_to_policy_block_wins_over_proxy_settings(env):
    # network.block is stricter than any proxy setting a base may carry
    p = write(env.dir / "p.json", {"extends": "claude-code", "network": {"block": True, "allow_domain": ["example.com"]}})
    r = profiles.resolve(p)
    assert not r.needs_proxy()
    assert r.to_policy(str(env.work)).network == "block"
    assert r.to_policy(str(env.work), allow_unfiltered_network=True).network == "block"


def test_to_policy_expansion(env, monkeypatch):
    xdg = env.tmp / "other-config"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(xdg))
    monkeypatch.setenv("TMPDIR", "/var/tmp")
    wd = env.tmp / "wd"
    p = write(env.dir / "p.json", {"filesystem": {"read": [
        "$WORKDIR/docs", "~/notes", "~", "$HOME/h", "$XDG_CONFIG_HOME/tool", "${XDG_CONFIG_HOME}/braced",
        "$XDG_CACHE_HOME/c", "$XDG_STATE_HOME/s", "$XDG_DATA_HOME/d", "$TMPDIR/t", "/u/$UID",
        "rel/dir", "../sibling", "$WORKDIR/../up", "$NONO_CONFIG/x"]}})
    pol = profiles.resolve(p).to_policy(str(wd))
    got = [g.path for g in pol.grants]
    h = str(env.home)
    assert got == [f"{wd}/docs", f"{h}/notes", h, f"{h}/h", f"{xdg}/tool", f"{xdg}/braced",
                   f"{h}/.cache/c", f"{h}/.local/state/s", f"{h}/.local/share/d", "/var/tmp/t", f"/u/{os.getuid()}",
                   f"{wd}/rel/dir", f"{env.tmp}/sibling", f"{env.tmp}/up", f"{xdg}/nono/x"]


@pytest.mark.parametrize("key", ["read", "allow_file", "deny", "bypass_protection", "unix_socket"])
def test_to_policy_unset_variable_names_the_key(env, key):
    p = write(env.dir / "p.json", {"filesystem": {key: ["$NOPE_NOT_SET/x"]}})
    r = profiles.resolve(p)  # resolving works: variables are expanded for a concrete run
    e = err(r.to_policy, str(env.work))
    assert f"filesystem.{key}" in str(e) and "NOPE_NOT_SET" in str(e)
    assert e.key == f"filesystem.{key}"
    assert p in str(e)


def test_to_policy_reserved_env_var_is_a_nono_error(env):
    p = write(env.dir / "p.json", {"environment": {"set_vars": {"PATH": "/evil"}}})
    with pytest.raises(NonoError):
        profiles.resolve(p).to_policy(str(env.work))


@pytest.mark.parametrize("name", BUILTINS)
def test_every_builtin_resolves_and_builds_a_policy(env, name):
    r = profiles.resolve(name)
    assert r.name == name and r.label == f"built-in:{name}"
    for g in REQUIRED_GROUPS:
        assert g in r.groups
    pol = r.to_policy(str(env.work))
    assert set(REQUIRED_GROUPS) <= set(pol.groups)
    assert r.workdir_access == "readwrite"
    if name != "default":
        assert r.chain[0] == "built-in:default"


def test_policy_from_profile_api(env):
    import nono

    pol = nono.Policy.from_profile("codex", workdir=str(env.work))
    assert "codex_linux" in pol.groups and pol.network in ("block", "proxy")
    assert nono.Policy.from_profile("codex", allow_unfiltered_network=True).network == "allow"


# ------------------------------------------------------------------------------------------
# 5. Schema
# ------------------------------------------------------------------------------------------
jsonschema = pytest.importorskip("jsonschema")


def _js_valid(doc) -> bool:
    return jsonschema.Draft202012Validator(schema.schema()).is_valid(doc)


def test_schema_is_a_valid_draft_2020_12_schema():
    jsonschema.Draft202012Validator.check_schema(schema.schema())
    assert schema.schema()["$schema"] == "https://json-schema.org/draft/2020-12/schema"


@pytest.mark.parametrize("name", BUILTINS)
def test_every_builtin_validates_with_both_validators(name):
    doc = json.loads((BUILTIN_DIR / f"{name}.json").read_text())
    errors = list(jsonschema.Draft202012Validator(schema.schema()).iter_errors(doc))
    assert errors == [], [e.message for e in errors]
    assert schema.validate(doc) == []
    assert profiles.validate_file(str(BUILTIN_DIR / f"{name}.json")) == ([], [])


HANDWRITTEN = [
    ({}, True),
    ({"$schema": "https://nono.sh/schemas/nono-profile.schema.json"}, True),
    ({"extends": "default"}, True),
    ({"extends": ["default", "codex"]}, True),
    ({"extends": []}, False),
    ({"extends": ""}, False),
    ({"extends": [""]}, False),
    ({"meta": {"name": "x", "version": "1", "description": None, "author": None}}, True),
    ({"meta": {"nam": "x"}}, False),
    ({"filesystem": {"read": ["/a", {"path": "/b", "when": "linux"}, {"path": "/c", "when": ["macos", "!linux"]}]}}, True),
    ({"filesystem": {"read": [{"path": "/b", "when": []}]}}, False),
    ({"filesystem": {"read": [{"when": "linux"}]}}, False),
    ({"filesystem": {"read": [""]}}, False),
    ({"filesystem": {"alow": []}}, False),
    ({"network": {"block": True, "open_port": [1, 65535], "listen_port": [8080]}}, True),
    ({"network": {"open_port": [0]}}, False),
    ({"network": {"open_port": [65536]}}, False),
    ({"network": {"network_profile": None, "credentials": []}}, True),
    ({"network": {"allow_domain": ["a.com", {"domain": "b.com", "endpoints": [{"method": "GET", "path": "/x"}]}]}}, True),
    ({"network": {"allow_domain": [{"domain": "b.com"}]}}, False),
    ({"network": {"custom_credentials": {"svc": {"upstream": "https://api.example.com"}}}}, True),
    ({"network": {"custom_credentials": {"svc": {}}}}, False),
    ({"environment": None}, True),
    ({"environment": {"allow_vars": ["A"], "deny_vars": [], "set_vars": {"K": "v"}}}, True),
    ({"environment": {"set_vars": {"K": 1}}}, False),
    ({"workdir": {"access": "none"}}, True),
    ({"workdir": {"access": "all"}}, False),
    ({"groups": {"include": ["a", {"name": "b", "when": "linux"}], "exclude": []}}, True),
    ({"groups": {"include": [{"name": ""}]}}, False),
    ({"security": {"signal_mode": "allow_same_sandbox", "ipc_mode": None, "capability_elevation": False}}, True),
    ({"security": {"signal_mode": "everything"}}, False),
    ({"linux": {"sandbox_policy": "landlock", "af_unix_mediation": None}}, True),
    ({"rollback": {"exclude_patterns": ["*.log"]}, "undo": {"exclude_globs": ["x"]}}, True),
    ({"command_policies": {"anything": {"goes": [1, 2, None]}}}, True),
    ({"interactive": "yes"}, False),
    ({"unknown_top": 1}, False),
    ({"policy": {"add_allow_read": ["/x"]}}, False),  # legacy keys are drained before validation, not in the schema
    ([], False),
    ("string", False),
]


@pytest.mark.parametrize("doc, valid", HANDWRITTEN, ids=[json.dumps(d)[:60] for d, _ in HANDWRITTEN])
def test_our_validator_and_jsonschema_agree(doc, valid):
    assert _js_valid(doc) is valid
    assert (schema.validate(doc) == []) is valid


def test_fixed_integral_float_port_agreement():
    doc = {"network": {"open_port": [8080.0]}}
    assert (schema.validate(doc) == []) is _js_valid(doc)


def test_fixed_unique_items_agreement():
    doc = {"credential_capture": {"x": {"command": ["gh"], "output": {"format": "json", "allow_headers": ["A", "A"]}}}}
    assert not _js_valid(doc)
    assert schema.validate(doc) != []


def test_schema_command_prints_the_same_schema(env, capsys):
    from nono.cli.main import main

    assert main(["profile", "schema"]) == 0
    assert json.loads(capsys.readouterr().out) == schema.schema()


# ------------------------------------------------------------------------------------------
# Found in passing: lone surrogates in a profile reach the output and the kernel
# ------------------------------------------------------------------------------------------
def test_fixed_lone_surrogate_in_profile_gives_clean_error(env):
    p = write(env.dir / "s.json", '{"filesystem": {"read": ["/x\\ud800"]}, "meta": {"description": "\\ud800"}}')
    envv = dict(os.environ, PYTHONPATH=str(REPO / "src"), LC_ALL="C.UTF-8")
    for argv in (["profile", "show", p], ["run", "--profile", p, "--dry-run", "--", "true"]):
        out = subprocess.run([sys.executable, "-m", "nono", *argv], capture_output=True, text=True, env=envv,
                             timeout=60)
        assert "Traceback" not in out.stderr, out.stderr[-500:]
