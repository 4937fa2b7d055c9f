"""Process-isolation attack probe: run inside (or, as a control, outside) a nono sandbox.

Usage: python proc_probe.py ACTION [ACTION ...]

Prints one JSON object on the last line of stdout mapping each ACTION to
``"ok"`` / ``"ok:<detail>"`` or ``"<step>:<ERRNO>"``, plus ``"pid"``,
``"ppid"`` and ``"sid"`` of the probe. Targets named ``ppid`` mean the
probe's parent (under ``nono run``: the supervisor), ``child`` a child the
probe forks for the purpose (a positive control: the same attack on a process
of the probe's own making must succeed), a number is that pid.

Kinds:
  kill:TARGET:SIG        kill(TARGET, SIG)
  kill_child             fork a child, SIGTERM it, report how it died
  pidfd_kill:TARGET:SIG  pidfd_open(TARGET) + pidfd_send_signal(SIG)
  sigio:TARGET           F_SETOWN a pipe to TARGET with F_SETSIG SIGUSR1 and O_ASYNC, write to it.
                         "ok:delivered" if a SIGUSR1 reached this probe within 0.5 s (for TARGET
                         ppid: the nono supervisor forwards SIGUSR1 to us, so delivery to it shows)
  ptrace_attach:TARGET   PTRACE_ATTACH (then detach) via libc
  vm_readv:TARGET        process_vm_readv of a buffer at this probe's own address
  tiocsti                in a forked child in a new session whose controlling tty is
                         a fresh pty slave: TIOCSTI b"x" on that slave
  tiocsti_hi             the same through syscall(ioctl) with bit 32 set in the request
  tioclinux              the same set-up, TIOCLINUX on the slave
  read_proc:TARGET:FILE  read /proc/<TARGET>/FILE (environ, mem, ...): the first bytes' length
  userns_mount:DIR       unshare(CLONE_NEWUSER|CLONE_NEWNS) in-process (no exec: the new namespace's
                         capabilities are kept), then mount a tmpfs on DIR; "ok:<mountinfo lines for DIR>"
  io_uring               io_uring_setup(1, params) via syscall 425
  status                 NoNewPrivs / Cap* / Seccomp lines of /proc/self/status
  env                    the environment, as a JSON object string
  capfile                read $NONO_CAP_FILE and return its "protections" key (JSON)
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import os
import select
import signal
import sys
import termios
import time

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
libc.ptrace.restype = ctypes.c_long
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]

PTRACE_ATTACH, PTRACE_DETACH = 16, 17
TIOCSCTTY = 0x540E
TIOCLINUX = 0x541C
SYS_IO_URING_SETUP = 425
SYS_IOCTL = {"x86_64": 16, "aarch64": 29}[os.uname().machine]
SYS_PROCESS_VM_READV = {"x86_64": 310, "aarch64": 270}[os.uname().machine]
SECRET = ctypes.create_string_buffer(b"probe-memory-marker", 32)


class Step(Exception):
    def __init__(self, step: str, err: int) -> None:
        super().__init__(step)
        self.step, self.err = step, err


def _check(step: str, rc: int) -> int:
    if rc < 0:
        raise Step(step, ctypes.get_errno())
    return rc


def _os(step: str, fn, *args):
    try:
        return fn(*args)
    except OSError as exc:
        raise Step(step, exc.errno or 0) from None


_children: list[int] = []


def _child() -> int:
    """A forked child that sleeps (bounded) until killed; same memory layout as us."""
    pid = os.fork()
    if pid == 0:
        try:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            time.sleep(20)
        finally:
            os._exit(0)
    _children.append(pid)
    time.sleep(0.05)
    return pid


def _target(name: str) -> int:
    if name == "ppid":
        return os.getppid()
    if name == "child":
        return _child()
    if name == "self":
        return os.getpid()
    return int(name)


def kill(target: str, sig: str) -> str:
    _os("kill", os.kill, _target(target), int(sig))
    return "ok"


def kill_child() -> str:
    pid = _child()
    _os("kill", os.kill, pid, signal.SIGTERM)
    _, status = os.waitpid(pid, 0)
    _children.remove(pid)
    return f"ok:{os.waitstatus_to_exitcode(status)}"


def pidfd_kill(target: str, sig: str) -> str:
    fd = _os("pidfd_open", os.pidfd_open, _target(target))
    try:
        _os("pidfd_send_signal", signal.pidfd_send_signal, fd, int(sig))
    finally:
        os.close(fd)
    return "ok"


F_SETSIG = 10


def sigio(target: str) -> str:
    got: list[int] = []
    old = signal.signal(signal.SIGUSR1, lambda *_: got.append(1))
    r, w = os.pipe()
    try:
        _os("F_SETOWN", fcntl.fcntl, r, fcntl.F_SETOWN, _target(target))
        _os("F_SETSIG", fcntl.fcntl, r, F_SETSIG, signal.SIGUSR1)
        _os("F_SETFL", fcntl.fcntl, r, fcntl.F_SETFL, fcntl.fcntl(r, fcntl.F_GETFL) | os.O_ASYNC)
        os.write(w, b"x")
        deadline = time.monotonic() + 0.5
        while not got and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        os.close(r)
        os.close(w)
        signal.signal(signal.SIGUSR1, old)
    return "ok:delivered" if got else "ok:not delivered"


def ptrace_attach(target: str) -> str:
    pid = _target(target)
    ctypes.set_errno(0)
    _check("ptrace", libc.ptrace(PTRACE_ATTACH, pid, None, None))
    os.waitpid(pid, 0)  # the attach stop
    libc.ptrace(PTRACE_DETACH, pid, None, None)
    return "ok"


class _Iov(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


def vm_readv(target: str) -> str:
    pid = _target(target)
    dst = ctypes.create_string_buffer(32)
    local = _Iov(ctypes.cast(dst, ctypes.c_void_p), 19)
    remote = _Iov(ctypes.cast(SECRET, ctypes.c_void_p), 19)
    n = _check("process_vm_readv", libc.syscall(SYS_PROCESS_VM_READV, pid, ctypes.byref(local), 1,
                                                ctypes.byref(remote), 1, 0))
    return "ok:" + dst.raw[:n].decode(errors="replace")


def _in_child(body) -> str:
    """Run ``body()`` in a forked child and return its answer (bounded to 10 s).

    Used where an action changes the process (session, namespaces) in ways that
    must not leak into the probe's other actions.
    """
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        out = "child:crashed"
        try:
            os.close(r)
            out = body()
        except Step as st:
            out = f"{st.step}:{errno.errorcode.get(st.err, str(st.err))}"
        finally:
            os.write(w, out.encode())
            os._exit(0)
    os.close(w)
    data = b""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if not select.select([r], [], [], 0.5)[0]:
            continue
        chunk = os.read(r, 4096)
        if not chunk:
            break
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    return data.decode(errors="replace") or "child:no answer"


def _with_ctty(fn) -> str:
    """Run ``fn(slave)`` in a forked child whose controlling tty is a fresh pty slave.

    A new session with the pty as controlling terminal is what makes TIOCSTI
    legitimate without the sandbox (no CAP_SYS_ADMIN needed), so a refusal
    inside the sandbox is the sandbox's doing.
    """
    def body() -> str:
        try:
            os.setsid()
            _master, slave = os.openpty()  # the master stays open (never closed) for the child's life
            fcntl.ioctl(slave, TIOCSCTTY, 0)
        except OSError as exc:
            raise Step("ctty", exc.errno or 0) from None
        return fn(slave)

    return _in_child(body)


def _sti(slave: int) -> str:
    _os("tiocsti", fcntl.ioctl, slave, termios.TIOCSTI, b"x")
    return "ok:" + str(int.from_bytes(fcntl.ioctl(slave, termios.FIONREAD, b"\0\0\0\0"), "little"))


def _sti_hi(slave: int) -> str:
    ch = ctypes.c_char(b"y")
    ctypes.set_errno(0)
    _check("tiocsti", libc.syscall(SYS_IOCTL, slave, ctypes.c_ulong(termios.TIOCSTI | (1 << 32)), ctypes.byref(ch)))
    return "ok"


def _linux(slave: int) -> str:
    _os("tioclinux", fcntl.ioctl, slave, TIOCLINUX, b"\x07")  # TIOCL_GETMOUSEREPORTING-ish subcode: harmless
    return "ok"


def tiocsti() -> str:
    return _with_ctty(_sti)


def tiocsti_hi() -> str:
    return _with_ctty(_sti_hi)


def tioclinux() -> str:
    return _with_ctty(_linux)


def read_proc(target: str, name: str) -> str:
    pid = _target(target)
    fd = _os("open", os.open, f"/proc/{pid}/{name}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        return f"ok:{len(_os('read', os.read, fd, 4096))}"
    finally:
        os.close(fd)


CLONE_NEWNS, CLONE_NEWUSER = 0x00020000, 0x10000000
libc.unshare.argtypes = [ctypes.c_int]
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]


def userns_mount(path: str) -> str:
    """Runs in a forked child: the namespaces must not leak into the probe's other actions."""
    def body() -> str:
        _check("unshare", libc.unshare(CLONE_NEWUSER | CLONE_NEWNS))
        _check("mount", libc.mount(b"none", path.encode(), b"tmpfs", 0, None))
        with open("/proc/self/mountinfo") as f:
            return "ok:" + str(sum(1 for ln in f if f" {path} " in ln))

    return _in_child(body)


def io_uring() -> str:
    params = ctypes.create_string_buffer(120)
    fd = _check("io_uring_setup", libc.syscall(SYS_IO_URING_SETUP, 1, params))
    os.close(fd)
    return "ok"


def status() -> str:
    with open("/proc/self/status") as f:
        keep = [ln.strip() for ln in f if ln.startswith(("NoNewPrivs", "Cap", "Seccomp"))]
    return "ok:" + json.dumps(dict(ln.split(":\t", 1) for ln in keep))


def env() -> str:
    return "ok:" + json.dumps(dict(os.environ))


def capfile() -> str:
    path = os.environ.get("NONO_CAP_FILE")
    if not path:
        return "getenv:ENOENT"
    with _os("open", open, path) as f:
        data = json.load(f)
    return "ok:" + json.dumps(data["protections"])


def run(action: str) -> str:
    kind, _, rest = action.partition(":")
    fn = globals().get(kind)
    if kind.startswith("_") or kind not in KINDS:
        return "usage:unknown action"
    try:
        return fn(*(rest.split(":") if rest else []))
    except Step as st:
        return f"{st.step}:{errno.errorcode.get(st.err, str(st.err))}"


KINDS = ("kill", "pidfd_kill", "sigio", "kill_child", "ptrace_attach", "vm_readv", "tiocsti", "tiocsti_hi", "tioclinux",
         "read_proc", "userns_mount", "io_uring", "status", "env", "capfile")


def main() -> None:
    results: dict[str, object] = {"pid": os.getpid(), "ppid": os.getppid(), "sid": os.getsid(0)}
    try:
        for a in sys.argv[1:]:
            results[a] = run(a)
    finally:
        for pid in _children:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except OSError:
                pass
    sys.stdout.write(json.dumps(results) + "\n")


if __name__ == "__main__":
    main()
