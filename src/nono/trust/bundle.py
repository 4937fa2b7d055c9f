"""Bundles: Sigstore bundle v0.3 JSON around a DSSE envelope holding an in-toto Statement v1.

::

    {"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
     "verificationMaterial": {"publicKey": {"hint": "<key fingerprint>"}, "tlogEntries": []},
     "dsseEnvelope": {"payload": "<base64 statement>", "payloadType": "application/vnd.in-toto+json",
                      "signatures": [{"sig": "<base64 DER>", "keyid": "<key fingerprint>"}]}}

The statement: ``{"_type": "https://in-toto.io/Statement/v1", "subject": [{"name", "digest":
{"sha256"}}], "predicateType": <one of PREDICATE_*>, "predicate": {"signer": {...}, "time"}}``.

:func:`parse_bundle` is the only way in: a :class:`Bundle` you hold is well-formed, and every
problem with the input is a :class:`~nono.trust.TrustError` naming the file (never another
exception). Keyless bundles (a Fulcio certificate instead of a public-key hint) are recognised
and reported as unsupported.
"""

import json
import time

from . import TrustError
from .dsse import PAYLOAD_TYPE, Envelope

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
_MEDIA_TYPES = (BUNDLE_MEDIA_TYPE, "application/vnd.dev.sigstore.bundle+json;version=0.3")
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_INSTRUCTION = "https://nono.sh/attestation/instruction-file/v1"
PREDICATE_POLICY = "https://nono.sh/attestation/trust-policy/v1"
PREDICATE_MULTI = "https://nono.sh/attestation/multi-file/v1"
PREDICATE_MANIFEST = "https://nono.sh/attestation/agent-manifest/v1"
PREDICATE_TYPES = (PREDICATE_INSTRUCTION, PREDICATE_POLICY, PREDICATE_MULTI, PREDICATE_MANIFEST)
MAX_BUNDLE_BYTES = 1 << 20
MAX_SUBJECTS = 1000
_HEX = frozenset("0123456789abcdef")


def is_sha256_hex(value: object) -> bool:
    """True for 64 lowercase hex characters."""
    return isinstance(value, str) and len(value) == 64 and set(value) <= _HEX


class Statement:
    """An in-toto Statement v1: subjects (name, sha256 hex), predicate type and predicate."""

    __slots__ = ("predicate", "predicate_type", "subjects")

    def __init__(self, subjects: 'list[tuple[str, str]]', predicate_type: str, predicate: 'dict[str, Any]') -> None:
        self.subjects = subjects
        self.predicate_type = predicate_type
        self.predicate = predicate

    def to_json(self) -> bytes:
        """Canonical-enough JSON bytes (sorted keys, no whitespace) for the DSSE payload."""
        doc = {"_type": STATEMENT_TYPE,
               "subject": [{"name": n, "digest": {"sha256": d}} for n, d in self.subjects],
               "predicateType": self.predicate_type, "predicate": self.predicate}
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode("utf-8")

    def digest_for(self, name: str) -> 'str | None':
        """The sha256 recorded for subject ``name`` (None if absent)."""
        for n, d in self.subjects:
            if n == name:
                return d
        return None


class Bundle:
    """A parsed, structurally valid bundle (signature not yet checked)."""

    __slots__ = ("envelope", "hint", "keyless", "source", "statement")

    def __init__(self, source: str, hint: str, envelope: Envelope, statement: Statement, keyless: bool) -> None:
        self.source = source
        self.hint = hint
        self.envelope = envelope
        self.statement = statement
        self.keyless = keyless

    def to_dict(self) -> 'dict[str, Any]':
        """The bundle JSON document."""
        return {"mediaType": BUNDLE_MEDIA_TYPE,
                "verificationMaterial": {"publicKey": {"hint": self.hint}, "tlogEntries": []},
                "dsseEnvelope": self.envelope.to_dict()}

    def to_text(self) -> str:
        """Pretty JSON with a trailing newline."""
        return json.dumps(self.to_dict(), indent=2) + "\n"


def _bad(where: str, what: str) -> TrustError:
    return TrustError(f"{where}: malformed bundle: {what}", path=where, reason="malformed",
                      hint="re-create it with 'nono trust sign'")


def _load_json(data: 'str | bytes', where: str) -> object:
    if len(data) > MAX_BUNDLE_BYTES:
        raise _bad(where, f"larger than {MAX_BUNDLE_BYTES} bytes")
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise _bad(where, f"not JSON ({exc})") from None


def parse_statement(payload: bytes, where: str) -> Statement:
    """Validate an in-toto Statement v1 payload."""
    doc = _load_json(payload, where)
    if not isinstance(doc, dict):
        raise _bad(where, "the statement is not a JSON object")
    if doc.get("_type") != STATEMENT_TYPE:
        raise _bad(where, f"statement _type is {str(doc.get('_type'))[:80]!r}, expected {STATEMENT_TYPE!r}")
    ptype = doc.get("predicateType")
    if ptype not in PREDICATE_TYPES:
        raise _bad(where, f"unknown predicateType {str(ptype)[:120]!r} (a newer nono may understand it)")
    subjects = doc.get("subject")
    if not isinstance(subjects, list) or not subjects:
        raise _bad(where, "statement subject must be a non-empty list")
    if len(subjects) > MAX_SUBJECTS:
        raise _bad(where, f"too many subjects ({len(subjects)}; at most {MAX_SUBJECTS})")
    out: list[tuple[str, str]] = []
    for i, s in enumerate(subjects):
        if not isinstance(s, dict):
            raise _bad(where, f"subject[{i}] is not an object")
        name, digest = s.get("name"), s.get("digest")
        if not isinstance(name, str) or not name or not name.isprintable():
            raise _bad(where, f"subject[{i}].name must be a non-empty printable string")
        if not isinstance(digest, dict) or not is_sha256_hex(digest.get("sha256")):
            raise _bad(where, f"subject[{i}].digest.sha256 must be 64 lowercase hex characters")
        out.append((name, str(digest["sha256"])))
    predicate = doc.get("predicate", {})
    if not isinstance(predicate, dict):
        raise _bad(where, "predicate must be an object")
    return Statement(out, str(ptype), predicate)


def parse_bundle(data: 'str | bytes', where: str) -> Bundle:
    """Parse and validate bundle JSON; ``where`` (the file name) prefixes every error."""
    doc = _load_json(data, where)
    if not isinstance(doc, dict):
        raise _bad(where, "not a JSON object")
    media = doc.get("mediaType")
    if media not in _MEDIA_TYPES:
        raise _bad(where, f"unsupported mediaType {str(media)[:120]!r} (expected {BUNDLE_MEDIA_TYPE})")
    vm = doc.get("verificationMaterial")
    if not isinstance(vm, dict):
        raise _bad(where, "verificationMaterial must be an object")
    keyless = "publicKey" not in vm and ("certificate" in vm or "x509CertificateChain" in vm)
    hint = ""
    if not keyless:
        pk = vm.get("publicKey")
        if not isinstance(pk, dict) or not isinstance(pk.get("hint"), str) or not pk["hint"]:
            raise _bad(where, "verificationMaterial.publicKey.hint must be a non-empty string")
        hint = pk["hint"]
        if not hint.isprintable() or len(hint) > 4096:
            raise _bad(where, "verificationMaterial.publicKey.hint is not a printable string")
    if "dsseEnvelope" not in doc:
        raise _bad(where, "no dsseEnvelope (message-signature bundles are not used for instruction files)")
    envelope = Envelope.from_dict(doc["dsseEnvelope"], where)
    if envelope.payload_type != PAYLOAD_TYPE:
        raise _bad(where, f"payloadType is {envelope.payload_type[:80]!r}, expected {PAYLOAD_TYPE!r}")
    statement = parse_statement(envelope.payload, where)
    return Bundle(where, hint, envelope, statement, keyless)


def read_bundle(path: str) -> Bundle:
    """Read and parse the bundle file ``path``."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_BUNDLE_BYTES + 1)
    except OSError as exc:
        raise TrustError(f"{path}: cannot read bundle: {exc.strerror}", path=path, reason="malformed") from None
    return parse_bundle(data, path)


def make_bundle(subjects: 'list[tuple[str, str]]', predicate_type: str, signing_key: 'Any') -> Bundle:
    """Sign a statement over ``subjects`` with a :class:`~nono.trust.keys.SigningKey`."""
    predicate = {"signer": {"kind": "keyed", "key_id": signing_key.identity, "fingerprint": signing_key.fingerprint},
                 "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    statement = Statement(subjects, predicate_type, predicate)
    envelope = Envelope.create(statement.to_json(), signing_key.private_key, signing_key.fingerprint)
    return Bundle("", signing_key.fingerprint, envelope, statement, False)
