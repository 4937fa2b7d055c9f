"""Fuzz the bundle and trust-policy parsers: only NonoError subclasses may escape."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nono.errors import NonoError
from nono.trust import TrustError
from nono.trust import keys as K
from nono.trust.bundle import Bundle, parse_bundle
from nono.trust.policy import parse_policy
from nono.trust.sign import sign_file

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=12), kids, max_size=4),
    max_leaves=20)
KEYS = ["mediaType", "verificationMaterial", "publicKey", "hint", "dsseEnvelope", "payload", "payloadType",
        "signatures", "sig", "keyid", "_type", "subject", "name", "digest", "sha256", "predicateType", "predicate",
        "certificate", "tlogEntries"]


def _parse(data: str | bytes) -> Bundle | None:
    try:
        return parse_bundle(data, "fuzz.bundle")
    except NonoError as exc:
        assert isinstance(exc, TrustError) and exc.message.startswith("fuzz.bundle")
        return None


@pytest.fixture(scope="module")
def valid(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    d = tmp_path_factory.mktemp("fuzz")
    ref = f"file://{d / 'k'}"
    K.generate_key(ref)
    (d / "CLAUDE.md").write_text("x")
    sign_file(str(d / "CLAUDE.md"), ref)
    doc: dict[str, Any] = json.loads((d / "CLAUDE.md.bundle").read_text())
    doc["_spki"] = K.public_key_der(ref)  # kept beside the document; removed before parsing
    return doc


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes(data: bytes) -> None:
    _parse(data)


@settings(max_examples=300, deadline=None)
@given(JSON)
def test_random_json(doc: object) -> None:
    _parse(json.dumps(doc))


def _mutate(doc: Any, path: list[str | int], value: object) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(doc, dict) and isinstance(head, str) and head in doc:
        return {**doc, head: _mutate(doc[head], rest, value)}
    if isinstance(doc, list) and isinstance(head, int) and doc:
        i = head % len(doc)
        return doc[:i] + [_mutate(doc[i], rest, value)] + doc[i + 1:]
    return doc


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.lists(st.sampled_from(KEYS) | st.integers(0, 3), max_size=4),
       value=JSON | st.sampled_from(["", "AAAA", "%%%", "\ud800", "a" * 64]),
       statement=st.one_of(st.none(), JSON, st.fixed_dictionaries({
           "_type": st.just("https://in-toto.io/Statement/v1"),
           "predicateType": st.sampled_from(["https://nono.sh/attestation/instruction-file/v1", "x"]),
           "subject": JSON | st.lists(st.dictionaries(st.sampled_from(["name", "digest"]), JSON), max_size=3),
           "predicate": JSON})))
def test_mutated_valid_bundle(valid: dict[str, Any], path: list[str | int], value: object, statement: object) -> None:
    spki = valid["_spki"]
    doc = _mutate({k: v for k, v in valid.items() if k != "_spki"}, path, value)
    if statement is not None and isinstance(doc, dict) and isinstance(doc.get("dsseEnvelope"), dict):
        payload = json.dumps(statement).encode()
        doc = {**doc, "dsseEnvelope": {**doc["dsseEnvelope"], "payload": base64.b64encode(payload).decode()}}
    text = json.dumps(doc)
    b = _parse(text)
    if b is not None and not b.keyless:
        try:  # signature checking of whatever parsed: True/False, or TrustError for a bad key
            b.envelope.verify(spki)
            b.envelope.verify(base64.b64decode("MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE" + "A" * 86 + "=="))
        except TrustError:
            pass


def test_deep_nesting_and_surrogates() -> None:
    assert _parse("[" * 100000) is None
    assert _parse('{"mediaType": "\\ud800"}') is None
    assert _parse(b"\xff\xfe{") is None


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["version", "includes", "files", "publishers", "blocklist", "enforcement",
                                        "extra"]), JSON, max_size=5))
def test_policy_parser(doc: dict[str, Any]) -> None:
    try:
        parse_policy(json.dumps(doc), "fuzz-policy.json")
    except NonoError as exc:
        assert exc.message.startswith("fuzz-policy.json")


def test_policy_parser_bytes(tmp_path: Path) -> None:
    for data in (b"\xff", b"[" * 50000, b'{"publishers": [{"name": "\\ud800", "public_key": "MFkw"}]}'):
        with pytest.raises(TrustError):
            parse_policy(data, "p.json")
