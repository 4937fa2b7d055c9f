"""Keys, DSSE envelopes and in-toto statements (ECDSA P-256), shared by audit and trust.

Key references (upstream's ``--audit-sign-key`` / ``--keyref`` forms):

* ``file:///abs/path`` — a private key file, mode 0600 (nothing for group/other), owned by
  you: base64 PKCS#8 DER (upstream's format) or PEM. ``generate_key`` also writes
  ``<path>.pub`` (base64 SPKI DER).
* ``NAME`` or ``keyring://NAME`` — the system keyring, service ``nono-trust``, account NAME,
  value base64 PKCS#8 DER (upstream's keystore). A headless machine has no keyring: the
  error says to use a ``file://`` key.

Envelope (DSSE v1): ``{"payloadType", "payload": base64, "signatures": [{"keyid", "sig"}]}``,
the signature being ECDSA P-256/SHA-256 (DER) over ``PAE(payloadType, payload)``. Bundles
follow the Sigstore bundle v0.3 layout with a public-key hint (keyed signing, no Rekor).

``cryptography`` (and ``keyring``) are imported only by the functions that need them.
"""

import base64

from ..errors import NonoError
from ._hash import hexdigest

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

KEYRING_SERVICE = "nono-trust"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
_FILE_HINT = ("use a key file instead: --audit-sign-key file:///path/to/key (a P-256 private key, mode 0600; "
              "python -m nono.audit.signing keygen /path/to/key creates one)")


class SigningError(NonoError):
    """A key that cannot be found, read or used; a signature that does not verify."""


from ..trust.dsse import pae  # noqa: E402  one DSSE pre-authentication encoding for trust and audit


def key_id(spki_der: bytes) -> str:
    """A key's id: SHA-256 of its DER SubjectPublicKeyInfo, hex."""
    return hexdigest(spki_der)


class SigningKey:
    """A loaded P-256 private key and where it came from."""

    def __init__(self, private_key: 'Any', ref: str) -> None:
        from cryptography.hazmat.primitives import serialization

        self._key = private_key
        self.ref = ref
        self.spki_der: bytes = private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        self.key_id = key_id(self.spki_der)

    @property
    def public_key_b64(self) -> str:
        return base64.b64encode(self.spki_der).decode("ascii")

    def sign(self, data: bytes) -> bytes:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec

        return bytes(self._key.sign(data, ec.ECDSA(hashes.SHA256())))


def _from_trust(exc: 'NonoError') -> 'SigningError':
    return SigningError(exc.message, hint=exc.hint or _FILE_HINT)


def check_ref(ref: str) -> None:
    """Cheap checks of a key reference (exists, mode 0600, yours) without loading cryptography."""
    if not ref:
        raise SigningError("empty signing key reference", hint=_FILE_HINT)
    from ..trust import keys

    if keys.is_file_ref(ref):
        try:
            keys._check_key_file(keys.file_path(ref))
        except NonoError as exc:
            raise _from_trust(exc) from None


def load_key(ref: str) -> SigningKey:
    """Load the private key ``ref`` names (``file:///path``, ``keyring://NAME`` or ``NAME``).

    Keys are the trust feature's keys (one store: key files, or the keyring service
    ``nono-trust``), so ``nono trust keygen`` makes audit signing keys too.
    """
    check_ref(ref)
    from ..trust import keys

    try:
        return SigningKey(keys.load_signing_key(ref).private_key, ref)
    except NonoError as exc:
        raise _from_trust(exc) from None


def generate_key(ref: str, *, force: bool = False) -> SigningKey:
    """Create a P-256 key at ``ref`` (``file:///path`` -> file 0600 + ``.pub``; else the keyring)."""
    from ..trust import keys

    try:
        return SigningKey(keys.generate_key(ref, force=force).private_key, ref)
    except NonoError as exc:
        raise _from_trust(exc) from None


def load_public_key(text: str) -> 'Any':
    """A P-256 public key from base64 SPKI DER (``MFkw...``) or PEM text."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(text.encode("ascii"))
        else:
            key = serialization.load_der_public_key(base64.b64decode(text, validate=True))
    except (ValueError, TypeError) as exc:
        raise SigningError(f"not a readable public key ({exc})") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise SigningError("not an ECDSA public key")
    return key


def public_key_id(public_key: 'Any') -> str:
    from cryptography.hazmat.primitives import serialization

    return key_id(public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))


def statement(subjects: 'list[tuple[str, str]]', predicate_type: str, predicate: 'dict[str, Any]') -> 'dict[str, Any]':
    """An in-toto Statement v1: ``subjects`` are (name, sha256 hex)."""
    return {"_type": STATEMENT_TYPE,
            "subject": [{"name": n, "digest": {"sha256": d}} for n, d in subjects],
            "predicateType": predicate_type, "predicate": predicate}


def sign_envelope(key: SigningKey, payload: bytes, payload_type: str = PAYLOAD_TYPE) -> 'dict[str, Any]':
    """A DSSE envelope over ``payload``, signed by ``key``."""
    sig = key.sign(pae(payload_type, payload))
    return {"payloadType": payload_type, "payload": base64.b64encode(payload).decode("ascii"),
            "signatures": [{"keyid": key.key_id, "sig": base64.b64encode(sig).decode("ascii")}]}


def verify_envelope(envelope: 'dict[str, Any]', public_key: 'Any') -> bytes:
    """Check a DSSE envelope against ``public_key``; return the payload or raise :class:`SigningError`."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        payload_type = str(envelope["payloadType"])
        payload = base64.b64decode(str(envelope["payload"]), validate=True)
        sigs = list(envelope["signatures"])
    except (KeyError, TypeError, ValueError) as exc:
        raise SigningError(f"malformed DSSE envelope ({exc})") from None
    if not sigs:
        raise SigningError("the DSSE envelope has no signatures")
    message = pae(payload_type, payload)
    for entry in sigs:
        try:
            sig = base64.b64decode(str(entry["sig"]), validate=True)
            public_key.verify(sig, message, ec.ECDSA(hashes.SHA256()))
            return payload
        except (InvalidSignature, KeyError, TypeError, ValueError):
            continue
    raise SigningError("signature does not verify with the given public key")


def bundle(envelope: 'dict[str, Any]', key: SigningKey) -> 'dict[str, Any]':
    """A Sigstore-style bundle (v0.3) around a keyed DSSE envelope."""
    return {"mediaType": BUNDLE_MEDIA_TYPE,
            "verificationMaterial": {"publicKey": {"hint": key.key_id}},
            "dsseEnvelope": envelope}


def _main(argv: 'list[str]') -> int:
    """``python -m nono.audit.signing keygen PATH|file:///PATH|NAME [--force]`` (until ``nono trust keygen`` exists)."""
    import sys

    args = [a for a in argv if a != "--force"]
    if len(args) != 2 or args[0] != "keygen":
        sys.stderr.write("usage: python -m nono.audit.signing keygen PATH|file:///PATH|NAME [--force]\n")
        return 2
    ref = args[1]
    if ref.startswith("/"):
        ref = "file://" + ref
    try:
        key = generate_key(ref, force="--force" in argv)
    except SigningError as exc:
        sys.stderr.write(f"nono: {exc.diagnostics()}\n")
        return 1
    sys.stdout.write(f"created {ref} (key id {key.key_id})\npublic key: {key.public_key_b64}\n")
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(_main(sys.argv[1:]))
