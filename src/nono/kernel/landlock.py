"""Landlock: ABI detection, rulesets, path and port rules, scoping.

The constants come from ``include/uapi/linux/landlock.h``. Rights are plain
``int`` bit masks (an ``enum.IntFlag`` would cost an ``enum`` import on the
start-up path). ABI numbers are the kernel's: 1 (5.13) .. 7 (6.15); a newer
kernel is clamped to :data:`LATEST_ABI` so a kernel update never silently
changes what a policy means.
"""

import os

from .. import _ffi
from ..errors import KernelError

_SYS_CREATE_RULESET = 444
_SYS_ADD_RULE = 445
_SYS_RESTRICT_SELF = 446
_CREATE_RULESET_VERSION = 1 << 0
_RULE_PATH_BENEATH = 1
_RULE_NET_PORT = 2

LATEST_ABI = 7

# Filesystem rights.
EXECUTE = 1 << 0
WRITE_FILE = 1 << 1
READ_FILE = 1 << 2
READ_DIR = 1 << 3
REMOVE_DIR = 1 << 4
REMOVE_FILE = 1 << 5
MAKE_CHAR = 1 << 6
MAKE_DIR = 1 << 7
MAKE_REG = 1 << 8
MAKE_SOCK = 1 << 9
MAKE_FIFO = 1 << 10
MAKE_BLOCK = 1 << 11
MAKE_SYM = 1 << 12
REFER = 1 << 13  # ABI 2
TRUNCATE = 1 << 14  # ABI 3
IOCTL_DEV = 1 << 15  # ABI 5

FS_NAMES = {
    EXECUTE: "execute", WRITE_FILE: "write_file", READ_FILE: "read_file",
    READ_DIR: "read_dir", REMOVE_DIR: "remove_dir", REMOVE_FILE: "remove_file",
    MAKE_CHAR: "make_char", MAKE_DIR: "make_dir", MAKE_REG: "make_reg",
    MAKE_SOCK: "make_sock", MAKE_FIFO: "make_fifo", MAKE_BLOCK: "make_block",
    MAKE_SYM: "make_sym", REFER: "refer", TRUNCATE: "truncate", IOCTL_DEV: "ioctl_dev",
}

# Network rights (ABI 4).
NET_BIND_TCP = 1 << 0
NET_CONNECT_TCP = 1 << 1

# Scopes (ABI 6).
SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0
SCOPE_SIGNAL = 1 << 1

_FS_BY_ABI = {1: (1 << 13) - 1}
_FS_BY_ABI[2] = _FS_BY_ABI[1] | REFER
_FS_BY_ABI[3] = _FS_BY_ABI[2] | TRUNCATE
_FS_BY_ABI[4] = _FS_BY_ABI[3]
_FS_BY_ABI[5] = _FS_BY_ABI[4] | IOCTL_DEV
_FS_BY_ABI[6] = _FS_BY_ABI[5]
_FS_BY_ABI[7] = _FS_BY_ABI[6]

#: What "read" means: list, read and execute.
ACCESS_READ = READ_FILE | READ_DIR | EXECUTE
#: What "write" means: every other right the ABI knows.
ACCESS_WRITE = _FS_BY_ABI[LATEST_ABI] & ~ACCESS_READ
#: Rights that make sense on a single file; directory-only rights are trimmed.
FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV

#: The first ABI that has each protection, for messages and ``setup``.
FEATURE_ABI = {
    "filesystem": 1, "refer": 2, "truncate": 3, "tcp": 4, "ioctl_dev": 5,
    "scope_signal": 6, "scope_abstract_unix": 6, "audit_log": 7,
}

_abi_cache: int | None = None


def abi_version() -> int:
    """The kernel's Landlock ABI, clamped to :data:`LATEST_ABI`; 0 if unavailable."""
    global _abi_cache
    if _abi_cache is None:
        try:
            v = _ffi.syscall(_SYS_CREATE_RULESET, None, 0, _CREATE_RULESET_VERSION)
        except OSError:
            v = 0
        _abi_cache = min(v, LATEST_ABI)
    return _abi_cache


def fs_rights(abi: int) -> int:
    """Every filesystem right ABI ``abi`` knows."""
    return _FS_BY_ABI[min(abi, LATEST_ABI)] if abi > 0 else 0


def describe(access: int) -> str:
    """``read_file|read_dir|...`` for an access mask."""
    return "|".join(n for bit, n in FS_NAMES.items() if access & bit) or "none"


class Ruleset:
    """A Landlock ruleset under construction; ``fd`` is the kernel object.

    All filesystem rights of the running ABI are handled (denied unless a rule
    grants them). TCP rights are handled when ``handle_tcp`` is true and scopes
    are applied as given. Asking for TCP or scopes on a kernel without them
    raises :class:`KernelError`: callers decide beforehand what is optional.
    """

    __slots__ = ("abi", "fd", "handled_fs", "handled_net", "scoped")

    def __init__(self, *, handle_tcp: bool, scopes: int = 0, abi: int | None = None) -> None:
        self.abi = abi_version() if abi is None else abi
        if self.abi < 1:
            raise KernelError(
                "Landlock not available. Requires Linux kernel 5.13+ with Landlock enabled.",
                syscall="landlock_create_ruleset",
                hint="check that 'landlock' is listed in /sys/kernel/security/lsm or the lsm= boot parameter",
            )
        if handle_tcp and self.abi < 4:
            raise KernelError(
                f"network restriction needs Landlock ABI 4 (kernel 6.7+); this kernel has ABI {self.abi}",
                syscall="landlock_create_ruleset",
            )
        if scopes and self.abi < 6:
            raise KernelError(
                f"signal and abstract-socket scoping need Landlock ABI 6 (kernel 6.12+); this kernel has ABI {self.abi}",
                syscall="landlock_create_ruleset",
            )
        self.handled_fs = fs_rights(self.abi)
        self.handled_net = (NET_BIND_TCP | NET_CONNECT_TCP) if handle_tcp else 0
        self.scoped = scopes
        if self.abi >= 6:
            attr = _u64(self.handled_fs) + _u64(self.handled_net) + _u64(scopes)
        elif self.abi >= 4:
            attr = _u64(self.handled_fs) + _u64(self.handled_net)
        else:
            attr = _u64(self.handled_fs)
        try:
            self.fd = _ffi.syscall(_SYS_CREATE_RULESET, attr, len(attr), 0)
        except OSError as exc:
            raise KernelError(
                f"landlock_create_ruleset failed: {exc.strerror}", syscall="landlock_create_ruleset", errno=exc.errno or 0
            ) from exc
        os.set_inheritable(self.fd, False)

    @classmethod
    def adopt(cls, fd: int, *, handle_tcp: bool) -> 'Ruleset':
        """Wrap an existing ruleset fd (built elsewhere from the same plan)."""
        self = cls.__new__(cls)
        self.abi = abi_version()
        self.fd = fd
        self.handled_fs = fs_rights(self.abi)
        self.handled_net = (NET_BIND_TCP | NET_CONNECT_TCP) if handle_tcp else 0
        self.scoped = (SCOPE_SIGNAL | SCOPE_ABSTRACT_UNIX_SOCKET) if self.abi >= 6 else 0
        os.set_inheritable(fd, False)
        return self

    def allow_path_fd(self, path_fd: int, access: int, *, is_dir: bool) -> int:
        """Grant ``access`` beneath the file or directory open as ``path_fd``.

        Rights the ABI does not know are dropped; on a single file the
        directory-only rights are dropped. Returns the mask actually granted.
        """
        access &= self.handled_fs
        if not is_dir:
            access &= FILE_RIGHTS
        if not access:
            return 0
        attr = _u64(access) + path_fd.to_bytes(4, "little", signed=True)
        try:
            _ffi.syscall(_SYS_ADD_RULE, self.fd, _RULE_PATH_BENEATH, attr, 0)
        except OSError as exc:
            raise KernelError(
                f"landlock_add_rule failed for fd {path_fd}: {exc.strerror}", syscall="landlock_add_rule", errno=exc.errno or 0
            ) from exc
        return access

    def allow_port(self, port: int, access: int) -> None:
        """Allow TCP ``access`` (bind and/or connect) on ``port``."""
        if not self.handled_net:
            raise KernelError("TCP port rule on a ruleset that does not handle TCP")
        attr = _u64(access & self.handled_net) + _u64(port)
        try:
            _ffi.syscall(_SYS_ADD_RULE, self.fd, _RULE_NET_PORT, attr, 0)
        except OSError as exc:
            raise KernelError(
                f"landlock_add_rule failed for port {port}: {exc.strerror}", syscall="landlock_add_rule", errno=exc.errno or 0
            ) from exc

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def restrict_self(ruleset_fd: int, flags: int = 0) -> None:
    """Enforce the ruleset on the calling thread (``no_new_privs`` must be set)."""
    try:
        _ffi.syscall(_SYS_RESTRICT_SELF, ruleset_fd, flags)
    except OSError as exc:
        raise KernelError(
            f"landlock_restrict_self failed: {exc.strerror}", syscall="landlock_restrict_self", errno=exc.errno or 0
        ) from exc


def _u64(v: int) -> bytes:
    return v.to_bytes(8, "little")
