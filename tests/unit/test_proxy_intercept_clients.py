"""Real clients through an intercepted CONNECT: curl, httpx, urllib, Node, git over HTTPS.

The proxy runs in a thread; the clients use it as ``https_proxy`` (with its token) and
trust the session bundle (``--cacert``, ``verify=``, ``SSL_CERT_FILE``, ``GIT_SSL_CAINFO``),
as the child of ``nono run`` does through its environment. Upstreams are HTTPS on
127.0.0.1 with a ``trustme`` CA, names mapped with ``resolve_overrides``. git clones a
dumb-HTTP repository that demands Basic auth with the real token: git's first request
has no credentials, gets the upstream's 401, asks its credential helper (which knows only
the phantom) and retries; the proxy swaps the phantom in the Basic credential.
"""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "proxy"))
from proxytest import TOKEN, LoopThread, ProxyThread
from test_credentials_fakeupstream import HOST, TIMEOUT, FakeUpstream

from nono.credentials import phantom
from nono.credentials.route import Route
from nono.proxy import cabundle
from nono.proxy.rules import ProxySettings

pytest.importorskip("cryptography")
trustme = pytest.importorskip("trustme")

GIT_HOST = "git.fake.test"
RULES = "rules.fake.test"
SECRET = "ghs_REALtokenREALtokenREALtoken0042"
PHANTOM = phantom.make("github")
CLEAN_ENV = {k: v for k, v in os.environ.items()
             if not k.lower().endswith("_proxy") and k not in cabundle.ENV_VARS and not k.startswith("GIT_")}


class DumbGitServer:
    """Serves a bare repository's files over HTTPS (dumb protocol), Basic auth with the real token only."""

    def __init__(self, ca: trustme.CA, repo: Path) -> None:
        self.repo = repo
        self.seen: list[str | None] = []
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ca.issue_cert(GIT_HOST).configure_cert(self.ctx)
        self.lt = LoopThread()
        self.server = self.lt.run(asyncio.start_server(self._conn, "127.0.0.1", 0, ssl=self.ctx))
        self.port: int = self.server.sockets[0].getsockname()[1]
        self.expected = "Basic " + base64.b64encode(f"x-access-token:{SECRET}".encode()).decode()

    async def _conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)).decode("latin-1")
                target = head.split(" ", 2)[1]
                auth = next((line.split(":", 1)[1].strip() for line in head.split("\r\n")
                             if line.lower().startswith("authorization:")), None)
                self.seen.append(auth)
                path = self.repo / target.split("?", 1)[0].removeprefix("/repo.git/")
                if auth != self.expected:
                    body = b"authentication required"
                    writer.write(b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"git\"\r\n"
                                 b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
                elif path.is_file() and self.repo in path.resolve().parents:
                    body = path.read_bytes()
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                                 b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
                else:
                    writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ssl.SSLError):
            pass
        finally:
            writer.close()

    def stop(self) -> None:
        async def close() -> None:
            self.server.close()

        self.lt.run(close())
        self.lt.close()


def _git(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FakeUpstream, ProxyThread, str, DumbGitServer | None]]:
    tmp = tmp_path_factory.mktemp("clients")
    up = FakeUpstream(tmp)
    assert up.ctx is not None
    up.ca.issue_cert(HOST, RULES).configure_cert(up.ctx)
    git: DumbGitServer | None = None
    routes = [Route("openai", scheme="https", host=HOST, port=up.port, base_path="", phantom="c" * 64,
                    secret=bytearray(b"sk-openai-REAL-99"), accept=[("header", "Authorization")])]
    if shutil.which("git"):
        env = {**CLEAN_ENV, "HOME": str(tmp), "GIT_CONFIG_NOSYSTEM": "1"}
        work = tmp / "work"
        work.mkdir()
        _git("init", "-q", "-b", "main", cwd=work, env=env)
        (work / "README").write_text("hello from the fake forge\n")
        _git("add", "README", cwd=work, env=env)
        _git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init", cwd=work, env=env)
        _git("clone", "-q", "--bare", str(work), str(tmp / "repo.git"), env=env)
        _git("update-server-info", cwd=tmp / "repo.git", env=env)
        ca_file = tmp / "git-ca.pem"
        up.ca.cert_pem.write_to_path(str(ca_file))
        git = DumbGitServer(up.ca, tmp / "repo.git")
        # the github-shaped route, its upstream a fake forge; its CA added through the route's tls_ca
        routes.append(Route("github", scheme="https", host=GIT_HOST, port=git.port, base_path="", phantom=PHANTOM,
                            secret=bytearray(SECRET.encode()), format="token {}", accept=[("header", "Authorization")],
                            tls_ca=str(ca_file)))
    ports = {up.port} | ({git.port} if git else set())
    allow = [f"{HOST}:{up.port}", f"https://{RULES}:{up.port}/v1/**"] + ([f"{GIT_HOST}:{git.port}"] if git else [])
    settings = ProxySettings(allow=allow, resolve_overrides={h: ["127.0.0.1"] for h in (HOST, RULES, GIT_HOST)},
                             loopback_ports=frozenset(ports), routes=routes, upstream_ca_file=up.ca_file,
                             intercept=True)
    with ProxyThread(settings) as proxy:
        bundle = tmp / "bundle.pem"
        bundle.write_bytes(cabundle.compose(proxy.server.interceptor.ca.cert_pem, {}))
        yield up, proxy, str(bundle), git
    if git is not None:
        git.stop()
    up.stop()


def proxy_url(proxy: ProxyThread) -> str:
    return f"http://nono:{TOKEN}@127.0.0.1:{proxy.port}"


def child_env(proxy: ProxyThread, bundle: str, **extra: str) -> dict[str, str]:
    url = proxy_url(proxy)
    return {**CLEAN_ENV, "https_proxy": url, "HTTPS_PROXY": url, "NO_PROXY": "", **cabundle.env(bundle), **extra}


def test_curl(setup: tuple[FakeUpstream, ProxyThread, str, DumbGitServer | None]) -> None:
    up, proxy, bundle, _ = setup
    curl = shutil.which("curl")
    if curl is None:
        pytest.fail("curl is not installed (this machine kind has it; a skip would hide an untested client)")
    base = ["-sS", "--proxy", proxy_url(proxy), "--cacert", bundle, "-w", " %{http_code}"]
    ok = subprocess.run([curl, *base, f"https://{RULES}:{up.port}/v1/models"], capture_output=True, text=True,
                        timeout=TIMEOUT, env=CLEAN_ENV)
    denied = subprocess.run([curl, *base, f"https://{RULES}:{up.port}/v2/models"],
                            capture_output=True, text=True, timeout=TIMEOUT, env=CLEAN_ENV)
    key = subprocess.run([curl, *base, "-H", "Authorization: Bearer " + "c" * 64, f"https://{HOST}:{up.port}/x"],
                         capture_output=True, text=True, timeout=TIMEOUT, env=CLEAN_ENV)
    assert ok.stdout == '{"ok": true} 200', ok.stderr
    assert denied.stdout.endswith(" 403") and "endpoint not allowed: GET /v2/models" in denied.stdout
    assert key.stdout.endswith(" 200") and up.requests[-1].header("authorization") == "Bearer sk-openai-REAL-99"


def test_python_clients_through_the_environment(setup: tuple[FakeUpstream, ProxyThread, str, DumbGitServer | None]) -> None:
    up, proxy, bundle, _ = setup
    script = ("import json, sys, urllib.request, httpx\n"
              "u = sys.argv[1]\n"
              "a = urllib.request.urlopen(u + '/v1/a', timeout=10).read().decode()\n"
              "with httpx.Client(timeout=10) as c:\n"
              "    b = [c.get(u + f'/v1/b{i}').status_code for i in range(3)]\n"
              "    d = c.get(u + '/v2/x').status_code\n"
              "print(json.dumps([a, b, d]))\n")
    out = subprocess.run([sys.executable, "-c", script, f"https://{RULES}:{up.port}"], capture_output=True, text=True,
                         timeout=30, env=child_env(proxy, bundle))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == '["{\\"ok\\": true}", [200, 200, 200], 403]'


def test_node_trusts_the_bundle_through_node_extra_ca_certs(
        setup: tuple[FakeUpstream, ProxyThread, str, DumbGitServer | None]) -> None:
    up, proxy, bundle, _ = setup
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed (this machine kind has it; a skip would hide an untested client)")
    # A CONNECT by hand (any Node version), then tls.connect with Node's default trust,
    # which NODE_EXTRA_CA_CERTS extends with the bundle.
    script = r"""
const http = require('http'), tls = require('tls');
const [proxyPort, host, port, token] = process.argv.slice(1);
const req = http.request({host: '127.0.0.1', port: +proxyPort, method: 'CONNECT', path: `${host}:${port}`,
  headers: {Host: `${host}:${port}`, 'Proxy-Authorization': 'Basic ' + Buffer.from('nono:' + token).toString('base64')}});
req.on('connect', (res, socket) => {
  const s = tls.connect({socket, servername: host, ALPNProtocols: ['http/1.1']}, () => {
    s.write(`GET /v1/node HTTP/1.1\r\nHost: ${host}:${port}\r\nConnection: close\r\n\r\n`);
  });
  let out = '';
  s.on('data', d => out += d);
  s.on('end', () => { console.log(out.split('\r\n')[0] + ' ' + out.split('\r\n\r\n')[1]); });
  s.on('error', e => { console.error(e.message); process.exit(1); });
});
req.end();
"""
    out = subprocess.run([node, "-e", script, str(proxy.port), RULES, str(up.port), TOKEN], capture_output=True,
                         text=True, timeout=30, env={**CLEAN_ENV, "NODE_EXTRA_CA_CERTS": bundle})
    assert out.stdout.strip() == 'HTTP/1.1 200 OK {"ok": true}', out.stderr


def test_git_clone_over_https_with_the_phantom(setup: tuple[FakeUpstream, ProxyThread, str, DumbGitServer | None],
                                               tmp_path: Path) -> None:
    _, proxy, bundle, git = setup
    if git is None:
        pytest.fail("git is not installed (this machine kind has it; a skip would hide an untested client)")
    helper = f"!f() {{ echo username=x-access-token; echo password={PHANTOM}; }}; f"
    env = child_env(proxy, bundle, HOME=str(tmp_path), GIT_CONFIG_NOSYSTEM="1", GIT_TERMINAL_PROMPT="0")
    done = _git("-c", f"credential.helper={helper}", "clone", "-q", f"https://{GIT_HOST}:{git.port}/repo.git",
                str(tmp_path / "clone"), env=env)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "clone" / "README").read_text() == "hello from the fake forge\n"
    assert git.seen[0] is None  # the first request: no credentials, the forge's own 401
    assert git.expected in git.seen  # then the real token, swapped in for the phantom
    assert SECRET not in done.stderr + done.stdout
    events = [e for e in proxy.events if e.get("route") == "github"]
    assert events and all(e["action"] == "allow" for e in events)
