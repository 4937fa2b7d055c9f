"""Profiles: find, read, validate, inherit (``extends``) and merge them, then turn one into a :class:`Policy`.

Resolution of a name (``--profile NAME``): ``$XDG_CONFIG_HOME/nono/profiles/NAME.{json,jsonc,yaml,yml}``
first, then the built-ins in ``data/profiles/``. Anything with a ``/`` or a
profile file suffix is a path. ``extends`` names bases the same way (a sibling
file in the same directory first); bases fold left to right, the child last.

Merge rules (upstream nono's): lists are appended without duplicates;
scalars and small objects are overridden by the child; ``network.block`` and
``network.allow_http2`` are OR-ed; ``network.network_profile: null`` clears;
``network.credentials: []`` clears; map entries (``set_vars``,
``custom_credentials``, ...) are replaced per key; ``workdir.access`` is
overridden unless the child says ``none``. Finally the ``default`` profile's
groups are always included, minus ``groups.exclude``; required groups cannot
be excluded.
"""

import os

from .document import ProfileError, locate_key, parse

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .model import Policy

BUILTIN_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "profiles")
SUFFIXES = (".json", ".jsonc", ".yaml", ".yml")
MAX_DEPTH = 10

# Legacy (pre-"filesystem") keys: old spelling -> canonical dotted key.
LEGACY_POLICY_KEYS = {
    "add_allow_read": "filesystem.read",
    "add_allow_write": "filesystem.write",
    "add_allow_readwrite": "filesystem.allow",
    "add_deny_access": "filesystem.deny",
    "add_deny_commands": "commands.deny",
    "exclude_groups": "groups.exclude",
    "override_deny": "filesystem.bypass_protection",
}
LEGACY_SECURITY_KEYS = {"groups": "groups.include", "allowed_commands": "commands.allow"}
# Deprecated aliases the schema still accepts: alias -> canonical dotted key.
ALIASES = {
    "network.proxy_allow": "network.allow_domain",
    "network.allow_proxy": "network.allow_domain",
    "network.proxy_credentials": "network.credentials",
    "network.port_allow": "network.open_port",
    "network.allow_port": "network.open_port",
    "network.external_proxy": "network.upstream_proxy",
    "network.external_proxy_bypass": "network.upstream_bypass",
    "filesystem.ignore": "filesystem.suppress_save_prompt",
    "undo": "rollback",
    "secrets": "env_credentials",
}

# Filesystem keys that become grants: key -> (access, kind).
FS_GRANTS = {
    "allow": ("readwrite", "any"), "read": ("read", "any"), "write": ("write", "any"),
    "allow_file": ("readwrite", "file"), "read_file": ("read", "file"), "write_file": ("write", "file"),
}
_OR_KEYS = {"network.block", "network.allow_http2"}
_REPLACE_WHOLE = {"meta", "network.tls_intercept", "open_urls", "session_hooks", "security", "linux"}
_MAP_ENTRIES = {"network.custom_credentials", "env_credentials", "credential_capture", "command_policies", "hooks",
                "environment.set_vars"}
_SKIP = {"extends", "$schema"}
# Parsed and validated, but enforced by features this version does not have yet.
_NOT_ENFORCED = {
    "commands": "command blocking is deprecated upstream and not supported",
    "command_policies": "per-command tool sandboxing is not available yet",
    "credential_capture": "credential capture is not available yet",
    "env_credentials": "environment credentials are not available yet",
    "hooks": "agent hooks are not available yet",
    "session_hooks": "session hooks are not available yet",
    "open_urls": "opening URLs from the sandbox is not available",
    "rollback": "rollback settings take effect with the rollback feature (not available yet)",
    "network.tls_intercept": "TLS interception is not available yet",
    "filesystem.unix_socket_bind": "use --allow-unix-socket; binding named sockets is mediated automatically",
    "filesystem.unix_socket_dir": "not available yet; name each socket in filesystem.unix_socket",
    "filesystem.unix_socket_dir_bind": "not available yet",
    "filesystem.unix_socket_subtree": "not available yet; name each socket in filesystem.unix_socket",
    "filesystem.unix_socket_subtree_bind": "not available yet",
}
_PROXY_KEYS = ("network_profile", "allow_domain", "credentials", "custom_credentials", "upstream_proxy")


class Document:
    """One profile file, read, de-legacied, validated and with ``when`` conditions applied."""

    def __init__(self, name: str, file: str, label: str, data: 'dict[str, Any]', legacy: 'list[tuple[str, str]]',
                 text: str) -> None:
        self.name, self.file, self.label, self.data, self.legacy, self.text = name, file, label, data, legacy, text

    @property
    def extends(self) -> list[str]:
        ext = self.data.get("extends")
        return [ext] if isinstance(ext, str) else list(ext or [])


def user_dir() -> str:
    from .paths import variables

    return os.path.join(variables()["NONO_CONFIG"], "profiles")


def builtin_names() -> list[str]:
    return sorted(f[:-5] for f in os.listdir(BUILTIN_DIR) if f.endswith(".json"))


def user_profiles() -> list[tuple[str, str]]:
    """(name, file) of every profile in the user's profile directory."""
    d = user_dir()
    try:
        names = sorted(os.listdir(d))
    except OSError:
        return []
    out = []
    for f in names:
        for suffix in SUFFIXES:
            if f.endswith(suffix) and not f.startswith("."):
                out.append((f[: -len(suffix)], os.path.join(d, f)))
                break
    return out


def is_path_ref(ref: str) -> bool:
    return "/" in ref or ref.endswith(SUFFIXES)


def find(ref: str, *, near: str = "", skip: str = "") -> tuple[str, str, str]:
    """Locate a profile: (name, file, label). ``near``: a directory searched first (for ``extends``).

    ``skip`` is a file not to return (a user profile extending the built-in of
    the same name must not find itself).
    """
    if is_path_ref(ref):
        path = os.path.expanduser(ref)
        if near and not os.path.isabs(path):
            path = os.path.join(near, path)  # relative to the profile that names it
        path = os.path.abspath(path)
        if not os.path.isfile(path):
            parts = ref.split("/")
            if len(parts) == 2 and all(parts) and ref[0] not in ".~" and not ref.endswith(SUFFIXES):
                raise ProfileError(f"profile '{ref}' looks like a registry pack: packs are not supported in this version",
                                   hint="download the pack's profile file and pass its path, or use a built-in (nono profile list)")
            raise ProfileError(f"profile file not found: {ref}", hint="give an existing file, or a profile name (nono profile list)")
        return os.path.basename(path).rsplit(".", 1)[0], path, path
    if not ref or not all(c.isalnum() or c in "-_" for c in ref):
        raise ProfileError(f"Invalid profile name '{ref}': use letters, digits, '-' and '_', or a path to a file")
    dirs = ([near] if near else []) + [user_dir()]
    for d in dirs:
        for suffix in SUFFIXES:
            cand = os.path.join(d, ref + suffix)
            if cand != skip and os.path.isfile(cand):
                return ref, cand, cand
    builtin = os.path.join(BUILTIN_DIR, ref + ".json")
    if os.path.isfile(builtin):
        return ref, builtin, f"built-in:{ref}"
    known = sorted(set(builtin_names()) | {n for n, _ in user_profiles()})
    import difflib

    close = difflib.get_close_matches(ref, known, n=3, cutoff=0.5)
    hint = (f"did you mean {' or '.join(repr(c) for c in close)}? " if close else "") + f"available: {', '.join(known)}"
    raise ProfileError(f"Profile not found: {ref}", hint=hint)


_documents: 'dict[tuple[str, str, float, int], Document]' = {}


def load_document(name: str, file: str, label: str) -> Document:
    """Read, de-legacy, validate and evaluate conditions of one profile file (cached per process)."""
    try:
        st = os.stat(file)
        key = (file, label, st.st_mtime, st.st_size)
    except OSError:
        key = (file, label, 0.0, -1)
    doc = _documents.get(key)
    if doc is None:
        doc = _documents[key] = _load_document(name, file, label)
    return doc


def _read(file: str, shown: str) -> 'tuple[str, dict[str, Any]]':
    """The text of a profile file and its parsed top-level mapping."""
    try:
        with open(file, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError:
        raise ProfileError("not a text file (UTF-8 expected)", file=shown) from None
    except OSError as exc:
        raise ProfileError(f"cannot read profile: {exc.strerror}", file=shown) from None
    raw = parse(text, shown)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ProfileError(f"a profile must be an object (a mapping of keys), not {type(raw).__name__}", file=shown)
    return text, raw


def _load_document(name: str, file: str, label: str) -> Document:
    from . import schema

    shown = file if label.startswith("/") else label
    text, raw = _read(file, shown)
    data, legacy = _drain_legacy(raw, shown, text)
    problems = schema.validate(data)
    if problems:
        first = problems[0]
        line = locate_key(text, first.key) if first.key else 0
        more = f" (and {len(problems) - 1} more problem(s): run 'nono profile validate {file}')" if len(problems) > 1 else ""
        hint = "see 'nono profile schema' for the format"
        raise ProfileError(f"{first}{more}", file=shown, line=line, key=first.key, hint=hint)
    for key, _desc in schema.deprecated_keys(data):
        if key in ALIASES:
            legacy.append((key, ALIASES[key]))
            _move(data, key, ALIASES[key])
        else:
            legacy.append((key, ""))
    _apply_conditions(data)
    return Document(name, file, label, data, legacy, text)


def validate_file(file: str) -> 'tuple[list[str], list[tuple[str, str]]]':
    """For ``nono profile validate``: (every problem as text, legacy keys found). Raises on unreadable/malformed files."""
    from . import schema

    text, raw = _read(file, file)
    data, legacy = _drain_legacy(raw, file, text)
    problems = []
    for p in schema.validate(data):
        line = locate_key(text, p.key) if p.key else 0
        problems.append(f"{file}:{line}: {p}" if line else f"{file}: {p}")
    for key, _desc in schema.deprecated_keys(data):
        legacy.append((key, ALIASES.get(key, "")))
    return problems, legacy


def _drain_legacy(raw: 'dict[str, Any]', file: str, text: str) -> 'tuple[dict[str, Any], list[tuple[str, str]]]':
    """Move legacy keys (``policy.*``, ``security.groups``) to their canonical place."""
    legacy: list[tuple[str, str]] = []
    data = {k: v for k, v in raw.items() if k != "policy"}
    if "policy" in raw:
        pol = raw["policy"]
        if not isinstance(pol, dict):
            raise ProfileError("policy: expected an object (legacy profile section)", file=file,
                               line=locate_key(text, "policy"), key="policy")
        for k, v in pol.items():
            if k not in LEGACY_POLICY_KEYS:
                import difflib

                close = difflib.get_close_matches(str(k), list(LEGACY_POLICY_KEYS), n=1)
                raise ProfileError(f"policy.{k}: unknown legacy key", file=file, line=locate_key(text, f"policy.{k}"),
                                   key=f"policy.{k}", hint=(f"did you mean '{close[0]}'? " if close else "")
                                   + "better: move it to the 'filesystem' section (nono profile schema)")
            target = LEGACY_POLICY_KEYS[k]
            legacy.append((f"policy.{k}", target))
            _put(data, target, v, file, text)
    sec = data.get("security")
    if isinstance(sec, dict):
        for k, target in LEGACY_SECURITY_KEYS.items():
            if k in sec:
                sec = dict(sec)
                legacy.append((f"security.{k}", target))
                _put(data, target, sec.pop(k), file, text)
                data["security"] = sec
    return data, legacy


def _put(data: 'dict[str, Any]', target: str, value: 'Any', file: str, text: str) -> None:
    section, key = target.split(".")
    sec = data.setdefault(section, {})
    if not isinstance(sec, dict):
        raise ProfileError(f"{section}: expected an object", file=file, line=locate_key(text, section), key=section)
    sec = data[section] = dict(sec)
    old = sec.get(key)
    if isinstance(old, list) and isinstance(value, list):
        sec[key] = old + [v for v in value if v not in old]
    else:
        sec[key] = value


def _move(data: 'dict[str, Any]', alias: str, target: str) -> None:
    parts = alias.split(".")
    holder = data
    for p in parts[:-1]:
        holder = holder[p]
    value = holder.pop(parts[-1])
    tparts = target.split(".")
    dest = data
    for p in tparts[:-1]:
        dest = dest.setdefault(p, {})
    old = dest.get(tparts[-1])
    if isinstance(old, list) and isinstance(value, list):
        dest[tparts[-1]] = old + [v for v in value if v not in old]
    elif isinstance(old, dict) and isinstance(value, dict):
        dest[tparts[-1]] = {**value, **old}
    elif old is None:
        dest[tparts[-1]] = value


def condition_holds(cond: 'str | list[str]') -> bool:
    """Does a ``when`` condition hold here? A list holds if any item does.

    Items: ``linux``, ``macos``, ``!X`` (negation), ``linux:<distro id>``
    (``/etc/os-release`` ID or ID_LIKE), ``macos:>=15`` (never on Linux).
    """
    if isinstance(cond, list):
        return any(condition_holds(c) for c in cond)
    c = cond.strip().lower()
    if c.startswith("!"):
        return not condition_holds(c[1:])
    osname, _, qual = c.partition(":")
    if osname != "linux":
        return False
    if not qual:
        return True
    return qual in _distro_ids()


_distros: 'set[str] | None' = None


def _distro_ids() -> 'set[str]':
    global _distros
    if _distros is None:
        ids: set[str] = set()
        try:
            with open("/etc/os-release", encoding="utf-8") as f:
                for line in f:
                    k, _, v = line.strip().partition("=")
                    if k in ("ID", "ID_LIKE"):
                        ids.update(v.strip("\"'").lower().split())
        except OSError:
            pass
        _distros = ids
    return _distros


def _apply_conditions(data: 'dict[str, Any]') -> None:
    """Replace ``{"path"|"name": X, "when": C}`` entries by ``X`` where C holds here; drop the rest."""
    for section, field in (("filesystem", "path"), ("groups", "name")):
        sec = data.get(section)
        if not isinstance(sec, dict):
            continue
        for key, entries in list(sec.items()):
            if isinstance(entries, list):
                sec[key] = [e if isinstance(e, str) else e[field] for e in entries
                            if isinstance(e, str) or condition_holds(e.get("when", "linux"))]


class ResolvedProfile:
    """A profile with its whole ``extends`` chain merged.

    ``data`` is the merged document; ``origins`` maps ``(dotted key, item)`` to
    the label (file or ``built-in:NAME``) that first contributed it;
    ``groups`` is the final group list; ``chain`` the labels in merge order.
    """

    def __init__(self, name: str, label: str, data: 'dict[str, Any]', origins: 'dict[tuple[str, str], str]',
                 chain: list[str], groups: list[str], legacy: 'list[tuple[str, str, str]]') -> None:
        self.name, self.label, self.data, self.origins = name, label, data, origins
        self.chain, self.groups, self.legacy = chain, groups, legacy

    def section(self, name: str) -> 'dict[str, Any]':
        value = self.data.get(name)
        return value if isinstance(value, dict) else {}

    @property
    def workdir_access(self) -> str:
        return str(self.section("workdir").get("access", "none"))

    def origin(self, key: str, item: 'Any' = None) -> str:
        return self.origins.get((key, _item_key(item)), self.label)

    def not_enforced(self) -> list[str]:
        """Human notes for keys that are accepted but not enforced by this version."""
        notes = []
        for key, why in _NOT_ENFORCED.items():
            section, _, sub = key.partition(".")
            present = self.section(section).get(sub) if sub else self.data.get(section)
            if present:
                notes.append(f"profile key '{key}' is not enforced: {why}")
        sec = self.section("security")
        if sec.get("capability_elevation"):
            notes.append("profile key 'security.capability_elevation' is not supported: no elevation prompts are offered")
        return notes

    def needs_proxy(self) -> bool:
        """Does the profile ask for filtered network (and not simply ``network.block``)?"""
        net = self.section("network")
        return not net.get("block") and any(net.get(k) for k in _PROXY_KEYS)

    def to_policy(self, workdir: str, *, allow_unfiltered_network: bool = False) -> 'Policy':
        """The :class:`Policy` this profile describes (CLI flags are added on top by the caller).

        A profile that asks for network filtering (``network_profile``,
        ``allow_domain``, ``upstream_proxy``) gets a filtered network (nono's
        proxy); ``allow_unfiltered_network`` allows all network instead
        (``--allow-net``).
        """
        from ..errors import PolicyError
        from .model import Grant, Policy
        from .paths import substitute, variables

        vars_ = variables(workdir)
        policy = Policy(defaults=False).with_groups(*self.groups)
        fs = self.section("filesystem")
        for key, (access, kind) in FS_GRANTS.items():
            for raw in fs.get(key, ()):
                path = _expand(raw, vars_, workdir, self.origin(f"filesystem.{key}", raw), f"filesystem.{key}")
                policy = policy.with_grant(Grant(path, access, kind, f"profile:{self._short(f'filesystem.{key}', raw)}"))
        for raw in fs.get("deny", ()):
            path = _expand(raw, vars_, workdir, self.origin("filesystem.deny", raw), "filesystem.deny")
            policy = policy.deny(path, source=f"profile:{self._short('filesystem.deny', raw)}")
        for raw in fs.get("bypass_protection", ()):
            path = _expand(raw, vars_, workdir, self.origin("filesystem.bypass_protection", raw), "filesystem.bypass_protection")
            policy = policy.bypass_protection(path)
        sockets = [_expand(raw, vars_, workdir, self.origin("filesystem.unix_socket", raw), "filesystem.unix_socket")
                   for raw in fs.get("unix_socket", ())]
        if sockets:
            policy = policy.allow_unix_socket(*sockets)
        env = self.section("environment")
        if env.get("allow_vars"):
            policy = policy.allow_env(*env["allow_vars"])
        if env.get("deny_vars"):
            policy = policy.deny_env(*env["deny_vars"])
        for k, v in (env.get("set_vars") or {}).items():
            try:
                policy = policy.set_env(str(k), substitute(str(v), vars_))
            except PolicyError as exc:
                raise ProfileError(f"environment.set_vars.{k}: {exc.message}", file=self.origin(f"environment.set_vars.{k}"),
                                   key=f"environment.set_vars.{k}") from None
        net = self.section("network")
        if net.get("network_profile") == "":
            raise ProfileError("network.network_profile: empty name (use null to clear it)", file=self.origin("network.network_profile"),
                               key="network.network_profile")
        if net.get("block"):  # stricter than any proxy setting a base may carry: it wins
            policy = policy.block_network()
        elif self.needs_proxy() and allow_unfiltered_network:
            policy = policy.allow_all_network()
        elif self.needs_proxy():
            policy = policy.allow_network(list(net.get("allow_domain") or ()), profile=net.get("network_profile") or None)
            if net.get("credentials") or net.get("custom_credentials"):
                policy = policy.use_credentials(*list(net.get("credentials") or ()),
                                                custom=dict(net.get("custom_credentials") or {}))
            if net.get("upstream_proxy"):
                policy = policy.use_upstream_proxy(str(net["upstream_proxy"]), list(net.get("upstream_bypass") or ()))
        for p in net.get("connect_port", ()):
            policy = policy.allow_connect_port(p)
        for p in net.get("listen_port", ()):
            policy = policy.allow_bind_port(p)
        for p in net.get("open_port", ()):
            policy = policy.open_port(p)
        return policy

    def _short(self, key: str, item: 'Any') -> str:
        label = self.origin(key, item)
        return label[len("built-in:"):] if label.startswith("built-in:") else label


def _expand(raw: str, vars_: 'dict[str, str]', workdir: str, origin: str, key: str) -> str:
    from ..errors import PolicyError
    from .paths import expand

    try:
        return expand(raw, vars_, cwd=workdir)
    except PolicyError as exc:
        raise ProfileError(f"{key}: {exc.message}", file=origin, key=key) from None


def _item_key(item: 'Any') -> str:
    if item is None or isinstance(item, str):
        return item or ""
    return repr(item)


def resolve(ref: str, extends: 'list[str] | tuple[str, ...]' = ()) -> ResolvedProfile:
    """Load ``ref`` with its whole ``extends`` chain (``extends``: extra bases from ``--extends``)."""
    from . import groups as _groups

    name, file, label = find(ref)
    docs: list[Document] = []
    _collect(name, file, label, docs, stack=[], depth=0)
    pre: list[Document] = []
    for base in extends:  # --extends: bases in front of the profile's own chain, in the order given
        bname, bfile, blabel = find(base)
        _collect(bname, bfile, blabel, pre, stack=[], depth=0)
    if pre:
        docs = pre + [d for d in docs if d.file not in {x.file for x in pre}]
    merged: dict[str, Any] = {}
    origins: dict[tuple[str, str], str] = {}
    for doc in docs:
        _merge_into(merged, doc.data, doc.label, origins, "")
    merged.pop("extends", None)
    top = docs[-1]
    merged["meta"] = dict(top.data.get("meta") or {})
    merged["meta"].setdefault("name", top.name)

    # Groups: the default profile's, plus the chain's, minus exclusions.
    known = _groups.data()["groups"]
    default_doc = load_document("default", os.path.join(BUILTIN_DIR, "default.json"), "built-in:default")
    include: list[str] = []
    for g in default_doc.data.get("groups", {}).get("include", []):
        include.append(g)
        origins.setdefault(("groups.include", g), "built-in:default")
    for g in merged.get("groups", {}).get("include", []):
        if g not in include:
            include.append(g)
    exclude = list(merged.get("groups", {}).get("exclude", []))
    for key, names in (("groups.include", include), ("groups.exclude", exclude)):
        for g in names:
            if g not in known:
                src = origins.get((key, g), label)
                import difflib

                close = difflib.get_close_matches(g, list(known), n=3, cutoff=0.5)
                raise ProfileError(f"{key}: unknown group '{g}'", file=src, key=key,
                                   hint=(f"did you mean {' or '.join(repr(c) for c in close)}? " if close else "")
                                   + "list them with 'nono profile groups'")
    for g in exclude:
        if known[g].get("required"):
            src = origins.get(("groups.exclude", g), label)
            raise ProfileError(f"groups.exclude: group '{g}' is required and cannot be excluded", file=src,
                               key="groups.exclude", hint="required groups protect credentials and keyrings in every profile; "
                               "to reach one path deliberately, grant it and add it to filesystem.bypass_protection")
    final = [g for g in include if g not in exclude]
    legacy = [(d.label, old, new) for d in docs for old, new in d.legacy]
    return ResolvedProfile(top.name, label, merged, origins, [d.label for d in docs], final, legacy)


def _collect(name: str, file: str, label: str, out: list[Document], stack: list[str], depth: int) -> None:
    """Append ``file``'s bases (depth first, left to right), then ``file`` itself, to ``out``."""
    if file in stack:
        chain = " -> ".join([_nice(s) for s in stack[stack.index(file):]] + [_nice(file)])
        raise ProfileError(f"profile inheritance cycle: {chain}", hint="remove one of the 'extends' entries")
    if depth > MAX_DEPTH:
        chain = " -> ".join(_nice(s) for s in stack + [file])
        raise ProfileError(f"profile inheritance deeper than {MAX_DEPTH} levels: {chain}")
    if any(d.file == file for d in out):
        return  # a diamond: the shared base is merged once, at its first position
    doc = load_document(name, file, label)
    near = "" if label.startswith("built-in:") else os.path.dirname(file)
    for base in doc.extends:
        try:
            bname, bfile, blabel = find(base, near=near, skip=file)
        except ProfileError as exc:
            raise ProfileError(f"extends: {exc.message}", file=label if label.startswith("built-in:") else file,
                               line=locate_key(doc.text, "extends"), key="extends", hint=exc.hint) from None
        _collect(bname, bfile, blabel, out, stack + [file], depth + 1)
    out.append(doc)


def _nice(file: str) -> str:
    if file.startswith(BUILTIN_DIR + os.sep):
        return f"built-in:{os.path.basename(file)[:-5]}"
    return file


def _merge_into(acc: 'dict[str, Any]', doc: 'dict[str, Any]', label: str, origins: 'dict[tuple[str, str], str]',
                prefix: str) -> None:
    for k, v in doc.items():
        if not prefix and k in _SKIP:
            continue
        kp = f"{prefix}.{k}" if prefix else k
        if v is None and kp != "network.network_profile":
            continue  # null means "not set" (only network_profile uses an explicit null, to clear)
        if kp in _OR_KEYS:
            acc[k] = bool(acc.get(k)) or bool(v)
        elif kp == "workdir.access":
            if v != "none" or k not in acc:
                acc[k] = v
                origins[(kp, "")] = label
        elif kp == "network.credentials" and v == []:
            acc[k] = []
        elif kp in _REPLACE_WHOLE:
            acc[k] = _copy(v)
            origins[(kp, "")] = label
        elif kp in _MAP_ENTRIES and isinstance(v, dict):
            cur = acc.get(k)
            acc[k] = {**(cur if isinstance(cur, dict) else {}), **_copy(v)}
            for name in v:
                origins[(f"{kp}.{name}", "")] = label
        elif isinstance(v, list):
            prev = acc.get(k)
            cur_list = list(prev) if isinstance(prev, list) else []
            for item in v:
                if item not in cur_list:
                    cur_list.append(_copy(item))
                    origins.setdefault((kp, _item_key(item)), label)
            acc[k] = cur_list
        elif isinstance(v, dict):
            prev_map = acc.get(k)
            sub = dict(prev_map) if isinstance(prev_map, dict) else {}
            _merge_into(sub, v, label, origins, kp)
            acc[k] = sub
        else:
            acc[k] = v
            origins[(kp, "")] = label


def _copy(v: 'Any') -> 'Any':
    if isinstance(v, dict):
        return {k: _copy(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_copy(x) for x in v]
    return v
