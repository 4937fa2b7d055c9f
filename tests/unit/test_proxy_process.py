"""The proxy as its own process: start, environment, events over the memfd, stop, parent death."""

from __future__ import annotations

import base64
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "proxy"))
from proxytest import EchoServer, exchange, read_head

from nono.errors import PolicyError
from nono.proxy.process import ProxySettings, start


@pytest.fixture(scope="module")
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    yield server
    server.stop()


def _auth(token: str) -> str:
    return "Basic " + base64.b64encode(f"nono:{token}".encode()).decode()


def test_start_env_events_stop(echo: EchoServer) -> None:
    s = ProxySettings(allow=["allowed.test"], loopback_ports=frozenset({echo.port}), require_tls=False,
                      resolve_overrides={"allowed.test": ["127.0.0.1"]})
    handle = start(s)
    try:
        env = handle.env()
        url = f"http://nono:{handle.token}@127.0.0.1:{handle.port}"
        assert len(handle.token) == 64 and handle.url == url
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
            assert env[name] == url
        assert env["NO_PROXY"] == env["no_proxy"] == "localhost,127.0.0.1,::1"
        assert env["NODE_USE_ENV_PROXY"] == "1" and env["NONO_PROXY_TOKEN"] == handle.token
        assert "ALL_PROXY" not in env
        import socket

        with socket.create_connection(("127.0.0.1", handle.port), timeout=10) as sock:
            sock.sendall(f"CONNECT allowed.test:{echo.port} HTTP/1.1\r\nProxy-Authorization: "
                         f"{_auth(handle.token)}\r\n\r\n".encode())
            assert read_head(sock).startswith(b"HTTP/1.1 200")
            sock.sendall(b"hi")
            assert sock.recv(2) == b"hi"
        denied = exchange(handle.port, f"CONNECT evil.test:443 HTTP/1.1\r\nProxy-Authorization: "
                                       f"{_auth(handle.token)}\r\n\r\n".encode())
        assert denied.startswith(b"HTTP/1.1 403")
        deadline = time.monotonic() + 10
        while len(handle.events()) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        if os.geteuid() == 0:  # the proxy is not dumpable: only root may list its descriptors
            fds = os.listdir(f"/proc/{handle.pid}/fd")
            assert len(fds) <= 12, fds  # stdio, listener, event file, epoll + self-pipe of the loop
    finally:
        events = handle.stop()
    assert not handle.alive()
    events.sort(key=lambda e: str(e["action"]))  # a tunnel's event is written when it ends
    assert [(e["action"], e["host"]) for e in events] == [("allow", "allowed.test"), ("deny", "evil.test")]
    assert events[0]["bytes_up"] == 2 and events[0]["bytes_down"] == 2


def test_open_tunnel_is_recorded_on_stop(echo: EchoServer) -> None:
    s = ProxySettings(allow=["allowed.test"], loopback_ports=frozenset({echo.port}), require_tls=False,
                      resolve_overrides={"allowed.test": ["127.0.0.1"]})
    import socket

    with start(s) as handle:
        sock = socket.create_connection(("127.0.0.1", handle.port), timeout=10)
        sock.sendall(f"CONNECT allowed.test:{echo.port} HTTP/1.1\r\nProxy-Authorization: "
                     f"{_auth(handle.token)}\r\n\r\n".encode())
        assert read_head(sock).startswith(b"HTTP/1.1 200")
        sock.sendall(b"abc")
        assert sock.recv(3) == b"abc"
        events = handle.stop()
        sock.close()
    assert len(events) == 1 and events[0]["reason"] == "proxy stopped" and events[0]["bytes_up"] == 3


def test_bad_settings_fail_in_the_caller() -> None:
    with pytest.raises(PolicyError):
        start(ProxySettings(allow=["not a host"]))


def test_proxy_dies_with_its_parent() -> None:
    r, w = os.pipe()
    middle = os.fork()
    if middle == 0:  # pragma: no cover - child
        try:
            os.close(r)
            handle = start(ProxySettings(allow=["allowed.test"]))
            os.write(w, str(handle.pid).encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        proxy_pid = int(f.read() or b"0")
    os.waitpid(middle, 0)
    assert proxy_pid
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(proxy_pid, 0)
        except ProcessLookupError:
            break
        with open(f"/proc/{proxy_pid}/stat") as f:
            if f.read().split(")")[1].split()[0] == "Z":
                break  # killed, waiting for init to reap it
        time.sleep(0.01)
    else:
        os.kill(proxy_pid, signal.SIGKILL)
        pytest.fail("the proxy outlived its parent")


def test_proxy_started_from_a_thread_outlives_the_thread_but_not_the_process(tmp_path):
    """PDEATHSIG would fire when the forking thread exits; the lifeline pipe follows the process."""
    import subprocess
    import sys
    import textwrap
    import time

    script = textwrap.dedent("""
        import threading, time, sys
        from nono.proxy.process import ProxySettings, start
        box = []
        t = threading.Thread(target=lambda: box.append(start(ProxySettings(allow=["a.test"]))))
        t.start(); t.join()
        time.sleep(0.3)
        import os
        alive = os.waitpid(box[0].pid, os.WNOHANG)[0] == 0
        print(box[0].pid, alive, flush=True)
        os._exit(0)   # no clean stop: only the lifeline can end the proxy
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    pid_s, alive = r.stdout.split()
    assert alive == "True", r.stderr  # survived its thread
    pid = int(pid_s)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split(") ", 1)[1].startswith("Z"):
                    break  # exited (a zombie until init reaps it)
        except FileNotFoundError:
            break
        time.sleep(0.05)
    else:
        raise AssertionError(f"proxy {pid} still running after its process exited")
