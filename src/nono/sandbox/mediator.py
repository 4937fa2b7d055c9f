"""The unsandboxed side of the seccomp filter: socket operations done on the sandbox's behalf.

Landlock (ABI <= 7) does not check ``connect()`` to a pathname unix socket, so
a sandboxed process could talk to the Docker daemon (root on the host), the
user's ssh-agent or tmux server. The seccomp filter therefore hands
``connect`` and ``bind`` (and, with a restricted network, ``listen``) to this
mediator through seccomp user notification.

The one rule: **the mediator never answers "continue".** A continued system
call is re-executed by the kernel, which looks the fd number and the address up
again; another thread of the sandbox may have swapped either after the check
(seccomp_unotify(2) warns about exactly this). Instead the mediator takes its
own duplicate of the sandbox's socket (``pidfd_getfd``), decides, performs the
operation itself with the address it checked, and returns the result. The
sandbox's socket is the same open file description, so it ends up connected,
bound or listening.

Decisions:

* ``connect`` to a pathname unix socket: allowed only to a socket *file* the
  policy names (``--allow-unix-socket``, pinned when planning) or one the
  sandbox itself created (recorded at its ``bind``). The path is opened with
  ``O_PATH`` (following symlinks) and the mediator connects through
  ``/proc/self/fd/N``, so what was checked is what is connected; moving,
  linking or symlinking someone else's socket into a grant gains nothing.
  Abstract and unnamed addresses are refused.
* ``connect`` on TCP sockets with a restricted network: only to ports the
  policy opens (``--allow-connect-port``), like Landlock's rule would.
  Otherwise, and for every other family, the connect is performed as asked.
* ``bind`` of a pathname unix socket: allowed where Landlock would allow
  ``MAKE_SOCK`` (the directory is granted for writing and the path is not
  denied); done through an ``O_PATH`` descriptor of the checked directory, so
  the socket's address reads ``/proc/self/fd/N/name``. The new socket file's
  identity (device, inode, birth time) is recorded for later connects, unless
  its birth time shows the path was swapped for an older file. TCP ``bind``
  with a restricted network: only ports the policy opens (``--listen-port``),
  and only with the socket's own address family.
* Every operation runs with the mediator's effective capabilities dropped, so
  the kernel's own checks (privileged ports, netlink groups, directory
  permissions) see what the sandbox has: nothing.
* ``listen`` (restricted network): refused on a TCP socket that is not bound
  yet, because the kernel would pick a port itself, and Landlock checks only
  ``bind()``.
* A blocking ``connect`` that is still in progress is finished
  asynchronously: the caller stays blocked until the socket is writable,
  while the mediator serves other requests.
* Anything unexpected is refused (fail closed).
"""

import fcntl
import os
import time

from .. import _ffi
from ..kernel import process
from ..kernel import seccomp as sc

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .plan import Plan

_SOL_SOCKET = 1
_SO_ERROR, _SO_TYPE, _SO_DOMAIN = 4, 3, 39
_AF_UNSPEC, _AF_UNIX, _AF_INET, _AF_INET6 = 0, 1, 2, 10
_SOCK_STREAM = 1
_EPERM, _ENOENT, _EINTR, _EBADF, _EACCES = 1, 2, 4, 9, 13
_EINVAL, _ENOTSOCK, _ENAMETOOLONG, _ECONNREFUSED, _EINPROGRESS = 22, 88, 36, 111, 115
_EAGAIN, _EAFNOSUPPORT = 11, 97
_AT_SYMLINK_NOFOLLOW = 0x100
_PIDFD_THREAD = 0x80  # O_EXCL: a pidfd for one thread (Linux 6.9+)


class Mediator:
    """Answers seccomp notifications for one listener fd (see the module docstring)."""

    def __init__(self, listener: int, plan: 'Plan') -> None:
        self.fd = listener
        self.plan = plan
        nr = sc.current_arch().nr
        self._connect, self._bind, self._listen = nr["connect"], nr["bind"], nr["listen"]
        # Socket files the sandbox may connect to, by identity (dev, ino, birth time):
        # an inode number alone is reused as soon as its file is deleted.
        self.sockets: set[tuple[int, int, int, int]] = {tuple(u[1:5]) for u in plan.unix_sockets}  # type: ignore[misc]
        self._nocaps = process.EffectiveCapsDropped()
        self.denials: list[str] = []
        self.waiting: dict[int, tuple[int, int]] = {}  # our dup fd -> (notification id, flags to restore)
        self._new_waiting: list[int] = []

    # -- the notification loop -----------------------------------------------
    def handle(self) -> bool:
        """Receive and answer one notification. False when no sandboxed process is left."""
        buf = bytearray(sc.NOTIF_SIZE)
        try:
            fcntl.ioctl(self.fd, sc.IOCTL_NOTIF_RECV, buf, True)
        except OSError as exc:
            return exc.errno in (_EINTR, _ENOENT)  # ENOENT: the caller died before we read
        nid = int.from_bytes(buf[0:8], "little")
        tid = int.from_bytes(buf[8:12], "little")
        nr = int.from_bytes(buf[16:20], "little", signed=True)
        args = [int.from_bytes(buf[32 + 8 * i : 40 + 8 * i], "little") for i in range(6)]
        try:
            result = self._decide(nid, tid, nr, args)
        except Exception as exc:  # fail closed on anything unexpected
            if os.environ.get("NONO_DEBUG_MEDIATOR"):
                import traceback

                traceback.print_exception(exc)
            result = (0, -_EPERM)
        if result is not None:
            self._respond(nid, *result)
        return True

    def take_new_waiting(self) -> list[int]:
        """Descriptors of connects now in progress: poll them for POLLOUT, then call :meth:`complete`."""
        new, self._new_waiting = self._new_waiting, []
        return new

    def complete(self, fd: int) -> None:
        """Finish an in-progress connect on ``fd`` (our duplicate) and answer its caller."""
        nid, _flags = self.waiting.pop(fd)
        try:
            import _socket

            s = _socket.socket(fileno=fd)
            err = s.getsockopt(_SOL_SOCKET, _SO_ERROR)
            s.detach()
        except OSError as exc:
            err = exc.errno or _EPERM
        os.close(fd)
        self._respond(nid, 0, -err if err else 0)

    def close(self) -> None:
        for fd in list(self.waiting):
            os.close(fd)
        self.waiting.clear()

    def _respond(self, nid: int, val: int, err: int) -> None:
        resp = (nid.to_bytes(8, "little") + val.to_bytes(8, "little", signed=True)
                + err.to_bytes(4, "little", signed=True) + (0).to_bytes(4, "little"))
        try:
            fcntl.ioctl(self.fd, sc.IOCTL_NOTIF_SEND, bytearray(resp), True)
        except OSError:
            pass  # the caller died or was interrupted: nothing to answer

    def _deny(self, what: str, err: int) -> 'tuple[int, int]':
        if len(self.denials) < 100:
            self.denials.append(what)
        return 0, -err

    def _valid(self, nid: int) -> None:
        fcntl.ioctl(self.fd, sc.IOCTL_NOTIF_ID_VALID, bytearray(nid.to_bytes(8, "little")), True)

    # -- decisions -----------------------------------------------------------
    def _decide(self, nid: int, tid: int, nr: int, args: 'list[int]') -> 'tuple[int, int] | None':
        pidfd = _pidfd_for_thread(tid)
        try:
            self._valid(nid)  # the pidfd names the task that is waiting, not a reused pid
            try:
                dup = process.pidfd_getfd(pidfd, args[0] & 0xFFFFFFFF)
            except OSError as exc:
                return 0, -(exc.errno or _EBADF)
        finally:
            os.close(pidfd)
        keep = False
        try:
            family = _sockopt(dup, _SO_DOMAIN)
            if family is None:
                return 0, -_ENOTSOCK
            if nr == self._listen:
                return self._do_listen(dup, family, args[1] & 0xFFFFFFFF)
            length = args[2] & 0xFFFFFFFF
            if length > 128:
                return 0, -_EINVAL
            addr = self._read_mem(nid, tid, args[1], length) if length else b""
            if nr == self._connect:
                result = self._do_connect(nid, dup, family, addr, tid)
                keep = result is None
                return result
            if nr == self._bind:
                return self._do_bind(dup, family, addr, tid)
            return 0, -_EPERM
        finally:
            if not keep:
                os.close(dup)

    def _do_connect(self, nid: int, dup: int, family: int, addr: bytes, tid: int) -> 'tuple[int, int] | None':
        addr_family = int.from_bytes(addr[0:2], "little") if len(addr) >= 2 else -1
        if addr_family == _AF_UNSPEC:
            return self._perform(self._connect, dup, addr)  # dissolves an association
        if family == _AF_UNIX:
            if addr_family != _AF_UNIX:
                return 0, -_EINVAL
            name = addr[2:]
            if not name or name[0] == 0:
                return self._deny("unix connect to an abstract or unnamed address", _EPERM)
            path = name.split(b"\0", 1)[0]
            try:
                target = _open_path(path, tid, os.O_PATH)
            except OSError as exc:
                return 0, -(exc.errno or _ECONNREFUSED)
            try:
                st = os.fstat(target)
                import stat as _stat

                if not _stat.S_ISSOCK(st.st_mode):
                    return 0, -_ECONNREFUSED
                if process.file_identity(target) not in self.sockets:
                    return self._deny(f"unix connect to {os.fsdecode(path)}", _EACCES)
                # Non-blocking, like TCP: a server that never accepts must not stall the mediator.
                return self._connect_later(nid, dup, _sockaddr_un(b"/proc/self/fd/%d" % target))
            finally:
                os.close(target)
        if family in (_AF_INET, _AF_INET6) and self.plan.restrict_network and _sockopt(dup, _SO_TYPE) == _SOCK_STREAM:
            if addr_family != family or len(addr) < 4:
                return 0, -_EINVAL
            port = int.from_bytes(addr[2:4], "big")
            if port not in self.plan.connect_ports \
                    and not (port in self.plan.loopback_ports and _is_loopback(family, addr)) \
                    and not (port == self.plan.proxy_port and _is_proxy_address(family, addr)):
                return self._deny(f"TCP connect to port {port}", _EACCES)
        return self._connect_later(nid, dup, addr)

    def _do_bind(self, dup: int, family: int, addr: bytes, tid: int) -> 'tuple[int, int]':
        addr_family = int.from_bytes(addr[0:2], "little") if len(addr) >= 2 else -1
        if family == _AF_UNIX:
            if addr_family != _AF_UNIX:
                return 0, -_EINVAL
            name = addr[2:]
            if not name or name[0] == 0:
                return self._perform(self._bind, dup, addr)  # abstract name or autobind: no file
            path = name.split(b"\0", 1)[0]
            parent, _, base = path.rpartition(b"/")
            if base in (b"", b".", b".."):
                return 0, -_EINVAL
            if path.startswith(b"/") and not parent:
                parent = b"/"
            try:
                dirfd = _open_path(parent or b".", tid, os.O_PATH | os.O_DIRECTORY)
            except OSError as exc:
                return 0, -(exc.errno or _ENOENT)
            try:
                directory = os.readlink(f"/proc/self/fd/{dirfd}")
                if not self.plan.may_make_socket(directory, os.fsdecode(base)):
                    return self._deny(f"unix bind at {os.fsdecode(path)}", _EACCES)
                via = b"/proc/self/fd/%d/%s" % (dirfd, base)
                if len(via) > 107:
                    return 0, -_ENAMETOOLONG
                started = time.time()
                result = self._perform(self._bind, dup, _sockaddr_un(via))
                if result == (0, 0):
                    self._record(dirfd, base, started)
                return result
            finally:
                os.close(dirfd)
        if family in (_AF_INET, _AF_INET6):
            # Exactly the socket's own family: Linux accepts AF_UNSPEC for an AF_INET
            # bind to INADDR_ANY, which would skip the port check below.
            if addr_family != family or len(addr) < 4:
                return 0, -_EAFNOSUPPORT
            port = int.from_bytes(addr[2:4], "big")
            if self.plan.restrict_network and port not in self.plan.bind_ports:
                return self._deny(f"TCP bind to port {port}", _EACCES)
        return self._perform(self._bind, dup, addr)

    def _do_listen(self, dup: int, family: int, backlog: int) -> 'tuple[int, int]':
        import _socket

        s = _socket.socket(fileno=dup)
        try:
            if family in (_AF_INET, _AF_INET6) and s.getsockname()[1] == 0:
                return self._deny("listen() on an unbound TCP socket (the kernel would pick a port)", _EACCES)
            s.listen(min(backlog, 4096))
            return 0, 0
        except OSError as exc:
            return 0, -(exc.errno or _EPERM)
        finally:
            s.detach()

    def _record(self, dirfd: int, base: bytes, started: float) -> None:
        """Remember the socket the sandbox just created, unless the name was swapped meanwhile."""
        try:
            ident = process.file_identity(dirfd, base, _AT_SYMLINK_NOFOLLOW)
            mode = os.stat(base, dir_fd=dirfd, follow_symlinks=False).st_mode
        except OSError:
            return
        if ident is None or mode & 0o170000 != 0o140000 or ident[2] + ident[3] / 1e9 < started - 1.0:
            return  # no birth time to trust, not a socket, or an older file swapped in: not recorded
        self.sockets.add(ident)

    def _perform(self, nr: int, dup: int, addr: bytes) -> 'tuple[int, int]':
        """Run ``connect``/``bind`` on our duplicate with ``addr``, now."""
        buf = _ffi.Buffer(addr)
        try:
            with self._nocaps:  # the kernel's own checks see the sandbox's powers: none
                _ffi.syscall(nr, dup, buf.address if addr else None, len(addr))
            return 0, 0
        except OSError as exc:
            return 0, -(exc.errno or _EPERM)

    def _connect_later(self, nid: int, dup: int, addr: bytes) -> 'tuple[int, int] | None':
        """Connect without blocking the mediator: None means in progress, :meth:`complete` answers."""
        flags = fcntl.fcntl(dup, fcntl.F_GETFL)
        if flags & os.O_NONBLOCK:
            return self._perform(self._connect, dup, addr)  # the caller asked for non-blocking semantics
        fcntl.fcntl(dup, fcntl.F_SETFL, flags | os.O_NONBLOCK)
        try:
            result = self._perform(self._connect, dup, addr)
        finally:
            fcntl.fcntl(dup, fcntl.F_SETFL, flags)
        if result == (0, -_EINPROGRESS):
            self.waiting[dup] = (nid, flags)
            self._new_waiting.append(dup)
            return None
        return result

    def _read_mem(self, nid: int, tid: int, addr: int, length: int) -> bytes:
        fd = os.open(f"/proc/{tid}/mem", os.O_RDONLY | os.O_CLOEXEC)
        try:
            self._valid(nid)  # still the same task after opening its memory
            data = os.pread(fd, length, addr)
        finally:
            os.close(fd)
        if len(data) != length:
            raise OSError(14, "short read of sandboxed memory")
        return data


def _is_loopback(family: int, addr: bytes) -> bool:
    """Is a sockaddr_in/sockaddr_in6 address in 127.0.0.0/8, ::1 or ::ffff:127.0.0.0/104?"""
    if family == _AF_INET:
        return len(addr) >= 8 and addr[4] == 127
    if len(addr) < 24:
        return False
    ip = addr[8:24]
    return ip == bytes(15) + b"\x01" or (ip[:12] == bytes(10) + b"\xff\xff" and ip[12] == 127)


def _is_proxy_address(family: int, addr: bytes) -> bool:
    """Is a sockaddr_in/sockaddr_in6 address exactly 127.0.0.1 (or ::ffff:127.0.0.1), where the proxy listens?

    Not all of 127/8 or ::1: another local service on the proxy's port number
    there must stay out of reach.
    """
    if family == _AF_INET:
        return len(addr) >= 8 and addr[4:8] == b"\x7f\x00\x00\x01"
    return len(addr) >= 24 and addr[8:24] == bytes(10) + b"\xff\xff\x7f\x00\x00\x01"


def _sockopt(fd: int, opt: int) -> 'int | None':
    import _socket

    try:
        s = _socket.socket(fileno=fd)
    except OSError:
        return None
    try:
        return int(s.getsockopt(_SOL_SOCKET, opt))
    finally:
        s.detach()


def _sockaddr_un(path: bytes) -> bytes:
    return (_AF_UNIX).to_bytes(2, "little") + path + b"\0"


def _open_path(path: bytes, tid: int, flags: int) -> int:
    """Open ``path`` as the sandboxed thread would name it (its cwd, its ``/proc/self``)."""
    for own in (b"/proc/self/", b"/proc/thread-self/"):
        if path.startswith(own):
            path = b"/proc/%d/" % tid + path[len(own):]
    if path.startswith(b"/"):
        return os.open(path, flags | os.O_CLOEXEC)
    cwd = os.open(f"/proc/{tid}/cwd", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return os.open(path, flags | os.O_CLOEXEC, dir_fd=cwd)
    finally:
        os.close(cwd)


def _pidfd_for_thread(tid: int) -> int:
    """A pidfd for the task that raised the notification (it may be any thread)."""
    try:
        return os.pidfd_open(tid, _PIDFD_THREAD)
    except OSError as exc:
        if exc.errno != _EINVAL:
            raise
    with open(f"/proc/{tid}/status", "rb") as f:  # older kernels: the thread group leader
        for line in f:
            if line.startswith(b"Tgid:"):
                return os.pidfd_open(int(line.split()[1]))
    raise OSError(3, "no such process")


def serve(mediator: Mediator) -> None:
    """Answer notifications until no sandboxed process is left."""
    poller = process.Poller()
    poller.register(mediator.fd, process.POLLIN)
    while True:
        for fd, ev in poller.poll():
            if fd == mediator.fd:
                if ev & process.POLLIN:
                    mediator.handle()
                    for w in mediator.take_new_waiting():
                        poller.register(w, process.POLLOUT)
                elif ev & (process.POLLHUP | process.POLLERR | process.POLLNVAL):
                    mediator.close()
                    return
            else:
                poller.unregister(fd)
                mediator.complete(fd)


def serve_handoff(plan: 'Plan', target: int, report_r: int, ack_w: int) -> None:
    """Detached mediator side of :func:`~nono.sandbox.apply.spawn_detached_mediator`."""
    line = b""
    while not line.endswith(b"\n"):
        chunk = os.read(report_r, 64)
        if not chunk:
            return
        line += chunk
    if not line.startswith(b"L"):
        return
    pidfd = os.pidfd_open(target)
    listener = process.pidfd_getfd(pidfd, int(line[1:]))
    os.close(pidfd)
    os.write(ack_w, b"1")
    os.close(ack_w)
    os.close(report_r)
    serve(Mediator(listener, plan))
