"""Moving bytes between two sockets on the event loop, without a buffer per connection.

A :class:`Pump` moves one direction. It starts in copy mode: ``recv_into`` a buffer
shared by every pump (the loop runs one callback at a time), then ``send`` at once;
only bytes the destination would not take are kept, per pump. A direction that keeps
filling the buffer is bulk traffic and switches to ``splice(2)`` through a pipe of
its own (socket -> pipe -> socket, no copy through Python). So idle or chatty
tunnels cost two sockets and no buffer, and bulk tunnels avoid user-space copies.

Readiness comes from ``loop.add_reader``/``add_writer`` (a selector event loop).
"""

import asyncio
import os
import socket
import time
from collections.abc import Callable

_SHARED = bytearray(128 * 1024)
_SHARED_VIEW = memoryview(_SHARED)
_FULL_READS_FOR_SPLICE = 4
_PIPE_SIZE = 1024 * 1024
_F_SETPIPE_SZ = 1031
_SPLICE_FLAGS = getattr(os, "SPLICE_F_MOVE", 1) | getattr(os, "SPLICE_F_NONBLOCK", 2)
_RETRY = (BlockingIOError, InterruptedError)


def _new_pipe() -> 'tuple[int, int, int] | None':
    """A non-blocking pipe (read fd, write fd, capacity), or None if none can be had."""
    if not hasattr(os, "splice"):
        return None
    try:
        r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    size = 65536
    try:
        import fcntl

        size = fcntl.fcntl(w, _F_SETPIPE_SZ, _PIPE_SIZE)
    except OSError:
        pass
    return r, w, size


class Pump:
    """One direction of a relay: ``src`` -> ``dst``. Calls ``on_done(self, error)`` once."""

    def __init__(self, loop: asyncio.AbstractEventLoop, src: socket.socket, dst: socket.socket,
                 on_done: 'Callable[[Pump, BaseException | None], None]', touch: 'Callable[[], None]') -> None:
        self.loop = loop
        self.src, self.dst = src, dst
        self.src_fd, self.dst_fd = src.fileno(), dst.fileno()
        self.on_done = on_done
        self.touch = touch
        self.bytes = 0
        self.finished = False
        self.half_close = True
        self._pending: memoryview | None = None
        self._pipe: tuple[int, int, int] | None = None
        self._in_pipe = 0
        self._full_reads = 0
        self._eof = False
        self._reading = False
        self._writing = False

    # -- registration ------------------------------------------------------------------
    def start(self, initial: bytes = b"") -> None:
        """Begin pumping; ``initial`` bytes (already read from ``src``) go first."""
        if initial:
            self._queue(memoryview(initial))
        if self._pending is not None:
            self._want_write()
        else:
            self._want_read()

    def _want_read(self) -> None:
        if self._writing:
            self.loop.remove_writer(self.dst_fd)
            self._writing = False
        if not self._reading:
            self.loop.add_reader(self.src_fd, self._on_readable)
            self._reading = True

    def _want_write(self) -> None:
        if self._reading:
            self.loop.remove_reader(self.src_fd)
            self._reading = False
        if not self._writing:
            self.loop.add_writer(self.dst_fd, self._on_writable)
            self._writing = True

    def stop(self) -> None:
        """Unregister from the loop and free the pipe (sockets stay open)."""
        if self._reading:
            self.loop.remove_reader(self.src_fd)
            self._reading = False
        if self._writing:
            self.loop.remove_writer(self.dst_fd)
            self._writing = False
        if self._pipe is not None:
            os.close(self._pipe[0])
            os.close(self._pipe[1])
            self._pipe = None

    def _finish(self, error: 'BaseException | None') -> None:
        if self.finished:
            return
        self.finished = True
        self.stop()
        if error is None and self.half_close:
            try:
                self.dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        self.on_done(self, error)

    # -- data --------------------------------------------------------------------------
    def _queue(self, data: memoryview) -> None:
        """Send what the destination takes now; keep the rest (copied) as pending."""
        try:
            sent = self.dst.send(data)
        except _RETRY:
            sent = 0
        self.bytes += sent
        self._pending = memoryview(bytes(data[sent:])) if sent < len(data) else None

    def _on_readable(self) -> None:
        try:
            if self._pipe is not None:
                self._splice_in()
            else:
                self._copy_in()
        except _RETRY:
            return
        except OSError as exc:
            self._finish(exc)
            return
        self.touch()
        if self._eof and self._pending is None and not self._in_pipe:
            self._finish(None)
        elif self._pending is not None or self._in_pipe:
            self._want_write()

    def _copy_in(self) -> None:
        n = self.src.recv_into(_SHARED)
        if n == 0:
            self._eof = True
            return
        self._queue(_SHARED_VIEW[:n])
        if n == len(_SHARED):
            self._full_reads += 1
            if self._full_reads >= _FULL_READS_FOR_SPLICE and self._pending is None:
                self._pipe = _new_pipe()
        else:
            self._full_reads = 0

    def _splice_in(self) -> None:
        assert self._pipe is not None
        n = os.splice(self.src_fd, self._pipe[1], self._pipe[2], flags=_SPLICE_FLAGS)
        if n == 0:
            self._eof = True
            return
        self._in_pipe += n
        self._splice_out()

    def _splice_out(self) -> None:
        assert self._pipe is not None
        while self._in_pipe:
            try:
                n = os.splice(self._pipe[0], self.dst_fd, self._in_pipe, flags=_SPLICE_FLAGS)
            except _RETRY:
                return
            self._in_pipe -= n
            self.bytes += n

    def _on_writable(self) -> None:
        try:
            if self._pending is not None:
                self._queue(self._pending)
            if self._in_pipe:
                self._splice_out()
        except OSError as exc:
            self._finish(exc)
            return
        self.touch()
        if self._pending is None and not self._in_pipe:
            if self._eof:
                self._finish(None)
            else:
                self._want_read()


class Relay:
    """Both directions between ``a`` and ``b``; :meth:`wait` returns when both ended.

    The ``b -> a`` direction starts at once; ``a -> b`` starts with :meth:`start_up`
    (the server inspects the client's first bytes before relaying them).
    An error in either direction, or ``idle_timeout`` seconds without traffic,
    ends the whole relay. The sockets are the caller's to close.
    """

    def __init__(self, a: socket.socket, b: socket.socket, idle_timeout: float) -> None:
        self.loop = asyncio.get_running_loop()
        self.idle_timeout = idle_timeout
        self.last = time.monotonic()
        self.error: BaseException | None = None
        self._done = self.loop.create_future()
        self.up = Pump(self.loop, a, b, self._pump_done, self._touch)
        self.down = Pump(self.loop, b, a, self._pump_done, self._touch)

    def _touch(self) -> None:
        self.last = time.monotonic()

    def _pump_done(self, pump: Pump, error: 'BaseException | None') -> None:
        if error is not None and self.error is None:
            self.error = error
        if (error is not None or (self.up.finished and self.down.finished)) and not self._done.done():
            self._done.set_result(None)

    def start_down(self, initial: bytes = b"") -> None:
        self.down.start(initial)

    def start_up(self, initial: bytes = b"") -> None:
        self.up.start(initial)

    def skip_up(self) -> None:
        """Do not relay ``a -> b`` at all (plain HTTP: the request body is sent by the caller)."""
        self.up.finished = True
        self._pump_done(self.up, None)

    @property
    def ended(self) -> 'asyncio.Future[None]':
        """Resolved when both directions ended or one failed."""
        return self._done

    async def wait(self) -> bool:
        """Until both directions end (True), an error (True) or the idle timeout (False)."""
        try:
            while not self._done.done():
                remaining = self.last + self.idle_timeout - time.monotonic()
                if remaining <= 0:
                    return False
                try:
                    await asyncio.wait_for(asyncio.shield(self._done), remaining)
                except asyncio.TimeoutError:
                    continue
            return True
        finally:
            self.up.stop()
            self.down.stop()
