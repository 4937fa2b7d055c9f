"""A fake HTTPS API upstream on 127.0.0.1 with a private test CA (``trustme``), for the credential tests.

Imported by the other credential test modules (pytest puts this directory on
``sys.path``). It binds and answers on loopback only. Paths:

* ``/sse...``     an event stream: ``data: 1``, then waits for ``gate`` before ``data: 2``
* ``/chunked...`` a chunked body in three chunks
* ``/echo...``    echoes the request's Authorization / x-api-key values in the body
* anything else  ``{"ok": true}`` with Content-Length (no ``Connection: close``)
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import sys
import threading
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "proxy"))
from proxytest import LoopThread

trustme = pytest.importorskip("trustme")

TIMEOUT = 10.0
HOST = "api.fake.test"


class Recorded:
    """One request as the upstream saw it."""

    def __init__(self, head: bytes, body: bytes) -> None:
        self.head = head
        self.body = body
        lines = head.decode("latin-1").split("\r\n")
        self.request_line = lines[0]
        self.method, self.target = lines[0].split(" ")[:2]
        self.headers = [tuple(x.strip() for x in line.split(":", 1)) for line in lines[1:] if line]

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


class FakeUpstream:
    """HTTPS (or plain, ``tls=False``) server in a loop thread; ``ca_file`` is its CA's PEM."""

    def __init__(self, tmp: Path, tls: bool = True, hostname: str = HOST, keepalive: bool = False) -> None:
        self.keepalive = keepalive
        self.connections = 0
        self.requests: list[Recorded] = []
        self.gate = threading.Event()
        self.ca = trustme.CA()
        self.ca_file = str(tmp / "fake-upstream-ca.pem")
        self.ca.cert_pem.write_to_path(self.ca_file)
        self.ctx: ssl.SSLContext | None = None
        if tls:
            self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.ca.issue_cert(hostname, "127.0.0.1").configure_cert(self.ctx)
        self.lt = LoopThread()
        self.server = self.lt.run(asyncio.start_server(self._conn, "127.0.0.1", 0, ssl=self.ctx))
        self.port: int = self.server.sockets[0].getsockname()[1]

    async def _read(self, reader: asyncio.StreamReader) -> Recorded:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        low = head.lower()
        body = b""
        if b"transfer-encoding: chunked" in low:
            while True:
                size = int((await reader.readuntil(b"\r\n")).strip(), 16)
                data = await reader.readexactly(size + 2)
                body += data[:-2]
                if size == 0:
                    break
        elif b"content-length:" in low:
            n = int(low.split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
            body = await reader.readexactly(n)
        return Recorded(head[:-4], body)

    async def _conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while await self._one(reader, writer) and self.keepalive:
                pass
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ssl.SSLError, ValueError):
            pass
        finally:
            writer.close()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        rec = await self._read(reader)
        self.requests.append(rec)
        path = rec.target
        if path.startswith("/sse") or "/sse" in path:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
            writer.write(b"9\r\ndata: 1\n\n\r\n")
            await writer.drain()
            await asyncio.get_running_loop().run_in_executor(None, self.gate.wait, TIMEOUT)
            writer.write(b"9\r\ndata: 2\n\n\r\n0\r\n\r\n")
        elif "/chunked" in path:
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for part in (b"one,", b"two,", b"three"):
                writer.write(b"%x\r\n%s\r\n" % (len(part), part))
                await writer.drain()
            writer.write(b"0\r\n\r\n")
        elif "/echo" in path:
            body = f"auth={rec.header('authorization')} key={rec.header('x-api-key')}".encode()
            writer.write(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        else:
            body = b'{"ok": true}'
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nKeep-Alive: timeout=5\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        return b"connection: close" not in rec.head.lower()

    def stop(self) -> None:
        async def close() -> None:
            self.server.close()

        self.gate.set()
        self.lt.run(close())
        self.lt.close()


def http(port: int, request: bytes, timeout: float = TIMEOUT) -> bytes:
    """Send a raw request to 127.0.0.1:port, read until close."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out


def test_fake_upstream_serves_tls_with_its_ca(tmp_path: Path) -> None:
    up = FakeUpstream(tmp_path)
    try:
        ctx = ssl.create_default_context(cafile=up.ca_file)
        with socket.create_connection(("127.0.0.1", up.port), timeout=TIMEOUT) as raw, \
                ctx.wrap_socket(raw, server_hostname=HOST) as s:
            s.sendall(b"GET /x HTTP/1.1\r\nHost: api.fake.test\r\n\r\n")
            data = s.recv(65536)
        assert data.startswith(b"HTTP/1.1 200") and up.requests[0].target == "/x"
    finally:
        up.stop()
