"""Namespaces around the sandbox (``--isolate``), plus the limits and timeout of :mod:`.limits`.

:class:`Isolation` is the one plain object the CLI hands to :func:`nono.sandbox.supervisor.run`
(``isolation=``); see the top of :mod:`nono.sandbox.limits` for the wiring.

Namespaces are created by the supervised child *before* Landlock and seccomp, which
forbid both afterwards. An unprivileged user gets a user namespace first, with an identity
mapping (the program keeps its uid and gid); root needs none. All capabilities the
namespace gives are dropped before Landlock, so the program has none, inside or out.

* ``uts``, ``ipc``: new namespaces, nothing else (the hostname starts as the host's; the
  program cannot change it, having no capabilities).
* ``net``: a namespace with only ``lo``, brought up. Refused with nono's filtering proxy,
  which listens on the host's loopback and would be unreachable (no bridge is built).
* ``mount``: a private mount namespace (mounts made inside never propagate out).
* ``pid`` (implies ``mount``): the child unshares the PID namespace and forks; that
  grandchild is PID 1. It mounts a fresh ``/proc`` (so ``/proc`` shows only the sandbox's
  processes, even where the policy grants ``/proc``), re-grants the policy's ``/proc``
  rules on the new mount, applies Landlock and seccomp, hands the seccomp listener to the
  supervisor (naming its own host pid, since the supervisor's pidfd is of the child), then
  forks the program and stays as its init: it reaps everything, forwards signals, and
  reports the program's wait status. The child (outside the PID namespace) relays signals
  to it and ends with exactly that status, so the supervisor's exit codes do not change.
  When the program exits, init exits and the kernel kills whatever is left inside.

Process tree with ``pid``::

    nono (supervisor) -> child (relay; new user/... namespaces) -> init (PID 1, sandboxed) -> program (PID 2)
"""

import os

from ..errors import KernelError
from ..kernel import process
from .limits import IsolationError, Limits, format_size
from .limits import from_options as _limits_from_options

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal as _signal
    from collections.abc import Callable, Iterable, Mapping
    from typing import NoReturn

    from .apply import Prepared
    from .plan import Plan
else:
    import _signal

NAMESPACES = ("pid", "ipc", "uts", "net", "mount")
_FLAGS = {"pid": process.CLONE_NEWPID, "ipc": process.CLONE_NEWIPC, "uts": process.CLONE_NEWUTS,
          "net": process.CLONE_NEWNET, "mount": process.CLONE_NEWNS}
_RELAYED = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGWINCH", "SIGCONT", "SIGTSTP")
_CAP_SYS_ADMIN = 21


def parse_isolate(values: 'Iterable[str]') -> frozenset[str]:
    """``["pid,ipc", "uts"]`` or ``["all"]`` -> the namespace names. Raises :class:`ValueError`."""
    out: set[str] = set()
    for value in values:
        for part in str(value).split(","):
            name = part.strip().lower()
            if name == "all":
                out.update(NAMESPACES)
            elif name in ("mnt", "ns"):
                out.add("mount")
            elif name in NAMESPACES:
                out.add(name)
            elif name:
                raise ValueError(f"--isolate: unknown namespace {part!r} (choose from {', '.join(NAMESPACES)} or all)")
    if "pid" in out:
        out.add("mount")  # a fresh /proc needs a mount namespace of its own
    return frozenset(out)


def userns_status() -> tuple[bool, str]:
    """Can this user create user namespaces? (a quick reading of the sysctls, not a trial)."""
    try:
        with open("/proc/sys/user/max_user_namespaces", "rb") as f:
            if int(f.read() or b"0") == 0:
                return False, "user.max_user_namespaces is 0"
    except (OSError, ValueError):
        return False, "no /proc/sys/user/max_user_namespaces (a kernel without user namespaces?)"
    for path, bad, why in (("/proc/sys/kernel/unprivileged_userns_clone", b"0", "kernel.unprivileged_userns_clone is 0"),
                           ("/proc/sys/kernel/apparmor_restrict_unprivileged_userns", b"1",
                            "AppArmor restricts unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns=1)")):
        try:
            with open(path, "rb") as f:
                if f.read().strip() == bad:
                    return False, why
        except OSError:
            pass
    return True, "unprivileged user namespaces enabled"


def _needs_userns() -> bool:
    """Root with CAP_SYS_ADMIN creates namespaces directly; anyone else needs a user namespace."""
    return os.geteuid() != 0 or not (process.capability_sets().get(b"CapEff", 0) >> _CAP_SYS_ADMIN) & 1


class Isolation:
    """Namespaces, limits and a timeout for one supervised run (plain data plus the steps).

    Built by :func:`from_options`; :meth:`check` validates it against the plan and picks
    the mechanisms; the supervisor calls the rest.
    """

    def __init__(self, namespaces: 'Iterable[str]' = (), limits: 'Limits | None' = None, *, silent: bool = False) -> None:
        self.namespaces = frozenset(namespaces)
        self.limits = limits
        self.silent = silent
        self.userns = False
        self._status_r = -1

    @property
    def timeout(self) -> float | None:
        return self.limits.timeout if self.limits is not None else None

    @property
    def relays(self) -> bool:
        """With a PID namespace the supervisor's child is a relay: stop it with SIGTSTP, not SIGSTOP."""
        return "pid" in self.namespaces

    def check(self, plan: 'Plan | None' = None) -> None:
        """Refuse what cannot work here; choose the limit mechanisms. Raises :class:`IsolationError`."""
        if "net" in self.namespaces and plan is not None and plan.network == "proxy":
            raise IsolationError(
                "--isolate net cannot be combined with a filtered network (--network-profile, --allow-domain or a "
                "profile's network rules): nono's proxy listens on the host's loopback, which a network namespace "
                "cuts off",
                hint="drop 'net' from --isolate (the proxy already filters), or use --isolate net with --block-net")
        if self.namespaces:
            self.userns = _needs_userns()
            if self.userns:
                ok, why = userns_status()
                if not ok:
                    raise IsolationError(_unavailable(why), hint=_HINT)
        if self.limits is not None:
            self.limits.resolve(userns=self.userns)

    def status(self) -> dict[str, object]:
        """For the capability file / summary: ``isolation`` and ``limits`` entries."""
        out: dict[str, object] = {}
        if self.namespaces:
            out["isolation"] = {"namespaces": sorted(self.namespaces),
                                "user_namespace": "created" if self.userns else "not needed (root)"}
        if self.limits is not None:
            out["limits"] = self.limits.status()
        return out

    def notes(self) -> list[str]:
        """One stderr line per mechanism: what enforces which isolation or limit."""
        lines = []
        if self.namespaces:
            how = "in a user namespace" if self.userns else "as root, no user namespace"
            lines.append(f"[nono] isolate: {', '.join(sorted(self.namespaces))} namespaces ({how})")
        if self.limits is not None:
            lines.extend(self.limits.notes())
        return lines

    def say(self, text: str) -> None:
        if not self.silent:
            os.write(2, (text + "\n").encode(errors="replace"))

    # -- supervisor side -------------------------------------------------------
    def before_fork(self) -> None:
        if self.limits is not None:
            self.limits.before_fork()

    def kill(self, pid: int) -> None:
        """End the whole session now (timeout)."""
        if self.limits is not None and self.limits.cgroup is not None:
            self.limits.cgroup.kill()
        try:
            os.kill(pid, 9)  # with a PID namespace: its init dies with this relay, and the kernel ends the rest
        except ProcessLookupError:
            pass

    @property
    def wants_rusage(self) -> bool:
        return self.limits is not None and self.limits.memory is not None and self.limits.cgroup is None

    def outcome(self, status: int, code: int, maxrss_kib: int) -> int:
        """The exit code after the program ended with ``status``/``code``; reports memory exhaustion (137)."""
        lim = self.limits
        if lim is None:
            return code
        if lim.memory_exceeded(status, maxrss_kib):
            how = lim.mechanism.get("memory", "").split(" (")[0]
            self.say(f"[nono] memory limit exceeded: {format_size(lim.memory or 0)} ({how})")
            return 137
        if lim.cgroup is not None and lim.cgroup.pids_refused():
            self.say(f"[nono] process limit reached: {lim.cgroup.pids_refused()} fork(s) refused "
                     f"(--max-processes {lim.max_processes})")
        return code

    def finish(self) -> None:
        if self.limits is not None:
            self.limits.finish()

    # -- child side --------------------------------------------------------------
    def child_enter(self, prep: 'Prepared', parent: int) -> '_Init | None':
        """In the supervised child, before Landlock: join the cgroup, create the namespaces.

        Returns None to go on as usual. With a PID namespace this process becomes the relay
        and never returns; its child (PID 1 of the new namespace) returns an :class:`_Init`.
        Raises on failure (the caller reports it and exits 126).
        """
        if self.limits is not None:
            self.limits.join()
        if not self.namespaces:
            return None
        uid, gid = os.getuid(), os.getgid()
        flags = 0
        for name in self.namespaces:
            flags |= _FLAGS[name]
        try:
            process.unshare(flags | (process.CLONE_NEWUSER if self.userns else 0))
        except KernelError as exc:
            if self.userns or exc.errno != 1:
                raise IsolationError(_unavailable(_errno_reason(exc.errno)), hint=_HINT) from exc
            self.userns = True  # root without CAP_SYS_ADMIN: try a user namespace
            try:
                process.unshare(flags | process.CLONE_NEWUSER)
            except KernelError as exc2:
                raise IsolationError(_unavailable(_errno_reason(exc2.errno)), hint=_HINT) from exc2
        if self.userns:
            _write_maps(uid, gid)
        # The new credentials cleared the parent-death signal; we die with the supervisor again.
        process.set_parent_death_signal(9)
        if os.getppid() != parent:
            os._exit(126)
        prep.drop_caps = True  # the namespace's capabilities: the program gets none of them
        if "net" in self.namespaces:
            _loopback_up()
        if "mount" in self.namespaces:
            process.mount(None, b"/", None, process.MS_REC | process.MS_PRIVATE)
        if "pid" not in self.namespaces:
            return None
        status_r, status_w = os.pipe()
        init = os.fork()
        if init == 0:
            os.close(status_r)
            return _Init.start(prep, status_w)
        _relay(init, status_r)  # never returns

    def before_exec(self) -> None:
        """In the program, just before ``execve``: the rlimits."""
        if self.limits is not None:
            self.limits.apply_rlimits()


_HINT = "run without --isolate: Landlock and seccomp still apply; resource limits work without namespaces"


def _unavailable(why: str) -> str:
    return f"--isolate needs user namespaces, which this system does not allow here: {why}"


def _errno_reason(errno: int) -> str:
    return {1: "permission denied (an AppArmor/SELinux policy or a container's seccomp profile)",
            28: "the user-namespace limit is reached (user.max_user_namespaces)",
            22: "not supported by this kernel"}.get(errno, os.strerror(errno) if errno else "unshare failed")


def _write_maps(uid: int, gid: int) -> None:
    """Map our uid and gid to themselves in the new user namespace (the program keeps its ids)."""
    try:
        for name, data in (("setgroups", b"deny"), ("gid_map", b"%d %d 1\n" % (gid, gid)),
                           ("uid_map", b"%d %d 1\n" % (uid, uid))):
            fd = os.open(f"/proc/self/{name}", os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
    except OSError as exc:
        raise IsolationError(_unavailable(f"writing the id maps failed: {exc.strerror}"), hint=_HINT) from exc


def _loopback_up() -> None:
    """Bring ``lo`` up in the new network namespace (it starts down)."""
    from .. import _ffi
    from ..kernel.seccomp import current_arch

    nr = current_arch().nr
    sock = _ffi.syscall(nr["socket"], 2, 2 | 0o2000000, 0)  # AF_INET, SOCK_DGRAM | SOCK_CLOEXEC
    try:
        req = _ffi.Buffer(b"lo".ljust(16, b"\0") + bytes(24))
        _ffi.syscall(nr["ioctl"], sock, 0x8913, req.address)  # SIOCGIFFLAGS
        raw = bytearray(req.raw())
        flags = int.from_bytes(raw[16:18], "little") | 0x1 | 0x40  # IFF_UP | IFF_RUNNING
        raw[16:18] = flags.to_bytes(2, "little")
        _ffi.syscall(nr["ioctl"], sock, 0x8914, bytes(raw))  # SIOCSIFFLAGS
    except OSError as exc:
        raise IsolationError(f"--isolate net: cannot bring up the loopback interface: {exc.strerror}") from exc
    finally:
        os.close(sock)


def _exit_like(status: int) -> None:
    """End this process with the same wait status as the one given (a signal is re-raised)."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            process.set_dumpable(False)  # no core file of ours for the program's crash
            _signal.signal(sig, _signal.SIG_DFL)
            _signal.pthread_sigmask(_signal.SIG_UNBLOCK, [sig])
            os.kill(os.getpid(), sig)
        except (OSError, ValueError, KernelError):
            pass
        os._exit(128 + sig)
    os._exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 1)


def _forwarder(target: 'list[int]', stop_sig: int) -> 'Callable[[int, object], None]':
    def forward(sig: int, _frame: object) -> None:
        if target[0] > 0:
            try:
                os.kill(target[0], stop_sig if sig == _signal.SIGTSTP else sig)
            except ProcessLookupError:
                pass
    return forward


def _relay(init: int, status_r: int) -> 'NoReturn':
    """The child outside the PID namespace: relay signals to init, then end like the program."""
    os.closerange(0, status_r)
    os.closerange(status_r + 1, 1 << 20)
    forward = _forwarder([init], _signal.SIGTSTP)  # init turns SIGTSTP into SIGSTOP for the program
    for name in _RELAYED:
        _signal.signal(getattr(_signal, name), forward)
    try:
        while True:
            try:
                _, status = os.waitpid(init, 0)
                break
            except ChildProcessError:
                os._exit(126)
        data = b""
        while True:
            chunk = os.read(status_r, 64)
            if not chunk:
                break
            data += chunk
        _exit_like(int(data) if data.strip().isdigit() else status)
    finally:
        os._exit(126)


class _Init:
    """PID 1 of the sandbox's PID namespace (the grandchild of the supervisor)."""

    def __init__(self, status_w: int, host_pid: int) -> None:
        self.status_w = status_w
        self.host_pid = host_pid

    @classmethod
    def start(cls, prep: 'Prepared', status_w: int) -> '_Init':
        """Still unsandboxed: learn our host pid, die with the relay, mount a fresh /proc."""
        host_pid = int(os.readlink("/proc/self"))  # the host's /proc still: our pid as the supervisor sees it
        process.set_parent_death_signal(9)
        process.mount(b"proc", b"/proc", b"proc", process.MS_NOSUID | process.MS_NODEV | process.MS_NOEXEC)
        _regrant_proc(prep)
        # The fresh credentials of the user namespace may have made us non-dumpable, which
        # would keep the supervisor (same uid) from taking the seccomp listener with pidfd_getfd.
        process.set_dumpable(True)
        return cls(status_w, host_pid)

    def spawn(self, setup_tty: 'Callable[[], None] | None') -> None:
        """Fork the program. In the program: return (it goes on to exec). Here: be init, never return."""
        target = [0]
        forward = _forwarder(target, _signal.SIGSTOP)
        for name in _RELAYED:
            _signal.signal(getattr(_signal, name), forward)
        pid = os.fork()
        if pid == 0:
            for name in _RELAYED + ("SIGPIPE",):
                _signal.signal(getattr(_signal, name), _signal.SIG_DFL)
            os.close(self.status_w)
            process.set_parent_death_signal(9)
            if setup_tty is not None:
                setup_tty()
            else:
                os.setsid()
            return
        target[0] = pid
        os.closerange(0, self.status_w)
        os.closerange(self.status_w + 1, 1 << 20)
        status = 0
        try:
            while True:
                try:
                    reaped, st = os.waitpid(-1, 0)
                except ChildProcessError:
                    break
                if reaped == pid:
                    status = st
                    break
            os.write(self.status_w, b"%d" % status)
        finally:
            os._exit(0)


def _regrant_proc(prep: 'Prepared') -> None:
    """The ruleset's /proc rules name the host's proc inodes; grant the same on the fresh /proc."""
    for rule in list(prep.plan.rules.values()):
        if rule.path != "/proc" and not rule.path.startswith("/proc/"):
            continue
        try:
            fd = os.open(rule.path, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            continue  # e.g. /proc/<host pid>/...: nothing of the kind in the new namespace
        try:
            prep.ruleset.allow_path_fd(fd, rule.mask, is_dir=rule.is_dir)
        finally:
            os.close(fd)


def from_options(opts: 'Mapping[str, object]') -> 'Isolation | None':
    """The :class:`Isolation` for parsed CLI options, or None when no isolation/limit flag was given.

    Raises :class:`ValueError` with a user-facing message for malformed values.
    """
    raw = opts.get("isolate") or []
    namespaces = parse_isolate(raw if isinstance(raw, list) else [str(raw)])
    limits = _limits_from_options(opts)
    if not namespaces and limits is None:
        return None
    return Isolation(namespaces, limits, silent=bool(opts.get("silent")))
