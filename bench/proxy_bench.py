"""Proxy benchmark: nono's Python proxy vs a direct loopback connection vs nono-py's Rust proxy.

    .venv/bin/python bench/proxy_bench.py [--size-mib 256] [--rounds 200] [--tunnels 500] [--nono-py PYTHON]

Measured side by side in one run (ratios only; nothing here asserts an absolute time):

* CONNECT set-up latency: connect + ``CONNECT`` + ``200`` + a 1-byte echo, median over
  interleaved rounds; "direct" is connect + the same 1-byte echo.
* Bulk throughput: a 256 MiB download through a tunnel (best and median of 5), vs direct.
* Proxy RSS before, while 500 tunnels are open, and after they closed.

The Rust proxy is ``nono_py.start_proxy`` (PyPI ``nono-py``). It runs in a worker process
of an interpreter that can import it: this one, ``--nono-py PYTHON``, ``$NONO_PY_PYTHON``,
or ``/tmp/nonopy/venv/bin/python`` (a throw-away venv: ``pip install nono-py==0.16.0``).
Every server and client is on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

MIB = 1 << 20


# -- servers (forked) ----------------------------------------------------------------------
def _fork_server(target: Callable[[socket.socket], None]) -> tuple[int, int]:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    pid = os.fork()
    if pid == 0:
        try:
            target(sock)
        finally:
            os._exit(0)
    port = sock.getsockname()[1]
    sock.close()
    return pid, port


def _echo_server(sock: socket.socket) -> None:
    import asyncio

    async def conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(conn, sock=sock, backlog=2048)
        await server.serve_forever()

    asyncio.run(main())


def _bulk_server(size: int) -> Callable[[socket.socket], None]:
    def serve(sock: socket.socket) -> None:
        block = memoryview(os.urandom(MIB))
        while True:
            conn, _ = sock.accept()
            with conn:
                conn.recv(1)  # the client says "go" once its tunnel is up
                sent = 0
                while sent < size:
                    conn.sendall(block[: min(MIB, size - sent)])
                    sent += min(MIB, size - sent)
    return serve


# -- proxies ------------------------------------------------------------------------------
class Target:
    """How to reach a server: directly, or through a proxy with a token."""

    def __init__(self, name: str, proxy_port: int | None = None, token: str = "", pid: int | None = None) -> None:
        self.name, self.proxy_port, self.pid = name, proxy_port, pid
        self.auth = "Basic " + base64.b64encode(f"nono:{token}".encode()).decode()

    def open(self, port: int) -> socket.socket:
        if self.proxy_port is None:
            s = socket.create_connection(("127.0.0.1", port))
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return s
        s = socket.create_connection(("127.0.0.1", self.proxy_port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                  f"Proxy-Authorization: {self.auth}\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(4096)
            if not chunk:
                raise RuntimeError(f"{self.name}: proxy closed the connection")
            head += chunk
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"{self.name}: {head[:80]!r}")
        return s

    def rss_kib(self) -> int | None:
        if self.pid is None:
            return None
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return None


def _find_nono_py(explicit: str | None) -> str | None:
    candidates = [explicit, os.environ.get("NONO_PY_PYTHON"), sys.executable, "/tmp/nonopy/venv/bin/python"]
    for python in filter(None, candidates):
        if not os.path.exists(python):
            continue
        ok = subprocess.run([python, "-c", "import nono_py; nono_py.start_proxy"], capture_output=True, timeout=60)
        if ok.returncode == 0:
            return python
    return None


def _nono_py_worker() -> None:
    import nono_py

    handle = nono_py.start_proxy(nono_py.ProxyConfig(allowed_hosts=["127.0.0.1"], max_connections=4096))
    env = handle.env_vars()
    print(json.dumps({"port": handle.port, "token": env["NONO_PROXY_TOKEN"], "pid": os.getpid()}), flush=True)
    sys.stdin.read()  # until the benchmark closes our stdin
    handle.shutdown()


# -- measurements -------------------------------------------------------------------------
def setup_latency(target: Target, port: int) -> float:
    start = time.perf_counter()
    with target.open(port) as s:
        s.sendall(b"x")
        s.recv(1)
        return (time.perf_counter() - start) * 1000


def download(target: Target, port: int, size: int) -> float:
    buf = bytearray(MIB)
    with target.open(port) as s:
        start = time.perf_counter()
        s.sendall(b"g")
        got = 0
        while n := s.recv_into(buf):
            got += n
        elapsed = time.perf_counter() - start
    if got != size:
        raise RuntimeError(f"{target.name}: got {got} of {size} bytes")
    return size / elapsed / 1e9


def tunnels_rss(target: Target, port: int, n: int) -> tuple[int | None, int | None, int | None]:
    before = target.rss_kib()
    socks = []
    try:
        for _ in range(n):
            s = target.open(port)
            s.sendall(b"x")
            s.recv(1)
            socks.append(s)
        during = target.rss_kib()
    finally:
        for s in socks:
            s.close()
    time.sleep(1.0)
    return before, during, target.rss_kib()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--tunnels", type=int, default=500)
    parser.add_argument("--transfers", type=int, default=5)
    parser.add_argument("--nono-py", dest="nono_py")
    parser.add_argument("--worker-nono-py", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker_nono_py:
        _nono_py_worker()
        return 0

    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    size = args.size_mib * MIB
    children = []
    echo_pid, echo_port = _fork_server(_echo_server)
    bulk_pid, bulk_port = _fork_server(_bulk_server(size))
    children += [echo_pid, bulk_pid]

    from nono.proxy.process import ProxySettings, start

    # require_tls=False: the benchmark relays plain bytes (the TLS check is one parse of the first record)
    ours = start(ProxySettings(allow=["127.0.0.1"], loopback_ports=frozenset({echo_port, bulk_port}), require_tls=False))
    targets = [Target("direct"), Target("nono (python)", ours.port, ours.token, ours.pid)]
    worker = None
    python = _find_nono_py(args.nono_py)
    why_not = ""
    if python is None:
        why_not = "nono_py not importable (pip install nono-py==0.16.0 into a venv; pass --nono-py PYTHON)"
    else:
        worker = subprocess.Popen([python, __file__, "--worker-nono-py"], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        assert worker.stdout is not None
        info = json.loads(worker.stdout.readline())
        targets.append(Target("nono-py (rust)", info["port"], info["token"], info["pid"]))
    results: dict[str, dict[str, Any]] = {t.name: {"latency": [], "gbps": []} for t in targets}
    try:
        for t in targets:  # warm-up
            setup_latency(t, echo_port)
        for i in range(args.rounds):
            for t in targets[i % len(targets):] + targets[: i % len(targets)]:
                results[t.name]["latency"].append(setup_latency(t, echo_port))
        for i in range(args.transfers):
            for t in targets[i % len(targets):] + targets[: i % len(targets)]:
                results[t.name]["gbps"].append(download(t, bulk_port, size))
        for t in targets[1:]:
            results[t.name]["rss"] = tunnels_rss(t, echo_port, args.tunnels)
        ours_events = ours.stop()
    finally:
        if worker is not None:
            assert worker.stdin is not None
            worker.stdin.close()
            worker.wait(10)
        ours.stop()
        for pid in children:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)

    direct = results["direct"]
    d_lat = statistics.median(direct["latency"])
    d_gbps = max(direct["gbps"])
    print(f"CONNECT set-up + 1-byte echo, median of {args.rounds} interleaved rounds; "
          f"{args.size_mib} MiB download, best/median of {args.transfers}; RSS with {args.tunnels} tunnels\n")
    print(f"{'path':<16}{'setup ms':>10}{'added ms':>10}{'GB/s best':>11}{'GB/s med':>10}{'x direct':>10}"
          f"{'RSS MiB before/at/after':>26}")
    summary: dict[str, Any] = {}
    for name, r in results.items():
        lat = statistics.median(r["latency"])
        best, med = max(r["gbps"]), statistics.median(r["gbps"])
        rss = r.get("rss")
        rss_text = "/".join(f"{v / 1024:.1f}" if v else "-" for v in rss) if rss else "-"
        print(f"{name:<16}{lat:>10.3f}{lat - d_lat:>10.3f}{best:>11.2f}{med:>10.2f}{best / d_gbps:>10.2f}{rss_text:>26}")
        summary[name] = {"setup_ms": round(lat, 4), "added_ms": round(lat - d_lat, 4), "gbps_best": round(best, 3),
                         "gbps_median": round(med, 3), "rss_kib": rss}
    if "nono-py (rust)" in results:
        ratio = max(results["nono (python)"]["gbps"]) / max(results["nono-py (rust)"]["gbps"])
        print(f"\nthroughput python/rust: {ratio:.2f}x (target >= 0.8)")
        summary["throughput_ratio_vs_rust"] = round(ratio, 3)
    else:
        print(f"\nnono-py: not measured: {why_not}")
    errors = [e for e in ours_events if e["action"] != "allow"]
    print(f"our proxy recorded {len(ours_events)} events, {len(errors)} not 'allow'")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
