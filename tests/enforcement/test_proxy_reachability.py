"""With a filtered network the sandbox reaches exactly 127.0.0.1:<proxy port>, nothing else on that port.

A local service listening on 127.0.0.2 or ::1 with the proxy's port number must stay out of
reach (Landlock's port rule alone would allow it; the mediator checks the address).
"""

from __future__ import annotations

import socket
import threading

import pytest

_PROBE = r"""
import socket, sys
port = int(sys.argv[1])
for fam, addr in ((socket.AF_INET, "127.0.0.2"), (socket.AF_INET6, "::1"), (socket.AF_INET6, "::ffff:127.0.0.2"),
                  (socket.AF_INET, "127.0.0.1")):
    s = socket.socket(fam)
    s.settimeout(5)
    try:
        s.connect((addr, port))
    except OSError as e:
        print(addr, "refused", e.errno)
    else:
        s.settimeout(0.5)
        try:
            data = s.recv(64)
        except OSError:
            data = b""  # the proxy waits for a request
        print(addr, "connected", data)
    s.close()
"""


def _listen(family: int, addr: str, port: int, stop: threading.Event) -> socket.socket:
    s = socket.socket(family)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind((addr, port))
    s.listen(8)
    s.settimeout(0.2)

    def serve() -> None:
        while not stop.is_set():
            try:
                c, _ = s.accept()
            except OSError:
                continue
            with c:
                c.sendall(b"LOCAL-SECRET")

    threading.Thread(target=serve, daemon=True).start()
    return s


def test_only_the_proxy_address_is_reachable_on_the_proxy_port(world):
    probe_port = socket.socket()
    probe_port.bind(("127.0.0.1", 0))
    port = probe_port.getsockname()[1]
    probe_port.close()
    stop = threading.Event()
    try:
        servers = [_listen(socket.AF_INET, "127.0.0.2", port, stop), _listen(socket.AF_INET6, "::1", port, stop)]
    except OSError as exc:
        pytest.fail(f"cannot set up local listeners on port {port}: {exc}")
    try:
        r = world.nono("run", "-s", "--allow-domain", "allowed.test", "--proxy-port", str(port), "--",
                       world.user.python, "-c", _PROBE, str(port))
    finally:
        stop.set()
        for s in servers:
            s.close()
    assert r.returncode == 0, r.stderr
    lines = dict(line.split(" ", 1) for line in r.stdout.strip().splitlines())
    assert "LOCAL-SECRET" not in r.stdout, r.stdout
    for addr in ("127.0.0.2", "::1", "::ffff:127.0.0.2"):
        assert lines[addr].startswith("refused"), r.stdout
    assert lines["127.0.0.1"].startswith("connected"), r.stdout  # the proxy itself (it waits for a request)
