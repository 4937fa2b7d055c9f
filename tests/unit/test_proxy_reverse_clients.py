"""Real clients against a credential route used as a base URL: curl, urllib, httpx, Node fetch.

The proxy runs in a thread here; the fake upstream is HTTPS on 127.0.0.1 with a test CA.
Clients talk plain HTTP to ``http://127.0.0.1:<port>/openai`` like an SDK given
``OPENAI_BASE_URL``; none of them needs the proxy token or the CA.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "proxy"))
from proxytest import ProxyThread
from test_credentials_fakeupstream import HOST, TIMEOUT, FakeUpstream

from nono.credentials.route import Route
from nono.proxy.rules import ProxySettings

SECRET = "sk-client-REAL-7f3a9c"
PHANTOM = "a1" * 32
CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FakeUpstream, str]]:
    up = FakeUpstream(tmp_path_factory.mktemp("up"))
    r = Route("openai", scheme="https", host=HOST, port=up.port, base_path="/v1", phantom=PHANTOM,
              secret=bytearray(SECRET.encode()), accept=[("header", "Authorization")])
    settings = ProxySettings(resolve_overrides={HOST: ["127.0.0.1"]}, loopback_ports=frozenset({up.port}),
                             routes=[r], upstream_ca_file=up.ca_file)
    with ProxyThread(settings) as proxy:
        yield up, f"http://127.0.0.1:{proxy.port}/openai"
    up.stop()


def test_curl(env: tuple[FakeUpstream, str]) -> None:
    up, base = env
    curl = shutil.which("curl")
    if curl is None:
        pytest.fail("curl is not installed (this machine kind has it; a skip would hide an untested client)")
    out = subprocess.run([curl, "-sS", "--noproxy", "*", "-H", f"Authorization: Bearer {PHANTOM}", "-d", '{"m":1}',
                          "-H", "Content-Type: application/json", f"{base}/chat/completions"],
                         capture_output=True, text=True, timeout=TIMEOUT, env=CLEAN_ENV)
    assert out.returncode == 0 and out.stdout == '{"ok": true}', out.stderr
    assert up.requests[-1].header("authorization") == f"Bearer {SECRET}" and up.requests[-1].body == b'{"m":1}'


def test_curl_wrong_phantom_reads_the_reason(env: tuple[FakeUpstream, str]) -> None:
    _, base = env
    curl = shutil.which("curl")
    if curl is None:
        pytest.fail("curl is not installed (this machine kind has it; a skip would hide an untested client)")
    out = subprocess.run([curl, "-sS", "--noproxy", "*", "-w", "%{http_code}", "-H", "Authorization: Bearer sk-wrong",
                          f"{base}/models"], capture_output=True, text=True, timeout=TIMEOUT, env=CLEAN_ENV)
    assert out.stdout.endswith("401") and "wrong token for route openai" in out.stdout


def test_urllib(env: tuple[FakeUpstream, str]) -> None:
    up, base = env
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(f"{base}/models", headers={"Authorization": f"Bearer {PHANTOM}"})
    with opener.open(request, timeout=TIMEOUT) as resp:
        assert json.loads(resp.read()) == {"ok": True}
    assert up.requests[-1].request_line == "GET /v1/models HTTP/1.1"
    with pytest.raises(urllib.error.HTTPError) as info:
        opener.open(urllib.request.Request(f"{base}/models"), timeout=TIMEOUT)
    assert info.value.code == 401 and b"no token for route openai" in info.value.read()


def test_httpx_base_url_and_streaming(env: tuple[FakeUpstream, str]) -> None:
    httpx = pytest.importorskip("httpx")
    up, base = env
    up.gate.set()
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {PHANTOM}"}, trust_env=False,
                      timeout=TIMEOUT) as client:
        for _ in range(3):  # the pool's connection is closed after each response; httpx reconnects
            assert client.post("/chat/completions", json={"stream": False}).json() == {"ok": True}
        with client.stream("POST", "/sse", json={"stream": True}) as resp:
            events = [line for line in resp.iter_lines() if line]
    assert events == ["data: 1", "data: 2"]
    assert up.requests[-1].header("authorization") == f"Bearer {SECRET}"


def test_node_fetch(env: tuple[FakeUpstream, str]) -> None:
    up, base = env
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed (this machine kind has it; a skip would hide an untested client)")
    script = ("fetch(process.argv[1] + '/models', {headers: {Authorization: 'Bearer ' + process.argv[2]}})"
              ".then(r => r.text().then(t => { console.log(r.status + ' ' + t); }))"
              ".catch(e => { console.error(e); process.exit(1); })")
    out = subprocess.run([node, "-e", script, base, PHANTOM], capture_output=True, text=True, timeout=30, env=CLEAN_ENV)
    assert out.returncode == 0 and out.stdout.strip() == '200 {"ok": true}', out.stderr
    assert up.requests[-1].header("authorization") == f"Bearer {SECRET}"


# git over HTTPS talks to the real host through CONNECT: see test_proxy_intercept_clients.py (TLS interception).
