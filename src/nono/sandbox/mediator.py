"""Mediation of AF_UNIX traffic for the sandbox, via seccomp user notification.

Landlock (ABI <= 7) does not check ``connect()`` to a pathname unix socket, so
a sandboxed process could talk to the Docker daemon, the user's ssh-agent or
the D-Bus session bus. The seccomp filter hands ``connect`` and addressed
sends to this unsandboxed mediator, which decides from the plan:

* sockets that are not AF_UNIX: continue (Landlock's TCP rules apply);
* AF_UNIX ``connect`` to a pathname: allowed only beneath a grant you made
  (``--allow``/``--read``/``--write``/``--allow-cwd``/``--allow-unix-socket``,
  not the system defaults such as ``/tmp``) and not inside a deny group. The
  mediator performs the connect itself on a duplicate of the sandbox's socket,
  with the path it checked, so the sandbox cannot swap the address after the
  check; it then checks the peer's bound address too (a swapped symlink shows
  up there) and shuts the socket down if it is not allowed;
* abstract and unnamed AF_UNIX addresses: refused (EPERM);
* ``listen`` (only sent here when the network is restricted): refused
  (EACCES) on an AF_INET/AF_INET6 socket that is not bound yet, because the
  kernel would bind it to a free port itself, and Landlock checks only
  ``bind()``. A bound socket was checked by Landlock at ``bind()`` and cannot
  be re-bound, so it continues;
* datagrams with an explicit address (``sendto``/``sendmsg`` with a name):
  refused (EACCES), ``connect()`` first; ``sendmsg`` on a connected datagram
  socket is performed by the mediator (no ancillary data), so the address
  cannot be swapped in after the check; ``sendmmsg`` on datagram unix sockets
  is refused. Stream and seqpacket sockets continue (the kernel ignores or
  rejects an address on them).
"""

import fcntl
import os

from ..kernel import process
from ..kernel import seccomp as sc

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .plan import Plan

_SOL_SOCKET = 1
_SO_TYPE = 3
_SOCK_STREAM, _SOCK_DGRAM, _SOCK_SEQPACKET = 1, 2, 5
_EPERM, _EBADF, _EACCES, _EINVAL, _ENOTSOCK, _ENOMEM = 1, 9, 13, 22, 88, 12
_MSG_DONTWAIT = 0x40
_MAX_DGRAM = 1 << 20


class Mediator:
    """Answers seccomp notifications for one listener fd."""

    def __init__(self, listener: int, plan: 'Plan') -> None:
        self.fd = listener
        self.plan = plan
        a = sc.current_arch().nr
        self._connect, self._sendto, self._sendmsg, self._sendmmsg = a["connect"], a["sendto"], a["sendmsg"], a["sendmmsg"]
        self._listen = a["listen"]
        self.denials: list[str] = []

    def handle(self) -> bool:
        """Receive and answer one notification. False when no sandboxed process is left."""
        buf = bytearray(sc.NOTIF_SIZE)
        try:
            fcntl.ioctl(self.fd, sc.IOCTL_NOTIF_RECV, buf, True)
        except OSError as exc:
            return exc.errno in (4, 2)  # EINTR, or ENOENT: the caller died before we read
        nid = int.from_bytes(buf[0:8], "little")
        pid = int.from_bytes(buf[8:12], "little")
        nr = int.from_bytes(buf[16:20], "little", signed=True)
        args = [int.from_bytes(buf[32 + 8 * i : 40 + 8 * i], "little") for i in range(6)]
        try:
            val, err, flags = self._decide(nid, pid, nr, args)
        except Exception as exc:  # fail closed on anything unexpected
            if os.environ.get("NONO_DEBUG_MEDIATOR"):
                import traceback

                traceback.print_exception(exc)
            val, err, flags = 0, -_EPERM, 0
        resp = nid.to_bytes(8, "little") + val.to_bytes(8, "little", signed=True) + err.to_bytes(4, "little", signed=True) + flags.to_bytes(4, "little")
        try:
            fcntl.ioctl(self.fd, sc.IOCTL_NOTIF_SEND, bytearray(resp), True)
        except OSError:
            pass  # the caller died or was interrupted: nothing to answer
        return True

    # -- decisions -----------------------------------------------------------
    def _decide(self, nid: int, pid: int, nr: int, args: list[int]) -> tuple[int, int, int]:
        cont = (0, 0, sc.USER_NOTIF_FLAG_CONTINUE)
        try:
            pidfd = _pidfd_for_thread(pid)
        except OSError:
            return 0, -_EPERM, 0
        try:
            fcntl.ioctl(self.fd, sc.IOCTL_NOTIF_ID_VALID, bytearray(nid.to_bytes(8, "little")), True)
            try:
                sock_fd = process.pidfd_getfd(pidfd, args[0] & 0xFFFFFFFF)
            except OSError as exc:
                return 0, -(exc.errno or _EBADF), 0
        finally:
            os.close(pidfd)
        import _socket

        try:
            sock = _socket.socket(fileno=sock_fd)
        except OSError:
            os.close(sock_fd)
            return 0, -_ENOTSOCK, 0
        try:
            if nr == self._listen:
                if sock.family in (_socket.AF_INET, _socket.AF_INET6) and sock.getsockname()[1] == 0:
                    return self._deny(pid, "listen() on an unbound TCP socket (the kernel would pick a port)", _EACCES)
                return cont
            if sock.family != _socket.AF_UNIX:
                return cont
            if nr == self._connect:
                return self._do_connect(sock, pid, args)
            if sock.getsockopt(_SOL_SOCKET, _SO_TYPE) in (_SOCK_STREAM, _SOCK_SEQPACKET):
                return cont
            if nr == self._sendto:
                return self._deny(pid, "datagram to an explicit unix address", _EACCES)
            if nr == self._sendmsg:
                return self._do_sendmsg(sock, pid, args)
            return self._deny(pid, "sendmmsg on a datagram unix socket", _EPERM)
        finally:
            sock.close()

    def _deny(self, pid: int, what: str, err: int) -> tuple[int, int, int]:
        if len(self.denials) < 100:
            self.denials.append(what)
        return 0, -err, 0

    def _do_connect(self, sock: object, pid: int, args: list[int]) -> tuple[int, int, int]:
        length = args[2] & 0xFFFFFFFF
        if length <= 2 or length > 110:
            return self._deny(pid, "unix connect to an unnamed address", _EINVAL)
        raw = _read_mem(pid, args[1], length)
        if int.from_bytes(raw[0:2], "little") != 1:
            return 0, -_EINVAL, 0
        name = raw[2:]
        if name[:1] == b"\0":
            return self._deny(pid, "unix connect to an abstract socket", _EPERM)
        path = os.fsdecode(name.split(b"\0", 1)[0])
        if not path.startswith("/"):
            path = os.path.join(os.readlink(f"/proc/{pid}/cwd"), path)
        real = os.path.realpath(path)
        if not self.plan.socket_allowed(real):
            return self._deny(pid, f"unix connect to {path}", _EACCES)
        flags = fcntl.fcntl(sock.fileno(), fcntl.F_GETFL)  # type: ignore[attr-defined]
        try:
            fcntl.fcntl(sock.fileno(), fcntl.F_SETFL, flags | os.O_NONBLOCK)  # type: ignore[attr-defined]
            sock.connect(real)  # type: ignore[attr-defined]
        except OSError as exc:
            return 0, -(exc.errno or _EACCES), 0
        finally:
            fcntl.fcntl(sock.fileno(), fcntl.F_SETFL, flags)  # type: ignore[attr-defined]
        try:
            peer = sock.getpeername()  # type: ignore[attr-defined]
        except OSError:
            peer = ""
        peer_s = os.fsdecode(peer) if isinstance(peer, (bytes, str)) else ""
        if not peer_s.startswith("/") or not self.plan.socket_allowed(os.path.realpath(peer_s)):
            try:
                sock.shutdown(2)  # type: ignore[attr-defined]
            except OSError:
                pass
            return self._deny(pid, f"unix connect to {path} (peer {peer_s or 'unnamed'})", _EACCES)
        return 0, 0, 0

    def _do_sendmsg(self, sock: object, pid: int, args: list[int]) -> tuple[int, int, int]:
        hdr = _read_mem(pid, args[1], 56)
        name_ptr = int.from_bytes(hdr[0:8], "little")
        name_len = int.from_bytes(hdr[8:12], "little")
        iov_ptr = int.from_bytes(hdr[16:24], "little")
        iov_len = int.from_bytes(hdr[24:32], "little")
        ctl_len = int.from_bytes(hdr[40:48], "little")
        if name_ptr and name_len:
            return self._deny(pid, "datagram to an explicit unix address", _EACCES)
        if ctl_len:
            return self._deny(pid, "ancillary data on a datagram unix socket", _EPERM)
        if iov_len > 1024:
            return 0, -_EINVAL, 0
        iovs = _read_mem(pid, iov_ptr, 16 * iov_len) if iov_len else b""
        chunks = []
        total = 0
        for i in range(iov_len):
            base = int.from_bytes(iovs[16 * i : 16 * i + 8], "little")
            ln = int.from_bytes(iovs[16 * i + 8 : 16 * i + 16], "little")
            total += ln
            if total > _MAX_DGRAM:
                return 0, -_ENOMEM, 0
            if ln:
                chunks.append(_read_mem(pid, base, ln))
        try:
            sent = sock.send(b"".join(chunks), (args[2] & 0xFFFFFFFF) | _MSG_DONTWAIT)  # type: ignore[attr-defined]
        except OSError as exc:
            return 0, -(exc.errno or _EPERM), 0
        return sent, 0, 0


_PIDFD_THREAD = 0x80  # O_EXCL: a pidfd for one thread (Linux 6.9+)


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


def _read_mem(pid: int, addr: int, length: int) -> bytes:
    fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY | os.O_CLOEXEC)
    try:
        data = os.pread(fd, length, addr)
    finally:
        os.close(fd)
    if len(data) != length:
        raise OSError(14, "short read of sandboxed memory")
    return data


def serve(mediator: 'Mediator') -> None:
    """Answer notifications until no sandboxed process is left."""
    import select

    poller = select.poll()
    poller.register(mediator.fd, select.POLLIN)
    while True:
        for _fd, ev in poller.poll():
            if ev & select.POLLIN:
                mediator.handle()
            elif ev & (select.POLLHUP | select.POLLERR):
                return


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
