"""``nono profile list|show|init|validate|diff|groups|schema`` (and the ``profiles``/``policy`` aliases)."""

import json
import os
import sys

from ..errors import NonoError
from ..policy.document import ProfileError
from . import args as A

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ..policy.profiles import ResolvedProfile

HELP = """\
Usage: nono profile COMMAND [OPTIONS]

Profiles describe what an agent may touch. Built-in ones cover common agents
(claude-code, codex, gemini-cli, opencode, aider) and toolchains; your own live
in ~/.config/nono/profiles/NAME.json (or .yaml) and may 'extends' any other.

Commands:
  list                      the profiles you can use (yours first, then built-ins)
  show NAME [--json|--raw]  the fully resolved policy: every path and where it came from
  init NAME [--extends P]   write a starter profile to ~/.config/nono/profiles/NAME.json
  validate FILE [--strict]  check a profile file (--strict: exit 2 on deprecated keys)
  diff A B [--json]         what B grants that A does not, and the reverse
  groups [NAME] [--json]    the policy groups (paths granted or denied together)
  schema [-o FILE]          the JSON Schema of profile files (for editors and CI)

Examples:
  nono profile show claude-code
  nono profile init my-agent --extends claude-code
  nono run --profile my-agent --allow-cwd -- claude
"""

_JSON = A.Flag("json", ("--json",), "bool", "print JSON", section="Options")
_FLAGS: 'dict[str, tuple[A.Flag, ...]]' = {
    "list": (_JSON,),
    "show": (_JSON, A.Flag("raw", ("--raw",), "bool", "print the merged profile document instead", section="Options"),
             A.Flag("workdir", ("--workdir",), "str", "value of $WORKDIR (default: current directory)", metavar="DIR",
                    section="Options")),
    "init": (A.Flag("extends", ("--extends",), "list", "base profile (repeatable; default: default)", metavar="PROFILE", section="Options"),
             A.Flag("groups", ("--groups",), "list", "groups to include", metavar="A,B", split=True, section="Options"),
             A.Flag("description", ("--description",), "str", "meta.description", metavar="TEXT", section="Options"),
             A.Flag("output", ("-o", "--output"), "str", "write here instead of ~/.config/nono/profiles/NAME.json",
                    metavar="PATH", section="Options"),
             A.Flag("force", ("--force",), "bool", "overwrite an existing file", section="Options")),
    "validate": (_JSON, A.Flag("strict", ("--strict",), "bool", "exit 2 if deprecated or legacy keys are used", section="Options")),
    "diff": (_JSON,),
    "groups": (_JSON,),
    "schema": (A.Flag("output", ("-o", "--output"), "str", "write to FILE instead of stdout", metavar="FILE", section="Options"),),
}
_ARGS = {"list": (0, 0), "show": (1, 1), "init": (1, 1), "validate": (1, 1), "diff": (2, 2), "groups": (0, 1), "schema": (0, 0)}
_POLICY_ALIASES = {"groups": "groups", "profiles": "list", "show": "show", "diff": "diff", "validate": "validate"}


def cmd_profile(argv: list[str], *, alias: str = "") -> int:
    """Dispatch ``nono profile SUB ...``; ``alias`` is ``profiles`` or ``policy`` when spelled so."""
    if not argv or argv[0] in ("-h", "--help", "help"):
        sys.stdout.write(HELP)
        return 0 if argv else 2
    sub, rest = argv[0], argv[1:]
    if alias == "policy":
        if sub not in _POLICY_ALIASES:
            raise A.UsageError(f"unknown command 'nono policy {sub}' (it is deprecated; use 'nono profile')")
        sys.stderr.write(f"warning: 'nono policy {sub}' is deprecated; use 'nono profile {_POLICY_ALIASES[sub]}'\n")
        sub = _POLICY_ALIASES[sub]
    if sub not in _FLAGS:
        import difflib

        close = difflib.get_close_matches(sub, list(_FLAGS), n=1)
        raise A.UsageError(f"unknown command 'nono profile {sub}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
    try:
        opts, pos = A.parse(f"profile {sub}", _FLAGS[sub], rest, trailing=False)
    except A.HelpRequested:
        sys.stdout.write(f"Usage: nono profile {sub} ...\n{A.format_flags(_FLAGS[sub])}\n\n" + HELP)
        return 0
    lo, hi = _ARGS[sub]
    if not lo <= len(pos) <= hi:
        want = {0: "no arguments", 1: "one argument", 2: "two arguments"}[hi] if lo == hi else "at most one argument"
        raise A.UsageError(f"'nono profile {sub}' takes {want}" + (f" (got {len(pos)})" if pos else ""))
    handler = {"list": _list, "show": _show, "init": _init, "validate": _validate, "diff": _diff,
               "groups": _groups, "schema": _schema}[sub]
    return handler(opts, pos)


def _out(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


def _dump(value: 'Any') -> None:
    _out(json.dumps(value, indent=2))


# -- list ---------------------------------------------------------------------------
def _list(opts: 'dict[str, object]', _pos: list[str]) -> int:
    from ..policy import profiles as P

    rows = []
    user = P.user_profiles()
    user_names = {n for n, _ in user}
    for name, file in user:
        rows.append({"name": name, "source": file, "builtin": False, "description": _describe(name, file)})
    for name in P.builtin_names():
        rows.append({"name": name, "source": f"built-in:{name}", "builtin": True,
                     "shadowed": name in user_names, "description": _describe(name, os.path.join(P.BUILTIN_DIR, name + ".json"))})
    if opts["json"]:
        _dump(rows)
        return 0
    width = max(len(r["name"]) for r in rows) if rows else 4  # type: ignore[arg-type]
    lines = []
    if user:
        lines.append(f"Your profiles ({P.user_dir()}):")
        lines += [f"  {r['name']:<{width}}  {r['description']}" for r in rows if not r["builtin"]]
        lines.append("")
    lines.append("Built-in profiles:")
    for r in rows:
        if r["builtin"]:
            note = "  (overridden by yours)" if r.get("shadowed") else ""
            lines.append(f"  {r['name']:<{width}}  {r['description']}{note}")
    lines.append("\nUse one with: nono run --profile NAME --allow-cwd -- PROGRAM   (details: nono profile show NAME)")
    _out("\n".join(lines))
    return 0


def _describe(name: str, file: str) -> str:
    from ..policy.document import parse

    try:
        with open(file, encoding="utf-8") as f:
            doc = parse(f.read(), file)
        meta = doc.get("meta") if isinstance(doc, dict) else None
        desc = meta.get("description") if isinstance(meta, dict) else None
        return str(desc) if desc else "(no description)"
    except (OSError, UnicodeDecodeError, NonoError):
        return "(unreadable: run 'nono profile validate " + file + "')"


# -- show ---------------------------------------------------------------------------
def _show(opts: 'dict[str, object]', pos: list[str]) -> int:
    from ..policy.profiles import resolve

    resolved = resolve(pos[0])
    if opts["raw"]:
        _dump(resolved.data)
        return 0
    workdir = os.path.abspath(str(opts["workdir"])) if opts.get("workdir") else os.getcwd()
    report = _report(resolved, workdir)
    if opts["json"]:
        _dump(report)
        return 0
    lines = [f"Profile {report['name']}  ({report['source']})"]
    if report["description"]:
        lines.append(f"  {report['description']}")
    if len(report["chain"]) > 1:
        lines.append("  Inherits: " + " -> ".join(report["chain"]))
    lines.append(f"\nWorking directory: {report['workdir']}" + ("" if report["workdir"] == "none" else " (with --allow-cwd or when you answer the prompt)"))
    lines.append("\nFilesystem (access, path, from):")
    tag = {"read": "r ", "write": " w", "readwrite": "rw"}
    for e in report["filesystem"]:
        absent = "" if os.path.lexists(e["path"]) else "  (absent here: skipped)"
        lines.append(f"  {tag[e['access']]}  {e['path']}{'' if e['kind'] != 'file' else ' (file)'}  [{e['from']}]{absent}")
    lines.append("\nDenied (even inside granted directories):")
    for e in report["deny"]:
        lines.append(f"  !   {e['path']}  [{e['from']}]")
    if report["bypass_protection"]:
        lines.append("\nDenials lifted (bypass_protection): " + ", ".join(report["bypass_protection"]))
    net = report["network"]
    lines.append(f"\nNetwork: {net['summary']}")
    env = report["environment"]
    if env["allow_vars"] or env["deny_vars"] or env["set_vars"]:
        lines.append("\nEnvironment:")
        if env["allow_vars"]:
            lines.append("  only: " + ", ".join(env["allow_vars"]) + " (+ PATH, HOME, TERM, LANG, ...)")
        if env["deny_vars"]:
            lines.append("  removed: " + ", ".join(env["deny_vars"]))
        for k, v in env["set_vars"].items():
            lines.append(f"  set: {k}={v}")
    for note in report["notes"]:
        lines.append(f"\nnote: {note}")
    _out("\n".join(lines))
    return 0


def _report(r: 'ResolvedProfile', workdir: str) -> 'dict[str, Any]':
    """Everything ``show`` prints, as plain data."""
    from ..policy import groups as G
    from ..policy.paths import variables

    vars_ = variables(workdir)
    fs_entries: list[dict[str, str]] = []
    deny: list[dict[str, str]] = []
    known = G.data()["groups"]
    for name in r.groups:
        g = known[name]
        if g.get("platform") not in (None, "linux"):
            continue
        for access, paths in g.get("allow", {}).items():
            for p in paths:
                fs_entries.append({"access": access, "path": _safe_expand(p, vars_, workdir), "kind": "any",
                                   "from": f"group:{name}", "via": r.origin("groups.include", name)})
        for p in g.get("deny", {}).get("access", []):
            deny.append({"path": _safe_expand(p, vars_, workdir), "from": f"group:{name}", "via": r.origin("groups.include", name)})
    from ..policy.profiles import FS_GRANTS

    fs = r.section("filesystem")
    for key, (access, kind) in FS_GRANTS.items():
        for p in fs.get(key, ()):
            fs_entries.append({"access": access, "path": _safe_expand(p, vars_, workdir), "kind": kind,
                               "from": f"{r.origin(f'filesystem.{key}', p)} (filesystem.{key})"})
    for p in fs.get("deny", ()):
        deny.append({"path": _safe_expand(p, vars_, workdir), "from": f"{r.origin('filesystem.deny', p)} (filesystem.deny)"})
    for p in G.data()["protected_state_roots"]:
        deny.append({"path": _safe_expand(p, vars_, workdir), "from": "protected nono state"})
    net = r.section("network")
    if net.get("block"):
        summary = "blocked"
    elif r.needs_proxy():
        what = f"network profile '{net['network_profile']}'" if net.get("network_profile") else "domain allowlist"
        summary = f"filtered ({what}); without the proxy (not in this version) 'nono run' blocks it unless --allow-net"
    else:
        summary = "allowed"
    ports = {k: net[k] for k in ("open_port", "listen_port", "connect_port") if net.get(k)}
    if ports:
        summary += "; TCP ports " + "; ".join(f"{k} {','.join(map(str, v))}" for k, v in ports.items())
    env = r.section("environment")
    meta = r.section("meta")
    return {
        "name": r.name, "source": r.label, "description": meta.get("description") or "", "chain": r.chain,
        "groups": r.groups, "workdir": r.workdir_access, "filesystem": fs_entries, "deny": deny,
        "bypass_protection": list(fs.get("bypass_protection", ())),
        "network": {"summary": summary, **{k: v for k, v in net.items()}},
        "environment": {"allow_vars": list(env.get("allow_vars") or ()), "deny_vars": list(env.get("deny_vars") or ()),
                        "set_vars": dict(env.get("set_vars") or {})},
        "security": r.section("security"),
        "notes": r.not_enforced() + [f"'{old}' in {label} is deprecated" + (f": use '{new}'" if new else "")
                                     for label, old, new in r.legacy],
    }


def _safe_expand(p: str, vars_: 'dict[str, str]', workdir: str) -> str:
    from ..policy.paths import expand

    try:
        return expand(p, vars_, cwd=workdir)
    except NonoError:
        return p + "  (variable not set here)"


# -- init ---------------------------------------------------------------------------
def _init(opts: 'dict[str, object]', pos: list[str]) -> int:
    from ..policy import profiles as P

    name = pos[0]
    if not name or not all(c.isalnum() or c in "-_" for c in name):
        raise A.UsageError(f"invalid profile name '{name}': use letters, digits, '-' and '_'")
    extends = list(opts["extends"]) or ["default"]  # type: ignore[call-overload]
    for base in extends:
        P.resolve(base)  # fail now, naming the base, rather than at the first run
    target = str(opts["output"]) if opts.get("output") else os.path.join(P.user_dir(), name + ".json")
    if os.path.lexists(target) and not opts["force"]:
        raise NonoError(f"{target} already exists", hint="pass --force to overwrite it, or -o to write elsewhere")
    doc: dict[str, Any] = {
        "$schema": "https://nono.sh/schemas/nono-profile.schema.json",
        "meta": {"name": name, "version": "1", "description": str(opts.get("description") or f"{name}: based on {', '.join(extends)}")},
        "extends": extends[0] if len(extends) == 1 else extends,
        "groups": {"include": list(opts["groups"]), "exclude": []},  # type: ignore[call-overload]
        "filesystem": {"read": [], "allow": [], "deny": []},
        "workdir": {"access": "readwrite"},
    }
    text = json.dumps(doc, indent=2) + "\n"
    os.makedirs(os.path.dirname(os.path.abspath(target)), mode=0o700, exist_ok=True)
    tmp = f"{target}.tmp.{os.getpid()}"
    with open(tmp, "x", encoding="utf-8") as f:
        f.write(text)
    try:
        P.resolve(os.path.abspath(tmp) if not tmp.endswith(P.SUFFIXES) else tmp)
    except NonoError:
        os.unlink(tmp)
        raise
    os.replace(tmp, target)
    sys.stderr.write(f"wrote {target}\n  try it: nono run --profile {name if not opts.get('output') else target} --allow-cwd -- PROGRAM\n")
    return 0


# -- validate -----------------------------------------------------------------------
def _validate(opts: 'dict[str, object]', pos: list[str]) -> int:
    from ..policy import profiles as P

    file = pos[0]
    if not os.path.isfile(file):
        if not P.is_path_ref(file):
            file = P.find(file)[1]
        else:
            raise NonoError(f"profile file not found: {file}")
    problems: list[str] = []
    try:
        problems, legacy = P.validate_file(file)
    except ProfileError as exc:
        problems, legacy = [exc.message], []
    if not problems:
        try:
            P.resolve(file if P.is_path_ref(file) else os.path.abspath(file)).to_policy(os.getcwd())
        except NonoError as exc:
            problems.append(exc.message + (f" ({exc.hint})" if exc.hint else ""))
    status = 1 if problems else (2 if legacy and opts["strict"] else 0)
    if opts["json"]:
        _dump({"file": file, "valid": not problems, "problems": problems,
               "deprecated": [{"key": k, "use": n} for k, n in legacy], "strict": bool(opts["strict"]), "exit_code": status})
        return status
    for p in problems:
        sys.stderr.write(f"error: {p}\n")
    for k, n in legacy:
        sys.stderr.write(f"{'error' if opts['strict'] else 'warning'}: '{k}' is deprecated" + (f"; use '{n}'" if n else "") + "\n")
    if not problems:
        sys.stderr.write(f"{file}: valid" + (" (with deprecated keys)" if legacy else "") + "\n")
    return status


# -- diff ---------------------------------------------------------------------------
def _diff(opts: 'dict[str, object]', pos: list[str]) -> int:
    from ..policy.profiles import resolve

    a, b = resolve(pos[0]), resolve(pos[1])
    workdir = os.getcwd()
    ra, rb = _report(a, workdir), _report(b, workdir)

    def keyset(rep: 'dict[str, Any]') -> 'dict[str, set[str]]':
        return {
            "groups": set(rep["groups"]),
            "filesystem": {f"{e['access']} {e['path']}" for e in rep["filesystem"]},
            "deny": {e["path"] for e in rep["deny"]},
            "environment": {f"allow {v}" for v in rep["environment"]["allow_vars"]}
            | {f"deny {v}" for v in rep["environment"]["deny_vars"]}
            | {f"set {k}={v}" for k, v in rep["environment"]["set_vars"].items()},
        }

    ka, kb = keyset(ra), keyset(rb)
    result: dict[str, Any] = {"a": a.name, "b": b.name}
    for section in ka:
        result[section] = {"only_in_a": sorted(ka[section] - kb[section]), "only_in_b": sorted(kb[section] - ka[section])}
    scalars = {"workdir": (ra["workdir"], rb["workdir"]), "network": (ra["network"]["summary"], rb["network"]["summary"])}
    result["changed"] = {k: {"a": x, "b": y} for k, (x, y) in scalars.items() if x != y}
    if opts["json"]:
        _dump(result)
        return 0
    lines = [f"--- {a.name} ({a.label})", f"+++ {b.name} ({b.label})"]
    same = True
    for section in ka:
        diff = result[section]
        if diff["only_in_a"] or diff["only_in_b"]:
            same = False
            lines.append(f"{section}:")
            lines += [f"  - {x}" for x in diff["only_in_a"]]
            lines += [f"  + {x}" for x in diff["only_in_b"]]
    for k, v in result["changed"].items():
        same = False
        lines.append(f"{k}:\n  - {v['a']}\n  + {v['b']}")
    if same:
        lines.append("(no differences)")
    _out("\n".join(lines))
    return 0


# -- groups ---------------------------------------------------------------------------
def _groups(opts: 'dict[str, object]', pos: list[str]) -> int:
    from ..policy import groups as G

    known = G.data()["groups"]
    if pos:
        name = pos[0]
        if name not in known:
            import difflib

            close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.5)
            raise NonoError(f"unknown group '{name}'", hint=(f"did you mean {' or '.join(repr(c) for c in close)}? " if close else "")
                            + "list them with 'nono profile groups'")
        g = known[name]
        if opts["json"]:
            _dump({"name": name, **g})
            return 0
        lines = [f"{name}: {g.get('description', '')}",
                 f"  platform: {g.get('platform', 'any')}; required: {'yes (cannot be excluded)' if g.get('required') else 'no'}"]
        for access, paths in g.get("allow", {}).items():
            lines.append(f"  {access}:")
            lines += [f"    {p}" for p in paths]
        if g.get("deny", {}).get("access"):
            lines.append("  denied:")
            lines += [f"    {p}" for p in g["deny"]["access"]]
        _out("\n".join(lines))
        return 0
    if opts["json"]:
        _dump([{"name": n, "description": g.get("description", ""), "required": bool(g.get("required")),
                "platform": g.get("platform")} for n, g in known.items()])
        return 0
    default = set(G.default_group_names())
    width = max(len(n) for n in known)
    lines = ["Groups (* = in the default profile, ! = required: can never be excluded):"]
    for n, g in known.items():
        mark = ("!" if g.get("required") else " ") + ("*" if n in default else " ")
        lines.append(f" {mark} {n:<{width}}  {g.get('description', '')}")
    lines.append("\nDetails: nono profile groups NAME")
    _out("\n".join(lines))
    return 0


# -- schema ---------------------------------------------------------------------------
def _schema(opts: 'dict[str, object]', _pos: list[str]) -> int:
    from ..policy.schema import SCHEMA_FILE

    with open(SCHEMA_FILE, encoding="utf-8") as f:
        text = f.read()
    if opts.get("output"):
        with open(str(opts["output"]), "w", encoding="utf-8") as f:
            f.write(text)
        sys.stderr.write(f"wrote {opts['output']}\n")
    else:
        _out(text)
    return 0
