"""seccomp: the classic-BPF filter that closes what Landlock does not cover.

Why we assemble the BPF ourselves instead of using libseccomp: the filter is
about forty instructions, fixed at build time, and libseccomp's Python binding
is not on PyPI (it ships with distributions only) and would add a compiled
dependency. A label-resolving assembler of a few lines keeps the whole filter
readable in one function, :func:`build_filter`.

What the filter does (each item has an enforcement test):

* always: deny io_uring (it performs connect/open without the syscalls this
  filter and Landlock see), the kernel keyring calls (the user's session keys
  are shared by every process of the uid), ``bpf``, ``perf_event_open`` and
  ``userfaultfd``; deny ``ioctl(TIOCSTI)`` and ``ioctl(TIOCLINUX)`` (typing into
  the user's terminal); on x86-64 deny the x32 ABI; kill on a foreign arch.
* always: AF_UNIX sockets only as stream or seqpacket. A datagram socket can
  send to any socket path with ``sendto()``, and no filter can check that
  address race-free, so the sandbox gets none.
* with ``mediate_unix``: hand ``connect`` and ``bind`` (and ``listen`` with a
  restricted network) to an unsandboxed mediator through seccomp user
  notification. The mediator performs them itself and never answers
  "continue" (see :mod:`nono.sandbox.mediator`): Landlock (ABI <= 7) does not
  check ``connect()`` to pathname unix sockets.
* with ``restrict_network``: allow only TCP over AF_INET/AF_INET6 and
  NETLINK_ROUTE besides AF_UNIX: no UDP, raw, packet, vsock or MPTCP sockets;
  deny ``MSG_FASTOPEN`` sends, which connect without ``connect()`` and which
  Landlock does not check (measured on 6.18). ``listen()`` on an unbound socket
  picks a port without ``bind()``, which Landlock does not check either: the
  mediator refuses it.
"""

import os

from .. import _ffi
from ..errors import KernelError

# Return actions.
RET_KILL_PROCESS = 0x80000000
RET_ERRNO = 0x00050000
RET_USER_NOTIF = 0x7FC00000
RET_ALLOW = 0x7FFF0000

# BPF opcodes.
_LD_W_ABS = 0x20
_JEQ = 0x15
_JGE = 0x35
_JSET = 0x45
_RET = 0x06
_AND = 0x54

_FILTER_FLAG_NEW_LISTENER = 1 << 3
_SET_MODE_FILTER = 1

NOTIF_SIZE = 80
IOCTL_NOTIF_RECV = 0xC0502100
IOCTL_NOTIF_SEND = 0xC0182101
IOCTL_NOTIF_ID_VALID = 0x40082102

EPERM = 1
ENOSYS = 38
TIOCSTI = 0x5412
TIOCLINUX = 0x541C
MSG_FASTOPEN = 0x20000000
AF_UNIX, AF_INET, AF_INET6, AF_NETLINK = 1, 2, 10, 16
SOCK_STREAM = 1
SOCK_SEQPACKET = 5
IPPROTO_TCP = 6
NETLINK_ROUTE = 0


class Arch:
    """Syscall numbers that differ between architectures."""

    def __init__(self, audit: int, x32: bool, nrs: dict[str, int]) -> None:
        self.audit = audit
        self.x32 = x32
        self.nr = nrs


_COMMON = {"io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427, "pidfd_getfd": 438}
ARCHES = {
    "x86_64": Arch(0xC000003E, True, dict(_COMMON, socket=41, connect=42, sendto=44, sendmsg=46, bind=49, listen=50, socketpair=53, statx=332,
                                           ioctl=16, sendmmsg=307, keyctl=250, add_key=248, request_key=249,
                                           seccomp=317, bpf=321, perf_event_open=298, userfaultfd=323, capset=126)),
    "aarch64": Arch(0xC00000B7, False, dict(_COMMON, socket=198, socketpair=199, bind=200, listen=201, connect=203, sendto=206, sendmsg=211, statx=291,
                                             ioctl=29, sendmmsg=269, keyctl=219, add_key=217, request_key=218,
                                             seccomp=277, bpf=280, perf_event_open=241, userfaultfd=282, capset=91)),
}


_MACHINE = os.uname().machine


def current_arch() -> 'Arch':
    arch = ARCHES.get(_MACHINE)
    if arch is None:
        raise KernelError(f"seccomp filter not available for architecture {_MACHINE!r}")
    return arch


def _arg_lo(i: int) -> int:
    return 16 + 8 * i


class _Asm:
    """Collects instructions whose jump targets are labels, then resolves them."""

    def __init__(self) -> None:
        self.code: list[tuple[int, str | None, str | None, int]] = []
        self.labels: dict[str, int] = {}

    def label(self, name: str) -> None:
        self.labels[name] = len(self.code)

    def ld(self, offset: int) -> None:
        self.code.append((_LD_W_ABS, None, None, offset))

    def op(self, code: int, k: int) -> None:
        self.code.append((code, None, None, k))

    def jmp(self, code: int, k: int, jt: str | None, jf: str | None) -> None:
        self.code.append((code, jt, jf, k))

    def ret(self, action: int) -> None:
        self.code.append((_RET, None, None, action))

    def assemble(self) -> bytes:
        out = bytearray()
        for i, (code, jt, jf, k) in enumerate(self.code):
            offs = []
            for target in (jt, jf):
                off = 0 if target is None else self.labels[target] - i - 1
                if not 0 <= off <= 255:
                    raise KernelError(f"seccomp filter jump out of range at {i}")
                offs.append(off)
            out += code.to_bytes(2, "little") + bytes(offs) + k.to_bytes(4, "little")
        return bytes(out)


def build_filter(*, restrict_network: bool, mediate_unix: bool, arch: 'Arch | None' = None) -> bytes:
    """The BPF program (``struct sock_filter[]`` bytes) for these options."""
    a = arch or current_arch()
    n = a.nr
    p = _Asm()
    p.ld(4)  # seccomp_data.arch
    p.jmp(_JEQ, a.audit, None, "kill")
    p.ld(0)  # seccomp_data.nr
    if a.x32:
        p.jmp(_JGE, 0x40000000, "enosys", None)
    for name in ("io_uring_setup", "io_uring_enter", "io_uring_register", "keyctl", "add_key", "request_key",
                 "bpf", "perf_event_open", "userfaultfd"):
        p.jmp(_JEQ, n[name], "eperm", None)
    p.jmp(_JEQ, n["ioctl"], "ioctl", None)
    p.jmp(_JEQ, n["socket"], "socket", None)
    p.jmp(_JEQ, n["socketpair"], "socketpair", None)
    if mediate_unix:
        # The mediator performs these itself and never lets the kernel "continue"
        # them: a continued call re-reads its fd and address, which another thread
        # may have swapped after the check (seccomp_unotify(2)).
        p.jmp(_JEQ, n["connect"], "notify", None)
        p.jmp(_JEQ, n["bind"], "notify", None)
        if restrict_network:
            p.jmp(_JEQ, n["listen"], "notify", None)
    if restrict_network:
        p.jmp(_JEQ, n["sendto"], "fastopen3", None)
        p.jmp(_JEQ, n["sendmsg"], "fastopen2", None)
        p.jmp(_JEQ, n["sendmmsg"], "fastopen3", None)
    p.ret(RET_ALLOW)

    p.label("ioctl")  # the request number is an unsigned int: the low word decides
    p.ld(_arg_lo(1))
    p.jmp(_JEQ, TIOCSTI, "eperm", None)
    p.jmp(_JEQ, TIOCLINUX, "eperm", "allow")

    if restrict_network:  # MSG_FASTOPEN connects without connect(): flags are arg 3 (sendto, sendmmsg) or 2 (sendmsg)
        for label, arg in (("fastopen3", 3), ("fastopen2", 2)):
            p.label(label)
            p.ld(_arg_lo(arg))
            p.jmp(_JSET, MSG_FASTOPEN, "eperm", "allow")

    # socket(): AF_UNIX only as stream or seqpacket (a datagram socket could send to
    # any path with sendto(), which no syscall filter can check race-free). With a
    # restricted network, also TCP over IPv4/IPv6 and NETLINK_ROUTE, nothing else.
    p.label("socket")
    p.ld(_arg_lo(0))
    p.jmp(_JEQ, AF_UNIX, "unix_type", None)
    if restrict_network:
        p.jmp(_JEQ, AF_INET, "inet", None)
        p.jmp(_JEQ, AF_INET6, "inet", None)
        p.jmp(_JEQ, AF_NETLINK, "netlink", "eperm")
        p.label("inet")
        p.ld(_arg_lo(1))
        p.op(_AND, 0xF)  # strip SOCK_NONBLOCK / SOCK_CLOEXEC
        p.jmp(_JEQ, SOCK_STREAM, None, "eperm")
        p.ld(_arg_lo(2))
        p.jmp(_JEQ, 0, "allow", None)
        p.jmp(_JEQ, IPPROTO_TCP, "allow", "eperm")
        p.label("netlink")
        p.ld(_arg_lo(2))
        p.jmp(_JEQ, NETLINK_ROUTE, "allow", "eperm")
    else:
        p.ret(RET_ALLOW)
    p.label("socketpair")
    p.ld(_arg_lo(0))
    p.jmp(_JEQ, AF_UNIX, "unix_type", "eperm" if restrict_network else "allow")
    p.label("unix_type")
    p.ld(_arg_lo(1))
    p.op(_AND, 0xF)
    p.jmp(_JEQ, SOCK_STREAM, "allow", None)
    p.jmp(_JEQ, SOCK_SEQPACKET, "allow", "eperm")

    p.label("allow")
    p.ret(RET_ALLOW)
    p.label("eperm")
    p.ret(RET_ERRNO | EPERM)
    p.label("enosys")
    p.ret(RET_ERRNO | ENOSYS)
    if mediate_unix:
        p.label("notify")
        p.ret(RET_USER_NOTIF)
    p.label("kill")
    p.ret(RET_KILL_PROCESS)
    return p.assemble()


def install(program: bytes, *, new_listener: bool, arch: 'Arch | None' = None) -> int:
    """Install ``program`` on the calling thread; return the listener fd or -1.

    ``no_new_privs`` must already be set. The listener fd is close-on-exec.
    """
    a = arch or current_arch()
    prog = _ffi.Buffer(program)
    fprog = (len(program) // 8).to_bytes(2, "little") + b"\0" * 6 + prog.address.to_bytes(8, "little")
    flags = _FILTER_FLAG_NEW_LISTENER if new_listener else 0
    try:
        fd = _ffi.syscall(a.nr["seccomp"], _SET_MODE_FILTER, flags, fprog)
    except OSError as exc:
        raise KernelError(
            f"seccomp(SET_MODE_FILTER) failed: {exc.strerror}", syscall="seccomp", errno=exc.errno or 0,
            hint="this requires a kernel built with CONFIG_SECCOMP_FILTER (and 5.0+ for user notification)",
        ) from exc
    return fd if new_listener else -1
