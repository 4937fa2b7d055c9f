"""Attacks run *inside* a throw-away sandbox by ``nono setup --check-only``.

Executed as a script (``python -I -S probe_child.py SPEC``); prints one line
per bypass class: ``<name> closed|open <detail>``. "closed" means the kernel
refused. Stdlib only; every attempt is bounded by a short timeout.
"""

import ctypes
import errno
import fcntl
import os
import socket
import sys
import termios

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long


def report(name: str, closed: bool, detail: str = "") -> None:
    sys.stdout.write(f"{name} {'closed' if closed else 'open'} {detail}\n")


def attempt(name: str, fn: 'Callable[[], object]') -> None:
    try:
        fn()
    except OSError as exc:
        report(name, True, errno.errorcode.get(exc.errno or 0, str(exc.errno)))
        return
    except Exception as exc:
        report(name, False, f"unexpected {type(exc).__name__}: {exc}")
        return
    report(name, False, "succeeded")


def sysc(nr: int, *args: int) -> int:
    r: int = libc.syscall(nr, *[ctypes.c_long(a) for a in args])
    if r < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return r


def main() -> None:
    spec = dict(a.split("=", 1) for a in sys.argv[1:])
    sup = os.getppid()
    grant, outside, port = spec["grant"], spec["outside"], int(spec["port"])
    secret = os.path.join(outside, "secret")
    attempt("fs_read_outside", lambda: open(secret, "rb").read())
    attempt("fs_write_outside", lambda: open(os.path.join(outside, "new"), "wb").close())
    attempt("fs_symlink_escape", lambda: open(os.path.join(grant, "link"), "rb").read())
    attempt("fs_hardlink_escape", lambda: os.link(secret, os.path.join(grant, "hard")))
    attempt("fs_rename_escape", lambda: os.rename(os.path.join(grant, "mine"), os.path.join(outside, "moved")))
    attempt("proc_root_escape", lambda: open("/proc/self/root" + secret, "rb").read())
    attempt("proc_environ_supervisor", lambda: open(f"/proc/{sup}/environ", "rb").read())
    attempt("proc_mem_supervisor", lambda: open(f"/proc/{sup}/mem", "rb").close())
    attempt("signal_supervisor", lambda: os.kill(sup, 0))
    attempt("ptrace_supervisor", lambda: sysc(int(spec["nr_ptrace"]), 16, sup, 0, 0))  # PTRACE_ATTACH
    with open("/proc/self/status") as f:
        status = f.read()
    nnp = "NoNewPrivs:\t1" in status
    report("no_new_privs", nnp, "set" if nnp else "not set")
    capeff = next(line.split()[1] for line in status.splitlines() if line.startswith("CapEff:"))
    report("capabilities", int(capeff, 16) == 0, f"CapEff={capeff}")

    def tcp() -> None:
        s = socket.socket()
        s.settimeout(2)
        s.connect(("127.0.0.1", port))
    attempt("net_tcp_connect", tcp)
    attempt("net_udp", lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", ("127.0.0.1", port)))
    attempt("net_mptcp", lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM, 262).connect(("127.0.0.1", port)))
    attempt("net_raw", lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP))
    attempt("net_packet", lambda: socket.socket(17, socket.SOCK_RAW, 0))
    attempt("net_vsock", lambda: socket.socket(40, socket.SOCK_STREAM, 0))

    def tfo() -> None:
        s = socket.socket()
        s.settimeout(2)
        s.sendto(b"x", 0x20000000, ("127.0.0.1", port))
    attempt("net_tcp_fastopen", tfo)

    def listen_autobind() -> None:
        s = socket.socket()
        s.listen(1)  # no bind(): the kernel would pick a free port
    attempt("net_listen_autobind", listen_autobind)
    attempt("io_uring", lambda: sysc(425, 8, ctypes.addressof(ctypes.create_string_buffer(120))))
    attempt("keyring", lambda: sysc(int(spec["nr_keyctl"]), 0, -3, 0))  # KEYCTL_GET_KEYRING_ID @u

    def tiocsti() -> None:
        m, s = os.openpty()
        fcntl.ioctl(s, termios.TIOCSTI, b"x")
    attempt("tty_tiocsti", tiocsti)
    report("new_session", os.getsid(0) != int(spec["sid"]), f"sid={os.getsid(0)}")

    def unix_outside() -> None:
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(2)
        s.connect(os.path.join(outside, "sock"))
    attempt("unix_connect_outside", unix_outside)

    def unix_via_symlink() -> None:
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(2)
        s.connect(os.path.join(grant, "socklink"))
    attempt("unix_connect_symlink", unix_via_symlink)

    def moved_in() -> None:
        os.rename(os.path.join(grant, "victimdir", "victim.sock"), os.path.join(grant, "moved.sock"))
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(2)
        s.connect(os.path.join(grant, "moved.sock"))
    attempt("unix_moved_into_grant", moved_in)
    attempt("unix_datagram", lambda: socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM))
    attempt("tty_other_terminal", lambda: open(spec["other_tty"], "rb").close())

    def abstract() -> None:
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(2)
        s.connect("\0" + spec["abstract"])
    attempt("unix_abstract", abstract)

    def userns_mount() -> None:
        pid = os.fork()
        if pid == 0:
            code = 3
            try:
                if libc.unshare(0x10000000 | 0x00020000) != 0:  # CLONE_NEWUSER | CLONE_NEWNS
                    code = 2
                else:
                    code = 0 if libc.mount(b"none", grant.encode(), b"tmpfs", 0, None) == 0 else 1
            finally:
                os._exit(code)
        _, st = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(st)
        if code == 0:
            return
        raise OSError(errno.EPERM, "mount refused" if code == 1 else "unshare refused" if code == 2 else "probe error")
    attempt("userns_mount", userns_mount)


main()
