"""Trust policies (``trust-policy.json``): loading, validation and merging.

::

    {"version": 1,
     "includes": ["CLAUDE.md", "AGENTS.md", ...],         # globs; default: DEFAULT_INCLUDES
     "publishers": [{"name": "alice", "key_id": "default", "public_key": "MFkw..."},     # keyed
                    {"name": "ci", "issuer": "https://token.actions.githubusercontent.com",
                     "repository": "org/*", "workflow": "...", "ref_pattern": "..."}],  # keyless
     "blocklist": [{"sha256": "<hex>", "reason": "..."}],   # or upstream's {"digests": [{sha256,
                                                            #   description, added}], "publishers": [names]}
     "enforcement": "deny"}                                 # deny | warn | audit (default deny)

User and project policies merge: publishers, includes and blocklists are united and the
strictest enforcement wins (deny > warn > audit). Limits follow upstream: 100 includes, 1,000
publishers, 10,000 blocklist entries.
"""

import base64
import binascii
import json

from . import TrustError
from .bundle import is_sha256_hex
from .dsse import fingerprint

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

DEFAULT_INCLUDES = ("CLAUDE.md", "AGENTS.md", "GEMINI.md", ".cursorrules", ".github/copilot-instructions.md",
                    "SKILL.md", ".mcp.json")
ENFORCEMENT = ("audit", "warn", "deny")  # ascending strictness
MAX_INCLUDES = 100
MAX_PUBLISHERS = 1000
MAX_BLOCKLIST = 10000
MAX_POLICY_BYTES = 1 << 20
_KEYS = frozenset(("version", "includes", "files", "publishers", "blocklist", "enforcement", "$schema", "description"))


class Publisher:
    """A trusted signer: keyed (``public_key`` SPKI DER) or keyless (``issuer`` + identity fields)."""

    __slots__ = ("issuer", "key_id", "keyless", "name", "public_key", "source", "workflow", "identity", "ref_pattern")

    def __init__(self, name: str, *, key_id: str = "", public_key: bytes = b"", issuer: str = "", identity: str = "",
                 workflow: str = "", ref_pattern: str = "", source: str = "") -> None:
        self.name, self.key_id, self.public_key = name, key_id, public_key
        self.issuer, self.identity, self.workflow, self.ref_pattern = issuer, identity, workflow, ref_pattern
        self.keyless = not public_key
        self.source = source

    @property
    def fingerprint(self) -> str:
        """SHA-256 hex of the public key ("" for keyless)."""
        return fingerprint(self.public_key) if self.public_key else ""

    def to_dict(self) -> 'dict[str, Any]':
        """The JSON form."""
        if not self.keyless:
            return {"name": self.name, "key_id": self.key_id, "public_key": base64.b64encode(self.public_key).decode()}
        d = {"name": self.name, "issuer": self.issuer, "repository": self.identity}
        if self.workflow:
            d["workflow"] = self.workflow
        if self.ref_pattern:
            d["ref_pattern"] = self.ref_pattern
        return d


class TrustPolicy:
    """A validated (possibly merged) trust policy."""

    __slots__ = ("blocked_publishers", "blocklist", "enforcement", "includes", "publishers", "sources")

    def __init__(self, *, includes: 'tuple[str, ...]' = DEFAULT_INCLUDES, publishers: 'tuple[Publisher, ...]' = (),
                 blocklist: 'dict[str, str] | None' = None, blocked_publishers: 'frozenset[str]' = frozenset(),
                 enforcement: str = "deny", sources: 'tuple[str, ...]' = ()) -> None:
        self.includes = includes
        self.publishers = publishers
        self.blocklist = blocklist or {}
        self.blocked_publishers = blocked_publishers
        self.enforcement = enforcement
        self.sources = sources

    def merge(self, other: 'TrustPolicy') -> 'TrustPolicy':
        """The union of both policies, with the stricter enforcement."""
        includes = tuple(dict.fromkeys(self.includes + other.includes))
        strict = max(self.enforcement, other.enforcement, key=ENFORCEMENT.index)
        return TrustPolicy(includes=includes, publishers=self.publishers + other.publishers,
                           blocklist={**other.blocklist, **self.blocklist},
                           blocked_publishers=self.blocked_publishers | other.blocked_publishers,
                           enforcement=strict, sources=self.sources + other.sources)

    def publishers_for(self, hint: str) -> 'list[Publisher]':
        """Keyed publishers whose fingerprint, key id or name equals ``hint``."""
        return [p for p in self.publishers if not p.keyless and hint in (p.fingerprint, p.key_id, p.name)]


def _err(where: str, what: str) -> TrustError:
    return TrustError(f"{where}: invalid trust policy: {what}", path=where, reason="policy",
                      hint="see docs/trust.md for the format, or recreate it with 'nono trust init --force'")


def _str(v: object, where: str, field: str, *, required: bool = True) -> str:
    if v is None and not required:
        return ""
    if not isinstance(v, str) or (required and not v) or not v.isprintable() or len(v) > 4096:
        raise _err(where, f"{field} must be a {'non-empty ' if required else ''}printable string")
    return v


def _publisher(p: object, where: str, i: int) -> Publisher:
    field = f"publishers[{i}]"
    if not isinstance(p, dict):
        raise _err(where, f"{field} must be an object")
    name = _str(p.get("name"), where, f"{field}.name")
    if "public_key" in p:
        raw = _str(p.get("public_key"), where, f"{field}.public_key")
        try:
            der = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise _err(where, f"{field}.public_key is not base64 (expected base64 SPKI DER, 'MFkw...')") from None
        if not der.startswith(b"\x30"):
            raise _err(where, f"{field}.public_key is not DER SubjectPublicKeyInfo")
        return Publisher(name, key_id=_str(p.get("key_id", name), where, f"{field}.key_id"), public_key=der, source=where)
    if "issuer" in p:
        ident = p.get("repository", p.get("identity"))
        return Publisher(name, issuer=_str(p.get("issuer"), where, f"{field}.issuer"),
                         identity=_str(ident, where, f"{field}.repository"),
                         workflow=_str(p.get("workflow"), where, f"{field}.workflow", required=False),
                         ref_pattern=_str(p.get("ref_pattern"), where, f"{field}.ref_pattern", required=False),
                         source=where)
    raise _err(where, f"{field} needs 'public_key' (keyed) or 'issuer' and 'repository' (keyless)")


def _blocklist(b: object, where: str) -> 'tuple[dict[str, str], frozenset[str]]':
    names: frozenset[str] = frozenset()
    if isinstance(b, dict):
        extra = set(b) - {"digests", "publishers"}
        if extra:
            raise _err(where, f"unknown blocklist key(s): {', '.join(sorted(map(str, extra)))}")
        pubs = b.get("publishers", [])
        if not isinstance(pubs, list) or not all(isinstance(x, str) for x in pubs):
            raise _err(where, "blocklist.publishers must be a list of publisher names")
        names = frozenset(pubs)
        b = b.get("digests", [])
    if not isinstance(b, list):
        raise _err(where, "blocklist must be a list of {sha256, reason} (or {digests, publishers})")
    if len(b) > MAX_BLOCKLIST:
        raise _err(where, f"too many blocklist entries ({len(b)}; at most {MAX_BLOCKLIST})")
    out: dict[str, str] = {}
    for i, e in enumerate(b):
        if not isinstance(e, dict) or not is_sha256_hex(e.get("sha256")):
            raise _err(where, f"blocklist[{i}] must be an object with sha256 (64 lowercase hex characters)")
        reason = e.get("reason", e.get("description", ""))
        out[str(e["sha256"])] = reason if isinstance(reason, str) else ""
    return out, names


def parse_policy(data: 'str | bytes', where: str) -> TrustPolicy:
    """Validate policy JSON; every problem is a :class:`TrustError` naming ``where``."""
    if len(data) > MAX_POLICY_BYTES:
        raise _err(where, f"larger than {MAX_POLICY_BYTES} bytes")
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise _err(where, f"not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise _err(where, "the top level must be an object")
    unknown = set(doc) - _KEYS
    if unknown:
        raise _err(where, f"unknown key(s) {', '.join(sorted(map(repr, unknown)))} (known: {', '.join(sorted(_KEYS))})")
    version = doc.get("version", 1)
    if version != 1 or isinstance(version, bool):
        raise _err(where, f"unsupported version {str(version)[:40]!r} (this nono understands version 1; upgrade nono?)")
    includes: tuple[str, ...] = DEFAULT_INCLUDES
    if "includes" in doc or "files" in doc:
        pats: list[str] = []
        for key in ("includes", "files"):
            v = doc.get(key, [])
            if not isinstance(v, list):
                raise _err(where, f"{key} must be a list of glob patterns")
            for j, pat in enumerate(v):
                pat = _str(pat, where, f"{key}[{j}]")
                if pat.startswith("/") or ".." in pat.split("/"):
                    raise _err(where, f"{key}[{j}] {pat!r} must be relative to the project, without '..'")
                pats.append(pat)
        if len(pats) > MAX_INCLUDES:
            raise _err(where, f"too many include patterns ({len(pats)}; at most {MAX_INCLUDES})")
        includes = tuple(dict.fromkeys(pats))
    pubs = doc.get("publishers", [])
    if not isinstance(pubs, list):
        raise _err(where, "publishers must be a list")
    if len(pubs) > MAX_PUBLISHERS:
        raise _err(where, f"too many publishers ({len(pubs)}; at most {MAX_PUBLISHERS})")
    publishers = tuple(_publisher(p, where, i) for i, p in enumerate(pubs))
    blocklist, blocked_names = _blocklist(doc.get("blocklist", []), where)
    enforcement = doc.get("enforcement", "deny")
    if enforcement not in ENFORCEMENT:
        raise _err(where, f"enforcement must be one of deny, warn, audit (not {str(enforcement)[:40]!r})")
    return TrustPolicy(includes=includes, publishers=publishers, blocklist=blocklist,
                       blocked_publishers=blocked_names, enforcement=str(enforcement), sources=(where,))


def load_policy(path: str) -> TrustPolicy:
    """Read and validate the policy file ``path``."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_POLICY_BYTES + 1)
    except OSError as exc:
        raise TrustError(f"{path}: cannot read trust policy: {exc.strerror}", path=path, reason="policy") from None
    return parse_policy(data, path)


def load_merged(paths: 'list[str]') -> TrustPolicy:
    """Load and merge the existing policy files among ``paths`` (none: the built-in defaults)."""
    merged: TrustPolicy | None = None
    for p in paths:
        pol = load_policy(p)
        merged = pol if merged is None else merged.merge(pol)
    return merged if merged is not None else TrustPolicy(enforcement="deny")
