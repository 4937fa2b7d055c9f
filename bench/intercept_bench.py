"""TLS interception benchmark: an intercepted request vs an opaque tunnel vs direct, side by side.

    .venv/bin/python bench/intercept_bench.py [--rounds 300] [--json]

A fake HTTPS API (test CA from ``trustme``, keep-alive capable, small JSON answer) runs in
its own process on 127.0.0.1 and answers for three names, all mapped to 127.0.0.1 in the
proxy: ``plain.fake.test`` (allowed, no rules: an opaque tunnel), ``rules.fake.test``
(endpoint rules: intercepted, each request checked) and ``api.fake.test`` (a credential
route's upstream: intercepted, the phantom swapped for the real key). nono's proxy runs
in its own process (``proxy.process.start``, ``intercept=True``); clients trust the session
bundle it writes. Interleaved rounds, median and p90 of:

* ``direct``                   to the upstream itself
* ``tunnel``                   ``CONNECT plain.fake.test`` (bytes relayed, end-to-end TLS)
* ``intercept, rules``         ``CONNECT rules.fake.test`` (decrypted, endpoint rules checked)
* ``intercept, credential``    ``CONNECT api.fake.test`` with the phantom (swapped)

each as ``new``: a new TCP + TLS connection per request (what a CLI run does; for the
intercepted ones this includes two handshakes, client<->nono and nono<->upstream), and
``keep-alive``: requests on one open connection (the per-request cost of the path).
Every socket is on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import socket
import ssl
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from credential_bench import SECRET, _read_response, _upstream

NAMES = ("plain.fake.test", "rules.fake.test", "api.fake.test")
PHANTOM = "b" * 64


def _certs(cert_dir: str) -> str:
    import trustme

    ca = trustme.CA()
    ca.cert_pem.write_to_path(os.path.join(cert_dir, "ca.pem"))
    ca.issue_cert("127.0.0.1", *NAMES).private_key_and_cert_chain_pem.write_to_path(os.path.join(cert_dir, "leaf.pem"))
    return os.path.join(cert_dir, "ca.pem")


def _fork_upstream(cert_dir: str) -> tuple[int, int]:
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets whose ``proto`` says TCP,
    # and accepted sockets inherit it; with proto 0 the server's writes meet Nagle + delayed ACK (40 ms).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
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


def _request(host: str, token: str) -> bytes:
    return f"GET /v1/models HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\r\n".encode()


def _connect(proxy: tuple[int, str] | None, host: str, port: int, ctx: ssl.SSLContext) -> ssl.SSLSocket:
    if proxy is None:
        raw = socket.create_connection(("127.0.0.1", port))
    else:
        raw = socket.create_connection(("127.0.0.1", proxy[0]))
        auth = base64.b64encode(f"nono:{proxy[1]}".encode()).decode()
        raw.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\nProxy-Authorization: Basic {auth}\r\n\r\n"
                    .encode())
        head = b""
        while b"\r\n\r\n" not in head:
            data = raw.recv(4096)
            if not data:
                raise ConnectionError("proxy closed")
            head += data
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(head.decode("latin-1"))
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return ctx.wrap_socket(raw, server_hostname=host)


def fresh(proxy: tuple[int, str] | None, host: str, port: int, ctx: ssl.SSLContext, token: str) -> Callable[[], None]:
    def run() -> None:
        with _connect(proxy, host, port, ctx) as s:
            s.sendall(_request(host, token))
            _read_response(s)
    return run


def kept(proxy: tuple[int, str] | None, host: str, port: int, ctx: ssl.SSLContext, token: str) -> Callable[[], None]:
    s = _connect(proxy, host, port, ctx)
    request = _request(host, token)

    def run() -> None:
        s.sendall(request)
        _read_response(s)
    return run


def _measure(fns: dict[str, Callable[[], None]], rounds: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():  # warm up (leaf certificates, trust stores, pools)
        for _ in range(20):
            fn()
    names = list(fns)
    for i in range(rounds):
        order = names[i % len(names):] + names[:i % len(names)]  # every path takes every slot
        for name in order:
            t = time.perf_counter()
            fns[name]()
            times[name].append((time.perf_counter() - t) * 1000)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    from nono.credentials.route import Route
    from nono.proxy import process
    from nono.proxy.rules import ProxySettings

    with tempfile.TemporaryDirectory() as cert_dir:
        ca = _certs(cert_dir)
        up_pid, up_port = _fork_upstream(cert_dir)
        handle = None
        try:
            route = Route("openai", scheme="https", host="api.fake.test", port=up_port, base_path="", phantom=PHANTOM,
                          secret=bytearray(SECRET.encode()), accept=[("header", "Authorization")])
            settings = ProxySettings(
                allow=[f"plain.fake.test:{up_port}", f"https://rules.fake.test:{up_port}/v1/**",
                       f"api.fake.test:{up_port}"],
                resolve_overrides={n: ["127.0.0.1"] for n in NAMES}, loopback_ports=frozenset({up_port}),
                routes=[route], upstream_ca_file=ca, intercept=True)
            handle = process.start(settings)
            handle.env()  # waits for the session CA bundle
            assert handle.ca_bundle is not None
            direct_ctx = ssl.create_default_context(cafile=ca)
            session_ctx = ssl.create_default_context(cafile=handle.ca_bundle)
            proxy = (handle.port, handle.token)
            paths = {
                "direct": (None, "plain.fake.test", direct_ctx, SECRET),
                "tunnel": (proxy, "plain.fake.test", direct_ctx, SECRET),
                "intercept, rules": (proxy, "rules.fake.test", session_ctx, SECRET),
                "intercept, credential": (proxy, "api.fake.test", session_ctx, PHANTOM),
            }
            fns: dict[str, Callable[[], None]] = {}
            for name, (p, host, ctx, token) in paths.items():
                fns[f"{name}, new"] = fresh(p, host, up_port, ctx, token)
            for name, (p, host, ctx, token) in paths.items():
                fns[f"{name}, keep-alive"] = kept(p, host, up_port, ctx, token)
            times = _measure(fns, args.rounds)
        finally:
            if handle is not None:
                handle.stop()
            os.kill(up_pid, signal.SIGTERM)
            os.waitpid(up_pid, 0)
    result = {name: {"median_ms": round(statistics.median(t), 3),
                     "p90_ms": round(sorted(t)[int(len(t) * 0.9)], 3)} for name, t in times.items()}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"TLS interception latency, {args.rounds} interleaved rounds, loopback, {os.cpu_count()} CPUs")
    for mode in ("new", "keep-alive"):
        base = result[f"direct, {mode}"]["median_ms"]
        tunnel = result[f"tunnel, {mode}"]["median_ms"]
        print(f" {mode}:")
        for name, r in result.items():
            if not name.endswith(", " + mode):
                continue
            extra = ""
            if not name.startswith("direct"):
                extra = f"   added vs direct {r['median_ms'] - base:+.3f} ms"
                if name.startswith("intercept"):
                    extra += f", vs tunnel {r['median_ms'] - tunnel:+.3f} ms"
            print(f"  {name.rsplit(', ', 1)[0]:<22} median {r['median_ms']:7.3f} ms   p90 {r['p90_ms']:7.3f} ms{extra}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
