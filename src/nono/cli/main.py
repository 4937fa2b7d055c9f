"""``nono`` entry point: dispatch to a command, map errors to exit codes.

Exit codes (as upstream nono): 0 success or the program's own status; 1 a
nono error (``nono: <message>``); 2 a usage error; 126 the sandbox could not be
applied; 127 the program could not be executed; 128+n the program died of
signal n.
"""

import os
import sys

from .. import __version__
from ..errors import KernelError, NonoError
from . import args as A

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ..policy.model import Policy
    from ..sandbox.apply import Prepared
    from ..sandbox.plan import Plan

USAGE = """\
nono - run a program (an AI agent, a tool) inside a kernel-enforced sandbox.

Usage: nono [-s] COMMAND [OPTIONS] [--] [PROGRAM [ARGS...]]

Commands:
  run        run PROGRAM in the sandbox, supervised by nono (the usual choice)
  shell      start an interactive shell in the sandbox
  wrap       apply the sandbox to nono itself, then exec PROGRAM (no supervisor)
  why        explain whether a path or host is allowed, and which flag would allow it
  profile    list, show, create, check and compare profiles (list|show|init|validate|diff|groups|schema)
  credential store API keys in the system keyring for --credential (set|list|remove)
  rollback   list, show, restore, verify and clean up snapshots taken with 'run --rollback'
  audit      list, show and verify the tamper-evident records of past sessions
  ps         running sessions; stop ID ends one; logs ID [-f] follows its events
  trust      sign and verify instruction files (CLAUDE.md, AGENTS.md, ...) checked before every run
  sign       sign a file (same as 'trust sign')
  manifest   create, sign and verify agent manifests (system prompt, tools, model)
  session    diff | rollback: what the last --rollback session changed, and undo it
  setup      check what this machine can enforce (attacks a throw-away sandbox)

Examples:
  nono run --allow-cwd -- python my_agent.py
  nono run --read ./data --write ./out --block-net -- ./tool.sh
  nono run --profile claude-code --allow-cwd -- claude
  nono why --path ~/.ssh/id_rsa --json
  nono profile show codex
  nono setup --check-only

Everything nono prints goes to stderr; the program's output is untouched.
Run 'nono COMMAND --help' for the options of a command.
"""

_RUN_HELP = """\
Usage: nono {cmd} [OPTIONS] [--] PROGRAM [ARGS...]

{what}

By default the program may read system directories (/usr, /lib, /etc/ssl, ...),
use /tmp, and nothing of your home directory; credentials, keyrings, browser
profiles and shell start-up files stay denied even inside directories you grant.
The network is allowed unless --block-net (or a port flag) restricts it.
--profile NAME starts from a profile instead (nono profile list): an agent's own
state directories and runtime, its working-directory access, its network rules.
{options}

Examples:
  nono {cmd} --allow-cwd -- python my_agent.py
  nono {cmd} --read ./data --write ./out --block-net -- ./tool.sh
  nono {cmd} --allow ~ -- bash        # ~/.ssh, ~/.aws, ... still denied
  nono {cmd} --profile claude-code --allow-cwd -- claude
"""

_WHAT = {
    "run": "Run PROGRAM in the sandbox. nono stays outside as a supervisor: it forwards\n"
           "signals, mediates unix-socket connects and exits with the program's status.",
    "wrap": "Apply the sandbox to this process, then exec PROGRAM in its place (no\n"
            "supervisor process; a small detached helper mediates unix-socket connects).",
    "shell": "Start an interactive shell ($SHELL, else /bin/sh) in the sandbox.",
}

_WHY_HELP = """\
Usage: nono why [--path PATH [--op read|write|readwrite] | --host HOST] [--json] [--self] [POLICY OPTIONS]

Explain what the sandbox would decide, why, and which flag would change it.
The policy is the one these options (and --profile) would give 'nono run';
inside a sandbox, --self asks about the sandbox you are in (NONO_CAP_FILE).
{options}

Examples:
  nono why --path ~/.ssh/id_rsa
  nono why --path ./build --op write --allow-cwd --json
  nono why --self --path /etc/shadow
"""

_SETUP_HELP = """\
Usage: nono setup [--check-only] [--json] [-v]

Report the platform, kernel and Landlock ABI, then start a throw-away sandbox
and attack it once per bypass class (files, symlinks, /proc, signals, ptrace,
TCP, UDP, MPTCP, raw sockets, io_uring, TIOCSTI, unix sockets, ...). Each line
says whether this host closes that class. Exits 1 if any class is open.
{options}
"""


def entry() -> None:
    """Console-script entry: run :func:`main`, then exit without interpreter teardown.

    Tearing down the interpreter (module cleanup, GC) costs several
    milliseconds that nobody needs once the program's status is known.
    """
    code = main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    silent = False
    while argv and argv[0] in ("-s", "--silent", "-V", "--version", "-h", "--help"):
        flag = argv.pop(0)
        if flag in ("-V", "--version"):
            sys.stdout.write(f"nono {__version__}\n")
            return 0
        if flag in ("-h", "--help"):
            sys.stdout.write(USAGE)
            return 0
        silent = True
    if not argv:
        sys.stderr.write(USAGE)
        return 2
    command, rest = argv[0], argv[1:]
    if silent:
        rest = ["--silent"] + rest
    try:
        if command in ("run", "wrap", "shell"):
            return _run_like(command, rest)
        if command == "why":
            from .why import cmd_why

            opts, pos = A.parse("why", A.WHY_FLAGS, rest, trailing=False)
            if pos:
                raise A.UsageError(f"unexpected argument '{pos[0]}' for 'nono why'")
            return cmd_why(opts)
        if command == "setup":
            from .setup import cmd_setup

            opts, pos = A.parse("setup", A.SETUP_FLAGS, rest, trailing=False)
            if pos:
                raise A.UsageError(f"unexpected argument '{pos[0]}' for 'nono setup'")
            return cmd_setup(opts)
        if command in ("rollback", "session"):
            from . import rollback as _rb

            argv_rb = [a for a in rest if a != "--silent"]
            return _rb.cmd_rollback(argv_rb) if command == "rollback" else _rb.cmd_session(argv_rb)
        if command in ("audit", "ps", "stop", "logs"):
            from . import audit as _audit

            handler = {"audit": _audit.cmd_audit, "ps": _audit.cmd_ps, "stop": _audit.cmd_stop, "logs": _audit.cmd_logs}
            return handler[command]([a for a in rest if a != "--silent"])
        if command == "manifest":
            from .manifest import cmd_manifest

            return cmd_manifest([a for a in rest if a != "--silent"])
        if command in ("trust", "sign"):
            from .trust import cmd_sign, cmd_trust

            argv_t = [a for a in rest if a != "--silent"]
            return cmd_trust(argv_t) if command == "trust" else cmd_sign(argv_t)
        if command == "credential":
            from .credential import cmd_credential

            return cmd_credential([a for a in rest if a != "--silent"])
        if command in ("profile", "profiles", "policy"):
            from .profile import cmd_profile

            return cmd_profile([a for a in rest if a != "--silent"] if command != "profiles" or rest else ["list"],
                               alias=command)
        raise A.UsageError(f"unknown command '{command}'")
    except A.HelpRequested as h:
        sys.stdout.write(_help(h.command))
        return 0
    except A.UsageError as exc:
        sys.stderr.write(f"nono: error: {exc.message}\n  run 'nono {command if command in ('run', 'wrap', 'shell', 'why', 'setup', 'profile') else ''} --help' for usage\n".replace("nono  --help", "nono --help"))
        return 2
    except KernelError as exc:
        sys.stderr.write(f"nono: Sandbox initialization failed: {exc.diagnostics()}\n")
        return 126
    except NonoError as exc:
        sys.stderr.write(f"nono: {exc.diagnostics()}\n")
        return 1
    except KeyboardInterrupt:
        return 130


def _help(command: str) -> str:
    if command in _WHAT:
        from .isolation_flags import ISOLATION_FLAGS

        flags = (A.SHELL_FLAGS if command == "shell" else A.SANDBOX_FLAGS) + (
            ISOLATION_FLAGS + A.ROLLBACK_FLAGS + A.AUDIT_FLAGS if command != "wrap" else ())
        return _RUN_HELP.format(cmd=command, what=_WHAT[command], options=A.format_flags(flags))
    if command == "why":
        return _WHY_HELP.format(options=A.format_flags(A.WHY_FLAGS))
    if command == "setup":
        return _SETUP_HELP.format(options=A.format_flags(A.SETUP_FLAGS))
    return USAGE


def policy_from_options(opts: dict[str, object], out: 'Out', *, ask_cwd: bool) -> 'Policy':
    """Build the :class:`Policy` the sandbox flags describe."""
    from ..policy.model import READ, READWRITE, WRITE, Grant, Policy
    from ..policy.paths import expand

    workdir = expand(str(opts["workdir"])) if opts.get("workdir") else os.getcwd()
    profile_name = opts.get("profile")
    extends = list(opts.get("extends") or ())  # type: ignore[call-overload]
    if extends and not profile_name:
        raise A.UsageError("--extends needs --profile (the profile the bases are put under)")
    cwd_access = READWRITE
    if profile_name or extends:
        from ..policy.profiles import resolve

        resolved = resolve(str(profile_name), extends)
        policy = resolved.to_policy(workdir, allow_unfiltered_network=bool(opts.get("allow_net")))
        for old, new in ((o, n) for _label, o, n in resolved.legacy):
            out.warn(f"profile {resolved.label}: '{old}' is deprecated" + (f", use '{new}'" if new else ""))
        for note in resolved.not_enforced():
            out.warn(note)
        _profile_limits(opts, resolved.section("resources"), resolved.data.get("isolate"))
        if resolved.workdir_access != "none":
            cwd_access = resolved.workdir_access
    else:
        policy = Policy()
    for flag, dest in (("--network-profile", "network_profile"), ("--upstream-proxy", "upstream_proxy")):
        if opts.get(dest) == "":
            raise A.UsageError(f"{flag} got an empty value (an unset shell variable?)")
    proxy_flags = [f for f, d in (("--network-profile", "network_profile"), ("--allow-domain", "allow_domain"),
                                  ("--upstream-proxy", "upstream_proxy"), ("--credential", "credential"),
                                  ("--allow-endpoint", "allow_endpoint")) if opts.get(d)]
    if opts.get("block_net") and proxy_flags:
        raise A.UsageError(f"--block-net and {', '.join(proxy_flags)} are contradictory: block everything, or filter")
    if opts.get("allow_net"):
        if opts.get("block_net") or proxy_flags or opts.get("allow_connect_port") or opts.get("listen_port") \
                or opts.get("open_port"):
            raise A.UsageError("--allow-net contradicts --block-net, the proxy flags and the port flags")
        if policy.network == "block":
            raise A.UsageError(f"--allow-net contradicts the profile {profile_name}, which blocks the network")
        policy = policy.allow_all_network()
    if opts.get("network_profile") or opts.get("allow_domain"):
        policy = policy.allow_network(list(opts.get("allow_domain") or ()),  # type: ignore[call-overload]
                                      profile=str(opts["network_profile"]) if opts.get("network_profile") else None)
    if opts.get("credential") or opts.get("env_credential") or opts.get("allow_endpoint"):
        if opts.get("allow_endpoint") and not (opts.get("credential") or policy.credentials):
            raise A.UsageError("--allow-endpoint needs a matching --credential SERVICE")
        policy = policy.use_credentials(*list(opts.get("credential") or ()),  # type: ignore[call-overload]
                                        endpoints=list(opts.get("allow_endpoint") or ()),  # type: ignore[call-overload]
                                        env=list(opts.get("env_credential") or ()))  # type: ignore[call-overload]
    if opts.get("upstream_proxy"):
        if policy.network != "proxy":
            raise A.UsageError("--upstream-proxy needs a filtered network (--network-profile or --allow-domain)")
        policy = policy.use_upstream_proxy(str(opts["upstream_proxy"]))
    if opts.get("upstream_bypass"):
        if not policy.upstream_proxy:
            raise A.UsageError("--upstream-bypass needs --upstream-proxy")
        policy = policy.use_upstream_proxy(str(policy.upstream_proxy), list(opts["upstream_bypass"]))  # type: ignore[call-overload]
    if opts.get("deny_private"):
        if policy.network != "proxy":
            raise A.UsageError("--deny-private-networks needs a filtered network (--network-profile or --allow-domain)")
        policy = policy.deny_private_networks()
    if opts.get("proxy_port") is not None:
        if policy.network != "proxy":
            raise A.UsageError("--proxy-port needs a filtered network (--network-profile or --allow-domain)")
        policy = policy.with_proxy_port(int(opts["proxy_port"]))  # type: ignore[call-overload]
    for dest, access, kind in (("allow", READWRITE, "dir"), ("read", READ, "dir"), ("write", WRITE, "dir"),
                               ("allow_file", READWRITE, "file"), ("read_file", READ, "file"),
                               ("write_file", WRITE, "file")):
        for p in opts.get(dest) or ():  # type: ignore[attr-defined]
            policy = policy.with_grant(Grant(expand(p), access, kind, "user"))
    if opts.get("allow_cwd"):
        policy = policy.with_grant(Grant(workdir, cwd_access, "dir", "cwd"))
    elif ask_cwd and not any(g.path == workdir for g in policy.grants):
        if _interactive() and not opts.get("silent"):
            what = {READ: "read", WRITE: "write"}.get(cwd_access, "read+write")
            sys.stderr.write(f"nono: grant {what} access to the working directory {workdir}? [y/N] ")
            sys.stderr.flush()
            answer = sys.stdin.readline().strip().lower()
            if answer in ("y", "yes"):
                policy = policy.with_grant(Grant(workdir, cwd_access, "dir", "cwd"))
        else:
            out.err("Skipping CWD prompt (non-interactive). Use --allow-cwd to include working directory.")
    if opts.get("allow_unix_socket"):
        policy = policy.allow_unix_socket(*opts["allow_unix_socket"])  # type: ignore[misc]
    if opts.get("allow_pty"):
        policy = policy.allow_pty()
    if opts.get("bypass_protection"):
        policy = policy.bypass_protection(*opts["bypass_protection"])  # type: ignore[misc]
    if opts.get("block_net"):
        policy = policy.block_network()
    for p in opts.get("allow_connect_port") or ():  # type: ignore[attr-defined]
        policy = policy.allow_connect_port(p)
    for p in opts.get("listen_port") or ():  # type: ignore[attr-defined]
        policy = policy.allow_bind_port(p)
    for p in opts.get("open_port") or ():  # type: ignore[attr-defined]
        policy = policy.open_port(p)
    return policy


def _profile_limits(opts: 'dict[str, object]', resources: 'dict[str, object]', isolate: object) -> None:
    """A profile's ``resources`` and ``isolate`` fill the matching flags the command line left unset."""
    for key in ("memory", "cpus", "max_processes", "timeout"):
        value = resources.get(key)
        if value is not None and not opts.get(key):
            opts[key] = str(value) if key != "max_processes" else value
    if isinstance(isolate, list) and isolate and not opts.get("isolate"):
        opts["isolate"] = [str(i) for i in isolate]


class Out:
    """Where nono's own messages go (stderr); ``--silent`` turns all of it off."""

    def __init__(self, *, silent: bool = False, verbose: int = 0) -> None:
        self.silent = silent
        self.verbose = verbose

    def err(self, text: str) -> None:
        if not self.silent:
            sys.stderr.write(text + "\n")

    def warn(self, text: str) -> None:
        self.err(f"warning: {text}")


def _interactive() -> bool:
    try:
        return os.isatty(0) and os.isatty(2)
    except OSError:
        return False


def _run_like(command: str, rest: list[str]) -> int:
    from ..policy.model import READ, READWRITE, Grant
    from ..sandbox.plan import build_plan, interpreter_paths, which
    from .isolation_flags import ISOLATION_FLAGS, wanted

    flags = (A.SHELL_FLAGS if command == "shell" else A.SANDBOX_FLAGS) + ISOLATION_FLAGS + A.ROLLBACK_FLAGS + A.AUDIT_FLAGS
    opts, program = A.parse(command, flags, rest, trailing=True)
    if opts.get("no_audit") and opts.get("audit_sign_key"):
        raise A.UsageError("--no-audit and --audit-sign-key are contradictory")
    if command == "wrap" and opts.get("rollback") and not opts.get("no_rollback"):
        raise A.UsageError("--rollback needs 'nono run' (the supervisor takes the snapshots)")
    if command == "wrap" and wanted(opts):
        raise A.UsageError("--memory, --cpus, --max-processes, --timeout and --isolate need 'nono run' (a supervisor)")
    out = Out(silent=bool(opts["silent"]), verbose=int(opts["verbose"]))  # type: ignore[call-overload]
    if out.silent:
        def capabilities(_out: 'Out', _plan: 'Plan', _prep: 'Prepared | None', _version: str, /) -> None:
            return None
    else:
        from .output import capabilities
    if command == "shell":
        if program:
            raise A.UsageError(f"'nono shell' takes no program (got '{program[0]}'); use 'nono run'")
        program = [str(opts.get("shell") or os.environ.get("SHELL") or "/bin/sh")]
    if not program:
        raise A.UsageError(f"'nono {command}' needs a program to run, e.g. nono {command} --allow-cwd -- python agent.py")
    exe = which(program[0])
    if exe is None:
        sys.stderr.write(f"nono: Command execution failed: {program[0]}: command not found\n")
        return 127
    policy = policy_from_options(opts, out, ask_cwd=True)
    if command == "wrap" and wanted(opts):
        raise A.UsageError("the profile sets resource limits or namespaces, which need 'nono run' (a supervisor)")
    # Where nono and its interpreter load code from: readable inside (so `nono why
    # --self` works there), and never writable (see interpreter_paths).
    code_paths = interpreter_paths()
    for p in code_paths:
        policy = policy.with_grant(Grant(p, READ, "any", "nono"))
    pty = None
    if command != "wrap" and not opts["dry_run"] and (command == "shell" or (os.isatty(0) and os.isatty(1))):
        from ..sandbox.pty_relay import PtyRelay

        pty = PtyRelay.create()
        policy = policy.with_grant(Grant(os.ttyname(pty.slave), READWRITE, "file", "terminal"))
    if not opts["dry_run"]:
        from ..sandbox.plan import create_state_dirs

        for d in create_state_dirs(policy, str(opts["workdir"]) if opts.get("workdir") else None):
            out.err(f"[nono] created {d} (the agent's state directory: it must exist to be granted)")
    from .. import trust as _trust  # nono.trust: a no-op costing two lstat calls without a trust policy

    trust_dir = expand_workdir(opts)
    pre = _trust.preflight(trust_dir, override=bool(opts.get("trust_override")), out=out.warn)
    reasons = {p: "instruction files under trust" for p in pre.protected_files}
    manifest_check = None
    if opts.get("manifest"):
        from ..trust.manifest import preflight_manifest

        manifest_check = preflight_manifest(os.path.abspath(str(opts["manifest"])), policy_dir=trust_dir,
                                            override=bool(opts.get("trust_override")), out=out.warn)
        reasons.update({os.path.realpath(p): "the signed agent manifest" for p in manifest_check.protected_files})
    if opts.get("verify_signature"):
        from ..trust.verify import verify_file_signature

        fcheck = verify_file_signature(os.path.abspath(str(opts["verify_signature"])), policy_dir=trust_dir,
                                       override=bool(opts.get("trust_override")), out=out.warn)
        reasons.update({os.path.realpath(p): "a signature-checked file" for p in fcheck.protected_files})
    opts["_manifest_check"] = manifest_check
    plan = build_plan(policy, argv0=exe, cwd=str(opts["workdir"]) if opts.get("workdir") else None,
                      readonly=list(code_paths) + list(reasons), readonly_reason=reasons)
    skipped = [p for p, src, why in plan.skipped if src in ("user", "cwd") and why == "does not exist"]
    for note in dict.fromkeys(plan.notes):
        out.warn(note)
    iso = None  # checked before the proxy starts, so a refusal leaves nothing running
    if wanted(opts):  # no import unless an isolation or limit flag was given
        from ..sandbox import isolation

        try:
            iso = isolation.from_options(opts)
        except ValueError as exc:
            raise A.UsageError(str(exc)) from None
        if iso is not None:
            iso.check(plan)
    proxy = None
    if plan.network == "proxy":
        if command == "wrap":
            raise A.UsageError("a filtered network (--network-profile, --allow-domain, --credential, or a profile's "
                               "network rules) needs nono's proxy and supervisor: use 'nono run' instead of 'nono wrap'")
        from ..sandbox import network as _net

        if opts["dry_run"]:
            _net.settings(policy)  # validate, start nothing
            creds = _net.credential_plan(policy)
        else:
            proxy = _net.start(policy)
            plan.proxy_port = proxy.port
            proxy.grant(plan)  # read access to the TLS-interception CA bundle, if any
            creds = proxy.credentials
        if creds is not None:
            plan.proxy_hosts += [h for h in creds.allow_hosts if h not in plan.proxy_hosts]
            for line in creds.describe():
                out.err(f"[nono] credential {line}")
    try:
        return _launch(command, opts, out, capabilities, plan, policy, exe, program, skipped, pty, proxy, iso)
    finally:
        if proxy is not None:
            _report_network(out, proxy.stop())


def expand_workdir(opts: 'dict[str, object]') -> str:
    from ..policy.paths import expand

    return expand(str(opts["workdir"])) if opts.get("workdir") else os.getcwd()


def _report_network(out: 'Out', events: 'list[dict[str, object]]') -> None:
    from ..sandbox.network import summary

    lines = summary(events)
    for line in lines[:20]:
        out.err(f"[nono] blocked network: {line}")
    if len(lines) > 20:
        out.err(f"[nono] blocked network: ... and {len(lines) - 20} more destinations")
    if lines:
        out.err("[nono] to allow a host: --allow-domain HOST (see: nono why --host HOST)")


def _launch(command: str, opts: 'dict[str, object]', out: 'Out', capabilities: 'Any', plan: 'Plan', policy: 'Policy',
            exe: str, program: list[str], skipped: list[str], pty: 'Any', proxy: 'Any', iso: 'Any' = None) -> int:
    from ..policy.groups import sanitize_env
    from ..sandbox.apply import Prepared, fill_capfile, reserve_capfile

    if opts["dry_run"]:
        capabilities(out, plan, None, _v())
        if skipped:
            out.warn("some requested sandbox grants were skipped because the path does not exist:\n  " + "\n  ".join(skipped))
        out.err("dry-run sandbox would be applied with above capabilities")
        out.err("$ " + " ".join(program))
        return 0
    cap_path, cap_fd = reserve_capfile(plan)
    prep = Prepared(plan)
    if iso is not None:
        prep.status.update(iso.status())
        for line in iso.notes():
            out.err(line)
    capabilities(out, plan, prep, _v())
    if skipped:
        out.warn("some requested sandbox grants were skipped because the path does not exist:\n  " + "\n  ".join(skipped))
    env = sanitize_env(os.environ, policy.env_set, policy.env_allow, policy.env_deny)
    fill_capfile(cap_fd, plan, prep.status)
    env["NONO_CAP_FILE"] = cap_path
    if proxy is not None:
        env = proxy.env(env)
    elif policy.env_credentials:  # --env-credential without a proxy: the real secret goes in the environment
        from ..sandbox.network import credential_plan

        creds = credential_plan(policy)
        if creds is not None:
            env = {k: v for k, v in env.items() if k not in creds.unset_env}
            env.update(creds.child_env(0))
    if command == "wrap":
        return _wrap(prep, exe, program, env)
    from ..sandbox import supervisor

    rollback = _begin_rollback(opts, out, plan, program) if opts.get("rollback") and not opts.get("no_rollback") else None
    record = None if opts.get("no_audit") else _begin_audit(opts, plan, prep, program,
                                                             rollback.session_id if rollback is not None and rollback.enabled else None)
    if record is not None and opts.get("_manifest_check") is not None:
        record.event("agent_manifest", **opts["_manifest_check"].audit_fields())  # type: ignore[attr-defined]
    net_events: list[dict[str, object]] = []
    code = 1
    try:
        try:
            code = supervisor.run(prep, exe, program, env, pty=pty,
                                  on_exit=None if proxy is None else (lambda: net_events.extend(proxy.stop())),
                                  isolation=iso)
        except supervisor.ChildFailure as exc:
            if exc.exit_code == 126:
                sys.stderr.write(f"nono: failed to apply sandbox in supervised child: {exc.message}\n")
            else:
                sys.stderr.write(f"nono: Command execution failed: {exc.message}\n")
            code = exc.exit_code
            return code
    finally:
        if pty is not None:
            pty.close()
        summary = _finish_rollback(opts, out, rollback, code) if rollback is not None else None
        if record is not None:
            rb = None if summary is None else {"session_id": summary.session_id, "created": len(summary.created),
                                               "modified": len(summary.modified), "deleted": len(summary.deleted)}
            result = record.finish(code, network_events=net_events, rollback=rb,
                                   status="stopped" if code in (130, 143) else None)
            for w in result.get("warnings") or ():
                out.warn(f"audit: {w}")
        prep.close()
        try:
            os.unlink(cap_path)
        except OSError:
            pass
    return code


def _begin_rollback(opts: 'dict[str, object]', out: 'Out', plan: 'Plan', program: list[str]) -> 'Any':
    """Baseline snapshot of what the program may write (grants you gave: flags, profile, cwd)."""
    from ..rollback import session
    from ..sandbox.plan import _is_user

    tracked = [r.path for r in plan.rules.values() if r.access != "read" and _is_user(r.source)]
    return session.begin(tracked, command=program, exclude=list(opts.get("rollback_exclude") or ()),  # type: ignore[call-overload]
                         include=list(opts.get("rollback_include") or ()),  # type: ignore[call-overload]
                         all_files=bool(opts.get("rollback_all")), out=out.err)


def _begin_audit(opts: 'dict[str, object]', plan: 'Plan', prep: 'Prepared', program: list[str],
                 session_id: 'str | None') -> 'Any':
    """Start the session's audit record (a bad --audit-sign-key fails here, before the program starts)."""
    from ..audit import session as audit_session

    grants = [{"path": r.path, "access": r.access, "source": r.source} for r in plan.rules.values()]
    network = {"mode": plan.network, "hosts": [h if isinstance(h, str) else str(h) for h in plan.proxy_hosts],
               "connect_ports": list(plan.connect_ports), "bind_ports": list(plan.bind_ports)}
    digest = audit_session.digest_of({"rules": grants, "denies": [list(d) for d in plan.denies], "network": network})
    return audit_session.begin(command=program, cwd=os.getcwd(), profile=str(opts["profile"]) if opts.get("profile") else None,
                               policy_digest=digest, grants=grants,
                               protections={"status": prep.status, "missing": list(prep.missing)},
                               network=network, sign_key=str(opts["audit_sign_key"]) if opts.get("audit_sign_key") else None,
                               session_id=session_id,
                               # Not probed on every run (~2 ms): nono does not read the kernel audit log yet.
                               denials="not collected (nono does not read the kernel audit log yet; see docs/audit.md)")


def _finish_rollback(opts: 'dict[str, object]', out: 'Out', rollback: 'Any', code: int) -> 'Any':
    """Final snapshot and change summary; on a terminal, ask keep / roll back. Returns the summary (or None)."""
    summary = rollback.finish(code)
    if not rollback.enabled:
        return None
    out.err(summary.text())
    if not summary or opts.get("no_rollback_prompt") or opts.get("silent") or not _interactive():
        if summary:
            out.err(f"[nono] to undo: nono rollback restore {summary.session_id}   (diff: nono session diff)")
        return summary
    sys.stderr.write("[nono] keep these changes? [K]eep / [r]oll back / [d]iff: ")
    sys.stderr.flush()
    answer = sys.stdin.readline().strip().lower()
    if answer in ("d", "diff"):
        sys.stderr.write(summary.unified() + "\n[nono] keep these changes? [K]eep / [r]oll back: ")
        sys.stderr.flush()
        answer = sys.stdin.readline().strip().lower()
    if answer in ("r", "roll back", "rollback"):
        from ..rollback.restore import restore

        result = restore(summary.session_id, 0, out=out.err)
        out.err(result.text())
    else:
        out.err(f"[nono] kept; undo later with: nono rollback restore {summary.session_id}")
    return summary


def _wrap(prep: 'Prepared', exe: str, program: list[str], env: dict[str, str]) -> int:
    from ..sandbox import apply as _apply

    handoff = _apply.spawn_detached_mediator(prep) if prep.mediate_unix else None
    try:
        os.setsid()
    except OSError:
        pass  # already a session leader (no new session possible): TIOCSTI stays denied by seccomp
    try:
        _apply.enter(prep, handoff=handoff)
    except (KernelError, OSError) as exc:
        msg = exc.diagnostics() if isinstance(exc, KernelError) else str(exc)
        sys.stderr.write(f"nono: failed to apply sandbox: {msg}\n")
        return 126
    for fd in handoff or ():
        os.close(fd)
    sys.stdout.flush()
    sys.stderr.flush()
    os.closerange(3, 1 << 20)  # like `run`: nothing nono inherited reaches the program
    try:
        os.execve(exe, program, env)
    except OSError as exc:
        sys.stderr.write(f"nono: Command execution failed: {exe}: {exc.strerror}\n")
        return 127
    return 127


def _v() -> str:
    return __version__
