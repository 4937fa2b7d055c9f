"""Credential-route benchmark: per-request latency through the phantom-token reverse proxy.

    .venv/bin/python bench/credential_bench.py [--rounds 400] [--nono-py PYTHON]

A fake HTTPS API (test CA from ``trustme``, answering a small JSON body, keep-alive
capable) runs in its own process on 127.0.0.1. Interleaved rounds, median and p90 of:

* ``direct, new TLS``   the client opens TLS to the upstream itself for each request
  (what an SDK does on a fresh connection)
* ``direct, keep-alive`` one reused TLS connection (the best case without a proxy)
* ``nono route``        plain HTTP to ``http://127.0.0.1:<port>/openai/...`` with the
  phantom; nono's proxy process swaps in the real key and opens verified TLS upstream
* ``nono-py route``     the same through ``nono_py.start_proxy`` with a ``RouteConfig``
  (Rust), when an interpreter with nono-py is found (``--nono-py``, ``$NONO_PY_PYTHON``,
  ``/tmp/nonopy/venv/bin/python``)

"Added" is the route's median minus the direct median. Every socket is on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

SECRET = "sk-bench-REAL-secret-000111222333"
BODY = b'{"id": "x", "object": "list", "data": []}'


# -- the fake upstream (forked) -------------------------------------------------------------
def _upstream(sock: socket.socket, cert_dir: str) -> None:
    import asyncio

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(cert_dir, "leaf.pem"))

    async def conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                low = head.lower()
                if b"content-length:" in low:
                    await reader.readexactly(int(low.split(b"content-length:", 1)[1].split(b"\r\n", 1)[0]))
                ok = SECRET.encode() in head
                body = BODY if ok else b"wrong key"
                writer.write(b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                             % (200 if ok else 401, len(body), body))
                await writer.drain()
                if b"connection: close" in low:
                    break
        except (OSError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(conn, sock=sock, ssl=ctx, backlog=1024)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def _fork_upstream(cert_dir: str) -> tuple[int, int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    pid = os.fork()
    if pid == 0:
        try:
            _upstream(sock, cert_dir)
        finally:
            os._exit(0)
    port = sock.getsockname()[1]
    sock.close()
    return pid, port


def _certs(cert_dir: str) -> str:
    import trustme

    ca = trustme.CA()
    ca.cert_pem.write_to_path(os.path.join(cert_dir, "ca.pem"))
    leaf = ca.issue_cert("127.0.0.1", "api.fake.test")
    leaf.private_key_and_cert_chain_pem.write_to_path(os.path.join(cert_dir, "leaf.pem"))
    return os.path.join(cert_dir, "ca.pem")


# -- clients ---------------------------------------------------------------------------------
def _read_response(sock: socket.socket | ssl.SSLSocket) -> bytes:
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError(f"closed after {buf!r}")
        buf += data
    head, _, body = buf.partition(b"\r\n\r\n")
    n = int(head.lower().split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
    while len(body) < n:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed inside the body")
        body += data
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(head.decode("latin-1", "replace") + body.decode("latin-1", "replace"))
    return body


def _request(path: str, auth: str, close: bool) -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: api.fake.test\r\nAuthorization: Bearer {auth}\r\n"
            + ("Connection: close\r\n" if close else "") + "\r\n").encode()


def direct_fresh(port: int, ctx: ssl.SSLContext) -> Callable[[], None]:
    def run() -> None:
        with socket.create_connection(("127.0.0.1", port)) as raw, \
                ctx.wrap_socket(raw, server_hostname="api.fake.test") as s:
            s.sendall(_request("/v1/models", SECRET, True))
            _read_response(s)
    return run


def direct_keepalive(port: int, ctx: ssl.SSLContext) -> Callable[[], None]:
    raw = socket.create_connection(("127.0.0.1", port))
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s = ctx.wrap_socket(raw, server_hostname="api.fake.test")

    def run() -> None:
        s.sendall(_request("/v1/models", SECRET, False))
        _read_response(s)
    return run


def route(port: int, prefix: str, phantom: str) -> Callable[[], None]:
    def run() -> None:
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.sendall(_request(f"/{prefix}/models", phantom, False))
            _read_response(s)
    return run


# -- the proxies -------------------------------------------------------------------------------
def start_nono(up_port: int, ca: str) -> tuple[object, str]:
    from nono.credentials.session import prepare
    from nono.proxy import process
    from nono.proxy.rules import ProxySettings

    os.environ["NONO_BENCH_SECRET"] = SECRET
    plan = prepare(["openai=env://NONO_BENCH_SECRET"])
    r = plan.routes[0]
    r.host, r.port = "127.0.0.1", up_port
    handle = process.start(ProxySettings(routes=plan.routes, upstream_ca_file=ca, loopback_ports=frozenset({up_port})))
    return handle, plan.child_env(handle.port)["OPENAI_API_KEY"]


def _find_nono_py(explicit: str | None) -> str | None:
    for python in filter(None, [explicit, os.environ.get("NONO_PY_PYTHON"), "/tmp/nonopy/venv/bin/python"]):
        if os.path.exists(python) and subprocess.run([python, "-c", "import nono_py; nono_py.RouteConfig"],
                                                     capture_output=True, timeout=60).returncode == 0:
            return python
    return None


def _nono_py_worker(up_port: int, ca: str) -> None:
    import nono_py

    os.environ["NONO_BENCH_SECRET"] = SECRET
    r = nono_py.RouteConfig(prefix="openai", upstream=f"https://127.0.0.1:{up_port}/v1",
                            credential_key="env://NONO_BENCH_SECRET", env_var="OPENAI_API_KEY", tls_ca=ca)
    handle = nono_py.start_proxy(nono_py.ProxyConfig(allowed_hosts=["127.0.0.1"], routes=[r], max_connections=4096))
    env = handle.credential_env_vars()
    print(json.dumps({"port": handle.port, "env": env, "diag": handle.diagnostics()}), flush=True)
    sys.stdin.read()
    handle.shutdown()


def _measure(fns: dict[str, Callable[[], None]], rounds: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():  # warm up
        for _ in range(20):
            fn()
    for _ in range(rounds):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - t) * 1000)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=400)
    parser.add_argument("--nono-py", dest="nono_py")
    parser.add_argument("--worker-nono-py", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.worker_nono_py:
        _nono_py_worker(int(args.worker_nono_py[0]), args.worker_nono_py[1])
        return 0
    with tempfile.TemporaryDirectory() as cert_dir:
        ca = _certs(cert_dir)
        up_pid, up_port = _fork_upstream(cert_dir)
        worker = None
        handle = None
        try:
            client_ctx = ssl.create_default_context(cafile=ca)
            handle, phantom = start_nono(up_port, ca)
            fns = {"direct, new TLS": direct_fresh(up_port, client_ctx),
                   "direct, keep-alive": direct_keepalive(up_port, client_ctx),
                   "nono route": route(handle.port, "openai", phantom)}  # type: ignore[attr-defined]
            python = _find_nono_py(args.nono_py)
            note = "nono-py: not found (pip install nono-py==0.16.0 into a venv; pass --nono-py PYTHON)"
            if python:
                worker = subprocess.Popen([python, __file__, "--worker-nono-py", str(up_port), ca],
                                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                assert worker.stdout is not None
                info = json.loads(worker.stdout.readline())
                token = next((v for k, v in info["env"].items() if k == "OPENAI_API_KEY"), None)
                if token:
                    fns["nono-py route"] = route(info["port"], "openai", token)
                    note = f"nono-py: {python}"
                else:
                    note = f"nono-py: route gave no token ({info})"
            times = _measure(fns, args.rounds)
        finally:
            if worker is not None:
                worker.stdin.close()  # type: ignore[union-attr]
                worker.wait(10)
            if handle is not None:
                handle.stop()  # type: ignore[attr-defined]
            os.kill(up_pid, signal.SIGTERM)
            os.waitpid(up_pid, 0)
    result = {name: {"median_ms": round(statistics.median(t), 3),
                     "p90_ms": round(sorted(t)[int(len(t) * 0.9)], 3)} for name, t in times.items()}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"credential route latency, {args.rounds} interleaved rounds, loopback; {note}")
    base_new = result["direct, new TLS"]["median_ms"]
    base_ka = result["direct, keep-alive"]["median_ms"]
    for name, r in result.items():
        extra = ""
        if "route" in name:
            extra = (f"   added vs new TLS {r['median_ms'] - base_new:+.3f} ms, "
                     f"vs keep-alive {r['median_ms'] - base_ka:+.3f} ms")
        print(f"  {name:<20} median {r['median_ms']:7.3f} ms   p90 {r['p90_ms']:7.3f} ms{extra}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
