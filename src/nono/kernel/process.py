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


def kill_descendants(scoped: bool, children_fd: int = -1, limit: float = 5.0) -> bool:
    """Kill and reap every process still descending from us (we are their subreaper).

    The caller must be a child subreaper, so that orphans come back to it.
    Fast path: no child left (one ``waitpid``). Otherwise, with Landlock signal
    scoping, ``kill(-1, SIGKILL)`` reaches exactly the processes of our own
    Landlock domain (and domains nested in it): our descendants. Without
    scoping, ``kill(-1)`` would reach every process of the user, so only our
    children are killed; their own children are then re-parented to us and
    killed in the next round. Bounded by ``limit`` seconds; True when none is left.
    """
    import time

    deadline = 0.0
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return True
        now = time.monotonic()
        if not deadline:
            deadline = now + limit
        elif now > deadline:
            return False
        if pid:
            continue  # reaped one; look again
        if scoped:
            try:
                os.kill(-1, 9)
            except OSError:  # ESRCH: nothing we may signal is left
                pass
        else:
            for child in _children(children_fd):
                try:
                    os.kill(child, 9)  # our child: its pid cannot be reused before we reap it
                except ProcessLookupError:
                    pass
        time.sleep(0.001)


def _children(children_fd: int) -> list[int]:
    """Our children's pids: from ``/proc/self/task/<tid>/children`` if open, else by scanning /proc."""
    if children_fd >= 0:
        try:
            data = b""
            while True:
                chunk = os.pread(children_fd, 65536, len(data))
                if not chunk:
                    break
                data += chunk
            return [int(p) for p in data.split()]
        except OSError:
            pass
    me = os.getpid()
    found = []
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 1 and int(fields[1]) == me:
            found.append(int(name))
    return found


PR_SET_CHILD_SUBREAPER = 36
AT_EMPTY_PATH = 0x1000
_STATX_INO_BTIME = 0x100 | 0x800  # STATX_INO | STATX_BTIME


def file_identity(fd: int, path: bytes = b"", flags: int = AT_EMPTY_PATH) -> 'tuple[int, int, int, int] | None':
    """(st_dev, st_ino, birth seconds, birth nanoseconds) of a file, via statx.

    An inode number alone is reused as soon as a file is deleted; with its birth
    time it names one file for good. None when the filesystem records no birth time.
    """
    buf = _ffi.Buffer(256)
    nr = {"x86_64": 332, "aarch64": 291}[_MACHINE]
    _ffi.syscall(nr, fd, path, flags, _STATX_INO_BTIME, buf.address)
    raw = buf.raw()
    if not int.from_bytes(raw[0:4], "little") & 0x800:
        return None
    dev = os.makedev(int.from_bytes(raw[136:140], "little"), int.from_bytes(raw[140:144], "little"))
    return (dev, int.from_bytes(raw[32:40], "little"),
            int.from_bytes(raw[80:88], "little", signed=True), int.from_bytes(raw[88:92], "little"))


class EffectiveCapsDropped:
    """Run a block with an empty effective capability set (permitted kept), then restore it.

    The mediator performs socket calls for the sandbox; the kernel checks the
    *caller's* capabilities for some of them (privileged ports, netlink groups,
    directory permissions). Dropping the effective set makes those checks see
    what the sandbox would be: nothing.
    """

    def __enter__(self) -> None:
        self._saved = b""
        if os.geteuid() != 0 and not holds_capabilities():
            return
        header = _LINUX_CAPABILITY_VERSION_3.to_bytes(4, "little") + (0).to_bytes(4, "little")
        data = _ffi.Buffer(24)
        _ffi.syscall(_SYS_CAPGET, header, data.address)
        self._saved = data.raw()
        dropped = bytearray(self._saved)
        dropped[0:4] = dropped[12:16] = b"\0\0\0\0"  # effective words of both halves
        _ffi.syscall(_SYS_CAPSET, header, bytes(dropped))

    def __exit__(self, *exc: object) -> None:
        if self._saved:
            header = _LINUX_CAPABILITY_VERSION_3.to_bytes(4, "little") + (0).to_bytes(4, "little")
            _ffi.syscall(_SYS_CAPSET, header, self._saved)


_SYS_CAPGET = {"x86_64": 125, "aarch64": 90}.get(_MACHINE, -1)
_SYS_CAPSET = {"x86_64": 126, "aarch64": 91}.get(_MACHINE, -1)


# -- namespaces, mounts, resource limits (used by nono.sandbox.isolation / limits) --------
CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x2, 0x4, 0x8
MS_REC, MS_PRIVATE = 0x4000, 0x40000
RLIMIT_CPU, RLIMIT_FSIZE, RLIMIT_NPROC, RLIMIT_NOFILE, RLIMIT_AS = 0, 1, 6, 7, 9
RLIM_INFINITY = (1 << 64) - 1
_SYS_UNSHARE = {"x86_64": 272, "aarch64": 97}.get(_MACHINE, -1)
_SYS_MOUNT = {"x86_64": 165, "aarch64": 40}.get(_MACHINE, -1)
_SYS_PRLIMIT64 = {"x86_64": 302, "aarch64": 261}.get(_MACHINE, -1)


def unshare(flags: int) -> None:
    """``unshare(2)``: move the calling (single-threaded) process into new namespaces."""
    try:
        _ffi.syscall(_SYS_UNSHARE, flags)
    except OSError as exc:
        raise KernelError(f"unshare failed: {exc.strerror}", syscall="unshare", errno=exc.errno or 0) from exc


def mount(source: bytes | None, target: bytes, fstype: bytes | None, flags: int) -> None:
    """``mount(2)`` without data."""
    try:
        _ffi.syscall(_SYS_MOUNT, source, target, fstype, flags, None)
    except OSError as exc:
        raise KernelError(f"mount {target.decode(errors='replace')} failed: {exc.strerror}", syscall="mount",
                          errno=exc.errno or 0) from exc


def get_rlimit(resource: int) -> tuple[int, int]:
    """(soft, hard) for ``resource`` of this process; ``RLIM_INFINITY`` for unlimited."""
    buf = _ffi.Buffer(16)
    _ffi.syscall(_SYS_PRLIMIT64, 0, resource, None, buf.address)
    raw = buf.raw()
    return int.from_bytes(raw[:8], "little"), int.from_bytes(raw[8:], "little")


def set_rlimit(resource: int, value: int) -> None:
    """Lower both the soft and the hard limit of ``resource`` to ``value`` (never raises a limit)."""
    _soft, hard = get_rlimit(resource)
    value = min(value, hard)
    try:
        _ffi.syscall(_SYS_PRLIMIT64, 0, resource, value.to_bytes(8, "little") * 2, None)
    except OSError as exc:
        raise KernelError(f"setrlimit({resource}) failed: {exc.strerror}", syscall="prlimit64",
                          errno=exc.errno or 0) from exc
