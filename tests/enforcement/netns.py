"""A private test network for the proxy tests: a network namespace with test servers.

:func:`make_lab` creates ``nono-t-<random>`` (``ip netns add``), a veth pair with the
host side on ``10.231.N.1/30`` and the namespace side on ``10.231.N.2/30`` (N random,
checked unused on this host), and starts :data:`SERVER` *inside* the namespace:

* plain HTTP (echo of method/path/headers/body as JSON; static files for a dumb-HTTP
  git repository, a PyPI "simple" index with one wheel and an npm registry document);
* HTTPS (the same handler) with a self-signed certificate for ``allowed.test``;
* a UDP socket and a "trap" TCP listener (on the port the proxy tests give nono's
  proxy with ``--proxy-port``: a connect that wrongly leaves loopback lands there).

Every connection, request and datagram is logged (JSON lines) so tests can assert
that nothing reached the namespace. :meth:`Lab.quiet_since` is exact, not a sleep: it
sends a barrier through each listener and returns what was logged before it.

The only non-loopback addresses ever used are the two ends of the veth pair. Every
wait is bounded; :meth:`Lab.close` (always called by the fixture) kills the server and
deletes the namespace (which deletes the veth pair).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import ipaddress
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import time
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

HTTP_PORT, HTTPS_PORT, UDP_PORT = 18080, 18443, 18053
PYPI_PKG, PYPI_VERSION = "nono-probe-pkg", "1.0"
NPM_PKG, NPM_VERSION = "nono-probe-npm", "1.0.0"
SERVER_LIFETIME = 900  # seconds: the server exits by itself even if nobody stops it

SERVER = r'''
import json, os, socket, ssl, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

addr, root, log_path = sys.argv[1], sys.argv[2], sys.argv[3]
http_port, https_port, udp_port, trap_port = (int(a) for a in sys.argv[4:8])
cert, key, lifetime = sys.argv[8], sys.argv[9], float(sys.argv[10])
lock = threading.Lock()
logf = open(log_path, "a", buffering=1)

def log(**entry):
    entry["t"] = time.time()
    with lock:
        logf.write(json.dumps(entry) + "\n")

TYPES = {".html": "text/html", ".whl": "application/octet-stream", ".tgz": "application/octet-stream",
         ".json": "application/json"}

class Handler(BaseHTTPRequestHandler):
    server_version = "nono-test"
    timeout = 10

    def log_message(self, *a):
        pass

    def _static(self):
        path = self.path.split("?", 1)[0]
        if ".." in path:
            return None
        base = os.path.join(root, path.lstrip("/"))
        for cand in (base, os.path.join(base, "index.html"), base + ".json"):
            if os.path.isfile(cand):
                return cand
        return None

    def _any(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(min(n, 1 << 20)) if n else b""
        log(kind="req", server=self.server.name, method=self.command, path=self.path,
            headers=dict(self.headers.items()), peer=list(self.client_address[:2]))
        f = self._static() if self.command in ("GET", "HEAD") else None
        if f is not None:
            data = open(f, "rb").read()
            ctype = TYPES.get(os.path.splitext(f)[1], "application/octet-stream")
        else:
            data = json.dumps({"server": self.server.name, "method": self.command, "path": self.path,
                               "headers": dict(self.headers.items()),
                               "body": body.decode("utf-8", "replace")}).encode()
            ctype = "application/json"
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = do_PATCH = do_OPTIONS = _any

class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64

    def __init__(self, port, name, ctx=None):
        self.name, self.ctx = name, ctx
        super().__init__((addr, port), Handler)

    def get_request(self):
        sock, peer = self.socket.accept()
        log(kind="conn", server=self.name, peer=list(peer[:2]))
        sock.settimeout(10)
        if self.ctx is not None:  # handshake in the handler thread, not in the accept loop
            sock = self.ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, peer

    def finish_request(self, request, client_address):
        if self.ctx is not None:
            try:
                request.do_handshake()
            except (OSError, ssl.SSLError) as exc:
                log(kind="tls_error", server=self.name, error=str(exc))
                return
        super().finish_request(request, client_address)

def udp():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, udp_port))
    while True:
        data, peer = s.recvfrom(2048)
        log(kind="udp", data=data.decode("latin-1"), peer=list(peer[:2]))

def trap():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, trap_port))
    s.listen(64)
    while True:
        c, peer = s.accept()
        log(kind="trap", peer=list(peer[:2]))
        c.close()

ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
servers = [Server(http_port, "http"), Server(https_port, "https", ctx)]
for target in [s.serve_forever for s in servers] + [udp, trap]:
    threading.Thread(target=target, daemon=True).start()
log(kind="ready", pid=os.getpid())
time.sleep(lifetime)
'''


def _run(*cmd: str, timeout: float = 30, check: bool = True, **kw) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, check=False, **kw)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()}")
    return r


def _used_networks() -> list[ipaddress.IPv4Network]:
    nets: list[ipaddress.IPv4Network] = []
    for link in json.loads(_run("ip", "-j", "-4", "addr", "show").stdout or "[]"):
        for a in link.get("addr_info", ()):
            nets.append(ipaddress.IPv4Network(f"{a['local']}/{a['prefixlen']}", strict=False))
    for table in ("main", "local"):
        for route in json.loads(_run("ip", "-j", "-4", "route", "show", "table", table).stdout or "[]"):
            dst = route.get("dst", "default")
            if dst != "default":
                nets.append(ipaddress.IPv4Network(dst if "/" in dst else dst + "/32", strict=False))
    return nets


def _pick_subnet() -> int:
    used = _used_networks()
    taken = set(_run("ip", "netns", "list").stdout.split())
    for _ in range(64):
        n = random.randint(1, 254)
        net = ipaddress.IPv4Network(f"10.231.{n}.0/30")
        if not any(net.overlaps(u) for u in used) and not any(t.startswith(f"nono-t-{n}-") for t in taken):
            return n
    raise RuntimeError("no unused 10.231.N.0/30 found on this host")


def free_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # type: ignore[no-any-return]


@dataclass
class Lab:
    """The namespace, its servers and the files tests hand to the sandbox (all under ``shared``)."""

    ns: str
    n: int
    shared: Path  # world-readable: CA certificate, client libraries, server files
    trap_port: int
    server: subprocess.Popen[bytes] | None = None
    _barriers: set[tuple[str, int]] = field(default_factory=set)

    @property
    def host_ip(self) -> str:
        return f"10.231.{self.n}.1"

    @property
    def ns_ip(self) -> str:
        return f"10.231.{self.n}.2"

    @property
    def ca(self) -> Path:
        return self.shared / "ca.pem"

    @property
    def site(self) -> Path:
        return self.shared / "site"

    @property
    def log(self) -> Path:
        return self.shared / "server.log"

    @property
    def http(self) -> str:
        return f"http://allowed.test:{HTTP_PORT}"

    @property
    def https(self) -> str:
        return f"https://allowed.test:{HTTPS_PORT}"

    def resolve(self, **extra: str) -> str:
        """A ``NONO_PROXY_RESOLVE`` value: the test names, plus ``extra`` (``name_test="ip"``)."""
        names = {"allowed.test": self.ns_ip, "other.test": self.ns_ip}
        names.update({k.replace("_", "."): v for k, v in extra.items()})
        return ",".join(f"{k}={v}" for k, v in names.items())

    # -- the request log ---------------------------------------------------------------
    def entries(self) -> list[dict]:  # type: ignore[type-arg]
        with open(self.log) as f:
            return [json.loads(line) for line in f if line.strip()]

    def mark(self) -> int:
        return len(self.entries())

    def requests_since(self, mark: int) -> list[dict]:  # type: ignore[type-arg]
        return [e for e in self.entries()[mark:] if e["kind"] == "req"]

    def quiet_since(self, mark: int) -> list[dict]:  # type: ignore[type-arg]
        """Everything that reached the namespace since ``mark`` (barriers excluded).

        Sends a barrier through the HTTP server, the trap listener and the UDP socket,
        waits (bounded) until each is logged: what was sent before it was logged before it.
        """
        tag = uuid.uuid4().hex
        with socket.create_connection((self.ns_ip, HTTP_PORT), timeout=5) as s:
            self._barriers.add(("http", s.getsockname()[1]))
            s.sendall(f"GET /__barrier/{tag} HTTP/1.0\r\n\r\n".encode())
            for _ in range(1024):  # the echo is a few hundred bytes; bounded anyway
                if not s.recv(65536):
                    break
        with socket.create_connection((self.ns_ip, self.trap_port), timeout=5) as s:
            trap = ("trap", s.getsockname()[1])
            self._barriers.add(trap)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.sendto(f"barrier-{tag}".encode(), (self.ns_ip, UDP_PORT))
            self._barriers.add(("udp", u.getsockname()[1]))
        deadline = time.monotonic() + 10
        while True:
            got = self.entries()[mark:]
            seen = {(e.get("server", e["kind"]), e["peer"][1]) for e in got if e["kind"] in ("conn", "trap")}
            udp_done = any(e["kind"] == "udp" and e["data"] == f"barrier-{tag}" for e in got)
            http_done = any(e["kind"] == "req" and e["path"] == f"/__barrier/{tag}" for e in got)
            if udp_done and http_done and trap in seen:
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"barrier not seen by the test servers: {got}")
            time.sleep(0.01)

        def is_barrier(e: dict) -> bool:  # type: ignore[type-arg]
            if e["kind"] == "udp":
                return e["data"].startswith("barrier-")  # type: ignore[no-any-return]
            if e["kind"] == "req":
                return e["path"].startswith("/__barrier/")  # type: ignore[no-any-return]
            if e["kind"] not in ("conn", "trap"):
                return False
            key = (e.get("server", e["kind"]), e["peer"][1])
            return e["peer"][0] == self.host_ip and key in self._barriers
        return [e for e in got if not is_barrier(e)]

    # -- lifecycle ---------------------------------------------------------------------
    def close(self) -> None:
        if self.server is not None and self.server.poll() is None:
            self.server.terminate()
            try:
                self.server.wait(5)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait(5)
        _run("ip", "netns", "del", self.ns, check=False)  # takes the veth pair with it
        shutil.rmtree(self.shared, ignore_errors=True)


def _make_cert(d: Path) -> None:
    _run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "2",
         "-subj", "/CN=allowed.test", "-addext", "subjectAltName=DNS:allowed.test,DNS:other.test",
         "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,digitalSignature,keyCertSign",
         "-keyout", str(d / "key.pem"), "-out", str(d / "ca.pem"))


def _make_git_repo(root: Path, tmp: Path) -> None:
    src = tmp / "git-src"
    src.mkdir()
    git = ["git", "-c", "user.name=nono", "-c", "user.email=nono@test", "-c", "init.defaultBranch=main"]
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(tmp)}
    _run(*git, "init", "-q", str(src), env=env)
    (src / "README").write_text("hello from the namespace\n")
    _run(*git, "-C", str(src), "add", "README", env=env)
    _run(*git, "-C", str(src), "commit", "-q", "-m", "first", env=env)
    _run(*git, "clone", "-q", "--bare", str(src), str(root / "repo.git"), env=env)
    _run(*git, "-C", str(root / "repo.git"), "update-server-info", env=env)


def _make_wheel(root: Path) -> None:
    dist = PYPI_PKG.replace("-", "_")
    name = f"{dist}-{PYPI_VERSION}-py3-none-any.whl"
    files = {
        f"{dist}/__init__.py": b"VALUE = 42\n",
        f"{dist}-{PYPI_VERSION}.dist-info/METADATA":
            f"Metadata-Version: 2.1\nName: {PYPI_PKG}\nVersion: {PYPI_VERSION}\n".encode(),
        f"{dist}-{PYPI_VERSION}.dist-info/WHEEL":
            b"Wheel-Version: 1.0\nGenerator: nono-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{dist}-{PYPI_VERSION}.dist-info/RECORD,,")
    files[f"{dist}-{PYPI_VERSION}.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for path, data in files.items():
            z.writestr(path, data)
    wheel = buf.getvalue()
    (root / "packages").mkdir()
    (root / "packages" / name).write_bytes(wheel)
    index = root / "simple" / PYPI_PKG
    index.mkdir(parents=True)
    sha = hashlib.sha256(wheel).hexdigest()
    (index / "index.html").write_text(
        f'<!DOCTYPE html><html><body><a href="../../packages/{name}#sha256={sha}">{name}</a></body></html>\n')
    (root / "simple" / "index.html").write_text(f'<html><body><a href="{PYPI_PKG}/">{PYPI_PKG}</a></body></html>\n')


def _make_npm_doc(root: Path) -> None:
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        data = json.dumps({"name": NPM_PKG, "version": NPM_VERSION}).encode()
        info = tarfile.TarInfo("package/package.json")
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    tgz = buf.getvalue()
    tar_name = f"{NPM_PKG}-{NPM_VERSION}.tgz"
    (root / "npm" / NPM_PKG / "-").mkdir(parents=True)
    (root / "npm" / NPM_PKG / "-" / tar_name).write_bytes(tgz)
    integrity = "sha512-" + base64.b64encode(hashlib.sha512(tgz).digest()).decode()
    doc = {
        "name": NPM_PKG, "description": "nono test package", "dist-tags": {"latest": NPM_VERSION},
        "versions": {NPM_VERSION: {
            "name": NPM_PKG, "version": NPM_VERSION, "description": "nono test package",
            "dist": {"tarball": f"http://allowed.test:{HTTP_PORT}/npm/{NPM_PKG}/-/{tar_name}",
                     "shasum": hashlib.sha1(tgz).hexdigest(), "integrity": integrity}}},
        "time": {"created": "2024-01-01T00:00:00.000Z", "modified": "2024-01-01T00:00:00.000Z",
                 NPM_VERSION: "2024-01-01T00:00:00.000Z"},
    }
    (root / "npm" / f"{NPM_PKG}.json").write_text(json.dumps(doc))


CLIENT_LIBS = ("requests", "urllib3", "idna", "charset_normalizer", "certifi", "httpx", "httpcore", "h11", "anyio",
               "sniffio", "typing_extensions", "exceptiongroup")


def _copy_client_libs(dest: Path) -> list[str]:
    """Copy the HTTP client libraries of this interpreter where ``nobody`` can import them."""
    import importlib.util

    dest.mkdir()
    missing = []
    for name in CLIENT_LIBS:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            missing.append(name)
            continue
        if spec.submodule_search_locations:
            shutil.copytree(list(spec.submodule_search_locations)[0], dest / name,
                            ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(spec.origin, dest / Path(spec.origin).name)
    return missing


def _chmod_tree(path: Path) -> None:
    for root, _dirs, files in os.walk(path):
        os.chmod(root, 0o755)
        for f in files:
            os.chmod(os.path.join(root, f), 0o644)


def make_lab(base: Path) -> Lab:
    """Create the namespace, the files and the servers; the caller must ``close()`` it."""
    if os.getuid() != 0:
        raise RuntimeError("the network-namespace tests need root")
    n = _pick_subnet()
    tag = uuid.uuid4().hex[:6]
    shared = base / f"netlab-{tag}"
    shared.mkdir(parents=True)
    lab = Lab(ns=f"nono-t-{n}-{tag}", n=n, shared=shared, trap_port=free_loopback_port())
    try:
        www = shared / "www"
        www.mkdir()
        _make_cert(shared)
        _make_git_repo(www, shared)
        _make_wheel(www)
        _make_npm_doc(www)
        (shared / "server.py").write_text(SERVER)
        lab.log.touch()
        missing = _copy_client_libs(lab.site)
        (shared / "missing-libs.json").write_text(json.dumps(missing))
        _chmod_tree(shared)
        os.chmod(shared / "key.pem", 0o600)

        host_if, ns_if = f"nt{tag}h", f"nt{tag}n"
        _run("ip", "netns", "add", lab.ns)
        _run("ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        try:
            _run("ip", "link", "set", ns_if, "netns", lab.ns)
        except Exception:
            _run("ip", "link", "del", host_if, check=False)
            raise
        _run("ip", "addr", "add", f"{lab.host_ip}/30", "dev", host_if)
        _run("ip", "link", "set", host_if, "up")
        nsx = ("ip", "netns", "exec", lab.ns)
        _run(*nsx, "ip", "addr", "add", f"{lab.ns_ip}/30", "dev", ns_if)
        _run(*nsx, "ip", "link", "set", ns_if, "up")
        _run(*nsx, "ip", "link", "set", "lo", "up")

        python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
        lab.server = subprocess.Popen(
            [*nsx, python, str(shared / "server.py"), lab.ns_ip, str(www), str(lab.log), str(HTTP_PORT),
             str(HTTPS_PORT), str(UDP_PORT), str(lab.trap_port), str(shared / "ca.pem"), str(shared / "key.pem"),
             str(SERVER_LIFETIME)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=open(shared / "server.err", "wb"),
            start_new_session=True)
        deadline = time.monotonic() + 15
        while not any(e["kind"] == "ready" for e in lab.entries()):
            if lab.server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"test server did not start: {(shared / 'server.err').read_text()}")
            time.sleep(0.02)
        # the host reaches the namespace (and only through the veth pair)
        with contextlib.closing(socket.create_connection((lab.ns_ip, HTTP_PORT), timeout=5)):
            pass
    except BaseException:
        lab.close()
        raise
    return lab
