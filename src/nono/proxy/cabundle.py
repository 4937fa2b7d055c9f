"""The CA bundle file a sandboxed program trusts when TLS interception is on.

Lean on purpose (``os`` only): the supervisor calls :func:`reserve` on the ``nono run``
path. The proxy process, which holds the session CA, fills the reserved file with
:func:`fill`; the supervisor waits for that before it builds the child's environment
(:func:`env`), and deletes the file when the session ends.

The bundle keeps everything the program trusted before, so interception changes
nothing for hosts that are not intercepted:

1. the CA files the parent's environment named (``SSL_CERT_FILE``, ``REQUESTS_CA_BUNDLE``,
   ``CURL_CA_BUNDLE``, ``NODE_EXTRA_CA_CERTS``, ``GIT_SSL_CAINFO``: a corporate CA stays
   trusted although these variables now name the bundle);
2. the system roots: OpenSSL's default CA file (``/etc/ssl/certs/ca-certificates.crt`` on
   Debian), else the first of the usual distribution paths, else ``certifi``'s file;
3. the session CA certificate (never its private key, which exists only in the proxy
   process's memory).

The file lives next to the capability file (``$XDG_STATE_HOME/nono/sessions``, falling
back to the temp directory), is named ``.nono-<pid>-<random>-ca.pem`` (stale ones are
pruned with the capability files) and is mode 0444 once written: readable, never writable.
The sandbox needs a read rule for exactly this file (:meth:`nono.sandbox.network.NetworkSession.grant`).
"""

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

ENV_VARS = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "NODE_EXTRA_CA_CERTS", "GIT_SSL_CAINFO")
_SYSTEM_FILES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/ca-bundle.pem",
                 "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem", "/etc/ssl/cert.pem")
_MAX_FILE = 16 * 1024 * 1024


def directories() -> 'list[str]':
    """Where the bundle may be created, in order (the capability file's places)."""
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return [os.path.join(state, "nono", "sessions"), os.environ.get("TMPDIR") or "/tmp", "/tmp"]


def reserve(candidates: 'list[str] | None' = None) -> 'tuple[str, int]':
    """Create the empty bundle file (0600 until filled); returns ``(path, fd)``."""
    for directory in candidates or directories():
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
            path = os.path.join(directory, f".nono-{os.getpid()}-{os.urandom(6).hex()}-ca.pem")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        except OSError:
            continue
        return path, fd
    raise OSError(13, "cannot create the CA bundle file in any of " + ", ".join(candidates or directories()))


def system_roots() -> 'str | None':
    """The system's CA file (OpenSSL's default, a distribution path, or certifi's), or None."""
    candidates: list[str] = []
    try:
        import _ssl  # the C module: what ssl.get_default_verify_paths() reads, without importing ssl (~10 ms)

        candidates.append(_ssl.get_default_verify_paths()[1])  # OpenSSL's compiled-in CA file
    except (ImportError, AttributeError, IndexError):
        pass
    candidates += list(_SYSTEM_FILES)
    for path in candidates:
        if path and os.path.isfile(path) and os.path.getsize(path) > 0:
            return path
    try:
        import certifi  # type: ignore[import-not-found,unused-ignore]  # optional: only a fallback

        return str(certifi.where())
    except ImportError:
        return None


def _read_pem(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_FILE)
    except OSError:
        return b""
    return data if b"-----BEGIN CERTIFICATE-----" in data else b""


def compose(ca_pem: bytes, environ: 'Mapping[str, str] | None' = None) -> bytes:
    """The bundle's bytes: the parent's CA files, the system roots, then the session CA."""
    environ = os.environ if environ is None else environ
    seen: set[str] = set()
    parts: list[bytes] = []
    files = [environ.get(v, "") for v in ENV_VARS]
    files.append(system_roots() or "")
    for path in files:
        if not path:
            continue
        real = os.path.realpath(path)
        if real in seen:
            continue
        seen.add(real)
        data = _read_pem(real)
        if data:
            parts.append(f"# from {path}\n".encode("utf-8", "replace") + data.rstrip(b"\n") + b"\n")
    parts.append(b"# nono session CA (TLS interception; its key never leaves the proxy process)\n" + ca_pem)
    return b"\n".join(parts)


def fill(fd: int, ca_pem: bytes, environ: 'Mapping[str, str] | None' = None) -> None:
    """Write the bundle into the reserved file and make it read-only (0444); closes ``fd``."""
    try:
        data = memoryview(compose(ca_pem, environ))
        while data:
            data = data[os.write(fd, data):]
        os.fchmod(fd, 0o444)
    finally:
        os.close(fd)


def env(path: str) -> 'dict[str, str]':
    """The child's variables naming the bundle."""
    return dict.fromkeys(ENV_VARS, path)
