"""A strict HTTP/1.1 request-head parser and a chunked-body reader (sans I/O).

Strictness is the point: the proxy checks one request and forwards it, so any
framing it might read differently from the upstream server is refused.

* Lines end with CRLF only. A bare LF or bare CR is a 400 (we never guess where
  a line ends, so the head we check is the head we forward).
* Limits: head <= 64 KiB, request line <= 8 KiB, <= 100 header fields.
* No obs-fold, no whitespace before ``:``, header names are tokens, values carry
  no NUL or other control characters (HTAB allowed, obs-text allowed).
* Body framing: ``Transfer-Encoding`` must be exactly ``chunked`` (HTTP/1.1 only);
  ``Content-Length`` values must all agree; both together is a 400.
* Targets: CONNECT takes ``host:port`` (IPv6 in brackets); other methods take the
  absolute form ``http://host[:port]/path``. ``https://`` absolute form is refused
  (use CONNECT); origin form is refused (this is a proxy). A ``Host`` header must
  name the same authority.

The forwarded head is re-serialised from the parsed fields (:meth:`RequestHead.forward`),
so whatever the client sent, the upstream sees one canonical form.
"""

from ..errors import PolicyError
from .hosts import normalize_host

MAX_HEAD = 64 * 1024
MAX_LINE = 8 * 1024
MAX_HEADERS = 100
_TCHAR = frozenset(b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_CTL = frozenset(range(0x20)) - {0x09} | {0x7F}
_TARGET_CHARS = frozenset(range(0x21, 0x7F))
_HEX = frozenset(b"0123456789abcdefABCDEF")
# Headers some servers and CDNs route by instead of Host: dropped, so a request cannot name
# another virtual host than the one that was checked.
_ROUTING = frozenset({"x-forwarded-host", "forwarded", "x-host", "x-forwarded-server", "x-original-host"})
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding",
                         "upgrade", "host", "content-length"})


class BadRequest(Exception):
    """The request cannot be accepted; ``status`` is the HTTP status to answer with."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


def head_end(buf: 'bytes | bytearray', start: int = 0) -> int:
    """Index just past the blank line ending the head in ``buf``, or -1 if not there yet.

    Raises :class:`BadRequest` as soon as the bytes so far cannot become a valid
    head (a bare LF, or too long), so a client never holds a connection by
    sending LF-only lines. ``start`` lets a caller skip bytes already scanned.
    """
    start = max(start - 3, 0)
    end = buf.find(b"\r\n\r\n", start)
    scan_to = end if end >= 0 else len(buf)
    lf = buf.find(b"\n", start, scan_to)
    while lf >= 0:
        if lf == 0 or buf[lf - 1] != 0x0D:
            raise BadRequest("bare LF in the request head (lines must end with CRLF)")
        lf = buf.find(b"\n", lf + 1, scan_to)
    if end < 0:
        if len(buf) >= MAX_HEAD:
            raise BadRequest("request head larger than 64 KiB", 431)
        first = buf.find(b"\r\n")
        if (first if first >= 0 else len(buf)) > MAX_LINE:
            raise BadRequest("request line longer than 8 KiB", 414)
        return -1
    if end + 4 > MAX_HEAD:
        raise BadRequest("request head larger than 64 KiB", 431)
    return end + 4


class RequestHead:
    """A parsed request head. ``headers`` keeps the client's names and order."""

    __slots__ = ("body", "content_length", "headers", "host", "method", "port", "scheme", "target", "version")

    def __init__(self, method: str, target: str, version: str, headers: 'tuple[tuple[str, str], ...]',
                 host: str, port: int, scheme: str, body: str, content_length: int) -> None:
        self.method = method
        self.target = target           # origin-form path for http://, "host:port" for CONNECT
        self.version = version
        self.headers = headers
        self.host = host               # normalised
        self.port = port
        self.scheme = scheme           # "http" or "" (CONNECT)
        self.body = body               # "none", "length" or "chunked"
        self.content_length = content_length

    def header(self, name: str) -> 'str | None':
        """The first value of a header (case-insensitive), or None."""
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), None)

    @property
    def authority(self) -> str:
        """``host:port`` with IPv6 in brackets."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def host_header(self) -> str:
        """The Host value to forward: the port only when it is not the default 80."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == 80 else f"{host}:{self.port}"

    def serialize(self) -> bytes:
        """The head as parsed (absolute form for plain HTTP), for re-parsing and logs."""
        target = self.authority if self.method == "CONNECT" else f"http://{self.host_header()}{self.target}"
        lines = [f"{self.method} {target} {self.version}"]
        lines += [f"{k}: {v}" for k, v in self.headers]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def forward(self, absolute: bool = False, extra: 'tuple[tuple[str, str], ...]' = ()) -> bytes:
        """The head to send upstream: origin form (absolute for an upstream proxy),
        hop-by-hop and ``Proxy-*`` fields removed, one framing field, ``Connection: close``."""
        named: set[str] = set()
        for k, v in self.headers:
            if k.lower() == "connection":
                named.update(t.strip().lower() for t in v.split(","))
        target = f"http://{self.host_header()}{self.target}" if absolute else self.target
        lines = [f"{self.method} {target} {self.version}", f"Host: {self.host_header()}"]
        for k, v in self.headers:
            low = k.lower()
            if low in _HOP_BY_HOP or low in named or low.startswith("proxy-") or low in _ROUTING:
                continue
            lines.append(f"{k}: {v}")
        if self.body == "length":
            lines.append(f"Content-Length: {self.content_length}")
        elif self.body == "chunked":
            lines.append("Transfer-Encoding: chunked")
        lines += [f"{k}: {v}" for k, v in extra]
        lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def __repr__(self) -> str:
        return f"RequestHead({self.method} {self.authority}{self.target if self.scheme else ''})"


def parse_head(data: bytes) -> RequestHead:
    """Parse a complete request head (ending with the blank line); raises :class:`BadRequest`."""
    end = head_end(data)
    if end != len(data):
        raise BadRequest("incomplete request head" if end < 0 else "bytes after the request head")
    lines = data[:-4].split(b"\r\n")
    if b"\r" in data[:-4].replace(b"\r\n", b""):
        raise BadRequest("bare CR in the request head")
    method, target, version = _request_line(lines[0])
    fields = lines[1:]
    if len(fields) > MAX_HEADERS:
        raise BadRequest("more than 100 header fields", 431)
    headers = tuple(_field(line) for line in fields)
    host, port, scheme, path = _target(method, target)
    _check_host_header(headers, host, port, scheme)
    body, length = _framing(method, version, headers)
    return RequestHead(method, path, version, headers, host, port, scheme, body, length)


def _request_line(line: bytes) -> 'tuple[str, str, str]':
    if len(line) > MAX_LINE:
        raise BadRequest("request line longer than 8 KiB", 414)
    parts = line.split(b" ")
    if len(parts) != 3:
        raise BadRequest("malformed request line")
    method, target, version = parts
    if not method or not _TCHAR.issuperset(method):
        raise BadRequest("malformed method")
    if not target or not _TARGET_CHARS.issuperset(target):
        raise BadRequest("malformed request target")
    if version not in (b"HTTP/1.1", b"HTTP/1.0"):
        raise BadRequest("unsupported HTTP version", 505)
    return method.decode("ascii"), target.decode("ascii"), version.decode("ascii")


def _field(line: bytes) -> 'tuple[str, str]':
    if line[:1] in (b" ", b"\t"):
        raise BadRequest("obsolete line folding in a header")
    name, colon, value = line.partition(b":")
    if not colon or not name:
        raise BadRequest("malformed header line")
    if not _TCHAR.issuperset(name):
        raise BadRequest("invalid header name")
    value = value.strip(b" \t")
    if any(b in _CTL for b in value):
        raise BadRequest("control character in a header value")
    return name.decode("ascii"), value.decode("latin-1")


def _split_authority(authority: str, default_port: 'int | None') -> 'tuple[str, int]':
    if "@" in authority:
        raise BadRequest("user info in the request target")
    if authority.startswith("["):
        close = authority.find("]")
        if close < 0:
            raise BadRequest("malformed IPv6 authority")
        host_text, rest = authority[: close + 1], authority[close + 1:]
        if rest and not rest.startswith(":"):
            raise BadRequest("malformed authority")
        port_text = rest[1:] if rest else None
    elif ":" in authority:
        host_text, _, port_text = authority.rpartition(":")
        if ":" in host_text:
            raise BadRequest("IPv6 address without brackets")
    else:
        host_text, port_text = authority, None
    if not port_text:
        if default_port is None:
            raise BadRequest("CONNECT needs host:port")
        port = default_port
    elif port_text.isdigit() and port_text.isascii() and len(port_text) <= 5 and 0 < int(port_text) < 65536:
        port = int(port_text)
    else:
        raise BadRequest("invalid port")
    try:
        return normalize_host(host_text), port
    except PolicyError:
        raise BadRequest("invalid host name") from None


def _target(method: str, target: str) -> 'tuple[str, int, str, str]':
    if method == "CONNECT":
        host, port = _split_authority(target, None)
        return host, port, "", ""
    scheme, sep, rest = target.partition("://")
    if not sep:
        raise BadRequest("this is a proxy: send an absolute-form URL (http://host/path) or CONNECT")
    if scheme.lower() == "https":
        raise BadRequest("https:// URLs must be tunnelled: use CONNECT")
    if scheme.lower() != "http":
        raise BadRequest(f"unsupported URL scheme {scheme!r}")
    slash = rest.find("/")
    query = rest.find("?")
    cut = min(i for i in (slash, query, len(rest)) if i >= 0)
    authority, path = rest[:cut], rest[cut:]
    if "#" in path:
        raise BadRequest("fragment in the request target")
    if not authority:
        raise BadRequest("empty host in the request target")
    if not path.startswith("/"):
        path = "/" + path
    host, port = _split_authority(authority, 80)
    return host, port, "http", path


def _check_host_header(headers: 'tuple[tuple[str, str], ...]', host: str, port: int, scheme: str) -> None:
    values = [v for k, v in headers if k.lower() == "host"]
    if len(values) > 1:
        raise BadRequest("more than one Host header")
    if not values:
        return
    try:
        h_host, h_port = _split_authority(values[0], 80 if scheme else port)
    except BadRequest:
        raise BadRequest("invalid Host header") from None
    if (h_host, h_port) != (host, port):
        raise BadRequest("Host header does not match the request target")


def _framing(method: str, version: str, headers: 'tuple[tuple[str, str], ...]') -> 'tuple[str, int]':
    te = [v for k, v in headers if k.lower() == "transfer-encoding"]
    cl = [v for k, v in headers if k.lower() == "content-length"]
    if te and cl:
        raise BadRequest("both Content-Length and Transfer-Encoding")
    if te:
        codings = [c.strip().lower() for v in te for c in v.split(",")]
        if codings != ["chunked"]:
            raise BadRequest("unsupported Transfer-Encoding (only 'chunked' is accepted)")
        if version == "HTTP/1.0":
            raise BadRequest("Transfer-Encoding in an HTTP/1.0 request")
        if method == "CONNECT":
            raise BadRequest("a CONNECT request has no body")
        return "chunked", 0
    if cl:
        values = {c.strip(" \t") for v in cl for c in v.split(",")}
        if len(values) != 1:
            raise BadRequest("conflicting Content-Length values")
        text = values.pop()
        if not text.isdigit() or not text.isascii() or len(text) > 18:
            raise BadRequest("invalid Content-Length")
        length = int(text)
        if method == "CONNECT" and length:
            raise BadRequest("a CONNECT request has no body")
        return "length", length
    return "none", 0


class ChunkedReader:
    """Reads exactly one chunked body and re-frames it canonically (trailers dropped).

    ``feed(data)`` returns the bytes to forward; once ``done``, ``leftover``
    holds whatever followed the message (never forwarded by the proxy).
    """

    MAX_SIZE_LINE = 1024
    MAX_TRAILERS = 8 * 1024

    def __init__(self) -> None:
        self.done = False
        self.leftover = b""
        self.total = 0
        self._state = "size"
        self._remaining = 0
        self._buf = bytearray()
        self._trailer_bytes = 0

    def feed(self, data: bytes) -> bytes:
        """Consume ``data``; return the re-framed bytes to forward. Raises :class:`BadRequest`."""
        if self.done:
            self.leftover += data
            return b""
        out = bytearray()
        view = memoryview(data)
        pos = 0
        while pos < len(view) and not self.done:
            if self._state == "data":
                take = min(self._remaining, len(view) - pos)
                out += view[pos:pos + take]
                pos += take
                self._remaining -= take
                if not self._remaining:
                    self._state = "crlf"
                continue
            nl = data.find(b"\n", pos)
            chunk_end = len(data) if nl < 0 else nl + 1
            self._buf += view[pos:chunk_end]
            pos = chunk_end
            if nl < 0:
                self._check_partial()
                continue
            line = bytes(self._buf)
            self._buf.clear()
            self._line(line, out)
        if self.done:
            self.leftover = bytes(view[pos:])
        return bytes(out)

    def _check_partial(self) -> None:
        limit = self.MAX_SIZE_LINE if self._state == "size" else 2 if self._state == "crlf" else self.MAX_TRAILERS
        if len(self._buf) > limit:
            raise BadRequest("chunk framing line too long")

    def _line(self, line: bytes, out: bytearray) -> None:
        if not line.endswith(b"\r\n") or b"\r" in line[:-2]:
            raise BadRequest("chunk framing lines must end with CRLF")
        body = line[:-2]
        if self._state == "crlf":
            if body:
                raise BadRequest("chunk data longer than its size")
            out += b"\r\n"
            self._state = "size"
        elif self._state == "size":
            size_text, _, ext = body.partition(b";")
            if not size_text or len(size_text) > 16 or not _HEX.issuperset(size_text):
                raise BadRequest("invalid chunk size")
            if any(b in _CTL for b in ext) or len(body) > self.MAX_SIZE_LINE:
                raise BadRequest("invalid chunk extension")
            size = int(size_text, 16)
            self.total += size
            out += b"%x\r\n" % size
            if size:
                self._state, self._remaining = "data", size
            else:
                self._state = "trailer"
        else:  # trailer section: validated, dropped
            self._trailer_bytes += len(line)
            if self._trailer_bytes > self.MAX_TRAILERS:
                raise BadRequest("chunked trailer section too large")
            if not body:
                out += b"\r\n"
                self.done = True
                return
            _field(body)


def status_line(raw: bytes) -> 'tuple[int, list[bytes]] | None':
    """An upstream response head ending in CRLFCRLF -> (status, its lines), or None if malformed."""
    lines = raw[:-4].split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        return None
    return int(parts[1]), lines
