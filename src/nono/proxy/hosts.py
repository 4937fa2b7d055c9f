"""Host patterns, ``--allow-domain`` values, endpoint rules and network profiles.

Accepted ``--allow-domain`` forms (all case-insensitive, a trailing dot is ignored,
non-ASCII names are IDNA-encoded):

* ``api.github.com``            that host, any port
* ``*.githubusercontent.com``   any subdomain, not the apex (``.suffix`` means the same)
* ``api.github.com:443``        that host, that port only (``[::1]:8080`` for IPv6)
* ``https://api.github.com/repos/acme/**``  the host plus an endpoint rule (method ``*``);
  ``GET https://...`` names the method. A URL's explicit port restricts the port, its
  scheme does not. A URL without a path, or with ``/`` or ``/**``, allows the whole host.
* a profile object ``{"domain": "api.github.com", "endpoints": [{"method": "GET", "path": "/repos/**"}]}``

Path globs: ``*`` is one segment, ``**`` any number of segments, ``*`` inside a
segment matches within it. Entries combine as a union: an entry without endpoint
rules allows the whole host even if another entry for it has rules.

No ``re`` and no ``ipaddress`` at import time: ``nono run`` may parse these values.
"""

import os

from .. import _jsonlite
from ..errors import PolicyError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

_DATA_FILE = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "network-policy.json")
_LABEL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_")
_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_cache: 'dict[str, object] | None' = None


def _bad(value: object, why: str) -> PolicyError:
    return PolicyError(f"invalid network host {value!r}: {why}",
                       hint="use host, *.suffix, host:port or https://host/path/**")


def normalize_host(name: str) -> str:
    """The canonical form of a host name or IP literal; raises :class:`PolicyError`.

    Lower case, no trailing dot, IDNA (A-labels) for non-ASCII, IPv6 without
    brackets in compressed form, IPv4 as a dotted quad. Names whose last label
    is numeric (``1.2.3``, ``0x7f.1``) are refused: resolvers read them as IPs.
    """
    host = name.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if ":" in host:
        import ipaddress

        if "%" in host:
            raise _bad(name, "IPv6 zone identifiers are not allowed")
        try:
            return ipaddress.IPv6Address(host).compressed
        except ValueError:
            raise _bad(name, "not an IPv6 address") from None
    if host.endswith("."):
        host = host[:-1]
    if not host:
        raise _bad(name, "empty host")
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise _bad(name, "cannot be IDNA-encoded") from None
    host = host.lower()
    if len(host) > 253:
        raise _bad(name, "longer than 253 characters")
    labels = host.split(".")
    for label in labels:
        if not label or len(label) > 63 or not _LABEL_CHARS.issuperset(label):
            raise _bad(name, "not a valid host name")
    last = labels[-1]
    if last.isdigit() or last.startswith("0x"):
        parts = labels if len(labels) == 4 else []
        if parts and all(p.isdigit() and len(p) <= 3 and int(p) <= 255 and (p == "0" or p[0] != "0") for p in parts):
            return host
        raise _bad(name, "numeric name that is not a dotted-quad IPv4 address")
    return host


def is_ip_literal(host: str) -> bool:
    """Is this normalised host an IP address rather than a name?"""
    return ":" in host or host.replace(".", "").isdigit()


class HostPattern:
    """An exact host or a ``*.suffix`` wildcard, optionally limited to one port."""

    __slots__ = ("host", "port", "wildcard")

    def __init__(self, host: str, wildcard: bool = False, port: 'int | None' = None) -> None:
        self.host = host
        self.wildcard = wildcard
        self.port = port

    def matches(self, host: str, port: 'int | None' = None) -> bool:
        """Does this pattern cover a normalised ``host`` (and ``port``, if given)?"""
        if self.port is not None and port is not None and port != self.port:
            return False
        if self.wildcard:
            return host.endswith("." + self.host)
        return host == self.host

    def __str__(self) -> str:
        text = ("*." if self.wildcard else "") + (f"[{self.host}]" if ":" in self.host else self.host)
        return f"{text}:{self.port}" if self.port is not None else text

    def __repr__(self) -> str:
        return f"HostPattern({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HostPattern) and str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))


def parse_host_pattern(value: str) -> HostPattern:
    """``host``, ``*.suffix``, ``.suffix``, ``host:port``, ``[v6]:port`` or a bare IPv6 address."""
    text = value.strip()
    port: int | None = None
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise _bad(value, "unclosed '['")
        rest = text[close + 1:]
        if rest:
            if not rest.startswith(":"):
                raise _bad(value, "junk after ']'")
            port = _parse_port(value, rest[1:])
        text = text[: close + 1]
    elif text.count(":") == 1:
        text, _, port_text = text.partition(":")
        port = _parse_port(value, port_text)
    wildcard = False
    if text.startswith("*."):
        wildcard, text = True, text[2:]
    elif text.startswith(".") and len(text) > 1:
        wildcard, text = True, text[1:]
    if "*" in text:
        raise _bad(value, "'*' is allowed only as a leading '*.' label")
    host = normalize_host(text)
    if wildcard and is_ip_literal(host):
        raise _bad(value, "a wildcard needs a domain name")
    return HostPattern(host, wildcard, port)


def _parse_port(value: object, text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise _bad(value, f"bad port {text!r}")
    return int(text)


class EndpointRule:
    """A method (``*`` = any) and a path glob (``*`` one segment, ``**`` any number)."""

    __slots__ = ("method", "path", "_segments")

    def __init__(self, method: str, path: str) -> None:
        method = method.strip().upper() or "*"
        if method != "*" and not _TOKEN_CHARS.issuperset(method):
            raise PolicyError(f"invalid endpoint method {method!r}")
        if not path.startswith("/") or "?" in path or "#" in path:
            raise PolicyError(f"invalid endpoint path {path!r}", hint="a path glob starts with '/', no query")
        self.method = method
        self.path = path
        self._segments = tuple(path[1:].split("/"))

    def matches(self, method: str, path: str) -> bool:
        """Does a request (method, origin-form target) fall under this rule?"""
        if self.method != "*" and method != self.method:
            return False
        segments = request_segments(path)
        return segments is not None and _match_segments(self._segments, segments)

    def __repr__(self) -> str:
        return f"EndpointRule({self.method!r}, {self.path!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EndpointRule) and (self.method, self.path) == (other.method, other.path)

    def __hash__(self) -> int:
        return hash((self.method, self.path))


def request_segments(target: str) -> 'tuple[str, ...] | None':
    """The path segments of a request target, or None when it is ambiguous.

    Ambiguous (and so never matched): dot segments, empty inner segments,
    backslashes, percent-encoded ``.``, ``/`` or ``\\``, double encoding, ``%u``
    escapes, overlong UTF-8 and ``;`` path parameters — forms that servers
    normalise differently, which would let a request slip past a rule.
    """
    path = target.split("?", 1)[0].split("#", 1)[0]
    if not path.startswith("/") or "\\" in path:
        return None
    lowered = path.lower()
    # Encoded dots and slashes; double encoding (%25..); IIS %u escapes; overlong UTF-8
    # (%c0/%c1); and path parameters (";"), which Java servers strip ("/..;/admin").
    if any(bad in lowered for bad in ("%2e", "%2f", "%5c", "%25", "%u", "%c0", "%c1", ";")):
        return None
    segments = tuple(path[1:].split("/"))
    for i, seg in enumerate(segments):
        if seg in (".", "..") or (not seg and i != len(segments) - 1):
            return None
    return segments


def _match_segments(pattern: 'tuple[str, ...]', segments: 'tuple[str, ...]') -> bool:
    if not pattern:
        return not segments
    head = pattern[0]
    if head == "**":
        return any(_match_segments(pattern[1:], segments[i:]) for i in range(len(segments) + 1))
    if not segments:
        return False
    if not _match_segment(head, segments[0]):
        return False
    return _match_segments(pattern[1:], segments[1:])


def _match_segment(pattern: str, segment: str) -> bool:
    if pattern == "*":
        return bool(segment)
    if "*" not in pattern:
        return pattern == segment
    parts = pattern.split("*")
    if not segment.startswith(parts[0]) or not segment.endswith(parts[-1]):
        return False
    pos, end = len(parts[0]), len(segment) - len(parts[-1])
    if pos > end:
        return False
    for part in parts[1:-1]:
        found = segment.find(part, pos, end)
        if found < 0:
            return False
        pos = found + len(part)
    return True


class AllowEntry:
    """One allowlist entry: a host pattern and its endpoint rules (none = the whole host)."""

    __slots__ = ("endpoints", "pattern")

    def __init__(self, pattern: HostPattern, endpoints: 'Iterable[EndpointRule]' = ()) -> None:
        self.pattern = pattern
        self.endpoints = tuple(endpoints)

    def __repr__(self) -> str:
        return f"AllowEntry({str(self.pattern)!r}, {list(self.endpoints)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AllowEntry) and (self.pattern, self.endpoints) == (other.pattern, other.endpoints)

    def __hash__(self) -> int:
        return hash((self.pattern, self.endpoints))


def parse_allow_domain(value: 'str | Mapping[str, object]') -> AllowEntry:
    """Parse one ``--allow-domain`` value or profile ``allow_domain`` object."""
    if not isinstance(value, str):
        return _parse_object(value)
    text = value.strip()
    method = "*"
    first, _, rest = text.partition(" ")
    if rest and "://" in rest and "://" not in first:
        method, text = first, rest.strip()
    if "://" not in text:
        if method != "*":
            raise _bad(value, "a method needs a URL")
        return AllowEntry(parse_host_pattern(text))
    scheme, _, rest = text.partition("://")
    if scheme.lower() not in ("http", "https", "ws", "wss"):
        raise _bad(value, f"unsupported scheme {scheme!r}")
    cut = min((i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    authority, path = rest[:cut], rest[cut:]
    if "@" in authority:
        raise _bad(value, "user info in the URL")
    if path[:1] in ("?", "#"):
        raise _bad(value, "query or fragment in the URL")
    pattern = parse_host_pattern(authority)
    if path in ("", "/", "/**") and method == "*":
        return AllowEntry(pattern)
    return AllowEntry(pattern, [EndpointRule(method, path or "/")])


def _parse_object(value: 'Mapping[str, object]') -> AllowEntry:
    if not hasattr(value, "get"):
        raise _bad(value, "expected a string or an object")
    unknown = set(value) - {"domain", "endpoints"}
    domain = value.get("domain")
    if unknown or not isinstance(domain, str):
        raise _bad(value, "expected {\"domain\": str, \"endpoints\": [{\"method\", \"path\"}]}")
    entry = parse_allow_domain(domain)
    rules = list(entry.endpoints)
    raw = value.get("endpoints", [])
    if not isinstance(raw, list):
        raise _bad(value, "'endpoints' must be a list")
    for item in raw:
        if not isinstance(item, dict) or set(item) - {"method", "path"} or not isinstance(item.get("path"), str):
            raise _bad(value, "an endpoint is {\"method\": str, \"path\": str}")
        method = item.get("method", "*")
        if not isinstance(method, str):
            raise _bad(value, "an endpoint's method is a string")
        rules.append(EndpointRule(method, item["path"]))
    return AllowEntry(entry.pattern, rules)


class HostMatch:
    """What the allowlist says about a host: the matching patterns and the endpoint rules.

    ``endpoints`` is None when some matching entry allows the whole host.
    """

    __slots__ = ("endpoints", "patterns")

    def __init__(self, patterns: 'tuple[str, ...]', endpoints: 'tuple[EndpointRule, ...] | None') -> None:
        self.patterns = patterns
        self.endpoints = endpoints

    def allows(self, method: str, target: str) -> bool:
        """Is a plain-HTTP request (method, origin-form target) allowed on this host?"""
        return self.endpoints is None or any(r.matches(method, target) for r in self.endpoints)


class Allowlist:
    """A set of :class:`AllowEntry`, looked up by normalised host and port."""

    def __init__(self, entries: 'Iterable[AllowEntry]' = ()) -> None:
        self.entries = tuple(entries)
        self._exact: dict[str, list[AllowEntry]] = {}
        self._wild: list[AllowEntry] = []
        for entry in self.entries:
            if entry.pattern.wildcard:
                self._wild.append(entry)
            else:
                self._exact.setdefault(entry.pattern.host, []).append(entry)

    def lookup(self, host: str, port: int) -> 'HostMatch | None':
        """The entries covering ``host:port`` merged into one :class:`HostMatch`, or None."""
        found = [e for e in self._exact.get(host, ()) if e.pattern.matches(host, port)]
        found += [e for e in self._wild if e.pattern.matches(host, port)]
        if not found:
            return None
        patterns = tuple(dict.fromkeys(str(e.pattern) for e in found))
        if any(not e.endpoints for e in found):
            return HostMatch(patterns, None)
        rules = tuple(dict.fromkeys(r for e in found for r in e.endpoints))
        return HostMatch(patterns, rules)

    def __len__(self) -> int:
        return len(self.entries)


def _data() -> 'dict[str, object]':
    global _cache
    if _cache is None:
        with open(_DATA_FILE, encoding="utf-8") as f:
            _cache = _jsonlite.loads(f.read())
    return _cache


def network_profile_names() -> 'list[str]':
    """The names of the built-in network profiles."""
    profiles = _data()["profiles"]
    assert isinstance(profiles, dict)
    return sorted(profiles)


def load_network_profile(name: str) -> 'list[str]':
    """The host patterns of a network profile (``*.suffix`` for suffix groups)."""
    profiles = _data()["profiles"]
    groups = _data()["groups"]
    assert isinstance(profiles, dict) and isinstance(groups, dict)
    if name not in profiles:
        raise PolicyError(f"unknown network profile '{name}'",
                          hint=f"known network profiles: {', '.join(sorted(profiles))}")
    out: list[str] = []
    for group_name in profiles[name]["groups"]:
        group = groups[group_name]
        out.extend(group.get("hosts", []))
        out.extend("*" + s if s.startswith(".") else "*." + s for s in group.get("suffixes", []))
    return list(dict.fromkeys(out))
