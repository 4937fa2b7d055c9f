"""Low-level file helpers: atomic writes, batched durability, clone-or-copy.

Every store file is written to a temporary name in its final directory and
renamed into place, so a reader (or a crash) only ever sees a whole file.
"""

import os

_FICLONE = 0x40049409
_SYS_SYNCFS = {"x86_64": 306, "aarch64": 267}.get(os.uname().machine, -1)
CHUNK = 1 << 20

_clone_ok: 'dict[int, bool]' = {}  # st_dev -> FICLONE works there


def tmp_name(name: str) -> str:
    """A temporary sibling name for ``name`` (hidden, unique per call)."""
    return f".{name}.{os.getpid()}.{os.urandom(4).hex()}.tmp"


def write_all(fd: int, data: 'bytes | memoryview') -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def fsync_dir(path: str) -> None:
    """Make a rename or unlink inside ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str, data: bytes, *, mode: int = 0o600, sync: bool = True) -> None:
    """Write ``data`` to ``path``: temp file in the same directory, fsync, rename, fsync the directory."""
    directory, name = os.path.split(path)
    tmp = os.path.join(directory, tmp_name(name))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, mode)
    try:
        write_all(fd, data)
        if sync:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    os.rename(tmp, path)
    if sync:
        fsync_dir(directory)


def syncfs(path: str) -> None:
    """Flush every dirty page of the filesystem holding ``path`` (one call instead of an fsync per file)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if _SYS_SYNCFS < 0:
            os.sync()
            return
        from .. import _ffi

        try:
            _ffi.syscall(_SYS_SYNCFS, fd)
        except OSError:
            os.sync()
    finally:
        os.close(fd)


def try_clone(src_fd: int, dst_fd: int, dev: int) -> bool:
    """Copy-on-write clone ``src_fd`` into ``dst_fd`` (``FICLONE``); False where the filesystem cannot."""
    if _clone_ok.get(dev) is False:
        return False
    import fcntl

    try:
        fcntl.ioctl(dst_fd, _FICLONE, src_fd)
    except OSError:
        _clone_ok[dev] = False
        return False
    _clone_ok[dev] = True
    return True


def copy_fd(src_fd: int, dst_fd: int) -> None:
    """Copy all of ``src_fd`` (from offset 0) into ``dst_fd``: in-kernel where possible."""
    offset = 0
    try:
        while True:
            n = os.copy_file_range(src_fd, dst_fd, CHUNK * 8, offset)
            if n == 0:
                return
            offset += n
    except OSError:
        pass
    os.lseek(src_fd, offset, os.SEEK_SET)
    os.lseek(dst_fd, offset, os.SEEK_SET)
    while True:
        chunk = os.read(src_fd, CHUNK)
        if not chunk:
            return
        write_all(dst_fd, chunk)
