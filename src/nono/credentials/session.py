"""``prepare(...) -> CredentialPlan``: everything a session needs for its credentials.

Called in the supervisor before the proxy forks: resolves each service, loads its real
secret, makes a phantom token per service, and returns the routes for
``ProxySettings.routes`` plus what the child's environment gets.
"""

import base64
from urllib.parse import quote

from . import phantom, sources
from .route import CredentialError, Route
from .services import builtin_data, builtin_names, parse_allow_endpoint, parse_spec

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from .services import ServiceSpec


class CredentialPlan:
    """The session's credentials.

    * ``routes``: for ``ProxySettings(routes=...)``
    * ``allow_hosts``: ``host:port`` of each upstream, for the proxy's allowlist
    * ``child_env(port)``: phantom tokens, base URLs and ``--env-credential`` values
    * ``unset_env``: variables read through ``env://`` that the child must not inherit
    * ``redact(text)``: ``text`` with every real secret replaced by ``[redacted:NAME]``
    """

    def __init__(self, routes: 'list[Route]', specs: 'list[ServiceSpec]', origins: 'list[str]',
                 env_secrets: 'dict[str, tuple[str, str]]', unset_env: 'set[str]') -> None:
        self.routes = routes
        self._specs = {s.name: s for s in specs}
        self._origins = dict(zip((r.name for r in routes), origins))
        self._env_secrets = env_secrets  # VAR -> (reference, secret)
        self.unset_env: set[str] = unset_env - set(self.child_env(1))
        self.allow_hosts = list(dict.fromkeys(f"[{r.host}]:{r.port}" if ":" in r.host else f"{r.host}:{r.port}"
                                              for r in routes))

    @property
    def services(self) -> 'list[str]':
        """The route names, in order."""
        return [r.name for r in self.routes]

    def base_url(self, name: str, port: int, host: str = "127.0.0.1") -> str:
        """``http://127.0.0.1:<port>/<name>`` for one route."""
        return f"http://{host}:{port}/{name}"

    def child_env(self, proxy_port: int, host: str = "127.0.0.1") -> 'dict[str, str]':
        """Variables to set in the child (they win over inherited ones)."""
        out: dict[str, str] = {}
        for route in self.routes:
            spec = self._specs[route.name]
            url = self.base_url(route.name, proxy_port, host)
            for var in [route.name.upper().replace("-", "_") + "_BASE_URL", *spec.base_url_env]:
                out[var] = url
            for var in spec.env_vars:
                out[var] = route.phantom
        for var, (_, secret) in self._env_secrets.items():
            out[var] = secret
        return out

    def secrets(self) -> 'list[tuple[str, str]]':
        """(label, secret) pairs, for redaction; never print them."""
        out = [(r.name, r.secret_text()) for r in self.routes if r.secret]
        out += [(var, secret) for var, (_, secret) in self._env_secrets.items()]
        return out

    def redact(self, text: str) -> str:
        """``text`` with each real secret (and its URL- and Basic-encoded forms) replaced."""
        for label, secret in sorted(self.secrets(), key=lambda p: -len(p[1])):
            marker = f"[redacted:{label}]"
            for form in {secret, quote(secret, safe=""), base64.b64encode(secret.encode()).decode("ascii")}:
                if len(form) >= 4:
                    text = text.replace(form, marker)
        return text

    def describe(self) -> 'list[str]':
        """One line per credential for ``--dry-run`` and ``nono why`` (no secrets, no phantoms)."""
        lines = []
        for route in self.routes:
            spec = self._specs[route.name]
            rules = f"; endpoints: {', '.join(f'{e.method} {e.path}' for e in route.endpoints)}" if route.endpoints else ""
            lines.append(f"{route.name}: /{route.name}/ -> {route.upstream} (secret from {self._origins[route.name]}; "
                         f"phantom in {', '.join(spec.env_vars) or 'no variable'}{rules})")
        for var, (ref, _) in self._env_secrets.items():
            lines.append(f"{var}: real secret from {sources.describe(ref)} (--env-credential: visible to the program)")
        return lines

    def wipe(self) -> None:
        """Overwrite the secrets held by this process's routes (call after the proxy started).

        ``redact`` finds nothing afterwards; the proxy process keeps its own copy.
        """
        for route in self.routes:
            route.wipe()

    def __repr__(self) -> str:
        return f"CredentialPlan({self.services})"


def _split_service(value: str) -> 'tuple[str, str | None]':
    name, eq, ref = value.partition("=")
    return name.strip(), (ref.strip() if eq else None)


def _load(spec: 'ServiceSpec', explicit: 'str | None', unset: 'set[str]') -> 'tuple[str, str]':
    """The secret and where it came from; tries the spec's sources in order."""
    refs = [explicit] if explicit else [spec.name if s == "keyring" else s for s in spec.sources]
    tried: list[str] = []
    for ref in refs:
        if not explicit and ref.startswith("env://") and sources.env_var_of(ref) is not None:
            import os

            if sources.env_var_of(ref) not in os.environ:
                tried.append(f"{ref} (not set)")
                continue
        try:
            secret = sources.load(ref)
        except CredentialError as exc:
            if explicit or len(refs) == 1:
                raise
            label = sources.describe(ref)
            tried.append(f"{label} ({exc.message.removeprefix(label + ': ')})")
            continue
        var = sources.env_var_of(ref)
        if var:
            unset.add(var)
        return secret, sources.describe(ref)
    env_hint = next((r for r in refs if r.startswith("env://")), None)
    raise CredentialError(f"no secret for credential {spec.name!r}; tried: " + "; ".join(tried),
                          hint=f"store it with 'nono credential set {spec.name}'"
                          + (f", export {env_hint[6:]}" if env_hint else "")
                          + f", or name a source: --credential {spec.name}=env://VAR or "
                          f"--credential {spec.name}=file:///path/to/key (mode 0600)")


def _env_credentials(values: 'Mapping[str, str] | Iterable[str]', unset: 'set[str]') -> 'dict[str, tuple[str, str]]':
    """``--env-credential`` values: reference -> VAR (a list uses the upper-cased name)."""
    pairs = list(values.items()) if hasattr(values, "items") else [(v, "") for v in values]
    out: dict[str, tuple[str, str]] = {}
    for ref, var in pairs:
        if not var:
            name = ref[6:] if ref.startswith("env://") else ref
            if "://" in name:
                raise CredentialError(f"--env-credential {ref}: name the variable (REF=VAR, profile env_credentials)")
            var = name.upper().replace("-", "_").replace(".", "_")
        secret = sources.load(ref)
        if ref.startswith("env://"):
            unset.add(ref[6:])
        out[var] = (ref, secret)
    return out


def prepare(services: 'Sequence[str]', custom: 'Mapping[str, Mapping[str, object]] | None' = None,
            endpoint_rules: 'Sequence[str]' = (), *,
            env_credentials: 'Mapping[str, str] | Sequence[str]' = ()) -> CredentialPlan:
    """Resolve services, load secrets, make phantom tokens; see :class:`CredentialPlan`.

    ``services``: names (``openai``) or ``NAME=REF`` to pick the secret source
    (``openai=env://MY_KEY``). ``custom``: ``network.custom_credentials`` (its routes win
    over built-ins of the same name; they are active only when named in ``services``).
    ``endpoint_rules``: ``SERVICE:METHOD:/path`` values of ``--allow-endpoint``.
    ``env_credentials``: ``--env-credential`` references (list) or ``{REF: VAR}``.
    Raises :class:`~nono.credentials.route.CredentialError` (a ``NonoError``).
    """
    custom = custom or {}
    builtin = builtin_data()
    specs: list[ServiceSpec] = []
    explicit: dict[str, str | None] = {}
    for value in services:
        name, ref = _split_service(value)
        if name in explicit:
            if ref and explicit[name] and ref != explicit[name]:
                raise CredentialError(f"--credential {name} names two different sources")
            explicit[name] = explicit[name] or ref
            continue
        if name in custom:
            spec = parse_spec(name, custom[name], custom=True)
        elif name in builtin:
            spec = parse_spec(name, builtin[name], custom=False)
        else:
            names = ", ".join(builtin_names() + sorted(custom))
            raise CredentialError(f"unknown credential service {name!r}",
                                  hint=f"known: {names}; define others in the profile's network.custom_credentials")
        if ref is not None:
            sources.check_ref(ref)
        explicit[name] = ref
        specs.append(spec)
    by_name = {s.name: s for s in specs}
    for value in endpoint_rules:
        service, rule = parse_allow_endpoint(value)
        if service not in by_name:
            raise CredentialError(f"--allow-endpoint {value!r}: service {service!r} is not an active credential",
                                  hint=f"add --credential {service}")
        by_name[service].endpoints.append(rule)
    unset: set[str] = set()
    routes: list[Route] = []
    origins: list[str] = []
    for spec in specs:
        secret, origin = _load(spec, explicit[spec.name], unset)
        origins.append(origin)
        routes.append(Route(spec.name, scheme=spec.scheme, host=spec.host, port=spec.port, base_path=spec.base_path,
                            phantom=phantom.make(spec.phantom_shape), secret=bytearray(secret.encode("utf-8")),
                            inject_mode=spec.inject_mode, header=spec.header, format=spec.format,
                            query_param=spec.query_param, path_pattern=spec.path_pattern,
                            path_replacement=spec.path_replacement, accept=spec.accept, endpoints=spec.endpoints,
                            tls_ca=spec.tls_ca))
    env_secrets = _env_credentials(env_credentials, unset)
    return CredentialPlan(routes, specs, origins, env_secrets, unset)
