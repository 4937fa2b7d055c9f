"""The Python API (nono.run, Sandbox.apply) against the real kernel, as root and as nobody."""

from __future__ import annotations

import textwrap

DRIVER = textwrap.dedent('''
    import json, os, socket, subprocess, sys, threading
    import nono
    home, work, outside = sys.argv[1:4]
    out = {}
    p = nono.Policy().allow(work)
    r = nono.run(["cat", os.path.join(work, "input.txt")], policy=p, capture_output=True, text=True)
    out["allowed"] = [r.returncode, r.stdout]
    r = nono.run(["cat", os.path.join(home, ".ssh", "id_rsa")], policy=nono.Policy().allow(home), capture_output=True)
    out["ssh"] = [r.returncode, b"PLANTED" in r.stdout]
    r = nono.run(["cat", os.path.join(outside, "secret.txt")], policy=p, capture_output=True)
    out["outside"] = [r.returncode, b"outside-secret" in r.stdout]
    r = nono.run(["sh", "-c", "echo err >&2; cat; exit 3"], policy=p, input="in", capture_output=True, text=True)
    out["io"] = [r.returncode, r.stdout, r.stderr]
    r = nono.run(["sh", "-c", "echo a; echo b >&2"], policy=p, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out["merged"] = sorted(r.stdout.decode().split())
    r = nono.run(["pwd"], policy=p, cwd=work, capture_output=True, text=True)
    out["cwd"] = r.stdout.strip()
    r = nono.run(["sh", "-c", "echo ${LD_PRELOAD:-unset} ${KEEP:-gone}"], policy=p, capture_output=True, text=True,
                 env=dict(os.environ, LD_PRELOAD="/x.so", KEEP="kept"))
    out["env"] = r.stdout.split()
    try:
        nono.run(["sleep", "10"], policy=p, timeout=0.5)
        out["timeout"] = "no"
    except subprocess.TimeoutExpired:
        out["timeout"] = "yes"
    try:
        nono.run(["false"], policy=p, check=True)
    except subprocess.CalledProcessError as e:
        out["check"] = e.returncode
    try:
        nono.run(["no-such-program-xyz"], policy=p)
    except FileNotFoundError:
        out["notfound"] = True
    srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
    code = f"import socket; socket.create_connection(('127.0.0.1', {srv.getsockname()[1]}), 2)"
    r = nono.run([sys.executable, "-c", code], policy=p.block_network(), capture_output=True)
    out["net_blocked"] = r.returncode != 0
    r = nono.run([sys.executable, "-c", code], policy=p.allow_connect_port(srv.getsockname()[1]), capture_output=True)
    out["port_open"] = r.returncode
    # many concurrent calls share helpers safely
    results = []
    def worker():
        results.append(nono.run(["echo", "x"], policy=p, capture_output=True).stdout)
    ts = [threading.Thread(target=worker) for _ in range(8)]
    [t.start() for t in ts]; [t.join(30) for t in ts]
    out["threads"] = results.count(b"x\\n")
    # Sandbox.apply refuses with threads running
    t = threading.Thread(target=threading.Event().wait, args=(5,), daemon=True); t.start()
    try:
        nono.Sandbox.apply(p)
        out["apply_threads"] = "applied"
    except nono.SandboxError:
        out["apply_threads"] = "refused"
    print(json.dumps(out))
''')

APPLY = textwrap.dedent('''
    import json, os, sys
    import nono
    home, work, outside = sys.argv[1:4]
    status = nono.Sandbox.apply(nono.Policy().allow(work).block_network())
    out = {"status": status["filesystem"], "cap_file": bool(os.environ.get("NONO_CAP_FILE"))}
    def attempt(fn):
        try:
            fn(); return "allowed"
        except OSError as e:
            return "denied"
    out["work"] = attempt(lambda: open(os.path.join(work, "new.txt"), "w").close())
    out["outside"] = attempt(lambda: open(os.path.join(outside, "secret.txt")).read())
    out["ssh"] = attempt(lambda: open(os.path.join(home, ".ssh", "id_rsa")).read())
    out["child"] = os.system(f"cat {outside}/secret.txt >/dev/null 2>&1") != 0
    import socket
    out["tcp"] = attempt(lambda: socket.create_connection(("127.0.0.1", 9), 1))
    print(json.dumps(out))
''')


def _drive(world, script: str) -> dict:
    return world.drive(script)


def test_nono_run(world):
    out = _drive(world, DRIVER)
    assert out["allowed"] == [0, "input\n"]
    assert out["ssh"] == [1, False]
    assert out["outside"] == [1, False]
    assert out["io"] == [3, "in", "err\n"]
    assert out["merged"] == ["a", "b"]
    assert out["cwd"] == str(world.work)
    assert out["env"] == ["unset", "kept"]
    assert out["timeout"] == "yes"
    assert out["check"] == 1
    assert out["notfound"] is True
    assert out["net_blocked"] is True
    assert out["port_open"] == 0
    assert out["threads"] == 8
    assert out["apply_threads"] == "refused"


def test_sandbox_apply(world):
    out = _drive(world, APPLY)
    assert out == {"status": "enforced", "cap_file": True, "work": "allowed", "outside": "denied",
                   "ssh": "denied", "child": True, "tcp": "denied"}
