"""The command line as a user meets it: flags, messages, exit codes, the three ways to start.

Run as root only (speed): the per-user enforcement lives in the other suites.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
from collections.abc import Iterator

import pytest

SKIP_CWD = "Skipping CWD prompt (non-interactive). Use --allow-cwd to include working directory."

_CONNECT = """
import socket, sys
s = socket.socket()
s.settimeout(3)
try:
    s.connect(("127.0.0.1", int(sys.argv[1])))
    print("connected")
except OSError as e:
    print("errno", e.errno)
"""


@contextlib.contextmanager
def tcp_listener() -> Iterator[tuple[socket.socket, int]]:
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        s.setblocking(False)
        yield s, s.getsockname()[1]
    finally:
        s.close()


def _queued(listener: socket.socket) -> int:
    n = 0
    for _ in range(16):
        try:
            listener.accept()[0].close()
        except BlockingIOError:
            break
        n += 1
    return n


# -- top level ----------------------------------------------------------------------
@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version(root_world, flag):
    r = root_world.nono(flag)
    assert r.returncode == 0
    assert r.stdout == "nono 0.1.0\n"


def test_help(root_world):
    r = root_world.nono("--help")
    assert r.returncode == 0
    assert "Usage: nono" in r.stdout and "run" in r.stdout
    r = root_world.nono("run", "--help")
    assert r.returncode == 0
    assert "Usage: nono run" in r.stdout and "--block-net" in r.stdout


def test_no_arguments_is_usage_error(root_world):
    r = root_world.nono()
    assert r.returncode == 2
    assert "Usage: nono" in r.stderr


# -- output ---------------------------------------------------------------------------
@pytest.mark.parametrize("form", ["after-command", "global"])
def test_silent_prints_nothing(root_world, form):
    args = ("run", "-s", "--allow-cwd", "--", "/bin/true") if form == "after-command" else \
        ("-s", "run", "--allow-cwd", "--", "/bin/true")
    r = root_world.nono(*args)
    assert r.returncode == 0
    assert r.stderr == ""
    assert r.stdout == ""


def test_without_silent_capabilities_are_shown(root_world):
    r = root_world.nono("run", "--allow-cwd", "--", "/bin/true")
    assert r.returncode == 0
    assert "Capabilities:" in r.stderr
    assert r.stdout == "", "nono's own output goes to stderr only"


def test_dry_run_runs_nothing(root_world):
    r = root_world.nono("run", "--dry-run", "--allow-cwd", "--", "/bin/echo", "hi")
    assert r.returncode == 0
    assert "dry-run sandbox would be applied with above capabilities" in r.stderr
    assert "$ /bin/echo hi" in r.stderr
    assert r.stdout == "", "the program must not run"
    r = root_world.nono("run", "--dry-run", "--allow-cwd", "--", "/bin/sh", "-c", "touch ran")
    assert r.returncode == 0
    assert not (root_world.work / "ran").exists()


# -- usage errors ----------------------------------------------------------------------
def test_unknown_flag(root_world):
    r = root_world.nono("run", "--frobnicate", "--", "/bin/true")
    assert r.returncode == 2
    assert "--frobnicate" in r.stderr


def test_port_must_be_a_number(root_world):
    r = root_world.nono("run", "--allow-connect-port", "notanumber", "--", "/bin/true")
    assert r.returncode == 2
    assert "notanumber" in r.stderr


def test_missing_program(root_world):
    r = root_world.nono("run", "--allow-cwd")
    assert r.returncode == 2
    r = root_world.nono("run", "--allow-cwd", "--")
    assert r.returncode == 2


def test_bad_boolean_env(root_world):
    r = root_world.nono("run", "--allow-cwd", "--", "/bin/true", env=root_world.env(NONO_BLOCK_NET="maybe"))
    assert r.returncode == 2
    assert "NONO_BLOCK_NET" in r.stderr


def test_unknown_profile(root_world):
    r = root_world.nono("run", "-p", "nosuch", "--allow-cwd", "--", "/bin/true")
    assert r.returncode == 1
    assert "Profile not found: nosuch" in r.stderr


def test_block_net_from_environment(root_world):
    py = root_world.user.python
    with tcp_listener() as (l, port):
        r = root_world.nono("run", "-s", "--allow-cwd", "--", py, "-c", _CONNECT, str(port),
                            env=root_world.env(NONO_BLOCK_NET="1"))
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == "errno 13", "NONO_BLOCK_NET=1 must block TCP like --block-net (EACCES)"
        assert _queued(l) == 0
        # control: NONO_BLOCK_NET=0 leaves the network open
        r = root_world.nono("run", "-s", "--allow-cwd", "--", py, "-c", _CONNECT, str(port),
                            env=root_world.env(NONO_BLOCK_NET="0"))
        assert r.stdout.strip() == "connected", r.stderr
        assert _queued(l) == 1


# -- working directory -------------------------------------------------------------------
def test_cwd_not_granted_without_flag_when_non_interactive(root_world):
    r = root_world.nono("run", "--", "/bin/cat", "input.txt")
    assert SKIP_CWD in r.stderr
    assert r.returncode == 1
    assert "input" not in r.stdout
    assert "Permission denied" in r.stderr


# -- wrap ------------------------------------------------------------------------------------
def test_wrap_allows_granted_work(root_world):
    r = root_world.nono("wrap", "-s", "--allow-cwd", "--", "/bin/cat", "input.txt")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "input\n"


def test_wrap_denies_ssh_key(root_world):
    key = str(root_world.home / ".ssh" / "id_rsa")
    r = root_world.nono("wrap", "-s", "--", "cat", key)
    assert r.returncode == 1
    assert "PLANTED" not in r.stdout
    r = root_world.nono("wrap", "-s", "--allow", str(root_world.home), "--", "cat", key)
    assert r.returncode == 1
    assert "PLANTED" not in r.stdout


def test_wrap_propagates_exit_code_and_execs(root_world):
    r = root_world.nono("wrap", "-s", "--allow-cwd", "--", "/bin/sh", "-c", "exit 5")
    assert r.returncode == 5
    # exec replaces nono: the program has nono's pid
    p = subprocess.Popen([root_world.user.python, "-m", "nono", "wrap", "-s", "--allow-cwd", "--", "/bin/sh", "-c",
                          "echo $$"], cwd=root_world.work, env=root_world.env(), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    assert int(out.strip()) == p.pid


# -- shell ------------------------------------------------------------------------------------
def test_shell_reads_commands_from_stdin(root_world):
    r = root_world.nono("shell", "-s", "--allow-cwd", "--shell", "/bin/sh", input="echo hi; exit 3\n", timeout=30)
    assert r.returncode == 3, r.stderr
    assert "hi" in r.stdout
    # the terminal echoes the input back, so prove the shell really ran a command: 42 is not in the input
    r = root_world.nono("shell", "-s", "--allow-cwd", "--shell", "/bin/sh", input="echo $((40+2)); exit 3\n",
                        timeout=30)
    assert r.returncode == 3, r.stderr
    assert "42" in r.stdout
