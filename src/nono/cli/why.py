"""``nono why``: print a verdict (stdout, exit 0 whatever the verdict)."""

from __future__ import annotations

import os
import sys

from ..errors import NonoError
from . import args as A

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any


def cmd_why(opts: dict[str, object]) -> int:
    import json

    from ..policy.paths import expand
    from ..policy.why import View, query_host, query_path

    if opts.get("self_"):
        cap = os.environ.get("NONO_CAP_FILE")
        if not cap:
            verdict: dict[str, object] = {"status": "not_sandboxed", "details": "NONO_CAP_FILE is not set: this process is not inside a nono sandbox"}
            return _emit(verdict, bool(opts.get("json")))
        from ..sandbox.apply import read_capfile

        try:
            data = read_capfile(cap)
        except (OSError, ValueError) as exc:
            raise NonoError(f"cannot read the capability file {cap}: {exc}") from exc
        view = View.from_capfile(data)
        if not opts.get("path") and not opts.get("host"):
            return _emit(data, True) if opts.get("json") else _emit_caps(data)
    else:
        from ..sandbox.plan import build_plan
        from .main import Out, policy_from_options

        policy = policy_from_options(opts, Out(silent=True), ask_cwd=False)
        from ..sandbox.plan import interpreter_paths

        view = View.from_plan(build_plan(policy, cwd=str(opts["workdir"]) if opts.get("workdir") else None,
                                         readonly=interpreter_paths()))
    if opts.get("path"):
        op = str(opts.get("op") or "read")
        if op not in ("read", "write", "readwrite"):
            raise A.UsageError(f"--op must be read, write or readwrite, not {op!r}")
        verdict = query_path(view, expand(str(opts["path"])), op)
    elif opts.get("host"):
        verdict = query_host(view, str(opts["host"]), int(opts.get("port") or 443))  # type: ignore[call-overload]
    else:
        raise A.UsageError("nono why needs --path PATH or --host HOST (or --self)")
    del json
    return _emit(verdict, bool(opts.get("json")))


def _printable(text: str) -> str:
    """``text`` with control characters escaped (a verdict echoes user input to the terminal)."""
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)


def _emit(verdict: dict[str, object], as_json: bool) -> int:
    if not as_json:
        verdict = {k: _printable(v) if isinstance(v, str) else v for k, v in verdict.items()}
    if as_json:
        import json

        sys.stdout.write(json.dumps(verdict, indent=2) + "\n")
        return 0
    status = str(verdict.get("status", "")).upper()
    what = verdict.get("path") or (f"{verdict.get('host')}:{verdict.get('port')}" if verdict.get("host") else "")
    lines = [f"{status}  {what}" + (f"  ({verdict['op']})" if verdict.get("op") else "")]
    labels = (("reason", "Reason"), ("granted_path", "Granted by"), ("access", "Access"), ("source", "Source"),
              ("details", "Details"), ("policy_source", "Policy"))
    for key, label in labels:
        if key in verdict:
            lines.append(f"  {label}: {verdict[key]}")
    mc = verdict.get("matching_capability")
    if isinstance(mc, dict):
        lines.append(f"  Closest match: {mc['path']} ({mc['access']}, {mc['source']})")
    if "suggested_flag" in verdict:
        lines.append(f"  Suggested fix: {verdict['suggested_flag']}")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def _emit_caps(data: Mapping[str, Any]) -> int:
    lines = ["Inside a nono sandbox.", "Filesystem:"]
    for r in data.get("filesystem", []):
        lines.append(f"  {r['access']:<9} {r['path']}{'' if r['kind'] == 'dir' else ' (file)'}  [{r['source']}]")
    net = data.get("network", {})
    lines.append(f"Network: {net.get('mode')}")
    prot = data.get("protections", {})
    lines.append("Protections: " + ", ".join(f"{k}={v}" for k, v in prot.items()))
    sys.stdout.write("\n".join(lines) + "\n")
    return 0
