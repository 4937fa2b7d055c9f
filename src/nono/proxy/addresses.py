"""SSRF defence: classify the addresses a name resolved to, and refuse the dangerous ones.

Categories, first match wins:

* ``metadata``   cloud instance-metadata endpoints (always refused, by address and by name)
* ``forbidden``  unspecified, multicast, broadcast, documentation, reserved, Teredo and
  local-use NAT64 (always refused)
* ``loopback``   127/8, ::1 (allowed only on ports the user opened)
* ``link_local`` 169.254/16, fe80::/10 (always refused)
* ``private``    RFC 1918, CGNAT 100.64/10, benchmarking, ULA fc00::/7, site-local
  (allowed unless ``deny_private``)
* ``public``     everything else

IPv6 forms that carry an IPv4 address (IPv4-mapped, IPv4-compatible, IPv4-translated,
6to4, NAT64 ``64:ff9b::/96``) are classified by the embedded address, so
``::ffff:169.254.169.254`` is metadata, not "public IPv6".
"""

import ipaddress
from collections.abc import Iterable

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

METADATA_NAMES = frozenset({
    "metadata", "metadata.google.internal", "metadata.goog", "metadata.azure.internal",
    "instance-data", "instance-data.ec2.internal", "metadata.tencentyun.com", "metadata.platformequinix.com",
})

_V4 = [(ipaddress.IPv4Network(net), cat, label) for net, cat, label in (
    ("169.254.169.254/32", "metadata", "a cloud metadata address"),
    ("169.254.170.2/32", "metadata", "the AWS ECS task metadata address"),
    ("169.254.170.23/32", "metadata", "the AWS EKS pod identity address"),
    ("100.100.100.200/32", "metadata", "the Alibaba Cloud metadata address"),
    ("168.63.129.16/32", "metadata", "the Azure host platform (WireServer) address"),
    ("0.0.0.0/8", "forbidden", "an unspecified ('this network') address"),
    ("127.0.0.0/8", "loopback", "a loopback address"),
    ("169.254.0.0/16", "link_local", "a link-local address"),
    ("224.0.0.0/4", "forbidden", "a multicast address"),
    ("255.255.255.255/32", "forbidden", "the broadcast address"),
    ("240.0.0.0/4", "forbidden", "a reserved address"),
    ("192.0.2.0/24", "forbidden", "a documentation address"),
    ("198.51.100.0/24", "forbidden", "a documentation address"),
    ("203.0.113.0/24", "forbidden", "a documentation address"),
    ("10.0.0.0/8", "private", "a private address"),
    ("172.16.0.0/12", "private", "a private address"),
    ("192.168.0.0/16", "private", "a private address"),
    ("100.64.0.0/10", "private", "a carrier-grade NAT address"),
    ("198.18.0.0/15", "private", "a benchmarking address"),
    ("192.0.0.0/24", "private", "an IETF protocol address"),
)]

_V6 = [(ipaddress.IPv6Network(net), cat, label) for net, cat, label in (
    ("fd00:ec2::/32", "metadata", "AWS's IPv6 metadata, pod identity and DNS addresses (fd00:ec2::254, ::23, ::253)"),
    ("::/128", "forbidden", "the unspecified address"),
    ("::1/128", "loopback", "a loopback address"),
    ("fe80::/10", "link_local", "a link-local address"),
    ("ff00::/8", "forbidden", "a multicast address"),
    ("100::/64", "forbidden", "a discard-only address"),
    ("2001:db8::/32", "forbidden", "a documentation address"),
    ("2001::/32", "forbidden", "a Teredo address"),
    ("64:ff9b:1::/48", "forbidden", "a local-use NAT64 address"),
    ("fec0::/10", "private", "a site-local address"),
    ("fc00::/7", "private", "a unique local address"),
    ("::/8", "forbidden", "a reserved address"),
)]
_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")
_COMPAT = ipaddress.IPv6Network("::/96")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_SIXTOFOUR = ipaddress.IPv6Network("2002::/16")


def embedded_ipv4(addr: ipaddress.IPv6Address) -> 'ipaddress.IPv4Address | None':
    """The IPv4 address an IPv6 address stands for, if it is one of the embedding forms."""
    if addr in _MAPPED or addr in _TRANSLATED or addr in _NAT64:
        return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    if addr in _COMPAT and int(addr) > 1:
        return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    if addr in _SIXTOFOUR:
        return ipaddress.IPv4Address((int(addr) >> 80) & 0xFFFFFFFF)
    return None


def classify(address: 'str | Address') -> 'tuple[str, str]':
    """(category, description) of one IP address; see the module docstring."""
    addr = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.scope_id:
            return "forbidden", "a scoped IPv6 address"
        inner = embedded_ipv4(addr)
        if inner is not None:
            category, label = classify(inner)
            return category, f"{label} (embedded in IPv6)"
        for net6, cat, label in _V6:
            if addr in net6:
                return cat, label
        return "public", "a public address"
    for net4, cat, label in _V4:
        if addr in net4:
            return cat, label
    return "public", "a public address"


def is_metadata_name(host: str) -> bool:
    """Is this normalised host name a well-known metadata service name?"""
    return host in METADATA_NAMES


def refusal(addresses: 'Iterable[str]', port: int, loopback_ports: 'frozenset[int]' = frozenset(),
            deny_private: bool = False) -> 'str | None':
    """Why connecting to these resolved addresses must be refused, or None if all are fine.

    One bad address refuses the whole name: a client cannot pick which one we use.
    """
    for text in addresses:
        try:
            category, label = classify(text)
        except ValueError:
            return f"ssrf: {text!r} is not an IP address"
        if category == "public":
            continue
        if category == "loopback" and port in loopback_ports:
            continue
        if category == "private" and not deny_private:
            continue
        if category == "loopback":
            return f"ssrf: {text} is {label} and port {port} was not opened"
        if category == "private":
            return f"ssrf: {text} is {label} (private networks are denied)"
        return f"ssrf: {text} is {label}"
    return None
