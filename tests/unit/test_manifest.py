"""Agent manifests (nono manifest create|sign|verify, run --manifest preflight) and run --verify-signature."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from nono import trust
from nono.cli.args import UsageError
from nono.cli.manifest import cmd_manifest
from nono.errors import NonoError
from nono.trust import TrustError
from nono.trust import keys as K
from nono.trust.manifest import (
    PREDICATE_MANIFEST,
    compute_identity,
    create_manifest,
    load_manifest,
    parse_manifest,
    preflight_manifest,
    sign_manifest,
)
from nono.trust.sign import sign_file
from nono.trust.verify import verify_file_signature


@pytest.fixture
def proj(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    p = tmp_path / "proj"
    p.mkdir()
    (p / "system.md").write_text("You are a careful agent.\n")
    (p / "tools.json").write_text('[{"name": "read_file"}]\n')
    (p / "model.json").write_text('{"model": "m-1", "temperature": 0}\n')
    monkeypatch.chdir(p)
    return p


def _key(tmp_path: Path, name: str = "key") -> str:
    ref = f"file://{tmp_path / name}"
    K.generate_key(ref)
    return ref


def _policy(path: Path, refs: list[str], **extra: object) -> None:
    pubs = [{"name": K.identity(r), "key_id": K.identity(r), "public_key": base64.b64encode(K.public_key_der(r)).decode()}
            for r in refs]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"version": 1, "publishers": pubs, **extra}))


def _user_policy() -> Path:
    return Path(trust.user_policy_path())


def _signed(proj: Path, tmp_path: Path, **policy: object) -> tuple[Path, str]:
    key = _key(tmp_path)
    m = create_manifest("agent.manifest.json", prompt="system.md", tools="tools.json", model="model.json")
    sign_manifest(m.path, key)
    _policy(_user_policy(), [key], **policy)
    return Path(m.path), key


def _pre(path: Path | str, proj: Path, *, override: bool = False) -> tuple[trust.manifest.ManifestCheck, list[str]]:
    lines: list[str] = []
    check = preflight_manifest(str(path), policy_dir=str(proj), override=override, out=lines.append)
    return check, lines


# -- format ------------------------------------------------------------------------------
def test_create_writes_an_in_toto_statement(proj: Path) -> None:
    m = create_manifest("agent.manifest.json", prompt="system.md", tools="tools.json", model="model.json")
    doc = json.loads((proj / "agent.manifest.json").read_text())
    assert doc["_type"] == "https://in-toto.io/Statement/v1" and doc["predicateType"] == PREDICATE_MANIFEST
    assert {s["name"] for s in doc["subject"]} == {"system.md", "tools.json", "model.json"}
    assert doc["predicate"]["prompt"]["path"] == "system.md"
    digests = {r: doc["predicate"][r]["sha256"] for r in ("prompt", "tools", "model")}
    assert doc["predicate"]["identity"] == compute_identity(digests) == m.identity
    with pytest.raises(TrustError, match="already exists"):
        create_manifest("agent.manifest.json", prompt="system.md")
    # paths are relative to the manifest's directory
    sub = proj / "out"
    sub.mkdir()
    m2 = create_manifest("out/a.json", prompt="system.md", force=True)
    assert m2.components["prompt"][0] == "../system.md" and m2.identity != m.identity
    assert m2.identity == compute_identity({"prompt": m.components["prompt"][1]})


# -- round trip and failures -------------------------------------------------------------
def test_create_sign_verify_round_trip(proj: Path, tmp_path: Path) -> None:
    path, _key_ref = _signed(proj, tmp_path)
    assert (proj / "agent.manifest.json.bundle").exists()
    check, lines = _pre(path, proj)
    assert check.ok and not lines and check.publisher
    assert check.digest == load_manifest(str(path)).digest and len(check.identity) == 64
    assert set(check.protected_files) == {str(path), str(path) + ".bundle", str(proj / "system.md"),
                                          str(proj / "tools.json"), str(proj / "model.json")}
    fields = check.audit_fields()
    assert fields["sha256"] == check.digest and fields["verified"] is True
    assert fields["components"]["prompt"]["path"] == str(proj / "system.md")


def test_one_byte_in_the_prompt_is_refused_naming_the_file(proj: Path, tmp_path: Path) -> None:
    path, _ = _signed(proj, tmp_path)
    data = bytearray((proj / "system.md").read_bytes())
    data[0] ^= 1
    (proj / "system.md").write_bytes(bytes(data))
    with pytest.raises(TrustError, match="system prompt system.md changed since the manifest was signed") as ei:
        _pre(path, proj)
    assert ei.value.reason == "digest"
    # --trust-override downgrades it to a warning, and the files stay protected
    check, lines = _pre(path, proj, override=True)
    assert not check.ok and any("system.md changed" in ln for ln in lines)
    assert str(proj / "system.md") in check.protected_files


def test_edited_manifest_and_removed_component(proj: Path, tmp_path: Path) -> None:
    path, _ = _signed(proj, tmp_path)
    (proj / "model.json").unlink()
    with pytest.raises(TrustError, match="model configuration model.json .*cannot be read"):
        _pre(path, proj)
    # a re-created (unsigned) manifest over the new files no longer matches the old bundle
    (proj / "model.json").write_text('{"model": "m-2"}\n')
    create_manifest(str(path), prompt="system.md", tools="tools.json", model="model.json", force=True)
    with pytest.raises(TrustError, match="bundle digest does not match file content"):
        _pre(path, proj)


def test_wrong_key_is_not_a_trusted_publisher(proj: Path, tmp_path: Path) -> None:
    path, _ = _signed(proj, tmp_path)
    other = _key(tmp_path, "other")
    sign_manifest(str(path), other)
    with pytest.raises(TrustError, match="not in trusted publishers") as ei:
        _pre(path, proj)
    assert ei.value.reason == "publisher"


def test_no_policy_at_all_refuses_with_a_hint(proj: Path, tmp_path: Path) -> None:
    key = _key(tmp_path)
    m = create_manifest("agent.manifest.json", prompt="system.md")
    sign_manifest(m.path, key)
    with pytest.raises(TrustError, match="not in trusted publishers") as ei:
        _pre(m.path, proj)
    assert "nono trust init" in ei.value.hint


def test_unsigned_manifest_under_deny_and_warn(proj: Path, tmp_path: Path) -> None:
    key = _key(tmp_path)
    m = create_manifest("agent.manifest.json", prompt="system.md", tools="tools.json")
    _policy(_user_policy(), [key], enforcement="deny")
    with pytest.raises(TrustError, match="no .bundle file found") as ei:
        _pre(m.path, proj)
    assert ei.value.reason == "missing" and "nono manifest sign" in ei.value.hint
    _policy(_user_policy(), [key], enforcement="warn")
    check, lines = _pre(m.path, proj)
    assert not check.ok and lines and "no .bundle file found" in lines[0]
    assert check.protected_files == [m.path, str(proj / "system.md"), str(proj / "tools.json")]
    _policy(_user_policy(), [key], enforcement="audit")
    check, lines = _pre(m.path, proj)
    assert not check.ok and not lines and check.messages


def test_blocklisted_component_is_refused_even_with_override(proj: Path, tmp_path: Path) -> None:
    path, key = _signed(proj, tmp_path)
    bad = load_manifest(str(path)).components["tools"][1]
    _policy(_user_policy(), [key], enforcement="warn", blocklist=[{"sha256": bad, "reason": "leaky tool"}])
    with pytest.raises(TrustError, match="blocklisted"):
        _pre(path, proj, override=True)


@pytest.mark.parametrize("text", [
    "", "not json", "[]", '{"_type": "x"}',
    json.dumps({"_type": "https://in-toto.io/Statement/v1", "predicateType": "https://example.com/other"}),
    json.dumps({"_type": "https://in-toto.io/Statement/v1", "predicateType": PREDICATE_MANIFEST, "predicate": {}}),
    json.dumps({"_type": "https://in-toto.io/Statement/v1", "predicateType": PREDICATE_MANIFEST,
                "predicate": {"prompt": {"path": "/etc/passwd", "sha256": "0" * 64}}}),
    json.dumps({"_type": "https://in-toto.io/Statement/v1", "predicateType": PREDICATE_MANIFEST,
                "predicate": {"prompt": {"path": "a", "sha256": "0" * 64}, "identity": "0" * 64},
                "subject": [{"name": "a", "digest": {"sha256": "0" * 64}}]}),
    json.dumps({"_type": "https://in-toto.io/Statement/v1", "predicateType": PREDICATE_MANIFEST,
                "predicate": {"prompt": {"path": "a", "sha256": "0" * 64},
                              "identity": compute_identity({"prompt": "0" * 64})},
                "subject": [{"name": "b", "digest": {"sha256": "0" * 64}}]}),
    '{"_type": "https://in-toto.io/Statement/v1", "predicateType": "' + PREDICATE_MANIFEST + '", "predicate": '
    + "[" * 100000 + "]" * 100000 + "}",
])
def test_malformed_manifest_is_a_trust_error(proj: Path, tmp_path: Path, text: str) -> None:
    (proj / "bad.json").write_text(text)
    _policy(_user_policy(), [_key(tmp_path)], enforcement="audit")
    with pytest.raises(TrustError, match="malformed agent manifest") as ei:
        _pre(proj / "bad.json", proj, override=True)  # refused in every mode
    assert isinstance(ei.value, NonoError) and ei.value.reason == "malformed"


def test_fuzzed_manifests_never_raise_anything_but_trust_error(proj: Path) -> None:
    import random

    m = create_manifest("agent.manifest.json", prompt="system.md", tools="tools.json")
    good = (proj / "agent.manifest.json").read_bytes()
    rng = random.Random(7)
    for _ in range(300):
        data = bytearray(good)
        for _ in range(rng.randint(1, 6)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        try:
            parse_manifest(bytes(data), m.path)
        except TrustError:
            pass


def test_missing_manifest_file(proj: Path) -> None:
    with pytest.raises(TrustError, match="cannot read agent manifest"):
        _pre(proj / "nope.json", proj)


# -- run --verify-signature ----------------------------------------------------------------
def test_verify_file_signature(proj: Path, tmp_path: Path) -> None:
    key = _key(tmp_path)
    f = proj / "agent-policy.yaml"
    f.write_text("allow: [read]\n")
    lines: list[str] = []
    _policy(_user_policy(), [key])
    with pytest.raises(TrustError, match="no .bundle file found"):
        verify_file_signature(str(f), policy_dir=str(proj), override=False, out=lines.append)
    sign_file(str(f), key)
    check = verify_file_signature("agent-policy.yaml", policy_dir=str(proj), override=False, out=lines.append)
    assert check.ok and check.protected_files == [str(f), str(f) + ".bundle"] and len(check.digest) == 64
    f.write_text("allow: [read, write]\n")
    with pytest.raises(TrustError, match="bundle digest does not match file content") as ei:
        verify_file_signature(str(f), policy_dir=str(proj), override=False, out=lines.append)
    assert ei.value.reason == "digest"
    check = verify_file_signature(str(f), policy_dir=str(proj), override=True, out=lines.append)
    assert not check.ok and any("does not match" in ln for ln in lines)
    sign_file(str(f), _key(tmp_path, "other"))
    with pytest.raises(TrustError, match="not in trusted publishers"):
        verify_file_signature(str(f), policy_dir=str(proj), override=False, out=lines.append)
    with pytest.raises(TrustError, match="no such file"):
        verify_file_signature("missing.yaml", policy_dir=str(proj), override=False, out=lines.append)


# -- CLI ---------------------------------------------------------------------------------
def test_cli_issue_workflow(proj: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = _key(tmp_path)
    _policy(_user_policy(), [key])
    assert cmd_manifest(["create", "--prompt", "system.md", "--tools", "tools.json", "--model", "model.json",
                         "-o", "agent.manifest.json"]) == 0
    out = capsys.readouterr().out
    assert "identity:" in out and "system prompt" in out
    assert cmd_manifest(["sign", "agent.manifest.json", "--key", key]) == 0
    assert "agent.manifest.json.bundle" in capsys.readouterr().out
    assert cmd_manifest(["verify", "agent.manifest.json"]) == 0
    out = capsys.readouterr().out
    identity = load_manifest("agent.manifest.json").identity
    assert "VERIFIED" in out and identity in out
    assert cmd_manifest(["verify", "--json", "agent.manifest.json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["identity"] == identity and doc["status"] == "verified"
    (proj / "tools.json").write_text("[]\n")
    with pytest.raises(TrustError, match="tool definitions tools.json changed since the manifest was signed"):
        cmd_manifest(["verify", "agent.manifest.json"])
    with pytest.raises(TrustError, match="changed since"):  # signing re-checks the components too
        cmd_manifest(["sign", "agent.manifest.json", "--key", key])


def test_cli_usage_errors(proj: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cmd_manifest([]) == 2 and cmd_manifest(["--help"]) == 0
    assert cmd_manifest(["create", "--help"]) == 0
    capsys.readouterr()
    for argv in (["creat"], ["create", "--prompt", "system.md"], ["create", "-o", "x.json"],
                 ["create", "stray", "-o", "x.json", "--prompt", "system.md"], ["sign"], ["verify", "a", "b"],
                 ["sign", "--bogus", "x"]):
        with pytest.raises(UsageError):
            cmd_manifest(argv)
    with pytest.raises(TrustError, match="no such file"):
        cmd_manifest(["create", "--prompt", "nope.md", "-o", "x.json"])
    assert not os.path.exists("x.json")
    with pytest.raises(TrustError, match="invalid key id"):
        cmd_manifest(["sign", "x.json", "--key", "bad id"])
