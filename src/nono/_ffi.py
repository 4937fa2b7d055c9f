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

TYPE_CHECKING = False
if TYPE_CHECKING:  # the stubs' generic types (not subscriptable at run time)
    from ctypes import c_char as _CharData  # what _Char re-creates; mypy types .raw of c_char arrays

    _IntData = _ctypes._SimpleCData[int]
    _PtrData = _ctypes._SimpleCData[int | None]
    _CharArray = _ctypes.Array[_CharData]
else:
    _IntData = _PtrData = _CharData = _ctypes._SimpleCData
    _CharArray = _ctypes.Array


class _CLong(_IntData):
    _type_ = "l"


class _VoidP(_PtrData):
    _type_ = "P"


class _Char(_CharData):
    _type_ = "c"


class _Lib:
    def __init__(self) -> None:
        self._handle = _ctypes.dlopen(None, _RTLD_GLOBAL)  # type: ignore[arg-type]  # None: the main program


_LIBC = _Lib()


def _func(name: str, nargs: int) -> '_ctypes.CFuncPtr':
    class _Fn(_ctypes.CFuncPtr):
        _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
        _restype_ = _CLong
        _argtypes_ = (_VoidP,) * nargs

    return _Fn((name, _LIBC))  # type: ignore[arg-type]  # _ctypes only needs the library's _handle


_syscall = _func("syscall", 7)


_ARRAY_TYPES: 'dict[int, type[_CharArray]]' = {}


class Buffer:
    """A mutable, fixed-address byte buffer to hand to the kernel."""

    __slots__ = ("_arr", "address", "size")

    def __init__(self, data: bytes | int) -> None:
        size = data if isinstance(data, int) else len(data)
        arr_type = _ARRAY_TYPES.get(size)
        if arr_type is None:
            class _Arr(_CharArray):
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
    ret: int = _syscall(nr, *args, *_ZEROS[len(args)])
    if ret < 0:
        err = _ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return ret


def errno() -> int:
    return int(_ctypes.get_errno())
