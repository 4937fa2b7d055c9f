"""The proxy end to end, in a thread, against loopback test servers (never another address).

Test names such as ``allowed.test`` are mapped to 127.0.0.1 with ``resolve_overrides``;
the test servers' ports are opened with ``loopback_ports``, like ``--open-port`` would.
"""

from __future__ import annotations

import hashlib
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "proxy"))
from proxytest import (
    AUTH,
    EchoServer,
    HttpServer,
    ProxyThread,
    client_hello,
    exchange,
    fd_count,
    free_port,
    read_head,
    tunnel,
)

from nono.proxy.rules import ProxySettings

LOCAL = {"allowed.test": ["127.0.0.1"], "other.test": ["127.0.0.1"]}


@pytest.fixture(scope="module")
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    yield server
    server.stop()


@pytest.fixture
def http() -> Iterator[HttpServer]:
    server = HttpServer()
    yield server
    server.stop()


def settings(*ports: int, **kw: object) -> ProxySettings:
    kw.setdefault("allow", ["allowed.test"])
    kw.setdefault("resolve_overrides", LOCAL)
    kw.setdefault("require_tls", False)  # most tests here exercise the relay with a plain echo server
    return ProxySettings(loopback_ports=frozenset(ports), **kw)  # type: ignore[arg-type]


def get(port: int, url: str, extra: str = "", auth: str | None = AUTH) -> bytes:
    host = url.split("/")[2]
    a = f"Proxy-Authorization: {auth}\r\n" if auth else ""
    return exchange(port, f"GET {url} HTTP/1.1\r\nHost: {host}\r\n{a}{extra}\r\n".encode())


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(1 << 20, n - len(buf)))
        if not chunk:
            break
        buf += chunk
    return bytes(buf)


# -- CONNECT -----------------------------------------------------------------------------
def test_connect_relays_both_ways_and_records_bytes(echo: EchoServer) -> None:
    with ProxyThread(settings(echo.port)) as proxy:
        sock, head = tunnel(proxy.port, "allowed.test", echo.port)
        with sock:
            assert head == b"HTTP/1.1 200 Connection Established\r\n\r\n"
            sock.sendall(b"ping")
            assert recv_exactly(sock, 4) == b"ping"
            sock.shutdown(socket.SHUT_WR)  # half-close: the echo side still answers, then ends
            assert sock.recv(10) == b""
        (event,) = proxy.wait_events(1)
    assert event["action"] == "allow" and event["method"] == "CONNECT" and event["host"] == "allowed.test"
    assert event["bytes_up"] == 4 and event["bytes_down"] == 4 and event["port"] == echo.port
    assert isinstance(event["duration_ms"], float) and isinstance(event["time"], float)


def test_bulk_through_tunnel_is_exact(echo: EchoServer) -> None:
    payload = os.urandom(1 << 20) * 24  # 24 MiB: takes the splice path
    with ProxyThread(settings(echo.port)) as proxy:
        sock, head = tunnel(proxy.port, "allowed.test", echo.port)
        with sock:
            assert head.startswith(b"HTTP/1.1 200")
            def send() -> None:
                sock.sendall(payload)
                sock.shutdown(socket.SHUT_WR)

            sender = threading.Thread(target=send)
            sender.start()
            digest = hashlib.sha256()
            got = 0
            while chunk := sock.recv(1 << 20):
                digest.update(chunk)
                got += len(chunk)
            sender.join(10)
        assert got == len(payload) and digest.digest() == hashlib.sha256(payload).digest()
        (event,) = proxy.wait_events(1)
    assert event["bytes_up"] == event["bytes_down"] == len(payload)


def test_denied_host_gets_403_with_reason(echo: EchoServer) -> None:
    with ProxyThread(settings(echo.port)) as proxy:
        sock, head = tunnel(proxy.port, "evil.example.com", 443)
        with sock:
            body = sock.recv(4096)
        assert head.startswith(b"HTTP/1.1 403 Forbidden\r\n")
        assert body == b"nono: blocked evil.example.com:443 (not in allowlist; nono why --host evil.example.com)\n"
        (event,) = proxy.wait_events(1)
    assert event["action"] == "deny" and event["reason"] == "not in allowlist" and event["host"] == "evil.example.com"
    assert echo.connections >= 0  # the proxy never connected anywhere for it


@pytest.mark.parametrize("auth", [None, "Basic " + "bm9ubzp3cm9uZw==", "Bearer " + "t" * 64, "Basic !!!"])
def test_bad_or_missing_token_gets_407(echo: EchoServer, auth: str | None) -> None:
    before = echo.connections
    with ProxyThread(settings(echo.port)) as proxy:
        sock, head = tunnel(proxy.port, "allowed.test", echo.port, auth=auth)
        sock.close()
        (event,) = proxy.wait_events(1)
    assert head.startswith(b"HTTP/1.1 407 Proxy Authentication Required\r\n")
    assert b'Proxy-Authenticate: Basic realm="nono"\r\n' in head
    assert event["action"] == "deny" and str(event["reason"]).startswith("auth:")
    assert echo.connections == before


@pytest.mark.parametrize("host,overrides,reason", [
    ("169.254.169.254", {}, "metadata"),
    ("metadata.google.internal", {"metadata.google.internal": ["127.0.0.1"]}, "metadata name"),
    ("linklocal.test", {"linklocal.test": ["169.254.10.10"]}, "link-local"),
    ("mapped.test", {"mapped.test": ["::ffff:169.254.169.254"]}, "metadata"),
    ("mixed.test", {"mixed.test": ["127.0.0.1", "fe80::1"]}, "link-local"),
    ("loop.test", {"loop.test": ["127.0.0.1"]}, "was not opened"),
    ("127.0.0.1", {}, "was not opened"),
    ("private.test", {"private.test": ["10.0.0.1"]}, "private networks are denied"),
])
def test_ssrf_refused(echo: EchoServer, host: str, overrides: dict[str, list[str]], reason: str) -> None:
    opened = () if "opened" in reason else (echo.port,)
    port = echo.port
    s = settings(*opened, allow=[host], resolve_overrides=overrides, deny_private=True)
    with ProxyThread(s) as proxy:
        sock, head = tunnel(proxy.port, host, port)
        with sock:
            body = sock.recv(4096)
        (event,) = proxy.wait_events(1)
    assert head.startswith(b"HTTP/1.1 403"), head
    assert str(event["reason"]).startswith("ssrf:") and reason in str(event["reason"]), event
    assert b"ssrf:" in body


def test_dns_rebinding_connects_to_the_checked_address(echo: EchoServer) -> None:
    answers = [["127.0.0.1"], ["169.254.169.254"]]
    calls: list[str] = []

    def rebinding(host: str, port: int) -> list[str]:
        calls.append(host)
        return answers[min(len(calls) - 1, 1)]

    with ProxyThread(settings(echo.port), resolver=rebinding) as proxy:
        sock, head = tunnel(proxy.port, "allowed.test", echo.port)
        with sock:
            assert head.startswith(b"HTTP/1.1 200")
            sock.sendall(b"x")
            assert sock.recv(1) == b"x"  # reached the loopback echo server, not the second answer
        proxy.wait_events(1)
        assert calls == ["allowed.test"]  # resolved once; the connect used that answer
        sock, head = tunnel(proxy.port, "allowed.test", echo.port)  # the 2nd answer is checked too
        sock.close()
        assert head.startswith(b"HTTP/1.1 403") and "metadata" in str(proxy.wait_events(2)[1]["reason"])


def test_sni_must_match_the_connect_host(echo: EchoServer) -> None:
    with ProxyThread(settings(echo.port, allow=["allowed.test", "other.test"])) as proxy:
        hello = client_hello("allowed.test")
        sock, head = tunnel(proxy.port, "allowed.test", echo.port)
        with sock:
            sock.sendall(hello)
            assert recv_exactly(sock, len(hello)) == hello  # relayed to the (echo) server
        bad, head = tunnel(proxy.port, "allowed.test", echo.port)
        with bad:
            assert head.startswith(b"HTTP/1.1 200")
            bad.sendall(client_hello("other.test"))  # allowed too, but not the CONNECT target
            assert bad.recv(65536) == b""  # closed, nothing echoed
        nosni, _ = tunnel(proxy.port, "allowed.test", echo.port)
        with nosni:
            nosni.sendall(client_hello(None))
            assert len(recv_exactly(nosni, 10)) == 10
        events = proxy.wait_events(3)
    by_reason = sorted(str(e["reason"]) for e in events)
    assert any(r.startswith("sni_mismatch: ClientHello names other.test") for r in by_reason)
    assert [e["action"] for e in events].count("deny") == 1


def test_client_hello_sent_with_the_connect_request(echo: EchoServer) -> None:
    """Clients may send the ClientHello without waiting for 200: it is checked all the same."""
    with ProxyThread(settings(echo.port)) as proxy:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
            sock.sendall(f"CONNECT allowed.test:{echo.port} HTTP/1.1\r\nProxy-Authorization: {AUTH}\r\n\r\n".encode()
                         + client_hello("evil.test"))
            assert read_head(sock).startswith(b"HTTP/1.1 200")
            assert sock.recv(100) == b""
        assert str(proxy.wait_events(1)[0]["reason"]).startswith("sni_mismatch")


def test_server_first_protocol_is_relayed() -> None:
    greeter = EchoServer(greeting=b"SSH-2.0-test\r\n")
    try:
        with ProxyThread(settings(greeter.port)) as proxy:
            sock, head = tunnel(proxy.port, "allowed.test", greeter.port)
            with sock:
                assert recv_exactly(sock, 14) == b"SSH-2.0-test\r\n"  # before the client said anything
                sock.sendall(b"SSH-2.0-client\r\n")
                assert recv_exactly(sock, 16) == b"SSH-2.0-client\r\n"
    finally:
        greeter.stop()


def test_endpoint_rules_on_connect_fail_closed(echo: EchoServer) -> None:
    with ProxyThread(settings(echo.port, allow=["https://allowed.test/v1/**"])) as proxy:
        sock, head = tunnel(proxy.port, "allowed.test", echo.port)
        sock.close()
        (event,) = proxy.wait_events(1)
    assert head.startswith(b"HTTP/1.1 403")
    assert event["reason"] == "endpoint rules need TLS interception (not available)"


def test_upstream_refused_is_502_and_survives() -> None:
    closed = free_port()
    with ProxyThread(settings(closed)) as proxy:
        sock, head = tunnel(proxy.port, "allowed.test", closed)
        with sock:
            body = sock.recv(4096)
        (event,) = proxy.wait_events(1)
    assert head.startswith(b"HTTP/1.1 502 Bad Gateway"), head
    assert b"Connection refused" in body and event["action"] == "error"


def test_bad_request_is_400() -> None:
    with ProxyThread(settings()) as proxy:
        answer = exchange(proxy.port, b"GET http://allowed.test/ HTTP/1.1\nHost: allowed.test\n\n")
        assert answer.startswith(b"HTTP/1.1 400 Bad Request") and b"bare LF" in answer
        answer = exchange(proxy.port, b"GET https://allowed.test/ HTTP/1.1\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 400") and b"use CONNECT" in answer
        events = proxy.wait_events(2)
    assert all(e["action"] == "deny" and str(e["reason"]).startswith("bad request") for e in events)


def test_slow_head_times_out() -> None:
    with ProxyThread(settings(head_timeout=0.3)) as proxy:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
            sock.sendall(b"CONNECT allowed.test:1 HTTP/1.1\r\n")
            start = time.monotonic()
            assert sock.recv(100) == b""
            assert time.monotonic() - start < 3
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5):
            pass  # connects and says nothing: no event
        assert "timeout" in str(proxy.wait_events(1)[0]["reason"])


def test_idle_tunnel_times_out(echo: EchoServer) -> None:
    with ProxyThread(settings(echo.port, idle_timeout=0.3)) as proxy:
        sock, _ = tunnel(proxy.port, "allowed.test", echo.port)
        with sock:
            sock.sendall(b"x")
            assert sock.recv(1) == b"x"
            start = time.monotonic()
            assert sock.recv(1) == b""
            assert time.monotonic() - start < 3
        assert proxy.wait_events(1)[0]["reason"] == "timeout: idle"


# -- plain HTTP --------------------------------------------------------------------------
def test_plain_get_forwarded_canonically(http: HttpServer) -> None:
    with ProxyThread(settings(http.port)) as proxy:
        answer = get(proxy.port, f"http://allowed.test:{http.port}/x?y=1",
                     "Connection: keep-alive, X-Hop\r\nX-Hop: 1\r\nProxy-Connection: keep-alive\r\nX-Keep: 1\r\n")
        (event,) = proxy.wait_events(1)
    assert answer == b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    assert http.requests == [f"GET /x?y=1 HTTP/1.1\r\nHost: allowed.test:{http.port}\r\nX-Keep: 1\r\n"
                             "Connection: close\r\n\r\n".encode()]
    assert event["action"] == "allow" and event["method"] == "GET" and event["bytes_down"] == len(answer)
    assert event["bytes_up"] == len(http.requests[0])


def test_plain_post_content_length_then_pipelined_request_dropped(http: HttpServer) -> None:
    with ProxyThread(settings(http.port, allow=["allowed.test", "other.test"])) as proxy:
        first = (f"POST http://allowed.test:{http.port}/a HTTP/1.1\r\nProxy-Authorization: {AUTH}\r\n"
                 "Content-Length: 5\r\n\r\nhello")
        second = f"GET http://other.test:{http.port}/smuggled HTTP/1.1\r\nProxy-Authorization: {AUTH}\r\n\r\n"
        answer = exchange(proxy.port, (first + second).encode())
        proxy.wait_events(1)
    assert answer.endswith(b"ok") and answer.count(b"HTTP/1.1 200") == 1
    assert len(http.requests) == 1
    assert http.requests[0].endswith(b"Content-Length: 5\r\nConnection: close\r\n\r\nhello")
    assert b"smuggled" not in http.requests[0]


def test_plain_chunked_body_reframed_exactly(http: HttpServer) -> None:
    with ProxyThread(settings(http.port)) as proxy:
        body = "5;ext=x\r\nhello\r\n00006\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n"
        smuggle = f"GET http://allowed.test:{http.port}/second HTTP/1.1\r\nProxy-Authorization: {AUTH}\r\n\r\n"
        answer = exchange(proxy.port, (f"POST http://allowed.test:{http.port}/c HTTP/1.1\r\n"
                                       f"Proxy-Authorization: {AUTH}\r\nTransfer-Encoding: chunked\r\n\r\n"
                                       + body + smuggle).encode())
        (event,) = proxy.wait_events(1)
    assert answer.endswith(b"ok")
    assert http.requests == [f"POST /c HTTP/1.1\r\nHost: allowed.test:{http.port}\r\nTransfer-Encoding: chunked\r\n"
                             "Connection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n".encode()]
    assert event["bytes_up"] == len(http.requests[0])


def test_smuggling_heads_never_reach_upstream(http: HttpServer) -> None:
    with ProxyThread(settings(http.port)) as proxy:
        for extra in ("Content-Length: 4\r\nTransfer-Encoding: chunked\r\n", "Transfer-Encoding: xchunked\r\n",
                      "Content-Length: 4\r\nContent-Length: 5\r\n", "Transfer-Encoding: chunked, identity\r\n"):
            answer = get(proxy.port, f"http://allowed.test:{http.port}/", extra)
            assert answer.startswith(b"HTTP/1.1 400"), extra
        bad_chunk = exchange(proxy.port, (f"POST http://allowed.test:{http.port}/ HTTP/1.1\r\nProxy-Authorization: "
                                          f"{AUTH}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloEXTRA\r\n0\r\n\r\n"
                                          ).encode())
        events = proxy.wait_events(5)
    assert len(http.requests) <= 1  # only the bad-chunk request was started upstream ...
    assert all(b"EXTRA" not in r for r in http.requests)  # ... and its bad bytes never went on
    assert bad_chunk.startswith(b"HTTP/1.1 400") and b"chunk data longer than its size" in bad_chunk
    assert [e["action"] for e in events].count("deny") == 5


def test_plain_http_denied_host_and_host_header_mismatch(http: HttpServer) -> None:
    with ProxyThread(settings(http.port)) as proxy:
        answer = get(proxy.port, f"http://evil.test:{http.port}/")
        assert answer.startswith(b"HTTP/1.1 403") and b"nono: blocked evil.test" in answer
        raw = (f"GET http://allowed.test:{http.port}/ HTTP/1.1\r\nHost: evil.test\r\n"
               f"Proxy-Authorization: {AUTH}\r\n\r\n")
        assert exchange(proxy.port, raw.encode()).startswith(b"HTTP/1.1 400")
        proxy.wait_events(2)
    assert http.requests == []


def test_plain_http_endpoint_rules(http: HttpServer) -> None:
    rules = {"allowed.test": ["GET /v1/**", ("POST", "/upload")]}
    with ProxyThread(settings(http.port, allow=[], endpoint_rules=rules)) as proxy:
        assert get(proxy.port, f"http://allowed.test:{http.port}/v1/models?x=1").endswith(b"ok")
        denied = get(proxy.port, f"http://allowed.test:{http.port}/v2/models")
        assert denied.startswith(b"HTTP/1.1 403") and b"endpoint not allowed: GET /v2/models" in denied
        assert get(proxy.port, f"http://allowed.test:{http.port}/v1/../admin").startswith(b"HTTP/1.1 403")
        events = proxy.wait_events(3)
    assert len(http.requests) == 1 and http.requests[0].startswith(b"GET /v1/models?x=1 ")
    assert [e["action"] for e in events] == ["allow", "deny", "deny"]


# -- upstream proxy ----------------------------------------------------------------------
def test_upstream_proxy_chaining(echo: EchoServer, http: HttpServer) -> None:
    with ProxyThread(settings(echo.port, http.port)) as outer:
        chained = settings(echo.port, allow=["allowed.test", "bypass.test"], upstream=("127.0.0.1", outer.port),
                           upstream_authorization=AUTH, upstream_bypass=["bypass.test"],
                           resolve_overrides={"bypass.test": ["127.0.0.1"]})
        with ProxyThread(chained) as inner:
            sock, head = tunnel(inner.port, "allowed.test", echo.port)
            with sock:
                assert head.startswith(b"HTTP/1.1 200")
                sock.sendall(b"via")
                assert recv_exactly(sock, 3) == b"via"
            assert get(inner.port, f"http://allowed.test:{http.port}/p").endswith(b"ok")
            sock, head = tunnel(inner.port, "bypass.test", echo.port)  # direct: the outer proxy would refuse it
            sock.close()
            assert head.startswith(b"HTTP/1.1 200")
            inner.wait_events(3)
        outer_events = outer.wait_events(2)
    assert [e["method"] for e in outer_events] == ["CONNECT", "GET"]
    assert http.requests[0].startswith(b"GET /p HTTP/1.1\r\n")


# -- load and robustness -----------------------------------------------------------------
def test_500_concurrent_tunnels_no_errors_no_fd_leak(echo: EchoServer) -> None:
    n = 500
    with ProxyThread(settings(echo.port)) as proxy:
        time.sleep(0.05)
        baseline = fd_count()
        socks = []
        request = f"CONNECT allowed.test:{echo.port} HTTP/1.1\r\nProxy-Authorization: {AUTH}\r\n\r\n".encode()
        for _ in range(n):  # all requests in flight before any answer is read
            s = socket.create_connection(("127.0.0.1", proxy.port), timeout=20)
            s.sendall(request)
            socks.append(s)
        for s in socks:
            assert read_head(s).startswith(b"HTTP/1.1 200")
        assert proxy.server.active == n
        for i, s in enumerate(socks):
            s.sendall(b"%d" % i)
        for i, s in enumerate(socks):
            expect = b"%d" % i
            assert recv_exactly(s, len(expect)) == expect
        for s in socks:
            s.close()
        events = proxy.wait_events(n, timeout=20)
        deadline = time.monotonic() + 10
        while fd_count() > baseline and time.monotonic() < deadline:
            time.sleep(0.02)
        assert fd_count() <= baseline
        assert proxy.server.active == 0
    assert len(events) == n and all(e["action"] == "allow" for e in events)


def test_client_vanishing_mid_stream_does_not_hurt_the_server(echo: EchoServer) -> None:
    with ProxyThread(settings(echo.port)) as proxy:
        time.sleep(0.05)
        baseline = fd_count()
        for _ in range(5):
            sock, _ = tunnel(proxy.port, "allowed.test", echo.port)
            sock.setblocking(False)
            try:
                for _ in range(64):  # fill every buffer on the way without reading the echo
                    sock.send(b"x" * 65536)
            except BlockingIOError:
                pass
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")  # RST on close
            sock.close()
        proxy.wait_events(5)
        sock, head = tunnel(proxy.port, "allowed.test", echo.port)  # still serving
        with sock:
            sock.sendall(b"alive")
            assert recv_exactly(sock, 5) == b"alive"
        proxy.wait_events(6)
        deadline = time.monotonic() + 10
        while fd_count() > baseline and time.monotonic() < deadline:
            time.sleep(0.02)
        assert fd_count() <= baseline


def test_tunnel_must_carry_tls_naming_the_host(echo: EchoServer) -> None:
    """A plain-text tunnel (e.g. HTTP with another Host header) or TLS without SNI could reach another
    virtual host at the allowed host's address: refused when TLS is required (the default)."""
    with ProxyThread(settings(echo.port, require_tls=True)) as proxy:
        for first in (b"GET / HTTP/1.1\r\nHost: evil.test\r\n\r\n", client_hello(None)):
            sock, head = tunnel(proxy.port, "allowed.test", echo.port)
            with sock:
                assert head.startswith(b"HTTP/1.1 200")
                sock.sendall(first)
                sock.settimeout(5)
                assert sock.recv(100) == b""  # closed, nothing echoed
        sock, head = tunnel(proxy.port, "allowed.test", echo.port)
        with sock:
            hello = client_hello("allowed.test")
            sock.sendall(hello)
            sock.settimeout(5)
            assert recv_exactly(sock, len(hello)) == hello  # TLS naming the host passes
        reasons = [e["reason"] for e in proxy.events if e["action"] == "deny"]
        assert any(r.startswith("not_tls") for r in reasons) and any(r.startswith("no_sni") for r in reasons), reasons
