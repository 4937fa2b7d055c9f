"""Phantom tokens with the real proxy process and a sandboxed program.

The proxy is started the way ``nono run`` will (``credentials.session.prepare`` then
``proxy.process.start`` with ``routes``); the program runs under ``nono run`` with only
the proxy's loopback port open. The fake upstream is HTTPS on 127.0.0.1 with a test CA;
nothing else is contacted. Asserts: the program sees only the phantom, its request
reaches the upstream with the real key, and it cannot read the secret from the proxy
process (``/proc/<pid>/environ``, ``/proc/<pid>/mem``).
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

from nono.credentials.session import prepare
from nono.proxy import process
from nono.proxy.rules import ProxySettings

SECRET = "sk-enforce-REAL-5b8e1d0c9a"
REPO = Path(__file__).resolve().parents[2]

CHILD = r"""
import json, os, sys, urllib.request
out = {"env_has_secret": any(sys.argv[1] in v for v in os.environ.values()),
       "key": os.environ.get("OPENAI_API_KEY"), "base": os.environ.get("OPENAI_BASE_URL")}
req = urllib.request.Request(out["base"] + "/models", headers={"Authorization": "Bearer " + out["key"]})
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
out["body"] = opener.open(req, timeout=10).read().decode()
for what in ("environ", "mem", "cmdline"):
    try:
        with open(f"/proc/{sys.argv[2]}/{what}", "rb") as f:
            data = f.read(1 << 20)
        out[what] = "secret" if sys.argv[1].encode() in data else "readable"
    except OSError as exc:
        out[what] = "denied: " + type(exc).__name__
print(json.dumps(out))
"""


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[FakeUpstream]:
    up = FakeUpstream(tmp_path)
    yield up
    up.stop()


def test_sandboxed_program_sees_only_the_phantom(upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NONO_TEST_OPENAI_SECRET", SECRET)
    plan = prepare(["openai=env://NONO_TEST_OPENAI_SECRET"])
    plan.routes[0].host = HOST  # point the built-in route at the fake upstream (loopback, test CA)
    plan.routes[0].port = upstream.port
    settings = ProxySettings(resolve_overrides={HOST: ["127.0.0.1"]}, loopback_ports=frozenset({upstream.port}),
                             routes=plan.routes, upstream_ca_file=upstream.ca_file)
    with process.start(settings) as proxy:
        plan.wipe()
        env = {k: v for k, v in os.environ.items() if k not in plan.unset_env and not k.lower().endswith("_proxy")}
        env.update(proxy.env())
        env.update(plan.child_env(proxy.port))
        assert SECRET not in json.dumps(env)
        done = subprocess.run([sys.executable, "-m", "nono", "run", "--silent", "--open-port", str(proxy.port), "--",
                               "/usr/bin/python3", "-c", CHILD, SECRET, str(proxy.pid)],
                              capture_output=True, text=True, timeout=60, env={**env, "PYTHONPATH": str(REPO / "src")},
                              cwd="/tmp")
        events = proxy.events()
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["env_has_secret"] is False and len(out["key"]) == 64 and out["key"] != SECRET
    assert out["base"] == f"http://127.0.0.1:{proxy.port}/openai"
    assert out["body"] == '{"ok": true}'
    for what in ("environ", "mem"):
        assert out[what].startswith("denied"), (what, out[what])
    assert out["cmdline"] != "secret"
    assert upstream.requests[-1].header("authorization") == f"Bearer {SECRET}"
    assert SECRET not in json.dumps(events) + done.stdout + done.stderr
    assert any(e.get("route") == "openai" and e["action"] == "allow" for e in events)
