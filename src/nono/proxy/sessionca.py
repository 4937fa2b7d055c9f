"""The per-session CA of TLS interception (:mod:`.intercept`), in memory.

Its own module so the proxy process can create the CA (and let the supervisor write the
bundle) before it imports asyncio and the server: the program starts sooner.
``cryptography`` is imported only here, only in the proxy process.
"""

import os
from collections import OrderedDict

from .hosts import is_ip_literal

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ssl
    from collections.abc import Sequence

    from cryptography import x509

    from .rules import Filter

CA_VALIDITY = 86400.0   # seconds; a session longer than this needs a new proxy
LEAF_CACHE = 256        # leaf contexts kept (LRU)


def ca_names(flt: 'Filter') -> 'list[tuple[str, bool]]':
    """The intercepted hosts, as ``(host, wildcard)``: the CA's permitted names."""
    names: list[tuple[str, bool]] = [(host, False) for host, _ in flt.route_hosts]
    names += [(e.pattern.host, e.pattern.wildcard) for e in flt.allowlist.entries if e.endpoints]
    return names


class SessionCA:
    """A per-session CA in memory; :meth:`context` gives a server context for a host.

    ``names`` (``(host, wildcard)`` pairs) become the CA's permitted name constraints
    (``example.com`` covers its subdomains, as RFC 5280 defines); empty means none.
    """

    def __init__(self, names: 'Sequence[tuple[str, bool]]' = (), validity: float = CA_VALIDITY,
                 cache_size: int = LEAF_CACHE) -> None:
        import datetime

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        self.id = os.urandom(4).hex()
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._leaf_key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        self.not_before = now - datetime.timedelta(minutes=5)
        self.not_after = now + datetime.timedelta(seconds=validity)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"nono session CA {self.id}"),
                          x509.NameAttribute(NameOID.ORGANIZATION_NAME, "nono")])
        public = self._key.public_key()
        builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(public)
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(self.not_before).not_valid_after(self.not_after)
                   .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                   .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                                key_encipherment=False, data_encipherment=False, key_agreement=False,
                                                key_cert_sign=True, crl_sign=True, encipher_only=False,
                                                decipher_only=False), critical=True)
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False))
        permitted = self._permitted(names)
        if permitted:
            builder = builder.add_extension(x509.NameConstraints(permitted_subtrees=permitted, excluded_subtrees=None),
                                            critical=True)
        self.cert = builder.sign(self._key, hashes.SHA256())
        self.cert_pem: bytes = self.cert.public_bytes(serialization.Encoding.PEM)
        self._leaf_key_pem = self._leaf_key.private_bytes(serialization.Encoding.PEM,
                                                          serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption())
        self._cache: OrderedDict[str, ssl.SSLContext] = OrderedDict()
        self._cache_size = cache_size
        self.hits = 0
        self.misses = 0

    @staticmethod
    def _permitted(names: 'Sequence[tuple[str, bool]]') -> 'list[x509.GeneralName]':
        import ipaddress

        from cryptography import x509

        out: list[x509.GeneralName] = []
        for host, _wildcard in dict.fromkeys(names):
            if is_ip_literal(host):
                ip = ipaddress.ip_address(host)
                out.append(x509.IPAddress(ipaddress.ip_network(f"{ip}/{ip.max_prefixlen}")))
            else:
                out.append(x509.DNSName(host))
        return out

    def leaf_pem(self, host: str) -> bytes:
        """A fresh leaf certificate (PEM) for ``host``, signed by the session CA."""
        import datetime
        import ipaddress

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        now = datetime.datetime.now(datetime.timezone.utc)
        san: x509.GeneralName = (x509.IPAddress(ipaddress.ip_address(host)) if is_ip_literal(host)
                                 else x509.DNSName(host))
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)] if len(host) <= 64 else [])
        public = self._leaf_key.public_key()
        cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(self.cert.subject).public_key(public)
                .serial_number(x509.random_serial_number())
                .not_valid_before(max(now - datetime.timedelta(minutes=5), self.not_before))
                .not_valid_after(self.not_after)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                             data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                             crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                .add_extension(x509.SubjectAlternativeName([san]), critical=not subject)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                               critical=False)
                .sign(self._key, hashes.SHA256()))
        return cert.public_bytes(serialization.Encoding.PEM)

    def context(self, host: str) -> 'ssl.SSLContext':
        """The server-side context presenting ``host``'s leaf (cached, LRU)."""
        import ssl

        ctx = self._cache.get(host)
        if ctx is not None:
            self.hits += 1
            self._cache.move_to_end(host)
            return ctx
        self.misses += 1
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_alpn_protocols(["http/1.1"])
        # ssl loads keys from files only: an anonymous memory file (never on disk, closed at once;
        # /proc/self/fd is open to this process even though it is not dumpable).
        fd = os.memfd_create("nono-leaf", os.MFD_CLOEXEC)
        try:
            data = memoryview(self.leaf_pem(host) + self._leaf_key_pem)
            while data:
                data = data[os.write(fd, data):]
            ctx.load_cert_chain(f"/proc/self/fd/{fd}")
        finally:
            os.close(fd)
        self._cache[host] = ctx
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return ctx
