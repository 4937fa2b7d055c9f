"""Landlock denials from the kernel audit subsystem (Landlock ABI 7, Linux 6.15+).

With ABI 7 the kernel can log each denied access as an ``AUDIT_LANDLOCK_ACCESS`` record
(``domain=<id> blockers=fs.read_file path="/home/u/.ssh/id_rsa" dev=... ino=...``), plus one
``AUDIT_LANDLOCK_DOMAIN`` record per domain (``status=allocated ... pid=<pid that called
landlock_restrict_self>``), but **only while kernel auditing is enabled** (``audit_enabled=1``,
normally turned on by auditd or ``auditctl -e 1``). Three conditions, all needed:

1. ABI >= 7;
2. ``audit_enabled`` = 1 (read here with an ``AUDIT_GET`` request on a ``NETLINK_AUDIT`` socket,
   which needs ``CAP_AUDIT_CONTROL``; there is no /proc file for it);
3. a reader: the read-only multicast group ``AUDIT_NLGRP_READLOG`` needs ``CAP_AUDIT_READ`` in
   the initial user namespace (root), and works next to a running auditd.

Also, by default Landlock stops logging a domain's denials at the first ``execve`` after
``landlock_restrict_self``: the child must pass ``LANDLOCK_RESTRICT_SELF_LOG_NEW_EXEC_ON`` (2)
for the agent's own denials to be logged (``LOG_SAME_EXEC_OFF`` = 1, ``LOG_SUBDOMAINS_OFF`` = 4).

nono never turns kernel auditing on by itself: that is a machine-wide setting (every audit
rule and every sandbox on the host starts logging), and the administrator's call.

Usage from the supervisor (before fork, then after it)::

    ok, why = denials.probe()
    collector = denials.DenialCollector() if ok else None
    session = audit.session.begin(..., denials="collected" if collector else f"not observable ({why})")
    ... fork; the child calls landlock_restrict_self(fd, RESTRICT_SELF_FLAGS) ...
    collector.watch(child_pid)
    ... at exit: session.events("denial", collector.drain()); collector.close()
"""

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

LOG_SAME_EXEC_OFF = 1
LOG_NEW_EXEC_ON = 2
LOG_SUBDOMAINS_OFF = 4
#: The flags the supervised child should pass to landlock_restrict_self when denials are collected.
RESTRICT_SELF_FLAGS = LOG_NEW_EXEC_ON

_AF_NETLINK, _SOCK_RAW, _NETLINK_AUDIT = 16, 3, 9
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_AUDIT_GET = 1000
_AUDIT_NLGRP_READLOG = 1
AUDIT_LANDLOCK_ACCESS = 1423
AUDIT_LANDLOCK_DOMAIN = 1424
_NLM_F_REQUEST, _NLM_F_ACK = 1, 4

_cache: 'tuple[bool, str] | None' = None


def audit_status() -> 'dict[str, int]':
    """The kernel's ``audit_status`` (enabled, pid of auditd, lost, backlog...). Raises OSError."""
    import _socket

    s = _socket.socket(_AF_NETLINK, _SOCK_RAW, _NETLINK_AUDIT)
    try:
        s.settimeout(1.0)
        s.bind((0, 0))
        s.send((16).to_bytes(4, "little") + _AUDIT_GET.to_bytes(2, "little")
               + (_NLM_F_REQUEST | _NLM_F_ACK).to_bytes(2, "little") + (1).to_bytes(4, "little") + bytes(4))
        for _ in range(4):
            data = s.recv(65536)
            off = 0
            while off + 16 <= len(data):
                length = int.from_bytes(data[off:off + 4], "little")
                typ = int.from_bytes(data[off + 4:off + 6], "little")
                body = data[off + 16:off + length]
                if typ == _NLMSG_ERROR:
                    err = -int.from_bytes(body[:4], "little", signed=True)
                    if err:
                        raise OSError(err, os.strerror(err))
                elif typ == _AUDIT_GET and len(body) >= 32:
                    names = ("mask", "enabled", "failure", "pid", "rate_limit", "backlog_limit", "lost", "backlog")
                    return {n: int.from_bytes(body[i * 4:i * 4 + 4], "little") for i, n in enumerate(names)}
                if length < 16:
                    break
                off += (length + 3) & ~3
        raise OSError("no audit status reply")
    finally:
        s.close()


def probe(*, refresh: bool = False) -> 'tuple[bool, str]':
    """(observable, reason): can this process collect Landlock denials from the kernel audit log now?"""
    global _cache
    if _cache is not None and not refresh:
        return _cache
    _cache = _probe()
    return _cache


def _probe() -> 'tuple[bool, str]':
    from ..kernel.landlock import abi_version

    abi = abi_version()
    if abi < 7:
        return False, f"Landlock ABI {abi} < 7: this kernel cannot log Landlock denials (Linux 6.15+ can)"
    if os.geteuid() != 0:
        return False, "reading the kernel audit log needs CAP_AUDIT_READ (root); nono runs unprivileged"
    try:
        st = audit_status()
    except OSError as exc:
        if exc.errno in (1, 13):
            return False, "the kernel refused the audit status request (not in the initial user namespace, or " \
                          "no CAP_AUDIT_CONTROL)"
        if exc.errno in (93, 97, 43):  # EPROTONOSUPPORT, EAFNOSUPPORT: CONFIG_AUDIT=n
            return False, "this kernel has no audit subsystem (CONFIG_AUDIT=n)"
        return False, f"the kernel audit status could not be read ({exc})"
    if not st.get("enabled"):
        return False, ("kernel auditing is disabled (audit_enabled=0, no auditd): Landlock logs denials only "
                       "when auditing is enabled, e.g. by auditd or 'auditctl -e 1'")
    try:
        DenialCollector().close()
    except OSError as exc:
        return False, f"the audit log multicast group cannot be joined ({exc.strerror or exc})"
    return True, "kernel auditing is enabled" + (f" (auditd pid {st['pid']})" if st.get("pid") else "")


def parse_record(text: str) -> 'dict[str, str]':
    """``audit(1700000000.123:42): a=1 b="x y" c=...`` -> {"_serial": "42", "_time": "...", "a": "1", ...}."""
    out: 'dict[str, str]' = {}
    if text.startswith("audit("):
        close = text.find("):")
        stamp = text[6:close]
        t, _c, serial = stamp.partition(":")
        out["_time"], out["_serial"] = t, serial
        text = text[close + 2:]
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] == " ":
            i += 1
        eq = text.find("=", i)
        if eq < 0:
            break
        key = text[i:eq]
        j = eq + 1
        if j < n and text[j] == '"':
            end = text.find('"', j + 1)
            end = n if end < 0 else end
            out[key] = text[j + 1:end]
            i = end + 1
        else:
            end = text.find(" ", j)
            end = n if end < 0 else end
            value = text[j:end]
            if key in ("path", "exe", "comm", "name") and value and all(c in "0123456789ABCDEF" for c in value) \
                    and len(value) % 2 == 0:
                try:  # audit hex-encodes values with spaces or odd bytes
                    value = bytes.fromhex(value).decode("utf-8", "replace")
                except ValueError:
                    pass
            out[key] = value
            i = end
    return out


def _iso(stamp: str) -> str:
    from .store import iso

    try:
        return iso(float(stamp))
    except ValueError:
        return stamp


class DenialCollector:
    """A reader of the kernel audit log (``AUDIT_NLGRP_READLOG``) keeping the Landlock denials of watched pids.

    Open it before the sandboxed child starts (multicast delivers only what is logged while
    subscribed); :meth:`watch` the child's pid; :meth:`drain` (non-blocking) returns the
    denials of domains created by watched pids. ``fileno()`` can go into a poll loop.
    """

    MAX_PENDING = 10000

    def __init__(self) -> None:
        import _socket

        self._sock = _socket.socket(_AF_NETLINK, _SOCK_RAW, _NETLINK_AUDIT)
        try:
            self._sock.bind((0, 1 << (_AUDIT_NLGRP_READLOG - 1)))
            self._sock.setblocking(False)
            try:
                self._sock.setsockopt(1, 8, 1 << 20)  # SOL_SOCKET, SO_RCVBUF
            except OSError:
                pass
        except BaseException:
            self._sock.close()
            raise
        self.pids: set[int] = set()
        self.domains: 'dict[str, int]' = {}  # domain id -> pid that created it
        self._pending: 'list[dict[str, str]]' = []
        self.lost = 0

    def fileno(self) -> int:
        return int(self._sock.fileno())

    def watch(self, pid: int) -> None:
        self.pids.add(pid)

    def _read(self) -> None:
        while True:
            try:
                data = self._sock.recv(1 << 16)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno == 105:  # ENOBUFS: the kernel dropped records we were too slow for
                    self.lost += 1
                    continue
                return
            off = 0
            while off + 16 <= len(data):
                length = int.from_bytes(data[off:off + 4], "little")
                typ = int.from_bytes(data[off + 4:off + 6], "little")
                if length < 16:
                    break
                if typ in (AUDIT_LANDLOCK_ACCESS, AUDIT_LANDLOCK_DOMAIN):
                    rec = parse_record(data[off + 16:off + length].rstrip(b"\x00").decode("utf-8", "replace"))
                    rec["_type"] = str(typ)
                    self._feed(rec)
                off += (length + 3) & ~3

    def _feed(self, rec: 'dict[str, str]') -> None:
        if rec["_type"] == str(AUDIT_LANDLOCK_DOMAIN):
            if rec.get("status") == "allocated" and rec.get("pid", "").isdigit():
                self.domains[rec.get("domain", "")] = int(rec["pid"])
            return
        if len(self._pending) < self.MAX_PENDING:
            self._pending.append(rec)
        else:
            self.lost += 1

    def drain(self) -> 'list[dict[str, Any]]':
        """The new denials of watched domains, oldest first (each: time, domain, blockers, object fields)."""
        self._read()
        mine = {d for d, p in self.domains.items() if p in self.pids}
        out: 'list[dict[str, Any]]' = []
        keep: 'list[dict[str, str]]' = []
        for rec in self._pending:
            dom = rec.get("domain", "")
            if dom in mine:
                ev: 'dict[str, Any]' = {"at": _iso(rec.get("_time", "")), "domain": dom,
                                        "blockers": rec.get("blockers", "").split(",")}
                for k, v in rec.items():
                    if not k.startswith("_") and k not in ("domain", "blockers"):
                        ev[k] = v
                out.append(ev)
            elif dom not in self.domains:
                keep.append(rec)  # its domain record may still come (it follows the first denial)
        self._pending = keep[-self.MAX_PENDING:]
        return out

    def close(self) -> None:
        self._sock.close()
