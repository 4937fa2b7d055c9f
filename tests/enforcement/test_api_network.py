"""The Python API with a filtered network: nono.run and Sandbox.apply start the proxy, as root and as nobody.

A local HTTP server on 127.0.0.1 stands in for the allowed host: names are mapped with
NONO_PROXY_RESOLVE and the server's port is opened for loopback (``open_port``), so the
proxy may reach it. Nothing leaves loopback.
"""

from __future__ import annotations

import textwrap

DRIVER = textwrap.dedent('''
    import http.server, json, os, socket, sys, threading, urllib.request
    import nono
    home, work, outside = sys.argv[1:4]

    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"hello from " + self.headers["Host"].encode()
            self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
            self.wfile.write(body)
        def log_message(self, *a): pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    port = srv.server_address[1]
    os.environ["NONO_PROXY_RESOLVE"] = "allowed.test=127.0.0.1,other.test=127.0.0.1"
    out = {}
    p = nono.Policy().allow_network(["allowed.test"]).open_port(port)
    py = sys.executable
    fetch = ("import sys, urllib.request\\n"
             "try:\\n    print(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())\\n"
             "except Exception as e:\\n    print('ERR', getattr(e, 'code', e))\\n")
    # the server runs in a thread; nono.run forks its proxy from this (main) thread before any helper
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    for name in ("allowed", "other"):
        r = nono.run([py, "-c", fetch, f"http://{name}.test:{port}/"], policy=p, capture_output=True, text=True, timeout=60)
        out["run_" + name] = r.stdout.strip()
    r = nono.run([py, "-c", "import os; print(sorted(k for k in os.environ if 'PROXY' in k.upper()))"],
                 policy=p, capture_output=True, text=True, timeout=60)
    out["env"] = r.stdout.strip()
    srv.shutdown()
    print(json.dumps(out))
''')


def test_nono_run_with_allow_network(world):
    out = world.drive(DRIVER)
    assert out["run_allowed"].startswith("hello from allowed.test"), out
    assert out["run_other"] == "ERR 403", out
    assert "HTTPS_PROXY" in out["env"] and "http_proxy" in out["env"], out


APPLY = textwrap.dedent('''
    import http.server, json, os, sys, threading, urllib.request, socket
    home, work, outside = sys.argv[1:4]

    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"ok"
            self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers(); self.wfile.write(body)
        def log_message(self, *a): pass

    # The server lives in another process: Sandbox.apply needs a single-threaded caller.
    r, w = os.pipe()
    if os.fork() == 0:
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)  # the driver's output pipe must not wait for this server
        srv = http.server.HTTPServer(("127.0.0.1", 0), H)
        os.write(w, str(srv.server_address[1]).encode()); os.close(w)
        srv.timeout = 20
        srv.handle_request()  # the one allowed request
        os._exit(0)
    os.close(w)
    port = int(os.read(r, 16))
    os.environ["NONO_PROXY_RESOLVE"] = "allowed.test=127.0.0.1,other.test=127.0.0.1"
    import nono
    nono.Sandbox.apply(nono.Policy().allow_network(["allowed.test"]).open_port(port))
    out = {}
    out["allowed"] = urllib.request.urlopen(f"http://allowed.test:{port}/", timeout=10).read().decode()
    try:
        urllib.request.urlopen(f"http://other.test:{port}/", timeout=10)
        out["other"] = "reached"
    except Exception as e:
        out["other"] = getattr(e, "code", str(e))
    s = socket.socket()
    s.settimeout(5)
    try:
        s.connect(("127.0.0.1", 1))  # not the proxy, not an opened port
        out["direct"] = "connected"
    except OSError as e:
        out["direct"] = e.errno
    print(json.dumps(out))
''')


def test_sandbox_apply_with_allow_network(world):
    out = world.drive(APPLY)
    assert out["allowed"] == "ok", out
    assert out["other"] == 403, out
    assert out["direct"] in (1, 13), out  # EPERM/EACCES from the mediator, not ECONNREFUSED from the kernel


SEED = textwrap.dedent("""
    import json, os, sys
    import nono
    os.environ["GH_REAL"] = "ghp_REALSECRET_0123456789abcdef0123456789"
    proxy = nono.ProxyConfig()
    proxy.intercept(pattern="api.github.com", inject_header="Authorization", from_env="GH_REAL",
                    credential_format="token {}", env_var="GITHUB_TOKEN")
    with nono.Sandbox(allow_network=["api.github.com:443"], proxy=proxy) as sb:
        r = sb.run([sys.executable, "-c", "import json, os; print(json.dumps(dict(os.environ)))"],
                   capture_output=True, text=True, timeout=60)
    env = json.loads(r.stdout)
    print(json.dumps({"token": env.get("GITHUB_TOKEN"), "leak": "REALSECRET" in r.stdout,
                      "base": [k for k in env if k.endswith("_BASE_URL")], "proxy": "HTTPS_PROXY" in env}))
""")


def test_seed_api_proxyconfig_and_sandbox(world):
    out = world.drive(SEED)
    assert out["token"] and "REALSECRET" not in out["token"] and not out["leak"], out
    assert out["proxy"] and out["base"], out
