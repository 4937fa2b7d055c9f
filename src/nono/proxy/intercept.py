"""TLS interception, only where it is needed: HTTPS endpoint rules and credential injection.

A ``CONNECT`` is decrypted only when its ``host:port``

* has endpoint rules in the allowlist (``--allow-domain https://host/path/**``, profile
  ``endpoints``): every request inside the tunnel is checked (method + path), or
* is the upstream of a credential route (``api.github.com:443`` for ``--credential github``):
  a request that carries the route's phantom token gets the real credential instead, for
  clients that ignore ``*_BASE_URL`` and talk to the real host (``gh``, ``git``, SDKs
  without a base-URL option).

Every other ``CONNECT`` stays an opaque tunnel with the SNI check (:mod:`.server`); the
program sees the real server's certificate there.

How an intercepted tunnel works (all in the proxy process):

1. ``200 Connection Established``; the client's ClientHello must name the ``CONNECT``
   host (the same SNI rules as a tunnel);
2. TCP to the upstream was opened (and SSRF-checked) before the ``200``; the proxy starts
   verified TLS to it (system roots; ``upstream_ca_file`` and the route's ``tls_ca`` add
   trust anchors, never replace verification) while it completes the client's handshake
   with a leaf certificate for the host, signed by the session CA;
3. each request (keep-alive: many per connection, each checked) must use origin form
   (``GET /path``) and a ``Host`` naming the ``CONNECT`` host (else ``400``/``421``:
   domain fronting is refused here); endpoint rules -> ``403`` with the reason; the
   phantom, if the request carries one of this host's routes, is replaced by the real
   credential (in place in Basic auth, so git's ``401``-challenge flow works: the first,
   unauthenticated request goes to the upstream unchanged and gets its ``401``); route
   endpoint rules apply to requests that get the credential; a value that is not the
   phantom is forwarded unchanged;
4. the response is relayed as it arrives (chunked and SSE streams unbuffered); an echo of
   the real secret in it is masked; upstream failures are a ``502``/``504`` inside TLS.

The session CA (:class:`SessionCA`): ECDSA P-256, ``CN=nono session CA <id>``, valid one
day, ``basicConstraints CA:TRUE, pathlen:0`` and ``nameConstraints`` limiting it to the
intercepted hosts. It is created in the proxy process; its private key never leaves that
process's memory (the proxy is not dumpable) and is never serialised. Leaf certificates
(one leaf key per session) are signed on demand and cached (LRU); ``ssl`` loads them
through an anonymous memory file, never a file on disk.

ALPN: only ``http/1.1`` is offered to the client (HTTP/2 inside an intercepted tunnel is
not supported; clients fall back). WebSocket upgrades are not supported on intercepted
hosts (the ``Upgrade`` header is dropped).
"""

import asyncio
import base64
import binascii
import socket
import ssl
import time
from urllib.parse import quote, unquote

from . import tls
from .hosts import is_ip_literal
from .http1 import BadRequest, ChunkedReader, RequestHead, _split_authority, head_end, parse_head, status_line
from .reverse import _DROP, _RESPONSE_DROP, ReverseProxy, _candidates, _framing, _mask, _same
from .server import _ESTABLISHED, _SEND_TIMEOUT, Event, ProxyServer, _Refused, _within, new_event
from .sessionca import CA_VALIDITY, SessionCA, ca_names

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    from ..credentials.route import Route

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_PHRASES = {400: "Bad Request", 403: "Forbidden", 421: "Misdirected Request", 502: "Bad Gateway",
            504: "Gateway Timeout"}


def _answer(status: int, body: str) -> bytes:
    data = body.encode("utf-8", "replace")
    head = (f"HTTP/1.1 {status} {_PHRASES.get(status, 'Error')}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n")
    return head.encode("latin-1") + data


# -- TLS with the client, over the proxy's non-blocking socket ---------------------------
class ClientTls:
    """The server side of TLS on an accepted socket whose ClientHello was already read.

    ``buf`` holds decrypted bytes not consumed yet.
    """

    def __init__(self, sock: socket.socket, ctx: ssl.SSLContext, initial: bytes) -> None:
        self.sock = sock
        self.loop = asyncio.get_running_loop()
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self._in.write(initial)
        self.obj = ctx.wrap_bio(self._in, self._out, server_side=True)
        self.buf = bytearray()
        self.bytes_in = 0
        self.bytes_out = 0

    async def _flush(self) -> None:
        data = self._out.read()
        if data:
            await _within(self.loop.sock_sendall(self.sock, data), _SEND_TIMEOUT)

    async def _fill(self, timeout: float) -> None:
        try:
            data = await _within(self.loop.sock_recv(self.sock, 65536), max(timeout, 0.001))
        except ConnectionError:
            data = b""
        if data:
            self._in.write(data)
        else:
            self._in.write_eof()

    async def handshake(self, timeout: float) -> None:
        deadline = self.loop.time() + timeout
        while True:
            try:
                self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                await self._flush()
                remaining = deadline - self.loop.time()
                if remaining <= 0:
                    raise asyncio.TimeoutError from None
                await self._fill(remaining)
            except ssl.SSLError:
                try:
                    await self._flush()  # the alert, so the client learns why
                except (OSError, asyncio.TimeoutError):
                    pass
                raise
        await self._flush()

    async def read(self, timeout: float) -> bytes:
        """Decrypted bytes as they come; ``b""`` at the end."""
        while True:
            try:
                data = self.obj.read(65536)
                self.bytes_in += len(data)
                return data
            except ssl.SSLWantReadError:
                await self._flush()
                await self._fill(timeout)
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return b""

    async def write(self, data: bytes) -> None:
        if data:
            self.obj.write(data)
            self.bytes_out += len(data)
            await self._flush()

    async def tell(self, data: bytes) -> None:
        """Send an error answer; a client that is gone is not an error of ours."""
        try:
            await self.write(data)
        except (OSError, ssl.SSLError, asyncio.TimeoutError):
            pass

    async def read_head(self, timeout: float) -> 'bytes | None':
        """One request head (through the blank line), or None when the client ended cleanly."""
        deadline = self.loop.time() + timeout
        while True:
            end = head_end(self.buf)
            if end >= 0:
                raw = bytes(self.buf[:end])
                del self.buf[:end]
                return raw
            remaining = deadline - self.loop.time()
            if remaining <= 0:
                raise asyncio.TimeoutError
            data = await self.read(remaining)
            if not data:
                if self.buf:
                    raise BadRequest("connection closed inside the request head")
                return None
            self.buf += data

    async def close(self) -> None:
        try:
            self.obj.unwrap()
        except (ssl.SSLError, ValueError):
            pass
        try:
            await self._flush()
        except (OSError, asyncio.TimeoutError):
            pass


def parse_inner_head(raw: bytes, connect: RequestHead) -> RequestHead:
    """Parse a request decrypted inside a tunnel to ``connect``'s host (strict, like the proxy's own).

    Origin form only; the ``Host`` must name the ``CONNECT`` host (its port, if given, too).
    """
    lines = raw[:-4].split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3:
        raise BadRequest("malformed request line")
    method, target, version = parts
    if not target.startswith(b"/"):
        raise BadRequest("inside an intercepted tunnel, requests use origin form (GET /path)")
    hosts = [line for line in lines[1:] if line[:5].lower() == b"host:"]
    if len(hosts) > 1:
        raise BadRequest("more than one Host header")
    if hosts:
        value = hosts[0][5:].strip(b" \t").decode("latin-1")
        try:
            host, port = _split_authority(value, 0)
        except BadRequest:
            raise BadRequest("invalid Host header") from None
        if host != connect.host or port not in (0, connect.port):
            raise BadRequest(f"Host {value[:100]} inside a tunnel to {connect.authority} (domain fronting is refused)",
                             421)
    rewritten = [b" ".join((method, b"http://" + connect.authority.encode("ascii") + target, version))]
    rewritten += [line for line in lines[1:] if line[:5].lower() != b"host:"]
    head = parse_head(b"\r\n".join(rewritten) + b"\r\n\r\n")
    head.scheme = "https"
    return head


# -- credential swap ----------------------------------------------------------------------
def _swap_basic(value: str, phantom: bytes, secret: str, whole: bool) -> 'str | None':
    """A Basic credential with the phantom (user or password) replaced, or None if it has none."""
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    user, _, password = decoded.partition(":")
    user_is = bool(user) and _same(user, phantom)
    password_is = bool(password) and _same(password, phantom)
    if not (user_is or password_is):
        return None
    creds = secret if whole else f"{secret if user_is else user}:{secret if password_is else password}"
    return base64.b64encode(creds.encode("utf-8")).decode("ascii")


def swap_credential(route: 'Route', headers: 'list[tuple[str, str]]', path: str,
                    query: 'str | None') -> 'tuple[str, list[tuple[str, str]]] | None':
    """The request target and headers with ``route``'s phantom replaced by its secret, or None.

    The phantom is looked for where the route accepts it (its header, ``accept``
    entries, ``Authorization`` as Bearer/token/Basic, query parameters, the URL path);
    a Basic credential keeps its shape (user or password replaced), anything else is
    replaced by the route's own injection.
    """
    phantom = route.phantom.encode("ascii")
    secret = route.secret_text()
    carriers = {"authorization"} | {n.lower() for kind, n in route.accept if kind == "header"}
    if route.inject_mode == "header":
        carriers.add(route.header.lower())
    params = {n for kind, n in route.accept if kind == "query"}
    if route.inject_mode == "query_param":
        params.add(route.query_param)
    matched = inject = False
    out: list[tuple[str, str]] = []
    for k, v in headers:
        if k.lower() in carriers:
            scheme, sp, rest = v.strip().partition(" ")
            if sp and scheme.lower() == "basic":
                swapped = _swap_basic(rest, phantom, secret, route.inject_mode == "basic_auth")
                if swapped is not None:
                    matched = True
                    out.append((k, "Basic " + swapped))
                    continue
            elif any(_same(c, phantom) for c in _candidates(v)):
                matched = inject = True
                continue
        out.append((k, v))
    kept: list[str] = []
    for item in query.split("&") if query else ():
        key, _, value = item.partition("=")
        name = unquote(key)
        if name in params and _same(unquote(value.replace("+", " ")), phantom):
            matched = True
            if route.inject_mode == "query_param" and name == route.query_param:
                kept.append(f"{key}={quote(secret, safe='')}")
            else:
                inject = True
            continue
        kept.append(item)
    if route.inject_mode == "url_path":
        _, ok, path = ReverseProxy._swap_path(route, path, phantom, secret)
        matched = matched or ok
    if not matched:
        return None
    if inject:
        if route.inject_mode == "header":
            out = [(k, v) for k, v in out if k.lower() != route.header.lower()]
            out.append((route.header, route.format.replace("{}", secret)))
        elif route.inject_mode == "basic_auth":
            out = [(k, v) for k, v in out if k.lower() != "authorization"]
            out.append(("Authorization", "Basic " + base64.b64encode(secret.encode("utf-8")).decode("ascii")))
        elif route.inject_mode == "query_param":
            kept.append(f"{quote(route.query_param, safe='')}={quote(secret, safe='')}")
    return path + ("?" + "&".join(kept) if kept else ""), out


def _under(path: str, base: str) -> 'str | None':
    """``path`` relative to the route's base path, or None when outside it."""
    base = base.rstrip("/")
    if not base:
        return path
    if path == base or path.startswith(base + "/"):
        return path[len(base):] or "/"
    return None


# -- the interceptor ----------------------------------------------------------------------
class _Stale(Exception):
    """The upstream closed the connection before answering (a kept-alive connection it had dropped)."""


class _Upstream:
    """The TLS connection to the real server for one intercepted client connection."""

    __slots__ = ("reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def abort(self) -> None:
        self.writer.transport.abort()


class Interceptor:
    """Decrypts the ``CONNECT``s that need it, for a :class:`ProxyServer` (see the module docstring)."""

    def __init__(self, server: ProxyServer, ca: 'SessionCA | None' = None, validity: float = CA_VALIDITY) -> None:
        self.server = server
        self.settings = server.settings
        self.filter = server.filter
        self.ca = ca if ca is not None else SessionCA(ca_names(self.filter), validity)
        self._contexts: dict[tuple[str, ...], ssl.SSLContext] = {}
        self._upstream_context(())  # load the trust store now, not on the first request

    def _upstream_context(self, routes: 'Sequence[Route]') -> ssl.SSLContext:
        extra = tuple(dict.fromkeys(f for f in (self.settings.upstream_ca_file, *(r.tls_ca for r in routes)) if f))
        ctx = self._contexts.get(extra)
        if ctx is None:
            ctx = ssl.create_default_context()
            for cafile in extra:
                ctx.load_verify_locations(cafile=cafile)
            ctx.set_alpn_protocols(["http/1.1"])
            self._contexts[extra] = ctx
        return ctx

    def wants(self, host: str, port: int) -> bool:
        """Is a ``CONNECT`` to ``host:port`` decrypted?"""
        return self.filter.intercepts(host, port)

    # -- one tunnel --------------------------------------------------------------------
    async def serve(self, client: socket.socket, upstream: socket.socket, head: RequestHead, leftover: bytes,
                    down_initial: bytes, event: Event) -> None:
        """Serve an admitted ``CONNECT``: every outcome goes into ``event`` (and one event per request)."""
        loop = asyncio.get_running_loop()
        event["intercepted"] = True
        await _within(loop.sock_sendall(client, _ESTABLISHED), _SEND_TIMEOUT)
        problem, first = await self.server._first_bytes(client, leftover)
        if first is None:
            event.update(action="deny" if problem.startswith("sni") else "allow", reason=problem)
            return
        if not first:
            event["reason"] = "closed before the ClientHello"
            return
        kind, sni = tls.parse_client_hello(first)
        why = "" if kind != "not_tls" else \
            "not_tls: this host is intercepted (endpoint rules or a credential), its tunnel must carry TLS"
        if kind == "sni" and sni != head.host:
            why = f"sni_mismatch: ClientHello names {sni}, CONNECT was {head.host}"
        elif kind == "no_sni" and not is_ip_literal(head.host):
            why = f"no_sni: the ClientHello names no host (CONNECT was {head.host})"
        if why:
            event.update(action="deny", reason=why)
            return
        if down_initial:
            event.update(action="error", reason="upstream: bytes before TLS")
            return
        routes = self.filter.route_hosts.get((head.host, head.port), [])
        up_task = loop.create_task(self._open(upstream, head.host, routes))
        conn = ClientTls(client, self.ca.context(head.host), first)
        up: _Upstream | None = None
        try:
            try:
                await conn.handshake(self.settings.sni_timeout)
            except (ssl.SSLError, OSError, asyncio.TimeoutError) as exc:
                detail = "timeout" if isinstance(exc, asyncio.TimeoutError) else \
                    getattr(exc, "reason", None) or type(exc).__name__
                event.update(action="deny", reason=f"tls_intercept: TLS with the client failed ({detail}); the "
                             "program must trust nono's session CA (SSL_CERT_FILE and friends); certificate-pinning "
                             "clients cannot use this host")
                return
            up = await self._requests(conn, up_task, upstream, head, routes, event)
        finally:
            if not up_task.done():
                up_task.cancel()
                await asyncio.gather(up_task, return_exceptions=True)
            elif not up_task.cancelled() and up_task.exception() is None and up is None:
                up = up_task.result()
            if up is not None:
                up.abort()
            event.update(bytes_up=conn.bytes_in, bytes_down=conn.bytes_out)

    async def _open(self, sock: socket.socket, host: str, routes: 'Sequence[Route]') -> _Upstream:
        """Verified TLS on a connected (checked) socket."""
        timeout = self.settings.connect_timeout
        try:
            reader, writer = await _within(asyncio.open_connection(
                sock=sock, ssl=self._upstream_context(routes), server_hostname=host, ssl_handshake_timeout=timeout,
                limit=1 << 20), timeout)
        except ssl.SSLCertVerificationError as exc:
            raise _Refused(502, f"upstream: TLS verification failed for {host} ({exc.verify_message})",
                           "error") from None
        except (ssl.SSLError, OSError) as exc:
            raise _Refused(502, f"upstream: TLS with {host} failed ({type(exc).__name__}: {exc})", "error") from None
        except asyncio.TimeoutError:
            raise _Refused(504, f"timeout: TLS handshake with {host}", "error") from None
        return _Upstream(reader, writer)

    async def _reconnect(self, head: RequestHead, routes: 'Sequence[Route]') -> _Upstream:
        """A new checked connection to the upstream (the kept-alive one was closed by the server)."""
        server = self.server
        if self.filter.use_upstream(head.host, head.port):
            sock, _ = await server._via_upstream(head)
        else:
            addrs = await server._resolve(head.host, head.port)
            server._check(addrs, head.port)
            sock = await server._connect(addrs, head.port, head.host)
        try:
            return await self._open(sock, head.host, routes)
        except BaseException:
            sock.close()
            raise

    async def _requests(self, conn: ClientTls, up_task: 'asyncio.Task[_Upstream]', upstream: socket.socket,
                        connect: RequestHead, routes: 'Sequence[Route]', event: Event) -> '_Upstream | None':
        """Serve requests until either side ends; returns the upstream connection to close."""
        up: _Upstream | None = None
        count = 0
        try:
            while True:
                timeout = self.settings.head_timeout if count == 0 else self.settings.idle_timeout
                try:
                    raw = await conn.read_head(timeout)
                except BadRequest as exc:
                    event.update(action="deny", reason=f"bad request: {exc.reason}")
                    await conn.tell(_answer(exc.status, f"nono: bad request: {exc.reason}\n"))
                    return up
                except asyncio.TimeoutError:
                    if count == 0:
                        event["reason"] = "timeout: no request inside the intercepted tunnel"
                    return up
                except (OSError, ssl.SSLError) as exc:
                    event["reason"] = f"closed: {type(exc).__name__}"
                    return up
                if raw is None:
                    return up
                count += 1
                event["requests"] = count
                ev = new_event("", connect.host, connect.port)
                ev["intercepted"] = True
                started = time.monotonic()
                before = (conn.bytes_in, conn.bytes_out)
                try:
                    if up is None:
                        try:
                            up = await up_task
                        except _Refused as exc:
                            ev.update(action=exc.action, reason=exc.reason)
                            event.update(action=exc.action, reason=exc.reason)
                            await conn.tell(_answer(exc.status, f"nono: {exc.reason}\n"))
                            return None
                    keep, up = await self._one(conn, raw, up, connect, routes, ev, reused=count > 1)
                finally:
                    ev.update(bytes_up=conn.bytes_in - before[0], bytes_down=conn.bytes_out - before[1],
                              duration_ms=round((time.monotonic() - started) * 1000, 3))
                    self.server._emit(ev)
                if not keep:
                    if ev["action"] != "allow" and event["action"] == "allow" and count == 1:
                        event["reason"] = f"first request: {ev['reason']}"
                    return up
        finally:
            await conn.close()

    async def _one(self, conn: ClientTls, raw: bytes, up: _Upstream, connect: RequestHead, routes: 'Sequence[Route]',
                   ev: Event, reused: bool) -> 'tuple[bool, _Upstream]':
        """One request: check, swap, forward, relay. Returns (keep the connection, the upstream)."""
        idle = self.settings.idle_timeout
        try:
            head = parse_inner_head(raw, connect)
        except BadRequest as exc:
            ev.update(action="deny", reason=f"bad request: {exc.reason}")
            await conn.tell(_answer(exc.status, f"nono: bad request: {exc.reason}\n"))
            return False, up
        path, q, query = head.target.partition("?")
        ev.update(method=head.method, path=path[:200])
        decision = self.filter.check_host(connect.host, connect.port, head.method, head.target)
        if not decision.allowed:
            ev.update(action="deny", reason=decision.reason)
            shown = f"[{connect.host}]" if ":" in connect.host else connect.host
            await conn.tell(_answer(403, f"nono: blocked {head.method} https://{shown}{path[:200]} "
                                          f"({decision.reason}; nono why --host {connect.host})\n"))
            return False, up
        named: set[str] = set()
        for k, v in head.headers:
            if k.lower() == "connection":
                named.update(t.strip().lower() for t in v.split(","))
        client_close = "close" in named or head.version == "HTTP/1.0"
        headers = [(k, v) for k, v in head.headers
                   if k.lower() not in _DROP and k.lower() not in named and not k.lower().startswith("proxy-")]
        target = head.target
        route: Route | None = None
        for candidate in routes:
            rel = _under(path, candidate.base_path)
            if rel is None:
                continue
            swapped = swap_credential(candidate, headers, path, query if q else None)
            if swapped is None:
                continue
            if candidate.endpoints and not any(r.matches(head.method, rel) for r in candidate.endpoints):
                reason = (f"endpoint not allowed: {head.method} {rel[:200]} on route {candidate.name} "
                          f"(--allow-endpoint {candidate.name}:{head.method}:/path)")
                ev.update(action="deny", reason=reason, route=candidate.name)
                await conn.tell(_answer(403, f"nono: {reason}\n"))
                return False, up
            route = candidate
            target, headers = swapped
            ev["route"] = candidate.name
            break
        ev["action"] = "allow"
        host_value = connect.host_header() if connect.port != 443 else \
            (f"[{connect.host}]" if ":" in connect.host else connect.host)
        lines = [f"{head.method} {target} HTTP/1.1", f"Host: {host_value}"]
        lines += [f"{k}: {v}" for k, v in headers]
        if head.body == "length":
            lines.append(f"Content-Length: {head.content_length}")
        elif head.body == "chunked":
            lines.append("Transfer-Encoding: chunked")
        if client_close:
            lines.append("Connection: close")
        request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        sent_any = False
        replayable = head.body == "none" or (head.body == "length" and head.content_length == 0)
        try:
            for attempt in (0, 1):
                if up.writer.is_closing() or up.reader.at_eof():  # closed by the server since the last request
                    up.abort()
                    up = await self._reconnect(connect, routes)
                    reused = False
                try:
                    up.writer.write(request)
                    await self._send_body(conn, up.writer, head, idle)
                    status, interim, first_line, fields, framing = await self._response_head(up.reader, head.method,
                                                                                               idle)
                    break
                except (_Stale, ConnectionError) as exc:
                    # A kept-alive connection the server closed meanwhile: retried once on a new
                    # connection when the request can be replayed.
                    if not (reused and replayable and attempt == 0):
                        raise _Refused(502, f"upstream: {connect.host} closed the connection without a response",
                                       "error") from exc
                    up.abort()
                    up = await self._reconnect(connect, routes)
                    reused = False
            ev["status"] = status
            keep = not client_close and framing[0] != "close"
            out = interim + b"\r\n".join([first_line, *fields]) + (b"\r\nConnection: close" if not keep else b"")
            secret = route.secret if route is not None else bytearray()
            await conn.write(_mask(out + b"\r\n\r\n", secret))
            sent_any = True
            clean = await self._relay_body(conn, up.reader, framing, secret, idle)
            return keep and clean, up
        except BadRequest as exc:
            ev.update(action="deny", reason=f"bad request: {exc.reason}")
            if not sent_any:
                await conn.tell(_answer(exc.status, f"nono: bad request: {exc.reason}\n"))
            return False, up
        except _Refused as exc:
            ev.update(action=exc.action, reason=exc.reason)
            if not sent_any:
                await conn.tell(_answer(exc.status, f"nono: {exc.reason}\n"))
            return False, up
        except asyncio.TimeoutError:
            ev.update(action="error", reason="timeout: idle")
            if not sent_any:
                await conn.tell(_answer(504, f"nono: timeout: {connect.host} did not answer\n"))
            return False, up
        except (OSError, ssl.SSLError, asyncio.IncompleteReadError) as exc:
            ev.update(action="error", reason=f"upstream: {type(exc).__name__}")
            if not sent_any:
                await conn.tell(_answer(502, f"nono: upstream {connect.host} failed ({type(exc).__name__})\n"))
            return False, up

    @staticmethod
    async def _send_body(conn: ClientTls, writer: asyncio.StreamWriter, head: RequestHead, idle: float) -> None:
        """Forward exactly the request body (answering ``Expect: 100-continue`` here)."""
        if head.body == "none" or (head.body == "length" and head.content_length == 0):
            await _within(writer.drain(), idle)
            return
        if not conn.buf and (head.header("expect") or "").lower() == "100-continue":
            await conn.write(_CONTINUE)
        chunked = ChunkedReader() if head.body == "chunked" else None
        remaining = head.content_length
        data = bytes(conn.buf)
        conn.buf.clear()
        while True:
            rest = b""
            if chunked is not None:
                out = chunked.feed(data)
                done = chunked.done
                if done:
                    rest = chunked.leftover
            else:
                out, rest = data[:remaining], data[remaining:]
                remaining -= len(out)
                done = remaining == 0
            if out:
                writer.write(out)
                await _within(writer.drain(), idle)
            if done:
                conn.buf[:0] = rest  # a pipelined next request
                return
            data = await conn.read(idle)
            if not data:
                raise BadRequest("connection closed inside the request body")

    @staticmethod
    async def _response_head(reader: asyncio.StreamReader, method: str,
                             idle: float) -> 'tuple[int, bytes, bytes, list[bytes], tuple[str, int]]':
        """(status, interim heads, status line, kept header lines, body framing)."""
        interim = b""
        deadline = time.monotonic() + idle
        while True:
            try:
                raw = await _within(reader.readuntil(b"\r\n\r\n"), max(deadline - time.monotonic(), 0.001))
            except asyncio.IncompleteReadError as exc:
                if not interim and not exc.partial:
                    raise _Stale from None
                raise _Refused(502, "upstream: closed the connection without a response", "error") from None
            except asyncio.LimitOverrunError:
                raise _Refused(502, "upstream: response head too large", "error") from None
            parsed = status_line(raw)
            if parsed is None:
                raise _Refused(502, "upstream: malformed response", "error")
            status, lines = parsed
            if status == 101:
                raise _Refused(502, "upstream: protocol upgrades (WebSocket) are not supported on intercepted hosts",
                               "error")
            if 100 <= status < 200:
                interim += raw
                continue
            fields = [(line.split(b":", 1)[0].strip().lower(), line.split(b":", 1)[-1].strip()) for line in lines[1:]]
            kept = [line for line, (name, _) in zip(lines[1:], fields) if name not in _RESPONSE_DROP]
            return status, interim, lines[0], kept, _framing(status, method, lines[0].split(b" ", 1)[0], fields)

    @staticmethod
    async def _relay_body(conn: ClientTls, reader: asyncio.StreamReader, framing: 'tuple[str, int]',
                          secret: bytearray, idle: float) -> bool:
        """Relay the response body as it arrives; True when it ended cleanly (connection reusable)."""
        kind, length = framing
        if kind == "none":
            return True
        if kind == "length":
            remaining = length
            while remaining:
                data = await _within(reader.read(min(remaining, 65536)), idle)
                if not data:
                    raise asyncio.IncompleteReadError(b"", remaining)
                remaining -= len(data)
                await conn.write(_mask(data, secret))
            return True
        chunked = ChunkedReader() if kind == "chunked" else None
        while True:
            data = await _within(reader.read(65536), idle)
            if not data:
                if chunked is not None:
                    raise asyncio.IncompleteReadError(b"", None)
                return False
            if chunked is None:
                await conn.write(_mask(data, secret))
                continue
            try:
                out = chunked.feed(data)
            except BadRequest as exc:
                raise _Refused(502, f"upstream: bad chunked response ({exc.reason})", "error") from None
            if out:
                await conn.write(_mask(out, secret))
            if chunked.done:
                return not chunked.leftover
