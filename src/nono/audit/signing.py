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
import os

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


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE pre-authentication encoding: ``DSSEv1 <len> <type> <len> <payload>``."""
    t = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


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


def _private_from_text(text: str, where: str) -> 'Any':
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_private_key(text.encode("ascii"), password=None)
        else:
            key = serialization.load_der_private_key(base64.b64decode(text, validate=True), password=None)
    except (ValueError, TypeError) as exc:
        raise SigningError(f"{where}: not a readable private key ({exc})",
                           hint="expected base64 PKCS#8 DER or an unencrypted PEM key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise SigningError(f"{where}: not an ECDSA P-256 key", hint="nono signs with ECDSA P-256 only")
    return key


def _file_path(ref: str) -> str:
    path = ref[len("file://"):]
    if not path.startswith("/"):
        raise SigningError(f"{ref!r}: a file key reference needs an absolute path (file:///abs/path)")
    return path


def check_ref(ref: str) -> None:
    """Cheap checks of a key reference (exists, mode 0600) without loading cryptography."""
    if not ref:
        raise SigningError("empty signing key reference", hint=_FILE_HINT)
    if ref.startswith("file://"):
        path = _file_path(ref)
        try:
            st = os.stat(path)
        except OSError as exc:
            raise SigningError(f"signing key {path}: {exc.strerror}", hint=_FILE_HINT) from None
        if st.st_mode & 0o077:
            raise SigningError(f"signing key {path} is readable or writable by others (mode {st.st_mode & 0o777:04o})",
                               hint=f"chmod 600 {path}")
        if st.st_uid != os.getuid():
            raise SigningError(f"signing key {path} belongs to uid {st.st_uid}, not you (uid {os.getuid()})")


def load_key(ref: str) -> SigningKey:
    """Load the private key ``ref`` names (``file:///path``, ``keyring://NAME`` or ``NAME``)."""
    check_ref(ref)
    if ref.startswith("file://"):
        path = _file_path(ref)
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        try:
            data = os.read(fd, 1 << 16)
        finally:
            os.close(fd)
        return SigningKey(_private_from_text(data.decode("ascii", "replace"), path), ref)
    name = ref[len("keyring://"):] if ref.startswith("keyring://") else ref
    value = _keyring_get(name)
    return SigningKey(_private_from_text(value, f"keyring entry {KEYRING_SERVICE}/{name}"), ref)


def _keyring_backend() -> 'Any':
    try:
        import keyring
        from keyring.backends import fail
    except ImportError:
        raise SigningError("the keyring library is not installed", hint=_FILE_HINT) from None
    backend = keyring.get_keyring()
    if isinstance(backend, fail.Keyring):
        raise SigningError("no system keyring is available on this machine (a headless session, no Secret "
                           "Service or D-Bus), so keyring keys cannot be used", hint=_FILE_HINT)
    return backend


def _keyring_get(name: str) -> str:
    backend = _keyring_backend()
    from keyring.errors import KeyringError

    try:
        value = backend.get_password(KEYRING_SERVICE, name)
    except KeyringError as exc:
        raise SigningError(f"keyring {KEYRING_SERVICE}/{name}: the keyring refused ({exc})", hint=_FILE_HINT) from None
    if value is None:
        raise SigningError(f"no signing key '{name}' in the system keyring (service {KEYRING_SERVICE})",
                           hint="create one with generate_key('" + name + "'), or " + _FILE_HINT)
    return str(value)


def generate_key(ref: str, *, force: bool = False) -> SigningKey:
    """Create a P-256 key at ``ref`` (``file:///path`` -> file 0600 + ``.pub``; else the keyring)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    text = base64.b64encode(key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption())).decode("ascii")
    sk = SigningKey(key, ref)
    if ref.startswith("file://"):
        path = _file_path(ref)
        flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | (os.O_TRUNC if force else os.O_EXCL)
        try:
            fd = os.open(path, flags, 0o600)
        except FileExistsError:
            raise SigningError(f"{path} already exists", hint="pass force=True to replace it") from None
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, (text + "\n").encode("ascii"))
        finally:
            os.close(fd)
        with open(path + ".pub", "w", encoding="ascii") as f:
            f.write(sk.public_key_b64 + "\n")
        return sk
    name = ref[len("keyring://"):] if ref.startswith("keyring://") else ref
    backend = _keyring_backend()
    if not force and backend.get_password(KEYRING_SERVICE, name) is not None:
        raise SigningError(f"a key '{name}' already exists in the keyring", hint="pass force=True to replace it")
    backend.set_password(KEYRING_SERVICE, name, text)
    return sk


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
