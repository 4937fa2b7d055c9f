"""The capability summary printed before a run (stderr; not loaded with ``--silent``)."""


import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..sandbox.apply import Prepared
    from ..sandbox.plan import Plan
    from .main import Out

_SHOWN_SOURCES = ("user", "cwd", "executable", "runtime", "terminal")


def _short(path: str) -> str:
    home = os.environ.get("HOME", "")
    if home and home != "/" and (path == home or path.startswith(home + "/")):
        return "~" + path[len(home):]
    return path


def capabilities(out: 'Out', plan: 'Plan', prep: 'Prepared | None', version: str) -> None:
    """The banner and capability summary (upstream's ``Capabilities:`` block)."""
    if out.silent:
        return
    lines = [f"  nono v{version}", "  Capabilities:"]
    tag = {"read": "r ", "write": " w", "readwrite": "rw"}
    hidden = 0
    for rule in plan.rules.values():
        if rule.source in _SHOWN_SOURCES or rule.source.startswith("profile:") or out.verbose:
            kind = "" if rule.is_dir else " (file)"
            lines.append(f"    {tag[rule.access]}  {_short(rule.path)}{kind}  [{rule.source}]")
        else:
            hidden += 1
    if hidden:
        lines.append(f"    + {hidden} system/group paths (-v to show)")
    for directory, inner in plan.decomposed:
        present = [p for p in inner if os.path.lexists(p)]
        absent = len(inner) - len(present)
        shown = ", ".join(_short(p) for p in present[:5]) or "nothing present yet"
        if len(present) > 5:
            shown += f", +{len(present) - 5} more"
        if absent:
            shown += f" (and {absent} protected paths that do not exist yet)"
        lines.append(f"    ~  {_short(directory)} granted entry by entry, excluding {shown}")
    n_deny = len(plan.denies)
    if out.verbose:
        for p, src in plan.denies:
            lines.append(f"    !  {_short(p)}  [deny, {src}]")
    else:
        lines.append(f"    !  {n_deny} protected paths denied (credentials, keyrings, browser data, shell files; -v to show)")
    if plan.network == "proxy":
        hosts = [h if isinstance(h, str) else str(h.get("domain")) if isinstance(h, dict) else str(h)
                 for h in plan.proxy_hosts]
        shown = ", ".join(hosts[:6]) + (f", +{len(hosts) - 6} more" if len(hosts) > 6 else "")
        where = f" on 127.0.0.1:{plan.proxy_port}" if plan.proxy_port else ""
        lines.append(f"    net  filtered by nono's proxy{where}: {shown or 'no hosts'}")
        if plan.connect_ports or plan.bind_ports or plan.loopback_ports:
            lines.append(f"    net  and TCP ports: {_ports(plan)}")
    elif plan.restrict_network:
        ports = _ports(plan)
        lines.append("    net  blocked" + (f" except TCP {ports}" if ports else ""))
    else:
        lines.append("    net  allowed")
    sys.stderr.write("\n".join(lines) + "\n")
    if prep is not None:
        for m in prep.missing:
            out.warn(f"not enforced on this kernel: {m}")


def _ports(plan: 'Plan') -> str:
    parts = []
    if plan.connect_ports:
        parts.append("connect " + ",".join(map(str, plan.connect_ports)) + " (any host)")
    if plan.loopback_ports:
        parts.append("connect " + ",".join(map(str, plan.loopback_ports)) + " (loopback)")
    if plan.bind_ports:
        parts.append("listen " + ",".join(map(str, plan.bind_ports)))
    return "; ".join(parts)
