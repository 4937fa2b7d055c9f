"""Every built-in profile runs a real program, keeps the planted secrets out, and filters the network.

Each profile is used as a user would: ``nono run --profile NAME --allow-cwd -- sh -c ...``.
The program works in the project, reads a system file, and is refused ``~/.ssh`` and
``~/.aws``; a profile that names a network profile reaches nothing but nono's proxy.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from nono.policy import profiles

BUILTINS = sorted(p.stem for p in Path(profiles.BUILTIN_DIR).glob("*.json"))

_SCRIPT = r"""
cd "$1"
echo made > made.txt && cat made.txt
head -c 0 /etc/passwd && echo sys-ok
cat "$HOME/.ssh/id_rsa" 2>/dev/null && echo LEAK-SSH
cat "$HOME/.aws/credentials" 2>/dev/null && echo LEAK-AWS
echo x > "$HOME/.bashrc" 2>/dev/null && echo LEAK-BASHRC
echo done
"""


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_profile_runs_and_denies_secrets(world, name):
    r = world.nono("run", "--profile", name, "--allow-cwd", "--", "sh", "-c", _SCRIPT, "sh", str(world.work))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.split()
    assert lines[:2] == ["made", "sys-ok"] and lines[-1] == "done", r.stdout + r.stderr
    assert "LEAK" not in r.stdout, r.stdout
    assert "secret" not in (world.home / ".bashrc").read_text()
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("name", [n for n in BUILTINS if profiles.resolve(n).needs_proxy()])
def test_builtin_agent_profile_filters_the_network(world, name):
    """The profile's network rules start the proxy: the summary says so and a direct connect fails."""
    probe = ("import socket,sys\ns=socket.socket()\ns.settimeout(3)\n"
             "try:\n    s.connect(('127.0.0.1', 9))\n    print('CONNECTED')\n"
             "except OSError as e:\n    print('refused', e.errno)\n")
    r = world.nono("run", "--profile", name, "--allow-cwd", "--", world.user.python, "-c", probe)
    assert r.returncode == 0, r.stderr
    assert "filtered by nono's proxy" in r.stderr
    assert r.stdout.startswith("refused"), r.stdout
    r = world.nono("run", "--profile", name, "--allow-net", "--dry-run", "--", "true")
    assert "net  allowed" in r.stderr
