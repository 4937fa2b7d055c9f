"""Agent manifests: one signed identity for a system prompt, its tools and its model configuration.

A manifest (``agent.manifest.json``) is an in-toto Statement v1, pretty-printed JSON::

    {"_type": "https://in-toto.io/Statement/v1",
     "subject": [{"name": "system.md", "digest": {"sha256": "..."}}, ...],   # one per component
     "predicateType": "https://nono.sh/attestation/agent-manifest/v1",
     "predicate": {"prompt": {"path": "system.md", "sha256": "..."},
                   "tools": {"path": "tools.json", "sha256": "..."},
                   "model": {"path": "model.json", "sha256": "..."},
                   "identity": "<sha256>", "created": "2025-01-01T00:00:00Z"}}

Component paths are relative to the manifest's directory (``/``-separated; absolute paths are
refused). At least one of ``prompt``, ``tools``, ``model`` is present. The ``identity`` is
:func:`compute_identity`: SHA-256 over ``"<role> <sha256>\\n"`` lines sorted by role, prefixed
with ``nono-agent-manifest-v1\\n`` -- the same components give the same identity wherever the
files live.

``nono manifest sign`` writes ``<manifest>.bundle``, an ordinary nono bundle (Sigstore v0.3 +
DSSE) whose statement names the manifest file by its digest with the agent-manifest predicate
type, so changing either the manifest or a component it names breaks verification.
"""

import json
import os
import time

from . import TrustError
from .bundle import PREDICATE_MANIFEST, STATEMENT_TYPE, is_sha256_hex

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from .keys import SigningKey
    from .policy import TrustPolicy

__all__ = ["PREDICATE_MANIFEST", "ROLES", "Manifest", "ManifestCheck", "compute_identity", "create_manifest",
           "load_manifest", "preflight_manifest", "sign_manifest", "verify_manifest"]

ROLES = ("prompt", "tools", "model")
ROLE_LABELS = {"prompt": "system prompt", "tools": "tool definitions", "model": "model configuration"}
MAX_MANIFEST_BYTES = 1 << 20
_IDENTITY_PREFIX = b"nono-agent-manifest-v1\n"


def compute_identity(digests: 'dict[str, str]') -> str:
    """The agent identity: SHA-256 over the role-sorted component digests (see the module doc)."""
    import hashlib

    h = hashlib.sha256(_IDENTITY_PREFIX)
    for role in sorted(digests):
        h.update(f"{role} {digests[role]}\n".encode())
    return h.hexdigest()


class Manifest:
    """A parsed, structurally valid manifest (component files not yet checked)."""

    __slots__ = ("components", "created", "digest", "identity", "path")

    def __init__(self, path: str, components: 'dict[str, tuple[str, str]]', identity: str, created: str,
                 digest: str) -> None:
        self.path = path                  # absolute path of the manifest file
        self.components = components      # role -> (relative path, sha256)
        self.identity = identity
        self.created = created
        self.digest = digest              # sha256 of the manifest file's bytes

    @property
    def base(self) -> str:
        """The directory component paths are relative to."""
        return os.path.dirname(self.path)

    def component_path(self, role: str) -> str:
        """The absolute path of component ``role``."""
        return os.path.normpath(os.path.join(self.base, self.components[role][0]))


def _bad(where: str, what: str) -> TrustError:
    return TrustError(f"{where}: malformed agent manifest: {what}", path=where, reason="malformed",
                      hint="re-create it with 'nono manifest create', then sign it again")


def _rel_ok(rel: object) -> bool:
    return (isinstance(rel, str) and bool(rel) and rel.isprintable() and len(rel) <= 4096
            and not rel.startswith("/") and "\\" not in rel and "\x00" not in rel)


def parse_manifest(data: bytes, where: str, digest: str = "") -> Manifest:
    """Validate manifest JSON; every problem is a :class:`TrustError` (reason ``malformed``)."""
    if len(data) > MAX_MANIFEST_BYTES:
        raise _bad(where, f"larger than {MAX_MANIFEST_BYTES} bytes")
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise _bad(where, f"not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise _bad(where, "the top level must be an object")
    if doc.get("_type") != STATEMENT_TYPE:
        raise _bad(where, f"_type is {str(doc.get('_type'))[:80]!r}, expected {STATEMENT_TYPE!r}")
    if doc.get("predicateType") != PREDICATE_MANIFEST:
        raise _bad(where, f"predicateType is {str(doc.get('predicateType'))[:120]!r}, expected {PREDICATE_MANIFEST!r}")
    pred = doc.get("predicate")
    if not isinstance(pred, dict):
        raise _bad(where, "predicate must be an object")
    components: dict[str, tuple[str, str]] = {}
    for role in ROLES:
        if role not in pred:
            continue
        c = pred[role]
        if not isinstance(c, dict):
            raise _bad(where, f"predicate.{role} must be an object with path and sha256")
        rel, sha = c.get("path"), c.get("sha256")
        if not _rel_ok(rel):
            raise _bad(where, f"predicate.{role}.path must be a relative path (to the manifest's directory)")
        if not is_sha256_hex(sha):
            raise _bad(where, f"predicate.{role}.sha256 must be 64 lowercase hex characters")
        components[role] = (str(rel), str(sha))
    if not components:
        raise _bad(where, "the predicate names no component (prompt, tools or model)")
    subjects = doc.get("subject")
    if not isinstance(subjects, list) or not all(isinstance(s, dict) for s in subjects):
        raise _bad(where, "subject must be a list of {name, digest: {sha256}}")
    got = {(s.get("name"), (s.get("digest") or {}).get("sha256") if isinstance(s.get("digest"), dict) else None)
           for s in subjects}
    want = set(components.values())
    if got != want:
        raise _bad(where, "the subjects do not match the prompt/tools/model entries of the predicate")
    identity = pred.get("identity")
    expected = compute_identity({r: d for r, (_p, d) in components.items()})
    if identity != expected:
        raise _bad(where, "predicate.identity does not match the component digests")
    created = pred.get("created", "")
    return Manifest(where, components, expected, created if isinstance(created, str) else "", digest)


def load_manifest(path: str) -> Manifest:
    """Read and validate the manifest file ``path`` (the path is made absolute)."""
    import hashlib

    path = os.path.abspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_MANIFEST_BYTES + 1)
    except OSError as exc:
        raise TrustError(f"{path}: cannot read agent manifest: {exc.strerror}", path=path, reason="missing",
                         hint="create one with 'nono manifest create --prompt FILE ... -o FILE'") from None
    return parse_manifest(data, path, hashlib.sha256(data).hexdigest())


def create_manifest(out: str, *, prompt: str = "", tools: str = "", model: str = "", force: bool = False) -> Manifest:
    """Write the manifest ``out`` over the given component files; returns it parsed back."""
    from .verify import sha256_file

    given = {r: p for r, p in (("prompt", prompt), ("tools", tools), ("model", model)) if p}
    if not given:
        raise TrustError("an agent manifest needs at least one of --prompt, --tools, --model", reason="missing")
    out = os.path.abspath(out)
    if os.path.lexists(out) and not force:
        raise TrustError(f"{out} already exists", path=out, reason="malformed", hint="pass --force to overwrite it")
    base = os.path.dirname(out)
    pred: dict[str, Any] = {}
    subjects = []
    for role, p in given.items():
        ap = os.path.abspath(p)
        if not os.path.isfile(ap):
            raise TrustError(f"{ROLE_LABELS[role]} {p}: no such file", path=ap, reason="missing")
        try:
            sha = sha256_file(ap)
        except OSError as exc:
            raise TrustError(f"{ROLE_LABELS[role]} {p}: cannot read: {exc.strerror}", path=ap, reason="missing") from None
        rel = os.path.relpath(ap, base).replace(os.sep, "/")
        pred[role] = {"path": rel, "sha256": sha}
        subjects.append({"name": rel, "digest": {"sha256": sha}})
    pred["identity"] = compute_identity({r: c["sha256"] for r, c in pred.items()})
    pred["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    doc = {"_type": STATEMENT_TYPE, "subject": subjects, "predicateType": PREDICATE_MANIFEST, "predicate": pred}
    tmp = f"{out}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(json.dumps(doc, indent=2) + "\n")
    os.replace(tmp, out)
    return load_manifest(out)


def sign_manifest(path: str, key: 'SigningKey | str') -> str:
    """Validate ``path``, check its components still match, write ``<path>.bundle``; returns its path."""
    from .bundle import make_bundle
    from .keys import load_signing_key
    from .sign import _write

    m = load_manifest(path)
    check_components(m)  # signing a manifest that no longer matches its files would bless stale digests
    sk = load_signing_key(key) if isinstance(key, str) else key
    return _write(m.path + ".bundle", make_bundle([(os.path.basename(m.path), m.digest)], PREDICATE_MANIFEST, sk))


def check_components(m: Manifest) -> 'dict[str, str]':
    """Re-hash every component; :class:`TrustError` (reason ``digest``/``missing``) naming the first
    that changed. Returns role -> absolute path."""
    from .verify import sha256_file

    paths: dict[str, str] = {}
    for role, (rel, sha) in m.components.items():
        ap = m.component_path(role)
        label = f"{ROLE_LABELS[role]} {rel}"
        try:
            now = sha256_file(ap)
        except OSError as exc:
            raise TrustError(f"{label} named by the agent manifest cannot be read: {exc.strerror}", path=ap,
                             reason="missing", hint="restore the file, or re-create and re-sign the manifest") from None
        if now != sha:
            raise TrustError(f"{label} changed since the manifest was signed", path=ap, reason="digest",
                             hint="review the change; if intended: nono manifest create ... --force, then "
                                  "nono manifest sign")
        paths[role] = ap
    return paths


class ManifestCheck:
    """The outcome of :func:`verify_manifest` / :func:`preflight_manifest`.

    * ``digest``: sha256 of the manifest file (what the bundle signs); ``identity``: the agent
      identity over the component digests (see :func:`compute_identity`).
    * ``protected_files``: the manifest, its bundle and the component files (absolute paths):
      make them read-only in the sandbox.
    * ``ok``: False only when a failure was downgraded (``warn``/``audit``/``--trust-override``).
    """

    __slots__ = ("components", "digest", "identity", "messages", "ok", "path", "protected_files", "publisher")

    def __init__(self, m: Manifest) -> None:
        self.path = m.path
        self.digest = m.digest
        self.identity = m.identity
        self.components = {r: (m.component_path(r), d) for r, (_p, d) in m.components.items()}
        self.publisher = ""
        self.ok = False
        self.messages: list[str] = []
        self.protected_files: list[str] = []

    def audit_fields(self) -> 'dict[str, Any]':
        """Fields for ``AuditSession.event("agent_manifest", **fields)``."""
        return {"manifest": self.path, "sha256": self.digest, "identity": self.identity, "verified": self.ok,
                "publisher": self.publisher,
                "components": {r: {"path": p, "sha256": d} for r, (p, d) in self.components.items()}}


def verify_manifest(path: str, policy: 'TrustPolicy', *, policy_files: 'list[str] | None' = None) -> ManifestCheck:
    """Check ``path`` strictly: well-formed, bundle present and naming this manifest's digest,
    signed by a trusted publisher of ``policy``, no blocklisted digest, components unchanged.

    Returns a :class:`ManifestCheck` with ``ok`` True; any failure is a :class:`TrustError`
    (reason ``malformed``, ``missing``, ``digest``, ``publisher``, ``signature``, ``blocklist``).
    """
    from .bundle import read_bundle
    from .verify import MSG_DIGEST, MSG_MISSING, check_signer, no_policy_hint

    m = load_manifest(path)
    for sha in (m.digest, *(d for _p, d in m.components.values())):
        if sha in policy.blocklist:
            why = policy.blocklist[sha]
            raise TrustError(f"agent manifest {m.path}: digest {sha[:16]} is blocklisted" + (f" ({why})" if why else ""),
                             path=m.path, reason="blocklist")
    bpath = m.path + ".bundle"
    if not os.path.lexists(bpath):
        raise TrustError(f"agent manifest {m.path}: {MSG_MISSING}", path=m.path, reason="missing",
                         hint=f"sign it: nono manifest sign {os.path.basename(m.path)} --key ID")
    bundle = read_bundle(bpath)
    if bundle.statement.predicate_type != PREDICATE_MANIFEST:
        raise TrustError(f"{bpath}: not an agent-manifest bundle ({bundle.statement.predicate_type})", path=bpath,
                         reason="malformed", hint="sign it with 'nono manifest sign'")
    if bundle.statement.digest_for(os.path.basename(m.path)) != m.digest:
        raise TrustError(f"agent manifest {m.path}: {MSG_DIGEST}", path=m.path, reason="digest",
                         hint="the manifest changed after it was signed: review it, then 'nono manifest sign' again")
    try:
        pub = check_signer(bundle, policy)
    except TrustError as exc:
        if exc.reason == "publisher" and policy_files is not None and not policy_files:
            exc.hint = no_policy_hint(policy_files)
        raise
    check_components(m)
    check = ManifestCheck(m)
    check.ok, check.publisher = True, pub.name
    check.protected_files = [m.path, bpath, *(p for p, _d in check.components.values())]
    return check


def preflight_manifest(path: str, *, policy_dir: str, override: bool, out: 'Callable[[str], None]') -> ManifestCheck:
    """``nono run --manifest FILE``: verify the manifest before the launch.

    Publishers, blocklist and enforcement come from the user + ``policy_dir`` trust policies
    (merged, strictest wins; none at all means no trusted publisher and ``deny``). Under
    ``deny`` every failure raises :class:`TrustError`; ``override`` or ``warn`` turn a failed
    signature/digest check into a warning (``audit``: recorded in ``messages`` only). A
    malformed or unreadable manifest and a blocklisted digest are refused in every mode.

    ``protected_files`` is filled even for a downgraded failure, so the agent still cannot
    rewrite its prompt, tools or model configuration during the session.
    """
    from .verify import effective_policy, enforce_single

    policy, files = effective_policy(policy_dir)
    m = load_manifest(path)  # malformed: raised in every mode (there is nothing to run against)
    try:
        return verify_manifest(path, policy, policy_files=files)
    except TrustError as exc:
        if exc.reason == "malformed" and exc.path == m.path:
            raise
        msg = enforce_single(f"agent manifest {os.path.basename(m.path)}", exc, policy.enforcement,
                             override=override, out=out)
    check = ManifestCheck(m)
    check.messages.append(msg)
    bpath = m.path + ".bundle"
    check.protected_files = [m.path, *([bpath] if os.path.lexists(bpath) else []),
                             *(p for p, _d in check.components.values() if os.path.lexists(p))]
    return check
