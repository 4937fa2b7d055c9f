"""Credential routes: ``http://127.0.0.1:<port>/<service>/...`` -> the service over verified TLS.

The child uses a route as a base URL (``OPENAI_BASE_URL=http://127.0.0.1:<port>/openai``)
with a per-session phantom token instead of the real key. For each request:

1. the first path segment names the route (404 otherwise, listing the routes);
2. the phantom must be where the route accepts it (a header such as ``Authorization:
   Bearer <phantom>``, a query parameter, a URL path part, Basic auth), compared in
   constant time; missing or wrong -> 401 with the reason. No ``Proxy-Authorization``
   is needed: the phantom is the session's secret;
3. the route's endpoint rules (``--allow-endpoint``), if any, must allow method + path (403);
4. the upstream name is resolved and checked like any proxied name (SSRF), the
   connection is TLS-verified (system roots; ``tls_ca`` adds a trust anchor, never
   replaces verification), the phantom carriers are removed and the real secret is
   injected. The real secret never goes anywhere but the route's own upstream;
5. the response is relayed as it arrives (SSE and chunked streams are not buffered),
   with ``Connection: close``; any echo of the real secret in it is masked (best
   effort: per read, uncompressed bodies).

One request per client connection, like plain-HTTP forwarding. Upstream connections
are kept alive and reused (up to 8 idle per route, 20 s): the response's framing
(Content-Length, chunked, or until close) tells when it ended cleanly; a pooled
connection the server closed meanwhile is replaced once when the request can be replayed.
"""

import asyncio
import base64
import binascii
import hmac
import socket
import ssl
import time
from urllib.parse import quote, unquote

from .http1 import BadRequest, ChunkedReader, RequestHead, parse_head, status_line
from .server import ProxyServer, _Refused, _within

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    from ..credentials.route import Route
    from .server import Event

REVERSE_HOST = "reverse.nono.invalid"
_DROP = frozenset({"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
                   "host", "content-length", "expect", "x-forwarded-host", "forwarded", "x-host",
                   "x-forwarded-server", "x-original-host"})
_RESPONSE_DROP = frozenset({b"connection", b"keep-alive", b"proxy-connection"})
_MAX_RESPONSE_HEAD = 64 * 1024
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_POOL_SIZE = 8        # idle upstream connections kept per route
_POOL_IDLE = 20.0     # seconds an idle upstream connection is reused (below common server keep-alive limits)


def is_origin_form(buf: 'bytes | bytearray') -> bool:
    """Does the request line use an origin-form target (``GET /path HTTP/1.1``)?"""
    first = bytes(buf[:buf.find(b"\r\n")])
    parts = first.split(b" ")
    return len(parts) == 3 and parts[1].startswith(b"/")


def parse_origin_head(data: bytes) -> RequestHead:
    """Parse an origin-form head with the proxy's strict parser; ``scheme`` becomes ``"reverse"``.

    The client's ``Host`` (the proxy's own address) is dropped: the route decides the
    upstream and its Host.
    """
    lines = data[:-4].split(b"\r\n")
    method, target, version = (lines[0].split(b" ") + [b"", b""])[:3]
    rewritten = [b" ".join((method, b"http://" + REVERSE_HOST.encode() + target, version))]
    rewritten += [line for line in lines[1:] if line[:5].lower() != b"host:"]
    head = parse_head(b"\r\n".join(rewritten) + b"\r\n\r\n")
    head.scheme = "reverse"
    return head


def _candidates(value: str) -> 'list[str]':
    """The credential(s) a header value carries: ``Bearer X``/``token X`` -> X; Basic -> user, password."""
    value = value.strip()
    scheme, sp, rest = value.partition(" ")
    if not sp:
        return [value]
    if scheme.lower() == "basic":
        try:
            user, _, password = base64.b64decode(rest.strip(), validate=True).decode("utf-8", "replace").partition(":")
        except (binascii.Error, ValueError):
            return []
        return [c for c in (password, user) if c]
    return [rest.strip()]


def _same(candidate: str, phantom: bytes) -> bool:
    return hmac.compare_digest(candidate.encode("utf-8", "replace"), phantom)


class _Prepared:
    """The request to send upstream: target and headers with the real secret in place."""

    __slots__ = ("headers", "target")

    def __init__(self, target: str, headers: 'list[tuple[str, str]]') -> None:
        self.target = target
        self.headers = headers


class ReverseProxy:
    """Serves the credential routes for a :class:`ProxyServer` (which owns resolution and connects)."""

    def __init__(self, server: ProxyServer, routes: 'Sequence[Route]') -> None:
        self.server = server
        self.routes = {r.name: r for r in routes}
        self._contexts: dict[str, ssl.SSLContext] = {}
        self._pool: dict[str, list[_Conn]] = {}
        for route in routes:  # load the trust store now (in the proxy process), not on the first request
            if route.scheme == "https":
                self._context(route)

    def _context(self, route: 'Route') -> ssl.SSLContext:
        ctx = self._contexts.get(route.name)
        if ctx is None:
            ctx = ssl.create_default_context()
            extra = self.server.settings.upstream_ca_file
            for cafile in (extra, route.tls_ca):
                if cafile:
                    ctx.load_verify_locations(cafile=cafile)
            ctx.set_alpn_protocols(["http/1.1"])
            self._contexts[route.name] = ctx
        return ctx

    # -- one request -------------------------------------------------------------------
    async def handle(self, client: socket.socket, head: RequestHead, leftover: bytes, event: 'Event') -> None:
        """Serve one origin-form request; every outcome is recorded in ``event``."""
        event.update(method=head.method, host="127.0.0.1", port=0)
        try:
            route, rest = self._match(head.target)
            event.update(host=route.host, port=route.port, route=route.name, path=rest.split("?", 1)[0][:200])
            prepared = self._authenticate(route, head, rest)
            self._check_endpoint(route, head.method, rest)
        except _Refused as exc:
            event.update(action=exc.action, reason=exc.reason)
            extra = ""
            if exc.status == 401:
                extra = 'WWW-Authenticate: Basic realm="nono"\r\n' if event.get("route") and \
                    self.routes[str(event["route"])].inject_mode == "basic_auth" else 'WWW-Authenticate: Bearer realm="nono"\r\n'
            await self.server._send(client, _answer(exc.status, exc.body or f"nono: {exc.reason}\n", extra))
            return
        event["action"] = "allow"
        await self._exchange(client, head, leftover, route, prepared, event)

    def _match(self, target: str) -> 'tuple[Route, str]':
        path, q, query = target.partition("?")
        name, _, rest = path[1:].partition("/")
        route = self.routes.get(name)
        if route is None:
            known = ", ".join(f"/{n}/" for n in sorted(self.routes)) or "none"
            raise _Refused(404, f"reverse: no credential route /{name[:60]} (routes: {known})")
        rest = "/" + rest
        if "\\" in rest or any(seg in (".", "..") for seg in rest.split("/")) or "%2e" in rest.lower():
            raise _Refused(400, f"reverse {name}: dot segments are not allowed in the path")
        return route, rest + (q + query if q else "")

    def _authenticate(self, route: 'Route', head: RequestHead, rest: str) -> _Prepared:
        """Find and check the phantom; return the upstream request with the secret injected."""
        phantom = route.phantom.encode("ascii")
        carriers = {n.lower() for kind, n in route.accept if kind == "header"}
        params = {n for kind, n in route.accept if kind == "query"}
        if route.inject_mode == "basic_auth":
            carriers.add("authorization")
        if route.inject_mode == "query_param":
            params.add(route.query_param)
        found = matched = False
        headers: list[tuple[str, str]] = []
        for k, v in head.headers:
            low = k.lower()
            if low in carriers:
                found = True
                matched = matched or any(_same(c, phantom) for c in _candidates(v))
            elif low not in _DROP and not low.startswith("proxy-"):
                headers.append((k, v))
        path, q, query = rest.partition("?")
        kept: list[str] = []
        for item in query.split("&") if q else ():
            key, _, value = item.partition("=")
            if unquote(key) in params:
                found = True
                matched = matched or _same(unquote(value.replace("+", " ")), phantom)
            else:
                kept.append(item)
        secret = route.secret_text()
        if route.inject_mode == "url_path":
            found_path, ok, path = self._swap_path(route, path, phantom, secret)
            found, matched = found or found_path, matched or ok
        if not found:
            where = ", ".join(f"{'header' if k == 'header' else 'query parameter'} {n}" for k, n in route.accept) \
                or "the configured place"
            raise _Refused(401, f"credential: no token for route {route.name} (send the phantom token nono put in "
                           f"the environment, in {where})", "deny")
        if not matched:
            raise _Refused(401, f"credential: wrong token for route {route.name} (not this session's phantom token)",
                           "deny")
        if route.inject_mode == "header":
            headers.append((route.header, route.format.replace("{}", secret)))
        elif route.inject_mode == "basic_auth":
            headers.append(("Authorization", "Basic " + base64.b64encode(secret.encode()).decode("ascii")))
        elif route.inject_mode == "query_param":
            kept.append(f"{quote(route.query_param, safe='')}={quote(secret, safe='')}")
        target = route.base_path.rstrip("/") + path if path != "/" or not route.base_path else route.base_path
        if kept:
            target += "?" + "&".join(kept)
        return _Prepared(target, headers)

    @staticmethod
    def _swap_path(route: 'Route', path: str, phantom: bytes, secret: str) -> 'tuple[bool, bool, str]':
        prefix, _, suffix = route.path_pattern.partition("{}")
        start = path.find(prefix)
        if not prefix or start < 0:
            return False, False, path
        begin = start + len(prefix)
        end = path.find(suffix, begin) if suffix else len(path)
        if end < 0:
            end = len(path)
        token = unquote(path[begin:end])
        if not _same(token, phantom):
            return True, False, path
        out_prefix, _, out_suffix = route.path_replacement.partition("{}")
        swapped = path[:start] + out_prefix + quote(secret, safe="") + out_suffix + path[end + len(suffix):]
        return True, True, swapped

    @staticmethod
    def _check_endpoint(route: 'Route', method: str, rest: str) -> None:
        if route.endpoints and not any(rule.matches(method, rest) for rule in route.endpoints):
            raise _Refused(403, f"endpoint not allowed: {method} {rest.split('?', 1)[0][:200]} on route {route.name} "
                           f"(--allow-endpoint {route.name}:{method}:/path)")

    async def _open(self, route: 'Route') -> 'tuple[asyncio.StreamReader, asyncio.StreamWriter]':
        """Resolve, check, connect and (for https) verify the upstream."""
        server = self.server
        timeout = server.settings.connect_timeout
        if server.filter.use_upstream(route.host, route.port):
            tunnel = RequestHead("CONNECT", "", "HTTP/1.1", (), route.host, route.port, "", "none", 0)
            sock, _ = await server._via_upstream(tunnel)
        else:
            addrs = await server._resolve(route.host, route.port)
            refusal = server.filter.check_addresses(addrs, route.port)
            if refusal is not None and not (route.host in ("localhost", "127.0.0.1", "::1") and "loopback" in refusal):
                raise _Refused(403, refusal)
            sock = await server._connect(addrs, route.port, route.host)
        try:
            if route.scheme != "https":
                return await asyncio.open_connection(sock=sock, limit=1 << 20)
            return await _within(asyncio.open_connection(sock=sock, ssl=self._context(route),
                                                         server_hostname=route.host, ssl_handshake_timeout=timeout,
                                                         limit=1 << 20), timeout)
        except ssl.SSLCertVerificationError as exc:
            sock.close()
            raise _Refused(502, f"upstream: TLS verification failed for {route.host} ({exc.verify_message})",
                           "error") from None
        except (ssl.SSLError, OSError) as exc:
            sock.close()
            raise _Refused(502, f"upstream: TLS with {route.host} failed ({type(exc).__name__}: {exc})",
                           "error") from None
        except asyncio.TimeoutError:
            sock.close()
            raise _Refused(504, f"timeout: TLS handshake with {route.host}", "error") from None

    async def _exchange(self, client: socket.socket, head: RequestHead, leftover: bytes, route: 'Route',
                        prepared: _Prepared, event: 'Event') -> None:
        """Send the request upstream (a pooled connection first), relay the response."""
        loop = asyncio.get_running_loop()
        idle = self.server.settings.idle_timeout
        host = route.host if route.port == (443 if route.scheme == "https" else 80) else f"{route.host}:{route.port}"
        lines = [f"{head.method} {prepared.target} HTTP/1.1", f"Host: {host}"]
        lines += [f"{k}: {v}" for k, v in prepared.headers]
        if head.body == "length":
            lines.append(f"Content-Length: {head.content_length}")
        elif head.body == "chunked":
            lines.append("Transfer-Encoding: chunked")
        request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        # A pooled connection may have been closed by the server meanwhile: the request is
        # retried once on a new connection when nothing came back and it can be replayed.
        replayable = head.body == "none" or (head.body == "length" and len(leftover) >= head.content_length)
        up = down = 0
        conn: _Conn | None = None
        try:
            for attempt in (0, 1):
                conn = self._take(route) if attempt == 0 else None
                pooled = conn is not None
                if conn is None:
                    conn = _Conn(*await self._open(route))
                try:
                    conn.writer.write(request)
                    up = len(request)
                    try:
                        up += await self._send_body(client, conn.writer, head, leftover, idle)
                    except (OSError, ConnectionError) as exc:
                        if pooled and replayable:
                            raise _Stale from exc
                    status, first, framing = await self._response_head(conn.reader, head.method, idle, pooled)
                    break
                except _Stale:
                    conn.close()
                    conn = None
                    if not replayable:
                        raise _Refused(502, "upstream: a kept-alive connection was closed by the server; retry",
                                       "error") from None
            assert conn is not None
            event["status"] = status
            secret = route.secret
            await _within(loop.sock_sendall(client, _mask(first, secret)), idle)
            down = len(first)
            async for data in self._body(conn, framing, idle):
                await _within(loop.sock_sendall(client, _mask(data, secret)), idle)
                down += len(data)
            if conn.reusable:
                self._put(route, conn)
                conn = None
            try:
                client.shutdown(socket.SHUT_WR)  # the client sees the end now; then drain what it still sends
            except OSError:
                pass
            await self.server._linger(client)
        except BadRequest as exc:
            event.update(action="deny", reason=f"bad request: {exc.reason}")
            await self.server._send(client, _answer(400, f"nono: bad request: {exc.reason}\n"))
        except _Refused as exc:
            event.update(action=exc.action, reason=exc.reason)
            if not down:
                await self.server._send(client, _answer(exc.status, f"nono: {exc.reason}\n"))
        except asyncio.TimeoutError:
            event["reason"] = "timeout: idle"
        except (OSError, ConnectionError, ssl.SSLError, asyncio.IncompleteReadError) as exc:
            event.update(action="error", reason=f"upstream: {type(exc).__name__}")
            if not down:
                await self.server._send(client, _answer(502, f"nono: upstream {route.host} failed ({type(exc).__name__})\n"))
        finally:
            if conn is not None:
                conn.close()
            event.update(bytes_up=up, bytes_down=down)

    # -- upstream connections ----------------------------------------------------------
    def _take(self, route: 'Route') -> '_Conn | None':
        idle = self._pool.get(route.name)
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if now - conn.since < _POOL_IDLE and conn.alive():
                return conn
            conn.close()
        return None

    def _put(self, route: 'Route', conn: '_Conn') -> None:
        idle = self._pool.setdefault(route.name, [])
        if len(idle) >= _POOL_SIZE:
            idle.pop(0).close()
        conn.since = time.monotonic()
        idle.append(conn)

    async def _body(self, conn: '_Conn', framing: 'tuple[str, int]', idle: float) -> 'AsyncIterator[bytes]':
        """The response body as it arrives; marks ``conn.reusable`` when it ended cleanly."""
        kind, length = framing
        if kind == "none":
            conn.reusable = True
            return
        if kind == "length":
            remaining = length
            while remaining:
                data = await _within(conn.reader.read(min(remaining, 65536)), idle)
                if not data:
                    raise asyncio.IncompleteReadError(b"", remaining)
                remaining -= len(data)
                yield data
            conn.reusable = True
            return
        chunked = ChunkedReader() if kind == "chunked" else None
        while True:
            data = await _within(conn.reader.read(65536), idle)
            if not data:
                if chunked is not None:
                    raise asyncio.IncompleteReadError(b"", None)
                return
            if chunked is None:
                yield data
                continue
            try:
                out = chunked.feed(data)
            except BadRequest as exc:
                raise _Refused(502, f"upstream: bad chunked response ({exc.reason})", "error") from None
            if out:
                yield out
            if chunked.done:
                conn.reusable = not chunked.leftover
                return

    async def _send_body(self, client: socket.socket, writer: asyncio.StreamWriter, head: RequestHead,
                         leftover: bytes, idle: float) -> int:
        """Forward exactly the request body (answering ``Expect: 100-continue`` ourselves)."""
        if head.body == "none" or (head.body == "length" and head.content_length == 0):
            await writer.drain()
            return 0
        loop = asyncio.get_running_loop()
        if not leftover and (head.header("expect") or "").lower() == "100-continue":
            await _within(loop.sock_sendall(client, _CONTINUE), idle)
        chunked = ChunkedReader() if head.body == "chunked" else None
        remaining = head.content_length
        data, sent = leftover, 0
        while True:
            if chunked is not None:
                out = chunked.feed(data)
                done = chunked.done
            else:
                out = data[:remaining]
                remaining -= len(out)
                done = remaining == 0
            if out:
                writer.write(out)
                await _within(writer.drain(), idle)
                sent += len(out)
            if done:
                return sent
            data = await _within(loop.sock_recv(client, 65536), idle)
            if not data:
                raise BadRequest("connection closed inside the request body")

    @staticmethod
    async def _response_head(reader: asyncio.StreamReader, method: str, idle: float,
                             pooled: bool) -> 'tuple[int, bytes, tuple[str, int]]':
        """Read the response head(s): (status, bytes for the client, body framing).

        The final head gets ``Connection: close`` (one request per client connection).
        Framing is ``("none", 0)``, ``("length", n)``, ``("chunked", 0)`` or ``("close", 0)``.
        """
        out = b""
        deadline = time.monotonic() + idle
        while True:
            try:
                raw = await _within(reader.readuntil(b"\r\n\r\n"), max(deadline - time.monotonic(), 0.001))
            except asyncio.IncompleteReadError as exc:
                if pooled and not out and not exc.partial:
                    raise _Stale from None
                raise _Refused(502, "upstream: closed the connection without a response", "error") from None
            except (ConnectionError, ssl.SSLError) as exc:
                if pooled and not out:
                    raise _Stale from exc
                raise
            except asyncio.LimitOverrunError:
                raise _Refused(502, "upstream: response head too large", "error") from None
            parsed = status_line(raw)
            if parsed is None:
                raise _Refused(502, "upstream: malformed response", "error")
            status, lines = parsed
            if 100 <= status < 200 and status != 101:
                out += raw  # interim (103 Early Hints): relayed as is
                continue
            fields = [(line.split(b":", 1)[0].strip().lower(), line.split(b":", 1)[-1].strip()) for line in lines[1:]]
            kept = [line for line, (name, _) in zip(lines[1:], fields) if name not in _RESPONSE_DROP]
            framing = _framing(status, method, lines[0].split(b" ", 1)[0], fields)
            return status, out + b"\r\n".join([lines[0], *kept, b"Connection: close"]) + b"\r\n\r\n", framing


def _framing(status: int, method: str, version: bytes, fields: 'list[tuple[bytes, bytes]]') -> 'tuple[str, int]':
    """How the response body ends (RFC 9112 section 6.3); ``close`` also means "do not reuse"."""
    tokens = {t.strip().lower() for name, v in fields if name == b"connection" for t in v.split(b",")}
    reuse = version == b"HTTP/1.1" and b"close" not in tokens
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return ("none", 0) if reuse else ("close", 0)
    te = [v for name, v in fields if name == b"transfer-encoding"]
    if te:
        return ("chunked", 0) if te[-1].lower().endswith(b"chunked") and reuse else ("close", 0)
    lengths = {v for name, v in fields if name == b"content-length"}
    if len(lengths) == 1:
        value = lengths.pop()
        if value.isdigit() and len(value) <= 18 and reuse:
            return "length", int(value)
    return "close", 0


class _Stale(Exception):
    """A pooled upstream connection turned out to be closed before answering."""


class _Conn:
    """An upstream connection: ``reader``/``writer``; ``reusable`` once a response ended cleanly."""

    __slots__ = ("reader", "reusable", "since", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.reusable = False
        self.since = 0.0

    def alive(self) -> bool:
        """Still open, and nothing (EOF, a close alert) waiting to be read."""
        if self.writer.is_closing() or self.reader.at_eof():
            return False
        sock = self.writer.get_extra_info("socket")
        if sock is None:
            return False
        import select

        readable, _, _ = select.select([sock.fileno()], [], [], 0)
        return not readable

    def close(self) -> None:
        self.reusable = False
        self.writer.close()


def _mask(data: bytes, secret: bytearray) -> bytes:
    """Replace any echo of the real secret with ``*`` of the same length (framing unchanged)."""
    if secret and secret in data:
        return data.replace(bytes(secret), b"*" * len(secret))
    return data


_PHRASES = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 502: "Bad Gateway",
            503: "Service Unavailable", 504: "Gateway Timeout"}


def _answer(status: int, body: str, extra: str = "") -> bytes:
    data = body.encode("utf-8", "replace")
    head = (f"HTTP/1.1 {status} {_PHRASES.get(status, 'Error')}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(data)}\r\n{extra}Connection: close\r\n\r\n")
    return head.encode("latin-1") + data
