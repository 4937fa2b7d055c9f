"""Network attack probe: run inside (or, as a control, outside) a nono sandbox.

Usage: python net_probe.py ACTION [ACTION ...]

Each ACTION is ``kind:arg[:arg]``; the probe tries it and prints one JSON
object on the last line of stdout mapping every ACTION to ``"ok"`` (or
``"ok:<detail>"``) or ``"<step>:<ERRNO>"`` (the step that failed and the errno
name), e.g. ``"connect:EACCES"``. Every blocking call has a timeout. Only
loopback addresses are ever used (the tests pass 127.0.0.1 / ::1 only).

Kinds:
  tcp_connect:HOST:PORT     TCP connect (IPv4 or IPv6 literal), send b"hello"
  tcp_listen:HOST:PORT      TCP bind + listen
  tcp_self:PORT             bind+listen on 127.0.0.1:PORT, connect to it, accept
  udp_sendto:HOST:PORT      UDP socket + sendto
  tfo:PORT                  TCP Fast Open: sendto(MSG_FASTOPEN) to 127.0.0.1:PORT
  tfo_msg:PORT              TCP Fast Open through sendmsg(MSG_FASTOPEN)
  mptcp                     socket(AF_INET, SOCK_STREAM, IPPROTO_MPTCP)
  raw                       socket(AF_INET, SOCK_RAW, IPPROTO_ICMP)
  packet                    socket(AF_PACKET, SOCK_RAW, ETH_P_ALL)
  vsock                     socket(AF_VSOCK, SOCK_STREAM)
  sctp                      socket(AF_INET, SOCK_STREAM, IPPROTO_SCTP)
  netlink:PROTO             socket(AF_NETLINK, SOCK_RAW, PROTO)
  unix_connect:PATH         AF_UNIX stream connect, send b"hi"
  unix_abstract:NAME        AF_UNIX stream connect to the abstract name "\\0NAME"
  unix_dgram_sendto:PATH    AF_UNIX datagram sendto(PATH)
  unix_dgram_connect:PATH   AF_UNIX datagram connect(PATH) then send
  unix_dgram_sendmsg:PATH   AF_UNIX datagram sendmsg with PATH as msg_name
  unix_fdpath:PATH          open(PATH, O_PATH), connect to /proc/self/fd/N (magic link)
  unix_pidfdpath:PATH       the same through /proc/<pid>/fd/N
  tcp_listen_auto:HOST      TCP listen() without bind(): the kernel picks a port

Prefix any action with ``thread/`` to run it in a second thread (joined with
a timeout), e.g. ``thread/tcp_connect:127.0.0.1:8080``.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import struct
import sys
import threading

TIMEOUT = 3.0
MSG_FASTOPEN = 0x20000000
IPPROTO_MPTCP = 262
AF_VSOCK = 40
ETH_P_ALL = 0x0003


class Step(Exception):
    def __init__(self, step: str, exc: OSError) -> None:
        super().__init__(step)
        self.step, self.exc = step, exc


def _do(step: str, fn, *args):
    try:
        return fn(*args)
    except OSError as exc:
        raise Step(step, exc) from None


def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _sock(family: int, type_: int, proto: int = 0, *, blocking: bool = False) -> socket.socket:
    s = _do("socket", socket.socket, family, type_, proto)
    if blocking:  # a real blocking socket, bounded by the kernel's send/receive timeouts
        tv = struct.pack("ll", int(TIMEOUT), 0)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, tv)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, tv)
    else:
        s.settimeout(TIMEOUT)
    return s


def _name(exc: OSError) -> str:
    if exc.errno is None:
        return "TIMEOUT" if isinstance(exc, TimeoutError) else type(exc).__name__
    return errno.errorcode.get(exc.errno, str(exc.errno))


def tcp_connect(host: str, port: str) -> str:
    with _sock(_family(host), socket.SOCK_STREAM) as s:
        _do("connect", s.connect, (host, int(port)))
        _do("send", s.sendall, b"hello")
    return "ok"


def tcp_listen(host: str, port: str) -> str:
    with _sock(_family(host), socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        _do("bind", s.bind, (host, int(port)))
        _do("listen", s.listen, 4)
    return "ok"


def tcp_self(port: str) -> str:
    with _sock(socket.AF_INET, socket.SOCK_STREAM) as srv:
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        _do("bind", srv.bind, ("127.0.0.1", int(port)))
        _do("listen", srv.listen, 4)
        with _sock(socket.AF_INET, socket.SOCK_STREAM) as c:
            _do("connect", c.connect, srv.getsockname())
            conn, _ = _do("accept", srv.accept)
            with conn:
                conn.settimeout(TIMEOUT)
                _do("send", c.sendall, b"ping")
                data = _do("recv", conn.recv, 16)
    return "ok:" + data.decode()


def udp_sendto(host: str, port: str) -> str:
    with _sock(_family(host), socket.SOCK_DGRAM) as s:
        _do("sendto", s.sendto, b"udp", (host, int(port)))
    return "ok"


def tfo(port: str) -> str:
    with _sock(socket.AF_INET, socket.SOCK_STREAM, blocking=True) as s:
        _do("sendto", s.sendto, b"tfo", MSG_FASTOPEN, ("127.0.0.1", int(port)))
    return "ok"


def tfo_msg(port: str) -> str:
    with _sock(socket.AF_INET, socket.SOCK_STREAM, blocking=True) as s:
        _do("sendmsg", s.sendmsg, [b"tfo"], [], MSG_FASTOPEN, ("127.0.0.1", int(port)))
    return "ok"


def mptcp() -> str:
    _sock(socket.AF_INET, socket.SOCK_STREAM, IPPROTO_MPTCP).close()
    return "ok"


def raw() -> str:
    _sock(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP).close()
    return "ok"


def packet() -> str:
    _sock(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL)).close()
    return "ok"


def vsock() -> str:
    _sock(AF_VSOCK, socket.SOCK_STREAM).close()
    return "ok"


def sctp() -> str:
    _sock(socket.AF_INET, socket.SOCK_STREAM, 132).close()
    return "ok"


def netlink(proto: str) -> str:
    _sock(socket.AF_NETLINK, socket.SOCK_RAW, int(proto)).close()
    return "ok"


def unix_connect(path: str) -> str:
    with _sock(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        _do("connect", s.connect, path)
        _do("send", s.sendall, b"hi")
    return "ok"


def unix_abstract(name: str) -> str:
    with _sock(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        _do("connect", s.connect, b"\0" + name.encode())
    return "ok"


def unix_dgram_sendto(path: str) -> str:
    with _sock(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        _do("sendto", s.sendto, b"dgram-sendto", path)
    return "ok"


def unix_dgram_connect(path: str) -> str:
    with _sock(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        _do("connect", s.connect, path)
        _do("send", s.send, b"dgram-connect")
    return "ok"


def unix_dgram_sendmsg(path: str) -> str:
    with _sock(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        _do("sendmsg", s.sendmsg, [b"dgram-sendmsg"], [], 0, path)
    return "ok"


def _fdpath(path: str, template: str) -> str:
    fd = _do("open", os.open, path, os.O_PATH | os.O_CLOEXEC)
    try:
        return unix_connect(template.format(pid=os.getpid(), fd=fd))
    finally:
        os.close(fd)


def unix_fdpath(path: str) -> str:
    return _fdpath(path, "/proc/self/fd/{fd}")


def unix_pidfdpath(path: str) -> str:
    return _fdpath(path, "/proc/{pid}/fd/{fd}")


def tcp_listen_auto(host: str) -> str:
    with _sock(_family(host), socket.SOCK_STREAM) as s:
        _do("listen", s.listen, 4)
        return f"ok:{s.getsockname()[1]}"


def run(action: str) -> str:
    if action.startswith("thread/"):
        box = ["thread:no answer"]
        t = threading.Thread(target=lambda: box.__setitem__(0, run(action[len("thread/"):])), daemon=True)
        t.start()
        t.join(TIMEOUT + 5)
        return box[0]
    kind, _, rest = action.partition(":")
    fn = globals().get(kind)
    if kind.startswith("_") or not callable(fn):
        return "usage:unknown action"
    args = [] if not rest else (rest.rsplit(":", 1) if kind in ("tcp_connect", "tcp_listen", "udp_sendto") else [rest])
    try:
        return fn(*args)
    except Step as st:
        return f"{st.step}:{_name(st.exc)}"
    except OSError as exc:
        return f"other:{_name(exc)}"


def main() -> None:
    results = {a: run(a) for a in sys.argv[1:]}
    sys.stdout.write(json.dumps(results) + "\n")


if __name__ == "__main__":
    main()
