"""Credentials without a network: sources, service data, custom routes, prepare(), phantoms, the CLI."""

from __future__ import annotations

import io
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from nono.credentials import phantom, sources
from nono.credentials.route import CredentialError
from nono.credentials.services import builtin_names, parse_allow_endpoint, parse_spec
from nono.credentials.session import prepare
from nono.errors import NonoError

keyring = pytest.importorskip("keyring")
from keyring.backend import KeyringBackend  # noqa: E402
from keyring.errors import PasswordDeleteError  # noqa: E402

SECRET = "sk-test-REAL-0123456789"


class MemoryKeyring(KeyringBackend):
    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.store: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.store.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.store[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if self.store.pop((service, username), None) is None:
            raise PasswordDeleteError("missing")


@pytest.fixture
def memkeyring() -> Iterator[MemoryKeyring]:
    old = keyring.get_keyring()
    ring = MemoryKeyring()
    keyring.set_keyring(ring)
    yield ring
    keyring.set_keyring(old)


@pytest.fixture
def nokeyring() -> Iterator[None]:
    from keyring.backends import fail

    old = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    yield
    keyring.set_keyring(old)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GITHUB_TOKEN", "GH_TOKEN", "GEMINI_API_KEY", "GOOGLE_API_KEY",
                "GITLAB_TOKEN"):
        monkeypatch.delenv(var, raising=False)


def secret_file(tmp_path: Path, mode: int = 0o600, text: str = SECRET + "\n") -> Path:
    p = tmp_path / "key"
    p.write_text(text)
    p.chmod(mode)
    return p


# -- sources -----------------------------------------------------------------------------
def test_env_source(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_KEY", SECRET)
    assert sources.load("env://MY_KEY") == SECRET
    with pytest.raises(CredentialError, match="env://NOPE: the variable is not set"):
        sources.load("env://NOPE")


def test_file_source_refuses_open_permissions(tmp_path: Path) -> None:
    assert sources.load(f"file://{secret_file(tmp_path)}") == SECRET
    p = secret_file(tmp_path, 0o644)
    with pytest.raises(CredentialError, match="too open") as info:
        sources.load(f"file://{p}")
    assert f"chmod 600 {p}" in info.value.hint and SECRET not in str(info.value)


def test_file_source_errors(tmp_path: Path) -> None:
    real = secret_file(tmp_path)
    link = tmp_path / "link"
    link.symlink_to(real)
    for ref, msg in ((f"file://{link}", "symbolic links"), (f"file://{tmp_path}/missing", "no such file"),
                     ("file://relative/key", "absolute path"), (f"file://{tmp_path}", "not a regular file")):
        with pytest.raises(CredentialError) as info:
            sources.load(ref)
        assert msg in info.value.diagnostics()


@pytest.mark.parametrize("text", ["a\nb\n", "a\x00b", "\n"])
def test_secrets_with_control_characters_or_empty_are_refused(tmp_path: Path, text: str) -> None:
    with pytest.raises(CredentialError, match="control characters|empty") as info:
        sources.load(f"file://{secret_file(tmp_path, text=text)}")
    assert "a\nb" not in str(info.value)


@pytest.mark.parametrize(("ref", "msg"), [
    ("bw://item", "not supported"), ("cmd://x", "not supported"), ("ftp://x", "unknown credential source"),
    ("keyring://onlyservice", "keyring://SERVICE/ACCOUNT"), ("env://1BAD", "invalid variable"), ("", "empty"),
    ("bad name!", "invalid credential name"),
])
def test_bad_references(ref: str, msg: str) -> None:
    with pytest.raises(CredentialError, match=msg):
        sources.load(ref)


def test_op_source_without_op_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(CredentialError, match="1Password CLI .op. is not installed") as info:
        sources.load("op://vault/item/field")
    assert "env://" in info.value.hint and "file://" in info.value.hint


def test_op_source_with_a_fake_op(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    op = tmp_path / "op"
    op.write_text(f"#!/bin/sh\n[ \"$1\" = read ] && [ \"$3\" = op://v/i/f ] && printf '{SECRET}' && exit 0\n"
                  "echo 'item not found' >&2; exit 1\n")
    op.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert sources.load("op://v/i/f") == SECRET
    with pytest.raises(CredentialError, match="op read failed: item not found"):
        sources.load("op://v/i/other")


def test_keyring_source(memkeyring: MemoryKeyring) -> None:
    memkeyring.store[("nono", "openai")] = SECRET
    memkeyring.store[("other", "acct")] = "x" * 10
    assert sources.load("openai") == SECRET
    assert sources.load("keyring://other/acct") == "x" * 10
    with pytest.raises(CredentialError, match="no such entry") as info:
        sources.load("anthropic")
    assert "nono credential set anthropic" in info.value.hint


def test_headless_machine_names_the_alternatives(nokeyring: None) -> None:
    with pytest.raises(NonoError, match="no system keyring is available") as info:
        sources.load("openai")
    assert "env://VAR" in info.value.hint and "file:///" in info.value.hint


# -- phantoms ----------------------------------------------------------------------------
def test_phantom_shapes() -> None:
    hexes = {phantom.make("hex") for _ in range(50)}
    assert len(hexes) == 50 and all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hexes)
    gh = phantom.make("github")
    assert re.fullmatch(r"ghp_[0-9A-Za-z]{36}", gh)
    import binascii

    assert phantom._base62(binascii.crc32(gh[4:34].encode()), 6) == gh[34:]
    jwt = phantom.make("jwt")
    assert jwt.count(".") == 2 and jwt.startswith("eyJ")
    with pytest.raises(ValueError):
        phantom.make("nope")


# -- services ----------------------------------------------------------------------------
def test_builtin_services_are_data() -> None:
    assert {"openai", "anthropic", "gemini", "google-ai", "github", "gitlab"} <= set(builtin_names())


@pytest.mark.parametrize(("entry", "msg"), [
    ({"upstream": "http://api.example.com"}, "must use https"),
    ({"upstream": "ftp://x"}, "not an https:// URL"),
    ({"upstream": "https://u@h.example.com"}, "scheme://host"),
    ({"upstream": "https://h.example.com", "inject_mode": "magic"}, "inject_mode must be one of"),
    ({"upstream": "https://h.example.com", "inject_mode": "query_param"}, "needs query_param_name"),
    ({"upstream": "https://h.example.com", "inject_mode": "url_path", "path_pattern": "/x"}, "path_pattern like"),
    ({"upstream": "https://h.example.com", "credential_format": "Bearer"}, "must contain"),
    ({"upstream": "https://h.example.com", "credential_key": "file:///k"}, "env_var is required"),
    ({"upstream": "https://h.example.com", "auth": {"token_url": "x"}}, "OAuth2"),
    ({"upstream": "https://h.example.com", "aws_auth": {}}, "AWS SigV4"),
    ({"upstream": "https://h.example.com", "bogus": 1}, "unknown key"),
    ({"upstream": "https://h.example.com", "endpoint_rules": [{"method": "GET", "path": "nope"}]}, "endpoint path"),
    ({}, "needs an upstream"),
])
def test_custom_route_errors(entry: dict[str, object], msg: str) -> None:
    with pytest.raises(CredentialError, match=msg):
        parse_spec("svc", entry, custom=True)


def test_custom_route_defaults() -> None:
    spec = parse_spec("my-api", {"upstream": "https://API.example.com:8443/base/", "credential_key": "my_api_key",
                                 "inject_header": "X-Token"}, custom=True)
    assert (spec.host, spec.port, spec.base_path, spec.format) == ("api.example.com", 8443, "/base", "{}")
    assert spec.env_vars == ["MY_API_KEY"] and spec.accept == [("header", "X-Token")]
    local = parse_spec("local", {"upstream": "http://localhost:8080", "credential_key": "env://LOCAL_KEY"}, custom=True)
    assert local.scheme == "http" and local.env_vars == ["LOCAL_KEY"]


def test_allow_endpoint_syntax() -> None:
    service, rule = parse_allow_endpoint("github:GET:/repos/acme/**")
    assert service == "github" and rule.matches("GET", "/repos/acme/x/y") and not rule.matches("POST", "/repos/acme/x")
    for bad in ("github", "github:GET", "github:GET:repos", ":GET:/x"):
        with pytest.raises(CredentialError, match="--allow-endpoint"):
            parse_allow_endpoint(bad)


# -- prepare -----------------------------------------------------------------------------
def test_prepare_from_env_hides_the_secret(monkeypatch: pytest.MonkeyPatch, nokeyring: None) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("GH_TOKEN", "ghp_realrealrealrealrealrealrealrealreal")
    plan = prepare(["openai", "github", "openai"], {}, ["github:GET:/repos/acme/**"])
    assert plan.services == ["openai", "github"]
    env = plan.child_env(4321)
    assert env["OPENAI_BASE_URL"] == "http://127.0.0.1:4321/openai"
    assert re.fullmatch(r"[0-9a-f]{64}", env["OPENAI_API_KEY"])
    assert env["GITHUB_TOKEN"] == env["GH_TOKEN"] and env["GH_TOKEN"].startswith("ghp_") and len(env["GH_TOKEN"]) == 40
    assert env["GITHUB_BASE_URL"] == env["GITHUB_API_URL"] == "http://127.0.0.1:4321/github"
    assert SECRET not in repr(env) and "ghp_real" not in repr(env)
    assert plan.unset_env == set()  # both variables are overwritten with phantoms anyway
    assert plan.allow_hosts == ["api.openai.com:443", "api.github.com:443"]
    assert [str(e.path) for e in plan.routes[1].endpoints] == ["/repos/acme/**"]
    text = f"error with {SECRET} and {plan.routes[1].secret_text()}"
    assert plan.redact(text) == "error with [redacted:openai] and [redacted:github]"
    lines = "\n".join(plan.describe())
    assert "openai: /openai/ -> https://api.openai.com/v1 (secret from env://OPENAI_API_KEY" in lines
    assert SECRET not in lines and env["OPENAI_API_KEY"] not in lines
    assert SECRET not in repr(plan) + repr(plan.routes)
    plan.wipe()
    assert plan.routes[0].secret == bytearray()


def test_prepare_explicit_source_and_unset(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CORP_OPENAI", SECRET)
    plan = prepare(["openai=env://CORP_OPENAI", f"anthropic=file://{secret_file(tmp_path)}"])
    assert plan.unset_env == {"CORP_OPENAI"}
    assert [r.secret_text() for r in plan.routes] == [SECRET, SECRET]


def test_prepare_keyring_first(memkeyring: MemoryKeyring, monkeypatch: pytest.MonkeyPatch) -> None:
    memkeyring.store[("nono", "anthropic")] = SECRET
    monkeypatch.setenv("ANTHROPIC_API_KEY", "from-env-value")
    plan = prepare(["anthropic"])
    assert plan.routes[0].secret_text() == SECRET and plan.unset_env == set()


def test_prepare_missing_secret_lists_what_was_tried(nokeyring: None) -> None:
    with pytest.raises(CredentialError) as info:
        prepare(["openai"])
    text = info.value.diagnostics()
    assert "no secret for credential 'openai'" in text and "no system keyring" in text
    assert "env://OPENAI_API_KEY (not set)" in text and "openai=file:///" in text and "export OPENAI_API_KEY" in text


def test_prepare_unknown_service_and_endpoint_errors() -> None:
    with pytest.raises(CredentialError, match="unknown credential service 'nope'") as info:
        prepare(["nope"])
    assert "openai" in info.value.hint and "custom_credentials" in info.value.hint
    with pytest.raises(CredentialError, match="not an active credential"):
        prepare([], {}, ["github:GET:/x"])


def test_prepare_custom_route(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TG", SECRET)
    plan = prepare(["telegram"], {"telegram": {"upstream": "https://api.telegram.org", "credential_key": "env://TG",
                                               "env_var": "TELEGRAM_TOKEN", "inject_mode": "url_path",
                                               "path_pattern": "/bot{}/",
                                               "endpoint_rules": [{"method": "POST", "path": "/bot*/sendMessage"}]}})
    env = plan.child_env(1)
    assert env["TELEGRAM_BASE_URL"] == "http://127.0.0.1:1/telegram" and env["TELEGRAM_TOKEN"] == plan.routes[0].phantom
    assert plan.unset_env == {"TG"} and plan.routes[0].inject_mode == "url_path"


def test_env_credentials_are_real_and_redacted(monkeypatch: pytest.MonkeyPatch, memkeyring: MemoryKeyring) -> None:
    memkeyring.store[("nono", "openai")] = SECRET
    plan = prepare([], env_credentials=["openai"])
    assert plan.child_env(1) == {"OPENAI": SECRET}
    plan = prepare([], env_credentials={"openai": "OPENAI_API_KEY"})
    assert plan.child_env(1) == {"OPENAI_API_KEY": SECRET}
    assert "visible to the program" in plan.describe()[0] and SECRET not in plan.describe()[0]
    assert plan.redact(SECRET) == "[redacted:OPENAI_API_KEY]"


def test_each_session_gets_new_phantoms(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    assert prepare(["openai"]).routes[0].phantom != prepare(["openai"]).routes[0].phantom


# -- CLI ---------------------------------------------------------------------------------
def run_cli(argv: list[str], stdin: str = "", capsys: pytest.CaptureFixture[str] | None = None,
            monkeypatch: pytest.MonkeyPatch | None = None) -> int:
    from nono.cli.credential import cmd_credential

    if monkeypatch is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    return cmd_credential(argv)


def test_cli_set_list_remove(memkeyring: MemoryKeyring, capsys: pytest.CaptureFixture[str],
                             monkeypatch: pytest.MonkeyPatch) -> None:
    assert run_cli(["set", "openai", "--stdin"], SECRET + "\n", monkeypatch=monkeypatch) == 0
    assert memkeyring.store[("nono", "openai")] == SECRET
    monkeypatch.setenv("SRC_VAR", "v" * 12)
    assert run_cli(["set", "anthropic", "--from-env", "SRC_VAR"], monkeypatch=monkeypatch) == 0
    assert run_cli(["list"], monkeypatch=monkeypatch) == 0
    out = capsys.readouterr().out
    assert "openai       keyring: set" in out and "gitlab       keyring: not set" in out
    assert SECRET not in out and "v" * 12 not in out
    assert run_cli(["remove", "openai"], monkeypatch=monkeypatch) == 0
    assert ("nono", "openai") not in memkeyring.store
    assert run_cli(["remove", "openai"], monkeypatch=monkeypatch) == 1
    assert "no stored credential named 'openai'" in capsys.readouterr().err


def test_cli_prompts_with_getpass(memkeyring: MemoryKeyring, monkeypatch: pytest.MonkeyPatch) -> None:
    import getpass

    fake_stdin = io.StringIO()
    fake_stdin.isatty = lambda: True  # type: ignore[method-assign]
    monkeypatch.setattr(sys, "stdin", fake_stdin)
    monkeypatch.setattr(getpass, "getpass", lambda prompt: SECRET)
    from nono.cli.credential import cmd_credential

    assert cmd_credential(["set", "gitlab"]) == 0 and memkeyring.store[("nono", "gitlab")] == SECRET


def test_cli_errors(memkeyring: MemoryKeyring, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    assert run_cli(["set", "openai"], monkeypatch=monkeypatch) == 1  # stdin is not a terminal
    assert "use --stdin or --from-env" in capsys.readouterr().err
    assert run_cli(["set", "openai", "--stdin"], "\n", monkeypatch=monkeypatch) == 1
    assert run_cli(["set", "openai", "--from-env", "NOT_SET_ANYWHERE"], monkeypatch=monkeypatch) == 1
    assert run_cli(["set"], monkeypatch=monkeypatch) == 2
    assert run_cli(["frob"], monkeypatch=monkeypatch) == 2
    assert run_cli(["set", "env://X", "--stdin"], "x", monkeypatch=monkeypatch) == 1
    assert run_cli([], monkeypatch=monkeypatch) == 2 and run_cli(["--help"]) == 0
    assert memkeyring.store == {}


def test_cli_headless(nokeyring: None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    assert run_cli(["set", "openai", "--stdin"], SECRET, monkeypatch=monkeypatch) == 1
    err = capsys.readouterr().err
    assert "no system keyring is available" in err and "env://VAR" in err and "file:///" in err
    assert run_cli(["list"], monkeypatch=monkeypatch) == 1
    assert "keyring: unavailable" in capsys.readouterr().out


def test_heavy_modules_stay_lazy() -> None:
    import subprocess

    code = ("import sys, nono.credentials.session, nono.cli.credential, nono.proxy.process;"
            "print(sorted(m for m in ('keyring', 'cryptography', 'ssl', 'asyncio') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}).stdout
    assert out.strip() == "[]"
