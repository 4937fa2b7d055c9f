"""Resolve a :class:`~nono.policy.Policy` into concrete kernel rules.

This is where paths meet the real filesystem: grants are canonicalised
(symlinks resolved), missing paths are skipped and reported, the program's own
executable and runtime are granted, and a deny rule that lies *inside* a
granted directory is enforced by granting that directory's other entries one
by one instead of the directory itself ("decomposition").

What decomposition cannot give (documented in ``docs/security.md``): the
decomposed directory itself gets no rights, so inside it you cannot list
entries or create new top-level entries; entries that are symlinks are not
granted through the decomposed directory (their targets need grants of their
own); and entries created after the sandbox started are not covered.
"""

import os
import stat

from ..errors import PolicyError
from ..kernel import landlock as ll
from ..policy import groups as _groups
from ..policy.model import READ, READWRITE, WRITE, Grant, Policy
from ..policy.paths import expand, is_within, variables

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from typing import Any

_MASKS = {READ: ll.ACCESS_READ, WRITE: ll.ACCESS_WRITE, READWRITE: ll.ACCESS_READ | ll.ACCESS_WRITE}
_USER_SOURCES = ("user", "cwd")


def _is_user(source: str) -> bool:
    """Grants the user asked for (flags, API, profile files): stricter checks, louder errors."""
    return source in _USER_SOURCES or source.startswith("profile:")


class Rule:
    """A Landlock path rule: ``path`` (canonical), rights ``mask``, ``is_dir``."""

    __slots__ = ("access", "is_dir", "mask", "path", "source")

    def __init__(self, path: str, mask: int, is_dir: bool, access: str, source: str) -> None:
        self.path, self.mask, self.is_dir, self.access, self.source = path, mask, is_dir, access, source

    def __repr__(self) -> str:
        return f"Rule({self.path!r}, {self.access}, dir={self.is_dir}, source={self.source!r})"


class Plan:
    """Everything needed to build the sandbox, plus what to tell the user."""

    def __init__(self) -> None:
        self.rules: dict[str, Rule] = {}
        self.denies: list[tuple[str, str]] = []  # (canonical path, source)
        self.skipped: list[tuple[str, str, str]] = []  # (path, source, reason)
        self.decomposed: list[tuple[str, list[str]]] = []
        # Unix sockets named with --allow-unix-socket: (canonical path, st_dev, st_ino,
        # birth seconds, birth ns), pinned when planning so a later swap of the path,
        # or the reuse of its inode number, cannot redirect the grant.
        self.unix_sockets: list[tuple[str, int, int, int, int]] = []
        self.network = "allow"
        self.connect_ports: tuple[int, ...] = ()  # any host
        self.loopback_ports: tuple[int, ...] = ()  # loopback addresses only (checked by the mediator)
        self.bind_ports: tuple[int, ...] = ()
        # With a filtered network: the loopback port of nono's proxy (set once it listens).
        # Only 127.0.0.1/::1 on this port is reachable, unlike connect_ports (any host).
        self.proxy_port = 0
        self.proxy_hosts: list[object] = []  # the proxy's allow entries (str or {"domain", "endpoints"}), for `why`
        self.executable: str | None = None
        self.notes: list[str] = []
        # Paths that must never be writable (where nono and its interpreter load
        # code from): a write grant containing one is decomposed around it.
        self.readonly: dict[str, str] = {}
        self._deny_src: dict[str, str] = {}
        self._deny_ancestors: set[str] | None = None
        self._deny_prefixes: tuple[str, ...] = ()
        self._fds: dict[str, int] = {}

    def to_dict(self) -> dict[str, object]:
        """Plain data (for ``marshal``) from which :meth:`from_dict` rebuilds the plan."""
        return {
            "rules": [(r.path, r.mask, r.is_dir, r.access, r.source) for r in self.rules.values()],
            "denies": self.denies, "skipped": self.skipped, "decomposed": self.decomposed,
            "unix_sockets": self.unix_sockets, "network": self.network, "connect_ports": self.connect_ports,
            "loopback_ports": self.loopback_ports,
            "bind_ports": self.bind_ports, "executable": self.executable, "proxy_port": self.proxy_port, "proxy_hosts": self.proxy_hosts,
        }

    @classmethod
    def from_dict(cls, data: 'Mapping[str, Any]') -> 'Plan':
        plan = cls()
        for path, mask, is_dir, access, source in data["rules"]:
            plan.rules[path] = Rule(path, mask, is_dir, access, source)
        for path, source in data["denies"]:
            plan.add_deny(path, source)
        plan.skipped = list(data["skipped"])
        plan.decomposed = list(data["decomposed"])
        plan.unix_sockets = [(str(u[0]), int(u[1]), int(u[2]), int(u[3]), int(u[4])) for u in data["unix_sockets"]]
        plan.network = str(data["network"])
        plan.connect_ports = tuple(data["connect_ports"])
        plan.loopback_ports = tuple(data.get("loopback_ports", ()))
        plan.bind_ports = tuple(data["bind_ports"])
        plan.executable = data["executable"]
        plan.proxy_port = int(data.get("proxy_port", 0))
        plan.proxy_hosts = list(data.get("proxy_hosts", ()))
        return plan

    @property
    def restrict_network(self) -> bool:
        return self.network != "allow"

    def add_deny(self, path: str, source: str) -> None:
        if path in self._deny_src:
            return
        self.denies.append((path, source))
        self._deny_src[path] = source
        self._deny_ancestors = None

    def _index(self) -> tuple[set[str], tuple[str, ...]]:
        """(every ancestor directory of a deny path, the deny paths as prefixes)."""
        if self._deny_ancestors is None:
            ancestors: set[str] = set()
            for d in self._deny_src:
                i = d.rfind("/")
                while i > 0:
                    d = d[:i]
                    if d in ancestors:
                        break
                    ancestors.add(d)
                    i = d.rfind("/")
                ancestors.add("/")
            self._deny_ancestors = ancestors
            self._deny_prefixes = tuple(d.rstrip("/") + "/" for d in self._deny_src)
        return self._deny_ancestors, self._deny_prefixes

    def denied_by(self, path: str) -> tuple[str, str] | None:
        """The deny entry (path, source) covering canonical ``path``, if any."""
        src = self._deny_src.get(path)
        if src is not None:
            return path, src
        _, prefixes = self._index()
        if not path.startswith(prefixes):
            return None
        for prefix in prefixes:
            if path.startswith(prefix):
                d = prefix[:-1] or "/"
                return d, self._deny_src[d]
        return None

    def denies_inside(self, path: str) -> list[str]:
        """Deny entries strictly beneath canonical directory ``path``."""
        ancestors, _ = self._index()
        if path not in ancestors:
            return []
        prefix = path.rstrip("/") + "/"
        return sorted(d for d in self._deny_src if d.startswith(prefix))

    def may_make_socket(self, directory: str, name: str) -> bool:
        """May the sandbox create the socket ``name`` in canonical ``directory``?

        The same decision Landlock makes for ``MAKE_SOCK``: a directory rule
        covering ``directory`` grants it, and the new path is not denied.
        """
        if self.denied_by(directory.rstrip("/") + "/" + name):
            return False
        p = directory
        while True:
            rule = self.rules.get(p)
            if rule is not None:
                return rule.is_dir and bool(rule.mask & ll.MAKE_SOCK)
            if p == "/":
                return False
            p = p[: p.rfind("/")] or "/"

    def _covered(self, rule: 'Rule') -> bool:
        """Is ``rule`` implied by a directory rule above it (a redundant kernel rule)?"""
        p = rule.path
        i = p.rfind("/")
        while i > 0:
            p = p[:i]
            above = self.rules.get(p)
            if above is not None:
                return above.is_dir and (above.mask | rule.mask) == above.mask
            i = p.rfind("/")
        above = self.rules.get("/")
        return above is not None and (above.mask | rule.mask) == above.mask

    def close_fds(self) -> None:
        """Close the ``O_PATH`` descriptors kept from planning."""
        fds, self._fds = self._fds, {}
        for fd in fds.values():
            os.close(fd)

    def build_ruleset(self) -> 'll.Ruleset':
        """Create the Landlock ruleset (a kernel object) for this plan."""
        abi = ll.abi_version()
        ruleset = ll.Ruleset(
            handle_tcp=self.restrict_network,
            scopes=(ll.SCOPE_SIGNAL | ll.SCOPE_ABSTRACT_UNIX_SOCKET) if abi >= 6 else 0,
            abi=abi,
        )
        try:
            for rule in self.rules.values():
                if self._covered(rule):
                    continue
                fd = self._fds.get(rule.path, -1)
                if fd >= 0:
                    ruleset.allow_path_fd(fd, rule.mask, is_dir=rule.is_dir)
                    continue
                try:
                    fd = os.open(rule.path, os.O_PATH | os.O_CLOEXEC)
                except FileNotFoundError:
                    continue  # vanished since planning: nothing to grant
                try:
                    ruleset.allow_path_fd(fd, rule.mask, is_dir=rule.is_dir)
                finally:
                    os.close(fd)
            for port in self.connect_ports + self.loopback_ports + ((self.proxy_port,) if self.proxy_port else ()):
                ruleset.allow_port(port, ll.NET_CONNECT_TCP)
            for port in self.bind_ports:
                ruleset.allow_port(port, ll.NET_BIND_TCP)
        except BaseException:
            ruleset.close()
            raise
        return ruleset


def which(name: str, path_env: str | None = None) -> str | None:
    """Locate ``name`` on ``PATH`` like ``shutil.which`` (which costs an ``re`` import)."""
    if "/" in name:
        return os.path.abspath(name) if os.access(name, os.X_OK) and not os.path.isdir(name) else None
    for d in (path_env if path_env is not None else os.environ.get("PATH", os.defpath)).split(os.pathsep):
        cand = os.path.join(d or ".", name)
        if os.access(cand, os.X_OK) and not os.path.isdir(cand):
            return cand
    return None


def build_plan(policy: 'Policy', *, argv0: 'str | None' = None, cwd: 'str | None' = None,
               readonly: 'Iterable[str]' = (), readonly_reason: 'Mapping[str, str] | None' = None) -> 'Plan':
    """Resolve ``policy`` against the filesystem now. Raises :class:`PolicyError`.

    ``readonly``: paths no write grant may reach (see :func:`interpreter_paths`);
    ``readonly_reason`` says why, per path (default: nono's own installation).
    """
    plan = Plan()
    for p in readonly:
        plan.readonly[_canonical(p)] = (readonly_reason or {}).get(p, "nono's own installation")
    vars_ = variables(cwd)
    data = _groups.data()
    grants: list[Grant] = list(policy.grants)
    system: list[tuple[str, str, str]] = []  # (path, access, source) from groups: the fast path
    deny_raw: list[tuple[str, str]] = []
    for name in policy.groups:
        g = _groups.group(name)
        if g.get("platform") not in (None, "linux"):
            continue
        source = f"group:{name}"
        for access, paths in g.get("allow", {}).items():
            for p in paths:
                literal = p[0] == "/" and "$" not in p
                system.append((p if literal else expand(p, vars_), access, source))
        for p in g.get("deny", {}).get("access", []):
            deny_raw.append((expand(p, vars_), f"group:{name}"))
    deny_raw.extend(policy.denies)
    protected = [_canonical(expand(p, vars_)) for p in data["protected_state_roots"]]
    protected.append(_canonical(vars_["NONO_CONFIG"]))

    if argv0 is not None:
        exe = which(argv0)
        if exe is not None:
            plan.executable = _canonical(exe)
            grants.extend(_runtime_grants(exe, vars_))

    bypass = [_canonical(b) for b in policy.bypass]
    for b in bypass:
        if not any(_is_user(g.source) and is_within(b, _canonical(g.path)) for g in grants):
            raise PolicyError(
                f"bypass_protection '{b}' has no matching grant",
                path=b, hint=f"also grant it, e.g. --read {b} or --allow {b}",
            )
    parents: dict[str, str] = {}
    for p, src in deny_raw:
        # Every spelling the kernel may see: the path as written, its parent
        # resolved (symlinked ~/.config, dotfile managers), and the final
        # symlink's target if the entry itself is a link.
        parent, _, name = p.rpartition("/")
        canon_parent = parents.get(parent)
        if canon_parent is None:
            canon_parent = parents[parent] = _canonical(parent or "/")
        resolved = canon_parent.rstrip("/") + "/" + name
        variants = [p, resolved]
        if os.path.islink(resolved):
            variants.append(_canonical(resolved))
        for variant in variants:
            if not any(is_within(variant, b) for b in bypass):
                plan.add_deny(variant, src)
    for root in protected:
        plan.add_deny(root, "protected nono state")

    for grant in grants:
        _add_grant(plan, grant, protected)
    _add_system_paths(plan, system, protected)

    plan.network = policy.network
    if policy.network == "proxy":
        from .network import allowlist

        plan.proxy_hosts = allowlist(policy)
    plan.connect_ports = policy.connect_ports
    plan.loopback_ports = policy.loopback_ports
    plan.bind_ports = policy.bind_ports
    from ..kernel.process import file_identity

    for sock in policy.unix_sockets:
        try:
            fd = os.open(sock, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            plan.skipped.append((sock, "user", "does not exist"))
            continue
        try:
            if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                raise PolicyError(f"'{sock}' is not a unix socket", path=sock, hint="--allow-unix-socket takes a socket file")
            ident = file_identity(fd)
        finally:
            os.close(fd)
        if ident is None:
            raise PolicyError(f"cannot pin the unix socket '{sock}': its filesystem records no file birth time",
                              path=sock, hint="put the socket on a filesystem with birth times (ext4, xfs, btrfs, tmpfs)")
        plan.unix_sockets.append((_canonical(sock), *ident))
    return plan


def create_state_dirs(policy: 'Policy', cwd: 'str | None' = None) -> list[str]:
    """Create the agent state directories the policy's groups name in ``create_dirs``.

    A sandbox can grant only what exists, and the agent cannot create its own
    ``~/.codex`` inside the sandbox (your home is not writable). So, before
    the sandbox starts, nono creates each missing one (mode 0700). Only
    directories beneath your home, outside every denied and protected path,
    are created. Returns the directories created.
    """
    groups = [_groups.group(name) for name in policy.groups]
    if not any(g.get("create_dirs") for g in groups):
        return []
    vars_ = variables(cwd)
    home = _home()
    denied: list[str] = []
    wanted: list[str] = []
    for g in groups:
        denied.extend(expand(p, vars_) for p in g.get("deny", {}).get("access", []))
        wanted.extend(expand(p, vars_) for p in g.get("create_dirs", []))
    denied.extend(p for p, _src in policy.denies)
    denied.extend(expand(p, vars_) for p in _groups.data()["protected_state_roots"])
    denied.append(vars_["NONO_CONFIG"])
    created = []
    for d in wanted:
        if os.path.lexists(d) or not is_within(_canonical(os.path.dirname(d)), home) or d == home:
            continue
        if any(is_within(d, x) or is_within(x, d) for x in denied):
            continue
        try:
            os.makedirs(d, mode=0o700)
        except OSError:
            continue  # the grant is then skipped, and reported like any missing path
        created.append(d)
    return created


_home_cache: 'dict[str, str]' = {}


def _home() -> str:
    """The canonical home directory (resolved once per process and $HOME value)."""
    raw = os.environ.get("HOME") or os.path.expanduser("~")
    home = _home_cache.get(raw)
    if home is None:
        home = _home_cache[raw] = _canonical(raw)
    return home


def _canonical(path: str) -> str:
    """The kernel's canonical name for ``path`` (resolved like ``realpath``)."""
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return os.path.realpath(path)
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return os.path.realpath(path)
    finally:
        os.close(fd)


def _open_canonical(path: str) -> 'tuple[int, str, os.stat_result]':
    """Open ``path`` with ``O_PATH``; return (fd, canonical path, stat). Raises OSError."""
    fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        try:
            real = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            real = os.path.realpath(path)
        return fd, real, st
    except BaseException:
        os.close(fd)
        raise


def _add_grant(plan: 'Plan', g: 'Grant', protected: list[str]) -> None:
    user = _is_user(g.source)
    try:
        fd, real, st = _open_canonical(g.path)
    except OSError as exc:
        plan.skipped.append((g.path, g.source, "does not exist" if isinstance(exc, FileNotFoundError) else exc.strerror or "cannot open"))
        return
    if real in plan._fds:
        os.close(fd)
    else:
        plan._fds[real] = fd
    is_dir = stat.S_ISDIR(st.st_mode)
    if user and g.kind == "dir" and not is_dir:
        raise PolicyError(f"'{g.path}' is a file, but a directory grant was requested", path=g.path,
                          hint=f"use the single-file form, e.g. --read-file {g.path}")
    if user and g.kind == "file" and is_dir:
        raise PolicyError(f"'{g.path}' is a directory, but a single-file grant was requested", path=g.path,
                          hint=f"use the directory form, e.g. --read {g.path}")
    for root in protected:
        if is_within(real, root):
            raise PolicyError(
                f"Refusing to grant '{g.path}' (source: {g.source}) because it overlaps protected nono state root '{root}'.",
                path=g.path, hint="nono keeps its own state and configuration out of every sandbox",
            )
    hit = plan.denied_by(real)
    if hit is not None:
        if user:
            raise PolicyError(
                f"'{g.path}' is protected by {hit[1]} ('{hit[0]}')", path=g.path,
                hint=f"to grant it deliberately, add --bypass-protection {hit[0]}",
            )
        plan.skipped.append((g.path, g.source, f"protected by {hit[1]}"))
        return
    mask = _MASKS[g.access]
    inner = plan.denies_inside(real) if is_dir else []
    if g.source in ("executable", "runtime", "nono", "terminal") and (
            inner or real == "/" or is_within(_home(), real)):
        # Derived grants never reach home or anything protected, whatever a file said.
        plan.skipped.append((g.path, g.source, "not granted: it contains your home directory or protected paths"))
        return
    if mask & ll.ACCESS_WRITE:
        for ro in plan.readonly:
            if is_within(real, ro):
                mask &= ll.ACCESS_READ  # e.g. inside nono's own installation: read-only
                plan.notes.append(f"'{g.path}' is granted read-only: it is part of {plan.readonly[ro]}")
                break
        else:
            ro_inside = [ro for ro in plan.readonly if ro != real and is_within(ro, real)] if is_dir else []
            if ro_inside:
                top = [ro for ro in ro_inside if not any(o != ro and is_within(ro, o) for o in ro_inside)]
                why = sorted({plan.readonly[ro] for ro in top})
                hint = (" Install nono outside the directories you grant (for example with pipx) to avoid this."
                        if "nono's own installation" in why else "")
                plan.notes.append(
                    f"'{g.path}' is granted entry by entry, because {' and '.join(why)} "
                    f"({', '.join(sorted(top))}) lies inside it and must stay read-only; new files directly in "
                    f"'{g.path}' cannot be created.{hint}")
                inner = sorted(set(inner) | set(ro_inside))
    if not mask:
        return
    if inner:
        plan.decomposed.append((real, inner))
        _decompose(plan, real, mask, g, inner)
    else:
        _put(plan, real, mask, is_dir, g)


def _add_system_paths(plan: 'Plan', items: list[tuple[str, str, str]], protected: list[str]) -> None:
    """:func:`_add_grant` for the many built-in group paths, without per-path objects.

    Same decisions, in one tight loop: this runs on every ``nono run``. A
    built-in path that contains denied paths is dropped with a note.
    """
    ancestors, deny_prefixes = plan._index()
    deny_src, rules, fds = plan._deny_src, plan.rules, plan._fds
    flags = os.O_PATH | os.O_CLOEXEC
    for path, access, source in items:
        try:
            fd = os.open(path, flags)
        except OSError as exc:
            plan.skipped.append((path, source, "does not exist" if isinstance(exc, FileNotFoundError) else exc.strerror or "cannot open"))
            continue
        try:
            is_dir = stat.S_ISDIR(os.fstat(fd).st_mode)
            real = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            os.close(fd)
            _add_grant(plan, Grant(path, access, "any", source), protected)
            continue
        if real in deny_src or real.startswith(deny_prefixes):
            os.close(fd)
            plan.skipped.append((path, source, f"protected by {plan.denied_by(real)[1]}"))  # type: ignore[index]
            continue
        inside_ro = [ro for ro in plan.readonly if ro != real and is_within(ro, real)] if is_dir and access != READ else []
        if inside_ro:
            os.close(fd)
            why = " and ".join(sorted({plan.readonly[ro] for ro in inside_ro}))
            plan.skipped.append((path, source, f"contains {why}"))
            plan.notes.append(f"'{path}' is not granted: {why} lies inside it and must stay read-only")
            continue
        if is_dir and real in ancestors:
            # A built-in grant (e.g. /tmp) containing your home or protected paths is
            # dropped, never decomposed: decomposing it would hand out the rest of home.
            os.close(fd)
            plan.skipped.append((path, source, "contains protected paths (is your home directory inside it?)"))
            plan.notes.append(f"'{path}' is not granted: it contains your home directory or protected paths")
            continue
        old = rules.get(real)
        if old is None:
            rules[real] = Rule(real, _MASKS[access], is_dir, access, source)
            fds[real] = fd
        else:
            os.close(fd)
            old.mask |= _MASKS[access]
            if old.access != access:
                old.access = READWRITE if {old.access, access} != {READ} else READ


def _put(plan: 'Plan', path: str, mask: int, is_dir: bool, g: 'Grant') -> None:
    old = plan.rules.get(path)
    if old is None:
        plan.rules[path] = Rule(path, mask, is_dir, g.access, g.source)
    else:
        old.mask |= mask
        if old.access != g.access:
            old.access = READWRITE if {old.access, g.access} != {READ} else READ
        if _is_user(g.source):
            old.source = g.source


def _decompose(plan: 'Plan', directory: str, mask: int, g: 'Grant', inner: list[str]) -> None:
    """Grant each entry of ``directory`` except the denied ones, recursing toward them."""
    try:
        entries = list(os.scandir(directory))
    except OSError as exc:
        plan.skipped.append((directory, g.source, f"cannot list for deny decomposition: {exc.strerror}"))
        return
    for entry in entries:
        p = entry.path
        if p in inner:
            if p in plan.readonly and not plan.denied_by(p) and mask & ll.ACCESS_READ:
                _put(plan, p, mask & ll.ACCESS_READ, entry.is_dir(follow_symlinks=False),
                     Grant(p, READ, "any", g.source))
            continue
        deeper = [d for d in inner if d.startswith(p + "/")]
        try:
            if entry.is_symlink():
                continue  # its target is checked on its own merits
            if deeper:
                if entry.is_dir(follow_symlinks=False):
                    _decompose(plan, p, mask, g, deeper)
                continue
            _put(plan, p, mask, entry.is_dir(follow_symlinks=False), g)
        except OSError:
            continue


def runtime_grants(exe: str) -> 'list[Grant]':
    """Read grants a program needs to start: itself, its interpreter and runtime prefix."""
    return _runtime_grants(exe, variables())


def _runtime_grants(exe: str, vars_: 'dict[str, str]', depth: int = 0) -> 'list[Grant]':
    """Read grants the program needs to start: itself, its interpreter, its runtime prefix.

    Nothing here trusts the *contents* of files the sandbox may have written
    (a venv's ``pyvenv.cfg``): a Python base prefix is derived from where the
    interpreter binary really is, and accepted only if it holds a Python
    standard library. Shebang interpreters are followed only to executables.
    """
    real = _canonical(exe)
    out = [Grant(real, READ, "file", "executable")]
    for cand in (exe, real):
        root = _runtime_root(cand, vars_)
        if root:
            out.append(Grant(root, READ, "dir", "runtime"))
    venv = os.path.dirname(os.path.dirname(exe))
    if os.path.isfile(os.path.join(venv, "pyvenv.cfg")):
        out.append(Grant(venv, READ, "dir", "runtime"))
    if os.path.basename(real).startswith("python"):
        prefix = os.path.dirname(os.path.dirname(real))
        if _is_python_prefix(prefix):
            out.append(Grant(prefix, READ, "dir", "runtime"))
    if depth < 2:
        interp = _shebang(real)
        if interp:
            resolved = which(interp)
            if resolved and os.access(resolved, os.X_OK):
                out.extend(_runtime_grants(resolved, vars_, depth + 1))
    return out


def _is_python_prefix(prefix: str) -> bool:
    """Does ``prefix`` hold a Python standard library (``lib/python3.X/os.py``)?"""
    try:
        names = os.listdir(os.path.join(prefix, "lib"))
    except OSError:
        return False
    return any(n.startswith("python3") and os.path.isfile(os.path.join(prefix, "lib", n, "os.py")) for n in names)


def interpreter_paths() -> 'list[str]':
    """Where nono and the interpreter running it load code from.

    A sandbox must never write there: a ``.pth`` or ``sitecustomize.py`` dropped
    into any of these would run, unsandboxed, in the next nono. The working
    directory is left out (``python -m nono`` puts it on ``sys.path``; use the
    ``nono`` command inside projects you grant).
    """
    import sys

    cwd = _canonical(os.getcwd())
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(os.path.dirname(os.path.abspath(__file__)))}
    paths.update(p for p in sys.path if p and os.path.isabs(p))
    out = {_canonical(p) for p in paths if os.path.isdir(p)}
    if not sys.flags.no_user_site and sys.prefix == sys.base_prefix:
        # The user site directory is read at start-up even if it does not exist yet:
        # protect it (and so its parents are granted entry by entry) before it does.
        py = f"python{sys.version_info[0]}.{sys.version_info[1]}"
        base = os.environ.get("PYTHONUSERBASE") or os.path.join(os.path.expanduser("~"), ".local")
        out.add(os.path.realpath(os.path.join(base, "lib", py, "site-packages")))
    out.discard(cwd)
    out.add(_canonical(sys.executable))
    if sys.argv and os.path.basename(sys.argv[0]) == "nono" and os.path.isfile(sys.argv[0]):
        out.add(_canonical(sys.argv[0]))
    return sorted(p for p in out if p != "/")


_managers_cache: dict[str, list[tuple[str, str]]] = {}


def _managers(home: str) -> list[tuple[str, str]]:
    """(canonical root, versions subdirectory) of the runtime managers installed here."""
    found = _managers_cache.get(home)
    if found is None:
        found = []
        for root, sub in ((os.environ.get("PYENV_ROOT") or os.path.join(home, ".pyenv"), "versions"),
                          (os.environ.get("ASDF_DATA_DIR") or os.path.join(home, ".asdf"), "installs"),
                          (os.environ.get("NVM_DIR") or os.path.join(home, ".nvm"), "versions")):
            if os.path.isdir(root):
                found.append((_canonical(root), sub))
        _managers_cache[home] = found
    return found


def _runtime_root(path: str, vars_: dict[str, str]) -> str | None:
    """The version directory (or manager root, for shims) of known runtime managers."""
    for root, sub in _managers(vars_["HOME"]):
        if not is_within(path, root):
            continue
        rel = path[len(root) + 1 :].split("/")
        if rel[0] == "shims":
            return root
        if rel[0] == sub:
            depth = 2 if sub == "versions" and not root.endswith(".nvm") else 3
            if len(rel) > depth:
                return os.path.join(root, *rel[:depth])
    return None


def _shebang(path: str) -> str | None:
    """The interpreter a script names (``env X`` resolved to ``X``), else None."""
    try:
        with open(path, "rb") as f:
            head = f.read(256)
    except OSError:
        return None
    if not head.startswith(b"#!"):
        return None
    parts = head[2:].split(b"\n", 1)[0].decode(errors="replace").split()
    if not parts:
        return None
    if os.path.basename(parts[0]) == "env":
        rest = [p for p in parts[1:] if not p.startswith("-")]
        return rest[0] if rest else None
    return parts[0]
