"""Signing keys: ECDSA P-256, in the system keyring or in a ``file://`` key file.

A key reference is one of:

* ``ID`` or ``keyring://ID``: the system keyring, service ``nono-trust``, account ``ID``, value
  base64 PKCS#8 DER; the public key is cached under service ``nono-trust-pub`` (base64 SPKI DER).
* ``file:///abs/path``: the same base64 PKCS#8 text in a file of mode 0600 (refused if group
  or others have any access), the public key beside it in ``<path>.pub``.

Key ids are ``[A-Za-z0-9_-]{1,64}`` (upstream's alphabet; the brief's lowercase ids are a subset).
A file key's identity is its full ``file://`` URI (as upstream): moving the key changes the
identity, and bundles then name a signer that is not in trusted publishers.
"""

import base64
import binascii
import os

from . import TrustError
from .dsse import fingerprint

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

KEYRING_SERVICE = "nono-trust"
KEYRING_PUB_SERVICE = "nono-trust-pub"
DEFAULT_KEY_ID = "default"
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
_HEADLESS_HINT = ("use a key file instead: 'nono trust keygen --keyref file:///path/to/key' once, then "
                  "'--key file:///path/to/key' when signing (the file is created with mode 0600)")


def validate_key_id(key_id: str) -> str:
    """Return ``key_id`` if it is 1-64 characters of ``[A-Za-z0-9_-]``; else :class:`TrustError`."""
    if not key_id or len(key_id) > 64 or not set(key_id) <= _ID_CHARS:
        raise TrustError(f"invalid key id {key_id!r}: use 1-64 letters, digits, '_' or '-'", reason="key")
    return key_id


def is_file_ref(ref: str) -> bool:
    """True for ``file://`` references."""
    return ref.startswith("file://")


def file_path(ref: str) -> str:
    """The absolute path of a ``file://`` reference."""
    path = ref[len("file://"):]
    if not path.startswith("/"):
        raise TrustError(f"{ref!r}: a file key reference needs an absolute path (file:///abs/path)", reason="key")
    return path


def keyring_name(ref: str) -> str:
    """The validated account name of a keyring reference (``ID`` or ``keyring://ID``)."""
    return validate_key_id(ref[len("keyring://"):] if ref.startswith("keyring://") else ref)


def identity(ref: str) -> str:
    """The publisher identity a reference signs as: the key id, or the full ``file://`` URI."""
    return ref if is_file_ref(ref) else keyring_name(ref)


class SigningKey:
    """A loaded private key with its public half."""

    __slots__ = ("_key", "identity", "ref", "spki_der")

    def __init__(self, private_key: 'Any', ref: str) -> None:
        from cryptography.hazmat.primitives import serialization

        self._key = private_key
        self.ref = ref
        self.identity = identity(ref)
        self.spki_der: bytes = private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)

    @property
    def private_key(self) -> 'Any':
        """The ``cryptography`` private key object."""
        return self._key

    @property
    def fingerprint(self) -> str:
        """SHA-256 hex of the SPKI DER."""
        return fingerprint(self.spki_der)

    @property
    def public_key_b64(self) -> str:
        """Base64 SPKI DER (``MFkw...``), the form trust policies hold."""
        return base64.b64encode(self.spki_der).decode("ascii")


def _private_from_text(text: str, where: str) -> 'Any':
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_private_key(text.encode("ascii"), password=None)
        else:
            key = serialization.load_der_private_key(base64.b64decode(text, validate=True), password=None)
    except (ValueError, TypeError, UnicodeEncodeError, binascii.Error) as exc:
        raise TrustError(f"{where}: not a readable private key ({exc})", reason="key",
                         hint="expected base64 PKCS#8 DER or an unencrypted PEM key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise TrustError(f"{where}: not an ECDSA P-256 key", reason="key", hint="nono signs with ECDSA P-256 only")
    return key


def _check_key_file(path: str) -> None:
    try:
        st = os.stat(path)
    except OSError as exc:
        raise TrustError(f"signing key {path}: {exc.strerror}", path=path, reason="key",
                         hint=f"create it with 'nono trust keygen --keyref file://{path}'") from None
    if st.st_mode & 0o077:
        raise TrustError(f"signing key {path} is accessible to group or others (mode {st.st_mode & 0o777:04o})",
                         path=path, reason="key", hint=f"chmod 600 {path}")
    if st.st_uid != os.getuid():
        raise TrustError(f"signing key {path} belongs to uid {st.st_uid}, not you (uid {os.getuid()})",
                         path=path, reason="key")


def _keyring_backend() -> 'Any':
    try:
        import keyring
        from keyring.backends import fail
    except ImportError:
        raise TrustError("the 'keyring' package is not installed", reason="key", hint=_HEADLESS_HINT) from None
    backend = keyring.get_keyring()
    if isinstance(backend, fail.Keyring) or (type(backend).__name__ == "ChainerBackend"
                                              and not getattr(backend, "backends", ())):
        raise TrustError("no system keyring is available (a headless machine: no Secret Service/D-Bus session), "
                         "so keys cannot be stored in or read from the keyring", reason="key", hint=_HEADLESS_HINT)
    return backend


def _keyring_call(what: str, fn: 'Any', *args: str) -> 'Any':
    from keyring.errors import KeyringError

    try:
        return fn(*args)
    except KeyringError as exc:
        raise TrustError(f"keyring {what} failed: {exc}", reason="key", hint=_HEADLESS_HINT) from None


def key_exists(ref: str) -> bool:
    """Whether the private key ``ref`` names exists (never loads ``cryptography``)."""
    if is_file_ref(ref):
        return os.path.exists(file_path(ref))
    backend = _keyring_backend()
    return _keyring_call("lookup", backend.get_password, KEYRING_SERVICE, keyring_name(ref)) is not None


def generate_key(ref: str, *, force: bool = False) -> SigningKey:
    """Create a P-256 key at ``ref``; an existing key is an error unless ``force``."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    if not is_file_ref(ref):
        name = keyring_name(ref)
        backend = _keyring_backend()
        if not force and _keyring_call("lookup", backend.get_password, KEYRING_SERVICE, name) is not None:
            raise TrustError(f"a key '{name}' already exists in the keyring (service {KEYRING_SERVICE})",
                             reason="key", hint="pass --force to replace it (bundles signed with it stop verifying)")
    key = ec.generate_private_key(ec.SECP256R1())
    text = base64.b64encode(key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption())).decode("ascii")
    sk = SigningKey(key, ref)
    if is_file_ref(ref):
        path = file_path(ref)
        flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | (os.O_TRUNC if force else os.O_EXCL)
        try:
            fd = os.open(path, flags, 0o600)
        except FileExistsError:
            raise TrustError(f"{path} already exists", path=path, reason="key", hint="pass --force to replace it") from None
        except OSError as exc:
            raise TrustError(f"cannot create {path}: {exc.strerror}", path=path, reason="key") from None
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, (text + "\n").encode("ascii"))
        finally:
            os.close(fd)
        with open(path + ".pub", "w", encoding="ascii") as f:
            f.write(sk.public_key_b64 + "\n")
        return sk
    _keyring_call("store", backend.set_password, KEYRING_SERVICE, name, text)
    _keyring_call("store", backend.set_password, KEYRING_PUB_SERVICE, name, sk.public_key_b64)
    return sk


def load_signing_key(ref: str) -> SigningKey:
    """Load the private key ``ref`` names (checks a key file's mode and owner first)."""
    if is_file_ref(ref):
        path = file_path(ref)
        _check_key_file(path)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError as exc:
            raise TrustError(f"signing key {path}: {exc.strerror}", path=path, reason="key") from None
        try:
            data = os.read(fd, 1 << 16)
        finally:
            os.close(fd)
        return SigningKey(_private_from_text(data.decode("ascii", "replace"), path), ref)
    name = keyring_name(ref)
    backend = _keyring_backend()
    value = _keyring_call("lookup", backend.get_password, KEYRING_SERVICE, name)
    if value is None:
        raise TrustError(f"no signing key '{name}' in the system keyring (service {KEYRING_SERVICE})", reason="key",
                         hint=f"create one with 'nono trust keygen --id {name}', or {_HEADLESS_HINT}")
    return SigningKey(_private_from_text(str(value), f"keyring entry {KEYRING_SERVICE}/{name}"), ref)


def public_key_der(ref: str) -> bytes:
    """The SPKI DER public key of ``ref`` (from ``.pub``/the public cache, else from the private key)."""
    if is_file_ref(ref):
        pub = file_path(ref) + ".pub"
        if os.path.exists(pub):
            with open(pub, encoding="ascii", errors="replace") as f:
                text = f.read().strip()
            try:
                return base64.b64decode(text, validate=True)
            except (binascii.Error, ValueError):
                raise TrustError(f"{pub}: not base64 SPKI DER", path=pub, reason="key") from None
        return load_signing_key(ref).spki_der
    name = keyring_name(ref)
    backend = _keyring_backend()
    cached = _keyring_call("lookup", backend.get_password, KEYRING_PUB_SERVICE, name)
    if cached:
        try:
            return base64.b64decode(str(cached), validate=True)
        except (binascii.Error, ValueError):
            pass
    return load_signing_key(ref).spki_der


def public_key_pem(spki_der: bytes) -> str:
    """PEM text (``-----BEGIN PUBLIC KEY-----``) for an SPKI DER key."""
    body = base64.b64encode(spki_der).decode("ascii")
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return "-----BEGIN PUBLIC KEY-----\n" + "\n".join(lines) + "\n-----END PUBLIC KEY-----\n"
