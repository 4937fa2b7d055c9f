"""Filtered network with real clients: curl, Python (urllib, requests, httpx), Node, git, pip, npm.

``nono run --allow-domain allowed.test`` starts nono's proxy; the sandboxed program may
reach only the proxy's loopback port. The servers live in a network namespace this
module creates (see ``netns.py``): ``allowed.test`` and ``other.test`` both resolve
(through ``NONO_PROXY_RESOLVE``, read by nono from its own environment) to the
namespace end of a veth pair, 10.231.N.2. The only addresses ever used are loopback
and the two ends of that veth pair.

Every test runs as root and as ``nobody``. Where a test asserts that nothing reached
a server, it checks the servers' own log after a barrier (exact, not a sleep).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import subprocess
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from netns import HTTP_PORT, HTTPS_PORT, NPM_PKG, NPM_VERSION, PYPI_PKG, PYPI_VERSION, UDP_PORT, Lab, make_lab

TEST_ROOT = Path(os.environ.get("NONO_TEST_ROOT", "/var/lib/nono-tests"))
ALLOW = ("--allow-domain", "allowed.test")


# -- fixtures and helpers --------------------------------------------------------------
@pytest.fixture(scope="module")
def lab(_test_root) -> Iterator[Lab]:
    for tool in ("ip", "openssl", "git"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is needed to build the test network")
    the_lab = make_lab(TEST_ROOT)
    try:
        yield the_lab
    finally:
        the_lab.close()


@functools.cache
def _usable(prefix: tuple[str, ...], path: str) -> bool:
    return subprocess.run([*prefix, "/bin/sh", "-c", 'test -x "$1"', "sh", path], timeout=10).returncode == 0


def inner_python(world) -> str:
    """An interpreter the world's user can run inside the sandbox (the venv's may be under /root)."""
    return world.user.python if _usable(tuple(world.user.prefix), world.user.python) else "/usr/bin/python3"


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is not installed; this machine kind has it, and the test must not pass without it")
    return path


def sandboxed(world, lab: Lab, *cmd: str, flags: tuple[str, ...] = ALLOW, resolve: str | None = None,
              env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``nono run --allow-cwd --read <lab files> FLAGS -- CMD`` as the world's user, with the test names."""
    e = world.env(NONO_PROXY_RESOLVE=resolve if resolve is not None else lab.resolve(), **(env or {}))
    return world.nono("run", "--allow-cwd", "--read", str(lab.shared), *flags, "--", *cmd, env=e, timeout=timeout)


def script(world, name: str, text: str) -> str:
    """Write a script into the world's work dir (owned by its user); return its path."""
    path = world.work / name
    path.write_text(text)
    os.chown(path, world.user.uid, world.user.uid)
    return str(path)


def blocked_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.startswith("[nono] blocked network:")]


def last_json(stdout: str) -> dict:  # type: ignore[type-arg]
    lines = [ln for ln in stdout.strip().splitlines() if ln.startswith("{")]
    assert lines, f"no JSON in output: {stdout!r}"
    return json.loads(lines[-1])  # type: ignore[no-any-return]


def ci(headers: dict[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def tag() -> str:
    return uuid.uuid4().hex[:12]


# -- 1. curl ---------------------------------------------------------------------------
def test_curl_through_the_proxy(world, lab):
    mark = lab.mark()
    t = tag()
    r = sandboxed(world, lab, "curl", "-sS", "-m", "10", "-d", "payload", f"{lab.http}/x-{t}?q=1")
    assert r.returncode == 0, r.stderr
    echo = json.loads(r.stdout)
    assert (echo["server"], echo["method"], echo["path"], echo["body"]) == ("http", "POST", f"/x-{t}?q=1", "payload")
    assert ci(echo["headers"])["host"] == f"allowed.test:{HTTP_PORT}"
    assert "proxy-authorization" not in ci(echo["headers"]), "the session token leaked to the server"
    assert blocked_lines(r.stderr) == [], r.stderr

    r = sandboxed(world, lab, "curl", "-sS", "-m", "10", "--cacert", str(lab.ca), f"{lab.https}/s-{t}")
    assert r.returncode == 0, r.stderr
    echo = json.loads(r.stdout)
    assert (echo["server"], echo["path"]) == ("https", f"/s-{t}")
    assert blocked_lines(r.stderr) == [], r.stderr

    # a host outside the allowlist: 403 with a reason the agent can read, a line at exit
    r = sandboxed(world, lab, "curl", "-sS", "-m", "10", "-w", "\n%{http_code}", f"http://other.test:{HTTP_PORT}/o-{t}")
    assert r.returncode == 0, r.stderr
    body, code = r.stdout.rsplit("\n", 1)
    assert code == "403"
    assert body.startswith(f"nono: blocked other.test:{HTTP_PORT} (not in allowlist; nono why --host other.test)")
    assert blocked_lines(r.stderr) == [f"[nono] blocked network: other.test:{HTTP_PORT} (not in allowlist)"]

    r = sandboxed(world, lab, "curl", "-sS", "-m", "10", "--cacert", str(lab.ca), f"https://other.test:{HTTPS_PORT}/o-{t}")
    assert r.returncode != 0
    assert "403" in r.stderr, r.stderr
    assert blocked_lines(r.stderr) == [f"[nono] blocked network: other.test:{HTTPS_PORT} (not in allowlist)"]

    # an IP literal is not a way around the allowlist
    r = sandboxed(world, lab, "curl", "-sS", "-m", "10", "-o", "/dev/null", "-w", "%{http_code}",
                  f"http://{lab.ns_ip}:{HTTP_PORT}/ip-{t}")
    assert r.stdout == "403", (r.stdout, r.stderr)
    assert blocked_lines(r.stderr) == [f"[nono] blocked network: {lab.ns_ip}:{HTTP_PORT} (not in allowlist)"]

    # an allowed host whose server is down: 502 (an upstream failure, not a block)
    r = sandboxed(world, lab, "curl", "-sS", "-m", "10", "-w", "\n%{http_code}", f"http://allowed.test:{HTTP_PORT + 1}/d-{t}")
    body, code = r.stdout.rsplit("\n", 1)
    assert code == "502" and "cannot connect to allowed.test" in body, (code, body)
    assert blocked_lines(r.stderr) == [], r.stderr

    # ignoring the proxy does not leak: the connect itself is refused
    r = sandboxed(world, lab, "curl", "-sS", "-m", "10", "--noproxy", "*", f"http://{lab.ns_ip}:{HTTP_PORT}/np-{t}")
    assert r.returncode == 7, (r.returncode, r.stderr)  # CURLE_COULDNT_CONNECT
    assert "Permission denied" in r.stderr or "Couldn't connect" in r.stderr, r.stderr

    got = lab.quiet_since(mark)
    paths = [e["path"] for e in got if e["kind"] == "req"]
    assert paths == [f"/x-{t}?q=1", f"/s-{t}"], got


# -- 2. Python clients -------------------------------------------------------------------
PY_CLIENTS = r'''
import json, os, ssl, sys
sys.path.insert(0, sys.argv[1])
http, https, denied_http, denied_https, ca = sys.argv[2:7]
out = {}

def attempt(name, fn):
    try:
        out[name] = fn()
    except Exception as exc:
        out[name] = {"error": type(exc).__name__, "msg": str(exc)[:400]}

import urllib.request, urllib.error
def urllib_get(url, data=None):
    try:
        with urllib.request.urlopen(url, data=data, timeout=10) as r:  # SSL_CERT_FILE names the CA
            return {"status": r.status, "body": r.read().decode()}
    except urllib.error.HTTPError as exc:
        return {"status": exc.code, "body": exc.read().decode()}
attempt("urllib_http", lambda: urllib_get(http, b"payload"))
attempt("urllib_https", lambda: urllib_get(https))
attempt("urllib_denied_http", lambda: urllib_get(denied_http))
attempt("urllib_denied_https", lambda: urllib_get(denied_https))

import requests
def requests_get(url, data=None):
    r = requests.request("POST" if data else "GET", url, data=data, timeout=10)  # REQUESTS_CA_BUNDLE
    return {"status": r.status_code, "body": r.text}
attempt("requests_http", lambda: requests_get(http, b"payload"))
attempt("requests_https", lambda: requests_get(https))
attempt("requests_denied_http", lambda: requests_get(denied_http))
attempt("requests_denied_https", lambda: requests_get(denied_https))

import httpx
client = httpx.Client(verify=ssl.create_default_context(cafile=ca), timeout=10)  # trust_env: the proxy variables
def httpx_get(url, data=None):
    r = client.request("POST" if data else "GET", url, content=data)
    return {"status": r.status_code, "body": r.text}
attempt("httpx_http", lambda: httpx_get(http, b"payload"))
attempt("httpx_https", lambda: httpx_get(https))
attempt("httpx_denied_http", lambda: httpx_get(denied_http))
attempt("httpx_denied_https", lambda: httpx_get(denied_https))
print(json.dumps(out))
'''


def test_python_clients(world, lab):
    missing = json.loads((lab.shared / "missing-libs.json").read_text())
    if {"requests", "httpx"} & set(missing):
        pytest.fail(f"install the client libraries into the test interpreter: pip install requests httpx ({missing})")
    mark = lab.mark()
    t = tag()
    urls = (f"{lab.http}/py-{t}", f"{lab.https}/pys-{t}", f"http://other.test:{HTTP_PORT}/pyd-{t}",
            f"https://other.test:{HTTPS_PORT}/pyd-{t}")
    path = script(world, "clients.py", PY_CLIENTS)
    r = sandboxed(world, lab, inner_python(world), path, str(lab.site), *urls, str(lab.ca),
                  env={"SSL_CERT_FILE": str(lab.ca), "REQUESTS_CA_BUNDLE": str(lab.ca)})
    assert r.returncode == 0, r.stderr
    res = last_json(r.stdout)
    for client in ("urllib", "requests", "httpx"):
        h, s = res[f"{client}_http"], res[f"{client}_https"]
        assert h.get("status") == 200, (client, h)
        echo = json.loads(h["body"])
        assert (echo["server"], echo["method"], echo["path"], echo["body"]) == ("http", "POST", f"/py-{t}", "payload")
        assert "proxy-authorization" not in ci(echo["headers"])
        assert s.get("status") == 200, (client, s)
        assert json.loads(s["body"])["path"] == f"/pys-{t}"
        d = res[f"{client}_denied_http"]
        assert d.get("status") == 403 and d["body"].startswith("nono: blocked other.test"), (client, d)
        d = res[f"{client}_denied_https"]
        assert "error" in d and "403" in d["msg"], (client, d)  # a clean refusal of the tunnel, no hang
    assert blocked_lines(r.stderr) == [f"[nono] blocked network: other.test:{HTTP_PORT} (not in allowlist) x3",
                                       f"[nono] blocked network: other.test:{HTTPS_PORT} (not in allowlist) x3"]
    got = lab.quiet_since(mark)
    assert sorted(e["path"] for e in got if e["kind"] == "req") == sorted([f"/py-{t}", f"/pys-{t}"] * 3), got


# -- 3. Node -------------------------------------------------------------------------------
NODE_FETCH = r'''
const url = process.argv[2];
const timer = setTimeout(() => { console.log(JSON.stringify({error: "timeout"})); process.exit(4); }, 10000);
fetch(url).then(async r => { console.log(JSON.stringify({status: r.status, body: await r.text()})); clearTimeout(timer); })
  .catch(e => { console.log(JSON.stringify({error: String((e.cause && (e.cause.code || e.cause.message)) || e)}));
                clearTimeout(timer); process.exitCode = 3; });
'''

NODE_EXPLICIT = r'''
const http = require("http"), tls = require("tls"), fs = require("fs");
const [plainUrl, tlsHost, tlsPort, ca] = process.argv.slice(2);
const proxy = new URL(process.env.HTTP_PROXY);
const auth = "Basic " + Buffer.from(decodeURIComponent(proxy.username) + ":" + decodeURIComponent(proxy.password)).toString("base64");
const out = {};
const timer = setTimeout(() => { out.timeout = true; console.log(JSON.stringify(out)); process.exit(4); }, 15000);
function done() { if ("plain" in out && "tunnel" in out) { clearTimeout(timer); console.log(JSON.stringify(out)); } }
// plain HTTP: absolute-form request to the proxy
const u = new URL(plainUrl);
http.get({host: proxy.hostname, port: proxy.port, path: plainUrl, headers: {Host: u.host, "Proxy-Authorization": auth}}, res => {
  let b = ""; res.on("data", d => b += d); res.on("end", () => { out.plain = {status: res.statusCode, body: b}; done(); });
}).on("error", e => { out.plain = {error: e.code || String(e)}; done(); });
// HTTPS: CONNECT, then TLS over the tunnel
http.request({host: proxy.hostname, port: proxy.port, method: "CONNECT", path: `${tlsHost}:${tlsPort}`,
              headers: {Host: `${tlsHost}:${tlsPort}`, "Proxy-Authorization": auth}})
  .on("connect", (res, socket) => {
    if (res.statusCode !== 200) { out.tunnel = {status: res.statusCode}; socket.destroy(); done(); return; }
    const s = tls.connect({socket, servername: tlsHost, ca: fs.readFileSync(ca)}, () => {
      s.write(`GET /node-tls HTTP/1.0\r\nHost: ${tlsHost}:${tlsPort}\r\n\r\n`);
    });
    let b = ""; s.on("data", d => b += d); s.on("end", () => { out.tunnel = {status: 200, response: b}; done(); });
    s.on("error", e => { out.tunnel = {error: e.code || String(e)}; done(); });
  })
  .on("error", e => { out.tunnel = {error: e.code || String(e)}; done(); }).end();
'''


def test_node(world, lab):
    node = need("node")
    t = tag()
    fetch = script(world, "fetch.js", NODE_FETCH)
    # control: outside the sandbox this very fetch reaches the server (so the failure below is the sandbox's)
    ctl = subprocess.run([*world.user.prefix, node, fetch, f"http://{lab.ns_ip}:{HTTP_PORT}/node-ctl-{t}"],
                         capture_output=True, text=True, timeout=30, cwd=world.work, env=world.env())
    assert json.loads(ctl.stdout).get("status") == 200, ctl.stdout + ctl.stderr

    major = int(subprocess.run([node, "-p", "process.versions.node.split('.')[0]"], capture_output=True, text=True,
                               timeout=10).stdout)
    mark = lab.mark()
    # Node 20's fetch ignores HTTP(S)_PROXY (and NODE_USE_ENV_PROXY): it must fail, not leak
    for url in (f"{lab.http}/node-fetch-{t}", f"http://{lab.ns_ip}:{HTTP_PORT}/node-fetch-ip-{t}"):
        r = sandboxed(world, lab, node, fetch, url, timeout=30)
        res = last_json(r.stdout)
        if major >= 24 and "allowed.test" in url:  # NODE_USE_ENV_PROXY=1 honoured: through the proxy
            assert res.get("status") == 200, res
            continue
        assert "error" in res, res
        # a name: the sandbox cannot resolve it (no UDP); an address: the connect is refused
        assert res["error"] in (("EACCES", "EPERM") if "allowed.test" not in url else ("EAI_AGAIN", "ENOTFOUND")), res
    if major < 24:
        assert lab.quiet_since(mark) == [], "a fetch that ignores the proxy reached the server"

    # a client that uses the proxy explicitly works, for plain HTTP and through CONNECT
    mark = lab.mark()
    explicit = script(world, "explicit.js", NODE_EXPLICIT)
    r = sandboxed(world, lab, node, explicit, f"{lab.http}/node-plain-{t}", "allowed.test", str(HTTPS_PORT),
                  str(lab.ca), timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    res = last_json(r.stdout)
    assert res["plain"]["status"] == 200, res
    assert json.loads(res["plain"]["body"])["path"] == f"/node-plain-{t}"
    assert res["tunnel"]["status"] == 200 and '"server": "https"' in res["tunnel"]["response"], res
    assert sorted(e["path"] for e in lab.requests_since(mark)) == sorted(["/node-tls", f"/node-plain-{t}"])


# -- 4. git ----------------------------------------------------------------------------
def test_git(world, lab):
    git = need("git")
    env = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_TERMINAL_PROMPT": "0"}
    r = sandboxed(world, lab, git, "ls-remote", f"{lab.http}/repo.git", env=env, timeout=30)
    assert r.returncode == 0, r.stderr
    assert "refs/heads/main" in r.stdout, r.stdout
    # (what nono reports at exit for this run: test_proxy_auth_challenge_is_not_a_blocked_host)

    r = sandboxed(world, lab, git, "clone", "-q", f"{lab.http}/repo.git", "cloned", env=env, timeout=30)
    assert r.returncode == 0, r.stderr
    assert (world.work / "cloned" / "README").read_text() == "hello from the namespace\n"

    mark = lab.mark()
    r = sandboxed(world, lab, git, "ls-remote", f"http://other.test:{HTTP_PORT}/repo.git", env=env, timeout=30)
    assert r.returncode != 0
    assert "403" in r.stderr, r.stderr
    assert f"[nono] blocked network: other.test:{HTTP_PORT} (not in allowlist)" in blocked_lines(r.stderr)
    assert lab.requests_since(mark) == []


def test_proxy_auth_challenge_is_not_a_blocked_host(world, lab):
    """git (libcurl with CURLAUTH_ANY) first asks without credentials, gets 407, then sends them.

    That handshake is how the token is meant to be used: the host is allowed and the
    request succeeds, so nono must not report it as "blocked network" at exit.
    """
    t = tag()
    r = sandboxed(world, lab, "curl", "-sS", "-m", "10", "--proxy-anyauth", f"{lab.http}/anyauth-{t}")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["path"] == f"/anyauth-{t}"
    curl_lines = blocked_lines(r.stderr)
    env = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_TERMINAL_PROMPT": "0"}
    r = sandboxed(world, lab, need("git"), "ls-remote", f"{lab.http}/repo.git", env=env, timeout=30)
    assert r.returncode == 0, r.stderr
    assert (curl_lines, blocked_lines(r.stderr)) == ([], []), "an allowed host, reached, reported as blocked"


# -- 5. pip and npm ----------------------------------------------------------------------
def test_pip_download(world, lab):
    py = inner_python(world)
    if subprocess.run([py, "-m", "pip", "--version"], capture_output=True, timeout=30).returncode != 0:
        pytest.fail(f"no pip for {py}: the pip client test must run")
    dest = world.work / "dl"
    r = sandboxed(world, lab, py, "-m", "pip", "download", "--no-deps", "--no-cache-dir", "--disable-pip-version-check",
                  "--index-url", f"{lab.http}/simple/", "--trusted-host", "allowed.test", "-d", str(dest), PYPI_PKG,
                  env={"PIP_CONFIG_FILE": "/dev/null"}, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert [p.name for p in dest.iterdir()] == [f"{PYPI_PKG.replace('-', '_')}-{PYPI_VERSION}-py3-none-any.whl"]
    assert blocked_lines(r.stderr) == [], r.stderr


def test_npm_view(world, lab):
    npm = need("npm")
    cache = world.work / "npm-cache"
    env = {"npm_config_update_notifier": "false", "npm_config_fund": "false", "npm_config_audit": "false",
           "npm_config_userconfig": "/dev/null"}
    r = sandboxed(world, lab, npm, "view", NPM_PKG, "--json", "--registry", f"{lab.http}/npm/", "--cache", str(cache),
                  env=env, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(r.stdout)
    assert (doc["name"], doc["version"]) == (NPM_PKG, NPM_VERSION)
    assert blocked_lines(r.stderr) == [], r.stderr


# -- 6. SSRF ----------------------------------------------------------------------------------
class _Echo(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        data = b"loopback-ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *a: object) -> None:
        pass


@contextlib.contextmanager
def loopback_server() -> Iterator[tuple[int, list[str]]]:
    hits: list[str] = []

    class H(_Echo):
        def do_GET(self) -> None:
            hits.append(self.path)
            super().do_GET()

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    th = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    th.start()
    try:
        yield srv.server_address[1], hits
    finally:
        srv.shutdown()
        srv.server_close()
        th.join(5)


def curl_code(world, lab, url: str, flags: tuple[str, ...], resolve: str) -> tuple[str, str, str]:
    r = sandboxed(world, lab, "curl", "-sS", "-m", "10", "-w", "\n%{http_code}", url, flags=flags, resolve=resolve)
    body, _, code = r.stdout.rpartition("\n")
    return code, body, r.stderr


def test_ssrf(world, lab):
    mark = lab.mark()
    t = tag()
    names = ("meta.test", "mixed.test", "allowed.test", "metadata.google.internal")
    flags = tuple(x for n in names for x in ("--allow-domain", n))
    resolve = lab.resolve(meta_test="169.254.169.254") + f",mixed.test={lab.ns_ip},mixed.test=169.254.169.254," \
        f"metadata.google.internal={lab.ns_ip},ll.test=169.254.10.10"
    code, body, err = curl_code(world, lab, f"http://meta.test:{HTTP_PORT}/m-{t}", flags, resolve)
    assert code == "403" and "ssrf: 169.254.169.254 is a cloud metadata address" in body, (code, body)
    assert f"[nono] blocked network: meta.test:{HTTP_PORT} (ssrf: 169.254.169.254 is a cloud metadata address)" \
        in blocked_lines(err)
    # one bad address refuses the whole name: no connection to the good one either
    code, body, _ = curl_code(world, lab, f"http://mixed.test:{HTTP_PORT}/mx-{t}", flags, resolve)
    assert code == "403" and "169.254.169.254" in body, (code, body)
    # metadata names are refused by name, whatever they resolve to, even when allowed
    code, body, _ = curl_code(world, lab, f"http://metadata.google.internal:{HTTP_PORT}/g-{t}", flags, resolve)
    assert code == "403" and "cloud metadata name" in body, (code, body)
    code, body, _ = curl_code(world, lab, f"http://ll.test:{HTTP_PORT}/ll-{t}", ("--allow-domain", "ll.test"), resolve)
    assert code == "403" and "link-local" in body, (code, body)
    # private ranges: allowed by default (the tests above reach 10.231.N.2), refused on request
    code, body, err = curl_code(world, lab, f"{lab.http}/dp-{t}", (*ALLOW, "--deny-private-networks"), resolve)
    assert code == "403" and "private networks are denied" in body, (code, body)
    assert lab.quiet_since(mark) == [], "a refused name was connected to"

    # loopback: refused unless the user opened that port
    with loopback_server() as (port, hits):
        resolve = lab.resolve(loop_test="127.0.0.1")
        code, body, _ = curl_code(world, lab, f"http://loop.test:{port}/closed", ("--allow-domain", "loop.test"), resolve)
        assert code == "403" and f"ssrf: 127.0.0.1 is a loopback address and port {port} was not opened" in body
        code, body, err = curl_code(world, lab, f"http://loop.test:{port}/opened",
                                    ("--allow-domain", "loop.test", "--open-port", str(port)), resolve)
        assert (code, body) == ("200", "loopback-ok"), (code, body, err)
        assert hits == ["/opened"]


# -- 7. bypass attempts from inside ------------------------------------------------------------
BYPASS = r'''
import base64, errno, json, os, socket, struct, sys
ns_ip, host_ip, http_port, https_port, udp_port = sys.argv[1], sys.argv[2], *(int(a) for a in sys.argv[3:6])
proxy = os.environ["HTTP_PROXY"]
creds, _, hostport = proxy.split("//", 1)[1].rpartition("@")
pport = int(hostport.rsplit(":", 1)[1])
out = {"proxy_port": pport}

def attempt(name, fn):
    try:
        out[name] = fn()
    except OSError as exc:
        out[name] = errno.errorcode.get(exc.errno, str(exc))

def tcp(family, addr):
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(3)
        s.connect(addr)
        s.sendall(b"GET /bypass HTTP/1.0\r\n\r\n")
        return "ok"

def udp():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"bypass-udp", (ns_ip, udp_port))
        return "ok"

def tfo():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(3)
        s.sendto(b"tfo", 0x20000000, (ns_ip, pport))
        return "ok"

def ask(auth, host=None):
    with socket.create_connection(("127.0.0.1", pport), timeout=5) as s:
        req = f"GET http://allowed.test:{http_port}/via-raw HTTP/1.1\r\nHost: {host or f'allowed.test:{http_port}'}\r\n"
        if auth:
            req += "Proxy-Authorization: Basic " + base64.b64encode(auth.encode()).decode() + "\r\n"
        s.sendall((req + "\r\n").encode())
        data = b""
        while len(data) < 65536:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        return data.split(b"\r\n", 1)[0].decode()

attempt("direct_tcp", lambda: tcp(socket.AF_INET, (ns_ip, http_port)))
attempt("direct_tcp6_mapped", lambda: tcp(socket.AF_INET6, ("::ffff:" + ns_ip, http_port)))
attempt("udp", udp)
attempt("proxy_port_on_veth", lambda: tcp(socket.AF_INET, (host_ip, pport)))
attempt("proxy_port_remote", lambda: tcp(socket.AF_INET, (ns_ip, pport)))
attempt("proxy_port_remote_mapped", lambda: tcp(socket.AF_INET6, ("::ffff:" + ns_ip, pport)))
attempt("tfo_proxy_port_remote", tfo)
attempt("no_token", lambda: ask(""))
attempt("wrong_token", lambda: ask("nono:" + "0" * 64))
attempt("token", lambda: ask(creds))
attempt("host_mismatch", lambda: ask(creds, f"other.test:{http_port}"))

def sni_mismatch():
    import ssl
    s = socket.create_connection(("127.0.0.1", pport), timeout=5)
    auth = base64.b64encode(creds.encode()).decode()
    s.sendall(f"CONNECT allowed.test:{https_port} HTTP/1.1\r\nHost: allowed.test:{https_port}\r\n"
              f"Proxy-Authorization: Basic {auth}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head and len(head) < 4096:
        chunk = s.recv(1)
        if not chunk:
            break
        head += chunk
    status = head.split(b"\r\n", 1)[0].decode()
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    try:
        with ctx.wrap_socket(s, server_hostname="other.test") as t:  # domain fronting
            t.sendall(f"GET /sni-fronted HTTP/1.0\r\nHost: other.test:{https_port}\r\n\r\n".encode())
            return status + " | fronted: " + t.recv(200).decode("latin-1")
    except (OSError, ssl.SSLError) as exc:
        return status + " | refused: " + type(exc).__name__
attempt("sni_mismatch", sni_mismatch)
print(json.dumps(out))
'''


def test_bypass_attempts_denied(world, lab):
    py = inner_python(world)
    path = script(world, "bypass.py", BYPASS)
    args = (path, lab.ns_ip, lab.host_ip, str(HTTP_PORT), str(HTTPS_PORT), str(UDP_PORT))
    # control: unsandboxed, the same user reaches the namespace directly (TCP and UDP)
    mark = lab.mark()
    ctl = subprocess.run([*world.user.prefix, py, *args], capture_output=True, text=True, timeout=60, cwd=world.work,
                         env=world.env(HTTP_PROXY=f"http://nono:x@127.0.0.1:{lab.trap_port}"))
    res = last_json(ctl.stdout)
    assert (res["direct_tcp"], res["udp"], res["proxy_port_remote"]) == ("ok", "ok", "ok"), res
    assert {e["kind"] for e in lab.quiet_since(mark)} >= {"req", "udp", "trap"}

    mark = lab.mark()
    # --proxy-port: the namespace listens on the proxy's port number too (the "trap")
    r = sandboxed(world, lab, py, *args, flags=(*ALLOW, "--proxy-port", str(lab.trap_port)))
    assert r.returncode == 0, r.stderr
    res = last_json(r.stdout)
    why = json.dumps(res, indent=1)
    assert res["proxy_port"] == lab.trap_port
    assert res["direct_tcp"] == "EACCES", why
    assert res["direct_tcp6_mapped"] == "EACCES", why
    assert res["udp"] == "EPERM", why
    assert res["proxy_port_on_veth"] == "EACCES", "only loopback may reach the proxy's port"
    assert res["proxy_port_remote"] == "EACCES", "the proxy's port number must not open other hosts"
    assert res["proxy_port_remote_mapped"] == "EACCES", why
    assert res["tfo_proxy_port_remote"] in ("EPERM", "EACCES"), why
    assert res["no_token"].startswith("HTTP/1.1 407"), why
    assert res["wrong_token"].startswith("HTTP/1.1 407"), why
    assert res["token"].split()[1] == "200", why  # the server's own status line, relayed
    assert res["host_mismatch"].startswith("HTTP/1.1 400"), why
    assert res["sni_mismatch"].startswith("HTTP/1.1 200") and "| refused:" in res["sni_mismatch"], why
    got = lab.quiet_since(mark)
    assert [e["path"] for e in got if e["kind"] == "req"] == ["/via-raw"], got
    assert [e for e in got if e["kind"] in ("udp", "trap")] == [], got


CONNECTS = r'''
import errno, json, socket, sys
out = {}
for target in sys.argv[1:]:
    host, port = target.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=3) as s:
            s.sendall(b"GET /open-port-direct HTTP/1.0\\r\\n\\r\\n")
        out[target] = "ok"
    except OSError as exc:
        out[target] = errno.errorcode.get(exc.errno, str(exc))
print(json.dumps(out))
'''


def test_open_port_with_the_proxy_stays_on_loopback(world, lab):
    """``--open-port P`` is loopback connect+bind (IPC, a local dev server; docs/network.md:
    "loopback (unless you opened that port with --open-port)"). With a filtered network,
    it must not let the program reach *other hosts* on port P directly, past the proxy
    and its SSRF checks (P=80 would open 169.254.169.254:80). The mediator already checks
    the address for the proxy's port; Landlock alone cannot.
    """
    with loopback_server() as (port, hits):
        path = script(world, "connects.py", CONNECTS)
        mark = lab.mark()
        r = sandboxed(world, lab, inner_python(world), path, f"127.0.0.1:{port}", f"{lab.ns_ip}:{HTTP_PORT}",
                      flags=(*ALLOW, "--open-port", str(port), "--open-port", str(HTTP_PORT)))
        assert r.returncode == 0, r.stderr
        res = last_json(r.stdout)
        assert res[f"127.0.0.1:{port}"] == "ok", res
        assert res[f"{lab.ns_ip}:{HTTP_PORT}"] == "EACCES", f"--open-port reached another host directly: {res}"
        assert lab.quiet_since(mark) == []


# -- 8. why --host ----------------------------------------------------------------------------
def test_why_host(world):
    r = world.nono("why", "--allow-domain", "allowed.test", "--host", "other.test", "--json")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert (res["status"], res["reason"], res["details"]) == ("denied", "proxy_filtered", "not in allowlist"), res
    r = world.nono("why", "--allow-domain", "allowed.test", "--host", "allowed.test", "--json")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert (res["status"], res["reason"]) == ("allowed", "proxy_allowed"), res


# -- 9. profiles: never the internet, only the plan ----------------------------------------------
def test_profile_network_in_dry_run(world):
    cmd = ("curl", "-sS", "https://api.anthropic.com")
    r = world.nono("run", "--dry-run", "--profile", "claude-code", "--", *cmd)
    assert r.returncode == 0, r.stderr
    out = r.stdout + r.stderr
    net = [ln.strip() for ln in out.splitlines() if ln.strip().startswith("net ")]
    assert len(net) == 1 and net[0].startswith("net  filtered by nono's proxy"), out
    assert "api.anthropic.com" in net[0]
    r = world.nono("run", "--dry-run", "--profile", "claude-code", "--allow-net", "--", *cmd)
    assert r.returncode == 0, r.stderr
    net = [ln.strip() for ln in (r.stdout + r.stderr).splitlines() if ln.strip().startswith("net ")]
    assert net == ["net  allowed"], r.stdout + r.stderr
