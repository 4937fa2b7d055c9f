"""The supervised run: fork, sandbox the child, stay outside and watch.

The parent stays unsandboxed (the proxy, rollback and audit of later issues
live here), forwards SIGINT/SIGTERM/SIGHUP/SIGQUIT/SIGUSR1/SIGUSR2, answers
the child's seccomp notifications, and returns the child's exit status
(128+n for a signal). The child dies with SIGKILL if the supervisor dies.

Only ``os`` and ``_signal`` are imported here (polling goes through
:class:`nono.kernel.process.Poller`): this is the ``nono run`` start-up path.
"""

import os

from ..errors import KernelError, NonoError, SandboxError
from ..kernel import process
from . import apply as _apply

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal as _signal  # _signal has no stubs; signal re-exports it
    from collections.abc import Callable, Mapping

    from .isolation import Isolation
    from .pty_relay import PtyRelay
else:
    import _signal

_FORWARDED = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGWINCH")


class ChildFailure(SandboxError):
    """The child could not apply the sandbox (``exit_code`` 126) or exec (127)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _child(prep: '_apply.Prepared', exe: str, argv: list[str], env: 'Mapping[str, str]', report_w: int, ack_r: int,
           parent: int, setup_tty: 'Callable[[], None] | None', isolation: 'Isolation | None') -> None:
    """Runs in the forked child; never returns."""
    try:
        for name in _FORWARDED + ("SIGTSTP", "SIGCONT", "SIGPIPE"):
            _signal.signal(getattr(_signal, name), _signal.SIG_DFL)
        init = None
        if isolation is not None and isolation.relays:
            os.setsid()  # the relay and init: a session without a terminal; the program gets its own below
            init = isolation.child_enter(prep, parent)  # the relay never returns; init does
        else:
            if setup_tty is not None:
                setup_tty()
            else:
                os.setsid()
            if isolation is not None:
                isolation.child_enter(prep, parent)
        _apply.enter(prep, handoff=(report_w, ack_r) if prep.mediate_unix else None,
                     parent_pid=0 if init is not None else parent, host_pid=init.host_pid if init is not None else 0)
        os.close(ack_r)
        if init is not None:
            init.spawn(setup_tty)  # returns in the program only
    except BaseException as exc:  # report, then exit 126: never run unsandboxed
        msg = exc.diagnostics() if isinstance(exc, NonoError) else f"{type(exc).__name__}: {exc}"
        try:
            os.write(report_w, b"E" + msg.encode(errors="replace").replace(b"\n", b" ") + b"\n")
        finally:
            os._exit(126)
    try:
        os.closerange(3, report_w)
        os.closerange(report_w + 1, 1 << 20)
        if isolation is not None:
            isolation.before_exec()
        os.execve(exe, argv, env)
    except (OSError, KernelError) as exc:
        try:
            os.write(report_w, b"X%d\n" % (exc.errno or 0))
        finally:
            os._exit(127)
    os._exit(127)


def _read_line(fd: int) -> bytes:
    line = b""
    while not line.endswith(b"\n"):
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        line += chunk
    return line


def run(prep: '_apply.Prepared', exe: str, argv: list[str], env: 'Mapping[str, str]', *,
        pty: 'PtyRelay | None' = None, on_started: 'Callable[[int], None] | None' = None,
        on_exit: 'Callable[[], object] | None' = None, isolation: 'Isolation | None' = None) -> int:
    """Run ``argv`` (``exe`` resolved) under ``prep``; return its exit status.

    Raises :class:`ChildFailure` when the sandbox could not be applied (126)
    or the program could not be executed (127). ``on_started(pid)`` runs once
    the program started; ``on_exit()`` once it exited, before anything it left
    running is killed. ``isolation`` (checked, see :mod:`.isolation`): namespaces,
    resource limits and a timeout; the run then returns 124 on timeout and 137
    when the memory limit was exceeded.
    """
    report_r, report_w = os.pipe()
    ack_r, ack_w = os.pipe()
    parent = os.getpid()
    setup_tty = getattr(pty, "child_setup", None)
    try:
        # Orphans of the sandbox come back to us, so nothing outlives the session.
        process.prctl(process.PR_SET_CHILD_SUBREAPER, 1)
    except KernelError:
        pass
    if isolation is not None:
        isolation.before_fork()  # e.g. the session cgroup
    try:
        pid = os.fork()
    except BaseException:
        if isolation is not None:
            isolation.finish()
        raise
    if pid == 0:
        os.close(report_r)
        os.close(ack_w)
        _child(prep, exe, argv, env, report_w, ack_r, parent, setup_tty, isolation)
    os.close(report_w)
    os.close(ack_r)
    pidfd = os.pidfd_open(pid)
    try:
        process.set_dumpable(False)
    except KernelError:
        pass
    old_handlers = _forward_signals(pid, isolation is not None and isolation.relays)
    listener = -1
    try:
        line = _read_line(report_r) if prep.mediate_unix else b""
        if line.startswith(b"L"):
            fd_text, _, owner = line[1:].partition(b" ")
            if owner.strip():  # PID 1 of the sandbox's PID namespace holds it, not our child
                owner_fd = os.pidfd_open(int(owner))
                try:
                    listener = process.pidfd_getfd(owner_fd, int(fd_text))
                finally:
                    os.close(owner_fd)
            else:
                listener = process.pidfd_getfd(pidfd, int(fd_text))
            os.write(ack_w, b"1")
            line = b""
        os.close(ack_w)
        ack_w = -1
        if on_started is not None:
            on_started(pid)
        status, tail, timed_out, maxrss = _wait(pid, pidfd, listener, report_r, prep, pty, isolation)
        line += tail
        if on_exit is not None:
            on_exit()  # e.g. stop the proxy cleanly, before leftovers are killed
        # The program has exited: end whatever it left running (daemons, background
        # jobs), which would otherwise keep running, unmediated, after nono is gone.
        process.kill_descendants(False)
        if isolation is not None and not line.startswith((b"E", b"X")):
            if timed_out:
                from .limits import format_duration

                isolation.say(f"[nono] timeout after {format_duration(isolation.timeout or 0)}: "
                              "the program and everything it started were killed")
                return 124
            code = os.waitstatus_to_exitcode(status)
            return isolation.outcome(status, 128 - code if code < 0 else code, maxrss)
    finally:
        if isolation is not None:
            isolation.finish()
        for sig, h in old_handlers.items():
            _signal.signal(sig, h)
        if ack_w >= 0:
            os.close(ack_w)
        for fd in (listener, pidfd, report_r):
            if fd >= 0:
                os.close(fd)
    if line.startswith(b"E"):
        raise ChildFailure(line[1:].decode(errors="replace").strip(), 126)
    if line.startswith(b"X"):
        err = int(line[1:] or 0)
        raise ChildFailure(f"{exe}: {os.strerror(err)}", 127)
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def _forward_signals(pid: int, relay: bool = False) -> 'dict[int, _signal._HANDLER]':
    def forward(sig: int, _frame: object) -> None:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass

    def stop(_sig: int, _frame: object) -> None:
        # The child lives in its own session, where the kernel ignores terminal
        # stop signals; stop it explicitly, then stop ourselves. A PID-namespace relay
        # passes SIGTSTP on to the sandbox's init, which stops the program.
        try:
            os.kill(pid, _signal.SIGTSTP if relay else _signal.SIGSTOP)
        except ProcessLookupError:
            pass
        os.kill(os.getpid(), _signal.SIGSTOP)

    def cont(_sig: int, _frame: object) -> None:
        try:
            os.kill(pid, _signal.SIGCONT)
        except ProcessLookupError:
            pass

    old: 'dict[int, _signal._HANDLER]' = {}
    for name in _FORWARDED:
        sig = getattr(_signal, name)
        old[sig] = _signal.signal(sig, forward)
    old[_signal.SIGTSTP] = _signal.signal(_signal.SIGTSTP, stop)
    old[_signal.SIGCONT] = _signal.signal(_signal.SIGCONT, cont)

    def reap(_sig: int, _frame: object) -> None:
        # Reap orphaned sandbox processes (we are their subreaper) as they exit, but
        # never the program itself: its status is collected through its pidfd.
        while True:
            try:
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return
            if info is None or info.si_pid == pid:
                return
            try:
                os.waitpid(info.si_pid, 0)
            except ChildProcessError:
                return

    old[_signal.SIGCHLD] = _signal.signal(_signal.SIGCHLD, reap)
    return old


def _wait(pid: int, pidfd: int, listener: int, report_r: int, prep: '_apply.Prepared', pty: 'PtyRelay | None',
          isolation: 'Isolation | None' = None) -> tuple[int, bytes, bool, int]:
    """Serve the program until it exits: (wait status, report tail, timed out, peak RSS in KiB or 0)."""
    P = process
    poller = P.Poller()
    poller.register(pidfd, P.POLLIN)
    poller.register(report_r, P.POLLIN)
    mediator = None
    if listener >= 0:
        poller.register(listener, P.POLLIN)
    tty_fds: tuple[int, ...] = ()
    if pty is not None:
        tty_fds = pty.register(poller)
    tail = b""
    deadline = timed_out = None
    if isolation is not None and isolation.timeout is not None:
        import time

        deadline, timed_out = time.monotonic() + isolation.timeout, False
    while True:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0 and not timed_out:
                timed_out = True
                isolation.kill(pid)  # type: ignore[union-attr]  # deadline implies isolation
            events = poller.poll(None if timed_out else int(remaining * 1000) + 1)
        else:
            events = poller.poll()
        for fd, ev in events:
            if fd == pidfd:
                if pty is not None:
                    pty.drain()
                maxrss = 0
                if isolation is not None and isolation.wants_rusage:
                    _, status, usage = os.wait4(pid, 0)
                    maxrss = usage.ru_maxrss
                else:
                    _, status = os.waitpid(pid, 0)
                if report_r >= 0:
                    tail += _read_line(report_r)
                if mediator is not None:
                    mediator.close()
                return status, tail, bool(timed_out), maxrss
            if fd == listener:
                if ev & P.POLLIN:
                    if mediator is None:
                        from .mediator import Mediator

                        mediator = Mediator(listener, prep.plan)
                    mediator.handle()
                    for waiting in mediator.take_new_waiting():
                        poller.register(waiting, P.POLLOUT)
                elif ev & (P.POLLHUP | P.POLLERR | P.POLLNVAL):
                    poller.unregister(listener)
            elif mediator is not None and fd in mediator.waiting:
                poller.unregister(fd)
                mediator.complete(fd)
            elif fd == report_r:
                chunk = os.read(report_r, 4096)
                if chunk:
                    tail += chunk
                else:
                    poller.unregister(report_r)
                    report_r = -1
            elif fd in tty_fds and pty is not None:
                pty.on_event(fd, ev, poller)
