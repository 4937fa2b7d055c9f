"""TLS interception with the real proxy process and a sandboxed program.

The proxy is started the way ``nono run`` starts it (``proxy.process.start`` with
``intercept=True``); the program runs under ``nono run`` with only the proxy's port open,
the proxy's environment (``HTTPS_PROXY``, ``SSL_CERT_FILE`` and the other bundle
variables) and a read rule for exactly the bundle file (``--read-file``, what
``NetworkSession.grant`` adds). The fake upstream is HTTPS on 127.0.0.1 with a test CA.
Asserts: HTTPS endpoint rules are enforced inside TLS, the phantom is swapped on the
route's host, and the session CA's key is nowhere the program can read (not in the
bundle, not on disk, not in the proxy's memory or environment).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from test_credentials_fakeupstream import HOST, FakeUpstream

from nono.credentials.route import Route
from nono.proxy import process
from nono.proxy.rules import ProxySettings

pytest.importorskip("cryptography")

RULES = "rules.fake.test"
SECRET = "sk-intercept-enforce-REAL-77aa"
PHANTOM = "9" * 64
REPO = Path(__file__).resolve().parents[2]

CHILD = r"""
import json, os, sys, urllib.request, urllib.error
rules, api, proxy_pid = sys.argv[1], sys.argv[2], sys.argv[3]
out = {"bundle": os.environ.get("SSL_CERT_FILE"), "same": len({os.environ.get(v) for v in (
    "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "NODE_EXTRA_CA_CERTS", "GIT_SSL_CAINFO")})}
def fetch(url, headers=None):
    try:
        r = urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10)
        return [r.status, r.read().decode()]
    except urllib.error.HTTPError as e:
        return [e.code, e.read().decode()]
out["allowed"] = fetch(rules + "/v1/models")
out["denied"] = fetch(rules + "/admin")
out["echo"] = fetch(api + "/echo", {"Authorization": "Bearer " + os.environ["FAKE_KEY"]})
with open(out["bundle"], "rb") as f:
    out["bundle_has_key"] = b"PRIVATE KEY" in f.read()
for what in ("environ", "mem", "maps"):
    try:
        with open(f"/proc/{proxy_pid}/{what}", "rb") as f:
            f.read(4096)
        out[what] = "readable"
    except OSError as exc:
        out[what] = "denied: " + type(exc).__name__
out["fds"] = []
try:
    names = os.listdir(f"/proc/{proxy_pid}/fd")
except OSError:
    names = []
for n in names:  # the memory files the leaf keys pass through, sockets...: none can be opened or followed
    try:
        with open(f"/proc/{proxy_pid}/fd/{n}", "rb") as f:
            f.read(1)
        out["fds"].append(n + " opened")
    except OSError:
        pass
    try:
        out["fds"].append(n + " -> " + os.readlink(f"/proc/{proxy_pid}/fd/{n}"))
    except OSError:
        pass
print(json.dumps(out))
"""


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[FakeUpstream]:
    up = FakeUpstream(tmp_path, keepalive=True)
    assert up.ctx is not None
    up.ca.issue_cert(HOST, RULES).configure_cert(up.ctx)
    yield up
    up.stop()


def test_sandboxed_program_through_interception(upstream: FakeUpstream, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    route = Route("openai", scheme="https", host=HOST, port=upstream.port, base_path="", phantom=PHANTOM,
                  secret=bytearray(SECRET.encode()), accept=[("header", "Authorization")])
    settings = ProxySettings(allow=[f"https://{RULES}:{upstream.port}/v1/**", f"{HOST}:{upstream.port}"],
                             resolve_overrides={HOST: ["127.0.0.1"], RULES: ["127.0.0.1"]},
                             loopback_ports=frozenset({upstream.port}), routes=[route],
                             upstream_ca_file=upstream.ca_file, intercept=True)
    with process.start(settings) as proxy:
        env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
        env.update(proxy.env())
        env["FAKE_KEY"] = PHANTOM
        # `nono run` refuses user grants inside its own state directory (the lead's
        # NetworkSession.grant adds the rule itself); here the supervisor's state lives elsewhere.
        env["XDG_STATE_HOME"] = str(tmp_path / "supervisor-state")
        bundle = proxy.ca_bundle
        assert bundle is not None
        done = subprocess.run([sys.executable, "-m", "nono", "run", "--silent", "--open-port", str(proxy.port),
                               "--read-file", bundle, "--", "/usr/bin/python3", "-c", CHILD,
                               f"https://{RULES}:{upstream.port}", f"https://{HOST}:{upstream.port}", str(proxy.pid)],
                              capture_output=True, text=True, timeout=60, env={**env, "PYTHONPATH": str(REPO / "src")},
                              cwd="/tmp")
        events = proxy.events()
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["bundle"] == bundle and out["same"] == 1
    assert out["allowed"] == [200, '{"ok": true}']
    assert out["denied"][0] == 403 and "endpoint not allowed: GET /admin" in out["denied"][1]
    assert out["echo"][0] == 401 and SECRET not in out["echo"][1] and "auth=Bearer ***" in out["echo"][1]
    assert upstream.requests[-1].header("authorization") == f"Bearer {SECRET}"
    assert out["bundle_has_key"] is False
    for what in ("environ", "mem", "maps"):
        assert out[what].startswith("denied"), (what, out[what])
    assert out["fds"] == []
    assert not os.path.exists(bundle)  # removed when the proxy stopped
    assert SECRET not in json.dumps(events) + done.stdout + done.stderr
    assert any(e.get("intercepted") and e.get("route") == "openai" for e in events)
