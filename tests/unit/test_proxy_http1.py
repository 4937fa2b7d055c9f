"""The strict request-head parser and the chunked reader: accept/reject tables, smuggling, fuzz."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nono.proxy.http1 import BadRequest, ChunkedReader, head_end, parse_head

FUZZ = settings(max_examples=400, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


def h(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode("latin-1")


ACCEPT = [
    ("CONNECT api.github.com:443 HTTP/1.1\nHost: api.github.com:443\n\n", ("CONNECT", "api.github.com", 443)),
    ("CONNECT API.GitHub.com.:443 HTTP/1.1\n\n", ("CONNECT", "api.github.com", 443)),
    ("CONNECT [::1]:8443 HTTP/1.1\nHost: [::1]:8443\n\n", ("CONNECT", "::1", 8443)),
    ("CONNECT a.test:443 HTTP/1.1\nHost: a.test\n\n", ("CONNECT", "a.test", 443)),
    ("CONNECT a.test:443 HTTP/1.0\n\n", ("CONNECT", "a.test", 443)),
    ("GET http://a.test/x?y=1 HTTP/1.1\nHost: a.test\n\n", ("GET", "a.test", 80)),
    ("GET http://a.test:8080 HTTP/1.1\nHost: a.test:8080\n\n", ("GET", "a.test", 8080)),
    ("GET http://a.test?q HTTP/1.1\n\n", ("GET", "a.test", 80)),
    ("GET HTTP://a.test:80/ HTTP/1.1\nHost: A.TEST\n\n", ("GET", "a.test", 80)),
    ("POST http://a.test/ HTTP/1.1\nContent-Length: 5\nContent-Length: 5\n\n", ("POST", "a.test", 80)),
    ("POST http://a.test/ HTTP/1.1\nContent-Length: 5, 5\n\n", ("POST", "a.test", 80)),
    ("POST http://a.test/ HTTP/1.1\nTransfer-Encoding: Chunked\n\n", ("POST", "a.test", 80)),
    ("GET http://a.test/ HTTP/1.1\nX-Tab: a\tb\nX-Obs: caf\xe9\nX-Empty:\n\n", ("GET", "a.test", 80)),
]

REJECT = [
    ("GET /x HTTP/1.1\nHost: a.test\n\n", "absolute-form"),
    ("GET https://a.test/ HTTP/1.1\n\n", "CONNECT"),
    ("GET ftp://a.test/ HTTP/1.1\n\n", "scheme"),
    ("CONNECT a.test HTTP/1.1\n\n", "host:port"),
    ("CONNECT a.test:0 HTTP/1.1\n\n", "port"),
    ("CONNECT a.test:99999 HTTP/1.1\n\n", "port"),
    ("CONNECT ::1:443 HTTP/1.1\n\n", "brackets"),
    ("CONNECT user@a.test:443 HTTP/1.1\n\n", "user info"),
    ("GET http://u:p@a.test/ HTTP/1.1\n\n", "user info"),
    ("GET http://a.test/#frag HTTP/1.1\n\n", "fragment"),
    ("GET  http://a.test/ HTTP/1.1\n\n", "request line"),
    ("GET http://a.test/ HTTP/2.0\n\n", "version"),
    ("GET http://a.test/ http/1.1\n\n", "version"),
    ("G(T http://a.test/ HTTP/1.1\n\n", "method"),
    # smuggling and framing
    ("POST http://a.test/ HTTP/1.1\nContent-Length: 5\nTransfer-Encoding: chunked\n\n", "both"),
    ("POST http://a.test/ HTTP/1.1\nContent-Length: 5\nContent-Length: 6\n\n", "conflicting"),
    ("POST http://a.test/ HTTP/1.1\nContent-Length: 5, 6\n\n", "conflicting"),
    ("POST http://a.test/ HTTP/1.1\nContent-Length: +5\n\n", "Content-Length"),
    ("POST http://a.test/ HTTP/1.1\nContent-Length: 0x5\n\n", "Content-Length"),
    ("POST http://a.test/ HTTP/1.1\nContent-Length: \n\n", "Content-Length"),
    ("POST http://a.test/ HTTP/1.1\nTransfer-Encoding: identity\n\n", "Transfer-Encoding"),
    ("POST http://a.test/ HTTP/1.1\nTransfer-Encoding: xchunked\n\n", "Transfer-Encoding"),
    ("POST http://a.test/ HTTP/1.1\nTransfer-Encoding: chunked, identity\n\n", "Transfer-Encoding"),
    ("POST http://a.test/ HTTP/1.1\nTransfer-Encoding: gzip, chunked\n\n", "Transfer-Encoding"),
    ("POST http://a.test/ HTTP/1.1\nTransfer-Encoding: chunked\nTransfer-Encoding: chunked\n\n", "Transfer-Encoding"),
    ("POST http://a.test/ HTTP/1.0\nTransfer-Encoding: chunked\n\n", "HTTP/1.0"),
    ("POST http://a.test/ HTTP/1.1\nTransfer-Encoding : chunked\n\n", "header name"),
    ("POST http://a.test/ HTTP/1.1\nTransfer-Encoding:\x0bchunked\n\n", "control"),
    ("GET http://a.test/ HTTP/1.1\nX-A: 1\n folded\n\n", "folding"),
    ("GET http://a.test/ HTTP/1.1\nX-A: a\x00b\n\n", "control"),
    ("GET http://a.test/ HTTP/1.1\nX-A: a\x7fb\n\n", "control"),
    ("GET http://a.test/ HTTP/1.1\nX A: 1\n\n", "header name"),
    ("GET http://a.test/ HTTP/1.1\n: 1\n\n", "header"),
    ("GET http://a.test/ HTTP/1.1\nNoColon\n\n", "header"),
    ("CONNECT a.test:443 HTTP/1.1\nContent-Length: 3\n\n", "no body"),
    ("CONNECT a.test:443 HTTP/1.1\nTransfer-Encoding: chunked\n\n", "no body"),
    # Host disagreement
    ("GET http://a.test/ HTTP/1.1\nHost: evil.test\n\n", "Host"),
    ("GET http://a.test/ HTTP/1.1\nHost: a.test:81\n\n", "Host"),
    ("GET http://a.test/ HTTP/1.1\nHost: a.test\nHost: a.test\n\n", "Host"),
    ("CONNECT a.test:443 HTTP/1.1\nHost: evil.test:443\n\n", "Host"),
    ("GET http://a.test/ HTTP/1.1\nHost: a.test@evil.test\n\n", "Host"),
]


@pytest.mark.parametrize("text,expected", ACCEPT)
def test_accept(text: str, expected: tuple[str, str, int]) -> None:
    head = parse_head(h(text))
    assert (head.method, head.host, head.port) == expected
    assert parse_head(head.serialize()).serialize() == head.serialize()


@pytest.mark.parametrize("text,needle", REJECT)
def test_reject(text: str, needle: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse_head(h(text))
    assert needle.lower() in info.value.reason.lower()


@pytest.mark.parametrize("raw", [
    b"GET http://a.test/ HTTP/1.1\nHost: a.test\n\n",            # LF only
    b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\n\r\n",         # one bare LF
    b"GET http://a.test/ HTTP/1.1\r\nX: a\rb\r\n\r\n",            # bare CR
])
def test_line_endings_crlf_only(raw: bytes) -> None:
    with pytest.raises(BadRequest):
        parse_head(raw)


def test_bare_lf_detected_early() -> None:
    with pytest.raises(BadRequest):
        head_end(b"GET http://a.test/ HTTP/1.1\nHost")  # before the head is complete


def test_limits() -> None:
    with pytest.raises(BadRequest) as info:
        head_end(b"GET http://a.test/" + b"a" * 9000)
    assert info.value.status == 414
    with pytest.raises(BadRequest) as info:
        head_end(b"GET http://a.test/ HTTP/1.1\r\n" + b"X: " + b"a" * 70000)
    assert info.value.status == 431
    many = "GET http://a.test/ HTTP/1.1\n" + "".join(f"X-{i}: 1\n" for i in range(101)) + "\n"
    with pytest.raises(BadRequest):
        parse_head(h(many))
    ok = "GET http://a.test/ HTTP/1.1\n" + "".join(f"X-{i}: 1\n" for i in range(100)) + "\n"
    assert len(parse_head(h(ok)).headers) == 100


def test_forward_head() -> None:
    head = parse_head(h("POST http://A.test:8080/p?q=1 HTTP/1.1\nHost: a.test:8080\nProxy-Authorization: Basic x\n"
                        "Proxy-Connection: keep-alive\nConnection: keep-alive, X-Hop\nX-Hop: 1\nKeep-Alive: 5\n"
                        "TE: trailers\nUpgrade: h2c\nX-Keep: yes\nTransfer-Encoding: chunked\n\n"))
    out = head.forward().decode()
    assert out.startswith("POST /p?q=1 HTTP/1.1\r\nHost: a.test:8080\r\n")
    assert "X-Keep: yes" in out and out.endswith("Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
    for gone in ("Proxy-", "keep-alive", "X-Hop", "Keep-Alive", "TE:", "Upgrade"):
        assert gone not in out
    assert head.forward(absolute=True).startswith(b"POST http://a.test:8080/p?q=1 HTTP/1.1\r\n")


# -- chunked bodies ----------------------------------------------------------------------
def feed_all(parts: list[bytes]) -> tuple[bytes, ChunkedReader]:
    reader = ChunkedReader()
    out = b"".join(reader.feed(p) for p in parts)
    return out, reader


def test_chunked_exact_and_leftover() -> None:
    body = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nTrailer: x\r\n\r\nGET http://evil/ HTTP/1.1\r\n\r\n"
    for step in (1, 3, 7, len(body)):
        out, reader = feed_all([body[i:i + step] for i in range(0, len(body), step)])
        assert reader.done and reader.total == 11
        assert out == b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        assert reader.leftover == b"GET http://evil/ HTTP/1.1\r\n\r\n"


@pytest.mark.parametrize("body", [
    b"5\r\nhelloX\r\n0\r\n\r\n",      # data longer than size
    b"5\nhello\r\n0\r\n\r\n",         # bare LF
    b"-5\r\nhello\r\n",
    b"0x5\r\nhello\r\n",
    b" 5\r\nhello\r\n",
    b"5 \r\nhello\r\n",
    b"\r\n",
    b"fffffffffffffffff\r\n",          # 17 hex digits
    b"5;a\x00b\r\nhello\r\n",
    b"0\r\n folded: x\r\n\r\n",
    b"1" * 2000,                       # endless size line
])
def test_chunked_rejects(body: bytes) -> None:
    with pytest.raises(BadRequest):
        feed_all([body])


# -- fuzz --------------------------------------------------------------------------------
SEEDS = [h(t) for t, _ in ACCEPT] + [h(t) for t, _ in REJECT]
TOKENS = [b"GET", b"CONNECT", b"POST", b" ", b"\r\n", b"\n", b"\r", b":", b"http://", b"https://", b"a.test",
          b"[::1]", b":443", b"/", b"HTTP/1.1", b"Host", b"Content-Length", b"Transfer-Encoding", b"chunked", b"5",
          b",", b"\t", b"\x00", b"\xff", b"@", b"%", b"*.", b"\r\n\r\n"]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 6))):
        op = draw(st.integers(0, 2))
        pos = draw(st.integers(0, len(data)))
        if op == 0:
            data[pos:pos] = draw(st.sampled_from(TOKENS))
        elif op == 1 and data:
            del data[pos:pos + draw(st.integers(1, 8))]
        else:
            data[pos:pos] = draw(st.binary(max_size=8))
    return bytes(data)


def _check(data: bytes) -> None:
    try:
        end = head_end(data)
    except BadRequest:
        return
    if end < 0:
        return
    try:
        head = parse_head(data[:end])
    except BadRequest:
        return
    again = parse_head(head.serialize())
    assert (again.method, again.host, again.port, again.target, again.headers, again.body, again.content_length) == \
        (head.method, head.host, head.port, head.target, head.headers, head.body, head.content_length)
    if head.method == "CONNECT":
        return
    forwarded = parse_head(head.forward(absolute=True))
    assert (forwarded.method, forwarded.host, forwarded.port, forwarded.body) == \
        (head.method, head.host, head.port, head.body)


@FUZZ
@given(mutated())
def test_fuzz_mutated_heads(data: bytes) -> None:
    _check(data)


@FUZZ
@given(st.binary(max_size=300))
def test_fuzz_random_bytes(data: bytes) -> None:
    _check(data)
    _check(b"GET http://a.test/ HTTP/1.1\r\n" + data + b"\r\n\r\n")


@FUZZ
@given(st.binary(max_size=200), st.integers(1, 16))
def test_fuzz_chunked(data: bytes, step: int) -> None:
    reader = ChunkedReader()
    try:
        out = b"".join(reader.feed(data[i:i + step]) for i in range(0, len(data), step))
    except BadRequest:
        return
    if reader.done:  # a complete message re-frames to a valid one carrying the same payload
        again = ChunkedReader()
        assert again.feed(out) == out and again.done and again.total == reader.total and again.leftover == b""
