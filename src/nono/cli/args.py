"""A small, table-driven argument parser for the nono CLI.

Why not argparse: importing it (with ``re`` and ``gettext``) costs ~15 ms on
our reference machine, as much as starting Python itself, and ``nono run``
promises to start within 1.5x of a bare interpreter. The grammar we need is
simple and fixed: ``nono [global] COMMAND [options] [--] [PROGRAM ARGS...]``.
One table (:data:`SANDBOX_FLAGS` and friends) drives parsing, environment
equivalents and ``--help``, so they cannot drift apart.
"""

import os

from ..errors import NonoError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable


class UsageError(NonoError):
    """Bad command line: printed with a usage hint, exit status 2."""


class Flag:
    """One option: its spellings, what it takes, its env var and help text."""

    __slots__ = ("dest", "env", "help", "kind", "metavar", "names", "section", "split")

    def __init__(self, dest: str, names: tuple[str, ...], kind: str, help: str, *, metavar: str = "",
                 env: str = "", split: bool = False, section: str = "") -> None:
        self.dest, self.names, self.kind, self.help = dest, names, kind, help
        self.metavar, self.env, self.split, self.section = metavar, env, split, section

    @property
    def takes_value(self) -> bool:
        return self.kind in ("str", "list", "int", "intlist")


FS, NET, GEN = "Filesystem", "Network", "General"

SANDBOX_FLAGS = (
    Flag("allow", ("-a", "--allow"), "list", "read+write DIR recursively (comma-separated list allowed)",
         metavar="DIR", env="NONO_ALLOW", split=True, section=FS),
    Flag("read", ("-r", "--read"), "list", "read-only DIR recursively", metavar="DIR", section=FS),
    Flag("write", ("-w", "--write"), "list", "write-only DIR recursively (create, modify, delete; no reading)",
         metavar="DIR", section=FS),
    Flag("allow_file", ("--allow-file",), "list", "read+write a single FILE", metavar="FILE", section=FS),
    Flag("read_file", ("--read-file",), "list", "read a single FILE", metavar="FILE", section=FS),
    Flag("write_file", ("--write-file",), "list", "write a single FILE", metavar="FILE", section=FS),
    Flag("allow_cwd", ("--allow-cwd",), "bool", "grant the current directory (read+write) without asking", section=FS),
    Flag("workdir", ("--workdir",), "str", "directory used as $WORKDIR and for --allow-cwd (default: current)",
         metavar="DIR", section=FS),
    Flag("allow_unix_socket", ("--allow-unix-socket",), "list", "allow connect() to the unix socket SOCK",
         metavar="SOCK", section=FS),
    Flag("allow_pty", ("--allow-pty",), "bool",
         "let the program create pseudo-terminals (grants /dev/pts, so it could also read your other terminals)",
         section=FS),
    Flag("bypass_protection", ("--bypass-protection", "--override-deny"), "list",
         "lift a deny-group entry for PATH (PATH must also be granted)", metavar="PATH", section=FS),
    Flag("block_net", ("--block-net", "--net-block"), "bool", "block all network access (TCP, UDP, raw, ...)",
         env="NONO_BLOCK_NET", section=NET),
    Flag("allow_connect_port", ("--allow-connect-port",), "intlist", "allow outbound TCP to PORT (any host); implies --block-net for the rest",
         metavar="PORT", section=NET),
    Flag("listen_port", ("--listen-port", "--allow-bind"), "intlist", "allow listening on TCP PORT",
         metavar="PORT", section=NET),
    Flag("open_port", ("--open-port", "--allow-port"), "intlist", "allow connect and listen on TCP PORT on loopback (local servers)",
         metavar="PORT", section=NET),
    Flag("network_profile", ("--network-profile",), "str",
         "network only through nono's proxy, to the hosts of NAME (minimal, developer, claude-code, ...)",
         metavar="NAME", env="NONO_NETWORK_PROFILE", section=NET),
    Flag("allow_domain", ("--allow-domain", "--allow-proxy", "--proxy-allow"), "list",
         "network through nono's proxy to HOST (also *.suffix, HOST:PORT, or a URL with a path glob)",
         metavar="HOST", env="NONO_ALLOW_DOMAIN", split=True, section=NET),
    Flag("deny_private", ("--deny-private-networks",), "bool",
         "with the proxy, also refuse private addresses (10/8, 172.16/12, 192.168/16, fc00::/7)", section=NET),
    Flag("upstream_proxy", ("--upstream-proxy", "--external-proxy"), "str",
         "with the proxy, send allowed traffic on through HOST:PORT (a corporate proxy)", metavar="HOST:PORT",
         env="NONO_UPSTREAM_PROXY", section=NET),
    Flag("upstream_bypass", ("--upstream-bypass", "--external-proxy-bypass"), "list",
         "hosts (or *.suffix) that skip --upstream-proxy", metavar="HOST", env="NONO_UPSTREAM_BYPASS", split=True,
         section=NET),
    Flag("proxy_port", ("--proxy-port",), "int", "run nono's proxy on this loopback port (default: any free port)",
         metavar="PORT", section=NET),
    Flag("credential", ("--credential", "--proxy-credential"), "list",
         "let the program use SERVICE's key through nono's proxy, as a phantom token (openai, anthropic, github, ...; "
         "or SERVICE=SOURCE: env://VAR, file:///path, keyring://..., op://...)", metavar="SERVICE",
         env="NONO_CREDENTIAL", split=True, section=NET),
    Flag("allow_endpoint", ("--allow-endpoint",), "list", "restrict a credential to SERVICE:METHOD:/path/** (repeatable)",
         metavar="RULE", section=NET),
    Flag("env_credential", ("--env-credential",), "list",
         "put SERVICE's REAL secret in the environment (weaker: the program can read it)", metavar="SERVICE",
         env="NONO_ENV_CREDENTIAL", split=True, section=NET),
    Flag("allow_net", ("--allow-net", "--net-allow"), "bool",
         "allow all network, even where the profile asks for filtering", env="NONO_ALLOW_NET", section=NET),
    Flag("profile", ("-p", "--profile"), "str", "profile NAME or FILE to start from (nono profile list; default: default)",
         metavar="NAME", env="NONO_PROFILE", section=GEN),
    Flag("extends", ("--extends",), "list", "put PROFILE under --profile as an extra base (repeatable)",
         metavar="PROFILE", section=GEN),
    Flag("dry_run", ("--dry-run",), "bool", "show what would be applied, run nothing", section=GEN),
    Flag("manifest", ("--manifest",), "str",
         "verify this signed agent manifest before launch; its prompt/tools/model files become read-only",
         metavar="FILE", section=GEN),
    Flag("verify_signature", ("--verify-signature",), "str",
         "verify FILE against FILE.bundle (nono sign FILE) before launch; it becomes read-only", metavar="FILE",
         section=GEN),
    Flag("trust_override", ("--trust-override",), "bool",
         "launch even if instruction files fail trust verification (warn instead of refusing)",
         env="NONO_TRUST_OVERRIDE", section=GEN),
    Flag("verbose", ("-v", "--verbose"), "count", "more detail (repeat for more)", section=GEN),
    Flag("silent", ("-s", "--silent"), "bool", "print nothing from nono itself", section=GEN),
)

WHY_FLAGS = (
    Flag("path", ("--path",), "str", "the path to ask about", metavar="PATH", section="Query"),
    Flag("op", ("--op",), "str", "read (default), write or readwrite", metavar="OP", section="Query"),
    Flag("host", ("--host",), "str", "a host or URL to ask about", metavar="HOST", section="Query"),
    Flag("port", ("--port",), "int", "port for --host (default 443)", metavar="PORT", section="Query"),
    Flag("json", ("--json",), "bool", "answer as JSON", section="Query"),
    Flag("self_", ("--self",), "bool", "inside a sandbox: ask about the sandbox you are in", section="Query"),
) + tuple(f for f in SANDBOX_FLAGS if f.dest not in ("dry_run",))

SETUP_FLAGS = (
    Flag("check_only", ("--check-only",), "bool", "check and report only (setup never changes anything yet)", section=GEN),
    Flag("json", ("--json",), "bool", "report as JSON", section=GEN),
    Flag("verbose", ("-v", "--verbose"), "count", "more detail", section=GEN),
    Flag("silent", ("-s", "--silent"), "bool", "print nothing", section=GEN),
)

AUDIT_FLAGS = (
    Flag("no_audit", ("--no-audit",), "bool", "do not record this session (nono audit ...)", env="NONO_NO_AUDIT",
         section="Audit"),
    Flag("audit_sign_key", ("--audit-sign-key",), "str",
         "sign the session record with KEY (file:///path, mode 0600, or a keyring key name)", metavar="KEY",
         env="NONO_AUDIT_SIGN_KEY", section="Audit"),
)

RB = "Rollback"
ROLLBACK_FLAGS = (
    Flag("rollback", ("--rollback", "--snapshot"), "bool",
         "snapshot what the program may write (your --allow/--write grants and the working directory) and offer "
         "to put it back afterwards (nono rollback ...)", env="NONO_ROLLBACK", section=RB),
    Flag("no_rollback", ("--no-rollback",), "bool", "no snapshots, even if NONO_ROLLBACK is set", section=RB),
    Flag("no_rollback_prompt", ("--no-rollback-prompt",), "bool", "do not ask keep/roll back at the end", section=RB),
    Flag("rollback_exclude", ("--rollback-exclude",), "list", "leave PATTERN out of snapshots (glob, repeatable)",
         metavar="PATTERN", section=RB),
    Flag("rollback_include", ("--rollback-include",), "list",
         "snapshot DIR_NAME even though it is excluded by default (node_modules, .venv, target, ...)",
         metavar="DIR_NAME", section=RB),
    Flag("rollback_all", ("--rollback-all",), "bool", "no default exclusions (and no .gitignore)", section=RB),
)

SHELL_FLAGS = SANDBOX_FLAGS + (
    Flag("shell", ("--shell",), "str", "shell to start (default: $SHELL, else /bin/sh)", metavar="PATH", section=GEN),
)

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


def _env_bool(name: str, value: str) -> bool:
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise UsageError(f"environment variable {name}={value!r} is not a boolean (use true/false, yes/no, 1/0)")


def _int(flag: str, value: str) -> int:
    try:
        return int(value, 10)
    except ValueError:
        raise UsageError(f"option '{flag}' expects a number, not {value!r}") from None


def parse(command: str, flags: 'tuple[Flag, ...]', argv: list[str], *, trailing: bool) -> tuple[dict[str, object], list[str]]:
    """Parse ``argv`` for ``command``. Returns (options, remaining positionals).

    With ``trailing``, the first positional (or ``--``) ends option parsing:
    everything after it belongs to the program being run.
    """
    by_name = {n: f for f in flags for n in f.names}
    opts: dict[str, object] = {}
    f: 'Flag | None'
    for f in flags:
        opts[f.dest] = [] if f.kind in ("list", "intlist") else (0 if f.kind == "count" else (False if f.kind == "bool" else None))
    given: set[str] = set()
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            rest.extend(argv[i:])
            break
        if not arg.startswith("-") or arg == "-":
            rest.append(arg)
            if trailing:
                rest.extend(argv[i:])
                break
            continue
        if arg in ("-h", "--help"):
            raise HelpRequested(command)
        name, eq, inline = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        if not arg.startswith("--") and len(arg) > 2:  # -vv, -aDIR
            name, inline, eq = arg[:2], arg[2:], "="
            f0 = by_name.get(name)
            if f0 is not None and f0.kind == "count" and set(inline) == {"v"}:
                opts[f0.dest] = int(opts[f0.dest]) + 1 + len(inline)  # type: ignore[call-overload]
                given.add(f0.dest)
                continue
        f = by_name.get(name)
        if f is None:
            raise UsageError(f"unrecognized option '{name}' for 'nono {command}'")
        given.add(f.dest)
        if not f.takes_value:
            if eq:
                raise UsageError(f"option '{name}' takes no value")
            opts[f.dest] = int(opts[f.dest]) + 1 if f.kind == "count" else True  # type: ignore[call-overload]
            continue
        if eq:
            value = inline
        elif i < len(argv):
            value = argv[i]
            i += 1
        else:
            raise UsageError(f"option '{name}' needs a value ({f.metavar or 'VALUE'})")
        _store(opts, f, name, value)
    for f in flags:  # environment equivalents, only where the flag was not given
        if f.env and f.dest not in given and f.env in os.environ:
            value = os.environ[f.env]
            if f.kind == "bool":
                opts[f.dest] = _env_bool(f.env, value)
            elif value:
                _store(opts, f, f.env, value)
    return opts, rest


def _store(opts: dict[str, object], f: 'Flag', name: str, value: str) -> None:
    if f.kind == "list":
        parts = [p for p in value.split(",")] if f.split else [value]
        if any(not p for p in parts):
            raise UsageError(f"option '{name}' got an empty path")
        opts[f.dest].extend(parts)  # type: ignore[attr-defined]
    elif f.kind == "intlist":
        opts[f.dest].append(_int(name, value))  # type: ignore[attr-defined]
    elif f.kind == "int":
        opts[f.dest] = _int(name, value)
    else:
        opts[f.dest] = value


class HelpRequested(Exception):
    def __init__(self, command: str) -> None:
        super().__init__(command)
        self.command = command


def format_flags(flags: 'tuple[Flag, ...]') -> str:
    """The options section of ``--help``: spelling, value, help, aliases and env var."""
    out: list[str] = []
    section = None
    for f in flags:
        if f.section != section:
            section = f.section
            out.append(f"\n{section} options:")
        short = [n for n in f.names if not n.startswith("--")]
        longs = [n for n in f.names if n.startswith("--")]
        spell = ", ".join(short[:1] + longs[:1])
        if f.takes_value:
            spell += f" {f.metavar or 'VALUE'}"
        aliases = f" (alias: {', '.join(longs[1:])})" if len(longs) > 1 else ""
        extra = f" [env: {f.env}]" if f.env else ""
        out.append(f"  {spell:<30} {f.help}{aliases}{extra}")
    return "\n".join(out)


def dispatch(group: str, argv: list[str], table: 'dict[str, tuple[Flag, ...]]', help_text: str,
             handlers: 'dict[str, Callable[[dict[str, object], list[str]], int]]') -> int:
    """Run ``nono GROUP SUB [options] [args]``: help, an unknown SUB (with a suggestion), parsing, the handler."""
    import sys

    if not argv or argv[0] in ("-h", "--help", "help"):
        sys.stdout.write(help_text)
        return 0 if argv else 2
    sub, rest = argv[0], argv[1:]
    if sub not in table:
        import difflib

        close = difflib.get_close_matches(sub, list(table), n=1)
        raise UsageError(f"unknown command 'nono {group} {sub}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
    try:
        opts, pos = parse(f"{group} {sub}", table[sub], rest, trailing=False)
    except HelpRequested:
        sys.stdout.write(f"Usage: nono {group} {sub} ...\n{format_flags(table[sub])}\n\n" + help_text)
        return 0
    return handlers[sub](opts, pos)
