"""SSRF classification of addresses and the refusal policy."""

from __future__ import annotations

import pytest

from nono.proxy.addresses import classify, is_metadata_name, refusal


@pytest.mark.parametrize("addr,category", [
    ("8.8.8.8", "public"),
    ("2606:4700::1111", "public"),
    ("127.0.0.1", "loopback"),
    ("127.255.0.9", "loopback"),
    ("::1", "loopback"),
    ("169.254.169.254", "metadata"),
    ("169.254.170.2", "metadata"),
    ("fd00:ec2::254", "metadata"),
    ("100.100.100.200", "metadata"),
    ("168.63.129.16", "metadata"),
    ("169.254.1.1", "link_local"),
    ("fe80::1", "link_local"),
    ("fe80::1%1", "forbidden"),
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.255", "private"),
    ("172.32.0.1", "public"),
    ("192.168.1.1", "private"),
    ("100.64.0.1", "private"),
    ("fc00::1", "private"),
    ("fd12:3456::1", "private"),
    ("0.0.0.0", "forbidden"),
    ("0.1.2.3", "forbidden"),
    ("::", "forbidden"),
    ("224.0.0.1", "forbidden"),
    ("ff02::1", "forbidden"),
    ("255.255.255.255", "forbidden"),
    ("240.0.0.1", "forbidden"),
    ("192.0.2.1", "forbidden"),
    # IPv6 forms carrying an IPv4 address: classified by the embedded address
    ("::ffff:169.254.169.254", "metadata"),
    ("::ffff:127.0.0.1", "loopback"),
    ("::ffff:10.0.0.1", "private"),
    ("::ffff:8.8.8.8", "public"),
    ("::ffff:0:169.254.169.254", "metadata"),   # IPv4-translated (SIIT)
    ("::169.254.169.254", "metadata"),          # IPv4-compatible (deprecated)
    ("::127.0.0.1", "loopback"),
    ("64:ff9b::169.254.169.254", "metadata"),   # NAT64 well-known prefix
    ("64:ff9b::7f00:1", "loopback"),
    ("64:ff9b::808:808", "public"),
    ("64:ff9b:1::1", "forbidden"),              # local-use NAT64: embedding position varies
    ("2002:a9fe:a9fe::", "metadata"),           # 6to4 of 169.254.169.254
    ("2002:7f00:1::1", "loopback"),
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "forbidden"),  # Teredo
    ("2001:db8::1", "forbidden"),
])
def test_classify(addr: str, category: str) -> None:
    assert classify(addr)[0] == category


def test_metadata_names() -> None:
    for name in ("metadata.google.internal", "metadata.goog", "metadata", "metadata.azure.internal", "instance-data"):
        assert is_metadata_name(name)
    assert not is_metadata_name("metadata.example.com")


def test_refusal_policy() -> None:
    assert refusal(["8.8.8.8", "10.0.0.1"], 443) is None
    reason = refusal(["10.0.0.1"], 443, deny_private=True)
    assert reason is not None and reason.startswith("ssrf:")
    # one bad address refuses the whole answer
    reason = refusal(["8.8.8.8", "169.254.169.254"], 80)
    assert reason is not None and "metadata" in reason
    assert refusal(["127.0.0.1"], 8080, loopback_ports=frozenset({8080})) is None
    reason = refusal(["127.0.0.1"], 8081, loopback_ports=frozenset({8080}))
    assert reason is not None and "8081" in reason
    assert refusal(["::ffff:127.0.0.1"], 8080, loopback_ports=frozenset({8080})) is None
    assert refusal(["169.254.169.254"], 80, loopback_ports=frozenset({80})) is not None
    assert refusal(["fe80::1"], 80) is not None
    assert refusal(["not-an-ip"], 80) is not None


@pytest.mark.parametrize("ip", ["fd00:ec2::254", "fd00:ec2::23", "fd00:ec2::253"])
def test_aws_ipv6_service_addresses_are_metadata(ip):
    from nono.proxy import addresses

    assert addresses.classify(ip)[0] == "metadata"
