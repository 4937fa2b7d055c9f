"""Namespaces (``--isolate``), resource limits and ``--timeout``, from inside a real sandbox.

Every test runs the real ``nono`` as root and as ``nobody`` (``world``). What enforces a
limit depends on the host (see ``nono.sandbox.limits``): on a cgroup-v1 hybrid host root
gets v1 cgroups and ``nobody`` gets rlimits; a delegated cgroup v2 is used where present.
The tests assert the outcome (contained, killed, exit code, message), and the mechanism
nono says it used.

One test starts nono through a small launcher (``_PATCH_SHIM``) that skips nono's
user-namespace pre-check, to see the kernel itself refuse. Network traffic stays on
loopback; every loop is bounded.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid

import pytest

_PATCH_SHIM = r'''
import sys

from nono.cli import main as M
from nono.sandbox import isolation as _i

# Simulate a host whose sysctls allow user namespaces but whose kernel policy refuses them
# (AppArmor, a container's seccomp profile): skip nono's pre-check, so unshare() itself fails.
_i.userns_status = lambda: (True, "")
sys.exit(M.main(sys.argv[1:]))
'''

_PROBE = r'''
import errno, json, os, socket, sys, time

def err(fn):
    try:
        fn()
        return 0
    except OSError as e:
        return e.errno or -1

out = {}
args = sys.argv[1:]
while args:
    a = args.pop(0)
    if a == "procs":
        out["pids"] = sorted(int(n) for n in os.listdir("/proc") if n.isdigit())
        out["self"], out["ppid"] = os.getpid(), os.getppid()
    elif a == "ns":
        out["ns"] = {n: os.readlink(f"/proc/self/ns/{n}") for n in ("uts", "ipc", "net", "pid", "mnt")}
    elif a == "hostname":
        out["sethostname"] = err(lambda: socket.sethostname("nono-test-" + str(os.getpid())))
        out["nodename"] = os.uname().nodename
    elif a == "netdev":
        with open("/proc/net/dev") as f:
            out["ifaces"] = sorted(l.split(":")[0].strip() for l in f.read().splitlines()[2:])
        with open("/proc/net/route") as f:
            out["routes"] = len(f.read().splitlines()) - 1
    elif a == "connect":
        host, port = args.pop(0), int(args.pop(0))
        def c():
            s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
            s.settimeout(3)
            try:
                s.connect((host, port))
            finally:
                s.close()
        out.setdefault("connect", {})[f"{host}:{port}"] = err(c)
    elif a == "loopback":
        srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen()
        cl = socket.create_connection(srv.getsockname(), timeout=3); conn, _ = srv.accept()
        cl.sendall(b"hi"); out["loopback"] = conn.recv(2).decode()
    elif a == "read":
        p = args.pop(0)
        def r():
            with open(p, "rb") as f:
                f.read(1)
        out.setdefault("read", {})[p] = err(r)
    elif a == "bomb":
        n, ok, fail, kids = int(args.pop(0)), 0, 0, []
        for _ in range(n):
            try:
                pid = os.fork()
            except OSError:
                fail += 1
                continue
            if pid == 0:
                time.sleep(5)
                os._exit(0)
            ok += 1
            kids.append(pid)
        for k in kids:
            os.kill(k, 9)
            os.waitpid(k, 0)
        out["bomb"] = {"ok": ok, "fail": fail}
    elif a == "hog":
        limit_mb, chunks = int(args.pop(0)), []
        for _ in range(limit_mb // 8):
            chunks.append(b"x" * (8 << 20))
        out["hog"] = "survived"
print(json.dumps(out), flush=True)
'''


# -- helpers --------------------------------------------------------------------
def _shim(world) -> list[str]:
    """How to start nono: ``python -m nono``."""
    return ["-m", "nono"]


def _patch_shim(world) -> list[str]:
    path = world.base / "nono_patched.py"
    if not path.exists():
        path.write_text(_PATCH_SHIM)
        os.chmod(path, 0o644)
    return [str(path)]


def _inner_python(world) -> str:
    r = subprocess.run([*world.user.prefix, "/bin/sh", "-c", 'test -x "$1"', "sh", world.user.python], timeout=10,
                       check=False)
    return world.user.python if r.returncode == 0 else "/usr/bin/python3"


def _probe_file(world) -> str:
    path = world.work / "isoprobe.py"
    if not path.exists():
        path.write_text(_PROBE)
        os.chmod(path, 0o644)
        os.chown(path, world.user.uid, world.user.uid)
    return "isoprobe.py"


def nono(world, *args: str, timeout: float = 60, prefix: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    cmd = (world.user.prefix if prefix is None else prefix) + [world.user.python, *_shim(world), *args]
    return subprocess.run(cmd, cwd=world.work, env=world.env(), capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, check=False)


def probe(world, flags: tuple[str, ...], *actions: str, expect: int = 0) -> tuple[dict, subprocess.CompletedProcess[str]]:
    r = nono(world, "run", "--allow-cwd", *flags, "--", _inner_python(world), _probe_file(world), *actions)
    assert r.returncode == expect, f"nono exited {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    return (json.loads(lines[-1]) if lines else {}), r


def host_userns_ok() -> bool:
    try:
        with open("/proc/sys/user/max_user_namespaces") as f:
            return int(f.read()) > 0
    except OSError:
        return False


# This machine kind has user namespaces: without them the namespace tests fail (a skip would hide
# a broken --isolate). A host that really has none can opt out with NONO_TEST_ALLOW_NO_USERNS=1.
_NO_USERNS_OK = os.environ.get("NONO_TEST_ALLOW_NO_USERNS") == "1"
needs_userns = pytest.mark.skipif(_NO_USERNS_OK and not host_userns_ok(),
                                  reason="NONO_TEST_ALLOW_NO_USERNS=1 and this host has no user namespaces")


# -- limits -----------------------------------------------------------------------
@pytest.mark.parametrize("isolate", [(), ("--isolate", "pid")], ids=["plain", "pidns"])
def test_fork_bomb_contained(world, isolate):
    if isolate and _NO_USERNS_OK and not host_userns_ok():
        pytest.skip("NONO_TEST_ALLOW_NO_USERNS=1 and this host has no user namespaces")
    out, r = probe(world, ("--max-processes", "24", *isolate), "bomb", "200")
    assert out["bomb"]["ok"] < 24, out
    assert out["bomb"]["fail"] >= 200 - 24, out
    assert "[nono] limit max-processes 24:" in r.stderr
    assert ("cgroup" in r.stderr) or ("RLIMIT_NPROC" in r.stderr and world.user.uid != 0)


@pytest.mark.parametrize("isolate", [(), ("--isolate", "pid")], ids=["plain", "pidns"])
def test_memory_hog_ends_with_137_and_message(world, isolate):
    if isolate and _NO_USERNS_OK and not host_userns_ok():
        pytest.skip("NONO_TEST_ALLOW_NO_USERNS=1 and this host has no user namespaces")
    _out, r = probe(world, ("--memory", "192M", *isolate), "hog", "1024", expect=137)
    assert "[nono] memory limit exceeded: 192 MiB" in r.stderr, r.stderr
    assert "survived" not in r.stdout


def test_memory_limit_leaves_a_well_behaved_program_alone(world):
    out, r = probe(world, ("--memory", "512M"), "hog", "64")
    assert out["hog"] == "survived"
    assert "memory limit exceeded" not in r.stderr


@pytest.mark.parametrize("isolate", [(), ("--isolate", "pid")], ids=["plain", "pidns"])
def test_timeout_kills_the_tree_and_exits_124(world, isolate):
    if isolate and _NO_USERNS_OK and not host_userns_ok():
        pytest.skip("NONO_TEST_ALLOW_NO_USERNS=1 and this host has no user namespaces")
    marker = f"29.{uuid.uuid4().int % 10**6:06d}"
    start = time.monotonic()
    r = nono(world, "run", "--allow-cwd", "--timeout", "1s", *isolate, "--", "/bin/sh", "-c",
             f"sleep {marker} & sleep {marker}; echo not-reached")
    took = time.monotonic() - start
    assert r.returncode == 124, r.stderr
    assert "[nono] timeout after 1s" in r.stderr
    assert "not-reached" not in r.stdout
    assert took < 10, took

    def leftovers() -> list[str]:
        found = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if marker.encode() in f.read():
                        found.append(pid)
            except OSError:
                pass
        return found

    deadline = time.monotonic() + 5
    while leftovers() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not leftovers()


def test_timeout_not_reached_keeps_exit_code(world):
    r = nono(world, "run", "-s", "--allow-cwd", "--timeout", "30s", "--", "/bin/sh", "-c", "exit 5")
    assert r.returncode == 5, r.stderr


def test_bad_limit_values_are_usage_errors(world):
    for flag, value in (("--memory", "12Q"), ("--memory", "1K"), ("--timeout", "1h30"), ("--cpus", "0"),
                        ("--isolate", "pid,bogus")):
        r = nono(world, "run", "--allow-cwd", flag, value, "--", "true")
        assert r.returncode == 2, (flag, value, r.stderr)
        assert "nono: error:" in r.stderr


# -- namespaces -------------------------------------------------------------------
@needs_userns
def test_pid_namespace_shows_only_the_sandbox(world):
    host_pids = {int(p) for p in os.listdir("/proc") if p.isdigit()}
    assert len(host_pids) > 5
    out, _ = probe(world, ("--isolate", "pid"), "procs")
    assert out["pids"] and max(out["pids"]) < 20, out  # init, the program, nothing of the host
    assert out["self"] == 2 and out["ppid"] == 1, out
    if shutil.which("ps"):
        r = nono(world, "run", "-s", "--allow-cwd", "--isolate", "pid", "--", "ps", "-e", "-o", "pid=,comm=")
        assert r.returncode == 0, r.stderr
        pids = [int(line.split()[0]) for line in r.stdout.splitlines() if line.strip()]
        assert pids and max(pids) < 20, r.stdout
        assert "pytest" not in r.stdout and "setpriv" not in r.stdout
    control, _ = probe(world, (), "procs")
    assert len(control["pids"]) > len(out["pids"])  # without --isolate the host's processes are listed


@needs_userns
def test_uts_and_ipc_namespaces_are_private(world):
    host = {n: os.readlink(f"/proc/self/ns/{n}") for n in ("uts", "ipc", "net", "pid")}
    before = socket.gethostname()
    out, r = probe(world, ("--isolate", "uts,ipc"), "ns", "hostname")
    assert out["ns"]["uts"] != host["uts"] and out["ns"]["ipc"] != host["ipc"], out
    assert out["ns"]["net"] == host["net"]  # only what was asked for
    assert out["sethostname"] != 0 or out["nodename"] != before  # no capabilities inside: refused
    assert socket.gethostname() == before  # and nothing leaked to the host
    assert "[nono] isolate: ipc, uts namespaces" in r.stderr


@needs_userns
def test_net_namespace_has_only_loopback_and_no_way_out(world):
    with socket.socket() as host_srv:
        host_srv.bind(("127.0.0.1", 0))
        host_srv.listen(4)
        port = str(host_srv.getsockname()[1])
        out, _ = probe(world, ("--isolate", "net"), "netdev", "loopback", "connect", "127.0.0.1", port,
                       "connect", "10.255.255.1", "80")
        assert out["ifaces"] == ["lo"], out
        assert out["routes"] == 0, out
        assert out["loopback"] == "hi"  # a loopback of its own works
        assert out["connect"][f"127.0.0.1:{port}"] == 111  # the host's loopback is not there (ECONNREFUSED)
        assert out["connect"]["10.255.255.1:80"] == 101  # ENETUNREACH: no route at all
        control, _ = probe(world, (), "connect", "127.0.0.1", port)
        assert control["connect"][f"127.0.0.1:{port}"] == 0


def test_net_namespace_refused_with_the_filtering_proxy(world):
    r = nono(world, "run", "--allow-cwd", "--isolate", "net", "--allow-domain", "example.com", "--", "true")
    assert r.returncode == 1, r.stderr
    assert "--isolate net cannot be combined with a filtered network" in r.stderr


@needs_userns
def test_landlock_and_mediation_stay_on_inside(world):
    secret = str(world.home / ".ssh" / "id_rsa")
    out, _ = probe(world, ("--isolate", "all"), "read", secret, "read", "input.txt", "ns")
    assert out["read"][secret] == 13 and out["read"]["input.txt"] == 0, out
    # a unix socket outside every grant: refused by the mediator, from inside a PID namespace too
    sock_path = world.outside / "svc.sock"
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(str(sock_path))
    os.chmod(sock_path, 0o777)
    os.chmod(world.outside, 0o755)
    srv.listen(4)
    try:
        code = ("import socket,sys\ns=socket.socket(socket.AF_UNIX)\n"
                "try:\n s.connect(sys.argv[1]); print('connected')\nexcept OSError as e: print('errno', e.errno)")
        r = nono(world, "run", "-s", "--allow-cwd", "--isolate", "pid", "--", _inner_python(world), "-c", code,
                 str(sock_path))
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == "errno 13", r.stdout
    finally:
        srv.close()


@needs_userns
def test_pid_namespace_keeps_exit_codes_and_signals(world):
    r = nono(world, "run", "-s", "--allow-cwd", "--isolate", "pid", "--", "/bin/sh", "-c", "exit 7")
    assert r.returncode == 7
    r = nono(world, "run", "-s", "--allow-cwd", "--isolate", "pid", "--", "/bin/sh", "-c", "kill -SEGV $$")
    assert r.returncode == 128 + signal.SIGSEGV
    code = ("import signal,sys,time\nsignal.signal(signal.SIGTERM, lambda *a: sys.exit(42))\n"
            "print('ready', flush=True)\nfor _ in range(600): time.sleep(0.05)")
    cmd = world.user.prefix + [world.user.python, *_shim(world), "run", "-s", "--allow-cwd", "--isolate", "pid",
                               "--", _inner_python(world), "-c", code]
    p = subprocess.Popen(cmd, cwd=world.work, env=world.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         stdin=subprocess.DEVNULL, text=True)
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        p.send_signal(signal.SIGTERM)  # to nono: forwarded through the relay and init to the program
        assert p.wait(timeout=20) == 42
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=10)


# -- without user namespaces ---------------------------------------------------------
_NO_USERNS = r'''
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
uid, argv = int(sys.argv[1]), sys.argv[2:]
r1, w1 = os.pipe()
r2, w2 = os.pipe()
pid = os.fork()
if pid == 0:
    if libc.unshare(0x10000000) != 0:
        os._exit(90)
    os.write(w1, b"u")
    os.read(r2, 1)
    with open("/proc/sys/user/max_user_namespaces", "w") as f:  # this namespace's limit only
        f.write("0")
    if uid:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    os.execvp(argv[0], argv)
os.read(r1, 1)
for name in ("uid_map", "gid_map"):
    with open(f"/proc/{pid}/{name}", "w") as f:
        f.write("0 0 1\n65534 65534 1\n")
os.write(w2, b"g")
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
'''


def _without_userns(world, *args: str, patch: bool = False) -> subprocess.CompletedProcess[str]:
    """Run nono in a user namespace whose max_user_namespaces is 0 (the host's sysctl is untouched).

    Root keeps every capability but CAP_SYS_ADMIN, so it needs a user namespace as well.
    """
    driver = world.base / "no_userns.py"
    driver.write_text(_NO_USERNS)
    inner = [] if world.user.uid else ["setpriv", "--bounding-set=-sys_admin", "--inh-caps=-all"]
    shim = _patch_shim(world) if patch else _shim(world)
    cmd = [sys.executable, str(driver), str(world.user.uid), *inner, world.user.python, *shim, *args]
    return subprocess.run(cmd, cwd=world.work, env=world.env(), capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL, check=False)


@needs_userns
def test_isolation_unavailable_fails_clearly_and_plain_mode_works(world):
    r = _without_userns(world, "run", "--allow-cwd", "--isolate", "pid", "--", "true")
    assert r.returncode == 1, r.stderr
    assert "--isolate needs user namespaces, which this system does not allow here" in r.stderr
    assert "max_user_namespaces is 0" in r.stderr
    r = _without_userns(world, "run", "-s", "--allow-cwd", "--", "/bin/sh", "-c", "cat input.txt")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "input\n"
    r = _without_userns(world, "run", "-s", "--allow-cwd", "--timeout", "10s", "--", "/bin/sh", "-c", "exit 3")
    assert r.returncode == 3, r.stderr  # limits need no namespace


@needs_userns
def test_isolation_refused_by_the_kernel_fails_in_the_child_with_126(world):
    """The sysctls look fine but ``unshare`` fails (as under an AppArmor or container seccomp policy)."""
    r = _without_userns(world, "run", "--allow-cwd", "--isolate", "uts", "--", "true", patch=True)
    assert r.returncode == 126, r.stderr
    assert "--isolate needs user namespaces" in r.stderr and "user.max_user_namespaces" in r.stderr


@needs_userns
def test_pid_namespace_with_a_terminal(world):
    """With a terminal the program (PID 2) leads its own session on nono's pseudo-terminal."""
    import pty
    import select

    master, slave = pty.openpty()
    cmd = world.user.prefix + [world.user.python, *_shim(world), "run", "-s", "--allow-cwd", "--isolate", "pid", "--",
                               "/bin/sh", "-c", "tty; ps -o pid=,sid=,comm=; exit 4"]
    p = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=subprocess.PIPE, cwd=world.work, env=world.env(),
                         start_new_session=True)
    os.close(slave)
    out = b""
    deadline = time.monotonic() + 30
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
        elif p.poll() is not None:
            break
    assert p.wait(timeout=10) == 4
    os.close(master)
    text = out.decode(errors="replace")
    assert "/dev/pts/" in text, text
    rows = [line.split() for line in text.splitlines() if line.strip() and line.split()[0].isdigit()]
    assert ["2", "2", "sh"] in rows, text  # PID 2, its own session


def test_profile_resources_and_isolate(world):
    """A profile's ``resources`` and ``isolate`` act like the flags (and flags win)."""
    prof = world.work / "limits-profile.json"
    prof.write_text(json.dumps({"extends": "default", "resources": {"timeout": 1}, "isolate": ["pid"]}))
    os.chown(prof, world.user.uid, world.user.uid)
    r = nono(world, "run", "-s", "--profile", str(prof), "--", "/bin/sh", "-c", "ls /proc | grep -c '^[0-9]'; sleep 20")
    assert r.returncode == 124, r.stderr
    assert int(r.stdout.split()[0]) <= 4, r.stdout  # only the sandbox's own processes in the fresh /proc
    r = nono(world, "run", "-s", "--profile", str(prof), "--timeout", "20s", "--", "/bin/sh", "-c", "sleep 2; echo done")
    assert r.returncode == 0 and "done" in r.stdout, r.stderr
