"""The socket mediator never lets the kernel re-run a checked call: regressions of a review.

Each test attacks through `nono run` as root and as nobody. The attacks are the
reviewer's, rewritten in Python (bounded to a few seconds): swapping the fd
number between check and use, moving or hard-linking someone else's socket into
a grant, and swapping a directory for a symlink.
"""

from __future__ import annotations

import json
import os
import socket
import textwrap
import threading
import time

import pytest


def _server(path: str, uid: int) -> tuple[socket.socket, list[bytes]]:
    """An outside unix-socket server recording what it receives (runs until closed)."""
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    os.chown(path, uid, uid)
    srv.listen(64)
    srv.settimeout(0.2)
    got: list[bytes] = []

    def loop() -> None:
        end = time.monotonic() + 30
        while time.monotonic() < end:
            try:
                c, _ = srv.accept()
            except (TimeoutError, OSError):
                if srv.fileno() < 0:
                    return
                continue
            c.settimeout(1)
            try:
                got.append(c.recv(100) or b"<connected>")
            except OSError:
                got.append(b"<connected>")
            c.close()

    threading.Thread(target=loop, daemon=True).start()
    return srv, got


def _run(world, code: str, *flags: str) -> dict:
    script = world.work / "attack.py"
    script.write_text(textwrap.dedent(code))
    os.chown(script, world.user.uid, world.user.uid)
    r = world.nono("run", "-s", "--allow-cwd", *flags, "--", world.user.python, str(script), timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_own_server_works_outside_servers_do_not(world):
    victim, got = _server(str(world.outside / "victim.sock"), world.user.uid)
    try:
        out = _run(world, f"""
            import json, os, socket, threading
            res = {{}}
            srv = socket.socket(socket.AF_UNIX); srv.bind("own.sock"); srv.listen(1)
            threading.Thread(target=lambda: srv.accept()[0].sendall(b"own-ok")).start()
            c = socket.socket(socket.AF_UNIX); c.connect("own.sock"); res["own"] = c.recv(10).decode()
            for name, target in (("hardlink", "hl.sock"), ("moved", "moved.sock")):
                try:
                    if name == "hardlink":
                        os.link({str(world.outside / 'victim.sock')!r}, target)
                    s = socket.socket(socket.AF_UNIX); s.connect(target); s.sendall(b"LEAK"); res[name] = "connected"
                except OSError as e:
                    res[name] = e.errno
            print(json.dumps(res))
        """)
        assert out["own"] == "own-ok"
        assert out["hardlink"] != "connected"  # no rights to link it in, or refused at connect
        assert got == []
    finally:
        victim.close()


def test_socket_moved_into_grant_is_refused(world):
    """The victim lives in a directory the sandbox can write (here: the project itself)."""
    srvdir = world.work / "srv"
    srvdir.mkdir()
    os.chown(srvdir, world.user.uid, world.user.uid)
    victim, got = _server(str(srvdir / "victim.sock"), world.user.uid)
    try:
        out = _run(world, """
            import json, os, socket
            res = {}
            os.link("srv/victim.sock", "linked.sock")
            os.rename("srv/victim.sock", "moved.sock")
            for target in ("linked.sock", "moved.sock"):
                try:
                    s = socket.socket(socket.AF_UNIX); s.connect(target); s.sendall(b"LEAK"); res[target] = "connected"
                except OSError as e:
                    res[target] = e.errno
            print(json.dumps(res))
        """)
        assert out == {"linked.sock": 13, "moved.sock": 13}
        assert got == []
    finally:
        victim.close()


def test_fd_swap_race_never_wins(world):
    """Thread B swaps an inet socket and a unix socket on one fd number while thread A connects."""
    victim, got = _server(str(world.outside / "victim.sock"), world.user.uid)
    try:
        out = _run(world, f"""
            import json, os, socket, threading, time
            victim = {str(world.outside / 'victim.sock')!r}
            inet = socket.socket(); unix = socket.socket(socket.AF_UNIX)
            F = os.dup(inet.fileno()); stop = False
            def swap():
                while not stop:
                    os.dup2(inet.fileno(), F); os.dup2(unix.fileno(), F)
            t = threading.Thread(target=swap); t.start()
            won = tries = 0
            end = time.monotonic() + 2
            while time.monotonic() < end:
                tries += 1
                s = socket.socket(fileno=os.dup(F))
                try:
                    s.connect(victim); won += 1; s.sendall(b"LEAK")
                except (OSError, TypeError):
                    pass
                finally:
                    s.close()
            stop = True; t.join()
            print(json.dumps({{"won": won, "tries": tries}}))
        """)
        assert out["won"] == 0 and out["tries"] > 10
        assert got == []
    finally:
        victim.close()


@pytest.mark.parametrize("blocking", [True, False])
def test_tcp_connect_through_the_mediator(world, blocking):
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(8)
    port = lst.getsockname()[1]
    try:
        out = _run(world, f"""
            import json, socket
            res = {{}}
            for p in ({port}, 1):
                s = socket.socket()
                if not {blocking}:
                    s.settimeout(3)
                try:
                    s.connect(("127.0.0.1", p)); res[str(p)] = "ok"
                except OSError as e:
                    res[str(p)] = e.errno
            print(json.dumps(res))
        """, "--block-net", "--allow-connect-port", str(port))
        assert out == {str(port): "ok", "1": 13}
    finally:
        lst.close()


def test_bind_with_another_family_is_refused(world):
    """AF_UNSPEC on an AF_INET socket would bind INADDR_ANY and skip the port checks."""
    out = _run(world, """
        import ctypes, json, socket, struct
        libc = ctypes.CDLL(None, use_errno=True)
        s = socket.socket()
        addr = struct.pack("=HH4s8x", 0, socket.htons(47999), b"\\0\\0\\0\\0")  # sin_family = AF_UNSPEC
        rc = libc.bind(s.fileno(), addr, len(addr))
        print(json.dumps({"rc": rc, "errno": ctypes.get_errno(), "name": s.getsockname()[1]}))
    """, "--block-net")
    assert out["rc"] == -1 and out["name"] == 0


def test_reused_inode_number_does_not_open_a_victim(world):
    """The sandbox binds and unlinks sockets; a victim later created outside may reuse an inode number."""
    ready, go = world.work / "ready", world.work / "go"
    victim_path = world.outside / "agent.sock"
    import subprocess

    script = world.work / "attack.py"
    script.write_text(textwrap.dedent(f"""
        import json, os, socket, time
        for i in range(100):
            s = socket.socket(socket.AF_UNIX); s.bind(f"s{{i}}"); s.close(); os.unlink(f"s{{i}}")
        open({str(ready)!r}, "w").close()
        end = time.monotonic() + 20
        while not os.path.exists({str(go)!r}) and time.monotonic() < end:
            time.sleep(0.02)
        try:
            c = socket.socket(socket.AF_UNIX); c.connect({str(victim_path)!r}); c.sendall(b"LEAK"); print(json.dumps("connected"))
        except OSError as e:
            print(json.dumps(e.errno))
    """))
    os.chown(script, world.user.uid, world.user.uid)
    cmd = world.user.prefix + [world.user.python, "-m", "nono", "run", "-s", "--allow-cwd", "--", world.user.python, str(script)]
    p = subprocess.Popen(cmd, cwd=world.work, env=world.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        end = time.monotonic() + 20
        while not ready.exists() and time.monotonic() < end:
            time.sleep(0.02)
        victim, got = _server(str(victim_path), world.user.uid)
        go.touch()
        out, err = p.communicate(timeout=30)
    finally:
        p.kill()
    try:
        assert json.loads(out.strip().splitlines()[-1]) == 13, err
        assert got == []
    finally:
        victim.close()


def test_mediator_drops_capabilities(root_world):
    """As root, the mediator must not lend its capabilities: an audit multicast bind needs CAP_AUDIT_READ."""
    out = _run(root_world, """
        import json, socket
        s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 9)  # NETLINK_AUDIT
        try:
            s.bind((0, 1)); print(json.dumps("bound"))
        except OSError as e:
            print(json.dumps(e.errno))
    """)
    assert out == 1  # EPERM


def test_a_server_that_never_accepts_does_not_stall_mediation(world):
    out = _run(world, """
        import json, socket, threading, time
        srv = socket.socket(socket.AF_UNIX); srv.bind("slow.sock"); srv.listen(0)  # never accepts
        conns = []
        def fill():
            for _ in range(4):
                c = socket.socket(socket.AF_UNIX)
                try:
                    c.connect("slow.sock")
                except OSError:
                    pass
                conns.append(c)
        t = threading.Thread(target=fill, daemon=True); t.start()
        time.sleep(0.3)
        start = time.monotonic()
        other = socket.socket(); other.bind(("127.0.0.1", 0))  # another mediated call
        print(json.dumps(time.monotonic() - start))
    """)
    assert out < 2.0


def test_nothing_outlives_nono_run(world):
    marker = world.work / "late.txt"
    r = world.nono("run", "-s", "--allow-cwd", "--", "/bin/sh", "-c",
                   f"setsid sh -c 'sleep 2; echo alive > {marker}' >/dev/null 2>&1 &")
    assert r.returncode == 0
    time.sleep(3)
    assert not marker.exists()
