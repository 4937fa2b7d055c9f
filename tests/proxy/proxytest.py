"""Helpers for the proxy tests: the proxy in a thread, loopback test servers, raw clients.

Everything binds and connects to 127.0.0.1 only. Every wait has a timeout.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import threading
from collections.abc import Callable, Sequence
from typing import Any

from nono.proxy.rules import ProxySettings
from nono.proxy.server import ProxyServer

TOKEN = "t" * 64
AUTH = "Basic " + base64.b64encode(f"nono:{TOKEN}".encode()).decode()
TIMEOUT = 10.0


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


class LoopThread:
    """An asyncio loop running in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any, timeout: float = TIMEOUT) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(TIMEOUT)
        self.loop.close()


class ProxyThread:
    """A :class:`ProxyServer` on 127.0.0.1:<ephemeral> in its own loop thread."""

    def __init__(self, settings: ProxySettings, resolver: Callable[[str, int], Sequence[str]] | None = None) -> None:
        self.events: list[dict[str, object]] = []
        self.server = ProxyServer(settings, TOKEN, self.events.append, resolver)
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1024)
        self.port = self.listener.getsockname()[1]
        self.lt = LoopThread()
        self.task = self.lt.run(self._start())

    async def _start(self) -> asyncio.Task[None]:
        return asyncio.get_running_loop().create_task(self.server.serve(self.listener))

    def wait_events(self, n: int, timeout: float = TIMEOUT) -> list[dict[str, object]]:
        """Wait until at least ``n`` events were recorded."""
        import time

        deadline = time.monotonic() + timeout
        while len(self.events) < n and time.monotonic() < deadline:
            time.sleep(0.005)
        return list(self.events)

    def stop(self) -> None:
        async def cancel() -> None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)

        self.lt.run(cancel())
        self.lt.close()
        self.listener.close()

    def __enter__(self) -> ProxyThread:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class EchoServer:
    """An asyncio echo server (also: send ``greeting`` first) in its own loop thread."""

    def __init__(self, greeting: bytes = b"") -> None:
        self.greeting = greeting
        self.connections = 0
        self.lt = LoopThread()
        self.server = self.lt.run(self._start())
        self.port: int = self.server.sockets[0].getsockname()[1]

    async def _start(self) -> asyncio.base_events.Server:
        return await asyncio.start_server(self._conn, "127.0.0.1", 0, backlog=1024)

    async def _conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            if self.greeting:
                writer.write(self.greeting)
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
            writer.write_eof()
        except OSError:
            pass
        finally:
            writer.close()

    def stop(self) -> None:
        async def close() -> None:
            self.server.close()

        self.lt.run(close())
        self.lt.close()


class HttpServer:
    """Records each connection's raw request bytes, answers ``response`` and closes.

    A request is read until its head plus ``Content-Length`` body, or a chunked body
    ending ``0\\r\\n\\r\\n``, or EOF, then the server waits ``linger`` seconds for more
    (a smuggled second request would show up in the recording).
    """

    def __init__(self, response: bytes = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", linger: float = 0.2) -> None:
        self.response = response
        self.linger = linger
        self.requests: list[bytes] = []
        self.lt = LoopThread()
        self.server = self.lt.run(asyncio.start_server(self._conn, "127.0.0.1", 0))
        self.port: int = self.server.sockets[0].getsockname()[1]

    async def _conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        buf = b""
        try:
            while b"\r\n\r\n" not in buf:
                data = await asyncio.wait_for(reader.read(65536), TIMEOUT)
                if not data:
                    break
                buf += data
            head = buf.split(b"\r\n\r\n", 1)[0].lower()
            if b"transfer-encoding: chunked" in head:
                while not buf.endswith(b"0\r\n\r\n"):
                    data = await asyncio.wait_for(reader.read(65536), TIMEOUT)
                    if not data:
                        break
                    buf += data
            elif b"content-length:" in head:
                length = int(head.split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
                while len(buf.split(b"\r\n\r\n", 1)[1]) < length:
                    data = await asyncio.wait_for(reader.read(65536), TIMEOUT)
                    if not data:
                        break
                    buf += data
            writer.write(self.response)
            await writer.drain()
            try:
                while data := await asyncio.wait_for(reader.read(65536), self.linger):
                    buf += data
            except asyncio.TimeoutError:
                pass
        except (OSError, asyncio.TimeoutError):
            pass
        finally:
            self.requests.append(buf)
            writer.close()

    def stop(self) -> None:
        async def close() -> None:
            self.server.close()

        self.lt.run(close())
        self.lt.close()


def free_port() -> int:
    """A loopback port with nothing listening (bound then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def exchange(proxy_port: int, data: bytes, timeout: float = TIMEOUT) -> bytes:
    """Send raw bytes to the proxy and read its whole answer (until it closes)."""
    with socket.create_connection(("127.0.0.1", proxy_port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


def read_head(sock: socket.socket) -> bytes:
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(1)
        if not chunk:
            break
        buf += chunk
    return buf


def tunnel(proxy_port: int, host: str, port: int, auth: str | None = AUTH,
           timeout: float = TIMEOUT) -> tuple[socket.socket, bytes]:
    """Open a CONNECT tunnel; returns the socket and the proxy's answer head."""
    s = socket.create_connection(("127.0.0.1", proxy_port), timeout=timeout)
    extra = f"Proxy-Authorization: {auth}\r\n" if auth else ""
    s.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n{extra}\r\n".encode())
    return s, read_head(s)


def client_hello(server_name: str | None) -> bytes:
    """A real ClientHello from the ssl module (memory BIOs; nothing is sent anywhere)."""
    import ssl

    ctx = ssl.create_default_context()
    if server_name is None:
        ctx.check_hostname = False
    out = ssl.MemoryBIO()
    conn = ctx.wrap_bio(ssl.MemoryBIO(), out, server_hostname=server_name)
    try:
        conn.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()
