"""Process controls: prctl, capabilities, pidfds. Thin wrappers, no policy."""

import os

from .. import _ffi
from ..errors import KernelError
from .seccomp import current_arch

_MACHINE = os.uname().machine
_SYS_PRCTL = {"x86_64": 157, "aarch64": 167}.get(_MACHINE, -1)
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
PR_SET_PTRACER = 0x59616D61
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    try:
        return _ffi.syscall(_SYS_PRCTL, option, arg2, arg3, arg4, arg5)
    except OSError as exc:
        raise KernelError(f"prctl({option}) failed: {exc.strerror}", syscall="prctl", errno=exc.errno or 0) from exc


def set_no_new_privs() -> None:
    """Forbid gaining privileges through execve (setuid bits, file caps)."""
    prctl(PR_SET_NO_NEW_PRIVS, 1)


def set_parent_death_signal(sig: int) -> None:
    prctl(PR_SET_PDEATHSIG, sig)


def set_dumpable(flag: bool) -> None:
    prctl(PR_SET_DUMPABLE, 1 if flag else 0)


def effective_capabilities() -> int:
    """The CapEff mask of this process, from /proc/self/status."""
    return capability_sets().get(b"CapEff", 0)


def capability_sets() -> 'dict[bytes, int]':
    """CapInh, CapPrm, CapEff, CapBnd and CapAmb of this process."""
    out: dict[bytes, int] = {}
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Cap"):
                    key, _, value = line.partition(b":")
                    out[key] = int(value.split()[0], 16)
    except OSError:
        pass
    return out


def holds_capabilities() -> bool:
    """Does this process hold, or could it regain, any capability (bounding set aside)?"""
    sets = capability_sets()
    return any(sets.get(k, 0) for k in (b"CapInh", b"CapPrm", b"CapEff", b"CapAmb"))


def drop_all_capabilities() -> None:
    """Empty the bounding, ambient, effective, permitted and inheritable sets.

    Used when nono runs as root: a root process keeps powers (CAP_SYS_PTRACE,
    CAP_DAC_OVERRIDE, ...) that let it read other root processes' /proc files
    even under Landlock. Raises :class:`KernelError` if any step fails.
    """
    try:
        with open("/proc/sys/kernel/cap_last_cap", "rb") as f:
            last = int(f.read())
    except OSError:
        last = 63
    for cap in range(last + 1):
        try:
            prctl(PR_CAPBSET_DROP, cap)
        except KernelError as exc:
            if exc.errno == 1 and os.geteuid() != 0:
                break  # EPERM without CAP_SETPCAP: the bounding set stays (no_new_privs blocks regaining)
            if exc.errno != 22:  # EINVAL: the kernel does not know this cap
                raise
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    header = _LINUX_CAPABILITY_VERSION_3.to_bytes(4, "little") + (0).to_bytes(4, "little")
    data = bytes(24)  # two __user_cap_data_struct {effective, permitted, inheritable}
    try:
        _ffi.syscall(current_arch().nr["capset"], header, data)
    except OSError as exc:
        raise KernelError(f"capset failed: {exc.strerror}", syscall="capset", errno=exc.errno or 0) from exc
    if holds_capabilities():
        raise KernelError("capabilities are still present after dropping them", syscall="capset")


POLLIN, POLLOUT, POLLERR, POLLHUP, POLLNVAL = 0x1, 0x4, 0x8, 0x10, 0x20
_SYS_PPOLL = {"x86_64": 271, "aarch64": 73}


class Poller:
    """``poll(2)`` over a few descriptors, with the interface of ``select.poll``.

    Why not ``select.poll``: the ``select`` extension module costs 0.4-1.3 ms to
    load (a shared-library load) on every ``nono run``, for one system call we
    can make through :mod:`nono._ffi`. An interrupted call (a signal to forward)
    returns no events; the caller's loop lets Python run the handler and polls again.
    """

    def __init__(self) -> None:
        self._fds: dict[int, int] = {}
        self._nr = _SYS_PPOLL[_MACHINE]

    def register(self, fd: int, events: int = POLLIN) -> None:
        self._fds[fd] = events

    def unregister(self, fd: int) -> None:
        del self._fds[fd]

    def poll(self, timeout_ms: int | None = None) -> list[tuple[int, int]]:
        items = list(self._fds.items())
        buf = _ffi.Buffer(b"".join(fd.to_bytes(4, "little", signed=True) + ev.to_bytes(2, "little") + b"\0\0"
                                   for fd, ev in items))
        ts = None
        if timeout_ms is not None:
            ms = max(timeout_ms, 0)
            ts = (ms // 1000).to_bytes(8, "little") + ((ms % 1000) * 1_000_000).to_bytes(8, "little")
        try:
            n = _ffi.syscall(self._nr, buf.address, len(items), ts, None, 8)
        except InterruptedError:
            return []
        if n == 0:
            return []
        raw = buf.raw()
        out = []
        for i, (fd, _ev) in enumerate(items):
            rev = int.from_bytes(raw[8 * i + 6 : 8 * i + 8], "little")
            if rev:
                out.append((fd, rev))
        return out


def pidfd_getfd(pidfd: int, target_fd: int) -> int:
    """Duplicate ``target_fd`` of the process behind ``pidfd`` into this one."""
    return _ffi.syscall(current_arch().nr["pidfd_getfd"], pidfd, target_fd, 0)
