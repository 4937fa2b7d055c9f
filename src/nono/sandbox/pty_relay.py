"""A pseudo-terminal between the user's terminal and the sandboxed program.

Used when nono runs interactively (``shell``, or ``run`` with a terminal on
stdin and stdout). The program gets a terminal of its own as controlling tty in
a new session, so job control and full-screen programs work, and keystroke
injection (TIOCSTI, also denied by seccomp) could only reach the program's own
terminal, never the user's shell.
"""

import fcntl
import os
import termios

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal as _signal  # _signal has no stubs; signal re-exports it
    from typing import Any

    from ..kernel.process import Poller
else:
    import _signal

_TIOCSCTTY = 0x540E
_TIOCGWINSZ = 0x5413
_TIOCSWINSZ = 0x5414


class PtyRelay:
    def __init__(self, master: int, slave: int) -> None:
        self.master, self.slave = master, slave
        self._saved: 'list[Any] | None' = None

    @classmethod
    def create(cls) -> 'PtyRelay':
        master, slave = os.openpty()
        relay = cls(master, slave)
        relay._copy_winsize()
        return relay

    # -- child side ------------------------------------------------------------
    def child_setup(self) -> None:
        os.setsid()
        fcntl.ioctl(self.slave, _TIOCSCTTY, 0)
        for fd in (0, 1, 2):
            os.dup2(self.slave, fd)
        os.close(self.slave)
        os.close(self.master)

    # -- supervisor side ---------------------------------------------------------
    def register(self, poller: 'Poller') -> tuple[int, ...]:
        os.close(self.slave)
        self.slave = -1
        try:
            self._saved = termios.tcgetattr(0)
            mode = termios.tcgetattr(0)
            mode[0] &= ~(termios.BRKINT | termios.ICRNL | termios.INPCK | termios.ISTRIP | termios.IXON)
            mode[2] = (mode[2] & ~(termios.CSIZE | termios.PARENB)) | termios.CS8
            mode[3] &= ~(termios.ECHO | termios.ICANON | termios.IEXTEN | termios.ISIG)
            mode[6][termios.VMIN] = 1
            mode[6][termios.VTIME] = 0
            termios.tcsetattr(0, termios.TCSAFLUSH, mode)
        except termios.error:
            self._saved = None
        _signal.signal(_signal.SIGWINCH, lambda *_: self._copy_winsize())
        poller.register(0, 0x1)  # POLLIN
        poller.register(self.master, 0x1)
        return (0, self.master)

    def _copy_winsize(self) -> None:
        try:
            size = fcntl.ioctl(0, _TIOCGWINSZ, b"\0" * 8)
            fcntl.ioctl(self.master, _TIOCSWINSZ, size)
        except OSError:
            pass

    def on_event(self, fd: int, ev: int, poller: 'Poller') -> None:
        try:
            data = os.read(fd, 65536)
        except OSError:
            data = b""
        if not data:
            poller.unregister(fd)
            return
        _write_all(self.master if fd == 0 else 1, data)

    def drain(self) -> None:
        os.set_blocking(self.master, False)
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:
                return
            if not data:
                return
            _write_all(1, data)

    def close(self) -> None:
        if self._saved is not None:
            try:
                termios.tcsetattr(0, termios.TCSAFLUSH, self._saved)
            except termios.error:
                pass
        for fd in (self.master, self.slave):
            if fd >= 0:
                os.close(fd)
        self.master = self.slave = -1


def _write_all(fd: int, data: bytes) -> None:
    while data:
        try:
            n = os.write(fd, data)
        except BlockingIOError:
            continue
        except OSError:
            return
        data = data[n:]
