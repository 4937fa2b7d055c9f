"""DSSE envelopes (ECDSA P-256 over the pre-authentication encoding), kept small on purpose.

``nono.audit.signing`` grows the same primitives for audit attestations; this module is the
trust layer's own copy so the two can be developed in parallel and merged later (same PAE,
same envelope JSON, same key encodings: base64 PKCS#8 DER private keys, base64 SPKI DER public
keys, key fingerprint = SHA-256 hex of the SPKI DER).

Envelope JSON: ``{"payload": base64, "payloadType": str, "signatures": [{"sig": base64, "keyid": str}]}``.
A signature is an ASN.1 DER ECDSA/SHA-256 signature over ``PAE(payloadType, payload)``.
``cryptography`` is imported only inside the functions that sign or verify.
"""

import base64
import binascii
import hashlib

from . import TrustError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

PAYLOAD_TYPE = "application/vnd.in-toto+json"


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: ``DSSEv1 <len> <type> <len> <payload>`` (lengths in bytes)."""
    t = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def b64decode(text: object, what: str) -> bytes:
    """Strict standard base64 (padding required); raises :class:`TrustError` naming ``what``."""
    if not isinstance(text, str):
        raise TrustError(f"{what} is not a base64 string", reason="malformed")
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error, ValueError):
        raise TrustError(f"{what} is not valid base64", reason="malformed") from None


def b64encode(data: bytes) -> str:
    """Standard base64 with padding, as text."""
    return base64.b64encode(data).decode("ascii")


def fingerprint(spki_der: bytes) -> str:
    """A public key's fingerprint: SHA-256 of its DER SubjectPublicKeyInfo, lowercase hex."""
    return hashlib.sha256(spki_der).hexdigest()


class Envelope:
    """A parsed DSSE envelope. Construct with :meth:`from_dict` (validating) or :meth:`create`."""

    __slots__ = ("payload", "payload_type", "signatures")

    def __init__(self, payload: bytes, payload_type: str, signatures: 'list[tuple[str, bytes]]') -> None:
        self.payload = payload
        self.payload_type = payload_type
        self.signatures = signatures  # (keyid, DER signature)

    @classmethod
    def from_dict(cls, doc: object, where: str) -> 'Envelope':
        """Validate the JSON form; every problem is a :class:`TrustError` naming ``where``."""
        if not isinstance(doc, dict):
            raise TrustError(f"{where}: dsseEnvelope must be an object", reason="malformed")
        ptype = doc.get("payloadType")
        if not isinstance(ptype, str) or not ptype.isprintable() or not ptype.isascii():
            raise TrustError(f"{where}: dsseEnvelope.payloadType must be a printable ASCII string", reason="malformed")
        payload = b64decode(doc.get("payload"), f"{where}: dsseEnvelope.payload")
        sigs = doc.get("signatures")
        if not isinstance(sigs, list) or not sigs:
            raise TrustError(f"{where}: dsseEnvelope.signatures must be a non-empty list", reason="malformed")
        if len(sigs) > 16:
            raise TrustError(f"{where}: too many signatures ({len(sigs)}; at most 16)", reason="malformed")
        out: list[tuple[str, bytes]] = []
        for i, s in enumerate(sigs):
            if not isinstance(s, dict):
                raise TrustError(f"{where}: dsseEnvelope.signatures[{i}] must be an object", reason="malformed")
            keyid = s.get("keyid", "")
            if not isinstance(keyid, str):
                raise TrustError(f"{where}: dsseEnvelope.signatures[{i}].keyid must be a string", reason="malformed")
            out.append((keyid, b64decode(s.get("sig"), f"{where}: dsseEnvelope.signatures[{i}].sig")))
        return cls(payload, ptype, out)

    @classmethod
    def create(cls, payload: bytes, private_key: 'Any', keyid: str, payload_type: str = PAYLOAD_TYPE) -> 'Envelope':
        """Sign ``payload`` with a ``cryptography`` P-256 private key."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec

        sig = private_key.sign(pae(payload_type, payload), ec.ECDSA(hashes.SHA256()))
        return cls(payload, payload_type, [(keyid, bytes(sig))])

    def to_dict(self) -> 'dict[str, Any]':
        """The JSON form."""
        return {"payload": b64encode(self.payload), "payloadType": self.payload_type,
                "signatures": [{"sig": b64encode(sig), "keyid": keyid} for keyid, sig in self.signatures]}

    def verify(self, spki_der: bytes) -> bool:
        """True if any signature verifies under the public key ``spki_der`` (base64-decoded SPKI DER)."""
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec

        key = load_public_der(spki_der)
        message = pae(self.payload_type, self.payload)
        for _keyid, sig in self.signatures:
            try:
                key.verify(sig, message, ec.ECDSA(hashes.SHA256()))
                return True
            except (InvalidSignature, ValueError):
                continue
        return False


def load_public_der(spki_der: bytes) -> 'Any':
    """A P-256 public key from SPKI DER; :class:`TrustError` for anything else."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        key = serialization.load_der_public_key(spki_der)
    except (ValueError, TypeError) as exc:
        raise TrustError(f"not a readable public key ({exc})", reason="malformed") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise TrustError("public key is not ECDSA P-256", reason="malformed")
    return key
