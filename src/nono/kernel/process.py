"""Process controls: prctl, capabilities, pidfds. Thin wrappers, no policy."""

from __future__ import annotations

import os

from .. import _ffi
from ..errors import KernelError
from .seccomp import current_arch

_SYS_PRCTL = {"x86_64": 157, "aarch64": 167}
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
        return _ffi.syscall(_SYS_PRCTL[os.uname().machine], option, arg2, arg3, arg4, arg5)
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
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"CapEff:"):
                    return int(line.split()[1], 16)
    except OSError:
        pass
    return 0


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
            if exc.errno != 22:  # EINVAL: the kernel does not know this cap
                raise
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    header = _LINUX_CAPABILITY_VERSION_3.to_bytes(4, "little") + (0).to_bytes(4, "little")
    data = bytes(24)  # two __user_cap_data_struct {effective, permitted, inheritable}
    try:
        _ffi.syscall(current_arch().nr["capset"], header, data)
    except OSError as exc:
        raise KernelError(f"capset failed: {exc.strerror}", syscall="capset", errno=exc.errno or 0) from exc
    if effective_capabilities():
        raise KernelError("capabilities are still present after dropping them", syscall="capset")


def pidfd_getfd(pidfd: int, target_fd: int) -> int:
    """Duplicate ``target_fd`` of the process behind ``pidfd`` into this one."""
    return _ffi.syscall(current_arch().nr["pidfd_getfd"], pidfd, target_fd, 0)
