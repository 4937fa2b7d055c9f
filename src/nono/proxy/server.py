"""The asyncio proxy: one request per connection, CONNECT tunnels and plain-HTTP forwarding.

Per connection: read one request head (``head_timeout``), check the session token
(407), decide by name (403), resolve the name here and check every address (403),
connect to a checked address (no second resolution; 502/504 on failure), then

* CONNECT: answer 200, relay the server's bytes at once, inspect the client's first
  bytes (SNI must name the CONNECT host), then relay both ways until both sides end;
  a host with endpoint rules or a credential route's upstream is decrypted instead,
  when ``ProxySettings.intercept`` is on (:mod:`.intercept`);
* origin form (``GET /openai/...``) when credential routes are configured: the
  reverse proxy of :mod:`.reverse` (no proxy token; the route's phantom token instead);
* plain HTTP: forward exactly one request (canonical head, ``Connection: close``,
  body framed by Content-Length or re-framed chunks), relay the response until the
  upstream closes, then close. Bytes after the request are never forwarded.

Every connection that sent a request produces one event (see :func:`new_event`).
"""

import asyncio
import base64
import binascii
import errno
import hmac
import os
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from . import tls
from .hosts import is_ip_literal
from .http1 import BadRequest, ChunkedReader, RequestHead, head_end, parse_head
from .relay import Relay
from .rules import ProxySettings

T = TypeVar("T")
Event = dict[str, object]
Resolver = Callable[[str, int], Sequence[str]]

_PHRASES = {400: "Bad Request", 403: "Forbidden", 407: "Proxy Authentication Required", 414: "URI Too Long",
            431: "Request Header Fields Too Large", 502: "Bad Gateway", 503: "Service Unavailable",
            504: "Gateway Timeout", 505: "HTTP Version Not Supported"}
_ESTABLISHED = b"HTTP/1.1 200 Connection Established\r\n\r\n"
_SEND_TIMEOUT = 10.0
_LINGER = 1.0
_TEMPORARY_ACCEPT_ERRORS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM, errno.ECONNABORTED}


def new_event(method: str = "", host: str = "", port: int = 0) -> Event:
    """An event dict: time, action (allow/deny/error), method, host, port, reason, bytes, duration."""
    return {"time": time.time(), "action": "error", "method": method, "host": host, "port": port, "reason": "",
            "bytes_up": 0, "bytes_down": 0, "duration_ms": 0.0}


class _Refused(Exception):
    """End the request with an HTTP error answer; ``action`` goes into the event."""

    def __init__(self, status: int, reason: str, action: str = "deny", body: str = "") -> None:
        super().__init__(reason)
        self.status, self.reason, self.action, self.body = status, reason, action, body


def _response(status: int, body: str, extra: str = "") -> bytes:
    data = body.encode("utf-8", "replace")
    head = (f"HTTP/1.1 {status} {_PHRASES.get(status, 'Error')}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(data)}\r\n{extra}Connection: close\r\n\r\n")
    return head.encode("latin-1") + data


def _futures(*items: 'asyncio.Future[Any]') -> 'set[asyncio.Future[Any]]':
    return set(items)


async def _within(aw: 'Awaitable[T]', timeout: float) -> T:
    """``asyncio.wait_for`` without a task per call (the hot path awaits a few per connection)."""
    task = asyncio.current_task()
    assert task is not None
    fired = False

    def fire() -> None:
        nonlocal fired
        fired = True
        task.cancel()

    handle = asyncio.get_running_loop().call_later(max(timeout, 0.0), fire)
    try:
        return await aw
    except asyncio.CancelledError:
        if not fired:
            raise
        if hasattr(task, "uncancel"):
            task.uncancel()
        raise asyncio.TimeoutError from None
    finally:
        handle.cancel()


def _blocked_body(host: str, port: int, reason: str) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"nono: blocked {shown}:{port} ({reason}; nono why --host {host})\n"


class ProxyServer:
    """The proxy. ``serve(listener)`` runs until cancelled; events go to ``on_event``.

    ``resolver`` (tests) replaces DNS for every name: called once per request;
    its answers pass the SSRF check like real ones. ``session_ca`` (a
    :class:`~.sessionca.SessionCA`) is the CA for TLS interception, created here when
    interception is needed and none is given.
    """

    def __init__(self, settings: ProxySettings, token: str, on_event: 'Callable[[Event], None] | None' = None,
                 resolver: 'Resolver | None' = None, session_ca: Any = None) -> None:
        self.settings = settings
        self.filter = settings.compile()
        self._credentials = b"nono:" + token.encode("ascii")
        self._on_event = on_event
        self._resolver = resolver
        self._tasks: set[asyncio.Task[None]] = set()
        self._reverse: Any = None
        if settings.routes:  # credential routes (origin-form requests on this port); imported only when used
            from .reverse import ReverseProxy

            self._reverse = ReverseProxy(self, settings.routes)
        self.interceptor: Any = None
        if self.filter.intercepting:  # TLS interception where needed; `cryptography` only then
            from .intercept import Interceptor

            self.interceptor = Interceptor(self, session_ca)

    @property
    def active(self) -> int:
        """Connections being served now."""
        return len(self._tasks)

    async def serve(self, listener: socket.socket) -> None:
        """Accept and serve connections until cancelled; then end every connection."""
        loop = asyncio.get_running_loop()
        listener.setblocking(False)
        try:
            while True:
                try:
                    client, _ = await loop.sock_accept(listener)
                except OSError as exc:
                    if exc.errno in _TEMPORARY_ACCEPT_ERRORS:
                        await asyncio.sleep(0.05)
                        continue
                    raise
                if len(self._tasks) >= self.settings.max_connections:
                    try:
                        client.send(_response(503, "nono: too many connections\n"))
                    except OSError:
                        pass
                    client.close()
                    continue
                task = loop.create_task(self._handle(client))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        finally:
            for task in list(self._tasks):
                task.cancel()
            if self._tasks:
                await asyncio.wait(list(self._tasks), timeout=5.0)

    def _emit(self, event: Event) -> None:
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception:  # an event sink must never take the proxy down
                pass

    # -- one connection ----------------------------------------------------------------
    async def _handle(self, client: socket.socket) -> None:
        start = time.monotonic()
        event: Event | None = None
        upstream: socket.socket | None = None
        try:
            client.setblocking(False)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            event = new_event()
            try:
                got = await self._read_head(client)
            except BadRequest as exc:
                event.update(action="deny", reason=f"bad request: {exc.reason}")
                await self._send(client, _response(exc.status, f"nono: bad request: {exc.reason}\n"))
                return
            except (asyncio.TimeoutError, TimeoutError):
                event.update(reason="timeout: no complete request head")
                return
            if got is None:
                event = None  # nothing was asked: no decision, no event
                return
            head, leftover = got
            if head.scheme == "reverse":
                await self._reverse.handle(client, head, leftover, event)
                return
            event.update(method=head.method, host=head.host, port=head.port)
            try:
                upstream, down_initial = await self._admit(client, head)
            except _Refused as exc:
                event.update(action=exc.action, reason=exc.reason)
                body = exc.body or (_blocked_body(head.host, head.port, exc.reason) if exc.status == 403
                                    else f"nono: {exc.reason}\n")
                extra = 'Proxy-Authenticate: Basic realm="nono"\r\n' if exc.status == 407 else ""
                await self._send(client, _response(exc.status, body, extra))
                return
            event["action"] = "allow"
            if head.method == "CONNECT":
                if self.interceptor is not None and self.interceptor.wants(head.host, head.port):
                    await self.interceptor.serve(client, upstream, head, leftover, down_initial, event)
                else:
                    await self._tunnel(client, upstream, head, leftover, down_initial, event)
            else:
                await self._forward(client, upstream, head, leftover, down_initial, event)
        except asyncio.CancelledError:
            if event is not None and not event["reason"]:
                event["reason"] = "proxy stopped"
            raise
        except Exception as exc:  # keep serving others; record what happened
            if event is not None:
                event.update(action="error", reason=f"internal error: {type(exc).__name__}: {exc}")
        finally:
            for sock in (client, upstream):
                if sock is not None:
                    sock.close()
            if event is not None:
                event["duration_ms"] = round((time.monotonic() - start) * 1000, 3)
                self._emit(event)

    async def _send(self, sock: socket.socket, data: bytes) -> None:
        try:
            await _within(asyncio.get_running_loop().sock_sendall(sock, data), _SEND_TIMEOUT)
        except (OSError, asyncio.TimeoutError):
            pass

    async def _read_head(self, sock: socket.socket) -> 'tuple[RequestHead, bytes] | None':
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.head_timeout
        buf = bytearray()
        while True:
            end = head_end(buf)
            if end >= 0:
                if self._reverse is not None:
                    from .reverse import is_origin_form, parse_origin_head

                    if is_origin_form(buf):
                        return parse_origin_head(bytes(buf[:end])), bytes(buf[end:])
                return parse_head(bytes(buf[:end])), bytes(buf[end:])
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise asyncio.TimeoutError
            try:
                data = await _within(loop.sock_recv(sock, 65536), remaining)
            except ConnectionError:
                data = b""
            if not data:
                if buf:
                    raise BadRequest("connection closed inside the request head")
                return None
            buf += data

    # -- admission: auth, policy, resolution, connect ----------------------------------
    def _authorized(self, head: RequestHead) -> bool:
        value = head.header("proxy-authorization")
        if not value:
            return False
        scheme, _, cred = value.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(cred.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        return hmac.compare_digest(decoded, self._credentials)

    async def _admit(self, client: socket.socket, head: RequestHead) -> 'tuple[socket.socket, bytes]':
        """Check everything and connect; returns the upstream socket and bytes it already sent."""
        if not self._authorized(head):
            reason = "auth: wrong proxy credentials" if head.header("proxy-authorization") else \
                "auth: proxy credentials required"
            raise _Refused(407, reason, body="nono: proxy authentication required (use the HTTP(S)_PROXY URL)\n")
        target = None if head.method == "CONNECT" else head.target
        decision = self.filter.check_host(head.host, head.port, head.method, target)
        if not decision.allowed:
            raise _Refused(403, decision.reason)
        if self.filter.use_upstream(head.host, head.port):
            if is_ip_literal(head.host):
                self._check([head.host], head.port)
            return await self._via_upstream(head)
        addrs = await self._resolve(head.host, head.port)
        self._check(addrs, head.port)
        return await self._connect(addrs, head.port, head.host), b""

    def _check(self, addrs: Sequence[str], port: int) -> None:
        refusal = self.filter.check_addresses(addrs, port)
        if refusal is not None:
            raise _Refused(403, refusal)

    async def _resolve(self, host: str, port: int) -> 'list[str]':
        if is_ip_literal(host):
            return [host]
        if self._resolver is not None:
            addrs = list(self._resolver(host, port))
        elif host in self.filter.overrides:
            addrs = list(self.filter.overrides[host])
        else:
            loop = asyncio.get_running_loop()
            try:
                infos = await _within(
                    loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP),
                    self.settings.connect_timeout)
            except socket.gaierror as exc:
                raise _Refused(502, f"upstream: cannot resolve {host} ({exc.strerror})", "error") from None
            except asyncio.TimeoutError:
                raise _Refused(504, f"timeout: resolving {host}", "error") from None
            addrs = [str(info[4][0]) for info in infos]
        addrs = list(dict.fromkeys(addrs))
        if not addrs:
            raise _Refused(502, f"upstream: {host} has no addresses", "error")
        return addrs

    async def _connect(self, addrs: Sequence[str], port: int, name: str) -> socket.socket:
        """Connect to the first reachable address among the checked ones."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.connect_timeout
        last: str = "no address"
        for addr in addrs:
            family = socket.AF_INET6 if ":" in addr else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            try:
                sock.setblocking(False)
                await _within(loop.sock_connect(sock, (addr, port)), max(deadline - loop.time(), 0.001))
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                return sock
            except asyncio.TimeoutError:
                sock.close()
                raise _Refused(504, f"timeout: connecting to {name}:{port}", "error") from None
            except OSError as exc:
                sock.close()
                last = os.strerror(exc.errno) if exc.errno else str(exc)
            except BaseException:
                sock.close()
                raise
        raise _Refused(502, f"upstream: cannot connect to {name}:{port} ({last})", "error")

    async def _via_upstream(self, head: RequestHead) -> 'tuple[socket.socket, bytes]':
        """Connect to the upstream proxy; for CONNECT, have it open the tunnel."""
        assert self.settings.upstream is not None
        up_host, up_port = self.settings.upstream
        addrs = list(self.filter.overrides.get(up_host.lower(), ())) or await self._resolve(up_host.lower(), up_port)
        sock = await self._connect(addrs, up_port, f"upstream proxy {up_host}")
        if head.method != "CONNECT":
            return sock, b""
        try:
            auth = self.settings.upstream_authorization
            request = (f"CONNECT {head.authority} HTTP/1.1\r\nHost: {head.authority}\r\n"
                       + (f"Proxy-Authorization: {auth}\r\n" if auth else "") + "\r\n")
            loop = asyncio.get_running_loop()
            await _within(loop.sock_sendall(sock, request.encode("latin-1")), self.settings.connect_timeout)
            status, rest = await self._read_response_head(sock)
            if not 200 <= status < 300:
                raise _Refused(502, f"upstream proxy refused the tunnel ({status})", "error")
            return sock, rest
        except asyncio.TimeoutError:
            sock.close()
            raise _Refused(504, "timeout: upstream proxy did not answer", "error") from None
        except OSError as exc:
            sock.close()
            raise _Refused(502, f"upstream proxy failed ({exc.strerror or exc})", "error") from None
        except BaseException:
            sock.close()
            raise

    async def _read_response_head(self, sock: socket.socket) -> 'tuple[int, bytes]':
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.connect_timeout
        buf = b""
        while b"\r\n\r\n" not in buf:
            if len(buf) > 65536:
                raise _Refused(502, "upstream proxy sent an oversized answer", "error")
            data = await _within(loop.sock_recv(sock, 65536), max(deadline - loop.time(), 0.001))
            if not data:
                raise _Refused(502, "upstream proxy closed the connection", "error")
            buf += data
        head, _, rest = buf.partition(b"\r\n\r\n")
        parts = head.split(b"\r\n", 1)[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise _Refused(502, "upstream proxy sent a malformed answer", "error")
        return int(parts[1]), rest

    # -- CONNECT -----------------------------------------------------------------------
    async def _tunnel(self, client: socket.socket, upstream: socket.socket, head: RequestHead, leftover: bytes,
                      down_initial: bytes, event: Event) -> None:
        loop = asyncio.get_running_loop()
        await _within(loop.sock_sendall(client, _ESTABLISHED), _SEND_TIMEOUT)
        relay = Relay(client, upstream, self.settings.idle_timeout)
        try:
            relay.start_down(down_initial)
            task = asyncio.current_task()
            assert task is not None
            state = {"inspecting": True, "ended": False}

            def on_end(_: object) -> None:  # the server side failed or ended while we wait for the client
                if state["inspecting"]:
                    state["ended"] = True
                    task.cancel()

            relay.ended.add_done_callback(on_end)
            try:
                problem, first = await self._first_bytes(client, leftover)
            except asyncio.CancelledError:
                if not state["ended"]:
                    raise
                if hasattr(task, "uncancel"):
                    task.uncancel()
                event["reason"] = "ended before the client spoke"
                return
            finally:
                state["inspecting"] = False
            if first is None:
                event.update(action="deny" if problem.startswith("sni") else "allow", reason=problem)
                return
            kind, sni = tls.parse_client_hello(first)
            if kind == "sni" and sni != head.host:
                event.update(action="deny", reason=f"sni_mismatch: ClientHello names {sni}, CONNECT was {head.host}")
                return
            # A tunnel carries TLS, and TLS names its host. Anything else could address
            # another virtual host on the allowed host's address (an HTTP Host header
            # inside a plain tunnel, a ClientHello without SNI): refused, fail closed.
            if kind == "not_tls" and self.settings.require_tls:
                event.update(action="deny", reason="not_tls: a CONNECT tunnel must carry TLS (use plain HTTP for http://)")
                return
            if kind == "no_sni" and self.settings.require_tls and not is_ip_literal(head.host):
                event.update(action="deny", reason=f"no_sni: the ClientHello names no host (CONNECT was {head.host})")
                return
            relay.start_up(first)
            if not await relay.wait():
                event["reason"] = "timeout: idle"
            elif relay.error is not None:
                event["reason"] = f"closed: {relay.error.strerror if isinstance(relay.error, OSError) else relay.error}"
        finally:
            relay.up.stop()
            relay.down.stop()
            event.update(bytes_up=relay.up.bytes, bytes_down=relay.down.bytes)

    async def _first_bytes(self, client: socket.socket, leftover: bytes) -> 'tuple[str, bytes | None]':
        """The client's first bytes, complete enough to judge the ClientHello.

        Returns ("", data) to go on, or (reason, None) to refuse. Waiting for the
        first byte is bounded by the idle timeout (server-first protocols wait);
        once a TLS record starts, the rest must come within ``sni_timeout``.
        """
        loop = asyncio.get_running_loop()
        buf = bytearray(leftover)
        deadline: float | None = None
        while True:
            try:
                kind, _ = tls.parse_client_hello(bytes(buf))
            except tls.TlsError as exc:
                return f"sni: malformed ClientHello ({exc})", None
            if kind != "incomplete":
                return "", bytes(buf)
            if buf and deadline is None:
                deadline = loop.time() + self.settings.sni_timeout
            timeout = self.settings.idle_timeout if deadline is None else deadline - loop.time()
            if timeout <= 0:
                return "sni: timeout waiting for the ClientHello", None
            try:
                data = await _within(loop.sock_recv(client, 65536), timeout)
            except asyncio.TimeoutError:
                return ("sni: timeout waiting for the ClientHello" if buf else "timeout: idle"), None
            except OSError:
                data = b""
            if not data:
                return ("sni: connection closed inside the ClientHello", None) if buf else ("", b"")
            buf += data

    # -- plain HTTP --------------------------------------------------------------------
    async def _forward(self, client: socket.socket, upstream: socket.socket, head: RequestHead, leftover: bytes,
                       down_initial: bytes, event: Event) -> None:
        loop = asyncio.get_running_loop()
        via_proxy = self.filter.use_upstream(head.host, head.port)
        auth = self.settings.upstream_authorization
        extra = (("Proxy-Authorization", auth),) if via_proxy and auth else ()
        request = head.forward(absolute=via_proxy, extra=extra)
        sent = [0]
        relay = Relay(client, upstream, self.settings.idle_timeout)
        body: asyncio.Task[None] | None = None
        try:
            await _within(loop.sock_sendall(upstream, request), _SEND_TIMEOUT)
            relay.skip_up()
            relay.start_down(down_initial)
            body = loop.create_task(self._send_body(client, upstream, head, leftover, sent))
            await asyncio.wait(_futures(body, relay.ended), timeout=self.settings.idle_timeout,
                               return_when=asyncio.FIRST_COMPLETED)
            if body.done() and body.exception() is not None:
                exc = body.exception()
                if isinstance(exc, BadRequest):
                    event.update(action="deny", reason=f"bad request: {exc.reason}")
                    if not relay.down.bytes:
                        relay.down.stop()
                        await self._send(client, _response(exc.status, f"nono: bad request: {exc.reason}\n"))
                else:
                    event.update(action="error", reason=f"closed: {exc}")
                return
            if not await relay.wait():
                event["reason"] = "timeout: idle"
            elif relay.error is not None:
                event["reason"] = f"closed: {relay.error.strerror if isinstance(relay.error, OSError) else relay.error}"
            await self._linger(client)
        except (OSError, asyncio.TimeoutError) as exc:
            event.update(action="error", reason=f"upstream: {exc.strerror if isinstance(exc, OSError) else 'timeout'}")
        finally:
            if body is not None and not body.done():
                body.cancel()
                await asyncio.gather(body, return_exceptions=True)
            relay.up.stop()
            relay.down.stop()
            event.update(bytes_up=len(request) + sent[0], bytes_down=relay.down.bytes)

    async def _send_body(self, client: socket.socket, upstream: socket.socket, head: RequestHead, leftover: bytes,
                         sent: 'list[int]') -> None:
        """Forward exactly the request body; never anything after it."""
        if head.body == "none" or (head.body == "length" and head.content_length == 0):
            return
        loop = asyncio.get_running_loop()
        chunked = ChunkedReader() if head.body == "chunked" else None
        remaining = head.content_length
        data = leftover
        while True:
            if chunked is not None:
                out = chunked.feed(data)
                done = chunked.done
            else:
                out = data[:remaining]
                remaining -= len(out)
                done = remaining == 0
            if out:
                await _within(loop.sock_sendall(upstream, out), self.settings.idle_timeout)
                sent[0] += len(out)
            if done:
                return
            data = await _within(loop.sock_recv(client, 65536), self.settings.idle_timeout)
            if not data:
                raise BadRequest("connection closed inside the request body")

    async def _linger(self, client: socket.socket) -> None:
        """Read and drop what the client still sends (briefly), so closing does not reset
        the connection before it has read the response."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _LINGER
        dropped = 0
        while dropped < 256 * 1024:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            try:
                data = await _within(loop.sock_recv(client, 65536), remaining)
            except (OSError, asyncio.TimeoutError):
                return
            if not data:
                return
            dropped += len(data)
