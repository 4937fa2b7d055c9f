"""Applying a planned sandbox to a process: the irreversible part.

Order matters and is fixed here: drop capabilities (root only), set
``no_new_privs``, restrict with Landlock, install the seccomp filter, then hand
the seccomp listener to an unsandboxed mediator. Each step raises
:class:`~nono.errors.KernelError`; the caller turns that into exit 126.
"""

import os

from .. import _jsonlite
from ..errors import KernelError
from ..kernel import landlock as ll
from ..kernel import process, seccomp

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .plan import Plan


class Prepared:
    """A plan turned into kernel objects, ready to apply in a (forked) process.

    Building the Landlock ruleset and the BPF program is done once, in the
    unsandboxed parent; a child only has to call ``restrict_self``.
    """

    def __init__(self, plan: 'Plan', *, mediate_unix: bool = True, ruleset_fd: int = -1) -> None:
        """Build the ruleset from ``plan`` (its kept ``O_PATH`` descriptors), or adopt
        ``ruleset_fd``: a ruleset another process built from the same plan and passed
        over ``SCM_RIGHTS``, so the rules stay bound to the inodes checked there."""
        self.plan = plan
        if ruleset_fd >= 0:
            self.ruleset = ll.Ruleset.adopt(ruleset_fd, handle_tcp=plan.restrict_network)
        else:
            try:
                self.ruleset = plan.build_ruleset()
            finally:
                plan.close_fds()
        self.mediate_unix = mediate_unix
        self.program = seccomp.build_filter(restrict_network=plan.restrict_network, mediate_unix=mediate_unix)
        self.drop_caps = os.geteuid() == 0 or process.holds_capabilities()
        self.status, self.missing = _protections(self.ruleset.abi, plan, mediate_unix, self.drop_caps)

    def close(self) -> None:
        self.ruleset.close()


def _protections(abi: int, plan: 'Plan', mediate: bool, drop_caps: bool) -> tuple[dict[str, object], list[str]]:
    status: dict[str, object] = {"landlock_abi": abi, "filesystem": "enforced", "no_new_privs": "enforced",
                                 "seccomp": "enforced", "tiocsti": "enforced", "io_uring": "denied"}
    missing: list[str] = []
    if abi < 2:
        missing.append("cross-directory rename/link control (Landlock ABI 2, kernel 5.19)")
    if abi < 3:
        missing.append("truncate control (Landlock ABI 3, kernel 6.2)")
    if plan.network == "proxy":
        status["network"] = "filtered (proxy)"
    else:
        ports = plan.connect_ports or plan.bind_ports or plan.loopback_ports
        status["network"] = ("ports only" if ports else "blocked") if plan.restrict_network else "allowed"
    if abi >= 6:
        status["scope_signal"] = status["scope_abstract_unix_socket"] = "enforced"
    else:
        status["scope_signal"] = status["scope_abstract_unix_socket"] = "unsupported"
        missing.append("signal and abstract-unix-socket isolation (Landlock ABI 6, kernel 6.12): "
                       "the program can signal other processes of your user")
    status["unix_connect_mediation"] = "enforced" if mediate else "not_enforced"
    if not mediate:
        missing.append("pathname unix-socket connect mediation (seccomp user notification unavailable)")
    status["capabilities"] = "dropped" if drop_caps else "none held"
    return status, missing


def enter(prep: 'Prepared', *, handoff: tuple[int, int] | None, parent_pid: int = 0, host_pid: int = 0) -> None:
    """Apply ``prep`` to the calling process (must be single-threaded). Irreversible.

    ``handoff`` is ``(report_w, ack_r)``: the listener fd number is written to
    ``report_w`` as ``L<fd>\\n`` and we block until one byte arrives on
    ``ack_r`` (the mediator has taken its copy with ``pidfd_getfd``).
    ``parent_pid``: die with SIGKILL if that process (the supervisor) dies.
    ``host_pid``: we are not the supervisor's child but PID 1 of a PID namespace;
    the line becomes ``L<fd> <host_pid>`` so the supervisor takes the listener from us.
    """
    if parent_pid:
        process.set_parent_death_signal(9)
        if os.getppid() != parent_pid:
            os._exit(126)
    if prep.drop_caps:
        process.drop_all_capabilities()
    process.set_no_new_privs()
    ll.restrict_self(prep.ruleset.fd)
    listener = seccomp.install(prep.program, new_listener=prep.mediate_unix)
    if listener >= 0:
        if handoff is None:
            os.close(listener)
            return
        report_w, ack_r = handoff
        os.write(report_w, b"L%d %d\n" % (listener, host_pid) if host_pid else b"L%d\n" % listener)
        if os.read(ack_r, 1) != b"1":
            os.close(listener)
            raise OSError(5, "mediator did not take the seccomp listener")
        os.close(listener)


def spawn_detached_mediator(prep: 'Prepared') -> tuple[int, int]:
    """Start an unsandboxed mediator process for a process sandboxing itself.

    Used by ``wrap`` and ``Sandbox.apply``, where no supervisor exists. The
    mediator is double-forked (re-parented away from us, so our ``wait()``
    never sees it), closes our stdio, and exits when the listener reports that
    no sandboxed process is left. Returns ``(report_w, ack_r)`` for :func:`enter`.
    """
    report_r, report_w = os.pipe()
    ack_r, ack_w = os.pipe()
    target = os.getpid()
    pid_r, pid_w = os.pipe()
    first = os.fork()
    if first == 0:
        try:
            grandchild = os.fork()
            if grandchild != 0:
                os.write(pid_w, b"%d" % grandchild)
                os._exit(0)
            os.close(pid_w)
            devnull = os.open("/dev/null", os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(devnull, fd)
            # Hold nothing of the caller's open: a pipe kept open here would hide EOF from its reader.
            keep = sorted({0, 1, 2, report_r, ack_w})
            for lo, hi in zip(keep, keep[1:] + [1 << 20]):
                os.closerange(lo + 1, hi)
            os.setsid()
            from .mediator import serve_handoff

            serve_handoff(prep.plan, target, report_r, ack_w)
        finally:
            os._exit(0)
    os.close(pid_w)
    os.waitpid(first, 0)
    mediator_pid = int(os.read(pid_r, 32) or b"0")
    os.close(pid_r)
    os.close(report_r)
    os.close(ack_w)
    if mediator_pid:
        try:
            # Yama (ptrace_scope 1) lets only ancestors ptrace; the mediator is not ours, so name
            # it, and only it, as allowed to take our seccomp listener with pidfd_getfd.
            process.prctl(process.PR_SET_PTRACER, mediator_pid)
        except KernelError:
            pass  # Yama absent: nothing to relax
    return report_w, ack_r


# -- the capability file -------------------------------------------------------
# A JSON description of the sandbox for the program inside: its path is passed as
# ``NONO_CAP_FILE`` and ``nono why --self`` reads it. It holds no secrets, only
# what the sandbox allows, so an agent can explain its own failures.


def describe(plan: 'Plan', status: dict[str, object]) -> dict[str, object]:
    return {
        "version": 1,
        "sandbox": "landlock",
        "landlock_abi": ll.abi_version(),
        "filesystem": [
            {"path": r.path, "access": r.access, "kind": "dir" if r.is_dir else "file", "source": r.source}
            for r in plan.rules.values()
        ],
        "deny": [{"path": p, "source": s} for p, s in plan.denies],
        "decomposed": [{"path": p, "denied_inside": d} for p, d in plan.decomposed],
        "network": {
            "mode": "proxy" if plan.network == "proxy" else ("blocked" if plan.restrict_network else "allowed"),
            "connect_ports": list(plan.connect_ports),
            "loopback_ports": list(plan.loopback_ports),
            "bind_ports": list(plan.bind_ports),
            "proxy_port": plan.proxy_port,
            "proxy_allow": list(plan.proxy_hosts),
        },
        "unix_sockets": [u[0] for u in plan.unix_sockets],
        "executable": plan.executable,
        "protections": status,
    }


def reserve_capfile(plan: 'Plan') -> 'tuple[str, int]':
    """Create the (empty) capability file and let the sandbox read exactly that file.

    It lives in nono's own state directory (``$XDG_STATE_HOME/nono/sessions``),
    which no sandbox can write, so it cannot be forged; the read rule is added
    to ``plan`` here, so call this before building the ruleset. Falls back to
    the temp directory when the state directory cannot be created. Returns
    ``(path, fd)``: write it with :func:`fill_capfile`.
    """
    from .plan import Rule

    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    candidates = [os.path.join(state, "nono", "sessions"), os.environ.get("TMPDIR") or "/tmp", "/tmp"]
    if os.getpid() % 32 == 0:
        _prune(candidates[0])  # now and then: files `wrap` and Sandbox.apply could not delete
    for directory in candidates:
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
            path = os.path.join(directory, f".nono-{os.getpid()}-{os.urandom(6).hex()}.json")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except OSError:
            continue
        real = os.readlink(f"/proc/self/fd/{fd}")
        plan.rules[real] = Rule(real, ll.READ_FILE, False, "read", "nono")
        plan._fds[real] = os.open(real, os.O_PATH | os.O_CLOEXEC)
        return path, fd
    raise OSError(13, "cannot create the capability file in any of " + ", ".join(candidates))


def _prune(directory: str, max_age: float = 7 * 86400) -> None:
    import time

    now = time.time()
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    for entry in entries:
        try:
            if entry.name.startswith(".nono-") and now - entry.stat(follow_symlinks=False).st_mtime > max_age:
                os.unlink(entry.path)
        except OSError:
            pass


def fill_capfile(fd: int, plan: 'Plan', status: dict[str, object]) -> None:
    """Write the description of ``plan`` into the reserved capability file."""
    try:
        os.write(fd, _jsonlite.dumps_compact(describe(plan, status)).encode())
    finally:
        os.close(fd)


def read_capfile(path: str) -> dict[str, object]:
    with open(path, encoding="utf-8") as f:
        return _jsonlite.loads(f.read())  # type: ignore[no-any-return]
