"""Verifying instruction files against their bundles, and the pre-launch scan.

Per file, in upstream's order: blocklisted digest (refused in every mode) -> a bundle exists
(``no .bundle file found``) -> the signed digest matches (``bundle digest does not match file
content``; ``digest mismatch`` for a multi-subject bundle) -> the signer is a trusted
publisher (``not in trusted publishers``) -> the signature verifies.
"""

import hashlib
import os
from fnmatch import fnmatchcase

from . import POLICY_FILE, Preflight, TrustError, user_policy_path
from .bundle import PREDICATE_INSTRUCTION, PREDICATE_MULTI, PREDICATE_POLICY, Bundle, read_bundle
from .policy import Publisher, TrustPolicy, load_policy

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

MULTI_BUNDLE = ".nono-trust.bundle"
MAX_FILES = 1000
SKIP_DIRS = frozenset((".git", ".hg", ".svn", "node_modules", ".venv", "venv", "target", "__pycache__", "dist",
                       "build", ".tox", ".nox", ".mypy_cache", ".pytest_cache", ".ruff_cache", ".cache", ".gradle"))
MSG_MISSING = "no .bundle file found"
MSG_DIGEST = "bundle digest does not match file content"
MSG_MULTI_DIGEST = "digest mismatch"
MSG_PUBLISHER = "not in trusted publishers"


class FileResult:
    """The outcome for one file: ``status`` is ``verified``, ``unsigned``, ``failed`` or ``blocked``."""

    __slots__ = ("bundle", "digest", "path", "publisher", "reason", "rel", "status")

    def __init__(self, path: str, rel: str, status: str, reason: str = "", *, digest: str = "", bundle: str = "",
                 publisher: str = "") -> None:
        self.path, self.rel, self.status, self.reason = path, rel, status, reason
        self.digest, self.bundle, self.publisher = digest, bundle, publisher

    @property
    def ok(self) -> bool:
        """True when verified."""
        return self.status == "verified"

    def to_dict(self) -> 'dict[str, str]':
        """For ``--json``."""
        d = {"file": self.rel, "status": self.status, "sha256": self.digest}
        if self.reason:
            d["reason"] = self.reason
        if self.publisher:
            d["publisher"] = self.publisher
        if self.bundle:
            d["bundle"] = self.bundle
        return d


def sha256_file(path: str) -> str:
    """SHA-256 hex of a file's content (symlinks followed, like the agent's own reads)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 16):
            h.update(chunk)
    return h.hexdigest()


def matches(rel: str, patterns: 'tuple[str, ...] | list[str]') -> bool:
    """A pattern without '/' matches the file name at any depth; one with '/' the relative path."""
    base = rel.rsplit("/", 1)[-1]
    for pat in patterns:
        if "/" not in pat:
            if fnmatchcase(base, pat):
                return True
        elif fnmatchcase(rel, pat) or (pat.startswith("**/") and fnmatchcase(rel, pat[3:])):
            return True
    return False


def find_covered(workdir: str, includes: 'tuple[str, ...] | list[str]') -> 'list[str]':
    """Regular files under ``workdir`` matching ``includes`` (relative paths, sorted).

    Skips VCS, dependency and build directories (``SKIP_DIRS``), does not follow directory
    symlinks and ignores ``*.bundle`` files. More than ``MAX_FILES`` matches is an error.
    """
    found: list[str] = []
    for root, dirs, files in os.walk(workdir):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
        rel_root = os.path.relpath(root, workdir)
        for name in files:
            if name.endswith(".bundle"):
                continue
            rel = name if rel_root == "." else f"{rel_root}/{name}"
            if matches(rel, includes) and os.path.isfile(os.path.join(root, name)):
                found.append(rel)
                if len(found) > MAX_FILES:
                    raise TrustError(f"more than {MAX_FILES} files in {workdir} match the trust policy includes",
                                     path=workdir, reason="policy", hint="narrow 'includes' in trust-policy.json")
    return sorted(found)


def check_signer(bundle: Bundle, policy: TrustPolicy) -> Publisher:
    """The trusted publisher whose key signed ``bundle``; :class:`TrustError` otherwise."""
    where = bundle.source
    if bundle.keyless:
        raise TrustError(f"{where}: keyless (Sigstore/Fulcio) bundles are not supported yet", path=where,
                         reason="unsupported", hint="keyless signing is experimental; sign with a key (nono trust sign --key ID)")
    candidates = policy.publishers_for(bundle.hint)
    if not candidates:
        raise TrustError(f"signer {bundle.hint[:16]} {MSG_PUBLISHER}", path=where, reason="publisher",
                         hint="add the signer's public key to trust-policy.json (nono trust init / nono trust export-key)")
    for pub in candidates:
        if bundle.envelope.verify(pub.public_key):
            if pub.name in policy.blocked_publishers:
                raise TrustError(f"publisher {pub.name!r} is blocklisted", path=where, reason="blocklist")
            return pub
    raise TrustError(f"signature verification failed (key {candidates[0].name!r})", path=where, reason="signature",
                     hint="the bundle was altered or signed by another key; re-sign the file")


def verify_file(workdir: str, rel: str, policy: TrustPolicy, *, multi: 'Bundle | TrustError | None' = None) -> FileResult:
    """Verify ``workdir/rel`` against its sidecar bundle or the multi-subject bundle ``multi``."""
    path = os.path.join(workdir, rel)
    try:
        digest = sha256_file(path)
    except OSError as exc:
        return FileResult(path, rel, "failed", f"cannot read: {exc.strerror}")
    if digest in policy.blocklist:
        why = policy.blocklist[digest]
        return FileResult(path, rel, "blocked", "digest is blocklisted" + (f" ({why})" if why else ""), digest=digest)
    sidecar = path + ".bundle"
    try:
        if os.path.lexists(sidecar):
            bundle = read_bundle(sidecar)
            if bundle.statement.predicate_type != PREDICATE_INSTRUCTION:
                raise TrustError(f"{sidecar}: not an instruction-file bundle ({bundle.statement.predicate_type})",
                                 path=sidecar, reason="malformed")
            name = os.path.basename(rel)
            signed = bundle.statement.digest_for(name)
            if signed is None:
                raise TrustError(f"{sidecar}: the bundle does not name {name!r}", path=sidecar, reason="digest")
            if signed != digest:
                return FileResult(path, rel, "failed", MSG_DIGEST, digest=digest, bundle=sidecar)
        elif multi is not None and (isinstance(multi, TrustError) or multi.statement.digest_for(rel) is not None):
            if isinstance(multi, TrustError):
                raise multi
            bundle, sidecar = multi, multi.source
            if multi.statement.digest_for(rel) != digest:
                return FileResult(path, rel, "failed", MSG_MULTI_DIGEST, digest=digest, bundle=sidecar)
        else:
            return FileResult(path, rel, "unsigned", MSG_MISSING, digest=digest)
        pub = check_signer(bundle, policy)
    except TrustError as exc:
        return FileResult(path, rel, "failed", exc.message.replace(f"{sidecar}: ", ""), digest=digest, bundle=sidecar)
    return FileResult(path, rel, "verified", digest=digest, bundle=sidecar, publisher=pub.name)


def load_multi(workdir: str) -> 'Bundle | TrustError | None':
    """The multi-subject bundle of ``workdir`` (or the error reading it; None if absent)."""
    path = os.path.join(workdir, MULTI_BUNDLE)
    if not os.path.lexists(path):
        return None
    try:
        b = read_bundle(path)
    except TrustError as exc:
        return exc
    if b.statement.predicate_type != PREDICATE_MULTI:
        return TrustError(f"{path}: not a multi-subject bundle ({b.statement.predicate_type})", path=path,
                          reason="malformed")
    return b


def verify_policy_file(path: str, signers: TrustPolicy) -> 'Publisher | None':
    """Verify ``path.bundle`` (a signed trust policy) if it exists; None when unsigned."""
    bpath = path + ".bundle"
    if not os.path.lexists(bpath):
        return None
    bundle = read_bundle(bpath)
    if bundle.statement.predicate_type != PREDICATE_POLICY:
        raise TrustError(f"{bpath}: not a trust-policy bundle", path=bpath, reason="malformed")
    signed = bundle.statement.digest_for(os.path.basename(path))
    if signed is None or signed != sha256_file(path):
        raise TrustError(f"{path}: {MSG_DIGEST}", path=path, reason="digest",
                         hint="the policy changed after it was signed: review it, then 'nono trust sign-policy'")
    return check_signer(bundle, signers)


def run_preflight(workdir: str, project: str, user: str, *, override: bool, out: 'Callable[[str], None]') -> Preflight:
    """The body of :func:`nono.trust.preflight` once a policy file exists."""
    result = Preflight()
    policies = [p for p in (user, project) if p]
    loaded = {p: load_policy(p) for p in policies}
    merged = loaded[policies[0]]
    for p in policies[1:]:
        merged = merged.merge(loaded[p])
    result.enforcement = merged.enforcement
    result.policy_files = policies
    failures: list[tuple[str, str, bool]] = []  # (file, reason, hard)
    if project and not user:
        note = (f"Warning: project-level {POLICY_FILE} found but no user-level policy exists. "
                f"(the agent's project controls its own trust policy; create {user_policy_path()})")
        result.messages.append(note)
        if merged.enforcement != "audit":
            out(note)
    for p in policies:
        signers = loaded[user] if user else loaded[p]  # a project policy is checked against the user's publishers
        try:
            verify_policy_file(p, signers)
        except (TrustError, OSError) as exc:
            failures.append((p, exc.message if isinstance(exc, TrustError) else str(exc), False))
        result.protected_files.append(p)
        if os.path.lexists(p + ".bundle"):
            result.protected_files.append(p + ".bundle")
    multi = load_multi(workdir)
    used_multi = False
    for rel in find_covered(workdir, merged.includes):
        r = verify_file(workdir, rel, merged, multi=multi)
        if r.digest:
            result.digests[r.path] = r.digest
        if r.ok:
            result.verified_files.append(r.path)
            result.protected_files.append(r.path)
            if r.bundle == os.path.join(workdir, MULTI_BUNDLE):
                used_multi = True
            else:
                result.protected_files.append(r.bundle)
        else:
            failures.append((rel, r.reason, r.status == "blocked"))
    if used_multi:
        result.protected_files.append(os.path.join(workdir, MULTI_BUNDLE))
    _enforce(result, failures, merged.enforcement, override=override, out=out)
    return result


def _enforce(result: Preflight, failures: 'list[tuple[str, str, bool]]', mode: str, *, override: bool,
             out: 'Callable[[str], None]') -> None:
    lines = [f"{f}: {why}" for f, why, _hard in failures]
    result.messages.extend(f"trust: {line}" for line in lines)
    hard = [f"{f}: {why}" for f, why, is_hard in failures if is_hard]
    if hard or (mode == "deny" and failures and not override):
        shown = hard or lines
        head = shown[0] if len(shown) == 1 else f"{len(shown)} files failed: " + "; ".join(shown)
        hint = ("a blocklisted file is refused even with --trust-override; remove or replace it" if hard else
                "if you trust the content, sign it (nono trust sign FILE); or pass --trust-override to launch anyway")
        raise TrustError(f"instruction file verification failed: {head}", path=failures[0][0],
                         reason="blocklist" if hard else "denied", hint=hint)
    if not failures or mode == "audit":
        return
    for line in lines:
        out(f"warning: trust: {line}")
    if mode == "deny":
        out(f"warning: --trust-override: launching despite {len(lines)} failed instruction file(s)")


# -- single explicit files (run --verify-signature, run --manifest) ----------------------
def effective_policy(policy_dir: str) -> 'tuple[TrustPolicy, list[str]]':
    """The merged user + ``policy_dir`` trust policy and the files it came from.

    With no policy file anywhere: an empty policy (no publishers, ``deny``), so an explicitly
    requested check fails with ``not in trusted publishers`` instead of passing silently.
    """
    files = [p for p in (user_policy_path(), os.path.join(policy_dir, POLICY_FILE)) if os.path.lexists(p)]
    merged: TrustPolicy | None = None
    for p in files:
        pol = load_policy(p)
        merged = pol if merged is None else merged.merge(pol)
    return (merged if merged is not None else TrustPolicy(enforcement="deny")), files


def no_policy_hint(files: 'list[str]') -> str:
    """A hint for publisher failures when no trust policy exists at all ("" otherwise)."""
    if files:
        return ""
    return (f"no {POLICY_FILE} found (project or {user_policy_path()}), so no publisher is trusted: "
            "create one with 'nono trust init --key ID'")


def enforce_single(what: str, exc: TrustError, mode: str, *, override: bool, out: 'Callable[[str], None]') -> str:
    """Apply the enforcement ``mode`` to one failed explicit check; returns the recorded message.

    Raises ``exc`` under ``deny`` (without ``override``) and for a blocklisted digest in every
    mode; under ``warn`` (or ``deny`` + override) prints a warning; under ``audit`` stays quiet.
    """
    if exc.reason == "blocklist" or (mode == "deny" and not override):
        raise exc
    line = f"trust: {what}: {exc.message}"
    if mode != "audit":
        out(f"warning: {line}")
        if mode == "deny":
            out(f"warning: --trust-override: launching despite the failed check of {what}")
    return line


class FileCheck:
    """The outcome of :func:`verify_file_signature`.

    ``ok`` is False only when a failure was downgraded (``warn``/``audit``/override);
    ``protected_files`` are the file and its bundle when it verified (read-only in the sandbox).
    """

    __slots__ = ("digest", "messages", "ok", "path", "protected_files", "publisher")

    def __init__(self, path: str) -> None:
        self.path = path
        self.digest = ""
        self.publisher = ""
        self.ok = False
        self.messages: list[str] = []
        self.protected_files: list[str] = []


def verify_file_signature(path: str, *, policy_dir: str, override: bool, out: 'Callable[[str], None]') -> FileCheck:
    """``nono run --verify-signature FILE``: check one signed file (``FILE.bundle`` written by
    ``nono sign FILE``) against the trusted publishers of the user + ``policy_dir`` policies.

    Failures follow the merged enforcement like :func:`nono.trust.preflight`: :class:`TrustError`
    under ``deny`` (reason ``missing``, ``digest``, ``publisher``, ``signature``, ...), a warning
    under ``warn`` or with ``override``; a blocklisted digest is refused in every mode.
    """
    path = os.path.abspath(path)
    check = FileCheck(path)
    policy, files = effective_policy(policy_dir)
    if not os.path.isfile(path):
        raise TrustError(f"--verify-signature {path}: no such file", path=path, reason="missing")
    r = verify_file(os.path.dirname(path), os.path.basename(path), policy)
    check.digest = r.digest
    if r.ok:
        check.ok, check.publisher = True, r.publisher
        check.protected_files = [path, r.bundle]
        return check
    reason = {"unsigned": "missing", "blocked": "blocklist"}.get(r.status, "signature")
    if r.reason in (MSG_DIGEST, MSG_MULTI_DIGEST):
        reason = "digest"
    elif MSG_PUBLISHER in r.reason:
        reason = "publisher"
    hint = no_policy_hint(files) if reason == "publisher" else ""
    if reason == "missing":
        hint = f"sign it with 'nono sign {os.path.basename(path)} --key ID'"
    elif reason == "digest":
        hint = "the file changed after it was signed: review it, then sign it again"
    exc = TrustError(f"signature verification failed: {path}: {r.reason}", path=path, reason=reason, hint=hint)
    check.messages.append(enforce_single(path, exc, policy.enforcement, override=override, out=out))
    return check
