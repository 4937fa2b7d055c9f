"""``nono trust keygen|sign|sign-policy|init|verify|list|export-key`` and ``nono sign FILE``."""

import os
import sys

from ..trust import POLICY_FILE, TrustError, user_policy_path
from . import args as A

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..trust.policy import TrustPolicy
    from ..trust.verify import FileResult

HELP = """\
Usage: nono trust COMMAND [OPTIONS]

Sign the instruction files that steer an agent (CLAUDE.md, AGENTS.md, .mcp.json, ...) so
'nono run' can refuse to start when one was changed. Keys are ECDSA P-256, kept in the
system keyring (service nono-trust) or in a file:///path key (mode 0600).

Commands:
  keygen [--id ID] [--keyref file:///PATH] [--force]   create a signing key (default id: default)
  sign [FILES...|--all] [--key ID] [--multi-subject]  write FILE.bundle (or one .nono-trust.bundle)
  sign-policy [FILE|--user] [--key ID]                sign trust-policy.json (writes .bundle)
  init [--include PAT...] [--key ID] [--user] [--force] [--enforcement deny|warn|audit]
                                                      write trust-policy.json naming your key
  verify [FILES...|--all] [--policy FILE]             check files against their bundles
  list [--json]                                       covered files and their status
  export-key [--id ID] [--pem]                        print a public key (base64 DER or PEM)

Examples:
  nono trust keygen --id default
  nono trust sign --key default CLAUDE.md AGENTS.md
  nono trust init --key default
  nono trust verify --all
  nono run --allow-cwd -- claude        # refuses to start if a covered file was changed
"""

_S = "Options"
_KEY = A.Flag("key", ("--key", "-k"), "str", "signing key: ID in the keyring, or file:///path (default: default)",
              metavar="ID", section=_S)
_ALL = A.Flag("all", ("--all",), "bool", "every file the trust policy covers in the current directory", section=_S)
_FLAGS: 'dict[str, tuple[A.Flag, ...]]' = {
    "keygen": (A.Flag("id", ("--id",), "str", "key id in the keyring (default: default)", metavar="ID", section=_S),
               A.Flag("keyref", ("--keyref",), "str", "store the key in a file instead (file:///abs/path, mode 0600)",
                      metavar="URI", section=_S),
               A.Flag("force", ("--force",), "bool", "replace an existing key", section=_S)),
    "sign": (_KEY, _ALL, A.Flag("multi_subject", ("--multi-subject",), "bool",
                                "one .nono-trust.bundle naming all the files", section=_S)),
    "sign-policy": (_KEY, A.Flag("user", ("--user",), "bool", f"sign the user policy ({user_policy_path()})",
                                 section=_S)),
    "init": (A.Flag("include", ("--include",), "list", "glob of files to cover (repeatable; default: the usual "
                                                       "instruction files)", metavar="PAT", section=_S),
             _KEY, A.Flag("user", ("--user",), "bool", "write the user policy instead of ./trust-policy.json", section=_S),
             A.Flag("force", ("--force",), "bool", "overwrite an existing policy", section=_S),
             A.Flag("enforcement", ("--enforcement",), "str", "deny (default), warn or audit", metavar="MODE",
                    section=_S)),
    "verify": (_ALL, A.Flag("policy", ("--policy",), "str", "use this policy file only", metavar="FILE", section=_S)),
    "list": (A.Flag("json", ("--json",), "bool", "print JSON", section=_S),),
    "export-key": (A.Flag("id", ("--id",), "str", "key id or file:///path (default: default)", metavar="ID", section=_S),
                   A.Flag("pem", ("--pem",), "bool", "PEM instead of base64 DER", section=_S)),
}


def _out(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


def cmd_trust(argv: list[str]) -> int:
    """Dispatch ``nono trust SUB ...``; returns the exit status (raises ``NonoError`` on failure)."""
    return A.dispatch("trust", argv, _FLAGS, HELP, {"keygen": _keygen, "sign": _sign, "sign-policy": _sign_policy,
                                                    "init": _init, "verify": _verify, "list": _list,
                                                    "export-key": _export})


def cmd_sign(argv: list[str]) -> int:
    """``nono sign FILE...``: the short spelling of ``nono trust sign``."""
    if argv and argv[0] in ("-h", "--help"):
        sys.stdout.write("Usage: nono sign FILE... [--key ID] [--multi-subject]   (same as 'nono trust sign')\n"
                         + A.format_flags(_FLAGS["sign"]) + "\n")
        return 0
    return cmd_trust(["sign", *argv])


def _no_args(sub: str, pos: list[str]) -> None:
    if pos:
        raise A.UsageError(f"'nono trust {sub}' takes no arguments (got {' '.join(pos)})")


def _key_ref(opts: 'dict[str, object]', dest: str = "key") -> str:
    ref = str(opts.get(dest) or "default")
    if ref.startswith("file://"):
        from ..trust.keys import file_path

        file_path(ref)
    else:
        from ..trust.keys import keyring_name

        keyring_name(ref)
    return ref


def _policy_paths(workdir: str) -> list[str]:
    return [p for p in (user_policy_path(), os.path.join(workdir, POLICY_FILE)) if os.path.exists(p)]


def _policy(workdir: str, explicit: str = "") -> 'TrustPolicy':
    from ..trust.policy import load_merged, load_policy

    return load_policy(explicit) if explicit else load_merged(_policy_paths(workdir))


# -- keygen ----------------------------------------------------------------------------
def _keygen(opts: 'dict[str, object]', pos: list[str]) -> int:
    from ..trust.keys import generate_key, validate_key_id

    _no_args("keygen", pos)
    if opts["keyref"] and opts["id"]:
        raise A.UsageError("--id and --keyref are alternatives: the key goes to the keyring OR to a file")
    if opts["keyref"]:
        ref = str(opts["keyref"])
        if not ref.startswith("file://"):
            raise A.UsageError(f"--keyref must be file:///abs/path (got {ref!r})")
    else:
        ref = validate_key_id(str(opts["id"] or "default"))
    sk = generate_key(ref, force=bool(opts["force"]))
    where = f"file {ref[7:]} (public key in {ref[7:]}.pub)" if ref.startswith("file://") else \
        "the system keyring (service nono-trust)"
    _out(f"Created ECDSA P-256 key '{sk.identity}' in {where}\n"
         f"  fingerprint: {sk.fingerprint}\n  public key:  {sk.public_key_b64}\n"
         f"Next: nono trust sign --key {ref} CLAUDE.md   and   nono trust init --key {ref}")
    return 0


# -- sign ------------------------------------------------------------------------------
def _covered(workdir: str, policy: 'TrustPolicy') -> list[str]:
    from ..trust.verify import find_covered

    return find_covered(workdir, policy.includes)


def _sign(opts: 'dict[str, object]', pos: list[str]) -> int:
    from ..trust.keys import load_signing_key
    from ..trust.sign import sign_file, sign_multi

    workdir = os.getcwd()
    if opts["all"] and pos:
        raise A.UsageError("give FILES or --all, not both")
    if opts["all"]:
        rels = _covered(workdir, _policy(workdir))
        if not rels:
            _out("No files found matching policy includes in current directory.")
            return 1
    elif pos:
        rels = pos
    else:
        raise A.UsageError("nothing to sign: give FILES or --all")
    sk = load_signing_key(_key_ref(opts))
    if opts["multi_subject"]:
        norm = []
        for f in rels:
            rel = os.path.relpath(os.path.abspath(f), workdir)
            if rel.startswith(".."):
                raise A.UsageError(f"--multi-subject files must be inside the current directory ({f})")
            norm.append(rel)
        out = sign_multi(workdir, norm, sk)
        _out(f"Signed {len(norm)} file(s) as {sk.identity} -> {os.path.relpath(out)}")
        return 0
    for f in rels:
        out = sign_file(f, sk)
        _out(f"Signed {f} as {sk.identity} -> {os.path.relpath(out)}")
    return 0


def _sign_policy(opts: 'dict[str, object]', pos: list[str]) -> int:
    from ..trust.sign import sign_policy

    if len(pos) > 1 or (pos and opts["user"]):
        raise A.UsageError("'nono trust sign-policy' takes one FILE or --user")
    path = user_policy_path() if opts["user"] else (pos[0] if pos else POLICY_FILE)
    out = sign_policy(path, _key_ref(opts))
    _out(f"Signed trust policy {path} -> {out}")
    return 0


# -- init ------------------------------------------------------------------------------
def _init(opts: 'dict[str, object]', pos: list[str]) -> int:
    import json

    from ..trust.keys import identity, key_exists, public_key_der
    from ..trust.policy import DEFAULT_INCLUDES, ENFORCEMENT, parse_policy

    _no_args("init", pos)
    mode = str(opts["enforcement"] or "deny")
    if mode not in ENFORCEMENT:
        raise A.UsageError(f"--enforcement must be deny, warn or audit (not {mode!r})")
    path = user_policy_path() if opts["user"] else os.path.join(os.getcwd(), POLICY_FILE)
    if os.path.exists(path) and not opts["force"]:
        raise TrustError(f"{path} already exists", path=path, reason="policy", hint="pass --force to overwrite it")
    ref = _key_ref(opts)
    publishers = []
    try:
        if key_exists(ref):
            import base64

            ident = identity(ref)
            publishers.append({"name": ident, "key_id": ident,
                               "public_key": base64.b64encode(public_key_der(ref)).decode("ascii")})
        else:
            _out(f"skipping publisher entry: no key {ref!r} (create it with 'nono trust keygen', then re-run init --force)")
    except TrustError as exc:
        _out(f"skipping publisher entry: {exc.message}")
    includes = list(opts["include"]) if opts["include"] else list(DEFAULT_INCLUDES)  # type: ignore[call-overload]
    doc = {"version": 1, "includes": includes, "publishers": publishers, "blocklist": [], "enforcement": mode}
    text = json.dumps(doc, indent=2) + "\n"
    parse_policy(text, path)  # what we write must load
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    _out(f"Wrote {path} ({len(publishers)} publisher(s), enforcement {mode})")
    if not opts["user"] and not os.path.exists(user_policy_path()):
        _out("note: consider a user-level policy too (nono trust init --user): a project policy alone can be "
             "edited by whoever controls the project")
    return 0


# -- verify / list -----------------------------------------------------------------------
def _results(workdir: str, policy: 'TrustPolicy', rels: list[str]) -> 'list[FileResult]':
    from ..trust.verify import load_multi, verify_file

    multi = load_multi(workdir)
    return [verify_file(workdir, rel, policy, multi=multi) for rel in rels]


def _verify(opts: 'dict[str, object]', pos: list[str]) -> int:
    from ..trust.verify import verify_policy_file

    workdir = os.getcwd()
    if opts["all"] and pos:
        raise A.UsageError("give FILES or --all, not both")
    explicit = str(opts["policy"] or "")
    if not explicit and not _policy_paths(workdir):
        sys.stderr.write(f"note: no {POLICY_FILE} found (here or {user_policy_path()}): no publisher is trusted; "
                         "create one with 'nono trust init --key ID'\n")
    policy = _policy(workdir, explicit)
    failed = 0
    for p in ([explicit] if explicit else _policy_paths(workdir)):
        try:
            pub = verify_policy_file(p, policy)
        except TrustError as exc:
            _out(f"FAILED    {p}: {exc.message}")
            failed += 1
        else:
            if pub is not None:
                _out(f"VERIFIED  {p}  (trust policy, publisher {pub.name})")
    rels = [os.path.relpath(os.path.abspath(f), workdir) for f in pos] if pos else _covered(workdir, policy)
    if not rels:
        _out("No files found matching policy includes in current directory.")
        return 1 if failed else 0
    results = _results(workdir, policy, rels)
    for r in results:
        if r.ok:
            _out(f"VERIFIED  {r.rel}  (publisher {r.publisher})")
        else:
            failed += 1
            _out(f"FAILED    {r.rel}: {r.reason}")
    if failed:
        _out(f"{failed} of {len(results)} file(s) failed verification.")
        return 1
    _out(f"Verified {len(results)} file(s) successfully.")
    return 0


def _list(opts: 'dict[str, object]', pos: list[str]) -> int:
    _no_args("list", pos)
    workdir = os.getcwd()
    policy = _policy(workdir)
    results = _results(workdir, policy, _covered(workdir, policy))
    if opts["json"]:
        import json

        rows = []
        for r in results:
            d = r.to_dict()
            d["status"] = "failed" if r.status == "blocked" else r.status
            rows.append(d)
        _out(json.dumps(rows, indent=2))
        return 0
    if not results:
        _out("No files found matching policy includes in current directory.")
        return 0
    width = max(len(r.rel) for r in results)
    for r in results:
        extra = f"  ({r.publisher})" if r.ok else f"  {r.reason}"
        _out(f"{r.status:<9} {r.rel:<{width}}{extra}")
    return 0


def _export(opts: 'dict[str, object]', pos: list[str]) -> int:
    import base64

    from ..trust.keys import public_key_der, public_key_pem

    if len(pos) > 1 or (pos and opts["id"]):
        raise A.UsageError("'nono trust export-key' takes one key id (or --id)")
    ref = _key_ref({"key": pos[0] if pos else opts["id"]})
    der = public_key_der(ref)
    _out(public_key_pem(der) if opts["pem"] else base64.b64encode(der).decode("ascii"))
    return 0
