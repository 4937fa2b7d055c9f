"""Proxy settings (plain data) and the filter compiled from them.

:class:`ProxySettings` is what the CLI and the Python API fill in. :meth:`Filter.check_host`
answers by name only (allowlist, metadata names; what ``nono why --host`` needs);
:meth:`Filter.check_addresses` is the SSRF check on what a name resolved to.
"""

from ..errors import PolicyError
from . import addresses
from .hosts import (
    AllowEntry,
    Allowlist,
    EndpointRule,
    HostMatch,
    HostPattern,
    normalize_host,
    parse_allow_domain,
    parse_host_pattern,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from ..credentials.route import Route

REASON_NOT_ALLOWED = "not in allowlist"
REASON_NEEDS_TLS = "endpoint rules need TLS interception (not available)"


class ProxySettings:
    """Everything the proxy needs to know; plain data, validated by :meth:`compile`.

    ``allow`` takes every ``--allow-domain`` form (see :mod:`.hosts`) and profile
    objects; ``endpoint_rules`` maps a host pattern to extra rules, each
    ``(method, path)`` or ``"METHOD /path"``. ``resolve_overrides`` maps a host to
    the addresses to use instead of DNS (tests); they still pass the SSRF check.
    ``upstream`` chains through another proxy except for ``upstream_bypass`` patterns;
    ``upstream_authorization`` is sent to it as ``Proxy-Authorization``.
    ``require_tls`` (default on) refuses a ``CONNECT`` tunnel whose client does not
    open with a TLS ClientHello naming the ``CONNECT`` host (tests of the relay
    itself turn it off).
    ``routes`` are credential routes (:class:`nono.credentials.route.Route`) served as
    ``http://127.0.0.1:<port>/<name>/...`` (see :mod:`.reverse`). ``upstream_ca_file``
    adds a trust anchor for the routes' upstream TLS (tests use a private CA); system
    roots stay trusted and verification is never turned off.
    ``intercept`` allows TLS interception (:mod:`.intercept`) where it is needed: a
    ``CONNECT`` to a host with endpoint rules (checked on each decrypted request) or to
    a credential route's upstream (the phantom is swapped there too). It takes effect
    only when such a host exists; without it those ``CONNECT``s are refused (endpoint
    rules) or stay opaque tunnels (route upstreams).

    (A plain class rather than a dataclass: ``dataclasses`` imports ``inspect`` and
    ``re``, ~30 ms here, on the path of every ``nono run`` with a filtered network.)
    """

    __slots__ = ("allow", "bind_host", "connect_timeout", "deny_private", "endpoint_rules", "head_timeout",
                 "idle_timeout", "intercept", "loopback_ports", "max_connections", "port", "require_tls", "resolve_overrides",
                 "routes", "sni_timeout", "upstream", "upstream_authorization", "upstream_bypass", "upstream_ca_file")

    def __init__(self, *, allow: 'Sequence[str | Mapping[str, object]]' = (),
                 endpoint_rules: 'Mapping[str, Sequence[tuple[str, str] | str]] | None' = None,
                 deny_private: bool = False, loopback_ports: frozenset[int] = frozenset(),
                 upstream: 'tuple[str, int] | None' = None, upstream_bypass: 'Sequence[str]' = (),
                 upstream_authorization: 'str | None' = None,
                 resolve_overrides: 'Mapping[str, Sequence[str]] | None' = None, port: int = 0,
                 bind_host: str = "127.0.0.1", head_timeout: float = 10.0, connect_timeout: float = 10.0,
                 sni_timeout: float = 10.0, idle_timeout: float = 600.0, max_connections: int = 4096,
                 require_tls: bool = True, routes: 'Sequence[Route]' = (),
                 upstream_ca_file: 'str | None' = None, intercept: bool = False) -> None:
        self.allow = allow
        self.endpoint_rules: Mapping[str, Sequence[tuple[str, str] | str]] = endpoint_rules or {}
        self.deny_private = deny_private
        self.loopback_ports = loopback_ports
        self.upstream = upstream
        self.upstream_bypass = upstream_bypass
        self.upstream_authorization = upstream_authorization
        self.resolve_overrides: Mapping[str, Sequence[str]] = resolve_overrides or {}
        self.port = port
        self.bind_host = bind_host
        self.head_timeout = head_timeout
        self.connect_timeout = connect_timeout
        self.sni_timeout = sni_timeout
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.require_tls = require_tls
        self.routes: Sequence[Route] = tuple(routes)
        self.upstream_ca_file = upstream_ca_file
        self.intercept = intercept

    def __repr__(self) -> str:
        return "ProxySettings(" + ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__slots__) + ")"

    def compile(self) -> 'Filter':
        """Validate and build the :class:`Filter`; raises :class:`PolicyError`."""
        return Filter(self)


def parse_resolve_overrides(text: str) -> 'dict[str, list[str]]':
    """``"host=1.2.3.4,host2=::1,host=[::1]"`` (the ``NONO_PROXY_RESOLVE`` format) -> host -> addresses."""
    import ipaddress

    out: dict[str, list[str]] = {}
    for item in filter(None, (i.strip() for i in text.split(","))):
        host, eq, addr = item.partition("=")
        addr = addr.strip().strip("[]")
        try:
            ipaddress.ip_address(addr)
        except ValueError:
            raise PolicyError(f"invalid resolve override {item!r}", hint="expected host=IP[,host=IP...]") from None
        if not eq:
            raise PolicyError(f"invalid resolve override {item!r}", hint="expected host=IP[,host=IP...]")
        out.setdefault(normalize_host(host), []).append(addr)
    return out


def _endpoint(value: 'tuple[str, str] | str') -> EndpointRule:
    if isinstance(value, str):
        method, _, path = value.strip().partition(" ")
        if not path:
            method, path = "*", method
        return EndpointRule(method, path.strip())
    method, path = value
    return EndpointRule(method, path)


class Decision:
    """The verdict on a host: ``allowed``, a ``reason`` (empty when allowed) and the match."""

    __slots__ = ("allowed", "match", "reason")

    def __init__(self, allowed: bool, reason: str = "", match: 'HostMatch | None' = None) -> None:
        self.allowed = allowed
        self.reason = reason
        self.match = match

    def __repr__(self) -> str:
        return f"Decision({'allow' if self.allowed else 'deny'}, {self.reason!r})"


class Filter:
    """The compiled settings: allowlist, SSRF policy, upstream choice."""

    def __init__(self, settings: ProxySettings) -> None:
        self.settings = settings
        entries = [parse_allow_domain(v) for v in settings.allow]
        for pattern, rules in settings.endpoint_rules.items():
            entries.append(AllowEntry(parse_host_pattern(pattern), [_endpoint(r) for r in rules]))
        self.allowlist = Allowlist(entries)
        self.bypass: list[HostPattern] = [parse_host_pattern(p) for p in settings.upstream_bypass]
        self.overrides = {normalize_host(h): list(a) for h, a in settings.resolve_overrides.items()}
        for addrs in self.overrides.values():
            for a in addrs:
                try:
                    addresses.classify(a)
                except ValueError:
                    raise PolicyError(f"invalid resolve override address {a!r}") from None
        if any(not 0 < p < 65536 for p in settings.loopback_ports):
            raise PolicyError("loopback ports must be 1-65535")
        names = [r.name for r in settings.routes]
        if len(set(names)) != len(names):
            raise PolicyError("two credential routes have the same name")
        # TLS interception: credential routes' upstreams (by host:port) and endpoint-rule hosts.
        self.route_hosts: dict[tuple[str, int], list[Route]] = {}
        for route in settings.routes:
            if route.scheme == "https":
                self.route_hosts.setdefault((route.host, route.port), []).append(route)
        self.intercepting = bool(settings.intercept) and (
            bool(self.route_hosts) or any(e.endpoints for e in self.allowlist.entries))
        if settings.upstream is not None:
            host, port = settings.upstream
            if not host or not 0 < port < 65536:
                raise PolicyError(f"invalid upstream proxy {host}:{port}", hint="expected HOST:PORT")

    def check_host(self, host: str, port: int, method: 'str | None' = None, target: 'str | None' = None) -> Decision:
        """The verdict by name: metadata names, allowlist, endpoint rules.

        ``method``/``target`` describe a plain-HTTP request (or one decrypted inside an
        intercepted tunnel); ``method="CONNECT"`` a tunnel: with endpoint rules it is
        allowed only when TLS interception is on (the rules are then checked on each
        request inside it), refused otherwise. Without a method, endpoint rules are
        reported but not applied.
        """
        if addresses.is_metadata_name(host):
            return Decision(False, f"ssrf: {host} is a cloud metadata name")
        match = self.allowlist.lookup(host, port)
        if match is None:
            return Decision(False, REASON_NOT_ALLOWED)
        if match.endpoints is not None:
            if method == "CONNECT":
                if self.intercepting:
                    return Decision(True, "", match)
                return Decision(False, REASON_NEEDS_TLS, match)
            if method is not None and target is not None and not match.allows(method, target):
                return Decision(False, f"endpoint not allowed: {method} {target.split('?', 1)[0]}", match)
        return Decision(True, "", match)

    def check_addresses(self, addrs: 'Sequence[str]', port: int) -> 'str | None':
        """The SSRF refusal for resolved addresses, or None."""
        return addresses.refusal(addrs, port, self.settings.loopback_ports, self.settings.deny_private)

    def intercepts(self, host: str, port: int) -> bool:
        """Is a ``CONNECT`` to ``host:port`` decrypted (endpoint rules, or a credential route's upstream)?"""
        if not self.intercepting:
            return False
        if (host, port) in self.route_hosts:
            return True
        match = self.allowlist.lookup(host, port)
        return match is not None and match.endpoints is not None

    def use_upstream(self, host: str, port: int) -> bool:
        """Should this connection go through the upstream proxy?"""
        return self.settings.upstream is not None and not any(p.matches(host, port) for p in self.bypass)
