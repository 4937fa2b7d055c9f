"""A credential route: plain data handed to the proxy (``ProxySettings.routes``).

No imports beyond the standard basics: the proxy process receives these objects
through ``fork`` and :mod:`nono.proxy.reverse` reads them. ``repr`` never shows the
secret or the phantom token.
"""

from ..errors import NonoError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    from ..proxy.hosts import EndpointRule

INJECT_MODES = ("header", "query_param", "url_path", "basic_auth")


class CredentialError(NonoError):
    """A credential cannot be set up: unknown service, missing secret, no keyring, bad route."""


class Route:
    """One reverse-proxy route: ``/<name>/...`` on the proxy -> ``upstream`` with the real secret.

    ``accept`` lists where the client puts the phantom token: ``("header", name)`` or
    ``("query", name)``; ``url_path`` and ``basic_auth`` modes add their own places.
    ``secret`` is the real credential (a ``bytearray`` so it can be wiped).
    """

    __slots__ = ("accept", "base_path", "endpoints", "format", "header", "host", "inject_mode", "name", "path_pattern",
                 "path_replacement", "phantom", "port", "query_param", "scheme", "secret", "tls_ca")

    def __init__(self, name: str, *, scheme: str, host: str, port: int, base_path: str, phantom: str,
                 secret: bytearray, inject_mode: str = "header", header: str = "Authorization",
                 format: str = "Bearer {}", query_param: str = "", path_pattern: str = "",
                 path_replacement: str = "", accept: 'Sequence[tuple[str, str]]' = (),
                 endpoints: 'Sequence[EndpointRule]' = (), tls_ca: str = "") -> None:
        self.name = name
        self.scheme = scheme
        self.host = host
        self.port = port
        self.base_path = base_path
        self.phantom = phantom
        self.secret = secret
        self.inject_mode = inject_mode
        self.header = header
        self.format = format
        self.query_param = query_param
        self.path_pattern = path_pattern
        self.path_replacement = path_replacement or path_pattern
        self.accept: tuple[tuple[str, str], ...] = tuple(accept)
        self.endpoints: tuple[EndpointRule, ...] = tuple(endpoints)
        self.tls_ca = tls_ca

    @property
    def upstream(self) -> str:
        """The upstream base URL (no secret in it)."""
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = "" if self.port == default else f":{self.port}"
        return f"{self.scheme}://{host}{port}{self.base_path}"

    def secret_text(self) -> str:
        """The real secret as text (only the proxy and redaction call this)."""
        return self.secret.decode("utf-8")

    def wipe(self) -> None:
        """Overwrite the secret in this process (the proxy process keeps its own copy)."""
        for i in range(len(self.secret)):
            self.secret[i] = 0
        del self.secret[:]

    def __repr__(self) -> str:
        return f"Route({self.name!r} -> {self.upstream!r}, {self.inject_mode})"
