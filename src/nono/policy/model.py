"""The :class:`Policy` builder: an immutable description of a sandbox."""

from .paths import expand

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

READ, WRITE, READWRITE = "read", "write", "readwrite"
ACCESS_LEVELS = (READ, WRITE, READWRITE)


class Grant:
    """One filesystem grant: ``path`` (absolute), ``access``, ``kind`` and ``source``.

    ``kind`` is ``"dir"`` (recursive), ``"file"`` (that file only) or ``"any"``
    (whatever the path turns out to be). ``source`` says where it came from:
    ``user``, ``cwd``, ``group:<name>``, ``executable`` or ``runtime``.
    """

    __slots__ = ("access", "kind", "path", "source")

    def __init__(self, path: str, access: str, kind: str = "any", source: str = "user") -> None:
        if access not in ACCESS_LEVELS:
            raise ValueError(f"access must be one of {ACCESS_LEVELS}, not {access!r}")
        self.path, self.access, self.kind, self.source = path, access, kind, source

    def __repr__(self) -> str:
        return f"Grant({self.path!r}, {self.access!r}, kind={self.kind!r}, source={self.source!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Grant) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def _key(self) -> tuple[str, str, str, str]:
        return (self.path, self.access, self.kind, self.source)


class Policy:
    """What a sandboxed process may touch. Deny by default.

    Every builder method returns a *new* policy, so a policy can be shared,
    cached and used as a dictionary key::

        policy = nono.Policy().allow_read("/data").allow_write("/tmp/ws").block_network()

    The default groups (system libraries read-only, ``/tmp`` scratch space and
    every required deny group: ``~/.ssh``, cloud credentials, keyrings, browser
    profiles, shell history and rc files) are included unless
    ``defaults=False``. Paths are expanded (``~``, ``$HOME``, ...) and made
    absolute when the method is called.
    """

    __slots__ = ("bind_ports", "bypass", "connect_ports", "credentials", "custom_credentials", "denies", "deny_private",
                 "endpoint_rules", "env_allow", "env_credentials", "env_deny", "env_set",
                 "grants", "groups", "loopback_ports", "network", "network_profiles", "proxy_allow", "proxy_port", "unix_sockets",
                 "upstream_bypass", "upstream_proxy")

    def __init__(self, *, defaults: bool = True) -> None:
        from .groups import default_group_names

        self.grants: tuple[Grant, ...] = ()
        self.groups: tuple[str, ...] = tuple(default_group_names()) if defaults else ()
        self.network = "allow"
        self.connect_ports: tuple[int, ...] = ()  # any host
        self.loopback_ports: tuple[int, ...] = ()  # loopback addresses only (--open-port)
        self.bind_ports: tuple[int, ...] = ()
        self.bypass: tuple[str, ...] = ()
        self.unix_sockets: tuple[str, ...] = ()
        self.env_set: tuple[tuple[str, str], ...] = ()
        self.env_allow: tuple[str, ...] | None = None
        self.env_deny: tuple[str, ...] = ()
        self.denies: tuple[tuple[str, str], ...] = ()
        # Filtered network ("proxy" mode): what nono's proxy lets through.
        self.network_profiles: tuple[str, ...] = ()
        self.proxy_allow: tuple[object, ...] = ()  # host patterns, URLs with path globs, or {"domain", "endpoints"}
        self.deny_private = False
        self.upstream_proxy: str | None = None
        self.upstream_bypass: tuple[str, ...] = ()
        self.proxy_port = 0
        # Credentials injected by the proxy (the program sees phantom tokens).
        self.credentials: tuple[str, ...] = ()  # service names, or NAME=SOURCE
        self.custom_credentials: tuple[tuple[str, str], ...] = ()  # (name, route as JSON)
        self.endpoint_rules: tuple[str, ...] = ()  # SERVICE:METHOD:/path
        self.env_credentials: tuple[str, ...] = ()  # real secrets put in the environment (weaker)

    @classmethod
    def from_profile(cls, name: str, *, workdir: 'str | None' = None, allow_unfiltered_network: bool = False) -> 'Policy':
        """The policy of a profile (a name from ``nono profile list``, or a file path).

        The working directory is not granted: add ``.allow(workdir)`` (or
        ``.allow_read``) yourself. A profile that asks for network filtering
        blocks the network, because the filtering proxy is not in this version.
        """
        import os

        from .profiles import resolve

        return resolve(name).to_policy(workdir or os.getcwd(), allow_unfiltered_network=allow_unfiltered_network)

    # -- construction helpers -------------------------------------------------
    def _copy(self, **changes: object) -> 'Policy':
        new = Policy.__new__(Policy)
        for name in Policy.__slots__:
            setattr(new, name, changes.get(name, getattr(self, name)))
        return new

    def _add(self, paths: 'Iterable[str]', access: str, kind: str, source: str = "user") -> 'Policy':
        added = tuple(Grant(expand(str(p)), access, kind, source) for p in paths)
        return self._copy(grants=self.grants + tuple(g for g in added if g not in self.grants))

    def with_grant(self, grant: 'Grant') -> 'Policy':
        """A copy with ``grant`` added (its path must already be absolute)."""
        return self if grant in self.grants else self._copy(grants=self.grants + (grant,))

    # -- filesystem -----------------------------------------------------------
    def allow_read(self, *paths: str) -> 'Policy':
        """Read (and list, and execute) beneath each directory or file."""
        return self._add(paths, READ, "any")

    def allow_write(self, *paths: str) -> 'Policy':
        """Create, modify and delete beneath each path, without reading it."""
        return self._add(paths, WRITE, "any")

    def allow(self, *paths: str) -> 'Policy':
        """Read and write beneath each path (``--allow``)."""
        return self._add(paths, READWRITE, "any")

    allow_readwrite = allow

    def allow_read_file(self, *paths: str) -> 'Policy':
        return self._add(paths, READ, "file")

    def allow_write_file(self, *paths: str) -> 'Policy':
        return self._add(paths, WRITE, "file")

    def allow_file(self, *paths: str) -> 'Policy':
        return self._add(paths, READWRITE, "file")

    def deny(self, *paths: str, source: str = "user") -> 'Policy':
        """Deny every access beneath each path, even inside directories granted elsewhere."""
        added = tuple((expand(str(p)), source) for p in paths)
        return self._copy(denies=self.denies + tuple(d for d in added if d not in self.denies))

    def with_groups(self, *names: str) -> 'Policy':
        """A copy using exactly these policy groups (see ``nono profile groups``).

        Leaving out a group marked ``required`` (the credential, keyring,
        browser and shell-file denials) is an error.
        """
        from .groups import data, group

        for n in names:
            group(n)  # unknown names raise, listing the known ones
        missing = [n for n, g in data()["groups"].items() if g.get("required") and n not in names
                   and g.get("platform") in (None, "linux")]
        if missing:
            from ..errors import PolicyError

            raise PolicyError(f"required group(s) left out: {', '.join(missing)}",
                              hint="required groups cannot be excluded; use bypass_protection for a single path")
        return self._copy(groups=tuple(dict.fromkeys(names)))

    def bypass_protection(self, *paths: str) -> 'Policy':
        """Lift a deny-group entry for paths that another grant of yours covers."""
        return self._copy(bypass=self.bypass + tuple(expand(p) for p in paths))

    def allow_unix_socket(self, *paths: str) -> 'Policy':
        """Permit ``connect()`` to these pathname unix sockets (read access included)."""
        new = self._add(paths, READ, "file")
        return new._copy(unix_sockets=new.unix_sockets + tuple(expand(p) for p in paths))

    def allow_pty(self) -> 'Policy':
        """Let the program create pseudo-terminals (``/dev/pts``).

        Landlock cannot tell a new terminal from an existing one: with this, the
        program can also open your other terminals of this user and read what
        you type there. Off by default.
        """
        return self._add(["/dev/pts"], READWRITE, "dir")

    # -- network ----------------------------------------------------------------
    def allow_all_network(self) -> 'Policy':
        """Unrestricted network (the default): undoes :meth:`block_network`, filtering and port restrictions."""
        return self._copy(network="allow", connect_ports=(), bind_ports=(), loopback_ports=(), network_profiles=(),
                          proxy_allow=(), credentials=(), custom_credentials=(), endpoint_rules=())

    def allow_network(self, hosts: 'Iterable[object]' = (), *, profile: 'str | None' = None) -> 'Policy':
        """Network only through nono's filtering proxy, to these hosts (and a network profile's).

        ``hosts``: ``"api.openai.com"``, ``"*.githubusercontent.com"`` (any
        subdomain), ``"api.openai.com:443"``, or a URL with a path glob
        (``"https://api.github.com/repos/acme/**"``; enforced for plain HTTP).
        ``profile``: a network profile (``minimal``, ``developer``, ...).
        Everything else (other hosts, UDP, raw sockets) is blocked; the program
        gets ``HTTPS_PROXY`` and friends. Link-local and cloud-metadata
        addresses are always refused.
        """
        new_hosts = tuple(h for h in hosts if h not in self.proxy_allow)
        profiles = self.network_profiles + ((profile,) if profile and profile not in self.network_profiles else ())
        return self._copy(network="proxy", proxy_allow=self.proxy_allow + new_hosts, network_profiles=profiles)

    def use_credentials(self, *services: str, custom: 'dict[str, dict[str, object]] | None' = None,
                        endpoints: 'Iterable[str]' = (), env: 'Iterable[str]' = ()) -> 'Policy':
        """Let the program use these services' credentials without ever seeing them.

        ``services``: built-in names (``openai``, ``anthropic``, ``gemini``,
        ``github``, ``gitlab``) or ``NAME=SOURCE`` (``openai=env://MY_KEY``,
        ``keyring://...``, ``file:///...``, ``op://...``); ``custom``: routes
        like a profile's ``network.custom_credentials``; ``endpoints``:
        ``SERVICE:METHOD:/path/**`` rules. The program gets a phantom token and a
        base URL on nono's proxy, which swaps in the real secret on the way to
        the service. Implies a filtered network. ``env``: services whose real
        secret goes into the environment instead (weaker: the program can read it).
        """
        import json

        if self.network == "block":
            from ..errors import PolicyError

            raise PolicyError("credentials need the network (through nono's proxy), but this policy blocks it")
        new_custom = tuple(sorted(dict(self.custom_credentials) | {k: json.dumps(v, sort_keys=True)
                                                                   for k, v in (custom or {}).items()}.items()))
        routes = bool(services or custom or self.credentials)
        return self._copy(network="proxy" if routes else self.network,  # env-only credentials need no proxy
                          credentials=self.credentials + tuple(s for s in services if s not in self.credentials),
                          custom_credentials=new_custom,
                          endpoint_rules=self.endpoint_rules + tuple(endpoints),
                          env_credentials=self.env_credentials + tuple(env))

    def with_proxy_port(self, port: int) -> 'Policy':
        """Run the filtering proxy on this loopback port instead of an ephemeral one."""
        return self._copy(proxy_port=_port(port))

    def deny_private_networks(self) -> 'Policy':
        """With a filtered network, also refuse private addresses (10/8, 192.168/16, fc00::/7, ...)."""
        return self._copy(deny_private=True)

    def use_upstream_proxy(self, address: str, bypass: 'Iterable[str]' = ()) -> 'Policy':
        """With a filtered network, send allowed traffic through the proxy at ``host:port`` (except ``bypass`` hosts)."""
        return self._copy(upstream_proxy=address, upstream_bypass=self.upstream_bypass + tuple(bypass))

    def block_network(self) -> 'Policy':
        """No outbound or inbound network, except ports you open explicitly (drops any host filtering)."""
        return self._copy(network="block", network_profiles=(), proxy_allow=(), credentials=(), custom_credentials=(),
                          endpoint_rules=())

    def allow_connect_port(self, *ports: int) -> 'Policy':
        """Outbound TCP to these ports (any host). Implies a restricted network."""
        return self._copy(network=self._restricted(), connect_ports=self.connect_ports + tuple(_port(p) for p in ports))

    def allow_bind_port(self, *ports: int) -> 'Policy':
        """Listen on these TCP ports. Implies a restricted network."""
        return self._copy(network=self._restricted(), bind_ports=self.bind_ports + tuple(_port(p) for p in ports))

    def _restricted(self) -> str:
        return "proxy" if self.network == "proxy" else "block"

    def open_port(self, *ports: int) -> 'Policy':
        """Connect to and listen on these TCP ports on this machine's loopback addresses (local servers).

        Unlike :meth:`allow_connect_port`, other hosts stay unreachable on these
        ports (the mediator checks the address). Implies a restricted network.
        """
        checked = tuple(_port(p) for p in ports)
        return self._copy(network=self._restricted(), loopback_ports=self.loopback_ports + checked,
                          bind_ports=self.bind_ports + checked)

    # -- environment ------------------------------------------------------------
    def set_env(self, name: str, value: str) -> 'Policy':
        """Set a variable in the program's environment.

        Refused: ``PATH``, ``NONO_*``, and every variable nono removes because it
        loads code (``LD_PRELOAD``, ``PYTHONPATH``, ``NODE_OPTIONS``, ``BASH_ENV``, ...).
        """
        from .groups import is_dangerous_env

        if not name or "=" in name or "\0" in name or name == "PATH" or name.startswith("NONO_") \
                or is_dangerous_env(name):
            from ..errors import PolicyError

            raise PolicyError(f"cannot set environment variable {name!r}: PATH, NONO_* and variables that load "
                              "code (LD_*, PYTHONPATH, NODE_OPTIONS, BASH_ENV, ...) are reserved")
        return self._copy(env_set=self.env_set + ((name, value),))

    def allow_env(self, *names: str) -> 'Policy':
        """Pass only these environment variables (``NAME`` or ``PREFIX*``), plus a few essentials.

        The essentials (PATH, HOME, USER, LOGNAME, SHELL, TERM, LANG, LC_*, TZ,
        TMPDIR) always pass; the dangerous-variable denials still apply.
        """
        return self._copy(env_allow=tuple(dict.fromkeys((self.env_allow or ()) + names)))

    def deny_env(self, *names: str) -> 'Policy':
        """Never pass these environment variables (``NAME`` or ``PREFIX*``)."""
        return self._copy(env_deny=tuple(dict.fromkeys(self.env_deny + names)))

    # -- identity -----------------------------------------------------------------
    def key(self) -> tuple[object, ...]:
        return tuple(getattr(self, n) for n in Policy.__slots__)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Policy) and self.key() == other.key()

    def __hash__(self) -> int:
        return hash(self.key())

    def __repr__(self) -> str:
        parts = [f"{g.access} {g.path}" for g in self.grants]
        return f"Policy(grants=[{', '.join(parts)}], network={self.network!r})"


def _port(p: int) -> int:
    port = int(p)
    if not 0 < port < 65536:
        from ..errors import PolicyError

        raise PolicyError(f"invalid TCP port {p!r}: must be 1-65535")
    return port
