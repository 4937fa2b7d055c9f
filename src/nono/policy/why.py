"""``why``: explain a sandbox decision and suggest the flag that changes it.

Pure functions over a :class:`View` (the rules, denies and network state of a
sandbox), so the same code answers for a policy on the command line and, with
``--self``, for the sandbox described by ``NONO_CAP_FILE``. The JSON shape
follows upstream nono (``status``, ``reason``, ``granted_path``, ``access``,
``source``, ``details``, ``policy_source``, ``matching_capability``,
``suggested_flag``).
"""

from __future__ import annotations

import os

from .paths import is_within

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

    from ..sandbox.plan import Plan

_OPS = ("read", "write", "readwrite")


class View:
    """What a sandbox allows, in a form ``why`` can query."""

    def __init__(self, rules: list[dict[str, str]], denies: list[tuple[str, str]],
                 decomposed: list[tuple[str, list[str]]], network: dict[str, object]) -> None:
        self.rules = rules  # {"path", "access", "kind" (dir|file), "source"}
        self.denies = denies
        self.decomposed = decomposed
        self.network = network

    @classmethod
    def from_capfile(cls, data: Mapping[str, Any]) -> View:
        return cls(
            list(data.get("filesystem", [])),
            [(d["path"], d["source"]) for d in data.get("deny", [])],
            [(d["path"], list(d["denied_inside"])) for d in data.get("decomposed", [])],
            dict(data.get("network", {})),
        )

    @classmethod
    def from_plan(cls, plan: Plan) -> View:
        rules = [{"path": r.path, "access": r.access, "kind": "dir" if r.is_dir else "file", "source": r.source}
                 for r in plan.rules.values()]
        mode = "proxy" if plan.network == "proxy" else ("blocked" if plan.restrict_network else "allowed")
        net: dict[str, object] = {"mode": mode, "connect_ports": list(plan.connect_ports),
                                  "loopback_ports": list(plan.loopback_ports),
                                  "bind_ports": list(plan.bind_ports), "proxy_allow": list(plan.proxy_hosts)}
        return cls(rules, list(plan.denies), list(plan.decomposed), net)


def _covers(rule: dict[str, str], path: str) -> bool:
    return path == rule["path"] if rule["kind"] == "file" else is_within(path, rule["path"])


def _grants(access: str, op: str) -> bool:
    if op == "readwrite":
        return access == "readwrite"
    return access in (op, "readwrite")


def query_path(view: View, path: str, op: str = "read") -> dict[str, object]:
    """The verdict for ``op`` on ``path`` (absolute; resolved here)."""
    if op not in _OPS:
        raise ValueError(f"--op must be one of {', '.join(_OPS)}, not {op!r}")
    real = os.path.realpath(path)
    for candidate in dict.fromkeys((real, os.path.normpath(path))):
        for d, src in view.denies:
            if is_within(candidate, d):
                return {
                    "status": "denied", "path": path, "op": op, "reason": "sensitive_path",
                    "details": f"'{d}' is denied by {src}; grants cannot reach inside it",
                    "policy_source": src, "suggested_flag": f"--bypass-protection {d} (together with a grant covering it)",
                }
    covering = [r for r in view.rules if _covers(r, real)]
    if op == "readwrite":
        ok = any(_grants(r["access"], "readwrite") for r in covering) or (
            any(_grants(r["access"], "read") for r in covering) and any(_grants(r["access"], "write") for r in covering))
    else:
        ok = any(_grants(r["access"], op) for r in covering)
    if ok:
        best = max((r for r in covering if _grants(r["access"], op) or op == "readwrite"), key=lambda r: len(r["path"]))
        return {"status": "allowed", "path": path, "op": op, "reason": "granted_path",
                "granted_path": best["path"], "access": best["access"], "source": best["source"]}
    suggestion = _suggest(real, op)
    if covering:
        best = max(covering, key=lambda r: len(r["path"]))
        return {"status": "denied", "path": path, "op": op, "reason": "insufficient_access",
                "details": f"'{best['path']}' is granted {best['access']} only",
                "matching_capability": {"path": best["path"], "access": best["access"], "source": best["source"]},
                "suggested_flag": suggestion}
    out: dict[str, object] = {"status": "denied", "path": path, "op": op, "reason": "path_not_granted",
                              "details": "no grant covers this path", "suggested_flag": suggestion}
    for directory, _inner in view.decomposed:
        if is_within(real, directory):
            out["details"] = (f"'{directory}' is granted entry by entry because it contains denied paths; "
                              "new or unlisted entries directly inside it are not covered")
            if os.path.dirname(real) == directory:
                out["suggested_flag"] = (f"create '{os.path.basename(real)}' before the run, or work in a "
                                         f"subdirectory of '{directory}'")
    closest = _closest(view, real)
    if closest is not None:
        out["matching_capability"] = {"path": closest["path"], "access": closest["access"], "source": closest["source"]}
    return out


def _closest(view: View, real: str) -> dict[str, str] | None:
    """The granted path sharing the longest prefix with ``real``."""
    best, best_len = None, 0
    parts = real.split("/")
    for r in view.rules:
        rp = r["path"].split("/")
        n = 0
        for a, b in zip(parts, rp):
            if a != b:
                break
            n += 1
        if n > best_len and n > 1:
            best, best_len = r, n
    return best


def _suggest(real: str, op: str) -> str:
    flag_dir = {"read": "--read", "write": "--write", "readwrite": "--allow"}[op]
    flag_file = {"read": "--read-file", "write": "--write-file", "readwrite": "--allow-file"}[op]
    if os.path.isdir(real):
        return f"{flag_dir} {real}"
    if os.path.exists(real):
        return f"{flag_file} {real}"
    parent = os.path.dirname(real)
    while parent != "/" and not os.path.isdir(parent):
        parent = os.path.dirname(parent)
    return f"{flag_dir} {parent}" if parent != "/" else f"{flag_dir} <directory containing {real}>"


def query_host(view: View, host: str, port: int = 443) -> dict[str, object]:
    """The verdict for an outbound connection to ``host:port``."""
    name = host.split("://", 1)[-1].split("/", 1)[0]
    if name.count(":") == 1:
        name, _, p = name.partition(":")
        port = int(p) if p.isdigit() else port
    mode = view.network.get("mode", "allowed")
    if mode == "allowed":
        return {"status": "allowed", "host": name, "port": port, "reason": "network_allowed",
                "details": "the network is not restricted; add --block-net to restrict it"}
    if port in (view.network.get("connect_ports") or []):  # type: ignore[operator]
        return {"status": "allowed", "host": name, "port": port, "reason": "network_allowed",
                "details": f"TCP port {port} is open to any host (--allow-connect-port)"}
    if port in (view.network.get("loopback_ports") or []) and name in ("localhost", "127.0.0.1", "::1", "[::1]"):  # type: ignore[operator]
        return {"status": "allowed", "host": name, "port": port, "reason": "network_allowed",
                "details": f"TCP port {port} is open on loopback addresses (--open-port)"}
    if mode == "proxy":
        return _query_proxy(view, name, port, host)
    return {"status": "denied", "host": name, "port": port, "reason": "network_blocked",
            "details": "the network is blocked", "suggested_flag": f"--allow-connect-port {port}"}


def _query_proxy(view: View, name: str, port: int, raw: str) -> dict[str, object]:
    """The proxy's verdict by name (the same filter the proxy runs)."""
    from ..errors import PolicyError
    from ..proxy.rules import REASON_NEEDS_TLS, ProxySettings

    try:
        flt = ProxySettings(allow=list(view.network.get("proxy_allow") or ()),  # type: ignore[call-overload]
                            intercept=True).compile()
    except PolicyError as exc:
        return {"status": "denied", "host": name, "port": port, "reason": "proxy_filtered", "details": exc.message}
    path = raw.split("://", 1)[-1]
    target = "/" + path.split("/", 1)[1] if "/" in path else None
    scheme_http = raw.startswith("http://")
    method = ("GET" if target else None) if scheme_http else "CONNECT"
    decision = flt.check_host(name, port, method=method, target=target)
    if decision.allowed:
        out: dict[str, object] = {"status": "allowed", "host": name, "port": port, "reason": "proxy_allowed",
                                  "details": "allowed through nono's proxy"}
        if decision.match is not None and decision.match.endpoints is not None:
            out["reason"] = "endpoint_restricted"
            out["endpoint_rules"] = [f"{r.method} {r.path}" for r in decision.match.endpoints]
            out["details"] = "these endpoints only (HTTPS is decrypted by nono's proxy to check them)"
        return out
    reason = "endpoint_restricted" if decision.reason.startswith("endpoint") or decision.reason == REASON_NEEDS_TLS \
        else "proxy_filtered"
    return {"status": "denied", "host": name, "port": port, "reason": reason, "details": decision.reason,
            "suggested_flag": f"--allow-domain {name}"}
