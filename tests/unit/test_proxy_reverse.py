"""Credential routes end to end: the proxy (in a thread) in front of a fake HTTPS upstream on 127.0.0.1.

``api.fake.test`` maps to 127.0.0.1 with ``resolve_overrides``; the upstream's port is
opened with ``loopback_ports``; the upstream's private CA is trusted through
``upstream_ca_file`` (tests only). Nothing here contacts another address.
"""

from __future__ import annotations

import base64
import json
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "proxy"))
from proxytest import AUTH, HttpServer, ProxyThread
from test_credentials_fakeupstream import HOST, TIMEOUT, FakeUpstream, http

from nono.credentials.route import Route
from nono.proxy.hosts import EndpointRule
from nono.proxy.rules import ProxySettings

SECRET = "sk-REAL-secret-0123456789abcdef"
PHANTOM = "f" * 64


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeUpstream]:
    up = FakeUpstream(tmp_path_factory.mktemp("up"))
    yield up
    up.stop()


def route(up: FakeUpstream, name: str = "openai", base: str = "/v1", **kw: object) -> Route:
    return Route(name, scheme="https", host=HOST, port=up.port, base_path=base, phantom=str(kw.pop("phantom", PHANTOM)),
                 secret=bytearray(str(kw.pop("secret", SECRET)).encode()), **kw)  # type: ignore[arg-type]


def settings(up: FakeUpstream, *routes: Route, ca: bool = True, **kw: object) -> ProxySettings:
    return ProxySettings(allow=["allowed.test"], resolve_overrides={HOST: ["127.0.0.1"], "allowed.test": ["127.0.0.1"]},
                         loopback_ports=frozenset({up.port, *kw.pop("ports", ())}),  # type: ignore[misc]
                         routes=routes or (route(up, accept=[("header", "Authorization")]),),
                         upstream_ca_file=up.ca_file if ca else None, **kw)  # type: ignore[arg-type]


def req(path: str, headers: str = "", method: str = "GET", body: bytes = b"") -> bytes:
    length = f"Content-Length: {len(body)}\r\n" if body else ""
    return f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}{length}\r\n".encode() + body


def bearer(token: str = PHANTOM) -> str:
    return f"Authorization: Bearer {token}\r\n"


def split(answer: bytes) -> tuple[int, bytes, bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), head, body


def all_text(proxy: ProxyThread) -> str:
    return json.dumps(proxy.events)


# -- the happy path ----------------------------------------------------------------------
def test_upstream_gets_the_real_key_and_the_mapped_path(upstream: FakeUpstream) -> None:
    n = len(upstream.requests)
    with ProxyThread(settings(upstream)) as proxy:
        status, head, body = split(http(proxy.port, req("/openai/chat/completions?x=1", bearer() + "X-Forwarded-Host: evil\r\n"
                                                        "Proxy-Authorization: " + AUTH + "\r\n")))
        events = proxy.wait_events(1)
    assert status == 200 and body == b'{"ok": true}'
    assert b"connection: close" in head.lower() and b"keep-alive" not in head.lower()
    rec = upstream.requests[n]
    assert rec.request_line == "GET /v1/chat/completions?x=1 HTTP/1.1"
    assert rec.header("host") == f"{HOST}:{upstream.port}"
    assert rec.header("authorization") == f"Bearer {SECRET}"
    assert PHANTOM not in rec.head.decode() and rec.header("x-forwarded-host") is None
    assert rec.header("proxy-authorization") is None
    assert events[0]["action"] == "allow" and events[0]["route"] == "openai" and events[0]["status"] == 200
    assert events[0]["host"] == HOST and events[0]["path"] == "/chat/completions"
    assert SECRET not in all_text(proxy)


def test_post_body_and_chunked_body_are_forwarded(upstream: FakeUpstream) -> None:
    n = len(upstream.requests)
    with ProxyThread(settings(upstream)) as proxy:
        status, _, _ = split(http(proxy.port, req("/openai/responses", bearer(), "POST", b'{"a": 1}')))
        chunked = (f"POST /openai/responses HTTP/1.1\r\nHost: x\r\n{bearer()}Transfer-Encoding: chunked\r\n\r\n"
                   "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").encode()
        status2, _, _ = split(http(proxy.port, chunked))
    assert status == status2 == 200
    assert upstream.requests[n].body == b'{"a": 1}' and upstream.requests[n + 1].body == b"abcde"


def test_expect_100_continue_is_answered_by_the_proxy(upstream: FakeUpstream) -> None:
    with ProxyThread(settings(upstream)) as proxy, \
            socket.create_connection(("127.0.0.1", proxy.port), timeout=TIMEOUT) as s:
        s.sendall(f"POST /openai/x HTTP/1.1\r\nHost: h\r\n{bearer()}Content-Length: 2\r\nExpect: 100-continue\r\n\r\n".encode())
        assert s.recv(100).startswith(b"HTTP/1.1 100 Continue")
        s.sendall(b"hi")
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    assert out.startswith(b"HTTP/1.1 200")
    assert upstream.requests[-1].header("expect") is None and upstream.requests[-1].body == b"hi"


def test_sse_arrives_incrementally(upstream: FakeUpstream) -> None:
    upstream.gate.clear()
    with ProxyThread(settings(upstream)) as proxy, \
            socket.create_connection(("127.0.0.1", proxy.port), timeout=TIMEOUT) as s:
        s.sendall(req("/openai/sse", bearer()))
        got = b""
        deadline = time.monotonic() + TIMEOUT
        while b"data: 1" not in got and time.monotonic() < deadline:
            got += s.recv(65536)
        assert b"data: 1" in got and b"data: 2" not in got  # the first event came before the second was sent
        upstream.gate.set()
        while chunk := s.recv(65536):
            got += chunk
    assert b"data: 2" in got and got.endswith(b"0\r\n\r\n")


def test_chunked_response_relayed(upstream: FakeUpstream) -> None:
    with ProxyThread(settings(upstream)) as proxy:
        status, head, body = split(http(proxy.port, req("/openai/chunked", bearer())))
    assert status == 200 and b"transfer-encoding: chunked" in head.lower()
    assert body == b"4\r\none,\r\n4\r\ntwo,\r\n5\r\nthree\r\n0\r\n\r\n"


def test_an_echoed_secret_is_masked(upstream: FakeUpstream) -> None:
    with ProxyThread(settings(upstream)) as proxy:
        status, _, body = split(http(proxy.port, req("/openai/echo", bearer())))
    assert status == 401 and SECRET.encode() not in body
    assert body == f"auth=Bearer {'*' * len(SECRET)} key=None".encode()


# -- refusals ----------------------------------------------------------------------------
@pytest.mark.parametrize(("headers", "reason"), [
    ("", "no token for route openai"),
    (bearer("0" * 64), "wrong token for route openai"),
    (bearer(PHANTOM[:-1]), "wrong token"),
    ("Authorization: Basic !!!\r\n", "wrong token"),
])
def test_missing_or_wrong_phantom_is_401(upstream: FakeUpstream, headers: str, reason: str) -> None:
    n = len(upstream.requests)
    with ProxyThread(settings(upstream)) as proxy:
        status, head, body = split(http(proxy.port, req("/openai/models", headers)))
        events = proxy.wait_events(1)
    assert status == 401 and reason in body.decode() and b"WWW-Authenticate: Bearer" in head
    assert events[0]["action"] == "deny" and reason in str(events[0]["reason"])
    assert len(upstream.requests) == n  # nothing went upstream


def test_unknown_route_is_404_naming_the_routes(upstream: FakeUpstream) -> None:
    with ProxyThread(settings(upstream)) as proxy:
        status, _, body = split(http(proxy.port, req("/nope/x", bearer())))
    assert status == 404 and b"routes: /openai/" in body


def test_dot_segments_are_refused(upstream: FakeUpstream) -> None:
    with ProxyThread(settings(upstream)) as proxy:
        for path in ("/openai/../admin", "/openai/a/%2e%2e/b", "/openai/a\\b"):
            status, _, body = split(http(proxy.port, req(path, bearer())))
            assert status == 400 and b"dot segments" in body, path


def test_origin_form_without_routes_is_still_refused() -> None:
    up_settings = ProxySettings(allow=["allowed.test"])
    with ProxyThread(up_settings) as proxy:
        status, _, body = split(http(proxy.port, req("/openai/x", bearer())))
    assert status == 400 and b"absolute-form" in body


def test_endpoint_rules_on_a_route(upstream: FakeUpstream) -> None:
    r = route(upstream, "github", "", format="token {}", endpoints=[EndpointRule("GET", "/repos/acme/**")],
              accept=[("header", "Authorization")])
    with ProxyThread(settings(upstream, r)) as proxy:
        ok, _, _ = split(http(proxy.port, req("/github/repos/acme/tool/issues", bearer())))
        bad, _, body = split(http(proxy.port, req("/github/repos/other/x", bearer())))
        post, _, _ = split(http(proxy.port, req("/github/repos/acme/x", bearer(), "POST", b"{}")))
    assert ok == 200 and bad == 403 and post == 403
    assert b"endpoint not allowed: GET /repos/other/x on route github" in body
    assert upstream.requests[-1].header("authorization") == f"token {SECRET}"


def test_tls_verification_is_never_skipped(upstream: FakeUpstream) -> None:
    n = len(upstream.requests)
    with ProxyThread(settings(upstream, ca=False)) as proxy:
        status, _, body = split(http(proxy.port, req("/openai/models", bearer())))
        events = proxy.wait_events(1)
    assert status == 502 and b"TLS verification failed for api.fake.test" in body
    assert events[0]["action"] == "error" and len(upstream.requests) == n


def test_ssrf_check_applies_to_route_upstreams(upstream: FakeUpstream) -> None:
    s = settings(upstream)
    s.loopback_ports = frozenset()
    with ProxyThread(s) as proxy:
        status, _, body = split(http(proxy.port, req("/openai/models", bearer())))
    assert status == 403 and b"ssrf: 127.0.0.1 is a loopback address" in body


def test_unreachable_upstream_is_502(upstream: FakeUpstream) -> None:
    from proxytest import free_port

    port = free_port()
    r = Route("openai", scheme="https", host=HOST, port=port, base_path="", phantom=PHANTOM,
              secret=bytearray(SECRET.encode()), accept=[("header", "Authorization")])
    with ProxyThread(settings(upstream, r, ports=[port])) as proxy:
        status, _, body = split(http(proxy.port, req("/openai/models", bearer())))
    assert status == 502 and b"cannot connect to api.fake.test" in body and SECRET.encode() not in body


def test_phantom_sent_to_another_host_is_not_swapped(upstream: FakeUpstream) -> None:
    other = HttpServer()
    try:
        with ProxyThread(settings(upstream, ports=[other.port])) as proxy:
            url = f"http://allowed.test:{other.port}/v1/models"
            answer = http(proxy.port, f"GET {url} HTTP/1.1\r\nHost: allowed.test:{other.port}\r\n"
                                      f"Proxy-Authorization: {AUTH}\r\n{bearer()}\r\n".encode())
        assert answer.startswith(b"HTTP/1.1 200")
        seen = other.requests[0].decode()
        assert f"Bearer {PHANTOM}" in seen and SECRET not in seen
    finally:
        other.stop()


def test_forward_proxy_still_needs_its_token(upstream: FakeUpstream) -> None:
    with ProxyThread(settings(upstream)) as proxy:
        answer = http(proxy.port, b"GET http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 407")


# -- inject modes ------------------------------------------------------------------------
def test_x_api_key_and_bearer_both_accepted_for_anthropic_style(upstream: FakeUpstream) -> None:
    r = route(upstream, "anthropic", "", header="x-api-key", format="{}",
              accept=[("header", "x-api-key"), ("header", "Authorization")])
    with ProxyThread(settings(upstream, r)) as proxy:
        a, _, _ = split(http(proxy.port, req("/anthropic/v1/messages", f"x-api-key: {PHANTOM}\r\n")))
        b, _, _ = split(http(proxy.port, req("/anthropic/v1/messages", bearer())))
    assert a == b == 200
    rec = upstream.requests[-1]
    assert rec.header("x-api-key") == SECRET and rec.header("authorization") is None


def test_query_param_mode(upstream: FakeUpstream) -> None:
    secret = "real key/with+chars"
    r = route(upstream, "maps", "/api", inject_mode="query_param", query_param="key", secret=secret,
              accept=[("query", "key")])
    with ProxyThread(settings(upstream, r)) as proxy:
        ok, _, _ = split(http(proxy.port, req(f"/maps/geo?q=1&key={PHANTOM}&z=2")))
        bad, _, _ = split(http(proxy.port, req("/maps/geo?q=1&key=nope")))
    assert ok == 200 and bad == 401
    assert upstream.requests[-1].target == "/api/geo?q=1&z=2&key=real%20key%2Fwith%2Bchars"


def test_header_plus_query_fallback_gemini_style(upstream: FakeUpstream) -> None:
    r = route(upstream, "gemini", "", header="x-goog-api-key", format="{}",
              accept=[("header", "x-goog-api-key"), ("query", "key")])
    with ProxyThread(settings(upstream, r)) as proxy:
        ok, _, _ = split(http(proxy.port, req(f"/gemini/v1beta/models?key={PHANTOM}")))
    rec = upstream.requests[-1]
    assert ok == 200 and rec.target == "/v1beta/models" and rec.header("x-goog-api-key") == SECRET


def test_url_path_mode(upstream: FakeUpstream) -> None:
    r = route(upstream, "telegram", "", inject_mode="url_path", path_pattern="/bot{}/", accept=[])
    with ProxyThread(settings(upstream, r)) as proxy:
        ok, _, _ = split(http(proxy.port, req(f"/telegram/bot{PHANTOM}/getMe")))
        bad, _, _ = split(http(proxy.port, req("/telegram/botWRONG/getMe")))
        missing, _, _ = split(http(proxy.port, req("/telegram/getMe")))
    assert (ok, bad, missing) == (200, 401, 401)
    assert upstream.requests[-1].target == f"/bot{SECRET}/getMe"


def test_basic_auth_mode_and_git_style_challenge(upstream: FakeUpstream) -> None:
    r = route(upstream, "git", "", inject_mode="basic_auth", secret="alice:s3cret-pw", accept=[])
    basic = base64.b64encode(f"x-access-token:{PHANTOM}".encode()).decode()
    with ProxyThread(settings(upstream, r)) as proxy:
        first, head, _ = split(http(proxy.port, req("/git/acme/repo.git/info/refs")))
        ok, _, _ = split(http(proxy.port, req("/git/acme/repo.git/info/refs", f"Authorization: Basic {basic}\r\n")))
    assert first == 401 and b'WWW-Authenticate: Basic realm="nono"' in head
    assert ok == 200
    assert upstream.requests[-1].header("authorization") == "Basic " + base64.b64encode(b"alice:s3cret-pw").decode()


def test_route_repr_hides_secret_and_phantom(upstream: FakeUpstream) -> None:
    s = settings(upstream)
    assert SECRET not in repr(s) and PHANTOM not in repr(s)


# -- upstream keep-alive -------------------------------------------------------------------
def test_upstream_connections_are_reused(tmp_path: Path) -> None:
    up = FakeUpstream(tmp_path, keepalive=True)
    try:
        with ProxyThread(settings(up)) as proxy:
            answers = [split(http(proxy.port, req("/openai/models", bearer())))[0] for _ in range(3)]
            answers.append(split(http(proxy.port, req("/openai/chunked", bearer())))[0])
            answers.append(split(http(proxy.port, req("/openai/models", bearer(), "POST", b"{}")))[0])
        assert answers == [200] * 5
        assert up.connections == 1 and len(up.requests) == 5
        assert all(r.header("connection") is None for r in up.requests)
    finally:
        up.stop()


def test_a_pooled_connection_closed_by_the_server_is_replaced(upstream: FakeUpstream) -> None:
    # this upstream closes after every response without saying so: the pooled connection is stale
    with ProxyThread(settings(upstream)) as proxy:
        statuses = []
        for _ in range(4):
            statuses.append(split(http(proxy.port, req("/openai/models", bearer())))[0])
            statuses.append(split(http(proxy.port, req("/openai/models", bearer(), "POST", b'{"x": 1}')))[0])
    assert statuses == [200] * 8
