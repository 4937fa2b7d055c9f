"""Per-session phantom tokens: random, and shaped like the real thing where clients check.

* ``hex``     64 hex digits (256 bits)
* ``github``  ``ghp_`` + 30 random base62 characters + a 6-character base62 CRC32, the
  layout of GitHub's personal access tokens (``gh`` and libraries check the prefix)
* ``jwt``     three base64url parts with a JSON header, for clients that parse a JWT
"""

import base64
import binascii
import os

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
SHAPES = ("hex", "github", "jwt")


def _base62(n: int, width: int) -> str:
    out = ""
    while n:
        n, r = divmod(n, 62)
        out = _BASE62[r] + out
    return out.rjust(width, "0")


def _random_base62(count: int) -> str:
    out: list[str] = []
    while len(out) < count:
        for b in os.urandom(count * 2):
            if b < 248:  # 248 = 4 * 62: no modulo bias
                out.append(_BASE62[b % 62])
                if len(out) == count:
                    break
    return "".join(out)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def make(shape: str = "hex") -> str:
    """A fresh phantom token of ``shape`` (see the module docstring)."""
    if shape == "hex":
        return os.urandom(32).hex()
    if shape == "github":
        body = _random_base62(30)
        return "ghp_" + body + _base62(binascii.crc32(body.encode("ascii")), 6)
    if shape == "jwt":
        header = _b64url(b'{"alg":"HS256","typ":"JWT"}')
        payload = _b64url(b'{"sub":"nono-phantom","jti":"' + os.urandom(16).hex().encode() + b'"}')
        return f"{header}.{payload}.{_b64url(os.urandom(32))}"
    raise ValueError(f"unknown phantom shape {shape!r}")
