"""Process isolation, network and unix-socket attacks from inside a real sandbox.

Every test starts the real ``nono`` (as root and as ``nobody``), runs a probe
from ``tests/probes`` inside it and asserts what the kernel answered, errno
by errno. Where an attack could "fail" for a reason unrelated to the sandbox
(permissions, a missing kernel feature), the same probe also runs *outside*
the sandbox as the same user and must succeed there: a control that keeps the
test from passing vacuously.

Network traffic uses loopback only (127.0.0.1 and ::1).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

PROBES = Path(__file__).resolve().parents[1] / "probes"


# -- helpers --------------------------------------------------------------------
@functools.cache
def _usable_python(prefix: tuple[str, ...], candidate: str) -> bool:
    """Can this user *find* ``candidate`` the way nono does (``access(X_OK)``)?"""
    r = subprocess.run([*prefix, "/bin/sh", "-c", 'test -x "$1"', "sh", candidate], timeout=10, check=False)
    return r.returncode == 0


def inner_python(world) -> str:
    """An interpreter the world's user may run *inside* the sandbox.

    ``world.user.python`` can live beneath a directory the unprivileged user
    cannot traverse (a pyenv build under /root); nono then rightly reports
    "command not found", so fall back to the system interpreter.
    """
    if _usable_python(tuple(world.user.prefix), world.user.python):
        return world.user.python
    return "/usr/bin/python3"


def install_probe(world, name: str) -> str:
    """Copy ``tests/probes/NAME`` into the world's work dir, owned by its user; return the relative name."""
    dst = world.work / name
    shutil.copyfile(PROBES / name, dst)
    os.chmod(dst, 0o644)
    os.chown(dst, world.user.uid, world.user.uid)
    return name


def _last_json(stdout: str) -> dict:
    lines = [ln for ln in stdout.strip().splitlines() if ln.startswith("{")]
    assert lines, f"probe printed no result: {stdout!r}"
    return json.loads(lines[-1])  # type: ignore[no-any-return]


def probe(world, name: str, *actions: str, flags: tuple[str, ...] = ("--allow-cwd",), env=None) -> dict:
    """Run probe NAME inside ``nono run -s FLAGS``; return its JSON answer."""
    script = install_probe(world, name)
    r = world.nono("run", "-s", *flags, "--", inner_python(world), script, *actions, timeout=60, env=env)
    assert r.returncode == 0, f"nono exited {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    return _last_json(r.stdout)


def control(world, name: str, *actions: str) -> dict:
    """Run probe NAME *unsandboxed* as the world's user (new session), for controls."""
    script = install_probe(world, name)
    r = subprocess.run([*world.user.prefix, inner_python(world), script, *actions], cwd=world.work,
                       env=world.env(), capture_output=True, text=True, timeout=60, start_new_session=True,
                       stdin=subprocess.DEVNULL, check=False)
    assert r.returncode == 0, r.stderr
    return _last_json(r.stdout)


def nono_popen(world, *args: str, env=None) -> subprocess.Popen[str]:
    """Start ``python -m nono ARGS`` as the world's user without waiting.

    ``setpriv`` execs, so the Popen pid *is* nono's (the supervisor's) pid.
    """
    cmd = [*world.user.prefix, world.user.python, "-m", "nono", *args]
    return subprocess.Popen(cmd, cwd=world.work, env=env or world.env(), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(p: subprocess.Popen[str], timeout: float = 30) -> tuple[int, str, str]:
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate(timeout=10)
        pytest.fail(f"nono did not finish in {timeout}s\nstdout: {out}\nstderr: {err}")
    return p.returncode, out, err


def probe_supervised(world, name: str, *actions: str, flags: tuple[str, ...] = ("--allow-cwd",)) -> tuple[dict, int]:
    """Like :func:`probe`, but also return nono's pid (to check the probe's ppid is the supervisor)."""
    script = install_probe(world, name)
    p = nono_popen(world, "run", "-s", *flags, "--", inner_python(world), script, *actions)
    code, out, err = finish(p)
    assert code == 0, f"nono exited {code}\nstdout: {out}\nstderr: {err}"
    return _last_json(out), p.pid


def wait_for(pred, timeout: float = 10.0, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return bool(pred())


def free_port(family: int = socket.AF_INET) -> int:
    host = "::1" if family == socket.AF_INET6 else "127.0.0.1"
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]  # type: ignore[no-any-return]


@contextlib.contextmanager
def tcp_listener(host: str = "127.0.0.1", port: int = 0) -> Iterator[socket.socket]:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
        s.listen(32)
        s.setblocking(False)
        yield s
    finally:
        s.close()


@contextlib.contextmanager
def udp_listener(host: str = "127.0.0.1") -> Iterator[socket.socket]:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_DGRAM)
    try:
        s.bind((host, 0))
        s.setblocking(False)
        yield s
    finally:
        s.close()


def accepted(listener: socket.socket, limit: int = 32) -> list[bytes]:
    """Drain the accept queue (non-blocking, bounded): what each queued connection sent."""
    got = []
    for _ in range(limit):
        try:
            conn, _ = listener.accept()
        except BlockingIOError:
            break
        with conn:
            conn.settimeout(2)
            try:
                got.append(conn.recv(64))
            except OSError:
                got.append(b"")
    return got


def datagrams(s: socket.socket, limit: int = 32) -> list[bytes]:
    got = []
    for _ in range(limit):
        try:
            got.append(s.recv(256))
        except BlockingIOError:
            break
    return got


def port_of(s: socket.socket) -> int:
    return s.getsockname()[1]  # type: ignore[no-any-return]


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


@pytest.fixture
def bystander(world) -> Iterator[subprocess.Popen[bytes]]:
    """A process of the world's user that nono did not start: the sandbox must not reach it."""
    p = subprocess.Popen([*world.user.prefix, "/bin/sleep", "60"], stdin=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: alive(p.pid))
        yield p
    finally:
        p.kill()
        p.wait(timeout=10)


# -- 1. signals -----------------------------------------------------------------
def test_signals_cannot_reach_supervisor_or_bystander(world, bystander):
    b = bystander.pid
    # control: unsandboxed, the same user may signal the bystander
    ctl = control(world, "proc_probe.py", f"kill:{b}:0", f"pidfd_kill:{b}:0")
    assert ctl[f"kill:{b}:0"] == "ok" and ctl[f"pidfd_kill:{b}:0"] == "ok"

    actions = ("kill:ppid:0", "kill:ppid:15", f"kill:{b}:0", f"kill:{b}:15", "pidfd_kill:ppid:0", f"pidfd_kill:{b}:15",
               "sigio:self", "sigio:ppid", f"sigio:{b}", "kill_child")
    res, nono_pid = probe_supervised(world, "proc_probe.py", *actions)
    assert res["ppid"] == nono_pid, "the probe's parent must be the nono supervisor"
    assert res["kill:ppid:0"] == "kill:EPERM"
    assert res["kill:ppid:15"] == "kill:EPERM"
    assert res[f"kill:{b}:0"] == "kill:EPERM"
    assert res[f"kill:{b}:15"] == "kill:EPERM"
    assert res["pidfd_kill:ppid:0"] == "pidfd_send_signal:EPERM"
    assert res[f"pidfd_kill:{b}:15"] == "pidfd_send_signal:EPERM"
    # SIGIO-style delivery (F_SETOWN + F_SETSIG): works to ourselves, is dropped towards the supervisor
    # (which would forward the SIGUSR1 back to us) and towards the bystander (which SIGUSR1 would kill)
    assert res["sigio:self"] == "ok:delivered"
    assert res["sigio:ppid"] == "ok:not delivered"
    assert res["kill_child"] == "ok:-15", "the sandboxed program must be able to signal its own child"
    assert bystander.poll() is None and alive(b), "the bystander was killed from inside the sandbox"


# -- 2. ptrace / process_vm_readv -------------------------------------------------
def test_ptrace_and_vm_readv_of_supervisor_denied(world):
    res, nono_pid = probe_supervised(world, "proc_probe.py", "ptrace_attach:child", "vm_readv:child",
                                     "read_proc:child:environ", "ptrace_attach:ppid", "vm_readv:ppid",
                                     "read_proc:ppid:environ", "read_proc:ppid:mem")
    assert res["ppid"] == nono_pid
    # controls inside the sandbox: the mechanism works on the probe's own child ...
    assert res["ptrace_attach:child"] == "ok"
    assert res["vm_readv:child"] == "ok:probe-memory-marker"
    assert res["read_proc:child:environ"].startswith("ok:")
    # ... but not on the supervisor (EPERM comes before any address check: no EFAULT)
    assert res["ptrace_attach:ppid"] == "ptrace:EPERM"
    assert res["vm_readv:ppid"] == "process_vm_readv:EPERM"
    # nor through /proc (ptrace-mode read checks): the supervisor's environment holds the user's secrets
    assert res["read_proc:ppid:environ"] in ("open:EACCES", "open:EPERM")
    assert res["read_proc:ppid:mem"] in ("open:EACCES", "open:EPERM")


def test_ptrace_of_bystander_denied(world, bystander):
    res = probe(world, "proc_probe.py", f"ptrace_attach:{bystander.pid}", f"vm_readv:{bystander.pid}")
    assert res[f"ptrace_attach:{bystander.pid}"] == "ptrace:EPERM"
    assert res[f"vm_readv:{bystander.pid}"] == "process_vm_readv:EPERM"
    assert bystander.poll() is None


# -- 3. --block-net -----------------------------------------------------------------
def test_block_net_tcp_connect_denied(world):
    with tcp_listener() as l4, tcp_listener("::1") as l6:
        a4, a6 = f"tcp_connect:127.0.0.1:{port_of(l4)}", f"tcp_connect:::1:{port_of(l6)}"
        mapped = f"tcp_connect:::ffff:127.0.0.1:{port_of(l4)}"  # 127.0.0.1 through an IPv6 socket
        threaded = f"thread/{a4}"
        res = probe(world, "net_probe.py", a4, a6, mapped, threaded, flags=("--allow-cwd", "--block-net"))
        assert res[a4] == "connect:EACCES"
        assert res[a6] == "connect:EACCES"
        assert res[mapped] == "connect:EACCES"
        assert res[threaded] in ("connect:EACCES", "connect:EPERM")
        assert accepted(l4) == [] and accepted(l6) == [], "a blocked connect reached the listener"


def test_block_net_tcp_bind_listen_denied(world):
    p4, p6 = free_port(), free_port(socket.AF_INET6)
    a4, a6 = f"tcp_listen:127.0.0.1:{p4}", f"tcp_listen:::1:{p6}"
    res = probe(world, "net_probe.py", a4, a6, flags=("--allow-cwd", "--block-net"))
    assert res[a4] == "bind:EACCES"
    assert res[a6] == "bind:EACCES"


# Regression: listen() on a never-bound TCP socket autobinds a port without any Landlock
# bind check; the seccomp filter now hands listen() to the mediator under --block-net.
def test_block_net_listen_without_bind_denied(world):
    res = probe(world, "net_probe.py", "tcp_listen_auto:127.0.0.1", "tcp_listen_auto:::1",
                flags=("--allow-cwd", "--block-net"))
    assert res["tcp_listen_auto:127.0.0.1"] in ("listen:EACCES", "listen:EPERM"), res
    assert res["tcp_listen_auto:::1"] in ("listen:EACCES", "listen:EPERM"), res


def test_block_net_udp_denied(world):
    with udp_listener() as u4, udp_listener("::1") as u6:
        a4, a6 = f"udp_sendto:127.0.0.1:{port_of(u4)}", f"udp_sendto:::1:{port_of(u6)}"
        res = probe(world, "net_probe.py", a4, a6, flags=("--allow-cwd", "--block-net"))
        assert res[a4] == "socket:EPERM"
        assert res[a6] == "socket:EPERM"
        assert datagrams(u4) == [] and datagrams(u6) == []


def test_block_net_exotic_sockets_denied(world):
    actions = ("mptcp", "raw", "packet", "vsock", "netlink:4", "sctp")
    # control: MPTCP and vsock sockets can be created here without the sandbox (raw/packet need root)
    ctl = control(world, "net_probe.py", *actions)
    assert ctl["mptcp"] == "ok" and ctl["vsock"] == "ok" and ctl["netlink:4"] == "ok"
    # (SCTP may be unavailable here; inside, the filter must answer EPERM before the protocol lookup)
    if world.user.uid == 0:
        assert ctl["raw"] == "ok" and ctl["packet"] == "ok"

    res = probe(world, "net_probe.py", *actions, "netlink:0", flags=("--allow-cwd", "--block-net"))
    for a in actions:
        assert res[a] == "socket:EPERM", (a, res[a])
    assert res["netlink:0"] == "ok", "NETLINK_ROUTE stays available (getaddrinfo needs it)"


def test_block_net_tcp_fast_open_denied(world):
    with tcp_listener() as l:
        port = port_of(l)
        # control: without --block-net, TCP Fast Open connects and delivers its payload
        ctl = probe(world, "net_probe.py", f"tfo:{port}")
        assert ctl[f"tfo:{port}"] == "ok"
        assert accepted(l) == [b"tfo"]

        res = probe(world, "net_probe.py", f"tfo:{port}", f"tfo_msg:{port}", flags=("--allow-cwd", "--block-net"))
        assert res[f"tfo:{port}"] == "sendto:EPERM"
        assert res[f"tfo_msg:{port}"] == "sendmsg:EPERM"
        assert accepted(l) == [], "a TCP Fast Open send reached the listener"


@pytest.mark.parametrize("block", [False, True], ids=["net-allowed", "block-net"])
def test_io_uring_denied(world, block):
    ctl = control(world, "proc_probe.py", "io_uring")
    assert ctl["io_uring"] == "ok", "control: io_uring must work here without the sandbox"
    flags = ("--allow-cwd", "--block-net") if block else ("--allow-cwd",)
    res = probe(world, "proc_probe.py", "io_uring", flags=flags)
    assert res["io_uring"] == "io_uring_setup:EPERM"


# -- 4. allowed network and port grants --------------------------------------------------
def test_network_allowed_by_default(world):
    with tcp_listener() as l4, tcp_listener("::1") as l6, udp_listener() as u:
        a4, a6 = f"tcp_connect:127.0.0.1:{port_of(l4)}", f"tcp_connect:::1:{port_of(l6)}"
        au = f"udp_sendto:127.0.0.1:{port_of(u)}"
        res = probe(world, "net_probe.py", a4, a6, au, f"tcp_self:{free_port()}")
        assert res[a4] == "ok" and res[a6] == "ok" and res[au] == "ok"
        assert [v for k, v in res.items() if k.startswith("tcp_self")] == ["ok:ping"]
        assert accepted(l4) == [b"hello"] and accepted(l6) == [b"hello"]
        assert datagrams(u) == [b"udp"]


# Regression: the mediator once called pidfd_open() on the notifying thread id, which fails
# for any thread but the main one, so connect() from worker threads was refused.
def test_network_from_a_second_thread(world):
    with tcp_listener() as l, unix_listener(world.work / "t.sock", world.user.uid) as lu:
        a = f"thread/tcp_connect:127.0.0.1:{port_of(l)}"
        au = "thread/unix_connect:t.sock"
        res = probe(world, "net_probe.py", a, au, flags=("--allow-cwd", "--allow-unix-socket", str(world.work / "t.sock")))
        assert res[a] == "ok", res
        assert res[au] == "ok", res
        assert accepted(l) == [b"hello"]
        assert accepted(lu) == [b"hi"]


def test_allow_connect_port(world):
    with tcp_listener() as allowed, tcp_listener() as other, udp_listener() as u:
        pa, po = port_of(allowed), port_of(other)
        au = f"udp_sendto:127.0.0.1:{port_of(u)}"
        lp = free_port()
        res = probe(world, "net_probe.py", f"tcp_connect:127.0.0.1:{pa}", f"tcp_connect:127.0.0.1:{po}", au,
                    f"tcp_listen:127.0.0.1:{lp}", flags=("--allow-cwd", "--allow-connect-port", str(pa)))
        assert res[f"tcp_connect:127.0.0.1:{pa}"] == "ok"
        assert res[f"tcp_connect:127.0.0.1:{po}"] == "connect:EACCES"
        assert res[au] == "socket:EPERM", "a port grant implies --block-net for everything else"
        assert res[f"tcp_listen:127.0.0.1:{lp}"] == "bind:EACCES"
        assert accepted(allowed) == [b"hello"]
        assert accepted(other) == []
        assert datagrams(u) == []


def test_listen_port(world):
    p, q = free_port(), free_port()
    while q == p:
        q = free_port()
    with tcp_listener() as l:
        ac = f"tcp_connect:127.0.0.1:{port_of(l)}"
        res = probe(world, "net_probe.py", f"tcp_listen:127.0.0.1:{p}", f"tcp_listen:127.0.0.1:{q}", ac,
                    flags=("--allow-cwd", "--listen-port", str(p)))
        assert res[f"tcp_listen:127.0.0.1:{p}"] == "ok"
        assert res[f"tcp_listen:127.0.0.1:{q}"] == "bind:EACCES"
        assert res[ac] == "connect:EACCES", "--listen-port grants no outbound connects"
        assert accepted(l) == []


def test_open_port(world):
    p, q = free_port(), free_port()
    while q == p:
        q = free_port()
    res = probe(world, "net_probe.py", f"tcp_self:{p}", f"tcp_self:{q}", flags=("--allow-cwd", "--open-port", str(p)))
    assert res[f"tcp_self:{p}"] == "ok:ping", "--open-port P allows listening on P and connecting to P"
    assert res[f"tcp_self:{q}"] == "bind:EACCES"
    with tcp_listener() as l:
        ac = f"tcp_connect:127.0.0.1:{port_of(l)}"
        res = probe(world, "net_probe.py", ac, flags=("--allow-cwd", "--open-port", str(p)))
        assert res[ac] == "connect:EACCES"
        assert accepted(l) == []


# -- 5. terminal injection, sessions ---------------------------------------------------
def test_tiocsti_and_tioclinux_denied_and_new_session(world):
    actions = ("tiocsti", "tiocsti_hi", "tioclinux")
    ctl = control(world, "proc_probe.py", *actions)
    assert ctl["tiocsti"].startswith("ok"), f"control: TIOCSTI on our own controlling pty works here: {ctl}"
    assert ctl["tiocsti_hi"] == "ok"
    assert ctl["tioclinux"] != "tioclinux:EPERM", "control: TIOCLINUX on a pty is not refused with EPERM"

    # --allow-pty: the probe needs a terminal of its own to aim at; seccomp must refuse anyway
    res, nono_pid = probe_supervised(world, "proc_probe.py", *actions, flags=("--allow-cwd", "--allow-pty"))
    assert res["tiocsti"] == "tiocsti:EPERM"
    assert res["tiocsti_hi"] == "tiocsti:EPERM", "the high 32 bits of the ioctl request must not evade the filter"
    assert res["tioclinux"] == "tioclinux:EPERM"
    # the program runs in a session of its own (it leads it), not in ours or nono's
    assert res["sid"] == res["pid"]
    assert res["sid"] != os.getsid(0)
    assert res["sid"] != nono_pid


# -- 6. unix sockets ---------------------------------------------------------------------
@contextlib.contextmanager
def unix_listener(path: Path, uid: int, kind: int = socket.SOCK_STREAM) -> Iterator[socket.socket]:
    s = socket.socket(socket.AF_UNIX, kind)
    try:
        s.bind(str(path))
        os.chown(path, uid, uid)  # the supervisor (as the world's user) connects on the sandbox's behalf
        if kind == socket.SOCK_STREAM:
            s.listen(16)
        s.setblocking(False)
        yield s
    finally:
        s.close()
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


@contextlib.contextmanager
def abstract_listener() -> Iterator[tuple[socket.socket, str]]:
    name = f"nono-test-{uuid.uuid4().hex[:12]}"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.bind(b"\0" + name.encode())
        s.listen(16)
        s.setblocking(False)
        yield s, name
    finally:
        s.close()


@pytest.fixture
def unix_world(world):
    """Listeners: stream sockets outside and in work, a symlink in work to the outside one, a datagram socket outside."""
    uid = world.user.uid
    with contextlib.ExitStack() as stack:
        out = world.outside / "agent.sock"
        work = world.work / "work.sock"
        dgram = world.outside / "dgram.sock"
        ls_out = stack.enter_context(unix_listener(out, uid))
        ls_work = stack.enter_context(unix_listener(work, uid))
        ls_dgram = stack.enter_context(unix_listener(dgram, uid, socket.SOCK_DGRAM))
        abstract, name = stack.enter_context(abstract_listener())
        link = world.work / "link.sock"
        link.symlink_to(out)
        os.lchown(link, uid, uid)
        yield {"out": (out, ls_out), "work": (work, ls_work), "dgram": (dgram, ls_dgram),
               "abstract": (name, abstract), "link": link}


def test_unix_sockets_outside_grants_denied(world, unix_world):
    out, ls_out = unix_world["out"]
    _, ls_work = unix_world["work"]
    dgram, ls_dgram = unix_world["dgram"]
    name, ls_abs = unix_world["abstract"]
    actions = {
        "outside": f"unix_connect:{out}",
        "outside_relative": "unix_connect:../outside/agent.sock",
        "symlink": "unix_connect:link.sock",
        "work": "unix_connect:work.sock",
        "abstract": f"unix_abstract:{name}",
        "dgram_sendto": f"unix_dgram_sendto:{dgram}",
        "dgram_connect": f"unix_dgram_connect:{dgram}",
        "dgram_sendmsg": f"unix_dgram_sendmsg:{dgram}",
        "fd_magic_link": f"unix_fdpath:{out}",
        "pid_fd_magic_link": f"unix_pidfdpath:{out}",
    }
    res = probe(world, "net_probe.py", *actions.values())
    got = {k: res[v] for k, v in actions.items()}
    assert got == {
        "outside": "connect:EACCES",
        "outside_relative": "connect:EACCES",
        "symlink": "connect:EACCES",
        # A socket in a granted directory that a process *outside* the sandbox created is
        # not the sandbox's to use: only sockets it bound itself or that are named with
        # --allow-unix-socket (a file could be moved or linked into a grant).
        "work": "connect:EACCES",
        "abstract": "connect:EPERM",
        # No AF_UNIX datagram sockets at all: their sendto() could reach any path.
        "dgram_sendto": "socket:EPERM",
        "dgram_connect": "socket:EPERM",
        "dgram_sendmsg": "socket:EPERM",
        "fd_magic_link": "connect:EACCES",
        "pid_fd_magic_link": "connect:EACCES",
    }
    assert accepted(ls_out) == [], "a denied connect reached the outside listener"
    assert accepted(ls_abs) == [], "a denied connect reached the abstract listener"
    assert datagrams(ls_dgram) == [], "a denied datagram reached the outside socket"
    assert accepted(ls_work) == [], "a socket created outside the sandbox is not reachable through a grant"


def test_unix_socket_grant_allows_exactly_that_socket(world, unix_world):
    out, ls_out = unix_world["out"]
    dgram, ls_dgram = unix_world["dgram"]
    actions = (f"unix_connect:{out}", "unix_connect:link.sock", f"unix_dgram_connect:{dgram}",
               f"unix_dgram_sendto:{dgram}")
    res = probe(world, "net_probe.py", *actions,
                flags=("--allow-cwd", "--allow-unix-socket", str(out), "--allow-unix-socket", str(dgram)))
    assert res[f"unix_connect:{out}"] == "ok"
    assert res["unix_connect:link.sock"] == "ok", "a symlink to a granted socket resolves to the granted socket"
    # datagram sockets cannot be created in the sandbox, granted peer or not
    assert res[f"unix_dgram_connect:{dgram}"] == "socket:EPERM"
    assert res[f"unix_dgram_sendto:{dgram}"] == "socket:EPERM"
    assert accepted(ls_out) == [b"hi", b"hi"]
    assert datagrams(ls_dgram) == []


# -- 7. user namespaces and mounts ------------------------------------------------------------
def test_userns_mount_denied(world):
    mnt = world.work / "mnt"
    mnt.mkdir()
    os.chown(mnt, world.user.uid, world.user.uid)
    script = 'mount -t tmpfs none "$1"; echo "mount-rc=$?"; grep -c " $1 " /proc/self/mountinfo'
    cmd = ("/usr/bin/unshare", "-Urm", "/bin/sh", "-c", script, "sh", str(mnt))
    # control: outside the sandbox the user may create a user+mount namespace and mount there
    ctl = subprocess.run([*world.user.prefix, *cmd], capture_output=True, text=True, timeout=30, check=False)
    assert ctl.returncode == 0 and "mount-rc=0" in ctl.stdout, f"control failed: {ctl.stdout} {ctl.stderr}"

    r = world.nono("run", "-s", "--allow-cwd", "--", *cmd)
    assert "mount-rc=0" not in r.stdout, f"mount succeeded inside the sandbox: {r.stdout} {r.stderr}"
    # either unshare itself failed, or the mount did and nothing is mounted on mnt
    lines = r.stdout.split()
    assert r.returncode != 0 or lines[-1] == "0", (r.returncode, r.stdout, r.stderr)
    assert not os.path.ismount(mnt)
    # and the plain attempt from the brief fails outright
    r2 = world.nono("run", "-s", "--allow-cwd", "--", "/usr/bin/unshare", "-Urm", "/usr/bin/mount", "-t", "tmpfs",
                    "none", str(mnt))
    assert r2.returncode != 0, r2.stdout + r2.stderr
    # in-process (no exec, so the new user namespace's capabilities are kept): unshare, then mount(2)
    action = f"userns_mount:{mnt}"
    assert control(world, "proc_probe.py", action)[action] == "ok:1", "control: the mount works unsandboxed"
    res = probe(world, "proc_probe.py", action)
    assert res[action] in ("unshare:EPERM", "mount:EPERM"), res
    assert not os.path.ismount(mnt)


# -- 8. no_new_privs, capabilities --------------------------------------------------------------
def test_no_new_privs_and_capabilities_dropped(world):
    res = probe(world, "proc_probe.py", "status")
    st = json.loads(res["status"].removeprefix("ok:"))
    assert st["NoNewPrivs"] == "1"
    assert st["Seccomp"] == "2", "a seccomp filter is installed"
    assert int(st["CapEff"], 16) == 0
    assert int(st["CapPrm"], 16) == 0
    assert int(st["CapInh"], 16) == 0
    assert int(st["CapAmb"], 16) == 0
    if world.user.uid == 0:
        assert int(st["CapBnd"], 16) == 0, "root's bounding set must be emptied too (no regaining through exec)"


# -- 9. exit codes and signals --------------------------------------------------------------------
@pytest.mark.parametrize("code", [0, 1, 42])
def test_exit_code_propagated(world, code):
    r = world.nono("run", "-s", "--allow-cwd", "--", "/bin/sh", "-c", f"exit {code}")
    assert r.returncode == code, r.stderr


def test_exit_by_signal_is_128_plus_n(world):
    r = world.nono("run", "-s", "--allow-cwd", "--", "/bin/sh", "-c", "kill -TERM $$")
    assert r.returncode == 143, r.stderr


def test_command_not_found_is_127(world):
    r = world.nono("run", "--allow-cwd", "--", "/nonexistent/program-xyz")
    assert r.returncode == 127
    assert "command not found" in r.stderr
    r = world.nono("run", "--allow-cwd", "--", "no-such-program-xyz")
    assert r.returncode == 127
    assert "command not found" in r.stderr


def test_usage_error_is_2(world):
    r = world.nono("run", "--no-such-flag", "--", "/bin/true")
    assert r.returncode == 2
    assert "--no-such-flag" in r.stderr


_HANDLER = """
import os, signal, sys, time
def h(sig, frame):
    open("marker-%d" % sig, "w").write("got")
    os._exit(7)
signal.signal(int(sys.argv[1]), h)
open("ready", "w").write(str(os.getpid()))
deadline = time.monotonic() + 20
while time.monotonic() < deadline:
    time.sleep(0.05)
os._exit(99)
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_forwarded_to_program(world, sig):
    p = nono_popen(world, "run", "-s", "--allow-cwd", "--", inner_python(world), "-c", _HANDLER, str(int(sig)))
    try:
        assert wait_for(lambda: (world.work / "ready").exists() and (world.work / "ready").read_text() != "", 15), \
            "program did not start"
        p.send_signal(sig)
        code, _out, err = finish(p, 15)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(10)
    assert code == 7, f"exit {code}, stderr: {err}"
    assert (world.work / f"marker-{int(sig)}").read_text() == "got"


def test_program_dies_with_supervisor(world):
    prog = ("import os, time\nopen('pid', 'w').write(str(os.getpid()))\n"
            "deadline = time.monotonic() + 30\nwhile time.monotonic() < deadline: time.sleep(0.1)\n")
    p = nono_popen(world, "run", "-s", "--allow-cwd", "--", inner_python(world), "-c", prog)
    child = 0
    try:
        pid_file = world.work / "pid"
        assert wait_for(lambda: pid_file.exists() and pid_file.read_text().strip() != "", 15), "program did not start"
        child = int(pid_file.read_text())
        assert alive(child)
        p.kill()  # SIGKILL the supervisor: nothing of it can clean up
        p.wait(10)
        assert wait_for(lambda: not alive(child), 5), "the sandboxed program outlived its supervisor"
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(10)
        if child and alive(child):
            os.kill(child, signal.SIGKILL)


# -- 10. environment ------------------------------------------------------------------------------
def test_environment_sanitised(world):
    base = world.env()
    env = world.env(
        LD_PRELOAD="/nonexistent.so",
        LD_LIBRARY_PATH="/x",
        PYTHONPATH="/x:" + base["PYTHONPATH"],  # nono itself still needs its own entry
        NODE_OPTIONS="--foo",
        BASH_ENV="/x",
        SSH_AUTH_SOCK="/x",
        DYLD_INSERT_LIBRARIES="/x",
        PERL5OPT="-Mx",
        NONO_CAP_FILE="/forged.json",
        MY_VAR="keep",
    )
    env["BASH_FUNC_evil%%"] = "() { echo pwned; }"
    res = probe(world, "proc_probe.py", "env", "capfile", env=env)
    inner = json.loads(res["env"].removeprefix("ok:"))
    for var in ("LD_PRELOAD", "LD_LIBRARY_PATH", "PYTHONPATH", "NODE_OPTIONS", "BASH_ENV", "SSH_AUTH_SOCK",
                "DYLD_INSERT_LIBRARIES", "PERL5OPT", "BASH_FUNC_evil%%"):
        assert var not in inner, f"{var} leaked into the sandbox"
    assert inner["MY_VAR"] == "keep"
    assert inner["PATH"] == env["PATH"]
    assert inner["HOME"] == str(world.home)
    cap = inner.get("NONO_CAP_FILE", "")
    assert cap and cap != "/forged.json"
    assert res["capfile"].startswith("ok:"), res["capfile"]
    prot = json.loads(res["capfile"].removeprefix("ok:"))
    assert prot["seccomp"] == "enforced" and prot["no_new_privs"] == "enforced"
