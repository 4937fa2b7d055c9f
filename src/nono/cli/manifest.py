"""``nono manifest create|sign|verify``: agent manifests (see :mod:`nono.trust.manifest`)."""

import os
import sys

from . import args as A

HELP = """\
Usage: nono manifest COMMAND [OPTIONS]

An agent manifest hashes an agent's system prompt, tool definitions and model configuration
into one identity (an in-toto statement). Signed, it lets 'nono run --manifest FILE' refuse
to start an agent whose prompt, tools or model settings changed since they were reviewed.

Commands:
  create [--prompt F] [--tools F] [--model F] -o OUT [--force]   write the manifest
  sign MANIFEST [--key ID]                                      write MANIFEST.bundle
  verify MANIFEST [--policy FILE] [--json]                      check bundle + components

Examples:
  nono manifest create --prompt system.md --tools tools.json --model model.json -o agent.manifest.json
  nono manifest sign agent.manifest.json --key default
  nono manifest verify agent.manifest.json
  nono run --manifest agent.manifest.json --allow-cwd -- python agent.py
"""

_S = "Options"
_FLAGS: 'dict[str, tuple[A.Flag, ...]]' = {
    "create": (A.Flag("prompt", ("--prompt",), "str", "the system prompt file", metavar="FILE", section=_S),
               A.Flag("tools", ("--tools",), "str", "the tool definitions file", metavar="FILE", section=_S),
               A.Flag("model", ("--model",), "str", "the model configuration file", metavar="FILE", section=_S),
               A.Flag("output", ("-o", "--output"), "str", "the manifest to write (paths in it are relative to "
                                                          "its directory)", metavar="FILE", section=_S),
               A.Flag("force", ("--force",), "bool", "overwrite an existing manifest", section=_S)),
    "sign": (A.Flag("key", ("--key", "-k"), "str", "signing key: ID in the keyring, or file:///path (default: default)",
                    metavar="ID", section=_S),),
    "verify": (A.Flag("policy", ("--policy",), "str", "use this trust policy file only (default: the user and "
                                                     "./trust-policy.json policies)", metavar="FILE", section=_S),
               A.Flag("json", ("--json",), "bool", "print JSON", section=_S)),
}


def _out(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


def cmd_manifest(argv: list[str]) -> int:
    """Dispatch ``nono manifest SUB ...``; returns the exit status (raises ``NonoError`` on failure)."""
    return A.dispatch("manifest", argv, _FLAGS, HELP, {"create": _create, "sign": _sign, "verify": _verify})


def _one(sub: str, pos: list[str]) -> str:
    if len(pos) != 1:
        raise A.UsageError(f"'nono manifest {sub}' takes one MANIFEST file (got {len(pos)} arguments)")
    return pos[0]


def _create(opts: 'dict[str, object]', pos: list[str]) -> int:
    from ..trust.manifest import ROLE_LABELS, create_manifest

    if pos:
        raise A.UsageError(f"'nono manifest create' takes no arguments (got {' '.join(pos)}); use --prompt/--tools/--model")
    if not opts["output"]:
        raise A.UsageError("'nono manifest create' needs -o FILE (e.g. -o agent.manifest.json)")
    if not (opts["prompt"] or opts["tools"] or opts["model"]):
        raise A.UsageError("'nono manifest create' needs at least one of --prompt, --tools, --model")
    m = create_manifest(str(opts["output"]), prompt=str(opts["prompt"] or ""), tools=str(opts["tools"] or ""),
                        model=str(opts["model"] or ""), force=bool(opts["force"]))
    _out(f"Wrote agent manifest {os.path.relpath(m.path)}")
    for role, (rel, sha) in m.components.items():
        _out(f"  {ROLE_LABELS[role]:<20} {rel}  sha256:{sha[:16]}")
    _out(f"  identity: {m.identity}\nNext: nono manifest sign {os.path.relpath(m.path)} --key ID")
    return 0


def _sign(opts: 'dict[str, object]', pos: list[str]) -> int:
    from ..trust.keys import file_path, keyring_name, load_signing_key
    from ..trust.manifest import sign_manifest

    path = _one("sign", pos)
    ref = str(opts["key"] or "default")
    if ref.startswith("file://"):
        file_path(ref)
    else:
        keyring_name(ref)
    sk = load_signing_key(ref)
    out = sign_manifest(path, sk)
    _out(f"Signed agent manifest {path} as {sk.identity} -> {os.path.relpath(out)}")
    return 0


def _verify(opts: 'dict[str, object]', pos: list[str]) -> int:
    from ..trust.manifest import verify_manifest
    from ..trust.policy import load_policy
    from ..trust.verify import effective_policy

    path = _one("verify", pos)
    if opts["policy"]:
        policy, files = load_policy(str(opts["policy"])), [str(opts["policy"])]
    else:
        policy, files = effective_policy(os.getcwd())
    check = verify_manifest(path, policy, policy_files=files)  # raises TrustError (exit 1) on failure
    if opts["json"]:
        import json

        _out(json.dumps({"manifest": check.path, "status": "verified", "sha256": check.digest,
                         "identity": check.identity, "publisher": check.publisher,
                         "components": {r: {"path": p, "sha256": d} for r, (p, d) in check.components.items()}},
                        indent=2))
        return 0
    _out(f"VERIFIED  {path}  (publisher {check.publisher})\n  identity: {check.identity}")
    return 0
