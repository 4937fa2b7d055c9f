"""Filtered network: from a :class:`Policy` to a running proxy, and back to a summary.

The proxy itself lives in :mod:`nono.proxy` (imported only here, only when a
policy filters the network). The sandboxed program reaches nothing but the
proxy's loopback port (Landlock connect rule, plus the mediator checking the
address is loopback); the proxy decides by host name.
"""

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..policy.model import Policy
    from ..proxy.process import ProxyHandle
    from ..proxy.rules import ProxySettings


def allowlist(policy: 'Policy') -> 'list[object]':
    """Every allow entry: the network profiles' host patterns, then the policy's own."""
    from ..proxy.hosts import load_network_profile

    out: list[object] = []
    for name in policy.network_profiles:
        for pattern in load_network_profile(name):
            if pattern not in out:
                out.append(pattern)
    out.extend(e for e in policy.proxy_allow if e not in out)
    return out


def settings(policy: 'Policy') -> 'ProxySettings':
    """The proxy settings a policy asks for (validated; raises PolicyError)."""
    from ..errors import PolicyError
    from ..proxy.rules import ProxySettings, parse_resolve_overrides

    upstream = None
    if policy.upstream_proxy:
        host, sep, port = policy.upstream_proxy.rpartition(":")
        host = host.strip("[]")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise PolicyError(f"invalid upstream proxy '{policy.upstream_proxy}'", hint="expected HOST:PORT, e.g. proxy.corp:3128")
        upstream = (host, int(port))
    result = ProxySettings(
        allow=allowlist(policy),  # type: ignore[arg-type]
        deny_private=policy.deny_private,
        loopback_ports=frozenset(policy.loopback_ports + policy.connect_ports),
        upstream=upstream,
        upstream_bypass=tuple(policy.upstream_bypass),
        resolve_overrides=parse_resolve_overrides(os.environ.get("NONO_PROXY_RESOLVE", "")),
        port=policy.proxy_port,
    )
    result.compile()
    return result


def start(policy: 'Policy') -> 'ProxyHandle':
    """Start the proxy process for ``policy`` (before the sandboxed program starts)."""
    from ..proxy import process

    return process.start(settings(policy))


def summary(events: 'list[dict[str, object]]') -> list[str]:
    """One line per distinct blocked destination: ``host:port (reason)``, in first-seen order."""
    seen: dict[str, int] = {}
    for e in events:
        if e.get("action") != "deny" or str(e.get("reason", "")).startswith("auth"):
            continue  # a 407 challenge is part of normal proxy authentication (git, curl --proxy-anyauth)
        key = f"{e.get('host')}:{e.get('port')} ({e.get('reason')})"
        seen[key] = seen.get(key, 0) + 1
    return [k + (f" x{n}" if n > 1 else "") for k, n in seen.items()]
