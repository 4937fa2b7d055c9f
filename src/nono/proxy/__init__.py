"""The supervisor-side filtering proxy: the sandboxed program's only way out to the network.

Layout (each module is usable on its own; nothing here is imported on ``nono run``'s
start-up path unless network filtering is asked for):

* :mod:`.hosts`      host patterns, ``--allow-domain`` values, network profiles, endpoint rules
* :mod:`.addresses`  SSRF classification of resolved addresses and metadata names
* :mod:`.rules`      the filter: allowlist + SSRF policy -> a :class:`~.rules.Decision`
* :mod:`.http1`      strict HTTP/1.1 request-head parser and chunked-body reader
* :mod:`.tls`        ClientHello parsing (SNI)
* :mod:`.relay`      the byte pump of a tunnel (copy, then ``splice`` for bulk)
* :mod:`.server`     the asyncio proxy (CONNECT and plain HTTP)
* :mod:`.process`    ``start(settings) -> ProxyHandle``: the proxy in its own process
"""
