"""TLS interception: the proxy (in a thread) decrypts only the CONNECTs that need it.

One fake HTTPS upstream on 127.0.0.1 (``trustme`` test CA) answers for three names mapped
to 127.0.0.1 with ``resolve_overrides``: ``api.fake.test`` (a credential route's upstream),
``rules.fake.test`` (endpoint rules) and ``plain.fake.test`` (allowed, no rules: an opaque
tunnel). The upstream's CA is trusted through ``upstream_ca_file`` only. Clients trust a
bundle with the session CA. Nothing here contacts another address; every wait is bounded.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import ssl
import stat
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "proxy"))
from proxytest import AUTH, ProxyThread
from test_credentials_fakeupstream import HOST, TIMEOUT, FakeUpstream

from nono.credentials.route import Route
from nono.proxy import cabundle
from nono.proxy.hosts import EndpointRule
from nono.proxy.rules import REASON_NEEDS_TLS, ProxySettings

pytest.importorskip("cryptography")

RULES = "rules.fake.test"
PLAIN = "plain.fake.test"
SECRET = "sk-INTERCEPT-real-0123456789"
PHANTOM = "e" * 64


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeUpstream]:
    up = FakeUpstream(tmp_path_factory.mktemp("up"), keepalive=True)
    assert up.ctx is not None
    up.ca.issue_cert(HOST, RULES, PLAIN, "127.0.0.1").configure_cert(up.ctx)  # one cert, three names
    yield up
    up.stop()


def route(up: FakeUpstream, **kw: object) -> Route:
    kw.setdefault("accept", [("header", "Authorization")])
    kw.setdefault("base_path", "")
    return Route("openai", scheme="https", host=HOST, port=up.port, phantom=PHANTOM,
                 secret=bytearray(SECRET.encode()), **kw)  # type: ignore[arg-type]


def settings(up: FakeUpstream, *routes: Route, intercept: bool = True, ca: bool = True, **kw: object) -> ProxySettings:
    allow = [f"{HOST}:{up.port}", f"{PLAIN}:{up.port}", f"https://{RULES}:{up.port}/v1/**",
             f"GET https://{RULES}:{up.port}/public/*"]
    return ProxySettings(allow=allow, resolve_overrides={h: ["127.0.0.1"] for h in (HOST, RULES, PLAIN)},
                         loopback_ports=frozenset({up.port}), routes=routes or (route(up),),
                         upstream_ca_file=up.ca_file if ca else None, intercept=intercept, **kw)  # type: ignore[arg-type]


def bundle_for(proxy: ProxyThread, tmp: Path) -> str:
    path = tmp / "bundle.pem"
    path.write_bytes(cabundle.compose(proxy.server.interceptor.ca.cert_pem, {}))
    return str(path)


def tunnel(proxy_port: int, host: str, port: int, cafile: str | None, sni: str | None = None,
           auth: str = AUTH) -> ssl.SSLSocket:
    """CONNECT through the proxy, then TLS (verified against ``cafile``)."""
    sock = socket.create_connection(("127.0.0.1", proxy_port), timeout=TIMEOUT)
    sock.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\nProxy-Authorization: {auth}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        assert chunk, head
        head += chunk
    assert head.startswith(b"HTTP/1.1 200"), head
    ctx = ssl.create_default_context(cafile=cafile) if cafile else ssl.create_default_context()
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    return ctx.wrap_socket(sock, server_hostname=sni or host)


class Reader:
    """Reads HTTP/1.1 responses (Content-Length, chunked or until close) from a socket."""

    def __init__(self, sock: ssl.SSLSocket) -> None:
        self.sock = sock
        self.buf = b""

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        self.buf += data
        return bool(data)

    def _take(self, n: int) -> bytes:
        while len(self.buf) < n:
            assert self._fill(), "closed early"
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            assert self._fill(), "closed early"
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def response(self) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buf:
            assert self._fill(), f"closed before a response: {self.buf!r}"
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
        if status == 100:
            return self.response()
        if "content-length" in headers:
            return status, headers, self._take(int(headers["content-length"]))
        if headers.get("transfer-encoding") == "chunked":
            body = b""
            while True:
                size = int(self._line(), 16)
                body += self._take(size)
                self._take(2)
                if size == 0:
                    return status, headers, body
        while self._fill():
            pass
        body, self.buf = self.buf, b""
        return status, headers, body


def get(sock: ssl.SSLSocket, host: str, port: int, path: str, extra: str = "", method: str = "GET",
        body: bytes = b"") -> None:
    length = f"Content-Length: {len(body)}\r\n" if body or method == "POST" else ""
    sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{extra}{length}\r\n".encode() + body)


def once(proxy: ProxyThread, up: FakeUpstream, host: str, path: str, cafile: str, extra: str = "",
         method: str = "GET", body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    with tunnel(proxy.port, host, up.port, cafile) as s:
        get(s, host, up.port, path, extra, method, body)
        return Reader(s).response()


def bearer(token: str = PHANTOM) -> str:
    return f"Authorization: Bearer {token}\r\n"


# -- when to intercept ---------------------------------------------------------------------
def test_filter_decides_where_to_intercept(upstream: FakeUpstream) -> None:
    on = settings(upstream).compile()
    assert on.intercepting
    assert on.intercepts(HOST, upstream.port) and on.intercepts(RULES, upstream.port)
    assert not on.intercepts(PLAIN, upstream.port) and not on.intercepts(HOST, upstream.port + 1)
    assert on.check_host(RULES, upstream.port, "CONNECT").allowed  # the rules are checked inside
    off = settings(upstream, intercept=False).compile()
    assert not off.intercepting and not off.intercepts(HOST, upstream.port)
    assert off.check_host(RULES, upstream.port, "CONNECT").reason == REASON_NEEDS_TLS  # still fail closed
    nothing = ProxySettings(allow=["a.test"], intercept=True).compile()
    assert not nothing.intercepting  # nothing needs it: no CA at all


def test_no_interception_no_ca(upstream: FakeUpstream) -> None:
    with ProxyThread(ProxySettings(allow=["a.test"], intercept=True)) as proxy:
        assert proxy.server.interceptor is None


def test_plain_host_stays_an_opaque_tunnel(upstream: FakeUpstream, tmp_path: Path) -> None:
    with ProxyThread(settings(upstream)) as proxy:
        # trusting only the upstream's own CA works: the client sees the real certificate
        with tunnel(proxy.port, PLAIN, upstream.port, upstream.ca_file) as s:
            issuer = dict(x[0] for x in s.getpeercert()["issuer"])  # type: ignore[index, misc]
            get(s, PLAIN, upstream.port, "/x")
            status, _, body = Reader(s).response()
        with pytest.raises(ssl.SSLCertVerificationError):  # and nono's CA would not do
            tunnel(proxy.port, PLAIN, upstream.port, bundle_for(proxy, tmp_path)).close()
        events = proxy.wait_events(2)
    assert status == 200 and body == b'{"ok": true}'
    assert "nono" not in json.dumps(issuer)
    assert not any(e.get("intercepted") for e in events)


# -- the session CA ------------------------------------------------------------------------
def test_session_ca_and_leaf_certificates(upstream: FakeUpstream, tmp_path: Path) -> None:
    from cryptography import x509

    with ProxyThread(settings(upstream)) as proxy:
        ca = proxy.server.interceptor.ca
        cert = x509.load_pem_x509_certificate(ca.cert_pem)
        assert cert.subject.rfc4514_string().startswith(f"O=nono,CN=nono session CA {ca.id}")
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
        assert bc.critical and bc.value.ca and bc.value.path_length == 0
        nc = cert.extensions.get_extension_for_class(x509.NameConstraints).value
        assert {g.value for g in nc.permitted_subtrees or ()} == {HOST, RULES}
        lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
        assert lifetime.total_seconds() <= 86400 + 600
        with tunnel(proxy.port, HOST, upstream.port, bundle_for(proxy, tmp_path)) as s:
            leaf = x509.load_der_x509_certificate(s.getpeercert(binary_form=True) or b"")
            assert s.selected_alpn_protocol() == "http/1.1"  # h2 offered, http/1.1 chosen
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert san.get_values_for_type(x509.DNSName) == [HOST]
        assert leaf.issuer == cert.subject
        assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        # the CA may sign only for the intercepted names: a client rejects it for another name
        other = ca.leaf_pem("evil.example")
        assert x509.load_pem_x509_certificate(other).issuer == cert.subject


def test_name_constraints_are_enforced_by_clients(upstream: FakeUpstream, tmp_path: Path) -> None:
    import threading

    with ProxyThread(settings(upstream)) as proxy:
        ca = proxy.server.interceptor.ca
        bundle = bundle_for(proxy, tmp_path)
        ctx = ca.context("evil.example")  # a leaf outside the permitted names
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    errors: list[BaseException] = []

    def serve() -> None:
        conn, _ = srv.accept()
        try:
            ctx.wrap_socket(conn, server_side=True).close()
        except (ssl.SSLError, OSError) as exc:
            errors.append(exc)
        finally:
            conn.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    client = ssl.create_default_context(cafile=bundle)
    with socket.create_connection(srv.getsockname(), timeout=TIMEOUT) as raw, \
            pytest.raises(ssl.SSLCertVerificationError, match="(?i)name constraint|permitted"):
        client.wrap_socket(raw, server_hostname="evil.example")
    t.join(TIMEOUT)
    srv.close()


def test_leaf_cache(upstream: FakeUpstream, tmp_path: Path) -> None:
    with ProxyThread(settings(upstream)) as proxy:
        ca = proxy.server.interceptor.ca
        bundle = bundle_for(proxy, tmp_path)
        for _ in range(3):
            assert once(proxy, upstream, RULES, "/v1/a", bundle)[0] == 200
        assert (ca.misses, ca.hits) == (1, 2)
        first = ca.context(RULES)
        assert ca.context(RULES) is first
    small = type(ca)(cache_size=2)
    a = small.context("a.test")
    small.context("b.test")
    small.context("c.test")  # evicts a.test (least recently used)
    assert small.context("a.test") is not a and small.misses == 4


# -- endpoint rules inside TLS -------------------------------------------------------------
def test_endpoint_rules_allow_and_deny_inside_tls(upstream: FakeUpstream, tmp_path: Path) -> None:
    n = len(upstream.requests)
    with ProxyThread(settings(upstream)) as proxy:
        bundle = bundle_for(proxy, tmp_path)
        ok = once(proxy, upstream, RULES, "/v1/models?x=1", bundle)
        public = once(proxy, upstream, RULES, "/public/page", bundle)
        denied = once(proxy, upstream, RULES, "/v2/secret", bundle)
        wrong_method = once(proxy, upstream, RULES, "/public/page", bundle, method="POST", body=b"x")
        events = proxy.wait_events(8)
    assert ok[0] == 200 and ok[2] == b'{"ok": true}' and public[0] == 200
    assert denied[0] == 403 and denied[1]["connection"] == "close"
    assert b"nono: blocked GET https://rules.fake.test/v2/secret (endpoint not allowed: GET /v2/secret" in denied[2]
    assert wrong_method[0] == 403 and b"endpoint not allowed: POST /public/page" in wrong_method[2]
    assert [r.target for r in upstream.requests[n:]] == ["/v1/models?x=1", "/public/page"]  # refusals never left
    per_request = [e for e in events if e.get("intercepted") and e["method"] != "CONNECT"]
    assert [(e["method"], e["path"], e["action"]) for e in per_request] == [
        ("GET", "/v1/models", "allow"), ("GET", "/public/page", "allow"), ("GET", "/v2/secret", "deny"),
        ("POST", "/public/page", "deny")]
    assert per_request[0]["status"] == 200
    connects = [e for e in events if e["method"] == "CONNECT"]
    assert len(connects) == 4 and all(e["intercepted"] and e["action"] == "allow" for e in connects)


def test_keep_alive_each_request_checked(upstream: FakeUpstream, tmp_path: Path) -> None:
    conns = upstream.connections
    with ProxyThread(settings(upstream)) as proxy:
        with tunnel(proxy.port, RULES, upstream.port, bundle_for(proxy, tmp_path)) as s:
            reader = Reader(s)
            for path in ("/v1/a", "/v1/chunked", "/v1/b"):
                get(s, RULES, upstream.port, path)
                status, headers, body = reader.response()
                assert status == 200 and "connection" not in headers
            assert body == b'{"ok": true}'
            get(s, RULES, upstream.port, "/v1/c", method="POST", body=b"hello")  # a body, then pipelining
            get(s, RULES, upstream.port, "/v1/d")
            assert reader.response()[0] == 200 and reader.response()[0] == 200
            get(s, RULES, upstream.port, "/nope")
            status, headers, _ = reader.response()
            assert status == 403 and headers["connection"] == "close"
            assert s.recv(100) == b""  # closed after the refusal
        events = proxy.wait_events(7)
    assert upstream.connections == conns + 1  # one upstream connection, kept alive
    assert upstream.requests[-2].body == b"hello"
    connect = next(e for e in events if e["method"] == "CONNECT")
    assert connect["requests"] == 6


def test_domain_fronting_inside_tls_is_refused(upstream: FakeUpstream, tmp_path: Path) -> None:
    with ProxyThread(settings(upstream)) as proxy:
        bundle = bundle_for(proxy, tmp_path)
        with tunnel(proxy.port, RULES, upstream.port, bundle) as s:
            s.sendall(f"GET /v1/a HTTP/1.1\r\nHost: {PLAIN}:{upstream.port}\r\n\r\n".encode())
            status, _, body = Reader(s).response()
        assert status == 421 and b"domain fronting" in body
        with tunnel(proxy.port, RULES, upstream.port, bundle) as s:
            s.sendall(f"GET https://{RULES}/v1/a HTTP/1.1\r\nHost: {RULES}\r\n\r\n".encode())
            assert Reader(s).response()[0] == 400
        with pytest.raises((ssl.SSLError, OSError)):  # SNI naming another host: refused before TLS
            tunnel(proxy.port, RULES, upstream.port, bundle, sni=PLAIN).close()
        events = proxy.wait_events(5)
    assert any(str(e["reason"]).startswith("sni_mismatch") for e in events)


def test_client_that_does_not_trust_the_ca_fails_closed(upstream: FakeUpstream) -> None:
    n = len(upstream.requests)
    with ProxyThread(settings(upstream)) as proxy:
        with pytest.raises(ssl.SSLCertVerificationError):
            tunnel(proxy.port, RULES, upstream.port, upstream.ca_file).close()
        events = proxy.wait_events(1)
    assert len(upstream.requests) == n  # never a silent opaque tunnel
    assert events[0]["action"] == "deny" and str(events[0]["reason"]).startswith("tls_intercept:")


# -- credentials on the route's own upstream -----------------------------------------------
def test_phantom_swapped_on_the_route_upstream(upstream: FakeUpstream, tmp_path: Path) -> None:
    with ProxyThread(settings(upstream)) as proxy:
        status, _, body = once(proxy, upstream, HOST, "/v1/echo", bundle_for(proxy, tmp_path), bearer())
        events = proxy.wait_events(2)
    rec = upstream.requests[-1]
    assert rec.header("authorization") == f"Bearer {SECRET}" and PHANTOM not in rec.head.decode()
    assert status == 401 and SECRET not in body.decode() and b"auth=Bearer ****" in body  # echo masked
    request_event = next(e for e in events if e["method"] == "GET")
    assert request_event["route"] == "openai" and request_event["action"] == "allow"
    assert SECRET not in json.dumps(events)


def test_basic_auth_swapped_in_place(upstream: FakeUpstream, tmp_path: Path) -> None:
    basic = base64.b64encode(f"x-access-token:{PHANTOM}".encode()).decode()
    with ProxyThread(settings(upstream)) as proxy:
        once(proxy, upstream, HOST, "/repo.git/info/refs", bundle_for(proxy, tmp_path), f"Authorization: Basic {basic}\r\n")
    got = upstream.requests[-1].header("authorization") or ""
    assert base64.b64decode(got.split(" ", 1)[1]).decode() == f"x-access-token:{SECRET}"


def test_header_and_query_modes(upstream: FakeUpstream, tmp_path: Path) -> None:
    r1 = route(upstream, header="x-api-key", format="{}", accept=[("header", "x-api-key"), ("header", "Authorization")])
    with ProxyThread(settings(upstream, r1)) as proxy:
        once(proxy, upstream, HOST, "/m", bundle_for(proxy, tmp_path), bearer())
    rec = upstream.requests[-1]
    assert rec.header("x-api-key") == SECRET and rec.header("authorization") is None
    r2 = route(upstream, inject_mode="query_param", query_param="key", accept=[])
    with ProxyThread(settings(upstream, r2)) as proxy:
        once(proxy, upstream, HOST, f"/m?a=1&key={PHANTOM}", bundle_for(proxy, tmp_path))
    assert upstream.requests[-1].target == f"/m?a=1&key={SECRET}"


def test_no_or_foreign_credential_goes_unchanged(upstream: FakeUpstream, tmp_path: Path) -> None:
    with ProxyThread(settings(upstream)) as proxy:
        bundle = bundle_for(proxy, tmp_path)
        first = once(proxy, upstream, HOST, "/v1/echo", bundle)  # git's first, unauthenticated request
        assert upstream.requests[-1].header("authorization") is None and first[0] == 401  # the upstream's own 401
        once(proxy, upstream, HOST, "/v1/x", bundle, bearer("sk-my-own-token"))
        assert upstream.requests[-1].header("authorization") == "Bearer sk-my-own-token"


def test_phantom_sent_to_another_intercepted_host_is_not_swapped(upstream: FakeUpstream, tmp_path: Path) -> None:
    with ProxyThread(settings(upstream)) as proxy:
        once(proxy, upstream, RULES, "/v1/x", bundle_for(proxy, tmp_path), bearer())
        with tunnel(proxy.port, PLAIN, upstream.port, upstream.ca_file) as s:  # an opaque tunnel: untouched too
            get(s, PLAIN, upstream.port, "/y", bearer())
            Reader(s).response()
    assert upstream.requests[-2].header("authorization") == f"Bearer {PHANTOM}"
    assert upstream.requests[-1].header("authorization") == f"Bearer {PHANTOM}"


def test_route_base_path_and_endpoint_rules(upstream: FakeUpstream, tmp_path: Path) -> None:
    r = route(upstream, base_path="/api", endpoints=[EndpointRule("GET", "/repos/acme/**")])
    n = len(upstream.requests)
    with ProxyThread(settings(upstream, r)) as proxy:
        bundle = bundle_for(proxy, tmp_path)
        ok = once(proxy, upstream, HOST, "/api/repos/acme/x", bundle, bearer())
        denied = once(proxy, upstream, HOST, "/api/repos/other/x", bundle, bearer())
        outside = once(proxy, upstream, HOST, "/elsewhere", bundle, bearer())  # not under the route: no swap
    assert ok[0] == 200 and denied[0] == 403 and b"on route openai" in denied[2]
    sent = upstream.requests[n:]
    assert [x.target for x in sent] == ["/api/repos/acme/x", "/elsewhere"]
    assert sent[0].header("authorization") == f"Bearer {SECRET}"
    assert sent[1].header("authorization") == f"Bearer {PHANTOM}" and outside[0] == 200


def test_upstream_verification_is_never_weakened(upstream: FakeUpstream, tmp_path: Path) -> None:
    n = len(upstream.requests)
    with ProxyThread(settings(upstream, ca=False)) as proxy:
        status, _, body = once(proxy, upstream, HOST, "/v1/x", bundle_for(proxy, tmp_path), bearer())
        events = proxy.wait_events(2)
    assert status == 502 and b"TLS verification failed for api.fake.test" in body
    assert len(upstream.requests) == n
    assert any(e["action"] == "error" and "verification failed" in str(e["reason"]) for e in events)
    # the route's own tls_ca is the other way to add a trust anchor
    with ProxyThread(settings(upstream, route(upstream, tls_ca=upstream.ca_file), ca=False)) as proxy:
        assert once(proxy, upstream, HOST, "/v1/x", bundle_for(proxy, tmp_path), bearer())[0] == 200
    assert upstream.requests[-1].header("authorization") == f"Bearer {SECRET}"


def test_streaming_passes_through(upstream: FakeUpstream, tmp_path: Path) -> None:
    upstream.gate.clear()
    with ProxyThread(settings(upstream)) as proxy, \
            tunnel(proxy.port, HOST, upstream.port, bundle_for(proxy, tmp_path)) as s:
        get(s, HOST, upstream.port, "/v1/sse", bearer())
        got = b""
        deadline = time.monotonic() + TIMEOUT
        while b"data: 1" not in got and time.monotonic() < deadline:
            got += s.recv(65536)
        assert b"data: 1" in got and b"data: 2" not in got  # before the upstream sent the rest
        upstream.gate.set()
        while b"0\r\n\r\n" not in got and time.monotonic() < deadline:
            got += s.recv(65536)
    assert b"data: 2" in got


def test_fifty_parallel_intercepted_requests(upstream: FakeUpstream, tmp_path: Path) -> None:
    with ProxyThread(settings(upstream)) as proxy:
        bundle = bundle_for(proxy, tmp_path)

        def one(i: int) -> tuple[int, bytes]:
            host, extra = (HOST, bearer()) if i % 2 else (RULES, "")
            status, _, body = once(proxy, upstream, host, f"/v1/p{i}", bundle, extra)
            return status, body

        with ThreadPoolExecutor(50) as pool:
            results = list(pool.map(one, range(50)))
        events = proxy.wait_events(100)
    assert results == [(200, b'{"ok": true}')] * 50
    assert sum(1 for e in events if e["method"] == "GET" and e["action"] == "allow") == 50


# -- the CA bundle and the proxy process ---------------------------------------------------
def test_bundle_keeps_the_system_roots(tmp_path: Path) -> None:
    corp = tmp_path / "corp.pem"
    corp.write_bytes(b"-----BEGIN CERTIFICATE-----\nQ09SUA==\n-----END CERTIFICATE-----\n")
    data = cabundle.compose(b"-----BEGIN CERTIFICATE-----\nTk9OTw==\n-----END CERTIFICATE-----\n",
                            {"SSL_CERT_FILE": str(corp), "REQUESTS_CA_BUNDLE": str(corp)})
    roots = cabundle.system_roots()
    assert roots is not None
    assert data.count(b"Q09SUA==") == 1 and data.rstrip().endswith(b"Tk9OTw==\n-----END CERTIFICATE-----")
    assert data.count(b"BEGIN CERTIFICATE") > 50  # the system roots are there
    assert b"PRIVATE KEY" not in data
    path, fd = cabundle.reserve([str(tmp_path / "sessions")])
    cabundle.fill(fd, b"-----BEGIN CERTIFICATE-----\nTk9OTw==\n-----END CERTIFICATE-----\n", {})
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o444 and stat.S_IMODE(os.stat(tmp_path / "sessions").st_mode) == 0o700


def test_proxy_process_writes_the_bundle_and_keeps_the_key(upstream: FakeUpstream, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from nono.proxy import process

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    with process.start(settings(upstream)) as handle:
        env = handle.env()
        bundle = handle.ca_bundle
        assert bundle is not None and bundle.startswith(str(tmp_path / "state" / "nono" / "sessions"))
        assert {env[v] for v in cabundle.ENV_VARS} == {bundle}
        data = Path(bundle).read_bytes()
        assert b"nono session CA" in data and b"PRIVATE KEY" not in data
        assert stat.S_IMODE(os.stat(bundle).st_mode) == 0o444
        # the proxy process holds no file with a key: its descriptors are sockets, pipes and memfds
        for fd in os.listdir(f"/proc/{handle.pid}/fd"):
            target = os.readlink(f"/proc/{handle.pid}/fd/{fd}")
            assert not target.startswith("/") or target in ("/dev/null",) or target.startswith("/memfd:") \
                or "(deleted)" in target, target
        # a request through it, trusting the bundle
        auth = "Basic " + base64.b64encode(f"nono:{handle.token}".encode()).decode()
        with tunnel(handle.port, RULES, upstream.port, bundle, auth=auth) as s:
            get(s, RULES, upstream.port, "/v1/x")
            assert Reader(s).response()[0] == 200
    assert not os.path.exists(bundle)  # deleted at shutdown


def test_proxy_start_without_interception_has_no_bundle() -> None:
    from nono.proxy import process

    with process.start(ProxySettings(allow=["a.test"], intercept=True)) as handle:
        assert handle.ca_bundle is None and "SSL_CERT_FILE" not in handle.env()


def test_token_still_required(upstream: FakeUpstream) -> None:
    with ProxyThread(settings(upstream)) as proxy, \
            socket.create_connection(("127.0.0.1", proxy.port), timeout=TIMEOUT) as s:
        s.sendall(f"CONNECT {RULES}:{upstream.port} HTTP/1.1\r\n\r\n".encode())
        assert s.recv(100).startswith(b"HTTP/1.1 407")


def test_network_session_grants_the_bundle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import nono
    from nono.sandbox import network
    from nono.sandbox.plan import build_plan

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    policy = nono.Policy().allow_network(["https://x.test/v1/**"])
    assert network.settings(policy).intercept  # `nono run` turns interception on
    plan = build_plan(policy)
    session = network.start(policy)
    try:
        bundle = session.ca_bundle
        assert bundle is not None
        assert "SSL_CERT_FILE" not in session.env({})  # not before the sandbox may read it
        session.grant(plan)
        rule = plan.rules[os.path.realpath(bundle)]
        assert (rule.access, rule.is_dir, rule.source) == ("read", False, "nono")
        env = session.env({"SSL_CERT_FILE": "/etc/corp.pem"})
        assert {env[v] for v in cabundle.ENV_VARS} == {bundle}
    finally:
        session.stop()
        plan.close_fds()
    assert not os.path.exists(bundle)
