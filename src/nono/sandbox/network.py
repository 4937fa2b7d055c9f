"""Filtered network: from a :class:`Policy` to a running proxy, and back to a summary.

The proxy itself lives in :mod:`nono.proxy` (imported only here, only when a
policy filters the network). The sandboxed program reaches nothing but the
proxy's loopback port (Landlock connect rule, plus the mediator checking the
address is loopback); the proxy decides by host name.
"""

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..credentials.session import CredentialPlan
    from ..policy.model import Policy
    from ..proxy.process import ProxyHandle
    from ..proxy.rules import ProxySettings
    from .plan import Plan


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
        intercept=True,  # TLS interception where needed: HTTPS endpoint rules, credential routes' hosts
    )
    result.compile()
    return result


class NetworkSession:
    """The running proxy of one sandbox (and its credential routes): port, environment, stop."""

    def __init__(self, handle: 'ProxyHandle', credentials: 'CredentialPlan | None') -> None:
        self.handle = handle
        self.credentials = credentials
        self._granted = False

    @property
    def port(self) -> int:
        return self.handle.port

    @property
    def ca_bundle(self) -> 'str | None':
        """The CA bundle file the program must trust (TLS interception on), else None."""
        return self.handle.ca_bundle

    def grant(self, plan: 'Plan') -> None:
        """Let the sandbox read the CA bundle file (and nothing else new); call before ``Prepared(plan)``.

        A no-op without TLS interception. Like the capability file, the rule names exactly
        the file, which lives in nono's state directory (not writable from the sandbox).
        """
        self._granted = True
        path = self.handle.ca_bundle
        if path is None:
            return
        from ..kernel import landlock as ll
        from .plan import Rule

        real = os.path.realpath(path)
        if real in plan.rules:
            return
        plan.rules[real] = Rule(real, ll.READ_FILE, False, "read", "nono")
        plan._fds[real] = os.open(real, os.O_PATH | os.O_CLOEXEC)

    def env(self, base: 'dict[str, str]') -> 'dict[str, str]':
        """``base`` without the variables secrets were read from, plus the proxy's and the phantoms' variables.

        With TLS interception, the CA bundle variables (``SSL_CERT_FILE``, ...) are added only
        once :meth:`grant` let the sandbox read the bundle: a variable naming an unreadable
        file would break TLS to every host for some clients (curl), not just the intercepted ones.
        """
        out = dict(base)
        if self.credentials is not None:
            for name in self.credentials.unset_env:
                out.pop(name, None)
        extra = self.handle.env()
        if self.handle.ca_bundle is not None and not self._granted:
            from ..proxy.cabundle import ENV_VARS

            for name in ENV_VARS:
                extra.pop(name, None)
        out.update(extra)
        if self.credentials is not None:
            out.update(self.credentials.child_env(self.handle.port))
        return out

    def stop(self) -> 'list[dict[str, object]]':
        return self.handle.stop()


def credential_plan(policy: 'Policy') -> 'CredentialPlan | None':
    """Load the policy's credentials (real secrets, in this process) and make their phantoms."""
    if not policy.credentials and not policy.env_credentials:
        return None
    import json

    from ..credentials import session

    custom = {name: json.loads(route) for name, route in policy.custom_credentials}
    return session.prepare(list(policy.credentials), custom, list(policy.endpoint_rules),
                           env_credentials=list(policy.env_credentials))


def start(policy: 'Policy') -> NetworkSession:
    """Start the proxy process for ``policy`` (before the sandboxed program starts)."""
    from ..proxy import process

    creds = credential_plan(policy)
    base = settings(policy)
    if creds is not None:
        base.allow = list(base.allow) + [h for h in creds.allow_hosts if h not in base.allow]
        base.routes = creds.routes
        base.compile()
    handle = process.start(base)
    if creds is not None:
        creds.wipe()  # the proxy process has them; this one keeps only the phantoms
    return NetworkSession(handle, creds)


def summary(events: 'list[dict[str, object]]') -> list[str]:
    """One line per distinct blocked destination: ``host:port (reason)``, in first-seen order."""
    seen: dict[str, int] = {}
    for e in events:
        if e.get("action") != "deny" or str(e.get("reason", "")).startswith("auth"):
            continue  # a 407 challenge is part of normal proxy authentication (git, curl --proxy-anyauth)
        key = f"{e.get('host')}:{e.get('port')} ({e.get('reason')})"
        seen[key] = seen.get(key, 0) + 1
    return [k + (f" x{n}" if n > 1 else "") for k, n in seen.items()]
