"""Server Name Indication from the first bytes of a CONNECT tunnel (a TLS ClientHello).

The proxy does not terminate TLS; it only reads the ClientHello the client sends
first, to refuse a tunnel whose SNI names another host than the CONNECT target
(domain fronting through an allowed CDN name). Policy on the edges:

* The first bytes are not a TLS handshake record: not TLS, allowed (SSH, plain
  protocols; the TCP destination was checked anyway).
* A ClientHello without SNI: allowed (IP-address targets, some clients). The TCP
  destination is still the checked address.
* A malformed or oversized ClientHello: refused (a real server would reject it too).
"""

MAX_HELLO = 64 * 1024
_RECORD_HEADER = 5


class TlsError(Exception):
    """The bytes start like TLS but are not a well-formed ClientHello."""


def parse_client_hello(buf: bytes) -> 'tuple[str, str | None]':
    """Inspect the start of a tunnel.

    Returns ``("not_tls", None)``, ``("incomplete", None)`` (read more and retry),
    ``("no_sni", None)`` or ``("sni", name)`` (lower case, no trailing dot).
    Raises :class:`TlsError` for a malformed ClientHello.
    """
    if not buf:
        return "incomplete", None
    if buf[0] != 0x16:
        return "not_tls", None
    if len(buf) < 2:
        return "incomplete", None
    if buf[1] != 0x03:
        return "not_tls", None
    if len(buf) >= 9:  # judge the handshake header before waiting for the rest
        if buf[5] != 0x01:
            raise TlsError("first handshake message is not a ClientHello")
        if 4 + int.from_bytes(buf[6:9], "big") > MAX_HELLO:
            raise TlsError("ClientHello too large")
    handshake = bytearray()
    pos = 0
    need = -1
    while need < 0 or len(handshake) < need:
        if len(buf) < pos + _RECORD_HEADER:
            return "incomplete", None
        if buf[pos] != 0x16 or buf[pos + 1] != 0x03:
            raise TlsError("ClientHello interrupted by a non-handshake record")
        length = int.from_bytes(buf[pos + 3:pos + 5], "big")
        if length == 0 or length > 16384 + 2048:
            raise TlsError("bad TLS record length")
        if len(buf) < pos + _RECORD_HEADER + length:
            if pos + _RECORD_HEADER + length > MAX_HELLO:
                raise TlsError("ClientHello too large")
            return "incomplete", None
        handshake += buf[pos + _RECORD_HEADER:pos + _RECORD_HEADER + length]
        pos += _RECORD_HEADER + length
        if need < 0 and len(handshake) >= 4:
            if handshake[0] != 0x01:
                raise TlsError("first handshake message is not a ClientHello")
            need = 4 + int.from_bytes(handshake[1:4], "big")
            if need > MAX_HELLO:
                raise TlsError("ClientHello too large")
    return _sni(bytes(handshake[4:need]))


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise TlsError("truncated ClientHello")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def vector(self, len_bytes: int) -> bytes:
        return self.take(int.from_bytes(self.take(len_bytes), "big"))


def _sni(body: bytes) -> 'tuple[str, str | None]':
    r = _Reader(body)
    r.take(2 + 32)  # legacy_version, random
    r.vector(1)     # legacy_session_id
    r.vector(2)     # cipher_suites
    r.vector(1)     # legacy_compression_methods
    if r.pos == len(body):
        return "no_sni", None
    exts = _Reader(r.vector(2))
    if r.pos != len(body):
        raise TlsError("bytes after the ClientHello extensions")
    seen: set[int] = set()
    name: str | None = None
    while exts.pos < len(exts.data):
        ext_type = int.from_bytes(exts.take(2), "big")
        data = exts.vector(2)
        if ext_type in seen:
            raise TlsError("duplicate ClientHello extension")
        seen.add(ext_type)
        if ext_type == 0:
            name = _server_name(data)
    return ("sni", name) if name is not None else ("no_sni", None)


def _server_name(data: bytes) -> str:
    outer = _Reader(data)
    names = _Reader(outer.vector(2))
    if outer.pos != len(data):
        raise TlsError("bad server_name extension")
    found: str | None = None
    while names.pos < len(names.data):
        kind = names.take(1)[0]
        value = names.vector(2)
        if kind == 0:
            if found is not None:
                raise TlsError("more than one host_name in SNI")
            if not value or not value.isascii() or any(b <= 0x20 or b == 0x7F for b in value):
                raise TlsError("invalid SNI host name")
            found = value.decode("ascii").lower().rstrip(".")
    if found is None:
        raise TlsError("server_name extension without a host_name")
    return found
