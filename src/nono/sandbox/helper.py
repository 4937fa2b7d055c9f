"""A pre-restricted helper process: the sandbox applied once, programs spawned many times.

``nono.run()`` from a warm process must cost about as much as
``subprocess.run()``. Forking the caller and applying Landlock in the child
costs milliseconds (the fork of a large process, then CPython closing fds by
brute force once /proc is restricted). Instead, one small helper interpreter
per policy applies the sandbox to itself and then ``posix_spawn``s each
program, which inherits the sandbox for free.

Protocol over a SOCK_SEQPACKET socketpair (one message per packet):

* caller -> helper, once: ``marshal`` of ``{"plan": ..., "mediate": bool}``
  with the Landlock ruleset fd as SCM_RIGHTS (built by the caller from the
  plan's ``O_PATH`` descriptors: the helper never resolves a path by name);
  helper -> caller: ``R`` (ready) or ``F <message>`` (failed; exit 126 semantics).
* caller -> helper, per run: ``marshal`` of ``{"exe", "argv", "env", "cwd"}``
  with the three stdio fds as SCM_RIGHTS; helper -> caller: ``S <pid>``, then
  ``X <returncode>`` (negative: killed by that signal), or ``E <errno>`` if the
  program could not be started.
* caller -> helper while running: ``K <signal>``.

The helper only ever sends short ASCII lines: the caller parses integers, never
objects, from a process that shares a sandbox with untrusted programs.

Isolation between the calls one helper serves (its programs share its Landlock domain):

* Every descriptor of the helper is close-on-exec, the control socket
  included: a program gets its three stdio fds and nothing else.
* The helper is non-dumpable, so its programs cannot ptrace it or read its
  memory or ``/proc/<pid>/fd``, which hold the stdio of later runs.
* The helper is a child subreaper. When a program exits, everything it left
  running (re-parented to the helper) is killed and reaped before ``X`` is
  sent, so nothing of one call is alive during the next.
"""

from __future__ import annotations

import os
import sys

_MSG_CMSG_CLOEXEC = 0x40000000
_PR_SET_CHILD_SUBREAPER = 36
_CLEANUP_SECONDS = 5.0


def main(sock_fd: int) -> None:
    import marshal
    import select
    import socket

    # Arrived through pass_fds, hence inheritable: posix_spawn would hand it to every program.
    os.set_inheritable(sock_fd, False)
    sock = socket.socket(fileno=sock_fd)
    msg, anc, _flags, _addr = sock.recvmsg(1 << 20, socket.CMSG_SPACE(4), _MSG_CMSG_CLOEXEC)
    received = _fds(anc)
    try:
        from ..kernel import landlock as ll
        from ..kernel import process
        from .apply import Prepared, enter, spawn_detached_mediator
        from .plan import Plan

        setup = marshal.loads(msg)
        if len(received) != 1:
            raise OSError(22, "no Landlock ruleset received from the caller")
        plan = Plan.from_dict(setup["plan"])
        prep = Prepared(plan, mediate_unix=setup["mediate"], ruleset_fd=received.pop())
        handoff = spawn_detached_mediator(prep) if prep.mediate_unix else None
        # After the (double-forked) mediator is gone from our children, before the sandbox:
        # from now on every orphan of our programs is re-parented to us.
        process.prctl(_PR_SET_CHILD_SUBREAPER, 1)
        # kill(-1) reaches exactly our Landlock domain only when signals are scoped (ABI 6).
        scoped = prep.status.get("scope_signal") == "enforced" and ll.abi_version() >= 6
        children_fd = -1
        if not scoped:
            try:  # opened before the sandbox: /proc may not be readable inside it
                children_fd = os.open(f"/proc/self/task/{os.getpid()}/children", os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                pass
        devnull = os.open("/dev/null", os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        os.close(devnull)
        enter(prep, handoff=handoff)
        for fd in handoff or ():
            os.close(fd)
        prep.close()
        process.set_dumpable(False)
    except BaseException as exc:  # report; the caller raises
        for fd in received:
            os.close(fd)
        text = exc.diagnostics() if hasattr(exc, "diagnostics") else f"{type(exc).__name__}: {exc}"
        sock.send(b"F " + text.encode(errors="replace")[:4000])
        return
    sock.send(b"R")
    poller = select.poll()
    while True:
        try:
            msg, anc, _flags, _addr = sock.recvmsg(1 << 22, socket.CMSG_SPACE(3 * 4), _MSG_CMSG_CLOEXEC)
        except OSError:
            return
        if not msg:
            return
        fds = _fds(anc)
        if msg.startswith(b"K "):  # a kill that crossed the program's exit: nothing to do
            for fd in fds:
                os.close(fd)
            continue
        req = marshal.loads(msg)
        try:
            pid = _spawn(req, fds)
        except OSError as exc:
            sock.send(b"E %d" % (exc.errno or 1))
            continue
        finally:
            for fd in fds:
                os.close(fd)
        sock.send(b"S %d" % pid)
        pidfd = os.pidfd_open(pid)
        poller.register(pidfd, select.POLLIN)
        poller.register(sock_fd, select.POLLIN)
        try:
            while True:
                ready = dict(poller.poll())
                if sock_fd in ready:
                    cmd = sock.recv(64)
                    if not cmd:  # the caller is gone
                        os.kill(pid, 9)
                        os.waitpid(pid, 0)
                        _kill_leftovers(scoped, children_fd)
                        return
                    if cmd.startswith(b"K "):
                        try:
                            os.kill(pid, int(cmd[2:]))
                        except ProcessLookupError:
                            pass
                if pidfd in ready:
                    _, status = os.waitpid(pid, 0)
                    _kill_leftovers(scoped, children_fd)
                    sock.send(b"X %d" % os.waitstatus_to_exitcode(status))
                    break
        finally:
            poller.unregister(pidfd)
            poller.unregister(sock_fd)
            os.close(pidfd)


def _fds(anc: list[tuple[int, int, bytes]]) -> list[int]:
    import socket

    fds: list[int] = []
    for level, typ, data in anc:
        if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
            fds += [int.from_bytes(data[i : i + 4], sys.byteorder) for i in range(0, len(data) - len(data) % 4, 4)]
    return fds


def _kill_leftovers(scoped: bool, children_fd: int = -1) -> bool:
    """See :func:`nono.kernel.process.kill_descendants` (kept here for the tests)."""
    from ..kernel.process import kill_descendants

    return kill_descendants(scoped, children_fd, _CLEANUP_SECONDS)


def _spawn(req: dict, fds: list[int]) -> int:  # type: ignore[type-arg]
    actions = [(os.POSIX_SPAWN_DUP2, fd, target) for target, fd in enumerate(fds[:3])]
    cwd = req.get("cwd")
    if cwd:
        # posix_spawn cannot chdir portably from Python: change ours around the spawn.
        old = os.open(".", os.O_PATH | os.O_CLOEXEC)
        try:
            os.chdir(cwd)
            return os.posix_spawn(req["exe"], req["argv"], req["env"], file_actions=actions, setsid=True)
        finally:
            os.fchdir(old)
            os.close(old)
    return os.posix_spawn(req["exe"], req["argv"], req["env"], file_actions=actions, setsid=True)


if __name__ == "__main__":
    sys.path.insert(0, sys.argv[1])
    from nono.sandbox.helper import main as _main

    _main(int(sys.argv[2]))
