"""Service definitions: the built-in data (``data/credentials.json``) and custom routes.

A :class:`ServiceSpec` is a route without its secret and phantom. Custom routes use
the profile keys of ``network.custom_credentials`` (``upstream``, ``credential_key``,
``env_var``, ``inject_mode``, ``inject_header``, ``credential_format``, ``path_pattern``,
``path_replacement``, ``query_param_name``, ``endpoint_rules``, ``tls_ca``).
"""

import os

from .. import _jsonlite
from .route import INJECT_MODES, CredentialError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

    from ..proxy.hosts import EndpointRule

_DATA_FILE = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "credentials.json")
_LOOPBACK = ("localhost", "127.0.0.1", "::1")
_CUSTOM_KEYS = frozenset({"upstream", "credential_key", "env_var", "inject_mode", "inject_header", "credential_format",
                          "path_pattern", "path_replacement", "query_param_name", "endpoint_rules", "tls_ca",
                          "tls_client_cert", "tls_client_key", "auth", "aws_auth", "proxy"})
_cache: 'dict[str, dict[str, object]] | None' = None


class ServiceSpec:
    """Everything about a service but the secret: upstream, injection, env vars, sources."""

    __slots__ = ("accept", "base_path", "base_url_env", "endpoints", "env_vars", "format", "header", "host",
                 "inject_mode", "name", "path_pattern", "path_replacement", "phantom_shape", "port", "query_param",
                 "scheme", "sources", "tls_ca")

    def __init__(self, name: str) -> None:
        self.name = name
        self.scheme = "https"
        self.host = ""
        self.port = 443
        self.base_path = ""
        self.inject_mode = "header"
        self.header = "Authorization"
        self.format = "Bearer {}"
        self.query_param = ""
        self.path_pattern = ""
        self.path_replacement = ""
        self.accept: list[tuple[str, str]] = []
        self.env_vars: list[str] = []
        self.base_url_env: list[str] = []
        self.phantom_shape = "hex"
        self.sources: list[str] = []
        self.endpoints: list[EndpointRule] = []
        self.tls_ca = ""

    def __repr__(self) -> str:
        return f"ServiceSpec({self.name!r}, {self.scheme}://{self.host}:{self.port}{self.base_path})"


def builtin_data() -> 'dict[str, dict[str, object]]':
    """The built-in services, by name (cached)."""
    global _cache
    if _cache is None:
        with open(_DATA_FILE, encoding="utf-8") as f:
            _cache = _jsonlite.loads(f.read())["services"]
    return _cache


def builtin_names() -> 'list[str]':
    """Names of the built-in services."""
    return sorted(builtin_data())


def _str(entry: 'Mapping[str, object]', key: str, default: str, name: str) -> str:
    value = entry.get(key)
    if value is None:
        return default
    if not isinstance(value, str):
        raise CredentialError(f"credential route {name!r}: {key} must be a string")
    return value


def _list(entry: 'Mapping[str, object]', key: str, name: str) -> 'list[str]':
    value = entry.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise CredentialError(f"credential route {name!r}: {key} must be a list of strings")
    return list(value)


def _check_name(name: str) -> None:
    if not name or not name.replace("-", "").replace("_", "").isalnum() or not name.isascii() or len(name) > 64:
        raise CredentialError(f"invalid credential service name {name!r}",
                              hint="letters, digits, '-' and '_' (it becomes the URL path /NAME/)")


def _env_name(value: str, name: str) -> str:
    if not value or value[0].isdigit() or not value.replace("_", "").isalnum() or not value.isascii():
        raise CredentialError(f"credential route {name!r}: invalid environment variable name {value!r}")
    return value


def _upstream(spec: ServiceSpec, url: str) -> None:
    from ..errors import PolicyError
    from ..proxy.hosts import normalize_host

    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in ("https", "http"):
        raise CredentialError(f"credential route {spec.name!r}: upstream {url!r} is not an https:// URL")
    authority, slash, path = rest.partition("/")
    if "@" in authority or "?" in rest or "#" in rest:
        raise CredentialError(f"credential route {spec.name!r}: upstream {url!r} must be scheme://host[:port][/path]")
    host, port_text = authority, ""
    if authority.startswith("["):
        host, _, port_text = authority[1:].partition("]")
        port_text = port_text[1:]
    elif ":" in authority:
        host, _, port_text = authority.rpartition(":")
    try:
        spec.host = normalize_host(host)
    except PolicyError as exc:
        raise CredentialError(f"credential route {spec.name!r}: {exc.message}") from None
    spec.scheme = scheme.lower()
    if spec.scheme == "http" and spec.host not in _LOOPBACK:
        raise CredentialError(f"credential route {spec.name!r}: upstream must use https:// (http:// only for localhost)")
    default = 443 if spec.scheme == "https" else 80
    if port_text and (not port_text.isdigit() or not 0 < int(port_text) < 65536):
        raise CredentialError(f"credential route {spec.name!r}: invalid port in {url!r}")
    spec.port = int(port_text) if port_text else default
    spec.base_path = ("/" + path).rstrip("/") if slash else ""


def _accept(spec: ServiceSpec, values: 'list[str]') -> None:
    for value in values:
        kind, _, where = value.partition(":")
        if kind not in ("header", "query") or not where:
            raise CredentialError(f"credential route {spec.name!r}: accept entries are header:NAME or query:NAME")
        spec.accept.append((kind, where))


def parse_spec(name: str, entry: 'Mapping[str, object]', custom: bool) -> ServiceSpec:
    """A :class:`ServiceSpec` from a built-in entry or a custom route; raises :class:`CredentialError`."""
    _check_name(name)
    if not isinstance(entry, dict):
        raise CredentialError(f"credential route {name!r} must be an object")
    if custom:
        unknown = sorted(set(entry) - _CUSTOM_KEYS)
        if unknown:
            raise CredentialError(f"credential route {name!r}: unknown key(s) {', '.join(unknown)}")
        for key, what in (("auth", "OAuth2"), ("aws_auth", "AWS SigV4"), ("tls_client_cert", "upstream mTLS"),
                          ("proxy", "a separate inbound token format")):
            if entry.get(key) is not None:
                raise CredentialError(f"credential route {name!r}: {what} ({key}) is not supported by nono for Python")
    spec = ServiceSpec(name)
    upstream = entry.get("upstream")
    if not isinstance(upstream, str):
        raise CredentialError(f"credential route {name!r} needs an upstream URL (https://host/path)")
    _upstream(spec, upstream)
    spec.inject_mode = _str(entry, "inject_mode", "header", name)
    if spec.inject_mode not in INJECT_MODES:
        raise CredentialError(f"credential route {name!r}: inject_mode must be one of {', '.join(INJECT_MODES)}")
    spec.header = _str(entry, "inject_header", "Authorization", name)
    if not spec.header or not spec.header.replace("-", "").replace("_", "").isalnum():
        raise CredentialError(f"credential route {name!r}: invalid inject_header {spec.header!r}")
    default_format = "Bearer {}" if spec.header.lower() == "authorization" else "{}"
    spec.format = _str(entry, "credential_format", default_format, name)
    if spec.format.count("{}") != 1 or any(ord(c) < 0x20 for c in spec.format):
        raise CredentialError(f"credential route {name!r}: credential_format must contain '{{}}' once")
    spec.query_param = _str(entry, "query_param_name", "", name)
    spec.path_pattern = _str(entry, "path_pattern", "", name)
    spec.path_replacement = _str(entry, "path_replacement", "", name) or spec.path_pattern
    if spec.inject_mode == "query_param" and not spec.query_param:
        raise CredentialError(f"credential route {name!r}: query_param mode needs query_param_name")
    if spec.inject_mode == "url_path":
        for pattern in (spec.path_pattern, spec.path_replacement):
            if pattern.count("{}") != 1 or not pattern.startswith("/") or pattern.startswith("/{}"):
                raise CredentialError(f"credential route {name!r}: url_path mode needs path_pattern like '/bot{{}}/'")
    _accept(spec, _list(entry, "accept", name))
    if not spec.accept and spec.inject_mode == "header":
        spec.accept.append(("header", spec.header))
    if spec.inject_mode == "query_param" and ("query", spec.query_param) not in spec.accept:
        spec.accept.append(("query", spec.query_param))
    if spec.inject_mode == "basic_auth" and ("header", "Authorization") not in spec.accept:
        spec.accept.append(("header", "Authorization"))
    spec.phantom_shape = _str(entry, "phantom", "hex", name)
    spec.tls_ca = _str(entry, "tls_ca", "", name)
    if spec.tls_ca and not os.path.isabs(spec.tls_ca):
        raise CredentialError(f"credential route {name!r}: tls_ca must be an absolute path")
    spec.base_url_env = [_env_name(v, name) for v in _list(entry, "base_url_env", name)]
    if custom:
        _custom_sources(spec, entry)
    else:
        spec.env_vars = [_env_name(v, name) for v in _list(entry, "env_vars", name)]
        spec.sources = _list(entry, "sources", name)
    rules = entry.get("endpoint_rules") or []
    if not isinstance(rules, list):
        raise CredentialError(f"credential route {name!r}: endpoint_rules must be a list of {{method, path}}")
    for rule in rules:
        spec.endpoints.append(endpoint_rule(name, rule))
    return spec


def _custom_sources(spec: ServiceSpec, entry: 'Mapping[str, object]') -> None:
    key = _str(entry, "credential_key", spec.name, spec.name)
    env_var = entry.get("env_var")
    if isinstance(env_var, str) and env_var:
        spec.env_vars = [_env_name(env_var, spec.name)]
    elif key.startswith("env://"):
        spec.env_vars = [_env_name(key[6:], spec.name)]
    elif "://" not in key:
        spec.env_vars = [_env_name(key.upper().replace("-", "_").replace(".", "_"), spec.name)]
    else:
        raise CredentialError(f"credential route {spec.name!r}: env_var is required with credential_key {key!r}",
                              hint="name the variable that gets the phantom token, e.g. \"env_var\": \"MY_API_KEY\"")
    spec.sources = [key]


def endpoint_rule(service: str, rule: object) -> 'EndpointRule':
    """``{"method": "GET", "path": "/repos/**"}`` or ``"GET /repos/**"`` -> an EndpointRule."""
    from ..errors import PolicyError
    from ..proxy.hosts import EndpointRule

    if isinstance(rule, dict):
        method, path = rule.get("method", "*"), rule.get("path")
    elif isinstance(rule, str):
        method, _, path = rule.strip().partition(" ")
    else:
        method = path = None
    if not isinstance(method, str) or not isinstance(path, str):
        raise CredentialError(f"credential route {service!r}: an endpoint rule is {{\"method\": M, \"path\": P}}")
    try:
        return EndpointRule(method, path)
    except PolicyError as exc:
        raise CredentialError(f"credential route {service!r}: {exc.message}", hint=exc.hint) from None


def parse_allow_endpoint(value: str) -> 'tuple[str, EndpointRule]':
    """``SERVICE:METHOD:/path/**`` (``--allow-endpoint``) -> (service, rule)."""
    service, sep1, rest = value.partition(":")
    method, sep2, path = rest.partition(":")
    if not sep1 or not sep2 or not service or not path.startswith("/"):
        raise CredentialError(f"invalid --allow-endpoint {value!r}",
                              hint="expected SERVICE:METHOD:/path, e.g. github:GET:/repos/acme/**")
    return service, endpoint_rule(service, {"method": method or "*", "path": path})
