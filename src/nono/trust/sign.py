"""Signing instruction files and trust policies (writes bundles next to them)."""

import os

from . import TrustError
from .bundle import PREDICATE_INSTRUCTION, PREDICATE_MULTI, PREDICATE_POLICY, Bundle, make_bundle
from .keys import SigningKey, load_signing_key
from .verify import MULTI_BUNDLE, sha256_file


def _digest(path: str) -> str:
    try:
        return sha256_file(path)
    except OSError as exc:
        raise TrustError(f"cannot sign {path}: {exc.strerror}", path=path, reason="missing") from None


def _write(path: str, bundle: Bundle) -> str:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(bundle.to_text())
    os.replace(tmp, path)
    return path


def sign_file(path: str, key: 'SigningKey | str') -> str:
    """Write ``<path>.bundle`` (subject: the file name) and return its path."""
    sk = load_signing_key(key) if isinstance(key, str) else key
    if path.endswith(".bundle"):
        raise TrustError(f"{path} is a bundle; sign the file it belongs to", path=path, reason="malformed")
    bundle = make_bundle([(os.path.basename(path), _digest(path))], PREDICATE_INSTRUCTION, sk)
    return _write(path + ".bundle", bundle)


def sign_multi(workdir: str, rels: 'list[str]', key: 'SigningKey | str') -> str:
    """Write one ``.nono-trust.bundle`` in ``workdir`` naming every file of ``rels`` (relative paths)."""
    if not rels:
        raise TrustError("no files to sign", reason="missing")
    sk = load_signing_key(key) if isinstance(key, str) else key
    subjects = [(rel, _digest(os.path.join(workdir, rel))) for rel in rels]
    return _write(os.path.join(workdir, MULTI_BUNDLE), make_bundle(subjects, PREDICATE_MULTI, sk))


def sign_policy(path: str, key: 'SigningKey | str') -> str:
    """Write ``<policy>.bundle`` with the trust-policy predicate (after validating the policy)."""
    from .policy import load_policy

    load_policy(path)
    sk = load_signing_key(key) if isinstance(key, str) else key
    bundle = make_bundle([(os.path.basename(path), _digest(path))], PREDICATE_POLICY, sk)
    return _write(path + ".bundle", bundle)
