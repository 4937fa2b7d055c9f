"""Run the demo agent under ``nono run`` and show what it could and could not do.

Sets up a throw-away home (with a planted fake SSH key and ~/.bashrc) and
project, starts a loopback "exfiltration" server outside the sandbox, then runs:

    nono run --allow-cwd --block-net -- python demo_agent.py PORT

Exits 0 only if the agent did its job and every attack was blocked.
"""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading

HERE = os.path.dirname(os.path.abspath(__file__))


def main() -> int:
    # The demo's fake home must not lie inside a directory the sandbox gets by default
    # (/tmp, /var/tmp): nono would then drop that grant. ~/.cache is outside all of them.
    cache = os.path.expanduser("~/.cache")
    os.makedirs(cache, exist_ok=True)
    base = tempfile.mkdtemp(prefix="nono-demo-", dir=cache)
    try:
        home = os.path.join(base, "home")
        project = os.path.join(base, "project")
        os.makedirs(os.path.join(home, ".ssh"))
        os.makedirs(os.path.join(project, "data"))
        with open(os.path.join(home, ".ssh", "id_rsa"), "w") as f:
            f.write("-----BEGIN OPENSSH PRIVATE KEY-----\nFAKE-DEMO-KEY\n")
        with open(os.path.join(home, ".bashrc"), "w") as f:
            f.write("# demo bashrc\n")
        for name, text in (("a.txt", "alpha beta gamma"), ("b.txt", "one two three four")):
            with open(os.path.join(project, "data", name), "w") as f:
                f.write(text)
        shutil.copy(os.path.join(HERE, "demo_agent.py"), project)

        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen(4)
        server.settimeout(10)
        received = []

        def serve() -> None:
            try:
                conn, _ = server.accept()
                received.append(conn.recv(100))
            except OSError:
                pass

        threading.Thread(target=serve, daemon=True).start()
        nono = [sys.executable, "-m", "nono"]
        cmd = nono + ["run", "--allow-cwd", "--block-net", "--", sys.executable, "demo_agent.py", str(server.getsockname()[1])]
        env = dict(os.environ, HOME=home)
        print("$ nono run --allow-cwd --block-net -- python demo_agent.py", server.getsockname()[1], flush=True)
        try:
            code = subprocess.run(cmd, cwd=project, env=env, timeout=60).returncode
        finally:
            server.close()
        report = os.path.join(project, "out", "report.txt")
        ok = code == 0 and os.path.exists(report) and not received
        with open(os.path.join(home, ".bashrc")) as f:
            ok = ok and "curl" not in f.read()
        print()
        print("demo: agent exit status", code, "| report written:", os.path.exists(report),
              "| bytes the server received:", sum(len(r) for r in received))
        print("demo:", "PASS - the agent did its job and every escape was blocked by the kernel" if ok else "FAIL")
        return 0 if ok else 1
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
