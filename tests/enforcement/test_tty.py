"""Interactive use: nono relays a pseudo-terminal of its own to the program."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time


def _run_on_tty(world, *args: str, timeout: float = 30) -> tuple[int, str, str]:
    """Run nono with a terminal on stdin/stdout; return (status, output, our tty name)."""
    master, slave = pty.openpty()
    ours = os.ttyname(slave)
    cmd = world.user.prefix + [world.user.python, "-m", "nono", *args]
    proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=subprocess.PIPE, cwd=world.work,
                            env=world.env(), start_new_session=True)
    os.close(slave)
    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    code = proc.wait(timeout=10)
    os.close(master)
    return code, out.decode(errors="replace"), ours


def test_program_gets_its_own_terminal(world):
    script = "import os, sys; print('TTY', os.ttyname(0), os.getsid(0) == os.getpid()); sys.exit(3)"
    code, out, ours = _run_on_tty(world, "run", "-s", "--allow-cwd", "--", "/usr/bin/python3", "-c", script)
    assert code == 3, out
    line = next(line for line in out.splitlines() if line.startswith("TTY"))
    _, name, leader = line.split()
    assert name.startswith("/dev/pts/") and name != ours  # a terminal of its own, not the user's
    assert leader == "True"  # in a new session


def test_tiocsti_denied_on_its_terminal(world):
    script = ("import fcntl, termios\n"
              "try:\n    fcntl.ioctl(0, termios.TIOCSTI, b'x'); print('INJECTED')\n"
              "except OSError as e:\n    print('DENIED', e.errno)\n")
    code, out, _ = _run_on_tty(world, "run", "-s", "--allow-cwd", "--", "/usr/bin/python3", "-c", script)
    assert code == 0, out
    assert "DENIED 1" in out and "INJECTED" not in out


def test_shell_runs_commands_and_returns_status(world):
    master_cmds = "echo ready-$((20+22)); exit 4\n"
    master, slave = pty.openpty()
    cmd = world.user.prefix + [world.user.python, "-m", "nono", "shell", "-s", "--allow-cwd", "--shell", "/bin/sh"]
    proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=subprocess.PIPE, cwd=world.work, env=world.env(),
                            start_new_session=True)
    os.close(slave)
    time.sleep(0.5)
    os.write(master, master_cmds.encode())
    out = b""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and proc.poll() is None:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                out += os.read(master, 65536)
            except OSError:
                break
    assert proc.wait(timeout=10) == 4
    assert "ready-42" in out.decode(errors="replace")
    os.close(master)
    assert sys.platform == "linux"
