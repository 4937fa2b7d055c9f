"""Minimal foreign-function access to libc, built on ``_ctypes`` directly.

Why not ``import ctypes``: on the ``nono run`` start-up path every millisecond
counts (the target is 1.5x a bare ``python -c pass``), and the ``ctypes``
package costs several milliseconds to import on our reference machine because
it defines dozens of types we never use. We need exactly three things: call
``syscall(2)``, own a mutable byte buffer with a stable address, and read
``errno``. ``_ctypes`` (the C half of ctypes, stable since Python 3.0) gives
all three for a fraction of the cost.
"""

import _ctypes
import os

_RTLD_GLOBAL = 0x100


class _CLong(_ctypes._SimpleCData):  # type: ignore[name-defined,misc]
    _type_ = "l"


class _VoidP(_ctypes._SimpleCData):  # type: ignore[name-defined,misc]
    _type_ = "P"


class _Char(_ctypes._SimpleCData):  # type: ignore[name-defined,misc]
    _type_ = "c"


class _Lib:
    def __init__(self) -> None:
        self._handle = _ctypes.dlopen(None, _RTLD_GLOBAL)


_LIBC = _Lib()


def _func(name: str, nargs: int) -> object:
    class _Fn(_ctypes.CFuncPtr):  # type: ignore[name-defined,misc]
        _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
        _restype_ = _CLong
        _argtypes_ = (_VoidP,) * nargs

    return _Fn((name, _LIBC))


_syscall = _func("syscall", 7)


_ARRAY_TYPES: dict[int, type] = {}


class Buffer:
    """A mutable, fixed-address byte buffer to hand to the kernel."""

    __slots__ = ("_arr", "address", "size")

    def __init__(self, data: bytes | int) -> None:
        size = data if isinstance(data, int) else len(data)
        arr_type = _ARRAY_TYPES.get(size)
        if arr_type is None:
            class _Arr(_ctypes.Array):  # type: ignore[name-defined,misc]
                _type_ = _Char
                _length_ = max(size, 1)

            arr_type = _ARRAY_TYPES[size] = _Arr
        self._arr = arr_type()
        self.size = size
        self.address: int = _ctypes.addressof(self._arr)
        if not isinstance(data, int) and data:
            self._arr.raw = data

    def raw(self) -> bytes:
        return bytes(self._arr.raw[: self.size])


_ZEROS = ((0, 0, 0, 0, 0, 0), (0, 0, 0, 0, 0), (0, 0, 0, 0), (0, 0, 0), (0, 0), (0,), ())


def syscall(nr: int, *args: int | bytes | None) -> int:
    """Call ``syscall(nr, *args)`` (ints, bytes or None; at most 6); raise ``OSError`` on failure.

    A :class:`Buffer` is passed by its ``address``.
    """
    ret: int = _syscall(nr, *args, *_ZEROS[len(args)])  # type: ignore[operator]
    if ret < 0:
        err = _ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return ret


def errno() -> int:
    return int(_ctypes.get_errno())
