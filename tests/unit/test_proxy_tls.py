"""SNI extraction from ClientHellos built by the ssl module (memory BIOs) and by hand."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "proxy"))
from proxytest import client_hello

from nono.proxy.tls import TlsError, parse_client_hello


def test_sni_from_real_client_hello() -> None:
    hello = client_hello("Allowed.Test")
    assert parse_client_hello(hello) == ("sni", "allowed.test")
    for cut in (1, 5, 40, len(hello) - 1):
        assert parse_client_hello(hello[:cut]) == ("incomplete", None)
    assert parse_client_hello(hello + b"more") == ("sni", "allowed.test")


def test_no_sni_and_not_tls() -> None:
    assert parse_client_hello(client_hello(None)) == ("no_sni", None)
    assert parse_client_hello(b"SSH-2.0-OpenSSH_9.6\r\n") == ("not_tls", None)
    assert parse_client_hello(b"GET / HTTP/1.1\r\n") == ("not_tls", None)
    assert parse_client_hello(b"\x16\x02") == ("not_tls", None)


def _hello(extensions: bytes) -> bytes:
    body = b"\x03\x03" + b"\0" * 32 + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00"
    body += len(extensions).to_bytes(2, "big") + extensions
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + len(hs).to_bytes(2, "big") + hs


def _sni_ext(*names: bytes) -> bytes:
    entries = b"".join(b"\x00" + len(n).to_bytes(2, "big") + n for n in names)
    data = len(entries).to_bytes(2, "big") + entries
    return b"\x00\x00" + len(data).to_bytes(2, "big") + data


def test_hand_built_and_fragmented() -> None:
    hello = _hello(_sni_ext(b"a.test."))
    assert parse_client_hello(hello) == ("sni", "a.test")
    # the same handshake split over two records
    hs = hello[5:]
    split = b"\x16\x03\x01" + (10).to_bytes(2, "big") + hs[:10] + b"\x16\x03\x01" + (len(hs) - 10).to_bytes(2, "big") + hs[10:]
    assert parse_client_hello(split) == ("sni", "a.test")


@pytest.mark.parametrize("bad", [
    _hello(_sni_ext(b"a.test", b"b.test")),                       # two host names
    _hello(_sni_ext(b"a.test") + _sni_ext(b"b.test")),           # duplicate extension
    _hello(_sni_ext(b"a test")),
    _hello(_sni_ext(b"")),
    _hello(b"\x00\x00\x00\x05\x00\x03\x01\x00"),                 # server_name without host_name
    b"\x16\x03\x01\x00\x05\x02\x00\x00\x01\x00",                 # not a ClientHello
    b"\x16\x03\x01\x00\x00",                                      # empty record
    b"\x16\x03\x01\x00\x04\x01\x00\x00\x00",                      # truncated body
    b"\x16\x03\x01\x00\x04\x01\x01\x00\x00" + b"\x17\x03\x03\x00\x01\x00",  # interrupted
])
def test_malformed(bad: bytes) -> None:
    with pytest.raises(TlsError):
        parse_client_hello(bad)


def test_size_bound() -> None:
    huge = b"\x16\x03\x01\x48\x00\x01\x01\x00\x00"  # claims an 18 KiB record then a 64 KiB hello
    with pytest.raises(TlsError):
        parse_client_hello(huge + b"\0" * 100)
    with pytest.raises(TlsError):
        parse_client_hello(b"\x16\x03\x01\x48\x01" + b"\0" * 10)  # record over 16 KiB + 2 KiB
